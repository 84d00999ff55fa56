//! The in-process cache of verified API keys: a hit authenticates a call
//! without a query.
//!
//! Entries are keyed by the SHA-256 digest of the key (the secret itself is
//! never kept) and trusted for [`KEY_CACHE_TTL`] after the database last
//! confirmed them. Revoking through this process's store removes the entry
//! at once; a revocation made elsewhere (another replica, the `sesame keys
//! revoke` command) takes effect here when the entry expires, so within
//! [`KEY_CACHE_TTL`]. Unknown and revoked keys are never cached: each try
//! costs a query, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::Principal;

/// How long a verified key is trusted without asking the database again:
/// the longest a revocation made by another process goes unnoticed here.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);

/// Most keys cached at once; deployments have a handful.
const KEY_CACHE_CAPACITY: usize = 1024;

/// SHA-256 of an API key.
pub type KeyDigest = [u8; 32];

#[derive(Debug)]
struct Entry {
    principal: Principal,
    verified_at: Instant,
}

/// Verified keys and when the database last confirmed each.
#[derive(Debug, Default)]
pub(super) struct KeyCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<KeyDigest, Entry>,
    /// Bumped by every revocation, so a lookup that read the database
    /// before the revocation cannot cache its (now stale) answer after it.
    generation: u64,
}

impl KeyCache {
    /// The principal of a key verified less than [`KEY_CACHE_TTL`] before
    /// `now`.
    pub(super) fn get(&self, digest: &KeyDigest, now: Instant) -> Option<Principal> {
        let inner = self.inner.lock().expect("key cache lock poisoned");
        let entry = inner.entries.get(digest)?;
        let fresh = now.saturating_duration_since(entry.verified_at) < KEY_CACHE_TTL;
        fresh.then(|| entry.principal.clone())
    }

    /// The generation to pass to [`KeyCache::insert`], read before the
    /// database is asked.
    pub(super) fn generation(&self) -> u64 {
        self.inner
            .lock()
            .expect("key cache lock poisoned")
            .generation
    }

    /// Remembers a key the database confirmed at `verified_at` (taken
    /// before the query, so the entry never outlives its bound), unless a
    /// revocation happened since `generation` was read.
    pub(super) fn insert(
        &self,
        digest: KeyDigest,
        principal: Principal,
        verified_at: Instant,
        generation: u64,
    ) {
        let mut inner = self.inner.lock().expect("key cache lock poisoned");
        if inner.generation != generation {
            return;
        }
        let entries = &mut inner.entries;
        if entries.len() >= KEY_CACHE_CAPACITY && !entries.contains_key(&digest) {
            entries.retain(|_, entry| {
                verified_at.saturating_duration_since(entry.verified_at) < KEY_CACHE_TTL
            });
            if entries.len() >= KEY_CACHE_CAPACITY {
                // Every entry is fresh: more live keys than the capacity.
                // Not caching costs a query per call, as without a cache.
                return;
            }
        }
        entries.insert(
            digest,
            Entry {
                principal,
                verified_at,
            },
        );
    }

    /// Forgets every entry of the key named `name` (revoked here).
    pub(super) fn forget_name(&self, name: &str) {
        let mut inner = self.inner.lock().expect("key cache lock poisoned");
        inner.generation += 1;
        inner
            .entries
            .retain(|_, entry| entry.principal.name != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn principal(name: &str) -> Principal {
        Principal {
            name: name.to_owned(),
            role: Role::Submitter,
            resources: Vec::new(),
        }
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = KeyCache::default();
        let start = Instant::now();
        cache.insert([1; 32], principal("a"), start, 0);
        assert_eq!(cache.get(&[1; 32], start), Some(principal("a")));
        assert_eq!(cache.get(&[2; 32], start), None);
        assert_eq!(cache.get(&[1; 32], start + KEY_CACHE_TTL), None);
    }

    #[test]
    fn revoked_names_are_forgotten() {
        let cache = KeyCache::default();
        let start = Instant::now();
        let generation = cache.generation();
        cache.insert([1; 32], principal("a"), start, generation);
        cache.insert([2; 32], principal("b"), start, generation);
        cache.forget_name("a");
        assert_eq!(cache.get(&[1; 32], start), None);
        assert_eq!(cache.get(&[2; 32], start), Some(principal("b")));
        // A lookup that read the database before the revocation.
        cache.insert([1; 32], principal("a"), start, generation);
        assert_eq!(cache.get(&[1; 32], start), None);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_and_stays_bounded() {
        let cache = KeyCache::default();
        let start = Instant::now();
        for index in 0..KEY_CACHE_CAPACITY {
            let mut digest = [0; 32];
            digest[..8].copy_from_slice(&index.to_le_bytes());
            cache.insert(digest, principal("old"), start, 0);
        }
        cache.insert([0xff; 32], principal("new"), start, 0);
        assert_eq!(cache.get(&[0xff; 32], start), None, "full of fresh entries");
        let later = start + KEY_CACHE_TTL;
        cache.insert([0xff; 32], principal("new"), later, 0);
        assert_eq!(cache.get(&[0xff; 32], later), Some(principal("new")));
        assert_eq!(cache.inner.lock().unwrap().entries.len(), 1);
    }
}
