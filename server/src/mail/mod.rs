//! Email: templates, transports (file, log, SMTP over Sesame's own
//! connection pool) and the outbox worker that sends what the store
//! enqueued, with leases, retries and dead letters.

pub mod smtp;
pub mod templates;
pub mod transport;
pub mod worker;

pub use templates::{Rendered, Templates, sample_data};
pub use transport::{SendError, Transport};
pub use worker::{WorkerOptions, run_worker};
