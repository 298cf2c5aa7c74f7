//! `rust-version` in Cargo.toml is a promise: the project builds with that
//! Rust. This machine has one toolchain, so the promise is checked the other
//! way round: no locked dependency (build, test or bench) may declare a newer
//! minimum than the one we state. A dependency update that raises the floor
//! fails here, naming the crate, instead of failing a user's older toolchain.

use std::process::Command;

fn version(text: &str) -> Vec<u64> {
    text.split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_we_claim() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
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
