#!/bin/bash
# Guest side of `bench/run --memory`: the server's memory on 2 GiB and
# 16 GiB backings, on every I/O path, after the same random I/O over the
# whole device. Runs inside the QEMU guest (tests/vm/boot.sh --label-size),
# as root. The NVDIMM is split by labels into fsdax 2G + 16G (struct pages on
# the media, -M dev) and devdax 2G + 16G.
#
# Writes $RESULTS/memory.tsv:
#   backing size_bytes path VmRSS VmHWM RssAnon RssFile VmPTE (kB) io_bytes
set -euo pipefail

die() {
	echo "MEMORY FAILED: $*" >&2
	echo "MEMORY FAILED: $*" >"$RESULTS/failed"
	exit 1
}
trap 'die "unexpected error (status $?) at line $LINENO: $BASH_COMMAND"' ERR

: "${RESULTS:?RESULTS is not set: run this through bench/run --memory}"
: "${PMEM_STACK_REPO:?PMEM_STACK_REPO is not set}"
P=${PMEM_STACK_BIN:-$PMEM_STACK_REPO/target/release/pmem-stack}
RUNTIME=${BENCH_RUNTIME:-5}
export HOME=/tmp
cd /tmp

for tool in fio ndctl python3; do command -v "$tool" >/dev/null || die "$tool not found"; done
[ -c /dev/ublk-control ] || die "/dev/ublk-control missing"

ndctl disable-region all >/dev/null
ndctl init-labels -f all >/dev/null
ndctl enable-region all >/dev/null
for spec in "fsdax 2G" "fsdax 16G" "devdax 2G" "devdax 16G"; do
	set -- $spec
	ndctl create-namespace -r region0 -m "$1" -M dev -s "$2" >/dev/null ||
		die "ndctl create-namespace -m $1 -s $2 failed (is the image 37G with --label-size?)"
done
mapfile -t pmems < <(lsblk -dnbo NAME,SIZE | awk '$1 ~ /^pmem/ {print $2, "/dev/" $1}' | sort -n | cut -d' ' -f2)
mapfile -t daxes < <(for d in /sys/bus/dax/devices/dax*; do echo "$(cat "$d/size") /dev/$(basename "$d")"; done | sort -n | cut -d' ' -f2)
[ ${#pmems[@]} -eq 2 ] && [ ${#daxes[@]} -eq 2 ] || die "expected 2 pmem and 2 dax devices, got ${pmems[*]} / ${daxes[*]}"

jget() { python3 -c "import json,sys; t=sys.stdin.read(); d=json.loads(t[t.index('{'):]); print($1)"; }
: >"$RESULTS/memory.tsv"
{
	echo "kernel=$(uname -r)"
	echo "runtime=$RUNTIME"
	echo "guest_mem_kb=$(awk '/MemTotal/{print $2}' /proc/meminfo)"
} >"$RESULTS/meta.env"

# measure BACKING PATH: add, random writes then reads over the whole device,
# then the server's memory.
measure() {
	local backing=$1 path=$2 out dev id pid size io
	"$P" info "$backing" >/dev/null 2>&1 || "$P" format "$backing" --reserve 0 >/dev/null || die "format $backing failed"
	if ! out=$("$P" add "$backing" --queues 2 --depth 128 --io-path "$path" --json 2>&1); then
		if echo "$out" | grep -q "not offered by this kernel"; then
			echo "$backing - $path unavailable" | tee -a "$RESULTS/memory.tsv"
			return 0
		fi
		die "add $backing --io-path $path: $out"
	fi
	dev=$(echo "$out" | jget 'd["device"]')
	id=${dev#/dev/ublkb}
	pid=$(echo "$out" | jget 'd["pid"]')
	for _ in $(seq 100); do [ -b "$dev" ] && break; sleep 0.1; done
	size=$(blockdev --getsize64 "$dev")
	io=0
	for rw in randwrite randread; do
		out=$(fio --name=mem --filename="$dev" --ioengine=io_uring --direct=1 --rw=$rw --bs=4k \
			--iodepth=32 --norandommap --randrepeat=1 --time_based --runtime="$RUNTIME" \
			--output-format=json 2>&1) || die "fio on $dev: $out"
		io=$((io + $(echo "$out" | jget 'd["jobs"][0]["read"]["io_bytes"] + d["jobs"][0]["write"]["io_bytes"]')))
	done
	sleep 2
	v=$(awk '$1 ~ /^(VmRSS|VmHWM|RssAnon|RssFile|VmPTE):$/ {a[$1]=$2}
		END {print a["VmRSS:"], a["VmHWM:"], a["RssAnon:"], a["RssFile:"], a["VmPTE:"]}' "/proc/$pid/status")
	echo "$backing $size $path $v $io" | tee -a "$RESULTS/memory.tsv"
	"$P" del "$id" >/dev/null || die "del $id"
	for _ in $(seq 100); do [ -e "$dev" ] || break; sleep 0.1; done
}

for backing in "${pmems[@]}"; do
	for path in user-copy direct batch; do
		measure "$backing" "$path"
	done
done
for backing in "${daxes[@]}"; do
	measure "$backing" auto
done
echo "MEMORY DONE"
