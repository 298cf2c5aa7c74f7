#!/bin/bash
# Guest scenario: many recoveries in a row, and the device node survives
# every one of them (issue 22).
#
# Reported: after five cycles of [fio with crc32c verify; kill -9 of the
# server; recover], /dev/ublkb0 passed `test -b` and a moment later was gone:
# the next fio laid out a regular file of that name in /dev and wrote to it at
# tmpfs speed, while `list` said live and `del` said removed. Every check the
# suite made then passes on a regular file too (fio verifies its own file),
# so here the node's identity is checked after each recovery and before every
# I/O: a block device whose major:minor is the kernel's (/sys/block/ublkb0/dev),
# and the disk's own counters must show fio's writes. Then `del` under I/O
# must end fio with errors and leave nothing named /dev/ublkb0.
#
# The kernel's view is traced while it runs (device removals, unlinks, the
# ublk control commands and who sent them); on a failure the trace is kept
# as diagnostics-recoveries-trace.txt, so a rare race leaves its evidence.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

CYCLES=${RECOVERIES:-6}
SIZE_MIB=24
T="timeout 90"

require test -b /dev/pmem0

# --- kernel trace (diagnostics only) -----------------------------------------
TRACE=/sys/kernel/tracing
traced=false
trace_arm() {
	mountpoint -q "$TRACE" || mount -t tracefs nodev "$TRACE" 2>/dev/null || return 1
	echo 0 >"$TRACE/tracing_on"
	local probe
	# Which process removed or added a disk, unlinked a name; each ublk
	# control command with its device id (the ioctl number's low byte:
	# 04 ADD_DEV, 05 DEL_DEV, 06 START_DEV, 07 STOP_DEV, 10/11 START/END_USER_
	# RECOVERY, 14 DEL_DEV_ASYNC), read from the io_uring command's SQE, and
	# what it returned. The names come through the kernels' BTF (6.12, 7.3).
	for probe in "p:ps_delgd del_gendisk name=disk->disk_name:string" \
		"p:ps_adddisk device_add_disk name=disk->disk_name:string" \
		"p:ps_unlink vfs_unlink name=dentry->d_name.name:string" \
		"p:ps_ublkcmd ublk_ctrl_uring_cmd op=+8(+8(%di)):x32 dev=+48(+8(%di)):u32" \
		'r:ps_ublkret ublk_ctrl_uring_cmd ret=$retval:s32'; do
		echo "$probe" >>"$TRACE/kprobe_events" || return 1
	done
	for probe in ps_delgd ps_adddisk ps_unlink ps_ublkcmd ps_ublkret; do
		echo 1 >"$TRACE/events/kprobes/$probe/enable" || return 1
	done
	echo 8192 >"$TRACE/buffer_size_kb"
	echo 1 >"$TRACE/tracing_on"
}
# trace_mark TEXT: a line in the trace, to find the cycles in it.
trace_mark() { if $traced; then echo "$*" >"$TRACE/trace_marker" 2>/dev/null || true; fi; }
if trace_arm; then traced=true; else note "no kernel trace on this kernel (diagnostics only)"; fi

# --- the node ----------------------------------------------------------------
# Writes the disk completed (0 while there is no disk).
writes() { awk '$3 == "ublkb0" { n = $8 } END { print n + 0 }' /proc/diskstats; }

# node_is_the_disk: /dev/ublkb0 is a block device with the kernel's numbers.
node_is_the_disk() {
	local kernel node
	kernel=$(cat /sys/block/ublkb0/dev 2>/dev/null) || {
		echo "the kernel has no disk ublkb0"
		return 1
	}
	if [ ! -b /dev/ublkb0 ]; then
		echo "/dev/ublkb0 is $(stat -c %F /dev/ublkb0 2>&1), not a block device (the kernel's disk is $kernel)"
		return 1
	fi
	node=$(stat -c '%Hr:%Lr' /dev/ublkb0)
	[ "$node" == "$kernel" ] || {
		echo "/dev/ublkb0 is $node, the kernel's disk is $kernel"
		return 1
	}
}
# identity WHEN: one check of the node.
identity() {
	local why
	if why=$(node_is_the_disk); then pass "$1: /dev/ublkb0 is the disk"; else fail "$1: $why"; fi
}

# fio_job NAME SIZE_MIB: crc32c-verified random writes on /dev/ublkb0 in the
# background (QD8, as reported); its output in /tmp/NAME.json.
fio_job() {
	fio --name="$1" --filename=/dev/ublkb0 --size="$2M" --rw=randwrite --bs=4k \
		--iodepth=8 --ioengine=io_uring --direct=1 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --verify_state_save=0 --output-format=json \
		>"/tmp/$1.json" 2>"/tmp/$1.err" &
}


out=$($T "$P" add /dev/pmem0 --reserve 64M)
expect_eq "added" "$(echo "$out" | tail -1)" /dev/ublkb0
identity "after add"

# --- kill -9 under fio, recover, again and again -----------------------------
for cycle in $(seq "$CYCLES"); do
	c="recovery $cycle/$CYCLES"
	trace_mark "cycle $cycle"
	identity "$c: before fio"
	w0=$(writes)
	fio_job "r$cycle" "$SIZE_MIB"
	fio_pid=$!
	# Kill while fio's writes are in flight.
	for _ in $(seq 400); do
		[ $(($(writes) - w0)) -gt 300 ] && break
		sleep 0.02
	done
	old_pid=$(server_pid 0)
	trace_mark "cycle $cycle: kill -9 $old_pid"
	kill -9 "$old_pid"
	wait_state 0 quiesced || fail "$c: not quiesced 10 s after the kill (state $(state_of 0))"
	identity "$c: quiesced"
	trace_mark "cycle $cycle: recover"
	if $T "$P" recover 0 >/dev/null; then pass "$c: recover"; else fail "$c: recover failed"; fi
	new_pid=$(server_pid 0)
	trace_mark "cycle $cycle: recovered by $new_pid"
	identity "$c: right after recover"
	check "$c: a new server serves it" test "$new_pid" != "$old_pid" -a -e "/proc/$new_pid"
	expect_eq "$c: live" "$(state_of 0)" live
	rc=0
	wait_bounded "$fio_pid" 120 || rc=$?
	verdict=$(python3 -c '
import json, sys
t = open(sys.argv[1]).read(); j = json.loads(t[t.index("{"):])["jobs"][0]
w = j["write"]["io_bytes"]; r = j["read"]["io_bytes"]
print("ok" if j["error"] == 0 and w == int(sys.argv[2]) << 20 and r == w else "error=%s written=%s verified=%s" % (j["error"], w, r))' \
		"/tmp/r$cycle.json" "$SIZE_MIB" 2>&1)
	expect_eq "$c: fio (status $rc) wrote $SIZE_MIB MiB across the kill and verified all of it" "$verdict" ok
	# fio verifies whatever file it wrote: only the disk's counters tell that
	# it wrote to the disk. 4 KiB random writes, at least half of them
	# counted on their own (the block layer may merge neighbours).
	served=$(($(writes) - w0))
	check "$c: the disk counted fio's writes ($served)" test "$served" -ge $((SIZE_MIB * 256 / 2))
	identity "$c: after fio"
	sleep 1
	identity "$c: a second later"
done

# --- del under I/O, after all those recoveries -------------------------------
identity "before the last fio"
w0=$(writes)
fio --name=delwhile --filename=/dev/ublkb0 --size=64M --rw=randwrite --bs=4k \
	--iodepth=8 --ioengine=io_uring --direct=1 --time_based --runtime=30 \
	--output-format=json >/tmp/delwhile.json 2>/tmp/delwhile.err &
fio_pid=$!
for _ in $(seq 400); do
	[ $(($(writes) - w0)) -gt 500 ] && break
	sleep 0.05
done
check "the disk receives the last fio's writes ($(($(writes) - w0)))" test $(($(writes) - w0)) -gt 500
identity "under the last fio"
server=$(server_pid 0)
trace_mark "del under fio"
check "del under fio" $T "$P" del 0
rc=0
started=$SECONDS
wait_bounded "$fio_pid" 60 || rc=$?
note "fio ended $((SECONDS - started)) s after del, status $rc"
check "fio ended well before its 30 s" test $((SECONDS - started)) -lt 20
check "fio saw I/O errors" test "$rc" -ne 0 -a "$rc" -ne 124
check "the server exited" test ! -e "/proc/$server"
expect_eq "no ublk device left" "$(ublk_count)" 0
check "nothing named /dev/ublkb0 is left (no node, no file)" test ! -e /dev/ublkb0 -a ! -L /dev/ublkb0
expect_eq "list is empty" "$("$P" list --json)" "[]"
check "metadata healthy" "$P" check /dev/pmem0

if $traced; then
	echo 0 >"$TRACE/tracing_on"
	[ "$FAILS" -eq 0 ] || cp "$TRACE/trace" "$RESULTS/diagnostics-recoveries-trace.txt"
fi
finish
