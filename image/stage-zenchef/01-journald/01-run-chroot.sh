#!/bin/bash -e
# Ownership and ACLs of /var/log/journal as systemd expects them.
chgrp systemd-journal /var/log/journal
systemd-tmpfiles --create --prefix /var/log/journal || true
# One copy of each line: no syslog daemon writing the same lines again.
if dpkg -s rsyslog >/dev/null 2>&1; then
	apt-get purge -y rsyslog
fi
