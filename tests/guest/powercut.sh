#!/bin/bash
# Guest scenario, two boots on one image: acknowledged writes survive a power
# cut (QEMU killed from the host) and a fresh boot.
#
#   PHASE=cut     format, serve, write every kind of acknowledged data, then
#                 create $RESULTS/cut-now and wait (the host kills QEMU);
#   PHASE=verify  a fresh boot: check the metadata, add without --reserve,
#                 verify everything acknowledged is there.
#   CACHE=write-back  serve with a volatile cache (user copy, FLUSH = msync)
#                 instead of the default, which writes through.
# Writing through, the cut boot serves the default path: user copy before
# 6.16, the direct path from 6.16 (its RWF_DSYNC writes and its batch
# syncs); the default path meets ten more cuts in the powercycle scenario
# on every kernel. (User copy writing through is cut on 6.12 only, and
# writing back on both.) The verify boot reads back through the default
# path.
#
# Writers keep /dev/ublkb0 open until the cut: the last close of a block
# device writes its page cache back, which would hide a missing flush.
#
# Negative controls make the test able to fail: data written without any
# sync (E: left in /dev/ublkb0's page cache) must NOT survive, and with
# CACHE=write-back neither may F (O_DIRECT, so it reached the server, but
# was never flushed). If they did, the cut would not be a real power cut and
# the positive checks would prove nothing. Writing through (the default on
# /dev/pmem0), F was on the media when acknowledged and must survive, and
# so must G: 4 KiB writes 16 deep, which the queues write in their own
# thread and acknowledge after their batch's sync (on the direct path too:
# it copies requests that small itself). What this cut can show is that an
# acknowledged write had reached the namespace, not that it was flushed:
# the emulated NVDIMM is a shared file mapping, which keeps every store
# that reached it when QEMU is killed. The order "sync, then acknowledge"
# is checked by the unit and property tests of ublk::plane::group_commit.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

MIB=1048576
# Deterministic data, so the verify boot can regenerate what the cut boot wrote.
gen() { python3 -c 'import random,sys; random.seed(int(sys.argv[1])); sys.stdout.buffer.write(random.randbytes(int(sys.argv[2])))' "$1" "$2"; }

# Regions of the data area (MiB offsets), after a 512 MiB ext4 at the start.
A=1024 # buffered + O_DSYNC      -> FLUSH
B=1040 # O_DIRECT + O_DSYNC      -> FUA writes
C=1056 # buffered, then fsync    -> writeback + FLUSH
D=1072 # O_DIRECT, then fsync    -> FLUSH
E=1088 # buffered, no sync       -> must be lost
F=1104 # O_DIRECT, no sync       -> must be lost (the server's volatile cache)
G=1112 # 4 KiB O_DIRECT, depth 16, no sync (writing through only: durable)
LEN=$((8 * MIB))
# g_job DIRECTION ARGS: G's writes (write) or their check (read): fio's own
# block headers (crc32c), so the verify boot checks every 4 KiB block the
# cut boot wrote. Fails unless fio moved all of G that way: fio exits 0
# when it refuses a job (it would not write a mounted device without
# --allow_mounted_write; G lies beyond the file system). --invalidate=0:
# fio's default BLKFLSBUF at the start would write E back.
g_job() {
	local direction=$1 out
	shift
	out=$(fio --name=g --filename=/dev/ublkb0 --offset=$((G * MIB)) --size=$LEN \
		--rw=write --bs=4k --iodepth=16 --ioengine=io_uring --direct=1 \
		--allow_mounted_write=1 --invalidate=0 --verify=crc32c --verify_state_save=0 \
		--output-format=json "$@") || { echo "$out" | tail -5; return 1; }
	# fio may print a line before its JSON: parse from the first brace.
	echo "${out#"${out%%\{*}"}" | jget "d['jobs'][0]['$direction']['io_bytes'] == $LEN or sys.exit('fio moved ' + str(d['jobs'][0]['$direction']['io_bytes']) + ' bytes, not $LEN')"
}

region() { dd if=/dev/ublkb0 bs=1M skip="$1" count=8 iflag=direct status=none | sha256sum | cut -d' ' -f1; }
expected() { gen "$1" "$LEN" | sha256sum | cut -d' ' -f1; }

require test -b /dev/pmem0
case "${PHASE:?PHASE=cut or PHASE=verify}" in
cut)
	args=() path=$(default_block_path)
	if [ "${CACHE:-}" == write-back ]; then
		# Auto writing back serves on user copy on every kernel.
		args=(--write-cache write-back) path=user_copy
	fi
	dev=$("$P" add /dev/pmem0 --reserve 512M "${args[@]}" | tail -1)
	expect_eq "added" "$dev" /dev/ublkb0
	expect_eq "serving on the expected path" "$("$P" list --json | jget 'd[0]["io_path"]')" "$path"
	expect_eq "serving with the cache asked for" "$("$P" list --json | jget 'd[0]["write_cache"]')" \
		"$([ "${CACHE:-}" == write-back ] && echo write_back || echo write_through)"
	exec 3</dev/ublkb0

	gen $A $LEN | dd of=/dev/ublkb0 bs=1M seek=$A oflag=dsync iflag=fullblock status=none
	gen $B $LEN | dd of=/dev/ublkb0 bs=1M seek=$B oflag=direct,dsync iflag=fullblock status=none
	gen $C $LEN | dd of=/dev/ublkb0 bs=1M seek=$C conv=fsync iflag=fullblock status=none
	gen $D $LEN | dd of=/dev/ublkb0 bs=1M seek=$D oflag=direct conv=fsync iflag=fullblock status=none
	check "all sync writes acknowledged" true

	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/ublkb0 512M
	mkdir -p /tmp/mnt
	mount -o noatime /dev/ublkb0 /tmp/mnt
	python3 - <<-'PY'
		import os, random
		for i in range(16):
		    random.seed(1000 + i)
		    data = random.randbytes(64 * 1024 * (i + 1))
		    fd = os.open(f"/tmp/mnt/file{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
		    os.write(fd, data)
		    os.fsync(fd)
		    os.close(fd)
		dfd = os.open("/tmp/mnt", os.O_RDONLY)
		os.fsync(dfd)
		os.close(dfd)
	PY
	check "ext4 files written and fsynced" test -s /tmp/mnt/file15

	# The negative controls go last, so no later flush covers them.
	gen $E $LEN | dd of=/dev/ublkb0 bs=1M seek=$E iflag=fullblock status=none
	gen $F $LEN | dd of=/dev/ublkb0 bs=1M seek=$F oflag=direct iflag=fullblock status=none
	# Small concurrent writes: on the direct path these are copied by the
	# queue thread and made durable by its batch's sync, not registered.
	[ "${CACHE:-}" == write-back ] || check "G: 4 KiB O_DIRECT writes at depth 16 acknowledged" g_job write --do_verify=0
	echo "acknowledged; cutting power" >"$RESULTS/cut-now"
	sleep 600
	fail "the host did not cut the power"
	;;
verify)
	check "both super block copies survived" "$P" check /dev/pmem0
	dev=$("$P" add /dev/pmem0 | tail -1)
	expect_eq "re-added without --reserve" "$dev" /dev/ublkb0
	expect_eq "A: buffered O_DSYNC writes survived" "$(region $A)" "$(expected $A)"
	expect_eq "B: O_DIRECT|O_DSYNC (FUA) writes survived" "$(region $B)" "$(expected $B)"
	expect_eq "C: buffered writes + fsync survived" "$(region $C)" "$(expected $C)"
	expect_eq "D: O_DIRECT writes + fsync survived" "$(region $D)" "$(expected $D)"
	mkdir -p /tmp/mnt
	check "ext4 mounts (journal replay)" mount /dev/ublkb0 /tmp/mnt
	check "fsynced ext4 files survived" python3 - <<-'PY'
		import random, sys
		for i in range(16):
		    random.seed(1000 + i)
		    want = random.randbytes(64 * 1024 * (i + 1))
		    if open(f"/tmp/mnt/file{i}", "rb").read() != want:
		        sys.exit(f"file{i} differs")
	PY
	check "umount" umount /tmp/mnt
	check "e2fsck clean" e2fsck -fn /dev/ublkb0
	if [ "$(region $E)" != "$(expected $E)" ]; then
		pass "control E (never synced, in the page cache) was lost, as it must be"
	else
		fail "control E survived: the cut did not discard volatile data"
	fi
	if [ "${CACHE:-}" != write-back ]; then
		# Writing through, a write is durable on the namespace before the
		# request completes: nothing is held back, so F is on the media.
		expect_eq "write-through: F (completed, never flushed) is on the media" "$(region $F)" "$(expected $F)"
		check "write-through: G (4 KiB writes at depth 16, never flushed) verify on the media" g_job read --verify_only
	elif [ "$(region $F)" != "$(expected $F)" ]; then
		pass "control F (reached the server, never flushed) was lost: the cache is volatile"
	else
		fail "control F survived: the cut did not discard the server's unflushed data"
	fi
	check "del" "$P" del 0
	;;
*)
	fail "unknown PHASE=$PHASE"
	;;
esac
finish
