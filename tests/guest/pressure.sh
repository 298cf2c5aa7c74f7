#!/bin/bash
# Guest scenario, in a guest with 512 MiB of memory: memory pressure. On
# every I/O path this kernel offers, a server started by `add` (no systemd)
# serves ext4 while a memory hog keeps the guest at the edge of its memory
# and a writer makes files with buffered writes + fsync, so the kernel's
# reclaim must write dirty pages back through the server. Nothing may hang
# (every step is bounded), the server must never be OOM-killed (it lowers
# its own oom_score_adj and marks itself an I/O flusher: both checked on
# every thread), its memory is reported and bounded, and every fsync'd file
# verifies afterwards from the device (caches dropped) and after a remount.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test -b /dev/pmem0
total=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
check "the guest has little memory (MemTotal $((total / 1024)) MiB)" test "$total" -lt $((640 * 1024))
check "format" "$P" format /dev/pmem0 --reserve 64M

paths="user-copy bounce"
if kernel_at_least 6 16; then paths+=" direct"; fi
if kernel_at_least 7 0; then paths+=" batch"; fi
note "kernel $(uname -r): paths $paths"

# Task flags (include/linux/sched.h) that PR_SET_IO_FLUSHER sets.
PF_MEMALLOC_NOIO=0x00080000
PF_LOCAL_THROTTLE=0x00100000
FILES=3
FILE_MIB=16

# hog SECONDS: take memory until less than 40 MiB is available, keep
# touching it, take more whenever reclaim frees some; if the OOM killer
# takes the hog, start another. Ends after SECONDS or when /tmp/hog-stop
# appears.
hog() {
	local end=$((SECONDS + $1))
	while [ $SECONDS -lt $end ] && [ ! -e /tmp/hog-stop ]; do
		python3 - $((end - SECONDS)) <<'PY' 2>/dev/null || true
import os, sys, time
end = time.monotonic() + float(sys.argv[1])
chunks = []
def available():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
while time.monotonic() < end and not os.path.exists("/tmp/hog-stop"):
    if available() > 40 << 20:
        b = bytearray(8 << 20)
        for i in range(0, len(b), 4096):
            b[i] = 1
        chunks.append(b)
    else:
        for c in chunks:
            for i in range(0, len(c), 4096 * 8):
                c[i] = 2
        time.sleep(0.02)
PY
	done
}

# writer DIR: FILES files of FILE_MIB MiB each, written in 1 MiB buffered
# writes, each file fsync'd and then its directory; their digests in
# DIR/SHA256SUMS (fsync'd too).
writer() {
	python3 - "$1" "$FILES" "$FILE_MIB" <<'PY'
import hashlib, os, random, sys
d, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sums = []
for i in range(n):
    rng = random.Random(i)
    h = hashlib.sha256()
    path = os.path.join(d, "f%d" % i)
    with open(path, "wb") as f:
        for _ in range(mib):
            block = rng.randbytes(1 << 20)
            h.update(block)
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    sums.append("%s  f%d\n" % (h.hexdigest(), i))
dfd = os.open(d, os.O_RDONLY)
os.fsync(dfd)
with open(os.path.join(d, "SHA256SUMS"), "w") as f:
    f.writelines(sums)
    f.flush()
    os.fsync(f.fileno())
os.fsync(dfd)
PY
}

# flags_of TASK_STAT: the flags field (9th) of a /proc/.../stat line.
flags_of() { awk '{ sub(/^.*\) /, ""); print $7 }' "$1"; }

# io_flusher PID: every thread of PID carries both PR_SET_IO_FLUSHER flags.
io_flusher() {
	local stat f n=0
	for stat in /proc/"$1"/task/*/stat; do
		f=$(flags_of "$stat")
		[ $((f & PF_MEMALLOC_NOIO)) -ne 0 ] && [ $((f & PF_LOCAL_THROTTLE)) -ne 0 ] || {
			echo "thread $(basename "$(dirname "$stat")") ($(cat "$(dirname "$stat")/comm")): flags $(printf 0x%x "$f")"
			return 1
		}
		n=$((n + 1))
	done
	echo "$n threads"
}

kills() { dmesg | grep -c "Killed process" || true; }
mkdir -p /tmp/m
for path in $paths; do
	dev=$(timeout 60 "$P" add /dev/pmem0 --io-path "$path" | tail -1)
	expect_eq "$path: added" "$dev" /dev/ublkb0
	pid=$(server_pid 0)
	expect_eq "$path: the server's oom_score_adj (no systemd)" "$(cat "/proc/$pid/oom_score_adj")" -900
	check "$path: every server thread is an I/O flusher" io_flusher "$pid"
	check "$path: mkfs.ext4" mkfs.ext4 -q -F /dev/ublkb0
	check "$path: mount" mount /dev/ublkb0 /tmp/m

	rm -f /tmp/hog-stop
	before=$(kills)
	hog 150 &
	hog_pid=$!
	sleep 3
	start=$SECONDS
	writer /tmp/m &
	writer_pid=$!
	# What the guest's memory looked like while the writer ran.
	(while kill -0 "$writer_pid" 2>/dev/null; do
		awk '/^(MemAvailable|Dirty|Writeback):/ { printf "%d ", $2 / 1024 } END { print "" }' /proc/meminfo
		sleep 0.5
	done) >/tmp/meminfo.samples &
	rc=0
	wait_bounded "$writer_pid" 180 || rc=$?
	note "$path: while writing: MemAvailable down to $(awk 'NR == 1 || $1 < m { m = $1 } END { print m }' /tmp/meminfo.samples) MiB, Dirty up to $(awk '$2 > m { m = $2 } END { print m + 0 }' /tmp/meminfo.samples) MiB, Writeback up to $(awk '$3 > m { m = $3 } END { print m + 0 }' /tmp/meminfo.samples) MiB"
	expect_eq "$path: $FILES x $FILE_MIB MiB written and fsync'd under pressure, in bounded time ($((SECONDS - start)) s)" "$rc" 0
	touch /tmp/hog-stop
	hog_rc=0
	wait_bounded "$hog_pid" 60 || hog_rc=$?
	check "$path: the hog stopped (status $hog_rc)" test "$hog_rc" -ne 124
	note "$path: OOM kills during the run: $(($(kills) - before))"

	check "$path: the server survived (pid $pid)" kill -0 "$pid"
	expect_eq "$path: it still serves the device" "$(server_pid 0)" "$pid"
	expect_eq "$path: live" "$(state_of 0)" live
	check "$path: no OOM kill of the server" bash -c "! dmesg | grep -E 'Killed process $pid \\('"
	rss=$(awk '/^(VmHWM|VmRSS|RssAnon|RssFile):/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$pid/status")
	anon=$(awk '/^RssAnon:/ { print int($2 / 1024) }' "/proc/$pid/status")
	note "$path: server memory: $rss"
	check "$path: the server's anonymous memory stays bounded (${anon} MiB <= 64 MiB)" test "$anon" -le 64

	sync
	echo 3 >/proc/sys/vm/drop_caches
	check "$path: every fsync'd file verifies from the device" verify_files /tmp/m
	check "$path: umount" umount /tmp/m
	check "$path: fsck clean" e2fsck -fn /dev/ublkb0
	check "$path: remount" mount /dev/ublkb0 /tmp/m
	check "$path: the files verify after the remount" verify_files /tmp/m
	check "$path: umount again" umount /tmp/m
	check "$path: del" timeout 60 "$P" del 0
done
check "the volume is healthy" "$P" check /dev/pmem0

finish
