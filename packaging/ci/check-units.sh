#!/bin/bash
# systemd-analyze verify and security on the units of a built package.
#
#   packaging/ci/check-units.sh PACKAGE.deb [MAX_EXPOSURE]
#
# `verify` checks that ExecStart= binaries and Documentation= man pages
# exist, so it runs in a private mount namespace where the package's files
# are laid over /usr/bin, /usr/share/man and /var/lib (overlayfs): nothing
# on this machine changes. Needs root.
#
# `security` prints the exposure of each service and fails above its bound
# (docs/packaging.md, "Hardening"): MAX_EXPOSURE (default 1.5) for the agent,
# 2.0 for zenchef-edge-provision.service (root with CAP_CHOWN, CAP_FOWNER,
# CAP_DAC_OVERRIDE), 1.5 for zenchef-edge-recover.service (root, no
# capability).
set -euo pipefail

deb="$1"
max="${2:-1.5}"
declare -A bounds=(
	[zenchef-edge.service]="$max"
	[zenchef-edge-provision.service]=2.0
	[zenchef-edge-recover.service]=1.5
)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

dpkg-deb -x "$deb" "$work/pkg"
# What postinst would do: the running binary in the state directory.
mkdir -p "$work/var-lib/zenchef-edge/bin" "$work/usr-bin"
cp "$work/pkg/usr/lib/zenchef-edge/zenchef-edge" "$work/var-lib/zenchef-edge/bin/zenchef-edge"
cp -P "$work/pkg/usr/bin/zenchef-edge" "$work/usr-bin/zenchef-edge"
mkdir -p "$work/o1" "$work/o2"

units=(
	"$work/pkg/usr/lib/systemd/system/zenchef-edge.service"
	"$work/pkg/usr/lib/systemd/system/zenchef-edge-recover.service"
	"$work/pkg/usr/lib/systemd/system/zenchef-edge-recover.timer"
	"$work/pkg/usr/lib/systemd/system/zenchef-edge-provision.service"
)
echo "systemd-analyze verify ${units[*]##*/}"
# shellcheck disable=SC2016 # expanded by the inner shell
unshare -m --propagation private bash -euc '
	w="$1"; shift
	mount -t overlay overlay -o "lowerdir=$w/usr-bin:/usr/bin" /usr/bin
	mount -t overlay overlay -o "lowerdir=$w/var-lib:/var/lib" /var/lib
	mount -t overlay overlay -o "lowerdir=$w/pkg/usr/share/man:/usr/share/man" /usr/share/man
	test -x /usr/bin/zenchef-edge
	systemd-analyze verify "$@"
' _ "$work" "${units[@]}"
echo "verify: ok"

failed=0
for unit in zenchef-edge.service zenchef-edge-provision.service zenchef-edge-recover.service; do
	bound="${bounds[$unit]}"
	echo "systemd-analyze security --offline=true $unit"
	report="$(cd "$work/pkg/usr/lib/systemd/system" && systemd-analyze security --offline=true "$unit")"
	printf '%s\n' "$report" | grep -F '✗' || true
	line="$(printf '%s\n' "$report" | grep -F 'Overall exposure level')"
	echo "$line"
	level="$(printf '%s\n' "$line" | sed -E 's/.*: ([0-9]+\.[0-9]+).*/\1/')"
	if ! awk -v l="$level" -v m="$bound" 'BEGIN { exit !(l <= m) }'; then
		echo "$unit: exposure $level is above $bound" >&2
		failed=1
	fi
	if [ "$unit" = zenchef-edge.service ]; then
		echo "SECURITY EXPOSURE: $level (max $bound)"
	else
		echo "SECURITY EXPOSURE $unit: $level (max $bound)"
	fi
done
[ "$failed" -eq 0 ]
