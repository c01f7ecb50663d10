#!/bin/bash
# Builds the zenchef-edge Raspberry Pi image with pi-gen in Docker.
#
#   image/build.sh PI_GEN_DIR ZENCHEF_EDGE_ARM64_DEB
#
# PI_GEN_DIR: a checkout of pi-gen's arm64 branch (64-bit Raspberry Pi OS).
# The .deb: `cargo deb --target aarch64-unknown-linux-gnu` (see
# docs/README-install.md). FIRST_USER_PASS must be set in the environment.
# The image lands in PI_GEN_DIR/deploy/.
set -euo pipefail

if [ "$#" -ne 2 ]; then
	echo "usage: $0 PI_GEN_DIR ZENCHEF_EDGE_ARM64_DEB" >&2
	exit 2
fi
pigen="$(cd "$1" && pwd)"
deb="$2"
here="$(cd "$(dirname "$0")" && pwd)"

if [ ! -x "$pigen/build-docker.sh" ]; then
	echo "$pigen is not a pi-gen checkout (no build-docker.sh)" >&2
	exit 2
fi
case "$(basename "$deb")" in
	zenchef-edge_*_arm64.deb) ;;
	*)
		echo "$deb is not a zenchef-edge arm64 package" >&2
		exit 2
		;;
esac
if [ -z "${FIRST_USER_PASS:-}" ]; then
	echo "set FIRST_USER_PASS (console password of the admin user)" >&2
	exit 2
fi

rm -rf "$pigen/stage-zenchef"
cp -a "$here/stage-zenchef" "$pigen/stage-zenchef"
rm -f "$pigen"/stage-zenchef/00-agent/files/*.deb
cp "$deb" "$pigen/stage-zenchef/00-agent/files/"
cp "$here/config" "$pigen/config"
printf 'FIRST_USER_PASS=%q\n' "$FIRST_USER_PASS" >>"$pigen/config"
chmod 600 "$pigen/config"
# Lite's own image is not needed: only stage-zenchef exports one.
touch "$pigen/stage2/SKIP_IMAGES"

cd "$pigen"
./build-docker.sh
ls -l deploy/
