//! The backing reopened `O_DIRECT`, as the queues that write through it
//! see it: the direct data plane (the reads and writes it hands to the
//! pmem driver go through the queue's io_uring, by file descriptor; those
//! it copies itself go here) and the write-through user-copy and batch
//! planes (their reads and writes go here, in the queue thread, writes with
//! `RWF_DSYNC` or before their batch's sync). A handle on the backing, so it
//! lives with the backing and every data plane can use it.

use std::fs::File;

/// The backing as the direct path sees it.
#[derive(Debug)]
pub struct DirectBacking {
    /// The backing, reopened `O_DIRECT`.
    pub file: File,
    /// Byte offset of the data area in it.
    pub data_offset: u64,
}

impl DirectBacking {
    /// Write `data` at data-area offset `at` in this thread; `dsync`: with
    /// `RWF_DSYNC`, durable when it returns. Short writes continue.
    pub fn write_all(&self, at: u64, data: &[u8], dsync: bool) -> std::io::Result<()> {
        let flags = if dsync {
            rustix::io::ReadWriteFlags::DSYNC
        } else {
            rustix::io::ReadWriteFlags::empty()
        };
        self.all(at, data.len(), |pos, done| {
            let rest = data.get(done..).unwrap_or_default();
            rustix::io::pwritev2(&self.file, &[std::io::IoSlice::new(rest)], pos, flags)
        })
    }

    /// Fill `buf` from data-area offset `at` in this thread. Short reads
    /// continue; the end of the backing is an error.
    pub fn read_exact(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let len = buf.len();
        self.all(at, len, |pos, done| {
            let rest = buf.get_mut(done..).unwrap_or_default();
            rustix::io::pread(&self.file, rest, pos)
        })
    }

    /// Run `step(position, done)` until `len` bytes are moved; `EINTR`
    /// retries, 0 bytes is `EIO`.
    fn all(
        &self,
        at: u64,
        len: usize,
        mut step: impl FnMut(u64, usize) -> rustix::io::Result<usize>,
    ) -> std::io::Result<()> {
        let mut done = 0usize;
        while done < len {
            let pos = self
                .data_offset
                .checked_add(at)
                .and_then(|p| p.checked_add(done as u64))
                .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
            match step(pos, done) {
                Ok(0) => return Err(std::io::Error::from_raw_os_error(libc::EIO)),
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }
}
