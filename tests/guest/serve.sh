#!/bin/bash
# Guest scenario: serve a 2 GiB /dev/pmem0 — add, fio, ext4, xfs, del, re-add,
# discard, and every refusal. Runs inside the QEMU guest (tests/vm/boot.sh).
source "$PMEM_STACK_REPO/tests/guest/lib.sh"
load_module xfs

require test -b /dev/pmem0
require test -c /dev/ublk-control
expect_eq "namespace is 2 GiB" "$(blockdev --getsize64 /dev/pmem0)" 2147483648

# --- add formats a blank namespace and prints the device last, once live ---
out=$("$P" add /dev/pmem0 --reserve 512M)
expect_eq "add prints the device as its last line" "$(echo "$out" | tail -1)" /dev/ublkb0
check "device node exists" test -b /dev/ublkb0
info=$("$P" info /dev/pmem0 --json)
data_size=$(echo "$info" | jget 'd["data_size"]')
data_offset=$(echo "$info" | jget 'd["data_offset"]')
uuid=$(echo "$info" | jget 'd["uuid"]')
expect_eq "info works while served (served_by)" "$(echo "$info" | jget 'd["served_by"]')" /dev/ublkb0
expect_eq "reserve is 512 MiB" "$(echo "$info" | jget 'd["reserve_size"]')" 536870912
expect_eq "device size equals data_size" "$(blockdev --getsize64 /dev/ublkb0)" "$data_size"
expect_eq "info reports the reserve's physical start" \
	"$(echo "$info" | jget 'd["reserve_phys_start"]')" \
	"$(($(cat /sys/block/pmem0/device/resource) + $(echo "$info" | jget 'd["reserve_offset"]')))"
expect_eq "parent uuid of a raw namespace is null" "$(echo "$info" | jget 'd["parent_uuid"]')" null
list=$("$P" list --json)
expect_eq "list: one device" "$(echo "$list" | jget 'len(d)')" 1
expect_eq "list: state live" "$(echo "$list" | jget 'd[0]["state"]')" live
expect_eq "list: backing" "$(echo "$list" | jget 'd[0]["backing"]')" /dev/pmem0
expect_eq "list: data_offset" "$(echo "$list" | jget 'd[0]["data_offset"]')" "$data_offset"
path=$(default_block_path)
expect_eq "list: io_path is this kernel's default ($path)" "$(echo "$list" | jget 'd[0]["io_path"]')" "$path"
# The direct path copies small requests with user copy too.
expect_eq "list: user copy in use exactly on the paths that copy with it" "$(echo "$list" | jget 'd[0]["user_copy"]')" \
	"$([ "$path" == user_copy ] || [ "$path" == direct ] && echo true || echo false)"
expect_eq "info: the served data area's I/O path" "$("$P" info /dev/pmem0 --json | jget 'd["io_path"]')" "$path"
path_flag=$([ "$path" == direct ] && echo auto_buf_reg || echo user_copy)
for feature in $path_flag user_recovery user_recovery_reissue; do
	expect_eq "list: features has $feature" \
		"$(echo "$list" | jget "'$feature' in d[0]['features']")" true
done
# What this kernel offers beyond 6.12, by name (informational: the
# assertions above hold on every supported kernel).
note "kernel $(uname -r): granted $(echo "$list" | jget '",".join(d[0]["features"])')"
check "the server log names the I/O path and the kernel's features" \
	grep -q "I/O path $path" /run/pmem-stack/ublkb0.log
check "list: keys" bash -c "'$P' list --json | python3 -c 'import json,sys; e=json.load(sys.stdin)[0]; missing=[k for k in \"id device backing state pid queues depth data_offset data_size reserve_offset reserve_size\".split() if k not in e]; sys.exit(1 if missing else 0)'"
expect_eq "logical block size 512" "$(blockdev --getss /dev/ublkb0)" 512
# Over a block device every write is durable when acknowledged (on user
# copy and on the direct path): the kernel answers FLUSH itself.
expect_eq "list: write-through" "$(echo "$list" | jget 'd[0]["write_cache"]')" write_through
expect_eq "no volatile write cache" "$(cat /sys/block/ublkb0/queue/write_cache)" "write through"
expect_eq "no FUA to advertise" "$(cat /sys/block/ublkb0/queue/fua)" 0

# --- raw device: fio with crc32c verify at the start and the last MiB ---
fio_verify "fio verify at the start" /dev/ublkb0 0 16M
fio_verify "fio verify of the last MiB" /dev/ublkb0 $((data_size - 1048576)) 1M
fio_verify "fio verify, 2 jobs, sequential 128k" /dev/ublkb0 64M 32M --rw=write --bs=128k --numjobs=2 --offset_increment=32M

# The data really sits at data_offset in the namespace (and nowhere else).
head -c 1048576 /dev/urandom >/tmp/marker
dd if=/tmp/marker of=/dev/ublkb0 bs=1M seek=100 oflag=direct conv=fsync status=none
check "data lands at data_offset in /dev/pmem0" bash -c \
	"cmp /tmp/marker <(dd if=/dev/pmem0 bs=1M skip=$((data_offset / 1048576 + 100)) count=1 iflag=direct status=none)"

# --- discard and write zeroes read back as zeros ---
check "blkdiscard a range" blkdiscard -o $((100 << 20)) -l $((1 << 20)) /dev/ublkb0
check "discarded range reads zeros" cmp -n 1048576 /dev/zero <(dd if=/dev/ublkb0 bs=1M skip=100 count=1 iflag=direct status=none)
dd if=/tmp/marker of=/dev/ublkb0 bs=1M seek=101 oflag=direct conv=fsync status=none
check "write zeroes (blkdiscard -z)" blkdiscard -z -o $((101 << 20)) -l $((1 << 20)) /dev/ublkb0
check "zeroed range reads zeros" cmp -n 1048576 /dev/zero <(dd if=/dev/ublkb0 bs=1M skip=101 count=1 iflag=direct status=none)

# --- ext4 ---
mkdir -p /tmp/mnt
check "mkfs.ext4" mkfs.ext4 -q -F /dev/ublkb0
check "mount ext4" mount /dev/ublkb0 /tmp/mnt
write_files /tmp/mnt 24
check "ext4 files verify" verify_files /tmp/mnt
check "umount ext4" umount /tmp/mnt
check "remount ext4" mount /dev/ublkb0 /tmp/mnt
check "ext4 files verify after remount" verify_files /tmp/mnt
check "fsck-clean after umount" bash -c "umount /tmp/mnt && e2fsck -fn /dev/ublkb0"

# --- xfs (kept for the re-add check) ---
check "mkfs.xfs" mkfs.xfs -q -f /dev/ublkb0
check "mount xfs" mount /dev/ublkb0 /tmp/mnt
write_files /tmp/mnt 24
check "xfs files verify" verify_files /tmp/mnt
cp /tmp/mnt/SHA256SUMS /tmp/xfs.sums

# --- refusals while served ---
before=$(meta_digest /dev/pmem0)
refused "second add of a served backing" "served as /dev/ublkb0" "$P" add /dev/pmem0
refused "format of a served backing" "in use" "$P" format /dev/pmem0 --reserve 0 --force
refused "check --repair of a served backing" "in use" "$P" check --repair /dev/pmem0
check "check (read-only) works while served" "$P" check /dev/pmem0
expect_eq "refusals left the namespace unchanged" "$(meta_digest /dev/pmem0)" "$before"

# add of a mounted device (a loop device with ext4 on it)
truncate -s 64M /tmp/loop.img
loopdev=$(losetup -f --show /tmp/loop.img)
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$loopdev"
mkdir -p /tmp/lmnt
# Read-only: a mounted, writable ext4 rewrites its super block on its own.
mount -o ro,noload "$loopdev" /tmp/lmnt
dd if="$loopdev" of=/tmp/loop.before bs=1M status=none
refused "add of a mounted device" "mounted at /tmp/lmnt" "$P" add "$loopdev" --reserve 8M --force
refused "format of a mounted device" "mounted at /tmp/lmnt" "$P" format "$loopdev" --reserve 8M --force
dd if="$loopdev" of=/tmp/loop.after bs=1M status=none
changed=$(cmp -l /tmp/loop.before /tmp/loop.after | awk '{printf "0x%x ", $1 - 1}' | head -c 300 || true)
expect_eq "mounted device unchanged (differing offsets: ${changed:-none})" "$changed" ""
umount /tmp/lmnt
losetup -d "$loopdev"

# A server that cannot start: the id is taken. No half-made device, no write.
truncate -s 256M /tmp/pmem.img
count=$(ublk_count)
refused "add --id of a taken id" "already taken" "$P" add /tmp/pmem.img --reserve 0 --id 0
expect_eq "no half-made device left" "$(ublk_count)" "$count"
refused "the image was not formatted" "not formatted" "$P" info /tmp/pmem.img

# An image file on tmpfs serves too, with its own id.
out=$("$P" add /tmp/pmem.img --reserve 0 --json)
img_id=$(echo "$out" | jget 'd["id"]')
expect_eq "add --json names the device" "$(echo "$out" | jget 'd["device"]')" "/dev/ublkb$img_id"
fio_verify "fio verify on an image-file backing" "/dev/ublkb$img_id" 0 8M

# --- --foreground: stays attached; SIGTERM and SIGINT flush, stop, remove ---
truncate -s 128M /tmp/fg.img
head -c 1048576 /dev/urandom >/tmp/fg.marker
for sig in TERM INT; do
	"$P" add /tmp/fg.img --reserve 0 --foreground >/tmp/fg.out 2>/tmp/fg.err &
	fg=$!
	for _ in $(seq 300); do
		grep -q '^/dev/ublkb' /tmp/fg.out 2>/dev/null && break
		sleep 0.1
	done
	fgdev=$(tail -1 /tmp/fg.out)
	check "foreground add prints the device ($sig)" test -b "$fgdev"
	dd if=/tmp/fg.marker of="$fgdev" bs=1M seek=3 oflag=direct status=none
	kill "-$sig" "$fg"
	rc=0
	wait "$fg" || rc=$?
	expect_eq "foreground server exits 0 on SIG$sig" "$rc" 0
	check "its device is gone after SIG$sig" test ! -e "$fgdev"
	again=$("$P" add /tmp/fg.img | tail -1)
	check "data written before SIG$sig is there" cmp /tmp/fg.marker <(dd if="$again" bs=1M skip=3 count=1 iflag=direct status=none)
	"$P" del "$again" >/dev/null
done

# --- del, then add again without --reserve: layout reused, files intact ---
refused "del of a mounted device" "mounted at /tmp/mnt" "$P" del 0
umount /tmp/mnt
check "del by path" "$P" del /dev/ublkb0
check "device node gone" test ! -e /dev/ublkb0
expect_eq "list after del" "$("$P" list --json | jget '[x["id"] for x in d]')" "[$img_id]"
refused "add with a disagreeing --reserve" "disagrees" "$P" add /dev/pmem0 --reserve 256M
refused "add with a disagreeing --mode" "disagrees" "$P" add /dev/pmem0 --mode os
expect_eq "disagreeing add changed nothing" "$(meta_digest /dev/pmem0)" "$before"
expect_eq "no device left by the refused adds" "$(ublk_count)" 1
# udev holds a shared flock on a block device while it probes it (at boot,
# after a writer closes it): add waits that out, up to 5 s, and names a
# holder that stays longer. flock(1) stands in for udev.
flock --shared --close /dev/pmem0 sleep 60 &
holder=$!
sleep 0.2
t0=$(date +%s%N)
refused "add while another program holds /dev/pmem0's lock" "locked for more than 5 s by another program" \
	"$P" add /dev/pmem0
waited=$((($(date +%s%N) - t0) / 1000000))
[ "$waited" -ge 5000 ] && pass "... after waiting it out for 5 s (${waited} ms)" ||
	fail "... refused after ${waited} ms, not 5 s"
# flock(1) runs sleep as its child and waits for it: ending the child ends
# flock too (killing flock alone would leave the sleep's 60 s to outlive
# the test).
pkill -P "$holder" sleep || { fail "no sleep under the lock holder $holder"; kill "$holder"; }
wait "$holder" 2>/dev/null || true # its child killed: non-zero
expect_eq "the refused add changed nothing" "$(meta_digest /dev/pmem0)" "$before"
flock --shared /dev/pmem0 sleep 1 &
sleep 0.2
out=$("$P" add /dev/pmem0)
wait
dev=$(echo "$out" | tail -1)
expect_eq "re-add gives a device" "$(test -b "$dev" && echo yes)" yes
info=$("$P" info /dev/pmem0 --json)
expect_eq "re-add reuses the uuid" "$(echo "$info" | jget 'd["uuid"]')" "$uuid"
expect_eq "re-add reuses data_offset" "$(echo "$info" | jget 'd["data_offset"]')" "$data_offset"
check "mount xfs after re-add" mount "$dev" /tmp/mnt
check "xfs files intact after del and re-add" verify_files /tmp/mnt
check "xfs sums unchanged" cmp /tmp/xfs.sums /tmp/mnt/SHA256SUMS
check "umount after re-add" umount /tmp/mnt
check "xfs_repair -n clean" xfs_repair -n "$dev"

# --- del --all ---
check "del --all" "$P" del --all
expect_eq "no devices after del --all" "$(ublk_count)" 0
expect_eq "list is empty" "$("$P" list --json)" "[]"
check "check is healthy after serving" "$P" check /dev/pmem0

finish
