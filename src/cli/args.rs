//! Command-line syntax. The command names, flags and JSON keys are a contract
//! other tools rely on (see README.md).

use std::path::PathBuf;
use std::sync::LazyLock;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use pmem_stack::format::{Alignment, LogicalBlockSize, ReserveMode};
use pmem_stack::layout::ReserveRequest;
use pmem_stack::size::parse_size;
use pmem_stack::ublk::control::{DEFAULT_DEPTH, MAX_DEPTH, MAX_QUEUES};
use pmem_stack::ublk::features::{IoPath, IoPathChoice};
use pmem_stack::volume::LayoutOptions;

/// `--version`: the program's version and the on-media format versions it
/// reads and writes (a volume of a newer major is never interpreted; a newer
/// minor of the same major is read).
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    use pmem_stack::format::superblock::{VERSION_MAJOR, VERSION_MINOR};
    format!(
        "{} (on-media format: reads {VERSION_MAJOR}.x, writes {VERSION_MAJOR}.{VERSION_MINOR})",
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

/// Layout options shared by `format` and `add`.
#[derive(Debug, Args, Clone, Copy)]
pub struct LayoutArgs {
    /// Reserve size: bytes or K/M/G/T (binary), or 'auto' to size it for the mode.
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
    /// Overwrite an existing volume or foreign data (file systems, partition tables, ...).
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON (the same object as 'info --json').
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    /// Print one JSON object.
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

#[derive(Debug, Args)]
pub struct AddArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
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
    /// Stay attached; SIGINT/SIGTERM flush, stop and remove the device.
    #[arg(long)]
    pub foreground: bool,
    /// Format over foreign data (only when the backing is not formatted yet).
    #[arg(long)]
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
    /// Print a JSON array: one object per device, with `removed` and `error`.
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
    pub device: String,
    /// Stay attached, as 'add --foreground'.
    #[arg(long)]
    pub foreground: bool,
    /// Print the device as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Device number N or /dev/ublkbN.
    pub device: String,
    /// Print the device as a JSON object (as in 'list --json').
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// /dev/pmemN, /dev/daxX.Y or an image file.
    pub backing: PathBuf,
    #[command(flatten)]
    pub layout: LayoutArgs,
    /// Device number N for /dev/ublkbN when a new device is added [default: the next free one].
    #[arg(long)]
    pub id: Option<u32>,
    #[arg(
        long,
        help = format!("Hardware queues of a new device [default: one per CPU, at most {MAX_QUEUES}]"),
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_QUEUES))
    )]
    pub queues: Option<u16>,
    #[arg(
        long,
        help = format!("Requests in flight per queue of a new device [default: {DEFAULT_DEPTH}]"),
        value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_DEPTH))
    )]
    pub depth: Option<u16>,
    /// How request data moves on a new device.
    #[arg(long, value_enum, default_value_t = IoPathArg::Auto)]
    pub io_path: IoPathArg,
    /// Format over foreign data (only when the backing is not formatted yet).
    #[arg(long)]
    pub force: bool,
}

impl ServeArgs {
    /// The `add --foreground` this serve is when no device serves the backing.
    pub fn as_add(&self) -> AddArgs {
        AddArgs {
            backing: self.backing.clone(),
            layout: self.layout,
            id: self.id,
            queues: self.queues,
            depth: self.depth,
            io_path: self.io_path,
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
    /// The page of one command (pmem-stack-COMMAND(8)) instead of pmem-stack(8).
    pub command: Option<String>,
    /// Write pmem-stack.8 and every pmem-stack-COMMAND.8 into DIR instead.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

/// `add --io-path`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IoPathArg {
    /// Direct where offered (block devices and images on Linux 6.16+), else
    /// user copy, else bounce buffers.
    Auto,
    /// Copy between the request and a mapping of the backing (Linux 6.5+).
    UserCopy,
    /// Copy through per-request buffers (any ublk kernel; slowest).
    Bounce,
    /// The request's pages as io_uring fixed buffers, read and written
    /// O_DIRECT against the backing (Linux 6.16+; not devdax).
    Direct,
}

impl IoPathArg {
    /// The library's form of the choice.
    pub fn choice(self) -> IoPathChoice {
        match self {
            IoPathArg::Auto => IoPathChoice::Auto,
            IoPathArg::UserCopy => IoPathChoice::Exactly(IoPath::UserCopy),
            IoPathArg::Bounce => IoPathChoice::Exactly(IoPath::BounceBuffer),
            IoPathArg::Direct => IoPathChoice::Exactly(IoPath::Direct),
        }
    }
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
