//! Deadline-aware admission of unary calls: at most `max_active_calls` do
//! work at once and the others wait their turn in arrival order. A call
//! that, given the calls ahead of it and the recent time each took, could
//! not start and finish before its deadline is refused at once (UNAVAILABLE
//! `SERVER_OVERLOADED` with a RetryInfo), and one whose deadline passes
//! while it waits ends without having begun anything: under overload the
//! work done is for callers still there to take the answer, instead of
//! every call slowing down until most miss their deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::LimitError;

/// What a call is assumed to take before any has been timed.
const FIRST_ESTIMATE: Duration = Duration::from_millis(5);

/// The turns to do work, with what the recent calls took.
#[derive(Debug)]
pub struct Admission {
    active: Arc<Semaphore>,
    permits: usize,
    /// Calls waiting for a turn now.
    waiting: AtomicUsize,
    /// Moving average of the time a call held its turn, in microseconds.
    service_micros: AtomicU64,
}

/// A call's turn; gives it back, timed, when dropped.
#[derive(Debug)]
pub struct Turn {
    _permit: OwnedSemaphorePermit,
    since: Instant,
    admission: Arc<Admission>,
}

/// Decrements the waiting count when the wait ends, however it ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Admission {
    /// `permits` calls at work at once (at least one).
    pub fn new(permits: usize) -> Arc<Admission> {
        let permits = permits.max(1);
        Arc::new(Admission {
            active: Arc::new(Semaphore::new(permits)),
            permits,
            waiting: AtomicUsize::new(0),
            service_micros: AtomicU64::new(FIRST_ESTIMATE.as_micros() as u64),
        })
    }

    /// The recent time a call held its turn.
    pub fn service_time(&self) -> Duration {
        Duration::from_micros(self.service_micros.load(Ordering::Relaxed))
    }

    /// How long a call arriving now would wait for its turn.
    pub fn expected_wait(&self) -> Duration {
        let ahead = self.waiting.load(Ordering::Relaxed) as u32;
        self.service_time() * ahead / self.permits as u32
    }

    /// Waits for a turn, in arrival order; refuses at once when the wait
    /// and the call would outlast `budget` (what is left of the deadline).
    /// The caller bounds the wait by the deadline itself.
    pub async fn enter(self: &Arc<Self>, budget: Duration) -> Result<Turn, LimitError> {
        if let Ok(permit) = self.active.clone().try_acquire_owned() {
            return Ok(self.turn(permit));
        }
        let wait = self.expected_wait();
        if wait + self.service_time() > budget {
            return Err(LimitError::DeadlineUnreachable { wait, budget });
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.waiting);
        let permit = self
            .active
            .clone()
            .acquire_owned()
            .await
            .expect("the admission semaphore is never closed");
        Ok(self.turn(permit))
    }

    fn turn(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Turn {
        Turn {
            _permit: permit,
            since: Instant::now(),
            admission: self.clone(),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let sample = self.since.elapsed().as_micros().min(u128::from(u32::MAX)) as u64;
        // An average over about the last 16 calls; lost updates between
        // racing calls only drop a sample.
        let average = &self.admission.service_micros;
        let old = average.load(Ordering::Relaxed);
        average.store((old * 15 + sample) / 16, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_beyond_the_turns_wait_in_order_or_are_refused_when_they_cannot_make_it() {
        let admission = Admission::new(1);
        let first = admission.enter(Duration::from_secs(1)).await.unwrap();
        // Teach it that a call takes about 100 ms.
        admission.service_micros.store(100_000, Ordering::Relaxed);
        let waiter = tokio::spawn({
            let admission = admission.clone();
            async move { admission.enter(Duration::from_secs(1)).await.map(|_| ()) }
        });
        while admission.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(admission.expected_wait(), Duration::from_millis(100));
        // One ahead (100 ms) plus its own 100 ms: 150 ms is not enough.
        let refused = admission
            .enter(Duration::from_millis(150))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, LimitError::DeadlineUnreachable { wait, .. } if wait == Duration::from_millis(100)),
            "{refused:?}"
        );
        drop(first);
        waiter.await.unwrap().expect("the waiter gets the turn");
        assert_eq!(admission.waiting.load(Ordering::Relaxed), 0);
        assert!(
            admission.service_time() < Duration::from_millis(100),
            "the short first call lowered the average"
        );
    }
}
