//! The web UI in a real browser: `node --test tests/ui/` drives Debian's Chromium through
//! playwright-core against this build's binary (each test file starts its own servers).
//! `tests/run` installs Chromium and the npm package when they are missing; screenshots of
//! every page land in `target/ui-screenshots/`.

use std::path::Path;
use std::process::Command;

use crate::helpers::repo_file;

const CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn the_web_ui_works_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run `bash tests/run` once (it installs Debian's chromium), \
         or set CHROMIUM to a Chromium binary"
    );
    let ui = repo_file("tests/ui");
    if !ui.join("node_modules/playwright-core").exists() {
        let installed = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&ui)
            .status()
            .expect("npm runs (Node.js 20 or newer is needed for the browser tests)");
        assert!(installed.success(), "npm ci in tests/ui failed");
    }
    let output = Command::new("node")
        .args(["--test", "--test-concurrency=1", "tests/ui/"])
        .current_dir(repo_file(""))
        .env("UI_TEST_BINARY", env!("CARGO_BIN_EXE_zerostate"))
        .env("UI_TEST_SCREENSHOTS", repo_file("target/ui-screenshots"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "browser tests failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The runner's summary: every test ran and passed, and there were some.
    let count = |label: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {label} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
    };
    for none in ["fail", "cancelled", "skipped", "todo"] {
        assert_eq!(count(none), Some(0), "{none}: {report}");
    }
    assert!(count("pass").is_some_and(|n| n >= 10), "{report}");
}
