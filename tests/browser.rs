//! The web faces tested in a real browser: runs `node --test` on
//! `web/test/*.test.mjs` (Debian's Chromium driven by playwright-core,
//! against this build's `blindpass serve`), and the size budget of the
//! built bundle.
//!
//! Needs `node`, `chromium` (or `CHROMIUM=path`), `ffmpeg` and
//! `web/node_modules` (`npm ci` in `web/`; `.ci/run` sets all of it up).
//! Under `CI=true` a missing one fails the test; elsewhere the test is
//! skipped with the reason printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn on_path(program: &str, version_flag: &str) -> bool {
    Command::new(program)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What is missing to run the browser tests, if anything.
fn missing(web: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !on_path("node", "--version") {
        missing.push("node (apt-get install nodejs npm)".to_owned());
    }
    if !on_path("ffmpeg", "-version") {
        missing.push("ffmpeg (apt-get install ffmpeg)".to_owned());
    }
    if !chromium().exists() {
        missing.push(format!(
            "{} (apt-get install chromium, or set CHROMIUM)",
            chromium().display()
        ));
    }
    if !web.join("node_modules/playwright-core").is_dir() {
        missing.push("web/node_modules (run `npm ci` in web/)".to_owned());
    }
    missing
}

#[test]
fn web_faces_in_chromium() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let missing = missing(&web);
    if !missing.is_empty() {
        let reason = format!("browser tests need: {}", missing.join(", "));
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipped: {reason}");
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(web.join("test"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no web/test/*.test.mjs");
    let output = Command::new("node")
        .arg("--test")
        .args(&files)
        .current_dir(&web)
        .env("BLINDPASS_BIN", env!("CARGO_BIN_EXE_blindpass"))
        .env("CHROMIUM", chromium())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "node --test failed:\n{stdout}\n{stderr}"
    );
}
