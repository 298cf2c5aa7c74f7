//! `scan` and `info` over several backings, run as the real binary on image
//! files, and the speed of both on a large blank (sparse) backing: the
//! backup search must not read a multi-TiB image every 2 MiB.

mod common;

use std::time::{Duration, Instant};

use common::{Scratch, digest, read_at, write_at};

const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

/// What "quick" means here, on a loaded 2-core machine (it takes
/// milliseconds; reading the blank image every 2 MiB took 8.9 s).
const QUICK: Duration = Duration::from_secs(3);

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Flip one bit of the byte at `offset`.
fn flip(path: &std::path::Path, offset: u64) {
    let byte = read_at(path, offset, 1)[0];
    write_at(path, offset, &[byte ^ 0x20]);
}

/// A formatted image, a blank one, foreign data, a damaged volume: the
/// images of a small machine.
struct Machine {
    t: Scratch,
    volume: std::path::PathBuf,
    blank: std::path::PathBuf,
    foreign: std::path::PathBuf,
    damaged: std::path::PathBuf,
}

impl Machine {
    fn new() -> Machine {
        let t = Scratch::new();
        let volume = t.image("volume.img", 256 * MIB);
        t.run(["format", s(&volume), "--reserve", "8M"]).ok();
        let blank = t.image("blank.img", 2 * TIB);
        // An ext2 super block: its magic at 1024 + 0x38.
        let foreign = t.image("foreign.img", 64 * MIB);
        write_at(&foreign, 1024 + 0x38, &[0x53, 0xEF]);
        let damaged = t.image("damaged.img", 128 * MIB);
        t.run(["format", s(&damaged), "--reserve", "8M"]).ok();
        flip(&damaged, 4096 + 0x40);
        flip(&damaged, 128 * MIB - 4096 + 0x40);
        Machine {
            t,
            volume,
            blank,
            foreign,
            damaged,
        }
    }

    /// The images small enough to digest (the blank one is 2 TiB).
    fn small_images(&self) -> [&std::path::Path; 3] {
        [&self.volume, &self.foreign, &self.damaged]
    }
}

/// Whether `path` is all hole: nothing was ever written to it.
fn all_hole(path: &std::path::Path) -> bool {
    let file = std::fs::File::open(path).expect("open");
    matches!(
        rustix::fs::seek(&file, rustix::fs::SeekFrom::Data(0)),
        Err(rustix::io::Errno::NXIO)
    )
}

#[test]
fn scan_says_what_each_backing_holds_and_writes_nothing() {
    let m = Machine::new();
    let before: Vec<_> = m.small_images().iter().map(|p| digest(p)).collect();
    assert!(all_hole(&m.blank));
    let uuid = m.t.run(["info", s(&m.volume), "--json"]).ok().json()["uuid"].clone();
    let missing = m.t.path("missing.img");
    let started = Instant::now();
    let run = m.t.run([
        "scan",
        "--json",
        s(&m.volume),
        s(&m.blank),
        s(&m.foreign),
        s(&m.damaged),
        s(&missing),
    ]);
    println!(
        "scan of five backings (one a blank 2 TiB image): {:?}",
        started.elapsed()
    );
    // A PATH given that cannot be read makes the exit status 1; the rest
    // is still reported.
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let all = run.json();
    let all = all.as_array().expect("an array");
    // The machine's own devices come first; then the paths given, in order.
    let given = &all[all.len() - 5..];
    for device in &all[..all.len() - 5] {
        let path = device["path"].as_str().expect("path");
        assert!(
            path.starts_with("/dev/pmem") || path.starts_with("/dev/dax"),
            "{path}"
        );
    }
    let states: Vec<&str> = given
        .iter()
        .map(|b| b["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        ["volume", "blank", "foreign", "damaged", "unreadable"]
    );
    let volume = &given[0];
    assert_eq!(volume["path"], s(&m.volume));
    assert_eq!(volume["kind"], "file");
    assert_eq!(volume["size"], 256 * MIB);
    assert_eq!(volume["uuid"], uuid);
    assert_eq!(volume["format_version"], "1.0");
    assert_eq!(volume["healthy"], true);
    assert_eq!(volume["reserve_size"], 8 * MIB);
    assert!(volume["data_size"].as_u64().expect("data_size") > 200 * MIB);
    assert_eq!(volume["served_by"], serde_json::Value::Null);
    assert_eq!(given[1]["size"], 2 * TIB);
    assert_eq!(given[1]["uuid"], serde_json::Value::Null);
    assert!(
        given[2]["foreign"][0]
            .as_str()
            .expect("name")
            .contains("ext2"),
        "{}",
        given[2]
    );
    assert!(
        given[3]["error"].as_str().expect("why").contains("corrupt"),
        "{}",
        given[3]
    );
    assert!(
        given[4]["error"]
            .as_str()
            .expect("why")
            .contains("no such file"),
        "{}",
        given[4]
    );
    assert_eq!(given[4]["kind"], serde_json::Value::Null);
    let after: Vec<_> = m.small_images().iter().map(|p| digest(p)).collect();
    assert_eq!(after, before, "scan wrote nothing");
    assert!(all_hole(&m.blank), "scan wrote nothing to the blank image");
}

#[test]
fn scan_text_is_one_line_per_backing() {
    let m = Machine::new();
    let out =
        m.t.run([
            "scan",
            s(&m.volume),
            s(&m.blank),
            s(&m.foreign),
            s(&m.damaged),
        ])
        .ok()
        .stdout();
    print!("{out}");
    let line = |path: &std::path::Path| {
        out.lines()
            .find(|l| l.starts_with(s(path)))
            .unwrap_or_else(|| panic!("no line for {}: {out}", path.display()))
            .to_string()
    };
    assert!(out.starts_with("BACKING"), "{out}");
    let volume = line(&m.volume);
    for part in [
        "file",
        "256 MiB",
        "pmem-stack volume 1.0",
        "healthy",
        "reserve 8 MiB",
        "not served",
    ] {
        assert!(volume.contains(part), "{part:?} not in {volume:?}");
    }
    assert!(line(&m.blank).ends_with("blank"), "{out}");
    assert!(line(&m.blank).contains("2 TiB"), "{out}");
    assert!(
        line(&m.foreign).contains("foreign (an ext2 file system)"),
        "{out}"
    );
    assert!(
        line(&m.damaged).contains("damaged pmem-stack volume"),
        "{out}"
    );
    // A PATH that names the same backing twice is shown once.
    let twice =
        m.t.run(["scan", "--json", s(&m.volume), s(&m.volume)])
            .ok()
            .json();
    let mine = twice
        .as_array()
        .expect("array")
        .iter()
        .filter(|b| b["path"] == s(&m.volume))
        .count();
    assert_eq!(mine, 1);
}

#[test]
fn scan_looks_at_a_backing_another_process_holds() {
    let m = Machine::new();
    // flock(1) holds the lock a serving pmem-stack holds: scan opens shared
    // and takes no lock, so it neither fails nor waits.
    let mut holder = std::process::Command::new("flock")
        .args(["--exclusive", "--no-fork", s(&m.volume), "sleep", "30"])
        .spawn()
        .expect("flock(1) is required (util-linux)");
    std::thread::sleep(Duration::from_millis(300));
    let run = m.t.run(["scan", "--json", s(&m.volume)]);
    holder.kill().expect("kill");
    holder.wait().expect("wait");
    let all = run.ok().json();
    let last = all.as_array().and_then(|a| a.last()).expect("one backing");
    assert_eq!(last["state"], "volume");
}

#[test]
fn info_shows_several_backings_and_reports_each_failure() {
    let m = Machine::new();
    let second = m.t.image("second.img", 128 * MIB);
    m.t.run(["format", s(&second), "--reserve", "4M"]).ok();
    // One backing: today's single object, byte for byte.
    let one = m.t.run(["info", s(&m.volume), "--json"]).ok();
    assert!(one.json().is_object());
    let both =
        m.t.run(["info", s(&m.volume), s(&second), "--json"])
            .ok()
            .json();
    let both = both.as_array().expect("an array for several");
    assert_eq!(both.len(), 2);
    assert_eq!(both[0], one.json());
    assert_eq!(both[1]["reserve_size"], 4 * MIB);
    // Text: one block per backing, each starting with its path, the same
    // text `info` prints for each alone.
    let text = m.t.run(["info", s(&m.volume), s(&second)]).ok().stdout();
    let alone = m.t.run(["info", s(&second)]).ok().stdout();
    let first_alone = m.t.run(["info", s(&m.volume)]).ok().stdout();
    assert_eq!(text, format!("{first_alone}\n{alone}"));
    // A failing backing: its one-line error on stderr, the others shown,
    // exit 1.
    let run =
        m.t.run(["info", s(&m.blank), s(&m.volume), s(&m.foreign), "--json"]);
    assert_eq!(run.code(), 1);
    let shown = run.json();
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{shown}");
    assert_eq!(shown[0]["backing"], s(&m.volume));
    let err = run.stderr();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("blank.img")
            && lines[0].contains("not formatted"),
        "{err}"
    );
    assert!(
        lines[1].starts_with("error: ") && lines[1].contains("foreign.img"),
        "{err}"
    );
    let text = m.t.run(["info", s(&m.volume), s(&m.blank)]);
    assert_eq!(text.code(), 1);
    assert_eq!(text.stdout(), first_alone);
}

#[test]
fn info_on_a_blank_2_tib_image_is_quick() {
    let t = Scratch::new();
    let img = t.image("blank.img", 2 * TIB);
    let started = Instant::now();
    let run = t.run(["info", s(&img)]);
    let took = started.elapsed();
    println!("info on a blank 2 TiB sparse image: {took:?}");
    run.fails(1, &["not formatted"]);
    assert!(took < QUICK, "info took {took:?}");
    let started = Instant::now();
    let run = t.run(["scan", s(&img)]).ok();
    let took = started.elapsed();
    println!("scan of a blank 2 TiB sparse image: {took:?}");
    assert!(run.stdout().contains("blank"), "{}", run.stdout());
    assert!(took < QUICK, "scan took {took:?}");
}

#[test]
fn a_grown_volume_whose_primary_was_wiped_is_still_found_quickly() {
    let t = Scratch::new();
    let img = t.image("grown.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    let uuid = t.run(["info", s(&img), "--json"]).ok().json()["uuid"].clone();
    // The namespace grew to 1 TiB (the new space a hole), then the primary
    // was wiped: only the old backup, 1 TiB - 256 MiB below the end, tells
    // that a volume is there.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(TIB))
        .expect("grow");
    write_at(&img, 4096, &[0u8; 4096]);
    let started = Instant::now();
    let run = t.run(["info", s(&img), "--json"]).ok();
    let took = started.elapsed();
    println!("info on a grown 1 TiB sparse image with a wiped primary: {took:?}");
    let info = run.json();
    assert_eq!(info["uuid"], uuid);
    assert_eq!(info["primary"]["state"], "missing");
    assert_eq!(info["backup"]["offset"], 256 * MIB - 4096);
    assert!(took < QUICK, "info took {took:?}");
    // And format still refuses to destroy it.
    t.run(["format", s(&img), "--reserve", "8M"])
        .fails(1, &["already holds a pmem-stack volume"]);
}
