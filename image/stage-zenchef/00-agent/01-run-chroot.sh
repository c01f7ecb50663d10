#!/bin/bash -e
# Inside the image: install the package (its postinst creates the user, the
# state directory, the running binary in /var/lib/zenchef-edge/bin and
# enables the units), then prove the binary runs here.
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends /tmp/zenchef-edge_arm64.deb
rm -f /tmp/zenchef-edge_arm64.deb

# The units are enabled by the package; make it explicit for the image.
systemctl enable zenchef-edge.service zenchef-edge-recover.timer
# Zero-touch provisioning from the boot partition, before the agent.
systemctl enable zenchef-edge-provision.service

# The symlink resolves to the copy the self-update may replace.
test "$(readlink -f /usr/bin/zenchef-edge)" = /var/lib/zenchef-edge/bin/zenchef-edge
test -x /var/lib/zenchef-edge/bin/zenchef-edge
/usr/bin/zenchef-edge --version
# SQLite is compiled for the target: open, migrate, write, read back.
/usr/bin/zenchef-edge self-test

# The configuration ships with empty tokens: provisioning fills them in
# (see docs/README-install.md). It must stay root-only.
test "$(stat -c %a:%U /etc/zenchef-edge/agent.toml)" = 600:root
