//! `UBLK_F_USER_COPY`: the server moves request data itself with `pread` /
//! `pwrite` on `/dev/ublkcN`, at a file position that encodes queue, tag and
//! offset. The other side of the copy is the mapping of the backing, so a READ
//! is one `pwrite` from the mapping into the request's pages and a WRITE one
//! `pread` from them into the mapping: one CPU copy, no bounce buffer.
//!
//! A fault while the kernel copies (a media error under the mapping, a hole it
//! cannot fill) comes back as `EFAULT` from the syscall instead of a `SIGBUS`
//! in the server, and the request fails with `EIO`.

use std::io;
use std::os::fd::RawFd;

use libublk::io::UblkIOCtx;
use libublk::sys;

use crate::backing::MediaRange;
use crate::engine::Transfer;

/// Moves one request's data through `/dev/ublkcN`.
#[derive(Debug)]
pub struct UserCopy {
    cdev: RawFd,
    pos: u64,
}

impl UserCopy {
    /// The transfer for request `tag` of queue `qid` on the char device `cdev`.
    pub fn new(cdev: RawFd, qid: u16, tag: u16) -> UserCopy {
        UserCopy {
            cdev,
            pos: UblkIOCtx::ublk_user_copy_pos(qid, tag, 0),
        }
    }
}

/// Run `step(done)` until `len` bytes are moved: `step` is one `pread` or
/// `pwrite` of the remaining bytes, returning its raw result. Short transfers
/// continue, `EINTR` retries, anything else (including 0) fails.
fn transfer_all(len: usize, mut step: impl FnMut(usize) -> isize) -> io::Result<()> {
    let mut done = 0usize;
    while done < len {
        match usize::try_from(step(done)) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the request's buffer ended early",
                ));
            }
            Ok(n) => done += n,
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

// A position is UBLKSRV_IO_BUF_OFFSET (2^31) + (qid << UBLK_QID_OFF | tag <<
// UBLK_TAG_OFF | offset < 2^UBLK_IO_BUF_BITS), with 16-bit qid and tag: below
// 2^62, so it always fits an off_t.
const _: () = assert!(sys::UBLK_QID_OFF + 16 <= 62);
const _: () = assert!(sys::UBLK_TAG_OFF + 16 <= sys::UBLK_QID_OFF);
const _: () = assert!(sys::UBLK_IO_BUF_BITS <= sys::UBLK_TAG_OFF);

impl UserCopy {
    /// The char device position of byte `done` of the request.
    fn position(&self, done: usize) -> libc::off_t {
        libc::off_t::try_from(self.pos + done as u64)
            .expect("invariant: ublk user-copy positions are below 2^62 (asserted above)")
    }
}

impl UserCopy {
    /// Copy the request's first `buf.len()` bytes into `buf` (a WRITE's
    /// data, for a queue that writes it on itself).
    pub fn read_into(&mut self, buf: &mut [u8]) -> io::Result<()> {
        // SAFETY: `buf` is a live, exclusively borrowed slice of `buf.len()`
        // bytes.
        unsafe { self.read_request(buf.as_mut_ptr(), buf.len()) }
    }

    /// `pread` the request's first `len` bytes to `dst`.
    ///
    /// # Safety
    /// `dst .. dst + len` must be valid for writes for the whole call.
    unsafe fn read_request(&self, dst: *mut u8, len: usize) -> io::Result<()> {
        transfer_all(len, |done| {
            // SAFETY: `dst + done .. dst + len` is writable (the caller's
            // contract), and the kernel writes at most `len - done` bytes.
            unsafe {
                libc::pread(
                    self.cdev,
                    dst.add(done).cast::<libc::c_void>(),
                    len - done,
                    self.position(done),
                )
            }
        })
    }
}

impl UserCopy {
    /// Copy `buf` into the request's first `buf.len()` bytes (a READ's
    /// data, read by the queue itself from the backing).
    pub fn write_from(&mut self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: `buf` is a live slice of `buf.len()` bytes.
        unsafe { self.write_request(buf.as_ptr(), buf.len()) }
    }

    /// `pwrite` `len` bytes from `src` into the request.
    ///
    /// # Safety
    /// `src .. src + len` must be valid for reads for the whole call.
    unsafe fn write_request(&self, src: *const u8, len: usize) -> io::Result<()> {
        transfer_all(len, |done| {
            // SAFETY: `src + done .. src + len` is readable (the caller's
            // contract), and the kernel only reads from it.
            unsafe {
                libc::pwrite(
                    self.cdev,
                    src.add(done).cast::<libc::c_void>(),
                    len - done,
                    self.position(done),
                )
            }
        })
    }
}

impl Transfer for UserCopy {
    fn deliver(&mut self, src: &MediaRange<'_>) -> io::Result<()> {
        // SAFETY: `src` borrows `src.len()` bytes of the live mapping.
        unsafe { self.write_request(src.as_ptr(), src.len()) }
    }

    fn fetch(&mut self, dst: &MediaRange<'_>) -> io::Result<()> {
        // SAFETY: the destination is the live, writable mapping `dst`
        // borrows, `dst.len()` bytes long.
        unsafe { self.read_request(dst.as_ptr(), dst.len()) }
    }
}

/// The fallback without user copy: the kernel copies request data into (WRITE)
/// or out of (READ) a per-tag buffer, and we copy between it and the mapping.
#[derive(Debug)]
pub struct Bounce<'a>(pub &'a mut [u8]);

impl Transfer for Bounce<'_> {
    fn deliver(&mut self, src: &MediaRange<'_>) -> io::Result<()> {
        let buf = self.0.get_mut(..src.len()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "request larger than its buffer",
            )
        })?;
        src.read_into(buf)
    }

    fn fetch(&mut self, dst: &MediaRange<'_>) -> io::Result<()> {
        let buf = self.0.get(..dst.len()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "request larger than its buffer",
            )
        })?;
        dst.write_from(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_transfers_continue_and_errors_stop() {
        let mut steps = vec![3isize, 5, 2].into_iter();
        assert!(transfer_all(10, |_| steps.next().unwrap_or(0)).is_ok());
        let mut steps = vec![3isize, 0].into_iter();
        let err = transfer_all(10, |_| steps.next().unwrap_or(0)).expect_err("eof");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut seen = Vec::new();
        let mut steps = vec![4isize, 4, 2].into_iter();
        transfer_all(10, |done| {
            seen.push(done);
            steps.next().unwrap_or(0)
        })
        .expect("all");
        assert_eq!(seen, vec![0, 4, 8]);
    }
}
