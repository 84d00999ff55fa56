//! The console's browser tests (`console/e2e/test.sh`: Playwright with
//! Debian's chromium, a real SMTP server, `sesame serve` on SQLite), run
//! against this build's `sesame` binary so that `cargo test --workspace`
//! runs them. A missing npm, chromium or python3 aiosmtpd fails the test; it
//! is never skipped. `console/e2e` is this test's folder alone: no lock.

use std::path::Path;
use std::process::Command;

#[test]
fn console_browser_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = root.join("console").join("e2e").join("test.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("SESAME_BIN", env!("CARGO_BIN_EXE_sesame"))
        .env("CI", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|error| panic!("could not run {}: {error}", script.display()));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the console's browser tests failed:\n{text}"
    );
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
