//! The batch data plane (`UBLK_F_BATCH_IO`, Linux 7.0+).
//!
//! Every other path pays one io_uring command per request each way: the
//! kernel completes a FETCH per request, and the server answers each with a
//! COMMIT_AND_FETCH. Under a deep queue that round trip, not the copy, is
//! what a 4 KiB request costs. With batch I/O one multishot fetch delivers
//! whatever tags are ready in a single completion, and one commit answers
//! a whole group of them.
//!
//! The kernel then copies request data through a buffer per tag (libublk
//! 0.4.8's batch transport supports no other layout: not user copy, not
//! auto-registered buffers): a WRITE's data is already in its buffer when
//! the tag arrives, and a READ's is copied out of it at commit.
//!
//! Writing back, the server copies between the buffer and the mapping, as
//! the bounce-buffer path does. Writing through over a backing that opens
//! `O_DIRECT` (a block device by default, an image when asked), every
//! request goes to the backing opened `O_DIRECT`, in this thread: a WRITE
//! from its buffer, a READ straight into it. The pmem driver copies between
//! the media and the buffer, and the page cache is never filled, so an
//! `O_DIRECT` write has no mapped page to shoot down. Measured on 7.3 against reading through the
//! mapping (bench/README.md, "Batch I/O"): every job faster, 4 KiB random
//! writes 1.6×. The writes of one fetched group go out plain and share one
//! `fdatasync` before any of them is committed; a lone write goes
//! `RWF_DSYNC`.
//!
//! Not the default anywhere (`--io-path batch` asks for it). On 7.3, with
//! the guest's copies no longer emulated byte-wise (bench/README.md, "The
//! guest's CPU model"), it leads the direct path at 4 KiB (1.10–1.32×) and
//! QD1 reads (1.24×), but every byte is copied twice, so it trails on 128
//! KiB reads (0.64×) and writes (0.84×); batching did not make the round
//! trip cheaper than user copy's one command per request: user copy (then
//! the default) ties it at 4 KiB and on 128 KiB writes (0.95–1.03×) and leads
//! on QD1 fsync writes (1.17×) and 128 KiB reads (1.74×).

use libublk::io::{
    UblkBatchBuffers, UblkBatchCompletion, UblkBatchConfig, UblkBatchQueue, UblkDev, UblkQueue,
};
use libublk::{UblkError, sys};

use crate::engine::{Engine, IoError};

use super::copy::{prefix, write_through};
use super::group_commit::{BatchSync, Written};
use super::request::decode;
use super::transfer::Bounce;
use crate::backing::direct_io::DirectBacking;

/// A request's descriptor fields: `op_flags`, `start_sector`, `nr_sectors`.
type Descriptor = (u32, u64, u32);

/// A fetched group's requests as the server sees them: each tag's
/// descriptor and buffer. The batch transport in a queue thread; a fake in
/// the tests.
trait Fetched {
    /// `tag`'s descriptor.
    fn descriptor(&self, tag: u16) -> Descriptor;
    /// `tag`'s buffer, which the kernel filled for a WRITE and copies out
    /// of for a READ at commit.
    fn buffer(&mut self, tag: u16) -> Option<&mut [u8]>;
}

impl Fetched for UblkBatchQueue<'_, '_> {
    fn descriptor(&self, tag: u16) -> Descriptor {
        let iod = self.queue().get_iod(tag);
        (iod.op_flags, iod.start_sector, iod.nr_sectors)
    }

    fn buffer(&mut self, tag: u16) -> Option<&mut [u8]> {
        self.io_buf_mut(tag).map(|buf| buf.as_mut_slice())
    }
}

/// One batch queue's requests and what is owed to the kernel.
struct BatchServer<'a> {
    qid: u16,
    engine: &'a Engine,
    /// Write-through: the backing opened `O_DIRECT`.
    direct: Option<&'a DirectBacking>,
    /// Results not yet committed (a commit slot may be busy).
    pending: Vec<UblkBatchCompletion>,
    /// Write-through: writes of the current group awaiting its sync.
    unsynced: BatchSync,
    /// Fetched groups and requests served (how much batching happened).
    groups: u64,
    requests: u64,
}

impl<'a> BatchServer<'a> {
    fn new(qid: u16, engine: &'a Engine, direct: Option<&'a DirectBacking>) -> BatchServer<'a> {
        BatchServer {
            qid,
            engine,
            direct,
            pending: Vec::new(),
            unsynced: BatchSync::default(),
            groups: 0,
            requests: 0,
        }
    }

    /// Serve one fetched group of tags: every request runs now; writes
    /// written through without their own barrier are made durable by one
    /// sync at the end, before any result is handed back.
    fn serve(&mut self, fetched: &mut impl Fetched, tags: &[u16]) {
        self.groups += 1;
        self.requests += tags.len() as u64;
        let writes = tags
            .iter()
            .filter(|&&tag| fetched.descriptor(tag).0 & 0xff == sys::UBLK_IO_OP_WRITE)
            .count();
        let alone = writes <= 1;
        let pending = &mut self.pending;
        let mut answer = |tag, res| pending.push(UblkBatchCompletion::new(tag, res));
        for &tag in tags {
            let result = Self::run(self.qid, self.engine, self.direct, fetched, tag, alone);
            self.unsynced.settle(tag, result, &mut answer);
        }
        if let Some(direct) = self.direct {
            self.unsynced
                .sync(self.qid, self.engine, direct, &mut answer);
        }
    }

    fn run(
        qid: u16,
        engine: &Engine,
        direct: Option<&DirectBacking>,
        fetched: &mut impl Fetched,
        tag: u16,
        alone: bool,
    ) -> Result<Written, IoError> {
        let (op_flags, start_sector, nr_sectors) = fetched.descriptor(tag);
        let req = decode(op_flags, start_sector, nr_sectors, engine.size())?;
        let Some(buf) = fetched.buffer(tag) else {
            log::error!("queue {qid} tag {tag}: fetched without a buffer");
            return Err(IoError::Transfer(std::io::Error::from_raw_os_error(
                libc::EIO,
            )));
        };
        match direct {
            Some(direct) => write_through(engine, direct, &req, alone, |len, _| prefix(buf, len)),
            _ => engine.execute(&req, &mut Bounce(buf)).map(Written::Done),
        }
    }
}

/// Serve queue `qid` of a batch device until it stops. Runs on the queue's
/// own thread.
pub fn serve_queue(qid: u16, dev: &UblkDev, engine: &Engine, direct: Option<&DirectBacking>) {
    let queue = match UblkQueue::new(qid, dev) {
        Ok(queue) => queue,
        Err(err) => {
            log::error!("queue {qid}: setup failed: {err}");
            return;
        }
    };
    let buffers = UblkBatchBuffers::IoBufs(dev.alloc_queue_io_bufs());
    let mut batch = match UblkBatchQueue::new(&queue, buffers, UblkBatchConfig::new()) {
        Ok(batch) => batch,
        Err(err) => {
            log::error!("queue {qid}: batch setup failed: {err}");
            return;
        }
    };
    let mut server = BatchServer::new(qid, engine, direct);
    if let Err(err) = run(&queue, &mut batch, &mut server) {
        log::error!("queue {qid}: {err}");
    }
    log::info!(
        "queue {qid}: stopped; served {} requests in {} fetched groups",
        server.requests,
        server.groups
    );
}

/// Reap, serve, commit, until the kernel stops the queue and the batch
/// transport has released everything it lent the kernel.
fn run(
    queue: &UblkQueue,
    batch: &mut UblkBatchQueue,
    server: &mut BatchServer,
) -> Result<(), UblkError> {
    loop {
        let mut failure = None;
        let reaped = queue.flush_and_wake_io_tasks(
            |_, cqe, _| {
                if failure.is_some() {
                    return;
                }
                match batch.handle_cqe(cqe, |batch, tags| {
                    server.serve(batch, tags);
                    Ok(())
                }) {
                    Ok(true) => {}
                    Ok(false) => log::warn!("queue {}: unexpected completion", server.qid),
                    Err(err) => failure = Some(err),
                }
            },
            1,
        );
        let failure = failure.or(reaped.err());
        if let Some(err) = failure {
            // Hand back what was served (durable writes included) before
            // giving up the queue; a new server re-issues the rest.
            if !server.pending.is_empty() {
                let _ = batch.try_submit_completions(&server.pending);
            }
            return match err {
                UblkError::QueueIsDown => {
                    if !batch.is_shutdown_complete() {
                        log::warn!(
                            "queue {}: stopped before the batch transport released its buffers",
                            server.qid
                        );
                    }
                    Ok(())
                }
                err => Err(err),
            };
        }
        if !server.pending.is_empty() && batch.try_submit_completions(&server.pending)? {
            server.pending.clear();
        }
        if batch.try_begin_shutdown()? && batch.is_shutdown_complete() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use libublk::helpers::IoBuf;

    use super::super::copy::TestBacking;
    use super::*;

    /// A fetched group without a kernel: descriptors and buffers by tag.
    #[derive(Default)]
    struct FakeFetch(HashMap<u16, (Descriptor, IoBuf<u8>)>);

    impl FakeFetch {
        /// Tag `tag` carries `op` on `sectors` sectors at byte `offset`;
        /// its 64 KiB buffer starts with `data`.
        fn put(&mut self, tag: u16, op: u32, offset: u64, sectors: u32, data: &[u8]) {
            // Page-aligned, as libublk's buffers are (O_DIRECT needs it).
            let mut buf = IoBuf::<u8>::new(64 << 10);
            buf.as_mut_slice()[..data.len()].copy_from_slice(data);
            self.0.insert(tag, ((op, offset / 512, sectors), buf));
        }

        fn buf(&self, tag: u16, len: usize) -> &[u8] {
            &self.0[&tag].1.as_slice()[..len]
        }
    }

    impl Fetched for FakeFetch {
        fn descriptor(&self, tag: u16) -> Descriptor {
            self.0
                .get(&tag)
                .map_or((sys::UBLK_IO_OP_READ, 0, 8), |e| e.0)
        }

        fn buffer(&mut self, tag: u16) -> Option<&mut [u8]> {
            self.0.get_mut(&tag).map(|e| e.1.as_mut_slice())
        }
    }

    /// Serve `tags` of `fetched` as one group on `backing`; the results in
    /// order.
    fn serve(backing: &TestBacking, fetched: &mut FakeFetch, tags: &[u16]) -> Vec<(u16, i32)> {
        let mut server = BatchServer::new(0, &backing.engine, backing.direct.as_ref());
        server.serve(fetched, tags);
        assert!(server.unsynced.is_empty(), "every write settled");
        server.pending.iter().map(|c| (c.tag, c.result)).collect()
    }

    const WRITE: u32 = sys::UBLK_IO_OP_WRITE;
    const READ: u32 = sys::UBLK_IO_OP_READ;

    #[test]
    fn a_group_of_writes_lands_and_every_tag_is_answered_once() {
        for write_through in [true, false] {
            let f = TestBacking::new(write_through);
            let mut fetched = FakeFetch::default();
            fetched.put(1, WRITE, 0, 8, &[0x11; 4096]);
            fetched.put(2, WRITE, 8192, 16, &[0x22; 8192]);
            fetched.put(3, READ, 1 << 20, 8, &[]);
            fetched.put(4, sys::UBLK_IO_OP_FLUSH, 0, 0, &[]);
            let mut results = serve(&f, &mut fetched, &[1, 2, 3, 4]);
            results.sort_unstable();
            assert_eq!(
                results,
                [(1, 4096), (2, 8192), (3, 4096), (4, 0)],
                "write-through {write_through}"
            );
            assert_eq!(fetched.buf(3, 4096), [0xEE; 4096], "the read got the media");
            if write_through {
                // On the media already, without a flush.
                assert_eq!(f.on_backing(0, 4096), [0x11; 4096]);
                assert_eq!(f.on_backing(8192, 8192), [0x22; 8192]);
            } else {
                f.engine.flush().expect("flush");
                assert_eq!(f.on_backing(8192, 8192), [0x22; 8192]);
            }
            // What was written reads back through the same server.
            let mut again = FakeFetch::default();
            again.put(5, READ, 8192, 16, &[]);
            assert_eq!(serve(&f, &mut again, &[5]), [(5, 8192)]);
            assert_eq!(again.buf(5, 8192), [0x22; 8192]);
        }
    }

    #[test]
    fn a_bad_request_fails_alone() {
        let f = TestBacking::new(true);
        let mut fetched = FakeFetch::default();
        // Beyond the data area, larger than its buffer, and a tag the
        // transport lent no buffer: each fails; the good write in the same
        // group still lands.
        fetched.put(1, WRITE, 15 << 20, 8, &[1; 4096]);
        fetched.put(2, WRITE, 0, 256, &[2; 4096]);
        fetched.put(3, WRITE, 4096, 8, &[3; 4096]);
        let results: HashMap<u16, i32> =
            serve(&f, &mut fetched, &[1, 2, 3, 9]).into_iter().collect();
        assert_eq!(results[&1], -libc::EIO);
        assert!(results[&2] < 0, "too large: {}", results[&2]);
        assert_eq!(results[&3], 4096);
        assert_eq!(results[&9], -libc::EIO);
        assert_eq!(results.len(), 4);
        assert_eq!(f.on_backing(0, 4096), [0xEE; 4096], "unchanged");
        assert_eq!(f.on_backing(4096, 4096), [3; 4096]);
    }

    #[test]
    fn zeroing_is_durable_before_it_is_answered() {
        let f = TestBacking::new(true);
        let mut fetched = FakeFetch::default();
        fetched.put(1, sys::UBLK_IO_OP_WRITE_ZEROES, 4096, 8, &[]);
        fetched.put(2, sys::UBLK_IO_OP_DISCARD, 8192, 8, &[]);
        let mut results = serve(&f, &mut fetched, &[1, 2]);
        results.sort_unstable();
        assert_eq!(results, [(1, 0), (2, 0)]);
        assert_eq!(f.on_backing(4096, 8192), vec![0; 8192]);
    }
}
