//! The copying data plane — user copy (the default before Linux 6.16, and
//! on devdax, image files and write-back everywhere) and bounce buffers:
//! one thread per hardware queue, each with its own io_uring (libublk's
//! `UblkQueue` is thread-local and not `Send`), all sharing one [`Engine`]
//! through an `Arc`.
//!
//! A queue thread turns each ublk I/O descriptor into an engine [`Request`],
//! runs it with the transfer the device supports, and commits the result; the
//! commit also fetches the next request for that tag.

use std::os::fd::RawFd;

use libublk::helpers::IoBuf;
use libublk::io::{UblkDev, UblkIOCtx, UblkQueue};
use libublk::{BufDesc, BufDescList, UblkIORes};

use crate::engine::direct::DirectOp;
use crate::engine::{Engine, IoError, Op, Request};

use crate::backing::direct_io::DirectBacking;

use super::group_commit::{BatchSync, Written};
use super::request::{completion, request_of};
use super::transfer::{Bounce, UserCopy};
use crate::ublk::features::IoPath;
use crate::ublk::tuning::ReadSource;

fn handle(
    engine: &Engine,
    queue: &UblkQueue,
    tag: u16,
    transfer: &mut dyn crate::engine::Transfer,
) -> i32 {
    let result =
        request_of(queue, tag, engine.size()).and_then(|req| engine.execute(&req, transfer));
    completion(result)
}

/// One queue's requests on the user-copy path.
///
/// Write-back: every request goes to the engine, which copies between the
/// request and the mapping. Write-through over the page cache (the server
/// gives this queue the backing opened `O_DIRECT`): a READ is read from the
/// backing `O_DIRECT` into a page-aligned staging buffer and copied from
/// there into the request ([`ReadSource::Direct`], the default: why, there;
/// [`ReadSource::Mapping`] reads the mapping instead), and a WRITE's data
/// is fetched into the staging buffer and written from there to the
/// namespace `O_DIRECT`; both in this thread (the pmem driver copies in
/// the caller's context: no worker hop). A WRITE is acknowledged only once
/// durable, so FLUSH never reaches this server.
/// The writes of one batch of completions go out plain and are made durable
/// together by one `fdatasync` at the batch's end (each `RWF_DSYNC` write
/// would cost a flush of its own); a write alone in its batch goes out
/// `RWF_DSYNC` (the pmem driver makes it a FUA write) and needs no sync.
/// Copying into the mapping instead would need an `msync` per write and
/// take a write fault on every page the last write-back cleaned. The kernel
/// drops the page cache's copy of whatever an `O_DIRECT` write covers
/// (writing back any dirty page there first) before the write returns, so
/// READs through the mapping see it.
struct UserCopyQueue<'a> {
    qid: u16,
    cdev: RawFd,
    engine: &'a Engine,
    /// Write-through: the backing opened `O_DIRECT`, and where a request's
    /// data passes on its way to or from there.
    direct: Option<(&'a DirectBacking, IoBuf<u8>)>,
    /// Write-through: writes of this batch written without `RWF_DSYNC`,
    /// waiting for the batch's one sync.
    unsynced: BatchSync,
    /// Write-through: where READs come from.
    reads: ReadSource,
}

impl<'a> UserCopyQueue<'a> {
    fn new(
        qid: u16,
        dev: &UblkDev,
        engine: &'a Engine,
        direct: Option<&'a DirectBacking>,
        reads: ReadSource,
    ) -> UserCopyQueue<'a> {
        UserCopyQueue {
            qid,
            cdev: dev.tgt.fds[0],
            engine,
            direct: direct
                .map(|direct| (direct, IoBuf::new(dev.dev_info.max_io_buf_bytes as usize))),
            unsynced: BatchSync::default(),
            reads,
        }
    }

    fn handle(&mut self, q: &UblkQueue, tag: u16, ctx: &UblkIOCtx) {
        if ctx.is_tgt_io() {
            return;
        }
        let mut xfer = UserCopy::new(self.cdev, self.qid, tag);
        let alone = self.unsynced.alone(ctx.is_last_cqe());
        let through = self
            .direct
            .as_mut()
            .map(|(direct, staging)| (&**direct, staging));
        let result = request_of(q, tag, self.engine.size()).and_then(|req| {
            serve_request(self.engine, through, self.reads, &mut xfer, &req, alone)
        });
        let qid = self.qid;
        self.unsynced
            .settle(tag, result, |tag, res| commit(q, qid, tag, res));
        if ctx.is_last_cqe()
            && let Some((direct, _)) = &self.direct
        {
            self.unsynced.sync(qid, self.engine, direct, |tag, res| {
                commit(q, qid, tag, res)
            });
        }
    }
}

/// One request on the user-copy path, moving its data with `xfer`.
/// `through`: writing through, the backing opened `O_DIRECT` and the
/// queue's staging buffer; `alone`: no other request of its batch waits
/// for the batch's sync (see [`UserCopyQueue`]).
pub(super) fn serve_request(
    engine: &Engine,
    through: Option<(&DirectBacking, &mut IoBuf<u8>)>,
    reads: ReadSource,
    xfer: &mut UserCopy,
    req: &Request,
    alone: bool,
) -> Result<Written, IoError> {
    match through {
        Some((direct, staging)) if req.op != Op::Read => {
            write_through(engine, direct, req, alone, |len, is_write| {
                // A READ here would need its data delivered after the
                // backing filled the buffer: refuse, not lie.
                if !is_write {
                    return Err(IoError::Transfer(std::io::Error::from_raw_os_error(
                        libc::EINVAL,
                    )));
                }
                fetch_staged(staging, xfer, len)
            })
        }
        Some((direct, staging)) if reads == ReadSource::Direct => {
            let read = write_through(engine, direct, req, alone, |len, _| {
                prefix(staging.as_mut_slice(), len)
            })?;
            if let Written::Done(bytes) = read {
                // More than fits a usize is more than the buffer: TooLarge.
                let len = usize::try_from(bytes).unwrap_or(usize::MAX);
                xfer.write_from(prefix(staging.as_mut_slice(), len)?)
                    .map_err(IoError::Transfer)?;
            }
            Ok(read)
        }
        _ => engine.execute(req, xfer).map(Written::Done),
    }
}

/// Commit `tag`'s result on the user-copy path.
fn commit(q: &UblkQueue, qid: u16, tag: u16, res: i32) {
    if let Err(err) =
        q.complete_io_cmd_unified(tag, BufDesc::Slice(&[]), Ok(UblkIORes::Result(res)))
    {
        log::error!("queue {qid} tag {tag}: commit failed: {err}");
    }
}

/// The first `len` bytes of `buf`, or `TooLarge`.
pub(super) fn prefix(buf: &mut [u8], len: usize) -> Result<&mut [u8], IoError> {
    let max = buf.len();
    buf.get_mut(..len).ok_or(IoError::TooLarge {
        len: len as u64,
        max,
    })
}

/// A user-copy WRITE's `len` bytes, fetched from the request into `staging`.
fn fetch_staged<'b>(
    staging: &'b mut IoBuf<u8>,
    xfer: &mut UserCopy,
    len: usize,
) -> Result<&'b mut [u8], IoError> {
    let data = prefix(staging.as_mut_slice(), len)?;
    xfer.read_into(data).map_err(IoError::Transfer)?;
    Ok(data)
}

/// A request on a write-through mapped path (user copy or batch), served
/// on the backing opened `O_DIRECT`: decided and accounted by the engine as
/// on the direct path (a FLUSH has nothing to do, a zeroing is followed by
/// its own sync). `buffer(len, is_write)` is the request's data: for a WRITE
/// holding it (written in this thread — `RWF_DSYNC` when `alone`, else
/// plain, to be made durable by the batch's sync), for a READ where it goes.
pub(super) fn write_through<'b>(
    engine: &Engine,
    direct: &DirectBacking,
    req: &Request,
    alone: bool,
    buffer: impl FnOnce(usize, bool) -> Result<&'b mut [u8], IoError>,
) -> Result<Written, IoError> {
    let op = engine.plan_direct(req)?;
    let outcome = match op {
        DirectOp::Done(bytes) => return Ok(Written::Done(bytes)),
        DirectOp::Write { at, len, .. } => direct
            .write_all(at, buffer(len as usize, true)?, alone)
            .map(|()| u64::from(len)),
        DirectOp::Read { at, len } => direct
            .read_exact(at, buffer(len as usize, false)?)
            .map(|()| u64::from(len)),
        DirectOp::Sync => direct.file.sync_data().map(|()| 0),
    };
    let res = outcome.map_or_else(
        |err| -err.raw_os_error().unwrap_or(libc::EIO),
        |n| i32::try_from(n).unwrap_or(-libc::EIO),
    );
    match op {
        DirectOp::Write { .. } if !alone && res >= 0 => Ok(Written::Unsynced(op, res)),
        _ => engine.direct_done(op, res).map(Written::Done),
    }
}

/// Serve queue `qid` on a mapped path (user copy or bounce buffers) until
/// the device stops. Runs on the queue's own thread.
pub fn serve_queue(
    qid: u16,
    dev: &UblkDev,
    engine: &Engine,
    path: IoPath,
    direct: Option<&DirectBacking>,
    reads: ReadSource,
) {
    let queue = match UblkQueue::new(qid, dev) {
        Ok(queue) => queue,
        Err(err) => {
            log::error!("queue {qid}: setup failed: {err}");
            return;
        }
    };
    if path == IoPath::UserCopy {
        let queue = match queue.submit_fetch_commands_unified(BufDescList::Slices(None)) {
            Ok(queue) => queue,
            Err(err) => {
                log::error!("queue {qid}: fetch failed: {err}");
                return;
            }
        };
        let mut state = UserCopyQueue::new(qid, dev, engine, direct, reads);
        queue.wait_and_handle_io(|q: &UblkQueue, tag: u16, ctx: &UblkIOCtx| {
            state.handle(q, tag, ctx);
        });
    } else {
        let mut bufs = dev.alloc_queue_io_bufs();
        let queue = match queue.submit_fetch_commands_unified(BufDescList::Slices(Some(&bufs))) {
            Ok(queue) => queue,
            Err(err) => {
                log::error!("queue {qid}: fetch failed: {err}");
                return;
            }
        };
        queue.wait_and_handle_io(move |q: &UblkQueue, tag: u16, ctx: &UblkIOCtx| {
            if ctx.is_tgt_io() {
                return;
            }
            let Some(buf) = bufs.get_mut(usize::from(tag)) else {
                log::error!("queue {qid}: tag {tag} has no buffer");
                return;
            };
            let res = handle(engine, q, tag, &mut Bounce(buf.as_mut_slice()));
            if let Err(err) = q.complete_io_cmd_unified(
                tag,
                BufDesc::Slice(buf.as_slice()),
                Ok(UblkIORes::Result(res)),
            ) {
                log::error!("queue {qid} tag {tag}: commit failed: {err}");
            }
        });
    }
    log::info!("queue {qid}: stopped");
}

/// For the queue tests here and in `batch`: the engine's test image served
/// writing through (with the backing opened `O_DIRECT`) or back.
#[cfg(test)]
pub(super) struct TestBacking {
    pub image: tempfile::NamedTempFile,
    pub engine: Engine,
    pub direct: Option<DirectBacking>,
    pub data_offset: u64,
}

#[cfg(test)]
impl TestBacking {
    pub(super) fn new(write_through: bool) -> TestBacking {
        let (image, geometry, backing) = crate::engine::test_image();
        let mut engine = Engine::new(std::sync::Arc::clone(&backing), &geometry).expect("engine");
        engine.set_write_through(write_through);
        let direct = write_through.then(|| DirectBacking {
            // Fails here, loudly, where the temporary directory cannot do
            // O_DIRECT.
            file: backing.open_direct().expect("O_DIRECT"),
            data_offset: geometry.data_offset(),
        });
        TestBacking {
            image,
            engine,
            direct,
            data_offset: geometry.data_offset(),
        }
    }

    /// The backing opened `O_DIRECT` (a write-through fixture's).
    pub(super) fn direct(&self) -> &DirectBacking {
        self.direct.as_ref().expect("writing through")
    }

    /// `len` bytes of the data area at `offset`, as on the image.
    pub(super) fn on_backing(&self, offset: u64, len: usize) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0; len];
        self.image
            .as_file()
            .read_exact_at(&mut buf, self.data_offset + offset)
            .expect("read the image");
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod write_through {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::FileExt;

        use super::*;
        use crate::backing::MediaRange;
        use crate::engine::Transfer;

        const MIB: u64 = 1 << 20;

        /// A READ's destination in memory.
        struct Sink(Vec<u8>);

        impl Transfer for Sink {
            fn deliver(&mut self, src: &MediaRange<'_>) -> std::io::Result<()> {
                self.0.resize(src.len(), 0);
                src.read_into(&mut self.0)
            }
            fn fetch(&mut self, _dst: &MediaRange<'_>) -> std::io::Result<()> {
                Err(std::io::Error::from_raw_os_error(libc::EINVAL))
            }
        }

        struct Fixture {
            backing: TestBacking,
            /// Stands in for `/dev/ublkcN`: request data at the user-copy
            /// position of its queue and tag.
            cdev: tempfile::NamedTempFile,
            staging: IoBuf<u8>,
        }

        impl std::ops::Deref for Fixture {
            type Target = TestBacking;
            fn deref(&self) -> &TestBacking {
                &self.backing
            }
        }

        fn fixture() -> Fixture {
            Fixture {
                backing: TestBacking::new(true),
                cdev: tempfile::NamedTempFile::new().expect("tempfile"),
                staging: IoBuf::new(512 << 10),
            }
        }

        impl Fixture {
            /// Serve `op` on `len` bytes at `offset` as request tag 3 of
            /// queue 0, whose data is `data`, alone in its batch.
            fn serve(
                &mut self,
                op: Op,
                offset: u64,
                len: u64,
                data: &[u8],
            ) -> Result<u64, IoError> {
                match self.serve_in_batch(op, offset, len, data, true)? {
                    Written::Done(bytes) => Ok(bytes),
                    other => panic!("alone, yet {other:?}"),
                }
            }

            fn serve_in_batch(
                &mut self,
                op: Op,
                offset: u64,
                len: u64,
                data: &[u8],
                alone: bool,
            ) -> Result<Written, IoError> {
                self.cdev
                    .as_file()
                    .write_all_at(data, UblkIOCtx::ublk_user_copy_pos(0, 3, 0))
                    .expect("request data");
                let mut xfer = UserCopy::new(self.cdev.as_raw_fd(), 0, 3);
                let req = Request { op, offset, len };
                let staging = &mut self.staging;
                let backing = &self.backing;
                write_through(&backing.engine, backing.direct(), &req, alone, |len, _| {
                    fetch_staged(staging, &mut xfer, len)
                })
            }

            /// READ `len` bytes at `offset` as request tag 3 of queue 0,
            /// from where `reads` says: what lands in the request.
            fn read(&mut self, reads: ReadSource, offset: u64, len: u64) -> Vec<u8> {
                let pos = UblkIOCtx::ublk_user_copy_pos(0, 3, 0);
                let request = self.cdev.as_file();
                request.set_len(0).expect("empty the request");
                let mut xfer = UserCopy::new(request.as_raw_fd(), 0, 3);
                let req = Request {
                    op: Op::Read,
                    offset,
                    len,
                };
                let through = Some((self.backing.direct(), &mut self.staging));
                let read =
                    serve_request(&self.backing.engine, through, reads, &mut xfer, &req, true)
                        .expect("read");
                assert!(matches!(read, Written::Done(n) if n == len), "{read:?}");
                let mut data = vec![0; usize::try_from(len).expect("small")];
                request
                    .read_exact_at(&mut data, pos)
                    .expect("the request's data");
                data
            }

            fn mapped(&self, offset: u64, len: u64) -> Vec<u8> {
                let mut sink = Sink(Vec::new());
                let req = Request {
                    op: Op::Read,
                    offset,
                    len,
                };
                self.engine.execute(&req, &mut sink).expect("read");
                sink.0
            }
        }

        #[test]
        fn a_write_lands_on_the_backing_and_the_mapping_sees_it() {
            let mut f = fixture();
            // Cached through the mapping first: the O_DIRECT write must make
            // the kernel drop that copy.
            assert_eq!(f.mapped(8192, 8192), vec![0xEE; 8192]);
            let written = f.serve(Op::Write { fua: false }, 8192, 8192, &[0x5A; 8192]);
            assert_eq!(written.expect("write"), 8192);
            assert_eq!(f.on_backing(8192, 8192), vec![0x5A; 8192]);
            assert_eq!(f.mapped(8192, 8192), vec![0x5A; 8192]);
            assert_eq!(f.on_backing(0, 8192), vec![0xEE; 8192], "nothing else");
            assert_eq!(
                f.engine
                    .stats()
                    .writes
                    .load(std::sync::atomic::Ordering::Relaxed),
                1
            );
        }

        #[test]
        fn reads_from_either_source_see_every_write() {
            let mut f = fixture();
            for reads in [ReadSource::Mapping, ReadSource::Direct] {
                assert_eq!(f.read(reads, 8192, 8192), vec![0xEE; 8192], "{reads:?}");
            }
            f.serve(Op::Write { fua: false }, 8192, 4096, &[0x5A; 4096])
                .expect("write");
            for reads in [ReadSource::Direct, ReadSource::Mapping] {
                let data = f.read(reads, 8192, 8192);
                assert_eq!(data[..4096], [0x5A; 4096], "{reads:?}");
                assert_eq!(data[4096..], [0xEE; 4096], "{reads:?}");
            }
            let stats = f.engine.stats().snapshot();
            assert_eq!((stats.reads, stats.writes), (4, 1));
            let err = serve_request(
                &f.backing.engine,
                Some((f.backing.direct(), &mut IoBuf::new(4096))),
                ReadSource::Direct,
                &mut UserCopy::new(f.cdev.as_raw_fd(), 0, 3),
                &Request {
                    op: Op::Read,
                    offset: 0,
                    len: 8192,
                },
                true,
            )
            .expect_err("larger than the staging buffer");
            assert!(matches!(err, IoError::TooLarge { .. }), "{err}");
        }

        #[test]
        fn a_write_with_company_waits_for_the_batch_sync() {
            let mut f = fixture();
            let written = f
                .serve_in_batch(Op::Write { fua: false }, 0, 4096, &[0x33; 4096], false)
                .expect("write");
            let Written::Unsynced(op, res) = written else {
                panic!("not left for the batch's sync: {written:?}");
            };
            assert_eq!(res, 4096);
            // Written (so a read sees it), acknowledged only after the sync.
            assert_eq!(f.on_backing(0, 4096), vec![0x33; 4096]);
            f.direct().file.sync_data().expect("the batch's sync");
            assert_eq!(f.engine.direct_done(op, res).expect("acknowledged"), 4096);
            // A failed write is not left waiting: it fails at once.
            let err = f
                .serve_in_batch(Op::Write { fua: false }, 0, MIB, &[], false)
                .expect_err("too large");
            assert!(matches!(err, IoError::TooLarge { .. }), "{err}");
        }

        #[test]
        fn flush_has_nothing_to_do_and_zeroing_is_durable_at_once() {
            let mut f = fixture();
            assert_eq!(f.serve(Op::Flush, 0, 0, &[]).expect("flush"), 0);
            let stats = f.engine.stats().snapshot();
            assert_eq!((stats.flushes, stats.empty_flushes), (1, 1));
            f.serve(Op::WriteZeroes, 4096, 4096, &[]).expect("zeroes");
            assert_eq!(f.on_backing(4096, 4096), vec![0; 4096]);
            assert_eq!(f.mapped(4096, 4096), vec![0; 4096]);
        }

        #[test]
        fn a_request_larger_than_the_staging_buffer_fails_cleanly() {
            let mut f = fixture();
            let err = f
                .serve(Op::Write { fua: false }, 0, MIB, &[])
                .expect_err("too large");
            assert!(matches!(err, IoError::TooLarge { .. }), "{err}");
            assert_eq!(f.on_backing(0, 4096), vec![0xEE; 4096], "unchanged");
            let err = f
                .serve(Op::Write { fua: false }, 15 * MIB, 4096, &[1; 4096])
                .expect_err("beyond the data area");
            assert_eq!(err.errno(), libc::EIO);
        }
    }
}
