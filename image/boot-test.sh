#!/bin/bash
# Boots the zenchef-edge image under QEMU (arm64 `virt` machine, the
# image's own Debian kernel and initrd, the image as a virtio disk) and
# checks the box as a restaurant gets it: provisioning from the boot
# partition, the agent READY under systemd, SSH by key only, the root grown
# to the disk, the journal kept across a reboot, the unit's exposure.
#
#   image/boot-test.sh IMAGE.img.xz
#
# No packet leaves this machine: QEMU user networking with restrict=on (the
# guest reaches nothing, not even DNS or NTP), with one hostfwd rule (SSH,
# on 127.0.0.1) and guestfwd rules to services on this machine's loopback.
# Needs qemu-system-arm, mtools, fdisk, openssh-client, xz-utils. Every step
# prints what it took; ZENCHEF_BOOT_TIMEOUT bounds each boot (default 900 s).
set -euo pipefail

img_xz="$(realpath "$1")"
here="$(cd "$(dirname "$0")" && pwd)"
boot_timeout="${ZENCHEF_BOOT_TIMEOUT:-900}"
work="$(mktemp -d /var/tmp/zenchef-boot-test.XXXXXX)"
qemu_pid=""
sim_pids=()
T_ALL=$SECONDS
T0=$SECONDS
timed() { echo "-- $1: $((SECONDS - T0)) s"; T0=$SECONDS; }

cleanup() {
	for p in "${sim_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill -KILL "$qemu_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "BOOT TEST FAILED: $*" >&2
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		on_box sudo journalctl -b --no-pager -n 60 -u zenchef-edge -u zenchef-edge-provision >&2 || true
	fi
	echo "--- last lines of the serial console:" >&2
	tail -n 40 "$work/console.log" >&2 || true
	exit 1
}

# A copy of the image, 1 GiB larger than built: the root must grow into it.
xz -dc "$img_xz" >"$work/disk.img"
built_bytes="$(stat -c %s "$work/disk.img")"
truncate -s +1G "$work/disk.img"
# Partition offsets (bytes) from the MBR.
read -r boot_off root_off < <(sfdisk -J "$work/disk.img" | awk -F'[:,]' '
	/"start"/ { for (i = 1; i <= NF; i++) if ($i ~ /"start"/) { gsub(/[^0-9]/, "", $(i + 1)); s[n++] = $(i + 1) * 512 } }
	END { print s[0], s[1] }')
fat="$work/disk.img@@${boot_off}"
export MTOOLS_SKIP_CHECK=1

# The image's kernel, initrd and command line, from its boot partition:
# the files its config.txt names, as the Pi's firmware reads them.
config_txt="$(mcopy -n -i "$fat" ::config.txt - | tr -d '\r')"
kernel_file="$(sed -n 's/^kernel=//p' <<<"$config_txt")"
initrd_file="$(sed -n 's/^initramfs //p' <<<"$config_txt")"
{ [ -n "$kernel_file" ] && [ -n "$initrd_file" ]; } || fail "config.txt names no kernel or initramfs: $config_txt"
mcopy -n -i "$fat" "::$kernel_file" "$work/vmlinuz"
mcopy -n -i "$fat" "::$initrd_file" "$work/initrd.img"
echo "config.txt: kernel=${kernel_file}, initramfs ${initrd_file}"
cmdline="$(mcopy -n -i "$fat" ::cmdline.txt - | tr -d '\r\n')"
grep -qE '(^| )root=PARTUUID=' <<<"$cmdline" || fail "no root=PARTUUID= in cmdline.txt: $cmdline"
echo "cmdline.txt: $cmdline"
# The same command line, with QEMU's serial port as the console.
append="$(tr ' ' '\n' <<<"$cmdline" | grep -v -e '^console=' -e '^$' | paste -sd ' ') console=ttyAMA0"

# The provisioning drop: a configuration (the POS at a static address and
# Zenchef, both on the box's own loopback where SSH forwards them to the
# simulators on this machine: the agent takes plain MQTT and http:// only
# there) and a key made for this run.
ssh-keygen -q -t ed25519 -N '' -C boot-test@zenchef -f "$work/id"
pos_port=1883
sed -e 's|^token = "" *# REQUIRED: MQTT.*|token = "cashpad-boot-test"\nhost = "127.0.0.1"\nport = '"$pos_port"'\ninstallation_id = "CP-4F2A91"|' \
	-e 's|^restaurant_id = "".*|restaurant_id = "654321"|' \
	-e 's|^token = "" *# REQUIRED: API token|token = "zenchef-boot-test"|' \
	-e 's|^base_url = "https://api.zenchef.com/api/v1"|base_url = "http://127.0.0.1:8781/api/v1"|' \
	-e '/^\[update\]/,/^\[/ s|^enabled = true|enabled = false|' \
	"$here/../packaging/agent.toml" >"$work/zenchef-edge.toml"
grep -q '^host = "127.0.0.1"' "$work/zenchef-edge.toml" || fail "the test's configuration was not made"
# Zenchef Pay (step c): on, at the box's loopback like Zenchef, where SSH
# forwards :8782 to pay-sim. The token contains "zenchef-boot-test", so
# step b's scrub check covers it too.
pay_token="zenchef-boot-test-pay"
sed -i -e '/^\[zenchef_pay\]/,/^\[/ {
	s|^enabled = false|enabled = true|
	s|^base_url = .*|base_url = "http://127.0.0.1:8782/pos/v1"|
	s|^# token = "".*|token = "'"$pay_token"'"|
}' "$work/zenchef-edge.toml"
grep -qx "token = \"$pay_token\"" "$work/zenchef-edge.toml" || fail "the test's configuration has no [zenchef_pay] token"
mcopy -i "$fat" "$work/zenchef-edge.toml" ::zenchef-edge.toml
mmd -i "$fat" ::zenchef
mcopy -i "$fat" "$work/id.pub" ::zenchef/authorized_keys
timed "image copied, drop written (boot at ${boot_off}, root at ${root_off})"

ssh_port=$((20000 + RANDOM % 20000))
ssh_opts=(-i "$work/id" -p "$ssh_port" -o StrictHostKeyChecking=accept-new
	-o UserKnownHostsFile="$work/known_hosts" -o ConnectTimeout=10 -o BatchMode=yes
	-o LogLevel=ERROR)
# shellcheck disable=SC2029 # the command runs on the box, as given
on_box() { ssh "${ssh_opts[@]}" zenchef@127.0.0.1 "$@"; }
prop() { on_box systemctl show -p "$2" --value "$1"; }

# QEMU's arm64 emulation: pointer authentication with QEMU's own cheap
# algorithm (the architected one costs much under software emulation).
cpu=max
if qemu-system-aarch64 -M virt -cpu help 2>/dev/null | grep -q max &&
	qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on -S -display none -monitor none \
		-serial none -no-reboot -daemonize -pidfile "$work/probe.pid" 2>/dev/null; then
	kill "$(cat "$work/probe.pid")" 2>/dev/null || true
	cpu=max,pauth-impdef=on
fi

# The NIC without an option ROM (romfile=): the kernel is given, nothing
# boots from the network, so QEMU needs no iPXE ROM (ipxe-qemu).
boot() {
	local n="$1"
	: >"$work/console.log"
	qemu-system-aarch64 -M virt -cpu "$cpu" -smp 2 -m 1024 \
		-kernel "$work/vmlinuz" -initrd "$work/initrd.img" \
		-append "$append" \
		-drive if=none,file="$work/disk.img",format=raw,id=d \
		-device virtio-blk-pci,drive=d \
		-netdev "user,id=n,restrict=on,hostfwd=tcp:127.0.0.1:${ssh_port}-:22${GUESTFWD:-}" \
		-device virtio-net-pci,netdev=n,romfile= \
		-device virtio-rng-pci \
		-display none -monitor none -serial "file:$work/console.log" \
		-no-reboot &
	qemu_pid=$!
	local t0=$SECONDS
	until on_box true 2>/dev/null; do
		kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited during boot $n"
		[ $((SECONDS - t0)) -lt "$boot_timeout" ] || fail "no SSH after ${boot_timeout} s (boot $n)"
		sleep 5
	done
	BOOT_SSH_S=$((SECONDS - t0))
	local state
	state="$(on_box systemctl is-system-running --wait 2>/dev/null || true)"
	BOOT_DONE_S=$((SECONDS - t0))
	echo "boot $n: SSH after ${BOOT_SSH_S} s, system ${state} after ${BOOT_DONE_S} s (QEMU start to answer)"
}

# Stops the box as a technician would (poweroff; -no-reboot makes QEMU exit).
halt_box() {
	on_box sudo systemctl poweroff 2>/dev/null || true
	local t0=$SECONDS
	while kill -0 "$qemu_pid" 2>/dev/null; do
		[ $((SECONDS - t0)) -lt 300 ] || fail "the box did not power off in 300 s"
		sleep 2
	done
	wait "$qemu_pid" 2>/dev/null || true
	qemu_pid=""
	echo "powered off in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- a. boot
echo "== a. first boot: multi-user.target, the agent READY"
boot 1
[ "$(prop multi-user.target ActiveState)" = active ] || fail "multi-user.target not active"
# No NTP server is reachable here (on purpose): systemd-time-wait-sync gives
# up after its 90 s cap, which is the only failure allowed.
failed_units="$(on_box systemctl list-units --failed --plain --no-legend | awk '{print $1}' | paste -sd ' ')"
case "$failed_units" in
	"" | systemd-time-wait-sync.service) echo "failed units: ${failed_units:-none}" ;;
	*) fail "failed units: $failed_units" ;;
esac
[ "$(prop zenchef-edge.service ActiveState)" = active ] || fail "zenchef-edge: $(prop zenchef-edge.service ActiveState)"
# Type=notify: "active" means READY=1 was received.
status="$(prop zenchef-edge.service StatusText)"
[ -n "$status" ] || fail "no StatusText"
echo "StatusText: $status"
ready_us="$(prop zenchef-edge.service ActiveEnterTimestampMonotonic)"
awk -v u="$ready_us" 'BEGIN { printf "boot to READY (kernel start to READY=1, guest monotonic clock): %.1f s\n", u / 1e6 }'
on_box systemd-analyze time 2>/dev/null | head -1 || true
timed "a. first boot to READY"

# ---------------------------------------------------------------- b. provisioning, SSH
echo "== b. the drop consumed and scrubbed; SSH by key only"
[ "$(prop zenchef-edge-provision.service Result)" = success ] || fail "provision: $(prop zenchef-edge-provision.service Result)"
on_box sudo head -1 /boot/firmware/zenchef-edge.toml | grep -F '# zenchef-edge: consumed' >/dev/null || fail "the drop was not consumed"
if on_box sudo grep -c -e zenchef-boot-test -e cashpad-boot-test /boot/firmware/zenchef-edge.toml >/dev/null; then
	fail "a token is left on the boot partition"
fi
on_box test ! -e /boot/firmware/zenchef/authorized_keys || fail "the keys drop is still on the boot partition"
on_box sudo cmp -s /etc/zenchef-edge/agent.toml - <"$work/zenchef-edge.toml" || fail "the installed configuration is not the drop"
[ "$(on_box sudo stat -c %a:%U /etc/zenchef-edge/agent.toml)" = 600:root ] || fail "configuration mode"
echo "drop: installed as /etc/zenchef-edge/agent.toml (0600 root), scrubbed on the card; keys file removed"
# A password is refused before any is asked: the server offers publickey only.
pw_out="$(ssh -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR \
	-o PubkeyAuthentication=no -o PreferredAuthentications=password,keyboard-interactive \
	zenchef@127.0.0.1 true 2>&1)" && fail "a login without a key was accepted"
grep -F 'Permission denied (publickey)' <<<"$pw_out" >/dev/null || fail "password login: $pw_out"
root_out="$(ssh "${ssh_opts[@]}" root@127.0.0.1 true 2>&1)" && fail "root login accepted"
grep -F 'Permission denied' <<<"$root_out" >/dev/null || fail "root login: $root_out"
sshd_t="$(on_box sudo sshd -T)"
for want in 'permitrootlogin no' 'passwordauthentication no' 'kbdinteractiveauthentication no'; do
	grep -ix "$want" <<<"$sshd_t" >/dev/null || fail "sshd -T: no '$want'"
done
echo "ssh: key login ok; password refused ($pw_out); root refused"
# Made on this box, not in the image.
mid="$(on_box cat /etc/machine-id)"
[[ "$mid" =~ ^[0-9a-f]{32}$ ]] || fail "machine-id: $mid"
on_box test -s /etc/ssh/ssh_host_ed25519_key.pub || fail "no SSH host key"
echo "first boot made machine-id $mid and the host key $(on_box ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | awk '{print $2}')"
[ "$(on_box sudo passwd -S zenchef | awk '{print $2}')" != P ] || fail "the account zenchef has a password"
[ "$(on_box sudo passwd -S root | awk '{print $2}')" != P ] || fail "root has a password"
# Grown to the disk, file system included.
root_bytes="$(on_box findmnt -bno SIZE /)"
[ "$root_bytes" -gt $((built_bytes - root_off + 900 * 1048576)) ] ||
	fail "root not grown: $root_bytes bytes on a disk of $(stat -c %s "$work/disk.img")"
echo "root grown: $(awk -v b="$root_bytes" 'BEGIN { printf "%.0f MiB", b / 1048576 }') ($(on_box findmnt -no OPTIONS /))"
for want in /tmp /var/tmp; do
	[ "$(on_box findmnt -no FSTYPE "$want")" = tmpfs ] || fail "$want is not a tmpfs"
done
[ -z "$(on_box "awk 'NR > 1' /proc/swaps")" ] || fail "a swap is active"
for t in apt-daily.timer apt-daily-upgrade.timer man-db.timer; do
	[ "$(prop "$t" LoadState)" = masked ] || fail "$t is not masked"
done
[ "$(on_box sudo systemctl show -p TimeoutStartUSec --value systemd-time-wait-sync.service)" = "1min 30s" ] ||
	fail "systemd-time-wait-sync is not capped at 90 s"
[ "$(on_box journalctl --header 2>/dev/null | grep -c '/var/log/journal')" -gt 0 ] ||
	on_box sudo test -d "/var/log/journal/$mid" || fail "the journal is not persistent"
echo "read-mostly: /tmp and /var/tmp in RAM, no swap, apt/man-db timers masked, time-wait-sync capped at 90 s, persistent journal"
timed "b. provisioning and SSH"

# ---------------------------------------------------------------- c. events
echo "== c. POS events through the box to Zenchef"
# The simulators of this repository on this machine's loopback; SSH
# forwards the box's 127.0.0.1:1883 (MQTT) and :8781 (Zenchef) to them.
sim_bin="${ZENCHEF_SIM_BIN:-$here/../${CARGO_TARGET_DIR:-target}/debug}"
{ [ -x "$sim_bin/pos-sim" ] && [ -x "$sim_bin/zenchef-sim" ]; } ||
	fail "no pos-sim/zenchef-sim in $sim_bin (cargo build -p zenchef-sim)"
mqtt_port=$((ssh_port + 1))
zc_port=$((ssh_port + 2))
"$sim_bin/zenchef-sim" --port "$zc_port" --token zenchef-boot-test --restaurant-id 654321 >"$work/zenchef-sim.log" 2>&1 &
sim_pids+=($!)
"$sim_bin/pos-sim" --mqtt-port "$mqtt_port" --mdns-port $((ssh_port + 3)) --token cashpad-boot-test \
	--speed 600 --zenchef-pay >"$work/pos-sim.log" 2>&1 &
sim_pids+=($!)
sleep 2
ssh "${ssh_opts[@]}" -N -o ExitOnForwardFailure=yes -o ServerAliveInterval=10 \
	-R "${pos_port}:127.0.0.1:${mqtt_port}" -R "8781:127.0.0.1:${zc_port}" zenchef@127.0.0.1 &
sim_pids+=($!)
# -- c (Zenchef Pay): pay-sim, its forward (box :8782), one guest paying
# from the phone an order that pos-sim --zenchef-pay leaves open for it.
[ -x "$sim_bin/pay-sim" ] || fail "no pay-sim in $sim_bin (cargo build -p zenchef-sim)"
pay_port=$((ssh_port + 4))
"$sim_bin/pay-sim" --port "$pay_port" --token "$pay_token" --installation-id CP-4F2A91 \
	--guest-pays-first 1 --tip-cents 300 >"$work/pay-sim.log" 2>&1 &
sim_pids+=($!)
ssh "${ssh_opts[@]}" -N -o ExitOnForwardFailure=yes -o ServerAliveInterval=10 \
	-R "8782:127.0.0.1:${pay_port}" zenchef@127.0.0.1 &
sim_pids+=($!)
# -- end c (Zenchef Pay)
t0=$SECONDS
until grep -qF '/changeStatus -> 2' "$work/zenchef-sim.log" && grep -qF '/pos_ticket -> 2' "$work/zenchef-sim.log" &&
	grep -qE 'pos-sim: [1-9][0-9]* reservations retained' "$work/pos-sim.log"; do
	[ $((SECONDS - t0)) -lt 600 ] || {
		tail -5 "$work/pos-sim.log" "$work/zenchef-sim.log" >&2
		fail "no seated/ticket call at Zenchef or no reservation at the POS in 600 s"
	}
	sleep 5
done
echo "after $((SECONDS - t0)) s: $(grep -m1 -F 'reservations retained' "$work/pos-sim.log")"
echo "zenchef-sim: $(grep -cF '/changeStatus -> 2' "$work/zenchef-sim.log") changeStatus, $(grep -cF '/pos_ticket -> 2' "$work/zenchef-sim.log") pos_ticket calls; first: $(grep -m1 -F '/changeStatus -> 2' "$work/zenchef-sim.log")"
# A replayed call (same PublisherModelId, after a timeout) is answered
# from the fake's memory and marked: counted, not an error.
echo "replayed calls answered idempotently: $(grep -cF '(duplicate)' "$work/zenchef-sim.log" || true)"
# -- c (Zenchef Pay): the guest's payment settled by the agent at the POS,
# which closes the bill with it, acked at Zenchef Pay, on the ticket.
t0=$SECONDS
until grep -qE '^pay-sim: payment .* cents: (settled|rejected)' "$work/pay-sim.log"; do
	[ $((SECONDS - t0)) -lt 300 ] || {
		tail -5 "$work/pay-sim.log" "$work/pos-sim.log" >&2
		fail "no phone payment settled or rejected in 300 s"
	}
	sleep 5
done
paid="$(grep -m1 -E '^pay-sim: payment .* cents: paid by the guest$' "$work/pay-sim.log")" || fail "no guest payment"
pay_id="$(awk '{ print $3 }' <<<"$paid")"
pay_order="$(awk '{ print $5 }' <<<"$paid")"
echo "$paid"
grep -m1 -E "^pay-sim: payment ${pay_id} .* cents: settled\$" "$work/pay-sim.log" ||
	fail "payment ${pay_id}: $(grep -F "$pay_id" "$work/pay-sim.log" | tail -1)"
grep -m1 -E "^pos-sim: settle ${pay_id} order ${pay_order} .*: bill.paid seq [0-9]+, bill closed by zenchef_pay ${pay_id}\$" "$work/pos-sim.log" ||
	fail "the POS did not close ${pay_order} with ${pay_id}: $(grep -F 'pos-sim: settle' "$work/pos-sim.log" | tail -3)"
until grep -qF "zenchef-sim: ticket ${pay_order} on booking " "$work/zenchef-sim.log"; do
	[ $((SECONDS - t0)) -lt 300 ] || fail "no ticket for ${pay_order} at Zenchef in 300 s"
	sleep 2
done
grep -m1 -F "zenchef-sim: ticket ${pay_order} on booking " "$work/zenchef-sim.log" | grep -F "zenchef_pay" ||
	fail "the ticket of ${pay_order} has no zenchef_pay payment"
echo "phone payment settled $((SECONDS - t0)) s after the events above; Zenchef Pay calls: $(grep -c '^#' "$work/pay-sim.log")"
# -- end c (Zenchef Pay)
echo "StatusText: $(prop zenchef-edge.service StatusText)"
timed "c. events"

# ---------------------------------------------------------------- g. exposure
echo "== g. systemd-analyze security inside the image"
max_exposure="$(sed -n 's/^max="${2:-\([0-9.]*\)}"$/\1/p' "$here/../packaging/ci/check-units.sh")"
[ -n "$max_exposure" ] || fail "no bound found in packaging/ci/check-units.sh"
exposure="$(on_box sudo systemd-analyze security zenchef-edge.service | awk '/Overall exposure level/ { print $(NF - 2) }')"
awk -v l="$exposure" -v m="$max_exposure" 'BEGIN { exit !(l <= m) }' || fail "exposure ${exposure} above ${max_exposure}"
echo "exposure of zenchef-edge.service on the box: ${exposure} (bound ${max_exposure})"
timed "g. exposure"

# ---------------------------------------------------------------- d. reboot
echo "== d. a reboot keeps the journal and the store"
halt_box
boot 2
prev="$(on_box sudo journalctl -b -1 -u zenchef-edge -o cat --no-pager)"
grep -F 'started' <<<"$prev" >/dev/null || fail "no agent line in the previous boot's journal"
echo "previous boot's journal: $(grep -c . <<<"$prev") lines of zenchef-edge, e.g. $(grep -F started <<<"$prev" | head -1)"
[ "$(prop zenchef-edge.service ActiveState)" = active ] || fail "zenchef-edge not active after the reboot"
timed "d. reboot"

halt_box
echo "boot test: ok ($((SECONDS - T_ALL)) s)"
