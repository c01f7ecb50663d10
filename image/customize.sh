#!/bin/bash
# Runs inside the image's root (chroot, arm64 under qemu-user), after the
# Debian packages are installed and image/rootfs/ is copied in; called by
# image/build.sh with the root and boot PARTUUIDs in ROOT_DEV and BOOT_DEV.
# What the pi-gen stage did, on a plain Debian: the agent's package, journald,
# SSH, time, read-mostly, and nothing that must differ per box baked in.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
: "${ROOT_DEV:?}" "${BOOT_DEV:?}"

# The agent (postinst: its user, state directory, running binary; units
# enabled), then proof that its binary runs on this system.
apt-get install -y -q --no-install-recommends /tmp/zenchef-edge_arm64.deb
rm -f /tmp/zenchef-edge_arm64.deb
systemctl enable zenchef-edge.service zenchef-edge-recover.timer zenchef-edge-provision.service
test "$(readlink -f /usr/bin/zenchef-edge)" = /var/lib/zenchef-edge/bin/zenchef-edge
zenchef-edge --version
zenchef-edge self-test
test "$(stat -c %a:%U /etc/zenchef-edge/agent.toml)" = 600:root

# The technician account: uid 1000, no password (locked: SSH by key only,
# keys from the boot partition), sudo without a password.
useradd -m -u 1000 -s /bin/bash -c "Zenchef technician" zenchef
chmod 0700 /home/zenchef
chmod 0440 /etc/sudoers.d/zenchef
visudo -cq
# root: no password either (the field stays "*": no login by password).
usermod -p '*' root

# Journal: persistent (its directory with systemd's group and ACLs).
install -d -m 2755 -g systemd-journal /var/log/journal

# SSH: host keys made at first boot (zenchef-ssh-hostkeys.service).
rm -f /etc/ssh/ssh_host_*
systemctl enable ssh.service zenchef-ssh-hostkeys.service

# Time: NTP, and time-sync.target waits for it (capped at 90 s).
systemctl enable systemd-timesyncd.service systemd-time-wait-sync.service

# Network: DHCP on the Ethernet port (systemd-networkd), resolved for DNS.
systemctl enable systemd-networkd.service systemd-resolved.service
ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf
echo zenchef-edge >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tzenchef-edge\n::1\tlocalhost ip6-localhost ip6-loopback\n' >/etc/hosts

# Read-mostly: no periodic apt or man-db jobs (the box changes through the
# agent's self-update or a technician), no swap file (none is installed).
systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer
# Nobody answers questions on the console at first boot (locale, timezone,
# root password): the box has neither keyboard nor screen in use.
systemctl mask systemd-firstboot.service
systemctl enable zenchef-grow-root.service
if dpkg -s dphys-swapfile >/dev/null 2>&1; then echo "a swap file package is installed" >&2; exit 1; fi

# /etc/fstab: the store lives on the root ext4 with its defaults (journal,
# barriers, data=ordered: fsync means "on the card"), noatime; the root
# grows to the card at first boot; scratch space in RAM.
cat >/etc/fstab <<FSTAB
# <file system>	<mount point>	<type>	<options>	<dump>	<pass>
${ROOT_DEV}	/	ext4	defaults,noatime,x-systemd.growfs	0	1
${BOOT_DEV}	/boot/firmware	vfat	defaults,noatime,umask=0022	0	2
tmpfs	/tmp	tmpfs	defaults,noatime,nosuid,nodev,mode=1777,size=64m	0	0
tmpfs	/var/tmp	tmpfs	defaults,noatime,nosuid,nodev,mode=1777,size=64m	0	0
FSTAB
root_opts="$(awk '$2 == "/" { print $4 }' /etc/fstab)"
case ",${root_opts}," in
	*,nobarrier,* | *,barrier=0,* | *,data=writeback,* | *,async,*)
		echo "root mount options '${root_opts}' make fsync dishonest" >&2
		exit 1
		;;
esac

# The initrd, made once here (image/build.sh diverted update-initramfs
# while the packages were installed: each run costs minutes under
# qemu-user). MODULES=list: the drivers that reach the root on a Pi 3/4
# (SD card, USB disk) and on QEMU's virt machine (virtio), not the 1,500
# modules of MODULES=most (a smaller initrd, and minutes less to build).
cat >/etc/initramfs-tools/conf.d/zenchef.conf <<CONF
# Installed by the zenchef-edge image (image/customize.sh).
MODULES=list
CONF
cat >>/etc/initramfs-tools/modules <<MODS
# Installed by the zenchef-edge image: the root's drivers.
# Raspberry Pi 3/4 SD card (the platform's clocks, GPIOs, DMA are built in).
sdhci-iproc
bcm2835
reset-raspberrypi
# USB disks (Pi 3: dwc2; Pi 4: xhci behind PCIe).
dwc2
xhci-pci
usb-storage
uas
sd_mod
# QEMU's virt machine (image/boot-test.sh).
virtio_pci
virtio_mmio
virtio_blk
# The root file system.
ext4
crc32c_generic
MODS
rm /usr/sbin/update-initramfs
dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.zenchef --remove /usr/sbin/update-initramfs
kver="$(ls /lib/modules)"

# The Raspberry Pi's kernel command line (raspi-firmware writes cmdline.txt
# and config.txt from /etc/default/raspi-firmware when it copies the kernel
# and initrd to the boot partition): root by PARTUUID, the Pi 3/4 serial
# port and the screen as consoles.
sed -i -E "s|^#?ROOTPART=.*|ROOTPART=${ROOT_DEV}|; s|^#?CONSOLES=.*|CONSOLES=\"tty0 ttyS1,115200\"|" /etc/default/raspi-firmware
grep -qx "ROOTPART=${ROOT_DEV}" /etc/default/raspi-firmware
update-initramfs -c -k "$kver"
# (Listed once, then searched: `lsinitramfs | grep -q` fails under
# pipefail when grep stops reading early.)
initrd_files="$(lsinitramfs "/boot/initrd.img-$kver")"
for want in /fsck.ext4 /virtio_blk.ko /virtio_pci.ko /sdhci-iproc.ko /bcm2835.ko /ext4.ko; do
	grep -qF "$want" <<<"$initrd_files" || { echo "no $want in the initrd" >&2; exit 1; }
done
DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware "$kver"
ls -l /boot/firmware/vmlinuz-* /boot/firmware/initrd.img-*
cat /boot/firmware/cmdline.txt

# Made at first boot, never baked in (image/build.sh checks): machine-id,
# SSH host keys (above). No package lists, caches or logs of the build.
rm -f /var/lib/dbus/machine-id /var/lib/systemd/random-seed
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old
find /var/log -type f -delete
