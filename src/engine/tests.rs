//! The engine's tests: requests over a mapping (and a faulty medium), dirty
//! tracking and flush, write-through, and properties over arbitrary requests.

use super::*;
use crate::backing::Access;

/// A request buffer in memory.
struct VecTransfer(Vec<u8>);

impl Transfer for VecTransfer {
    fn deliver(&mut self, src: &MediaRange<'_>) -> io::Result<()> {
        self.0.resize(src.len(), 0);
        src.read_into(&mut self.0)
    }
    fn fetch(&mut self, dst: &MediaRange<'_>) -> io::Result<()> {
        dst.write_from(&self.0)
    }
}

struct Fixture<M: Media = DataArea> {
    image: tempfile::NamedTempFile,
    geometry: Geometry,
    engine: Engine<M>,
}

/// A medium whose write-back fails while `failing` is set, and which
/// records every range it really made durable.
#[derive(Debug)]
struct Faulty {
    inner: DataArea,
    failing: AtomicBool,
    durable: Mutex<Vec<(u64, u64)>>,
}

impl Faulty {
    fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
    fn durable(&self) -> Vec<(u64, u64)> {
        self.durable.lock().expect("lock").clone()
    }
    /// Whether any durable range overlaps `offset..offset+len`.
    fn made_durable(&self, offset: u64, len: u64) -> bool {
        self.durable()
            .iter()
            .any(|&(o, l)| o < offset + len && offset < o + l)
    }
}

impl Media for Faulty {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn range(&self, offset: u64, len: u64) -> Result<MediaRange<'_>, OutOfWindow> {
        Media::range(&self.inner, offset, len)
    }
    fn persistence(&self) -> Persistence {
        Media::persistence(&self.inner)
    }
    fn persist(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Media::persist(&self.inner, offset, len)?;
        self.durable.lock().expect("lock").push((offset, len));
        Ok(())
    }
    fn zero_below(&self, offset: u64, len: u64, discard: bool) -> Result<bool, BackingError> {
        Media::zero_below(&self.inner, offset, len, discard)
    }
    fn sync_all(&self) -> Result<(), BackingError> {
        Media::sync_all(&self.inner)
    }
}

fn faulty_fixture() -> Fixture<Faulty> {
    let Fixture {
        image,
        geometry,
        engine,
    } = fixture();
    drop(engine);
    let backing = Arc::new(Backing::open(image.path(), Access::Exclusive).expect("open"));
    let inner = DataArea::map(backing, geometry.data_offset(), geometry.data_size()).expect("map");
    Fixture {
        image,
        geometry,
        engine: Engine::with_media(Faulty {
            inner,
            failing: AtomicBool::new(false),
            durable: Mutex::new(Vec::new()),
        }),
    }
}

fn fixture() -> Fixture {
    let (image, geometry, backing) = test_image();
    let engine = Engine::new(backing, &geometry).expect("engine");
    Fixture {
        image,
        geometry,
        engine,
    }
}

fn read<M: Media>(e: &Engine<M>, offset: u64, len: u64) -> Result<Vec<u8>, IoError> {
    let mut t = VecTransfer(Vec::new());
    e.execute(
        &Request {
            op: Op::Read,
            offset,
            len,
        },
        &mut t,
    )?;
    Ok(t.0)
}

fn write<M: Media>(e: &Engine<M>, offset: u64, data: &[u8], fua: bool) -> Result<u64, IoError> {
    e.execute(
        &Request {
            op: Op::Write { fua },
            offset,
            len: data.len() as u64,
        },
        &mut VecTransfer(data.to_vec()),
    )
}

#[test]
fn write_then_read_round_trips_at_the_data_offset() {
    let f = fixture();
    let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(write(&f.engine, 4096, &data, false).expect("write"), 8192);
    assert_eq!(read(&f.engine, 4096, 8192).expect("read"), data);
    f.engine.flush().expect("flush");
    let on_disk = std::fs::read(f.image.path()).expect("read image");
    let at = usize::try_from(f.geometry.data_offset() + 4096).expect("small");
    assert_eq!(&on_disk[at..at + 8192], &data[..]);
}

#[test]
fn reserve_and_super_blocks_are_never_touched() {
    let f = fixture();
    let size = f.engine.size();
    // Fill the whole data area, then zero it, then try to go past the ends.
    write(
        &f.engine,
        0,
        &vec![0x11; usize::try_from(size).expect("small")],
        false,
    )
    .expect("write all");
    f.engine
        .execute(
            &Request {
                op: Op::WriteZeroes,
                offset: 0,
                len: size,
            },
            &mut VecTransfer(vec![]),
        )
        .expect("zero all");
    for (offset, len) in [(size, 512), (size - 512, 1024), (u64::MAX - 100, 512)] {
        let err = write(
            &f.engine,
            offset,
            &vec![0x22; usize::try_from(len).expect("small")],
            false,
        )
        .expect_err("outside");
        assert_eq!(err.errno(), libc::EIO);
        assert!(read(&f.engine, offset, len).is_err());
    }
    f.engine.shutdown_flush().expect("flush");
    let on_disk = std::fs::read(f.image.path()).expect("read image");
    let g = f.geometry;
    let data = usize::try_from(g.data_offset()).expect("small")
        ..usize::try_from(g.data_end()).expect("small");
    for (i, b) in on_disk.iter().enumerate() {
        if data.contains(&i) {
            assert_eq!(*b, 0, "data byte {i}");
        } else {
            assert_eq!(*b, 0xEE, "byte {i} outside the data area was changed");
        }
    }
}

#[test]
fn discard_and_write_zeroes_read_back_as_zeros() {
    let f = fixture();
    write(&f.engine, 0, &[0xAB; 65536], false).expect("write");
    for op in [Op::Discard, Op::WriteZeroes] {
        write(&f.engine, 0, &[0xAB; 65536], false).expect("write");
        f.engine
            .execute(
                &Request {
                    op,
                    offset: 4096,
                    len: 8192,
                },
                &mut VecTransfer(vec![]),
            )
            .expect("zero");
        let back = read(&f.engine, 0, 16384).expect("read");
        assert!(back[..4096].iter().all(|&b| b == 0xAB));
        assert!(back[4096..12288].iter().all(|&b| b == 0), "{op:?}");
        assert!(back[12288..].iter().all(|&b| b == 0xAB));
    }
}

#[test]
fn flush_takes_the_dirty_set_and_skips_when_clean() {
    let f = fixture();
    f.engine.flush().expect("clean flush");
    assert_eq!(f.engine.stats().empty_flushes.load(Ordering::Relaxed), 1);
    write(&f.engine, 0, &[1; 512], false).expect("write");
    f.engine
        .execute(
            &Request {
                op: Op::Flush,
                offset: 0,
                len: 0,
            },
            &mut VecTransfer(vec![]),
        )
        .expect("flush");
    assert_eq!(f.engine.stats().empty_flushes.load(Ordering::Relaxed), 1);
    assert_eq!(f.engine.dirty.take(), vec![]);
    // FUA writes persist at once and leave nothing dirty.
    write(&f.engine, 8192, &[2; 512], true).expect("fua");
    assert_eq!(f.engine.dirty.take(), vec![]);
}

fn plan(e: &Engine, op: Op, offset: u64, len: u64) -> Result<direct::DirectOp, IoError> {
    e.plan_direct(&Request { op, offset, len })
}

#[test]
fn direct_plans_in_range_requests_and_refuses_others() {
    let f = fixture();
    let size = f.engine.size();
    assert_eq!(
        plan(&f.engine, Op::Read, 4096, 8192).expect("read"),
        direct::DirectOp::Read {
            at: 4096,
            len: 8192
        }
    );
    assert_eq!(
        plan(&f.engine, Op::Write { fua: true }, 0, 512).expect("fua"),
        direct::DirectOp::Write {
            at: 0,
            len: 512,
            fua: true
        }
    );
    let err = plan(&f.engine, Op::Read, size - 512, 1024).expect_err("past the end");
    assert_eq!(err.errno(), libc::EIO);
    assert!(plan(&f.engine, Op::Write { fua: false }, size, 512).is_err());
}

#[test]
fn direct_flush_is_skipped_only_when_nothing_can_be_pending() {
    use direct::DirectOp::{Done, Sync, Write};
    let f = fixture();
    let e = &f.engine;
    // Nothing is known at the start: the first flush syncs.
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("flush"), Sync);
    assert_eq!(e.direct_done(Sync, 0).expect("synced"), 0);
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("flush"), Done(0));
    // A completed write makes the next flush sync.
    let w = plan(e, Op::Write { fua: false }, 0, 4096).expect("write");
    assert_eq!(e.direct_done(w, 4096).expect("written"), 4096);
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("flush"), Sync);
    // While that sync is in flight, a flush may not rely on it.
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("second flush"), Sync);
    e.direct_done(Sync, 0).expect("first done");
    e.direct_done(Sync, 0).expect("second done");
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("flush"), Done(0));
    // A failed write is not a write that needs syncing, nor a latch.
    let w = Write {
        at: 0,
        len: 4096,
        fua: false,
    };
    assert_eq!(
        e.direct_done(w, -libc::EIO).expect_err("eio").errno(),
        libc::EIO
    );
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("not latched"), Done(0));
    // Zeroing counts as a write.
    assert_eq!(plan(e, Op::WriteZeroes, 0, 4096).expect("zeroes"), Done(0));
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("flush"), Sync);
    e.direct_done(Sync, 0).expect("done");
}

#[test]
fn mapped_write_through_persists_every_write_before_it_completes() {
    let mut f = fixture();
    f.engine.set_write_through(true);
    write(&f.engine, 4096, &[7; 4096], false).expect("write");
    assert_eq!(
        f.engine.dirty.take(),
        vec![],
        "persisted at once: nothing left for a FLUSH"
    );
    f.engine.flush().expect("flush");
    assert_eq!(f.engine.stats().empty_flushes.load(Ordering::Relaxed), 1);
}

#[test]
fn write_through_never_syncs_for_a_flush_and_never_latches() {
    use direct::DirectOp::{Done, Sync, Write};
    let mut f = fixture();
    f.engine.set_write_through(true);
    let e = &f.engine;
    // How each write becomes durable is the queue's (RWF_DSYNC alone,
    // else its group commit).
    let w = plan(e, Op::Write { fua: false }, 0, 4096).expect("write");
    assert_eq!(
        w,
        Write {
            at: 0,
            len: 4096,
            fua: false
        }
    );
    assert_eq!(e.direct_done(w, 4096).expect("written"), 4096);
    // So a FLUSH (which the kernel should not even send) has nothing to do.
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("flush"), Done(0));
    // Zeroing below the cache is synced before it completes.
    assert_eq!(plan(e, Op::WriteZeroes, 0, 4096).expect("zeroes"), Sync);
    assert_eq!(e.direct_done(Sync, 0).expect("synced"), 0);
    // A failed write fails alone: nothing was pending behind it.
    let w = plan(e, Op::Write { fua: true }, 0, 512).expect("fua");
    assert_eq!(
        e.direct_done(w, -libc::EIO).expect_err("eio").errno(),
        libc::EIO
    );
    assert!(plan(e, Op::Write { fua: true }, 0, 512).is_ok());
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("flush"), Done(0));
    assert_eq!(e.stats().flushes.load(Ordering::Relaxed), 2);
    assert_eq!(e.stats().empty_flushes.load(Ordering::Relaxed), 2);
}

#[test]
fn a_failed_direct_sync_latches_and_is_retried_never() {
    use direct::DirectOp::Sync;
    let f = fixture();
    let e = &f.engine;
    assert_eq!(plan(e, Op::Flush, 0, 0).expect("flush"), Sync);
    let err = e.direct_done(Sync, -libc::EIO).expect_err("failed sync");
    assert_eq!(err.errno(), libc::EIO);
    assert!(matches!(plan(e, Op::Flush, 0, 0), Err(IoError::Failed)));
    assert!(matches!(
        plan(e, Op::Write { fua: true }, 0, 512),
        Err(IoError::Failed)
    ));
    // Plain reads and writes go on; only durability claims are refused.
    assert!(plan(e, Op::Write { fua: false }, 0, 512).is_ok());
    assert!(plan(e, Op::Read, 0, 512).is_ok());
    // A failed FUA write latches too.
    let g = fixture();
    let fua = plan(&g.engine, Op::Write { fua: true }, 0, 512).expect("fua");
    g.engine
        .direct_done(fua, -libc::EIO)
        .expect_err("failed fua");
    assert!(matches!(
        plan(&g.engine, Op::Flush, 0, 0),
        Err(IoError::Failed)
    ));
}

#[test]
fn a_failed_write_back_latches() {
    let f = faulty_fixture();
    write(&f.engine, 0, &[1; 512], false).expect("write");
    // The write-back really fails: the flush reports it, and the engine
    // latches failed by itself.
    f.engine.media.fail(true);
    assert!(matches!(f.engine.flush(), Err(IoError::Persist(_))));
    f.engine.media.fail(false);
    assert!(matches!(f.engine.flush(), Err(IoError::Failed)));
    assert!(matches!(
        write(&f.engine, 0, &[1; 512], true),
        Err(IoError::Failed)
    ));
    // Plain reads and writes still work; the data is in the mapping.
    assert_eq!(read(&f.engine, 0, 512).expect("read"), vec![1; 512]);
}

#[test]
fn after_a_failed_write_back_nothing_is_reported_durable() {
    let f = faulty_fixture();
    let chunk = f.engine.dirty.chunk_size();
    write(&f.engine, 0, &[1; 4096], false).expect("write A");
    f.engine.media.fail(true);
    let err = f.engine.flush().expect_err("write-back fails");
    assert_eq!(err.errno(), libc::EIO);
    // What could not be written back is dirty again, not forgotten.
    assert_eq!(f.engine.dirty.take(), vec![0..chunk]);
    f.engine.dirty.mark(0, 4096);
    // The medium recovers, but the engine does not pretend: every later
    // FLUSH and FUA write fails, and none of it reaches the medium.
    f.engine.media.fail(false);
    for _ in 0..3 {
        let flush = f.engine.execute(
            &Request {
                op: Op::Flush,
                offset: 0,
                len: 0,
            },
            &mut VecTransfer(vec![]),
        );
        assert_eq!(flush.expect_err("latched").errno(), libc::EIO);
        let fua = write(&f.engine, 8 * chunk, &[2; 512], true).expect_err("latched");
        assert_eq!(fua.errno(), libc::EIO);
    }
    assert!(
        f.engine.shutdown_flush().is_err(),
        "a stopping server reports it too"
    );
    assert_eq!(f.engine.media.durable(), vec![], "nothing was made durable");
}

#[test]
fn a_failed_fua_write_latches_and_later_flushes_fail() {
    let f = faulty_fixture();
    write(&f.engine, 0, &[3; 512], true).expect("fua ok");
    assert!(f.engine.media.made_durable(0, 512));
    f.engine.media.fail(true);
    let err = write(&f.engine, 4096, &[4; 512], true).expect_err("fua fails");
    assert!(matches!(err, IoError::Persist(_)), "{err}");
    f.engine.media.fail(false);
    write(&f.engine, 8192, &[5; 512], false).expect("plain write still lands");
    assert!(matches!(f.engine.flush(), Err(IoError::Failed)));
    assert!(!f.engine.media.made_durable(4096, 512));
    assert!(!f.engine.media.made_durable(8192, 512));
}

#[test]
fn a_successful_flush_makes_exactly_the_dirty_span_durable() {
    let f = faulty_fixture();
    let chunk = f.engine.dirty.chunk_size();
    write(&f.engine, chunk, &[6; 512], false).expect("write");
    write(&f.engine, 3 * chunk, &[7; 512], false).expect("write");
    assert!(
        f.engine.media.durable().is_empty(),
        "a WRITE alone is volatile"
    );
    f.engine.flush().expect("flush");
    // Page-cache media: one msync over the span of the dirty chunks.
    assert_eq!(f.engine.media.durable(), vec![(chunk, 3 * chunk)]);
}

#[test]
fn flushes_from_many_threads_cover_writes_from_many_threads() {
    let f = fixture();
    let engine = &f.engine;
    std::thread::scope(|s| {
        for t in 0..4u8 {
            s.spawn(move || {
                for i in 0..64u64 {
                    let off = (u64::from(t) * 64 + i) * 4096;
                    write(engine, off, &[t + 1; 4096], false).expect("write");
                    if i % 8 == 0 {
                        engine.flush().expect("flush");
                    }
                }
                engine.flush().expect("final flush");
            });
        }
    });
    assert_eq!(engine.dirty.take(), vec![]);
    for t in 0..4u8 {
        let back = read(engine, u64::from(t) * 64 * 4096, 64 * 4096).expect("read");
        assert!(back.iter().all(|&b| b == t + 1));
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Read),
            any::<bool>().prop_map(|fua| Op::Write { fua }),
            Just(Op::Discard),
            Just(Op::WriteZeroes),
        ]
    }

    /// Offsets and lengths anywhere: inside, across the end, near
    /// `u64::MAX` (where `offset + len` overflows).
    fn extent() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..(16 << 20),
            (u64::MAX - (16 << 20))..=u64::MAX,
            any::<u64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// No request, whatever its range, touches a byte outside the
        /// data area: it is served exactly when it lies inside, and
        /// fails with EIO otherwise.
        #[test]
        fn no_request_reaches_outside_the_data_area(
            requests in proptest::collection::vec((op(), extent(), 0u64..(1 << 20)), 1..24)
        ) {
            let f = fixture();
            let size = f.engine.size();
            for (op, offset, len) in requests {
                let req = Request { op, offset, len };
                let buffer = vec![0x5A; usize::try_from(len).expect("small")];
                let result = f.engine.execute(&req, &mut VecTransfer(buffer));
                let inside = offset.checked_add(len).is_some_and(|end| end <= size);
                prop_assert_eq!(result.is_ok(), inside, "{:?}", req);
                if let Err(err) = result {
                    prop_assert_eq!(err.errno(), libc::EIO);
                }
            }
            f.engine.shutdown_flush().expect("flush");
            let on_disk = std::fs::read(f.image.path()).expect("read image");
            let (start, end) = (
                usize::try_from(f.geometry.data_offset()).expect("small"),
                usize::try_from(f.geometry.data_end()).expect("small"),
            );
            prop_assert!(on_disk[..start].iter().all(|&b| b == 0xEE), "before the data area");
            prop_assert!(on_disk[end..].iter().all(|&b| b == 0xEE), "after the data area");
        }
    }
}
