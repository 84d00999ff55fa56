//! Encryption at rest: the key ring from the key file ([`KeyRing`]: master
//! keys and the blind-index key), per-subject data keys and the fields they
//! seal ([`Subject`]), and the key store holding the wrapped data keys
//! ([`Vault`]). Nothing here is ever logged or stored in clear.

pub mod codes;
mod keyring;
mod subject;
mod vault;

pub use keyring::{KeyRing, KeyRingError, OpenError};
pub use subject::{DataKey, Subject, SubjectId, sealed_subject};
pub use vault::{CACHE_TTL, Vault, VaultError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Encrypts `msg` with a random nonce, authenticating `aad`: base64url of
/// nonce and ciphertext.
fn seal_with(cipher: &XChaCha20Poly1305, msg: &[u8], aad: &[u8]) -> String {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let ciphertext = cipher
        .encrypt(&nonce, Payload { msg, aad })
        .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    URL_SAFE_NO_PAD.encode(sealed)
}

/// The inverse of [`seal_with`]: wrong key, `aad` or altered text fail.
fn open_with(cipher: &XChaCha20Poly1305, body: &str, aad: &[u8]) -> Result<Vec<u8>, OpenError> {
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| OpenError)?;
    if bytes.len() < 24 {
        return Err(OpenError);
    }
    let (nonce, ciphertext) = bytes.split_at(24);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| OpenError)
}
