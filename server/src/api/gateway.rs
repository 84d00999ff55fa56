//! `sesame.v1.GatewayService`: gateways redeem codes; administrators revoke
//! and reissue them. Failed redemptions are counted per caller, and a
//! caller over its budget is refused for a while (per server process).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sesame_proto::v1 as pb;
use sesame_proto::v1::gateway_service_server::GatewayService;
use tonic::{Request, Response, Status};
use tracing::info;

use super::{convert, principal, status};
use crate::auth::{Permission, authorize};
use crate::domain::validation::{MAX_REASON_CHARS, TextRule, Validator, Violations};
use crate::domain::{AccessRequestId, GatewayCode, Redeemer};
use crate::store::Store;

/// The window over which failed redemptions are counted.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Recent failed redemptions per caller.
#[derive(Debug, Default)]
struct FailureLog {
    by_caller: HashMap<String, VecDeque<Instant>>,
}

impl FailureLog {
    /// How long `caller` must wait before trying again, if it is over
    /// `limit` failures within the window.
    fn wait(&mut self, caller: &str, limit: u32, now: Instant) -> Option<Duration> {
        let failures = self.by_caller.get_mut(caller)?;
        while failures
            .front()
            .is_some_and(|at| now.duration_since(*at) >= FAILURE_WINDOW)
        {
            failures.pop_front();
        }
        if failures.is_empty() {
            self.by_caller.remove(caller);
            return None;
        }
        (failures.len() >= limit as usize)
            .then(|| {
                failures
                    .front()
                    .map(|oldest| FAILURE_WINDOW - now.duration_since(*oldest))
            })
            .flatten()
    }

    fn record(&mut self, caller: &str, now: Instant) {
        self.by_caller
            .entry(caller.to_owned())
            .or_default()
            .push_back(now);
    }

    /// Takes back a failure recorded at `at` (the call succeeded).
    fn forget(&mut self, caller: &str, at: Instant) {
        if let Some(failures) = self.by_caller.get_mut(caller)
            && let Some(index) = failures.iter().rposition(|recorded| *recorded == at)
        {
            failures.remove(index);
        }
    }
}

/// Serves the gateway-code RPCs.
#[derive(Clone, Debug)]
pub struct GatewayApi {
    store: Store,
    failures_per_minute: u32,
    failures: Arc<Mutex<FailureLog>>,
}

impl GatewayApi {
    /// The service over `store`; a caller may fail `failures_per_minute`
    /// redemptions per minute.
    pub fn new(store: Store, failures_per_minute: u32) -> Self {
        Self {
            store,
            failures_per_minute,
            failures: Arc::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, FailureLog> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

// The argument checks of each RPC, run after authorization and before any
// store call. Public so that the fuzz targets (fuzz/) run exactly these.

/// Checks a RedeemGatewayCode message: the code as typed.
pub fn check_redeem_gateway_code(
    message: &pb::RedeemGatewayCodeRequest,
) -> Result<GatewayCode, Status> {
    GatewayCode::parse(&message.code).map_err(|error| status::code_malformed(&error))
}

/// Checks a RevokeGatewayCode message: the request and an optional reason.
pub fn check_revoke_gateway_code(
    message: &pb::RevokeGatewayCodeRequest,
) -> Result<(AccessRequestId, Option<String>), Violations> {
    let mut check = Validator::new();
    let id = check.name("access_request", &message.access_request);
    let reason = check.text(
        "reason",
        &message.reason,
        TextRule::optional(MAX_REASON_CHARS),
    );
    check.finish()?;
    Ok((id.expect("validated above"), reason))
}

/// Checks a ReissueGatewayCode message: the request.
pub fn check_reissue_gateway_code(
    message: &pb::ReissueGatewayCodeRequest,
) -> Result<AccessRequestId, Violations> {
    let mut check = Validator::new();
    let id = check.name("access_request", &message.access_request);
    check.finish()?;
    Ok(id.expect("validated above"))
}

#[tonic::async_trait]
impl GatewayService for GatewayApi {
    async fn redeem_gateway_code(
        &self,
        request: Request<pb::RedeemGatewayCodeRequest>,
    ) -> Result<Response<pb::RedeemGatewayCodeResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::RedeemCode)?;
        // Every call counts as a failure until it succeeds, checked and
        // recorded under one lock, so concurrent calls cannot all slip
        // under the budget before their failures are known.
        let at = Instant::now();
        {
            let mut failures = self.failures();
            if let Some(wait) = failures.wait(&caller.name, self.failures_per_minute, at) {
                return Err(status::too_many_failed_redemptions(wait));
            }
            failures.record(&caller.name, at);
        }
        let code = check_redeem_gateway_code(request.get_ref())?;
        let gateway = Redeemer {
            name: &caller.name,
            resources: &caller.resources,
        };
        let outcome = self.store.redeem_code(&code, gateway).await;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                // Not the caller's failure: the database's.
                self.failures().forget(&caller.name, at);
                return Err(error.into());
            }
        };
        match outcome {
            Ok(redeemed) => {
                self.failures().forget(&caller.name, at);
                let wire = convert::access_request(&redeemed.request, None);
                Ok(Response::new(pb::RedeemGatewayCodeResponse {
                    access_request: wire.name,
                    applicant: wire.applicant,
                    resource: wire.resource,
                    user_type: wire.user_type,
                }))
            }
            Err(refused) => {
                info!(gateway = %caller.name, reason = %refused, "gateway code refused");
                Err(refused.into())
            }
        }
    }

    async fn revoke_gateway_code(
        &self,
        request: Request<pb::RevokeGatewayCodeRequest>,
    ) -> Result<Response<pb::RevokeGatewayCodeResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManageCodes)?;
        let (id, reason) = check_revoke_gateway_code(request.get_ref())?;
        let revoked = self.store.revoke_code(id, &caller.name, reason).await?;
        Ok(Response::new(pb::RevokeGatewayCodeResponse {
            gateway_code: Some(convert::code_status(&revoked)),
        }))
    }

    async fn reissue_gateway_code(
        &self,
        request: Request<pb::ReissueGatewayCodeRequest>,
    ) -> Result<Response<pb::ReissueGatewayCodeResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManageCodes)?;
        let id = check_reissue_gateway_code(request.get_ref())?;
        let issued = self.store.reissue_code(id, &caller.name).await?;
        Ok(Response::new(pb::ReissueGatewayCodeResponse {
            gateway_code: Some(convert::code_status(&issued)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_beyond_the_budget_wait_until_the_oldest_ages_out() {
        let mut log = FailureLog::default();
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(log.wait("gw", 3, start), None);
            log.record("gw", start + Duration::from_secs(i));
        }
        let wait = log.wait("gw", 3, start + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(log.wait("other", 3, start), None);
        assert_eq!(log.wait("gw", 3, start + Duration::from_secs(61)), None);
    }
}
