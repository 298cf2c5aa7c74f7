//! Every remedy a message names is tried, as written.
//!
//! A table puts an image file into each error state that can be reached
//! without a kernel — one copy corrupt, both corrupt, a stale copy, a
//! missing copy, a shrunk backing, a grown one, a copy of another layout
//! (the device reconfigured), foreign data, an existing volume, a blank
//! backing — and runs the commands a user would (`info`, `check`,
//! `format`, `reserve split`, `grow`, `reserved`, `reserve list`). Wherever
//! a message names a command (`'pmem-stack …'`, `'truncate -s BYTES'`) or a
//! flag to pass (`pass --force`, `pass --reserve SIZE|auto`), the test runs
//! exactly that, with the placeholders filled in (BACKING: the image;
//! SIZE|auto: auto; BYTES: the size the message says is needed; the
//! layout a damaged copy still records), and asserts it succeeds and leaves
//! a healthy volume. A state whose messages name nothing still has to say
//! what is wrong (one line, exit 1 or 2). The states that need a kernel
//! (served, attached to a dead server) are covered by the guest suite.

mod common;

use std::path::Path;

use common::{Run, Scratch, read_at, write_at};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 256 * MIB;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Flip one byte of the block at `offset` (outside the layout fields, so a
/// damaged copy still records its layout).
fn damage(img: &Path, offset: u64) {
    let at = offset + 2000;
    let byte = read_at(img, at, 1)[0];
    write_at(img, at, &[byte ^ 0x5a]);
}

/// The states, each a function that makes it on a fresh image.
type Make = fn(&Scratch, &Path);

fn formatted(t: &Scratch, img: &Path) {
    t.run(["format", s(img), "--reserve", "32M", "-q"]).ok();
    // Something in the data area, to see that a remedy keeps it.
    write_at(img, 64 * MIB, b"data that must survive");
}

fn states() -> Vec<(&'static str, Make)> {
    vec![
        ("blank", |_, _| {}),
        ("existing volume", formatted),
        ("primary corrupt", |t, img| {
            formatted(t, img);
            damage(img, 4096);
        }),
        ("backup corrupt", |t, img| {
            formatted(t, img);
            damage(img, SIZE - 4096);
        }),
        ("both corrupt", |t, img| {
            formatted(t, img);
            damage(img, 4096);
            damage(img, SIZE - 4096);
        }),
        ("backup missing", |t, img| {
            formatted(t, img);
            write_at(img, SIZE - 4096, &[0u8; 4096]);
        }),
        ("backup stale", |t, img| {
            formatted(t, img);
            let old = read_at(img, SIZE - 4096, 4096);
            t.run(["reserve", "split", s(img), "--owner", "xen=rest"])
                .ok();
            write_at(img, SIZE - 4096, &old);
        }),
        ("shrunk", |t, img| {
            formatted(t, img);
            std::fs::File::options()
                .write(true)
                .open(img)
                .expect("open")
                .set_len(SIZE - 8 * MIB)
                .expect("shrink");
        }),
        ("grown", |t, img| {
            formatted(t, img);
            std::fs::File::options()
                .write(true)
                .open(img)
                .expect("open")
                .set_len(SIZE + 64 * MIB)
                .expect("grow");
        }),
        ("another layout (reconfigured)", |t, img| {
            // The namespace as it was, 2 MiB further in: its backup copy now
            // sits at the end of a device of another size.
            let before = t.image("before.img", SIZE);
            formatted(t, &before);
            let backup = read_at(&before, SIZE - 4096, 4096);
            std::fs::File::options()
                .write(true)
                .open(img)
                .expect("open")
                .set_len(SIZE + 2 * MIB)
                .expect("size");
            write_at(img, SIZE + 2 * MIB - 4096, &backup);
        }),
        ("foreign data", |_, img| {
            // An ext4 super block's magic (0xEF53 at byte 1080).
            write_at(img, 1080, &[0x53, 0xef]);
        }),
    ]
}

/// What users run on a backing in trouble.
fn commands(img: &str) -> Vec<Vec<String>> {
    let c = |args: &[&str]| args.iter().map(ToString::to_string).collect();
    vec![
        c(&["info", img]),
        c(&["check", img]),
        c(&["format", img, "--reserve", "32M"]),
        c(&["format", img]),
        c(&["reserve", "split", img, "--owner", "xen=4M"]),
        c(&["reserve", "list", img]),
        c(&["reserved", img]),
        c(&["grow", img]),
    ]
}

/// A remedy a message names, as the arguments to run.
#[derive(Debug, Clone, PartialEq)]
enum Remedy {
    PmemStack(Vec<String>),
    Truncate(u64),
}

/// The number after `needle` in `text` (`needs at least 4 MiB` style sizes
/// are read as the exact byte count the message also gives).
fn bytes_after(text: &str, needle: &str) -> Option<u64> {
    let rest = &text[text.find(needle)? + needle.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let n: u64 = digits.parse().ok()?;
    let unit = rest.trim_start()[digits.len()..].trim_start();
    Some(if unit.starts_with("MiB") {
        n * MIB
    } else if unit.starts_with("GiB") {
        n << 30
    } else if unit.starts_with("KiB") {
        n << 10
    } else {
        n
    })
}

/// The options a damaged copy still records, from the message that says so.
fn recorded_layout(text: &str) -> Option<Vec<String>> {
    let at = text.find("still records (unverified) ")?;
    let rest = &text[at..];
    let reserve = bytes_after(rest, "reserve ")?;
    let mode = rest[rest.find("(mode ")? + 6..]
        .split(')')
        .next()?
        .to_string();
    let align = rest[rest.find("align ")? + 6..]
        .split(',')
        .next()?
        .to_string();
    let before_blocks = &rest[..rest.find("-byte blocks")?];
    let block = before_blocks.rsplit(' ').next()?.to_string();
    Some(vec![
        "--reserve".into(),
        reserve.to_string(),
        "--mode".into(),
        mode,
        "--align".into(),
        align,
        "--block-size".into(),
        block,
    ])
}

/// Every remedy `text` (the output of `args`) names.
fn remedies(text: &str, args: &[String], img: &str) -> Vec<Remedy> {
    let mut out = Vec::new();
    for quoted in text.split('\'').skip(1).step_by(2) {
        if let Some(cmd) = quoted.strip_prefix("pmem-stack ") {
            let mut argv: Vec<String> = cmd
                .split_whitespace()
                .map(|w| match w {
                    "BACKING" => img.to_string(),
                    "SIZE|auto" => "auto".to_string(),
                    other => other.to_string(),
                })
                .collect();
            if !argv.iter().any(|a| a == img) {
                argv.push(img.to_string());
            }
            if text.contains("give it the reserve, mode, align and block size")
                || text.contains("given the reserve, mode, align and block size")
            {
                match recorded_layout(text) {
                    Some(layout) => argv.extend(layout),
                    None => argv.extend(["--reserve".into(), "auto".into()]),
                }
            }
            out.push(Remedy::PmemStack(argv));
        } else if quoted.starts_with("truncate -s BYTES") {
            let need = bytes_after(text, "needs at least ").expect("the size needed is said");
            out.push(Remedy::Truncate(need));
        }
    }
    for flag in ["pass --force", "pass --reserve SIZE|auto"] {
        if text.contains(flag) {
            let mut argv = args.to_vec();
            argv.extend(flag["pass ".len()..].split(' ').map(|w| match w {
                "SIZE|auto" => "auto".to_string(),
                other => other.to_string(),
            }));
            out.push(Remedy::PmemStack(argv));
        }
    }
    out
}

fn apply(t: &Scratch, img: &Path, remedy: &Remedy) -> Run {
    match remedy {
        Remedy::PmemStack(argv) => t.run(argv),
        Remedy::Truncate(need) => {
            std::fs::File::options()
                .write(true)
                .open(img)
                .expect("open")
                .set_len(*need)
                .expect("truncate");
            t.run(["check", s(img)])
        }
    }
}

/// Apply `remedy`; when it fails with a message naming a further remedy
/// (a usage error saying which option is missing), follow that, `depth`
/// steps at most. Ends with a healthy volume or says why not.
fn resolves(t: &Scratch, img: &Path, remedy: &Remedy, depth: u32) -> Result<(), String> {
    let run = apply(t, img, remedy);
    let text = format!("{}{}", run.stdout(), run.stderr());
    if run.code() != 0 {
        let argv = match remedy {
            Remedy::PmemStack(argv) => argv.clone(),
            Remedy::Truncate(_) => vec!["check".into(), s(img).into()],
        };
        let next = remedies(&text, &argv, s(img));
        if depth == 0 || next.is_empty() {
            return Err(format!("exit {}: {text}", run.code()));
        }
        return next
            .iter()
            .find_map(|n| resolves(t, img, n, depth - 1).err())
            .map_or(Ok(()), |why| Err(format!("{text} -> {why}")));
    }
    let check = t.run(["check", s(img)]);
    if check.code() != 0 {
        return Err(format!(
            "the volume is not healthy after it:\n{}",
            check.stdout()
        ));
    }
    Ok(())
}

#[test]
fn every_remedy_a_message_names_works_as_written() {
    let mut tried = 0;
    for (state, make) in states() {
        for args in commands("IMG") {
            let t = Scratch::new();
            let img = t.image("pmem.img", SIZE);
            make(&t, &img);
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    if a == "IMG" {
                        s(&img).to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            let run = t.run(&args);
            let text = format!("{}{}", run.stdout(), run.stderr());
            if run.code() != 0 {
                let errors: Vec<&str> = run
                    .stderr()
                    .lines()
                    .filter(|l| l.starts_with("error: "))
                    .map(|_| "")
                    .collect();
                assert!(
                    matches!(run.code(), 1 | 2),
                    "{state}: {args:?} exit {}: {text}",
                    run.code()
                );
                // check reports problems on stdout; everything else is one error line.
                if args[0] != "check" {
                    assert_eq!(errors.len(), 1, "{state}: {args:?}: {text}");
                }
            }
            for remedy in remedies(&text, &args, s(&img)) {
                if let Err(why) = resolves(&t, &img, &remedy, 3) {
                    panic!(
                        "{state}: {args:?} said:\n{text}\nits remedy {remedy:?} did not work: {why}"
                    );
                }
                tried += 1;
                // The next remedy starts from the same state again.
                let _ = std::fs::remove_file(&img);
                let again = t.image("pmem.img", SIZE);
                make(&t, &again);
            }
        }
    }
    assert!(tried >= 10, "only {tried} remedies were named and tried");
}

#[test]
fn a_damaged_volume_comes_back_whole_from_the_layout_it_still_records() {
    let t = Scratch::new();
    let img = t.image("pmem.img", SIZE);
    formatted(&t, &img);
    let before = t.run(["info", s(&img), "--json"]).ok().json();
    damage(&img, 4096);
    damage(&img, SIZE - 4096);
    let err = t.run(["info", s(&img)]);
    let text = err.stderr();
    let layout = recorded_layout(&text).expect("the recorded layout is shown");
    let mut argv: Vec<String> = vec!["format".into(), "--force".into(), s(&img).into()];
    argv.extend(layout);
    t.run(&argv).ok();
    let after = t.run(["info", s(&img), "--json"]).ok().json();
    for key in [
        "data_offset",
        "data_size",
        "reserve_offset",
        "reserve_size",
        "mode",
    ] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(
        read_at(&img, 64 * MIB, 22),
        b"data that must survive",
        "format --force touched the data area"
    );
}
