#!/bin/bash -e
# Few writes to the SD card, and honest ones where they matter.
fstab="${ROOTFS_DIR}/etc/fstab"

# Scratch space in RAM.
for dir in /tmp /var/tmp; do
	if ! grep -qE "^tmpfs[[:space:]]+${dir}[[:space:]]" "$fstab"; then
		echo "tmpfs ${dir} tmpfs defaults,noatime,nosuid,nodev,mode=1777,size=64m 0 0" >>"$fstab"
	fi
done

# The root file system holds /var/lib/zenchef-edge (the store): it must keep
# ext4's defaults that make fsync mean "on the card" (barriers on, ordered
# data). Refuse an fstab that weakens them.
root_opts="$(awk '$2 == "/" { print $4 }' "$fstab")"
case ",${root_opts}," in
	*,nobarrier,* | *,barrier=0,* | *,data=writeback,* | *,async,*)
		echo "04-read-mostly: root mount options '${root_opts}' make fsync dishonest" >&2
		exit 1
		;;
esac
# noatime: reading a file does not write to the card.
if [ -n "$root_opts" ] && [[ ",${root_opts}," != *,noatime,* ]]; then
	sed -i -E "s#^([^[:space:]]+[[:space:]]+/[[:space:]]+ext4[[:space:]]+)${root_opts}#\1${root_opts},noatime#" "$fstab"
fi
