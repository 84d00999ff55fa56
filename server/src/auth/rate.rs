//! Request budgets: a token bucket per key (an API key name, or a peer's
//! address), refilled at `rate` tokens a second up to `burst`. Kept in
//! memory per process, so with several replicas a budget is per replica.
//!
//! A bucket that has refilled to `burst` says nothing a fresh one would
//! not, so such buckets are dropped once the table has doubled since the
//! last sweep: a flood from many addresses cannot grow it without bound.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before the first sweep of full ones.
const MIN_SWEEP_AT: usize = 1024;

/// Token buckets by key.
#[derive(Debug)]
pub struct RateLimiter<K = String> {
    rate: f64,
    burst: f64,
    table: Mutex<Table<K>>,
}

#[derive(Debug)]
struct Table<K> {
    buckets: HashMap<K, Bucket>,
    /// Size at which full buckets are swept next.
    sweep_at: usize,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `rate` calls a second on average, `burst` at once; `rate` 0 turns
    /// limiting off.
    pub fn new(rate: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
        }
    }

    /// Whether the limiter limits anything.
    pub fn is_enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes one token for `key` at `now`, or says how long until one is
    /// available.
    pub fn check<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.is_enabled() {
            return Ok(());
        }
        let mut table = self
            .table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if table.buckets.len() >= table.sweep_at {
            self.sweep(&mut table, now);
        }
        let bucket = match table.buckets.get_mut(key) {
            Some(bucket) => bucket,
            None => table.buckets.entry(key.to_owned()).or_insert(Bucket {
                tokens: self.burst,
                at: now,
            }),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Buckets currently tracked.
    pub fn tracked(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .buckets
            .len()
    }

    /// Drops the buckets that have refilled to `burst` by `now`, and sweeps
    /// again when the table has doubled from what is left.
    fn sweep(&self, table: &mut Table<K>, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        table.buckets.retain(|_, bucket| {
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            bucket.tokens + elapsed * rate < burst
        });
        table.sweep_at = (table.buckets.len() * 2).max(MIN_SWEEP_AT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_key() {
        let limiter = RateLimiter::<String>::new(2, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check("a", start), Ok(()));
        }
        let wait = limiter.check("a", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(
            limiter.check("b", start),
            Ok(()),
            "another key has its own bucket"
        );
        assert_eq!(
            limiter.check("a", start + Duration::from_millis(500)),
            Ok(())
        );
        assert!(
            limiter
                .check("a", start + Duration::from_millis(500))
                .is_err()
        );
        assert_eq!(RateLimiter::<String>::new(0, 1).check("a", start), Ok(()));
    }

    /// Guards against a flood from many addresses growing the table forever.
    #[test]
    fn full_buckets_are_swept_so_the_table_stays_bounded() {
        let limiter = RateLimiter::<u32>::new(10, 10);
        let start = Instant::now();
        for key in 0..5000u32 {
            limiter.check(&key, start).unwrap();
        }
        assert_eq!(limiter.tracked(), 5000, "buckets still refilling are kept");
        // A second later every one of those buckets is full again: the next
        // sweep drops them.
        let later = start + Duration::from_secs(1);
        for key in 10_000..14_000u32 {
            limiter.check(&key, later).unwrap();
        }
        assert!(
            limiter.tracked() < 5000,
            "{} buckets kept",
            limiter.tracked()
        );
        // A bucket still refilling is kept through a sweep.
        for _ in 0..10 {
            limiter.check(&7, later).unwrap();
        }
        for key in 20_000..20_000 + 4 * MIN_SWEEP_AT as u32 {
            limiter.check(&key, later).unwrap();
        }
        assert!(limiter.check(&7, later).is_err(), "the empty bucket stayed");
    }
}
