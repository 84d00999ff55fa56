//! Thin tonic adapters: each RPC reads the caller, checks its role,
//! converts and validates the message, calls the store, converts back.
//! Errors become statuses in [`status`] only. Each RPC's argument checks
//! are a public `check_*` function of its service's module, so the fuzz
//! targets (`fuzz/`) run the very checks the handlers run.

pub mod access_requests;
pub mod caller;
pub mod convert;
pub mod emails;
pub mod events;
pub mod gateway;
pub mod paging;
pub mod privacy;
pub mod status;

pub use access_requests::AccessRequestApi;
pub use caller::CallerApi;
pub use emails::EmailApi;
pub use events::EventApi;
pub use gateway::GatewayApi;
pub use privacy::PrivacyApi;

use tonic::{Request, Status};

use crate::auth::{Principal, Role};
use crate::store::Scope;

/// The caller resolved by the auth layer. Its absence is a wiring bug, not
/// a caller error, so it is reported as INTERNAL.
fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(status::internal)
}

/// What the caller may see: everything, or only its own requests.
fn scope(principal: &Principal) -> Scope {
    match principal.role {
        Role::Admin | Role::Auditor => Scope::All,
        // A gateway is never authorized to read requests; if it were, it
        // would see only its own (none).
        Role::Submitter | Role::Gateway => Scope::OwnedBy(principal.name.clone()),
    }
}
