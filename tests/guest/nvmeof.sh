#!/bin/bash
# Guest scenario: /dev/ublkbN exported through the kernel's NVMe-oF target
# (nvmet, loop transport) and used from the initiator side with nvme-cli,
# as docs/NVMEOF.md describes: the namespace has the device's size, fio
# verifies through it, a file system on it keeps its files, and a flush
# from the initiator (nvme flush, and fsync on the initiator's file system)
# reaches pmem-stack — its flush counter in 'list --json' moves — or, on a
# write-through device (the direct path, 6.16+), is answered by the kernel.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test -b /dev/pmem0
require command -v nvme
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
require test -d /sys/kernel/config/nvmet
require test -d /sys/module/nvme_loop

cd /tmp
# A write-back cache on 6.12, the default (write-through) on newer kernels:
# across the kernel matrix both ways of answering a FLUSH are exported.
# (6.12's nvmet declares a volatile cache whatever its backing has, so only
# a newer target shows a write-through device as one.)
cache_args=()
if ! kernel_at_least 6 16; then cache_args=(--write-cache write-back); fi
dev=$("$P" add /dev/pmem0 --reserve 512M "${cache_args[@]}" | tail -1)
expect_eq "added" "$dev" /dev/ublkb0
size=$(blockdev --getsize64 /dev/ublkb0)

# --- the target (docs/NVMEOF.md, "Export") ---
nqn=nqn.2026-11.io.pmem-stack:$("$P" info /dev/pmem0 --json | jget 'd["uuid"]')
cfg=/sys/kernel/config/nvmet
sub=$cfg/subsystems/$nqn
mkdir "$sub"
echo 1 >"$sub/attr_allow_any_host"
mkdir "$sub/namespaces/1"
echo -n /dev/ublkb0 >"$sub/namespaces/1/device_path"
echo 1 >"$sub/namespaces/1/enable"
mkdir "$cfg/ports/1"
echo loop >"$cfg/ports/1/addr_trtype"
ln -s "$sub" "$cfg/ports/1/subsystems/$nqn"
pass "nvmet subsystem $nqn exports /dev/ublkb0 on a loop port"

# --- the initiator ---
hostid=$(cat /proc/sys/kernel/random/uuid)
check "nvme connect" nvme connect -t loop -n "$nqn" --hostnqn="nqn.2014-08.org.nvmexpress:uuid:$hostid" --hostid="$hostid"
# The guest has no other NVMe device: the first namespace is the export.
nsdev=
for _ in $(seq 100); do
	# nvmeXnY is the namespace (with native multipath its head); the
	# per-path nvmeXcZnY is hidden and has no node.
	nsdev=$(ls -d /sys/block/nvme* 2>/dev/null | grep -E '/nvme[0-9]+n[0-9]+$' | head -1 || true)
	[ -n "$nsdev" ] && [ -b "/dev/$(basename "$nsdev")" ] && break
	sleep 0.1
done
require test -n "$nsdev"
nsdev=/dev/$(basename "$nsdev")
require test -b "$nsdev"
note "namespace: $nsdev"
expect_eq "the namespace has the device's size" "$(blockdev --getsize64 "$nsdev")" "$size"
# The namespace carries the ublk device's write cache.
cache=$(cat /sys/block/ublkb0/queue/write_cache)
expect_eq "the namespace reports the device's write cache ($cache)" "$(cat "/sys/block/$(basename "$nsdev")/queue/write_cache")" "$cache"

fio_verify "fio verify through NVMe-oF" "$nsdev" 0 64M

flushes() { "$P" list --json | jget 'd[0]["stats"]["flushes"]'; }
wait_flushes_above() {
	for _ in $(seq 100); do [ "$(flushes)" -gt "$1" ] && return 0; sleep 0.05; done
	return 1
}
# flush_reached NAME BEFORE: with a write-back cache the initiator's flush
# reaches pmem-stack; writing through, every write was durable already and
# the kernel answers it (the counter must stay put: no round trip).
flush_reached() {
	if [ "$cache" == "write back" ]; then
		check "$1 reached pmem-stack (flushes > $2)" wait_flushes_above "$2"
	else
		sleep 0.5
		expect_eq "$1 was answered by the kernel (write-through: no round trip)" "$(flushes)" "$2"
	fi
}
sleep 0.5
before=$(flushes)
check "nvme flush from the initiator" nvme flush "$nsdev" -n 1
flush_reached "the flush" "$before"
note "pmem-stack flushes: $before -> $(flushes)"

check "mkfs.ext4 on the namespace" mkfs.ext4 -q -F "$nsdev"
mkdir -p /tmp/mnt
check "mount" mount "$nsdev" /tmp/mnt
head -c 4M /dev/urandom >/tmp/mnt/before
before=$(flushes)
check "fsync on the initiator's file system" python3 -c 'import os; f=os.open("/tmp/mnt/before", os.O_RDWR); os.fsync(f)'
flush_reached "fsync" "$before"
write_files /tmp/mnt 6
check "files verify" verify_files /tmp/mnt
check "umount" umount /tmp/mnt

# --- teardown (docs/NVMEOF.md, "Stop exporting") ---
check "nvme disconnect" nvme disconnect -n "$nqn"
rm "$cfg/ports/1/subsystems/$nqn"
rmdir "$cfg/ports/1"
echo 0 >"$sub/namespaces/1/enable"
rmdir "$sub/namespaces/1"
rmdir "$sub"
pass "nvmet configuration removed"
check "the file system is on pmem-stack's device" e2fsck -fn /dev/ublkb0
check "del" "$P" del 0
check "metadata healthy" "$P" check /dev/pmem0

finish
