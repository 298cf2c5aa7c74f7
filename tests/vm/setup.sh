#!/usr/bin/env bash
# Prepare everything tests/vm/boot.sh needs: host packages, two Debian kernels
# (vmlinuz + the modules we load) and, per kernel, a busybox initramfs whose /init is
# tests/vm/init.sh.  Idempotent; a second run only checks and returns.
#
# usage: tests/vm/setup.sh [--kernel lts|current|all]      (default: all)
#
# Kernel series:
#   lts      the newest linux-image-6.12.N+deb12-amd64-unsigned the host's apt knows
#            (Debian 12's bookworm-security)
#   current  the newest linux-binary-X.Y.Z+deb13-amd64 (+ linux-modules-, linux-base-)
#            in Debian's trixie-backports, fetched through a private apt configuration
#            under the cache (the host's apt sources are not touched)
#
# Cache: ${PMEM_STACK_VM_DIR:-<repo>/target/vm}
#   kernel/<version>/          the unpacked kernel packages (dpkg -x) + depmod
#   apt-trixie-backports/      the private apt: sources.list, lists/, cache/
#   <series>/initramfs/        staging tree of that kernel's initramfs (rebuilt when stale)
#   <series>/initrd.gz         the initramfs
#   <series>/kernel.env        what boot.sh --kernel <series> reads (version, paths, keys)
#   debian/root.img            Debian 12 with systemd as PID 1, for boot.sh --root-disk
#                              (tests/vm/debian-root.sh builds it)
#
# Environment:
#   PMEM_STACK_VM_DIR                cache directory (default <repo>/target/vm)
#   PMEM_STACK_VM_KERNEL_SERIES      default for --kernel (lts, current or all)
#   PMEM_STACK_VM_KERNEL_LTS         pin the lts kernel, e.g. 6.12.117+deb12-amd64
#   PMEM_STACK_VM_KERNEL_CURRENT     pin the current kernel, e.g. 7.3.4+deb13-amd64
#   PMEM_STACK_VM_KERNEL_REFRESH=1   look for newer kernels even if some are cached
#   PMEM_STACK_VM_EXTRA_MODULES      extra module names to load (space separated)
#   PMEM_STACK_VM_DEBIAN_MIRROR      the Debian mirror for trixie-backports (default: the
#                                    one the host's apt sources use for its main archive)
set -euo pipefail

die() {
    echo "setup.sh: ERROR: $*" >&2
    exit 1
}
log() { echo "setup.sh: $*" >&2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${PMEM_STACK_VM_DIR:-$REPO/target/vm}

SERIES_ARG=${PMEM_STACK_VM_KERNEL_SERIES:-all}
while [[ $# -gt 0 ]]; do
    case $1 in
        --kernel)
            [[ $# -ge 2 ]] || die "--kernel needs a value: lts, current or all"
            SERIES_ARG=$2
            shift 2
            ;;
        --kernel=*)
            SERIES_ARG=${1#--kernel=}
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument '$1' (usage: setup.sh [--kernel lts|current|all])" ;;
    esac
done
case $SERIES_ARG in
    lts | current) SERIES_LIST=("$SERIES_ARG") ;;
    all) SERIES_LIST=(lts current) ;;
    *) die "unknown kernel series '$SERIES_ARG' (--kernel / PMEM_STACK_VM_KERNEL_SERIES: lts, current or all)" ;;
esac
[[ -z ${PMEM_STACK_VM_KERNEL:-} ]] ||
    die "PMEM_STACK_VM_KERNEL is no longer read (there are two kernels): pin with PMEM_STACK_VM_KERNEL_LTS or PMEM_STACK_VM_KERNEL_CURRENT"

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get install, dpkg -x with device ownership, mknod); try: sudo $0"
[[ $(uname -m) == x86_64 ]] || die "only x86_64 hosts are supported (uname -m = $(uname -m))"
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    die "needs a Debian/Ubuntu host with apt-get and dpkg (Debian 12 is what this was written for)"
fi

T0=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# ---------------------------------------------------------------- packages
# qemu-system-x86 .. libclang-dev: the recipe; the rest: tools the guest scripts use
# through the shared root (blockdev, mkfs.*, ndctl, python3 for mmap probes, ...).
PACKAGES=(
    qemu-system-x86 busybox-static cpio fio xfsprogs dmsetup libclang-dev ndctl
    e2fsprogs btrfs-progs gdisk xz-utils util-linux procps coreutils python3
    gzip findutils grep sed kmod mmdebstrap qemu-utils
)

APT_UPDATED=0
apt_update() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >"$VM_DIR/apt-update.log" 2>&1 ||
            { cat "$VM_DIR/apt-update.log" >&2; die "apt-get update failed (log above)"; }
        APT_UPDATED=1
    fi
}

mkdir -p "$VM_DIR"
missing_packages() {
    missing=()
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [[ $status == installed ]] || missing+=("$p")
    done
}
# Twice: installing one package can remove another that was there. A machine
# that came with a newer qemu-utils (bookworm-backports' 10.0) loses it to
# qemu-system-x86 7.2, which breaks it; the second round installs the
# matching qemu-utils (and with it qemu-img).
rm -f "$VM_DIR"/apt-install.*log
for round in 1 2; do
    missing_packages
    [[ ${#missing[@]} -gt 0 ]] || break
    apt_update
    apt_log=$VM_DIR/apt-install.$round.log
    log "apt-get install (round $round): ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$apt_log" 2>&1 ||
        { tail -n 40 "$apt_log" >&2; die "apt-get install ${missing[*]} failed (log tail above)"; }
    removed=$(sed -n 's/^Removing \([^ ]*\) .*/\1/p' "$apt_log" | paste -sd' ')
    [[ -z $removed ]] || log "apt-get removed to make room: $removed"
done
missing_packages
[[ ${#missing[@]} -eq 0 ]] ||
    die "still not installed after two rounds of apt-get install: ${missing[*]} (logs: $VM_DIR/apt-install.*.log)"
for tool in qemu-system-x86_64 qemu-img busybox cpio gzip xz dpkg sha256sum truncate blockdev fio ndctl mkfs.ext4 python3 depmod mmdebstrap; do
    command -v "$tool" >/dev/null || die "tool '$tool' still missing after installing packages"
done
[[ -x /bin/busybox ]] || die "/bin/busybox (busybox-static) missing"
[[ $(dpkg -S /bin/busybox 2>/dev/null) == busybox-static:* ]] ||
    die "/bin/busybox is not from busybox-static; the initramfs needs the static build"

# The single-kernel layout of earlier versions (<cache>/current.env, initrd.gz, ...)
# held the 6.12 kernel under a name that now means the newest one: remove it.
if [[ -e $VM_DIR/current.env || -e $VM_DIR/initrd.gz ]]; then
    log "removing the old single-kernel files from $VM_DIR (current.env, initrd.gz, initrd.key, initramfs/)"
    rm -rf "$VM_DIR/current.env" "$VM_DIR/initrd.gz" "$VM_DIR/initrd.key" "$VM_DIR/initramfs"
fi

# ---------------------------------------------------------------- kernel sources
# lts: the host's own apt (bookworm-security). Only the plain amd64 flavour: the
# recipe's pattern also matches -cloud-amd64 and -rt-amd64 (".*" eats the flavour).
LTS_VER_RE='^6\.12\.[0-9]+\+deb12-amd64$'
lts_newest_pkg() {
    apt-cache search --names-only '^linux-image-6\.12\..*-amd64-unsigned$' |
        awk '{print $1}' | grep -E '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' | sort -V | tail -n 1
}

# current: a private apt configuration for trixie-backports, so the host's sources
# stay as they are. linux-image-X.Y.Z+deb13-amd64 is only a meta package there:
# linux-binary-* holds vmlinuz, linux-modules-* the modules, linux-base-* the config,
# System.map and modules.builtin. Any X.Y[.Z] matches, so 7.4 or 8.x need no change.
CUR_VER_RE='^[0-9]+\.[0-9]+(\.[0-9]+)?\+deb13-amd64$'
BPO=$VM_DIR/apt-trixie-backports
bpo() { # apt-get|apt-cache ARGS...: run with the private trixie-backports configuration
    local tool=$1
    shift
    "$tool" -o Dir::Etc::sourcelist="$BPO/sources.list" -o Dir::Etc::sourceparts=- \
        -o Dir::State::Lists="$BPO/lists" -o Dir::Cache="$BPO/cache" \
        -o APT::Sandbox::User=root "$@"
}
# The Debian mirror the host's own apt uses for its main archive (a local
# mirror or proxy included), unless PMEM_STACK_VM_DEBIAN_MIRROR names one.
debian_mirror() {
    if [[ -n ${PMEM_STACK_VM_DEBIAN_MIRROR:-} ]]; then
        echo "${PMEM_STACK_VM_DEBIAN_MIRROR%/}"
        return
    fi
    local uri
    find_uri() {
        apt-get indextargets --format '$(REPO_URI)' 'Origin: Debian' 'Identifier: Packages' 2>/dev/null |
            grep -v -e '-security' | head -n 1
    }
    uri=$(find_uri)
    if [[ -z $uri ]]; then
        apt_update
        uri=$(find_uri)
    fi
    [[ -n $uri ]] ||
        die "no Debian archive in the host's apt sources to fetch trixie-backports from; name a mirror with PMEM_STACK_VM_DEBIAN_MIRROR=http://MIRROR/debian"
    echo "${uri%/}"
}
BPO_UPDATED=0
bpo_update() {
    [[ $BPO_UPDATED -eq 0 ]] || return 0
    mkdir -p "$BPO/lists/partial" "$BPO/cache/archives/partial"
    local mirror
    mirror=$(debian_mirror)
    echo "deb $mirror trixie-backports main" >"$BPO/sources.list"
    log "trixie-backports from $mirror"
    log "apt-get update (private list: trixie-backports, in $BPO)"
    DEBIAN_FRONTEND=noninteractive bpo apt-get update -q >"$BPO/update.log" 2>&1 ||
        { cat "$BPO/update.log" >&2; die "apt-get update of trixie-backports failed (log above)"; }
    BPO_UPDATED=1
}
cur_newest_pkg() {
    [[ -f $BPO/sources.list ]] || return 0
    bpo apt-cache search --names-only '^linux-binary-[0-9]' 2>/dev/null |
        awk '{print $1}' | grep -E '^linux-binary-[0-9]+\.[0-9]+(\.[0-9]+)?\+deb13-amd64$' | sort -V | tail -n 1
}

# The newest version of a series already unpacked in the cache (fast, reproducible).
cached_version() { # regex
    [[ -d $VM_DIR/kernel ]] || return 0
    find "$VM_DIR/kernel" -mindepth 2 -maxdepth 2 -name .unpacked -printf '%h\n' |
        xargs -r -n1 basename | grep -E "$1" | sort -V | tail -n 1 || true
}

# ---------------------------------------------------------------- one series
# Runs in a subshell per series (its module tables are its own).
prepare() { # lts|current
    local SERIES=$1 T1 KVER="" pin pkg KDIR dl deb VMLINUZ KCONFIG MODROOT
    T1=$(date +%s.%N)
    case $SERIES in
        lts) pin=${PMEM_STACK_VM_KERNEL_LTS:-} ;;
        current) pin=${PMEM_STACK_VM_KERNEL_CURRENT:-} ;;
    esac
    if [[ -n $pin ]]; then
        KVER=$pin
    elif [[ -z ${PMEM_STACK_VM_KERNEL_REFRESH:-} ]]; then
        if [[ $SERIES == lts ]]; then KVER=$(cached_version "$LTS_VER_RE"); else KVER=$(cached_version "$CUR_VER_RE"); fi
    fi
    if [[ -z $KVER ]]; then
        if [[ $SERIES == lts ]]; then
            pkg=$(lts_newest_pkg || true)
            if [[ -z $pkg ]]; then
                apt_update
                pkg=$(lts_newest_pkg || true)
            fi
            [[ -n $pkg ]] || die "lts: no package linux-image-6.12.N+deb12-amd64-unsigned in apt (is bookworm-security in the host's sources.list?)"
            KVER=${pkg#linux-image-}
            KVER=${KVER%-unsigned}
        else
            [[ -n ${PMEM_STACK_VM_KERNEL_REFRESH:-} ]] && bpo_update
            pkg=$(cur_newest_pkg || true)
            if [[ -z $pkg ]]; then
                bpo_update
                pkg=$(cur_newest_pkg || true)
            fi
            [[ -n $pkg ]] || die "current: no package linux-binary-X.Y.Z+deb13-amd64 in trixie-backports (private list in $BPO)"
            KVER=${pkg#linux-binary-}
        fi
    fi
    if [[ $SERIES == lts ]]; then
        [[ $KVER =~ $LTS_VER_RE ]] || die "lts: unexpected kernel version '$KVER' (want 6.12.N+deb12-amd64)"
    else
        [[ $KVER =~ $CUR_VER_RE ]] || die "current: unexpected kernel version '$KVER' (want X.Y.Z+deb13-amd64)"
    fi
    KDIR=$VM_DIR/kernel/$KVER

    if [[ ! -e $KDIR/.unpacked ]]; then
        local pkgs=()
        if [[ $SERIES == lts ]]; then
            pkgs=("linux-image-$KVER-unsigned")
            get() { (cd "$dl" && apt-get download -q "${pkgs[@]}"); }
        else
            pkgs=("linux-binary-$KVER" "linux-modules-$KVER" "linux-base-$KVER")
            get() { (cd "$dl" && bpo apt-get download -q "${pkgs[@]}"); }
            [[ -f $BPO/sources.list ]] || bpo_update
        fi
        dl=$VM_DIR/download-$KVER
        rm -rf "$dl" "$KDIR" "$KDIR.tmp"
        mkdir -p "$dl"
        log "$SERIES: apt-get download ${pkgs[*]}"
        if ! get >"$dl.log" 2>&1; then
            if [[ $SERIES == lts ]]; then apt_update; else bpo_update; fi
            get >"$dl.log" 2>&1 || { cat "$dl.log" >&2; die "$SERIES: apt-get download ${pkgs[*]} failed (log above)"; }
        fi
        mkdir -p "$KDIR.tmp"
        for p in "${pkgs[@]}"; do
            deb=$(find "$dl" -maxdepth 1 -name "${p}_*.deb" | head -n 1)
            [[ -n $deb ]] || die "$SERIES: apt-get download produced no .deb for $p in $dl"
            log "$SERIES: dpkg -x $(basename "$deb")"
            dpkg -x "$deb" "$KDIR.tmp" || die "$SERIES: dpkg -x $deb failed"
        done
        # The packages ship no modules.dep (the postinst runs depmod): make one.
        local base=$KDIR.tmp
        [[ -d $KDIR.tmp/usr/lib/modules/$KVER && ! -d $KDIR.tmp/lib/modules/$KVER ]] && base=$KDIR.tmp/usr
        depmod -b "$base" "$KVER" || die "$SERIES: depmod -b $base $KVER failed"
        mv "$KDIR.tmp" "$KDIR"
        rm -rf "$dl" "$dl.log"
        touch "$KDIR/.unpacked"
    fi

    if [[ -d $KDIR/usr/lib/modules/$KVER && ! -d $KDIR/lib/modules/$KVER ]]; then
        # linux-binary/-modules/-base (trixie and later): everything under usr/lib/modules
        MODROOT=$KDIR/usr/lib/modules/$KVER
        VMLINUZ=$MODROOT/vmlinuz
        KCONFIG=$MODROOT/config
    else
        # linux-image-*-unsigned (bookworm): /boot and /lib/modules
        MODROOT=$KDIR/lib/modules/$KVER
        VMLINUZ=$KDIR/boot/vmlinuz-$KVER
        KCONFIG=$KDIR/boot/config-$KVER
    fi
    for f in "$VMLINUZ" "$KCONFIG" "$MODROOT/modules.dep" "$MODROOT/modules.builtin" \
        "$MODROOT/modules.softdep" "$MODROOT/modules.alias"; do
        [[ -f $f ]] || die "$SERIES: kernel $KVER incomplete: $f missing (delete $KDIR and run again)"
    done

    # Config options the harness relies on being built in (=y) or modular (=m).
    need_config() { # SYMBOL y|m|ym
        local sym=$1 want=$2 val
        val=$(grep -E "^$sym=" "$KCONFIG" | cut -d= -f2 || true)
        [[ -n $val && $want == *"$val"* ]] ||
            die "$SERIES: kernel $KVER: $sym=${val:-unset}, harness needs $want"
    }
    need_config CONFIG_VIRTIO_PCI y
    need_config CONFIG_DEVTMPFS y
    need_config CONFIG_BLK_DEV_INITRD y
    need_config CONFIG_RD_GZIP y
    need_config CONFIG_IO_URING y
    need_config CONFIG_NVDIMM_PFN y
    need_config CONFIG_FS_DAX y
    need_config CONFIG_BLK_DEV_UBLK ym

    # ------------------------------------------------------------ modules
    # Wanted modules, in load order (the recipe's order, plus device_dax/dax_pmem for
    # devdax). Before each module come its modules.dep dependencies and its
    # modules.softdep "pre:" dependencies (what modprobe would load first). That is
    # how the crc32c implementation comes in: on 6.12 ext4 and jbd2 ask for
    # crypto-crc32c (-> crc32c_generic) and xfs needs libcrc32c; on 7.x crc32c is a
    # built-in library, only jbd2 still names crypto-crc32c (-> crc32c_cryptoapi).
    local WANTED=(netfs 9pnet 9pnet_virtio 9p libnvdimm nd_btt nd_pmem nfit ublk_drv crc16
        mbcache jbd2 ext4 xfs dm-mod loop device_dax dax_pmem configfs nvmet nvmet-tcp nvme-tcp
        virtio_blk cxl_pmem cxl_acpi cxl_mem cxl_pci)
    # Loaded only by the scenarios that use them (tests/guest/lib.sh's
    # load_module): inserting xfs.ko (10 MB) takes 3.5-4 s under TCG, at every
    # boot of every scenario otherwise (measured on 7.3: 3.4-4.3 s per insmod,
    # 9 ms of it its init); the NVMe/TCP target and initiator serve one
    # scenario. Only a module nothing else in WANTED depends on belongs here.
    # The CXL drivers likewise serve one scenario (boot.sh --cxl).
    local ON_DEMAND=(xfs nvmet_tcp nvme_tcp cxl_pmem cxl_acpi cxl_mem cxl_pci)
    local extra=()
    read -r -a extra <<<"${PMEM_STACK_VM_EXTRA_MODULES:-}"
    WANTED+=("${extra[@]}")

    # The config symbol of each wanted module: used to accept "not a module" only when
    # the feature is built in (=y), and to fail loudly otherwise.
    declare -A CONFIG_OF=(
        [netfs]=CONFIG_NETFS_SUPPORT [9pnet]=CONFIG_NET_9P [9pnet_virtio]=CONFIG_NET_9P_VIRTIO
        [9p]=CONFIG_9P_FS [libnvdimm]=CONFIG_LIBNVDIMM [nd_btt]=CONFIG_BTT
        [nd_pmem]=CONFIG_BLK_DEV_PMEM [nfit]=CONFIG_ACPI_NFIT [ublk_drv]=CONFIG_BLK_DEV_UBLK
        [crc16]=CONFIG_CRC16 [mbcache]=CONFIG_FS_MBCACHE [jbd2]=CONFIG_JBD2
        [ext4]=CONFIG_EXT4_FS [xfs]=CONFIG_XFS_FS [dm_mod]=CONFIG_BLK_DEV_DM
        [loop]=CONFIG_BLK_DEV_LOOP [device_dax]=CONFIG_DEV_DAX [dax_pmem]=CONFIG_DEV_DAX_PMEM
        [configfs]=CONFIG_CONFIGFS_FS [nvmet]=CONFIG_NVME_TARGET [nvmet_tcp]=CONFIG_NVME_TARGET_TCP [nvme_tcp]=CONFIG_NVME_TCP
        [virtio_blk]=CONFIG_VIRTIO_BLK [cxl_pmem]=CONFIG_CXL_PMEM [cxl_acpi]=CONFIG_CXL_ACPI
        [cxl_mem]=CONFIG_CXL_MEM [cxl_pci]=CONFIG_CXL_PCI
    )

    norm() { # module file or name -> canonical name in $NAME (basename, no .ko*, - -> _)
        NAME=${1##*/}
        NAME=${NAME%%.ko*}
        NAME=${NAME//-/_}
    }

    declare -A MODPATH MODDEPS BUILTIN SOFTPRE
    local line path deps
    while IFS= read -r line; do
        path=${line%%:*}
        deps=${line#*:}
        norm "$path"
        MODPATH[$NAME]=$path
        MODDEPS[$NAME]=$deps
    done <"$MODROOT/modules.dep"
    while IFS= read -r line; do
        [[ -z $line ]] && continue
        norm "$line"
        BUILTIN[$NAME]=1
    done <"$MODROOT/modules.builtin"
    # "softdep NAME pre: A B post: C": keep the pre: part.
    local words w mode
    while read -r -a words; do
        [[ ${words[0]:-} == softdep && ${#words[@]} -ge 3 ]] || continue
        norm "${words[1]}"
        local owner=$NAME pre=""
        mode=""
        for w in "${words[@]:2}"; do
            case $w in
                pre:) mode=pre ;;
                post:) mode=post ;;
                *) [[ $mode == pre ]] && pre+=" $w" ;;
            esac
        done
        SOFTPRE[$owner]=${SOFTPRE[$owner]:-}$pre
    done <"$MODROOT/modules.softdep"

    # A softdep names a module or an alias (e.g. crypto-crc32c). Sets $NAME to the
    # module to load, or to "" when the kernel has it built in.
    soft_target() { # name-or-alias, owner
        local want=$1 owner=$2 cands
        norm "$want"
        [[ -n ${MODPATH[$NAME]:-} ]] && return 0
        if [[ -n ${BUILTIN[$NAME]:-} ]]; then NAME="" && return 0; fi
        # modules.builtin.modinfo: NUL-separated "module.key=value" of the built-in ones.
        if [[ -f $MODROOT/modules.builtin.modinfo ]] &&
            tr '\0' '\n' <"$MODROOT/modules.builtin.modinfo" |
            awk -F'[.]alias=' -v a="$want" 'NF == 2 && $2 == a { f = 1 } END { exit !f }'; then
            NAME=""
            return 0
        fi
        cands=$(awk -v a="$want" '$1 == "alias" && $2 == a { print $3 }' "$MODROOT/modules.alias" | sort -u)
        [[ -n $cands ]] ||
            die "$SERIES: '$want', a soft dependency of $owner, is neither a module, a module alias nor built in ($KVER)"
        # Several implementations (crc32c_generic, crc32c_intel): the portable one.
        local pick
        pick=$(grep -m1 '_generic$' <<<"$cands" || head -n 1 <<<"$cands")
        norm "$pick"
        [[ -n ${MODPATH[$NAME]:-} ]] || die "$SERIES: alias $want -> $pick, which is not in modules.dep ($KVER)"
    }

    ORDER=()
    BUILTIN_USED=()
    declare -A SEEN
    resolve() { # name, chain (for messages)
        local name=$1 chain=$2 dep
        [[ -n ${SEEN[$name]:-} ]] && return 0
        if [[ -z ${MODPATH[$name]:-} ]]; then
            local sym=${CONFIG_OF[$name]:-}
            if [[ -n $sym ]]; then
                grep -qx "$sym=y" "$KCONFIG" ||
                    die "$SERIES: module '$name' not in modules.dep and $sym is not =y in $KVER's config (needed by: $chain)"
            elif [[ -z ${BUILTIN[$name]:-} ]]; then
                die "$SERIES: module '$name' is neither a module (modules.dep) nor built in (modules.builtin) in $KVER (needed by: $chain)"
            fi
            SEEN[$name]=builtin
            BUILTIN_USED+=("$name")
            return 0
        fi
        SEEN[$name]=visiting
        for dep in ${SOFTPRE[$name]:-}; do
            soft_target "$dep" "$name"
            [[ -z $NAME ]] && continue
            dep=$NAME
            [[ ${SEEN[$dep]:-} == visiting ]] && die "$SERIES: dependency cycle: $chain -> $dep (softdep)"
            resolve "$dep" "$chain -> $dep (softdep $1)"
        done
        for dep in ${MODDEPS[$name]}; do
            norm "$dep"
            dep=$NAME
            [[ ${SEEN[$dep]:-} == visiting ]] && die "$SERIES: dependency cycle: $chain -> $dep"
            resolve "$dep" "$chain -> $dep"
        done
        SEEN[$name]=module
        ORDER+=("$name")
    }
    local m
    for m in "${WANTED[@]}"; do
        norm "$m"
        resolve "$NAME" "$NAME"
    done

    # ------------------------------------------------------------ initramfs
    local OUT=$VM_DIR/$SERIES INIT_SRC=$HERE/init.sh KEY INITRD INIT_SHA ST
    [[ -f $INIT_SRC ]] || die "$INIT_SRC missing"
    mkdir -p "$OUT"
    KEY=$({
        echo "kernel=$KVER"
        echo "modules=${ORDER[*]}"
        sha256sum "$INIT_SRC" /bin/busybox "$HERE/setup.sh" | awk '{print $1}'
    } | sha256sum | awk '{print $1}')
    INITRD=$OUT/initrd.gz
    INIT_SHA=$(sha256sum "$INIT_SRC" | awk '{print $1}')

    if [[ ! -f $INITRD || ! -f $OUT/initrd.key || $(cat "$OUT/initrd.key") != "$KEY" ]]; then
        log "$SERIES: building the initramfs for $KVER (${#ORDER[@]} modules)"
        ST=$OUT/initramfs
        rm -rf "$ST"
        mkdir -p "$ST"/{bin,dev,proc,sys,host,etc,lib/modules}
        cp /bin/busybox "$ST/bin/busybox"
        local applet name src dst
        for applet in $(/bin/busybox --list); do
            [[ $applet == busybox ]] || ln -s busybox "$ST/bin/$applet"
        done
        mknod -m 600 "$ST/dev/console" c 5 1
        mknod -m 666 "$ST/dev/null" c 1 3
        : >"$ST/etc/modules.order"
        : >"$ST/etc/modules.ondemand"
        for name in "${ORDER[@]}"; do
            src=$MODROOT/${MODPATH[$name]}
            dst=$ST/lib/modules/$name.ko
            case $src in
                *.ko.xz) xz -dc "$src" >"$dst" || die "$SERIES: xz -dc $src failed" ;;
                *.ko) cp "$src" "$dst" ;;
                *) die "$SERIES: unsupported module compression: $src" ;;
            esac
            # ON_DEMAND: in the initramfs, loaded by the scenarios that use
            # them (tests/guest/lib.sh's load_module), not at every boot.
            if [[ " ${ON_DEMAND[*]} " == *" $name "* ]]; then
                echo "$name.ko" >>"$ST/etc/modules.ondemand"
            else
                echo "$name.ko" >>"$ST/etc/modules.order"
            fi
        done
        echo "$KVER" >"$ST/etc/kernel-version"
        install -m 755 "$INIT_SRC" "$ST/init"
        (cd "$ST" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) |
            gzip -6 >"$INITRD.tmp" || die "$SERIES: building the cpio archive failed"
        mv "$INITRD.tmp" "$INITRD"
        echo "$KEY" >"$OUT/initrd.key"
    fi

    {
        echo "# written by tests/vm/setup.sh; read by tests/vm/boot.sh --kernel $SERIES"
        printf 'VM_KERNEL_SERIES=%q\n' "$SERIES"
        printf 'VM_KERNEL_VERSION=%q\n' "$KVER"
        printf 'VM_VMLINUZ=%q\n' "$VMLINUZ"
        printf 'VM_INITRD=%q\n' "$INITRD"
        printf 'VM_MODROOT=%q\n' "$MODROOT"
        printf 'VM_INIT_SHA=%q\n' "$INIT_SHA"
        local at_boot=() m
        for m in "${ORDER[@]}"; do [[ " ${ON_DEMAND[*]} " == *" $m "* ]] || at_boot+=("$m"); done
        printf 'VM_MODULES_LOADED=%q\n' "${at_boot[*]}"
        printf 'VM_MODULES_ON_DEMAND=%q\n' "${ON_DEMAND[*]}"
        printf 'VM_MODULES_BUILTIN=%q\n' "${BUILTIN_USED[*]}"
    } >"$OUT/kernel.env.tmp"
    mv "$OUT/kernel.env.tmp" "$OUT/kernel.env"

    cat <<EOF
kernel $SERIES ready ($(elapsed "$T1") s)
  kernel:    $KVER
  vmlinuz:   $VMLINUZ
  initrd:    $INITRD ($(du -h "$INITRD" | cut -f1))
  modules:   ${ORDER[*]}
  built in:  ${BUILTIN_USED[*]:-(none)}
  boot:      $HERE/boot.sh --kernel $SERIES --script tests/vm/smoke.sh
EOF
}

for series in "${SERIES_LIST[@]}"; do
    (prepare "$series")
done
# The Debian root the systemd scenarios boot (boot.sh --root-disk), with the
# modules of every kernel set up so far.
ROOT_SERIES=()
for series in lts current; do
    [[ -f $VM_DIR/$series/kernel.env ]] && ROOT_SERIES+=("$series")
done
MIRROR=$(debian_mirror) || exit 1
PMEM_STACK_VM_DEBIAN_MIRROR=$MIRROR "$HERE/debian-root.sh" "${ROOT_SERIES[@]}" ||
    die "building the Debian root failed"
cat <<EOF
pmem-stack VM ready ($(elapsed "$T0") s): ${SERIES_LIST[*]}
  cache:     $VM_DIR
  qemu:      $(qemu-system-x86_64 --version | head -n 1)
EOF
