#!/bin/bash
# Guest scenario: /dev/ublkbN exported through the kernel's NVMe-oF target
# (nvmet) over TCP on the guest's loopback address, and used from the
# initiator side with nvme-cli, as docs/NVMEOF.md describes (nothing leaves
# the guest): the namespace has the device's size, fio verifies through it, a
# flush from the initiator (nvme flush, and fsync on the initiator's file
# system) reaches pmem-stack — its flush counter in 'list --json' moves — or,
# on a write-through device (the direct path, 6.16+), is answered by the
# kernel; a file system on it keeps its files; the server killed and
# recovered under the initiator's fio costs the initiator nothing; and a
# device deleted while connected fails the initiator's I/O without a hang,
# after which the target comes apart cleanly.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test -b /dev/pmem0
require command -v nvme
load_module nvmet_tcp
load_module nvme_tcp
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
require test -d /sys/kernel/config/nvmet
require ip link set lo up
T="timeout 60"

cd /tmp
# A write-back cache on 6.12, the default (write-through) on newer kernels:
# across the kernel matrix both ways of answering a FLUSH are exported.
# (6.12's nvmet declares a volatile cache whatever its backing has, so only
# a newer target shows a write-through device as one.)
cache_args=()
if ! kernel_at_least 6 16; then cache_args=(--write-cache write-back); fi
dev=$("$P" add /dev/pmem0 --reserve 512M "${cache_args[@]}" | tail -1)
expect_eq "added" "$dev" /dev/ublkb0
size=$(blockdev --getsize64 /dev/ublkb0)

# --- the target (docs/NVMEOF.md, "Target") ---
nqn=nqn.2026-11.io.pmem-stack:$("$P" info /dev/pmem0 --json | jget 'd["uuid"]')
cfg=/sys/kernel/config/nvmet
sub=$cfg/subsystems/$nqn
port=$cfg/ports/1
mkdir "$sub"
echo 1 >"$sub/attr_allow_any_host"
mkdir "$sub/namespaces/1"
echo -n /dev/ublkb0 >"$sub/namespaces/1/device_path"
echo 1 >"$sub/namespaces/1/enable"
mkdir "$port"
echo tcp >"$port/addr_trtype"
echo ipv4 >"$port/addr_adrfam"
echo 127.0.0.1 >"$port/addr_traddr"
echo 4420 >"$port/addr_trsvcid"
ln -s "$sub" "$port/subsystems/$nqn"
check "the target listens on 127.0.0.1:4420" bash -c "ss -Hltn | grep -q '127.0.0.1:4420'"
pass "nvmet subsystem $nqn exports /dev/ublkb0 over TCP"

# --- the initiator (docs/NVMEOF.md, "Initiator") ---
hostid=$(cat /proc/sys/kernel/random/uuid)
check "nvme connect -t tcp" $T nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$nqn" \
	--hostnqn="nqn.2014-08.org.nvmexpress:uuid:$hostid" --hostid="$hostid"
# The guest has no other NVMe device: the first namespace is the export.
nsdev=
for _ in $(seq 100); do
	# nvmeXnY is the namespace (with native multipath its head); the
	# per-path nvmeXcZnY is hidden and has no node.
	nsdev=$(ls -d /sys/block/nvme* 2>/dev/null | grep -E '/nvme[0-9]+n[0-9]+$' | head -1 || true)
	[ -n "$nsdev" ] && [ -b "/dev/$(basename "$nsdev")" ] && break
	sleep 0.1
done
require test -n "$nsdev"
ctrl=$(basename "$(ls -d /sys/class/nvme/nvme* | head -1)")
expect_eq "the controller's transport" "$(cat "/sys/class/nvme/$ctrl/transport")" tcp
nsdev=/dev/$(basename "$nsdev")
require test -b "$nsdev"
note "namespace: $nsdev (controller $ctrl)"
expect_eq "the namespace has the device's size" "$(blockdev --getsize64 "$nsdev")" "$size"
# The namespace carries the ublk device's write cache.
cache=$(cat /sys/block/ublkb0/queue/write_cache)
expect_eq "the namespace reports the device's write cache ($cache)" "$(cat "/sys/block/$(basename "$nsdev")/queue/write_cache")" "$cache"

fio_verify "fio verify through NVMe/TCP" "$nsdev" 0 64M

flushes() { "$P" list --json | jget 'd[0]["stats"]["flushes"]'; }
wait_flushes_above() {
	for _ in $(seq 100); do [ "$(flushes)" -gt "$1" ] && return 0; sleep 0.05; done
	return 1
}
# flush_reached NAME BEFORE: with a write-back cache the initiator's flush
# reaches pmem-stack; writing through, every write was durable already and
# the kernel answers it (the counter must stay put: no round trip).
flush_reached() {
	if [ "$cache" == "write back" ]; then
		check "$1 reached pmem-stack (flushes > $2)" wait_flushes_above "$2"
	else
		sleep 0.5
		expect_eq "$1 was answered by the kernel (write-through: no round trip)" "$(flushes)" "$2"
	fi
}
sleep 0.5
before=$(flushes)
check "nvme flush from the initiator" nvme flush "$nsdev" -n 1
flush_reached "the flush" "$before"
note "pmem-stack flushes: $before -> $(flushes)"

check "mkfs.ext4 on the namespace" mkfs.ext4 -q -F "$nsdev"
mkdir -p /tmp/mnt
check "mount" mount "$nsdev" /tmp/mnt
head -c 4M /dev/urandom >/tmp/mnt/before
before=$(flushes)
check "fsync on the initiator's file system" python3 -c 'import os; f=os.open("/tmp/mnt/before", os.O_RDWR); os.fsync(f)'
flush_reached "fsync" "$before"
write_files /tmp/mnt 6
check "files verify" verify_files /tmp/mnt
check "umount" umount /tmp/mnt
check "the file system is intact on pmem-stack's device" e2fsck -fn /dev/ublkb0

# --- the server killed and recovered under the initiator's I/O ---
# fio on the initiator's namespace: random writes with crc32c, then reads
# every block back. The kill lands once the device has taken writes; I/O
# waits while the device is quiesced and carries on after the recovery.
# (The file system is done with: these writes go over it.)
kill_job=(--name=kill --offset=128M --size=32M --rw=randwrite --bs=4k --iodepth=8
	--ioengine=io_uring --direct=1 --verify=crc32c --verify_fatal=1 --verify_state_save=0)
fio "${kill_job[@]}" --filename="$nsdev" --do_verify=1 --output-format=json \
	>/tmp/fio-kill.json 2>/tmp/fio-kill.err &
fio_pid=$!
after_writes 500
pid=$(server_pid 0)
kill -9 "$pid"
check "the device is quiesced after the kill" wait_state 0 quiesced
check "recover while the initiator's fio runs" $T "$P" recover 0
expect_eq "live again" "$(state_of 0)" live
rc=0
wait_bounded "$fio_pid" 120 || rc=$?
expect_eq "the initiator's fio ends well across the kill" "$rc" 0
verdict=$(python3 -c '
import json
t=open("/tmp/fio-kill.json").read(); j=json.loads(t[t.index("{"):])["jobs"][0]
w=j["write"]["io_bytes"]; r=j["read"]["io_bytes"]
print("ok" if j["error"]==0 and w==32<<20 and r==w else "error=%s written=%s verified=%s" % (j["error"],w,r))' 2>&1)
expect_eq "the initiator's fio wrote and verified all 32 MiB, no error" "$verdict" ok
[ "$verdict" == ok ] || note "fio: $(tail -3 /tmp/fio-kill.err | tr '\n' ' ')"

# --- del while the initiator is connected and writing ---
# Nothing in the kernel holds /dev/ublkb0 for nvmet (it is not mounted or
# stacked), so del removes it; the target's I/O then fails, the initiator
# sees errors, and nothing may hang.
fio --name=del --filename="$nsdev" --offset=256M --size=64M --rw=randwrite --bs=4k --iodepth=8 \
	--ioengine=io_uring --direct=1 --time_based --runtime=60 \
	--output-format=json >/tmp/fio-del.json 2>/tmp/fio-del.err &
fio_pid=$!
after_writes 200
check "del while connected" $T "$P" del 0
check "/dev/ublkb0 is gone" bash -c '! test -e /dev/ublkb0'
rc=0
wait_bounded "$fio_pid" 50 || rc=$?
check "the initiator's fio ended before its 60 s (not hung: status $rc)" test "$rc" -ne 124
check "the initiator's fio saw errors" test "$rc" -ne 0
note "initiator fio after del: status $rc: $(grep -m1 -iE 'error|err=' /tmp/fio-del.err | cut -c1-160)"

# --- stop exporting (docs/NVMEOF.md, "Stop exporting") ---
check "nvme disconnect" $T nvme disconnect -n "$nqn"
check "no controller left" bash -c '[ -z "$(ls /sys/class/nvme 2>/dev/null)" ]'
rm "$port/subsystems/$nqn"
rmdir "$port"
echo 0 >"$sub/namespaces/1/enable"
rmdir "$sub/namespaces/1"
rmdir "$sub"
check "nvmet configuration removed" bash -c "[ -z \"\$(ls -A $cfg/subsystems)\$(ls -A $cfg/ports)\" ]"
check "the port is closed" bash -c "! ss -Hltn | grep -q '127.0.0.1:4420'"
expect_eq "no ublk device left" "$(ublk_count)" 0
check "metadata healthy" "$P" check /dev/pmem0
check "and it serves again" $T "$P" add /dev/pmem0
# What the initiator wrote and saw acknowledged before the kill is there:
# the same job, reading and checking only.
check "the initiator's writes from before the kill verify on the device" \
	fio "${kill_job[@]}" --filename=/dev/ublkb0 --verify_only
check "del" $T "$P" del 0

finish
