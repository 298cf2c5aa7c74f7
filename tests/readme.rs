//! Every ```console block of README.md runs as written.
//!
//! A console block is what a user copies: lines starting `# ` are commands
//! run as root, the other lines the output they print. Each block is either
//! *offline* — every command works on an image file with no kernel driver
//! (`format`, `info`, `check`, `reserved`, `reserve`, `grow`, `scan`, `man`,
//! `completions`, `--help`, `truncate`, and `jq` behind a pipe) — and then
//! runs here, or *guest-only* (it serves, maps or mounts a device) and is
//! named in [`GUEST_ONLY`] by its first line. A block that is in neither table
//! fails the test, so no example goes unchecked by accident.
//!
//! An offline block runs command by command through `bash -o pipefail -c`,
//! exactly as written but for the device path (`/dev/pmem0`), which becomes a
//! sparse image file of the size its table entry gives, with this build's
//! `pmem-stack` first on `PATH`. Every command must exit 0 with nothing on
//! standard error, and where the block shows output, standard output must be
//! those lines. An expected line may use two placeholders, for values that
//! differ from run to run: `<uuid>` (a volume's random uuid) and `<n>` (an
//! unsigned integer, e.g. a generation); everything else is literal.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Scratch, require};

const GIB: u64 = 1 << 30;

/// Blocks that need a kernel driver (ublk, device-mapper, a mount), by their
/// first line. The guest suite's `stories` scenario runs the user stories;
/// these blocks are the same commands.
const GUEST_ONLY: &[&str] = &["# pmem-stack add /dev/pmem0 --reserve 512M"];

/// An offline block: its first line, the sizes of the image it runs on (one
/// run per size, each on a new sparse image), and the first line of a block
/// that runs first on the same image (the block continues that one).
struct Offline {
    first_line: &'static str,
    sizes: &'static [u64],
    after: Option<&'static str>,
}

/// The offline blocks. The shared-reserve example claims to work on any
/// namespace: it runs at 4 and 8 GiB (where a reserve sized by `auto` is
/// small, 110 and 218 MiB) and at 32 GiB (where a page array needs
/// 498 MiB).
const OFFLINE: &[Offline] = &[
    Offline {
        first_line: "# pmem-stack format /dev/pmem0 --owner xen=auto --owner dom0=auto",
        sizes: &[4 * GIB, 8 * GIB, 32 * GIB],
        after: None,
    },
    Offline {
        first_line: "# pmem-stack format /dev/pmem0 --force --owner xen=512M --owner dom0=auto",
        sizes: &[4 * GIB, 8 * GIB, 32 * GIB],
        after: Some("# pmem-stack format /dev/pmem0 --owner xen=auto --owner dom0=auto"),
    },
];

/// The device path the blocks use, replaced by the image file.
const DEVICE: &str = "/dev/pmem0";

/// Programs an offline block may run, and the `pmem-stack` commands that
/// need no kernel driver.
const OFFLINE_PROGRAMS: &[&str] = &["pmem-stack", "truncate", "jq"];
const OFFLINE_COMMANDS: &[&str] = &[
    "format",
    "info",
    "check",
    "reserved",
    "reserve",
    "grow",
    "scan",
    "man",
    "completions",
    "--help",
    "-h",
    "help",
    "--version",
];

/// Words that make a block guest-only: the commands that serve, map or
/// mount, and the devices they make.
const KERNEL_WORDS: &[&str] = &[
    "add",
    "del",
    "list",
    "recover",
    "map",
    "unmap",
    "restart",
    "serve",
    "mkfs",
    "mount",
    "/dev/ublkb",
    "modprobe",
    "ndctl",
];

/// One ```console block: the line it starts on (1-based, the fence) and its
/// lines.
#[derive(Debug)]
struct Block {
    line: usize,
    lines: Vec<String>,
}

impl Block {
    fn first_line(&self) -> &str {
        self.lines.first().map_or("", String::as_str)
    }

    /// Each command with the output lines that follow it.
    fn steps(&self) -> Vec<(String, Vec<String>)> {
        let mut steps: Vec<(String, Vec<String>)> = Vec::new();
        for line in &self.lines {
            if let Some(command) = line.strip_prefix("# ") {
                steps.push((command.to_string(), Vec::new()));
            } else {
                let (_, output) = steps.last_mut().unwrap_or_else(|| {
                    panic!(
                        "README.md:{}: a console block starts with output, not a command",
                        self.line
                    )
                });
                output.push(line.clone());
            }
        }
        steps
    }
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md")
}

fn console_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match open.as_mut() {
            None if line.trim_start() == "```console" => {
                open = Some(Block {
                    line: i + 1,
                    lines: Vec::new(),
                });
            }
            None => {}
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.extend(open.take());
            }
            Some(block) => block.lines.push(line.to_string()),
        }
    }
    assert!(open.is_none(), "README.md: a console block is not closed");
    blocks
}

/// The simple commands of a shell line: split at unquoted `|`, `||`, `&&`
/// and `;` (a jq filter's `|` is quoted), each as its words.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let finish = |commands: &mut Vec<Vec<String>>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            commands
                .last_mut()
                .expect("a command")
                .push(std::mem::take(word));
            *in_word = false;
        }
    };
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '|' | '&' | ';') => {
                finish(&mut commands, &mut word, &mut in_word);
                if !commands.last().expect("a command").is_empty() {
                    commands.push(Vec::new());
                }
            }
            (None, c) if c.is_whitespace() => finish(&mut commands, &mut word, &mut in_word),
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in {line:?}");
    finish(&mut commands, &mut word, &mut in_word);
    commands.retain(|c| !c.is_empty());
    commands
}

/// Why a command cannot run offline, if it cannot.
fn not_offline(words: &[String]) -> Option<String> {
    let program = words[0].as_str();
    if !OFFLINE_PROGRAMS.contains(&program) {
        return Some(format!("runs {program}"));
    }
    if program == "pmem-stack" {
        let command = words.get(1).map_or("", String::as_str);
        if !OFFLINE_COMMANDS.contains(&command) {
            return Some(format!("runs pmem-stack {command}"));
        }
    }
    None
}

/// Whether `line` matches `pattern`, whose `<uuid>` and `<n>` stand for a
/// uuid and an unsigned integer.
fn matches(pattern: &str, line: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("<uuid>") {
        let is_uuid = line.len() >= 36
            && line.is_char_boundary(36)
            && line[..36].char_indices().all(|(i, c)| {
                if [8, 13, 18, 23].contains(&i) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        return is_uuid && matches(rest, &line[36..]);
    }
    if let Some(rest) = pattern.strip_prefix("<n>") {
        let digits = line.bytes().take_while(u8::is_ascii_digit).count();
        return digits > 0 && matches(rest, &line[digits..]);
    }
    match (pattern.chars().next(), line.chars().next()) {
        (None, None) => true,
        (Some(p), Some(l)) if p == l => matches(&pattern[p.len_utf8()..], &line[l.len_utf8()..]),
        _ => false,
    }
}

/// A directory holding `pmem-stack` (this build), to put first on `PATH`.
fn bin_dir(t: &Scratch) -> PathBuf {
    let dir = t.path("bin");
    std::fs::create_dir_all(&dir).expect("bin dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pmem-stack"), dir.join("pmem-stack"))
        .expect("link pmem-stack");
    dir
}

/// Run one block's commands on `image`, checking each.
fn run_block(t: &Scratch, bin: &Path, block: &Block, image: &Path, size: u64) {
    let image = image.to_str().expect("utf-8 path");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (command, expected) in block.steps() {
        let line = command.replace(DEVICE, image);
        assert!(
            !line.contains("/dev/"),
            "README.md:{}: {command:?} names a device the test does not replace",
            block.line
        );
        let output = Command::new("bash")
            .args(["-o", "pipefail", "-c", &line])
            .current_dir(t.dir.path())
            .env("PATH", &path)
            .env("PMEM_STACK_RUN_DIR", t.path("run"))
            .env_remove("RUST_LOG")
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!(
            "README.md:{} on a {size}-byte image: `{command}`\nstdout:\n{stdout}\nstderr:\n{stderr}",
            block.line
        );
        assert!(output.status.success(), "failed: {context}");
        assert!(stderr.is_empty(), "wrote to standard error: {context}");
        if expected.is_empty() {
            continue;
        }
        let got: Vec<&str> = stdout.lines().map(str::trim_end).collect();
        assert_eq!(
            got.len(),
            expected.len(),
            "printed other lines than README.md shows ({expected:?}): {context}"
        );
        for (want, have) in expected.iter().zip(&got) {
            let want = want.replace(DEVICE, image);
            assert!(
                matches(want.trim_end(), have),
                "printed {have:?} where README.md shows {want:?}: {context}"
            );
        }
    }
}

/// Whether a block runs `pmem-stack format`.
fn formats(block: &Block) -> bool {
    block.steps().iter().any(|(command, _)| {
        simple_commands(command)
            .iter()
            .any(|w| w[0] == "pmem-stack" && w.get(1).is_some_and(|c| c == "format"))
    })
}

fn block_by_first_line<'a>(blocks: &'a [Block], first_line: &str) -> &'a Block {
    let found: Vec<&Block> = blocks
        .iter()
        .filter(|b| b.first_line() == first_line)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "README.md has {} console blocks starting {first_line:?}: the tables here name each block by its first line",
        found.len()
    );
    found[0]
}

#[test]
fn every_console_block_is_run_here_or_listed_as_guest_only() {
    let text = readme();
    let blocks = console_blocks(&text);
    assert!(
        blocks.len() >= OFFLINE.len() + GUEST_ONLY.len(),
        "README.md has {} console blocks",
        blocks.len()
    );
    for block in &blocks {
        let first = block.first_line();
        assert!(
            first.starts_with("# "),
            "README.md:{}: a console block starts with a command",
            block.line
        );
        let offline = OFFLINE.iter().any(|o| o.first_line == first);
        let guest = GUEST_ONLY.contains(&first);
        assert!(
            offline ^ guest,
            "README.md:{}: the console block starting {first:?} is {}: add it to OFFLINE (with image sizes) or GUEST_ONLY in tests/readme.rs",
            block.line,
            if offline {
                "in both tables"
            } else {
                "in neither table"
            }
        );
        let reasons: Vec<String> = block
            .steps()
            .iter()
            .flat_map(|(command, _)| simple_commands(command))
            .filter_map(|words| not_offline(&words))
            .collect();
        if offline {
            assert!(
                reasons.is_empty(),
                "README.md:{}: an offline block {}",
                block.line,
                reasons.join(", ")
            );
        } else {
            // Guest-only is for blocks that need the kernel, not a way out.
            let needs_kernel = block.steps().iter().any(|(command, _)| {
                simple_commands(command)
                    .iter()
                    .flatten()
                    .any(|w| KERNEL_WORDS.iter().any(|k| w == k || w.starts_with(k)))
            });
            assert!(
                needs_kernel && !reasons.is_empty(),
                "README.md:{}: the block starting {first:?} is listed as guest-only but needs no kernel: run it in OFFLINE",
                block.line
            );
        }
    }
    // Every table entry names a block that is there.
    for first in GUEST_ONLY
        .iter()
        .copied()
        .chain(OFFLINE.iter().map(|o| o.first_line))
    {
        block_by_first_line(&blocks, first);
    }
}

#[test]
fn offline_console_blocks_run_as_written() {
    let text = readme();
    let blocks = console_blocks(&text);
    let t = Scratch::new();
    let bin = bin_dir(&t);
    let uses_jq = OFFLINE.iter().any(|o| {
        block_by_first_line(&blocks, o.first_line)
            .steps()
            .iter()
            .any(|(c, _)| simple_commands(c).iter().any(|w| w[0] == "jq"))
    });
    if uses_jq {
        require("jq", "jq");
    }
    let mut runs = 0;
    for offline in OFFLINE {
        let block = block_by_first_line(&blocks, offline.first_line);
        for &size in offline.sizes {
            let image = t.image(&format!("pmem-{}-{size}.img", block.line), size);
            if let Some(before) = offline.after {
                run_block(&t, &bin, block_by_first_line(&blocks, before), &image, size);
            }
            run_block(&t, &bin, block, &image, size);
            // A block that formats leaves a healthy volume of the image's
            // size.
            if formats(block) {
                let check = t.run(["check", image.to_str().expect("utf-8"), "--json"]);
                assert_eq!(check.code(), 0, "{}", check.stdout());
                let info = t
                    .run(["info", image.to_str().expect("utf-8"), "--json"])
                    .ok();
                assert_eq!(info.json()["device_size"], size);
            }
            std::fs::remove_file(&image).expect("remove image");
            runs += 1;
        }
    }
    assert!(runs >= 6, "ran {runs} blocks");
}

#[test]
fn placeholders_match_only_what_they_stand_for() {
    assert!(matches(
        "uuid <uuid>, generation <n>",
        "uuid 0850b190-c1ba-40d0-9a3a-dee6ecc37c9e, generation 12"
    ));
    assert!(!matches(
        "uuid <uuid>",
        "uuid 0850b190-c1ba-40d0-9a3a-dee6ecc37c9"
    ));
    assert!(!matches(
        "uuid <uuid>",
        "uuid 0850b190xc1ba-40d0-9a3a-dee6ecc37c9e"
    ));
    assert!(!matches("generation <n>", "generation "));
    assert!(!matches("generation <n>", "generation 1x"));
    assert!(matches(
        "[\"xen\",\"hypervisor\"]",
        "[\"xen\",\"hypervisor\"]"
    ));
    assert!(!matches("0", "00"));
    assert!(!matches("null", "nul"));
}

#[test]
fn commands_are_split_where_the_shell_splits_them() {
    let words = simple_commands(
        "pmem-stack reserve list /dev/pmem0 --json | jq -c '(.owners[] | [.owner, .kind]), .unassigned'",
    );
    assert_eq!(words.len(), 2, "{words:?}");
    assert_eq!(words[1][2], "(.owners[] | [.owner, .kind]), .unassigned");
    let words = simple_commands("mkfs.xfs /dev/ublkb0 && mount /dev/ublkb0 /mnt");
    assert_eq!(words.len(), 2, "{words:?}");
    assert_eq!(not_offline(&words[1]).as_deref(), Some("runs mount"));
    assert_eq!(
        not_offline(&simple_commands("pmem-stack add /dev/pmem0")[0]).as_deref(),
        Some("runs pmem-stack add")
    );
    assert_eq!(
        not_offline(&simple_commands("pmem-stack reserved /dev/pmem0")[0]),
        None
    );
}

/// The prose around the shared-reserve example: a split the reserve `auto`
/// made cannot hold is refused, writing nothing, and for an os owner the
/// error states its minimum; formatting with the fixed share instead sizes
/// the reserve to hold it, with dom0's page array whole.
#[test]
fn the_shared_reserve_prose_holds() {
    let t = Scratch::new();
    for size in [4 * GIB, 8 * GIB, 32 * GIB] {
        let image = t.image(&format!("prose-{size}.img"), size);
        let p = image.to_str().expect("utf-8 path");
        t.run(["format", p, "--owner", "xen=auto", "--owner", "dom0=auto"])
            .ok();
        let before = common::sparse_digest(&image);
        let split = t.run([
            "reserve",
            "split",
            p,
            "--owner",
            "xen=512M",
            "--owner",
            "dom0=rest",
        ]);
        if size < 32 * GIB {
            split.fails(1, &["the owners need 512 MiB"]);
        } else {
            // 866 MiB: 354 MiB would be left for dom0, below its page array.
            split.fails(1, &["owner 'dom0' (os)", "give it at least"]);
        }
        assert_eq!(
            common::sparse_digest(&image),
            before,
            "a refused split wrote"
        );
        t.run([
            "format",
            p,
            "--force",
            "--owner",
            "xen=512M",
            "--owner",
            "dom0=auto",
        ])
        .ok();
        let list = t.run(["reserve", "list", p, "--json"]).ok().json();
        let data_size = t.run(["info", p, "--json"]).ok().json()["data_size"]
            .as_u64()
            .expect("data_size");
        let owners = list["owners"].as_array().expect("owners");
        assert_eq!(owners[0]["owner"], "xen");
        assert_eq!(owners[0]["size"], 512u64 << 20);
        assert_eq!(owners[1]["owner"], "dom0");
        let dom0 = owners[1]["size"].as_u64().expect("size");
        assert!(dom0 >= data_size / 4096 * 64, "dom0 {dom0} for {data_size}");
        std::fs::remove_file(&image).expect("remove image");
    }
}
