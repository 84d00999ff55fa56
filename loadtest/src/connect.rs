//! Channels to the target, the bearer key, and process measurements.

use std::time::Duration;

use anyhow::Context;
use sesame_client::Bearer;
use tonic::transport::{Channel, Endpoint};

/// The bearer-key interceptor of the Rust client, for a key given on the
/// command line.
pub fn bearer(key: &str) -> anyhow::Result<Bearer> {
    Bearer::new(key).context("the API key is not valid metadata (printable ASCII only)")
}

/// `count` separate HTTP/2 connections to `target`.
pub async fn channels(target: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(target.to_owned())
        .with_context(|| format!("invalid target {target:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("could not connect to {target}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Resident memory of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// The largest resident memory a process has had so far, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the memory of process {pid}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} line in /proc/{pid}/status"))
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/PID/stat` (clock ticks of 1/100 s, as on every Linux this runs on).
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read the CPU time of process {pid}"))?;
    // Fields after the command name, which is in parentheses.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks = |index: usize| -> anyhow::Result<f64> {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .context("malformed /proc stat line")
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
