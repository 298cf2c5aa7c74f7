#!/bin/bash
# Guest scenario: `reserved` (what each owner claims, checked against the
# namespace's sysfs `resource`), `reserve split`/`list` and `format --owner`
# on /dev/pmem0, their refusal while served, and `grow` of an image file
# that grew: offline, and while served and mounted (Linux 6.16+: the device
# is handed over and resized live; 6.12 refuses with the way out). Boot with
# --size 2G.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test -b /dev/pmem0
base=$(cat /sys/block/pmem0/device/resource)
note "pmem0 at $base, kernel $(uname -r)"

# An unsplit (1.0) reserve: one owner, named after the mode, the whole reserve.
info=$("$P" format /dev/pmem0 --reserve 64M --json)
expect_eq "format without owners writes 1.0" "$(echo "$info" | jget 'd["format_version"]')" 1.0
r_off=$(echo "$info" | jget 'd["reserve_offset"]')
r_end=$((r_off + $(echo "$info" | jget 'd["reserve_size"]')))
all=$("$P" reserved /dev/pmem0 --json)
expect_eq "unsplit: one owner" "$(echo "$all" | jget 'len(d)')" 1
expect_eq "unsplit: named after the mode" "$(echo "$all" | jget 'd[0]["owner"]')" hypervisor
claim_matches "unsplit" "$(echo "$all" | jget 'd[0]')" "$r_off" "$r_end"
expect_eq "unsplit: agrees with info" "$(echo "$all" | jget 'd[0]["mfn_end"]')" "$(echo "$info" | jget 'd["reserve_mfn_end"]')"

# format --owner: a 1.1 volume with two owners.
info=$("$P" format /dev/pmem0 --force --reserve 64M --owner xen=24M --owner dom0=rest --json)
expect_eq "format --owner writes 1.1" "$(echo "$info" | jget 'd["format_version"]')" 1.1
check "info reads the 1.1 volume" "$P" check /dev/pmem0
xen=$("$P" reserved /dev/pmem0 --owner xen --json)
claim_matches "xen" "$xen" "$r_off" "$((r_off + (24 << 20)))"
expect_eq "xen: kind" "$(echo "$xen" | jget 'd["kind"]')" hypervisor
dom0=$("$P" reserved /dev/pmem0 --owner dom0 --json)
claim_matches "dom0" "$dom0" "$((r_off + (24 << 20)))" "$r_end"
expect_eq "dom0: kind" "$(echo "$dom0" | jget 'd["kind"]')" os
check "reserved, text" "$P" reserved /dev/pmem0
refused "reserved of an owner that is not there" "has no owner 'nope'" "$P" reserved /dev/pmem0 --owner nope

# Served: reading works; changing the split or the size is refused.
data_size=$(echo "$info" | jget 'd["data_size"]')
dev=$("$P" add /dev/pmem0 | tail -1)
expect_eq "the 1.1 volume serves its data area" "$(blockdev --getsize64 "$dev")" "$data_size"
check "reserved while served" "$P" reserved /dev/pmem0 --owner xen
before=$(meta_digest /dev/pmem0)
refused "split while served" "cannot change while it is served" \
	"$P" reserve split /dev/pmem0 --owner xen=8M --owner dom0=rest
pid=$(server_pid 0)
if kernel_at_least 6 16; then
	# Refused before the server is disturbed: a namespace that did not grow.
	refused "grow while served, nothing to grow" "nothing to grow" "$P" grow /dev/pmem0
	expect_eq "the refused grow left the server alone" "$(server_pid 0)" "$pid"
else
	refused "grow while served" "UBLK_F_UPDATE_SIZE needs Linux 6.16" "$P" grow /dev/pmem0
	refused "grow while served says what to do" "'pmem-stack del 0', then 'pmem-stack grow /dev/pmem0', then 'pmem-stack add /dev/pmem0'" "$P" grow /dev/pmem0
fi
expect_eq "the refusals changed nothing" "$(meta_digest /dev/pmem0)" "$before"
check "del" "$P" del 0

# reserve split offline.
out=$("$P" reserve split /dev/pmem0 --owner xen=8M --owner fw:other=4K --owner dom0=rest --json)
expect_eq "split: three owners" "$(echo "$out" | jget '[o["owner"] for o in d["owners"]]')" '["xen", "fw", "dom0"]'
expect_eq "split: generation bumped" "$(echo "$out" | jget 'd["generation"]')" 3
claim_matches "fw" "$("$P" reserved /dev/pmem0 --owner fw --json)" "$((r_off + (8 << 20)))" "$((r_off + (8 << 20) + 4096))"
check "healthy after split" "$P" check /dev/pmem0

# grow: an image file that grew.
mkdir -p /tmp/img /tmp/mnt
img=/tmp/img/grow.img
truncate -s 256M "$img"
small=$("$P" format "$img" --reserve 8M --json | jget 'd["data_size"]')
dev=$("$P" add "$img" | tail -1)
check "mkfs.ext4" mkfs.ext4 -q -F "$dev"
check "mount" mount "$dev" /tmp/mnt
write_files /tmp/mnt 12
check "umount" umount /tmp/mnt
check "del" "$P" del --all
refused "grow of a backing that did not grow" "nothing to grow" "$P" grow "$img"
truncate -s 512M "$img"
grown=$("$P" grow "$img" --json)
big=$(echo "$grown" | jget 'd["data_size"]')
expect_eq "grow extends the data area by 256 MiB" "$big" "$((small + (256 << 20)))"
expect_eq "grow moves the backup to the new end" "$(echo "$grown" | jget 'd["backup"]["offset"]')" "$(((512 << 20) - 4096))"
check "healthy after grow" "$P" check "$img"
dev=$("$P" add "$img" | tail -1)
expect_eq "add serves the larger size" "$(blockdev --getsize64 "$dev")" "$big"
check "mount after grow" mount "$dev" /tmp/mnt
check "files intact after grow" verify_files /tmp/mnt
check "resize2fs online" resize2fs "$dev"
fs_bytes=$(($(stat -f -c '%b * %S' /tmp/mnt)))
if [ "$fs_bytes" -gt $((small + (128 << 20))) ]; then pass "ext4 grew ($fs_bytes bytes)"; else fail "ext4 did not grow: $fs_bytes"; fi
check "files intact after resize2fs" verify_files /tmp/mnt
check "umount" umount /tmp/mnt
check "del" "$P" del --all
truncate -s 300M "$img"
before=$(meta_digest "$img")
refused "grow of a backing that shrank" "shrunk" "$P" grow "$img"
expect_eq "the refusal changed nothing" "$(meta_digest "$img")" "$before"

# grow of a served backing, under a mounted ext4 that keeps being written.
img=/tmp/img/live.img
rm -f "$img"
truncate -s 256M "$img"
small=$("$P" format "$img" --reserve 8M --json | jget 'd["data_size"]')
dev=$("$P" add "$img" | tail -1)
id=${dev#/dev/ublkb}
check "live: mkfs.ext4" mkfs.ext4 -q -F "$dev"
check "live: mount" mount "$dev" /tmp/mnt
write_files /tmp/mnt 8
pid=$(server_pid "$id")
truncate -s 512M "$img"
if kernel_at_least 6 16; then
	# A writer that must never see an error while the device is handed over.
	# It writes and syncs a file at a time until told to stop, through the
	# hand-over (its I/O waits in the kernel, and must not fail).
	rm -f /tmp/writer.stop /tmp/writer.sums
	(
		set -e
		i=0
		while [ ! -e /tmp/writer.stop ]; do
			i=$((i + 1))
			head -c 65536 /dev/urandom >"/tmp/mnt/w$i"
			sync "/tmp/mnt/w$i"
			(cd /tmp/mnt && sha256sum "w$i") >>/tmp/writer.sums
		done
	) &
	writer=$!
	while [ ! -s /tmp/writer.sums ]; do sleep 0.1; done
	grown=$("$P" grow "$img" --json)
	during=$(wc -l </tmp/writer.sums)
	while [ "$(wc -l </tmp/writer.sums)" -le "$during" ] && kill -0 "$writer" 2>/dev/null; do sleep 0.1; done
	touch /tmp/writer.stop
	if wait "$writer"; then pass "live grow: the writer saw no error ($(wc -l </tmp/writer.sums) files)"; else fail "live grow: the writer failed (exit $?)"; fi
	big=$(echo "$grown" | jget 'd["data_size"]')
	expect_eq "live grow: the data area grew by 256 MiB" "$big" "$((small + (256 << 20)))"
	expect_eq "live grow: the device serves the grown area" "$(blockdev --getsize64 "$dev")" "$big"
	expect_eq "live grow: the same device" "$(echo "$grown" | jget 'd["served_by"]')" "$dev"
	if [ "$(server_pid "$id")" != "$pid" ]; then pass "live grow: a new server serves it"; else fail "live grow: the old server still runs"; fi
	check "live grow: the writer's files are intact" bash -c "cd /tmp/mnt && sha256sum --quiet -c /tmp/writer.sums"
	check "live grow: files intact" verify_files /tmp/mnt
	check "live grow: resize2fs online" resize2fs "$dev"
	fs_bytes=$(($(stat -f -c '%b * %S' /tmp/mnt)))
	if [ "$fs_bytes" -gt $((small + (128 << 20))) ]; then pass "live grow: ext4 grew ($fs_bytes bytes)"; else fail "live grow: ext4 did not grow: $fs_bytes"; fi
	check "live grow: fill the grown file system" dd if=/dev/urandom of=/tmp/mnt/big bs=1M count=300 conv=fsync status=none
	check "live grow: files intact after resize2fs" verify_files /tmp/mnt

	# A grow whose server died first (as if an earlier grow was cut after the
	# hand-over): the device waits quiesced; grow grows it and recovers it.
	kill -9 "$(server_pid "$id")"
	truncate -s 640M "$img"
	check "grow of a device whose server died" "$P" grow "$img"
	expect_eq "it serves the grown area" "$(blockdev --getsize64 "$dev")" "$((small + (384 << 20)))"
	check "files intact after the second grow" verify_files /tmp/mnt
	check "healthy after live grows" "$P" check "$img"
else
	before=$(meta_digest "$img")
	refused "live grow on this kernel" "UBLK_F_UPDATE_SIZE needs Linux 6.16" "$P" grow "$img"
	expect_eq "the refused live grow changed nothing" "$(meta_digest "$img")" "$before"
	expect_eq "the device still serves its size" "$(blockdev --getsize64 "$dev")" "$small"
	expect_eq "the same server serves it" "$(server_pid "$id")" "$pid"
	check "files intact after the refusal" verify_files /tmp/mnt
fi
check "live: umount" umount /tmp/mnt
check "live: del" "$P" del --all

finish
