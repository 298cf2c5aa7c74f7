//! Command-line syntax. The command names, flags and JSON keys are a contract
//! other tools rely on (see README.md).

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use pmem_stack::dm::MapName;
use pmem_stack::format::{Alignment, LogicalBlockSize, OwnerKind, OwnerName, ReserveMode};
use pmem_stack::layout::ReserveRequest;
use pmem_stack::size::parse_size;
use pmem_stack::ublk::affinity::Affinity;
use pmem_stack::ublk::control::{DEFAULT_DEPTH, MAX_DEPTH, MAX_QUEUES};
use pmem_stack::ublk::features::{IoPath, IoPathChoice, WriteCache, WriteCacheChoice};
use pmem_stack::volume::LayoutOptions;
use pmem_stack::volume::amend::{OwnerSize, OwnerSpec};

/// `--version`: the program's version and the on-media format versions it
/// reads and writes (a volume of a newer major is never interpreted; a newer
/// minor of the same major is read).
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    use pmem_stack::format::superblock::{VERSION_MAJOR, VERSION_MINOR};
    format!(
        "{} (on-media format: reads {VERSION_MAJOR}.x, writes {VERSION_MAJOR}.0, and {VERSION_MAJOR}.{VERSION_MINOR} for a reserve split among owners)",
        env!("CARGO_PKG_VERSION")
    )
});

/// Carve a persistent-memory namespace into a reserved region and a ublk block device.
#[derive(Debug, Parser)]
#[command(
    name = "pmem-stack",
    version = VERSION.as_str(),
    propagate_version = true,
    after_help = "Exit status: 0 success, 1 failure (or 'check' found a problem), 2 bad usage. 'pmem-stack man' prints the manual page."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new pmem-stack layout (super blocks; the reserve and data are not touched).
    Format(FormatArgs),
    /// Show the layout of a backing (read-only; works while it is served).
    Info(InfoArgs),
    /// List every backing on this machine and what it holds (read-only).
    ///
    /// Looks at every /dev/pmem* and /dev/dax* device, and at each PATH given (an image
    /// file or a device), and says what each holds: a pmem-stack volume (its uuid, format
    /// version, whether it is healthy, its data and reserve sizes, and the device serving
    /// it), nothing ("blank"), someone else's data ("foreign", named: a file system, a
    /// partition table, ...), a damaged volume or one of a newer format, or why it cannot
    /// be read. Nothing is written and nothing is opened exclusively, so it works beside
    /// running servers. Exit status 1 when a PATH given cannot be read.
    Scan(ScanArgs),
    /// Verify both super block copies; --repair rewrites a bad one from the good one.
    Check(CheckArgs),
    /// Serve the data area as /dev/ublkbN (formats a blank backing first when given --reserve).
    Add(AddArgs),
    /// Flush, stop and remove served devices.
    Del(DelArgs),
    /// List served devices.
    List(ListArgs),
    /// Re-attach a new server to a device whose server died.
    Recover(RecoverArgs),
    /// Map the data area with the kernel's device-mapper as /dev/mapper/NAME
    /// (linear; DAX-capable on an fsdax namespace).
    Map(MapArgs),
    /// Remove a map made by 'map'.
    Unmap(UnmapArgs),
    /// What each owner of the reserve needs to claim it: offsets, physical range, frame numbers.
    Reserved(ReservedArgs),
    /// Split the reserve among several owners (format 1.1), or list its owners.
    #[command(subcommand)]
    Reserve(ReserveCommand),
    /// Extend the volume over a backing that grew: move the backup copy to the new end, enlarge the data area.
    ///
    /// Offline, the next 'add' serves the larger size. A served backing (Linux 6.16+) is grown
    /// live: its server hands the device over (I/O waits), the volume grows, and a new server
    /// resizes /dev/ublkbN; then grow a mounted file system with its own tool (resize2fs).
    Grow(GrowArgs),
    /// Replace a device's running server with this binary, without unmounting (live upgrade).
    Restart(RestartArgs),
    /// Serve a backing in the foreground as a systemd service does: add it, or
    /// recover the device it is attached to when that device's server died.
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write every page into a directory.
    Man(ManArgs),
    /// For the udev rule: print PMEM_STACK_UUID=… and PMEM_STACK_ID=… of ublkbN.
    #[command(name = "udev-id", hide = true)]
    UdevId(UdevIdArgs),
}

/// `reserve split|list`.
#[derive(Debug, Subcommand)]
pub enum ReserveCommand {
    /// Record owners for sub-ranges of the reserve (not while the backing is served).
    Split(SplitArgs),
    /// List the reserve's owners.
    List(OwnersListArgs),
}

/// `--owner NAME[:KIND]=SIZE|auto|rest`, for `format` and `reserve split`.
const OWNER_HELP: &str = "An owner of a sub-range of the reserve, in order from its start: \
NAME[:KIND]=SIZE|auto|rest. KIND is hypervisor, os or other (default: hypervisor for the \
names xen and hypervisor, os for dom0, linux and os; required for other names). SIZE is \
rounded up to 4 KiB; auto sizes by the kind (os: 64 bytes per 4 KiB data page, hypervisor: \
Xen's rule); rest takes what the others leave. Repeat for each owner (at most 16)";

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    #[arg(long = "owner", value_name = "NAME[:KIND]=SIZE|auto|rest", value_parser = parse_owner, required = true, help = OWNER_HELP)]
    pub owners: Vec<OwnerSpec>,
    /// Print the result as JSON (as 'reserve list --json').
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct OwnersListArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReservedArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    /// Only this owner (an unsplit reserve's one owner is named after its mode).
    #[arg(long, value_name = "NAME")]
    pub owner: Option<String>,
    /// Print JSON: an array of owners, or one object with --owner.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GrowArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    /// Print the result as JSON (the same object as 'info --json').
    #[arg(long)]
    pub json: bool,
}

/// The kind an owner called `name` has when `--owner` names none.
fn default_kind(name: &str) -> Option<OwnerKind> {
    match name {
        "xen" | "hypervisor" => Some(OwnerKind::Hypervisor),
        "dom0" | "linux" | "os" => Some(OwnerKind::Os),
        _ => None,
    }
}

fn parse_owner(text: &str) -> Result<OwnerSpec, String> {
    let (who, size) = text
        .split_once('=')
        .ok_or_else(|| "an owner is NAME[:KIND]=SIZE|auto|rest".to_string())?;
    let (name, kind) = match who.split_once(':') {
        Some((name, kind)) => (
            name,
            Some(
                OwnerKind::from_name(kind)
                    .ok_or_else(|| format!("owner kind '{kind}' is not hypervisor, os or other"))?,
            ),
        ),
        None => (who, None),
    };
    let name = OwnerName::new(name).map_err(|e| e.to_string())?;
    let kind = kind
        .or_else(|| default_kind(name.as_str()))
        .ok_or_else(|| {
            format!("give the kind of owner '{name}': {name}:hypervisor|os|other=SIZE")
        })?;
    let size = match size {
        "auto" => OwnerSize::Auto,
        "rest" => OwnerSize::Rest,
        text => OwnerSize::Bytes(parse_size(text).map_err(|e| format!("{e}, 'auto' or 'rest'"))?),
    };
    Ok(OwnerSpec { name, kind, size })
}

/// Layout options shared by `format` and `add`.
#[derive(Debug, Args, Clone, Copy)]
pub struct LayoutArgs {
    /// Reserve size, or 'auto' to size it for the mode. SIZE is bytes or a
    /// whole number with K, M, G, T (powers of 1024; also KiB, MiB, GiB, TiB) or KB,
    /// MB, GB, TB (powers of 1000, as coreutils); it is rounded up to the
    /// alignment, and the rounding is shown.
    #[arg(long, value_name = "SIZE|auto", value_parser = parse_reserve)]
    pub reserve: Option<ReserveRequest>,
    /// Owner of the reserve [default: hypervisor, or none with --reserve 0].
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    // The defaults are the library's (left `None` here, so `add` can tell an
    // option given from one left out); the help text names them.
    #[arg(
        long,
        value_name = "SIZE",
        value_parser = parse_align,
        help = format!("Alignment of reserve and data area: 4K, 2M or 1G [default: {}]", Alignment::DEFAULT)
    )]
    pub align: Option<Alignment>,
    #[arg(
        long = "block-size",
        value_name = "BYTES",
        value_parser = parse_block_size,
        help = format!(
            "Logical block size of the served device: 512 or 4096 [default: {}]",
            LogicalBlockSize::DEFAULT.bytes()
        )
    )]
    pub block_size: Option<LogicalBlockSize>,
}

impl LayoutArgs {
    /// As library options.
    pub fn options(&self) -> LayoutOptions {
        LayoutOptions {
            reserve: self.reserve,
            mode: self.mode.map(ReserveMode::from),
            align: self.align,
            block_size: self.block_size,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// A hypervisor (Xen frame table and M2P) owns the reserve.
    Hypervisor,
    /// The OS page array (struct page) lives in the reserve.
    Os,
    /// No reserve.
    None,
}

impl From<ModeArg> for ReserveMode {
    fn from(mode: ModeArg) -> ReserveMode {
        match mode {
            ModeArg::Hypervisor => ReserveMode::Hypervisor,
            ModeArg::Os => ReserveMode::Os,
            ModeArg::None => ReserveMode::None,
        }
    }
}

fn parse_reserve(text: &str) -> Result<ReserveRequest, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(ReserveRequest::Auto);
    }
    parse_size(text)
        .map(ReserveRequest::Bytes)
        .map_err(|e| format!("{e}, or 'auto'"))
}

fn parse_align(text: &str) -> Result<Alignment, String> {
    parse_size(text)
        .ok()
        .and_then(Alignment::from_bytes)
        .ok_or_else(|| "alignment must be 4K, 2M or 1G".to_string())
}

fn parse_block_size(text: &str) -> Result<LogicalBlockSize, String> {
    parse_size(text)
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .and_then(LogicalBlockSize::from_bytes)
        .ok_or_else(|| "block size must be 512 or 4096".to_string())
}

#[derive(Debug, Args)]
pub struct FormatArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[arg(long = "owner", value_name = "NAME[:KIND]=SIZE|auto|rest", value_parser = parse_owner, help = OWNER_HELP)]
    pub owners: Vec<OwnerSpec>,
    /// Overwrite what is there: an existing or damaged volume, a copy of
    /// another layout, a newer version's volume, or foreign data (file
    /// systems, partition tables, ...). Only the two super blocks are
    /// written; the reserve and the data area are not touched.
    #[arg(long)]
    pub force: bool,
    /// Check everything and show the layout (and JSON) that would be
    /// written, writing nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Print nothing on success (errors, warnings and notes still go to
    /// standard error).
    #[arg(long, short, conflicts_with = "json")]
    pub quiet: bool,
    /// Print the result as JSON (the same object as 'info --json', plus
    /// 'dry_run' and 'notes').
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file; several are shown one after another.
    #[arg(required = true, value_name = "BACKING")]
    pub backings: Vec<PathBuf>,
    /// Print one JSON object, or an array of them when several backings are given.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Image files or other devices to look at as well.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Print a JSON array, one object per backing.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    /// Rewrite a corrupt, stale or missing copy from the good one.
    #[arg(long)]
    pub repair: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `--force` of the commands that serve a backing (`add`, `map`, `serve`).
const FORCE_TO_SERVE: &str = "Format anew (as 'format --force') when the backing holds no volume that \
can be served: foreign data, damaged copies, a copy of another layout or a newer version's \
volume. A volume that can be served is served";

/// What `add` and `serve` both take: the backing, the layout to format it
/// with on first use, and the device to add.
#[derive(Debug, Args, Clone)]
pub struct ServeTarget {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    pub target: ServeTarget,
    /// Stay attached; SIGINT/SIGTERM flush, stop and remove the device.
    #[arg(long)]
    pub foreground: bool,
    #[arg(long, help = FORCE_TO_SERVE)]
    pub force: bool,
    /// Print the device as a JSON object (as in 'list --json').
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["device", "all"]))]
pub struct DelArgs {
    /// Device number N or /dev/ublkbN.
    pub device: Option<String>,
    /// Every device pmem-stack serves.
    #[arg(long)]
    pub all: bool,
    /// Print a JSON array: one object per device, with 'removed' and 'error'.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Device number N or /dev/ublkbN.
    #[arg(value_parser = device_arg)]
    pub device: String,
    /// Stay attached, as 'add --foreground'.
    #[arg(long)]
    pub foreground: bool,
    /// Print the device as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MapArgs {
    /// A block device: /dev/pmemN (fsdax for DAX) or another one.
    pub backing: PathBuf,
    /// Map name, for /dev/mapper/NAME [default: pmem-stack-<volume uuid>].
    #[arg(long, value_parser = parse_map_name)]
    pub name: Option<MapName>,
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[arg(long, help = FORCE_TO_SERVE)]
    pub force: bool,
    /// Print the map as a JSON object (as in 'list --json').
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Device number N or /dev/ublkbN.
    #[arg(value_parser = device_arg)]
    pub device: String,
    /// Print the device as a JSON object (as in 'list --json').
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UnmapArgs {
    /// The map: NAME, /dev/mapper/NAME, or the backing it maps.
    pub map: String,
}

fn parse_map_name(text: &str) -> Result<MapName, String> {
    MapName::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The device options apply when a new device is added (a recovered one
    /// keeps what it had).
    #[command(flatten)]
    pub target: ServeTarget,
    #[arg(long, help = FORCE_TO_SERVE)]
    pub force: bool,
}

impl ServeArgs {
    /// The `add --foreground` this serve is when no device serves the backing.
    pub fn as_add(&self) -> AddArgs {
        AddArgs {
            target: self.target.clone(),
            foreground: true,
            force: self.force,
            json: false,
        }
    }
}

#[derive(Debug, Args)]
pub struct UdevIdArgs {
    /// The kernel's name of the device: ublkbN (or N, or /dev/ublkbN).
    pub device: String,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The page of one command instead of pmem-stack(8): 'format', or 'reserve
    /// split' (also 'reserve-split') for pmem-stack-reserve-split(8).
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Write pmem-stack.8 and every pmem-stack-COMMAND.8 into DIR instead.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

/// The shape of a new device: `add`'s options, and `serve`'s when it adds.
#[derive(Clone, Copy, Debug, Args)]
pub struct DeviceArgs {
    /// Device number N for /dev/ublkbN [default: the next free one].
    #[arg(long)]
    pub id: Option<u32>,
    // Help text and ranges come from the limits the ublk glue enforces.
    #[arg(
        long,
        help = format!("Hardware queues, one server thread each [default: one per CPU, at most {MAX_QUEUES}]"),
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_QUEUES))
    )]
    pub queues: Option<u16>,
    #[arg(
        long,
        help = format!("Requests in flight per queue [default: {DEFAULT_DEPTH}]"),
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_DEPTH))
    )]
    pub depth: Option<u16>,
    /// How request data moves: the fastest this kernel and backing offer
    /// (auto), or exactly one path.
    #[arg(long, value_enum, default_value_t = IoPathArg::Auto)]
    pub io_path: IoPathArg,
    /// Whether the device declares a volatile write cache: auto writes
    /// through (every write durable when it completes, so a FLUSH costs
    /// nothing) over a block device and on devdax, and writes back over an
    /// image file or on bounce buffers.
    #[arg(long, value_enum, default_value_t = WriteCacheArg::Auto)]
    pub write_cache: WriteCacheArg,
    /// Which CPUs the queue threads run on: node lets each run on any CPU
    /// of its queue's NUMA nodes, beside the programs submitting to it;
    /// queue pins it to the CPUs blk-mq maps to its queue.
    #[arg(long, value_enum, default_value_t = AffinityArg::Node)]
    pub affinity: AffinityArg,
}

/// `add --affinity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AffinityArg {
    /// Any CPU of the queue's NUMA nodes.
    Node,
    /// Only the queue's own CPUs.
    Queue,
}

impl AffinityArg {
    /// The library's form of the choice.
    pub fn affinity(self) -> Affinity {
        match self {
            AffinityArg::Node => Affinity::Node,
            AffinityArg::Queue => Affinity::Queue,
        }
    }
}

/// `add --write-cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteCacheArg {
    /// Write-through over a block device and on devdax, else write-back.
    Auto,
    /// Writes may be volatile until a FLUSH.
    WriteBack,
    /// Every write durable when it completes (needs user copy, the direct
    /// or the batch path and a backing that opens O_DIRECT, or devdax).
    WriteThrough,
}

impl WriteCacheArg {
    /// The library's form of the choice.
    pub fn choice(self) -> WriteCacheChoice {
        match self {
            WriteCacheArg::Auto => WriteCacheChoice::Auto,
            WriteCacheArg::WriteBack => WriteCacheChoice::Exactly(WriteCache::WriteBack),
            WriteCacheArg::WriteThrough => WriteCacheChoice::Exactly(WriteCache::WriteThrough),
        }
    }
}

/// `add --io-path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IoPathArg {
    /// Direct over a block device writing through where offered (Linux
    /// 6.16+), else user copy where offered (6.5+), else bounce buffers;
    /// batch only when asked for.
    Auto,
    /// Copy between the request and a mapping of the backing (Linux 6.5+).
    UserCopy,
    /// Copy through per-request buffers (any ublk kernel; slowest).
    Bounce,
    /// The request's pages as io_uring fixed buffers, read and written
    /// O_DIRECT against the backing (Linux 6.16+; not devdax).
    Direct,
    /// Per-request buffers handed over and completed in batches
    /// (UBLK_F_BATCH_IO, Linux 7.0+).
    Batch,
}

impl IoPathArg {
    /// The library's form of the choice.
    pub fn choice(self) -> IoPathChoice {
        match self {
            IoPathArg::Auto => IoPathChoice::Auto,
            IoPathArg::UserCopy => IoPathChoice::Exactly(IoPath::UserCopy),
            IoPathArg::Bounce => IoPathChoice::Exactly(IoPath::BounceBuffer),
            IoPathArg::Direct => IoPathChoice::Exactly(IoPath::Direct),
            IoPathArg::Batch => IoPathChoice::Exactly(IoPath::Batch),
        }
    }
}

/// A device argument, checked as it is parsed (a usage error, exit 2, before
/// anything is opened); kept as typed for the messages that quote it.
fn device_arg(text: &str) -> Result<String, String> {
    parse_device_id(text)
        .map(|_| text.to_string())
        .ok_or_else(|| format!("'{text}' is not a device: give N or /dev/ublkbN"))
}

/// `3`, `ublkb3` or `/dev/ublkb3` → 3.
pub fn parse_device_id(text: &str) -> Option<u32> {
    let name = text.strip_prefix("/dev/").unwrap_or(text);
    let number = name.strip_prefix("ublkb").unwrap_or(name);
    number.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn device_ids() {
        assert_eq!(parse_device_id("3"), Some(3));
        assert_eq!(parse_device_id("/dev/ublkb12"), Some(12));
        assert_eq!(parse_device_id("ublkb0"), Some(0));
        assert_eq!(parse_device_id("/dev/pmem0"), None);
        assert_eq!(parse_device_id("-1"), None);
    }

    #[test]
    fn map_arguments() {
        let cli = Cli::try_parse_from([
            "pmem-stack",
            "map",
            "/dev/pmem0",
            "--name",
            "fast",
            "--reserve",
            "64M",
            "--json",
        ])
        .expect("parses");
        let Command::Map(args) = cli.command else {
            panic!("not map: {cli:?}");
        };
        assert_eq!(args.name.as_ref().map(MapName::as_str), Some("fast"));
        assert_eq!(args.layout.reserve, Some(ReserveRequest::Bytes(64 << 20)));
        assert!(args.json && !args.force);
        let err = Cli::try_parse_from(["pmem-stack", "map", "/dev/pmem0", "--name", "a/b"])
            .expect_err("bad name");
        assert!(err.to_string().contains("only letters"), "{err}");
        let cli = Cli::try_parse_from(["pmem-stack", "unmap", "/dev/mapper/fast"]).expect("unmap");
        assert!(
            matches!(cli.command, Command::Unmap(UnmapArgs { map }) if map == "/dev/mapper/fast")
        );
        assert!(Cli::try_parse_from(["pmem-stack", "unmap"]).is_err());
    }

    #[test]
    fn owners() {
        let xen = parse_owner("xen=512M").expect("xen");
        assert_eq!(xen.kind, OwnerKind::Hypervisor);
        assert_eq!(xen.size, OwnerSize::Bytes(512 << 20));
        let dom0 = parse_owner("dom0=rest").expect("dom0");
        assert_eq!((dom0.kind, dom0.size), (OwnerKind::Os, OwnerSize::Rest));
        let fw = parse_owner("fw:other=4K").expect("fw");
        assert_eq!(fw.kind, OwnerKind::Other);
        assert_eq!(
            parse_owner("bsd:os=auto").expect("bsd").size,
            OwnerSize::Auto
        );
        assert!(
            parse_owner("fw=4K")
                .expect_err("no kind")
                .contains("fw:hypervisor|os|other")
        );
        assert!(parse_owner("xen").is_err());
        assert!(
            parse_owner("xen:vm=1M")
                .expect_err("kind")
                .contains("not hypervisor")
        );
        assert!(parse_owner("x y:os=1M").is_err());
        assert!(
            parse_owner("xen=lots")
                .expect_err("size")
                .contains("'rest'")
        );
    }

    #[test]
    fn value_parsers() {
        assert_eq!(parse_reserve("AUTO"), Ok(ReserveRequest::Auto));
        assert_eq!(parse_reserve("512M"), Ok(ReserveRequest::Bytes(512 << 20)));
        assert!(parse_reserve("lots").expect_err("bad").contains("'auto'"));
        assert_eq!(parse_align("2M"), Ok(Alignment::M2));
        assert_eq!(parse_align("1073741824"), Ok(Alignment::G1));
        assert!(parse_align("1M").is_err());
        assert_eq!(parse_block_size("4K"), Ok(LogicalBlockSize::B4096));
        assert!(parse_block_size("1024").is_err());
    }
}
