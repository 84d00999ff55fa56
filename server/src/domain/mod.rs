//! The rules of the business, free of I/O: typed ids, the access-request
//! state machine, input validation and the events a change produces.
//!
//! Nothing here knows about SeaORM, tonic or the clock: callers pass the
//! time in and persist what comes out.

pub mod codes;
pub mod deadline;
pub mod effects;
pub mod error;
pub mod event;
pub mod gateway_code;
pub mod ids;
pub mod mail;
pub mod operations;
pub mod policy;
pub mod request;
pub mod validation;

pub use codes::{CodePolicy, CodeState, CodeStatus, RedeemError, Redeemer};
pub use effects::{Change, CodeChange, Effect, RequestWrite};
pub use error::DomainError;
pub use event::{ChainedFields, GENESIS_HASH, RecordedEvent, decode_cursor, encode_cursor};
pub use gateway_code::{CodeFormatError, GatewayCode};
pub use ids::{AccessRequestId, NameError};
pub use request::{
    AccessRequest, Action, Applicant, Consent, Decision, EventKind, Locale, NewAccessRequest,
    NewEvent, State, TransitionError, UserType,
};
pub use validation::{FieldViolation, Violations};
