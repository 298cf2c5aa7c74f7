//! A regular file as the backing: an image for tests, VMs and experiments.
//!
//! Its size is `st_size`, its identity the file system and inode (a path may
//! be a link), it maps through the page cache (`msync` makes stores durable),
//! and a discard punches a hole so the file gives the space back.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;

use rustix::fs::FallocateFlags;

use super::kind::Kind;
use super::{BackingKind, Identity};

/// An image file.
#[derive(Debug)]
pub(crate) struct ImageFile {
    dev: u64,
    ino: u64,
}

impl ImageFile {
    /// The kind's facts, from the file's metadata.
    pub(crate) fn from_metadata(meta: &Metadata) -> ImageFile {
        ImageFile {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

impl Kind for ImageFile {
    fn kind(&self) -> BackingKind {
        BackingKind::File
    }

    fn identity(&self) -> Identity {
        Identity::File {
            dev: self.dev,
            ino: self.ino,
        }
    }

    fn size(&self, _file: &File, meta: &Metadata) -> io::Result<u64> {
        Ok(meta.len())
    }

    fn zero_mode(&self, discard: bool) -> Option<FallocateFlags> {
        Some(if discard {
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE
        } else {
            FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE
        })
    }
}
