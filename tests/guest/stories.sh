#!/bin/bash
# Guest scenario: the README's user stories, run as shown. Every fenced block
# preceded by "<!-- story: NAME -->" in README.md is extracted and run with
# bash -euo pipefail, on a blank /dev/pmem0, one story after another.
#
# It runs in the Debian root (boot.sh --root-disk): systemd is PID 1, udevd
# runs, /etc and /srv are the system's own, and the fstab story's
# scripts/install and `systemctl enable --now` are the real thing. Before
# that story installs it, `pmem-stack` is the one under test (last on PATH).
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test "${PMEM_STACK_VM_SYSTEMD:-}" = 1
require test "$(cat /proc/1/comm)" = systemd
require test -b /dev/pmem0
require command -v jq
require udevadm control --ping
expect_eq "systemd finished booting" "$(cat "$RESULTS/system-state")" running

bin=/tmp/storybin
mkdir -p "$bin"
ln -sf "$P" "$bin/pmem-stack"
# After /usr/local/sbin: the installed one wins once the fstab story has run
# scripts/install.
export PATH=$PATH:$bin

blank() { # wipe both super block copies: a blank namespace for each story
	local size
	size=$(blockdev --getsize64 /dev/pmem0)
	dd if=/dev/zero of=/dev/pmem0 bs=1M count=4 conv=fsync status=none
	dd if=/dev/zero of=/dev/pmem0 bs=1M seek=$((size / 1048576 - 4)) count=4 conv=fsync status=none
}

stories=$(grep -o '<!-- story: [a-z0-9-]* -->' "$PMEM_STACK_REPO/README.md" | awk '{print $3}')
expect_eq "the README has the four stories' blocks (nvmeof is its own scenario)" "$(echo $stories)" "xen fstab fio"
for story in $stories; do
	awk -v tag="<!-- story: $story -->" '
		$0 == tag { armed = 1; next }
		armed && /^```sh$/ { inside = 1; next }
		inside && /^```$/ { exit }
		inside { print }' "$PMEM_STACK_REPO/README.md" >"/tmp/story-$story.sh"
	blank
	note "story $story: $(wc -l <"/tmp/story-$story.sh") lines"
	if out=$(bash -euo pipefail -x "/tmp/story-$story.sh" 2>&1); then
		pass "story $story runs as shown"
	else
		fail "story $story: $(echo "$out" | tail -8 | tr '\n' ' ')"
	fi
	echo "$out" >"$RESULTS/story-$story.log"
	case $story in
	fstab) expect_eq "story fstab: the file came back after restart" "$(echo "$out" | grep -x hello || true)" hello ;;
	fio)
		# /dev/pmem0 writes through on every kernel: the kernel answers
		# fio's fsyncs, and the writes show.
		check "story fio: the counters show fio's writes" test "$(echo "$out" | grep -o '"writes": [0-9]*' | awk '{print $2}')" -gt 0
		;;
	esac
	expect_eq "story $story leaves no device behind" "$(ublk_count)" 0
done

finish
