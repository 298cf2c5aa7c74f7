//! Living on a host, checked without a ublk driver: shell completions and
//! manual pages generated from the CLI, `--version`, exit codes, the install
//! step, the systemd unit (`systemd-analyze verify`), the udev rule and its
//! helper, and the refusals of `serve` and `restart`. (The device side —
//! readiness, restart under fio, by-id names under udevd — is the guest
//! scenario `hostlife`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Scratch;

const MIB: u64 = 1 << 20;
const BIN: &str = env!("CARGO_BIN_EXE_pmem-stack");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn version_names_the_format_versions() {
    let t = Scratch::new();
    let out = t.run(["--version"]).ok().stdout();
    let major = pmem_stack::format::superblock::VERSION_MAJOR;
    let minor = pmem_stack::format::superblock::VERSION_MINOR;
    assert_eq!(
        out.trim(),
        format!(
            "pmem-stack {} (on-media format: reads {major}.x, writes {major}.0, and {major}.{minor} for a reserve split among owners)",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn completions_for_every_shell_parse() {
    let t = Scratch::new();
    for (shell, checker) in [
        ("bash", Some(("bash", "-n"))),
        ("zsh", None),
        ("fish", None),
    ] {
        let script = t.run(["completions", shell]).ok().stdout();
        for command in ["format", "serve", "restart", "completions", "man"] {
            assert!(script.contains(command), "{shell}: {command} missing");
        }
        if let Some((interpreter, flag)) = checker {
            let path = t.path(&format!("completion.{shell}"));
            std::fs::write(&path, &script).expect("write");
            let status = Command::new(interpreter)
                .args([flag, s(&path)])
                .status()
                .expect("run the shell");
            assert!(status.success(), "{shell} completion does not parse");
        }
    }
    t.run(["completions", "tcsh"])
        .fails(2, &["invalid value 'tcsh'"]);
}

#[test]
fn man_pages_render_with_exit_codes() {
    let t = Scratch::new();
    let page = t.run(["man"]).ok().stdout();
    assert!(
        page.starts_with(".ie") || page.contains(".TH pmem-stack 8"),
        "{page}"
    );
    for section in [".SH \"EXIT STATUS\"", ".SH FILES", ".SH ENVIRONMENT"] {
        assert!(page.contains(section), "{section} missing");
    }
    for code in ["0", "1", "2", "75"] {
        assert!(page.contains(&format!("\\fB{code}\\fR")), "exit {code}");
    }
    let restart = t.run(["man", "restart"]).ok().stdout();
    assert!(restart.contains(".TH pmem-stack-restart 8"), "{restart}");
    t.run(["man", "nonsense"])
        .fails(2, &["'nonsense' is not a pmem-stack command"]);
    let dir = t.path("man8");
    std::fs::create_dir(&dir).expect("mkdir");
    t.run(["man", "--dir", s(&dir)]).ok();
    for name in ["pmem-stack.8", "pmem-stack-serve.8", "pmem-stack-del.8"] {
        assert!(dir.join(name).exists(), "{name}");
    }
    assert!(!dir.join("pmem-stack-udev-id.8").exists(), "hidden helper");
    // groff, when present, reads them without complaint.
    if Path::new("/usr/bin/groff").exists() {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", s(&dir.join("pmem-stack.8"))])
            .output()
            .expect("groff");
        assert!(out.status.success());
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn usage_errors_exit_2_and_every_reporting_command_takes_json() {
    let t = Scratch::new();
    t.run(["frobnicate"]).fails(2, &["unrecognized subcommand"]);
    t.run(["restart"]).fails(2, &["DEVICE"]);
    for command in [
        "format", "info", "check", "add", "del", "list", "recover", "restart",
    ] {
        let help = t.run([command, "--help"]).ok().stdout();
        assert!(help.contains("--json"), "{command} has no --json");
    }
}

/// `scripts/install --destdir`: what it installs, where.
fn staged_install(t: &Scratch) -> PathBuf {
    let dest = t.path("dest");
    let out = Command::new(Path::new(REPO).join("scripts/install"))
        .args(["--destdir", s(&dest), "--binary", BIN])
        .output()
        .expect("run scripts/install");
    assert!(
        out.status.success(),
        "install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    for file in [
        "usr/local/sbin/pmem-stack",
        "etc/systemd/system/pmem-stack@.service",
        "etc/udev/rules.d/60-pmem-stack.rules",
        "usr/local/share/bash-completion/completions/pmem-stack",
        "usr/local/share/zsh/site-functions/_pmem-stack",
        "usr/local/share/fish/vendor_completions.d/pmem-stack.fish",
        "usr/local/share/man/man8/pmem-stack.8",
        "usr/local/share/man/man8/pmem-stack-serve.8",
    ] {
        assert!(dest.join(file).is_file(), "{file} not installed");
        assert!(listed.contains(file), "{file} not listed");
    }
    dest
}

#[test]
fn install_stages_everything_and_the_unit_verifies() {
    let t = Scratch::new();
    let dest = staged_install(&t);
    let unit =
        std::fs::read_to_string(dest.join("etc/systemd/system/pmem-stack@.service")).expect("unit");
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/sbin/pmem-stack serve %f",
        "Restart=on-failure",
        "RestartForceExitStatus=75",
    ] {
        assert!(unit.contains(line), "{line} missing");
    }
    assert!(
        !unit.contains("@SBINDIR@") && !unit.contains("@MODPROBE@"),
        "unsubstituted"
    );
    // systemd-analyze verify on an instance, the binary path pointing at the
    // staged one and the staged man pages on MANPATH (Documentation= is
    // checked too).
    let units = t.path("units");
    std::fs::create_dir(&units).expect("mkdir");
    let staged_bin = dest.join("usr/local/sbin/pmem-stack");
    std::fs::write(
        units.join("pmem-stack@.service"),
        unit.replace("/usr/local/sbin/pmem-stack", s(&staged_bin)),
    )
    .expect("write unit");
    std::os::unix::fs::symlink(
        "pmem-stack@.service",
        units.join("pmem-stack@dev-pmem0.service"),
    )
    .expect("instance link");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("pmem-stack@dev-pmem0.service"))
        .env("MANPATH", dest.join("usr/local/share/man"))
        .output()
        .expect(
            "systemd-analyze is missing: install Debian's systemd package (scripts/setup does)",
        );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    // And --uninstall takes it all away again.
    let out = Command::new(Path::new(REPO).join("scripts/install"))
        .args(["--uninstall", "--destdir", s(&dest)])
        .output()
        .expect("uninstall");
    assert!(out.status.success());
    assert!(!dest.join("usr/local/sbin/pmem-stack").exists());
    assert!(!dest.join("usr/local/share/man/man8/pmem-stack.8").exists());
}

#[test]
fn udev_rule_and_helper_name_the_volume() {
    let t = Scratch::new();
    let dest = staged_install(&t);
    let rule =
        std::fs::read_to_string(dest.join("etc/udev/rules.d/60-pmem-stack.rules")).expect("rule");
    assert!(rule.contains("IMPORT{program}=\"/usr/local/sbin/pmem-stack udev-id %k\""));
    assert!(rule.contains("SYMLINK+=\"disk/by-id/pmem-stack-$env{PMEM_STACK_UUID}\""));

    // The helper reads the record a server writes before its device appears.
    let img = t.image("pmem.img", 64 * MIB);
    t.run(["format", s(&img), "--reserve", "0"]).ok();
    let uuid = t.run(["info", s(&img), "--json"]).ok().json()["uuid"]
        .as_str()
        .expect("uuid")
        .to_string();
    let backing = pmem_stack::backing::Backing::open(&img, pmem_stack::backing::Access::ReadOnly)
        .expect("open");
    let registry = pmem_stack::registry::Registry::at(t.path("run"));
    registry.prepare_dir().expect("registry dir");
    registry
        .save(&pmem_stack::registry::Entry {
            id: 3,
            backing: img.clone(),
            identity: backing.identity(),
            uuid: pmem_stack::format::uuid::Uuid::parse(&uuid).expect("uuid parses"),
            pid: 1,
            queues: 1,
            depth: 64,
            user_copy: true,
            recovery: true,
            mode: pmem_stack::format::ReserveMode::None,
            reserve_offset: 0,
            reserve_size: 0,
            data_offset: 2 * MIB,
            data_size: 60 * MIB,
            log: None,
            supervised: false,
            started: 0,
            affinity: pmem_stack::ublk::affinity::Affinity::Node,
        })
        .expect("save");
    let out = t.run(["udev-id", "ublkb3"]).ok().stdout();
    assert_eq!(out, format!("PMEM_STACK_UUID={uuid}\nPMEM_STACK_ID=3\n"));
    t.run(["udev-id", "ublkb4"])
        .fails(1, &["/dev/ublkb4 is not served by pmem-stack"]);
    t.run(["udev-id", "sda"])
        .fails(1, &["'sda' is not a ublk device name"]);
}
