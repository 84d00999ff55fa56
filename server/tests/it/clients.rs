//! The Python and TypeScript client suites (`clients/*/test.sh`), run
//! against this build's `sesame` binary, so that `cargo test --workspace`
//! runs every test of the repository. Each suite installs its pinned
//! dependencies from PyPI / the npm registry on first use; a missing
//! python3 or npm fails the test, it is never skipped.

use std::path::Path;
use std::process::Command;

/// Runs `clients/NAME/test.sh` and returns its output; panics with the
/// output when the suite fails.
fn run_suite(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let script = root.join("clients").join(name).join("test.sh");
    let output = Command::new("bash")
        .arg(&script)
        .env("SESAME_BIN", env!("CARGO_BIN_EXE_sesame"))
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
        "the {name} client suite failed:\n{text}"
    );
    text
}

/// Both suites in one test, one after the other: each starts its own
/// servers, and running them side by side would only add noise.
#[test]
fn python_and_typescript_clients_pass_their_suites() {
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
    println!(
        "python client: {} passed; {}",
        passed.unwrap_or_default(),
        typescript
            .lines()
            .find(|line| line.starts_with("# pass "))
            .unwrap_or("")
    );
}
