//! The server's secret key and what it protects. The key (32 random bytes,
//! base64 in a file that is never in the database) seals values that must
//! be stored but not readable from a database dump, such as a gateway code
//! waiting in the outbox for its email: XChaCha20-Poly1305 with a random
//! nonce per value, bound to what the value is for.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// Prefix of sealed values, naming the format.
const SEALED_PREFIX: &str = "s1.";

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("secret key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("secret key file {path}: expected 32 bytes in base64 on one line")]
    Malformed { path: String },
}

/// A sealed value could not be opened: wrong key, tampered, or not sealed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a sealed value could not be opened (wrong secret key or altered data)")]
pub struct OpenError;

/// The server's secret key. Cheap to clone; never printed.
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> SecretKey {
        SecretKey {
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }

    /// Reads the key file; with `create`, a missing file is created with a
    /// new random key, readable by its owner only.
    pub fn load(path: &Path, create: bool) -> Result<SecretKey, SecretKeyError> {
        let shown = path.display().to_string();
        let io = |source| SecretKeyError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                // URL-safe (as written here) or standard base64, as from
                // `openssl rand -base64 32`.
                let text = text.trim().trim_end_matches('=');
                let bytes = URL_SAFE_NO_PAD
                    .decode(text)
                    .or_else(|_| STANDARD_NO_PAD.decode(text))
                    .ok()
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or(SecretKeyError::Malformed {
                        path: shown.clone(),
                    })?;
                Ok(SecretKey::from_bytes(&bytes))
            }
            Err(error) if create && error.kind() == std::io::ErrorKind::NotFound => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(path).map_err(io)?;
                writeln!(file, "{}", URL_SAFE_NO_PAD.encode(key)).map_err(io)?;
                file.sync_all().map_err(io)?;
                tracing::info!(path = %shown, "created a new secret key file; back it up with the database");
                Ok(SecretKey {
                    cipher: XChaCha20Poly1305::new(&key),
                })
            }
            Err(error) => Err(io(error)),
        }
    }

    /// Seals `plaintext` (encrypted and authenticated) for `purpose`
    /// (authenticated, not encrypted: a value sealed for one purpose does
    /// not open for another).
    pub fn seal(&self, purpose: &str, plaintext: &str) -> String {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: purpose.as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(&nonce, payload)
            .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a value sealed by [`SecretKey::seal`] for the same purpose.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<String, OpenError> {
        let bytes = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|body| URL_SAFE_NO_PAD.decode(body).ok())
            .ok_or(OpenError)?;
        if bytes.len() < 24 {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let payload = Payload {
            msg: ciphertext,
            aad: purpose.as_bytes(),
        };
        let plaintext = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| OpenError)?;
        String::from_utf8(plaintext).map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_key_and_purpose() {
        let key = SecretKey::from_bytes(&[7; 32]);
        let sealed = key.seal("gateway_code", "K7Q2-9MZX");
        assert!(!sealed.contains("K7Q2"));
        assert_ne!(
            sealed,
            key.seal("gateway_code", "K7Q2-9MZX"),
            "random nonce"
        );
        assert_eq!(key.open("gateway_code", &sealed).unwrap(), "K7Q2-9MZX");
        assert_eq!(key.open("other", &sealed), Err(OpenError));
        assert_eq!(
            SecretKey::from_bytes(&[8; 32]).open("gateway_code", &sealed),
            Err(OpenError)
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        assert_eq!(key.open("gateway_code", &tampered), Err(OpenError));
        assert_eq!(key.open("gateway_code", "plain"), Err(OpenError));
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn the_key_file_is_created_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sesame.key");
        assert!(SecretKey::load(&path, false).is_err());
        let created = SecretKey::load(&path, true).unwrap();
        let sealed = created.seal("p", "v");
        let read = SecretKey::load(&path, true).unwrap();
        assert_eq!(read.open("p", &sealed).unwrap(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // `openssl rand -base64 32` output is accepted too.
        std::fs::write(&path, "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n").unwrap();
        assert!(SecretKey::load(&path, false).is_ok());
        std::fs::write(&path, "not a key\n").unwrap();
        assert!(matches!(
            SecretKey::load(&path, true),
            Err(SecretKeyError::Malformed { .. })
        ));
    }
}
