#!/bin/bash
# Boots a Debian 12 amd64 container with systemd as PID 1 (systemd-nspawn,
# private network: loopback only), installs the amd64 package and checks the
# unit under a real systemd: the configuration made by postinst (no conffile,
# kept by a reinstall), the message catalog compiled, provisioning from the
# boot partition (configuration and SSH keys for the account zenchef) under
# the hardened unit, READY and the STATUS= line, watchdog pings and a
# watchdog restart of a frozen agent, journald fields and MESSAGE_IDs
# explained by `journalctl -x`, the sandbox (writable and executable only
# where docs/packaging.md says), the exposure of the three services, exit 78
# not restarted, the recover timer, a clean stop. About 3 minutes on 2
# cores; .ci/run runs it unless the run is already 30 min in
# (ZENCHEF_CI_BOOT=always|never|auto).
#
#   packaging/ci/boot-test.sh PACKAGE_amd64.deb
#
# Needs root, debootstrap and systemd-container.
set -euo pipefail

deb="$(realpath "$1")"
mirror="${mirror:-$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
# No mirror host is written in the repository: the machine's own apt source,
# or $mirror from the environment.
if [ -z "$mirror" ]; then
	echo "no apt source in /etc/apt/sources.list.d/debian.sources: set mirror=URI" >&2
	exit 2
fi
work="$(mktemp -d)"
root="$work/root"
nspawn_pid=""

cleanup() {
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		kill -TERM "$nspawn_pid" 2>/dev/null || true
		for _ in $(seq 30); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 1; done
		kill -KILL "$nspawn_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "BOOT TEST FAILED: $*" >&2
	if [ -n "${leader:-}" ]; then
		in_ct journalctl -u zenchef-edge --no-pager -n 30 >&2 || true
	fi
	exit 1
}

t0=$SECONDS
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,ca-certificates bookworm "$root" "$mirror" >/dev/null
echo "debootstrap amd64 with systemd: $((SECONDS - t0)) s"

cp "$deb" "$root/tmp/zenchef-edge.deb"
chroot "$root" dpkg -i /tmp/zenchef-edge.deb >/dev/null </dev/null
echo "zc-boot-test" >"$root/etc/hostname"

# 0. The configuration is postinst's copy of the example, root 0600, and no
#    conffile; the message catalog is compiled.
cfg="$root/etc/zenchef-edge/agent.toml"
[ "$(stat -c %a:%U:%G "$cfg")" = 600:root:root ] || fail "config mode $(stat -c %a:%U:%G "$cfg")"
cmp -s "$cfg" "$root/usr/share/zenchef-edge/agent.toml.example" || fail "config is not the example"
# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
[ -z "$(chroot "$root" dpkg-query -W -f='${Conffiles}' zenchef-edge)" ] || fail "the package has conffiles"
chroot "$root" journalctl --list-catalog 4fac5ba927984ba39ef0914e4d897685 | grep -F 'zenchef-edge: A POS event is a dead letter' >/dev/null \
	|| fail "the message catalog is not in journalctl's database"
echo "config: made by postinst (0600 root, no conffile); catalog compiled"
mdns_port=$((20000 + RANDOM % 20000))
# The shipped file with the provisioning values filled in; mDNS on loopback
# and a non-standard port; Zenchef on a closed loopback port.
sed -e 's|^token = "" *# REQUIRED: MQTT.*|token = "cashpad-secret"|' \
	-e 's|^restaurant_id = "".*|restaurant_id = "654321"|' \
	-e 's|^token = "" *# REQUIRED: API token|token = "zenchef-secret"|' \
	-e "s|^mdns_port = 5353|mdns_port = ${mdns_port}|" \
	-e 's|^interfaces = \[\].*|interfaces = ["lo"]|' \
	-e 's|^base_url = "https://api.zenchef.com/api/v1"|base_url = "http://127.0.0.1:9"|' \
	-e '/^\[update\]/,/^\[/ s|^enabled = true|enabled = false|' \
	"$root/etc/zenchef-edge/agent.toml" >"$work/agent.toml"
install -m 600 "$work/agent.toml" "$root/etc/zenchef-edge/agent.toml"
cp "$work/agent.toml" "$work/good.toml"
# A reinstall (what an unattended upgrade does) keeps an edited
# configuration and asks nothing (stdin is closed: a prompt would fail).
chroot "$root" dpkg -i /tmp/zenchef-edge.deb >/dev/null </dev/null || fail "reinstall failed"
cmp -s "$root/etc/zenchef-edge/agent.toml" "$work/good.toml" || fail "the reinstall changed the configuration"
[ "$(stat -c %a:%U "$cfg")" = 600:root ] || fail "the reinstall changed the config's mode"
echo "reinstall: configuration kept, no prompt"

# Provisioning at boot: a configuration and SSH keys on the boot partition,
# for the account the unit names (the image's admin user).
chroot "$root" useradd -m -u 1000 -s /bin/sh zenchef
chroot "$root" chmod 0700 /home/zenchef
mkdir -p "$root/boot/firmware/zenchef"
{ echo "# provisioned from the card"; cat "$work/good.toml"; } >"$work/drop.toml"
cp "$work/drop.toml" "$root/boot/firmware/zenchef-edge.toml"
key='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f boot-test@zenchef'
printf '%s\nnot a key\n' "$key" >"$root/boot/firmware/zenchef/authorized_keys"

systemd-nspawn -D "$root" -b --private-network --register=no --keep-unit \
	--machine=zc-boot-test --console=passive >"$work/nspawn.log" 2>&1 &
nspawn_pid=$!
leader=""
for _ in $(seq 60); do
	leader="$(pgrep -P "$nspawn_pid" -x systemd | head -1 || true)"
	[ -n "$leader" ] && break
	sleep 1
done
[ -n "$leader" ] || { cat "$work/nspawn.log" >&2; fail "the container did not start"; }
in_ct() { nsenter -t "$leader" -a "$@"; }
prop() { in_ct systemctl show -p "$2" --value "$1"; }

for _ in $(seq 60); do
	state="$(in_ct systemctl is-system-running 2>/dev/null || true)"
	case "$state" in running | degraded) break ;; esac
	sleep 1
done
echo "container: $state"

# 1. Started (READY=1 received), and running as its own user.
[ "$(prop zenchef-edge.service ActiveState)" = active ] || fail "not active"
[ "$(prop zenchef-edge.service NRestarts)" = 0 ] || fail "restarted at start"
# Read the journal once, then search it: `journalctl | grep -q` under
# pipefail fails when grep stops reading early (journalctl dies of SIGPIPE),
# which happened as soon as the agent logged enough lines.
journal_json="$(in_ct journalctl SYSLOG_IDENTIFIER=zenchef-edge -o json --no-pager)"
grep -F '" started: store ' <<<"$journal_json" >/dev/null \
	|| grep -F 'started: store' <<<"$journal_json" >/dev/null \
	|| fail "no start line from the agent in the journal"
grep -F '"_TRANSPORT":"journal"' <<<"$journal_json" >/dev/null \
	|| fail "the agent does not log through the native journal protocol"
echo "started: ok (Type=notify, journald)"

# 1b. Provisioning ran under its hardened unit, before the agent.
[ "$(prop zenchef-edge-provision.service Result)" = success ] || fail "provision: $(prop zenchef-edge-provision.service Result)"
cmp -s "$root/etc/zenchef-edge/agent.toml" "$work/drop.toml" || fail "the drop was not installed"
[ "$(stat -c %a:%U "$root/etc/zenchef-edge/agent.toml")" = 600:root ] || fail "installed config mode"
head -1 "$root/boot/firmware/zenchef-edge.toml" | grep -F '# zenchef-edge: consumed' >/dev/null || fail "the drop was not scrubbed"
grep -F 'zenchef-secret' "$root/boot/firmware/zenchef-edge.toml" >/dev/null && fail "a token is left on the card"
[ "$(cat "$root/home/zenchef/.ssh/authorized_keys")" = "$key" ] || fail "keys: $(cat "$root/home/zenchef/.ssh/authorized_keys" 2>&1)"
# Names as the container resolves them (its /etc/passwd, not this machine's).
keys_stat="$(in_ct stat -c %a:%U:%G /home/zenchef/.ssh/authorized_keys)"
[ "$keys_stat" = 600:zenchef:zenchef ] || fail "authorized_keys mode $keys_stat"
ssh_stat="$(in_ct stat -c %a:%U /home/zenchef/.ssh)"
[ "$ssh_stat" = 700:zenchef ] || fail ".ssh mode $ssh_stat"
[ ! -e "$root/boot/firmware/zenchef/authorized_keys" ] || fail "the keys file is still on the card"
echo "provision: configuration installed and scrubbed, 1 key for zenchef (hardened unit)"

# 1c. systemctl status shows the agent's STATUS= line (no POS on the
#     container's loopback, Zenchef on a closed port).
status=""
for _ in $(seq 15); do
	status="$(prop zenchef-edge.service StatusText)"
	case "$status" in *"Zenchef OUTAGE"*) break ;; esac
	sleep 1
done
echo "StatusText: $status"
# What a technician sees (read once, then printed: no pipe into a reader
# that stops early under pipefail).
status_out="$(in_ct systemctl status --no-pager --lines=0 zenchef-edge.service 2>&1 || true)"
printf '%s\n' "$status_out" | sed -n '1,8p'
case "$status" in
	"POS not found · queue 0 · Zenchef OUTAGE · Pay off · last: Zenchef: "*) ;;
	*) fail "unexpected StatusText: $status" ;;
esac
# The outage's journal line carries its MESSAGE_ID, explained by the catalog.
explained="$(in_ct journalctl -x --no-pager MESSAGE_ID=755729d3b32b4beb80babb8ac4901102)"
grep -F 'Zenchef OUTAGE began' <<<"$explained" >/dev/null || fail "no outage line with its MESSAGE_ID"
grep -F 'Subject: Zenchef stopped answering: an outage began' <<<"$explained" >/dev/null \
	|| fail "journalctl -x does not explain it: $explained"
echo "STATUS= and MESSAGE_ID: ok (journalctl -x explains the outage)"

# 2. Exposure as the running systemd computes it.
for unit in zenchef-edge.service zenchef-edge-provision.service zenchef-edge-recover.service; do
	in_ct systemd-analyze security "$unit" | tail -1
done

# 3. The sandbox, from inside it (same unit settings, as zenchef-edge).
mkdir -p "$root/etc/systemd/system/zenchef-edge.service.d"
cat >"$root/etc/systemd/system/zenchef-edge.service.d/probe.conf" <<'EOF'
[Service]
ExecStartPost=/bin/sh -c '\
B=/var/lib/zenchef-edge/bin; o=/var/lib/zenchef-edge/probe.txt; : >$o; \
cp $B/zenchef-edge $B/.zenchef-edge.staged && ln -f $B/zenchef-edge $B/zenchef-edge.previous \
  && mv -f $B/.zenchef-edge.staged $B/zenchef-edge && echo swap-ok >>$o; \
$B/zenchef-edge.previous --version >/dev/null 2>&1 && echo exec-bin-ok >>$o; \
cp $B/zenchef-edge /var/lib/zenchef-edge/x; /var/lib/zenchef-edge/x --version >/dev/null 2>&1 \
  && echo exec-state-ALLOWED >>$o; rm -f /var/lib/zenchef-edge/x; \
touch /usr/lib/zenchef-edge/x 2>/dev/null && echo write-usr-ALLOWED >>$o; \
touch /etc/zenchef-edge/x 2>/dev/null && echo write-etc-ALLOWED >>$o; \
cat /etc/zenchef-edge/agent.toml >/dev/null 2>&1 && echo read-etc-config-ALLOWED >>$o; true'
EOF
in_ct systemctl daemon-reload
in_ct systemctl restart zenchef-edge.service
sleep 3
probe="$(cat "$root/var/lib/zenchef-edge/probe.txt")"
echo "sandbox probe: $(echo "$probe" | tr '\n' ' ')"
[ "$probe" = "$(printf 'swap-ok\nexec-bin-ok')" ] || fail "sandbox probe: $probe"
rm "$root/etc/systemd/system/zenchef-edge.service.d/probe.conf"
in_ct systemctl daemon-reload
in_ct systemctl restart zenchef-edge.service
sleep 2
[ "$(prop zenchef-edge.service ActiveState)" = active ] || fail "not active after the binary swap"
echo "self-update layout: ok (swap in bin/, exec only from bin/ and /usr, /etc and /usr read-only)"

# 4. Watchdog: pings arrive; a frozen agent is killed and restarted.
w1="$(prop zenchef-edge.service WatchdogTimestampMonotonic)"
sleep 7
w2="$(prop zenchef-edge.service WatchdogTimestampMonotonic)"
[ "$w2" -gt "$w1" ] || fail "no WATCHDOG=1 within 7 s of an idle agent"
restarts="$(prop zenchef-edge.service NRestarts)"
in_ct systemctl kill --kill-whom=main -s SIGSTOP zenchef-edge.service
t0=$SECONDS
while [ "$(prop zenchef-edge.service NRestarts)" = "$restarts" ]; do
	[ $((SECONDS - t0)) -lt 90 ] || fail "a frozen agent was not restarted within 90 s"
	sleep 2
done
echo "watchdog: frozen agent restarted after $((SECONDS - t0)) s ($(prop zenchef-edge.service WatchdogUSec))"

# 5. A configuration error: exit 78, not restarted; the recover timer starts
#    it again once the file is fixed.
sed -i 's|^token = "cashpad-secret"|token = ""|' "$root/etc/zenchef-edge/agent.toml"
# A manual restart flushes NRestarts to 0; an automatic one would make it 1.
in_ct systemctl restart zenchef-edge.service 2>/dev/null || true
sleep 8
[ "$(prop zenchef-edge.service ExecMainStatus)" = 78 ] || fail "expected exit 78"
[ "$(prop zenchef-edge.service ActiveState)" = failed ] || fail "expected failed"
[ "$(prop zenchef-edge.service NRestarts)" = 0 ] || fail "restarted on exit 78"
install -m 600 "$work/good.toml" "$root/etc/zenchef-edge/agent.toml"
in_ct systemctl start zenchef-edge-recover.service
sleep 3
[ "$(prop zenchef-edge.service ActiveState)" = active ] || fail "recover did not restart it"
echo "exit 78: not restarted; recover timer: restarted it once fixed"

# 6. A clean stop is left alone by the recover timer.
in_ct systemctl stop zenchef-edge.service
[ "$(prop zenchef-edge.service ExecMainStatus)" = 0 ] || fail "unclean stop"
in_ct systemctl start zenchef-edge-recover.service
sleep 2
[ "$(prop zenchef-edge.service ActiveState)" = inactive ] || fail "recover started a stopped agent"
echo "stop: exit 0, left stopped by the recover timer"

# 7. Purge removes the configuration postinst made (it is no conffile).
in_ct dpkg --purge zenchef-edge >/dev/null </dev/null || fail "purge failed"
[ ! -e "$root/etc/zenchef-edge/agent.toml" ] || fail "purge left /etc/zenchef-edge/agent.toml"
[ ! -e "$root/var/lib/zenchef-edge" ] || fail "purge left /var/lib/zenchef-edge"
echo "purge: configuration and state removed"
echo "boot test: ok"
