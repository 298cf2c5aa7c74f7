//! `rust-version` in Cargo.toml is a promise: the project builds with that
//! Rust. This machine has one toolchain, so the promise is checked the other
//! way round: no locked dependency (build, test or bench) may declare a newer
//! minimum than the one we state. A dependency update that raises the floor
//! fails here, naming the crate, instead of failing a user's older toolchain.
//!
//! It reads the graph for the host's platform only (`--filter-platform`):
//! pmem-stack is Linux-only (ublk), so a Windows-only crate such as
//! `anstyle-wincon` is never compiled and its `rust-version` promises
//! nothing. That is also the set `cargo test` has just downloaded, so the
//! test runs `--offline` on a machine whose registry cache holds only what
//! the build fetched — a fresh one included (the whole-graph form needed
//! every platform's crates in the cache, and failed there).

use std::process::Command;

fn version(text: &str) -> Vec<u64> {
    text.split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// The platform rustc builds for by default here (`rustc -vV`'s `host:`).
fn host_triple() -> String {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    assert!(out.status.success(), "rustc -vV failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names its host")
        .trim()
        .to_string()
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_we_claim() {
    let host = host_triple();
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let packages = meta["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "pmem-stack")
        .and_then(|p| p["rust_version"].as_str())
        .expect("pmem-stack declares rust-version");
    let too_new: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(ours)).then(|| format!("{} needs {needs}", p["name"]))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "Cargo.toml says rust-version {ours}, but {}",
        too_new.join(", ")
    );
    assert!(packages.len() > 50, "the whole locked graph was checked");
}
