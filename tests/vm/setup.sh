#!/usr/bin/env bash
# Prepare everything tests/vm/boot.sh needs: host packages, a Debian 6.12 kernel
# (vmlinuz + the modules we load), and a busybox initramfs whose /init is
# tests/vm/init.sh.  Idempotent; a second run only checks and returns.
#
# Cache: ${PMEM_STACK_VM_DIR:-<repo>/target/vm}
#   kernel/<version>/          the unpacked linux-image package (dpkg -x)
#   initramfs/                 staging tree of the initramfs (rebuilt when stale)
#   initrd.gz                  the initramfs
#   current.env                what boot.sh reads (kernel version, paths, keys)
#
# Environment:
#   PMEM_STACK_VM_DIR            cache directory (default <repo>/target/vm)
#   PMEM_STACK_VM_KERNEL         pin a kernel version, e.g. 6.12.117+deb12-amd64
#   PMEM_STACK_VM_KERNEL_REFRESH=1  look for a newer kernel even if one is cached
#   PMEM_STACK_VM_EXTRA_MODULES  extra module names to load (space separated)
set -euo pipefail

die() {
    echo "setup.sh: ERROR: $*" >&2
    exit 1
}
log() { echo "setup.sh: $*" >&2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${PMEM_STACK_VM_DIR:-$REPO/target/vm}

[[ $(id -u) -eq 0 ]] || die "must run as root (apt-get install, dpkg -x with device ownership, mknod); try: sudo $0"
[[ $(uname -m) == x86_64 ]] || die "only x86_64 hosts are supported (uname -m = $(uname -m))"
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    die "needs a Debian/Ubuntu host with apt-get and dpkg (Debian 12 is what this was written for)"
fi

T0=$(date +%s.%N)

# ---------------------------------------------------------------- packages
# qemu-system-x86 .. libclang-dev: the recipe; the rest: tools the guest scripts use
# through the shared root (blockdev, mkfs.*, ndctl, python3 for mmap probes, ...).
PACKAGES=(
    qemu-system-x86 busybox-static cpio fio xfsprogs dmsetup libclang-dev ndctl
    e2fsprogs btrfs-progs gdisk xz-utils util-linux procps coreutils python3
    gzip findutils grep sed kmod
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
missing=()
for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_update
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$VM_DIR/apt-install.log" 2>&1 ||
        { tail -n 40 "$VM_DIR/apt-install.log" >&2; die "apt-get install ${missing[*]} failed (log tail above)"; }
fi
for tool in qemu-system-x86_64 busybox cpio gzip xz dpkg sha256sum truncate blockdev fio ndctl mkfs.ext4 python3 depmod; do
    command -v "$tool" >/dev/null || die "tool '$tool' still missing after installing packages"
done
[[ -x /bin/busybox ]] || die "/bin/busybox (busybox-static) missing"
[[ $(dpkg -S /bin/busybox 2>/dev/null) == busybox-static:* ]] ||
    die "/bin/busybox is not from busybox-static; the initramfs needs the static build"

# ---------------------------------------------------------------- kernel
# Only the plain amd64 flavour: the pattern from the recipe also matches -cloud-amd64
# and -rt-amd64 (".*" eats the flavour), which we do not want.
KPAT='^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$'
newest_kernel_pkg() {
    apt-cache search --names-only '^linux-image-6\.12\..*-amd64-unsigned$' |
        awk '{print $1}' | grep -E "$KPAT" | sort -V | tail -n 1
}

KVER=""
if [[ -n ${PMEM_STACK_VM_KERNEL:-} ]]; then
    KVER=$PMEM_STACK_VM_KERNEL
elif [[ -z ${PMEM_STACK_VM_KERNEL_REFRESH:-} ]]; then
    # Re-use the newest kernel already unpacked in the cache (fast, reproducible).
    if [[ -d $VM_DIR/kernel ]]; then
        KVER=$(find "$VM_DIR/kernel" -mindepth 2 -maxdepth 2 -name .unpacked -printf '%h\n' 2>/dev/null |
            xargs -r -n1 basename | sort -V | tail -n 1)
    fi
fi
if [[ -z $KVER ]]; then
    pkg=$(newest_kernel_pkg || true)
    if [[ -z $pkg ]]; then
        apt_update
        pkg=$(newest_kernel_pkg || true)
    fi
    [[ -n $pkg ]] || die "no package matching $KPAT in apt (is bookworm-security in sources.list?)"
    KVER=${pkg#linux-image-}
    KVER=${KVER%-unsigned}
fi
[[ $KVER =~ ^6\.12\.[0-9]+\+deb12-amd64$ ]] || die "unexpected kernel version '$KVER' (want 6.12.N+deb12-amd64)"
KPKG=linux-image-$KVER-unsigned
KDIR=$VM_DIR/kernel/$KVER

if [[ ! -e $KDIR/.unpacked ]]; then
    dl=$VM_DIR/download
    rm -rf "$dl" "$KDIR"
    mkdir -p "$dl"
    log "apt-get download $KPKG"
    if ! (cd "$dl" && apt-get download -q "$KPKG") >"$VM_DIR/apt-download.log" 2>&1; then
        apt_update
        (cd "$dl" && apt-get download -q "$KPKG") >"$VM_DIR/apt-download.log" 2>&1 ||
            { cat "$VM_DIR/apt-download.log" >&2; die "apt-get download $KPKG failed"; }
    fi
    deb=$(find "$dl" -maxdepth 1 -name "${KPKG}_*.deb" | head -n 1)
    [[ -n $deb ]] || die "apt-get download produced no .deb for $KPKG in $dl"
    log "dpkg -x $(basename "$deb")"
    mkdir -p "$KDIR.tmp"
    dpkg -x "$deb" "$KDIR.tmp" || die "dpkg -x $deb failed"
    # The package ships no modules.dep (postinst runs depmod): make one.
    depmod -b "$KDIR.tmp" "$KVER" || die "depmod -b $KDIR.tmp $KVER failed"
    mv "$KDIR.tmp" "$KDIR"
    rm -rf "$dl"
    touch "$KDIR/.unpacked"
fi

VMLINUZ=$KDIR/boot/vmlinuz-$KVER
KCONFIG=$KDIR/boot/config-$KVER
MODROOT=$KDIR/lib/modules/$KVER
for f in "$VMLINUZ" "$KCONFIG" "$MODROOT/modules.dep" "$MODROOT/modules.builtin"; do
    [[ -f $f ]] || die "kernel package incomplete: $f missing"
done

# Config options the harness relies on being built in (=y) or modular (=m).
need_config() { # SYMBOL y|m|ym
    local sym=$1 want=$2 val
    val=$(grep -E "^$sym=" "$KCONFIG" | cut -d= -f2 || true)
    [[ -n $val && $want == *"$val"* ]] ||
        die "kernel $KVER: $sym=${val:-unset}, harness needs $want"
}
need_config CONFIG_VIRTIO_PCI y
need_config CONFIG_DEVTMPFS y
need_config CONFIG_BLK_DEV_INITRD y
need_config CONFIG_RD_GZIP y
need_config CONFIG_IO_URING y
need_config CONFIG_NVDIMM_PFN y
need_config CONFIG_FS_DAX y
need_config CONFIG_BLK_DEV_UBLK ym

# ---------------------------------------------------------------- modules
# Wanted modules, in load order (recipe order, plus device_dax/dax_pmem for devdax).
# Dependencies from modules.dep are inserted before whoever needs them.
WANTED=(netfs 9pnet 9pnet_virtio 9p libnvdimm nd_btt nd_pmem nfit ublk_drv crc16 mbcache
    jbd2 crc32c_generic libcrc32c ext4 xfs dm-mod loop device_dax dax_pmem)
read -r -a extra <<<"${PMEM_STACK_VM_EXTRA_MODULES:-}"
WANTED+=("${extra[@]}")

# The config symbol of each wanted module: used to accept "not a module" only when the
# feature is built in (=y), and to fail loudly otherwise.
declare -A CONFIG_OF=(
    [netfs]=CONFIG_NETFS_SUPPORT [9pnet]=CONFIG_NET_9P [9pnet_virtio]=CONFIG_NET_9P_VIRTIO
    [9p]=CONFIG_9P_FS [libnvdimm]=CONFIG_LIBNVDIMM [nd_btt]=CONFIG_BTT
    [nd_pmem]=CONFIG_BLK_DEV_PMEM [nfit]=CONFIG_ACPI_NFIT [ublk_drv]=CONFIG_BLK_DEV_UBLK
    [crc16]=CONFIG_CRC16 [mbcache]=CONFIG_FS_MBCACHE [jbd2]=CONFIG_JBD2
    [crc32c_generic]=CONFIG_CRYPTO_CRC32C [libcrc32c]=CONFIG_LIBCRC32C [ext4]=CONFIG_EXT4_FS
    [xfs]=CONFIG_XFS_FS [dm_mod]=CONFIG_BLK_DEV_DM [loop]=CONFIG_BLK_DEV_LOOP
    [device_dax]=CONFIG_DEV_DAX [dax_pmem]=CONFIG_DEV_DAX_PMEM
)

norm() { # module file or name -> canonical name in $NAME (basename, no .ko*, - -> _)
    NAME=${1##*/}
    NAME=${NAME%%.ko*}
    NAME=${NAME//-/_}
}

declare -A MODPATH MODDEPS BUILTIN
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

ORDER=()
BUILTIN_USED=()
declare -A SEEN
resolve() { # name, chain (for cycle messages)
    local name=$1 chain=$2 dep
    [[ -n ${SEEN[$name]:-} ]] && return 0
    if [[ -z ${MODPATH[$name]:-} ]]; then
        local sym=${CONFIG_OF[$name]:-}
        if [[ -n $sym ]]; then
            grep -qx "$sym=y" "$KCONFIG" ||
                die "module '$name' not in modules.dep and $sym is not =y in $(basename "$KCONFIG") (needed by: $chain)"
        elif [[ -z ${BUILTIN[$name]:-} ]]; then
            die "module '$name' is neither a module (modules.dep) nor built in (modules.builtin) in $KVER (needed by: $chain)"
        fi
        SEEN[$name]=builtin
        BUILTIN_USED+=("$name")
        return 0
    fi
    SEEN[$name]=visiting
    for dep in ${MODDEPS[$name]}; do
        norm "$dep"
        dep=$NAME
        [[ ${SEEN[$dep]:-} == visiting ]] && die "dependency cycle: $chain -> $dep"
        resolve "$dep" "$chain -> $dep"
    done
    SEEN[$name]=module
    ORDER+=("$name")
}
for m in "${WANTED[@]}"; do
    norm "$m"
    resolve "$NAME" "$NAME"
done

# ---------------------------------------------------------------- initramfs
INIT_SRC=$HERE/init.sh
[[ -f $INIT_SRC ]] || die "$INIT_SRC missing"
key_input() {
    echo "kernel=$KVER"
    echo "modules=${ORDER[*]}"
    sha256sum "$INIT_SRC" /bin/busybox "$HERE/setup.sh" | awk '{print $1}'
}
KEY=$(key_input | sha256sum | awk '{print $1}')
INITRD=$VM_DIR/initrd.gz
INIT_SHA=$(sha256sum "$INIT_SRC" | awk '{print $1}')

if [[ ! -f $INITRD || ! -f $VM_DIR/initrd.key || $(cat "$VM_DIR/initrd.key") != "$KEY" ]]; then
    log "building initramfs (${#ORDER[@]} modules)"
    ST=$VM_DIR/initramfs
    rm -rf "$ST"
    mkdir -p "$ST"/{bin,dev,proc,sys,host,etc,lib/modules}
    cp /bin/busybox "$ST/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox ]] || ln -s busybox "$ST/bin/$applet"
    done
    mknod -m 600 "$ST/dev/console" c 5 1
    mknod -m 666 "$ST/dev/null" c 1 3
    : >"$ST/etc/modules.order"
    for name in "${ORDER[@]}"; do
        src=$MODROOT/${MODPATH[$name]}
        dst=$ST/lib/modules/$name.ko
        case $src in
            *.ko.xz) xz -dc "$src" >"$dst" || die "xz -dc $src failed" ;;
            *.ko) cp "$src" "$dst" ;;
            *) die "unsupported module compression: $src" ;;
        esac
        echo "$name.ko" >>"$ST/etc/modules.order"
    done
    echo "$KVER" >"$ST/etc/kernel-version"
    install -m 755 "$INIT_SRC" "$ST/init"
    (cd "$ST" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) |
        gzip -6 >"$INITRD.tmp" || die "building the cpio archive failed"
    mv "$INITRD.tmp" "$INITRD"
    echo "$KEY" >"$VM_DIR/initrd.key"
fi

cat >"$VM_DIR/current.env.tmp" <<EOF
# written by tests/vm/setup.sh; read by tests/vm/boot.sh
VM_KERNEL_VERSION=$KVER
VM_VMLINUZ=$VMLINUZ
VM_INITRD=$INITRD
VM_INIT_SHA=$INIT_SHA
VM_MODULES_LOADED="${ORDER[*]}"
VM_MODULES_BUILTIN="${BUILTIN_USED[*]}"
EOF
mv "$VM_DIR/current.env.tmp" "$VM_DIR/current.env"

T1=$(date +%s.%N)
cat <<EOF
pmem-stack VM ready ($(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}') s)
  cache:     $VM_DIR
  kernel:    $KVER
  vmlinuz:   $VMLINUZ
  initrd:    $INITRD ($(du -h "$INITRD" | cut -f1))
  modules:   ${ORDER[*]}
  built in:  ${BUILTIN_USED[*]:-(none)}
  qemu:      $(qemu-system-x86_64 --version | head -n 1)
  next:      $HERE/boot.sh --script tests/vm/smoke.sh
EOF
