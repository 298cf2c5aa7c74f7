//! Exit codes as README and the man page state them: 2 for every usage
//! error (the command line cannot be meant: unknown, missing, malformed or
//! contradictory arguments), 1 for a failure (what was asked cannot be done
//! with this backing). Both leave the backing byte-for-byte unchanged and
//! say one line on stderr.

mod common;

use common::{Scratch, digest};

const MIB: u64 = 1 << 20;

/// Arguments that are wrong whatever the backing: exit 2. `IMG` is a blank
/// 64 MiB image, `VOL` a formatted one.
const USAGE: &[&[&str]] = &[
    &["format", "IMG"],
    &["format", "IMG", "--mode", "hypervisor"],
    &["format", "IMG", "--owner", "xen=4M", "--owner", "xen=8M"],
    &[
        "format",
        "IMG",
        "--owner",
        "a:os=rest",
        "--owner",
        "b:os=rest",
    ],
    &["format", "IMG", "--reserve", "0", "--owner", "xen=4M"],
    &["format", "IMG", "--mode", "none", "--owner", "xen=4M"],
    &["format", "IMG", "--mode", "none", "--reserve", "512M"],
    &["format", "IMG", "--reserve", "0", "--mode", "os"],
    &["format", "IMG", "--owner", "xen=0"],
    &["format", "IMG", "--owner", "xen=0", "--owner", "dom0=auto"],
    &["format", "IMG", "--owner", "fw:other=auto"],
    &["format", "IMG", "--owner", "fw=4K"],
    &["format", "IMG", "--owner", "xen:vm=4K"],
    &["format", "IMG", "--reserve", "1.5G"],
    &["format", "IMG", "--reserve", "512X"],
    &["format", "IMG", "--reserve", "-1"],
    &["format", "IMG", "--align", "3M"],
    &["format", "IMG", "--block-size", "1024"],
    &["format", "IMG", "--reserve", "8M", "--bogus"],
    &["format", "IMG", "--reserve", "8M", "--json", "--quiet"],
    &["fromat", "IMG"],
    &["format"],
    &["info"],
    &["reserve", "split", "VOL"],
    &[
        "reserve", "split", "VOL", "--owner", "xen=4M", "--owner", "xen=4M",
    ],
    &[
        "reserve",
        "split",
        "VOL",
        "--owner",
        "xen=rest",
        "--owner",
        "dom0=rest",
    ],
    &["reserve", "split", "VOL", "--owner", "xen=0"],
    &["reserve", "bogus", "VOL"],
    &["recover", "foo"],
    &["restart", "foo"],
    &["del", "foo"],
    &["del"],
    &["man", "bogus"],
    &["completions", "tcsh"],
];

/// Arguments that make sense but cannot be carried out here: exit 1.
const FAILURE: &[&[&str]] = &[
    &["format", "IMG", "--reserve", "1G"],
    &["format", "VOL", "--reserve", "8M"],
    &[
        "format",
        "IMG",
        "--reserve",
        "4K",
        "--align",
        "4K",
        "--mode",
        "os",
    ],
    &["format", "IMG", "--owner", "xen=512M"],
    &["info", "IMG"],
    &["check", "IMG"],
    &["grow", "VOL"],
    &["reserve", "split", "VOL", "--owner", "xen=64M"],
    &["reserved", "VOL", "--owner", "nope"],
    &["info", "/nonexistent/pmem.img"],
];

fn run_table(table: &[&[&str]], code: i32) {
    let many = || {
        std::iter::repeat_n(["--owner", "x:other=4K"], 17)
            .enumerate()
            .flat_map(|(i, [flag, _])| [flag.to_string(), format!("o{i}:other=4K")])
            .collect::<Vec<String>>()
    };
    let mut cases: Vec<Vec<String>> = table
        .iter()
        .map(|args| args.iter().map(ToString::to_string).collect())
        .collect();
    if code == 2 {
        let mut format = vec!["format".to_string(), "IMG".to_string()];
        format.extend(many());
        cases.push(format);
        let mut split = vec!["reserve".into(), "split".into(), "VOL".into()];
        split.extend(many());
        cases.push(split);
    }
    for args in cases {
        let t = Scratch::new();
        let img = t.image("blank.img", 64 * MIB);
        let vol = t.image("vol.img", 64 * MIB);
        t.run([
            "format",
            vol.to_str().expect("utf-8"),
            "--reserve",
            "32M",
            "-q",
        ])
        .ok();
        let before = (digest(&img), digest(&vol));
        let argv: Vec<String> = args
            .iter()
            .map(|a| match a.as_str() {
                "IMG" => img.display().to_string(),
                "VOL" => vol.display().to_string(),
                other => other.to_string(),
            })
            .collect();
        let run = t.run(&argv);
        assert_eq!(
            run.code(),
            code,
            "pmem-stack {}: expected exit {code}\nstdout: {}\nstderr: {}",
            args.join(" "),
            run.stdout(),
            run.stderr()
        );
        let err = run.stderr();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("warning:") && !l.starts_with("note:"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line expected: {err:?}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {err:?}");
        assert_eq!(
            (digest(&img), digest(&vol)),
            before,
            "{args:?} changed a backing"
        );
    }
}

#[test]
fn usage_errors_exit_2_and_touch_nothing() {
    run_table(USAGE, 2);
}

#[test]
fn failures_exit_1_and_touch_nothing() {
    run_table(FAILURE, 1);
}

/// A server setting from the environment that the server does not know is a
/// usage error of every command that starts a server, found before anything
/// is opened (here before the root check: a non-root run says the same).
#[test]
fn an_unknown_server_setting_exits_2_before_anything_is_touched() {
    let t = Scratch::new();
    let img = t.image("blank.img", 64 * MIB);
    let img = img.to_str().expect("utf-8");
    let before = digest(std::path::Path::new(img));
    for args in [vec!["add", img], vec!["serve", img], vec!["recover", "0"]] {
        t.run_with(&[("PMEM_STACK_RING", "sqpoll")], &args)
            .fails(2, &["PMEM_STACK_RING=sqpoll", "coop or defer"]);
        t.run_with(&[("PMEM_STACK_IO_THREADS", "0")], &args)
            .fails(2, &["PMEM_STACK_IO_THREADS=0", "1 to 16"]);
        t.run_with(&[("PMEM_STACK_READS", "cache")], &args)
            .fails(2, &["PMEM_STACK_READS=cache", "mapping or direct"]);
    }
    assert_eq!(
        digest(std::path::Path::new(img)),
        before,
        "the image changed"
    );
}
