//! `sesame.v1.CallerService`: tells a tool (the admin console) which key it
//! holds, its role and the review SLA, so that it can adapt; every other
//! RPC still checks the role itself.

use std::time::Duration;

use sesame_proto::v1 as pb;
use sesame_proto::v1::caller_service_server::CallerService;
use tonic::{Request, Response, Status};

use super::{convert, principal};
use crate::auth::Role;

/// Serves GetCaller.
#[derive(Clone, Debug)]
pub struct CallerApi {
    review_sla: Duration,
}

impl CallerApi {
    /// The service, reporting `review_sla` to its callers.
    pub fn new(review_sla: Duration) -> Self {
        Self { review_sla }
    }
}

/// The wire role of a key's role.
fn role_to_proto(role: Role) -> pb::CallerRole {
    match role {
        Role::Submitter => pb::CallerRole::Submitter,
        Role::Admin => pb::CallerRole::Admin,
        Role::Auditor => pb::CallerRole::Auditor,
        Role::Gateway => pb::CallerRole::Gateway,
    }
}

#[tonic::async_trait]
impl CallerService for CallerApi {
    async fn get_caller(
        &self,
        request: Request<pb::GetCallerRequest>,
    ) -> Result<Response<pb::GetCallerResponse>, Status> {
        // Any valid key may ask who it is: the auth layer has already
        // refused unknown and revoked ones.
        let caller = principal(&request)?;
        Ok(Response::new(pb::GetCallerResponse {
            name: caller.name,
            role: role_to_proto(caller.role).into(),
            review_sla: Some(convert::duration(self.review_sla)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_has_its_own_wire_role() {
        let wire: Vec<pb::CallerRole> = Role::ALL.into_iter().map(role_to_proto).collect();
        assert!(!wire.contains(&pb::CallerRole::Unspecified));
        let mut distinct = wire.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), Role::ALL.len());
    }
}
