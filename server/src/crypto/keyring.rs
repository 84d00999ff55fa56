//! The key ring: the server's secret keys, read from a file that is never in
//! the database. It holds one or more master keys (numbered; the highest is
//! active) and the blind-index key.
//!
//! Master keys seal values that must be stored but not readable from a
//! database dump: the per-subject data keys of [`super::Vault`] and gateway
//! codes waiting in the outbox. Sealing is XChaCha20-Poly1305 with a random
//! nonce per value, bound to what the value is for (the AEAD's associated
//! data), and the sealed text names the master key, so values sealed before
//! a rotation still open after it.
//!
//! File format (UTF-8, one entry per line, `#` comments):
//!
//! ```text
//! index <32 bytes, base64>
//! master 1 <32 bytes, base64>
//! master 2 <32 bytes, base64>
//! ```
//!
//! A file holding a single base64 key (the format before key rotation
//! existed, or `openssl rand -base64 32`) is master key 1, and its index key
//! is derived from it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{KeyInit, OsRng};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Prefix of values sealed by master key 1 before the ring had ids.
const LEGACY_PREFIX: &str = "s1.";
/// Prefix of sealed values: `s2.<master id>.<nonce + ciphertext>`.
const SEALED_PREFIX: &str = "s2.";
/// Derives the index key of a single-key (legacy) file.
const LEGACY_INDEX_LABEL: &[u8] = b"sesame blind index v1";

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "key file {path} line {line}: {problem} (expected `index <base64>` or \
         `master <id> <base64>`, each key 32 bytes)"
    )]
    Malformed {
        path: String,
        line: usize,
        problem: &'static str,
    },
    #[error("key file {path}: no master key")]
    NoMaster { path: String },
}

/// A sealed value could not be opened: wrong key, tampered, or not sealed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a sealed value could not be opened (wrong secret key or altered data)")]
pub struct OpenError;

/// The server's keys. Cheap to clone; never printed.
#[derive(Clone)]
pub struct KeyRing {
    masters: BTreeMap<u32, Key>,
    index_key: [u8; 32],
}

#[derive(Clone)]
struct Key {
    bytes: [u8; 32],
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: [u8; 32]) -> Key {
        Key {
            cipher: XChaCha20Poly1305::new(&bytes.into()),
            bytes,
        }
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyRing(masters {:?}, <redacted>)",
            self.masters.keys().collect::<Vec<_>>()
        )
    }
}

fn random_key() -> [u8; 32] {
    XChaCha20Poly1305::generate_key(&mut OsRng).into()
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    // URL-safe (as written here) or standard base64, as from
    // `openssl rand -base64 32`.
    let text = text.trim().trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
}

impl KeyRing {
    /// A ring with one master key (id 1) and the index key derived from it,
    /// as a single-key file gives.
    pub fn from_bytes(bytes: &[u8; 32]) -> KeyRing {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("any key length");
        mac.update(LEGACY_INDEX_LABEL);
        KeyRing {
            masters: BTreeMap::from([(1, Key::new(*bytes))]),
            index_key: mac.finalize().into_bytes().into(),
        }
    }

    /// Parses a key file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<KeyRing, KeyRingError> {
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(number, line)| (number + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
            .collect();
        let malformed = |line, problem| KeyRingError::Malformed {
            path: path.to_owned(),
            line,
            problem,
        };
        if let [(line, only)] = lines.as_slice()
            && !only.contains(' ')
        {
            let bytes = decode_key(only).ok_or(malformed(*line, "not a 32-byte base64 key"))?;
            return Ok(KeyRing::from_bytes(&bytes));
        }
        let mut masters = BTreeMap::new();
        let mut index_key = None;
        for (line, text) in lines {
            let words: Vec<&str> = text.split_whitespace().collect();
            match words.as_slice() {
                ["index", key] => {
                    if index_key.is_some() {
                        return Err(malformed(line, "a second index key"));
                    }
                    index_key =
                        Some(decode_key(key).ok_or(malformed(line, "not a 32-byte base64 key"))?);
                }
                ["master", id, key] => {
                    let id: u32 = id
                        .parse()
                        .ok()
                        .filter(|id| *id > 0)
                        .ok_or(malformed(line, "a master id must be a positive integer"))?;
                    let key = decode_key(key).ok_or(malformed(line, "not a 32-byte base64 key"))?;
                    if masters.insert(id, Key::new(key)).is_some() {
                        return Err(malformed(line, "a master id appears twice"));
                    }
                }
                _ => return Err(malformed(line, "unknown entry")),
            }
        }
        let Some((first, _)) = masters.first_key_value() else {
            return Err(KeyRingError::NoMaster {
                path: path.to_owned(),
            });
        };
        let index_key = match index_key {
            Some(key) => key,
            // Written by hand with masters only: the index key of the
            // original single-key file, so indexes stay valid.
            None => KeyRing::from_bytes(&masters[first].bytes).index_key,
        };
        Ok(KeyRing { masters, index_key })
    }

    /// The file's text: every key, the index key first.
    fn render(&self) -> String {
        let mut text = String::from(
            "# Sesame key ring: keep it out of the database, back it up apart from it.\n",
        );
        text.push_str(&format!(
            "index {}\n",
            URL_SAFE_NO_PAD.encode(self.index_key)
        ));
        for (id, key) in &self.masters {
            text.push_str(&format!(
                "master {id} {}\n",
                URL_SAFE_NO_PAD.encode(key.bytes)
            ));
        }
        text
    }

    /// Reads the key file; with `create`, a missing file is created with a
    /// new random master key and index key, readable by its owner only.
    pub fn load(path: &Path, create: bool) -> Result<KeyRing, KeyRingError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => KeyRing::parse(&text, &shown),
            Err(error) if create && error.kind() == std::io::ErrorKind::NotFound => {
                let ring = KeyRing {
                    masters: BTreeMap::from([(1, Key::new(random_key()))]),
                    index_key: random_key(),
                };
                write_new(path, &ring.render(), true)?;
                tracing::info!(path = %shown, "created a new key file; back it up apart from the database");
                Ok(ring)
            }
            Err(source) => Err(KeyRingError::Io {
                path: shown,
                source,
            }),
        }
    }

    /// Adds a new master key to the file at `path` (it becomes the active
    /// one; the others stay, so older values still open) and returns the
    /// new ring. The file is replaced atomically.
    pub fn rotate_file(path: &Path) -> Result<(KeyRing, u32), KeyRingError> {
        let mut ring = KeyRing::load(path, false)?;
        let id = ring.active_id() + 1;
        ring.masters.insert(id, Key::new(random_key()));
        let staged = path.with_extension("rotating");
        write_new(&staged, &ring.render(), false)?;
        std::fs::rename(&staged, path).map_err(|source| KeyRingError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok((ring, id))
    }

    /// The id of the master key new values are sealed with.
    pub fn active_id(&self) -> u32 {
        *self
            .masters
            .last_key_value()
            .expect("a ring has a master key")
            .0
    }

    /// Whether the ring holds master key `id`.
    pub fn has_master(&self, id: u32) -> bool {
        self.masters.contains_key(&id)
    }

    /// Seals `plaintext` (encrypted and authenticated) with the active master
    /// key, for `purpose` (authenticated, not encrypted: a value sealed for
    /// one purpose does not open for another).
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let id = self.active_id();
        let body = super::seal_with(&self.masters[&id].cipher, plaintext, purpose.as_bytes());
        format!("{SEALED_PREFIX}{id}.{body}")
    }

    /// The master key id a sealed value names, if it is one.
    pub fn sealed_with(sealed: &str) -> Option<u32> {
        if sealed.starts_with(LEGACY_PREFIX) {
            return Some(1);
        }
        sealed
            .strip_prefix(SEALED_PREFIX)?
            .split_once('.')?
            .0
            .parse()
            .ok()
    }

    /// Opens a value sealed by [`KeyRing::seal`] for the same purpose.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let (id, body) = match sealed.strip_prefix(LEGACY_PREFIX) {
            Some(body) => (1, body),
            None => {
                let (id, body) = sealed
                    .strip_prefix(SEALED_PREFIX)
                    .and_then(|rest| rest.split_once('.'))
                    .ok_or(OpenError)?;
                (id.parse().map_err(|_| OpenError)?, body)
            }
        };
        let key = self.masters.get(&id).ok_or(OpenError)?;
        super::open_with(&key.cipher, body, purpose.as_bytes())
    }

    /// Seals a UTF-8 string; see [`KeyRing::seal`].
    pub fn seal_str(&self, purpose: &str, plaintext: &str) -> String {
        self.seal(purpose, plaintext.as_bytes())
    }

    /// Opens a string sealed by [`KeyRing::seal_str`].
    pub fn open_str(&self, purpose: &str, sealed: &str) -> Result<String, OpenError> {
        String::from_utf8(self.open(purpose, sealed)?).map_err(|_| OpenError)
    }

    /// A 32-byte key for `label`, derived from the index key (which no
    /// rotation changes): the same on every process with this key file.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key).expect("any key length");
        mac.update(b"sesame derived key: ");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The blind index of an email address: HMAC-SHA-256 of the normalised
    /// address (trimmed, lowercased) under the index key, hex. Equal
    /// addresses give equal indexes; the index reveals nothing else.
    pub fn blind_index(&self, email: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key).expect("any key length");
        mac.update(email.trim().to_lowercase().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Creates `path` with `text`, owner-only, synced; `create_new` refuses to
/// replace an existing file.
fn write_new(path: &Path, text: &str, create_new: bool) -> Result<(), KeyRingError> {
    let io = |source| KeyRingError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_key_and_purpose() {
        let key = KeyRing::from_bytes(&[7; 32]);
        let sealed = key.seal_str("gateway_code", "K7Q2-9MZX");
        assert!(!sealed.contains("K7Q2"));
        assert!(sealed.starts_with("s2.1."), "{sealed}");
        assert_ne!(
            sealed,
            key.seal_str("gateway_code", "K7Q2-9MZX"),
            "random nonce"
        );
        assert_eq!(key.open_str("gateway_code", &sealed).unwrap(), "K7Q2-9MZX");
        assert_eq!(key.open_str("other", &sealed), Err(OpenError));
        assert_eq!(
            KeyRing::from_bytes(&[8; 32]).open_str("gateway_code", &sealed),
            Err(OpenError)
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        assert_eq!(key.open_str("gateway_code", &tampered), Err(OpenError));
        assert_eq!(key.open_str("gateway_code", "plain"), Err(OpenError));
        assert!(!format!("{key:?}").contains('7'));
    }

    #[test]
    fn values_sealed_before_ids_still_open() {
        // The format written before rotation existed: "s1." + nonce + ct
        // under the single key.
        let key = KeyRing::from_bytes(&[9; 32]);
        let modern = key.seal_str("p", "v");
        let legacy = format!("s1.{}", modern.strip_prefix("s2.1.").unwrap());
        assert_eq!(key.open_str("p", &legacy).unwrap(), "v");
        assert_eq!(KeyRing::sealed_with(&legacy), Some(1));
    }

    #[test]
    fn the_key_file_is_created_once_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sesame.key");
        assert!(KeyRing::load(&path, false).is_err());
        let created = KeyRing::load(&path, true).unwrap();
        let sealed = created.seal_str("p", "v");
        let read = KeyRing::load(&path, true).unwrap();
        assert_eq!(read.open_str("p", &sealed).unwrap(), "v");
        assert_eq!(read.blind_index("a@b.c"), created.blind_index("a@b.c"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // `openssl rand -base64 32` output is accepted too.
        std::fs::write(&path, "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=\n").unwrap();
        assert!(KeyRing::load(&path, false).is_ok());
        std::fs::write(&path, "not a key\n").unwrap();
        assert!(matches!(
            KeyRing::load(&path, true),
            Err(KeyRingError::Malformed { line: 1, .. })
        ));
        std::fs::write(&path, "index q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA\n").unwrap();
        assert!(matches!(
            KeyRing::load(&path, true),
            Err(KeyRingError::NoMaster { .. })
        ));
        std::fs::write(
            &path,
            "# keys\nmaster 0 q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA\n",
        )
        .unwrap();
        let error = KeyRing::load(&path, true).unwrap_err().to_string();
        assert!(
            error.contains("line 2") && error.contains("positive"),
            "{error}"
        );
    }

    #[test]
    fn rotation_adds_an_active_master_and_keeps_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sesame.key");
        // A legacy single-key file.
        std::fs::write(&path, format!("{}\n", URL_SAFE_NO_PAD.encode([3u8; 32]))).unwrap();
        let before = KeyRing::load(&path, false).unwrap();
        let old = before.seal_str("p", "old");
        let (after, id) = KeyRing::rotate_file(&path).unwrap();
        assert_eq!(id, 2);
        assert_eq!(after.active_id(), 2);
        assert_eq!(after.open_str("p", &old).unwrap(), "old");
        let new = after.seal_str("p", "new");
        assert_eq!(KeyRing::sealed_with(&new), Some(2));
        assert_eq!(before.open_str("p", &new), Err(OpenError));
        let reread = KeyRing::load(&path, false).unwrap();
        assert_eq!(reread.open_str("p", &new).unwrap(), "new");
        assert_eq!(reread.open_str("p", &old).unwrap(), "old");
        assert_eq!(
            reread.blind_index(" Ada@Example.COM "),
            before.blind_index("ada@example.com"),
            "rotation keeps the blind index; it is normalised"
        );
        assert_ne!(
            reread.blind_index("ada@example.com"),
            reread.blind_index("bob@example.com")
        );
    }
}
