//! Encryption at rest: the key ring from the key file ([`KeyRing`]: master
//! keys and the blind-index key), per-subject data keys and the fields they
//! seal ([`Subject`]), and the key store holding the wrapped data keys
//! ([`Vault`]). Nothing here is ever logged or stored in clear.

mod keyring;
mod subject;
mod vault;

pub use keyring::{KeyRing, KeyRingError, OpenError};
pub use subject::{DataKey, Subject, SubjectId, sealed_subject};
pub use vault::{CACHE_TTL, Vault, VaultError, subject_key};
