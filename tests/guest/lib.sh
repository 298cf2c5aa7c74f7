# Shared helpers for guest scenarios (sourced; runs inside the QEMU guest).
#
# Conventions: every check prints one "PASS: name" or "FAIL: name: why" line;
# `finish` prints a summary and exits non-zero if anything failed. A scenario
# that cannot run (missing device, missing tool) fails — it never passes
# vacuously.

set -euo pipefail

P=${PMEM_STACK_BIN:-$PMEM_STACK_REPO/target/release/pmem-stack}
FAILS=0
CHECKS=0

# Each check's time since the one before (or the script's start) goes to
# RESULTS/check-seconds.tsv, the slowest steps of a scenario found by
# `sort -rn` on it; bash's clock, so no process is started for it.
CHECK_CLOCK=${EPOCHREALTIME/./}
check_time() {
	local now=${EPOCHREALTIME/./}
	printf '%d.%d\t%s\n' $(((now - CHECK_CLOCK) / 1000000)) $(((now - CHECK_CLOCK) / 100000 % 10)) "$*" \
		>>"${RESULTS:-/dev/null}/check-seconds.tsv" 2>/dev/null || true
	CHECK_CLOCK=$now
}
pass() { CHECKS=$((CHECKS + 1)); echo "PASS: $*"; check_time "$*"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); echo "FAIL: $*"; check_time "$*"; }
note() { echo "NOTE: $*"; }

# require CONDITION-COMMAND... : abort the scenario (as a failure) if false.
require() {
	if ! "$@"; then
		echo "FAIL: prerequisite: $*"
		echo "summary: cannot run"
		exit 1
	fi
}

# load_module NAME: insert a module the guest's initramfs holds but does not
# load at boot (tests/vm/init.sh: xfs, 3.5-4 s per boot under TCG), once;
# in the Debian root, modprobe it.
# A scenario that cannot have it fails.
load_module() {
	grep -q "^$1 " /proc/modules && return 0
	if [ "${PMEM_STACK_VM_SYSTEMD:-}" = 1 ]; then
		require modprobe "$1" # the Debian root has them in /lib/modules
	else
		require insmod "/run/pmem-stack-vm/modules/$1.ko"
	fi
}

# then_reboot: in the Debian root (boot.sh --root-disk), reboot through
# systemd once the script has finished, instead of powering off; the host's
# next boot of the scenario finds what this one left.
then_reboot() {
	require test "${PMEM_STACK_VM_SYSTEMD:-}" = 1
	echo reboot >/run/pmem-stack-vm/after
}

# ublk_writes: the writes /dev/ublkb0 has completed (0 while there is no disk).
ublk_writes() { awk '$3 == "ublkb0" { n = $8 } END { print n + 0 }' /proc/diskstats; }

# after_writes N: return once /dev/ublkb0 has completed N more writes than
# when called, or after 6 s (a kill meant to land under I/O lands anyway).
after_writes() {
	local start _
	start=$(ublk_writes)
	for _ in $(seq 300); do
		[ $(($(ublk_writes) - start)) -gt "$1" ] && return 0
		sleep 0.02
	done
}

# state_of ID: device ID's state in 'list --json' (live, quiesced, ...).
state_of() { "$P" list --json | jget "[x['state'] for x in d if x['id']==$1][0]"; }

# wait_state ID STATE: up to 10 s for device ID to reach STATE.
wait_state() {
	local _
	for _ in $(seq 200); do
		[ "$(state_of "$1" 2>/dev/null)" == "$2" ] && return 0
		sleep 0.05
	done
	return 1
}

# wait_bounded PID SECONDS: the process's exit status, or 124 after killing
# it when it has not ended in time (a hang is a failure, not a stuck test).
wait_bounded() {
	local pid=$1 _
	for _ in $(seq $(($2 * 20))); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			return $?
		fi
		sleep 0.05
	done
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	return 124
}

# check NAME COMMAND...: run a command, PASS if it succeeds.
check() {
	local name=$1
	shift
	local out
	if out=$("$@" 2>&1); then
		pass "$name"
	else
		fail "$name: $(echo "$out" | tail -3 | tr '\n' ' ')"
	fi
}

# expect_eq NAME GOT WANT
expect_eq() {
	if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: got '$2', want '$3'"; fi
}

# jq-lite: jget EXPR < json   (EXPR is Python on `d`, e.g. 'd["data_size"]')
jget() {
	python3 -c 'import json,sys; d=json.load(sys.stdin); v=eval(sys.argv[1]); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1"
}

# refused NAME FRAGMENT COMMAND...: the command must fail (non-zero) with a
# one-line "error: ..." on stderr containing FRAGMENT.
refused() {
	local name=$1 fragment=$2
	shift 2
	local err rc=0
	err=$("$@" 2>&1 >/dev/null) || rc=$?
	local lines
	lines=$(echo "$err" | grep -vc -e '^warning:' -e '^note:' || true)
	if [ "$rc" -eq 0 ]; then
		fail "$name: succeeded, should have been refused"
	elif [ "$lines" -ne 1 ] || [[ "$err" != error:* ]]; then
		fail "$name: expected a one-line error, got: $err"
	elif [[ "$err" != *"$fragment"* ]]; then
		fail "$name: '$fragment' not in: $err"
	else
		pass "$name ($err)"
	fi
}

# Digest of the parts of a backing that any pmem-stack command could write:
# the head, both super block slots, and the first and last MiB of where a data
# area starts/ends. Reading the whole namespace under TCG takes too long for
# every refusal check; these are the bytes a wrong write would hit.
meta_digest() {
	local dev=$1 size
	if [ -c "$dev" ]; then
		# devdax has no read(2): map its first and last 4 MiB (2 MiB aligned).
		python3 - "$dev" "$(cat "/sys/bus/dax/devices/$(basename "$dev")/size")" <<'PY'
import hashlib, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
size, span = int(sys.argv[2]), 4 << 20
h = hashlib.sha256()
for off in (0, size - span):
    m = mmap.mmap(fd, span, mmap.MAP_SHARED, mmap.PROT_READ, offset=off)
    h.update(m[:])
    m.close()
print(h.hexdigest())
PY
		return
	fi
	size=$(blockdev --getsize64 "$dev" 2>/dev/null || stat -c %s "$dev")
	{
		dd if="$dev" bs=4096 count=2 status=none
		dd if="$dev" bs=1M skip=0 count=4 status=none
		dd if="$dev" bs=4096 skip=$((size / 4096 - 1)) count=1 status=none
		dd if="$dev" bs=1M skip=$((size / 1048576 - 4)) count=4 status=none
	} | sha256sum | cut -d' ' -f1
}

# fio_verify NAME DEVICE OFFSET SIZE [extra fio args]: write with crc32c
# verification and read everything back; PASS when fio reports no error and
# verified every byte it wrote.
fio_verify() {
	local name=$1 dev=$2 offset=$3 size=$4
	shift 4
	local out
	out=$(fio --name="$name" --filename="$dev" --offset="$offset" --size="$size" \
		--rw=randwrite --bs=4k --iodepth=16 --ioengine=io_uring --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
		--output-format=json "$@" 2>&1) || {
		fail "$name: fio failed: $(echo "$out" | tail -5 | tr '\n' ' ')"
		return
	}
	local verdict
	verdict=$(echo "$out" | python3 -c '
import json,sys
text=sys.stdin.read(); d=json.loads(text[text.index("{"):])
j=d["jobs"][0]
w=j["write"]["io_bytes"]; r=j["read"]["io_bytes"]
print("ok" if j["error"]==0 and w>0 and r==w else "error=%s written=%s verified=%s" % (j["error"],w,r))')
	if [ "$verdict" == ok ]; then pass "$name"; else fail "$name: $verdict"; fi
}

# fio_bg NAME FILE SIZE: random writes with crc32c verify, in the background.
fio_bg() {
	fio --name="$1" --filename="$2" --size="$3" --rw=randwrite --bs=4k \
		--iodepth=16 --ioengine=io_uring --direct=1 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --verify_state_save=0 --output-format=json >"/tmp/$1.json" 2>"/tmp/$1.err" &
	fio_pid=$!
}
# fio_verdict NAME SIZE_BYTES: ok when fio wrote SIZE and verified all of it.
fio_verdict() {
	python3 -c '
import json,sys
t=open("/tmp/%s.json" % sys.argv[1]).read(); d=json.loads(t[t.index("{"):]); j=d["jobs"][0]
w=j["write"]["io_bytes"]; r=j["read"]["io_bytes"]
print("ok" if j["error"]==0 and w==int(sys.argv[2]) and r==w else "error=%s written=%s verified=%s" % (j["error"],w,r))' "$1" "$2" 2>&1
}
# gone PID: the process has exited (a zombie nobody reaped counts).
gone() { [ ! -e "/proc/$1" ] || grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
# until_gone PID: gone within 10 s.
until_gone() {
	local _
	for _ in $(seq 200); do gone "$1" && return 0; sleep 0.05; done
	return 1
}

# write_files DIR N: N files of random data plus DIR/SHA256SUMS.
write_files() {
	local dir=$1 n=$2 i
	for i in $(seq "$n"); do
		head -c $((i * 37 * 1024 + 4096)) /dev/urandom >"$dir/f$i"
	done
	(cd "$dir" && sha256sum f* >SHA256SUMS)
	sync
}

verify_files() { (cd "$1" && sha256sum --quiet -c SHA256SUMS); }

# ublk_count: how many ublk devices the kernel has.
ublk_count() { find /sys/class/ublk-char -maxdepth 1 -name 'ublkc*' 2>/dev/null | wc -l; }

# server_pid ID: the pid pmem-stack list reports for /dev/ublkbID.
server_pid() { "$P" list --json | jget "[x['pid'] for x in d if x['id']==$1][0]"; }

# pinned_threads PID: how many of PID's threads (not counting io_uring's
# workers) may not run on every online CPU.
pinned_threads() {
	local t n=0 online
	online=$(cat /sys/devices/system/cpu/online)
	for t in /proc/"$1"/task/*; do
		case $(cat "$t/comm" 2>/dev/null) in iou-*) continue ;; esac
		[ "$(awk '/^Cpus_allowed_list/ {print $2}' "$t/status" 2>/dev/null)" == "$online" ] || n=$((n + 1))
	done
	echo "$n"
}

# cpus LIST: a kernel CPU list ("0-2,5" or sysfs' "0, 1, 2") one CPU per
# word, sorted.
cpus() {
	echo "$1" | tr ',' '\n' | tr -d ' ' | while IFS=- read -r a b; do
		[ -n "$a" ] && seq "$a" "${b:-$a}"
	done | sort -n | tr '\n' ' '
}

# io_workers PID: "PINNED LOOSE": how many io_uring workers of PID's queue
# threads may run only on some of the online CPUs (PINNED), and how many on
# every one. The main thread's (its control ring's, iou-wrk-PID) are not
# counted.
io_workers() {
	local t list pinned=0 loose=0 online
	online=$(cpus "$(cat /sys/devices/system/cpu/online)")
	for t in /proc/"$1"/task/*; do
		case $(cat "$t/comm" 2>/dev/null) in "iou-wrk-$1") continue ;; iou-wrk*) ;; *) continue ;; esac
		list=$(awk '/^Cpus_allowed_list/ {print $2}' "$t/status" 2>/dev/null) || continue
		if [ "$(cpus "$list")" == "$online" ]; then loose=$((loose + 1)); else pinned=$((pinned + 1)); fi
	done
	echo "$pinned $loose"
}

# On failure, leave what a developer needs next to the results.
diagnostics() {
	{
		echo "== dmesg (tail)"
		dmesg | tail -60
		for log in /run/pmem-stack/*.log; do
			[ -e "$log" ] || continue
			echo "== $log"
			tail -40 "$log"
		done
		echo "== pmem-stack list"
		"$P" list 2>&1 || true
		if [ "${PMEM_STACK_VM_SYSTEMD:-}" = 1 ]; then
			echo "== journalctl -b"
			journalctl -b --no-pager -o short-monotonic 2>&1 | tail -300
		fi
	} >"$RESULTS/diagnostics-$(basename "$0" .sh).txt" 2>&1
}

finish() {
	[ "$FAILS" -eq 0 ] || diagnostics
	echo "summary: $CHECKS checks, $FAILS failures"
	[ "$CHECKS" -gt 0 ] && [ "$FAILS" -eq 0 ]
}

# Any command failing outside a check aborts the scenario — as a failure,
# with diagnostics, never silently.
trap 'echo "FAIL: unexpected error (status $?) at line $LINENO: $BASH_COMMAND"; FAILS=$((FAILS + 1)); diagnostics; echo "summary: aborted after $CHECKS checks"' ERR

require test -x "$P"

# claim_matches NAME JSON OFFSET END: one owner's `reserved --json` claim
# against the namespace's sysfs `resource`, which the caller has in $base.
claim_matches() {
	local name=$1 json=$2 offset=$3 end=$4
	expect_eq "$name: offset" "$(echo "$json" | jget 'd["offset"]')" "$offset"
	expect_eq "$name: end" "$(echo "$json" | jget 'd["end"]')" "$end"
	expect_eq "$name: phys start = resource + offset" "$(echo "$json" | jget 'd["phys_start"]')" "$((base + offset))"
	expect_eq "$name: phys end = resource + end" "$(echo "$json" | jget 'd["phys_end"]')" "$((base + end))"
	expect_eq "$name: start MFN" "$(echo "$json" | jget 'd["mfn_start"]')" "$(((base + offset) >> 12))"
	expect_eq "$name: end MFN" "$(echo "$json" | jget 'd["mfn_end"]')" "$(((base + end) >> 12))"
	expect_eq "$name: pages" "$(echo "$json" | jget 'd["pages"]')" "$(((end - offset) / 4096))"
}

# kernel_at_least MAJOR MINOR: the running kernel is MAJOR.MINOR or newer.
kernel_at_least() {
	local v major minor
	v=$(uname -r)
	major=${v%%.*}
	minor=${v#*.}
	minor=${minor%%[!0-9]*}
	[ "$major" -gt "$1" ] || { [ "$major" -eq "$1" ] && [ "$minor" -ge "$2" ]; }
}

# The I/O path `add` chooses for /dev/pmemN on this kernel (see
# features::choose): the direct path where the kernel registers request
# pages (6.16+), user copy before that (6.5+; every kernel the suite boots).
default_block_path() {
	if kernel_at_least 6 16; then echo direct; else echo user_copy; fi
}

# require_devdax: /dev/dax0.0, made from the whole of region0 if the boot's
# NVDIMM (--label-size) has none yet.
require_devdax() {
	require command -v ndctl
	if [ ! -c /dev/dax0.0 ]; then
		ndctl disable-region all >/dev/null
		ndctl init-labels -f all >/dev/null
		ndctl enable-region all >/dev/null
		ndctl create-namespace -r region0 -m devdax >/dev/null
	fi
	require test -c /dev/dax0.0
}
