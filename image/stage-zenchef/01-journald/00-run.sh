#!/bin/bash -e
# Persistent journal, capped: a week of agent logs survives a reboot, and
# the journal never takes more than 64 MiB of the SD card.
install -D -m 644 files/zenchef-journald.conf \
	"${ROOTFS_DIR}/etc/systemd/journald.conf.d/zenchef.conf"
install -d -m 2755 "${ROOTFS_DIR}/var/log/journal"
