#!/usr/bin/env bash
# Guest script: proves the VM harness works on the booted kernel.  The guest suite
# (tests/real_kernel.rs) runs it first on every kernel, as the scenario "smoke"; by hand:
#   tests/vm/boot.sh [--kernel lts|current] --script tests/vm/smoke.sh   (2 GiB raw namespace)
# Every check prints PASS/FAIL, the last line is "summary: N checks, M failures";
# exits 1 if any check failed.
set -euo pipefail

FAILS=0
CHECKS=0
pass() {
    echo "PASS: $*"
    CHECKS=$((CHECKS + 1))
}
fail() {
    echo "FAIL: $*"
    CHECKS=$((CHECKS + 1))
    FAILS=$((FAILS + 1))
}
check() { # description, command...
    local what=$1
    shift
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    if [[ $rc -eq 0 ]]; then
        pass "$what"
    else
        [[ -n $out ]] && printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /'
        fail "$what (exit $rc)"
    fi
}

echo "NOTE: kernel $(uname -r), $(nproc) vCPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo), cwd $PWD"
: "${RESULTS:?RESULTS not set: not running under tests/vm/boot.sh}"
: "${PMEM_STACK_VM_IMAGE_SIZE:?PMEM_STACK_VM_IMAGE_SIZE not set}"

# --- devices
if [[ -b /dev/pmem0 ]]; then
    pass "/dev/pmem0 is a block device"
    size=$(blockdev --getsize64 /dev/pmem0)
    if [[ $size -eq $PMEM_STACK_VM_IMAGE_SIZE ]]; then
        pass "/dev/pmem0 size $size = image size"
    else
        fail "/dev/pmem0 size $size != image size $PMEM_STACK_VM_IMAGE_SIZE"
    fi
else
    fail "/dev/pmem0 missing"
fi
if [[ -c /dev/ublk-control ]]; then pass "/dev/ublk-control exists"; else fail "/dev/ublk-control missing"; fi
if [[ -d $RESULTS && -w $RESULTS ]]; then pass "\$RESULTS=$RESULTS writable"; else fail "\$RESULTS not writable"; fi
if touch "$PWD/.vm-write-probe" 2>/dev/null; then
    rm -f "$PWD/.vm-write-probe"
    fail "the repo ($PWD) is writable in the guest (expected read-only)"
else
    pass "the repo ($PWD) is read-only in the guest"
fi

# --- where the namespace is (physical addresses)
for f in /sys/bus/nd/devices/namespace0.0/resource /sys/block/pmem0/device/resource \
    /sys/bus/nd/devices/region0/resource /sys/bus/nd/devices/namespace0.0/mode; do
    if [[ -r $f ]]; then
        echo "INFO: $f = $(cat "$f")"
    else
        fail "$f unreadable"
    fi
done
ns_start=$(cat /sys/bus/nd/devices/namespace0.0/resource 2>/dev/null || echo none)
dev_start=$(cat /sys/block/pmem0/device/resource 2>/dev/null || echo none)
if [[ $ns_start != none && $ns_start == "$dev_start" ]]; then
    pass "namespace0.0 and pmem0 start at $ns_start"
else
    fail "namespace0.0 start ($ns_start) != pmem0 device start ($dev_start)"
fi
grep -i 'persistent memory' /proc/iomem | sed 's/^/INFO: iomem: /' || true

# --- 4 MiB O_DIRECT write + read back
dd if=/dev/urandom of=/tmp/pattern bs=1M count=4 status=none
check "4 MiB O_DIRECT+fsync write to /dev/pmem0" \
    dd if=/tmp/pattern of=/dev/pmem0 bs=1M seek=16 oflag=direct conv=fsync,notrunc status=none
check "4 MiB O_DIRECT read back from /dev/pmem0" \
    dd if=/dev/pmem0 of=/tmp/readback bs=1M skip=16 count=4 iflag=direct status=none
check "read back equals what was written" cmp /tmp/pattern /tmp/readback
echo 3 >/proc/sys/vm/drop_caches
check "buffered read after drop_caches equals" \
    bash -c 'cmp <(dd if=/dev/pmem0 bs=1M skip=16 count=4 status=none) /tmp/pattern'

# --- ext4 on a loop device over a file in /tmp (tmpfs)
check "truncate 128M /tmp/ext4.img" truncate -s 128M /tmp/ext4.img
check "mkfs.ext4 /tmp/ext4.img" mkfs.ext4 -q -F /tmp/ext4.img
mkdir -p /tmp/mnt
check "mount -o loop ext4" mount -o loop /tmp/ext4.img /tmp/mnt
check "write 8 MiB into the ext4 file system" \
    bash -c 'dd if=/dev/urandom of=/tmp/mnt/data bs=1M count=8 status=none conv=fsync && cmp /tmp/mnt/data <(cat /tmp/mnt/data)'
check "umount ext4" umount /tmp/mnt
check "e2fsck -fn clean" e2fsck -fn /tmp/ext4.img

# --- xfs on pmem0 itself (fsdax-capable block device; mounted without dax)
# xfs is not loaded at boot (tests/vm/init.sh); the scenarios that use it load it.
check "insmod xfs from the initramfs" insmod /run/pmem-stack-vm/modules/xfs.ko
check "mkfs.xfs on /dev/pmem0" mkfs.xfs -q -f /dev/pmem0
check "mount xfs" mount /dev/pmem0 /tmp/mnt
check "write into xfs" dd if=/dev/zero of=/tmp/mnt/zero bs=1M count=8 conv=fsync status=none
check "umount xfs" umount /tmp/mnt

# --- device mapper without udev
sectors=$((PMEM_STACK_VM_IMAGE_SIZE / 512 - 2048))
check "dmsetup create linear over pmem0 at 1 MiB" \
    dmsetup create smoke-linear --table "0 $sectors linear /dev/pmem0 2048"
if [[ -b /dev/mapper/smoke-linear ]]; then
    pass "/dev/mapper/smoke-linear exists"
    check "write at 15 MiB of the dm device lands at 16 MiB of pmem0" \
        bash -c 'dd if=/tmp/pattern of=/dev/mapper/smoke-linear bs=1M seek=15 oflag=direct conv=fsync,notrunc status=none &&
                 cmp <(dd if=/dev/pmem0 bs=1M skip=16 count=4 iflag=direct status=none) /tmp/pattern'
else
    fail "/dev/mapper/smoke-linear missing"
fi
check "dmsetup remove" dmsetup remove smoke-linear

# --- fio: one randwrite pass over 32 MiB (~0.8-1.8 s under TCG), then a full crc32c verify
# pass (~0.5-1 s); io_uring, O_DIRECT.  Not time_based: with time_based the verify phase
# shares the runtime and checks only part of what was written.
if fio --name=smoke --filename=/dev/pmem0 --offset=64M --size=32M --ioengine=io_uring \
    --direct=1 --rw=randwrite --bs=4k --iodepth=8 --verify=crc32c --do_verify=1 \
    --verify_fatal=1 --verify_state_save=0 --runtime=60 \
    --output-format=json --output=/tmp/fio.json >/tmp/fio.out 2>&1; then
    fio_summary=$(python3 -c '
import json, sys
j = json.load(open("/tmp/fio.json"))["jobs"][0]
w, r, e = j["write"]["io_bytes"], j["read"]["io_bytes"], j["error"]
wms, rms, iops = j["write"]["runtime"], j["read"]["runtime"], j["write"]["iops"]
print(f"error={e} wrote={w} verified={r} write_ms={wms} verify_ms={rms} write_iops={iops:.0f}")
sys.exit(0 if j["error"] == 0 and w > 0 and r == w else 1)
') && rc=0 || rc=$?
    echo "    fio: $fio_summary"
    if [[ $rc -eq 0 ]]; then
        pass "fio randwrite io_uring O_DIRECT + crc32c verify of everything written"
    else
        fail "fio: not everything written was verified, or an error"
    fi
else
    tail -n 20 /tmp/fio.out /tmp/fio.json 2>/dev/null | sed 's/^/    /'
    fail "fio exited non-zero"
fi

echo "summary: $CHECKS checks, $FAILS failures"
[[ $FAILS -eq 0 ]]
