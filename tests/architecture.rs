//! Architecture invariants that a grep can check (see docs/architecture.md):
//! each outside dependency is used only by the module that owns it.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files under src/ that mention `needle` in code (doc comments ignored).
fn users_of(needle: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut users: Vec<String> = files
        .into_iter()
        .filter(|f| {
            fs::read_to_string(f).unwrap().lines().any(|line| {
                let code = line.trim_start();
                !code.starts_with("//") && code.contains(needle)
            })
        })
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect();
    users.sort();
    users
}

fn assert_only_under(needle: &str, allowed: &[&str]) {
    let users = users_of(needle);
    assert!(!users.is_empty() || needle.is_empty());
    for user in &users {
        assert!(
            allowed.iter().any(|a| user.starts_with(a)),
            "{user} uses `{needle}`, which only {allowed:?} may"
        );
    }
}

#[test]
fn the_checker_finds_what_is_there() {
    // Shows the scan can fail: sled *is* used, and only where expected.
    assert_eq!(users_of("sled::"), vec!["src/store/mod.rs".to_owned()]);
}

#[test]
fn only_http_knows_axum() {
    assert_only_under("axum::", &["src/http/"]);
}

#[test]
fn only_store_knows_sled() {
    assert_only_under("sled::", &["src/store/"]);
}

#[test]
fn only_the_scheduler_knows_the_cron_crate() {
    assert_only_under("tokio_cron_scheduler", &["src/scheduler.rs"]);
}

#[test]
fn only_cli_reads_the_environment_and_argv() {
    assert_only_under("std::env::", &["src/cli/"]);
    assert_only_under("clap::", &["src/cli/"]);
}

#[test]
fn protocol_and_crypto_do_no_io_and_no_logging() {
    for needle in ["std::fs", "tracing::", "std::net", "tokio::"] {
        for user in users_of(needle) {
            assert!(
                !user.starts_with("src/protocol/") && !user.starts_with("src/crypto/"),
                "{user} uses {needle}"
            );
        }
    }
}

#[test]
fn only_the_witness_module_builds_cosignatures() {
    // One implementation of cosignature/v1, used by the witness, the
    // issuer's collector and every client's quorum check.
    assert_only_under("cosignature/v1", &["src/witness/"]);
}
