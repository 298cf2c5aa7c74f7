#!/bin/bash
# Guest scenario: the server is killed with SIGKILL while fio writes with
# crc32c verification; `pmem-stack recover` re-attaches a new server and fio
# finishes with zero errors, having verified everything it wrote.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test -b /dev/pmem0
dev=$("$P" add /dev/pmem0 --reserve 512M | tail -1)
expect_eq "added" "$dev" /dev/ublkb0
old_pid=$(server_pid 0)
expect_eq "recovery granted" "$("$P" list --json | jget 'd[0]["server_running"]')" true
# One queue per CPU, each queue thread free to run on any CPU of its node
# (one node here), not only on its queue's CPU.
expect_eq "list: affinity node" "$("$P" list --json | jget 'd[0]["affinity"]')" node
expect_eq "no server thread is pinned" "$(pinned_threads "$old_pid")" 0

writes() { awk '$3 == "ublkb0" { print $8 }' /proc/diskstats; }

fio --name=recover --filename=/dev/ublkb0 --size=96M --rw=randwrite --bs=4k \
	--iodepth=32 --ioengine=io_uring --direct=1 --verify=crc32c --do_verify=1 \
	--verify_fatal=1 --verify_state_save=0 --output-format=json >/tmp/fio.json 2>/tmp/fio.err &
fio_pid=$!

# Kill the server once fio is well into its writes.
for _ in $(seq 200); do
	[ "$(writes)" -gt 2000 ] && break
	sleep 0.05
done
note "writes completed before the kill: $(writes)"
kill -9 "$old_pid"
for _ in $(seq 100); do
	[ -e "/proc/$old_pid" ] || break
	sleep 0.05
done
check "server is gone" test ! -e "/proc/$old_pid"
for _ in $(seq 100); do
	[ "$("$P" list --json | jget 'd[0]["state"]')" == quiesced ] && break
	sleep 0.05
done
list=$("$P" list --json)
expect_eq "device is quiesced" "$(echo "$list" | jget 'd[0]["state"]')" quiesced
expect_eq "list says the server is dead" "$(echo "$list" | jget 'd[0]["server_running"]')" false
check "fio is still running (its I/O waits)" kill -0 "$fio_pid"

before=$(meta_digest /dev/pmem0)
refused "add of a backing whose server died" "pmem-stack recover 0" "$P" add /dev/pmem0
refused "format of a backing whose server died" "pmem-stack recover 0" "$P" format /dev/pmem0 --reserve 0 --force
refused "recover of a device that does not exist" "does not exist" "$P" recover 7
expect_eq "refusals changed nothing" "$(meta_digest /dev/pmem0)" "$before"

out=$("$P" recover 0)
expect_eq "recover prints the device" "$(echo "$out" | tail -1)" /dev/ublkb0
new_pid=$(server_pid 0)
check "a new server serves it" test "$new_pid" != "$old_pid" -a -e "/proc/$new_pid"
expect_eq "device is live again" "$("$P" list --json | jget 'd[0]["state"]')" live
refused "recover of a live device" "is running" "$P" recover 0
expect_eq "the recovered server's threads are not pinned either" "$(pinned_threads "$new_pid")" 0

rc=0
wait "$fio_pid" || rc=$?
expect_eq "fio exit status" "$rc" 0
verdict=$(python3 -c '
import json
t=open("/tmp/fio.json").read(); d=json.loads(t[t.index("{"):]); j=d["jobs"][0]
w=j["write"]["io_bytes"]; r=j["read"]["io_bytes"]
print("ok" if j["error"]==0 and w==96<<20 and r==w else "error=%s written=%s verified=%s" % (j["error"],w,r))' 2>&1)
expect_eq "fio wrote 96 MiB across the kill and verified all of it" "$verdict" ok
[ "$verdict" == ok ] || cat /tmp/fio.err

# The recovered server is an ordinary one: file systems work, del works.
check "mkfs.ext4 after recovery" mkfs.ext4 -q -F /dev/ublkb0
mkdir -p /tmp/mnt
check "mount" mount /dev/ublkb0 /tmp/mnt
write_files /tmp/mnt 8
check "files verify" verify_files /tmp/mnt
check "umount" umount /tmp/mnt
check "del after recovery" "$P" del 0
expect_eq "no devices left" "$(ublk_count)" 0
check "metadata healthy" "$P" check /dev/pmem0

# del of a recovered device while fio writes to it: the device must really go
# (fio gets errors rather than writing on into nothing), the server exits,
# and nothing hangs. With pmem-stack 0.1's recovery this printed "removed"
# while the recovered server saw none of fio's writes.
check "add again, queue threads pinned" "$P" add /dev/pmem0 --affinity queue
old_pid=$(server_pid 0)
queues=$("$P" list --json | jget 'd[0]["queues"]')
expect_eq "list: affinity queue" "$("$P" list --json | jget 'd[0]["affinity"]')" queue
expect_eq "one pinned thread per queue" "$(pinned_threads "$old_pid")" "$queues"
kill -9 "$old_pid"
for _ in $(seq 100); do
	[ "$("$P" list --json | jget 'd[0]["state"]')" == quiesced ] && break
	sleep 0.05
done
check "recover again" "$P" recover 0
new_pid=$(server_pid 0)
expect_eq "recovered: still affinity queue" "$("$P" list --json | jget 'd[0]["affinity"]')" queue
expect_eq "recovered: one pinned thread per queue" "$(pinned_threads "$new_pid")" "$queues"
check "the recovered device is a block device" test -b /dev/ublkb0
fio --name=delwhile --filename=/dev/ublkb0 --size=64M --rw=randwrite --bs=4k \
	--iodepth=8 --ioengine=io_uring --direct=1 --time_based --runtime=30 \
	--output-format=json >/tmp/fio2.json 2>/tmp/fio2.err &
fio_pid=$!
for _ in $(seq 200); do
	[ "$(writes)" -gt 500 ] && break
	sleep 0.05
done
served_before=$(writes)
note "writes through the recovered device before del: $served_before"
check "the recovered server receives fio's writes" test "$served_before" -gt 500
check "del --all while fio runs" "$P" del --all
rc=0
wait_start=$SECONDS
wait "$fio_pid" || rc=$?
note "fio ended $((SECONDS - wait_start)) s after del, status $rc"
check "fio ended well before its 30 s run" test $((SECONDS - wait_start)) -lt 20
check "fio saw I/O errors" test "$rc" -ne 0
expect_eq "no devices left after del" "$(ublk_count)" 0
check "no /dev/ublkb0 of any kind is left" test ! -e /dev/ublkb0
check "the recovered server exited" test ! -e "/proc/$new_pid"
expect_eq "list is empty" "$("$P" list --json)" "[]"
check "metadata healthy after del under fio" "$P" check /dev/pmem0

finish
