#!/bin/bash
# Guest scenario: `pmem-stack map`, the data area as a device-mapper linear
# device. On an fsdax namespace (DAX-capable): the table, ext4 and xfs with
# -o dax=always, fio verify, the reserve untouched by a full fill, data
# crossing between map and add in both directions, exclusivity, unmap by
# every name. Then a raw namespace (not DAX-capable: the dax=always mount is
# refused) and a devdax one (refused by map). Boot with --size 1G
# --label-size 128K.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"
load_module xfs

require command -v ndctl
require command -v xfs_io
require command -v dmsetup
echo 7 >/proc/sys/kernel/printk
mkdir -p /tmp/mnt

# reconfigure MODE: namespace0.0 in MODE (fsdax, raw, devdax).
reconfigure() {
	ndctl disable-region all >/dev/null
	ndctl init-labels -f all >/dev/null
	ndctl enable-region all >/dev/null
	ndctl create-namespace -r region0 -m "$1" >/dev/null
}

# digest_outside DEV OFFSET SIZE: everything of DEV outside [OFFSET, +SIZE),
# read O_DIRECT (below any page cache): head, super blocks, reserve, tail.
digest_outside() {
	local dev=$1 off=$2 size=$3
	{
		dd if="$dev" bs=1M count=$((off / 1048576)) iflag=direct status=none
		dd if="$dev" bs=4096 skip=$(((off + size) / 4096)) iflag=direct status=none
	} | sha256sum | cut -d' ' -f1
}

# dax_in_effect FILE: statx reports STATX_ATTR_DAX (0x200000) for FILE.
dax_in_effect() {
	local attrs
	attrs=$(xfs_io -c 'statx -r' "$1" | awk '/^stat.attributes = /{print $3}')
	[ -n "$attrs" ] && (((attrs & 0x200000) != 0))
}

# read_at DEV OFFSET BYTES: sha256 of BYTES at OFFSET, read O_DIRECT.
read_at() {
	dd if="$1" bs=1M skip=$(($2 / 1048576)) count=$(($3 / 1048576)) iflag=direct status=none |
		sha256sum | cut -d' ' -f1
}

# write_at DEV OFFSET FILE: FILE's bytes at OFFSET, O_DIRECT, synced.
write_at() {
	dd if="$3" of="$1" bs=1M seek=$(($2 / 1048576)) oflag=direct conv=notrunc,fsync status=none
}

reconfigure fsdax
require test -b /dev/pmem0
expect_eq "fsdax /dev/pmem0 is DAX-capable" "$(cat /sys/block/pmem0/queue/dax)" 1

# --- refusals on a blank namespace: nothing written
before=$(meta_digest /dev/pmem0)
refused "map without --reserve on a blank backing" "not formatted yet" "$P" map /dev/pmem0
refused "map with a bad name" "only letters" "$P" map /dev/pmem0 --reserve 64M --name 'a/b'
truncate -s 64M /tmp/image
img_before=$(sha256sum </tmp/image)
refused "map of an image file" "an image file; a device-mapper map needs a block device" \
	"$P" map /tmp/image --reserve 64M
expect_eq "the image is unchanged" "$(sha256sum </tmp/image)" "$img_before"
expect_eq "the refusals changed nothing" "$(meta_digest /dev/pmem0)" "$before"

# --- map formats a blank backing with --reserve, then maps exactly the data area
node=$("$P" map /dev/pmem0 --reserve 64M | tail -1)
info=$("$P" info /dev/pmem0 --json)
uuid=$(echo "$info" | jget 'd["uuid"]')
data_offset=$(echo "$info" | jget 'd["data_offset"]')
data_size=$(echo "$info" | jget 'd["data_size"]')
name=pmem-stack-$uuid
expect_eq "map prints /dev/mapper/pmem-stack-<uuid>" "$node" "/dev/mapper/$name"
check "the node is a block device" test -b "$node"
pmem_dev=$(($(stat -c '0x%t' /dev/pmem0))):$(($(stat -c '0x%T' /dev/pmem0)))
expect_eq "the table is the data area" "$(dmsetup table "$name")" \
	"0 $((data_size / 512)) linear $pmem_dev $((data_offset / 512))"
expect_eq "the map's size is data_size" "$(blockdev --getsize64 "$node")" "$data_size"
dm=
for d in /sys/block/dm-*; do [ "$(cat "$d/dm/name")" != "$name" ] || dm=$(basename "$d"); done
expect_eq "the map is DAX-capable" "$(cat /sys/block/"$dm"/queue/dax)" 1
list=$("$P" list --json)
expect_eq "list: kind dm" "$(echo "$list" | jget '[x["kind"] for x in d]')" '["dm"]'
expect_eq "list: dax" "$(echo "$list" | jget 'd[0]["dax"]')" true
expect_eq "list: device" "$(echo "$list" | jget 'd[0]["device"]')" "$node"
expect_eq "list: data_offset" "$(echo "$list" | jget 'd[0]["data_offset"]')" "$data_offset"
expect_eq "list: backing" "$(echo "$list" | jget 'd[0]["backing"]')" /dev/pmem0
info=$("$P" info /dev/pmem0 --json)
expect_eq "info: served_by" "$(echo "$info" | jget 'd["served_by"]')" "$node"
expect_eq "info: served_kind" "$(echo "$info" | jget 'd["served_kind"]')" dm
expect_eq "info: dax" "$(echo "$info" | jget 'd["dax"]')" true
check "info text says mapped" sh -c "'$P' info /dev/pmem0 | grep -q 'mapped as $node (device-mapper linear, DAX)'"
check "list text shows the map" sh -c "'$P' list | grep -q '$node'"

# --- exclusivity: nothing else writes a mapped backing
before=$(meta_digest /dev/pmem0)
refused "add of a mapped backing" "mapped as $node; 'pmem-stack unmap $name' first" "$P" add /dev/pmem0
refused "map of a mapped backing" "mapped as $node" "$P" map /dev/pmem0 --name other
refused "format of a mapped backing" "mapped as $node" "$P" format /dev/pmem0 --reserve 0 --force
loop=$(losetup -f --show /tmp/image)
refused "a taken name" "a device-mapper device named $name exists already" \
	"$P" map "$loop" --reserve 8M --name "$name"
check "losetup -d" losetup -d "$loop"
expect_eq "the image behind the refused map is unchanged" "$(sha256sum </tmp/image)" "$img_before"
expect_eq "the refusals changed nothing" "$(meta_digest /dev/pmem0)" "$before"

# --- fio verify through the map, at both ends
fio_verify "fio crc32c verify at the start of the map" "$node" 0 32M
fio_verify "fio crc32c verify of the last MiB" "$node" $((data_size - 1048576)) 1M

# --- a full fill through the map leaves everything outside the data area alone
outside=$(digest_outside /dev/pmem0 "$data_offset" "$data_size")
check "fill the whole map (pattern 0x5a)" fio --name=fill --filename="$node" --rw=write --bs=1M \
	--direct=1 --ioengine=io_uring --iodepth=4 --size="$data_size" --buffer_pattern=0x5a5a5a5a
expect_eq "head, super blocks, reserve and tail untouched by the fill" \
	"$(digest_outside /dev/pmem0 "$data_offset" "$data_size")" "$outside"
expect_eq "the fill reached the first byte of the data area" \
	"$(dd if=/dev/pmem0 bs=512 skip=$((data_offset / 512)) count=1 iflag=direct status=none | od -An -tx1 -N1 | tr -d ' ')" 5a
expect_eq "the fill reached the last byte of the data area" \
	"$(dd if=/dev/pmem0 bs=512 skip=$(((data_offset + data_size) / 512 - 1)) count=1 iflag=direct status=none | od -An -tx1 -j511 -N1 | tr -d ' ')" 5a
check "metadata healthy after the fill" "$P" check /dev/pmem0

# --- bytes written through the map, read through add after unmap, and back
head -c $((4 << 20)) /dev/urandom >/tmp/a.bin
mid=$(((data_size / 2) / 1048576 * 1048576))
end=$((data_size - (4 << 20)))
for off in $mid $end; do write_at "$node" "$off" /tmp/a.bin; done
want=$(sha256sum </tmp/a.bin | cut -d' ' -f1)
check "unmap by /dev/mapper path" "$P" unmap "$node"
check "the node is gone" test ! -e "$node"
dev=$("$P" add /dev/pmem0 | tail -1)
expect_eq "added" "$dev" /dev/ublkb0
for off in $mid $end; do
	expect_eq "map → add: bytes at $off" "$(read_at "$dev" "$off" $((4 << 20)))" "$want"
done
refused "map of a served backing" "served as /dev/ublkb0" "$P" map /dev/pmem0
head -c $((4 << 20)) /dev/urandom >/tmp/b.bin
for off in 0 $end; do write_at "$dev" "$off" /tmp/b.bin; done
want=$(sha256sum </tmp/b.bin | cut -d' ' -f1)
check "del" "$P" del 0
node=$("$P" map /dev/pmem0 --name pmem-fast | tail -1)
expect_eq "map --name" "$node" /dev/mapper/pmem-fast
expect_eq "list: the custom name is listed" "$("$P" list --json | jget '[x["name"] for x in d]')" '["pmem-fast"]'
for off in 0 $end; do
	expect_eq "add → map: bytes at $off" "$(read_at "$node" "$off" $((4 << 20)))" "$want"
done

# --- ext4 with -o dax=always; its files through add, and back
check "mkfs.ext4 on the map" mkfs.ext4 -q -F "$node"
check "mount ext4 -o dax=always" mount -o dax=always "$node" /tmp/mnt
write_files /tmp/mnt 12
check "ext4: DAX in effect (statx)" dax_in_effect /tmp/mnt/f1
refused "unmap while mounted" "in use (mounted at /tmp/mnt)" "$P" unmap pmem-fast
check "umount" umount /tmp/mnt
check "unmap by backing" "$P" unmap /dev/pmem0
dev=$("$P" add /dev/pmem0 | tail -1)
check "mount the map's ext4 through ublk" mount "$dev" /tmp/mnt
check "map → add: files intact" verify_files /tmp/mnt
mkdir /tmp/mnt/b
write_files /tmp/mnt/b 8
check "umount" umount /tmp/mnt
check "del" "$P" del --all
node=$("$P" map /dev/pmem0 | tail -1)
check "mount it -o dax=always through the map again" mount -o dax=always "$node" /tmp/mnt
check "add → map: files written through ublk intact" verify_files /tmp/mnt/b
check "map's own files still intact" verify_files /tmp/mnt
check "umount" umount /tmp/mnt

# --- xfs with -o dax=always
check "mkfs.xfs on the map" mkfs.xfs -q -f -m reflink=0 "$node"
check "mount xfs -o dax=always" mount -o dax=always "$node" /tmp/mnt
write_files /tmp/mnt 12
check "xfs: DAX in effect (statx)" dax_in_effect /tmp/mnt/f1
check "umount" umount /tmp/mnt
check "mount xfs again" mount -o dax=always "$node" /tmp/mnt
check "xfs: files intact after remount" verify_files /tmp/mnt
check "umount" umount /tmp/mnt
check "unmap by name" "$P" unmap "pmem-stack-$uuid"
expect_eq "no maps left" "$("$P" list --json)" "[]"
refused "unmap of a map that is gone" "there is no map" "$P" unmap "pmem-stack-$uuid"
check "metadata healthy" "$P" check /dev/pmem0

# --- a raw namespace: not DAX-capable, so a dax=always mount is refused
reconfigure raw
require test -b /dev/pmem0
expect_eq "raw /dev/pmem0 is not DAX-capable" "$(cat /sys/block/pmem0/queue/dax)" 0
# What the fsdax namespace left behind is not this layout's: start over.
check "format the raw namespace" "$P" format /dev/pmem0 --reserve 64M --force
node=$("$P" map /dev/pmem0 | tail -1)
expect_eq "map on raw: not dax" "$("$P" list --json | jget 'd[0]["dax"]')" false
check "mkfs.ext4 on the raw map" mkfs.ext4 -q -F "$node"
dmesg -C
if mount -o dax=always "$node" /tmp/mnt 2>/tmp/mount.err; then
	fail "ext4 -o dax=always on a non-DAX map: mounted"
	umount /tmp/mnt
elif dmesg | grep -q "DAX unsupported by block device"; then
	pass "ext4 -o dax=always on a non-DAX map is refused ($(dmesg | grep -m1 'DAX unsupported' | sed 's/^\[[^]]*\] //'))"
else
	fail "ext4 dax=always refused without the reason: $(cat /tmp/mount.err) $(dmesg | tail -3)"
fi
check "mkfs.xfs on the raw map" mkfs.xfs -q -f -m reflink=0 "$node"
dmesg -C
if mount -o dax=always "$node" /tmp/mnt 2>/tmp/mount.err; then
	# xfs mounts, and says it turned DAX off.
	write_files /tmp/mnt 2
	if ! dax_in_effect /tmp/mnt/f1 && dmesg | grep -q "DAX unsupported by block device"; then
		pass "xfs -o dax=always on a non-DAX map: DAX turned off ($(dmesg | grep -m1 'DAX unsupported' | sed 's/^\[[^]]*\] //'))"
	else
		fail "xfs -o dax=always on a non-DAX map: $(dmesg | tail -3)"
	fi
	umount /tmp/mnt
elif dmesg | grep -q "DAX unsupported"; then
	pass "xfs -o dax=always on a non-DAX map is refused"
else
	fail "xfs dax=always refused without the reason: $(cat /tmp/mount.err)"
fi
check "unmap" "$P" unmap "$node"

# --- devdax: no block interface, refused
reconfigure devdax
require test -c /dev/dax0.0
before=$(meta_digest /dev/dax0.0)
refused "map of a devdax device" "a devdax device (it has no block interface)" \
	"$P" map /dev/dax0.0 --reserve 64M
refused "map of a devdax device says what to use" "serve it with 'pmem-stack add' instead" \
	"$P" map /dev/dax0.0 --reserve 64M
expect_eq "the devdax refusal changed nothing" "$(meta_digest /dev/dax0.0)" "$before"

finish
