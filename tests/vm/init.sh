#!/bin/sh
# /init of the pmem-stack test VM (busybox ash; copied into the initramfs by setup.sh).
#
# 1. proc/sys/devtmpfs, load /lib/modules/*.ko in /etc/modules.order (those in
#    /etc/modules.ondemand stay for the scripts that need them: lib.sh's load_module);
#    with pmemstack.root=DEV on the command line, mount DEV and switch_root to
#    its systemd instead of steps 2-4 (a Debian root: tests/vm/debian-root.sh)
# 2. host root (9p tag "host", read-only) at /host; /proc /sys /dev bound into it;
#    tmpfs on /host/run and /host/tmp; results share (9p tag "work", writable) at
#    /host/run/results
# 3. chroot /host, cd $GUEST_CWD, bash $GUEST_SCRIPT (both from results/guest.env),
#    output tee'd to results/guest.log
# 4. results/exit-status, sync, poweroff -f
# Anything failing before the script prints "pmem-stack-vm init: FATAL" and powers off
# without writing exit-status (boot.sh then reports 125 with the console tail).
PATH=/bin
export PATH
R=/host/run/results

off() {
    # sync may block forever on a device whose server died; don't let it hang the VM.
    timeout 30 sync
    poweroff -f
    sleep 10
    echo o >/proc/sysrq-trigger
}
fatal() {
    echo "pmem-stack-vm init: FATAL: $*"
    off
}

mount -t proc proc /proc || fatal "mount proc"
mount -t sysfs sysfs /sys || fatal "mount sysfs"
mount -t devtmpfs devtmpfs /dev || fatal "mount devtmpfs"
# devtmpfs has no /dev/fd & co (udev makes them): bash's <(...) needs /dev/fd.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname pmem-vm

while read -r m; do
    insmod "/lib/modules/$m" || fatal "insmod $m failed"
done </etc/modules.order

# libnvdimm probes regions/namespaces asynchronously: reading wait_probe flushes that,
# so /dev/pmem* (or the label-backed seeds) exist before the script starts.
for b in /sys/bus/nd/devices/ndbus*; do
    [ -e "$b/wait_probe" ] && cat "$b/wait_probe" >/dev/null
done

# A Debian root on a disk (boot.sh --root-disk: "pmemstack.root=/dev/vda"):
# systemd becomes PID 1 there, and its pmem-stack-vm.service does steps 2-4
# (tests/vm/debian-run.sh). /proc, /sys and /dev move along; the modules
# loaded above stay loaded.
for arg in $(cat /proc/cmdline); do
    case $arg in pmemstack.root=*) ROOT_DEV=${arg#pmemstack.root=} ;; esac
done
if [ -n "${ROOT_DEV:-}" ]; then
    i=0
    while [ ! -b "$ROOT_DEV" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    mkdir -p /newroot
    mount -t ext4 -o rw "$ROOT_DEV" /newroot || fatal "mount the Debian root $ROOT_DEV"
    [ -x /newroot/lib/systemd/systemd ] || fatal "$ROOT_DEV has no /lib/systemd/systemd"
    for m in /dev /proc /sys; do mount --move "$m" "/newroot$m" || fatal "move $m to the Debian root"; done
    exec switch_root /newroot /lib/systemd/systemd
fi

# 9p: msize 512000 is the largest the virtio transport accepts; cache=loose on the
# read-only host root makes exec/reads much faster (the tree does not change during a
# run as far as the guest is concerned); cache=none on results so every write reaches
# the host at once (boot.sh --kill-on watches for a file there).
O9=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$O9,ro,cache=loose" host /host || fatal "mount 9p host root"
mount --bind /proc /host/proc || fatal "bind /proc"
mount --bind /sys /host/sys || fatal "bind /sys"
mount --bind /dev /host/dev || fatal "bind /dev"
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts || fatal "mount devpts"
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm || fatal "mount /dev/shm"
mount -t tmpfs -o mode=755 tmpfs /host/run || fatal "tmpfs /run"
mount -t tmpfs -o mode=1777 tmpfs /host/tmp || fatal "tmpfs /tmp"
mkdir -p "$R" /host/run/lock
mount -t 9p -o "$O9,cache=none" work "$R" || fatal "mount 9p results share"

[ -f "$R/guest.env" ] || fatal "results/guest.env missing (boot.sh writes it)"

# The repo (sources, target/release/pmem-stack) is shared on its own, read-only,
# and mounted at its host path: that works even where the host root is hidden
# by the guest's own /tmp or /run (a CI checkout under /tmp).
[ -f "$R/repo-path" ] || fatal "results/repo-path missing (boot.sh writes it)"
read -r REPO_PATH <"$R/repo-path"
mkdir -p "/host$REPO_PATH" 2>/dev/null || true
mount -t 9p -o "$O9,ro,cache=loose" repo "/host$REPO_PATH" || fatal "mount 9p repo share at $REPO_PATH"
[ -x /host/bin/bash ] || fatal "host has no /bin/bash"

# The modules a scenario loads itself when it needs them (/etc/modules.ondemand:
# xfs), where tests/guest/lib.sh's load_module finds them.
mkdir -p /host/run/pmem-stack-vm/modules
mount --bind /lib/modules /host/run/pmem-stack-vm/modules || fatal "bind the initramfs modules"

read -r up _ </proc/uptime
echo "$up" >"$R/boot-to-script-seconds"
echo "pmem-stack-vm: kernel $(uname -r) up ${up}s, starting guest script"

# The inner bash: clean environment, guest.env sourced (it sets GUEST_SCRIPT/GUEST_CWD
# and exports the --env variables), stdin from /dev/null.
# shellcheck disable=SC2016 # expanded by the inner bash
chroot /host /usr/bin/env -i \
    HOME=/root TERM=dumb LANG=C.UTF-8 RESULTS=/run/results DM_DISABLE_UDEV=1 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/root/.cargo/bin \
    /bin/bash -c '
        rm -f /run/guest-exit-status
        . /run/results/guest.env || { echo "guest.env failed"; exit 1; }
        cd "$GUEST_CWD" || { echo "cd $GUEST_CWD failed"; echo 126 >/run/guest-exit-status; exit 0; }
        bash "$GUEST_SCRIPT" </dev/null
        echo $? >/run/guest-exit-status
    ' 2>&1 | tee "$R/guest.log"

read -r up _ </proc/uptime
if [ -f /host/run/guest-exit-status ]; then
    st=$(cat /host/run/guest-exit-status)
    echo "pmem-stack-vm: guest script exited $st at ${up}s"
    echo "$st" >"$R/exit-status"
else
    echo "pmem-stack-vm init: FATAL: the guest script runner did not record an exit status"
fi
off
