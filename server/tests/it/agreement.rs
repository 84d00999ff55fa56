//! The five clients agree: each client's `agreement` example (Rust, Python,
//! TypeScript, Go, Java) runs one scripted scenario against one server, and
//! the normalized JSON documents they print must be equal to each other and
//! to [`expected`], what the API promises (so five programs wrong in the same
//! way cannot pass). The scenario: submit with a request id twice, list,
//! approve with the etag, approve again with the stale etag, read the
//! request's events from a watch opened before the first submit, and one
//! invalid submit. Each client is installed and built the way its `test.sh`
//! does it; a missing toolchain fails the test, it is never skipped.

// The Rust scenario runs in-process, from the example's own source.
#[path = "../../../clients/rust/examples/agreement.rs"]
#[allow(dead_code)] // its `main` runs it as an example; here `scenario` is called
mod rust_agreement;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::runtime::Runtime;

use crate::clients::lock_client_folders;
use crate::harness::{Backend, TestServer};

/// How long installing or building one client may take (the first time, its
/// dependencies are downloaded).
const SETUP_LIMIT: Duration = Duration::from_secs(15 * 60);
/// How long one client's run of the scenario may take.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);

/// The document every client must print: names, etags, cursors and sequences
/// are replaced by relations (`retry_same_name`...), the rest is what the
/// server answers to the harness's keys `admin` and `alice` (the submitter).
fn expected() -> Value {
    json!({
        "submit": {
            "name": "accessRequests/{uuid}",
            "state": "ACCESS_REQUEST_STATE_PENDING",
            "submitter": "alice",
            "request_id_echoed": true,
            "resource_echoed": true,
            "retry_same_name": true,
            "retry_same_etag": true,
            "retry_state": "ACCESS_REQUEST_STATE_PENDING",
        },
        "list": {
            "this_run": 1,
            "this_run_is_the_submitted": true,
        },
        "approve": {
            "state": "ACCESS_REQUEST_STATE_APPROVED",
            "same_name": true,
            "etag_changed": true,
            "decided_by": "admin",
            "gateway_code": "GATEWAY_CODE_STATE_ACTIVE",
        },
        "approve_stale_etag": {
            "code": "ABORTED",
            "reason": "ETAG_MISMATCH",
            "message": "the etag does not match the current version of the access request: read it again and retry",
        },
        "watch": {
            "event_types": [
                "EVENT_TYPE_REQUEST_SUBMITTED",
                "EVENT_TYPE_REQUEST_APPROVED",
                "EVENT_TYPE_CODE_ISSUED",
            ],
            "actors": ["alice", "admin", "admin"],
            "states": [
                "ACCESS_REQUEST_STATE_PENDING",
                "ACCESS_REQUEST_STATE_APPROVED",
                "ACCESS_REQUEST_STATE_APPROVED",
            ],
            "same_as_audit_trail": true,
        },
        "invalid_submit": {
            "code": "INVALID_ARGUMENT",
            "reason": "INVALID_ARGUMENT",
            "message": "2 invalid fields: applicant.email: is required; justification: must be at most 2000 characters, got 2001",
            "field_violations": [
                {"field": "applicant.email", "description": "is required"},
                {"field": "justification", "description": "must be at most 2000 characters, got 2001"},
            ],
        },
    })
}

/// One client's document and how long it took.
struct Outcome {
    client: &'static str,
    document: Value,
    setup: Duration,
    scenario: Duration,
}

#[test]
fn the_five_clients_agree_on_one_scenario() {
    // Installs and builds in the clients' folders, as the suites do.
    let _folders = lock_client_folders();
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let server = runtime.block_on(TestServer::start(Backend::Sqlite));
    let outcomes = run_every_client(&runtime, &server);
    runtime.block_on(server.stop());

    let reference = &outcomes[0];
    for outcome in &outcomes[1..] {
        if let Some(difference) = first_difference(
            (reference.client, &reference.document),
            (outcome.client, &outcome.document),
            "",
        ) {
            panic!(
                "the {} client disagrees with the {} client at {difference}\n{}:\n{}\n{}:\n{}",
                outcome.client,
                reference.client,
                reference.client,
                pretty(&reference.document),
                outcome.client,
                pretty(&outcome.document)
            );
        }
    }
    if let Some(difference) = first_difference(
        ("the expected document", &expected()),
        ("the five clients", &reference.document),
        "",
    ) {
        panic!(
            "the five clients agree, but not with the expected document, at {difference}\n{}",
            pretty(&reference.document)
        );
    }
    println!("{}", pretty(&reference.document));
    let timings: Vec<String> = outcomes
        .iter()
        .map(|outcome| {
            format!(
                "{} {:.1}s (+ {:.1}s setup)",
                outcome.client,
                outcome.scenario.as_secs_f64(),
                outcome.setup.as_secs_f64()
            )
        })
        .collect();
    println!(
        "the five clients agree with each other and with the expected document: {}; {:.1}s in all",
        timings.join(", "),
        started.elapsed().as_secs_f64()
    );
}

/// Runs the scenario in every client against `server`, one after the
/// other: Rust in-process, the others as programs, each installed and built
/// first. Panics when one fails or prints no JSON document.
fn run_every_client(runtime: &Runtime, server: &TestServer) -> Vec<Outcome> {
    let clients_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("clients");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let url = format!("http://{}", server.addr);
    // One run id per client keeps their requests apart on the one server.
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let run_id = |client: &str| format!("{client}-{stamp}");

    let clock = Instant::now();
    let rust = runtime
        .block_on(rust_agreement::scenario(
            &url,
            &server.keys.admin,
            &server.keys.alice,
            &run_id("rust"),
        ))
        .unwrap_or_else(|error| panic!("the rust scenario failed: {error}"));
    let mut outcomes = vec![Outcome {
        client: "rust",
        // Through text, as the other clients' documents come.
        document: serde_json::from_str(&rust.to_string()).expect("rust document"),
        setup: Duration::ZERO,
        scenario: clock.elapsed(),
    }];

    for client in ["python", "typescript", "go", "java"] {
        let dir = clients_dir.join(client);
        let clock = Instant::now();
        let mut command = match client {
            "python" => prepare_python(&dir),
            "typescript" => prepare_typescript(&dir),
            "go" => prepare_go(&dir, scratch.path()),
            _ => prepare_java(&dir),
        };
        let setup = clock.elapsed();
        command
            .env("SESAME_URL", &url)
            .env("SESAME_ADMIN_KEY", &server.keys.admin)
            .env("SESAME_SUBMITTER_KEY", &server.keys.alice)
            .env("SESAME_RUN", run_id(client));
        let clock = Instant::now();
        let stdout = run_step(&format!("the {client} scenario"), command, SCENARIO_LIMIT);
        let document = serde_json::from_str(&stdout).unwrap_or_else(|error| {
            panic!("the {client} scenario printed no JSON document ({error}):\n{stdout}")
        });
        outcomes.push(Outcome {
            client,
            document,
            setup,
            scenario: clock.elapsed(),
        });
    }
    outcomes
}

/// Creates `.venv` if it is missing and installs the client into it, as
/// `clients/python/test.sh` does; returns the command running the scenario.
fn prepare_python(dir: &Path) -> Command {
    let python = dir.join(".venv/bin/python");
    if !python.exists() {
        let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        setup(
            "python",
            command(system_python, &["-m", "venv", ".venv"], dir),
        );
    }
    let install = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-e",
        ".",
    ];
    setup("python", command(&python, &install, dir));
    command(&python, &["examples/agreement.py"], dir)
}

/// Installs the locked dependencies if `node_modules` is missing, then
/// compiles the package and its tests and examples, as
/// `clients/typescript/test.sh` does (without emptying `node_modules`).
fn prepare_typescript(dir: &Path) -> Command {
    if !dir.join("node_modules").exists() {
        setup(
            "typescript",
            command("npm", &["ci", "--no-audit", "--no-fund"], dir),
        );
    }
    setup("typescript", command("npm", &["run", "build"], dir));
    setup("typescript", command("npm", &["run", "build:test"], dir));
    command("node", &["dist-test/examples/agreement.js"], dir)
}

/// Builds the example with the modules pinned in `go.sum`, as
/// `clients/go/test.sh` builds the client (one job at a time, no go.work).
fn prepare_go(dir: &Path, scratch: &Path) -> Command {
    let binary = scratch.join("agreement-go");
    let mut build = command("go", &["build", "-o"], dir);
    build.arg(&binary).arg("./examples/agreement");
    let mut flags = std::env::var("GOFLAGS").unwrap_or_default();
    if !format!(" {flags} ").contains(" -p=") {
        flags.push_str(" -p=1");
    }
    build.env("GOFLAGS", flags.trim()).env("GOWORK", "off");
    setup("go", build);
    command(&binary, &[], dir)
}

/// Compiles the client with Maven and writes its class path, as the
/// README's quickstart does; the scenario runs with Java's source launcher.
fn prepare_java(dir: &Path) -> Command {
    let maven = [
        "-q",
        "-B",
        "-Dstyle.color=never",
        "compile",
        "dependency:build-classpath",
        "-Dmdep.outputFile=target/classpath",
    ];
    setup("java", command("mvn", &maven, dir));
    let dependencies = std::fs::read_to_string(dir.join("target/classpath"))
        .expect("mvn dependency:build-classpath wrote target/classpath");
    let class_path = format!("target/classes:{}", dependencies.trim());
    command(
        "java",
        &["-cp", &class_path, "examples/Agreement.java"],
        dir,
    )
}

/// `program` with `args`, in `dir`.
fn command(program: impl AsRef<OsStr>, args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    command
}

/// Runs one install or build step of `client`.
fn setup(client: &str, command: Command) {
    let what = format!(
        "setting up the {client} client ({} {})",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    run_step(&what, command, SETUP_LIMIT);
}

/// Runs `command` and returns its stdout; panics with its output when it
/// cannot start (a missing toolchain), fails, or runs longer than `limit`.
fn run_step(what: &str, mut command: Command, limit: Duration) -> String {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        // Its own process group, so that a timeout stops its children too.
        .process_group(0);
    let mut child = command.spawn().unwrap_or_else(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            panic!(
                "{what}: `{program}` was not found. This test needs python3 (with venv), node and \
                 npm, go, java and mvn on PATH (.ci/run installs them); it is never skipped"
            );
        }
        panic!("{what}: could not start `{program}`: {error}")
    });
    let stdout = read_all(child.stdout.take().expect("piped stdout"));
    let stderr = read_all(child.stderr.take().expect("piped stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if started.elapsed() > limit {
            // The whole group: npm, mvn and go start children of their own.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    match status {
        None => panic!("{what} took longer than {limit:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"),
        Some(status) if !status.success() => {
            panic!("{what} failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}")
        }
        Some(_) => stdout,
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Where two named documents first differ: the JSON pointer and both values.
fn first_difference(
    (left_name, left): (&str, &Value),
    (right_name, right): (&str, &Value),
    path: &str,
) -> Option<String> {
    let describe = |at: &str, left: Option<&Value>, right: Option<&Value>| {
        let show =
            |value: Option<&Value>| value.map_or_else(|| "nothing".to_owned(), Value::to_string);
        let at = if at.is_empty() { "/" } else { at };
        format!(
            "{at}: {left_name} has {}, {right_name} has {}",
            show(left),
            show(right)
        )
    };
    match (left, right) {
        (Value::Object(left_map), Value::Object(right_map)) => {
            let keys: BTreeSet<&String> = left_map.keys().chain(right_map.keys()).collect();
            keys.into_iter().find_map(|key| {
                let here = format!("{path}/{key}");
                match (left_map.get(key), right_map.get(key)) {
                    (Some(left_value), Some(right_value)) => {
                        first_difference((left_name, left_value), (right_name, right_value), &here)
                    }
                    (left_value, right_value) => Some(describe(&here, left_value, right_value)),
                }
            })
        }
        (Value::Array(left_items), Value::Array(right_items)) => left_items
            .iter()
            .zip(right_items)
            .enumerate()
            .find_map(|(index, (left_item, right_item))| {
                first_difference(
                    (left_name, left_item),
                    (right_name, right_item),
                    &format!("{path}/{index}"),
                )
            })
            .or_else(|| {
                (left_items.len() != right_items.len())
                    .then(|| describe(path, Some(left), Some(right)))
            }),
        _ if left == right => None,
        _ => Some(describe(path, Some(left), Some(right))),
    }
}

fn pretty(document: &Value) -> String {
    serde_json::to_string_pretty(document).expect("a JSON value prints")
}
