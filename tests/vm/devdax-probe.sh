#!/usr/bin/env bash
# Guest script: turn a labelled NVDIMM into a devdax namespace and look at it.
# Run with:  tests/vm/boot.sh --script tests/vm/devdax-probe.sh --size 1G --label-size 128K \
#                --image <fresh image>
# (1 GiB namespace + 128 KiB label area; the region must stay a multiple of 16 MiB.)
# Writes $RESULTS/devdax-facts.env (NS_RESOURCE, DAX_RESOURCE, DAX_SIZE, DAX_ALIGN) and
# puts the string PMEM-STACK-DAX-PROBE at offset 0 of /dev/dax0.0 so the host can find
# where the dax data area lies in the image.
set -euo pipefail
: "${RESULTS:?not running under tests/vm/boot.sh}"
step() {
    echo "+ $*"
    "$@"
}

[[ ${PMEM_STACK_VM_LABEL_SIZE:-0} -gt 0 ]] || {
    echo "FAIL: boot this with --label-size (the NVDIMM has no label area)"
    exit 2
}
echo "== before:" /dev/pmem* /dev/dax*
step ndctl list -RNu || true
step ndctl disable-region all
step ndctl init-labels -f all
step ndctl enable-region all
step ndctl create-namespace -r region0 -m devdax
echo "== after"
ls -la /dev/dax0.0
[[ -c /dev/dax0.0 ]] || {
    echo "FAIL: /dev/dax0.0 is not a character device"
    exit 1
}
step ndctl list -RNu
D=/sys/bus/dax/devices/dax0.0
for f in "$D/resource" "$D/size" "$D/align" /sys/bus/nd/devices/region0/resource \
    /sys/bus/nd/devices/region0/size /sys/bus/nd/devices/namespace0.0/resource \
    /sys/bus/nd/devices/namespace0.0/size /sys/bus/nd/devices/region0/persistence_domain; do
    [[ -r $f ]] && echo "INFO: $f = $(cat "$f")"
done
ls /sys/bus/nd/devices/
NS_RESOURCE=$(cat /sys/bus/nd/devices/namespace0.0/resource)
DAX_RESOURCE=$(cat "$D/resource")
DAX_SIZE=$(cat "$D/size")
DAX_ALIGN=$(cat "$D/align")
{
    echo "NS_RESOURCE=$NS_RESOURCE"
    echo "DAX_RESOURCE=$DAX_RESOURCE"
    echo "DAX_SIZE=$DAX_SIZE"
    echo "DAX_ALIGN=$DAX_ALIGN"
} >"$RESULTS/devdax-facts.env"
echo "INFO: dax0.0 starts $((DAX_RESOURCE - NS_RESOURCE)) bytes into namespace0.0; size $DAX_SIZE = namespace - $(($(cat /sys/bus/nd/devices/namespace0.0/size) - DAX_SIZE))"

echo 7 >/proc/sys/kernel/printk # so dax_mmap's reasons for EINVAL reach dmesg
python3 - <<'EOF' || { dmesg | tail -n 5; exit 1; }
import mmap, os, sys
MiB = 1 << 20
fd = os.open("/dev/dax0.0", os.O_RDWR)
try:
    mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    print("INFO: a 4 KiB mmap of /dev/dax0.0 succeeded")
except OSError as e:
    print(f"INFO: a 4 KiB mmap of /dev/dax0.0 fails: {e}")
m = mmap.mmap(fd, 2 * MiB, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
tag = b"PMEM-STACK-DAX-PROBE"
m[0:len(tag)] = tag
try:
    m.flush()  # msync(MS_SYNC)
    print("INFO: msync on /dev/dax0.0 succeeded")
except OSError as e:
    # The dax char device has no ->fsync: msync fails. Durability on devdax is the
    # writer's job (clwb/clflushopt + sfence), not the kernel's.
    print(f"INFO: msync on a /dev/dax0.0 mapping fails: {e}")
ok = m[0:len(tag)] == tag
print("PASS: 2 MiB MAP_SHARED mmap of /dev/dax0.0, write + read back" if ok else "FAIL: dax read back")
sys.exit(0 if ok else 1)
EOF
