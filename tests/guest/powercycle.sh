#!/bin/bash
# Guest scenario, one boot of many on one image: consecutive power cuts under
# ext4 and xfs on /dev/ublkb0 (split in two by device-mapper linear targets,
# which pass flushes straight through; rebuilt identically at every boot).
#
#   PHASE=cut     first boot: format, partition, mkfs. Every later boot:
#                 re-add without layout options, mount (replaying the
#                 journals), every file of every earlier cycle must verify;
#                 unmounted, fsck.ext4 -fn and xfs_repair -n must be clean. Then write this cycle's files
#                 (each fsync'd, then its directory), record the cycle, and
#                 create $RESULTS/cut-now: the host kills QEMU.
#   PHASE=verify  the same checks after the last cut, and that all CUTS
#                 cycles are there.
#
# The cycle number is kept in the file systems themselves, so every cut boot
# is the same script. (powercut.sh holds the negative controls that prove a
# cut here loses what was not made durable.)
source "$PMEM_STACK_REPO/tests/guest/lib.sh"
load_module xfs

CUTS=${CUTS:?CUTS=number of cycles}
EXT=/dev/mapper/pc-ext4
XFS=/dev/mapper/pc-xfs
EXT_SECTORS=$((384 * 2048))
FILES=4

require test -b /dev/pmem0

# put FILE SEED SIZE: deterministic content, fsync'd.
put() {
	python3 - "$@" <<'PY'
import os, random, sys
path, seed, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(seed)
with open(path, "wb") as f:
    f.write(random.randbytes(size))
    f.flush()
    os.fsync(f.fileno())
PY
}

# fsync_dir DIR: make the names in DIR durable.
fsync_dir() { python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$1"; }

# files_ok DIR CYCLE: the cycle's files have their deterministic content.
files_ok() {
	python3 - "$1" "$2" "$FILES" <<'PY'
import os, random, sys
top, cycle, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(files):
    seed, size = cycle * 1000 + i, 65536 * (i + 1) + cycle
    random.seed(seed)
    with open(os.path.join(top, "c%d" % cycle, "f%d" % i), "rb") as f:
        if f.read() != random.randbytes(size):
            sys.exit("cycle %d file %d differs" % (cycle, i))
PY
}

# split: the two halves of /dev/ublkb0 as device-mapper devices.
split() {
	local sectors
	sectors=$(blockdev --getsz /dev/ublkb0)
	dmsetup create pc-ext4 --table "0 $EXT_SECTORS linear /dev/ublkb0 0" &&
		dmsetup create pc-xfs --table "0 $((sectors - EXT_SECTORS)) linear /dev/ublkb0 $EXT_SECTORS" &&
		[ -b "$EXT" ] && [ -b "$XFS" ]
}

mkdir -p /tmp/e /tmp/x
if "$P" info /dev/pmem0 >/dev/null 2>&1; then
	check "re-add after the cut, no layout options" "$P" add /dev/pmem0
	check "both file systems' devices are back" split
	# Mounting replays the journals the cut left; the checks come after.
	mount -o noatime "$EXT" /tmp/e
	mount -o noatime "$XFS" /tmp/x
	done_cycles=$(cat /tmp/e/cycle)
	expect_eq "both file systems recorded the same cycle" "$(cat /tmp/x/cycle)" "$done_cycles"
	bad=0
	for c in $(seq "$done_cycles"); do
		files_ok /tmp/e "$c" || bad=$((bad + 1))
		files_ok /tmp/x "$c" || bad=$((bad + 1))
	done
	expect_eq "every acknowledged file of cycles 1..$done_cycles is intact on ext4 and xfs" "$bad" 0
	umount /tmp/e /tmp/x
	check "fsck.ext4 -n is clean" fsck.ext4 -fn "$EXT"
	check "xfs_repair -n is clean" xfs_repair -n "$XFS"
	mount -o noatime "$EXT" /tmp/e
	mount -o noatime "$XFS" /tmp/x
else
	[ "$PHASE" == cut ] || { fail "verify boot found no volume"; finish; }
	check "add formats" "$P" add /dev/pmem0 --reserve 64M
	check "split in two" split
	mkfs.ext4 -q -F "$EXT"
	mkfs.xfs -q -f "$XFS"
	mount -o noatime "$EXT" /tmp/e
	mount -o noatime "$XFS" /tmp/x
	done_cycles=0
fi

case "$PHASE" in
cut)
	n=$((done_cycles + 1))
	for top in /tmp/e /tmp/x; do
		mkdir -p "$top/c$n"
		for i in $(seq 0 $((FILES - 1))); do
			put "$top/c$n/f$i" $((n * 1000 + i)) $((65536 * (i + 1) + n))
		done
		fsync_dir "$top/c$n"
		fsync_dir "$top"
		echo "$n" >"$top/cycle.new"
		python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY); os.fsync(fd)' "$top/cycle.new"
		mv "$top/cycle.new" "$top/cycle"
		fsync_dir "$top"
	done
	note "cycle $n of $CUTS written and acknowledged; cutting power"
	pass "cycle $n acknowledged"
	# Keep everything open and mounted: the cut must find it so.
	touch "$RESULTS/cut-now"
	sleep 600
	;;
verify)
	expect_eq "all $CUTS cycles survived their power cuts" "$done_cycles" "$CUTS"
	umount /tmp/e /tmp/x
	dmsetup remove pc-ext4 pc-xfs
	check "del" "$P" del 0
	;;
*) fail "PHASE must be cut or verify" ;;
esac
finish
