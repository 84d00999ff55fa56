//! gRPC-Web, the console's protocol: the outermost layer of a listener.
//! A gRPC-Web request (content type `application/grpc-web*`) is translated
//! by tonic-web into a native gRPC call before any other layer sees it, so
//! telemetry, limits and authentication treat it exactly as native gRPC
//! (metrics by status, size limits on decoded messages, the bearer key),
//! and their refusals reach the browser translated back. Every other
//! request passes untouched: tonic-web itself answers 400 to any HTTP/1.1
//! request that is not gRPC-Web, which would break the console's files.
//! Where gRPC-Web is off, a gRPC-Web call answers UNIMPLEMENTED.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

/// Whether `headers` say the request is a gRPC-Web call.
pub fn is_grpc_web(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc-web"))
}

/// Adds [`GrpcWebService`] around a listener's whole stack.
#[derive(Clone, Copy, Debug)]
pub struct GrpcWebLayer {
    enabled: bool,
}

impl GrpcWebLayer {
    /// Translates gRPC-Web calls when `enabled`, refuses them otherwise.
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }
}

impl<S> Layer<S> for GrpcWebLayer {
    type Service = GrpcWebService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWebService {
            inner,
            enabled: self.enabled,
        }
    }
}

/// Sends gRPC-Web calls through tonic-web's translation, everything else
/// straight to the inner service.
#[derive(Clone, Debug)]
pub struct GrpcWebService<S> {
    inner: S,
    enabled: bool,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ResBody> Service<Request<Body>> for GrpcWebService<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError> + std::fmt::Display,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let ready_clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready_clone);
        if !is_grpc_web(request.headers()) {
            return Box::pin(async move { Ok(inner.call(request).await?.map(Body::new)) });
        }
        if !self.enabled {
            let refused = refusal(request.headers());
            return Box::pin(async move { Ok(refused) });
        }
        let mut translated = tonic_web::GrpcWebLayer::new().layer(inner);
        Box::pin(translated.call(request))
    }
}

/// UNIMPLEMENTED, trailers-only in the caller's gRPC-Web content type.
fn refusal(request: &http::HeaderMap) -> Response<Body> {
    let mut response =
        tonic::Status::unimplemented("gRPC-Web is not served on this address").into_http::<Body>();
    let content_type = request
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/grpc-web+proto"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        headers
    }

    #[test]
    fn only_grpc_web_content_types_are_grpc_web() {
        assert!(is_grpc_web(&headers("application/grpc-web")));
        assert!(is_grpc_web(&headers("application/grpc-web+proto")));
        assert!(is_grpc_web(&headers("application/grpc-web-text")));
        assert!(!is_grpc_web(&headers("application/grpc")));
        assert!(!is_grpc_web(&headers("text/html")));
        assert!(!is_grpc_web(&http::HeaderMap::new()));
    }

    #[test]
    fn a_refusal_keeps_the_callers_content_type() {
        let response = refusal(&headers("application/grpc-web-text"));
        assert_eq!(
            response.headers()["content-type"],
            "application/grpc-web-text"
        );
        assert_eq!(response.headers()["grpc-status"], "12");
    }
}
