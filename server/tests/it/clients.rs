//! The Python, TypeScript, Go and Java client suites (`clients/*/test.sh`), run
//! against this build's `sesame` binary, so that `cargo test --workspace`
//! runs every test of the repository. Each suite installs its pinned
//! dependencies from PyPI / the npm registry / the Go module proxy / Maven
//! Central on first use; a missing python3, npm, go or mvn fails the test,
//! it is never skipped.

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Held by every test that installs or builds in the clients' folders
/// (`.venv`, `node_modules`, `dist`, `target`...): `npm ci` empties
/// `node_modules` and `mvn` rewrites `target/classes`, so two tests must not
/// do it side by side.
static CLIENT_FOLDERS: Mutex<()> = Mutex::new(());

/// Waits for the clients' folders (see [`CLIENT_FOLDERS`]); a test that
/// failed while holding them does not keep the next one out.
pub fn lock_client_folders() -> MutexGuard<'static, ()> {
    CLIENT_FOLDERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Runs `clients/NAME/test.sh` and returns its output; panics with the
/// output when the suite fails.
fn run_suite(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = root.join("clients").join(name).join("test.sh");
    run_test_script(&script, &format!("the {name} client suite"), &[])
}

/// Runs a suite's `test.sh` (a path below the repository) against this
/// build's `sesame` binary (`SESAME_BIN`), with `env` added, and returns
/// its output; panics with the output when `what` fails.
pub fn run_test_script(script: &Path, what: &str, env: &[(&str, &str)]) -> String {
    let output = Command::new("bash")
        .arg(script)
        .env("SESAME_BIN", env!("CARGO_BIN_EXE_sesame"))
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .unwrap_or_else(|error| panic!("could not run {}: {error}", script.display()));
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// The suites in one test, one after the other: each starts its own
/// servers, and running them side by side would only add noise.
#[test]
fn python_typescript_go_and_java_clients_pass_their_suites() {
    let _folders = lock_client_folders();
    let python = run_suite("python");
    let passed = python
        .lines()
        .rev()
        .find_map(|line| {
            line.split(" passed")
                .next()
                .filter(|_| line.contains(" passed"))
        })
        .map(|head| head.trim_start_matches(['=', ' ']).to_owned());
    assert!(
        passed
            .as_deref()
            .is_some_and(|count| count.parse::<u32>().is_ok_and(|n| n > 0)),
        "pytest reported no passed tests:\n{python}"
    );
    assert!(
        !python.contains(" skipped"),
        "nothing may be skipped:\n{python}"
    );

    let typescript = run_suite("typescript");
    assert!(typescript.contains("# fail 0"), "{typescript}");
    assert!(typescript.contains("# skipped 0"), "{typescript}");
    assert!(!typescript.contains("# pass 0\n"), "{typescript}");

    let go = run_suite("go");
    let summary = go
        .lines()
        .find(|line| line.starts_with("go client: "))
        .unwrap_or_else(|| panic!("clients/go/test.sh printed no summary:\n{go}"));
    assert!(summary.ends_with(" 0 failed, 0 skipped"), "{go}");
    assert!(!summary.starts_with("go client: 0 passed"), "{go}");

    let java = run_suite("java");
    let java_summary = java
        .lines()
        .rev()
        .find(|line| line.starts_with("Tests run: "))
        .unwrap_or_else(|| panic!("the java suite printed no Surefire summary:\n{java}"));
    assert!(
        java_summary.ends_with("Failures: 0, Errors: 0, Skipped: 0"),
        "{java}"
    );
    assert!(!java_summary.starts_with("Tests run: 0,"), "{java}");
    println!(
        "python client: {} passed; typescript client: {}; {summary}; java client: {java_summary}",
        passed.unwrap_or_default(),
        typescript
            .lines()
            .find(|line| line.starts_with("# pass "))
            .unwrap_or("")
    );
}
