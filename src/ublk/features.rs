//! Which ublk features a kernel offers and a device was granted, by name.
//!
//! The kernel silently drops `UBLK_F_*` flags it does not support, and what
//! it supports moved a lot between the kernels users run (6.12 has user copy
//! and recovery with reissue; 6.16 added QUIESCE, UPDATE_SIZE, AUTO_BUF_REG
//! and per-io daemons; 7.0 BATCH_IO). So pmem-stack reads back what it got,
//! logs the fallback it takes, and shows both in `list --json` — an operator
//! should never have to guess which I/O path a device runs on.

use libublk::sys;
use serde::Serialize;

/// Every flag this code knows by name, in bit order.
const NAMES: &[(u64, &str)] = &[
    (sys::UBLK_F_SUPPORT_ZERO_COPY as u64, "zero_copy"),
    (sys::UBLK_F_URING_CMD_COMP_IN_TASK as u64, "comp_in_task"),
    (sys::UBLK_F_NEED_GET_DATA as u64, "need_get_data"),
    (sys::UBLK_F_USER_RECOVERY as u64, "user_recovery"),
    (
        sys::UBLK_F_USER_RECOVERY_REISSUE as u64,
        "user_recovery_reissue",
    ),
    (sys::UBLK_F_UNPRIVILEGED_DEV as u64, "unprivileged"),
    (sys::UBLK_F_CMD_IOCTL_ENCODE as u64, "ioctl_encode"),
    (sys::UBLK_F_USER_COPY as u64, "user_copy"),
    (sys::UBLK_F_ZONED as u64, "zoned"),
    (
        sys::UBLK_F_USER_RECOVERY_FAIL_IO as u64,
        "user_recovery_fail_io",
    ),
    (sys::UBLK_F_UPDATE_SIZE as u64, "update_size"),
    (sys::UBLK_F_AUTO_BUF_REG as u64, "auto_buf_reg"),
    (sys::UBLK_F_QUIESCE as u64, "quiesce"),
    (sys::UBLK_F_PER_IO_DAEMON as u64, "per_io_daemon"),
    (sys::UBLK_F_BUF_REG_OFF_DAEMON as u64, "buf_reg_off_daemon"),
    (sys::UBLK_F_BATCH_IO as u64, "batch_io"),
    (sys::UBLK_F_INTEGRITY as u64, "integrity"),
    (sys::UBLK_F_SAFE_STOP_DEV as u64, "safe_stop_dev"),
    (sys::UBLK_F_NO_AUTO_PART_SCAN as u64, "no_auto_part_scan"),
    (sys::UBLK_F_SHMEM_ZC as u64, "shmem_zc"),
];

/// A set of `UBLK_F_*` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features(pub u64);

impl Features {
    /// What the running kernel's ublk driver supports (`GET_FEATURES`).
    pub fn of_kernel() -> Option<Features> {
        libublk::ctrl::UblkCtrl::get_features().map(Features)
    }

    /// Whether every flag in `flags` is set.
    pub fn has(self, flags: u32) -> bool {
        let flags = u64::from(flags);
        self.0 & flags == flags
    }

    /// The names of the flags set, in bit order; unknown bits as `bitN`.
    pub fn names(self) -> Vec<String> {
        (0..64)
            .map(|bit| 1u64 << bit)
            .filter(|flag| self.0 & flag != 0)
            .map(|flag| match NAMES.iter().find(|(f, _)| *f == flag) {
                Some((_, name)) => (*name).to_string(),
                None => format!("bit{}", flag.trailing_zeros()),
            })
            .collect()
    }
}

/// How request data moves between the kernel and the media.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IoPath {
    /// `UBLK_F_USER_COPY`: `pread`/`pwrite` on `/dev/ublkcN` straight
    /// between the request's pages and the mapping (one copy; Linux 6.5+).
    /// Writing through, the request's data goes between a staging buffer
    /// and the backing opened `O_DIRECT` instead, both ways: two copies, no
    /// page cache (`ublk::plane::copy`, `ublk::tuning::ReadSource`).
    UserCopy,
    /// The kernel copies through a per-request bounce buffer, and the server
    /// copies again between it and the mapping (older kernels).
    BounceBuffer,
    /// `UBLK_F_AUTO_BUF_REG` (Linux 6.16+): the kernel registers each
    /// request's pages as an io_uring fixed buffer, and the server reads or
    /// writes them against the backing opened `O_DIRECT`. The backing's
    /// driver makes the only copy; nothing of the media is cached in DRAM and
    /// a FLUSH has no dirty pages to write back. Writing through, requests
    /// under 64 KiB are copied by the queue thread as on user copy instead
    /// (an io_uring worker hop costs more than a small copy;
    /// `ublk::plane::direct`), so the path asks for user copy too. Block
    /// devices and image files only (a devdax namespace has no read/write
    /// path).
    Direct,
    /// `UBLK_F_BATCH_IO` (Linux 7.0+): the kernel copies each request
    /// through a per-tag buffer as on bounce buffers, but hands requests
    /// over and takes their completions in batches (one multishot fetch,
    /// one commit per batch) instead of one command per request. Writing
    /// back, data is copied between the buffer and the mapping; writing
    /// through, READs and WRITEs go between the buffer and the backing
    /// opened `O_DIRECT` (`ublk::plane::batch`).
    Batch,
}

impl IoPath {
    /// The path a device with the granted `flags` runs on.
    pub fn of(granted: Features) -> IoPath {
        if granted.has(sys::UBLK_F_AUTO_BUF_REG) {
            IoPath::Direct
        } else if granted.has(sys::UBLK_F_BATCH_IO) {
            IoPath::Batch
        } else if granted.has(sys::UBLK_F_USER_COPY) {
            IoPath::UserCopy
        } else {
            IoPath::BounceBuffer
        }
    }

    /// The name used in logs, JSON and `--io-path`.
    pub const fn name(self) -> &'static str {
        match self {
            IoPath::UserCopy => "user_copy",
            IoPath::BounceBuffer => "bounce_buffer",
            IoPath::Direct => "direct",
            IoPath::Batch => "batch",
        }
    }

    /// The data-path flag this path asks the kernel for (none for bounce
    /// buffers, which every ublk kernel has).
    pub const fn flag(self) -> u64 {
        match self {
            IoPath::UserCopy => sys::UBLK_F_USER_COPY as u64,
            IoPath::BounceBuffer => 0,
            // User copy too, for the requests its queues copy themselves
            // (`ublk::plane::direct::REGISTERED_FROM`).
            IoPath::Direct => (sys::UBLK_F_AUTO_BUF_REG | sys::UBLK_F_USER_COPY) as u64,
            IoPath::Batch => sys::UBLK_F_BATCH_IO as u64,
        }
    }

    /// The name of [`IoPath::flag`], for messages.
    const fn flag_name(self) -> &'static str {
        match self {
            IoPath::UserCopy | IoPath::BounceBuffer => "UBLK_F_USER_COPY",
            IoPath::Direct => "UBLK_F_AUTO_BUF_REG",
            IoPath::Batch => "UBLK_F_BATCH_IO",
        }
    }

    /// The Linux release that brought the path's flag.
    const fn since(self) -> &'static str {
        match self {
            IoPath::UserCopy => "6.5",
            IoPath::BounceBuffer => "6.0",
            IoPath::Direct => "6.16",
            IoPath::Batch => "7.0",
        }
    }
}

/// What `add --io-path` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoPathChoice {
    /// The path measured fastest among those the kernel and the backing offer
    /// (see [`choose`]).
    Auto,
    /// Exactly this path, or a clear refusal.
    Exactly(IoPath),
}

/// Why a requested path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error(
        "the {path} I/O path is not offered by this kernel (it needs {flag}, Linux {since}+); use --io-path auto"
    )]
    Kernel {
        path: &'static str,
        flag: &'static str,
        since: &'static str,
    },
    #[error(
        "the direct I/O path needs a block device or an image file; a devdax namespace is served through its mapping (use --io-path auto)"
    )]
    Mapped,
}

/// The path to serve on. `kernel` is what the driver offers (`None`: it does
/// not say, as before 6.x's GET_FEATURES — assume user copy); `backing` what
/// is served (a devdax namespace only through its mapping); `cache` what
/// `--write-cache` asks for.
///
/// Auto picks, by measurement (bench/README.md, "The direct path by
/// default"): the direct path over a block device that opens `O_DIRECT`,
/// writing through, where the kernel offers it (6.16+); user copy
/// elsewhere where it is offered; bounce buffers otherwise. Over twenty
/// rounds in four 7.3 boots the direct path served 128 KiB reads 1.63× and
/// writes 1.42× as fast as user copy, 4 KiB QD32 writes, QD1 reads and QD1
/// fsync writes level (1.00–1.04×), 4 KiB QD32 reads at 0.85×. Writing
/// back, the direct path would send every request to an io_uring worker,
/// and over image files (which write back unless told otherwise; not
/// measured there) user copy stays. The batch path is served on request only: user copy tied
/// it but for 128 KiB reads (1.74×) and QD1 fsync writes (1.17×).
pub fn choose(
    choice: IoPathChoice,
    kernel: Option<Features>,
    backing: CacheBacking,
    cache: WriteCacheChoice,
) -> Result<IoPath, PathRefusal> {
    let offers = |path: IoPath| match kernel {
        Some(k) => k.0 & path.flag() == path.flag(),
        // A kernel too old to say has neither 6.16's nor 7.0's flags.
        None => !matches!(path, IoPath::Direct | IoPath::Batch),
    };
    let writes_through_directly = matches!(backing, CacheBacking::Block { direct_io: true })
        && cache != WriteCacheChoice::Exactly(WriteCache::WriteBack);
    match choice {
        IoPathChoice::Exactly(IoPath::Direct) if backing == CacheBacking::Dax => {
            Err(PathRefusal::Mapped)
        }
        IoPathChoice::Exactly(path) if offers(path) => Ok(path),
        IoPathChoice::Exactly(path) => Err(PathRefusal::Kernel {
            path: path.name(),
            flag: path.flag_name(),
            since: path.since(),
        }),
        IoPathChoice::Auto if writes_through_directly && offers(IoPath::Direct) => {
            Ok(IoPath::Direct)
        }
        IoPathChoice::Auto if offers(IoPath::UserCopy) => Ok(IoPath::UserCopy),
        IoPathChoice::Auto => Ok(IoPath::BounceBuffer),
    }
}

/// Whether the device tells the kernel it has a volatile write cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteCache {
    /// A completed write may still be volatile until a FLUSH
    /// (`UBLK_ATTR_VOLATILE_CACHE`): the mapped paths, where writes land in
    /// the page cache or CPU caches, and the direct path over an image file.
    WriteBack,
    /// Every write is durable when it completes, so the block layer answers
    /// FLUSH itself: over a block device written `O_DIRECT` (the direct
    /// path, see `engine::direct`; user copy and batch, see `ublk::plane::copy`),
    /// and devdax, where a durable write is a cache-line write-back of its
    /// own bytes.
    WriteThrough,
}

impl WriteCache {
    /// The name used in logs, JSON and `--write-cache`.
    pub const fn name(self) -> &'static str {
        match self {
            WriteCache::WriteBack => "write_back",
            WriteCache::WriteThrough => "write_through",
        }
    }

    /// What a device's `UBLK_PARAM_TYPE_BASIC` attributes say.
    pub fn of_attrs(attrs: u32) -> WriteCache {
        if attrs & sys::UBLK_ATTR_VOLATILE_CACHE != 0 {
            WriteCache::WriteBack
        } else {
            WriteCache::WriteThrough
        }
    }

    /// The basic attributes a device with this cache declares.
    pub const fn attrs(self) -> u32 {
        match self {
            WriteCache::WriteBack => sys::UBLK_ATTR_VOLATILE_CACHE | sys::UBLK_ATTR_FUA,
            WriteCache::WriteThrough => 0,
        }
    }
}

/// What `add --write-cache` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteCacheChoice {
    /// See [`choose_write_cache`].
    Auto,
    /// Exactly this, or a clear refusal.
    Exactly(WriteCache),
}

/// Why a requested write cache cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteCacheRefusal {
    #[error(
        "--write-cache write-through needs user copy (Linux 6.5+), the direct (6.16+) or batch (7.0+) I/O path, or a devdax backing, but this device runs on {path}, where every write would cost an msync in its queue; use --write-cache auto"
    )]
    NeedsUserCopy { path: &'static str },
    #[error(
        "--write-cache write-through on {path} writes O_DIRECT, but this backing cannot be opened O_DIRECT; use --write-cache auto"
    )]
    NoDirectIo { path: &'static str },
}

/// What kind of backing a device serves, as far as its cache goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheBacking {
    /// A block device (`/dev/pmemN`); `direct_io`: it opens `O_DIRECT`.
    Block { direct_io: bool },
    /// A devdax namespace: a mapping with no page cache.
    Dax,
    /// An image file; `direct_io`: it opens `O_DIRECT`.
    File { direct_io: bool },
}

/// The write cache of a device served on `path` over `backing`.
///
/// Write-through means a durable write per WRITE. Auto chooses it where that
/// is cheap, so FLUSH costs nothing: over a block device on the direct path
/// (the pmem driver's FUA write, or one group sync per batch), on user
/// copy and batch (the data written `O_DIRECT` instead of into the page
/// cache: `ublk::plane::copy`, `ublk::plane::batch`), and on devdax (a cache-line
/// write-back of the written bytes). Over an image file a durable write can
/// be a file-system journal commit, so auto writes back there; on bounce
/// buffers every write-through WRITE would be an `msync` in its queue, so
/// it is refused.
/// Measured: bench/README.md, "Write-through".
pub fn choose_write_cache(
    choice: WriteCacheChoice,
    path: IoPath,
    backing: CacheBacking,
) -> Result<WriteCache, WriteCacheRefusal> {
    let possible = match (backing, path) {
        (CacheBacking::Dax, _) | (_, IoPath::Direct) => Ok(()),
        (_, IoPath::BounceBuffer) => Err(WriteCacheRefusal::NeedsUserCopy { path: path.name() }),
        (
            CacheBacking::Block { direct_io } | CacheBacking::File { direct_io },
            IoPath::UserCopy | IoPath::Batch,
        ) => {
            if direct_io {
                Ok(())
            } else {
                Err(WriteCacheRefusal::NoDirectIo { path: path.name() })
            }
        }
    };
    match choice {
        WriteCacheChoice::Exactly(WriteCache::WriteThrough) => {
            possible.map(|()| WriteCache::WriteThrough)
        }
        WriteCacheChoice::Exactly(WriteCache::WriteBack) => Ok(WriteCache::WriteBack),
        WriteCacheChoice::Auto
            if possible.is_ok() && !matches!(backing, CacheBacking::File { .. }) =>
        {
            Ok(WriteCache::WriteThrough)
        }
        WriteCacheChoice::Auto => Ok(WriteCache::WriteBack),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_bit_order_and_unknown_bits_by_number() {
        let f = Features(u64::from(sys::UBLK_F_USER_COPY | sys::UBLK_F_USER_RECOVERY) | (1 << 40));
        assert_eq!(f.names(), ["user_recovery", "user_copy", "bit40"]);
        assert!(f.has(sys::UBLK_F_USER_COPY));
        assert!(!f.has(sys::UBLK_F_USER_COPY | sys::UBLK_F_QUIESCE));
    }

    #[test]
    fn every_known_flag_is_one_bit_and_named_once() {
        for (i, (flag, name)) in NAMES.iter().enumerate() {
            assert_eq!(flag.count_ones(), 1, "{name}");
            assert!(
                NAMES[..i].iter().all(|(f, n)| f != flag && n != name),
                "{name}"
            );
        }
    }

    #[test]
    fn io_path_follows_user_copy() {
        assert_eq!(
            IoPath::of(Features(u64::from(sys::UBLK_F_USER_COPY))),
            IoPath::UserCopy
        );
        assert_eq!(IoPath::of(Features(0)), IoPath::BounceBuffer);
        assert_eq!(
            IoPath::of(Features(u64::from(sys::UBLK_F_AUTO_BUF_REG))),
            IoPath::Direct
        );
        assert_eq!(IoPath::UserCopy.name(), "user_copy");
        assert_eq!(
            IoPath::of(Features(u64::from(sys::UBLK_F_BATCH_IO))),
            IoPath::Batch
        );
        assert_eq!(IoPath::Batch.name(), "batch");
    }

    /// What 6.12 and 7.3 offer, as far as the choice is concerned.
    const LTS: Features = Features(sys::UBLK_F_USER_COPY as u64);
    const CURRENT: Features = Features((sys::UBLK_F_USER_COPY | sys::UBLK_F_AUTO_BUF_REG) as u64);

    const PMEM: CacheBacking = CacheBacking::Block { direct_io: true };
    const AUTO_CACHE: WriteCacheChoice = WriteCacheChoice::Auto;

    #[test]
    fn auto_takes_the_direct_path_over_pmem_writing_through_where_offered() {
        let auto = IoPathChoice::Auto;
        assert_eq!(
            choose(auto, Some(CURRENT), PMEM, AUTO_CACHE),
            Ok(IoPath::Direct)
        );
        let through = WriteCacheChoice::Exactly(WriteCache::WriteThrough);
        assert_eq!(
            choose(auto, Some(CURRENT), PMEM, through),
            Ok(IoPath::Direct)
        );
        let back = WriteCacheChoice::Exactly(WriteCache::WriteBack);
        assert_eq!(
            choose(auto, Some(CURRENT), PMEM, back),
            Ok(IoPath::UserCopy),
            "writing back, the direct path sends every request to a worker"
        );
        for other in [
            CacheBacking::Dax,
            CacheBacking::File { direct_io: true },
            CacheBacking::File { direct_io: false },
            CacheBacking::Block { direct_io: false },
        ] {
            assert_eq!(
                choose(auto, Some(CURRENT), other, AUTO_CACHE),
                Ok(IoPath::UserCopy),
                "{other:?}"
            );
        }
    }

    #[test]
    fn auto_takes_user_copy_where_the_direct_path_is_not_offered() {
        let auto = IoPathChoice::Auto;
        assert_eq!(
            choose(auto, Some(LTS), PMEM, AUTO_CACHE),
            Ok(IoPath::UserCopy)
        );
        assert_eq!(
            choose(auto, Some(Features(0)), PMEM, AUTO_CACHE),
            Ok(IoPath::BounceBuffer)
        );
        assert_eq!(choose(auto, None, PMEM, AUTO_CACHE), Ok(IoPath::UserCopy));
        let batching = Features((sys::UBLK_F_USER_COPY | sys::UBLK_F_BATCH_IO) as u64);
        assert_eq!(
            choose(auto, Some(batching), PMEM, AUTO_CACHE),
            Ok(IoPath::UserCopy),
            "batch only when asked for"
        );
        let batch = IoPathChoice::Exactly(IoPath::Batch);
        assert!(
            choose(batch, None, PMEM, AUTO_CACHE).is_err(),
            "no 7.0 flag unasked"
        );
    }

    #[test]
    fn write_through_where_a_durable_write_is_cheap() {
        use CacheBacking::{Dax, File};
        use IoPath::{Batch, BounceBuffer, Direct, UserCopy};
        use WriteCache::{WriteBack, WriteThrough};
        const BLOCK: CacheBacking = CacheBacking::Block { direct_io: true };
        const IMAGE: CacheBacking = File { direct_io: true };
        const RAMFS: CacheBacking = File { direct_io: false };
        let auto = WriteCacheChoice::Auto;
        for (path, backing, cache) in [
            (Direct, BLOCK, WriteThrough),
            (UserCopy, BLOCK, WriteThrough),
            (UserCopy, Dax, WriteThrough),
            (BounceBuffer, Dax, WriteThrough),
            (Direct, IMAGE, WriteBack),
            (UserCopy, IMAGE, WriteBack),
            (UserCopy, RAMFS, WriteBack),
            (BounceBuffer, BLOCK, WriteBack),
            (Batch, BLOCK, WriteThrough),
            (Batch, Dax, WriteThrough),
            (Batch, IMAGE, WriteBack),
        ] {
            assert_eq!(
                choose_write_cache(auto, path, backing),
                Ok(cache),
                "{path:?} {backing:?}"
            );
        }
        let through = WriteCacheChoice::Exactly(WriteThrough);
        for (path, backing) in [(Direct, IMAGE), (UserCopy, IMAGE), (BounceBuffer, Dax)] {
            assert_eq!(
                choose_write_cache(through, path, backing),
                Ok(WriteThrough),
                "{path:?} {backing:?}"
            );
        }
        let err = choose_write_cache(through, BounceBuffer, BLOCK).expect_err("msync per write");
        assert!(err.to_string().contains("needs user copy"), "{err}");
        for path in [UserCopy, Batch] {
            let err = choose_write_cache(through, path, RAMFS).expect_err("no O_DIRECT");
            assert!(
                err.to_string().contains("cannot be opened O_DIRECT"),
                "{err}"
            );
        }
        let back = WriteCacheChoice::Exactly(WriteBack);
        for (path, backing) in [(Direct, BLOCK), (UserCopy, BLOCK), (UserCopy, Dax)] {
            assert_eq!(choose_write_cache(back, path, backing), Ok(WriteBack));
        }
    }

    #[test]
    fn the_cache_round_trips_through_the_device_attributes() {
        for cache in [WriteCache::WriteBack, WriteCache::WriteThrough] {
            assert_eq!(WriteCache::of_attrs(cache.attrs()), cache);
        }
        assert_eq!(WriteCache::of_attrs(0), WriteCache::WriteThrough);
    }

    #[test]
    fn an_explicit_path_is_granted_or_refused_with_the_reason() {
        let direct = IoPathChoice::Exactly(IoPath::Direct);
        assert_eq!(
            choose(direct, Some(CURRENT), PMEM, AUTO_CACHE),
            Ok(IoPath::Direct)
        );
        let err =
            choose(direct, Some(LTS), PMEM, AUTO_CACHE).expect_err("6.12 has no auto_buf_reg");
        assert!(
            err.to_string().contains("not offered by this kernel"),
            "{err}"
        );
        assert!(err.to_string().contains("6.16"), "{err}");
        assert_eq!(
            choose(direct, Some(CURRENT), CacheBacking::Dax, AUTO_CACHE),
            Err(PathRefusal::Mapped)
        );
        let batch = IoPathChoice::Exactly(IoPath::Batch);
        let err = choose(batch, Some(CURRENT), PMEM, AUTO_CACHE).expect_err("not granted");
        assert!(err.to_string().contains("UBLK_F_BATCH_IO"), "{err}");
        assert!(err.to_string().contains("7.0"), "{err}");
        let batching = Features(CURRENT.0 | u64::from(sys::UBLK_F_BATCH_IO));
        assert_eq!(
            choose(batch, Some(batching), PMEM, AUTO_CACHE),
            Ok(IoPath::Batch)
        );
        assert_eq!(
            choose(batch, Some(batching), CacheBacking::Dax, AUTO_CACHE),
            Ok(IoPath::Batch)
        );
        let bounce = IoPathChoice::Exactly(IoPath::BounceBuffer);
        assert_eq!(
            choose(bounce, Some(CURRENT), PMEM, AUTO_CACHE),
            Ok(IoPath::BounceBuffer)
        );
    }
}
