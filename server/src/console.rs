//! The admin console's files, embedded at build (`console/dist/`, see
//! `build.rs`) and served as the router's fallback: every path no gRPC
//! service claims. `index.html` answers `/` and the console's client-side
//! routes; `/assets/*` are content-hashed, so cached for good. Every
//! answer carries the security headers, a strict Content-Security-Policy
//! first.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tonic::body::Body;

mod files {
    include!(concat!(env!("OUT_DIR"), "/console_files.rs"));
}

/// The console's policy. Scripts, connections (gRPC-Web) and everything
/// else come from this origin only. Styles also allow `'unsafe-inline'`
/// for one reason: the console previews emails, whose HTML carries inline
/// styles, in a sandboxed `srcdoc` iframe, and such an iframe inherits
/// this page's policy. Scripts stay strictly `'self'`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     font-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'self'";

/// The headers every console answer carries, beside the policy.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// `index.html` may change with any release: browsers check it each time.
const INDEX_CACHE: &str = "no-cache";
/// Hashed assets never change under their name.
const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// The console page.
const INDEX_PATH: &str = "/index.html";
/// Where the build puts its content-hashed files.
const ASSETS_PREFIX: &str = "/assets/";

/// What the console answers to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The embedded file at this path.
    File(&'static str),
    /// 404: no such file, and not a console route.
    NotFound,
    /// 405: files are only read.
    MethodNotAllowed,
}

/// Decides the answer to `method path` with the request's `Accept` header,
/// among the embedded files `known`: `/` and unknown paths that look like
/// the console's client-side routes (GET of a path without an extension
/// outside `/assets/`, accepting HTML) get `index.html`.
pub fn decide(method: &Method, path: &str, accept: &str, known: &[&'static str]) -> Answer {
    if method != Method::GET && method != Method::HEAD {
        return Answer::MethodNotAllowed;
    }
    let wanted = if path == "/" { INDEX_PATH } else { path };
    if let Some(file) = known.iter().find(|file| **file == wanted) {
        return Answer::File(file);
    }
    let last_segment = path.rsplit('/').next().unwrap_or("");
    let console_route = !path.starts_with(ASSETS_PREFIX)
        && !last_segment.contains('.')
        && accept.contains("text/html");
    match known.iter().find(|file| **file == INDEX_PATH) {
        Some(index) if console_route => Answer::File(index),
        _ => Answer::NotFound,
    }
}

/// The Content-Type of a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// The console's files as a service, or only 404s when `enabled` is false
/// (the console is off, or served on another address). A gRPC request that
/// reaches it named no known method: it answers UNIMPLEMENTED, as tonic's
/// own fallback does.
#[derive(Clone, Copy, Debug)]
pub struct ConsoleService {
    enabled: bool,
}

impl ConsoleService {
    /// Serves the embedded files when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }
}

impl<B> tower::Service<Request<B>> for ConsoleService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if crate::telemetry::is_grpc(&request) {
            return ready(Ok(tonic::Status::unimplemented("").into_http()));
        }
        if !self.enabled {
            return ready(Ok(status_response(StatusCode::NOT_FOUND)));
        }
        ready(Ok(answer(&request)))
    }
}

/// The response to a console request, security headers included.
fn answer<B>(request: &Request<B>) -> Response<Body> {
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let known: Vec<&'static str> = files::FILES.iter().map(|(path, _)| *path).collect();
    let mut response = match decide(request.method(), request.uri().path(), accept, &known) {
        Answer::File(path) => file_response(path, request.method() == Method::HEAD),
        Answer::NotFound => status_response(StatusCode::NOT_FOUND),
        Answer::MethodNotAllowed => {
            let mut response = status_response(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            response
        }
    };
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The embedded file at `path` (one of [`files::FILES`]), its body left out
/// for HEAD.
fn file_response(path: &'static str, head: bool) -> Response<Body> {
    let contents: &'static [u8] = files::FILES
        .iter()
        .find(|(known, _)| *known == path)
        .map_or(&[], |(_, contents)| contents);
    let cache = if path.starts_with(ASSETS_PREFIX) {
        ASSET_CACHE
    } else {
        INDEX_CACHE
    };
    let body = if head {
        Body::empty()
    } else {
        Body::new(Full::new(Bytes::from_static(contents)))
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(contents.len()));
    response
}

/// An empty answer with `status`.
fn status_response(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 3] = ["/assets/app-1a2b.js", "/favicon.svg", "/index.html"];
    const HTML: &str = "text/html,*/*;q=0.8";

    #[test]
    fn files_index_and_console_routes() {
        let get = |path: &str, accept: &str| decide(&Method::GET, path, accept, &KNOWN);
        assert_eq!(get("/", HTML), Answer::File("/index.html"));
        assert_eq!(get("/", "*/*"), Answer::File("/index.html"));
        assert_eq!(get("/favicon.svg", "*/*"), Answer::File("/favicon.svg"));
        assert_eq!(
            get("/assets/app-1a2b.js", "*/*"),
            Answer::File("/assets/app-1a2b.js")
        );
        // Client-side routes of the single-page app.
        assert_eq!(get("/requests/abc", HTML), Answer::File("/index.html"));
        assert_eq!(get("/requests", HTML), Answer::File("/index.html"));
        // A missing file, an asset, or a caller that wants no HTML.
        assert_eq!(get("/assets/nope.js", HTML), Answer::NotFound);
        assert_eq!(get("/assets/chunk", HTML), Answer::NotFound);
        assert_eq!(get("/robots.txt", HTML), Answer::NotFound);
        assert_eq!(get("/requests/abc", "application/json"), Answer::NotFound);
        assert_eq!(
            decide(&Method::HEAD, "/", "", &KNOWN),
            Answer::File("/index.html")
        );
    }

    #[test]
    fn files_are_only_read() {
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            assert_eq!(decide(&method, "/", HTML, &KNOWN), Answer::MethodNotAllowed);
        }
    }

    #[test]
    fn no_index_no_console_routes() {
        assert_eq!(
            decide(&Method::GET, "/requests/abc", HTML, &["/assets/a.js"]),
            Answer::NotFound
        );
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("/assets/a.JS"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/assets/a.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("/assets/font.woff2"), "font/woff2");
        assert_eq!(
            content_type("/assets/x.unknown"),
            "application/octet-stream"
        );
        assert_eq!(content_type("/LICENSE"), "application/octet-stream");
    }

    #[test]
    fn the_built_console_is_embedded() {
        let paths: Vec<&str> = files::FILES.iter().map(|(path, _)| *path).collect();
        assert!(paths.contains(&INDEX_PATH), "{paths:?}");
        assert!(
            paths
                .iter()
                .any(|path| path.starts_with("/assets/") && path.ends_with(".js")),
            "{paths:?}"
        );
    }
}
