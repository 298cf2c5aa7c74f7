#!/usr/bin/env bash
# Guest script: is a power cut real in this VM?  (Driven by tests/vm/selftest.sh.)
#
# PROBE_MODE=cut (default): map the first 8 MiB of /dev/pmem0 MAP_SHARED, write 4 MiB of
#   0xA5 and msync(MS_SYNC) them, write 4 MiB of 0x5A after them without msync, keep the
#   fd and the mapping open, create $RESULTS/${PROBE_MARKER:-cut-now} and wait.  Run with
#   boot.sh --kill-on cut-now: the host kills QEMU as soon as the marker exists.
#   Expected in the image afterwards: bytes [0,4 MiB) = 0xA5, [4,8 MiB) = 0x00.
# PROBE_MODE=verify: a later boot on the same image checks the same thing from inside.
#
# The writer must NOT exit before the cut: the last close of a block device writes its
# page cache back, which would hide the missing msync.
set -euo pipefail
: "${RESULTS:?not running under tests/vm/boot.sh}"
MODE=${PROBE_MODE:-cut}
MARKER=${PROBE_MARKER:-cut-now}

case $MODE in
    cut)
        exec python3 - "$RESULTS/$MARKER" <<'EOF'
import mmap, os, sys, time
MiB = 1 << 20
marker = sys.argv[1]
fd = os.open("/dev/pmem0", os.O_RDWR)
m = mmap.mmap(fd, 8 * MiB, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:4 * MiB] = b"\xa5" * (4 * MiB)
m.flush(0, 4 * MiB)                      # msync(MS_SYNC): durable
m[4 * MiB:8 * MiB] = b"\x5a" * (4 * MiB)  # only in the page cache
assert m[0:8 * MiB] == b"\xa5" * (4 * MiB) + b"\x5a" * (4 * MiB)
dirty = [l.strip() for l in open("/proc/meminfo") if l.startswith(("Dirty:", "Writeback:"))]
print("probe: 4 MiB 0xA5 msynced, 4 MiB 0x5A dirty in the page cache;", ", ".join(dirty), flush=True)
os.close(os.open(marker, os.O_CREAT | os.O_WRONLY, 0o644))  # host kills QEMU now
print("probe: marker created, waiting for the power cut", flush=True)
time.sleep(3600)
print("probe: still alive after an hour: no power cut happened", flush=True)
sys.exit(1)
EOF
        ;;
    verify)
        exec python3 - <<'EOF'
import os, sys
MiB = 1 << 20
with open("/dev/pmem0", "rb", buffering=0) as f:
    data = f.read(8 * MiB)
first_ok = data[:4 * MiB] == b"\xa5" * (4 * MiB)
second_zero = data[4 * MiB:] == bytes(4 * MiB)
print(f"PASS: msynced 4 MiB present after the cut" if first_ok else "FAIL: msynced 4 MiB not intact")
print(f"PASS: unsynced 4 MiB absent (zeros) after the cut" if second_zero else
      f"FAIL: unsynced 4 MiB partly present ({sum(1 for b in data[4*MiB:] if b)} non-zero bytes)")
sys.exit(0 if first_ok and second_zero else 1)
EOF
        ;;
    *)
        echo "powercut-probe: unknown PROBE_MODE '$MODE' (cut|verify)" >&2
        exit 2
        ;;
esac
