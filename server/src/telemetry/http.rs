//! The metrics listener: a deliberately tiny HTTP/1.1 server that answers
//! `GET /metrics` with the text exposition (format 0.0.4) and closes the
//! connection. Nothing else is served, so no HTTP framework is needed; a
//! client gets 5 seconds and 8 KiB to send its request head.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::metrics::Metrics;

/// The Content-Type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Largest request head read.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its request and read the answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `/metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(addr = %addr, "metrics listening on /metrics");
    }
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let answered =
                        tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &metrics)).await;
                    match answered {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => debug!(error = %error, "metrics connection failed"),
                        Err(_) => debug!("metrics client too slow; connection closed"),
                    }
                });
            }
            Err(error) => {
                // Out of file descriptors and the like: do not spin.
                warn!(error = %error, "could not accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    info!("metrics listener stopped");
}

/// Reads one request head and writes one response.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )
            .await;
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut request_line = text.lines().next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default();
    let target = request_line.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = metrics.render();
            respond(&mut stream, "200 OK", &body, method == "HEAD").await
        }
        ("GET" | "HEAD", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "try /metrics\n",
                method == "HEAD",
            )
            .await
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "", false).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}
