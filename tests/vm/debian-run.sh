#!/bin/bash
# /usr/lib/pmem-stack-vm/run in the Debian root (tests/vm/debian-root.sh puts
# it there; pmem-stack-vm.service starts it). The systemd counterpart of
# tests/vm/init.sh's steps 2-4:
#
# 1. mount the results share (9p tag "work", writable) at /run/results and
#    the repo share (tag "repo", read-only) at the repo's host path
# 2. wait for the boot to finish (systemctl is-system-running --wait) and
#    record the system's state in results/system-state
# 3. run the guest script boot.sh named (results/guest.env) with a clean
#    environment, output tee'd to results/guest.log (and the journal)
# 4. results/exit-status, then power off, or reboot when the script asked
#    for it (tests/guest/lib.sh's `then_reboot`: /run/pmem-stack-vm/after)
#
# Both shutdowns are systemd's own, units stopped in order; QEMU runs with
# -no-reboot, so a reboot ends this boot.sh run and the host boots the next
# one on the same disks.
set -u
R=/run/results
O9=trans=virtio,version=9p2000.L,msize=512000
STATE=/run/pmem-stack-vm

fatal() {
    echo "pmem-stack-vm run: FATAL: $*"
    systemctl --no-block poweroff
    exit 1
}

mkdir -p "$R" "$STATE"
mountpoint -q "$R" || mount -t 9p -o "$O9,cache=none" work "$R" || fatal "mount 9p results share"
[ -f "$R/guest.env" ] || fatal "results/guest.env missing (boot.sh writes it)"
read -r REPO_PATH <"$R/repo-path" || fatal "results/repo-path missing (boot.sh writes it)"
mkdir -p "$REPO_PATH"
mountpoint -q "$REPO_PATH" || mount -t 9p -o "$O9,ro,cache=loose" repo "$REPO_PATH" ||
    fatal "mount 9p repo share at $REPO_PATH"

state=$(timeout 300 systemctl is-system-running --wait 2>&1)
echo "$state" >"$R/system-state"
read -r up _ </proc/uptime
echo "$up" >"$R/boot-to-script-seconds"
echo "pmem-stack-vm: kernel $(uname -r) up ${up}s, systemd: $state; starting guest script"

rm -f "$STATE/status" "$STATE/after"
# shellcheck disable=SC2016 # expanded by the inner bash
env -i HOME=/root TERM=dumb LANG=C.UTF-8 RESULTS="$R" PMEM_STACK_VM_SYSTEMD=1 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c '
        . "$RESULTS/guest.env" || { echo "guest.env failed"; exit 1; }
        cd "$GUEST_CWD" || { echo "cd $GUEST_CWD failed"; echo 126 >/run/pmem-stack-vm/status; exit 0; }
        bash "$GUEST_SCRIPT" </dev/null
        echo $? >/run/pmem-stack-vm/status
    ' 2>&1 | tee "$R/guest.log"

read -r up _ </proc/uptime
if [ -f "$STATE/status" ]; then
    st=$(cat "$STATE/status")
    echo "pmem-stack-vm: guest script exited $st at ${up}s"
    echo "$st" >"$R/exit-status"
else
    echo "pmem-stack-vm run: FATAL: the guest script runner did not record an exit status"
fi
after=poweroff
[ -f "$STATE/after" ] && after=$(cat "$STATE/after")
case $after in
    reboot | poweroff) systemctl --no-block "$after" ;;
    *) fatal "unknown request in $STATE/after: '$after'" ;;
esac
