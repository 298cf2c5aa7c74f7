#!/bin/bash
# Guest side of bench/run: fio against /dev/pmem0 (the kernel's pmem driver,
# the ceiling), pmem-stack (/dev/ublkbN over the data area of /dev/pmem0) and
# rublk's loop target (a peer ublk server over /dev/pmem0), side by side in
# ONE boot. Runs inside the QEMU guest (tests/vm/boot.sh), as root.
#
# Writes to $RESULTS:
#   fio.tsv     round target job iops bw_bytes lat_mean_ns lat_p99_ns server_minflt server_cpu_ticks
#               (one line per run; the last two are "-" for the raw device)
#   mem.tsv     round target pid VmRSS VmHWM RssAnon RssFile RssShmem (kB) cpu_s minflt majflt threads
#   meta.env    parameters and environment facts
#   fio/*.json  every fio report, untouched
#   rublk-unavailable   why the rublk column is missing (only if it is)
# Exit: 0 everything measured; 3 raw + pmem-stack measured but rublk could not
# be (reason in rublk-unavailable); anything else: failed, nothing to trust.
#
# Self-contained on purpose (does not source tests/guest/lib.sh): that file
# belongs to the test suite and may change under us.
set -euo pipefail

die() {
	echo "BENCH FAILED: $*" >&2
	echo "BENCH FAILED: $*" >"$RESULTS/failed"
	exit 1
}
trap 'die "unexpected error (status $?) at line $LINENO: $BASH_COMMAND"' ERR

: "${RESULTS:?RESULTS is not set: run this through bench/run (tests/vm/boot.sh)}"
: "${PMEM_STACK_REPO:?PMEM_STACK_REPO is not set: run this through bench/run}"
P=${PMEM_STACK_BIN:-$PMEM_STACK_REPO/target/release/pmem-stack}
RUBLK=${RUBLK:-}
RUBLK_UNAVAILABLE=${RUBLK_UNAVAILABLE:-}

RUNTIME=${BENCH_RUNTIME:-4}  # seconds measured per job
RAMP=${BENCH_RAMP:-1}        # seconds of ramp-up (not measured) per job
OFFSET=${BENCH_OFFSET:-1024M} # same region on every target
SIZE=${BENCH_SIZE:-256M}
ROUNDS=${BENCH_ROUNDS:-3}
SETTLE=${BENCH_SETTLE:-3}   # idle seconds before reading a server's memory
QUEUES=${BENCH_QUEUES:-2}
DEPTH=${BENCH_DEPTH:-128}
RESERVE=${BENCH_RESERVE:-512M}
JOBS=${BENCH_JOBS:-randread4k randwrite4k fsyncwrite4k seqread128k seqwrite128k}

export HOME=/tmp
cd /tmp # fio may drop state files into its cwd; the repo is read-only here

# ---- prerequisites: refuse to run rather than measure the wrong thing
[ -b /dev/pmem0 ] || die "/dev/pmem0 missing (no NVDIMM in this guest?)"
[ -c /dev/ublk-control ] || die "/dev/ublk-control missing (ublk_drv not loaded?)"
command -v fio >/dev/null || die "fio not found in the guest's PATH"
command -v python3 >/dev/null || die "python3 not found in the guest's PATH"
[ -x "$P" ] || die "$P is not an executable (cargo build --release on the host)"
fio --enghelp=io_uring >/dev/null 2>&1 || die "this fio has no io_uring engine"
ublk_count() { find /sys/class/ublk-char -maxdepth 1 -name 'ublkc*' 2>/dev/null | wc -l; }
[ "$(ublk_count)" -eq 0 ] || die "ublk devices exist before the benchmark started"

to_bytes() {
	local n=${1%[KMG]} u=${1##*[0-9]}
	case $u in
	K) echo $((n << 10)) ;; M) echo $((n << 20)) ;; G) echo $((n << 30)) ;; *) echo "$n" ;;
	esac
}
ns_bytes=$(blockdev --getsize64 /dev/pmem0)
end=$(($(to_bytes "$OFFSET") + $(to_bytes "$SIZE")))
[ "$end" -le "$ns_bytes" ] || die "region $OFFSET+$SIZE does not fit the $ns_bytes-byte /dev/pmem0"

if [ -z "$RUBLK_UNAVAILABLE" ]; then
	if [ -z "$RUBLK" ]; then
		RUBLK_UNAVAILABLE="no rublk binary was given (RUBLK is empty)"
	elif [ ! -x "$RUBLK" ]; then
		RUBLK_UNAVAILABLE="$RUBLK is not an executable in the guest"
	fi
fi

mkdir -p "$RESULTS/fio"
: >"$RESULTS/fio.tsv"
: >"$RESULTS/mem.tsv"
{
	echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "kernel=$(uname -r)"
	echo "vcpus=$(nproc)"
	echo "guest_mem_kb=$(awk '/MemTotal/{print $2}' /proc/meminfo)"
	echo "fio=$(fio --version)"
	echo "pmem_stack=$("$P" --version 2>/dev/null || echo unknown)"
	echo "rublk=$([ -n "$RUBLK" ] && [ -x "$RUBLK" ] && "$RUBLK" --version 2>/dev/null || echo unavailable)"
	echo "params=runtime=$RUNTIME ramp=$RAMP settle=$SETTLE offset=$OFFSET size=$SIZE rounds=$ROUNDS queues=$QUEUES depth=$DEPTH reserve=$RESERVE"
	echo "jobs=$JOBS"
} >"$RESULTS/meta.env"

# ---- fio: identical job parameters for every target; only --filename differs
fio_common=(--ioengine=io_uring --direct=1 --numjobs=1 --thread
	--offset="$OFFSET" --size="$SIZE" --randrepeat=1 --norandommap
	--output-format=json)

job_args() {
	case $1 in
	randread4k) echo "--rw=randread --bs=4k --iodepth=16" ;;
	randwrite4k) echo "--rw=randwrite --bs=4k --iodepth=16" ;;
	fsyncwrite4k) echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=1" ;;
	seqread128k) echo "--rw=read --bs=128k --iodepth=8" ;;
	seqwrite128k) echo "--rw=write --bs=128k --iodepth=8" ;;
	*) die "unknown job '$1'" ;;
	esac
}

# fio_json FILE: check a report and print "iops bw_bytes lat_mean_ns lat_p99_ns"
# of its one direction (read or write, whichever did I/O).
fio_json() {
	python3 - "$1" <<'EOF'
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])  # fio may print warnings first
j = d["jobs"][0]
if j["error"] != 0:
    sys.exit("fio job error %d" % j["error"])
rd, wr = j["read"], j["write"]
s = rd if rd["io_bytes"] > 0 else wr
if s["io_bytes"] <= 0:
    sys.exit("fio did no I/O")
lat = s["lat_ns"]
p99 = s["clat_ns"].get("percentile", {}).get("99.000000", 0)
print("%.1f %d %.0f %d" % (s["iops"], s["bw_bytes"], lat["mean"], p99))
EOF
}

# counters PID: "minflt cpu_ticks" of a whole process (all threads).
counters() {
	local stat
	stat=$(cat "/proc/$1/stat") || die "process $1 is gone"
	stat=${stat##*) } # fields from 3 on: state ppid ...
	# shellcheck disable=SC2086 # split the fields on purpose
	set -- $stat
	echo "${8} $((${12} + ${13}))"
}

# run_jobs ROUND TARGET DEV [SERVER_PID]
run_jobs() {
	local round=$1 target=$2 dev=$3 pid=${4:-} job out vals before after cost
	# Same starting state everywhere: the region written once and flushed
	# (for pmem-stack this also means its page cache holds the region).
	fio --name=prefill --filename="$dev" "${fio_common[@]}" --rw=write --bs=1M \
		--iodepth=8 --end_fsync=1 >"$RESULTS/fio/$round-$target-prefill.json" 2>&1 ||
		die "$target: prefill fio failed: $(tail -3 "$RESULTS/fio/$round-$target-prefill.json")"
	for job in $JOBS; do
		out=$RESULTS/fio/$round-$target-$job.json
		[ -z "$pid" ] || before=$(counters "$pid")
		# shellcheck disable=SC2046 # job_args is a word list on purpose
		if ! fio --name="$job" --filename="$dev" "${fio_common[@]}" $(job_args "$job") \
			--time_based --runtime="$RUNTIME" --ramp_time="$RAMP" >"$out" 2>&1; then
			die "$target/$job: fio failed: $(tail -5 "$out" | tr '\n' ' ')"
		fi
		# The server's page faults and CPU ticks during the job (ramp included).
		cost="- -"
		if [ -n "$pid" ]; then
			after=$(counters "$pid")
			# shellcheck disable=SC2086
			cost=$(set -- $before $after; echo "$(($3 - $1)) $(($4 - $2))")
		fi
		vals=$(fio_json "$out") || die "$target/$job: bad fio report $out: $vals"
		echo "$round $target $job $vals $cost" >>"$RESULTS/fio.tsv"
		echo "  $target $job: $vals $cost"
	done
}

# mem ROUND TARGET PID: the server's memory (all threads share one mm), CPU
# time and page faults after its fio runs, from ONE read of /proc/PID/status
# (a copy of which is kept in $RESULTS). Taken after SETTLE seconds idle: rublk's
# RSS was seen to grow for a moment after fio closed the device; VmHWM covers
# any peak either way.
mem() {
	local round=$1 target=$2 pid=$3 snap stat cpu minflt majflt
	snap=$RESULTS/status-$round-$target.txt
	echo "  $target pid $pid right after fio: $(grep -E '^(VmRSS|VmHWM|RssAnon|RssFile)' "/proc/$pid/status" | tr -s ' \t' ' ' | tr '\n' ' ')"
	sleep "$SETTLE"
	cat "/proc/$pid/status" >"$snap" 2>/dev/null || die "$target: server pid $pid is gone"
	stat=$(cat "/proc/$pid/stat")
	stat=${stat##*) } # fields from 3 on: state ppid ...
	# shellcheck disable=SC2086 # split the fields on purpose
	set -- $stat
	minflt=${8} majflt=${10}
	cpu=$(awk -v u="${12}" -v s="${13}" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (u+s)/hz}')
	local v
	v=$(awk '$1 ~ /^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem|Threads):$/ {a[$1]=$2}
		END {print a["VmRSS:"], a["VmHWM:"], a["RssAnon:"], a["RssFile:"], a["RssShmem:"], a["Threads:"]}' "$snap")
	# shellcheck disable=SC2086
	set -- $v
	[ $# -eq 6 ] || die "$target: could not parse $snap"
	echo "$round $target $pid $1 $2 $3 $4 $5 $cpu $minflt $majflt $6" >>"$RESULTS/mem.tsv"
	echo "  $target pid $pid ${SETTLE} s later: VmRSS $1 kB VmHWM $2 kB (anon $3 file $4 shmem $5) cpu ${cpu}s minflt $minflt majflt $majflt threads $6"
}

wait_block() { # DEV: the node appears by itself (devtmpfs); give it 10 s
	for _ in $(seq 100); do
		[ -b "$1" ] && return 0
		sleep 0.1
	done
	return 1
}

wait_gone() {
	for _ in $(seq 100); do
		[ -e "$1" ] || return 0
		sleep 0.1
	done
	return 1
}

# ---- the three targets
target_raw() {
	local round=$1
	echo "round $round: raw /dev/pmem0"
	run_jobs "$round" raw /dev/pmem0
}

target_pmemstack() {
	local round=$1 out dev id pid
	echo "round $round: pmem-stack"
	out=$("$P" add /dev/pmem0 --reserve "$RESERVE" --queues "$QUEUES" --depth "$DEPTH" --json 2>&1) ||
		die "pmem-stack add failed: $out"
	dev=$(echo "$out" | python3 -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index("{"):])["device"])') ||
		die "pmem-stack add printed no device: $out"
	wait_block "$dev" || die "$dev did not appear"
	id=${dev#/dev/ublkb}
	pid=$("$P" list --json | python3 -c "import json,sys; print([x['pid'] for x in json.load(sys.stdin) if x['id']==$id][0])") ||
		die "no pid for $dev in pmem-stack list"
	[ "$(cat "/sys/block/ublkb$id/size")" -gt 0 ] || die "$dev has size 0"
	echo "  $dev pid $pid: $("$P" list --json | python3 -c "import json,sys; e=[x for x in json.load(sys.stdin) if x['id']==$id][0]; print('queues', e['queues'], 'depth', e['depth'], 'user_copy', e['user_copy'], 'data_offset', e['data_offset'])")"
	run_jobs "$round" pmem-stack "$dev" "$pid"
	mem "$round" pmem-stack "$pid"
	"$P" del "$id" || die "pmem-stack del $id failed"
	wait_gone "$dev" || die "$dev still exists after del"
}

target_rublk() {
	local round=$1 out id pid dev rc=0
	echo "round $round: rublk loop"
	if [ -n "$RUBLK_UNAVAILABLE" ]; then
		echo "  skipped: $RUBLK_UNAVAILABLE"
		return 0
	fi
	# rublk forks a daemon, waits for the device to be live and dumps its info
	# ("dev id N: ...", "daemon pid P ...").
	out=$(timeout 60 "$RUBLK" add loop -f /dev/pmem0 -q "$QUEUES" -d "$DEPTH" 2>&1) || rc=$?
	id=$(echo "$out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p' | head -1)
	pid=$(echo "$out" | sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' | head -1)
	if [ "$rc" -ne 0 ] || [ -z "$id" ] || [ -z "$pid" ]; then
		RUBLK_UNAVAILABLE="rublk add loop -f /dev/pmem0 failed (status $rc): $(echo "$out" | tail -5 | tr '\n' ' ')"
		echo "  $RUBLK_UNAVAILABLE"
		return 0
	fi
	dev=/dev/ublkb$id
	wait_block "$dev" || die "rublk: $dev did not appear"
	echo "  $dev pid $pid: $(echo "$out" | grep -E 'nr_hw_queues|flags' | tr -s ' \t' ' ' | tr '\n' ' ')"
	run_jobs "$round" rublk "$dev" "$pid"
	mem "$round" rublk "$pid"
	"$RUBLK" del -n "$id" >/dev/null 2>&1 || die "rublk del -n $id failed"
	wait_gone "$dev" || die "rublk: $dev still exists after del"
	# The daemon exits once its device is gone.
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

# Alternate the order between rounds so that slow drift (host load) does not
# always favour the same target.
for round in $(seq "$ROUNDS"); do
	if [ $((round % 2)) -eq 1 ]; then
		order="raw pmemstack rublk"
	else
		order="rublk pmemstack raw"
	fi
	for t in $order; do
		"target_$t" "$round"
	done
done

[ "$(ublk_count)" -eq 0 ] || die "ublk devices left over at the end"
if [ -n "$RUBLK_UNAVAILABLE" ]; then
	echo "$RUBLK_UNAVAILABLE" >"$RESULTS/rublk-unavailable"
	echo "BENCH PARTIAL: rublk column unavailable: $RUBLK_UNAVAILABLE"
	exit 3
fi
echo "BENCH DONE"
