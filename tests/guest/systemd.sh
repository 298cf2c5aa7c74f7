#!/bin/bash
# Guest scenario: pmem-stack on a Debian host with systemd as PID 1 (the
# Debian root, boot.sh --root-disk), installed by scripts/install as the
# README says, over three boots of the same disks:
#
#   PHASE=unit    install; format; `systemctl enable --now
#                 pmem-stack@dev-pmem0.service`: status shows the server's
#                 STATUS line, its log is in the journal; ext4 named in
#                 /etc/fstab by /dev/disk/by-id/pmem-stack-<uuid> with
#                 x-systemd.requires=; under fio crc32c verify on the mount:
#                 `pmem-stack restart` (the server re-executes itself: same
#                 main pid, no restart of the unit), `systemctl restart` (the
#                 busy mount stays; the server hands over instead of removing
#                 its device), kill -9 of the server (Restart= recovers it):
#                 zero errors; the idle live upgrade leaves the mount; `systemctl
#                 stop` unmounts first, then removes the device; the mount
#                 brings the unit back; files written; `systemctl reboot`.
#   PHASE=reboot  the unit served and the file system was mounted at boot, in
#                 that order; the last shutdown unmounted before it stopped
#                 the server, which exited cleanly; every file intact; more
#                 files written and fsync'd; then the host cuts the power.
#   PHASE=cut     (the boot after the cut) the unit serves, the mount comes
#                 up with ext4's journal replayed, every fsync'd file
#                 verifies, fsck -n is clean; stopped in order, powered off.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test "${PMEM_STACK_VM_SYSTEMD:-}" = 1
require test "$(cat /proc/1/comm)" = systemd
require test -b /dev/pmem0
require command -v jq

unit=pmem-stack@dev-pmem0.service
mnt=/srv/pmem
mount_unit=srv-pmem.mount

expect_eq "systemd finished booting" "$(cat "$RESULTS/system-state")" running
expect_eq "no unit failed" "$(systemctl --failed --no-legend --plain | awk '{print $1}' | xargs)" ""

# at UNIT PROPERTY: one of a unit's monotonic timestamps (µs since boot).
at() { systemctl show -P "$2" "$1"; }
main_pid() { at "$unit" MainPID; }
# until_active OLD_PID: the unit is active (READY=1 sent) under a new main
# process, within 60 s.
until_active() {
	local _
	for _ in $(seq 600); do
		if [ "$(systemctl is-active "$unit")" == active ] && [ "$(main_pid)" != "$1" ] && [ "$(main_pid)" != 0 ]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}
# boot_files DIR N: N files of random data in DIR, each fsync'd, then the
# directory, with their sums beside them.
boot_files() {
	mkdir -p "$1"
	write_files "$1" "$2"
	for f in "$1"/*; do dd if="$f" of="$f" bs=1M conv=notrunc,fsync status=none; done
	sync -f "$1"
}

# After the first boot's scripts/install, the installed binary is the one.
[ "$PHASE" == unit ] || P=/usr/local/sbin/pmem-stack

case ${PHASE:?PHASE must be unit, reboot or cut} in
unit)
	cd "$PMEM_STACK_REPO"
	check "scripts/install" scripts/install
	require test -x /usr/local/sbin/pmem-stack
	P=/usr/local/sbin/pmem-stack
	expect_eq "the installed pmem-stack is the one on PATH" "$(command -v pmem-stack)" "$P"
	check "format /dev/pmem0" pmem-stack format /dev/pmem0 --reserve 64M
	check "systemctl enable --now $unit" systemctl enable --now "$unit"
	expect_eq "the unit is active" "$(systemctl is-active "$unit")" active
	expect_eq "the unit is enabled" "$(systemctl is-enabled "$unit")" enabled
	status=$(systemctl status "$unit" --no-pager -l 2>&1 || true)
	echo "$status" >"$RESULTS/status.txt"
	check "systemctl status shows the server's STATUS line" grep -q 'Status: "serving /dev/ublkb0 (volume ' <<<"$status"
	check "the server's log is in the journal" grep -q '/dev/ublkb0: live' <<<"$(journalctl -b -u "$unit" -o cat --no-pager)"
	expect_eq "the unit's main process serves the device" "$(server_pid 0)" "$(main_pid)"

	uuid=$(pmem-stack info /dev/pmem0 --json | jq -r .uuid)
	link=/dev/disk/by-id/pmem-stack-$uuid
	check "udev names the device by its volume" udevadm wait --timeout=30 "$link"
	check "mkfs.ext4 through the stable name" mkfs.ext4 -q -F "$link"
	mkdir -p "$mnt"
	echo "$link $mnt ext4 defaults,x-systemd.requires=$unit 0 2" >>/etc/fstab
	check "daemon-reload" systemctl daemon-reload
	check "mount $mnt (fstab)" mount "$mnt"
	check "the mount requires the unit" grep -qw "$unit" <<<"$(at "$mount_unit" Requires)"
	check "the mount is ordered after the unit" grep -qw "$unit" <<<"$(at "$mount_unit" After)"
	write_files "$mnt" 4

	# Under fio with crc32c verify on the mount: three ways the server is
	# replaced. fio must still be running after each.
	fio_bg sd "$mnt/fio.dat" 256M
	after_writes 2000
	old=$(main_pid)
	restarts=$(at "$unit" NRestarts)
	check "pmem-stack restart under fio" pmem-stack restart /dev/ublkb0
	# The live upgrade: the server re-executes itself; systemd restarts
	# nothing (a restart would take the fstab mount with it).
	expect_eq "pmem-stack restart: the same main process, re-executed" "$(main_pid)" "$old"
	expect_eq "pmem-stack restart: systemd restarted nothing" "$(at "$unit" NRestarts)" "$restarts"
	expect_eq "pmem-stack restart: the unit stays active" "$(systemctl is-active "$unit")" active
	check "fio still running after pmem-stack restart" kill -0 "$fio_pid"
	after_writes 2000
	old=$(main_pid)
	check "systemctl restart under fio" systemctl restart "$unit"
	check "a new main process after systemctl restart" until_active "$old"
	expect_eq "still mounted after systemctl restart" "$(findmnt -n -o SOURCE "$mnt")" /dev/ublkb0
	check "fio still running after systemctl restart" kill -0 "$fio_pid"
	after_writes 2000
	old=$(main_pid)
	restarts=$(at "$unit" NRestarts)
	kill -9 "$old"
	check "systemd brings a new server after kill -9 (Restart=)" until_active "$old"
	expect_eq "systemd counted the restart" "$(at "$unit" NRestarts)" "$((restarts + 1))"
	check "the new server recovered the device" grep -q 'recovering it' <<<"$(journalctl -b -u "$unit" -o cat --no-pager)"
	check "fio still running after kill -9" kill -0 "$fio_pid"
	rc=0
	wait_bounded "$fio_pid" 300 || rc=$?
	expect_eq "fio across the three hand-overs: exit status" "$rc" 0
	expect_eq "fio across the three hand-overs: 256 MiB written and verified" "$(fio_verdict sd $((256 << 20)))" ok
	check "files written before verify" verify_files "$mnt"
	rm -f "$mnt/fio.dat"
	# Idle, the live upgrade leaves the mount alone: were the unit restarted,
	# systemd would restart the mount with it (Requires= propagates), and the
	# unmount of an idle file system waits on a device without a server.
	since=$(at "$mount_unit" ActiveEnterTimestampMonotonic)
	old=$(main_pid)
	check "pmem-stack restart, idle" timeout 60 pmem-stack restart /dev/ublkb0
	expect_eq "idle pmem-stack restart: the same main process" "$(main_pid)" "$old"
	expect_eq "idle pmem-stack restart: the file system stayed mounted" "$(at "$mount_unit" ActiveEnterTimestampMonotonic)" "$since"
	check "files verify after the idle restart" verify_files "$mnt"

	# systemctl stop: the mount goes first, then the server removes the device.
	check "systemctl stop $unit" systemctl stop "$unit"
	# (inactive, or failed: systemd keeps the result of the unmount that
	# `systemctl restart` tried while fio held the file system busy)
	check "the mount is stopped with it" test "$(systemctl is-active "$mount_unit")" != active
	check "nothing mounted at $mnt" test -z "$(findmnt -n "$mnt")"
	expect_eq "the device is gone" "$(ublk_count)" 0
	umounted=$(at "$mount_unit" InactiveEnterTimestampMonotonic)
	stopping=$(at "$unit" ActiveExitTimestampMonotonic)
	check "unmounted ($umounted us) before the server was stopped ($stopping us)" test "$umounted" -gt 0 -a "$umounted" -le "$stopping"
	check "the server stopped cleanly" grep -q "$unit: Deactivated successfully" <<<"$(journalctl -b -o cat --no-pager _PID=1)"

	# The mount brings its unit back.
	check "systemctl start $mount_unit" systemctl start "$mount_unit"
	expect_eq "the unit came with the mount" "$(systemctl is-active "$unit")" active
	check "files verify after stop and start" verify_files "$mnt"
	boot_files "$mnt/reboot" 3
	note "rebooting"
	then_reboot
	;;
reboot)
	uuid=$(pmem-stack info /dev/pmem0 --json | jq -r .uuid)
	expect_eq "the unit serves at boot" "$(systemctl is-active "$unit")" active
	expect_eq "the file system is mounted at boot" "$(systemctl is-active "$mount_unit")" active
	expect_eq "... through the stable name" "$(readlink -f "/dev/disk/by-id/pmem-stack-$uuid")" "$(findmnt -n -o SOURCE "$mnt")"
	served=$(at "$unit" ActiveEnterTimestampMonotonic)
	mounted=$(at "$mount_unit" ActiveEnterTimestampMonotonic)
	check "mounted ($mounted us) after the device was live ($served us)" test "$served" -gt 0 -a "$mounted" -ge "$served"
	expect_eq "no restarts this boot" "$(at "$unit" NRestarts)" 0
	# The shutdown before this boot, from its journal.
	last=$(journalctl -b -1 -o cat --no-pager _PID=1)
	echo "$last" >"$RESULTS/journal-previous-boot.txt"
	# The last of each: the shutdown's (the first boot also stopped the unit).
	line_of() { grep -n -F "$1" <<<"$last" | tail -1 | cut -d: -f1 || true; }
	unmounted=$(line_of "Unmounted $mount_unit")
	stopped=$(line_of "$unit: Deactivated successfully")
	check "the last shutdown unmounted $mnt (line ${unmounted:-none}) before stopping the server (line ${stopped:-none})" \
		test -n "$unmounted" -a -n "$stopped" -a "${unmounted:-0}" -lt "${stopped:-0}"
	check "the server's own log of that shutdown is in the journal" grep -q 'stopped' <<<"$(journalctl -b -1 -u "$unit" -o cat --no-pager)"
	check "files from before the reboot verify" verify_files "$mnt"
	check "files written just before the reboot verify" verify_files "$mnt/reboot"
	boot_files "$mnt/cut" 4
	note "fsync'd; cutting power"
	pass "files fsync'd before the power cut"
	touch "$RESULTS/cut-now"
	sleep 600
	;;
cut)
	uuid=$(pmem-stack info /dev/pmem0 --json | jq -r .uuid)
	link=/dev/disk/by-id/pmem-stack-$uuid
	expect_eq "the unit serves after the power cut" "$(systemctl is-active "$unit")" active
	expect_eq "the file system is mounted after the power cut" "$(systemctl is-active "$mount_unit")" active
	# fstab's pass 2: systemd-fsck@ replays the journal before the mount
	# (else the kernel would, at mount).
	dev=$(basename "$(readlink -f "$link")")
	check "the boot replayed ext4's journal (fsck before the mount)" \
		grep -q "/dev/$dev: recovering journal" <<<"$(journalctl -b -o cat --no-pager -t systemd-fsck)"
	check "the boot's fsck found it clean" grep -q "/dev/$dev: clean" <<<"$(journalctl -b -o cat --no-pager -t systemd-fsck)"
	for d in "$mnt" "$mnt/reboot" "$mnt/cut"; do
		check "fsync'd files verify: $d" verify_files "$d"
	done
	check "systemctl stop $mount_unit" systemctl stop "$mount_unit"
	check "fsck -n clean" fsck.ext4 -fn "$link"
	check "systemctl stop $unit" systemctl stop "$unit"
	expect_eq "the device is gone" "$(ublk_count)" 0
	;;
*) fail "unknown PHASE '$PHASE'" ;;
esac
finish
