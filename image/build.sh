#!/bin/bash
# Builds the zenchef-edge Raspberry Pi image (Pi 3/4, arm64) from Debian 12
# packages only (main + non-free-firmware), with mmdebstrap; see
# image/README.md and docs/decisions.md ("The box's image").
#
#   image/build.sh --out DIR [--deb PATH] [--mirror URI] [--security-mirror URI]
#
# Writes DIR/zenchef-edge-<version>-arm64.img.xz, DIR/…img.bmap and
# DIR/SHA256SUMS. Without --deb, builds the arm64 package as .ci/run does.
# The Debian mirrors are the build machine's own (its apt sources for
# bookworm and bookworm-security) unless given. Needs root, mmdebstrap,
# qemu-user-static with binfmt_misc, dosfstools, mtools, e2fsprogs, fdisk,
# bmap-tools, xz-utils (.ci/run installs them).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
out="" deb="" mirror="" sec_mirror="" keep=""
usage() { echo "usage: $0 --out DIR [--deb PATH] [--mirror URI] [--security-mirror URI] [--keep-root DIR]" >&2; exit 2; }
while [ "$#" -gt 0 ]; do
	case "$1" in
		--out) out="${2:?}"; shift 2 ;;
		--deb) deb="$(realpath "${2:?}")"; shift 2 ;;
		--mirror) mirror="${2:?}"; shift 2 ;;
		--security-mirror) sec_mirror="${2:?}"; shift 2 ;;
		# Keeps the root directory there (to look into it); never needed.
		--keep-root) keep="${2:?}"; shift 2 ;;
		*) usage ;;
	esac
done
[ -n "$out" ] || usage
[ "$(id -u)" = 0 ] || { echo "$0: run as root (mmdebstrap, chroot, device nodes)" >&2; exit 2; }

trap 'echo "$0: failed at line $LINENO" >&2' ERR
T_ALL=$SECONDS
T0=$SECONDS
timed() { echo "-- $1: $((SECONDS - T0)) s"; T0=$SECONDS; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# URIs of a suite in the host's apt sources (deb822 .sources, then
# one-line sources.list).
host_uri() {
	local suite="$1" f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		awk -v s="$suite" '
			/^[[:space:]]*$/ { if (hit && uri != "") { print uri; exit } uri = ""; hit = 0; next }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
			END { if (hit && uri != "") print uri }
		' "$f" | head -1
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -e "$f" ] || continue
		awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == s) print $i }' "$f"
	done
}
[ -n "$mirror" ] || mirror="$(host_uri bookworm | head -1)"
[ -n "$sec_mirror" ] || sec_mirror="$(host_uri bookworm-security | head -1)"
if [ -z "$mirror" ] || [ -z "$sec_mirror" ]; then
	echo "no apt source for bookworm and bookworm-security on this machine: pass --mirror and --security-mirror" >&2
	exit 2
fi

# arm64 binaries run here through qemu-user (F flag: opened at registration,
# so it works inside the chroot).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
	update-binfmts --enable qemu-aarch64 2>/dev/null ||
		grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
fi
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || { echo "qemu-aarch64 binfmt without the F flag" >&2; exit 1; }

if [ -z "$deb" ]; then
	echo "== building the arm64 package (Debian's cargo, as .ci/run)"
	(
		cd "$repo"
		td="${CARGO_TARGET_DIR:-target}"
		# Linked by rustup's rust-lld when there is one (relative
		# relocations packed: .ci/run explains), else by GNU ld.
		flags=""
		gcc_ld="$(rustc --print sysroot 2>/dev/null)/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld"
		[ ! -x "$gcc_ld/ld.lld" ] || flags="-Clink-arg=-B$gcc_ld -Clink-arg=-fuse-ld=lld"
		RUSTC=/usr/bin/rustc CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
			CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$flags" \
			/usr/bin/cargo build --release --locked --target aarch64-unknown-linux-gnu
		mkdir -p "$td/debian"
		rm -f "$td"/debian/zenchef-edge_*_arm64.deb
		cargo deb --no-build --profile release --locked --target aarch64-unknown-linux-gnu --output "$td/debian/"
	)
	deb="$(ls "$repo/${CARGO_TARGET_DIR:-target}"/debian/zenchef-edge_*_arm64.deb)"
	timed "arm64 package"
fi
version="$(dpkg-deb -f "$deb" Version)"
[ "$(dpkg-deb -f "$deb" Architecture)" = arm64 ] || { echo "$deb is not an arm64 package" >&2; exit 2; }
name="zenchef-edge-${version}-arm64"
mkdir -p "$out"
out="$(realpath "$out")"

work="$(mktemp -d /var/tmp/zenchef-image.XXXXXX)"
cleanup() {
	if [ -n "$keep" ] && [ -d "$work/root" ]; then
		rm -rf "$keep" && mv "$work/root" "$keep" && echo "root kept in $keep"
	fi
	rm -rf "$work"
}
trap cleanup EXIT
root="$work/root"

# One MBR disk identifier per build: the partitions are found by PARTUUID.
disk_id="$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
root_dev="PARTUUID=${disk_id}-02"
boot_dev="PARTUUID=${disk_id}-01"

echo "== mmdebstrap: bookworm arm64 (mirror ${mirror}, security ${sec_mirror})"
aptopts=()
# The host's own leniency for an archive snapshot whose Release has expired.
if apt-config dump Acquire::Check-Valid-Until | grep -q '"false"'; then
	aptopts+=(--aptopt='Acquire::Check-Valid-Until "false"')
fi
packages=(
	systemd-sysv udev dbus libpam-systemd kmod
	linux-image-arm64 initramfs-tools zstd raspi-firmware
	openssh-server sudo
	systemd-timesyncd systemd-resolved netbase iproute2 ca-certificates
	e2fsprogs dosfstools fdisk
)
# shellcheck disable=SC2016 # $1 is the root, expanded by mmdebstrap's hooks
mmdebstrap --architectures=arm64 --variant=minbase --mode=root --format=directory \
	--components=main,non-free-firmware \
	--include="$(IFS=,; echo "${packages[*]}")" \
	"${aptopts[@]}" \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-include=/usr/share/doc/zenchef-edge/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.zenchef --add /usr/sbin/update-initramfs' \
	--essential-hook='ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
	--customize-hook='cp -a "'"$here"'/rootfs/." "$1/"' \
	--customize-hook='cp "'"$deb"'" "$1/tmp/zenchef-edge_arm64.deb"' \
	--customize-hook='cp "'"$here"'/customize.sh" "$1/tmp/customize.sh"' \
	--customize-hook='chroot "$1" env ROOT_DEV='"$root_dev"' BOOT_DEV='"$boot_dev"' /bin/bash /tmp/customize.sh' \
	--customize-hook='rm -f "$1/tmp/customize.sh"' \
	bookworm "$root" \
	"deb $mirror bookworm main non-free-firmware" \
	"deb $mirror bookworm-updates main non-free-firmware" \
	"deb $sec_mirror bookworm-security main non-free-firmware"
timed "root file system (mmdebstrap, arm64 under qemu-user)"

# The boot partition's content leaves the root (which keeps the empty
# mount point); nothing per-box is in either.
test -s "$root/boot/firmware/config.txt"
grep -q "root=${root_dev}" "$root/boot/firmware/cmdline.txt"
mkdir "$work/boot"
mv "$root"/boot/firmware/* "$work/boot/"
# Made at first boot, never baked in: systemd's first boot makes the
# machine-id ("uninitialized" makes it a first boot), the SSH host keys come
# from zenchef-ssh-hostkeys.service.
echo uninitialized >"$root/etc/machine-id"
if ls "$root"/etc/ssh/ssh_host_*key* >/dev/null 2>&1; then
	echo "SSH host keys in the image" >&2
	exit 1
fi

# Sizes: boot 256 MiB (two kernels and initrds fit, for an upgrade); root
# = its content + 25 % + 128 MiB (ext4's own tables, the journal, the store
# and the journal's first days before the root grows to the card).
boot_mib=256
used_kib="$(du -sk --apparent-size "$root" | cut -f1)"
root_mib=$(((used_kib * 5 / 4) / 1024 + 128))
start_mib=4

mkfs.vfat -F 32 -n ZC-BOOT -C "$work/boot.fat" $((boot_mib * 1024)) >/dev/null
mcopy -s -p -m -i "$work/boot.fat" "$work/boot"/* ::/
truncate -s "${root_mib}M" "$work/root.ext4"
mkfs.ext4 -q -L zc-root -d "$root" "$work/root.ext4"
img="$work/$name.img"
truncate -s $(((start_mib + boot_mib + root_mib) * 1048576)) "$img"
sfdisk -q "$img" <<SFDISK
label: dos
label-id: 0x${disk_id}
start=${start_mib}MiB, size=${boot_mib}MiB, type=c, bootable
start=$((start_mib + boot_mib))MiB, type=83
SFDISK
dd if="$work/boot.fat" of="$img" bs=1M seek="$start_mib" conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$img" bs=1M seek=$((start_mib + boot_mib)) conv=notrunc,sparse status=none
root_used="$(dumpe2fs -h "$work/root.ext4" 2>/dev/null | awk -F: '/^Block count/ { c = $2 } /^Free blocks/ { f = $2 } /^Block size/ { b = $2 } END { printf "%d", (c - f) * b }')"
timed "partitions (FAT ${boot_mib} MiB, ext4 ${root_mib} MiB)"

bmaptool create -o "$out/$name.img.bmap" "$img"
# -3: twice as fast as the default -6 on this image, for a few % more.
xz -T0 -3 -f -c "$img" >"$out/$name.img.xz"
timed "bmap and xz"
(cd "$out" && sha256sum "$name.img.xz" "$name.img.bmap" >SHA256SUMS)

echo
echo "image:   $out/$name.img.xz"
echo "disk id: ${disk_id} (root ${root_dev}, boot ${boot_dev})"
echo "size:    $(mib "$(stat -c %s "$out/$name.img.xz")") compressed, $(mib "$(stat -c %s "$img")") uncompressed"
echo "root fs: $(mib "$root_used") used of $(mib $((root_mib * 1048576))) (content $(mib $((used_kib * 1024))))"
echo "boot fs: $(mib $(($(du -sk --apparent-size "$work/boot" | cut -f1) * 1024))) used of ${boot_mib} MiB"
echo "build:   $((SECONDS - T_ALL)) s"
