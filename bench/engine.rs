//! The I/O engine against its ideal peer, measured side by side in one run.
//!
//! Host-only (no ublk, no pmem): the data area is mapped from an image file in
//! cargo's target tmp directory, exactly as `pmem-stack add IMAGE` maps it.
//!
//! | group            | engine                                       | peer (the ideal)                                 |
//! |------------------|----------------------------------------------|--------------------------------------------------|
//! | `read/S`         | `Engine::execute(READ)` into a buffer         | `copy_nonoverlapping` mapping → buffer            |
//! | `write/S`        | `Engine::execute(WRITE)` from a buffer        | `copy_nonoverlapping` buffer → mapping            |
//! | `write_fua/4KiB` | `Engine::execute(WRITE, fua)`                 | copy + `msync` of the same 4 KiB                  |
//! | `flush/Nx4KiB`   | `Engine::flush()` after N dirty 4 KiB writes  | `msync` of the same span after the same N copies  |
//! | `flush/clean`    | `Engine::flush()` with nothing dirty          | `msync` of the whole data area, nothing dirty     |
//!
//! S is 4 KiB, 64 KiB and 512 KiB; offsets rotate through a 16 MiB working set
//! (the same sequence for engine and peer); buffers are page aligned on both
//! sides. The peer maps the same file with its own `memmap2` mapping, so both
//! copy between the same page-cache pages and a buffer.
//!
//! After criterion, an engine/peer table is printed (and written to
//! `<criterion dir>/engine-ratios.txt`): the ratio of criterion's medians, and
//! a paired ratio from interleaved ~2 ms blocks of engine and peer work, which
//! drift on a shared host cannot skew. Only benchmarks run by this process are
//! used, never stale results. See `bench/README.md`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use memmap2::{MmapOptions, MmapRaw};
use pmem_stack::backing::{Access, Backing, MediaRange};
use pmem_stack::engine::{Engine, Op, Request, Transfer};
use pmem_stack::format::{Alignment, Geometry, LogicalBlockSize, ReserveMode};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// Size of the image file (the "namespace").
const IMAGE_SIZE: u64 = 64 * MIB;
/// Offsets of read/write requests rotate through this much of the data area.
const WORKING_SET: u64 = 16 * MIB;
/// Request sizes for the copy benchmarks.
const SIZES: [(&str, u64); 3] = [
    ("4KiB", 4 * KIB),
    ("64KiB", 64 * KIB),
    ("512KiB", 512 * KIB),
];
/// Dirty 4 KiB pages before a flush, and the distance between them.
const DIRTY_COUNTS: [u64; 3] = [1, 16, 256];
const DIRTY_STRIDE: u64 = 64 * KIB;
const PAGE: u64 = 4 * KIB;

/// Benchmarks this process actually ran (a filter on the command line skips
/// some; their old results on disk must not end up in the ratio table).
static RAN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn ran(id: String) {
    RAN.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id);
}

/// A request buffer in memory: what user copy does with `/dev/ublkcN`, minus
/// the syscall.
struct VecTransfer {
    buf: Buffer,
}

fn too_long() -> io::Error {
    io::Error::other("request longer than the transfer buffer")
}

impl Transfer for VecTransfer {
    fn deliver(&mut self, src: &MediaRange<'_>) -> io::Result<()> {
        let dst = self
            .buf
            .as_mut_slice()
            .get_mut(..src.len())
            .ok_or_else(too_long)?;
        src.read_into(dst)
    }

    fn fetch(&mut self, dst: &MediaRange<'_>) -> io::Result<()> {
        let src = self.buf.as_slice().get(..dst.len()).ok_or_else(too_long)?;
        dst.write_from(src)
    }
}

/// One image file, seen by the engine (through `Backing`) and by the peer
/// (through its own mapping of the whole file).
struct Fixture {
    _image: tempfile::NamedTempFile,
    engine: Engine,
    peer: MmapRaw,
    /// Byte offset of the data area in the file (and so in `peer`).
    data_offset: u64,
    data_size: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let image = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create the image file in the target tmp directory");
        // Real blocks, not holes: a first write into a hole would allocate.
        let fill = vec![0x5Au8; usize::try_from(IMAGE_SIZE).expect("64 MiB fits a usize")];
        std::fs::write(image.path(), &fill).expect("fill the image");
        image.as_file().sync_all().expect("fsync the image");
        let geometry = Geometry::derive(
            IMAGE_SIZE,
            Alignment::M2,
            LogicalBlockSize::B512,
            ReserveMode::Hypervisor,
            2 * MIB,
        )
        .expect("a valid geometry for a 64 MiB image");
        assert!(geometry.data_size() >= WORKING_SET, "working set fits");
        assert!(
            DIRTY_COUNTS
                .iter()
                .all(|&n| n * DIRTY_STRIDE <= geometry.data_size()),
            "dirty pages fit"
        );
        let backing = Arc::new(Backing::open(image.path(), Access::Exclusive).expect("open"));
        let engine = Engine::new(backing, &geometry).expect("map the data area");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(image.path())
            .expect("open the image for the peer");
        let peer = MmapOptions::new()
            .len(usize::try_from(IMAGE_SIZE).expect("fits"))
            .map_raw(&file)
            .expect("peer mmap");
        Fixture {
            _image: image,
            engine,
            peer,
            data_offset: geometry.data_offset(),
            data_size: geometry.data_size(),
        }
    }

    /// Where data-area offset `offset` (+`len`) is in the peer's mapping.
    fn peer_ptr(&self, offset: u64, len: u64) -> *mut u8 {
        let at = self.data_offset + offset;
        assert!(
            offset + len <= self.data_size && at + len <= self.peer.len() as u64,
            "peer access {offset}+{len} outside the data area"
        );
        let at = usize::try_from(at).expect("inside a mapping, so fits a usize");
        // SAFETY: `at + len` lies inside the live mapping (asserted above), so
        // the offset pointer stays within the same allocation.
        unsafe { self.peer.as_mut_ptr().add(at) }
    }

    /// The peer's READ: mapping → buffer.
    fn peer_read(&self, offset: u64, dst: &mut [u8]) {
        let src = self.peer_ptr(offset, dst.len() as u64);
        // SAFETY: `src..src+len` is inside the live shared mapping (peer_ptr
        // checks), `dst` is an exclusively borrowed ordinary buffer of `len`
        // bytes, so the two cannot overlap. The mapping is never turned into
        // a reference, as in the engine.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    }

    /// The peer's WRITE: buffer → mapping.
    fn peer_write(&self, offset: u64, src: &[u8]) {
        let dst = self.peer_ptr(offset, src.len() as u64);
        // SAFETY: `dst..dst+len` is inside the live, writable shared mapping
        // (peer_ptr checks; mapped read-write); `src` is an ordinary buffer
        // that cannot overlap it.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    }

    /// The peer's FLUSH: `msync(MS_SYNC)` of data-area bytes `offset..+len`.
    fn peer_msync(&self, offset: u64, len: u64) {
        let _bounds_checked = self.peer_ptr(offset, len);
        let at = usize::try_from(self.data_offset + offset).expect("fits");
        let len = usize::try_from(len).expect("fits");
        self.peer.flush_range(at, len).expect("msync");
    }

    /// Write back everything either side left dirty, so that one group's
    /// leftovers are not flushed (and timed) by the next.
    fn settle(&self) {
        self.engine.flush().expect("engine flush");
        self.peer.flush().expect("msync of the whole file");
    }
}

fn request(op: Op, offset: u64, len: u64) -> Request {
    Request { op, offset, len }
}

/// Offsets `0, len, 2·len, …` wrapping inside the working set.
struct Rotor {
    next: u64,
    step: u64,
}

impl Rotor {
    fn new(step: u64) -> Rotor {
        Rotor { next: 0, step }
    }

    fn next(&mut self) -> u64 {
        let at = self.next;
        self.next = (self.next + self.step) % WORKING_SET;
        at
    }
}

/// A page-aligned request buffer, as the kernel's request pages are. Both
/// sides get one, so neither wins by the luck of where `malloc` put its
/// buffer (source/destination alignment changes the speed of a copy).
struct Buffer {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Buffer {
    fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

fn buffer(len: u64) -> Buffer {
    let len = usize::try_from(len).expect("request sizes fit a usize");
    let page = usize::try_from(PAGE).expect("fits");
    let raw = vec![0xC3; len + page];
    let start = raw.as_ptr().align_offset(page);
    assert!(start + len <= raw.len(), "aligned buffer fits");
    Buffer { raw, start, len }
}

/// Runs `n` operations and returns the time they took (setup excluded).
type Run<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

/// One engine-vs-peer comparison.
struct Pair<'a> {
    group: &'static str,
    label: String,
    bytes: Option<u64>,
    engine: Run<'a>,
    peer: Run<'a>,
}

fn timed(n: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    start.elapsed()
}

/// READ and WRITE of each size: one copy each, the engine adds its request
/// handling (bounds check, dispatch, counters, dirty tracking).
fn copy_pairs(f: &Fixture) -> Vec<Pair<'_>> {
    let mut pairs = Vec::new();
    for (group, write) in [("read", false), ("write", true)] {
        for (label, len) in SIZES {
            let op = if write {
                Op::Write { fua: false }
            } else {
                Op::Read
            };
            let mut xfer = VecTransfer { buf: buffer(len) };
            let mut engine_at = Rotor::new(len);
            let mut buf = buffer(len);
            let mut peer_at = Rotor::new(len);
            pairs.push(Pair {
                group,
                label: label.to_string(),
                bytes: Some(len),
                engine: Box::new(move |n| {
                    timed(n, || {
                        let req = request(op, engine_at.next(), len);
                        black_box(f.engine.execute(black_box(&req), &mut xfer)).expect("execute");
                    })
                }),
                peer: Box::new(move |n| {
                    timed(n, || {
                        let offset = black_box(peer_at.next());
                        if write {
                            f.peer_write(offset, buf.as_slice());
                        } else {
                            f.peer_read(offset, buf.as_mut_slice());
                        }
                        black_box(buf.as_mut_slice());
                    })
                }),
            });
        }
    }
    pairs
}

/// FUA writes, FLUSH after N dirty pages, and FLUSH with nothing dirty.
fn durability_pairs(f: &Fixture) -> Vec<Pair<'_>> {
    let mut pairs = Vec::new();
    // FUA: copy + write-back of that one page, every time.
    {
        let mut xfer = VecTransfer { buf: buffer(PAGE) };
        let mut engine_at = Rotor::new(PAGE);
        let buf = buffer(PAGE);
        let mut peer_at = Rotor::new(PAGE);
        pairs.push(Pair {
            group: "write_fua",
            label: "4KiB".to_string(),
            bytes: Some(PAGE),
            engine: Box::new(move |n| {
                timed(n, || {
                    let req = request(Op::Write { fua: true }, engine_at.next(), PAGE);
                    f.engine.execute(&req, &mut xfer).expect("fua write");
                })
            }),
            peer: Box::new(move |n| {
                timed(n, || {
                    let offset = peer_at.next();
                    f.peer_write(offset, buf.as_slice());
                    f.peer_msync(offset, PAGE);
                })
            }),
        });
    }
    // FLUSH after N dirty pages: only the flush is timed; the N writes before
    // each one (through the engine for the engine, plain copies for the peer,
    // at the same offsets) are not.
    for count in DIRTY_COUNTS {
        let span = (count - 1) * DIRTY_STRIDE + PAGE;
        let mut xfer = VecTransfer { buf: buffer(PAGE) };
        let buf = buffer(PAGE);
        pairs.push(Pair {
            group: "flush",
            label: format!("{count}x4KiB"),
            bytes: None,
            engine: Box::new(move |n| {
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    for i in 0..count {
                        let req = request(Op::Write { fua: false }, i * DIRTY_STRIDE, PAGE);
                        f.engine.execute(&req, &mut xfer).expect("write");
                    }
                    total += timed(1, || f.engine.flush().expect("flush"));
                }
                total
            }),
            peer: Box::new(move |n| {
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    for i in 0..count {
                        f.peer_write(i * DIRTY_STRIDE, buf.as_slice());
                    }
                    total += timed(1, || f.peer_msync(0, span));
                }
                total
            }),
        });
    }
    // Nothing dirty: the engine knows and does nothing; msync still walks the
    // range and asks the file system to sync (on ext4: a disk cache flush).
    pairs.push(Pair {
        group: "flush",
        label: "clean".to_string(),
        bytes: None,
        engine: Box::new(move |n| timed(n, || f.engine.flush().expect("flush"))),
        peer: Box::new(move |n| timed(n, || f.peer_msync(0, f.data_size))),
    });
    pairs
}

/// Criterion settings per group: the copies are fast and many; a durability
/// operation is a disk round trip, so fewer, flat samples.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, name: &str) {
    if name == "read" || name == "write" {
        group
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(600))
            .sample_size(20);
    } else {
        group
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800))
            .sample_size(10);
    }
}

fn run_criterion(c: &mut Criterion, f: &Fixture, pairs: &mut [Pair<'_>]) {
    let mut i = 0;
    while i < pairs.len() {
        let name = pairs[i].group;
        let mut group = c.benchmark_group(name);
        configure(&mut group, name);
        while i < pairs.len() && pairs[i].group == name {
            let pair = &mut pairs[i];
            if let Some(bytes) = pair.bytes {
                group.throughput(Throughput::Bytes(bytes));
            }
            for (side, run) in [("engine", &mut pair.engine), ("peer", &mut pair.peer)] {
                let id = format!("{name}/{side}/{}", pair.label);
                group.bench_function(BenchmarkId::new(side, &pair.label), |b| {
                    ran(id.clone());
                    b.iter_custom(&mut **run);
                });
            }
            i += 1;
        }
        group.finish();
        // One group's dirty pages must not be written back (and timed) by
        // the next.
        f.settle();
    }
}

/// Interleaved engine/peer blocks of ~2 ms, alternating which goes first, so
/// that drift on a shared host hits both sides alike: the median and the
/// quartiles of the per-round ratios engine/peer.
fn paired_ratio(f: &Fixture, pair: &mut Pair<'_>) -> (f64, f64, f64) {
    const ROUNDS: usize = 41;
    let mut n = 1u64;
    while n < (1 << 24) && (pair.engine)(n) < Duration::from_millis(2) {
        n *= 2;
    }
    f.settle();
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            let (e, p) = if round % 2 == 0 {
                let e = (pair.engine)(n);
                (e, (pair.peer)(n))
            } else {
                let p = (pair.peer)(n);
                ((pair.engine)(n), p)
            };
            e.as_secs_f64() / p.as_secs_f64().max(1e-12)
        })
        .collect();
    f.settle();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[ROUNDS / 2],
        ratios[ROUNDS / 4],
        ratios[ROUNDS - 1 - ROUNDS / 4],
    )
}

/// Criterion's median for one benchmark, in nanoseconds, if this process
/// wrote it.
fn median_ns(dir: &Path, id: &str, started: SystemTime) -> Option<f64> {
    let path = dir.join(id).join("new").join("estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= started);
    if !fresh {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Print (and save) engine/peer for every pair this process measured: the
/// ratio of criterion's medians and the interleaved (paired) ratio.
fn ratio_table(f: &Fixture, pairs: &mut [Pair<'_>], dir: &Path, started: SystemTime) {
    let ran = RAN.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nengine / peer (< 1.00: the engine is faster). 'paired' = median of 41 interleaved\n\
         rounds of ~2 ms each side [quartiles]; 'criterion' = ratio of the two medians."
    );
    let _ = writeln!(
        out,
        "{:<10} {:<9} {:>11} {:>11} {:>10} {:>7} {:>13}",
        "group", "size", "engine", "peer", "criterion", "paired", "[p25, p75]"
    );
    let mut rows = 0;
    for pair in pairs.iter_mut() {
        let engine_id = format!("{}/engine/{}", pair.group, pair.label);
        let peer_id = format!("{}/peer/{}", pair.group, pair.label);
        if !(ran.contains(&engine_id) && ran.contains(&peer_id)) {
            continue; // filtered out on the command line
        }
        let (Some(e), Some(p)) = (
            median_ns(dir, &engine_id, started),
            median_ns(dir, &peer_id, started),
        ) else {
            continue;
        };
        let (median, p25, p75) = paired_ratio(f, pair);
        rows += 1;
        let _ = writeln!(
            out,
            "{:<10} {:<9} {:>11} {:>11} {:>10.2} {:>7.2} {:>13}",
            pair.group,
            pair.label,
            human(e),
            human(p),
            e / p,
            median,
            format!("[{p25:.2}, {p75:.2}]")
        );
    }
    if rows == 0 {
        return;
    }
    print!("{out}");
    let saved = dir.join("engine-ratios.txt");
    match std::fs::File::create(&saved).and_then(|mut file| file.write_all(out.as_bytes())) {
        Ok(()) => println!("(saved to {})", saved.display()),
        Err(err) => eprintln!("could not save {}: {err}", saved.display()),
    }
}

/// Where criterion keeps its results: `$CRITERION_HOME`, else
/// `<target>/criterion` (cargo's target tmp dir is `<target>/tmp`).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("criterion")
}

fn main() {
    let started = SystemTime::now();
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .without_plots()
        .nresamples(20_000)
        .configure_from_args();
    let fixture = Fixture::new();
    let mut pairs = copy_pairs(&fixture);
    pairs.extend(durability_pairs(&fixture));
    run_criterion(&mut c, &fixture, &mut pairs);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` runs every
    // benchmark once as a smoke test and records nothing to compare.
    if std::env::args().any(|arg| arg == "--bench") {
        ratio_table(&fixture, &mut pairs, &dir, started);
    }
}
