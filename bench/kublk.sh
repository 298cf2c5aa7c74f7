#!/bin/bash
# Build kublk, the kernel's own ublk server (tools/testing/selftests/ublk of
# the kernel source), as a peer for bench/run. Prints the binary's path.
#
#   bench/kublk.sh          # build once, cached; prints target/bench/kublk/<key>/kublk
#
# Where it comes from, all from Debian's archive (the mirror tests/vm/setup.sh
# uses, with a private apt configuration: the host's sources are not touched):
# - the source of the guest suite's current kernel: linux-source-X.Y from
#   trixie-backports, the same version as the kernel (7.3.4 for 7.3.4+deb13).
#   6.12's source has no kublk (it arrived in 6.15): the newer tree's kublk
#   serves both kernels, and asks each kernel only for what it offers.
# - liburing 2.9 from trixie (bookworm's 2.3 lacks what kublk uses), unpacked
#   with dpkg -x and linked statically, so the binary runs on the host's
#   userland, which the guest borrows.
# The kernel tree's uapi headers (ublk_cmd.h, io_uring.h and io_uring/, blkdev.h, fs.h) go
# ahead of the host's; kublk is compiled with gcc -O2 -D_GNU_SOURCE, all its
# .c files but the standalone utilities, as its Makefile does.
#
# Cache: target/bench/kublk/<source version>+liburing<version>/ (the binary,
# build.log, and the sources it was built from); nothing is fetched when the
# binary for the current kernel's source is there.
# Exit: 0 built (or cached); 1 a step failed (it says which, with the log).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VM_DIR=$REPO/target/vm
ROOT=$REPO/target/bench/kublk
APT=$ROOT/apt

die() {
	echo "bench/kublk.sh: FAILED: $*" >&2
	exit 1
}
log() { echo "bench/kublk.sh: $*" >&2; }

[ -f "$VM_DIR/current/kernel.env" ] ||
	die "$VM_DIR/current/kernel.env missing: run scripts/setup (tests/vm/setup.sh) first"
kver=$(sed -n 's/^VM_KERNEL_VERSION=//p' "$VM_DIR/current/kernel.env")
[[ $kver =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)\+deb13-amd64$ ]] ||
	die "unexpected current kernel version '$kver' in $VM_DIR/current/kernel.env"
series=${BASH_REMATCH[1]}.${BASH_REMATCH[2]}
upstream=${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}
srcpkg=linux-source-$series

# The mirror setup.sh fetched the kernels from.
mirror=$(awk '$1 == "deb" {print $2; exit}' "$VM_DIR/apt-trixie-backports/sources.list" 2>/dev/null || true)
[ -n "$mirror" ] || die "no trixie-backports mirror recorded in $VM_DIR/apt-trixie-backports/sources.list: run scripts/setup first"

aptq() { # apt-get|apt-cache ARGS: the private trixie + trixie-backports configuration
	local tool=$1
	shift
	"$tool" -o Dir::Etc::sourcelist="$APT/sources.list" -o Dir::Etc::sourceparts=- \
		-o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache" \
		-o APT::Sandbox::User=root "$@"
}
candidate() { # PACKAGE: its candidate version, or nothing
	aptq apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" && $2 != "(none)" {print $2}'
}

# Cached: a build for this kernel's source exists (the key names the source
# version, which starts with the kernel's upstream version).
cached=$({ find "$ROOT" -mindepth 2 -maxdepth 2 -name kublk -path "*/$upstream-*" -not -path '*.tmp/*' 2>/dev/null || true; } |
	sort -V | tail -n 1)
if [ -n "$cached" ] && [ -x "$cached" ]; then
	echo "$cached"
	exit 0
fi

mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
printf 'deb %s trixie main\ndeb %s trixie-backports main\n' "$mirror" "$mirror" >"$APT/sources.list"
log "apt-get update (private list: trixie, trixie-backports from $mirror)"
DEBIAN_FRONTEND=noninteractive aptq apt-get update -q >"$APT/update.log" 2>&1 ||
	die "apt-get update failed: $(tail -5 "$APT/update.log" | tr '\n' ' ')"
srcver=$(candidate "$srcpkg")
uringver=$(candidate liburing-dev)
[ -n "$srcver" ] || die "$srcpkg is not in trixie-backports (the current kernel is $kver)"
[ -n "$uringver" ] || die "liburing-dev is not in trixie"
[[ $srcver == "$upstream"-* ]] ||
	die "$srcpkg is at $srcver, not the kernel's $upstream: run scripts/setup with PMEM_STACK_VM_KERNEL_REFRESH=1 to move the kernel along"
key=$srcver+liburing$uringver
OUT=$ROOT/${key//[~:]/_}
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp/dl" "$OUT.tmp/liburing" "$OUT.tmp/include/linux"

log "apt-get download $srcpkg=$srcver liburing-dev=$uringver (~150 MiB)"
(cd "$OUT.tmp/dl" && aptq apt-get download -q "$srcpkg=$srcver" "liburing-dev=$uringver") \
	>"$OUT.tmp/download.log" 2>&1 || die "apt-get download failed: $(tail -5 "$OUT.tmp/download.log" | tr '\n' ' ')"
dpkg -x "$OUT.tmp"/dl/liburing-dev_*.deb "$OUT.tmp/liburing" || die "dpkg -x liburing-dev failed"
uring_a=$(find "$OUT.tmp/liburing" -name liburing.a | head -n 1)
[ -n "$uring_a" ] || die "liburing-dev $uringver has no liburing.a"

# Only the parts of the tree kublk needs: its directory and four uapi headers.
log "unpacking tools/testing/selftests/ublk and the uapi headers from $srcpkg"
tarball=usr/src/linux-source-$series.tar.xz
dpkg-deb --fsys-tarfile "$OUT.tmp"/dl/"${srcpkg}"_*.deb | tar -x -C "$OUT.tmp" "./$tarball" ||
	die "$srcpkg has no $tarball"
top=linux-source-$series
uapi=$top/include/uapi/linux
tar -xJf "$OUT.tmp/$tarball" -C "$OUT.tmp" --wildcards "$top/tools/testing/selftests/ublk" \
	"$uapi/ublk_cmd.h" "$uapi/io_uring.h" "$uapi/io_uring/*" "$uapi/blkdev.h" "$uapi/fs.h" ||
	die "the kernel tree in $tarball lacks kublk or its headers (kublk arrived in 6.15)"
rm -rf "$OUT.tmp/usr" "$OUT.tmp/dl"
# io_uring.h includes its own directory's headers (linux/io_uring/*.h).
cp -r "$OUT.tmp/$uapi"/{ublk_cmd.h,io_uring.h,io_uring,blkdev.h,fs.h} "$OUT.tmp/include/linux/"

src=$OUT.tmp/$top/tools/testing/selftests/ublk
mapfile -t sources < <(find "$src" -maxdepth 1 -name '*.c' ! -name metadata_size.c | sort)
[ "${#sources[@]}" -gt 0 ] || die "no kublk sources in $src"
log "gcc: ${sources[*]##*/}"
# -I order: the tree's uapi headers, then liburing 2.9's, then the host's.
gcc -O2 -D_GNU_SOURCE -Wall -I "$OUT.tmp/include" -I "$OUT.tmp/liburing/usr/include" \
	-o "$OUT.tmp/kublk" "${sources[@]}" "$uring_a" -lpthread -lm >"$OUT.tmp/build.log" 2>&1 ||
	die "gcc failed: $(grep -m5 'error' "$OUT.tmp/build.log" | tr '\n' ' ') (log: $OUT.tmp/build.log)"
"$OUT.tmp/kublk" help >/dev/null 2>&1 || die "the built kublk does not run on the host ($OUT.tmp/kublk help)"
rm -rf "$OUT"
mv "$OUT.tmp" "$OUT"
log "built $OUT/kublk (source $srcpkg $srcver, liburing $uringver)"
echo "$OUT/kublk"
