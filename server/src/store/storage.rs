//! Storage that cannot take a write: a full disk, a database server out of
//! memory, an I/O error. Recognised from the database's own codes, counted
//! per process (`sesame_database_storage_errors_total`), and logged as one
//! ERROR line at most every [`LOG_EVERY`], with how many were not logged.
//! Nothing is half-written: the failed transaction is rolled back, reads
//! keep working, and writes succeed again once space returns.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::error;

/// The least time between two ERROR lines about storage.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// What the storage under the database ran out of, or how it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageProblem {
    /// No space left: SQLITE_FULL, PostgreSQL `53100 disk_full`.
    Full,
    /// SQLITE_NOMEM, PostgreSQL `53200 out_of_memory`.
    OutOfMemory,
    /// SQLITE_IOERR and its extended codes, PostgreSQL `58030 io_error`.
    IoError,
}

impl StorageProblem {
    /// Every problem, in the order of [`StorageProblem::label`]'s series.
    pub const ALL: [StorageProblem; 3] = [
        StorageProblem::Full,
        StorageProblem::OutOfMemory,
        StorageProblem::IoError,
    ];

    /// The `problem` label of the metric.
    pub fn label(self) -> &'static str {
        match self {
            StorageProblem::Full => "full",
            StorageProblem::OutOfMemory => "out_of_memory",
            StorageProblem::IoError => "io_error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for StorageProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StorageProblem::Full => "the database's storage is full",
            StorageProblem::OutOfMemory => "the database server is out of memory",
            StorageProblem::IoError => "the database's storage failed with an I/O error",
        })
    }
}

/// The storage problem a database error `code` reports, if any: SQLite's
/// (extended) result codes, PostgreSQL's SQLSTATEs.
pub fn problem_of_code(code: &str) -> Option<StorageProblem> {
    if code.len() < 5 {
        // SQLite: the primary code is the low byte of an extended code.
        return match code.parse::<i32>().ok()? & 0xff {
            13 => Some(StorageProblem::Full),
            7 => Some(StorageProblem::OutOfMemory),
            10 => Some(StorageProblem::IoError),
            _ => None,
        };
    }
    match code {
        "53100" => Some(StorageProblem::Full),
        "53200" => Some(StorageProblem::OutOfMemory),
        "58030" => Some(StorageProblem::IoError),
        _ => None,
    }
}

static COUNTS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// When the last ERROR line was written, and how many problems came since.
static LOGGED: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));

/// Counts one write refused by the storage, and logs it unless another
/// line did less than [`LOG_EVERY`] ago.
pub fn note(problem: StorageProblem, cause: &dyn std::fmt::Display) {
    COUNTS[problem.index()].fetch_add(1, Ordering::Relaxed);
    let mut logged = LOGGED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    if logged
        .0
        .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
    {
        logged.1 += 1;
        return;
    }
    let not_logged = std::mem::take(&mut logged.1);
    logged.0 = Some(now);
    drop(logged);
    error!(
        problem = problem.label(),
        cause = %cause,
        not_logged,
        "database write refused by its storage: {problem}; writes answer until space returns, reads still work"
    );
}

/// How many writes each problem refused in this process, in the order of
/// [`StorageProblem::ALL`].
pub fn counts() -> [(StorageProblem, u64); 3] {
    StorageProblem::ALL.map(|problem| (problem, COUNTS[problem.index()].load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_and_postgres_codes_name_their_problem() {
        assert_eq!(problem_of_code("13"), Some(StorageProblem::Full));
        assert_eq!(problem_of_code("7"), Some(StorageProblem::OutOfMemory));
        // SQLITE_IOERR_WRITE (778) and SQLITE_IOERR_FSYNC (1034).
        assert_eq!(problem_of_code("778"), Some(StorageProblem::IoError));
        assert_eq!(problem_of_code("1034"), Some(StorageProblem::IoError));
        assert_eq!(problem_of_code("53100"), Some(StorageProblem::Full));
        assert_eq!(problem_of_code("53200"), Some(StorageProblem::OutOfMemory));
        assert_eq!(problem_of_code("58030"), Some(StorageProblem::IoError));
        // Busy, a constraint, a serialization failure: not storage.
        assert_eq!(problem_of_code("5"), None);
        assert_eq!(problem_of_code("2067"), None);
        assert_eq!(problem_of_code("40001"), None);
        assert_eq!(problem_of_code("53300"), None);
        assert_eq!(problem_of_code(""), None);
    }

    #[test]
    fn problems_are_counted_each_time() {
        let before = counts()[StorageProblem::IoError.index()].1;
        note(StorageProblem::IoError, &"disk I/O error");
        note(StorageProblem::IoError, &"disk I/O error");
        assert!(counts()[StorageProblem::IoError.index()].1 >= before + 2);
    }
}
