#!/bin/bash
# Guest scenario: the README's user stories, run as shown. Every fenced block
# preceded by "<!-- story: NAME -->" in README.md is extracted and run with
# bash -euo pipefail, on a blank /dev/pmem0, one story after another.
#
# The guest's root is the host's, read-only, and systemd is not PID 1 here,
# so (as the README says) before the stories run: /etc is a writable copy,
# /usr/local/sbin, /usr/local/share and /srv are tmpfs, udevd runs, and
# `systemctl` is a stand-in: `enable --now pmem-stack@X.service` runs the
# installed unit's ExecStart= (with %f = the unescaped path) under a
# NOTIFY_SOCKET, restarting it on a non-zero exit as Restart=on-failure and
# RestartForceExitStatus=75 do, and returns once READY=1 arrived; `stop`
# sends SIGTERM and waits.
source "$PMEM_STACK_REPO/tests/guest/lib.sh"

require test -b /dev/pmem0
require command -v jq
require test -x /lib/systemd/systemd-udevd
require command -v systemd-escape

cp -a /etc /tmp/etc && mount --bind /tmp/etc /etc
for d in /usr/local/sbin /usr/local/share /srv; do mount -t tmpfs none "$d"; done
mkdir -p /run/udev
/lib/systemd/systemd-udevd --daemon
require udevadm control --ping

bin=/tmp/storybin shim=/tmp/storyshim
mkdir -p "$bin" "$shim"
ln -s "$P" "$bin/pmem-stack"
cat >"$shim/systemctl" <<'SHIM'
#!/bin/bash
# A stand-in for systemctl in the test guest (see tests/guest/stories.sh).
set -euo pipefail
state=/run/systemctl-shim
mkdir -p "$state"
unit_of() { case $1 in *.service) echo "$1" ;; *) echo "$1.service" ;; esac; }
exec_start() { # the installed template's ExecStart with %f filled in
	local unit=$1 template inst path
	template=/etc/systemd/system/${unit%%@*}@.service
	inst=${unit#*@}; inst=${inst%.service}
	path=$(systemd-escape --unescape --path "$inst")
	grep -m1 '^ExecStart=' "$template" | cut -d= -f2- | sed "s|%f|$path|g"
}
start() {
	local unit cmd
	unit=$(unit_of "$1")
	cmd=$(exec_start "$unit")
	rm -f "$state/$unit.sock" "$state/$unit.notify"
	# Everything left running is detached from the caller's output (a story
	# runs inside $(...), which waits for its pipe to close).
	python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    m = s.recv(4096).decode()
    with open(sys.argv[2], "a") as f:
        f.write(m.replace("\n", "|") + "\n")
' "$state/$unit.sock" "$state/$unit.notify" </dev/null >/dev/null 2>&1 &
	echo $! >"$state/$unit.listener"
	for _ in $(seq 100); do [ -S "$state/$unit.sock" ] && break; sleep 0.05; done
	( # Restart=on-failure, RestartForceExitStatus=75
		for _ in 1 2 3 4 5; do
			rc=0
			NOTIFY_SOCKET=$state/$unit.sock $cmd >>"$state/$unit.log" 2>&1 &
			echo $! >"$state/$unit.pid"
			wait $! || rc=$?
			echo "exit $rc" >>"$state/$unit.log"
			[ "$rc" -ne 0 ] || break
			[ ! -e "$state/$unit.stopping" ] || break
			sleep 1
		done
	) </dev/null >/dev/null 2>&1 &
	echo $! >"$state/$unit.supervisor"
	for _ in $(seq 600); do
		grep -q '^READY=1' "$state/$unit.notify" 2>/dev/null && return 0
		kill -0 "$(cat "$state/$unit.supervisor")" 2>/dev/null || break
		sleep 0.05
	done
	echo "systemctl (stand-in): $unit did not become ready:" >&2
	tail -5 "$state/$unit.log" >&2
	return 1
}
stop() {
	local unit
	unit=$(unit_of "$1")
	touch "$state/$unit.stopping"
	kill -TERM "$(cat "$state/$unit.pid")"
	for _ in $(seq 600); do
		kill -0 "$(cat "$state/$unit.supervisor")" 2>/dev/null || break
		sleep 0.05
	done
	kill "$(cat "$state/$unit.listener")" 2>/dev/null || true
	grep -q '^STOPPING=1' "$state/$unit.notify"
}
case ${1:-} in
enable) [ "${2:-}" == --now ] || exit 0; start "$3" ;;
start) start "$2" ;;
stop) stop "$2" ;;
daemon-reload) ;;
*) echo "systemctl (stand-in): unsupported: $*" >&2; exit 1 ;;
esac
SHIM
chmod +x "$shim/systemctl"
# The stand-in before the real systemctl; pmem-stack after /usr/local/sbin,
# so the installed one wins once the fstab story has run scripts/install.
export PATH=$shim:$PATH:$bin

blank() { # wipe both super block copies: a blank namespace for each story
	local size
	size=$(blockdev --getsize64 /dev/pmem0)
	dd if=/dev/zero of=/dev/pmem0 bs=1M count=4 conv=fsync status=none
	dd if=/dev/zero of=/dev/pmem0 bs=1M seek=$((size / 1048576 - 4)) count=4 conv=fsync status=none
}

stories=$(grep -o '<!-- story: [a-z0-9-]* -->' "$PMEM_STACK_REPO/README.md" | awk '{print $3}')
expect_eq "the README has the four stories' blocks (nvmeof is its own scenario)" "$(echo $stories)" "xen fstab fio"
for story in $stories; do
	awk -v tag="<!-- story: $story -->" '
		$0 == tag { armed = 1; next }
		armed && /^```sh$/ { inside = 1; next }
		inside && /^```$/ { exit }
		inside { print }' "$PMEM_STACK_REPO/README.md" >"/tmp/story-$story.sh"
	blank
	note "story $story: $(wc -l <"/tmp/story-$story.sh") lines"
	if out=$(bash -euo pipefail -x "/tmp/story-$story.sh" 2>&1); then
		pass "story $story runs as shown"
	else
		fail "story $story: $(echo "$out" | tail -8 | tr '\n' ' ')"
	fi
	echo "$out" >"$RESULTS/story-$story.log"
	case $story in
	fstab) expect_eq "story fstab: the file came back after restart" "$(echo "$out" | grep -x hello || true)" hello ;;
	fio)
		# /dev/pmem0 writes through on every kernel: the kernel answers
		# fio's fsyncs, and the writes show.
		check "story fio: the counters show fio's writes" test "$(echo "$out" | grep -o '"writes": [0-9]*' | awk '{print $2}')" -gt 0
		;;
	esac
	expect_eq "story $story leaves no device behind" "$(ublk_count)" 0
done
udevadm control --exit || true

finish
