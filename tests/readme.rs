//! The README's promises to a newcomer that a test can hold it to: every
//! `target/release/<binary>` (and `target/debug/<binary>`) it tells people to run is a
//! binary that the plain `cargo build` it gives before builds, i.e. a binary target of a
//! default workspace member; and the two commands it starts with exist.
//!
//! Reads the workspace through `cargo metadata` (no network: `--no-deps`, `--offline`).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeSet;
use std::process::Command;

/// Binary names the README tells people to run from the target directory.
fn binaries_named(readme: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["target/release/", "target/debug/"] {
        for (at, _) in readme.match_indices(prefix) {
            let name: String = readme[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The binary targets of the workspace's default members (what `cargo build` builds).
fn default_binaries() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--offline", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let defaults: BTreeSet<&str> = meta["workspace_default_members"]
        .as_array()
        .expect("workspace_default_members (cargo 1.71+)")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut bins = BTreeSet::new();
    for package in meta["packages"].as_array().expect("packages") {
        if !defaults.contains(package["id"].as_str().unwrap_or_default()) {
            continue;
        }
        for target in package["targets"].as_array().expect("targets") {
            let is_bin = target["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin"));
            if is_bin {
                bins.insert(target["name"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    bins
}

#[test]
fn every_binary_the_readme_runs_is_built_by_a_plain_cargo_build() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let named = binaries_named(&readme);
    assert!(named.contains("rockshard") && named.contains("rockshard-bench"), "{named:?}");
    let built = default_binaries();
    let missing: Vec<&String> = named.difference(&built).collect();
    assert!(missing.is_empty(), "README runs {missing:?}, which `cargo build` does not build (it builds {built:?})");
}

#[test]
fn the_readme_starts_with_the_broker_and_the_test_command() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let first_block = readme.split("```").nth(1).expect("a first code block");
    assert!(first_block.contains("cargo run --release -- broker"), "{first_block}");
    assert!(first_block.contains("tools/test-all"), "{first_block}");
    assert!(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/test-all")).exists());
}
