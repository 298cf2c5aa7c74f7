//! The manual pages are the manual: `pmem-stack man --dir` writes every
//! page any page refers to, each renders through man(1) without a groff
//! warning, `man COMMAND` finds nested commands by their words or their
//! page name and calls anything else a usage error — and every JSON key the
//! offline commands print is documented on that command's page, and every
//! key documented there is printed (so the pages and the program cannot
//! drift apart). Run as the real binary on sparse image files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Scratch, read_at, require, write_at};

const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `man --dir DIR` into a directory that does not exist yet (two levels):
/// the pages written, by name (`pmem-stack-reserve-split`).
fn write_pages(t: &Scratch) -> BTreeMap<String, PathBuf> {
    let dir = t.path("share/man8");
    assert!(!dir.exists());
    let run = t.run(["man", "--dir", s(&dir)]).ok();
    let listed: BTreeSet<String> = run.stdout().lines().map(String::from).collect();
    let mut pages = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("the directory was made") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".8"))
            .unwrap_or_else(|| panic!("not a section 8 page: {}", path.display()))
            .to_string();
        assert!(
            listed.contains(s(&path)),
            "{} was written but not listed",
            path.display()
        );
        pages.insert(name, path);
    }
    assert_eq!(listed.len(), pages.len(), "listed: {listed:?}");
    pages
}

/// A page's roff with the escapes that matter here undone: font changes
/// dropped, `\-` read as `-`.
fn plain_roff(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("read page")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\-", "-")
}

/// The names of the sections (`.SH`) of a page, in order.
fn sections(roff: &str) -> Vec<String> {
    roff.lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|t| t.trim_matches('"').to_string())
        .collect()
}

/// Every `pmem-stack-NAME(8)` a page refers to.
fn references(roff: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in roff.match_indices("pmem-stack") {
        let rest = &roff[at..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        if rest[name.len()..].starts_with("(8)") {
            found.insert(name);
        }
    }
    found
}

/// `man -l PAGE` with every warning groff has (-ww), at the width of a
/// terminal, in the plainest locale (C: an ASCII device, as under `env -i`
/// or a minimal CI), where a character with no ASCII glyph is a warning.
fn render(path: &std::path::Path) -> std::process::Output {
    Command::new("man")
        .args(["--warnings=w", "-l"])
        .arg(path)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C")
        .env_remove("LANG")
        .env_remove("LANGUAGE")
        .env_remove("MAN_KEEP_FORMATTING")
        .env_remove("MANPAGER")
        .env("PAGER", "cat")
        .output()
        .expect("run man")
}

#[test]
fn every_page_is_written_renders_cleanly_and_every_reference_has_its_page() {
    require("man", "man-db");
    require("groff", "groff-base");
    let t = Scratch::new();
    let pages = write_pages(&t);
    for required in [
        "pmem-stack",
        "pmem-stack-format",
        "pmem-stack-reserve",
        "pmem-stack-reserve-split",
        "pmem-stack-reserve-list",
    ] {
        assert!(pages.contains_key(required), "{required}: {pages:?}");
    }
    let mut referenced = BTreeSet::new();
    for (name, path) in &pages {
        let out = render(path);
        let text = String::from_utf8_lossy(&out.stdout);
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: man failed: {warnings}");
        assert!(warnings.trim().is_empty(), "{name}: {warnings}");
        assert!(
            text.contains("NAME") && text.contains(name.as_str()),
            "{name}: {text}"
        );

        let roff = plain_roff(path);
        assert!(roff.contains(&format!(".TH {name} 8 ")), "{name}: no title");
        let have = sections(&roff);
        let wanted: &[&str] = if name == "pmem-stack" {
            &[
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "COMMANDS",
                "LAYOUT",
                "ON-MEDIA FORMAT",
                "SIZES",
                "EXIT STATUS",
                "FILES",
                "SEE ALSO",
            ]
        } else {
            &[
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "OPTIONS",
                "EXIT STATUS",
                "SEE ALSO",
            ]
        };
        for section in wanted {
            assert!(
                have.iter().any(|h| h == section),
                "{name}: no {section}: {have:?}"
            );
        }
        assert!(!have.iter().any(|h| h == "EXTRA"), "{name}: {have:?}");
        referenced.extend(references(&roff));
    }
    for name in &referenced {
        assert!(
            pages.contains_key(name),
            "{name}(8) is referred to but was not written"
        );
    }
    // The main page refers to every other page.
    for name in pages.keys().filter(|n| *n != "pmem-stack") {
        assert!(
            references(&plain_roff(&pages["pmem-stack"])).contains(name),
            "pmem-stack(8) does not list {name}"
        );
    }
}

#[test]
fn the_synopsis_shows_option_values() {
    let t = Scratch::new();
    let pages = write_pages(&t);
    let roff = plain_roff(&pages["pmem-stack-format"]);
    let synopsis = roff
        .split(".SH SYNOPSIS\n")
        .nth(1)
        .and_then(|rest| rest.split("\n.").next())
        .expect("a synopsis");
    for wanted in [
        "pmem-stack format BACKING",
        "[--reserve SIZE|auto]",
        "[--mode hypervisor|os|none]",
        "[--align SIZE]",
        "[--owner NAME[:KIND]=SIZE|auto|rest]...",
    ] {
        assert!(synopsis.contains(wanted), "{wanted:?} not in {synopsis:?}");
    }
    let split = plain_roff(&pages["pmem-stack-reserve-split"]);
    assert!(
        split.contains("pmem-stack reserve split BACKING --owner NAME[:KIND]=SIZE|auto|rest..."),
        "{split}"
    );
}

#[test]
fn man_finds_nested_commands_and_refuses_others_as_usage_errors() {
    let t = Scratch::new();
    let pages = write_pages(&t);
    let split = std::fs::read_to_string(&pages["pmem-stack-reserve-split"]).expect("page");
    for words in [
        &["man", "reserve", "split"][..],
        &["man", "reserve-split"],
        &["man", "pmem-stack-reserve-split"],
    ] {
        let run = t.run(words).ok();
        assert_eq!(run.stdout(), split, "{words:?}");
    }
    let main = std::fs::read_to_string(&pages["pmem-stack"]).expect("page");
    assert_eq!(t.run(["man"]).ok().stdout(), main);
    for words in [
        &["man", "bogus"][..],
        &["man", "reserve", "bogus"],
        &["man", "udev-id"],
    ] {
        let asked = words[1..].join(" ");
        let run = t.run(words).fails(
            2,
            &[&format!("error: '{asked}' is not a pmem-stack command")],
        );
        assert!(run.stdout().is_empty(), "{words:?}");
        assert!(
            run.stderr().contains("reserve split"),
            "names the pages: {}",
            run.stderr()
        );
    }
    // --dir into something that is not a directory is a failure, not a panic.
    let file = t.image("plain-file", 1);
    t.run(["man", "--dir", s(&file)]).fails(1, &["plain-file"]);
}

/// Every key path in `value`: `a`, `a.b` inside an object, `a[].b` inside
/// the objects of an array; the objects of a top-level array have bare
/// paths (the pages document them so).
fn key_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                key_paths(inner, &path, out);
                out.insert(path);
            }
        }
        serde_json::Value::Array(items) => {
            let inner = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}[]")
            };
            for item in items {
                key_paths(item, &inner, out);
            }
        }
        _ => {}
    }
}

/// The keys a page documents: the tags of its JSON OUTPUT section.
fn documented_keys(roff: &str) -> BTreeSet<String> {
    let Some(section) = roff.split(".SH \"JSON OUTPUT\"\n").nth(1) else {
        return BTreeSet::new();
    };
    let section = section.split("\n.SH ").next().unwrap_or_default();
    let lines: Vec<&str> = section.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .map(|w| w[1].trim().to_string())
        .collect()
}

/// One step of the tour of the offline commands: a command whose JSON
/// `page` documents, with the exit status it must give, or a change to an
/// image between commands. Image names (`PLAIN`, …) stand for their paths.
enum Step {
    Json(&'static str, &'static [&'static str], i32),
    /// Damage the primary copy of the image.
    Damage(&'static str),
    /// Make the image 512 MiB.
    Enlarge(&'static str),
}

/// The images: a plain reserve, one shared by owners, mode none, one only
/// dry-run formatted, and a blank one.
const IMAGES: &[(&str, u64)] = &[
    ("PLAIN", 256 * MIB),
    ("OWNED", 256 * MIB),
    ("NONE", 256 * MIB),
    ("DRY", 256 * MIB),
    ("BLANK", 64 * MIB),
];

const TOUR: &[Step] = &[
    Step::Json(
        "format",
        &["format", "PLAIN", "--reserve", "9M", "--json"],
        0,
    ),
    Step::Json(
        "format",
        &[
            "format",
            "OWNED",
            "--owner",
            "xen=auto",
            "--owner",
            "dom0=rest",
            "--json",
        ],
        0,
    ),
    Step::Json("format", &["format", "NONE", "--reserve", "0", "--json"], 0),
    Step::Json(
        "format",
        &["format", "DRY", "--reserve", "auto", "--dry-run", "--json"],
        0,
    ),
    Step::Json("info", &["info", "PLAIN", "--json"], 0),
    Step::Json("info", &["info", "OWNED", "NONE", "--json"], 0),
    Step::Json("scan", &["scan", "PLAIN", "BLANK", "--json"], 0),
    Step::Json("reserved", &["reserved", "OWNED", "--json"], 0),
    Step::Json(
        "reserved",
        &["reserved", "OWNED", "--owner", "dom0", "--json"],
        0,
    ),
    Step::Json("reserved", &["reserved", "PLAIN", "--json"], 0),
    Step::Json("reserve-list", &["reserve", "list", "OWNED", "--json"], 0),
    Step::Json("reserve-list", &["reserve", "list", "NONE", "--json"], 0),
    Step::Json(
        "reserve-split",
        &[
            "reserve",
            "split",
            "PLAIN",
            "--owner",
            "xen=4M",
            "--owner",
            "dom0=rest",
            "--json",
        ],
        0,
    ),
    Step::Json("check", &["check", "OWNED", "--json"], 0),
    // A damaged primary: check finds it (exit 1), --repair mends it.
    Step::Damage("OWNED"),
    Step::Json("check", &["check", "OWNED", "--json"], 1),
    Step::Json("check", &["check", "OWNED", "--repair", "--json"], 0),
    Step::Enlarge("PLAIN"),
    Step::Json("grow", &["grow", "PLAIN", "--json"], 0),
];

/// Take the tour: the keys each page's commands printed.
fn tour(t: &Scratch) -> BTreeMap<&'static str, BTreeSet<String>> {
    let images: BTreeMap<&str, PathBuf> = IMAGES
        .iter()
        .map(|(name, size)| (*name, t.image(&format!("{name}.img"), *size)))
        .collect();
    let mut printed: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for step in TOUR {
        match step {
            Step::Json(page, args, code) => {
                let args: Vec<&str> = args
                    .iter()
                    .map(|a| images.get(a).map_or(*a, |p| s(p)))
                    .collect();
                let run = t.run(&args);
                assert_eq!(run.code(), *code, "{args:?}: {}", run.stderr());
                let json = run.json();
                let keys = printed.entry(page).or_default();
                let before = keys.len();
                key_paths(&json, "", keys);
                assert!(
                    keys.len() > before || !json.as_array().is_some_and(Vec::is_empty),
                    "{args:?} printed {json}"
                );
            }
            Step::Damage(name) => {
                let byte = read_at(&images[name], 4096 + 0x90, 1)[0];
                write_at(&images[name], 4096 + 0x90, &[byte ^ 0x5A]);
            }
            Step::Enlarge(name) => {
                std::fs::File::options()
                    .write(true)
                    .open(&images[name])
                    .and_then(|f| f.set_len(512 * MIB))
                    .expect("enlarge the image");
            }
        }
    }
    printed
}

#[test]
fn every_json_key_the_offline_commands_print_is_documented_on_their_page() {
    let t = Scratch::new();
    let pages = write_pages(&t);
    let printed = tour(&t);
    assert_eq!(
        printed.keys().copied().collect::<Vec<_>>(),
        [
            "check",
            "format",
            "grow",
            "info",
            "reserve-list",
            "reserve-split",
            "reserved",
            "scan"
        ],
        "every offline command that prints JSON"
    );
    assert!(
        printed["info"].contains("owners[].owner") && printed["format"].contains("primary.detail"),
        "{printed:?}"
    );
    for (page, keys) in &printed {
        let name = format!("pmem-stack-{page}");
        let documented = documented_keys(&plain_roff(&pages[&name]));
        let missing: Vec<&String> = keys.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "{name}(8) does not document {missing:?}"
        );
        // Every key is printed every time (unknown values are null), so
        // what a page documents and these commands never print is stale.
        let stale: Vec<&String> = documented.difference(keys).collect();
        assert!(
            stale.is_empty(),
            "{name}(8) documents keys never printed: {stale:?}"
        );
    }
}

#[test]
fn unknown_values_are_present_and_null() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let info = t
        .run(["format", s(&img), "--reserve", "8M", "--json"])
        .ok()
        .json();
    // An image file has no physical address.
    for key in [
        "reserve_phys_start",
        "reserve_phys_end",
        "reserve_mfn_start",
        "reserve_mfn_end",
    ] {
        assert!(
            info.get(key).is_some_and(serde_json::Value::is_null),
            "{key}: {info}"
        );
    }
    for copy in ["primary", "backup"] {
        assert!(
            info[copy]
                .get("detail")
                .is_some_and(serde_json::Value::is_null),
            "{info}"
        );
    }
    let claim = t
        .run(["reserved", s(&img), "--owner", "hypervisor", "--json"])
        .ok()
        .json();
    assert!(
        claim
            .get("mfn_start")
            .is_some_and(serde_json::Value::is_null),
        "{claim}"
    );
    // One key for an owner's name: the same in info, reserve list and reserved.
    let list = t.run(["reserve", "list", s(&img), "--json"]).ok().json();
    assert_eq!(info["owners"], list["owners"]);
    assert_eq!(list["owners"][0]["owner"], claim["owner"]);
    for key in ["owner", "kind", "offset", "size"] {
        assert_eq!(list["owners"][0][key], claim[key], "{key}");
    }
}
