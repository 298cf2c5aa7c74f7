#!/bin/bash
# Guest scenario: CXL persistent memory (boot.sh --cxl 512M). QEMU 7.2's
# cxl-type3 device — a persistent memdev and a label area, behind a pxb-cxl
# host bridge and a root port, in a CXL fixed memory window. In the guest:
# the CXL drivers; `cxl create-region -t pmem` over the memdev; on that
# region `ndctl create-namespace -m fsdax` (/dev/pmemN), which pmem-stack
# formats and serves (ext4 + fio verify on /dev/ublkb0, `reserved` against
# the namespace's physical address, inside the CXL region); then a devdax
# namespace on the rest of the region, served the same way.
#
# Every step says the command it ran; the first that fails stops the
# scenario with that command's output in results/cxl-stopped-at.txt (an
# emulator or kernel limit, named as such — never a silent skip).
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require command -v cxl
require command -v ndctl
require command -v jq

# step NAME COMMAND...: run it; its output in $OUT. A failure stops the
# scenario here, with the command and its output.
step() {
	local name=$1
	shift
	if OUT=$("$@" 2>&1); then
		pass "$name"
		return 0
	fi
	fail "$name: '$*' failed: $(echo "$OUT" | tail -4 | tr '\n' ' ')"
	{
		echo "stopped at: $name"
		echo "command: $*"
		echo "$OUT"
		echo "== cxl list -vvv"
		cxl list -vvv 2>&1
		echo "== dmesg (cxl, nvdimm, pci)"
		dmesg | grep -iE 'cxl|nvdimm|nd_|pmem|pci' | tail -80
	} >"$RESULTS/cxl-stopped-at.txt"
	finish
	exit 1
}
# until_some SECONDS COMMAND...: poll until the command prints something
# other than nothing or an empty JSON list.
until_some() {
	local secs=$1 _ out
	shift
	for _ in $(seq $((secs * 10))); do
		out=$("$@" 2>/dev/null || true)
		if [ -n "$out" ] && { [[ $out != [\[{]* ]] || echo "$out" | jq -e 'if type == "array" then length > 0 else true end' >/dev/null 2>&1; }; then
			echo "$out"
			return 0
		fi
		sleep 0.1
	done
	return 1
}

for m in cxl_pmem cxl_acpi cxl_mem cxl_pci; do load_module "$m"; done
step "the CXL memory device appears (cxl list -M)" until_some 20 cxl list -M
note "cxl list -M: $(echo "$OUT" | jq -c .)"
memdev=$(echo "$OUT" | jq -r 'if type == "array" then .[0].memdev else .memdev end')
step "a root decoder that takes persistent memory (cxl list -D -d root)" until_some 10 cxl list -D -d root
decoder=$(echo "$OUT" | jq -r '[.[] | select(.pmem_capable == true)][0].decoder')
check "the root decoder is pmem capable" test -n "$decoder" -a "$decoder" != null
note "root decoder: $(echo "$OUT" | jq -c '.[0]')"

step "cxl create-region -t pmem" cxl create-region -t pmem -d "$decoder" -m "$memdev"
region=$(echo "$OUT" | jq -r '.region // empty' 2>/dev/null || true)
[ -n "$region" ] || region=$(cxl list -R | jq -r '.[0].region')
step "the region is listed (cxl list -R)" until_some 10 cxl list -R -r "$region"
r_start=$(echo "$OUT" | jq -r '.[0].resource')
r_size=$(echo "$OUT" | jq -r '.[0].size')
note "CXL region $region: resource $r_start, size $r_size"

# The nvdimm region the CXL pmem region became: on a bus of its own (not
# the NVDIMM's ACPI.NFIT).
cxl_nd_region() { ndctl list -BR | jq -e -r '[.[] | select(.provider != "ACPI.NFIT") | .regions[]?][0].dev // empty'; }
step "an nvdimm region on the CXL bus (ndctl list -BR)" until_some 20 cxl_nd_region
ndregion=$OUT
note "nvdimm buses: $(ndctl list -BR | jq -c '[.[] | {provider, regions: [.regions[]?.dev]}]')"

step "ndctl create-namespace -m fsdax on it" ndctl create-namespace -r "$ndregion" -m fsdax --size 256M
pmem=$(echo "$OUT" | jq -r '.blockdev')
check "an fsdax namespace /dev/$pmem" test -b "/dev/$pmem"
# served KIND BACKING BASE RESERVE: BACKING (physical start BASE) lies in the
# CXL region; formatted with RESERVE, `reserved` and `info` place the reserve
# at BASE + its offset; served as /dev/ublkb0 ($dev), fio verify on it.
served() {
	local kind=$1 backing=$2 base=$3 reserve=$4 info r_off r_end shown
	check "$backing lies in the CXL region" test $((base)) -ge $((r_start)) -a $((base)) -lt $((r_start + r_size))
	note "$backing at $base"
	step "pmem-stack format $backing" "$P" format "$backing" --reserve "$reserve" --json
	info=$OUT
	r_off=$(echo "$info" | jget 'd["reserve_offset"]')
	r_end=$((r_off + $(echo "$info" | jget 'd["reserve_size"]')))
	claim_matches "reserved on CXL $kind" "$("$P" reserved "$backing" --json | jget 'd[0]')" "$r_off" "$r_end"
	shown=$("$P" info "$backing" --json)
	expect_eq "info on CXL $kind: the reserve's physical start" "$(echo "$shown" | jget 'd["reserve_phys_start"]')" "$((base + r_off))"
	expect_eq "info on CXL $kind: the reserve's physical end" "$(echo "$shown" | jget 'd["reserve_phys_end"]')" "$((base + r_end))"
	step "pmem-stack add $backing" "$P" add "$backing"
	dev=$(echo "$OUT" | tail -1)
	expect_eq "CXL $kind served as" "$dev" /dev/ublkb0
	fio_verify "fio crc32c verify on CXL $kind" "$dev" 0 32M
}

base=$(cat "/sys/block/$pmem/device/resource")
served pmem "/dev/$pmem" "$base" 32M
check "mkfs.ext4" mkfs.ext4 -q -F "$dev"
mkdir -p /tmp/cxl
check "mount" mount "$dev" /tmp/cxl
write_files /tmp/cxl 3
check "umount" umount /tmp/cxl
check "del" "$P" del 0
step "add again" "$P" add "/dev/$pmem"
check "mount again" mount "$dev" /tmp/cxl
check "files verify after del and add" verify_files /tmp/cxl
check "umount" umount /tmp/cxl
check "fsck clean" e2fsck -fn "$dev"
check "del" "$P" del 0

step "ndctl create-namespace -m devdax on the rest" ndctl create-namespace -r "$ndregion" -m devdax
dax=$(echo "$OUT" | jq -r '.daxregion.devices[0].chardev')
check "a devdax namespace /dev/$dax" test -c "/dev/$dax"
base=$(cat "/sys/bus/dax/devices/$dax/resource")
served devdax "/dev/$dax" "$base" 16M
check "del" "$P" del --all

finish
