//! Rust client of the Sesame access-request service.
//!
//! The generated tonic stubs are re-exported as [`v1`]; on top of them sits a
//! thin layer: [`SesameClient::connect`] with a URL and an API key (sent as
//! `authorization: Bearer <key>` on every call), optional TLS, a deadline on
//! every unary call (and optionally on each attempt), automatic retry of
//! `UNAVAILABLE` (AIP-194) and, for [`SesameClient::submit`] whose
//! `request_id` makes it safe, of an attempt's `DEADLINE_EXCEEDED`, and
//! [`Watch`], an event stream that resumes from its last cursor after a
//! disconnect so nothing is missed or seen twice.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sesame_client::{SesameClient, v1};
//! let client = SesameClient::connect("http://127.0.0.1:50051", "sesame_...").await?;
//! let mut watch = client.watch(v1::WatchEventsRequest::default()).await?;
//! let request = client.get("accessRequests/0193...").await?;
//! println!("{} is {:?}", request.name, request.state());
//! while let Some(event) = watch.next().await {
//!     let event = event?;
//!     println!("{} {:?} {}", event.cursor, event.r#type(), event.access_request);
//! }
//! # Ok(()) }
//! ```

mod bearer;
mod client;
mod errors;
mod retry;
mod watch;

pub use bearer::Bearer;
pub use client::{ConnectError, Options, SesameClient};
pub use errors::{error_reason, field_violations};
pub use retry::RetryPolicy;
pub use sesame_proto::v1;
pub use watch::Watch;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// `AccessRequestService` stub with the bearer key attached.
pub type AccessRequestClient = v1::access_request_service_client::AccessRequestServiceClient<
    InterceptedService<Channel, Bearer>,
>;
/// `EventService` stub with the bearer key attached.
pub type EventClient =
    v1::event_service_client::EventServiceClient<InterceptedService<Channel, Bearer>>;
/// `EmailService` stub with the bearer key attached.
pub type EmailClient =
    v1::email_service_client::EmailServiceClient<InterceptedService<Channel, Bearer>>;
/// `PrivacyService` stub with the bearer key attached.
pub type PrivacyClient =
    v1::privacy_service_client::PrivacyServiceClient<InterceptedService<Channel, Bearer>>;
