//! The gateway-code sealing protocol: between an approval and the sending
//! of its email, the code waits in the outbox row's template data under
//! [`SEALED_CODE_FIELD`], sealed with the server's key ring for its
//! request only. The store seals it when it issues the code; the mail
//! worker opens it to render the email and the store drops it once sent.

use super::{KeyRing, OpenError};
use crate::domain::{AccessRequestId, GatewayCode};

/// Key of the sealed code in an outbox row's template data; removed once
/// the email is sent.
pub const SEALED_CODE_FIELD: &str = "gateway_code_sealed";

/// The purpose a code is sealed for: its request, so a sealed value copied
/// into another request's email does not open.
fn seal_purpose(request: AccessRequestId) -> String {
    format!("gateway_code:{request}")
}

/// The code of `request`, sealed for its approval email.
pub fn seal_code(ring: &KeyRing, request: AccessRequestId, code: &GatewayCode) -> String {
    ring.seal_str(&seal_purpose(request), &code.to_string())
}

/// The code sealed by [`seal_code`] for `request`.
pub fn open_code(
    ring: &KeyRing,
    request: AccessRequestId,
    sealed: &str,
) -> Result<String, OpenError> {
    ring.open_str(&seal_purpose(request), sealed)
}

/// Template `data` (a JSON object) without its sealed code; `None` when it
/// has none.
pub fn without_sealed_code(data: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(data).ok()?;
    value.as_object_mut()?.remove(SEALED_CODE_FIELD)?;
    Some(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_code_opens_for_its_request_only() {
        let ring = KeyRing::from_bytes(&[7; 32]);
        let code = GatewayCode::generate();
        let request = AccessRequestId::generate();
        let sealed = seal_code(&ring, request, &code);
        assert_eq!(
            open_code(&ring, request, &sealed).unwrap(),
            code.to_string()
        );
        assert_eq!(
            open_code(&ring, AccessRequestId::generate(), &sealed),
            Err(OpenError)
        );
    }
}
