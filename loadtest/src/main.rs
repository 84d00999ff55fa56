//! The `sesame-loadtest` command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sesame_loadtest::rpc::{RpcArgs, RpcKind, run_rpc};
use sesame_loadtest::watch::{WatchArgs, run_idle, run_watch};

/// Load and latency measurements against a running Sesame server
/// (loopback only; every run is bounded and stops by itself).
#[derive(Debug, Parser)]
#[command(name = "sesame-loadtest", version)]
struct Cli {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:50051", global = true)]
    target: String,
    /// Admin API key (watches and submits).
    #[arg(
        long,
        env = "SESAME_LOADTEST_API_KEY",
        global = true,
        default_value = ""
    )]
    api_key: String,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Unary calls from concurrent callers: throughput, latency, errors.
    Rpc {
        /// Which calls.
        #[arg(long, value_enum, default_value_t = RpcKind::Get)]
        kind: RpcKind,
        /// Callers making calls one after the other.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// HTTP/2 connections the callers share.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Seconds of load (at most 300).
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Total calls per second; default: as fast as possible.
        #[arg(long)]
        rate: Option<u64>,
        /// Server pid, to report its resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Submits COUNT requests and prints their names, one per line (for
    /// tools like h2load that need a name to read).
    Seed {
        #[arg(long, default_value_t = 1)]
        count: u64,
    },
    /// Baseline: a minimal SQLite loop, a submit's three inserts per
    /// transaction (WAL, synchronous=FULL). Needs no server or key.
    SqliteBaseline {
        /// Database file (created).
        #[arg(long)]
        db: String,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
    },
    /// Baseline: a minimal tonic server (the health service only) for
    /// h2load. Needs no key; stops after the duration.
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:50999")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value_t = 60)]
        duration_secs: u64,
    },
    /// Watchers receive events while submits arrive at a fixed rate.
    Watch {
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Submits per second.
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// Seconds of load (at most 300).
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Server pid, to report its resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Submit requests (one applicant email each) for a later drain.
    MailEnqueue {
        #[arg(long, default_value_t = 1000)]
        requests: u64,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Wait until a worker has sent every pending email; report emails/s.
    MailDrain {
        /// How many emails the drain covers (for the rate).
        #[arg(long)]
        emails: u64,
        /// Give up after this many seconds (at most 600).
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Idle watchers: the server's memory per watcher.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        watchers: usize,
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Server pid (required: memory is read from /proc).
        #[arg(long)]
        server_pid: u32,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let needs_key = !matches!(
        cli.scenario,
        Scenario::SqliteBaseline { .. } | Scenario::EchoServer { .. }
    );
    if needs_key && cli.api_key.is_empty() {
        eprintln!("error: --api-key (or SESAME_LOADTEST_API_KEY) is required");
        return ExitCode::FAILURE;
    }
    let outcome = match cli.scenario {
        Scenario::Rpc {
            kind,
            concurrency,
            connections,
            duration_secs,
            rate,
            server_pid,
        } => {
            let args = RpcArgs {
                target: cli.target.clone(),
                api_key: cli.api_key.clone(),
                kind,
                concurrency,
                connections,
                duration: Duration::from_secs(duration_secs.clamp(1, 300)),
                rate,
                server_pid,
                progress: true,
            };
            run_rpc(&args).await.map(|report| {
                if cli.json {
                    serde_json::to_string_pretty(&report).expect("report serializes")
                } else {
                    format!(
                        "{:?} x{} over {} connections: {} ok of {} calls in {:.1}s = {:.0}/s; errors {:?}\nlatency: {}",
                        report.kind,
                        report.concurrency,
                        report.connections,
                        report.ok,
                        report.calls,
                        report.seconds,
                        report.calls_per_s,
                        report.errors,
                        report.latency,
                    )
                }
            })
        }
        Scenario::Seed { count } => {
            sesame_loadtest::rpc::seed(&cli.target, &cli.api_key, count.clamp(1, 10_000))
                .await
                .map(|names| names.join("\n"))
        }
        Scenario::SqliteBaseline { db, duration_secs } => sesame_loadtest::baseline::sqlite_loop(
            &db,
            Duration::from_secs(duration_secs.clamp(1, 300)),
        )
        .await
        .map(|report| serde_json::to_string_pretty(&report).expect("report serializes")),
        Scenario::EchoServer {
            listen,
            duration_secs,
        } => sesame_loadtest::baseline::echo_server(
            listen,
            Duration::from_secs(duration_secs.clamp(1, 600)),
        )
        .await
        .map(|()| "echo server stopped".to_owned()),
        Scenario::Watch {
            watchers,
            connections,
            rate,
            duration_secs,
            server_pid,
        } => {
            let args = WatchArgs {
                target: cli.target.clone(),
                api_key: cli.api_key.clone(),
                watchers,
                connections,
                rate,
                duration: Duration::from_secs(duration_secs.clamp(1, 300)),
                server_pid,
            };
            run_watch(&args).await.map(|report| {
                if cli.json {
                    serde_json::to_string_pretty(&report).expect("report serializes")
                } else {
                    format!(
                        "watchers={} rate={}/s submitted={} errors={:?} delivered={}/{} ({:.0}/s)\n\
                         change-to-receipt: {}\nbaseline health rtt: {}\n\
                         p50 x{:.1} p99 x{:.1} of baseline; server rss {:?} -> {:?} KiB",
                        report.watchers,
                        report.target_rate_per_s,
                        report.submitted,
                        report.submit_errors,
                        report.delivered,
                        report.expected_deliveries,
                        report.delivered_per_s,
                        report.latency,
                        report.baseline_health_rtt,
                        report.p50_vs_baseline,
                        report.p99_vs_baseline,
                        report.server_rss_kib_before,
                        report.server_rss_kib_after,
                    )
                }
            })
        }
        Scenario::MailEnqueue {
            requests,
            concurrency,
        } => sesame_loadtest::mail::enqueue(&cli.target, &cli.api_key, requests, concurrency)
            .await
            .map(|report| serde_json::to_string_pretty(&report).expect("report serializes")),
        Scenario::MailDrain {
            emails,
            timeout_secs,
        } => sesame_loadtest::mail::drain(
            &cli.target,
            &cli.api_key,
            emails,
            Duration::from_secs(timeout_secs.clamp(1, 600)),
        )
        .await
        .map(|report| serde_json::to_string_pretty(&report).expect("report serializes")),
        Scenario::Idle {
            watchers,
            connections,
            server_pid,
        } => run_idle(&cli.target, &cli.api_key, watchers, connections, server_pid)
            .await
            .map(|report| {
                if cli.json {
                    serde_json::to_string_pretty(&report).expect("report serializes")
                } else {
                    format!(
                        "idle watchers={} server rss {} -> {} KiB: {:.1} KiB per watcher",
                        report.watchers,
                        report.server_rss_kib_before,
                        report.server_rss_kib_after,
                        report.kib_per_watcher
                    )
                }
            }),
    };
    match outcome {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
