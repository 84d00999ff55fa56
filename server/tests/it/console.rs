//! The console's own tests, so that `cargo test --workspace` runs them: its
//! unit tests (vitest, in `console/`) and its browser tests
//! (`console/e2e/test.sh`: Playwright with Debian's chromium, a real SMTP
//! server, `sesame serve` on SQLite) against this build's `sesame` binary.
//! A missing npm, chromium or python3 aiosmtpd fails the test; it is never
//! skipped. Each test installs in its own folder (`console/node_modules`,
//! `console/e2e/node_modules`): no lock is needed between them.

use std::path::Path;
use std::process::Command;

use crate::clients::run_test_script;

/// `npm ci` then `npm test` (vitest) in `console/`: the UI's own logic.
#[test]
fn console_unit_tests_pass() {
    let console = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("console");
    let run = |args: &[&str]| {
        let output = Command::new("npm")
            .args(args)
            .current_dir(&console)
            .env("CI", "1")
            .env("NO_COLOR", "1")
            .env_remove("FORCE_COLOR")
            .output()
            .unwrap_or_else(|error| panic!("could not run npm (is Node installed?): {error}"));
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "npm {args:?} failed:\n{text}");
        text
    };
    run(&["ci", "--no-audit", "--no-fund"]);
    let text = without_colours(&run(&["test"]));
    // vitest's summary: "Tests  55 passed (55)"; nothing skipped or failed.
    let tests = text
        .lines()
        .find(|line| line.trim_start().starts_with("Tests "))
        .unwrap_or_else(|| panic!("no vitest summary:\n{text}"));
    assert!(
        tests.contains(" passed") && !tests.contains("skipped") && !tests.contains("failed"),
        "{tests}"
    );
}

/// `text` without its ANSI colour sequences (`ESC [ ... m`), should a
/// tool colour its output anyway.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for end in chars.by_ref() {
                if end.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn console_browser_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = root.join("console").join("e2e").join("test.sh");
    let text = run_test_script(&script, "the console's browser tests", &[("CI", "1")]);
    // Playwright's list reporter ends with "N passed"; nothing may be skipped.
    let passed = text
        .lines()
        .find_map(|line| line.trim().strip_suffix(" passed").map(str::to_owned))
        .or_else(|| {
            text.lines().find_map(|line| {
                let line = line.trim();
                line.contains(" passed (")
                    .then(|| line.split(" passed").next().unwrap_or("").to_owned())
            })
        });
    assert!(
        passed.is_some_and(|count| count.trim().parse::<u32>().is_ok_and(|n| n > 0)),
        "Playwright reported no passed tests:\n{text}"
    );
    for word in [" skipped", " flaky", " did not run"] {
        assert!(!text.contains(word), "nothing may be{word}:\n{text}");
    }
}
