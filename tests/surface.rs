//! What a user sees when a command line is wrong, or the ublk driver is not
//! there: the bad argument is named first (with clap's "did you mean" when
//! there is one), on one line; nothing to remove is not a failure; and
//! `list` says why it lists nothing. Run as the real binary.

mod common;

use common::Scratch;

const MIB: u64 = 1 << 20;

fn s(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn driver_loaded() -> bool {
    std::path::Path::new("/dev/ublk-control").exists()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn a_mistyped_command_or_flag_suggests_the_right_one_on_one_line() {
    let t = Scratch::new();
    let img = t.image("pmem.img", 64 * MIB);
    let before = common::digest(&img);
    for (args, suggestion) in [
        (vec!["fromat", "x"], "a similar subcommand exists: 'format'"),
        (vec!["ifno", s(&img)], "a similar subcommand exists: 'info'"),
        (
            vec!["format", s(&img), "--reserv", "8M"],
            "a similar argument exists: '--reserve'",
        ),
        (
            vec!["list", "--jsno"],
            "a similar argument exists: '--json'",
        ),
        (vec!["del", "--al"], "a similar argument exists: '--all'"),
    ] {
        let run = t
            .run(&args)
            .fails(2, &[suggestion, "(see 'pmem-stack --help')"]);
        println!("{args:?}: {}", run.stderr().trim_end());
        assert!(run.stdout().is_empty());
    }
    // Without a near name, no tip, still one line.
    let run = t
        .run(["zzzzzz"])
        .fails(2, &["unrecognized subcommand 'zzzzzz'"]);
    assert!(!run.stderr().contains("similar"), "{}", run.stderr());
    assert_eq!(common::digest(&img), before, "nothing written");
}

#[test]
fn del_names_a_bad_device_before_anything_else() {
    let t = Scratch::new();
    if !is_root() {
        t.run(["del", "foo"]).fails(1, &["needs root"]);
        return;
    }
    // A usage error (exit 2), whether or not the driver is loaded.
    t.run(["del", "foo"])
        .fails(2, &["'foo' is not a device", "give N or /dev/ublkbN"]);
    t.run(["del", "/dev/pmem0"])
        .fails(2, &["'/dev/pmem0' is not a device"]);
    if !driver_loaded() {
        // A well-formed name: then the driver is what is missing.
        t.run(["del", "3"])
            .fails(1, &["ublk driver is not available", "modprobe ublk_drv"]);
    }
}

#[test]
fn del_all_with_nothing_served_is_nothing_to_remove() {
    // The scratch registry holds no devices, so even on a machine that
    // serves some, nothing of this test's is there to remove.
    let t = Scratch::new();
    if !is_root() {
        t.run(["del", "--all"]).fails(1, &["needs root"]);
        return;
    }
    let run = t.run(["del", "--all"]).ok();
    assert_eq!(
        run.stdout(),
        "nothing to remove: pmem-stack serves no devices\n"
    );
    assert!(run.stderr().is_empty(), "{}", run.stderr());
    let json = t.run(["del", "--all", "--json"]).ok().json();
    assert_eq!(json, serde_json::json!([]));
}

#[test]
fn add_names_a_missing_backing_before_the_driver() {
    let t = Scratch::new();
    if !is_root() {
        t.run(["add", "missing.img"]).fails(1, &["needs root"]);
        return;
    }
    let missing = t.path("missing.img");
    t.run(["add", s(&missing), "--reserve", "8M"])
        .fails(1, &["cannot add", "missing.img: no such file or device"]);
    t.run(["add", s(t.dir.path())])
        .fails(1, &["cannot add", "is a directory"]);
    if !driver_loaded() {
        // An existing backing: then the driver is what is missing.
        let img = t.image("pmem.img", 64 * MIB);
        t.run(["add", s(&img), "--reserve", "8M"])
            .fails(1, &["ublk driver is not available"]);
    }
}

#[test]
fn list_says_when_the_driver_is_not_loaded() {
    let t = Scratch::new();
    let json = t.run(["list", "--json"]).ok().json();
    let text = t.run(["list"]).ok().stdout();
    if driver_loaded() {
        assert!(json.is_array(), "{json}");
        assert!(!text.contains("not loaded"), "{text}");
        return;
    }
    // No driver: no ublk devices; the JSON keeps its shape (an array, of
    // any device-mapper maps the machine has).
    let json = json.as_array().expect("array").clone();
    assert!(json.iter().all(|d| d["kind"] == "dm"), "{json:?}");
    if json.is_empty() {
        assert_eq!(
            text,
            "no pmem-stack devices (the ublk driver is not loaded: modprobe ublk_drv)\n"
        );
    }
}
