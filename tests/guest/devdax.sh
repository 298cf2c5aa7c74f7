#!/bin/bash
# Guest scenario: a devdax namespace (/dev/dax0.0, mapped directly, no page
# cache) as the backing. Boot with --size 1G --label-size 128K.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require_devdax
dax_base=$(cat /sys/bus/dax/devices/dax0.0/resource)
ns_uuid=$(cat /sys/bus/nd/devices/namespace0.0/uuid)
note "dax0.0 at $dax_base, namespace uuid $ns_uuid"

# Offline commands on a character device.
refused "add without --reserve on a blank devdax" "not formatted yet" "$P" add /dev/dax0.0
out=$("$P" format /dev/dax0.0 --reserve auto --json)
expect_eq "backing kind" "$(echo "$out" | jget 'd["backing_kind"]')" dax
expect_eq "size is the devdax size" "$(echo "$out" | jget 'd["device_size"]')" "$(cat /sys/bus/dax/devices/dax0.0/size)"
expect_eq "parent uuid is the namespace's" "$(echo "$out" | jget 'd["parent_uuid"]')" "$ns_uuid"
expect_eq "reserve physical start" "$(echo "$out" | jget 'd["reserve_phys_start"]')" \
	"$((dax_base + $(echo "$out" | jget 'd["reserve_offset"]')))"
expect_eq "reserve MFN range" "$(echo "$out" | jget 'd["reserve_mfn_end"] - d["reserve_mfn_start"]')" \
	"$(($(echo "$out" | jget 'd["reserve_size"]') / 4096))"
check "check on devdax" "$P" check /dev/dax0.0
before=$(meta_digest /dev/dax0.0)
refused "the direct path on devdax" "served through its mapping" "$P" add /dev/dax0.0 --io-path direct
expect_eq "the refusal changed nothing" "$(meta_digest /dev/dax0.0)" "$before"
data_size=$(echo "$out" | jget 'd["data_size"]')

dev=$("$P" add /dev/dax0.0 | tail -1)
# Each write's cache lines are written back before it completes: no
# volatile cache, as the kernel sees it.
expect_eq "devdax writes through" "$("$P" list --json | jget 'd[0]["write_cache"]')" write_through
expect_eq "the kernel sees no volatile cache" "$(cat "/sys/block/${dev#/dev/}/queue/write_cache")" "write through"
expect_eq "added" "$dev" /dev/ublkb0
expect_eq "device size equals data_size" "$(blockdev --getsize64 /dev/ublkb0)" "$data_size"
check "info while served" "$P" info /dev/dax0.0
fio_verify "fio verify at the start" /dev/ublkb0 0 16M
fio_verify "fio verify of the last MiB" /dev/ublkb0 $((data_size - 1048576)) 1M
check "write zeroes" blkdiscard -z -o 0 -l $((1 << 20)) /dev/ublkb0
check "zeroed range reads zeros" cmp -n 1048576 /dev/zero <(dd if=/dev/ublkb0 bs=1M count=1 iflag=direct status=none)
check "mkfs.ext4" mkfs.ext4 -q -F /dev/ublkb0
mkdir -p /tmp/mnt
check "mount" mount /dev/ublkb0 /tmp/mnt
write_files /tmp/mnt 16
check "umount" umount /tmp/mnt
refused "second add of a served devdax" "in use" "$P" add /dev/dax0.0
check "del" "$P" del 0
dev=$("$P" add /dev/dax0.0 | tail -1)
check "mount after re-add" mount "$dev" /tmp/mnt
check "files intact after del and re-add" verify_files /tmp/mnt
check "umount" umount /tmp/mnt
check "del" "$P" del --all
check "metadata healthy" "$P" check /dev/dax0.0

finish
