//! The end-to-end suite on a real kernel.
//!
//! Boots Debian's 6.12 kernel in QEMU (TCG) with an emulated NVDIMM, once per
//! scenario, and runs the guest scripts in `tests/guest/` against the freshly
//! built release binary (shared into the guest read-only). Each scenario gets
//! a fresh namespace image; the power-cut scenario boots twice on one image
//! with QEMU killed from the host in between.
//!
//! Needs root, the packages and kernel that `scripts/setup` installs, and
//! `cargo build --release` (`scripts/test` does all of it). When anything is
//! missing it fails and says what — it never skips. Not part of a plain
//! `cargo test` (it takes minutes and root): run it with
//! `cargo test --test real_kernel [-- NAME...]`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// One boot of one guest script.
struct Boot {
    script: &'static str,
    size: &'static str,
    label_size: Option<&'static str>,
    env: &'static [&'static str],
    /// Power cut: the host kills QEMU when the guest creates this file.
    kill_on: Option<&'static str>,
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    boots: &'static [Boot],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "serve",
        what: "add on 2 GiB pmem, fio verify, ext4, xfs, discard, refusals, del and re-add",
        boots: &[Boot {
            script: "tests/guest/serve.sh",
            size: "2G",
            label_size: None,
            env: &[],
            kill_on: None,
        }],
    },
    Scenario {
        name: "recover",
        what: "kill -9 of the server under fio, recover, fio ends with zero errors",
        boots: &[Boot {
            script: "tests/guest/recover.sh",
            size: "2G",
            label_size: None,
            env: &[],
            kill_on: None,
        }],
    },
    Scenario {
        name: "powercut",
        what: "O_DSYNC / FUA / fsync'd writes survive QEMU being killed, unsynced ones do not",
        boots: &[
            Boot {
                script: "tests/guest/powercut.sh",
                size: "2G",
                label_size: None,
                env: &["PHASE=cut"],
                kill_on: Some("cut-now"),
            },
            Boot {
                script: "tests/guest/powercut.sh",
                size: "2G",
                label_size: None,
                env: &["PHASE=verify"],
                kill_on: None,
            },
        ],
    },
    Scenario {
        name: "devdax",
        what: "a devdax namespace as the backing (CPU cache write-back), physical address, namespace uuid",
        boots: &[Boot {
            script: "tests/guest/devdax.sh",
            size: "1G",
            label_size: Some("128K"),
            env: &[],
            kill_on: None,
        }],
    },
];

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(time);
    }
    newest
}

/// Everything the suite needs, or a message saying what is missing.
fn preflight(repo: &Path) -> Result<(), String> {
    // SAFETY-free check of the effective uid through /proc.
    let status = fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Err("the guest suite needs root (it runs QEMU and writes the VM cache)".into());
    }
    let binary = repo.join("target/release/pmem-stack");
    let built = fs::metadata(&binary)
        .and_then(|m| m.modified())
        .map_err(|_| {
            format!(
                "{} is missing: run 'cargo build --release' (scripts/test does)",
                binary.display()
            )
        })?;
    let sources = newest_mtime(&repo.join("src")).max(
        fs::metadata(repo.join("Cargo.toml"))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    if built < sources {
        return Err(format!(
            "{} is older than the sources: run 'cargo build --release' (scripts/test does)",
            binary.display()
        ));
    }
    for tool in ["qemu-system-x86_64", "fio", "mkfs.xfs", "busybox"] {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            return Err(format!("{tool} is not installed: run scripts/setup"));
        }
    }
    Ok(())
}

/// Result of one scenario.
struct Outcome {
    passed: usize,
    failures: Vec<String>,
}

fn run_boot(
    repo: &Path,
    dir: &Path,
    index: usize,
    boot: &Boot,
    image: &Path,
) -> Result<Outcome, String> {
    let results = dir.join(format!("boot{index}"));
    let mut cmd = Command::new(repo.join("tests/vm/boot.sh"));
    cmd.current_dir(repo)
        .arg("--script")
        .arg(boot.script)
        .arg("--image")
        .arg(image)
        .arg("--size")
        .arg(boot.size)
        .arg("--results")
        .arg(&results)
        .arg("--timeout")
        .arg("900");
    if let Some(label) = boot.label_size {
        cmd.arg("--label-size").arg(label);
    }
    for env in boot.env {
        cmd.arg("--env").arg(env);
    }
    if let Some(marker) = boot.kill_on {
        cmd.arg("--kill-on").arg(marker);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run tests/vm/boot.sh: {e}"))?;
    let log = fs::read_to_string(results.join("guest.log")).unwrap_or_default();
    let mut outcome = Outcome {
        passed: 0,
        failures: Vec::new(),
    };
    for line in log.lines() {
        if line.starts_with("PASS: ") {
            outcome.passed += 1;
        } else if line.starts_with("FAIL: ") {
            outcome.failures.push(line.to_string());
        }
        if line.starts_with("PASS: ") || line.starts_with("FAIL: ") || line.starts_with("NOTE: ") {
            println!("    {line}");
        }
    }
    let code = status.code().unwrap_or(-1);
    if boot.kill_on.is_some() {
        // The boot ends with the power cut; its checks are those before it.
        if code != 0 {
            outcome.failures.push(format!(
                "the power cut did not happen (boot.sh exit {code}); see {}",
                results.display()
            ));
        }
    } else {
        if code != 0 && outcome.failures.is_empty() {
            outcome.failures.push(format!(
                "guest run failed (boot.sh exit {code}); see {}",
                results.display()
            ));
        }
        if !log.lines().any(|l| l.starts_with("summary: ")) {
            outcome.failures.push(format!(
                "the scenario did not finish; see {}",
                results.display()
            ));
        }
    }
    if outcome.passed == 0 {
        outcome
            .failures
            .push("no check passed: the scenario did not run".into());
    }
    Ok(outcome)
}

fn main() -> ExitCode {
    let repo = PathBuf::from(REPO);
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Err(why) = preflight(&repo) {
        eprintln!("real_kernel: cannot run: {why}");
        return ExitCode::FAILURE;
    }
    let suite_dir = repo.join("target/vm/suite");
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|s| filters.is_empty() || filters.iter().any(|f| s.name.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        eprintln!("real_kernel: no scenario matches {filters:?}");
        return ExitCode::FAILURE;
    }
    let mut failed = Vec::new();
    let mut total_passed = 0;
    for scenario in selected {
        let started = Instant::now();
        println!("scenario {}: {}", scenario.name, scenario.what);
        let dir = suite_dir.join(scenario.name);
        let _ = fs::create_dir_all(&dir);
        let image = dir.join("pmem.img");
        let _ = fs::remove_file(&image);
        let mut failures = Vec::new();
        let mut passed = 0;
        for (i, boot) in scenario.boots.iter().enumerate() {
            match run_boot(&repo, &dir, i, boot, &image) {
                Ok(outcome) => {
                    passed += outcome.passed;
                    failures.extend(outcome.failures);
                }
                Err(why) => failures.push(why),
            }
            if !failures.is_empty() {
                break;
            }
        }
        total_passed += passed;
        let secs = started.elapsed().as_secs_f64();
        if failures.is_empty() {
            println!(
                "scenario {}: ok ({passed} checks, {secs:.0} s)",
                scenario.name
            );
        } else {
            println!(
                "scenario {}: FAILED ({} failures, {secs:.0} s)",
                scenario.name,
                failures.len()
            );
            for f in &failures {
                println!("    {f}");
            }
            failed.push(scenario.name);
        }
    }
    if failed.is_empty() {
        println!("real_kernel: all scenarios passed ({total_passed} checks)");
        ExitCode::SUCCESS
    } else {
        println!("real_kernel: failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}
