#!/bin/bash
# Guest scenario: every I/O path `add --io-path` offers on this kernel serves
# the same bytes: data written on one path reads back on the others, a file
# system made on one mounts on the others, fio verifies on each; a path the
# kernel or the backing cannot serve is refused up front, changing nothing.
# Over a block device user copy, the direct path and batch write through (no
# volatile cache, as the kernel sees it), also after recovery; auto takes
# the direct path there on 6.16+, but user copy when asked to write back;
# --write-cache write-back, and write-through where it cannot be, are
# checked too. The direct path's io_uring workers are pinned, one per CPU at
# most, also after recovery; writing through, its requests under 64 KiB are
# copied by the queue thread and make none. Two threads per queue (PMEM_STACK_IO_THREADS)
# serve on 6.16+ and are refused before. User copy reads O_DIRECT, keeping
# no page cache of the namespace; PMEM_STACK_READS=mapping reads through it.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test -b /dev/pmem0
check "format" "$P" format /dev/pmem0 --reserve 256M
# user-copy, direct and batch write through on a block device by default;
# +write-back declares a volatile cache instead (FLUSH syncs).
paths="user-copy user-copy+write-back bounce"
# refuse_path PATH FLAG: this kernel does not offer PATH; add says so and
# changes nothing.
refuse_path() {
	local before
	before=$(meta_digest /dev/pmem0)
	refused "$1 on a kernel without $2" "not offered by this kernel" \
		"$P" add /dev/pmem0 --io-path "$1"
	expect_eq "the refusal of $1 changed nothing" "$(meta_digest /dev/pmem0)" "$before"
}
if kernel_at_least 6 16; then
	paths+=" direct direct+write-back"
else
	refuse_path direct UBLK_F_AUTO_BUF_REG
fi
if kernel_at_least 7 0; then
	paths+=" batch batch+write-back"
else
	refuse_path batch UBLK_F_BATCH_IO
fi
note "kernel $(uname -r): paths $paths"

# add_path PATH[+CACHE]: add /dev/pmem0 on PATH (with --write-cache CACHE)
# and check list and the kernel say so.
add_path() {
	local path=${1%%+*} dev cache=write_back sysfs="write back"
	local args=(--io-path "$path")
	if [ "$1" != "$path" ]; then
		args+=(--write-cache "${1#*+}")
	elif [ "$path" != bounce ]; then
		cache=write_through sysfs="write through"
	fi
	dev=$("$P" add /dev/pmem0 "${args[@]}" | tail -1)
	expect_eq "$1: added" "$dev" /dev/ublkb0
	expect_eq "$1: list io_path" "$("$P" list --json | jget 'd[0]["io_path"]')" \
		"$(case $path in user-copy) echo user_copy ;; bounce) echo bounce_buffer ;; *) echo "$path" ;; esac)"
	expect_eq "$1: list write_cache" "$("$P" list --json | jget 'd[0]["write_cache"]')" "$cache"
	expect_eq "$1: the kernel's write cache" "$(cat /sys/block/ublkb0/queue/write_cache)" "$sysfs"
}

# direct_workers WHAT: right after I/O on the direct path, the server's
# io_uring workers (each request of 64 KiB or more hops to one) exist, are pinned, number at
# most one per CPU, and by default keep off their queue's own CPUs (its
# submitters run there).
direct_workers() {
	local workers
	workers=$(io_workers "$(server_pid 0)")
	note "$1: io_uring workers pinned / free to run on every CPU: $workers"
	expect_eq "$1: no io_uring worker may run on every CPU" "${workers#* }" 0
	check "$1: the direct path's io_uring workers are there" test "${workers% *}" -ge 1
	check "$1: at most one io_uring worker per CPU" test "${workers% *}" -le "$(nproc)"
	# Where each queue's workers were put (the server logs it): by default
	# off the queue's own CPUs, where its submitters run.
	local log q own put cpu shared
	log=$("$P" list --json | jget 'd[0]["log"]')
	for q in /sys/block/ublkb0/mq/*; do
		own=$(cpus "$(cat "$q/cpu_list")")
		put=$(grep -o "queue ${q##*/}: io_uring workers on CPUs \[[0-9, ]*\]" "$log" | tail -1 |
			sed 's/.*\[\(.*\)\]/\1/')
		check "$1: queue ${q##*/}'s io_uring workers were placed" test -n "$put"
		note "$1: queue ${q##*/} on CPUs $own, its io_uring workers on $put"
		shared=""
		for cpu in $(cpus "$put"); do
			case " $own" in *" $cpu "*) shared+="$cpu " ;; esac
		done
		expect_eq "$1: queue ${q##*/}'s io_uring workers keep off its own CPUs" "$shared" ""
	done
}

mkdir -p /tmp/mnt
prev=""
for path in $paths; do
	add_path "$path"
	if [ -n "$prev" ]; then
		check "$path: mount the ext4 made on $prev" mount /dev/ublkb0 /tmp/mnt
		check "$path: files written on $prev intact" verify_files /tmp/mnt
		check "umount" umount /tmp/mnt
		check "$path: the marker written on $prev reads back" bash -c \
			"cmp /tmp/marker <(dd if=/dev/ublkb0 bs=1M skip=900 count=1 iflag=direct status=none)"
	fi
	# Past the 512 MiB file system and before the marker.
	fio_verify "$path: fio verify 4k" /dev/ublkb0 600M 16M
	fio_verify "$path: fio verify 128k, FUA writes" /dev/ublkb0 640M 16M --bs=128k --sync=1
	[ "${path%%+*}" != direct ] || direct_workers "$path"
	check "$path: mkfs.ext4" mkfs.ext4 -q -F -E nodiscard /dev/ublkb0 512M
	check "$path: mount" mount /dev/ublkb0 /tmp/mnt
	write_files /tmp/mnt 12
	check "$path: fsync'd files verify" verify_files /tmp/mnt
	check "umount" umount /tmp/mnt
	if [ "$path" == direct ] || [ "$path" == user-copy ] || [ "$path" == batch ]; then
		# A recovered server keeps the write cache the device declared: the
		# kernel sends it no FLUSH, so it must go on writing through.
		kill -9 "$(server_pid 0)"
		check "$path: recover after kill -9" "$P" recover 0
		expect_eq "$path: still write-through after recovery" "$("$P" list --json | jget 'd[0]["write_cache"]')" write_through
		expect_eq "$path: the kernel still sees no volatile cache" "$(cat /sys/block/ublkb0/queue/write_cache)" "write through"
		fio_verify "$path: fio verify after recovery" /dev/ublkb0 600M 16M
		if [ "$path" == direct ]; then
			# Writing through, the queue thread copies requests under
			# 64 KiB itself: the new server's 4 KiB I/O made no worker.
			expect_eq "direct, recovered: 4 KiB requests hop to no io_uring worker" "$(io_workers "$(server_pid 0)")" "0 0"
			fio_verify "$path: fio verify 128k after recovery" /dev/ublkb0 640M 16M --bs=128k
			direct_workers "$path, recovered"
		fi
	fi
	# A marker at a known place: the next path must read these very bytes.
	head -c 1048576 /dev/urandom >/tmp/marker
	dd if=/tmp/marker of=/dev/ublkb0 bs=1M seek=900 oflag=direct conv=fsync status=none
	check "$path: del" "$P" del 0
	for _ in $(seq 100); do [ "$(ublk_count)" -eq 0 ] && break; sleep 0.1; done
	data_offset=$("$P" info /dev/pmem0 --json | jget 'd["data_offset"]')
	check "$path: the marker sits at data_offset+900M of /dev/pmem0" bash -c \
		"cmp /tmp/marker <(dd if=/dev/pmem0 bs=1M skip=$((data_offset / 1048576 + 900)) count=1 iflag=direct status=none)"
	prev=$path
done

# Round trip back to the first path: what the last one wrote reads back.
first=${paths%% *}
add_path "$first"
check "$first: mount the ext4 made on $prev" mount /dev/ublkb0 /tmp/mnt
check "$first: files written on $prev intact" verify_files /tmp/mnt
check "umount" umount /tmp/mnt
check "$first: marker written on $prev reads back" bash -c \
	"cmp /tmp/marker <(dd if=/dev/ublkb0 bs=1M skip=900 count=1 iflag=direct status=none)"
check "del" "$P" del 0
for _ in $(seq 100); do [ "$(ublk_count)" -eq 0 ] && break; sleep 0.1; done
check "metadata healthy after every path" "$P" check /dev/pmem0

# Threads per queue (PMEM_STACK_IO_THREADS, for measuring): on 6.16+ each
# queue gets that many threads, each serving its share of the tags, and
# the bytes are the same; before 6.16 (no per-I/O daemons) add refuses up
# front, changing nothing.
# queue_threads: the server's threads, io_uring's workers left out.
queue_threads() { grep -L '^iou-' /proc/"$(server_pid 0)"/task/*/comm | wc -l; }
if kernel_at_least 6 16; then
	# On the default path (direct here) and on user copy.
	for path in direct user-copy; do
		dev=$("$P" add /dev/pmem0 --io-path $path | tail -1)
		expect_eq "$path, 1 thread per queue: added" "$dev" /dev/ublkb0
		one=$(queue_threads)
		queues=$("$P" list --json | jget 'd[0]["queues"]')
		check "$path, 1 thread per queue: del" "$P" del 0
		for _ in $(seq 100); do [ "$(ublk_count)" -eq 0 ] && break; sleep 0.1; done
		dev=$(PMEM_STACK_IO_THREADS=2 "$P" add /dev/pmem0 --io-path $path | tail -1)
		expect_eq "$path, 2 threads per queue: added" "$dev" /dev/ublkb0
		expect_eq "$path, 2 threads per queue: one more thread for each of the $queues queues" \
			"$(($(queue_threads) - one))" "$queues"
		fio_verify "$path, 2 threads per queue: fio verify 4k" /dev/ublkb0 600M 16M
		fio_verify "$path, 2 threads per queue: fio verify 128k, QD64" /dev/ublkb0 640M 16M --bs=128k --iodepth=64
		check "$path, 2 threads per queue: del" "$P" del 0
		for _ in $(seq 100); do [ "$(ublk_count)" -eq 0 ] && break; sleep 0.1; done
	done
else
	before=$(meta_digest /dev/pmem0)
	refused "2 threads per queue on a kernel without per-I/O daemons" "which this kernel does not offer" \
		env PMEM_STACK_IO_THREADS=2 "$P" add /dev/pmem0
	expect_eq "the refusal of 2 threads per queue changed nothing" "$(meta_digest /dev/pmem0)" "$before"
fi

# Where user-copy reads come from (PMEM_STACK_READS, for measuring): by
# default the namespace opened O_DIRECT, so reading through the device
# leaves nothing of /dev/pmem0 in the server's memory; =mapping reads
# through the block device's page cache, which shows in the server's
# resident file pages. The same bytes either way.
rss_file_kib() { awk '/^RssFile:/ {print $2}' /proc/"$(server_pid 0)"/status; }
for reads in "" mapping; do
	name="reads from the ${reads:-default (direct)}"
	dev=$(PMEM_STACK_READS=$reads "$P" add /dev/pmem0 --io-path user-copy | tail -1)
	expect_eq "$name: added" "$dev" /dev/ublkb0
	fio_verify "$name: fio verify 4k" /dev/ublkb0 600M 16M
	before=$(rss_file_kib)
	dd if=/dev/ublkb0 of=/dev/null bs=1M skip=1024 count=128 iflag=direct status=none
	grown=$(($(rss_file_kib) - before))
	if [ -z "$reads" ]; then
		[ "$grown" -lt 8192 ] && pass "$name: 128 MiB read, the server's file pages grew ${grown} KiB" ||
			fail "$name: 128 MiB read grew the server's file pages by ${grown} KiB (page cache?)"
	else
		[ "$grown" -ge 65536 ] && pass "$name: 128 MiB read, the server's file pages grew ${grown} KiB" ||
			fail "$name: 128 MiB read through the mapping grew the server's file pages by only ${grown} KiB"
	fi
	check "$name: del" "$P" del 0
	for _ in $(seq 100); do [ "$(ublk_count)" -eq 0 ] && break; sleep 0.1; done
done

# Write-through needs user copy or the direct path (without them every
# write would be an msync): refused on bounce buffers, changing nothing.
before=$(meta_digest /dev/pmem0)
refused "write-through on bounce buffers" "needs user copy" \
	"$P" add /dev/pmem0 --io-path bounce --write-cache write-through
expect_eq "the refusal changed nothing" "$(meta_digest /dev/pmem0)" "$before"

# Auto over /dev/pmem0: the direct path on 6.16+ writing through (serve.sh
# checks the default); asked to write back, user copy, since writing back
# the direct path would send every request to an io_uring worker.
dev=$("$P" add /dev/pmem0 --write-cache write-back | tail -1)
expect_eq "auto, writing back: added" "$dev" /dev/ublkb0
expect_eq "auto, writing back, serves on user copy" "$("$P" list --json | jget 'd[0]["io_path"]')" user_copy
expect_eq "auto, writing back: the kernel's write cache" "$(cat /sys/block/ublkb0/queue/write_cache)" "write back"
fio_verify "auto, writing back: fio verify" /dev/ublkb0 600M 16M
check "auto, writing back: del" "$P" del 0
for _ in $(seq 100); do [ "$(ublk_count)" -eq 0 ] && break; sleep 0.1; done

# An image on ramfs cannot be opened O_DIRECT (tmpfs can, since 6.6): auto
# falls back to user copy, an explicit direct is refused before anything is
# written.
mkdir -p /tmp/ramfs && mount -t ramfs ramfs /tmp/ramfs
truncate -s 256M /tmp/ramfs/img
check "format an image on ramfs" "$P" format /tmp/ramfs/img --reserve 0
if kernel_at_least 6 16; then
	before=$(sha256sum </tmp/ramfs/img)
	refused "direct on a ramfs image" "cannot be opened O_DIRECT" "$P" add /tmp/ramfs/img --io-path direct
	expect_eq "the refusal changed nothing" "$(sha256sum </tmp/ramfs/img)" "$before"
fi
# Write-through on user copy writes O_DIRECT: refused here, too.
before=$(sha256sum </tmp/ramfs/img)
refused "write-through on a ramfs image" "cannot be opened O_DIRECT" \
	"$P" add /tmp/ramfs/img --io-path user-copy --write-cache write-through
expect_eq "the refusal changed nothing" "$(sha256sum </tmp/ramfs/img)" "$before"
dev=$("$P" add /tmp/ramfs/img | tail -1)
expect_eq "auto on a ramfs image serves on user copy" "$("$P" list --json | jget 'd[0]["io_path"]')" user_copy
expect_eq "auto on an image writes back" "$("$P" list --json | jget 'd[0]["write_cache"]')" write_back
fio_verify "ramfs image: fio verify" "$dev" 0 8M
check "del" "$P" del --all
rm -f /tmp/ramfs/img

finish
