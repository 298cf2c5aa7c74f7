#!/usr/bin/env bash
# Build the Debian root file system that the systemd scenarios boot: Debian 12
# from Debian's own packages (mmdebstrap), systemd as PID 1 and udev, the tools
# the scenarios use (e2fsprogs, xfsprogs, fio, jq, python3), and the modules of
# the guest kernels tests/vm/setup.sh prepared. pmem-stack is not in it: the
# scenarios install it with scripts/install, as a user would.
#
# usage: PMEM_STACK_VM_DEBIAN_MIRROR=URI tests/vm/debian-root.sh SERIES...
#        (tests/vm/setup.sh calls it so, with the host's own Debian mirror)
#
# Output, under ${PMEM_STACK_VM_DIR:-<repo>/target/vm}/debian/:
#   root.img   a raw ext4 image (sparse, 2 GiB); boot.sh --root-disk boots a
#              copy-on-write overlay of it, so every scenario starts from the
#              same system and none writes the cache
#   root.env   the kernel versions whose modules it holds, read by boot.sh
#   root.key   what it was built from; a second run with the same inputs
#              only checks and returns (about 40 s to build otherwise)
#
# The root's own side of the harness is tests/vm/debian-run.sh (installed as
# /usr/lib/pmem-stack-vm/run, started by pmem-stack-vm.service once the
# system is up): it mounts the results and repo shares and runs the guest
# script boot.sh named, then powers off or reboots as the script asked.
#
# Only the modules the harness uses are installed (the initramfs's list,
# depmod'ed into /lib/modules/VERSION): under TCG every module udev would
# load for QEMU's devices costs boot time (xfs.ko alone takes 3.5-4 s to
# insert), and the scenarios need none of them.
set -euo pipefail

die() {
    echo "debian-root.sh: ERROR: $*" >&2
    exit 1
}
log() { echo "debian-root.sh: $*" >&2; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
VM_DIR=${PMEM_STACK_VM_DIR:-$REPO/target/vm}
OUT=$VM_DIR/debian
SUITE=bookworm
# systemd-sysv makes systemd /sbin/init; udev gives the by-id names; the rest
# are what the guest scripts run (tests/guest/lib.sh needs python3's json).
PACKAGES=(systemd systemd-sysv udev kmod e2fsprogs xfsprogs fio jq python3 procps util-linux)

[[ $# -gt 0 ]] || die "usage: debian-root.sh SERIES... (lts, current)"
[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap --mode=root, mkfs.ext4 -d with device nodes)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is not installed (scripts/setup installs it)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is not installed"

# The kernels and their module trees (setup.sh's kernel.env and initramfs).
KVERS=()
MODDIRS=()
MODROOTS=()
for series in "$@"; do
    env=$VM_DIR/$series/kernel.env
    [[ -f $env ]] || die "kernel '$series' is not set up ($env missing)"
    VM_KERNEL_VERSION="" VM_MODROOT=""
    # shellcheck source=/dev/null
    . "$env"
    mods=$VM_DIR/$series/initramfs/lib/modules
    [[ -n $VM_KERNEL_VERSION && -d $mods && -f $VM_MODROOT/modules.builtin ]] ||
        die "$env names no kernel, or its modules are missing: run tests/vm/setup.sh"
    KVERS+=("$VM_KERNEL_VERSION")
    MODDIRS+=("$mods")
    MODROOTS+=("$VM_MODROOT")
done

# The Debian archive: setup.sh passes the one it fetches kernels from.
MIRROR=${PMEM_STACK_VM_DEBIAN_MIRROR:-}
[[ -n $MIRROR ]] || die "PMEM_STACK_VM_DEBIAN_MIRROR is not set (tests/vm/setup.sh sets it: run that)"
MIRROR=${MIRROR%/}

KEY=$({
    echo "suite=$SUITE packages=${PACKAGES[*]}"
    sha256sum "$HERE/debian-root.sh" "$HERE/debian-run.sh" | awk '{print $1}'
    for i in "${!KVERS[@]}"; do
        echo "kernel=${KVERS[$i]}"
        (cd "${MODDIRS[$i]}" && sha256sum ./*.ko) | sha256sum | awk '{print $1}'
    done
} | sha256sum | awk '{print $1}')
if [[ -f $OUT/root.img && -f $OUT/root.key && $(cat "$OUT/root.key") == "$KEY" ]]; then
    log "Debian root up to date ($OUT/root.img)"
    exit 0
fi

T0=$SECONDS
mkdir -p "$OUT"
TREE=$OUT/tree
rm -rf "$TREE" "$OUT/root.img.tmp"
log "mmdebstrap $SUITE from $MIRROR: ${PACKAGES[*]}"
include=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --mode=root --variant=minbase --include="$include" \
    --aptopt='Acquire::Retries "3"' "$SUITE" "$TREE" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" >"$OUT/mmdebstrap.log" 2>&1 ||
    { tail -n 30 "$OUT/mmdebstrap.log" >&2; die "mmdebstrap failed (log tail above; all of it in $OUT/mmdebstrap.log)"; }

# ---- the system: a fixed identity, a quiet console, a persistent journal
echo pmem-vm >"$TREE/etc/hostname"
# One machine id for every boot of every overlay: the journal of the
# previous boot (journalctl -b -1) is found by it.
echo 5c1e7a3d0b9f4e2a8d6c4b2a19f7e5d3 >"$TREE/etc/machine-id"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 0' >"$TREE/etc/fstab"
mkdir -p "$TREE/var/log/journal" "$TREE/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=persistent\n' >"$TREE/etc/systemd/journald.conf.d/pmem-stack-vm.conf"
# Nobody logs in; nothing runs on a timer in a boot of a minute.
for unit in serial-getty@ttyS0.service getty@tty1.service console-getty.service \
    apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer systemd-timesyncd.service proc-sys-fs-binfmt_misc.automount; do
    ln -sf /dev/null "$TREE/etc/systemd/system/$unit"
done

# ---- the harness's side: the runner and its unit
install -D -m 755 "$HERE/debian-run.sh" "$TREE/usr/lib/pmem-stack-vm/run"
cat >"$TREE/etc/systemd/system/pmem-stack-vm.service" <<'UNIT'
# The pmem-stack test VM: run the guest script of this boot (see
# tests/vm/debian-run.sh in the repository). Also wanted by
# emergency.target, so a boot that fails still reports instead of waiting at
# a root-password prompt until the host's timeout.
[Unit]
Description=pmem-stack test VM: the guest script of this boot
DefaultDependencies=no
After=local-fs.target systemd-udevd.service
IgnoreOnIsolate=yes

[Service]
Type=simple
ExecStart=/usr/lib/pmem-stack-vm/run
StandardOutput=journal+console
StandardError=inherit

[Install]
WantedBy=multi-user.target emergency.target
UNIT
for target in multi-user emergency; do
    mkdir -p "$TREE/etc/systemd/system/$target.target.wants"
    ln -sf /etc/systemd/system/pmem-stack-vm.service "$TREE/etc/systemd/system/$target.target.wants/"
done

# ---- the guest kernels' modules (the initramfs's), where modprobe finds them
for i in "${!KVERS[@]}"; do
    kdir=$TREE/lib/modules/${KVERS[$i]}
    mkdir -p "$kdir/kernel/pmem-stack-vm"
    cp "${MODDIRS[$i]}"/*.ko "$kdir/kernel/pmem-stack-vm/"
    # What is built in, so that modprobe of a built-in module succeeds.
    cp "${MODROOTS[$i]}"/modules.builtin "${MODROOTS[$i]}"/modules.builtin.modinfo "$kdir/"
    (cd "$kdir" && ls kernel/pmem-stack-vm/*.ko) >"$kdir/modules.order"
    depmod -b "$TREE" "${KVERS[$i]}" || die "depmod for ${KVERS[$i]} failed"
done

rm -rf "$TREE/var/cache/apt/archives"/*.deb "$TREE/var/lib/apt/lists"/*_Packages
log "mkfs.ext4 -d: $(du -sh "$TREE" | cut -f1) into a 2 GiB image"
mkfs.ext4 -q -F -L pmem-vm-root -d "$TREE" "$OUT/root.img.tmp" 2G >"$OUT/mkfs.log" 2>&1 ||
    { cat "$OUT/mkfs.log" >&2; die "mkfs.ext4 -d $TREE failed"; }
mv "$OUT/root.img.tmp" "$OUT/root.img"
{
    echo "# written by tests/vm/debian-root.sh; read by tests/vm/boot.sh --root-disk"
    printf 'DEBIAN_ROOT_KERNELS=%q\n' "${KVERS[*]}"
} >"$OUT/root.env"
echo "$KEY" >"$OUT/root.key"
rm -rf "$TREE"
log "Debian root ready in $((SECONDS - T0)) s: $OUT/root.img (kernels ${KVERS[*]})"
