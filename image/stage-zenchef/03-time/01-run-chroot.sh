#!/bin/bash -e
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s systemd-timesyncd >/dev/null 2>&1; then
	apt-get install -y --no-install-recommends systemd-timesyncd
fi
systemctl enable systemd-timesyncd.service systemd-time-wait-sync.service
