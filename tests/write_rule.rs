//! One rule for every command that writes metadata offline (`format`,
//! `reserve split`, `grow`, `check --repair`), checked on generated inputs:
//!
//! * a command that exits 0 leaves a volume that decodes: `check` exits 0
//!   and `info --json` parses (a `format --dry-run` leaves the backing as it
//!   was);
//! * a command that refuses leaves the backing byte-for-byte unchanged, exits
//!   1 or 2, and says why in exactly one line on standard error, starting
//!   `error: `.
//!
//! The inputs are argument lists (sizes, modes, alignments, block sizes,
//! owners — duplicates, zero sizes, two `rest`s, `auto` for kind other —,
//! `--force`, `--dry-run`, `--json`, `--quiet`) over sparse images of
//! 64 MiB to 8 GiB that are blank, formatted, damaged or hold foreign data.
//! The whole image is compared (holes skipped: [`common::sparse_digest`]).
//! Each property also requires that its cases met both sides of the rule.
//!
//! `PROPTEST_CASES=N` searches longer; `WRITE_RULE_TRACE=1` (with
//! `--nocapture`) prints every command and how it ended.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{Run, Scratch, sparse_digest, write_at};

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The same, signed, for deltas.
const SMIB: i64 = 1 << 20;
const SGIB: i64 = 1 << 30;

/// Cases per property: enough to meet every kind of input, few enough to
/// run in seconds.
const CASES: u32 = 48;

/// `CASES`, or `PROPTEST_CASES` from the environment (to search longer).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(CASES),
        // A failure is reported with its shrunk input, the command line
        // and what it printed; nothing is written into the tree.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

/// `PRESETS[XEN_DOM0]` is the README's shared reserve.
const XEN_DOM0: usize = 3;

/// Layouts an image may already hold (each valid on 64 MiB and up).
const PRESETS: &[&[&str]] = &[
    &["--reserve", "4M"],
    &["--reserve", "auto", "--mode", "os"],
    &["--reserve", "0"],
    &["--owner", "xen=auto", "--owner", "dom0=auto"],
    &["--reserve", "16M", "--align", "4K", "--block-size", "4096"],
    &["--owner", "linux=auto"],
    &[
        "--reserve",
        "8M",
        "--owner",
        "xen=1M",
        "--owner",
        "fw:other=64K",
    ],
];

/// Foreign data: bytes at an offset (`None`: the last 4 KiB block).
const FOREIGN: &[(Option<u64>, &[u8])] = &[
    (Some(0), b"XFSB"),
    (Some(512), b"EFI PART"),
    (Some(4086), b"SWAPSPACE2"),
    (Some(4096), b"NVDIMM_PFN_INFO\0"),
    (Some(0x438), &[0x53, 0xEF]),
    // Not a signature: arbitrary bytes where the primary, the reserve and
    // the backup go.
    (Some(4096), b"\x12\x34\x56\x78 not a super block"),
    (Some(3 * MIB + 17), b"somebody's data"),
    (None, b"\xff\xfe\xfd\xfc stale tail"),
];

/// What the image holds before the command.
#[derive(Debug, Clone)]
enum Prior {
    Blank,
    /// Formatted with `PRESETS[i]`.
    Formatted(usize),
    /// Formatted with `PRESETS[i]`, then a byte of the primary (bit 0)
    /// and/or the backup (bit 1) flipped.
    Damaged(usize, u8),
    /// `FOREIGN[i]` written on a blank image.
    Foreign(usize),
    /// Formatted with `PRESETS[i]` at the image's size, then the image
    /// resized by this many MiB (its backup lost in the middle, or cut off).
    Resized(usize, i64),
}

fn prior() -> impl Strategy<Value = Prior> {
    prop_oneof![
        Just(Prior::Blank),
        (0..PRESETS.len()).prop_map(Prior::Formatted),
        (0..PRESETS.len(), 1u8..=3).prop_map(|(i, copies)| Prior::Damaged(i, copies)),
        (0..FOREIGN.len()).prop_map(Prior::Foreign),
        (
            0..PRESETS.len(),
            prop::sample::select(vec![-2i64, -1, 1, 2, 64, 1024]),
        )
            .prop_map(|(i, mib)| Prior::Resized(i, mib)),
    ]
}

fn formatted() -> impl Strategy<Value = Prior> {
    prop_oneof![
        4 => (0..PRESETS.len()).prop_map(Prior::Formatted),
        1 => prior(),
    ]
}

/// Images for `check --repair`: mostly damaged or resized, sometimes
/// anything.
fn damaged() -> impl Strategy<Value = Prior> {
    prop_oneof![
        2 => (0..PRESETS.len(), 1u8..=3).prop_map(|(i, copies)| Prior::Damaged(i, copies)),
        1 => (
            0..PRESETS.len(),
            prop::sample::select(vec![-2i64, -1, 1, 2, 64, 1024]),
        )
            .prop_map(|(i, mib)| Prior::Resized(i, mib)),
        1 => prior(),
    ]
}

/// 64 MiB to 8 GiB, mostly whole MiB, sometimes with a ragged end.
fn image_size() -> impl Strategy<Value = u64> {
    (
        64u64..=8192,
        prop::sample::select(vec![0u64, 0, 0, 4096, 512, 1, 2 * MIB - 4096]),
    )
        .prop_map(|(mib, extra)| mib * MIB + extra)
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Make the image of `size` bytes holding `prior`.
fn prepare(t: &Scratch, size: u64, prior: &Prior) -> std::path::PathBuf {
    let img = t.image("pmem.img", size);
    let p = path_str(&img);
    let format = |i: usize| {
        let mut args = vec!["format", p.as_str(), "--quiet"];
        args.extend_from_slice(PRESETS[i]);
        t.run(&args).ok();
    };
    match *prior {
        Prior::Blank => {}
        Prior::Formatted(i) => format(i),
        Prior::Damaged(i, copies) => {
            format(i);
            for (bit, at) in [(1, 4096 + 0x90), (2, (size & !4095) - 4096 + 0x90)] {
                if copies & bit != 0 {
                    let byte = common::read_at(&img, at, 1)[0];
                    write_at(&img, at, &[byte ^ 0x5A]);
                }
            }
        }
        Prior::Foreign(i) => {
            let (at, bytes) = FOREIGN[i];
            write_at(&img, at.unwrap_or((size & !4095) - 4096), bytes);
        }
        Prior::Resized(i, mib) => {
            format(i);
            let resized = size.saturating_add_signed(mib * 1024 * 1024);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&img)
                .expect("open image")
                .set_len(resized)
                .expect("resize image");
        }
    }
    img
}

/// Check the rule for one run of a writing command.
fn judge(
    t: &Scratch,
    img: &Path,
    args: &[String],
    before: (u64, u32),
    run: &Run,
) -> Result<(), TestCaseError> {
    let p = path_str(img);
    let shown = format!(
        "pmem-stack {}\nexit {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        run.code(),
        run.stdout(),
        run.stderr()
    );
    if std::env::var_os("WRITE_RULE_TRACE").is_some() {
        eprintln!(
            "{} => {} {}",
            args.join(" "),
            run.code(),
            run.stderr().trim()
        );
    }
    if run.code() == 0 {
        if args.iter().any(|a| a == "--json") {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&run.0.stdout);
            prop_assert!(parsed.is_ok(), "--json printed no JSON: {shown}");
        }
        if args.iter().any(|a| a == "--dry-run") {
            prop_assert_eq!(sparse_digest(img), before, "a dry run wrote: {}", shown);
            return Ok(());
        }
        let check = t.run(["check", p.as_str()]);
        prop_assert_eq!(
            check.code(),
            0,
            "accepted, but check fails: {}\ncheck: {}{}",
            shown,
            check.stdout(),
            check.stderr()
        );
        let info = t.run(["info", p.as_str(), "--json"]);
        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&info.0.stdout);
        prop_assert!(
            info.code() == 0 && parsed.is_ok_and(|j| j["format_version"].is_string()),
            "accepted, but info --json does not decode it: {shown}\ninfo: {}{}",
            info.stdout(),
            info.stderr()
        );
    } else {
        prop_assert!(
            matches!(run.code(), 1 | 2),
            "refused with exit {}: {shown}",
            run.code()
        );
        let stderr = run.stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        prop_assert!(
            lines.len() == 1 && lines[0].starts_with("error: "),
            "a refusal is one line starting 'error: ': {shown}"
        );
        prop_assert_eq!(
            sparse_digest(img),
            before,
            "refused, but the image changed: {}",
            shown
        );
    }
    Ok(())
}

/// Run `args` (the backing is `args[1]`, or `args[2]` for `reserve split`)
/// and check the rule.
fn run_and_judge(t: &Scratch, img: &Path, args: &[String]) -> Result<i32, TestCaseError> {
    let before = sparse_digest(img);
    let run = t.run(args);
    judge(t, img, args, before, &run)?;
    Ok(run.code())
}

/// `--reserve`'s value: absent, one of a few texts, or bytes near or a
/// fraction of the image's size.
#[derive(Debug, Clone)]
enum Reserve {
    Absent,
    Text(&'static str),
    /// The image's size plus this many bytes.
    Around(i64),
    /// This many eighths of the image's size.
    Eighths(u64),
}

impl Reserve {
    fn arg(&self, size: u64) -> Option<String> {
        match *self {
            Reserve::Absent => None,
            Reserve::Text(text) => Some(text.to_string()),
            Reserve::Around(delta) => {
                Some((i128::from(size) + i128::from(delta)).max(0).to_string())
            }
            Reserve::Eighths(n) => Some((size / 8 * n).to_string()),
        }
    }
}

fn reserve() -> impl Strategy<Value = Reserve> {
    prop_oneof![
        2 => Just(Reserve::Absent),
        4 => prop::sample::select(vec!["0", "4K", "1M", "512MB", "7M", "auto", "4M", "64M", "512M"])
            .prop_map(Reserve::Text),
        // Both sides of the largest reserve that leaves one data block, for
        // each alignment.
        2 => prop::sample::select(vec![
            -(8 * SMIB) - 4096, -(8 * SMIB), -(6 * SMIB) - 4096, -(6 * SMIB),
            -(6 * SMIB) + 4096, -(4 * SMIB), -(2 * SMIB) - 4096, -(2 * SMIB),
            -20480, -16384, -12288, -8192, -4096, -1, 0, 4096,
        ])
        .prop_map(Reserve::Around),
        1 => (1u64..8).prop_map(Reserve::Eighths),
    ]
}

fn optional(values: &[&'static str]) -> impl Strategy<Value = Option<&'static str>> {
    prop::option::of(prop::sample::select(values.to_vec()))
}

/// `--owner NAME[:KIND]=SIZE|auto|rest` arguments, 0 to 4, names from a small
/// set so that duplicates happen.
fn owners() -> impl Strategy<Value = Vec<String>> {
    let name = prop::sample::select(vec![
        "xen",
        "dom0",
        "linux",
        "fw:other",
        "fw",
        "xen:os",
        "dom0:other",
        "os:hypervisor",
        "a-b.c_d",
    ]);
    let size = prop::sample::select(vec![
        "4K", "1M", "0", "auto", "rest", "64M", "7M", "512M", "5000",
    ]);
    prop::collection::vec((name, size), 0..=4).prop_map(|owners| {
        owners
            .into_iter()
            .map(|(name, size)| format!("{name}={size}"))
            .collect()
    })
}

/// Owners a reserve of a few MiB may hold: 1 to 3 distinct names, small
/// sizes, `auto` only for the kinds that have it, the last sometimes `rest`.
fn sensible_owners() -> impl Strategy<Value = Vec<String>> {
    let names = vec!["xen", "dom0", "fw:other", "spare:other", "linux"];
    (
        prop::sample::subsequence(names, 1..=3).prop_shuffle(),
        prop::collection::vec(
            prop::sample::select(vec!["4K", "1M", "5000", "2M", "auto"]),
            3,
        ),
        any::<bool>(),
    )
        .prop_map(|(names, sizes, rest)| {
            let last = names.len() - 1;
            names
                .iter()
                .zip(sizes)
                .enumerate()
                .map(|(i, (name, size))| {
                    let size = match size {
                        _ if rest && i == last => "rest",
                        "auto" if name.ends_with(":other") => "1M",
                        size => size,
                    };
                    format!("{name}={size}")
                })
                .collect()
        })
}

/// `reserve split`'s owners: mostly sensible, sometimes anything. An os
/// owner's page array is larger than most presets' reserves, so the
/// sensible ones are mostly of other kinds.
fn split_owners() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        3 => sensible_owners().prop_map(|owners| {
            owners
                .into_iter()
                .map(|o| o.replace("dom0=", "hv:hypervisor=").replace("linux=", "fw2:other="))
                .map(|o| o.replace("fw2:other=auto", "fw2:other=4K"))
                .collect()
        }),
        1 => sensible_owners(),
        2 => owners(),
    ]
}

/// A `reserve split` case: the image's size and content, the owners.
fn split_case() -> impl Strategy<Value = (u64, Prior, Vec<String>)> {
    let resplits = prop::sample::select(vec![
        vec!["xen=auto", "dom0=rest"],
        vec!["dom0=auto", "xen=rest"],
        vec!["xen=auto", "dom0=auto", "fw:other=rest"],
        vec!["xen=2M", "dom0=auto"],
        vec!["dom0=auto"],
    ])
    .prop_map(|owners| owners.into_iter().map(str::to_string).collect());
    prop_oneof![
        4 => (image_size(), formatted(), split_owners()),
        // Re-splits of the reserve `xen=auto`, `dom0=auto` made.
        1 => (image_size(), Just(Prior::Formatted(XEN_DOM0)), resplits),
    ]
}

/// A generated `format` command line.
#[derive(Debug, Clone)]
struct FormatCase {
    size: u64,
    prior: Prior,
    reserve: Reserve,
    mode: Option<&'static str>,
    align: Option<&'static str>,
    block_size: Option<&'static str>,
    owners: Vec<String>,
    /// `--force`, `--dry-run`, `--json`, `--quiet`.
    flags: (bool, bool, bool, bool),
}

impl FormatCase {
    fn args(&self, img: &Path) -> Vec<String> {
        let mut args = vec!["format".to_string(), path_str(img)];
        let mut opt = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(name.to_string());
                args.push(value);
            }
        };
        opt("--reserve", self.reserve.arg(self.size));
        opt("--mode", self.mode.map(str::to_string));
        opt("--align", self.align.map(str::to_string));
        opt("--block-size", self.block_size.map(str::to_string));
        for owner in &self.owners {
            opt("--owner", Some(owner.clone()));
        }
        let (force, dry_run, json, quiet) = self.flags;
        for (on, flag) in [
            (force, "--force"),
            (dry_run, "--dry-run"),
            (json, "--json"),
            (quiet, "--quiet"),
        ] {
            if on {
                args.push(flag.to_string());
            }
        }
        args
    }
}

/// Any `format` command line: most are refused.
fn wild_format_case() -> impl Strategy<Value = FormatCase> {
    (
        image_size(),
        prior(),
        reserve(),
        optional(&["none", "hypervisor", "os"]),
        optional(&["4K", "2M", "1G"]),
        optional(&["512", "4096"]),
        prop_oneof![3 => Just(Vec::new()), 2 => sensible_owners(), 2 => owners()],
        (
            prop::bool::weighted(0.5),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.3),
            prop::bool::weighted(0.1),
        ),
    )
        .prop_map(
            |(size, prior, reserve, mode, align, block_size, owners, flags)| FormatCase {
                size,
                prior,
                reserve,
                mode,
                align,
                block_size,
                owners,
                flags,
            },
        )
}

impl FormatCase {
    /// The case with the mistakes that make most wild cases refused taken
    /// out (a missing `--force`, `--mode none` with a reserve or owners, no
    /// reserve at all, 1G alignment on a small image), so that accepted
    /// inputs are met as often as refused ones. A reserve near the image's
    /// size stays: it probes the largest one allowed.
    fn tame(mut self) -> FormatCase {
        self.flags.0 = true;
        self.flags.3 = false;
        if !self.owners.is_empty() && self.mode == Some("none") {
            self.mode = None;
        }
        self.reserve = match (self.mode, self.reserve) {
            (Some("none"), _) => Reserve::Text("0"),
            (_, Reserve::Eighths(5..)) => Reserve::Text("auto"),
            (_, Reserve::Text("512MB")) => Reserve::Text("512M"),
            (_, Reserve::Absent) if self.owners.is_empty() => Reserve::Text("auto"),
            (_, reserve) => reserve,
        };
        if self.size < 8 * GIB {
            self.align = self.align.filter(|&a| a != "1G");
        }
        self
    }
}

/// `format` command lines, half of them tamed.
fn format_case() -> impl Strategy<Value = FormatCase> {
    prop_oneof![
        wild_format_case(),
        wild_format_case().prop_map(FormatCase::tame)
    ]
}

/// How `grow`'s image is resized first.
#[derive(Debug, Clone)]
enum Resize {
    /// By this many bytes.
    By(i64),
    /// To this many MiB.
    ToMib(u64),
}

fn resize() -> impl Strategy<Value = Resize> {
    prop_oneof![
        3 => prop::sample::select(vec![
            -(2 * SMIB), -4096, 0, 1, 4096, SMIB, 2 * SMIB,
            2 * SMIB + 4096, SGIB, 3 * SGIB + 12345,
        ])
        .prop_map(Resize::By),
        1 => (64u64..=8192).prop_map(Resize::ToMib),
    ]
}

fn check_format(case: &FormatCase) -> Result<i32, TestCaseError> {
    let t = Scratch::new();
    let img = prepare(&t, case.size, &case.prior);
    run_and_judge(&t, &img, &case.args(&img))
}

fn check_split(
    size: u64,
    prior: &Prior,
    owners: &[String],
    json: bool,
) -> Result<i32, TestCaseError> {
    let t = Scratch::new();
    let img = prepare(&t, size, prior);
    let mut args = vec!["reserve".to_string(), "split".to_string(), path_str(&img)];
    for owner in owners {
        args.push("--owner".to_string());
        args.push(owner.clone());
    }
    if json {
        args.push("--json".to_string());
    }
    let code = run_and_judge(&t, &img, &args)?;
    if code == 0 {
        let list = t.run(["reserve", "list", path_str(&img).as_str(), "--json"]);
        prop_assert_eq!(list.code(), 0, "{}", list.stderr());
        let owners_listed = list.json()["owners"].as_array().map_or(0, Vec::len);
        prop_assert_eq!(owners_listed, owners.len(), "{}", list.stdout());
    }
    Ok(code)
}

fn check_grow(size: u64, prior: &Prior, resize: &Resize, json: bool) -> Result<i32, TestCaseError> {
    let t = Scratch::new();
    let img = prepare(&t, size, prior);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .expect("open image");
    let now = file.metadata().expect("stat image").len();
    let new_size = match *resize {
        Resize::By(delta) => now.saturating_add_signed(delta),
        Resize::ToMib(mib) => mib * MIB,
    };
    file.set_len(new_size).expect("resize image");
    drop(file);
    let mut args = vec!["grow".to_string(), path_str(&img)];
    if json {
        args.push("--json".to_string());
    }
    let code = run_and_judge(&t, &img, &args)?;
    if code == 0 {
        let info = t
            .run(["info", path_str(&img).as_str(), "--json"])
            .ok()
            .json();
        prop_assert_eq!(&info["device_size"], new_size, "grown to the new size");
    }
    Ok(code)
}

/// How the runs of one property ended: (accepted, refused).
#[derive(Debug, Default)]
struct Tally {
    accepted: AtomicU32,
    refused: AtomicU32,
}

impl Tally {
    fn count(&self, code: i32) {
        let which = if code == 0 {
            &self.accepted
        } else {
            &self.refused
        };
        which.fetch_add(1, Ordering::Relaxed);
    }

    /// Run `test` on `strategy`'s cases, then require that both sides of
    /// the rule were met often enough to mean something.
    fn run<S: Strategy>(
        name: &str,
        strategy: S,
        test: impl Fn(&Tally, S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let tally = Tally::default();
        let mut runner = TestRunner::new(config());
        if let Err(e) = runner.run(&strategy, |case| test(&tally, case)) {
            panic!("{name}: {e}");
        }
        let accepted = tally.accepted.load(Ordering::Relaxed);
        let refused = tally.refused.load(Ordering::Relaxed);
        eprintln!("{name}: {accepted} accepted, {refused} refused");
        let least = config().cases / 16;
        assert!(
            accepted >= least && refused >= least,
            "{name}: {accepted} accepted and {refused} refused of {} cases: the generator no longer meets both sides of the rule",
            config().cases
        );
    }
}

#[test]
fn format_writes_a_volume_that_decodes_or_nothing() {
    Tally::run("format", format_case(), |tally, case| {
        tally.count(check_format(&case)?);
        Ok(())
    });
}

#[test]
fn reserve_split_writes_a_volume_that_decodes_or_nothing() {
    Tally::run(
        "reserve split",
        (split_case(), any::<bool>()),
        |tally, ((size, prior, owners), json)| {
            tally.count(check_split(size, &prior, &owners, json)?);
            Ok(())
        },
    );
}

#[test]
fn check_repair_writes_a_volume_that_decodes_or_nothing() {
    Tally::run(
        "check --repair",
        (image_size(), damaged(), any::<bool>()),
        |tally, (size, prior, json)| {
            let t = Scratch::new();
            let img = prepare(&t, size, &prior);
            let mut args = vec!["check".to_string(), path_str(&img), "--repair".to_string()];
            if json {
                args.push("--json".to_string());
            }
            tally.count(run_and_judge(&t, &img, &args)?);
            Ok(())
        },
    );
}

#[test]
fn grow_writes_a_volume_that_decodes_or_nothing() {
    Tally::run(
        "grow",
        (image_size(), formatted(), resize(), any::<bool>()),
        |tally, (size, prior, resize, json)| {
            tally.count(check_grow(size, &prior, &resize, json)?);
            Ok(())
        },
    );
}

/// The rule's "unchanged" is only as good as the fingerprint: any byte that
/// changes anywhere changes it, in a hole or in data, up to a ragged end.
#[test]
fn the_fingerprint_sees_every_changed_byte() {
    let t = Scratch::new();
    let size = 64 * MIB + 512 + 1;
    let img = t.image("pmem.img", size);
    write_at(&img, 4096, b"primary");
    let mut seen = vec![sparse_digest(&img)];
    for at in [0, 4096 + 3, 5000, 33 * MIB + 4095, size - 513, size - 1] {
        let byte = common::read_at(&img, at, 1)[0];
        write_at(&img, at, &[byte ^ 1]);
        let now = sparse_digest(&img);
        assert!(!seen.contains(&now), "a change at byte {at} went unseen");
        seen.push(now);
        write_at(&img, at, &[byte]);
        assert_eq!(sparse_digest(&img), seen[0], "the same bytes again");
    }
    // Zeros written into a hole are the same content.
    write_at(&img, 40 * MIB, &[0; 8192]);
    assert_eq!(sparse_digest(&img), seen[0]);
    // So is a longer file of zeros only as far as its length tells.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .expect("open")
        .set_len(size + 1)
        .expect("grow");
    assert_ne!(sparse_digest(&img), seen[0], "the length counts");
}

/// The judge fails each way the rule can be broken (negative controls).
#[test]
fn the_judge_catches_each_broken_side_of_the_rule() {
    use std::os::unix::process::ExitStatusExt;
    let fake = |code: i32, stderr: &str| {
        Run(std::process::Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        })
    };
    let t = Scratch::new();
    let img = t.image("pmem.img", 64 * MIB);
    let p = path_str(&img);
    let args: Vec<String> = ["format", p.as_str(), "--reserve", "4M"]
        .map(str::to_string)
        .to_vec();
    let before = sparse_digest(&img);
    // A refusal that is right passes...
    assert!(judge(&t, &img, &args, before, &fake(1, "error: no\n")).is_ok());
    // ...but not with another exit code, two lines, or no "error: ".
    assert!(judge(&t, &img, &args, before, &fake(3, "error: no\n")).is_err());
    let two = "warning: hm\nerror: no\n";
    assert!(judge(&t, &img, &args, before, &fake(1, two)).is_err());
    assert!(judge(&t, &img, &args, before, &fake(2, "no\n")).is_err());
    // A refusal that wrote fails.
    write_at(&img, 8192, b"written");
    assert!(judge(&t, &img, &args, before, &fake(1, "error: no\n")).is_err());
    // A success that leaves no volume fails; a real one passes.
    assert!(judge(&t, &img, &args, before, &fake(0, "")).is_err());
    let run = t.run(&args);
    assert!(judge(&t, &img, &args, before, &run).is_ok());
    // A success whose volume does not check fails.
    write_at(&img, 4096 + 0x90, b"damage");
    assert!(judge(&t, &img, &args, before, &fake(0, "")).is_err());
}
