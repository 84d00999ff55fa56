//! Per-key request budgets: a token bucket per API key name, refilled at
//! `rate` tokens a second up to `burst`. Kept in memory per process, so with
//! several replicas a key's budget is per replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token buckets by key name.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `rate` calls a second on average, `burst` at once; `rate` 0 turns
    /// limiting off.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`, or says how long until one is
    /// available.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_key() {
        let limiter = RateLimiter::new(2, 3);
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
        assert_eq!(RateLimiter::new(0, 1).check("a", start), Ok(()));
    }
}
