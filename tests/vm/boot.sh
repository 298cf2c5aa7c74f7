#!/usr/bin/env bash
# Boot the pmem-stack test VM once and run one guest script in it.
# See tests/vm/README.md.  Run tests/vm/setup.sh first (it prepares both kernels).
set -euo pipefail

PROG=boot.sh
die() {
    echo "$PROG: ERROR: $*" >&2
    exit "${2:-2}"
}

usage() {
    cat <<'EOF'
usage: tests/vm/boot.sh --script PATH [options]
  --script PATH       guest bash script (absolute, or relative to the repo root)
  --kernel SERIES     which kernel setup.sh prepared: current (default; the newest
                      from Debian's trixie-backports) or lts (Debian 12's 6.12)
  --image PATH        NVDIMM backing file (default <cache>/pmem.img); created with
                      truncate if missing
  --size SIZE         namespace size (default 2G, or the existing image's size)
  --label-size SIZE   give the NVDIMM a label area (devdax tests; e.g. 128K); the image
                      is then SIZE + label size
  --results DIR       results directory (default <cache>/runs/<kernel>/<script name>); created,
                      emptied of the previous run
  --env K=V           export K=V in the guest (repeatable)
  --cwd DIR           guest working directory (default: the repo root)
  --timeout SECONDS   kill QEMU and exit 124 after this long (default 600)
  --kill-on NAME      power cut: SIGKILL QEMU as soon as RESULTS/NAME exists; exit 0
                      if that happened, 3 if the guest finished without creating it
  --mem SIZE          guest RAM (default 2G)
  --smp N             vCPUs (default 2)
  --append ARGS       extra kernel command line arguments (e.g. initcall_debug)
  --cxl SIZE          also give the guest CXL persistent memory: a q35 machine with
                      cxl=on, a pxb-cxl host bridge, a root port, a cxl-type3 device
                      whose persistent memdev is IMAGE.cxl (SIZE, a multiple of
                      256M) with a label area IMAGE.lsa, and a 4 GiB CXL fixed
                      memory window (QEMU 7.2's CXL 2.0 emulation); the guest makes
                      a region of it with cxl create-region
  --root-disk PATH    boot Debian with systemd as PID 1 instead of the busybox
                      chroot: PATH is a qcow2 overlay of the Debian root setup.sh
                      built (created when missing; pass the same PATH to the next
                      boot to keep what the guest wrote); the guest script runs
                      from pmem-stack-vm.service once the system is up, and the
                      guest powers off or reboots (either ends this run) after it
  --follow            copy the guest's console to stderr while it runs
Environment: PMEM_STACK_VM_CPU  QEMU's -cpu model (default max; e.g. max,-erms to
                      compare the guest's string-copy paths, see bench/README.md)
Exit: the guest script's status; 124 timeout; 125 no status (panic, QEMU failure);
      2 usage/setup errors; 3 --kill-on marker never appeared.
EOF
}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${PMEM_STACK_VM_DIR:-$REPO/target/vm}

to_bytes() { # 2G, 128K, 1073741824, 1GiB -> bytes (binary units)
    local s=$1 n u
    [[ $s =~ ^([0-9]+)([KkMmGgTt]?)(i?B)?$ ]] || die "bad size '$s' (use e.g. 2G, 128K, 1073741824)"
    n=${BASH_REMATCH[1]}
    u=${BASH_REMATCH[2]}
    case ${u,,} in
        "") echo "$n" ;;
        k) echo $((n << 10)) ;;
        m) echo $((n << 20)) ;;
        g) echo $((n << 30)) ;;
        t) echo $((n << 40)) ;;
    esac
}

SERIES=current SCRIPT="" IMAGE="" SIZE="" LABEL_SIZE="" RESULTS="" CWD=$REPO TIMEOUT=600 KILL_ON=""
MEM=2G SMP=2 FOLLOW=0 APPEND="" ROOT_DISK="" CXL=""
CPU=${PMEM_STACK_VM_CPU:-max}
ENVS=()
while [[ $# -gt 0 ]]; do
    opt=$1
    case $opt in
        -h | --help)
            usage
            exit 0
            ;;
        --follow)
            FOLLOW=1
            shift
            continue
            ;;
        --*=*)
            set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
            continue
            ;;
    esac
    [[ $# -ge 2 ]] || die "$opt needs a value (see --help)"
    val=$2
    case $opt in
        --script) SCRIPT=$val ;;
        --kernel) SERIES=$val ;;
        --image) IMAGE=$val ;;
        --size) SIZE=$val ;;
        --label-size) LABEL_SIZE=$val ;;
        --results) RESULTS=$val ;;
        --env) ENVS+=("$val") ;;
        --cwd) CWD=$val ;;
        --timeout) TIMEOUT=$val ;;
        --kill-on) KILL_ON=$val ;;
        --mem) MEM=$val ;;
        --smp) SMP=$val ;;
        --append) APPEND=$val ;;
        --root-disk) ROOT_DISK=$val ;;
        --cxl) CXL=$val ;;
        *) die "unknown option '$opt' (see --help)" ;;
    esac
    shift 2
done

[[ $(id -u) -eq 0 ]] || die "must run as root (QEMU's 9p export of / with security_model=none needs it)"
[[ -n $SCRIPT ]] || die "--script is required (see --help)"
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer (seconds)"
[[ $SMP =~ ^[1-9][0-9]*$ ]] || die "--smp must be a positive integer"
[[ -z $KILL_ON || $KILL_ON =~ ^[A-Za-z0-9._-]+$ ]] || die "--kill-on takes a plain file name, got '$KILL_ON'"
[[ $SERIES == lts || $SERIES == current ]] || die "--kernel takes lts or current, got '$SERIES'"

# ---- setup state (one kernel.env per kernel series, written by setup.sh)
KENV=$VM_DIR/$SERIES/kernel.env
[[ -f $KENV ]] || die "kernel '$SERIES' is not set up ($KENV missing): run tests/vm/setup.sh --kernel $SERIES"
VM_KERNEL_SERIES=""
# shellcheck source=/dev/null
. "$KENV"
[[ $VM_KERNEL_SERIES == "$SERIES" ]] || die "$KENV is for kernel '$VM_KERNEL_SERIES', not '$SERIES': run tests/vm/setup.sh --kernel $SERIES"
for f in "$VM_VMLINUZ" "$VM_INITRD"; do
    [[ -f $f ]] || die "$f missing: run tests/vm/setup.sh --kernel $SERIES"
done
[[ $(sha256sum "$HERE/init.sh" | awk '{print $1}') == "$VM_INIT_SHA" ]] ||
    die "tests/vm/init.sh changed since the $SERIES initramfs was built: run tests/vm/setup.sh"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run tests/vm/setup.sh"

# ---- the Debian root (--root-disk): an overlay of setup.sh's image that holds
# this kernel's modules
ROOT_ARGS=()
if [[ -n $ROOT_DISK ]]; then
    ROOT_IMG=$VM_DIR/debian/root.img
    [[ -f $ROOT_IMG && -f $VM_DIR/debian/root.env ]] ||
        die "the Debian root is not built ($ROOT_IMG missing): run tests/vm/setup.sh"
    DEBIAN_ROOT_KERNELS=""
    # shellcheck source=/dev/null
    . "$VM_DIR/debian/root.env"
    [[ " $DEBIAN_ROOT_KERNELS " == *" $VM_KERNEL_VERSION "* ]] ||
        die "the Debian root has no modules for $VM_KERNEL_VERSION (it has: $DEBIAN_ROOT_KERNELS): run tests/vm/setup.sh"
    [[ $ROOT_DISK == /* ]] || ROOT_DISK=$PWD/$ROOT_DISK
    if [[ ! -e $ROOT_DISK ]]; then
        mkdir -p "$(dirname "$ROOT_DISK")"
        qemu-img create -q -f qcow2 -F raw -b "$ROOT_IMG" "$ROOT_DISK" ||
            die "qemu-img create of the overlay $ROOT_DISK failed"
    fi
    [[ $(qemu-img info --output=json "$ROOT_DISK" 2>/dev/null) == *'"backing-filename": "'"$ROOT_IMG"'"'* ]] ||
        die "--root-disk $ROOT_DISK is not an overlay of $ROOT_IMG; delete it"
    # shellcheck disable=SC2054 # QEMU's commas
    ROOT_ARGS=(-drive "file=$ROOT_DISK,if=virtio,format=qcow2,cache=writeback")
    APPEND="pmemstack.root=/dev/vda${APPEND:+ $APPEND}"
fi

# ---- guest script and cwd (the guest sees the host root at the same paths, except
# for /tmp, /run, /proc, /sys and /dev, which are the guest's own)
[[ $SCRIPT == /* ]] || SCRIPT=$REPO/$SCRIPT
[[ -f $SCRIPT ]] || die "guest script $SCRIPT not found"
SCRIPT=$(realpath "$SCRIPT")
CWD=$(realpath "$CWD")
[[ -d $CWD ]] || die "--cwd $CWD is not a directory"
for p in "$SCRIPT" "$CWD"; do
    # The repo itself is shared separately (at its own path), wherever it is.
    [[ $p/ == "$REPO"/* ]] && continue
    case $p/ in
        /tmp/* | /run/* | /proc/* | /sys/* | /dev/*)
            die "$p is under /tmp, /run, /proc, /sys or /dev, which the guest does not share with the host; put it elsewhere"
            ;;
    esac
done

# ---- sizes and image
LABEL_BYTES=0
[[ -n $LABEL_SIZE ]] && LABEL_BYTES=$(to_bytes "$LABEL_SIZE")
if [[ -z $IMAGE ]]; then
    IMAGE=$VM_DIR/pmem.img
    [[ $LABEL_BYTES -gt 0 ]] && IMAGE=$VM_DIR/pmem-labels.img
fi
[[ $IMAGE == /* ]] || IMAGE=$PWD/$IMAGE
mkdir -p "$(dirname "$IMAGE")"
if [[ -e $IMAGE ]]; then
    [[ -f $IMAGE ]] || die "--image $IMAGE exists and is not a regular file"
    have=$(stat -c %s "$IMAGE")
    if [[ -n $SIZE ]]; then
        want=$(($(to_bytes "$SIZE") + LABEL_BYTES))
        [[ $have -eq $want ]] ||
            die "--image $IMAGE is $have bytes, but --size $SIZE${LABEL_SIZE:+ + --label-size $LABEL_SIZE} = $want; delete it or fix --size"
    fi
    TOTAL=$have
else
    TOTAL=$(($(to_bytes "${SIZE:-2G}") + LABEL_BYTES))
    truncate -s "$TOTAL" "$IMAGE" || die "truncate -s $TOTAL $IMAGE failed"
fi
NS_BYTES=$((TOTAL - LABEL_BYTES))
[[ $NS_BYTES -gt 0 ]] || die "image $IMAGE ($TOTAL bytes) is not larger than the label area ($LABEL_BYTES)"
# Only one VM per image: QEMU itself does not lock memory-backend-file.
exec 9<"$IMAGE"
flock -n 9 || die "image $IMAGE is in use by another boot.sh"

# ---- CXL persistent memory (--cxl): its memdev and label area beside the image
MACHINE=pc,nvdimm=on,accel=tcg
CXL_ARGS=()
if [[ -n $CXL ]]; then
    CXL_BYTES=$(to_bytes "$CXL")
    [[ $CXL_BYTES -gt 0 && $((CXL_BYTES % (256 << 20))) -eq 0 ]] ||
        die "--cxl $CXL: a CXL region is made of 256 MiB blocks; give a multiple of 256M"
    for f in "$IMAGE.cxl" "$IMAGE.lsa"; do
        [[ -e $f ]] || truncate -s "$([[ $f == *.cxl ]] && echo "$CXL_BYTES" || echo $((1 << 20)))" "$f" ||
            die "truncate $f failed"
    done
    [[ $(stat -c %s "$IMAGE.cxl") -eq $CXL_BYTES ]] || die "$IMAGE.cxl is not $CXL_BYTES bytes; delete it or fix --cxl"
    # The window (4 GiB) must hold the region; the label area: 1 MiB.
    MACHINE=q35,nvdimm=on,cxl=on,accel=tcg,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G
    # QEMU 7.2's cxl-type3 has no event-log interrupts, and when the OS owns
    # CXL error reporting (_OSC) cxl_pci fails the probe without them ("Failed
    # to get interrupt for event Info log"). pcie_ports=compat leaves _OSC
    # control with the firmware, which makes cxl_pci skip the event setup.
    APPEND="pcie_ports=compat${APPEND:+ $APPEND}"
    # The serial number: Linux 6.13+ refuses a pmem region of a memdev
    # without one ("invalid or missing serial number"); QEMU's default is 0.
    # Committing a CXL region makes the kernel invalidate CPU caches for the
    # new physical range, which x86 Linux refuses to trust under a hypervisor
    # ("Failed to synchronize CPU cache state"): hide QEMU's hypervisor CPUID
    # bit (TCG runs wbinvd as a no-op; there is no cache to lose).
    CPU+=,-hypervisor
    # shellcheck disable=SC2054 # QEMU's commas
    CXL_ARGS=(
        -object "memory-backend-file,id=cxl-mem0,share=on,mem-path=$IMAGE.cxl,size=$CXL_BYTES"
        -object "memory-backend-file,id=cxl-lsa0,share=on,mem-path=$IMAGE.lsa,size=$((1 << 20))"
        -device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1
        -device cxl-rp,port=0,bus=cxl.1,id=cxl_rp0,chassis=0,slot=2
        -device cxl-type3,bus=cxl_rp0,memdev=cxl-mem0,lsa=cxl-lsa0,id=cxl-pmem0,sn=0x5e1f
    )
fi

MEM_BYTES=$(to_bytes "$MEM")
# maxmem must hold RAM + the NVDIMM; round up to GiB and add 1 GiB.
MAXMEM_G=$(((MEM_BYTES + TOTAL + (1 << 30) - 1) / (1 << 30) + 1))

# ---- results directory
if [[ -z $RESULTS ]]; then
    RESULTS=$VM_DIR/runs/$SERIES/$(basename "$SCRIPT" .sh)
fi
[[ $RESULTS == /* ]] || RESULTS=$PWD/$RESULTS
MARK=.pmem-stack-vm-results
if [[ -d $RESULTS ]]; then
    if [[ -n $(ls -A "$RESULTS") ]]; then
        [[ -f $RESULTS/$MARK ]] ||
            die "--results $RESULTS is a non-empty directory not made by boot.sh; refusing to empty it"
        find "$RESULTS" -mindepth 1 -delete
    fi
else
    mkdir -p "$RESULTS" || die "cannot create $RESULTS"
fi
RESULTS=$(realpath "$RESULTS")
: >"$RESULTS/$MARK"

# ---- guest.env (read by init.sh with bash)
{
    printf 'GUEST_SCRIPT=%q\n' "$SCRIPT"
    printf 'GUEST_CWD=%q\n' "$CWD"
    printf 'export PMEM_STACK_REPO=%q\n' "$REPO"
    printf 'export PMEM_STACK_VM_IMAGE_SIZE=%q\n' "$NS_BYTES"
    printf 'export PMEM_STACK_VM_LABEL_SIZE=%q\n' "$LABEL_BYTES"
    printf 'export PMEM_STACK_VM_KERNEL=%q\n' "$VM_KERNEL_VERSION"
    printf 'export PMEM_STACK_VM_KERNEL_SERIES=%q\n' "$SERIES"
    for kv in "${ENVS[@]}"; do
        [[ $kv == *=* ]] || die "--env wants K=V, got '$kv'"
        k=${kv%%=*}
        [[ $k =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "--env: bad variable name '$k'"
        printf 'export %s=%q\n' "$k" "${kv#*=}"
    done
} >"$RESULTS/guest.env"
# The repo's path, raw, for init.sh (busybox sh) to mount the repo share at.
printf '%s\n' "$REPO" >"$RESULTS/repo-path"

# no_timer_check: under TCG on a busy host the kernel's early check of the IO-APIC
# timer sees too few ticks and panics ("IO-APIC + timer doesn't work!"; seen with
# 7.3 while two cargo builds ran). The check is for broken hardware; QEMU's is fine.
# tsc=reliable: under TCG the clocksource watchdog finds the TSC late and may
# switch clocksource mid-run; the kernel then patches its own text, and TCG
# once let the other vCPU hit the patch's int3 (7.3: "Oops: int3" in
# ktime_get under fio, a panic 65 s into the crashes scenario).
# norandmaps: no address-space randomization for the guest's processes. QEMU
# 7.2's TCG keys translated code by virtual address, so under ASLR every new
# process translates ld.so and libc afresh: a fork+exec of /bin/true took
# 44 ms, 13 ms without (7.3, 300 of them). The guest scripts are mostly
# short-lived commands, so this is most of the suite's time; nothing tested
# depends on where a process's mappings land.
NVDIMM=nvdimm,id=nvdimm0,memdev=nv0
[[ $LABEL_BYTES -gt 0 ]] && NVDIMM+=",label-size=$LABEL_BYTES"
# shellcheck disable=SC2054 # the commas are QEMU's, not array separators
QEMU=(
    qemu-system-x86_64
    -machine "$MACHINE" -cpu "$CPU" -smp "$SMP"
    -m "$MEM,slots=2,maxmem=${MAXMEM_G}G"
    -object "memory-backend-file,id=nv0,share=on,mem-path=$IMAGE,size=$TOTAL"
    -device "$NVDIMM"
    -kernel "$VM_VMLINUZ" -initrd "$VM_INITRD"
    -append "console=ttyS0 quiet panic=-1 no_timer_check tsc=reliable norandmaps${APPEND:+ $APPEND}"
    -nodefaults -display none -monitor none -no-reboot
    -serial "file:$RESULTS/console.log"
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap
    -virtfs "local,path=$RESULTS,mount_tag=work,security_model=none"
    -virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on,multidevs=remap"
    "${ROOT_ARGS[@]}"
    "${CXL_ARGS[@]}"
)
printf '%q ' "${QEMU[@]}" >"$RESULTS/qemu-cmdline"
echo >>"$RESULTS/qemu-cmdline"

QPID=""
TAILPID=""
# shellcheck disable=SC2317 # invoked by trap
cleanup() {
    if [[ -n $QPID ]] && kill -0 "$QPID" 2>/dev/null; then
        kill -KILL "$QPID" 2>/dev/null || true
        wait "$QPID" 2>/dev/null || true
    fi
    if [[ -n $TAILPID ]]; then
        kill "$TAILPID" 2>/dev/null || true
        wait "$TAILPID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'echo "$PROG: interrupted, killing QEMU" >&2; exit 130' INT TERM

SHORT=${SCRIPT#"$REPO"/}
summary() { # status text
    local t
    t=$(awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    local bts="?"
    [[ -f $RESULTS/boot-to-script-seconds ]] && bts=$(cat "$RESULTS/boot-to-script-seconds")
    echo "vm: $SHORT [$SERIES $VM_KERNEL_VERSION]: $1 in ${t}s (boot-to-script ${bts}s, results $RESULTS)"
}
tail_console() {
    echo "---- last lines of $RESULTS/console.log ----" >&2
    tail -n "${1:-30}" "$RESULTS/console.log" >&2 2>/dev/null || echo "(no console log)" >&2
    if [[ -s $RESULTS/qemu.log ]]; then
        echo "---- $RESULTS/qemu.log ----" >&2
        tail -n 20 "$RESULTS/qemu.log" >&2
    fi
}

START=$(date +%s.%N)
: >"$RESULTS/console.log"
"${QEMU[@]}" </dev/null >"$RESULTS/qemu.log" 2>&1 &
QPID=$!
if [[ $FOLLOW -eq 1 ]]; then
    tail -n +1 -f "$RESULTS/console.log" >&2 &
    TAILPID=$!
fi

now_us() { echo "${EPOCHREALTIME/./}"; } # bash >= 5, no fork
DEADLINE=$(($(now_us) + TIMEOUT * 1000000))
while kill -0 "$QPID" 2>/dev/null; do
    if [[ -n $KILL_ON && -e $RESULTS/$KILL_ON ]]; then
        kill -KILL "$QPID"
        wait "$QPID" 2>/dev/null || true
        QPID=""
        summary "power cut (SIGKILL) at marker $KILL_ON"
        exit 0
    fi
    if [[ $(now_us) -ge $DEADLINE ]]; then
        kill -KILL "$QPID"
        wait "$QPID" 2>/dev/null || true
        QPID=""
        echo "$PROG: TIMEOUT after ${TIMEOUT}s, QEMU killed" >&2
        tail_console 40
        summary "TIMEOUT"
        exit 124
    fi
    # A guest that asks for a power cut waits to be killed, so a fifth of a
    # second late costs nothing; polling faster forks a sleep 50 times a
    # second on a host the guest needs every cycle of.
    sleep 0.2
done
qrc=0
wait "$QPID" || qrc=$?
QPID=""
if [[ $FOLLOW -eq 1 ]]; then
    sleep 0.2
fi

if [[ ! -f $RESULTS/exit-status ]]; then
    echo "$PROG: the guest recorded no exit status (kernel panic, init failure or QEMU error; QEMU exit code $qrc)" >&2
    tail_console 40
    summary "NO STATUS"
    exit 125
fi
st=$(cat "$RESULTS/exit-status")
[[ $st =~ ^[0-9]+$ ]] || die "garbage in $RESULTS/exit-status: '$st'" 125
if [[ -n $KILL_ON ]]; then
    echo "$PROG: the guest finished (status $st) without creating the --kill-on marker $KILL_ON; no power cut happened" >&2
    tail -n 20 "$RESULTS/guest.log" >&2 2>/dev/null || true
    summary "NO POWER CUT (guest status $st)"
    exit 3
fi
if [[ $st -ne 0 ]]; then
    echo "---- last lines of $RESULTS/guest.log ----" >&2
    tail -n 30 "$RESULTS/guest.log" >&2 2>/dev/null || true
fi
summary "status $st"
exit "$st"
