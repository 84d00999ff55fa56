//! Email: templates, the rendered [`OutgoingEmail`] every transport takes,
//! transports (file, log, SMTP over Sesame's own connection pool, SMTPS,
//! the HTTP providers Resend and SendGrid) with failover between them, the
//! providers' delivery webhooks, and the outbox worker that sends what the
//! store enqueued, with leases, retries and dead letters.

pub mod failover;
pub mod outgoing;
pub mod providers;
pub mod smtp;
pub mod templates;
pub mod transport;
pub mod webhooks;
pub mod worker;

pub use failover::{Attempt, FailoverPolicy, Transports};
pub use outgoing::OutgoingEmail;
pub use templates::{Rendered, Templates, sample_data};
pub use transport::{SendError, Transport, TransportError, TransportOptions, TransportUrl};
pub use worker::{WorkerOptions, run_worker};
