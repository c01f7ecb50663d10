#!/bin/bash -e
# Host side: put the agent's arm64 package into the image's /tmp.
# image/build.sh copies it into files/ (it is not committed).
shopt -s nullglob
debs=(files/zenchef-edge_*_arm64.deb)
if [ "${#debs[@]}" -ne 1 ]; then
	echo "00-agent: expected exactly one files/zenchef-edge_*_arm64.deb, found ${#debs[@]}" >&2
	exit 1
fi
install -m 644 "${debs[0]}" "${ROOTFS_DIR}/tmp/zenchef-edge_arm64.deb"
