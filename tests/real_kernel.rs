//! The end-to-end suite on real kernels.
//!
//! Boots each of two Debian kernels in QEMU (TCG) with an emulated NVDIMM —
//! `lts` (Debian 12's 6.12) and `current` (the newest in trixie-backports,
//! 7.3 today) — once per scenario, and runs the guest scripts in
//! `tests/guest/` against the freshly built release binary (shared into the
//! guest read-only). Every scenario runs on every kernel; a failure on either
//! fails the run. Each run gets a fresh namespace image; the power-cut
//! scenario boots twice on one image with QEMU killed from the host in
//! between. The first scenario, `smoke`, is the harness's own check
//! (`tests/vm/smoke.sh`: devices, O_DIRECT, file systems, dm, fio on the
//! bare `/dev/pmem0`), so a broken kernel setup shows as such.
//!
//! Needs root, the packages and kernels that `scripts/setup` installs, and
//! `cargo build --release` (`scripts/test` does all of it). When anything is
//! missing it fails and says what — it never skips. Not part of a plain
//! `cargo test` (it takes minutes and root): run it with
//! `[PMEM_STACK_KERNELS=lts,current] cargo test --test real_kernel [-- NAME...]`
//! (NAME selects scenarios by substring; the kernels default to both).
//! `PMEM_STACK_BIN=PATH` tests that binary instead of `target/release`'s (a
//! build in another `CARGO_TARGET_DIR`); the guests get it as theirs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};

mod run_lock;
use run_lock::RunLock;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The kernel series `tests/vm/setup.sh` prepares, in the default order.
const KERNELS: &[&str] = &["lts", "current"];

/// One boot of one guest script.
struct Boot {
    script: &'static str,
    size: &'static str,
    label_size: Option<&'static str>,
    /// The guest's memory, when not boot.sh's default (2 GiB).
    mem: Option<&'static str>,
    env: &'static [&'static str],
    /// Power cut: the host kills QEMU when the guest creates this file.
    kill_on: Option<&'static str>,
    /// Boot the Debian root (systemd as PID 1) from the scenario's overlay
    /// of it, kept across the scenario's boots, instead of the busybox
    /// chroot into the host's root.
    debian: bool,
    /// Also CXL persistent memory of this size (boot.sh `--cxl`).
    cxl: Option<&'static str>,
}

impl Boot {
    /// One boot of `script` on a `size` NVDIMM without a label area.
    const fn plain(script: &'static str, size: &'static str) -> Boot {
        Boot {
            script,
            size,
            label_size: None,
            mem: None,
            env: &[],
            kill_on: None,
            debian: false,
            cxl: None,
        }
    }

    /// One boot of `script` on a `size` NVDIMM in a q35 machine that also
    /// has `cxl` of CXL persistent memory.
    const fn with_cxl(script: &'static str, size: &'static str, cxl: &'static str) -> Boot {
        Boot {
            cxl: Some(cxl),
            ..Boot::plain(script, size)
        }
    }

    /// One boot of `script` in the Debian root with `env`; `kill_on` cuts
    /// the power when the guest creates that file.
    const fn debian(
        script: &'static str,
        env: &'static [&'static str],
        kill_on: Option<&'static str>,
    ) -> Boot {
        Boot {
            env,
            kill_on,
            debian: true,
            ..Boot::plain(script, "2G")
        }
    }

    /// One boot of `script` on a `size` NVDIMM in a guest with `mem` of
    /// memory.
    const fn small(script: &'static str, size: &'static str, mem: &'static str) -> Boot {
        Boot {
            mem: Some(mem),
            ..Boot::plain(script, size)
        }
    }

    /// One boot of `script` on a `size` NVDIMM with a `label` label area
    /// (ndctl namespaces: fsdax, devdax, raw).
    const fn labelled(script: &'static str, size: &'static str, label: &'static str) -> Boot {
        Boot {
            label_size: Some(label),
            ..Boot::plain(script, size)
        }
    }
}

struct Scenario {
    name: &'static str,
    what: &'static str,
    boots: &'static [Boot],
    /// How many cycles, when the scenario has a size to turn up.
    knob: Option<Knob>,
}

/// A scenario's number of cycles: `default` in the test command, the host's
/// `env` for a soak (`scripts/soak`). The guest gets it as `guest`; with
/// `repeat_first_boot`, the first boot is also booted that many times (one
/// boot per power cut).
struct Knob {
    env: &'static str,
    guest: &'static str,
    default: usize,
    repeat_first_boot: bool,
    /// What one more cycle inside a boot may add to that boot's time limit
    /// (a soak's 200 cycles run far past the limit a short run needs).
    seconds_per_cycle: u64,
}

impl Knob {
    fn cycles(&self) -> usize {
        std::env::var(self.env)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(self.default)
    }
}

/// How long one boot may take before it counts as hung. The longest boot of
/// the test command takes under 3 minutes; a hung guest (a device left
/// without a server under a mounted file system) must not eat the suite's
/// time budget.
const BOOT_TIME_LIMIT_SECONDS: u64 = 420;

/// One boot as a run makes it.
struct Planned<'a> {
    boot: &'a Boot,
    /// `GUEST=N`: the cycle count the guest gets, for a scenario with a knob.
    cycles_env: Option<String>,
    /// Seconds before boot.sh kills QEMU.
    time_limit: u64,
}

/// The boots of `scenario`, with its cycle count applied.
fn boots_of(scenario: &Scenario) -> Vec<Planned<'_>> {
    let Some(knob) = &scenario.knob else {
        return scenario
            .boots
            .iter()
            .map(|boot| Planned {
                boot,
                cycles_env: None,
                time_limit: BOOT_TIME_LIMIT_SECONDS,
            })
            .collect();
    };
    let n = knob.cycles();
    let env = Some(format!("{}={n}", knob.guest));
    let mut boots = Vec::new();
    for (i, boot) in scenario.boots.iter().enumerate() {
        let times = if i == 0 && knob.repeat_first_boot {
            n
        } else {
            1
        };
        let time_limit =
            BOOT_TIME_LIMIT_SECONDS.saturating_add(knob.seconds_per_cycle.saturating_mul(n as u64));
        boots.extend((0..times).map(|_| Planned {
            boot,
            cycles_env: env.clone(),
            time_limit,
        }));
    }
    boots
}

/// Scenarios left out of a run that names none: too long or too uneven in
/// time for the test command's 45 minutes; `scripts/soak` runs them (and any
/// run that names them). `pressure` took 120-180 s on 6.12 and 270-410 s on
/// 7.3 (four I/O paths), most of it the guest thrashing before the OOM
/// killer takes the hog.
const SOAK_ONLY: &[&str] = &["pressure"];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "smoke",
        what: "the harness itself: /dev/pmem0, /dev/ublk-control, O_DIRECT, ext4, xfs, dm, fio on bare pmem",
        boots: &[Boot::plain("tests/vm/smoke.sh", "2G")],
        knob: None,
    },
    Scenario {
        name: "serve",
        what: "add on 2 GiB pmem, fio verify, ext4, xfs, discard, refusals, del and re-add",
        boots: &[Boot::plain("tests/guest/serve.sh", "2G")],
        knob: None,
    },
    Scenario {
        name: "recover",
        what: "kill -9 of the server under fio, recover, fio ends with zero errors; queue threads run on any CPU of their node (or pinned, --affinity queue), and a recovered server keeps that",
        boots: &[Boot::plain("tests/guest/recover.sh", "2G")],
        knob: None,
    },
    Scenario {
        name: "hostlife",
        what: "serve's READY=1/STOPPING=1 over a real NOTIFY_SOCKET, serve recovering a crashed server under fio, restart under mounted ext4 + fio verify (plain and supervised), udevd's /dev/disk/by-id/pmem-stack-<uuid>",
        boots: &[Boot::plain("tests/guest/hostlife.sh", "2G")],
        knob: None,
    },
    Scenario {
        name: "nvmeof",
        what: "/dev/ublkbN exported by nvmet over TCP on 127.0.0.1, nvme connect -t tcp: size, fio verify, ext4, an initiator flush and fsync reach pmem-stack's flush counter; kill -9 + recover under the initiator's fio: no error; del while connected: the initiator's I/O fails, nothing hangs, the target comes apart",
        boots: &[Boot::plain("tests/guest/nvmeof.sh", "2G")],
        knob: None,
    },
    Scenario {
        name: "pressure",
        what: "a 512 MiB guest: a memory hog beside buffered writes + fsync on ext4 on /dev/ublkb0, on every I/O path the kernel offers: nothing hangs, the server is never OOM-killed (oom_score_adj, PR_SET_IO_FLUSHER, started without systemd), its memory reported, every fsync'd file verifies",
        boots: &[Boot::small("tests/guest/pressure.sh", "2G", "512M")],
        knob: None,
    },
    Scenario {
        name: "systemd",
        what: "Debian's systemd as PID 1: scripts/install, enable --now pmem-stack@dev-pmem0.service (status, journal), ext4 in fstab by /dev/disk/by-id with x-systemd.requires, pmem-stack restart / systemctl restart / kill -9 under fio verify on the mount, stop unmounts first, reboot mounts again in order, a power cut after fsync'd writes: journal replayed, files verify, fsck clean",
        boots: &[
            Boot::debian("tests/guest/systemd.sh", &["PHASE=unit"], None),
            Boot::debian("tests/guest/systemd.sh", &["PHASE=reboot"], Some("cut-now")),
            Boot::debian("tests/guest/systemd.sh", &["PHASE=cut"], None),
        ],
        knob: None,
    },
    Scenario {
        name: "stories",
        what: "the README's user stories, extracted from README.md and run as shown in the Debian root with systemd as PID 1 (install, the unit, fstab by stable name, restart, fio)",
        boots: &[Boot::debian("tests/guest/stories.sh", &[], None)],
        knob: None,
    },
    Scenario {
        name: "iopaths",
        what: "every I/O path this kernel offers (user copy, bounce, direct, batch) serves the same bytes; others refused",
        boots: &[Boot::plain("tests/guest/iopaths.sh", "2G")],
        knob: None,
    },
    Scenario {
        name: "powercut",
        what: "writing through (the default on /dev/pmem0; served on user copy on 6.12, on the direct path on 6.16+), every acknowledged write survives QEMU being killed; data never synced in the guest does not",
        boots: &[
            Boot {
                script: "tests/guest/powercut.sh",
                size: "2G",
                label_size: None,
                mem: None,
                env: &["PHASE=cut"],
                kill_on: Some("cut-now"),
                debian: false,
                cxl: None,
            },
            Boot {
                script: "tests/guest/powercut.sh",
                size: "2G",
                label_size: None,
                mem: None,
                env: &["PHASE=verify"],
                kill_on: None,
                debian: false,
                cxl: None,
            },
        ],
        knob: None,
    },
    Scenario {
        name: "powercut-wb",
        what: "with a write-back cache (user copy): O_DSYNC / FUA / fsync'd writes survive QEMU being killed, unflushed ones do not",
        boots: &[
            Boot {
                script: "tests/guest/powercut.sh",
                size: "2G",
                label_size: None,
                mem: None,
                env: &["PHASE=cut", "CACHE=write-back"],
                kill_on: Some("cut-now"),
                debian: false,
                cxl: None,
            },
            Boot {
                script: "tests/guest/powercut.sh",
                size: "2G",
                label_size: None,
                mem: None,
                env: &["PHASE=verify", "CACHE=write-back"],
                kill_on: None,
                debian: false,
                cxl: None,
            },
        ],
        knob: None,
    },
    Scenario {
        name: "devdax",
        what: "a devdax namespace as the backing (CPU cache write-back), physical address, namespace uuid",
        boots: &[Boot::labelled("tests/guest/devdax.sh", "1G", "128K")],
        knob: None,
    },
    Scenario {
        name: "map",
        what: "map on fsdax: dm-linear table, ext4/xfs -o dax=always, fio verify, reserve untouched by a full fill, data across map/add both ways, exclusivity; raw (no DAX) and devdax",
        boots: &[Boot::labelled("tests/guest/map.sh", "1G", "128K")],
        knob: None,
    },
    Scenario {
        name: "reserved",
        what: "reserved vs sysfs resource on /dev/pmem0, format --owner, reserve split, refusals while served, grow of an image file (+ resize2fs)",
        boots: &[Boot::plain("tests/guest/reserved.sh", "2G")],
        knob: None,
    },
    Scenario {
        name: "cxl",
        what: "CXL persistent memory (QEMU's cxl-type3 behind a pxb-cxl host bridge): cxl create-region -t pmem, ndctl fsdax and devdax namespaces on it, each formatted and served, reserved against the namespace's physical address inside the CXL region, ext4 + fio verify",
        boots: &[Boot::with_cxl("tests/guest/cxl.sh", "1G", "512M")],
        knob: None,
    },
    Scenario {
        name: "reserved-devdax",
        what: "reserved vs sysfs resource on a devdax namespace, unsplit and split among owners",
        boots: &[Boot::labelled(
            "tests/guest/reserved-devdax.sh",
            "1G",
            "128K",
        )],
        knob: None,
    },
    Scenario {
        name: "crashes",
        what: "kill -9 under fio + recover, again and again; kills idle, in flushes, in del; races and misuse",
        boots: &[Boot::plain("tests/guest/crashes.sh", "2G")],
        knob: Some(Knob {
            env: "PMEM_STACK_CRASH_CYCLES",
            guest: "CRASH_CYCLES",
            default: 6,
            repeat_first_boot: false,
            seconds_per_cycle: 30,
        }),
    },
    Scenario {
        name: "recoveries",
        what: "kill -9 under fio + recover, many times in a row: after each recovery and before every I/O /dev/ublkb0 is the kernel's disk (block device, its major:minor) and the disk counts fio's writes; then del under fio leaves nothing named /dev/ublkb0",
        boots: &[Boot::plain("tests/guest/recoveries.sh", "2G")],
        knob: Some(Knob {
            env: "PMEM_STACK_RECOVERIES",
            guest: "RECOVERIES",
            default: 6,
            repeat_first_boot: false,
            seconds_per_cycle: 30,
        }),
    },
    Scenario {
        name: "powercycle",
        what: "power cuts in a row under ext4 and xfs: every acknowledged file survives, fsck clean",
        boots: &[POWER_CUT, POWER_CUT_VERIFY],
        knob: Some(Knob {
            env: "PMEM_STACK_POWER_CUTS",
            guest: "CUTS",
            default: 2,
            repeat_first_boot: true,
            seconds_per_cycle: 0,
        }),
    },
];

/// One cycle of `powercycle`: the guest finds the cycle count on the media.
const POWER_CUT: Boot = Boot {
    script: "tests/guest/powercycle.sh",
    size: "1G",
    label_size: None,
    mem: None,
    env: &["PHASE=cut"],
    kill_on: Some("cut-now"),
    debian: false,
    cxl: None,
};

/// The boot after the last cut of `powercycle`.
const POWER_CUT_VERIFY: Boot = Boot {
    env: &["PHASE=verify"],
    kill_on: None,
    ..POWER_CUT
};

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

/// The VM cache (`tests/vm/setup.sh` and `boot.sh` use the same default).
fn vm_dir(repo: &Path) -> PathBuf {
    std::env::var_os("PMEM_STACK_VM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/vm"))
}

/// The kernels to run on: `PMEM_STACK_KERNELS` (comma separated), default all.
fn selected_kernels() -> Result<Vec<&'static str>, String> {
    let Some(list) = std::env::var("PMEM_STACK_KERNELS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(KERNELS.to_vec());
    };
    let mut kernels = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let known = KERNELS.iter().find(|k| **k == name).ok_or_else(|| {
            format!(
                "PMEM_STACK_KERNELS: unknown kernel '{name}' (known: {})",
                KERNELS.join(", ")
            )
        })?;
        if !kernels.contains(known) {
            kernels.push(*known);
        }
    }
    Ok(kernels)
}

/// The version `tests/vm/setup.sh` recorded for a kernel series, or what to run.
fn kernel_version(vm: &Path, series: &str) -> Result<String, String> {
    let env = vm.join(series).join("kernel.env");
    let text = fs::read_to_string(&env).map_err(|_| {
        format!(
            "kernel '{series}' is not set up ({} missing): run 'sudo tests/vm/setup.sh --kernel {series}' \
             (scripts/setup prepares both kernels)",
            env.display()
        )
    })?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
    };
    if field("VM_KERNEL_SERIES").as_deref() != Some(series) {
        return Err(format!(
            "{} is not for kernel '{series}': run 'sudo tests/vm/setup.sh --kernel {series}'",
            env.display()
        ));
    }
    field("VM_KERNEL_VERSION")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "{} has no VM_KERNEL_VERSION: run 'sudo tests/vm/setup.sh'",
                env.display()
            )
        })
}

/// The binary under test: `PMEM_STACK_BIN`, else the release build.
fn binary(repo: &Path) -> PathBuf {
    std::env::var_os("PMEM_STACK_BIN")
        .filter(|v| !v.is_empty())
        .map_or_else(|| repo.join("target/release/pmem-stack"), PathBuf::from)
}

/// boot.sh's `--env PMEM_STACK_BIN=...` when `PMEM_STACK_BIN` names the
/// binary under test (the guest's `tests/guest/lib.sh` runs that one).
fn binary_env(repo: &Path) -> Vec<std::ffi::OsString> {
    if std::env::var_os("PMEM_STACK_BIN").is_none_or(|v| v.is_empty()) {
        return Vec::new();
    }
    let mut env = std::ffi::OsString::from("PMEM_STACK_BIN=");
    env.push(binary(repo));
    vec!["--env".into(), env]
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
    let binary = binary(repo);
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

/// Result of one boot.
struct Outcome {
    passed: usize,
    failures: Vec<String>,
}

/// boot.sh's command line for one boot of `plan`, its results in `results`.
fn boot_command(
    repo: &Path,
    kernel: &str,
    plan: &Planned,
    results: &Path,
    scratch: &Path,
) -> Command {
    let boot = plan.boot;
    let image = scratch.join(IMAGE);
    let root_disk = scratch.join(ROOT_DISK);
    let mut cmd = Command::new(repo.join("tests/vm/boot.sh"));
    cmd.current_dir(repo)
        .arg("--kernel")
        .arg(kernel)
        .arg("--script")
        .arg(boot.script)
        .arg("--image")
        .arg(&image)
        .arg("--size")
        .arg(boot.size)
        .arg("--results")
        .arg(results)
        .arg("--timeout")
        .arg(plan.time_limit.to_string());
    if let Some(label) = boot.label_size {
        cmd.arg("--label-size").arg(label);
    }
    if let Some(mem) = boot.mem {
        cmd.arg("--mem").arg(mem);
    }
    for env in boot.env.iter().copied().chain(plan.cycles_env.as_deref()) {
        cmd.arg("--env").arg(env);
    }
    cmd.args(binary_env(repo));
    if let Some(marker) = boot.kill_on {
        cmd.arg("--kill-on").arg(marker);
    }
    if boot.debian {
        cmd.arg("--root-disk").arg(&root_disk);
    }
    if let Some(size) = boot.cxl {
        cmd.arg("--cxl").arg(size);
    }
    cmd
}

/// Boot `plan` once: results in `dir`/boot`index`, the NVDIMM image and the
/// Debian overlay in `scratch`.
fn run_boot(
    repo: &Path,
    kernel: &str,
    dir: &Path,
    index: usize,
    plan: &Planned,
    scratch: &Path,
) -> Result<Outcome, String> {
    let boot = plan.boot;
    let results = dir.join(format!("boot{index}"));
    let mut cmd = boot_command(repo, kernel, plan, &results, scratch);
    let mut status = cmd
        .status()
        .map_err(|e| format!("cannot run tests/vm/boot.sh: {e}"))?;
    if crashed_before_script(&results) {
        // The guest kernel died before the scenario started: nothing of
        // pmem-stack had run, and the image is untouched. Under TCG this
        // happens now and then (an int3 oops in early scheduling, an IO-APIC
        // timer check); one more boot tells a fault of the emulator from a
        // fault of ours. The crashed console is kept beside the results.
        let kept = dir.join(format!("boot{index}-crashed-console.log"));
        let _ = fs::copy(results.join("console.log"), &kept);
        println!(
            "    NOTE: the guest kernel panicked before the scenario started (see {}); booting once more",
            kept.display()
        );
        status = cmd
            .status()
            .map_err(|e| format!("cannot run tests/vm/boot.sh: {e}"))?;
    }
    let log = fs::read_to_string(results.join("guest.log")).unwrap_or_default();
    let mut outcome = checks_of(&log);
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

/// The PASS and FAIL lines of a guest log, printed with its NOTEs.
fn checks_of(log: &str) -> Outcome {
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
    outcome
}

/// Whether the boot in `results` died in the kernel before the guest
/// script started (no boot-to-script mark, a panic on the console).
fn crashed_before_script(results: &Path) -> bool {
    let console = fs::read_to_string(results.join("console.log")).unwrap_or_default();
    !results.join("boot-to-script-seconds").exists() && console.contains("Kernel panic")
}

/// One scenario on one kernel.
struct Run {
    kernel: &'static str,
    scenario: &'static str,
    checks: usize,
    failures: Vec<String>,
    time: Duration,
}

/// Where the boots' scratch files go: the NVDIMM image, the Debian root's
/// overlay, the CXL memdev and label area.
///
/// In memory when the host has room (`/dev/shm`, a tmpfs with at least
/// [`SCRATCH_IN_MEMORY_MIN`] free): the guest's first touch of each 2 MiB of
/// a fresh image on the host's ext4 took 20–30 ms (a large folio allocated,
/// at times after compaction), and a blank namespace's super block search
/// touches every 2 MiB of it — 20 s of every first `add` on 2 GiB, in every
/// scenario; on tmpfs it is under a second. `PMEM_STACK_SCRATCH=DIR` puts
/// them in DIR instead; without room in memory they stay beside the results.
struct ScratchRoot {
    dir: PathBuf,
    /// In memory: the scratch of a failed scenario is kept for inspection
    /// until the next run starts (which clears it), not for good.
    in_memory: bool,
    /// This run's hold on its results and its scratch (see [`RunLock`]).
    _locks: Vec<RunLock>,
}

/// A scenario's NVDIMM image in its scratch directory (boot.sh `--cxl` puts
/// the CXL memdev and label area beside it, as `IMAGE.cxl` and `IMAGE.lsa`).
const IMAGE: &str = "pmem.img";
/// The Debian root's overlay in a scenario's scratch directory.
const ROOT_DISK: &str = "root.qcow2";

/// The least free space `/dev/shm` must have to hold the scratch files: the
/// largest scenario's (2 GiB NVDIMM, 512 MiB CXL, the Debian overlay) and
/// what failed scenarios of this run leave there, with room to spare.
const SCRATCH_IN_MEMORY_MIN: u64 = 8 << 30;

impl ScratchRoot {
    /// Where this run's scratch goes, with the results (`suite`) and the
    /// scratch locked for it; `Err`: another run holds one of them.
    fn choose(suite: &Path) -> Result<ScratchRoot, String> {
        let mut locks = vec![RunLock::take(suite, "")?];
        let shm = Path::new("/dev/shm");
        let (dir, in_memory) = if let Some(dir) = std::env::var_os("PMEM_STACK_SCRATCH") {
            (PathBuf::from(dir), false)
        } else if free_tmpfs_bytes(shm).is_some_and(|free| free >= SCRATCH_IN_MEMORY_MIN) {
            (shm.join("pmem-stack-suite"), true)
        } else {
            println!(
                "real_kernel: /dev/shm has no {} GiB free: NVDIMM images beside the results (slower)",
                SCRATCH_IN_MEMORY_MIN >> 30
            );
            (suite.to_path_buf(), false)
        };
        if dir != suite {
            let or = ", or give this run scratch of its own: PMEM_STACK_SCRATCH=DIR";
            locks.push(RunLock::take(&dir, or)?);
        }
        if in_memory {
            // What failed scenarios of an earlier run kept: gone now.
            let _ = fs::remove_dir_all(&dir);
        }
        Ok(ScratchRoot {
            dir,
            in_memory,
            _locks: locks,
        })
    }
}

/// The bytes free on `dir` if it is a tmpfs (`stat -f`), else `None`.
fn free_tmpfs_bytes(dir: &Path) -> Option<u64> {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T %a %S"])
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut fields = text.split_whitespace();
    if fields.next()? != "tmpfs" {
        return None;
    }
    let blocks: u64 = fields.next()?.parse().ok()?;
    let size: u64 = fields.next()?.parse().ok()?;
    blocks.checked_mul(size)
}

fn run_scenario(
    repo: &Path,
    suite: &Path,
    scratch_root: &ScratchRoot,
    kernel: &'static str,
    scenario: &Scenario,
) -> Run {
    let started = Instant::now();
    let cycles = scenario
        .knob
        .as_ref()
        .map(|k| format!(" ({} cycles; {} sets it)", k.cycles(), k.env))
        .unwrap_or_default();
    println!("[{kernel}] {}: {}{cycles}", scenario.name, scenario.what);
    let dir = suite.join(kernel).join(scenario.name);
    let _ = fs::create_dir_all(&dir);
    let scratch_dir = scratch_root.dir.join(kernel).join(scenario.name);
    let _ = fs::create_dir_all(&scratch_dir);
    // What the boots write besides their results, made anew by each run: the
    // NVDIMM image, the Debian root's overlay (boot.sh --root-disk; each run
    // starts from the system setup built) and boot.sh --cxl's memdev and
    // label area.
    let scratch = [
        scratch_dir.join(IMAGE),
        scratch_dir.join(ROOT_DISK),
        scratch_dir.join(format!("{IMAGE}.cxl")),
        scratch_dir.join(format!("{IMAGE}.lsa")),
    ];
    for file in &scratch {
        let _ = fs::remove_file(file);
    }
    let mut failures = Vec::new();
    let mut checks = 0;
    for (i, plan) in boots_of(scenario).iter().enumerate() {
        match run_boot(repo, kernel, &dir, i, plan, &scratch_dir) {
            Ok(outcome) => {
                checks += outcome.passed;
                failures.extend(outcome.failures);
            }
            Err(why) => failures.push(why),
        }
        if !failures.is_empty() {
            break;
        }
    }
    let time = started.elapsed();
    if failures.is_empty() {
        // Scratch (up to 2 GiB each); a failed run keeps them for inspection.
        for file in &scratch {
            let _ = fs::remove_file(file);
        }
        println!(
            "[{kernel}] {}: ok ({checks} checks, {:.0} s)",
            scenario.name,
            time.as_secs_f64()
        );
    } else {
        println!(
            "[{kernel}] {}: FAILED ({} failures, {:.0} s; results in {}, images in {}{})",
            scenario.name,
            failures.len(),
            time.as_secs_f64(),
            dir.display(),
            scratch_dir.display(),
            if scratch_root.in_memory {
                " until the next run"
            } else {
                ""
            }
        );
        for f in &failures {
            println!("    {f}");
        }
    }
    Run {
        kernel,
        scenario: scenario.name,
        checks,
        failures,
        time,
    }
}

/// The scenarios a run names (by substring), or all but the soak's when it
/// names none; `None` (said why) when the filters match nothing.
fn select(filters: &[String]) -> Option<Vec<&'static Scenario>> {
    let selected: Vec<&'static Scenario> = SCENARIOS
        .iter()
        .filter(|s| {
            if filters.is_empty() {
                !SOAK_ONLY.contains(&s.name)
            } else {
                filters.iter().any(|f| s.name.contains(f.as_str()))
            }
        })
        .collect();
    if filters.is_empty() {
        println!(
            "real_kernel: not in a run that names no scenario: {} (scripts/soak runs them)",
            SOAK_ONLY.join(", ")
        );
    }
    if selected.is_empty() {
        eprintln!(
            "real_kernel: no scenario matches {filters:?} (scenarios: {})",
            SCENARIOS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return None;
    }
    Some(selected)
}

/// The results table and the verdict.
fn report(
    runs: &[Run],
    kernels: &[&str],
    versions: &[String],
    kernel_times: &[Duration],
) -> ExitCode {
    println!("\nreal_kernel: results");
    for run in runs {
        println!(
            "  {:<8} {:<9} {:<6} {:>4} checks {:>5.0} s",
            run.kernel,
            run.scenario,
            if run.failures.is_empty() {
                "ok"
            } else {
                "FAILED"
            },
            run.checks,
            run.time.as_secs_f64()
        );
    }
    for ((kernel, version), time) in kernels.iter().zip(versions).zip(kernel_times) {
        let mine = runs.iter().filter(|r| r.kernel == *kernel);
        let failed = mine.clone().filter(|r| !r.failures.is_empty()).count();
        println!(
            "  kernel {kernel} ({version}): {} passed, {failed} failed in {:.0} s",
            mine.count() - failed,
            time.as_secs_f64()
        );
    }
    let failed: Vec<String> = runs
        .iter()
        .filter(|r| !r.failures.is_empty())
        .map(|r| format!("{}/{}", r.kernel, r.scenario))
        .collect();
    if !failed.is_empty() {
        println!("  failed: {}", failed.join(", "));
    }
    println!(
        "{} passed, {} failed",
        runs.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let repo = PathBuf::from(REPO);
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let vm = vm_dir(&repo);
    let kernels = match selected_kernels() {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => {
            eprintln!("real_kernel: cannot run: PMEM_STACK_KERNELS selects no kernel");
            return ExitCode::FAILURE;
        }
        Err(why) => {
            eprintln!("real_kernel: cannot run: {why}");
            return ExitCode::FAILURE;
        }
    };
    let mut versions = Vec::new();
    let mut missing = Vec::new();
    for kernel in &kernels {
        match kernel_version(&vm, kernel) {
            Ok(v) => versions.push(v),
            Err(why) => missing.push(why),
        }
    }
    if let Err(why) = preflight(&repo) {
        missing.insert(0, why);
    }
    if !missing.is_empty() {
        for why in &missing {
            eprintln!("real_kernel: cannot run: {why}");
        }
        return ExitCode::FAILURE;
    }
    let Some(selected) = select(&filters) else {
        return ExitCode::FAILURE;
    };
    let suite = vm.join("suite");
    let scratch_root = match ScratchRoot::choose(&suite) {
        Ok(root) => root,
        Err(why) => {
            eprintln!("real_kernel: cannot run: {why}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "real_kernel: kernels {}; scenarios {}",
        kernels
            .iter()
            .zip(&versions)
            .map(|(k, v)| format!("{k} ({v})"))
            .collect::<Vec<_>>()
            .join(", "),
        selected
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut runs = Vec::new();
    let mut kernel_times = Vec::new();
    for (kernel, version) in kernels.iter().zip(&versions) {
        println!("\n== kernel {kernel}: {version}");
        let started = Instant::now();
        for scenario in &selected {
            runs.push(run_scenario(&repo, &suite, &scratch_root, kernel, scenario));
        }
        kernel_times.push(started.elapsed());
    }

    report(&runs, &kernels, &versions, &kernel_times)
}
