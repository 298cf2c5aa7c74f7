//! `reserved`, `reserve split`/`list`, `format --owner` (format 1.1) and
//! `grow`, run as the real binary on image files — and every refusal, which
//! must be one line and leave the image byte-for-byte what it was.

mod common;

use common::{Scratch, digest, read_at, write_at};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Run a command that must fail, and prove the image did not change.
/// `reserve split P --owner O …`.
fn split<'a>(p: &'a str, owners: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["reserve", "split", p];
    for o in owners {
        args.extend(["--owner", o]);
    }
    args
}

fn refused(t: &Scratch, img: &std::path::Path, args: &[&str], code: i32, fragments: &[&str]) {
    let before = digest(img);
    t.run(args).fails(code, fragments);
    assert_eq!(digest(img), before, "{args:?} changed the backing");
}

#[test]
fn an_unsplit_reserve_has_one_owner_named_after_its_mode() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 2 * GIB);
    let p = s(&img);
    t.run(["format", p, "--reserve", "512M", "--mode", "os"])
        .ok();
    let list = t.run(["reserve", "list", p, "--json"]).ok().json();
    assert_eq!(list["split"], false);
    assert_eq!(list["format_version"], "1.0");
    assert_eq!(list["owners"][0]["owner"], "os");
    assert_eq!(list["owners"][0]["size"], 512 * MIB);
    let all = t.run(["reserved", p, "--json"]).ok().json();
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let one = t
        .run(["reserved", p, "--owner", "os", "--json"])
        .ok()
        .json();
    assert_eq!(one["offset"], 2 * MIB);
    assert_eq!(one["end"], 514 * MIB);
    assert_eq!(one["pages"], 512 * MIB / 4096);
    assert_eq!(one["mode"], "os");
    assert!(one["phys_start"].is_null(), "an image file has no address");
    let text = t.run(["reserved", p]).ok().stdout();
    assert!(text.contains("os (os): bytes 2097152-538968064"), "{text}");
}

#[test]
fn format_with_owners_writes_1_1_and_split_rewrites_it() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 2 * GIB);
    let p = s(&img);
    let info = t
        .run([
            "format",
            p,
            "--owner",
            "xen=auto",
            "--owner",
            "dom0=auto",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(info["format_version"], "1.1");
    let data_pages = info["data_size"].as_u64().expect("n") / 4096;
    let list = t.run(["reserve", "list", p, "--json"]).ok().json();
    assert_eq!(list["split"], true);
    let dom0 = &list["owners"][1];
    assert_eq!(dom0["kind"], "os");
    assert!(dom0["size"].as_u64().expect("n") >= 64 * data_pages);
    assert_eq!(
        list["owners"][0]["offset"].as_u64().expect("n")
            + list["owners"][0]["size"].as_u64().expect("n"),
        dom0["offset"].as_u64().expect("n"),
        "laid out one after the other"
    );
    t.run(["check", p]).ok();

    // Split again: three owners, the rest in the middle.
    let out = t
        .run([
            "reserve",
            "split",
            p,
            "--owner",
            "xen=4M",
            "--owner",
            "dom0:os=rest",
            "--owner",
            "fw:other=8K",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(out["generation"], 2);
    let reserve = out["reserve_size"].as_u64().expect("n");
    assert_eq!(out["owners"][1]["size"], reserve - 4 * MIB - 8192);
    assert_eq!(out["unassigned"], 0);
    let fw = t
        .run(["reserved", p, "--owner", "fw", "--json"])
        .ok()
        .json();
    assert_eq!(fw["end"].as_u64(), Some(2 * MIB + reserve));
    assert_eq!(fw["kind"], "other");
    let info = t.run(["info", p, "--json"]).ok().json();
    assert_eq!(
        (info["healthy"].as_bool(), info["generation"].as_u64()),
        (Some(true), Some(2))
    );
    // The 1.0 fields did not move.
    assert_eq!(info["reserve_size"].as_u64(), Some(reserve));
}

#[test]
fn bad_owners_are_refused_with_one_line_and_no_change() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let p = s(&img);
    t.run(["format", p, "--reserve", "32M"]).ok();
    refused(
        &t,
        &img,
        &split(p, &["xen=64M"]),
        1,
        &["the owners need 64 MiB but the reserve is 32 MiB"],
    );
    refused(
        &t,
        &img,
        &split(p, &["fw=4K"]),
        2,
        &["give the kind of owner 'fw'", "fw:hypervisor|os|other"],
    );
    refused(
        &t,
        &img,
        &split(p, &["xen:vm=4K"]),
        2,
        &["not hypervisor, os or other"],
    );
    refused(
        &t,
        &img,
        &split(p, &["a:os=rest", "b:os=rest"]),
        2,
        &["only one owner can take the rest"],
    );
    refused(&t, &img, &split(p, &["a:other=auto"]), 2, &["no auto size"]);
    refused(
        &t,
        &img,
        &split(p, &["xen=4M", "xen=4M"]),
        2,
        &["named twice"],
    );
    refused(
        &t,
        &img,
        &split(p, &["xen=32M", "dom0=rest"]),
        1,
        &["nothing is left for 'dom0'"],
    );
    refused(
        &t,
        &img,
        &split(p, &["bad/name:os=4K"]),
        2,
        &["names are letters, digits"],
    );
    let many: Vec<String> = (0..17).map(|i| format!("o{i}:other=4K")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    refused(&t, &img, &split(p, &many), 2, &["more than 16 owners"]);
    refused(&t, &img, &["reserve", "split", p], 2, &["--owner"]);
    refused(
        &t,
        &img,
        &["reserved", p, "--owner", "nope"],
        1,
        &["no owner 'nope'", "hypervisor"],
    );
}

/// The owner rules `format` applies, `reserve split` applies too: no empty
/// owner, and an os owner holds its page array.
#[test]
fn split_refuses_what_format_refuses() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let p = s(&img);
    t.run(["format", p, "--reserve", "32M"]).ok();
    refused(&t, &img, &split(p, &["xen=0"]), 2, &["has size 0"]);
    // An os owner below its page array's need (64 bytes per 4 KiB page of
    // the ~222 MiB data area: 3.5 MiB) is refused as --mode os would be.
    refused(
        &t,
        &img,
        &split(p, &["xen=30M", "dom0=rest"]),
        1,
        &[
            "owner 'dom0' (os) would get 2 MiB",
            "give it at least 4M, or auto",
        ],
    );
}

#[test]
fn volumes_that_cannot_be_split_or_claimed_are_refused_and_unchanged() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 256 * MIB);
    let p = s(&img);
    t.run(["format", p, "--reserve", "32M"]).ok();
    // A damaged copy: repair first.
    let backup = 256 * MIB - 4096;
    let byte = read_at(&img, backup + 0x50, 1)[0];
    write_at(&img, backup + 0x50, &[byte ^ 1]);
    refused(
        &t,
        &img,
        &["reserve", "split", p, "--owner", "xen=4M"],
        1,
        &["not both ok", "check --repair"],
    );
    refused(
        &t,
        &img,
        &["grow", p],
        1,
        &["not both ok", "check --repair"],
    );

    // Mode none has no reserve to split or claim.
    let none = t.image("none.img", 64 * MIB);
    t.run(["format", s(&none), "--reserve", "0"]).ok();
    refused(
        &t,
        &none,
        &["reserve", "split", s(&none), "--owner", "xen=4K"],
        1,
        &["no reserve to split"],
    );
    // Nothing to claim: said, exit 0, as `reserve list` says it.
    for cmd in [["reserved", s(&none)], ["reserve list", s(&none)]] {
        let mut args: Vec<&str> = cmd[0].split(' ').collect();
        args.push(cmd[1]);
        let out = t.run(args).ok();
        assert!(
            out.stdout().contains("no reserve (mode none)"),
            "{}",
            out.stdout()
        );
    }
    let json = t.run(["reserved", s(&none), "--json"]).ok();
    assert_eq!(json.stdout().trim(), "[]");
    refused(
        &t,
        &none,
        &["reserved", s(&none), "--owner", "xen"],
        1,
        &["no owner 'xen'", "mode none"],
    );

    // format --owner that cannot be laid out writes nothing.
    let blank = t.image("blank.img", 64 * MIB);
    refused(
        &t,
        &blank,
        &["format", s(&blank), "--reserve", "4M", "--owner", "xen=8M"],
        1,
        &["need 8 MiB"],
    );
    refused(
        &t,
        &blank,
        &["format", s(&blank), "--reserve", "0", "--owner", "xen=8M"],
        2,
        &["mode none"],
    );
}

#[test]
fn grow_moves_the_backup_and_extends_the_data_area() {
    let t = Scratch::new();
    let img = t.image("grow.img", 256 * MIB);
    let p = s(&img);
    let before = t
        .run([
            "format",
            p,
            "--reserve",
            "16M",
            "--owner",
            "xen=8M",
            "--owner",
            "dom0=rest",
            "--json",
        ])
        .ok()
        .json();
    refused(&t, &img, &["grow", p], 1, &["nothing to grow"]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(GIB))
        .expect("grow the image");
    let after = t.run(["grow", p, "--json"]).ok().json();
    assert_eq!(after["device_size"], GIB);
    assert_eq!(after["backup"]["offset"], GIB - 4096);
    assert_eq!(
        after["data_size"].as_u64(),
        before["data_size"].as_u64().map(|n| n + 768 * MIB)
    );
    assert_eq!(after["uuid"], before["uuid"]);
    assert_eq!(after["generation"], 2);
    assert_eq!(after["healthy"], true);
    assert_eq!(after["format_version"], "1.1", "the owners are kept");
    assert!(
        read_at(&img, 256 * MIB - 4096, 4096)
            .iter()
            .all(|&b| b == 0),
        "the old backup is zeroed"
    );
    t.run(["check", p]).ok();
    assert_eq!(
        t.run(["reserve", "list", p, "--json"]).ok().json()["owners"],
        before_owners(&t, &before)
    );
    refused(&t, &img, &["grow", p], 1, &["nothing to grow"]);

    // Shrunk below the volume: refused.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(512 * MIB))
        .expect("shrink the image");
    refused(&t, &img, &["grow", p], 1, &["shrunk"]);
}

/// The owners a volume had at format (the JSON of `reserve list`, rebuilt
/// from `format --json`'s reserve: xen 8M, dom0 the rest).
fn before_owners(_t: &Scratch, before: &serde_json::Value) -> serde_json::Value {
    let off = before["reserve_offset"].as_u64().expect("n");
    let size = before["reserve_size"].as_u64().expect("n");
    serde_json::json!([
        {"owner": "xen", "kind": "hypervisor", "offset": off, "size": 8 * MIB},
        {"owner": "dom0", "kind": "os", "offset": off + 8 * MIB, "size": size - 8 * MIB},
    ])
}

#[test]
fn grow_refuses_what_it_cannot_do_and_writes_nothing() {
    let t = Scratch::new();
    // Less than an alignment step more: the data area would not change.
    let img = t.image("step.img", 65 * MIB);
    t.run(["format", s(&img), "--reserve", "8M"]).ok();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(65 * MIB + 512 * 1024))
        .expect("grow");
    refused(
        &t,
        &img,
        &["grow", s(&img)],
        1,
        &["grows in steps of the volume's alignment"],
    );

    // Mode os: a grown data area would need a larger reserve.
    let img = t.image("os.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "auto", "--mode", "os"])
        .ok();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .and_then(|f| f.set_len(4 * GIB))
        .expect("grow");
    refused(
        &t,
        &img,
        &["grow", s(&img)],
        1,
        &["for mode os", "cannot grow in place", "format --force"],
    );
}
