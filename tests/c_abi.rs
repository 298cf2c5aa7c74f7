//! The C ABI, from C: build `libpmem_stack_format.a` (the freestanding, no-std
//! variant), check the hand-written header against the Rust definitions,
//! compile `tests/c/read_image.c` against both, and have it read images this
//! tool wrote — every mode, alignment and block size, and damaged, missing and
//! stale copies — agreeing field for field with `info --json`.
//!
//! The header check: this test writes a C file of `_Static_assert`s on the
//! size of each struct and the offset and size of each field, with the values
//! `core::mem` reports for the `#[repr(C)]` Rust structs, plus every constant;
//! the C compiler then checks them against `include/pmem_stack_format.h`.
//!
//! A missing C compiler (`cc`, or `$CC`) or `nm` fails the test; it never
//! skips.

mod common;

use std::collections::HashMap;
use std::mem::{offset_of, size_of, size_of_val};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{Scratch, read_at, write_at};
use pmem_stack_format::capi::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Run a command to success, or fail the test saying what it printed.
fn run(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn cc() -> Command {
    let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(Path::new(ROOT).join("include"));
    cmd
}

/// `libpmem_stack_format.a`, freestanding (no std), built once per run in a
/// target directory of its own.
fn static_library() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-abi");
    run(Command::new(env!("CARGO"))
        .args(["build", "--release", "--locked", "--quiet"])
        .args(["-p", "pmem-stack-format-capi", "--features", "freestanding"])
        .arg("--manifest-path")
        .arg(Path::new(ROOT).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target));
    let lib = target.join("release/libpmem_stack_format.a");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

/// `_Static_assert`s for one struct: its size, each field's offset and size.
macro_rules! layout_asserts {
    ($out:ident, $ty:ident { $($field:ident),* $(,)? }) => {{
        let value = $ty::default();
        let mut covered = 0;
        $out.push(format!(
            "_Static_assert(sizeof(struct {}) == {}, \"size of {0}\");",
            stringify!($ty),
            size_of::<$ty>()
        ));
        $(
            covered += size_of_val(&value.$field);
            $out.push(format!(
                "_Static_assert(offsetof(struct {ty}, {f}) == {}, \"offset of {ty}.{f}\");\n\
                 _Static_assert(sizeof(((struct {ty} *)0)->{f}) == {}, \"size of {ty}.{f}\");",
                offset_of!($ty, $field),
                size_of_val(&value.$field),
                ty = stringify!($ty),
                f = stringify!($field),
            ));
        )*
        assert_eq!(covered, size_of::<$ty>(), "{}: no padding, every field listed", stringify!($ty));
    }};
}

/// The constants the header must define, with the Rust values.
fn constants() -> Vec<(&'static str, i64)> {
    let mut list: Vec<(&'static str, i64)> = vec![
        ("PSF_VERSION_MAJOR", PSF_VERSION_MAJOR.into()),
        ("PSF_VERSION_MINOR", PSF_VERSION_MINOR.into()),
        ("PSF_BLOCK_SIZE", PSF_BLOCK_SIZE.into()),
        (
            "PSF_PRIMARY_OFFSET",
            PSF_PRIMARY_OFFSET.try_into().expect("small"),
        ),
        ("PSF_MODE_NONE", PSF_MODE_NONE.into()),
        ("PSF_MODE_HYPERVISOR", PSF_MODE_HYPERVISOR.into()),
        ("PSF_MODE_OS", PSF_MODE_OS.into()),
        ("PSF_MODE_DEFAULT", PSF_MODE_DEFAULT.into()),
        ("PSF_OWNER_HYPERVISOR", PSF_OWNER_HYPERVISOR.into()),
        ("PSF_OWNER_OS", PSF_OWNER_OS.into()),
        ("PSF_OWNER_OTHER", PSF_OWNER_OTHER.into()),
        ("PSF_MAX_OWNERS", PSF_MAX_OWNERS.into()),
        (
            "PSF_COMPAT_RESERVE_OWNERS",
            PSF_COMPAT_RESERVE_OWNERS.try_into().expect("small"),
        ),
    ];
    let codes: [(&'static str, i32); 30] = [
        ("PSF_OK", PSF_OK),
        ("PSF_ERR_INVALID_ARGUMENT", PSF_ERR_INVALID_ARGUMENT),
        ("PSF_ERR_LENGTH", PSF_ERR_LENGTH),
        ("PSF_ERR_NO_MAGIC", PSF_ERR_NO_MAGIC),
        ("PSF_ERR_UNSUPPORTED_VERSION", PSF_ERR_UNSUPPORTED_VERSION),
        ("PSF_ERR_UNKNOWN_VERSION", PSF_ERR_UNKNOWN_VERSION),
        ("PSF_ERR_CHECKSUM", PSF_ERR_CHECKSUM),
        ("PSF_ERR_WRONG_LOCATION", PSF_ERR_WRONG_LOCATION),
        ("PSF_ERR_PRIMARY_OFFSET", PSF_ERR_PRIMARY_OFFSET),
        ("PSF_ERR_BACKUP_OFFSET", PSF_ERR_BACKUP_OFFSET),
        ("PSF_ERR_ALIGNMENT", PSF_ERR_ALIGNMENT),
        ("PSF_ERR_LOGICAL_BLOCK_SIZE", PSF_ERR_LOGICAL_BLOCK_SIZE),
        ("PSF_ERR_RESERVE_MODE", PSF_ERR_RESERVE_MODE),
        ("PSF_ERR_NIL_UUID", PSF_ERR_NIL_UUID),
        ("PSF_ERR_ZERO_GENERATION", PSF_ERR_ZERO_GENERATION),
        (
            "PSF_ERR_UNKNOWN_INCOMPAT_FEATURES",
            PSF_ERR_UNKNOWN_INCOMPAT_FEATURES,
        ),
        ("PSF_ERR_RESERVED_NOT_ZERO", PSF_ERR_RESERVED_NOT_ZERO),
        ("PSF_ERR_DEVICE_TOO_SMALL", PSF_ERR_DEVICE_TOO_SMALL),
        ("PSF_ERR_RESERVE_OFFSET", PSF_ERR_RESERVE_OFFSET),
        ("PSF_ERR_RESERVE_MISALIGNED", PSF_ERR_RESERVE_MISALIGNED),
        ("PSF_ERR_MODE_MISMATCH", PSF_ERR_MODE_MISMATCH),
        ("PSF_ERR_DATA_OFFSET", PSF_ERR_DATA_OFFSET),
        ("PSF_ERR_DATA_SIZE", PSF_ERR_DATA_SIZE),
        ("PSF_ERR_NO_ROOM_FOR_DATA", PSF_ERR_NO_ROOM_FOR_DATA),
        ("PSF_ERR_OS_RESERVE_TOO_SMALL", PSF_ERR_OS_RESERVE_TOO_SMALL),
        ("PSF_ERR_RESERVE_TOO_LARGE", PSF_ERR_RESERVE_TOO_LARGE),
        ("PSF_ERR_MODE_NEEDS_RESERVE", PSF_ERR_MODE_NEEDS_RESERVE),
        (
            "PSF_ERR_NONE_TAKES_NO_RESERVE",
            PSF_ERR_NONE_TAKES_NO_RESERVE,
        ),
        ("PSF_ERR_OWNERS", PSF_ERR_OWNERS),
        ("PSF_ERR_OWNERS_CAPACITY", PSF_ERR_OWNERS_CAPACITY),
    ];
    list.extend(codes.map(|(name, code)| (name, i64::from(code))));
    list
}

/// The C file that checks the header against the Rust definitions.
fn header_check_source() -> String {
    let mut out = vec![
        "#include <stddef.h>".to_string(),
        "#include \"pmem_stack_format.h\"".to_string(),
    ];
    layout_asserts!(
        out,
        psf_superblock {
            magic,
            version_major,
            version_minor,
            checksum_stored,
            checksum_computed,
            checksum_ok,
            valid,
            reserved0,
            compat_features,
            incompat_features,
            uuid,
            parent_uuid,
            generation,
            self_offset,
            primary_offset,
            backup_offset,
            device_size,
            align,
            logical_block_size,
            reserve_mode,
            reserve_offset,
            reserve_size,
            data_offset,
            data_size,
        }
    );
    layout_asserts!(
        out,
        psf_owner {
            offset,
            size,
            kind,
            reserved0,
            name,
        }
    );
    layout_asserts!(
        out,
        psf_layout_request {
            reserve_bytes,
            reserve_auto,
            mode,
            align,
            logical_block_size,
            reserved0,
        }
    );
    layout_asserts!(
        out,
        psf_layout {
            device_size,
            align,
            logical_block_size,
            reserve_mode,
            reserve_offset,
            reserve_size,
            data_offset,
            data_size,
            backup_offset,
            below_xen_rule,
        }
    );
    for (name, value) in constants() {
        out.push(format!(
            "_Static_assert({name} == {value}LL, \"{name} is {value}\");"
        ));
    }
    out.join("\n") + "\n"
}

/// The C reader, compiled once against the freestanding library (after the
/// header check passed and the archive was shown to hold no std).
fn reader() -> &'static Path {
    static READER: OnceLock<PathBuf> = OnceLock::new();
    READER.get_or_init(|| {
        let lib = static_library();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-abi-bin");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let check = dir.join("header_check.c");
        std::fs::write(&check, header_check_source()).expect("write header check");
        run(cc()
            .arg("-c")
            .arg(&check)
            .arg("-o")
            .arg(dir.join("header_check.o")));
        let symbols = run(Command::new("nm").arg(&lib));
        for needed in [
            "psf_decode",
            "psf_validate",
            "psf_plan",
            "psf_strerror",
            "psf_owners",
        ] {
            assert!(
                symbols.contains(&format!(" T {needed}\n")),
                "{needed} not exported"
            );
        }
        let std_symbols: Vec<&str> = symbols.lines().filter(|l| l.contains("3std")).collect();
        assert!(
            std_symbols.is_empty(),
            "std in the freestanding archive: {std_symbols:?}"
        );
        let exe = dir.join("read_image");
        run(cc()
            .arg(Path::new(ROOT).join("tests/c/read_image.c"))
            .arg(&lib)
            .arg("-o")
            .arg(&exe));
        exe
    })
}

/// What the C reader prints, as `key → value`.
fn read_with_c(img: &Path, plan: &[&str]) -> (i32, HashMap<String, String>) {
    let output = Command::new(reader())
        .arg(img)
        .args(plan)
        .output()
        .expect("run read_image");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let fields = text
        .lines()
        .map(|line| {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {line}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    (output.status.code().expect("exit code"), fields)
}

/// A JSON value as the C reader prints it.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The keys of `info --json` the C reader reports.
const KEYS: [&str; 17] = [
    "format_version",
    "uuid",
    "parent_uuid",
    "generation",
    "device_size",
    "align",
    "mode",
    "reserve_offset",
    "reserve_size",
    "data_offset",
    "data_size",
    "logical_block_size",
    "primary.offset",
    "primary.state",
    "backup.offset",
    "backup.state",
    "healthy",
];

/// C and `info --json` agree on every key; returns the C fields.
fn agree(t: &Scratch, img: &Path, plan: &[&str]) -> HashMap<String, String> {
    let info = t.run(["info", s(img), "--json"]).ok().json();
    let (code, c) = read_with_c(img, plan);
    assert_eq!(code, 0, "read_image failed on {}: {c:?}", img.display());
    for key in KEYS {
        let json = key.split('.').fold(&info, |v, k| &v[k]);
        let ours = c
            .get(key)
            .unwrap_or_else(|| panic!("C printed no {key}: {c:?}"));
        assert_eq!(ours, &plain(json), "{key} of {}", img.display());
    }
    c
}

/// Layouts in every mode, alignment and block size: (size, format options,
/// the same request for psf_plan: reserve, mode, align, block size).
fn layouts() -> Vec<(u64, Vec<&'static str>, [&'static str; 4])> {
    vec![
        (
            2 * GIB,
            vec!["--reserve", "512M"],
            ["536870912", "default", "0", "0"],
        ),
        (
            256 * MIB,
            vec!["--reserve", "0"],
            ["0", "default", "0", "0"],
        ),
        (
            2 * GIB,
            vec![
                "--reserve",
                "auto",
                "--mode",
                "os",
                "--align",
                "4K",
                "--block-size",
                "4096",
            ],
            ["auto", "os", "4096", "4096"],
        ),
        (
            4 * GIB + 12345,
            vec!["--reserve", "1M", "--mode", "hypervisor", "--align", "1G"],
            ["1048576", "hypervisor", "1073741824", "0"],
        ),
        (
            GIB,
            vec!["--reserve", "auto", "--align", "2M", "--block-size", "4096"],
            ["auto", "default", "2097152", "4096"],
        ),
        (
            64 * MIB,
            vec!["--reserve", "8M", "--mode", "os", "--block-size", "512"],
            ["8388608", "os", "0", "512"],
        ),
    ]
}

#[test]
fn c_reads_every_layout_as_info_does_and_plans_it_alike() {
    let t = Scratch::new();
    for (i, (size, options, plan)) in layouts().into_iter().enumerate() {
        let img = t.image(&format!("layout{i}.img"), size);
        let mut args = vec!["format", s(&img)];
        args.extend(&options);
        t.run(&args).ok();
        let c = agree(&t, &img, &plan);
        assert_eq!(c["healthy"], "true");
        for key in [
            "mode",
            "align",
            "logical_block_size",
            "reserve_offset",
            "reserve_size",
            "data_offset",
            "data_size",
        ] {
            assert_eq!(
                c[&format!("plan.{key}")],
                c[key],
                "plan.{key} for {options:?}"
            );
        }
        assert_eq!(c["plan.backup_offset"], c["backup.offset"]);
    }
}

#[test]
fn c_agrees_on_damaged_missing_and_stale_copies() {
    let t = Scratch::new();
    let size = 512 * MIB;
    let backup = size - 4096;
    let fresh = |name: &str| {
        let img = t.image(name, size);
        t.run(["format", s(&img), "--reserve", "64M", "--mode", "os"])
            .ok();
        img
    };
    let img = fresh("primary.img");
    let byte = read_at(&img, 4096 + 0x90, 1)[0];
    write_at(&img, 4096 + 0x90, &[byte ^ 0x5A]);
    let c = agree(&t, &img, &[]);
    assert_eq!(
        (c["primary.state"].as_str(), c["backup.state"].as_str()),
        ("corrupt", "ok")
    );
    assert_eq!(c["primary.error"], "checksum mismatch");

    let img = fresh("backup.img");
    write_at(&img, backup + 0x28, &[0xFF; 4]);
    let c = agree(&t, &img, &[]);
    assert_eq!(c["backup.state"], "corrupt");

    let img = fresh("missing.img");
    write_at(&img, backup, &[0; 4096]);
    let c = agree(&t, &img, &[]);
    assert_eq!(c["backup.state"], "missing");

    let img = fresh("stale.img");
    let old_backup = read_at(&img, backup, 4096);
    t.run([
        "format",
        s(&img),
        "--reserve",
        "32M",
        "--mode",
        "os",
        "--force",
    ])
    .ok();
    write_at(&img, backup, &old_backup);
    let c = agree(&t, &img, &[]);
    assert_eq!(
        (c["generation"].as_str(), c["backup.state"].as_str()),
        ("2", "stale")
    );
}

#[test]
fn c_finds_no_volume_on_a_blank_image() {
    let t = Scratch::new();
    let img = t.image("blank.img", 64 * MIB);
    let (code, c) = read_with_c(&img, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        (c["primary.state"].as_str(), c["backup.state"].as_str()),
        ("missing", "missing")
    );
    assert!(!c.contains_key("uuid"));
}

/// The owners the C reader prints, against `reserve list --json`.
fn owners_agree(t: &Scratch, img: &Path) -> HashMap<String, String> {
    let list = t.run(["reserve", "list", s(img), "--json"]).ok().json();
    let c = agree(t, img, &[]);
    let split = list["split"].as_bool().expect("split");
    let owners = list["owners"].as_array().expect("owners");
    let n = if split { owners.len() } else { 0 };
    assert_eq!(c["owners"], n.to_string(), "{}", img.display());
    for (i, owner) in owners.iter().enumerate().take(n) {
        // The C reader's field `name` is the JSON's `owner`.
        for (key, c_key) in [
            ("owner", "name"),
            ("kind", "kind"),
            ("offset", "offset"),
            ("size", "size"),
        ] {
            assert_eq!(
                c[&format!("owner.{i}.{c_key}")],
                plain(&owner[key]),
                "owner {i} {key} of {}",
                img.display()
            );
        }
    }
    c
}

#[test]
fn c_reads_the_owners_as_reserve_list_does() {
    let t = Scratch::new();
    let img = t.image("unsplit.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "32M"]).ok();
    let c = owners_agree(&t, &img);
    assert_eq!(c["format_version"], "1.0");

    let img = t.image("split.img", 256 * MIB);
    t.run([
        "format",
        s(&img),
        "--reserve",
        "32M",
        "--owner",
        "xen=8M",
        "--owner",
        "fw:other=4K",
        "--owner",
        "dom0=rest",
    ])
    .ok();
    let c = owners_agree(&t, &img);
    assert_eq!(
        (c["format_version"].as_str(), c["owners"].as_str()),
        ("1.1", "3")
    );
    assert_eq!(c["owner.2.name"], "dom0");

    // Split afterwards, on another alignment, with auto sizes.
    let img = t.image("resplit.img", 4 * GIB);
    t.run(["format", s(&img), "--reserve", "auto", "--align", "1G"])
        .ok();
    t.run([
        "reserve",
        "split",
        s(&img),
        "--owner",
        "xen=auto",
        "--owner",
        "linux=auto",
        "--owner",
        "spare:other=rest",
    ])
    .ok();
    let c = owners_agree(&t, &img);
    assert_eq!(c["healthy"], "true");

    // A stale backup: the split landed in the backup only (a cut before the
    // primary's write); C calls the primary stale, as info does.
    let img = t.image("stale.img", 256 * MIB);
    t.run(["format", s(&img), "--reserve", "32M"]).ok();
    let primary = read_at(&img, 4096, 4096);
    t.run(["reserve", "split", s(&img), "--owner", "xen=rest"])
        .ok();
    write_at(&img, 4096, &primary);
    let c = owners_agree(&t, &img);
    assert_eq!(
        (
            c["primary.state"].as_str(),
            c["backup.state"].as_str(),
            c["owners"].as_str()
        ),
        ("stale", "ok", "1")
    );
}
