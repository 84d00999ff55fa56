//! The console on the gRPC port: its embedded files with their security
//! headers over HTTP/1.1, client-side routes answered with `index.html`,
//! gRPC-Web calls authenticated like native ones, native gRPC unchanged;
//! `console_enabled = false` and `console_listen_addr`.

use std::net::SocketAddr;

use sesame_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::harness::{Backend, TestServer};

/// One HTTP/1.1 answer: the status line and headers, and the body (chunks
/// joined).
struct Answer {
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The `grpc-status` of a gRPC-Web answer: from its trailer frame, or
    /// from the headers of a trailers-only answer.
    fn grpc_status(&self) -> Option<String> {
        let mut rest = &self.body[..];
        while rest.len() >= 5 {
            let flags = rest[0];
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            let frame = &rest[5..5 + len];
            if flags & 0x80 != 0 {
                let trailers = String::from_utf8_lossy(frame);
                return trailers.lines().find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    key.eq_ignore_ascii_case("grpc-status")
                        .then(|| value.trim().to_owned())
                });
            }
            rest = &rest[5 + len..];
        }
        self.header("grpc-status").map(str::to_owned)
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` on a new connection and reads the whole answer.
async fn http(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\nHost: sesame\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut answer = Answer {
        head,
        body: raw[split + 4..].to_vec(),
    };
    if answer
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        answer.body = dechunk(&answer.body);
    }
    answer
}

/// The body of a chunked transfer.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}

async fn get(addr: SocketAddr, path: &str, accept: &str) -> Answer {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nAccept: {accept}"),
        b"",
    )
    .await
}

const HTML: &str = "text/html,application/xhtml+xml,*/*;q=0.8";
const LIST: &str = "/sesame.v1.AccessRequestService/ListAccessRequests";

/// A unary gRPC-Web call of `LIST` with an empty message, over HTTP/1.1.
async fn grpc_web_list(addr: SocketAddr, key: Option<&str>) -> Answer {
    let mut head = format!(
        "POST {LIST} HTTP/1.1\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
         Accept: application/grpc-web+proto"
    );
    if let Some(key) = key {
        head.push_str(&format!("\r\nAuthorization: Bearer {key}"));
    }
    // The 5-byte frame header of an empty message: not compressed, length 0.
    http(addr, &head, &[0, 0, 0, 0, 0]).await
}

#[track_caller]
fn assert_security_headers(answer: &Answer) {
    let policy = answer.header("content-security-policy").unwrap_or("");
    assert!(
        policy.starts_with("default-src 'none'; script-src 'self';"),
        "{policy}"
    );
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(answer.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        answer.header("cross-origin-opener-policy"),
        Some("same-origin")
    );
}

const INDEX: &[u8] = include_bytes!("../../../console/dist/index.html");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_grpc_web_share_the_grpc_port() {
    let server = TestServer::start(Backend::Sqlite).await;
    let addr = server.addr;

    let index = get(addr, "/", HTML).await;
    assert_eq!(index.status(), 200, "{}", index.head);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert_eq!(index.body, INDEX);
    assert_security_headers(&index);

    // A client-side route of the single-page app.
    let route = get(addr, "/requests/abc", HTML).await;
    assert_eq!(route.status(), 200, "{}", route.head);
    assert_eq!(route.body, INDEX);
    assert_security_headers(&route);

    // The script index.html loads, as the browser asks for it.
    let index_text = std::str::from_utf8(INDEX).expect("utf-8 index");
    let script = index_text
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("index.html loads a script");
    assert!(
        script.starts_with("/assets/") && script.ends_with(".js"),
        "{script}"
    );
    let asset = get(addr, script, "*/*").await;
    assert_eq!(asset.status(), 200, "{}", asset.head);
    assert!(!asset.body.is_empty());
    assert_eq!(
        asset.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        asset.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_security_headers(&asset);

    let missing = get(addr, "/assets/nope.js", "*/*").await;
    assert_eq!(missing.status(), 404, "{}", missing.head);
    assert_security_headers(&missing);
    // Not HTML: a missing file, not a console route.
    assert_eq!(
        get(addr, "/requests/abc", "application/json")
            .await
            .status(),
        404
    );

    let post = http(addr, "POST / HTTP/1.1\r\nContent-Type: text/plain", b"x").await;
    assert_eq!(post.status(), 405, "{}", post.head);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // gRPC-Web over HTTP/1.1, with and without the key.
    let listed = grpc_web_list(addr, Some(&server.keys.admin)).await;
    assert_eq!(listed.status(), 200, "{}", listed.head);
    assert!(
        listed
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/grpc-web")),
        "{}",
        listed.head
    );
    assert_eq!(
        listed.grpc_status().as_deref(),
        Some("0"),
        "{}",
        listed.head
    );
    let refused = grpc_web_list(addr, None).await;
    assert_eq!(
        refused.grpc_status().as_deref(),
        Some("16"),
        "{}",
        refused.head
    );
    assert!(
        refused
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/grpc-web")),
        "{}",
        refused.head
    );
    let bad_key = grpc_web_list(addr, Some("not-a-key")).await;
    assert_eq!(
        bad_key.grpc_status().as_deref(),
        Some("16"),
        "{}",
        bad_key.head
    );

    // Native gRPC, health and reflection on the same port.
    server
        .client(&server.keys.admin)
        .await
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .expect("native gRPC still answers");
    let mut health = HealthClient::new(server.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health still answers");
    reflection_lists_services(&server).await;
    // An unknown gRPC method is still UNIMPLEMENTED, not a console page.
    let unknown = http(
        addr,
        &format!(
            "POST /sesame.v1.Nope/Nothing HTTP/1.1\r\nContent-Type: application/grpc\r\n\
             Authorization: Bearer {}",
            server.keys.admin
        ),
        &[0, 0, 0, 0, 0],
    )
    .await;
    assert_eq!(
        unknown.header("grpc-status"),
        Some("12"),
        "{}",
        unknown.head
    );
    server.stop().await;
}

async fn reflection_lists_services(server: &TestServer) {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let mut client = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection still answers")
        .into_inner();
    assert!(responses.message().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_console_serves_no_files_and_no_grpc_web() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.console_enabled = false;
    })
    .await;
    let addr = server.addr;
    let index = get(addr, "/", HTML).await;
    assert_eq!(index.status(), 404, "{}", index.head);
    assert!(index.header("content-security-policy").is_none());
    let web = grpc_web_list(addr, Some(&server.keys.admin)).await;
    assert_eq!(web.grpc_status().as_deref(), Some("12"), "{}", web.head);
    server
        .client(&server.keys.admin)
        .await
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .expect("native gRPC unchanged");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_listen_addr_moves_the_console_and_grpc_web() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.console_listen_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let console = server.console_addr.expect("the console has its listener");
    let index = get(console, "/", HTML).await;
    assert_eq!(index.status(), 200, "{}", index.head);
    assert_eq!(index.body, INDEX);
    assert_security_headers(&index);
    let web = grpc_web_list(console, Some(&server.keys.admin)).await;
    assert_eq!(web.grpc_status().as_deref(), Some("0"), "{}", web.head);

    // The main port answers native gRPC only.
    assert_eq!(get(server.addr, "/", HTML).await.status(), 404);
    let web = grpc_web_list(server.addr, Some(&server.keys.admin)).await;
    assert_eq!(web.grpc_status().as_deref(), Some("12"), "{}", web.head);
    server
        .client(&server.keys.admin)
        .await
        .list_access_requests(pb::ListAccessRequestsRequest::default())
        .await
        .expect("native gRPC on the main port");
    server.stop().await;
}
