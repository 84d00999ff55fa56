//! `sesame.v1.AccessRequestService`.

use sesame_proto::v1 as pb;
use sesame_proto::v1::access_request_service_server::AccessRequestService;
use tonic::{Request, Response, Status};

use super::paging::Paging;
use super::{convert, paging, principal, scope};
use crate::auth::{Permission, Principal, authorize};
use crate::domain::deadline::{Deadlines, decision_times, stats_window};
use crate::domain::operations;
use crate::domain::validation::{
    MAX_REASON_CHARS, MAX_RESOURCE_CHARS, TextRule, Validator, Violations, validate_submission,
};
use crate::domain::{AccessRequest, AccessRequestId, Action, GatewayCode, NewAccessRequest, State};
use crate::policy::PolicyHandle;
use crate::store::{ListQuery, Order, Store, Stored, now};

/// The parts of a decision call that differ between approve, reject and
/// cancel.
struct DecisionCall<'a> {
    name: &'a str,
    etag: &'a str,
    /// Name of the note or reason field, for violations.
    text_field: &'static str,
    text: &'a str,
    text_required: bool,
}

/// The checked arguments of ApproveAccessRequest, RejectAccessRequest or
/// CancelAccessRequest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionArgs {
    pub id: AccessRequestId,
    /// The note or reason, normalised; `None` when empty.
    pub text: Option<String>,
    /// `None`: no etag given, decide whatever the version.
    pub etag: Option<String>,
}

fn check_decision(call: DecisionCall<'_>) -> Result<DecisionArgs, Violations> {
    let mut check = Validator::new();
    let id = check.name("name", call.name);
    let rule = TextRule {
        required: call.text_required,
        max_chars: MAX_REASON_CHARS,
        multiline: true,
    };
    let text = check.text(call.text_field, call.text, rule);
    let etag = check.text("etag", call.etag, TextRule::optional(64));
    check.finish()?;
    Ok(DecisionArgs {
        id: id.expect("validated above"),
        text,
        etag,
    })
}

// The argument checks of each RPC, run after authorization and before any
// store call. Public so that the fuzz targets (fuzz/) run exactly these.

/// Checks a SubmitAccessRequest message.
pub fn check_submit_access_request(
    message: pb::SubmitAccessRequestRequest,
) -> Result<NewAccessRequest, Violations> {
    validate_submission(&convert::raw_submission(message))
}

/// Checks an ExplainDecision message: a submission is required.
pub fn check_explain_decision(
    message: pb::ExplainDecisionRequest,
) -> Result<NewAccessRequest, Violations> {
    let Some(submission) = message.submission else {
        let mut check = Validator::new();
        check.violation("submission", "is required");
        return Err(check.finish().expect_err("a violation was recorded"));
    };
    validate_submission(&convert::raw_submission(submission))
}

/// Checks a GetAccessRequest message.
pub fn check_get_access_request(
    message: &pb::GetAccessRequestRequest,
) -> Result<AccessRequestId, Violations> {
    let mut check = Validator::new();
    let id = check.name("name", &message.name);
    check.finish()?;
    Ok(id.expect("validated above"))
}

/// Checks a ListAccessRequests message: its paging and its filters.
pub fn check_list_access_requests(
    message: &pb::ListAccessRequestsRequest,
) -> Result<(Paging<'_>, ListQuery), Violations> {
    let mut check = Validator::new();
    let paging = paging::paging(&mut check, message.page_size, &message.page_token);
    let state = check.optional_enum("state", convert::state_input(message.state));
    let user_type = check.optional_enum("user_type", convert::user_type_input(message.user_type));
    let (created_from, created_before) = paging::time_range(
        &mut check,
        ("create_time_start", message.create_time_start.as_ref()),
        ("create_time_end", message.create_time_end.as_ref()),
    );
    let resource = check.text(
        "resource",
        &message.resource,
        TextRule::optional(MAX_RESOURCE_CHARS),
    );
    let applicant_email = if message.applicant_email.trim().is_empty() {
        None
    } else {
        check.email("applicant_email", &message.applicant_email)
    };
    let order = order_by(&mut check, &message.order_by);
    check.finish()?;
    let query = ListQuery {
        state,
        user_type,
        created_from,
        created_before,
        resource,
        applicant_email,
        order,
    };
    Ok((paging, query))
}

/// Reads an AIP-132 `order_by` of ListAccessRequests: only `create_time`,
/// ascending (`create_time`, `create_time asc`) or descending
/// (`create_time desc`, and the default when empty).
fn order_by(check: &mut Validator, raw: &str) -> Order {
    let words: Vec<&str> = raw.split_whitespace().collect();
    match words.as_slice() {
        [] | ["create_time", "desc"] => Order::NewestFirst,
        ["create_time"] | ["create_time", "asc"] => Order::OldestFirst,
        _ => {
            check.violation(
                "order_by",
                format!(
                    "must be \"create_time desc\" (newest first, the default) or \"create_time\" / \"create_time asc\" (oldest first), got {raw:?}"
                ),
            );
            Order::NewestFirst
        }
    }
}

/// Checks an ApproveAccessRequest message (the note is optional).
pub fn check_approve_access_request(
    message: &pb::ApproveAccessRequestRequest,
) -> Result<DecisionArgs, Violations> {
    check_decision(DecisionCall {
        name: &message.name,
        etag: &message.etag,
        text_field: "note",
        text: &message.note,
        text_required: false,
    })
}

/// Checks a RejectAccessRequest message (the reason is required).
pub fn check_reject_access_request(
    message: &pb::RejectAccessRequestRequest,
) -> Result<DecisionArgs, Violations> {
    check_decision(DecisionCall {
        name: &message.name,
        etag: &message.etag,
        text_field: "reason",
        text: &message.reason,
        text_required: true,
    })
}

/// Checks a CancelAccessRequest message (the reason is optional).
pub fn check_cancel_access_request(
    message: &pb::CancelAccessRequestRequest,
) -> Result<DecisionArgs, Violations> {
    check_decision(DecisionCall {
        name: &message.name,
        etag: &message.etag,
        text_field: "reason",
        text: &message.reason,
        text_required: false,
    })
}

/// Checks a GetStats message: the window it asks for.
pub fn check_get_stats(message: &pb::GetStatsRequest) -> Result<std::time::Duration, Violations> {
    let mut check = Validator::new();
    let window = match stats_window(message.window_secs) {
        Ok(window) => Some(window),
        Err(problem) => {
            check.violation("window_secs", problem);
            None
        }
    };
    check.finish()?;
    Ok(window.expect("validated above"))
}

/// Serves the access-request RPCs over a [`Store`].
#[derive(Clone, Debug)]
pub struct AccessRequestApi {
    store: Store,
    policy: PolicyHandle,
    /// The review SLA that GetStats counts overdue requests against.
    deadlines: Deadlines,
    /// Consent purposes every submission must include.
    required_purposes: std::sync::Arc<Vec<String>>,
}

impl AccessRequestApi {
    /// The service over `store`, deciding by `policy` at submit, with the
    /// server's review `deadlines`.
    pub fn new(
        store: Store,
        policy: PolicyHandle,
        deadlines: Deadlines,
        required_purposes: Vec<String>,
    ) -> Self {
        Self {
            store,
            policy,
            deadlines,
            required_purposes: std::sync::Arc::new(required_purposes),
        }
    }

    /// The wire form of `requests`, each with its latest gateway code's
    /// status (looked up for approved requests only).
    async fn to_wire(&self, requests: &[AccessRequest]) -> Result<Vec<pb::AccessRequest>, Status> {
        let approved: Vec<AccessRequestId> = requests
            .iter()
            .filter(|request| request.state == State::Approved)
            .map(|request| request.id)
            .collect();
        let codes = self.store.code_statuses(&approved).await?;
        Ok(requests
            .iter()
            .map(|request| convert::access_request(request, codes.get(&request.id)))
            .collect())
    }

    async fn one_to_wire(&self, request: &AccessRequest) -> Result<pb::AccessRequest, Status> {
        let mut wire = self.to_wire(std::slice::from_ref(request)).await?;
        Ok(wire.remove(0))
    }

    /// The wire form of a request a change just stored: its code status
    /// came back from the writer, so nothing is read again.
    fn stored_to_wire(stored: &Stored) -> pb::AccessRequest {
        convert::access_request(&stored.request, stored.code.as_ref())
    }

    /// Applies a checked decision and returns the changed request.
    async fn decide(
        &self,
        request_principal: Principal,
        args: DecisionArgs,
        make_action: impl FnOnce(Option<String>) -> Action,
    ) -> Result<(pb::AccessRequest, Option<GatewayCode>), Status> {
        let (changed, code) = self
            .store
            .decide_request(
                &scope(&request_principal),
                args.id,
                args.etag.as_deref(),
                make_action(args.text),
                &request_principal.name,
            )
            .await?;
        Ok((Self::stored_to_wire(&changed), code))
    }
}

#[tonic::async_trait]
impl AccessRequestService for AccessRequestApi {
    async fn explain_decision(
        &self,
        request: Request<pb::ExplainDecisionRequest>,
    ) -> Result<Response<pb::ExplainDecisionResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::SubmitRequest)?;
        let submission = check_explain_decision(request.into_inner())?;
        let evaluation = self.policy.current().evaluate(&submission);
        Ok(Response::new(convert::explanation(&evaluation)))
    }

    async fn submit_access_request(
        &self,
        request: Request<pb::SubmitAccessRequestRequest>,
    ) -> Result<Response<pb::SubmitAccessRequestResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::SubmitRequest)?;
        let submission = check_submit_access_request(request.into_inner())?;
        operations::require_consent(&submission, &self.required_purposes)?;
        let evaluation = self.policy.current().evaluate(&submission);
        let (stored, _created) = self
            .store
            .submit_request(&caller.name, submission, &evaluation)
            .await?;
        Ok(Response::new(pb::SubmitAccessRequestResponse {
            access_request: Some(Self::stored_to_wire(&stored)),
        }))
    }

    async fn get_access_request(
        &self,
        request: Request<pb::GetAccessRequestRequest>,
    ) -> Result<Response<pb::GetAccessRequestResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ReadRequests)?;
        let id = check_get_access_request(request.get_ref())?;
        let found = self.store.get_request(&scope(&caller), id).await?;
        Ok(Response::new(pb::GetAccessRequestResponse {
            access_request: Some(self.one_to_wire(&found).await?),
        }))
    }

    async fn list_access_requests(
        &self,
        request: Request<pb::ListAccessRequestsRequest>,
    ) -> Result<Response<pb::ListAccessRequestsResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ReadRequests)?;
        let message = request.into_inner();
        let (paging, query) = check_list_access_requests(&message)?;
        let page = self
            .store
            .list_requests(
                &caller.name,
                &scope(&caller),
                &query,
                paging.page_size,
                paging.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListAccessRequestsResponse {
            access_requests: self.to_wire(&page.items).await?,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn approve_access_request(
        &self,
        request: Request<pb::ApproveAccessRequestRequest>,
    ) -> Result<Response<pb::ApproveAccessRequestResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::DecideRequest)?;
        let message = request.into_inner();
        let args = check_approve_access_request(&message)?;
        let (approved, code) = self
            .decide(caller, args, |note| Action::Approve { note })
            .await?;
        // The code is shown here only when asked for; it is always emailed.
        let gateway_code = match code {
            Some(code) if message.return_code => code.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ApproveAccessRequestResponse {
            access_request: Some(approved),
            gateway_code,
        }))
    }

    async fn reject_access_request(
        &self,
        request: Request<pb::RejectAccessRequestRequest>,
    ) -> Result<Response<pb::RejectAccessRequestResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::DecideRequest)?;
        let args = check_reject_access_request(request.get_ref())?;
        let (rejected, _) = self
            .decide(caller, args, |reason| Action::Reject {
                reason: reason.unwrap_or_default(),
            })
            .await?;
        Ok(Response::new(pb::RejectAccessRequestResponse {
            access_request: Some(rejected),
        }))
    }

    async fn cancel_access_request(
        &self,
        request: Request<pb::CancelAccessRequestRequest>,
    ) -> Result<Response<pb::CancelAccessRequestResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::CancelRequest)?;
        let args = check_cancel_access_request(request.get_ref())?;
        let (cancelled, _) = self
            .decide(caller, args, |reason| Action::Cancel { reason })
            .await?;
        Ok(Response::new(pb::CancelAccessRequestResponse {
            access_request: Some(cancelled),
        }))
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ReadStats)?;
        let window = check_get_stats(request.get_ref())?;
        let at = now();
        let window_start = at - chrono::Duration::from_std(window).unwrap_or_default();
        let overdue_cutoff = self.deadlines.cutoffs(at).escalate;
        let stats = self
            .store
            .request_stats(window_start, overdue_cutoff)
            .await?;
        let times = decision_times(&stats.decided);
        Ok(Response::new(pb::GetStatsResponse {
            state_counts: stats
                .counts
                .iter()
                .map(|(state, count)| pb::StateCount {
                    state: convert::state_to_proto(*state).into(),
                    count: *count,
                })
                .collect(),
            window_start_time: Some(convert::timestamp(window_start)),
            decided_count: i64::try_from(times.count).unwrap_or(i64::MAX),
            median_decision_time: times.median.map(convert::duration),
            p95_decision_time: times.p95.map(convert::duration),
            overdue_count: stats.overdue,
            review_sla: Some(convert::duration(self.deadlines.review_sla)),
            automatic_decided_count: stats.automatic,
            emails_sent_count: stats.emails_sent,
            emails_dead_count: stats.emails_dead,
            emails_retrying_count: stats.emails_retrying,
            emails_tracked_count: stats.tracked.sent,
            emails_delivered_count: stats.tracked.delivered,
            emails_bounced_count: stats.tracked.bounced,
            emails_complained_count: stats.tracked.complained,
            delivery_rate: stats.tracked.rate(),
        }))
    }
}
