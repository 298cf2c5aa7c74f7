//! The settings a server reads from its environment, for measuring one way
//! of serving against another in the same boot (bench/README.md, "Ring
//! setup" and "Per-I/O daemons"): they change how the queues run, never
//! what they serve, so they are no command-line options a user must learn.
//!
//! * `PMEM_STACK_RING`: each queue thread's io_uring task-work mode
//!   ([`RingSetup`]).
//! * `PMEM_STACK_IO_THREADS`: threads per hardware queue, each serving an
//!   interleaved share of the queue's tags (`UBLK_F_PER_IO_DAEMON`, Linux
//!   6.16+). One, the default, is a thread per queue as on every kernel.
//! * `PMEM_STACK_READS`: where a user-copy queue that writes through reads
//!   from ([`ReadSource`]).
//!
//! All are read once, before the device exists: a value that is wrong is
//! refused (`add`, `recover` and `serve` exit 2) without touching anything.

use super::control::CONTROL_PATH;
use super::features::Features;
use super::plane::ring::RingSetup;

/// The variable that chooses the queue rings' setup.
pub const RING_ENV: &str = "PMEM_STACK_RING";

/// The variable that chooses the threads per hardware queue.
pub const IO_THREADS_ENV: &str = "PMEM_STACK_IO_THREADS";

/// The variable that chooses where writing-through user-copy queues read.
pub const READS_ENV: &str = "PMEM_STACK_READS";

/// Where a user-copy queue that writes through reads from. Its writes go
/// to the backing opened `O_DIRECT` either way (`ublk::plane::copy`); this
/// says whether READs follow them there.
///
/// Direct, the default, by measurement (bench/README.md, "Reads without
/// the page cache"): over `/dev/pmemN` the mapping is the block device's
/// page cache, so a read through it is a page fault that copies the block
/// from pmem into DRAM and a second copy into the request, every
/// `O_DIRECT` write must drop (and unmap) the cached copy of what it
/// wrote, and the server holds a second cache of what the file system
/// above already caches. Reading `O_DIRECT` costs the same two copies with
/// none of that: 0.57–0.87× the server CPU per 4 KiB I/O on both kernels,
/// and a flat footprint. What it gives up: a hot region read again with
/// `O_DIRECT` from above no longer hits a DRAM copy (6.12's 128 KiB
/// sequential re-reads: 0.63× the throughput).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadSource {
    /// The mapping: over `/dev/pmemN` that is the block device's page
    /// cache, filled from the media by page faults.
    Mapping,
    /// The backing opened `O_DIRECT`: read into the queue's staging buffer
    /// in the queue thread (the pmem driver copies in the caller's context:
    /// no io_uring worker hop), then copied into the request. Two copies,
    /// no page cache, no faults.
    #[default]
    Direct,
}

impl ReadSource {
    /// The source `PMEM_STACK_READS=value` names; `Err` says what is wrong.
    pub fn parse(value: &str) -> Result<ReadSource, String> {
        if value.is_empty() {
            return Ok(ReadSource::default());
        }
        [ReadSource::Mapping, ReadSource::Direct]
            .into_iter()
            .find(|source| source.name() == value)
            .ok_or_else(|| format!("{READS_ENV}={value} is not a read source (mapping or direct)"))
    }

    /// Its name, as `PMEM_STACK_READS` spells it.
    pub fn name(self) -> &'static str {
        match self {
            ReadSource::Mapping => "mapping",
            ReadSource::Direct => "direct",
        }
    }
}

/// The most threads a queue may have (more than a guest has CPUs is
/// already more than helps; the queue depth is the hard limit).
pub const MAX_IO_THREADS: u16 = 16;

/// How a server runs its queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    pub ring: RingSetup,
    /// Threads per hardware queue (1: the classic thread per queue).
    pub io_threads: u16,
    pub reads: ReadSource,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            ring: RingSetup::default(),
            io_threads: 1,
            reads: ReadSource::default(),
        }
    }
}

impl Tuning {
    /// The tuning this process's environment asks for; `Err` names the
    /// variable and value it cannot use.
    pub fn from_env() -> Result<Tuning, String> {
        let var = |name| std::env::var(name).ok();
        Tuning::parse(
            var(RING_ENV).as_deref(),
            var(IO_THREADS_ENV).as_deref(),
            var(READS_ENV).as_deref(),
        )
    }

    fn parse(
        ring: Option<&str>,
        io_threads: Option<&str>,
        reads: Option<&str>,
    ) -> Result<Tuning, String> {
        let ring = ring.map_or(Ok(RingSetup::default()), RingSetup::parse)?;
        let reads = reads.map_or(Ok(ReadSource::default()), ReadSource::parse)?;
        let io_threads = match io_threads {
            None | Some("") => 1,
            Some(value) => value
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=MAX_IO_THREADS).contains(n))
                .ok_or_else(|| {
                    format!(
                        "{IO_THREADS_ENV}={value} is not a number of threads per queue (1 to {MAX_IO_THREADS})"
                    )
                })?,
        };
        Ok(Tuning {
            ring,
            io_threads,
            reads,
        })
    }

    /// Why this tuning cannot serve on a kernel that offers `kernel`, if it
    /// cannot.
    pub fn refusal(self, kernel: Features) -> Option<String> {
        let per_io = kernel.has(libublk::sys::UBLK_F_PER_IO_DAEMON);
        (self.io_threads > 1 && !per_io).then(|| {
            format!(
                "{IO_THREADS_ENV}={} needs per-I/O daemons (UBLK_F_PER_IO_DAEMON, Linux 6.16+), which this kernel does not offer; unset it",
                self.io_threads
            )
        })
    }

    /// The tuning this process's environment asks for, if the running
    /// kernel can serve it; `Err` says what is wrong. Asks the driver only
    /// when that matters (more than one thread per queue) and it is there:
    /// without it, the command's own check of the driver says so, and
    /// libublk would print a line of its own first.
    pub fn for_this_kernel() -> Result<Tuning, String> {
        let tuning = Tuning::from_env()?;
        if tuning.io_threads <= 1 || !std::path::Path::new(CONTROL_PATH).exists() {
            return Ok(tuning);
        }
        match Features::of_kernel().and_then(|kernel| tuning.refusal(kernel)) {
            Some(why) => Err(why),
            None => Ok(tuning),
        }
    }

    /// Whether anything differs from the default, for the server's log.
    pub fn describe(self) -> Option<String> {
        (self != Tuning::default()).then(|| {
            format!(
                "queue rings: {}, {} thread(s) per queue, user-copy reads: {}",
                self.ring.name(),
                self.io_threads,
                self.reads.name()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_is_the_default() {
        assert_eq!(Tuning::parse(None, None, None), Ok(Tuning::default()));
        assert_eq!(
            Tuning::parse(Some(""), Some(""), Some("")),
            Ok(Tuning::default())
        );
        assert_eq!(Tuning::default().describe(), None);
    }

    #[test]
    fn values_parse_and_strangers_are_refused() {
        let t = Tuning::parse(Some("defer"), Some("2"), Some("direct")).expect("valid");
        assert_eq!(t.ring, RingSetup::Defer);
        assert_eq!(t.io_threads, 2);
        assert_eq!(t.reads, ReadSource::Direct);
        assert!(
            t.describe()
                .is_some_and(|d| d.contains("defer, 2 thread") && d.ends_with("reads: direct")),
            "{t:?}"
        );
        for source in [ReadSource::Mapping, ReadSource::Direct] {
            assert_eq!(ReadSource::parse(source.name()), Ok(source));
        }
        let err = Tuning::parse(None, None, Some("cache")).expect_err("reads");
        assert_eq!(
            err,
            "PMEM_STACK_READS=cache is not a read source (mapping or direct)"
        );
        for bad in ["0", "17", "two", "-1"] {
            let err = Tuning::parse(None, Some(bad), None).expect_err(bad);
            assert!(
                err.starts_with(&format!("{IO_THREADS_ENV}={bad} ")),
                "{err}"
            );
        }
        let err = Tuning::parse(Some("sqpoll"), None, None).expect_err("ring");
        assert!(err.contains("PMEM_STACK_RING=sqpoll"), "{err}");
    }

    #[test]
    fn threads_per_queue_need_the_kernel_to_offer_them() {
        let two = Tuning {
            io_threads: 2,
            ..Tuning::default()
        };
        let per_io = Features(u64::from(libublk::sys::UBLK_F_PER_IO_DAEMON));
        assert_eq!(two.refusal(per_io), None);
        let err = two
            .refusal(Features(0))
            .expect("6.12 has no per-I/O daemons");
        assert!(
            err.contains("PMEM_STACK_IO_THREADS=2") && err.contains("6.16"),
            "{err}"
        );
        assert_eq!(Tuning::default().refusal(Features(0)), None);
    }
}
