#!/bin/bash
# Guest scenario: `reserved` on a devdax namespace (/dev/dax0.0), checked
# against /sys/bus/dax/devices/dax0.0/resource, unsplit and split among
# owners. Boot with --size 1G --label-size 128K.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require_devdax
base=$(cat /sys/bus/dax/devices/dax0.0/resource)
note "dax0.0 at $base, kernel $(uname -r)"

info=$("$P" format /dev/dax0.0 --reserve auto --mode os --json)
r_off=$(echo "$info" | jget 'd["reserve_offset"]')
r_end=$((r_off + $(echo "$info" | jget 'd["reserve_size"]')))
one=$("$P" reserved /dev/dax0.0 --owner os --json)
claim_matches "unsplit os reserve" "$one" "$r_off" "$r_end"
expect_eq "mode" "$(echo "$one" | jget 'd["mode"]')" os

info=$("$P" format /dev/dax0.0 --force --owner xen=auto --owner dom0=auto --json)
expect_eq "format --owner writes 1.1" "$(echo "$info" | jget 'd["format_version"]')" 1.1
r_off=$(echo "$info" | jget 'd["reserve_offset"]')
list=$("$P" reserve list /dev/dax0.0 --json)
x_end=$(echo "$list" | jget 'd["owners"][0]["offset"] + d["owners"][0]["size"]')
d_end=$(echo "$list" | jget 'd["owners"][1]["offset"] + d["owners"][1]["size"]')
claim_matches "xen on devdax" "$("$P" reserved /dev/dax0.0 --owner xen --json)" "$r_off" "$x_end"
claim_matches "dom0 on devdax" "$("$P" reserved /dev/dax0.0 --owner dom0 --json)" "$x_end" "$d_end"
pages=$(echo "$info" | jget 'd["data_size"] // 4096')
d_size=$(echo "$list" | jget 'd["owners"][1]["size"]')
if [ "$d_size" -ge $((pages * 64)) ]; then pass "dom0 auto holds 64 bytes per data page"; else fail "dom0 auto: $d_size < $((pages * 64))"; fi
dev=$("$P" add /dev/dax0.0 | tail -1)
expect_eq "the split devdax serves its data area" "$(blockdev --getsize64 "$dev")" "$(echo "$info" | jget 'd["data_size"]')"
check "reserved while served" "$P" reserved /dev/dax0.0
check "del" "$P" del --all
refused "grow of a devdax that did not grow" "nothing to grow" "$P" grow /dev/dax0.0
check "healthy" "$P" check /dev/dax0.0

finish
