#!/bin/bash
# The demo (scripts/demo): pmem-stack on a 2 GiB emulated NVDIMM, narrated.
set -euo pipefail
P=$PMEM_STACK_REPO/target/release/pmem-stack
pmem-stack() { "$P" "$@"; }

step() { printf '\n### %s\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}

step "The guest kernel sees a raw NVDIMM namespace"
run uname -r
run lsblk -o NAME,SIZE,TYPE /dev/pmem0
printf 'physical start: %s\n' "$(cat /sys/block/pmem0/device/resource)"

step "Serve it with a 512 MiB reserve: formats on first use, prints the device once it is live"
run pmem-stack add /dev/pmem0 --reserve 512M

step "The layout, to scale (info works while the device is served)"
run pmem-stack info /dev/pmem0

step "The served device"
run pmem-stack list
run lsblk -o NAME,SIZE,LOG-SEC,PHY-SEC,DISC-GRAN /dev/ublkb0

step "A file system on it"
mkdir -p /tmp/mnt
run mkfs.ext4 -q /dev/ublkb0
run mount /dev/ublkb0 /tmp/mnt
run df -h /tmp/mnt

step "A short fio job: 4 KiB random 70/30 read/write on a file, crc32c-verified (TCG guest: compare numbers only side by side)"
run fio --name=demo --filename=/tmp/mnt/fio.dat --size=128M --rw=randrw --rwmixread=70 \
	--bs=4k --iodepth=16 --ioengine=io_uring --direct=1 --runtime=5 --time_based \
	--verify=crc32c --verify_state_save=0 --group_reporting \
	--output-format=terse --terse-version=3 >/tmp/fio.terse
grep '^3;' /tmp/fio.terse | awk -F';' '{ printf "read: %d IOPS, %.1f MiB/s   write: %d IOPS, %.1f MiB/s   errors: %s\n", $8, $7/1024, $49, $48/1024, $5 }'

step "Unmount, flush and remove the device; the metadata is healthy"
run umount /tmp/mnt
run pmem-stack del 0
run pmem-stack check /dev/pmem0
printf '\ndemo finished\n'
