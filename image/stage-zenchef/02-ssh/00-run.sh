#!/bin/bash -e
# SSH by key only. Keys come from the boot partition (readable from any
# computer): put them in zenchef/authorized_keys there before the first boot.
install -D -m 644 files/sshd-zenchef.conf "${ROOTFS_DIR}/etc/ssh/sshd_config.d/zenchef.conf"
install -D -m 755 files/zenchef-import-ssh-keys "${ROOTFS_DIR}/usr/local/sbin/zenchef-import-ssh-keys"
install -D -m 644 files/zenchef-ssh-keys.service \
	"${ROOTFS_DIR}/etc/systemd/system/zenchef-ssh-keys.service"
