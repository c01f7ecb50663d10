#!/bin/bash -e
# SSH by key only. Keys come from the boot partition (readable from any
# computer): put them in zenchef/authorized_keys there before the first boot;
# zenchef-edge-provision.service (from the package, enabled in 00-agent)
# gives them to the user zenchef before sshd starts (image/README.md).
install -D -m 644 files/sshd-zenchef.conf "${ROOTFS_DIR}/etc/ssh/sshd_config.d/zenchef.conf"
