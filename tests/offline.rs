//! The offline commands (`format`, `info`, `check`) and every refusal, run as
//! the real binary on image files. Whenever a command fails, the image must be
//! byte-for-byte what it was.

mod common;

use common::{Scratch, digest, read_at, tool, write_at};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn format_then_info_json_reports_the_contract_keys() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 2 * GIB);
    t.run(["format", s(&img), "--reserve", "512M"]).ok();
    let info = t.run(["info", s(&img), "--json"]).ok().json();
    assert_eq!(info["format_version"], "1.0");
    assert_eq!(info["generation"], 1);
    assert_eq!(info["device_size"], 2 * GIB);
    assert_eq!(info["align"], 2 * MIB);
    assert_eq!(info["mode"], "hypervisor");
    assert_eq!(info["reserve_offset"], 2 * MIB);
    assert_eq!(info["reserve_size"], 512 * MIB);
    assert_eq!(info["data_offset"], 514 * MIB);
    assert_eq!(info["data_size"], 2 * GIB - 516 * MIB);
    assert_eq!(info["logical_block_size"], 512);
    assert_eq!(info["primary"]["offset"], 4096);
    assert_eq!(info["primary"]["state"], "ok");
    assert_eq!(info["backup"]["offset"], 2 * GIB - 4096);
    assert_eq!(info["backup"]["state"], "ok");
    assert!(
        info["parent_uuid"].is_null(),
        "an image file has no namespace"
    );
    let uuid = info["uuid"].as_str().expect("uuid string");
    assert_eq!(uuid.len(), 36);
    // No physical address for an image file: the keys are there, null.
    for key in [
        "reserve_phys_start",
        "reserve_phys_end",
        "reserve_mfn_start",
        "reserve_mfn_end",
    ] {
        assert!(
            info.get(key).is_some_and(serde_json::Value::is_null),
            "{key}"
        );
    }
    // The untouched head really is untouched.
    assert!(read_at(&img, 0, 4096).iter().all(|&b| b == 0));
    t.run(["check", s(&img)]).ok();
    let check = t.run(["check", s(&img), "--json"]).ok().json();
    assert_eq!(check["healthy"], true);
}

#[test]
fn info_text_draws_the_layout() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let out = t
        .run(["format", s(&img), "--reserve", "64M", "--mode", "os"])
        .ok()
        .stdout();
    let text = t.run(["info", s(&img)]).ok().stdout();
    assert_eq!(out, text, "format prints what info prints");
    let bar = text
        .lines()
        .find(|l| l.trim_start().starts_with('['))
        .expect("a bar");
    for symbol in ['h', 'S', 'R', 'D', 'B'] {
        assert!(bar.contains(symbol), "{bar}");
    }
    let r = bar.chars().filter(|&c| c == 'R').count();
    assert!(
        (16..=20).contains(&r),
        "64 MiB of 256 MiB is a quarter: {bar}"
    );
    assert!(text.contains("mode os"), "{text}");
}

#[test]
fn sizes_modes_and_alignments() {
    let t = Scratch::new();
    let img = t.image("a.img", 4 * GIB);
    let g = |args: &[&str]| {
        let mut all = vec!["format", s(&img), "--force", "--json"];
        all.extend_from_slice(args);
        t.run(&all).ok().json()
    };
    let j = g(&["--reserve", "0"]);
    assert_eq!(
        (j["mode"].as_str(), j["reserve_size"].as_u64()),
        (Some("none"), Some(0))
    );
    assert_eq!(j["data_offset"], 2 * MIB);
    let j = g(&["--mode", "none"]);
    assert_eq!(j["reserve_size"], 0);
    let j = g(&["--reserve", "1m", "--align", "1G"]);
    assert_eq!(
        (j["reserve_offset"].as_u64(), j["reserve_size"].as_u64()),
        (Some(GIB), Some(GIB))
    );
    let j = g(&["--reserve", "5000", "--align", "4K"]);
    assert_eq!(
        (j["reserve_offset"].as_u64(), j["reserve_size"].as_u64()),
        (Some(8192), Some(8192))
    );
    let j = g(&["--reserve", "auto"]);
    assert_eq!(j["mode"], "hypervisor");
    assert!(
        j["reserve_size"].as_u64().expect("n") >= 44 * j["data_size"].as_u64().expect("n") / 4096
    );
    let j = g(&["--reserve", "auto", "--mode", "os"]);
    assert!(
        j["reserve_size"].as_u64().expect("n") >= 64 * j["data_size"].as_u64().expect("n") / 4096
    );
    let j = g(&["--reserve", "64M", "--block-size", "4096"]);
    assert_eq!(j["logical_block_size"], 4096);
    // Each re-format bumps the generation.
    assert!(j["generation"].as_u64().expect("n") >= 7);
}

/// Run a command that must fail, and prove the image did not change.
fn refused(t: &Scratch, img: &std::path::Path, args: &[&str], code: i32, fragments: &[&str]) {
    let before = digest(img);
    t.run(args).fails(code, fragments);
    assert_eq!(digest(img), before, "{args:?} changed the backing");
}

#[test]
fn bad_input_is_refused_with_one_line_and_no_change() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let p = s(&img);
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "1G"],
        1,
        &["too large", "largest"],
    );
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "lots"],
        2,
        &["invalid size 'lots'", "512M"],
    );
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "1.5G"],
        2,
        &["invalid size"],
    );
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "8M", "--align", "1M"],
        2,
        &["4K, 2M or 1G"],
    );
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "8M", "--block-size", "1024"],
        2,
        &["512 or 4096"],
    );
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "8M", "--mode", "hyper"],
        2,
        &["hyper"],
    );
    refused(&t, &img, &["format", p], 2, &["--reserve"]);
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "8M", "--mode", "none"],
        2,
        &["--mode none takes no reserve"],
    );
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "0", "--mode", "os"],
        2,
        &["needs a reserve"],
    );
    refused(
        &t,
        &img,
        &["format", p, "--reserve", "2M", "--mode", "os"],
        1,
        &["too small for --mode os", "--reserve 4M"],
    );
    assert!(read_at(&img, 0, 1 << 16).iter().all(|&b| b == 0));
}

#[test]
fn unusable_backings_are_refused_with_one_line() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let tiny = t.image("tiny.img", 3 * MIB);
    refused(
        &t,
        &tiny,
        &["format", s(&tiny), "--reserve", "0"],
        1,
        &["too small", "at least"],
    );
    t.run(["format", "/nonexistent/pmem0", "--reserve", "0"])
        .fails(1, &["/nonexistent/pmem0: no such file or device"]);
    t.run(["info", s(&t.path("missing.img"))])
        .fails(1, &["no such file"]);
    t.run(["info", s(t.dir.path())])
        .fails(1, &["is a directory"]);
    t.run(["format", "/dev/null", "--reserve", "0"])
        .fails(1, &["not a devdax device"]);
    t.run(["info", s(&img)]).fails(1, &["not formatted"]);
    t.run(["check", s(&img)]).fails(1, &["not formatted"]);
}

#[test]
fn no_permission_is_a_clear_error() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 64 * MIB);
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    std::fs::set_permissions(
        t.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod dir");
    let before = digest(&img);
    // As an unprivileged user (root would bypass the permission bits).
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_pmem-stack"))
        .args(["format", s(&img), "--reserve", "0"])
        .env("PMEM_STACK_RUN_DIR", t.path("run"))
        .output()
        .expect("setpriv is required (util-linux)");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(digest(&img), before);
}

#[test]
fn a_held_backing_is_refused() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 64 * MIB);
    // flock(1) holds the same kind of lock a serving pmem-stack holds.
    let mut holder = std::process::Command::new("flock")
        .args(["--exclusive", "--no-fork", s(&img), "sleep", "30"])
        .spawn()
        .expect("flock(1) is required (util-linux)");
    std::thread::sleep(std::time::Duration::from_millis(300));
    refused(
        &t,
        &img,
        &["format", s(&img), "--reserve", "0"],
        1,
        &["in use"],
    );
    holder.kill().expect("kill");
    holder.wait().expect("wait");
    t.run(["format", s(&img), "--reserve", "0"]).ok();
}

/// One kind of foreign data: how to put it on an image, and what the
/// refusal must name.
struct Foreign {
    name: &'static str,
    prepare: fn(&std::path::Path),
    expect: &'static str,
}

fn foreign_cases() -> [Foreign; 10] {
    [
        Foreign {
            name: "ext4",
            prepare: |p| tool("mkfs.ext4", &["-q", "-F", p.to_str().unwrap_or("")]),
            expect: "an ext4 file system",
        },
        Foreign {
            name: "ext2",
            prepare: |p| tool("mkfs.ext2", &["-q", "-F", p.to_str().unwrap_or("")]),
            expect: "an ext2 file system",
        },
        Foreign {
            name: "xfs",
            prepare: |p| tool("mkfs.xfs", &["-q", "-f", p.to_str().unwrap_or("")]),
            expect: "an xfs file system",
        },
        Foreign {
            name: "btrfs",
            prepare: |p| tool("mkfs.btrfs", &["-q", "-f", p.to_str().unwrap_or("")]),
            expect: "a btrfs file system",
        },
        Foreign {
            name: "gpt",
            prepare: |p| tool("sgdisk", &["-o", p.to_str().unwrap_or("")]),
            expect: "a GPT partition table",
        },
        Foreign {
            name: "mbr",
            prepare: |p| {
                let mut e = [0u8; 16];
                e[0] = 0x80;
                e[4] = 0x83;
                write_at(p, 446, &e);
                write_at(p, 510, &[0x55, 0xAA]);
            },
            expect: "an MBR partition table",
        },
        Foreign {
            name: "pfn",
            prepare: |p| write_at(p, 4096, b"NVDIMM_PFN_INFO\0"),
            expect: "NVDIMM_PFN_INFO",
        },
        Foreign {
            name: "dax",
            prepare: |p| write_at(p, 4096, b"NVDIMM_DAX_INFO\0"),
            expect: "NVDIMM_DAX_INFO",
        },
        Foreign {
            name: "btt",
            prepare: |p| write_at(p, 4096, b"BTT_ARENA_INFO\0\0"),
            expect: "BTT_ARENA_INFO at byte 4096",
        },
        Foreign {
            name: "btt2",
            prepare: |p| write_at(p, 0, b"BTT_ARENA_INFO\0\0"),
            expect: "BTT_ARENA_INFO at byte 0",
        },
    ]
}

#[test]
fn foreign_data_is_refused_unless_forced() {
    let t = Scratch::new();
    for case in foreign_cases() {
        let img = t.image(&format!("{}.img", case.name), 512 * MIB);
        (case.prepare)(&img);
        refused(
            &t,
            &img,
            &["format", s(&img), "--reserve", "8M"],
            1,
            &[case.expect, "--force"],
        );
        // add on a blank-but-foreign backing is refused the same way (it
        // fails earlier on this host, which has no ublk, but never writes).
        let before = digest(&img);
        assert_ne!(t.run(["add", s(&img), "--reserve", "8M"]).code(), 0);
        assert_eq!(digest(&img), before);
        t.run(["format", s(&img), "--reserve", "8M", "--force"])
            .ok();
        t.run(["check", s(&img)]).ok();
    }
}

#[test]
fn an_existing_volume_is_kept_unless_forced() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    let first = t.run(["info", s(&img), "--json"]).ok().json();
    refused(
        &t,
        &img,
        &["format", s(&img), "--reserve", "16M"],
        1,
        &["already holds a pmem-stack volume", "--force"],
    );
    t.run(["format", s(&img), "--reserve", "16M", "--force"])
        .ok();
    let second = t.run(["info", s(&img), "--json"]).ok().json();
    assert_ne!(first["uuid"], second["uuid"]);
    assert_eq!(second["generation"], 2);
    assert_eq!(second["reserve_size"], 16 * MIB);
}

fn flip(path: &std::path::Path, offset: u64) {
    let byte = read_at(path, offset, 1)[0];
    write_at(path, offset, &[byte ^ 0x5A]);
}

#[test]
fn corrupting_either_copy_is_detected_served_around_and_repaired() {
    let t = Scratch::new();
    for (slot, offset) in [("primary", 4096u64), ("backup", 256 * MIB - 4096)] {
        let img = t.image(&format!("{slot}.img"), 256 * MIB);
        t.run(["format", s(&img), "--reserve", "8M"]).ok();
        let good = t.run(["info", s(&img), "--json"]).ok().json();
        flip(&img, offset + 0x90);
        let info = t.run(["info", s(&img), "--json"]).ok().json();
        assert_eq!(info["uuid"], good["uuid"], "the other copy carries on");
        assert_eq!(info[slot]["state"], "corrupt");
        assert!(
            info[slot]["detail"]
                .as_str()
                .unwrap_or("")
                .contains("checksum")
        );
        assert_eq!(info["healthy"], false);
        let before = digest(&img);
        let check = t.run(["check", s(&img)]);
        assert_eq!(check.code(), 1);
        assert!(
            check.stdout().contains(&format!("{slot} copy")),
            "{}",
            check.stdout()
        );
        assert!(check.stdout().contains("--repair"));
        assert_eq!(
            digest(&img),
            before,
            "check without --repair writes nothing"
        );
        let repaired = t.run(["check", s(&img), "--repair", "--json"]).ok().json();
        assert_eq!(repaired["repaired"], serde_json::json!([slot]));
        assert_eq!(repaired["healthy"], true);
        t.run(["check", s(&img)]).ok();
        let after = t.run(["info", s(&img), "--json"]).ok().json();
        assert_eq!(after["uuid"], good["uuid"]);
    }
}

#[test]
fn a_missing_backup_is_reported_and_rewritten() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    write_at(&img, 256 * MIB - 4096, &[0u8; 4096]);
    let check = t.run(["check", s(&img), "--json"]);
    assert_eq!(check.code(), 1);
    assert_eq!(check.json()["backup"]["state"], "missing");
    t.run(["check", s(&img), "--repair"]).ok();
    t.run(["check", s(&img)]).ok();
}

#[test]
fn a_crash_between_the_two_copy_writes_leaves_a_consistent_volume() {
    let t = Scratch::new();
    // First format cut after the backup: only the backup exists.
    let img = t.image("first.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    let formatted = t.run(["info", s(&img), "--json"]).ok().json();
    write_at(&img, 4096, &[0u8; 4096]);
    let info = t.run(["info", s(&img), "--json"]).ok().json();
    assert_eq!(info["uuid"], formatted["uuid"]);
    assert_eq!(info["primary"]["state"], "missing");
    assert_eq!(t.run(["check", s(&img)]).code(), 1);
    // A second format without --force must not mistake it for blank.
    refused(
        &t,
        &img,
        &["format", s(&img), "--reserve", "0"],
        1,
        &["already holds"],
    );
    t.run(["check", s(&img), "--repair"]).ok();

    // A re-format cut after the backup: new backup, old primary.
    let img = t.image("reformat.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    let old_primary = read_at(&img, 4096, 4096);
    t.run(["format", s(&img), "--reserve", "0", "--force"]).ok();
    let new = t.run(["info", s(&img), "--json"]).ok().json();
    write_at(&img, 4096, &old_primary);
    let info = t.run(["info", s(&img), "--json"]).ok().json();
    assert_eq!(info["uuid"], new["uuid"], "the newer generation wins");
    assert_eq!(info["reserve_size"], 0);
    assert_eq!(info["primary"]["state"], "stale");
    assert_eq!(info["backup"]["state"], "ok");
    let check = t.run(["check", s(&img)]);
    assert_eq!(check.code(), 1);
    assert!(check.stdout().contains("older"), "{}", check.stdout());
    t.run(["check", s(&img), "--repair"]).ok();
    let healed = t.run(["info", s(&img), "--json"]).ok().json();
    assert_eq!(healed["uuid"], new["uuid"]);
    assert_eq!(healed["primary"]["state"], "ok");
}

#[test]
fn both_copies_bad_cannot_be_repaired_and_nothing_is_written() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    flip(&img, 4096 + 0x60);
    flip(&img, 256 * MIB - 4096 + 0x60);
    let before = digest(&img);
    t.run(["info", s(&img)])
        .fails(1, &["no valid pmem-stack super block", "corrupt"]);
    assert_eq!(t.run(["check", s(&img)]).code(), 1);
    t.run(["check", s(&img), "--repair"])
        .fails(1, &["nothing to repair from"]);
    t.run(["format", s(&img), "--reserve", "8M"])
        .fails(1, &["damaged pmem-stack super block"]);
    assert_eq!(digest(&img), before);
}

/// Rewrite the copy at `at` as a writer of format major 2 would: the new
/// version under a valid checksum.
fn make_newer_major(img: &std::path::Path, at: u64) {
    let mut block: [u8; 4096] = read_at(img, at, 4096).try_into().expect("block");
    block[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
    let sum = pmem_stack::format::superblock::checksum(&block);
    block[0x14..0x18].copy_from_slice(&sum.to_le_bytes());
    write_at(img, at, &block);
}

#[test]
fn a_damaged_version_byte_is_repaired_from_the_backup() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    for value in [0u8, 3] {
        write_at(&img, 4096 + 0x10, &[value]);
        let info = t.run(["info", s(&img), "--json"]).ok().stdout();
        assert!(info.contains("\"corrupt\""), "{info}");
        assert!(!info.contains("newer"), "{info}");
        let check = t.run(["check", s(&img)]);
        assert_eq!(check.code(), 1, "unhealthy");
        assert!(check.stdout().contains("corrupt"), "{}", check.stdout());
        t.run(["check", s(&img), "--repair"]).ok();
        t.run(["check", s(&img)]).ok();
    }
}

#[test]
fn a_grown_backing_with_a_lost_primary_is_found_and_repaired() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    let uuid = t.run(["info", s(&img), "--json"]).ok().stdout();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(384 * MIB))
        .expect("grow");
    write_at(&img, 4096, &[0u8; 4096]);
    let before = digest(&img);
    // Refused, naming the volume, and never with advice to destroy it.
    let refusal = t.run(["format", s(&img), "--reserve", "8M"]);
    assert_eq!(refusal.code(), 1);
    assert!(
        refusal
            .stderr()
            .contains("already holds a pmem-stack volume"),
        "{}",
        refusal.stderr()
    );
    assert_eq!(digest(&img), before);
    t.run(["check", s(&img), "--repair"]).ok();
    let info = t.run(["info", s(&img), "--json"]).ok().stdout();
    let uuid_of = |json: &str| json.split("\"uuid\"").nth(1).map(|r| r[..42].to_string());
    assert_eq!(uuid_of(&info), uuid_of(&uuid), "the same volume is back");
    t.run(["check", s(&img)]).ok();
}

#[test]
fn a_copy_of_another_layout_is_refused_saying_what_it_is() {
    let t = Scratch::new();
    let old = t.image("old.img", 256 * MIB);
    t.run(["format", s(&old), "--reserve", "8M"]).ok();
    // The namespace reconfigured: the device now starts 16 MiB further in.
    let bytes = std::fs::read(&old).expect("read");
    let img = t.path("new.img");
    std::fs::write(&img, &bytes[16 << 20..]).expect("write");
    let before = digest(&img);
    for args in [
        vec!["format", s(&img), "--reserve", "8M"],
        vec!["info", s(&img)],
        vec!["check", s(&img), "--repair"],
    ] {
        t.run(args.clone())
            .fails(1, &["another layout", "resized or reconfigured", "--force"]);
    }
    assert_eq!(digest(&img), before);
}

#[test]
fn a_newer_format_version_is_never_overwritten() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    make_newer_major(&img, 4096);
    make_newer_major(&img, 256 * MIB - 4096);
    let before = digest(&img);
    t.run(["info", s(&img)])
        .fails(1, &["newer", "upgrade pmem-stack"]);
    t.run(["check", s(&img), "--repair"])
        .fails(1, &["upgrade pmem-stack"]);
    t.run(["format", s(&img), "--reserve", "8M"])
        .fails(1, &["upgrade pmem-stack"]);
    assert_eq!(digest(&img), before);
}

#[test]
fn add_refuses_cleanly_where_it_cannot_serve() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let before = digest(&img);
    if std::path::Path::new("/dev/ublk-control").exists() {
        // On a machine with ublk, the blank-backing rule is what refuses.
        t.run(["add", s(&img)])
            .fails(1, &["not formatted yet", "--reserve"]);
    } else {
        t.run(["add", s(&img), "--reserve", "8M"])
            .fails(1, &["ublk driver is not available", "modprobe ublk_drv"]);
    }
    assert_eq!(
        digest(&img),
        before,
        "nothing written when add cannot start"
    );
}

#[test]
fn del_and_recover_explain_bad_device_names() {
    let t = Scratch::new();
    t.run(["recover", "pmem0"])
        .fails(2, &["'pmem0' is not a device: give N or /dev/ublkbN"]);
    t.run(["del"]).fails(2, &["required"]);
    let list = t.run(["list", "--json"]).ok().json();
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn map_refuses_image_files_and_unmap_needs_a_map() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let root = is_root();
    let before = digest(&img);
    let run = t.run(["map", s(&img), "--reserve", "8M"]);
    if root {
        run.fails(
            1,
            &[
                "cannot map",
                "is an image file; a device-mapper map needs a block device",
                "serve it with 'pmem-stack add' instead",
            ],
        );
        t.run(["unmap", s(&img)])
            .fails(1, &["is not a map, nor a block device that is mapped"]);
    } else {
        run.fails(1, &["pmem-stack map needs root", "device-mapper"]);
    }
    assert_eq!(digest(&img), before, "a refused map wrote nothing");
    // A bad name is a usage error, before anything is opened.
    let err = t
        .run(["map", s(&img), "--name", "a/b"])
        .fails(2, &["only letters"]);
    assert!(err.stdout().is_empty());
    assert_eq!(digest(&img), before);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn format_dry_run_shows_what_it_would_write_and_writes_nothing() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 2 * GIB);
    let p = img.to_str().expect("utf-8");
    let before = digest(&img);
    let dry = t
        .run(["format", p, "--reserve", "512MB", "--dry-run", "--json"])
        .ok();
    assert_eq!(digest(&img), before, "--dry-run wrote");
    let planned = dry.json();
    assert_eq!(planned["dry_run"], true);
    // 512MB is 512000000 bytes (coreutils' reading), rounded up to 2 MiB.
    assert_eq!(planned["reserve_size"], 490 * MIB);
    let notes = planned["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].as_str().is_some_and(
            |n| n.starts_with("--reserve 512000000 bytes (488.28 MiB) rounded up to 490 MiB")
        ),
        "{notes:?}"
    );
    assert!(dry.stderr().contains("note: --reserve 512000000 bytes"));
    let text = t.run(["format", p, "--reserve", "512MB", "--dry-run"]).ok();
    assert!(
        text.stdout().starts_with("dry run: nothing was written"),
        "{}",
        text.stdout()
    );
    assert_eq!(digest(&img), before, "--dry-run wrote");
    // A dry run refuses what the real one would.
    t.run(["format", p, "--reserve", "512MB", "-q"]).ok();
    let written = t.run(["info", p, "--json"]).ok().json();
    for key in ["reserve_size", "data_offset", "data_size", "mode", "align"] {
        assert_eq!(written[key], planned[key], "{key}");
    }
    let after = digest(&img);
    t.run(["format", p, "--reserve", "8M", "--dry-run"])
        .fails(1, &["already holds a pmem-stack volume", "--force"]);
    assert_eq!(digest(&img), after);
}

#[test]
fn format_quiet_prints_nothing_but_notes() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 8 * GIB);
    let p = img.to_str().expect("utf-8");
    let run = t
        .run(["format", p, "--reserve", "512M", "--align", "1G", "--quiet"])
        .ok();
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr().trim(),
        "note: --reserve 512 MiB rounded up to 1 GiB: the reserve is a whole number of --align 1G steps"
    );
    assert_eq!(
        t.run(["info", p, "--json"]).ok().json()["reserve_size"],
        GIB
    );
}

#[test]
fn owners_of_one_os_kind_make_a_mode_os_volume() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 4 * GIB);
    let p = img.to_str().expect("utf-8");
    let info = t
        .run(["format", p, "--owner", "dom0=auto", "--json"])
        .ok()
        .json();
    assert_eq!(info["mode"], "os");
    t.run(["check", p]).ok();
    let info = t
        .run([
            "format",
            p,
            "--force",
            "--owner",
            "xen=auto",
            "--owner",
            "dom0=auto",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(info["mode"], "hypervisor");
    // An os owner below its page array's need is refused, as --mode os is.
    let before = digest(&img);
    t.run(["format", p, "--force", "--owner", "dom0=4K"])
        .fails(1, &["owner 'dom0' (os) would get 4 KiB", "or auto"]);
    assert_eq!(digest(&img), before);
}
