//! Group commit of submissions: concurrent `SubmitAccessRequest` calls of
//! one process are written in one transaction, so that one commit (one
//! fsync, one turn on the event counter) serves many of them.
//!
//! A submitter queues its prepared submission and then either finds it
//! answered or takes the committer's turn and writes every queued
//! submission (up to [`MAX_BATCH`]) in one transaction, in a task of its
//! own, so a caller that goes away cannot abandon the others' batch (its
//! own submission is dropped if it went away before the batch began). Each
//! one is answered only after the commit (or the failure) of the
//! transaction that wrote it. When one submission of a batch fails, the
//! transaction is rolled back and each submission is written again in a
//! transaction of its own, so it fails alone. Two submissions of the batch
//! with the same idempotency key: the later ones are not written and, like a
//! concurrent retry today, replay the first one's result after its commit.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tracing::{Instrument, Span, debug, instrument, warn};

use super::requests::{Submission, Written};
use super::{Result, Store, StoreError};

/// Most submissions written in one transaction.
pub(super) const MAX_BATCH: usize = 128;

struct Queued {
    submission: Submission,
    reply: oneshot::Sender<Result<Written>>,
}

/// The queue of submissions waiting for a commit, and the committer's turn.
#[derive(Default)]
pub(super) struct GroupCommit {
    queue: Mutex<VecDeque<Queued>>,
    /// Held by the task writing a batch until every one of its submissions
    /// is answered: one batch of this store at a time.
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    fn take_batch(&self) -> Vec<Queued> {
        let mut queue = self.queue.lock().expect("submission queue lock poisoned");
        let size = queue.len().min(MAX_BATCH);
        queue.drain(..size).collect()
    }
}

impl Store {
    /// Writes `submission` in the next group commit; answers after it.
    pub(super) async fn commit_submission(&self, submission: Submission) -> Result<Written> {
        let (reply, mut answer) = oneshot::channel();
        self.group_commit
            .queue
            .lock()
            .expect("submission queue lock poisoned")
            .push_back(Queued { submission, reply });
        loop {
            let turn = tokio::select! {
                biased;
                answered = &mut answer => {
                    return answered.unwrap_or_else(|_| {
                        Err(StoreError::Corrupt("the group commit ended without an answer".into()))
                    });
                }
                turn = Arc::clone(&self.group_commit.turn).lock_owned() => turn,
            };
            // Every earlier batch is answered: ours is queued still, or was
            // answered just now (the next round returns it).
            let batch = self.group_commit.take_batch();
            if batch.is_empty() {
                continue;
            }
            let store = self.clone();
            // The batch's span is a child of the caller that writes it, so
            // a trace of the call shows the transaction it waited for.
            let caller = Span::current();
            tokio::spawn(
                async move {
                    store.write_batch(batch).await;
                    drop(turn);
                }
                .instrument(caller),
            );
        }
    }

    /// Writes `batch` in one transaction and answers each submission; on a
    /// failure before the commit, writes each in a transaction of its own.
    #[instrument(skip_all, fields(size = batch.len()))]
    async fn write_batch(&self, mut batch: Vec<Queued>) {
        // A caller that went away before its transaction began (deadline,
        // cancelled call) is not written, as without group commit.
        batch.retain(|queued| !queued.reply.is_closed());
        if batch.is_empty() {
            return;
        }
        let mut seen = HashSet::new();
        let (first_uses, repeats): (Vec<Queued>, Vec<Queued>) =
            batch
                .into_iter()
                .partition(|queued| match idempotency_key(queued) {
                    Some(key) => seen.insert(key),
                    None => true,
                });
        let submissions: Vec<&Submission> =
            first_uses.iter().map(|queued| &queued.submission).collect();
        let results: Vec<Result<Written>> = match self.write_submissions(&submissions).await {
            Ok(written) => written.into_iter().map(Ok).collect(),
            Err(BatchError::Commit(error)) => {
                // The outcome of a failed commit is unknown: writing the
                // submissions again could store them twice.
                if !matches!(error, StoreError::Storage { .. }) {
                    // A storage problem was logged where it was recognised.
                    warn!(error = %error, "group commit failed");
                }
                let mut results: Vec<Result<Written>> = (1..submissions.len())
                    .map(|_| Err(copy_error(&error)))
                    .collect();
                results.insert(0, Err(error));
                results
            }
            Err(BatchError::Statement(error)) if submissions.len() == 1 => vec![Err(error)],
            Err(BatchError::LostRace) if submissions.len() == 1 => {
                vec![Ok(Written::RequestIdTaken)]
            }
            Err(BatchError::Statement(_) | BatchError::LostRace) => {
                debug!("a submission failed its batch; writing each alone");
                self.write_each(&submissions).await
            }
        };
        let mut stored = HashSet::new();
        for (queued, result) in first_uses.into_iter().zip(results) {
            if let (Ok(Written::Stored(_)), Some(key)) = (&result, idempotency_key(&queued)) {
                stored.insert(key);
            }
            let _ = queued.reply.send(result);
        }
        // A repeat of a stored first use replays it, as a concurrent retry
        // does; a repeat of a failed one is written now.
        let mut unwritten = Vec::new();
        for queued in repeats {
            let key = idempotency_key(&queued);
            if key.is_some_and(|key| stored.contains(&key)) {
                let _ = queued.reply.send(Ok(Written::RequestIdTaken));
            } else {
                unwritten.push(queued);
            }
        }
        for queued in unwritten {
            let mut result = self.write_each(&[&queued.submission]).await;
            let _ = queued.reply.send(result.remove(0));
        }
    }

    /// Writes each submission in a transaction of its own.
    async fn write_each(&self, submissions: &[&Submission]) -> Vec<Result<Written>> {
        let mut results = Vec::with_capacity(submissions.len());
        for submission in submissions {
            let result = match self.write_submissions(&[submission]).await {
                Ok(mut written) => Ok(written.remove(0)),
                Err(BatchError::Commit(error) | BatchError::Statement(error)) => Err(error),
                Err(BatchError::LostRace) => Ok(Written::RequestIdTaken),
            };
            results.push(result);
        }
        results
    }

    /// One transaction writing every submission, committed. A lost
    /// idempotency race fails it too: a concurrent call with the same key
    /// committed first.
    async fn write_submissions(
        &self,
        submissions: &[&Submission],
    ) -> std::result::Result<Vec<Written>, BatchError> {
        let mut writer = self.writer().await.map_err(BatchError::Statement)?;
        let mut written = Vec::with_capacity(submissions.len());
        for submission in submissions {
            let outcome = Store::write_submission(&mut writer, submission)
                .await
                .map_err(BatchError::Statement)?;
            if matches!(outcome, Written::RequestIdTaken) {
                // Our statement failed; on PostgreSQL the transaction is
                // unusable. Ours must not exist: roll back.
                writer.rollback().await.map_err(BatchError::Statement)?;
                return Err(BatchError::LostRace);
            }
            written.push(outcome);
        }
        // The counter's write-back is a statement like the others: its
        // failure leaves nothing committed.
        writer.flush().await.map_err(BatchError::Statement)?;
        writer.commit().await.map_err(BatchError::Commit)?;
        Ok(written)
    }
}

enum BatchError {
    /// A statement failed: nothing was committed.
    Statement(StoreError),
    /// A submission's idempotency key was committed meanwhile by another
    /// call: nothing was committed.
    LostRace,
    /// The commit failed: what was committed is unknown.
    Commit(StoreError),
}

/// The submitter and idempotency key of a submission that has one.
fn idempotency_key(queued: &Queued) -> Option<(String, String)> {
    let submission = &queued.submission;
    let request_id = submission.request_id.as_ref()?;
    Some((submission.submitter.clone(), request_id.clone()))
}

/// Each submission of a failed commit gets the same error; `StoreError`
/// keeps its database source only once.
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(_) => {
            StoreError::Unavailable(sea_orm::DbErr::Custom("the group commit failed".into()))
        }
        StoreError::Storage { problem, .. } => StoreError::Storage {
            problem: *problem,
            source: sea_orm::DbErr::Custom("the group commit failed".into()),
        },
        _ => StoreError::Database(sea_orm::DbErr::Custom("the group commit failed".into())),
    }
}
