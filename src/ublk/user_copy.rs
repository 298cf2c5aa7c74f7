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

fn offset(pos: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

impl Transfer for UserCopy {
    fn deliver(&mut self, src: &MediaRange<'_>) -> io::Result<()> {
        let mut done = 0usize;
        while done < src.len() {
            let pos = offset(self.pos + done as u64)?;
            // SAFETY: `src.as_ptr() + done .. src.as_ptr() + src.len()` lies in
            // the live mapping `src` borrows; the kernel only reads from it.
            let n = unsafe {
                libc::pwrite(
                    self.cdev,
                    src.as_ptr().add(done).cast::<libc::c_void>(),
                    src.len() - done,
                    pos,
                )
            };
            match usize::try_from(n) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "request buffer full",
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

    fn fetch(&mut self, dst: &MediaRange<'_>) -> io::Result<()> {
        let mut done = 0usize;
        while done < dst.len() {
            let pos = offset(self.pos + done as u64)?;
            // SAFETY: the destination lies in the live, writable mapping `dst`
            // borrows, and the kernel writes at most `dst.len() - done` bytes.
            let n = unsafe {
                libc::pread(
                    self.cdev,
                    dst.as_ptr().add(done).cast::<libc::c_void>(),
                    dst.len() - done,
                    pos,
                )
            };
            match usize::try_from(n) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "request data ended early",
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
