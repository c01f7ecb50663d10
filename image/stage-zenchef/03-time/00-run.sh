#!/bin/bash -e
# time-sync.target waits for NTP, at most 90 s: the agent is ordered after it
# (After=time-sync.target) but must start even when the box is offline.
install -D -m 644 files/time-wait-sync-cap.conf \
	"${ROOTFS_DIR}/etc/systemd/system/systemd-time-wait-sync.service.d/zenchef.conf"
