//! The interceptor that authenticates every call with an API key.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Adds `authorization: Bearer <key>` to every call. [`Bearer::none`] adds
/// nothing, for calls that need no key (health) or tests of refusals.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// An interceptor sending `key`; `None` when the key cannot be gRPC
    /// metadata (it must be printable ASCII).
    pub fn new(key: &str) -> Option<Self> {
        format!("Bearer {key}")
            .parse()
            .ok()
            .map(|value| Self(Some(value)))
    }

    /// An interceptor that sends no key.
    pub fn none() -> Self {
        Self(None)
    }
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        let shown = if self.0.is_some() {
            "Bearer <redacted>"
        } else {
            "none"
        };
        f.debug_tuple("Bearer").field(&shown).finish()
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_sent_and_never_printed() {
        let mut bearer = Bearer::new("sesame_secret").unwrap();
        let request = bearer.call(Request::new(())).unwrap();
        assert_eq!(
            request.metadata().get("authorization").unwrap(),
            "Bearer sesame_secret"
        );
        assert!(!format!("{bearer:?}").contains("secret"));
    }

    #[test]
    fn keys_that_are_not_metadata_are_refused() {
        assert!(Bearer::new("line\nbreak").is_none());
        assert!(
            Bearer::none()
                .call(Request::new(()))
                .unwrap()
                .metadata()
                .is_empty()
        );
    }
}
