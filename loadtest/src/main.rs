//! The `sesame-loadtest` command line.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use sesame_loadtest::mail::{MailArgs, run_mail};
use sesame_loadtest::rpc::{RpcArgs, RpcKind, run_rpc};
use sesame_loadtest::scale;
use sesame_loadtest::watch::{WatchArgs, run_idle, run_watch};

/// Load and latency measurements against a running Sesame server
/// (loopback only; every run is bounded and stops by itself).
#[derive(Debug, Parser)]
#[command(name = "sesame-loadtest", version)]
struct Cli {
    /// Server URL.
    #[arg(long, default_value = "http://127.0.0.1:50051", global = true)]
    target: String,
    /// Admin API key.
    #[arg(
        long,
        env = "SESAME_LOADTEST_API_KEY",
        global = true,
        default_value = "",
        hide_env_values = true
    )]
    api_key: String,
    /// Print the report as JSON (progress lines still go to stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

/// The options every unary scenario takes.
#[derive(Debug, Args)]
struct Load {
    /// Callers, each with one call in flight at most.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP/2 connections the callers share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// How long to load: `30s`, `500ms`, `2m` or seconds (at most 5 minutes).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Open loop: total calls per second, latency measured from each
    /// call's scheduled send time. Default: closed loop, as fast as the
    /// callers go.
    #[arg(long)]
    rate: Option<u64>,
    /// Server pid, to report its resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Every call's deadline (`grpc-timeout`): `1s`, `500ms`; calls past it
    /// count as failed (DEADLINE_EXCEEDED). Default: none.
    #[arg(long, value_parser = parse_duration)]
    deadline: Option<Duration>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// SubmitAccessRequest, each a new request.
    Submit(Load),
    /// GetAccessRequest by name, over 200 requests submitted first.
    Get(Load),
    /// ListAccessRequests, first page of 20.
    List {
        #[command(flatten)]
        load: Load,
        /// `all`; `pending`: state PENDING; `applicant`: one applicant's
        /// requests (load7@example.com, found through the blind index).
        #[arg(long, default_value = "all", value_parser = ["all", "pending", "applicant"])]
        filter: String,
    },
    /// ApproveAccessRequest, each on a request submitted just before (closed
    /// loop: only the approval is timed; open loop: from the scheduled time,
    /// the submit included).
    Approve(Load),
    /// 70 % get, 20 % list, 10 % submit.
    Mixed(Load),
    /// Watchers receive events while submits arrive at a fixed rate:
    /// commit-to-receipt latency, delivered events/s, every event checked
    /// to reach every watcher once and in order.
    Watch {
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        /// HTTP/2 connections the watchers share.
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Submits per second (open loop).
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// How long submits arrive (at most 5 minutes).
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Server pid, to report its resident memory and CPU time.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Health round trips timed first, the floor the latencies are
        /// compared with (0: none).
        #[arg(long, default_value_t = 2000)]
        baseline_calls: u32,
    },
    /// Idle watchers: the server's resident memory per watcher.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        watchers: usize,
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Server pid (required: memory is read from /proc).
        #[arg(long)]
        server_pid: u32,
    },
    /// Queue emails (one per submitted request, with no worker running),
    /// start WORKER, wait for the drain into an SMTP sink: emails/s, and
    /// every Message-ID in the sink's dump checked against the emails sent.
    Mail {
        /// Requests to submit (one applicant email each; 1 to 1,000,000).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        emails: u64,
        /// Submits in flight while queuing.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// The sink's dump file (`smtp-sink -D FILE`), checked after the drain.
        #[arg(long)]
        sink_dump: Option<std::path::PathBuf>,
        /// Give up on the drain after this long (at most 10 minutes).
        #[arg(long, default_value = "300s", value_parser = parse_duration)]
        timeout: Duration,
        /// Server pid, to report its resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
        /// The worker command, started once the emails are queued and
        /// stopped after the drain (e.g. `-- sesame worker`); none: a
        /// worker already running drains them.
        #[arg(last = true)]
        worker: Vec<String>,
    },
    /// Submits COUNT requests (1 to 1,000,000), each for an applicant of
    /// its own (`load{TAG}@example.com`, tags from --first-tag on) with the
    /// idempotency key `seed-{TAG}`, and
    /// prints their names, one per line (for tools like h2load that need a
    /// name to read), or with --quiet only how long it took; progress goes
    /// to stderr. The server's rate limits must allow it
    /// (SESAME_RATE_LIMIT_PER_KEY=0).
    Seed {
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        count: u64,
        /// The first applicant's tag: seed again from where a previous
        /// seed stopped to keep every applicant distinct.
        #[arg(long, default_value_t = 0)]
        first_tag: u64,
        /// Submits in flight at once.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// HTTP/2 connections they share.
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Print no names.
        #[arg(long)]
        quiet: bool,
    },
    /// Scale: walks ListAccessRequests (every state, newest first) page by
    /// page to the last page: the deepest tenth of the pages against the
    /// first tenth.
    Pages {
        /// Rows per page (the server serves at most 500).
        #[arg(long, default_value_t = 500)]
        page_size: i32,
        #[arg(long, default_value_t = 10_000)]
        max_pages: usize,
        /// Stop after this long (at most 10 minutes).
        #[arg(long, default_value = "300s", value_parser = parse_duration)]
        limit: Duration,
    },
    /// Scale: WatchEvents replayed from the first event of the log until
    /// the stream catches up (its first heartbeat): events/s by tenth of
    /// the replay, every sequence checked, the server's memory sampled.
    Replay {
        /// Server pid, to sample its resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Give up after this long (at most 30 minutes).
        #[arg(long, default_value = "600s", value_parser = parse_duration)]
        limit: Duration,
    },
    /// Scale: VerifyAuditChain over the whole log, call after call, then
    /// raw SHA-256 chaining of as many events in this process: the ratio
    /// of the two.
    Verify {
        /// Bytes of an event's canonical form (its hashed fields), for the
        /// raw chaining baseline: the log's average (loadtest/scale.sh
        /// reads it from the database).
        #[arg(long, default_value_t = 300)]
        event_bytes: usize,
        /// Give up after this long (at most 30 minutes).
        #[arg(long, default_value = "600s", value_parser = parse_duration)]
        limit: Duration,
    },
    /// Scale: EraseSubject for the applicants of seeded requests (tags
    /// --first-tag to --first-tag + --count).
    Erase {
        #[arg(long, default_value_t = 0)]
        first_tag: u64,
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        count: u64,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// Give up after this long (at most 30 minutes).
        #[arg(long, default_value = "600s", value_parser = parse_duration)]
        limit: Duration,
    },
    /// Baseline: a minimal SQLite loop, a submit's three inserts per
    /// transaction (WAL, synchronous=FULL). Needs no server or key.
    SqliteBaseline {
        /// Database file (created).
        #[arg(long)]
        db: String,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Baseline: a minimal tonic server (the health service only) for
    /// h2load. Needs no key; stops after the duration.
    EchoServer {
        #[arg(long, default_value = "127.0.0.1:50999")]
        listen: std::net::SocketAddr,
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        duration: Duration,
    },
}

/// `30s`, `500ms`, `2m`, `1h` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m or h)")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} is not a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `duration`, at most `limit`.
fn bounded(duration: Duration, limit: u64) -> Duration {
    duration.min(Duration::from_secs(limit))
}

/// The scale and baseline reports, always JSON.
fn json<T: Serialize>(report: &T) -> String {
    serde_json::to_string_pretty(report).expect("report serializes")
}

fn render<T: Serialize + std::fmt::Display>(report: &T, json: bool) -> String {
    if json {
        self::json(report)
    } else {
        report.to_string()
    }
}

async fn run_load(cli: &Cli, kind: RpcKind, load: &Load) -> anyhow::Result<String> {
    let args = RpcArgs {
        target: cli.target.clone(),
        api_key: cli.api_key.clone(),
        kind,
        concurrency: load.concurrency,
        connections: load.connections,
        duration: bounded(load.duration, 300),
        rate: load.rate,
        server_pid: load.server_pid,
        progress: true,
        deadline: load.deadline,
    };
    let report = run_rpc(&args).await?;
    Ok(render(&report, cli.json))
}

async fn run(cli: &Cli) -> anyhow::Result<String> {
    match &cli.scenario {
        Scenario::Submit(load) => run_load(cli, RpcKind::Submit, load).await,
        Scenario::Get(load) => run_load(cli, RpcKind::Get, load).await,
        Scenario::List { load, filter } => {
            let kind = match filter.as_str() {
                "pending" => RpcKind::ListPending,
                "applicant" => RpcKind::ListApplicant,
                _ => RpcKind::List,
            };
            run_load(cli, kind, load).await
        }
        Scenario::Approve(load) => run_load(cli, RpcKind::Approve, load).await,
        Scenario::Mixed(load) => run_load(cli, RpcKind::Mixed, load).await,
        Scenario::Watch {
            watchers,
            connections,
            rate,
            duration,
            server_pid,
            baseline_calls,
        } => {
            let args = WatchArgs {
                target: cli.target.clone(),
                api_key: cli.api_key.clone(),
                watchers: *watchers,
                connections: *connections,
                rate: *rate,
                duration: bounded(*duration, 300),
                server_pid: *server_pid,
                baseline_calls: *baseline_calls,
            };
            let report = run_watch(&args).await?;
            Ok(render(&report, cli.json))
        }
        Scenario::Idle {
            watchers,
            connections,
            server_pid,
        } => {
            let report = run_idle(
                &cli.target,
                &cli.api_key,
                *watchers,
                *connections,
                *server_pid,
            )
            .await?;
            Ok(if cli.json {
                json(&report)
            } else {
                format!(
                    "idle watchers={} server rss {} -> {} KiB: {:.1} KiB per watcher",
                    report.watchers,
                    report.server_rss_kib_before,
                    report.server_rss_kib_after,
                    report.kib_per_watcher
                )
            })
        }
        Scenario::Mail {
            emails,
            concurrency,
            sink_dump,
            timeout,
            server_pid,
            worker,
        } => {
            let args = MailArgs {
                target: cli.target.clone(),
                api_key: cli.api_key.clone(),
                requests: *emails,
                concurrency: *concurrency,
                sink_dump: sink_dump.clone(),
                worker: worker.clone(),
                timeout: bounded(*timeout, 600),
                server_pid: *server_pid,
            };
            let report = run_mail(&args).await?;
            Ok(render(&report, cli.json))
        }
        Scenario::Seed {
            count,
            first_tag,
            concurrency,
            connections,
            quiet,
        } => {
            let count = *count;
            let names = sesame_loadtest::rpc::seed(
                &cli.target,
                &cli.api_key,
                *first_tag,
                count,
                (*concurrency).clamp(1, 1000),
                *connections,
                !quiet,
            )
            .await?;
            Ok(if *quiet {
                format!("seeded {count} requests")
            } else {
                names.join("\n")
            })
        }
        Scenario::Pages {
            page_size,
            max_pages,
            limit,
        } => {
            let limit = bounded(*limit, 600);
            let report =
                scale::walk_pages(&cli.target, &cli.api_key, *page_size, *max_pages, limit).await?;
            Ok(json(&report))
        }
        Scenario::Replay { server_pid, limit } => {
            let limit = bounded(*limit, 1800);
            Ok(json(
                &scale::replay(&cli.target, &cli.api_key, *server_pid, limit).await?,
            ))
        }
        Scenario::Verify { event_bytes, limit } => {
            let limit = bounded(*limit, 1800);
            Ok(json(
                &scale::verify(&cli.target, &cli.api_key, *event_bytes, limit).await?,
            ))
        }
        Scenario::Erase {
            first_tag,
            count,
            concurrency,
            connections,
            limit,
        } => {
            let report = scale::erase(
                &cli.target,
                &cli.api_key,
                *first_tag,
                *count,
                (*concurrency).clamp(1, 1000),
                *connections,
                bounded(*limit, 1800),
            )
            .await?;
            Ok(json(&report))
        }
        Scenario::SqliteBaseline { db, duration } => {
            let report =
                sesame_loadtest::baseline::sqlite_loop(db, bounded(*duration, 300)).await?;
            Ok(json(&report))
        }
        Scenario::EchoServer { listen, duration } => {
            sesame_loadtest::baseline::echo_server(*listen, bounded(*duration, 600)).await?;
            Ok("echo server stopped".to_owned())
        }
    }
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
    match run(&cli).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_and_without_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_issue_command_line_parses() {
        let cli = Cli::try_parse_from([
            "sesame-loadtest",
            "submit",
            "--target",
            "http://127.0.0.1:50051",
            "--api-key",
            "k",
            "--concurrency",
            "8",
            "--connections",
            "2",
            "--duration",
            "30s",
            "--rate",
            "100",
            "--json",
        ])
        .expect("parses");
        assert!(cli.json);
        let Scenario::Submit(load) = cli.scenario else {
            panic!("not a submit");
        };
        assert_eq!(load.duration, Duration::from_secs(30));
        assert_eq!(load.rate, Some(100));
    }

    #[test]
    fn a_seed_beyond_a_million_is_refused_not_clamped() {
        let parse = |count: &str| {
            Cli::try_parse_from([
                "sesame-loadtest",
                "seed",
                "--count",
                count,
                "--first-tag",
                "5",
            ])
        };
        let Scenario::Seed {
            count, first_tag, ..
        } = parse("1000000").expect("a million parses").scenario
        else {
            panic!("not a seed");
        };
        assert_eq!((count, first_tag), (1_000_000, 5));
        let refused = parse("1000001").expect_err("more than a million is refused");
        assert!(refused.to_string().contains("1000001"), "{refused}");
        assert!(parse("0").is_err());
    }
}
