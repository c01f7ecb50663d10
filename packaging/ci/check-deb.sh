#!/bin/bash
# Contents, metadata and lintian of a built package.
#
#   packaging/ci/check-deb.sh PACKAGE.deb ARCH
set -euo pipefail

deb="$1"
arch="$2"

dpkg-deb -I "$deb"
listing="$(dpkg-deb -c "$deb")"
printf '%s\n' "$listing"

test "$(dpkg-deb -f "$deb" Architecture)" = "$arch"
dpkg-deb -f "$deb" Depends | grep systemd >/dev/null

expect() { # MODE PATH: the archive holds PATH with that mode string
	if ! grep -Eq "^$1 (0/0|root/root) .* \./$2( |\$)" <<<"$listing"; then
		echo "missing or wrong mode: $1 $2" >&2
		exit 1
	fi
}
expect '-rwxr-xr-x' 'usr/lib/zenchef-edge/zenchef-edge'
expect 'lrwxrwxrwx' 'usr/bin/zenchef-edge -> /var/lib/zenchef-edge/bin/zenchef-edge'
expect '-rw-------' 'etc/zenchef-edge/agent.toml'
expect '-rw-r--r--' 'usr/lib/systemd/system/zenchef-edge.service'
expect '-rw-r--r--' 'usr/lib/systemd/system/zenchef-edge-recover.service'
expect '-rw-r--r--' 'usr/lib/systemd/system/zenchef-edge-recover.timer'
expect '-rw-r--r--' 'usr/lib/systemd/system/zenchef-edge-provision.service'
expect '-rw-r--r--' 'usr/lib/sysusers.d/zenchef-edge.conf'
expect '-rw-r--r--' 'usr/lib/tmpfiles.d/zenchef-edge.conf'
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -x '/etc/zenchef-edge/agent.toml' >/dev/null
echo "contents: ok"

echo "lintian:"
# Errors fail the step; warnings are printed.
lintian --tag-display-limit 0 --fail-on error "$deb"
echo "lintian: no error"
