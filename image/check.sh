#!/bin/bash
# Static checks of the image recipe (cheap; the image itself is built and
# booted by .ci/run): syntax and shellcheck of its scripts, every unit
# customize.sh enables is shipped, and the configuration files exist.
set -euo pipefail
cd "$(dirname "$0")"

scripts=(build.sh customize.sh boot-test.sh check.sh rootfs/usr/lib/zenchef-image/grow-root)
shellcheck -s sh rootfs/etc/initramfs-tools/hooks/zenchef-fsck
for s in "${scripts[@]}"; do
	bash -n "$s"
	[ -x "$s" ] || { echo "$s is not executable" >&2; exit 1; }
done
shellcheck -s bash "${scripts[@]}"
echo "bash -n and shellcheck: ${#scripts[@]} scripts ok"

# Every zenchef-* unit customize.sh enables is shipped in rootfs/ (or by the
# package: zenchef-edge*).
missing=0
while IFS= read -r unit; do
	case "$unit" in zenchef-edge*) continue ;; esac
	if [ ! -e "rootfs/etc/systemd/system/$unit" ]; then
		echo "customize.sh enables $unit, which rootfs/ does not ship" >&2
		missing=1
	fi
done < <(grep -oE 'zenchef-[a-z-]+\.(service|timer)' customize.sh | sort -u)
for f in etc/ssh/sshd_config.d/zenchef.conf etc/systemd/journald.conf.d/zenchef.conf \
	etc/sudoers.d/zenchef etc/systemd/system/systemd-time-wait-sync.service.d/zenchef.conf; do
	[ -f "rootfs/$f" ] || { echo "rootfs/$f is missing" >&2; missing=1; }
done
[ "$missing" -eq 0 ]
echo "image files present"
