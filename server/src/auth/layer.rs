//! The tower layer that authenticates every `sesame.*` RPC from its
//! `authorization: Bearer <key>` metadata. Health and reflection stay open.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower::{Layer, Service};

use sha2::{Digest, Sha256};

use super::{Principal, RateLimiter};
use crate::store::{Store, StoreError};

/// Why a call could not be authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send `authorization: Bearer <key>` metadata")]
    Missing,
    #[error("malformed authorization metadata: expected `Bearer <key>`")]
    Malformed,
    #[error("unknown or revoked API key")]
    Invalid,
    #[error("could not check the API key")]
    Store(#[from] StoreError),
    #[error("this API key is over its request rate")]
    RateLimited(Duration),
}

/// Adds [`AuthService`] around the gRPC router.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    store: Store,
    limiter: Arc<RateLimiter>,
}

impl AuthLayer {
    /// Authenticates against the keys in `store`, each key within the
    /// budget of `limiter`.
    pub fn new(store: Store, limiter: RateLimiter) -> Self {
        Self {
            store,
            limiter: Arc::new(limiter),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            store: self.store.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

/// Resolves the bearer key to a [`Principal`] in the request extensions, or
/// answers UNAUTHENTICATED without calling the service.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    store: Store,
    limiter: Arc<RateLimiter>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let ready_clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready_clone);
        let store = self.store.clone();
        let limiter = self.limiter.clone();
        Box::pin(async move {
            if !needs_authentication(request.uri().path()) {
                return inner.call(request).await;
            }
            let checked = authenticate(&store, request.headers())
                .await
                .and_then(|principal| {
                    limiter
                        .check(&principal.name, Instant::now())
                        .map(|()| principal)
                        .map_err(AuthError::RateLimited)
                });
            match checked {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => {
                    let status = tonic::Status::from(error);
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// Sesame's own services need a key; health and reflection do not.
fn needs_authentication(path: &str) -> bool {
    path.starts_with("/sesame.")
}

async fn authenticate(store: &Store, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(AuthError::Missing);
    };
    let text = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, key) = text.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let key = key.trim();
    if key.is_empty() {
        return Err(AuthError::Malformed);
    }
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let principal = store.find_active_key(&digest).await?;
    principal.ok_or(AuthError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::needs_authentication;

    #[test]
    fn only_sesame_services_need_a_key() {
        assert!(needs_authentication(
            "/sesame.v1.AccessRequestService/GetAccessRequest"
        ));
        assert!(!needs_authentication("/grpc.health.v1.Health/Check"));
        assert!(!needs_authentication(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!needs_authentication(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
    }
}
