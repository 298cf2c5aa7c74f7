#!/usr/bin/env bash
# Host script: prove the VM harness end to end (about a minute under TCG).
#   1. smoke.sh on a fresh 2 GiB image
#   2. power cut: powercut-probe.sh with --kill-on, then the image is inspected on the
#      host (msynced 4 MiB present, unsynced 4 MiB absent), then a second boot on the
#      same image checks the same from inside
#   3. devdax: devdax-probe.sh on a fresh 1 GiB + 128 KiB labelled image, then the host
#      finds the probe's bytes and the NVDIMM_DAX_INFO block in the image
# Runs setup.sh first (fast when already done).  Exit 0 only if everything passed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${PMEM_STACK_VM_DIR:-$REPO/target/vm}
ST=$VM_DIR/selftest
BOOT=$HERE/boot.sh
FAILS=0
pass() { echo "selftest: PASS: $*"; }
fail() {
    echo "selftest: FAIL: $*"
    FAILS=$((FAILS + 1))
}
MiB=$((1 << 20))

"$HERE/setup.sh" >/dev/null || {
    echo "selftest: setup.sh failed" >&2
    exit 1
}
mkdir -p "$ST"

# 1. smoke
rm -f "$ST/smoke.img"
if "$BOOT" --script tests/vm/smoke.sh --image "$ST/smoke.img" --size 2G --results "$ST/smoke"; then
    pass "smoke.sh"
else
    fail "smoke.sh (see $ST/smoke/guest.log)"
fi

# 2. power cut
img=$ST/powercut.img
rm -f "$img"
if "$BOOT" --script tests/vm/powercut-probe.sh --image "$img" --size 2G \
    --results "$ST/powercut" --kill-on cut-now --timeout 300; then
    pass "power cut at the marker"
    if cmp -s <(head -c $((4 * MiB)) "$img") <(head -c $((4 * MiB)) /dev/zero | tr '\0' '\245'); then
        pass "host: msynced 4 MiB (0xA5) are in the image"
    else
        fail "host: msynced 4 MiB are not intact in the image"
    fi
    nonzero=$(head -c $((8 * MiB)) "$img" | tail -c $((4 * MiB)) | tr -d '\0' | wc -c)
    if [[ $nonzero -eq 0 ]]; then
        pass "host: unsynced 4 MiB (0x5A) are absent (zeros) in the image"
    else
        fail "host: $nonzero bytes of the unsynced 4 MiB reached the image"
    fi
    if "$BOOT" --script tests/vm/powercut-probe.sh --image "$img" --env PROBE_MODE=verify \
        --results "$ST/powercut-verify" --timeout 300; then
        pass "second boot on the same image sees the same"
    else
        fail "second boot verify (see $ST/powercut-verify/guest.log)"
    fi
else
    fail "power cut run (see $ST/powercut/guest.log)"
fi

# 3. devdax
img=$ST/devdax.img
rm -f "$img"
if "$BOOT" --script tests/vm/devdax-probe.sh --image "$img" --size 1G --label-size 128K \
    --results "$ST/devdax" --timeout 300; then
    pass "devdax-probe.sh"
    # shellcheck source=/dev/null
    . "$ST/devdax/devdax-facts.env"
    want=$((DAX_RESOURCE - NS_RESOURCE))
    got=$(grep -obaF PMEM-STACK-DAX-PROBE "$img" | head -n 1 | cut -d: -f1 || true)
    if [[ -n $got && $got -eq $want ]]; then
        pass "host: dax0.0 offset 0 is image offset $got (= dax0.0 resource - namespace0.0 resource)"
    else
        fail "host: probe bytes at image offset '${got:-none}', expected $want"
    fi
    if [[ $(dd if="$img" bs=4096 skip=1 count=1 status=none | head -c 15) == NVDIMM_DAX_INFO ]]; then
        pass "host: NVDIMM_DAX_INFO info block at byte 4096 of the namespace"
    else
        fail "host: no NVDIMM_DAX_INFO at byte 4096"
    fi
else
    fail "devdax-probe.sh (see $ST/devdax/guest.log)"
fi

echo "selftest: $FAILS failure(s)"
[[ $FAILS -eq 0 ]]
