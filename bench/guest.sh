#!/bin/bash
# Guest side of bench/run: the same fio jobs against every target side by side
# in ONE boot, rounds interleaved. Runs inside the QEMU guest
# (tests/vm/boot.sh --label-size ...), as root.
#
# Targets (BENCH_TARGETS, in this order by default):
#   raw           /dev/pmem0, the kernel's pmem driver: the limit
#   dm-linear     a device-mapper linear device over /dev/pmem0 at pmem-stack's
#                 data offset and size: the in-kernel alternative
#   map           the same table made by `pmem-stack map` (device-mapper
#                 through the devicemapper crate): expected equal to dm-linear
#   rublk-null    rublk's null target: the ublk round trip and nothing else
#   rublk-loop    rublk's loop target over /dev/pmem0 (O_DIRECT, io_uring)
#   kublk-null    kublk's null target (the kernel's own ublk server, built
#                 from the kernel source by bench/kublk.sh): the driver's one
#                 copy per request and nothing else
#   kublk-loop    kublk's loop target over /dev/pmem0
#   kublk-...+F   the same with kublk's flag F (--F, or -F for one letter),
#                 e.g. kublk-null+auto_zc, kublk-loop+auto_zc+per_io_tasks; a
#                 flag the kernel does not offer is recorded as unavailable
#   ps-<path>     pmem-stack on /dev/pmem0 with `add --io-path <path>`, for
#                 every path in BENCH_PATHS (default: auto user-copy direct
#                 batch; ps-auto is the default path, which issue 23's
#                 targets grade); a path
#                 the kernel does not offer is recorded as unavailable;
#                 ps-<path>+<cache> adds `--write-cache <cache>` (e.g.
#                 ps-direct+write-back against the default write-through)
#   ps-devdax     pmem-stack on the devdax namespace, default path
#   ps-devdax+<cache>  the same with `--write-cache <cache>`
#   ps-...@<affinity>  any pmem-stack target with `--affinity <affinity>`
#                 (e.g. ps-direct@queue: queue threads pinned as libublk does)
#   ps-...%<ring> any pmem-stack target whose server runs with
#                 PMEM_STACK_RING=<ring> (queue ring setup: coop, defer;
#                 e.g. ps-user-copy%defer), for A/B in one boot; %<ring>
#                 comes last (ps-direct@queue%defer)
#   ps-...^<n>    any pmem-stack target whose server runs n threads per
#                 queue (PMEM_STACK_IO_THREADS=n: per-I/O daemons, 6.16+;
#                 refused, so recorded unavailable, on an older kernel),
#                 e.g. ps-direct^2, ps-direct^2%defer
#   ps-...~<src>  any pmem-stack target whose server reads from <src>
#                 (PMEM_STACK_READS=<src>: mapping, direct; user copy writing
#                 through only), e.g. ps-user-copy~direct
#
# The NVDIMM's label area is split in two namespaces: fsdax (/dev/pmem0,
# BENCH_PMEM_SIZE) and devdax (the rest).
#
# Writes to $RESULTS:
#   fio.tsv     round target job iops bw_bytes lat_mean_ns lat_p50_ns lat_p99_ns server_minflt server_cpu_ticks server_ios window_s
#               (the last four are "-" without a server process): the
#               server's page faults and CPU ticks (user + system, all its
#               threads, io_uring workers included) from the end of fio's
#               ramp to its exit, the reads + writes its device completed in
#               that window (/sys/block/ublkbN/stat), and its length in seconds
#   mem.tsv     round target pid VmRSS VmHWM RssAnon RssFile RssShmem (kB) cpu_s minflt majflt threads
#   unavailable.tsv  target reason (a target that could not run on this kernel)
#   profile/    with BENCH_PROFILE=HZ: per server target and job, perf's
#               reports of the whole guest by thread and of the server's
#               threads alone (see profile_start() below); every figure of
#               such a run is disturbed by the sampling
#   meta.env    parameters and environment facts
#   fio/*.json  every fio report, untouched
# Exit: 0 everything in BENCH_TARGETS measured or recorded as unavailable
# with its reason; anything else: failed, nothing to trust.
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
KUBLK=${KUBLK:-}
KUBLK_UNAVAILABLE=${KUBLK_UNAVAILABLE:-}

RUNTIME=${BENCH_RUNTIME:-3}   # seconds measured per job
RAMP=${BENCH_RAMP:-1}         # seconds of ramp-up (not measured) per job
OFFSET=${BENCH_OFFSET:-1024M} # same region on every target
SIZE=${BENCH_SIZE:-256M}
ROUNDS=${BENCH_ROUNDS:-5}
SETTLE=${BENCH_SETTLE:-2}     # idle seconds before reading a server's memory
QUEUES=${BENCH_QUEUES:-2}
PROFILE=${BENCH_PROFILE:-}    # Hz: also sample each server with perf (figures disturbed)
DEPTH=${BENCH_DEPTH:-128}
RESERVE=${BENCH_RESERVE:-512M}
PMEM_SIZE=${BENCH_PMEM_SIZE:-2G}
PATHS=${BENCH_PATHS:-auto user-copy direct batch}
JOBS=${BENCH_JOBS:-randread4k randwrite4k randread4k-qd1 seqread128k seqwrite128k fsyncwrite4k}
default_targets="raw dm-linear map rublk-null rublk-loop kublk-null kublk-loop"
for path in $PATHS; do default_targets+=" ps-$path"; done
TARGETS=${BENCH_TARGETS:-$default_targets ps-devdax}

export HOME=/tmp
cd /tmp # fio may drop state files into its cwd; the repo is read-only here

# ---- prerequisites: refuse to run rather than measure the wrong thing
[ -c /dev/ublk-control ] || die "/dev/ublk-control missing (ublk_drv not loaded?)"
for tool in fio python3 ndctl dmsetup ${PROFILE:+perf}; do
	command -v "$tool" >/dev/null || die "$tool not found in the guest's PATH"
done
[ -x "$P" ] || die "$P is not an executable (cargo build --release on the host)"
fio --enghelp=io_uring >/dev/null 2>&1 || die "this fio has no io_uring engine"
ublk_count() { find /sys/class/ublk-char -maxdepth 1 -name 'ublkc*' 2>/dev/null | wc -l; }
[ "$(ublk_count)" -eq 0 ] || die "ublk devices exist before the benchmark started"

# ---- namespaces: fsdax /dev/pmem0 + devdax on the rest of the region
ndctl disable-region all >/dev/null
ndctl init-labels -f all >/dev/null
ndctl enable-region all >/dev/null
ndctl create-namespace -r region0 -m fsdax -M mem -s "$PMEM_SIZE" >/dev/null ||
	die "ndctl could not create the $PMEM_SIZE fsdax namespace (boot with --label-size)"
ndctl create-namespace -r region0 -m devdax >/dev/null ||
	die "ndctl could not create the devdax namespace on the rest of region0"
[ -b /dev/pmem0 ] || die "/dev/pmem0 missing after creating the fsdax namespace"
DAX=$(find /dev -maxdepth 1 -name 'dax*' -type c | head -1)
[ -n "$DAX" ] || die "no /dev/daxX.Y after creating the devdax namespace"

to_bytes() {
	local n=${1%[KMG]} u=${1##*[0-9]}
	case $u in
	K) echo $((n << 10)) ;; M) echo $((n << 20)) ;; G) echo $((n << 30)) ;; *) echo "$n" ;;
	esac
}
end=$(($(to_bytes "$OFFSET") + $(to_bytes "$SIZE")))
jget() { python3 -c "import json,sys; t=sys.stdin.read(); d=json.loads(t[t.index('{'):]); print($1)"; }

# Format both backings once, so every pmem-stack target (and dm-linear, which
# maps pmem-stack's data area) finds the same layout.
fmt=$("$P" format /dev/pmem0 --reserve "$RESERVE" --json) || die "pmem-stack format /dev/pmem0 failed: $fmt"
DATA_OFFSET=$(echo "$fmt" | jget 'd["data_offset"]')
DATA_SIZE=$(echo "$fmt" | jget 'd["data_size"]')
[ "$end" -le "$DATA_SIZE" ] || die "region $OFFSET+$SIZE does not fit the $DATA_SIZE-byte data area"
fmt=$("$P" format "$DAX" --reserve "$RESERVE" --json) || die "pmem-stack format $DAX failed: $fmt"
[ "$end" -le "$(echo "$fmt" | jget 'd["data_size"]')" ] || die "region $OFFSET+$SIZE does not fit $DAX's data area"

if [ -z "$RUBLK_UNAVAILABLE" ]; then
	if [ -z "$RUBLK" ]; then
		RUBLK_UNAVAILABLE="no rublk binary was given (RUBLK is empty)"
	elif [ ! -x "$RUBLK" ]; then
		RUBLK_UNAVAILABLE="$RUBLK is not an executable in the guest"
	fi
fi

if [ -z "$KUBLK_UNAVAILABLE" ]; then
	if [ -z "$KUBLK" ]; then
		KUBLK_UNAVAILABLE="no kublk binary was given (KUBLK is empty)"
	elif [ ! -x "$KUBLK" ]; then
		KUBLK_UNAVAILABLE="$KUBLK is not an executable in the guest"
	fi
fi

mkdir -p "$RESULTS/fio"
: >"$RESULTS/fio.tsv"
: >"$RESULTS/mem.tsv"
: >"$RESULTS/unavailable.tsv"
{
	echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "kernel=$(uname -r)"
	echo "vcpus=$(nproc)"
	echo "cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)"
	echo "qemu_cpu=${BENCH_CPU:-unknown}"
	echo "copy_flags=$(awk '/^flags/ {for (i = 1; i <= NF; i++) if ($i ~ /^(erms|fsrm|fsrs)$/) printf "%s%s", (n++ ? " " : ""), $i; exit}' /proc/cpuinfo)"
	echo "guest_mem_kb=$(awk '/MemTotal/{print $2}' /proc/meminfo)"
	echo "fio=$(fio --version)"
	echo "pmem_stack=$("$P" --version 2>/dev/null || echo unknown)"
	if [[ " $TARGETS " != *" rublk-"* ]]; then
		echo "rublk=not in this run"
	else
		echo "rublk=$([ -n "$RUBLK" ] && [ -x "$RUBLK" ] && "$RUBLK" --version 2>/dev/null || echo unavailable)"
	fi
	echo "kublk=${KUBLK_VERSION:-unavailable}"
	echo "clk_tck=$(getconf CLK_TCK)"
	echo "devdax=$DAX $(cat "/sys/bus/dax/devices/${DAX#/dev/}/size") bytes"
	echo "data_offset=$DATA_OFFSET"
	echo "params=runtime=$RUNTIME ramp=$RAMP settle=$SETTLE offset=$OFFSET size=$SIZE rounds=$ROUNDS queues=$QUEUES depth=$DEPTH reserve=$RESERVE pmem=$PMEM_SIZE"
	echo "jobs=$JOBS"
	echo "targets=$TARGETS"
} >"$RESULTS/meta.env"

# ---- fio: identical job parameters for every target; only --filename differs
# clock_gettime: with the guest's TSC marked reliable (boot.sh) fio times
# with rdtsc, and under TCG on 6.12 that gave QD1 p50s of 8 µs against a
# mean of 120 µs.
fio_common=(--ioengine=io_uring --direct=1 --numjobs=1 --thread
	--offset="$OFFSET" --size="$SIZE" --randrepeat=1 --norandommap
	--clocksource=clock_gettime --output-format=json)

job_args() {
	case $1 in
	randread4k) echo "--rw=randread --bs=4k --iodepth=32" ;;
	randwrite4k) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	randread4k-qd1) echo "--rw=randread --bs=4k --iodepth=1" ;;
	seqread128k) echo "--rw=read --bs=128k --iodepth=16" ;;
	seqwrite128k) echo "--rw=write --bs=128k --iodepth=16" ;;
	fsyncwrite4k) echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=1" ;;
	*) die "unknown job '$1'" ;;
	esac
}

# fio_json FILE: check a report and print "iops bw_bytes lat_mean_ns p50_ns p99_ns"
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
pct = s["clat_ns"].get("percentile", {})
print("%.1f %d %.0f %d %d" % (s["iops"], s["bw_bytes"], s["lat_ns"]["mean"],
      pct.get("50.000000", 0), pct.get("99.000000", 0)))
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

# now: seconds since the epoch, ns precision.
now() { date +%s.%N; }

# disk_ios DEV: the reads + writes DEV has completed (/sys/block/X/stat
# fields 1 and 5).
disk_ios() {
	local stat
	stat=$(cat "/sys/block/$(basename "$1")/stat") || die "no /sys/block stat for $1"
	# shellcheck disable=SC2086 # split the fields on purpose
	set -- $stat
	echo $(($1 + $5))
}

# run_jobs ROUND TARGET DEV [SERVER_PID]
run_jobs() {
	local round=$1 target=$2 dev=$3 pid=${4:-} job out vals before after cost fio_pid rc t0 t1 ios0 prof
	# Same starting state everywhere: the region written once and flushed.
	fio --name=prefill --filename="$dev" "${fio_common[@]}" --rw=write --bs=1M \
		--iodepth=8 --end_fsync=1 >"$RESULTS/fio/$round-$target-prefill.json" 2>&1 ||
		die "$target: prefill fio failed: $(tail -3 "$RESULTS/fio/$round-$target-prefill.json")"
	for job in $JOBS; do
		out=$RESULTS/fio/$round-$target-$job.json
		# shellcheck disable=SC2046 # job_args is a word list on purpose
		fio --name="$job" --filename="$dev" "${fio_common[@]}" $(job_args "$job") \
			--time_based --runtime="$RUNTIME" --ramp_time="$RAMP" >"$out" 2>&1 &
		fio_pid=$!
		# The server's counters over the measured part only: from the end
		# of the ramp (fio's start-up makes the sample fall a little inside
		# it) to fio's exit, against the I/Os the device completed in that
		# same window.
		prof=
		if [ -n "$pid" ]; then
			# perf -a takes a while to start under TCG: from fio's start,
			# so that it samples the job and not the idle guest after it.
			if [ -n "$PROFILE" ]; then
				profile_start "$round-$target-$job" &
				prof=$!
			fi
			sleep "$RAMP"
			before=$(counters "$pid")
			ios0=$(disk_ios "$dev")
			t0=$(now)
		fi
		rc=0
		wait "$fio_pid" || rc=$?
		if [ -n "$prof" ]; then
			wait "$prof" || die "perf record -a failed: $(tail -3 "$RESULTS/profile/$round-$target-$job.record.txt")"
			profile_report "$round-$target-$job" "$pid"
		fi
		[ "$rc" -eq 0 ] || die "$target/$job: fio failed (status $rc): $(tail -5 "$out" | tr '\n' ' ')"
		cost="- - - -"
		if [ -n "$pid" ]; then
			after=$(counters "$pid")
			cost="$(($(disk_ios "$dev") - ios0))"
			t1=$(now)
			# shellcheck disable=SC2086
			cost="$(set -- $before $after; echo "$(($3 - $1)) $(($4 - $2))") $cost"
			cost="$cost $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b - a}')"
		fi
		vals=$(fio_json "$out") || die "$target/$job: bad fio report $out: $vals"
		echo "$round $target $job $vals $cost" >>"$RESULTS/fio.tsv"
		echo "  $target $job: $vals $cost"
	done
}

# profile_start NAME: sample every CPU with the kernel's software clock, the
# one event a TCG guest has, for the job's ramp and all but the last second
# of its run (started with fio: perf -a's start-up under TCG would otherwise
# eat the window), into /tmp/NAME.data.
profile_start() {
	local name=$1 dir=$RESULTS/profile
	mkdir -p "$dir"
	perf record -q -e cpu-clock -F "$PROFILE" -g -a -o "/tmp/$name.data" -- sleep "$((RAMP + RUNTIME - 1))" \
		>"$dir/$name.record.txt" 2>&1
}

# profile_report NAME PID: what profile_start sampled, as four reports in
# $RESULTS/profile/, each headed by the server's pid and thread names:
# NAME.flat.txt and NAME.tree.txt, the whole guest by thread name, module
# and symbol (self time) and by thread name and call (inclusive time), and
# NAME.server.txt and NAME.server-tree.txt, the same for the server's
# threads alone, as shares of their own samples. Why the whole guest: the
# server runs in a mount namespace of its own, and Debian 12's perf 6.1
# trips on it ("assertion failed at util/namespaces.c:301"): `perf record
# -p PID` then samples none of its queue threads, and `-a` files them under
# ids that neither --pid nor --tid matches, and at times under no name; the
# whole-guest reports keep every sample and say whose it is, the server's
# are filtered by thread name (pmem-stack, iou-wrk-TID, stats).
profile_report() {
	local name=$1 pid=$2 dir=$RESULTS/profile comms head
	# Threads come and go (io_uring workers): whatever could be read.
	comms=$({ cat /proc/"$pid"/task/*/comm 2>/dev/null || true; } | sort -u | paste -sd,)
	[ -n "$comms" ] || die "no threads listed for server pid $pid"
	head="# server pid $pid, threads: $comms"
	report() { # OUT ARGS...: one perf report of the samples, headed
		local out=$1
		shift
		{ echo "$head"; perf report -i "/tmp/$name.data" --stdio -g none "$@"; } >"$dir/$name.$out.txt" 2>/dev/null ||
			die "perf report ($out) of $name failed"
	}
	report flat --no-children --sort comm,dso,sym --percent-limit 0.05
	report tree --children --sort comm,sym --percent-limit 0.5
	report server --comms "$comms" --percentage relative --no-children --sort comm,dso,sym --percent-limit 0.5
	report server-tree --comms "$comms" --percentage relative --children --sort comm,sym --percent-limit 3
	rm -f "/tmp/$name.data"
}

# mem ROUND TARGET PID: the server's memory (all threads share one mm), CPU
# time and page faults after its fio runs, from ONE read of /proc/PID/status
# (a copy is kept in $RESULTS), SETTLE seconds after fio closed the device.
mem() {
	local round=$1 target=$2 pid=$3 snap stat cpu minflt majflt v
	snap=$RESULTS/status-$round-$target.txt
	sleep "$SETTLE"
	cat "/proc/$pid/status" >"$snap" 2>/dev/null || die "$target: server pid $pid is gone"
	stat=$(cat "/proc/$pid/stat")
	stat=${stat##*) }
	# shellcheck disable=SC2086 # split the fields on purpose
	set -- $stat
	minflt=${8} majflt=${10}
	cpu=$(awk -v u="${12}" -v s="${13}" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (u+s)/hz}')
	v=$(awk '$1 ~ /^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem|Threads):$/ {a[$1]=$2}
		END {print a["VmRSS:"], a["VmHWM:"], a["RssAnon:"], a["RssFile:"], a["RssShmem:"], a["Threads:"]}' "$snap")
	# shellcheck disable=SC2086
	set -- $v
	[ $# -eq 6 ] || die "$target: could not parse $snap"
	echo "$round $target $pid $1 $2 $3 $4 $5 $cpu $minflt $majflt $6" >>"$RESULTS/mem.tsv"
	echo "  $target pid $pid: VmRSS $1 kB (anon $3 file $4 shmem $5) cpu ${cpu}s minflt $minflt threads $6"
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

unavailable() { # TARGET REASON: record once, print every round
	echo "  $1 unavailable: $2"
	grep -q "^$1 " "$RESULTS/unavailable.tsv" || echo "$1 $2" >>"$RESULTS/unavailable.tsv"
}

# ---- the targets
target_raw() {
	run_jobs "$1" raw /dev/pmem0
}

target_dm-linear() {
	local round=$1 name=bench-linear
	echo "0 $((DATA_SIZE / 512)) linear /dev/pmem0 $((DATA_OFFSET / 512))" | dmsetup create "$name" ||
		die "dmsetup create $name failed"
	wait_block "/dev/mapper/$name" || die "/dev/mapper/$name did not appear"
	run_jobs "$round" dm-linear "/dev/mapper/$name"
	dmsetup remove "$name" || die "dmsetup remove $name failed"
}

target_map() {
	local round=$1 name=bench-map dev
	dev=$("$P" map /dev/pmem0 --name "$name" | tail -1) || die "pmem-stack map /dev/pmem0 failed"
	[ "$dev" == "/dev/mapper/$name" ] || die "pmem-stack map printed '$dev', not /dev/mapper/$name"
	wait_block "$dev" || die "$dev did not appear"
	run_jobs "$round" map "$dev"
	"$P" unmap "$name" >/dev/null || die "pmem-stack unmap $name failed"
	wait_gone "$dev" || die "$dev still exists after unmap"
}

# pmem_stack ROUND TARGET BACKING [ADD ARGS...]
pmem_stack() {
	local round=$1 target=$2 backing=$3 out dev id pid entry
	shift 3
	if ! out=$("$P" add "$backing" --queues "$QUEUES" --depth "$DEPTH" "$@" --json 2>&1); then
		if echo "$out" | grep -qE "not offered by this kernel|which this kernel does not offer"; then
			unavailable "$target" "$(echo "$out" | tail -1)"
			return 0
		fi
		die "pmem-stack add $backing $* failed: $out"
	fi
	dev=$(echo "$out" | jget 'd["device"]') || die "pmem-stack add printed no device: $out"
	wait_block "$dev" || die "$dev did not appear"
	id=${dev#/dev/ublkb}
	entry=$("$P" list --json | python3 -c "import json,sys; print(json.dumps([x for x in json.load(sys.stdin) if x['id']==$id][0]))") ||
		die "no entry for $dev in pmem-stack list"
	pid=$(echo "$entry" | jget 'd["pid"]')
	echo "  $dev pid $pid: $(echo "$entry" | jget '" ".join("%s=%s" % (k, d.get(k)) for k in ("queues", "depth", "io_path", "write_cache", "data_offset"))')"
	[ "$round" -ne 1 ] || echo "$target $entry" >>"$RESULTS/devices.txt"
	run_jobs "$round" "$target" "$dev" "$pid"
	mem "$round" "$target" "$pid"
	"$P" del "$id" || die "pmem-stack del $id failed"
	wait_gone "$dev" || die "$dev still exists after del"
}

# rublk and kublk fork a daemon, wait for the device to be live and dump its
# info the same way ("dev id N: ...", "daemon pid P ... flags 0x..."):
# peer_add NAME BIN ARGS... adds one and sets peer_out, peer_id, peer_pid.
peer_add() {
	local name=$1 bin=$2 rc=0
	shift 2
	peer_out=$(timeout 60 "$bin" add "$@" 2>&1) || rc=$?
	peer_id=$(echo "$peer_out" | sed -n 's/^dev id \([0-9]*\):.*/\1/p' | head -1)
	peer_pid=$(echo "$peer_out" | sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' | head -1)
	if [ "$rc" -ne 0 ] || [ -z "$peer_id" ] || [ -z "$peer_pid" ]; then
		die "$name add $* failed (status $rc): $(echo "$peer_out" | tail -5 | tr '\n' ' ')"
	fi
}

# peer_del NAME BIN ID: remove a peer's device and wait until it is gone.
peer_del() {
	timeout 60 "$2" del -n "$3" >/dev/null 2>&1 || die "$1 del -n $3 failed"
	wait_gone "/dev/ublkb$3" || die "$1: /dev/ublkb$3 still exists after del"
}

# peer_measure ROUND TARGET NAME BIN WHAT: measure the device peer_add made
# (WHAT: how it was made, for devices.txt), then remove it.
peer_measure() {
	local round=$1 target=$2 name=$3 bin=$4 what=$5 dev=/dev/ublkb$peer_id pid=$peer_pid
	wait_block "$dev" || die "$name: $dev did not appear"
	[ "$round" -ne 1 ] || echo "$target $what: $(echo "$peer_out" | grep -E 'nr_hw_queues|flags' | tr -s ' \t' ' ' | tr '\n' ' ')" >>"$RESULTS/devices.txt"
	run_jobs "$round" "$target" "$dev" "$pid"
	mem "$round" "$target" "$pid"
	peer_del "$name" "$bin" "$peer_id"
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
}

# rublk ROUND TARGET ARGS...
rublk() {
	local round=$1 target=$2
	shift 2
	if [ -n "$RUBLK_UNAVAILABLE" ]; then
		unavailable "$target" "$RUBLK_UNAVAILABLE"
		return 0
	fi
	peer_add rublk "$RUBLK" "$@" -q "$QUEUES" -d "$DEPTH"
	peer_measure "$round" "$target" rublk "$RUBLK" "rublk add $*"
}

# kublk_flag_bit FLAG: the UBLK_F_* bit a kublk flag needs the kernel to
# grant (kublk asks for it, and serves without it when the kernel strips it:
# it never compares), or 0 for a flag that needs none.
kublk_flag_bit() {
	case $1 in
	z | zero_copy) echo $((0x1)) ;;         # UBLK_F_SUPPORT_ZERO_COPY
	g | get_data) echo $((0x4)) ;;          # UBLK_F_NEED_GET_DATA
	u | user_copy) echo $((0x80)) ;;        # UBLK_F_USER_COPY
	auto_zc) echo $((0x800)) ;;             # UBLK_F_AUTO_BUF_REG (6.16)
	per_io_tasks) echo $((0x2000)) ;;       # UBLK_F_PER_IO_DAEMON (6.16)
	b | batch) echo $((0x8000)) ;;          # UBLK_F_BATCH_IO (7.0)
	*) echo 0 ;;
	esac
}

# kublk ROUND TARGET: TARGET is kublk-<null|loop>[+FLAG...]. kublk forks
# its daemon, waits for the device to be live and dumps its info like rublk
# ("dev id N: ...", "daemon pid P ... flags 0x..."). A flag the kernel does
# not grant is recorded as unavailable (kublk would serve without it).
kublk() {
	local round=$1 target=$2 spec kind flag flags bit args=() wanted=() need=0
	if [ -n "$KUBLK_UNAVAILABLE" ]; then
		unavailable "$target" "$KUBLK_UNAVAILABLE"
		return 0
	fi
	spec=${target#kublk-}
	kind=${spec%%+*}
	args=(-t "$kind" -q "$QUEUES" -d "$DEPTH")
	if [ "$spec" != "$kind" ]; then
		IFS=+ read -ra wanted <<<"${spec#*+}"
		for flag in "${wanted[@]}"; do
			if [ "${#flag}" -eq 1 ]; then args+=("-$flag"); else args+=("--$flag"); fi
			need=$((need | $(kublk_flag_bit "$flag")))
		done
	fi
	[ "$kind" != loop ] || args+=(/dev/pmem0)
	# kublk serves without a flag the kernel strips (checked below), so a
	# failed add is a failure, never "unavailable".
	peer_add kublk "$KUBLK" "${args[@]}"
	flags=$(echo "$peer_out" | sed -n 's/.* flags \(0x[0-9a-fA-F]*\).*/\1/p' | head -1)
	[ -n "$flags" ] || die "kublk add printed no flags: $(echo "$peer_out" | tr '\n' ' ')"
	if [ $((flags & need)) -ne "$need" ]; then
		peer_del kublk "$KUBLK" "$peer_id"
		bit=$(printf '0x%x' $((need & ~flags)))
		unavailable "$target" "this kernel does not grant kublk ${spec#*+} (UBLK_F_* $bit missing from the device's flags $flags)"
		return 0
	fi
	peer_measure "$round" "$target" kublk "$KUBLK" "kublk add ${args[*]}"
}

target_rublk-null() {
	rublk "$1" rublk-null null
}

target_rublk-loop() {
	rublk "$1" rublk-loop loop -f /dev/pmem0
}

run_target() { # ROUND TARGET
	local round=$1 target=$2 base t extra=()
	echo "round $round: $target"
	# A pmem-stack target's %RING runs its server with PMEM_STACK_RING=RING
	# (the server inherits add's environment).
	base=${target%\%*}
	if [ "$base" != "$target" ]; then
		export PMEM_STACK_RING=${target##*%}
	else
		unset PMEM_STACK_RING
	fi
	# ^N: N threads per queue (PMEM_STACK_IO_THREADS, per-I/O daemons).
	if [[ $base =~ \^([0-9]+) ]]; then
		export PMEM_STACK_IO_THREADS=${BASH_REMATCH[1]}
		base=${base/"${BASH_REMATCH[0]}"/}
	else
		unset PMEM_STACK_IO_THREADS
	fi
	# ~SRC: where user-copy reads come from (PMEM_STACK_READS).
	if [[ $base =~ ~([a-z]+) ]]; then
		export PMEM_STACK_READS=${BASH_REMATCH[1]}
		base=${base/"${BASH_REMATCH[0]}"/}
	else
		unset PMEM_STACK_READS
	fi
	# A pmem-stack target's @AFFINITY adds `--affinity AFFINITY`.
	t=${base%@*}
	[ "$t" == "$base" ] || extra=(--affinity "${base##*@}")
	base=$t
	case $base in
	ps-devdax) pmem_stack "$round" "$target" "$DAX" "${extra[@]}" ;;
	ps-devdax+*) pmem_stack "$round" "$target" "$DAX" --write-cache "${base#ps-devdax+}" "${extra[@]}" ;;
	ps-*+*)
		t=${base#ps-}
		pmem_stack "$round" "$target" /dev/pmem0 --io-path "${t%%+*}" --write-cache "${t#*+}" "${extra[@]}"
		;;
	ps-*) pmem_stack "$round" "$target" /dev/pmem0 --io-path "${base#ps-}" "${extra[@]}" ;;
	raw | dm-linear | map | rublk-null | rublk-loop) "target_$target" "$round" ;;
	kublk-null | kublk-null+* | kublk-loop | kublk-loop+*) kublk "$round" "$target" ;;
	*) die "unknown target '$target'" ;;
	esac
}

# Interleave: every round runs every target once, starting one further along
# the list each round and reversing direction every other round, so neither
# slow drift nor "who ran just before" favours one target.
read -ra order <<<"$TARGETS"
n=${#order[@]}
for round in $(seq "$ROUNDS"); do
	for i in $(seq 0 $((n - 1))); do
		if [ $((round % 2)) -eq 1 ]; then
			k=$(((round - 1 + i) % n))
		else
			k=$(((round - 1 + n - i) % n))
		fi
		run_target "$round" "${order[$k]}"
	done
done

[ "$(ublk_count)" -eq 0 ] || die "ublk devices left over at the end"
echo "BENCH DONE"
