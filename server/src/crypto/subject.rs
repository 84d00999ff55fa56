//! Per-subject data keys and the fields they seal. Every person whose data
//! Sesame holds (one applicant email) has a random 256-bit data key; each
//! personal value is sealed under it with XChaCha20-Poly1305, a random nonce,
//! and the place it belongs to (table, column, row) as associated data, so a
//! value copied to another row does not open there. Deleting the data key
//! makes every copy unreadable: crypto-shredding.
//!
//! Sealed field format: `e1.<subject uuid>.<base64url(nonce || ciphertext)>`.

use std::fmt;

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{KeyInit, OsRng};
use uuid::Uuid;

use super::OpenError;

const FIELD_PREFIX: &str = "e1.";

/// The id of a data subject: random, carries nothing about the person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId(pub Uuid);

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for SubjectId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(SubjectId)
    }
}

/// One subject's data key. Never printed.
#[derive(Clone)]
pub struct DataKey {
    bytes: [u8; 32],
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A new random key.
    pub fn generate() -> DataKey {
        DataKey::from_bytes(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// A key from its bytes (unwrapped from the key store).
    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey {
            cipher: XChaCha20Poly1305::new(&bytes.into()),
            bytes,
        }
    }

    /// The raw bytes, to be wrapped by a master key.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// A subject and its key: what sealing a field needs.
#[derive(Clone, Debug)]
pub struct Subject {
    pub id: SubjectId,
    pub key: DataKey,
}

impl Subject {
    /// Seals `plaintext` for the place `context` (e.g.
    /// `access_requests.applicant_email:<row id>`).
    pub fn seal(&self, context: &str, plaintext: &str) -> String {
        let body = super::seal_with(&self.key.cipher, plaintext.as_bytes(), context.as_bytes());
        format!("{FIELD_PREFIX}{}.{body}", self.id)
    }

    /// Opens a field this subject's key sealed for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, OpenError> {
        let (subject, body) = split_field(sealed).ok_or(OpenError)?;
        if subject != self.id {
            return Err(OpenError);
        }
        let plaintext = super::open_with(&self.key.cipher, body, context.as_bytes())?;
        String::from_utf8(plaintext).map_err(|_| OpenError)
    }
}

/// The subject a sealed field names, or `None` when the value is not a
/// sealed field (a value stored in clear before encryption existed).
pub fn sealed_subject(value: &str) -> Option<SubjectId> {
    split_field(value).map(|(subject, _)| subject)
}

fn split_field(value: &str) -> Option<(SubjectId, &str)> {
    let (subject, body) = value.strip_prefix(FIELD_PREFIX)?.split_once('.')?;
    Some((subject.parse().ok()?, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            id: SubjectId(Uuid::new_v4()),
            key: DataKey::generate(),
        }
    }

    #[test]
    fn a_field_opens_with_its_subject_key_in_its_place_only() {
        let ada = subject();
        let sealed = ada.seal("t.c:1", "Ada Lovelace");
        assert!(!sealed.contains("Ada"));
        assert_eq!(sealed_subject(&sealed), Some(ada.id));
        assert_eq!(ada.open("t.c:1", &sealed).unwrap(), "Ada Lovelace");
        assert_eq!(ada.open("t.c:2", &sealed), Err(OpenError), "another row");
        let other = Subject {
            id: ada.id,
            key: DataKey::generate(),
        };
        assert_eq!(other.open("t.c:1", &sealed), Err(OpenError), "another key");
        assert_eq!(subject().open("t.c:1", &sealed), Err(OpenError));
        assert_eq!(sealed_subject("Ada Lovelace"), None);
        assert_eq!(sealed_subject("e1.not-a-uuid.xyz"), None);
        assert!(!format!("{:?}", ada.key).contains(&format!("{:?}", ada.key.bytes()[0])));
    }
}
