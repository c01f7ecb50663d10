#!/bin/bash
# Installs the arm64 package into a fresh Debian 12 arm64 chroot (debootstrap
# --foreign, second stage under qemu-user-static) and runs the agent there.
#
#   packaging/ci/arm64-chroot.sh PACKAGE_arm64.deb [MIRROR]
#
# Needs root, qemu-user-static and binfmt_misc (registered here if missing).
set -euo pipefail

deb="$(realpath "$1")"
mirror="${2:-$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
mirror="${mirror:-http://deb.debian.org/debian}"
root="$(mktemp -d)/root"

cleanup() {
	umount "$root/proc" 2>/dev/null || true
	rm -rf "$(dirname "$root")"
}
trap cleanup EXIT

if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
	grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
fi

t0=$SECONDS
debootstrap --foreign --arch=arm64 --variant=minbase bookworm "$root" "$mirror" >/dev/null
echo "debootstrap first stage: $((SECONDS - t0)) s"
t0=$SECONDS
chroot "$root" /debootstrap/debootstrap --second-stage >/dev/null
echo "debootstrap second stage (under qemu): $((SECONDS - t0)) s"

cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/zenchef-edge_arm64.deb"
t0=$SECONDS
chroot "$root" sh -euc '
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends /tmp/zenchef-edge_arm64.deb
'
echo "apt-get install (with systemd): $((SECONDS - t0)) s"

# What the image stage checks, on the installed package.
# shellcheck disable=SC2016 # expanded by the inner shell
chroot "$root" sh -euxc '
	uname -m
	getent passwd zenchef-edge
	test "$(readlink -f /usr/bin/zenchef-edge)" = /var/lib/zenchef-edge/bin/zenchef-edge
	test "$(stat -c %U:%a /var/lib/zenchef-edge)" = zenchef-edge:750
	test "$(stat -c %U /var/lib/zenchef-edge/bin/zenchef-edge)" = zenchef-edge
	test "$(stat -c %U:%a /etc/zenchef-edge/agent.toml)" = root:600
	test -L /etc/systemd/system/multi-user.target.wants/zenchef-edge.service
	test -L /etc/systemd/system/timers.target.wants/zenchef-edge-recover.timer
	zenchef-edge --version
	zenchef-edge self-test
	# As the service user, in its state directory, as systemd would run it.
	setpriv --reuid=zenchef-edge --regid=zenchef-edge --clear-groups \
		zenchef-edge self-test --store /var/lib/zenchef-edge/agent.db
	# The shipped configuration stops with exit 78 (no restart loop).
	rc=0; zenchef-edge status >/dev/null 2>&1 || rc=$?; test "$rc" = 78
'
# Reinstalling over a self-updated binary: the package wins, the replaced
# binary is kept as .previous, the store stays.
chroot "$root" sh -euc '
	cp /usr/lib/zenchef-edge/zenchef-edge /tmp/shipped
	printf "self-updated" >>/var/lib/zenchef-edge/bin/zenchef-edge
	cp /var/lib/zenchef-edge/bin/zenchef-edge /tmp/updated
	dpkg -i /tmp/zenchef-edge_arm64.deb >/dev/null
	cmp /tmp/shipped /var/lib/zenchef-edge/bin/zenchef-edge
	cmp /tmp/updated /var/lib/zenchef-edge/bin/zenchef-edge.previous
	test -f /var/lib/zenchef-edge/agent.db
	dpkg --purge zenchef-edge >/dev/null
	test ! -e /var/lib/zenchef-edge
	test ! -e /usr/bin/zenchef-edge
	# Made by postinst, not a conffile: purge removes it, tokens included.
	test ! -e /etc/zenchef-edge/agent.toml
'
echo "arm64 chroot: install, self-test as root and as zenchef-edge, reinstall over an update, purge: ok"
