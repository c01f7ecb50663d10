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
expect '-rw-r--r--' 'usr/share/zenchef-edge/agent.toml.example'
expect '-rw-r--r--' 'usr/share/man/man1/zenchef-edge.1.gz'
expect '-rw-r--r--' 'usr/lib/systemd/catalog/zenchef-edge.catalog'
expect '-rw-r--r--' 'usr/lib/systemd/system/zenchef-edge.service'
expect '-rw-r--r--' 'usr/lib/systemd/system/zenchef-edge-recover.service'
expect '-rw-r--r--' 'usr/lib/systemd/system/zenchef-edge-recover.timer'
expect '-rw-r--r--' 'usr/lib/systemd/system/zenchef-edge-provision.service'
expect '-rw-r--r--' 'usr/lib/sysusers.d/zenchef-edge.conf'
expect '-rw-r--r--' 'usr/lib/tmpfiles.d/zenchef-edge.conf'
# The configuration that holds the tokens is made by postinst, never shipped
# (and so never a conffile): an unattended upgrade must not stop on a
# conffile prompt. Nothing else is a conffile either.
if grep -E ' \./etc/' <<<"$listing"; then
	echo "the package ships files in /etc (above): they would be conffiles" >&2
	exit 1
fi
ctrl="$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)"
if grep -x './conffiles' <<<"$ctrl" >/dev/null; then
	conffiles="$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)"
	if [ -n "$conffiles" ]; then
		echo "conffiles: $conffiles (expected none)" >&2
		exit 1
	fi
fi
echo "conffiles: none"
# The man page renders without warnings.
man_warnings="$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/man/man1/zenchef-edge.1.gz | gzip -dc |
	MANWIDTH=80 man --warnings -E UTF-8 -l - 2>&1 >/dev/null || true)"
if [ -n "$man_warnings" ]; then
	echo "man page warnings: $man_warnings" >&2
	exit 1
fi
echo "contents: ok"

echo "lintian:"
# Errors fail the step; warnings are printed.
lintian --tag-display-limit 0 --fail-on error "$deb"
echo "lintian: no error"
