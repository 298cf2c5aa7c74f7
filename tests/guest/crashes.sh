#!/bin/bash
# Guest scenario: the server beaten on. Repeated kill -9 under fio with
# crc32c verification, each followed by recover; kills while idle, during
# flushes and during del; then misuse and races: two adds at once, four
# devices at once, a pmem-stack device as a backing, a non-root user, a
# backing that shrank, an id in use.
#
# Every command that could hang runs under `timeout`: a hang is a failure,
# never a stuck test.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

CYCLES=${CRASH_CYCLES:-20}
T="timeout 60"

require test -b /dev/pmem0

# kill_and_recover: SIGKILL the server of /dev/ublkb0, wait until the kernel
# quiesced the device, recover it, and say whether it is live again.
kill_and_recover() {
	local pid
	pid=$(server_pid 0)
	kill -9 "$pid"
	wait_state 0 quiesced || return 1
	$T "$P" recover 0 >/dev/null || return 1
	[ "$(state_of 0)" == live ]
}

"$P" add /dev/pmem0 --reserve 64M >/dev/null
check "device added" test -b /dev/ublkb0

# --- kill -9 under fio, recover, again and again ---------------------------
errors=0 verified=0 recovered=0
for cycle in $(seq "$CYCLES"); do
	offset=$(((cycle % 8) * 32))M
	fio --name=c$cycle --filename=/dev/ublkb0 --offset="$offset" --size=16M \
		--rw=randwrite --bs=4k --iodepth=16 --ioengine=io_uring --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
		--output-format=json >/tmp/fio-c.json 2>/tmp/fio-c.err &
	fio_pid=$!
	after_writes 300
	kill_and_recover && recovered=$((recovered + 1))
	rc=0
	wait_bounded "$fio_pid" 60 || rc=$?
	verdict=$(python3 -c '
import json
t=open("/tmp/fio-c.json").read(); j=json.loads(t[t.index("{"):])["jobs"][0]
w=j["write"]["io_bytes"]; r=j["read"]["io_bytes"]
print("ok" if j["error"]==0 and w==16<<20 and r==w else "error=%s written=%s verified=%s" % (j["error"],w,r))' 2>&1)
	if [ "$rc" -eq 0 ] && [ "$verdict" == ok ]; then
		verified=$((verified + 1))
	else
		errors=$((errors + 1))
		note "cycle $cycle: fio status $rc, $verdict: $(tail -2 /tmp/fio-c.err | tr '\n' ' ')"
	fi
done
expect_eq "$CYCLES kills under fio: recovered to live each time" "$recovered" "$CYCLES"
expect_eq "$CYCLES kills under fio: every fio run verified all 16 MiB with no error" "$verified" "$CYCLES"

# --- killed while idle ------------------------------------------------------
check "killed while idle: recovered" kill_and_recover
fio_verify "killed while idle: then fio verify" /dev/ublkb0 0 8M

# --- killed during flushes: every write followed by fsync (a FLUSH each) ---
fio --name=flushes --filename=/dev/ublkb0 --offset=64M --size=8M --rw=write \
	--bs=4k --fsync=1 --ioengine=psync --direct=0 --verify=crc32c --do_verify=1 \
	--verify_fatal=1 --verify_state_save=0 --output-format=json >/tmp/fio-f.json 2>&1 &
fio_pid=$!
sleep 1
check "killed during flushes: recovered" kill_and_recover
rc=0
wait_bounded "$fio_pid" 60 || rc=$?
expect_eq "killed during flushes: fio (fsync after every write) ends well" "$rc" 0

# --- killed during del: the next command cleans up or recovers -------------
pid=$(server_pid 0)
$T "$P" del 0 >/tmp/del.out 2>&1 &
del_pid=$!
kill -9 "$pid" 2>/dev/null || true
rc=0
wait_bounded "$del_pid" 70 || rc=$?
note "del with its server killed under it: status $rc ($(tr '\n' ' ' </tmp/del.out))"
check "after a kill during del: del --all ends" $T "$P" del --all
expect_eq "after a kill during del: no device left" "$(ublk_count)" 0
check "after a kill during del: the volume is healthy" "$P" check /dev/pmem0
check "and serves again" $T "$P" add /dev/pmem0
check "del" $T "$P" del 0

# --- races and misuse --------------------------------------------------------
# Two adds of one blank backing at once: exactly one wins.
mkdir -p /tmp/img
truncate -s 0 /tmp/img/race.img
truncate -s 128M /tmp/img/race.img
$T "$P" add /tmp/img/race.img --reserve 8M >/tmp/race1.out 2>&1 &
a=$!
$T "$P" add /tmp/img/race.img --reserve 8M >/tmp/race2.out 2>&1 &
b=$!
ra=0 rb=0
wait_bounded "$a" 70 || ra=$?
wait_bounded "$b" 70 || rb=$?
expect_eq "two adds of one backing: exactly one wins" "$(((ra == 0) + (rb == 0)))" 1
loser=/tmp/race2.out
[ "$rb" -eq 0 ] && loser=/tmp/race1.out
check "the loser says one line: in use" bash -c "[ \$(grep -vc '^warning:' $loser) -eq 1 ] && grep -q 'in use' $loser"
winner=$("$P" list --json | jget "[x['device'] for x in d if x['backing']=='/tmp/img/race.img'][0]")
fio_verify "the winner's device works" "$winner" 0 8M
check "del the winner" $T "$P" del "$winner"

# Four devices at once on four backings, fio on all of them together.
for i in 1 2 3 4; do
	truncate -s 96M "/tmp/img/d$i.img"
	$T "$P" add "/tmp/img/d$i.img" --reserve 8M >/dev/null
done
expect_eq "four devices served at once" "$(ublk_count)" 4
pids=()
for dev in $("$P" list --json | jget '" ".join(x["device"] for x in d)'); do
	fio --name=four --filename="$dev" --size=16M --rw=randwrite --bs=4k --iodepth=8 \
		--ioengine=io_uring --direct=1 --verify=crc32c --do_verify=1 --verify_fatal=1 \
		--verify_state_save=0 >/dev/null 2>&1 &
	pids+=($!)
done
ok=0
for pid in "${pids[@]}"; do
	if wait_bounded "$pid" 120; then ok=$((ok + 1)); fi
done
expect_eq "fio verify on four devices at once" "$ok" 4

# A pmem-stack device as a backing: refused.
first=$("$P" list --json | jget 'd[0]["device"]')
refused "add of a pmem-stack device" "pmem-stack device" "$P" add "$first" --reserve 8M
# An id in use: refused, and the device with that id is untouched.
id=${first#/dev/ublkb}
before=$(dd if="$first" bs=1M count=4 iflag=direct status=none | sha256sum)
refused "add --id of an id in use, with the way out" "already taken; pick another --id" "$P" add /tmp/img/race.img --id "$id"
expect_eq "the device with that id still serves the same data" \
	"$(dd if="$first" bs=1M count=4 iflag=direct status=none | sha256sum)" "$before"
check "del --all of four devices" $T "$P" del --all
expect_eq "none left" "$(ublk_count)" 0

# A non-root user: a clear refusal.
refused "add as a non-root user" "root" setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$P" add /dev/pmem0

# A backing that shrank since format: refused, never served past its end.
truncate -s 128M /tmp/img/shrink.img
"$P" format /tmp/img/shrink.img --reserve 8M >/dev/null
truncate -s 100M /tmp/img/shrink.img
refused "add of a backing that shrank" "shrunk" "$P" add /tmp/img/shrink.img
expect_eq "nothing served" "$(ublk_count)" 0

finish
