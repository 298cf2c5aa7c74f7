#!/bin/bash
# Guest scenario: living on a host.
#  1. readiness over a real NOTIFY_SOCKET: `serve` sends READY=1 (with a
#     STATUS line) only once /dev/ublkbN is live, and STOPPING=1 on SIGTERM,
#     which flushes and removes the device (exit 0);
#  2. a crashed `serve` (kill -9) is brought back by the next `serve`
#     through recovery, while fio writes with crc32c verify: zero errors;
#  3. `restart` (live upgrade) of a background server under a mounted ext4
#     with fio crc32c verify running: zero errors, a new server;
#  4. `restart` of a supervised server (under a NOTIFY_SOCKET it hands over
#     by re-executing itself: the same pid recovers the device, and the
#     supervisor — a shell loop that would start `serve` again on an exit —
#     sees none; tests/guest/systemd.sh runs the real systemd); and on 6.16+
#     `grow` of a supervised server's (image) backing;
#  5. udevd with the shipped rule gives /dev/disk/by-id/pmem-stack-<uuid>.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test -b /dev/pmem0
require test -x /lib/systemd/systemd-udevd

cd /tmp
# notify_listen FILE: a datagram socket at /tmp/notify that appends every
# message it receives (one per line, newlines as '|') to FILE.
notify_listen() {
	rm -f /tmp/notify "$1"
	python3 -u - "$1" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("/tmp/notify")
while True:
    msg = s.recv(4096).decode()
    with open(sys.argv[1], "a") as f:
        f.write(msg.replace("\n", "|") + "\n")
PY
	listener=$!
	for _ in $(seq 100); do [ -S /tmp/notify ] && break; sleep 0.05; done
}
# wait_for FILE PATTERN: until a line of FILE matches (30 s).
wait_for() {
	for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}
writes() { awk -v d="ublkb$1" '$3 == d { print $8 }' /proc/diskstats; }

# --- 1. readiness --------------------------------------------------------
notify_listen /tmp/n1
NOTIFY_SOCKET=/tmp/notify "$P" serve /dev/pmem0 --reserve 512M >/tmp/serve1.out 2>/tmp/serve1.err &
serve_pid=$!
check "READY=1 arrives" wait_for /tmp/n1 '^READY=1'
ready_line=$(grep -m1 '^READY=1' /tmp/n1 || true)
note "notification: $ready_line"
check "STATUS names the device" test -n "$(echo "$ready_line" | grep 'STATUS=serving /dev/ublkb0')"
expect_eq "the device is live when READY=1 is read" "$(state_of 0)" live
check "STATUS=starting came first" test "$(head -1 /tmp/n1)" == "STATUS=starting /dev/ublkb0"
expect_eq "the serving pid is serve's" "$(server_pid 0)" "$serve_pid"
expect_eq "the record says supervised" "$(python3 -c 'import json; print(json.load(open("/run/pmem-stack/ublkb0.json"))["supervised"])')" True
refused "a second serve of the same backing" "already served as /dev/ublkb0" "$P" serve /dev/pmem0
kill -TERM "$serve_pid"
rc=0
wait "$serve_pid" || rc=$?
expect_eq "serve exits 0 on SIGTERM" "$rc" 0
check "STOPPING=1 arrives" wait_for /tmp/n1 '^STOPPING=1'
expect_eq "the device is removed" "$(ublk_count)" 0
kill "$listener"

# --- 2. crash, then serve recovers ---------------------------------------
notify_listen /tmp/n2
NOTIFY_SOCKET=/tmp/notify "$P" serve /dev/pmem0 >/dev/null 2>/tmp/serve2.err &
serve_pid=$!
check "READY=1 (existing volume)" wait_for /tmp/n2 '^READY=1'
fio_bg crash /dev/ublkb0 96M
for _ in $(seq 200); do [ "$(writes 0)" -gt 2000 ] && break; sleep 0.05; done
kill -9 "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
check "the device is quiesced after the crash" wait_state 0 quiesced
: >/tmp/n2
NOTIFY_SOCKET=/tmp/notify "$P" serve /dev/pmem0 >/dev/null 2>/tmp/serve3.err &
serve_pid=$!
check "READY=1 after recovery" wait_for /tmp/n2 '^READY=1'
check "serve logged the recovery" grep -q "recovering it" /tmp/serve3.err
expect_eq "the same device, live" "$(state_of 0)" live
rc=0
wait "$fio_pid" || rc=$?
expect_eq "fio across the crash: exit status" "$rc" 0
expect_eq "fio across the crash: 96 MiB written and verified" "$(fio_verdict crash $((96 << 20)))" ok
kill -TERM "$serve_pid"
wait "$serve_pid" || true
kill "$listener"
expect_eq "no devices left" "$(ublk_count)" 0

# --- 3. restart under a mounted ext4 -------------------------------------
dev=$("$P" add /dev/pmem0 | tail -1)
expect_eq "added" "$dev" /dev/ublkb0
check "mkfs.ext4" mkfs.ext4 -q -F /dev/ublkb0
mkdir -p /tmp/mnt
check "mount" mount /dev/ublkb0 /tmp/mnt
write_files /tmp/mnt 4
fio_bg restart /tmp/mnt/fio.dat 128M
for _ in $(seq 400); do [ "$(writes 0)" -gt 3000 ] && break; sleep 0.05; done
old_pid=$(server_pid 0)
out=$("$P" restart 0 2>/tmp/restart.err) || fail "restart: $(cat /tmp/restart.err)"
expect_eq "restart prints the device" "$(echo "$out" | tail -1)" /dev/ublkb0
new_pid=$(server_pid 0)
check "a new server serves it" test "$new_pid" != "$old_pid" -a -e "/proc/$new_pid"
check "the old server is gone" gone "$old_pid"
expect_eq "live after restart" "$(state_of 0)" live
rc=0
wait "$fio_pid" || rc=$?
expect_eq "fio on ext4 across restart: exit status" "$rc" 0
expect_eq "fio on ext4 across restart: 128 MiB written and verified" "$(fio_verdict restart $((128 << 20)))" ok
check "files written before the restart verify" verify_files /tmp/mnt
# Restarts right away, idle, back to back: each successor opens the backing
# the instant its predecessor is gone. Were one left unattached, the mounted
# file system would hang the rest of the run: recover it then.
for n in 2 3 4; do
	fails=$FAILS
	check "restart $n (idle, back to back)" "$P" restart /dev/ublkb0
	[ "$FAILS" -eq "$fails" ] || "$P" recover 0 || true
done
check "files verify after two restarts" verify_files /tmp/mnt
refused "restart of a device that does not exist" "does not exist" "$P" restart 5
refused "restart of something that is not a device" "is not a device" "$P" restart /dev/pmem0
# SIGTERM while the file system is mounted: the server hands the device over
# instead of pulling it from under ext4, and the remedy its log names
# ('pmem-stack recover 0') serves it again.
pid=$(server_pid 0)
kill -TERM "$pid"
check "SIGTERM while mounted: the device waits quiesced" wait_state 0 quiesced
check "SIGTERM while mounted: the server is gone" until_gone "$pid"
check "its log says why and names the remedy" grep -q "is in use (.*'pmem-stack recover 0'" /run/pmem-stack/ublkb0.log
check "pmem-stack recover 0, as the log says" "$P" recover 0
expect_eq "live again" "$(state_of 0)" live
check "files verify after SIGTERM while mounted" verify_files /tmp/mnt
check "umount" umount /tmp/mnt
check "fsck clean" e2fsck -fn /dev/ublkb0
check "del" "$P" del 0

# --- 4. restart of a supervised server -----------------------------------
# Stands in for systemd's Restart=on-failure + RestartForceExitStatus=75.
# supervise [BACKING]: /dev/pmem0 by default.
supervise() {
	local rc n backing=${1:-/dev/pmem0}
	for n in 1 2 3 4 5; do
		rc=0
		NOTIFY_SOCKET=/tmp/notify "$P" serve "$backing" >/dev/null 2>>/tmp/supervised.err || rc=$?
		echo "$rc" >>/tmp/supervised.exits
		[ "$rc" -ne 0 ] || return 0
		sleep 0.2
	done
}
notify_listen /tmp/n4
rm -f /tmp/supervised.exits
supervise &
supervisor=$!
check "supervised READY=1" wait_for /tmp/n4 '^READY=1'
old_pid=$(server_pid 0)
old_threads=$(ls "/proc/$old_pid/task" | grep -vx "$old_pid" | sort)
out=$("$P" restart 0 2>/tmp/restart2.err) || fail "supervised restart: $(cat /tmp/restart2.err)"
expect_eq "supervised restart prints the device" "$(echo "$out" | tail -1)" /dev/ublkb0
expect_eq "the supervised server became its own successor (same pid)" "$(server_pid 0)" "$old_pid"
check "... running a new program (none of its old threads is left)" \
	test -z "$(comm -12 <(echo "$old_threads") <(ls "/proc/$old_pid/task" | sort))"
check "the supervisor saw no exit" test ! -s /tmp/supervised.exits
check "READY=1 again, and no STOPPING=1" test "$(grep -c '^READY=1' /tmp/n4)" -ge 2 -a "$(grep -c '^STOPPING=1' /tmp/n4)" -eq 0
check "it logged the re-execution" grep -q "re-executing as the successor" /tmp/supervised.err
cp /tmp/supervised.err "$RESULTS/supervised.err"
check "del of the supervised device" "$P" del 0
wait "$supervisor" || true
expect_eq "the supervisor saw a clean exit last" "$(tail -1 /tmp/supervised.exits)" 0
kill "$listener"

# --- 4b. grow of a supervised server's backing (6.16+) --------------------
# The server re-executes at once as its own successor: it must wait for the
# grown volume, not race it.
if kernel_at_least 6 16; then
	img=/tmp/img/supervised.img
	mkdir -p /tmp/img
	rm -f "$img" /tmp/supervised.exits
	truncate -s 128M "$img"
	small=$("$P" format "$img" --reserve 4M --json | jget 'd["data_size"]')
	notify_listen /tmp/n4b
	supervise "$img" &
	supervisor=$!
	check "supervised image: READY=1" wait_for /tmp/n4b '^READY=1'
	old_pid=$(server_pid 0)
	truncate -s 256M "$img"
	grown=$("$P" grow "$img" --json 2>/tmp/grow.err) || fail "supervised grow: $(cat /tmp/grow.err)"
	expect_eq "supervised grow: the data area grew" "$(echo "$grown" | jget 'd["data_size"]')" "$((small + (128 << 20)))"
	expect_eq "supervised grow: the device serves it" "$(blockdev --getsize64 /dev/ublkb0)" "$((small + (128 << 20)))"
	expect_eq "supervised grow: the server, re-executed, serves it" "$(server_pid 0)" "$old_pid"
	check "supervised grow: the supervisor saw no exit" test ! -s /tmp/supervised.exits
	check "del of the supervised image" "$P" del 0
	wait "$supervisor" || true
	kill "$listener"
fi

# --- 5. udev: /dev/disk/by-id/pmem-stack-<uuid> --------------------------
mkdir -p /run/udev/rules.d
sed -e "s|@SBINDIR@/pmem-stack|$P|" "$PMEM_STACK_REPO/dist/60-pmem-stack.rules.in" >/run/udev/rules.d/60-pmem-stack.rules
/lib/systemd/systemd-udevd --daemon
check "udevd runs" udevadm control --ping
uuid=$("$P" info /dev/pmem0 --json | jget 'd["uuid"]')
check "add for udev" "$P" add /dev/pmem0
link=/dev/disk/by-id/pmem-stack-$uuid
# udevadm settle refuses to work in the guest's chroot: poll instead.
link_to() { for _ in $(seq 300); do [ "$(readlink -f "$link" 2>/dev/null)" == "$1" ] && return 0; sleep 0.1; done; return 1; }
link_gone() { for _ in $(seq 300); do [ ! -e "$link" ] && [ ! -L "$link" ] && return 0; sleep 0.1; done; return 1; }
check "by-id link appears" link_to /dev/ublkb0
expect_eq "by-id link names the device" "$(readlink -f "$link")" /dev/ublkb0
check "mkfs through the stable name" mkfs.ext4 -q -F "$link"
check "mount through the stable name" mount "$link" /tmp/mnt
check "umount" umount /tmp/mnt
check "del" "$P" del 0
check "by-id link is gone with the device" link_gone
# A device with another id gets the same name.
check "add with --id 7" "$P" add /dev/pmem0 --id 7
check "the same stable name follows the volume to /dev/ublkb7" link_to /dev/ublkb7
check "del 7" "$P" del 7
udevadm control --exit || true

finish
