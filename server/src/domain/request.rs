//! The access-request state machine and the events its changes produce.
//!
//! ```text
//!            approve            reject
//! APPROVED <--------- PENDING ---------> REJECTED
//!                    |       |
//!             cancel |       | expire
//!                    v       v
//!              CANCELLED   EXPIRED
//! ```
//! PENDING is the only state with a way out; every other state is final.

use super::policy::{Evaluation, Outcome};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AccessRequestId;

/// Lifecycle state of an access request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved,
    Rejected,
    Cancelled,
    Expired,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Approved,
        State::Rejected,
        State::Cancelled,
        State::Expired,
    ];

    /// The stable name stored in the database and the event log.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Cancelled => "cancelled",
            State::Expired => "expired",
        }
    }

    /// Parses a name produced by [`State::as_str`].
    pub fn parse(raw: &str) -> Option<State> {
        State::ALL.into_iter().find(|state| state.as_str() == raw)
    }
}

/// The kind of person access is requested for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserType {
    Employee,
    Partner,
    Customer,
    Contractor,
}

impl UserType {
    /// Every user type.
    pub const ALL: [UserType; 4] = [
        UserType::Employee,
        UserType::Partner,
        UserType::Customer,
        UserType::Contractor,
    ];

    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Employee => "employee",
            UserType::Partner => "partner",
            UserType::Customer => "customer",
            UserType::Contractor => "contractor",
        }
    }

    /// Parses a name produced by [`UserType::as_str`].
    pub fn parse(raw: &str) -> Option<UserType> {
        UserType::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }
}

/// Language of the applicant's emails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Locale {
    #[default]
    En,
    Fr,
}

impl Locale {
    /// Every supported locale.
    pub const ALL: [Locale; 2] = [Locale::En, Locale::Fr];

    /// The language tag (`en`, `fr`).
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
        }
    }

    /// Parses a language tag produced by [`Locale::as_str`].
    pub fn parse(raw: &str) -> Option<Locale> {
        Locale::ALL
            .into_iter()
            .find(|locale| locale.as_str() == raw)
    }
}

/// The person access is requested for. Every field is personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Applicant {
    pub email: String,
    pub full_name: String,
    pub organization: String,
    pub phone: Option<String>,
}

/// What the applicant consented to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Consent {
    pub version: String,
    pub purposes: Vec<String>,
}

/// A validated submission (see [`super::validation::validate_submission`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewAccessRequest {
    pub applicant: Applicant,
    pub user_type: UserType,
    pub locale: Locale,
    pub resource: String,
    pub justification: String,
    pub consent: Consent,
    /// Idempotency key; not part of the payload fingerprint.
    #[serde(skip)]
    pub request_id: Option<String>,
}

impl NewAccessRequest {
    /// A digest of everything submitted except the idempotency key: a retry
    /// must carry the same payload as the call it repeats.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("plain data always serializes");
        hex::encode(Sha256::digest(canonical))
    }
}

/// How a request left PENDING.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// API key name of the person who decided, or `system`.
    pub actor: String,
    pub decided_at: DateTime<Utc>,
    /// Approval note, rejection reason or cancellation reason.
    pub reason: Option<String>,
    pub automatic: bool,
}

/// The actor of automatic changes (rules, deadlines); a reserved key name.
pub const SYSTEM_ACTOR: &str = "system";

/// A change asked of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Approve {
        note: Option<String>,
    },
    Reject {
        reason: String,
    },
    Cancel {
        reason: Option<String>,
    },
    /// The decision deadline passed; always automatic.
    Expire,
}

impl Action {
    /// The verb, for messages and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Approve { .. } => "approve",
            Action::Reject { .. } => "reject",
            Action::Cancel { .. } => "cancel",
            Action::Expire => "expire",
        }
    }

    fn target_state(&self) -> State {
        match self {
            Action::Approve { .. } => State::Approved,
            Action::Reject { .. } => State::Rejected,
            Action::Cancel { .. } => State::Cancelled,
            Action::Expire => State::Expired,
        }
    }

    fn event_kind(&self) -> EventKind {
        match self {
            Action::Approve { .. } => EventKind::Approved,
            Action::Reject { .. } => EventKind::Rejected,
            Action::Cancel { .. } => EventKind::Cancelled,
            Action::Expire => EventKind::Expired,
        }
    }

    fn into_reason(self) -> Option<String> {
        match self {
            Action::Approve { note } => note,
            Action::Reject { reason } => Some(reason),
            Action::Cancel { reason } => reason,
            Action::Expire => None,
        }
    }
}

/// An action that the request's current state does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a request that is {}", from.as_str())]
pub struct TransitionError {
    pub from: State,
    pub action: &'static str,
}

/// Why a decision cannot be made, the state aside.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the submitter of a request under review may not approve it")]
    SelfApproval,
    #[error("this administrator already approved the request")]
    AlreadyApproved,
}

impl TransitionError {
    /// The machine-readable reason (AIP-193 ErrorInfo) for this refusal.
    pub fn reason(&self) -> &'static str {
        match self.from {
            State::Approved | State::Rejected => "REQUEST_ALREADY_DECIDED",
            State::Cancelled => "REQUEST_ALREADY_CANCELLED",
            State::Expired => "REQUEST_EXPIRED",
            // Unreachable today: every action is legal from PENDING.
            State::Pending => "REQUEST_NOT_DECIDABLE",
        }
    }
}

/// Kinds of entries in the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Submitted,
    Approved,
    Rejected,
    Cancelled,
    Expired,
    /// An email about the request was accepted by the mail server.
    EmailSent,
    /// An attempt to send an email failed; it will be tried again.
    EmailFailed,
    /// An email will not be sent: permanent failure or lifetime exhausted.
    EmailDead,
    /// An administrator queued a dead email again.
    EmailRequeued,
    /// The provider reported the email delivered to the recipient's server.
    EmailDelivered,
    /// The provider reported the email's delivery delayed.
    EmailDeliveryDelayed,
    /// The provider reported the email bounced (hard or soft).
    EmailBounced,
    /// The recipient marked the email as spam.
    EmailComplained,
    /// The email was not sent: its address is suppressed.
    EmailSuppressed,
    /// An administrator lifted the suppression an email's report caused.
    SuppressionLifted,
    /// A gateway code was issued (never the code itself).
    CodeIssued,
    /// A gateway redeemed the code.
    CodeRedeemed,
    /// The code was revoked.
    CodeRevoked,
    /// A wrong code whose selector matched this request's live code.
    CodeRedemptionFailed,
    /// An administrator approved a request that needs more approvals.
    ApprovalRecorded,
    /// The request passed half its review SLA; the administrators were
    /// reminded.
    Reminded,
    /// The request passed its review SLA; the administrators were alerted.
    Escalated,
    /// The applicant's personal data in the request was erased (their
    /// erasure, or the retention period); the request stays anonymous.
    Erased,
}

impl EventKind {
    /// Every event kind.
    pub const ALL: [EventKind; 23] = [
        EventKind::Submitted,
        EventKind::Approved,
        EventKind::Rejected,
        EventKind::Cancelled,
        EventKind::Expired,
        EventKind::EmailSent,
        EventKind::EmailFailed,
        EventKind::EmailDead,
        EventKind::EmailRequeued,
        EventKind::EmailDelivered,
        EventKind::EmailDeliveryDelayed,
        EventKind::EmailBounced,
        EventKind::EmailComplained,
        EventKind::EmailSuppressed,
        EventKind::SuppressionLifted,
        EventKind::CodeIssued,
        EventKind::CodeRedeemed,
        EventKind::CodeRevoked,
        EventKind::CodeRedemptionFailed,
        EventKind::ApprovalRecorded,
        EventKind::Reminded,
        EventKind::Escalated,
        EventKind::Erased,
    ];

    /// Parses a name produced by [`EventKind::as_str`].
    pub fn parse(raw: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|kind| kind.as_str() == raw)
    }

    /// The stable event type stored in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "request.submitted",
            EventKind::Approved => "request.approved",
            EventKind::Rejected => "request.rejected",
            EventKind::Cancelled => "request.cancelled",
            EventKind::Expired => "request.expired",
            EventKind::EmailSent => "email.sent",
            EventKind::EmailFailed => "email.failed",
            EventKind::EmailDead => "email.dead",
            EventKind::EmailRequeued => "email.requeued",
            EventKind::EmailDelivered => "email.delivered",
            EventKind::EmailDeliveryDelayed => "email.delivery_delayed",
            EventKind::EmailBounced => "email.bounced",
            EventKind::EmailComplained => "email.complained",
            EventKind::EmailSuppressed => "email.suppressed",
            EventKind::SuppressionLifted => "email.suppression_lifted",
            EventKind::CodeIssued => "code.issued",
            EventKind::CodeRedeemed => "code.redeemed",
            EventKind::CodeRevoked => "code.revoked",
            EventKind::CodeRedemptionFailed => "code.redemption_failed",
            EventKind::ApprovalRecorded => "request.approval_recorded",
            EventKind::Reminded => "request.reminded",
            EventKind::Escalated => "request.escalated",
            EventKind::Erased => "request.erased",
        }
    }
}

/// An event to append to the log in the same transaction as the change.
/// It carries no personal data of the applicant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub access_request: AccessRequestId,
    pub actor: String,
    pub state: State,
    pub occurred_at: DateTime<Utc>,
    /// Extra facts (decision reason, automatic flag) as a JSON object.
    pub data: serde_json::Value,
}

/// An access request as the business sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRequest {
    pub id: AccessRequestId,
    /// API key name of the submitter; owns the request.
    pub submitter: String,
    pub request_id: Option<String>,
    pub applicant: Applicant,
    pub user_type: UserType,
    pub locale: Locale,
    pub resource: String,
    pub justification: String,
    pub consent: Consent,
    pub state: State,
    pub decision: Option<Decision>,
    /// Incremented by every change; the etag is derived from it.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the policy said at submit, and the approvals so far.
    pub review: Review,
}

/// The policy's verdict on a request and its approvals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// The rule that matched at submit; `None`: no rule (manual review).
    pub rule: Option<String>,
    /// Why, in one line.
    pub explanation: Option<String>,
    /// Distinct administrators who must approve (at least 1).
    pub required_approvals: u32,
    /// Who approved so far, in order.
    pub approvals: Vec<String>,
}

impl Review {
    /// The review a policy evaluation asks for.
    pub fn from_evaluation(evaluation: &Evaluation) -> Review {
        Review {
            rule: evaluation.rule.clone(),
            explanation: Some(evaluation.explanation()),
            required_approvals: match evaluation.outcome {
                Outcome::Review { approvals } => approvals,
                Outcome::Approve | Outcome::Reject { .. } => 1,
            },
            approvals: Vec::new(),
        }
    }
}

impl AccessRequest {
    /// A freshly submitted, PENDING request and its `request.submitted` event.
    pub fn submit(
        id: AccessRequestId,
        submitter: &str,
        submission: NewAccessRequest,
        now: DateTime<Utc>,
    ) -> (AccessRequest, NewEvent) {
        let request = AccessRequest {
            id,
            submitter: submitter.to_owned(),
            request_id: submission.request_id,
            applicant: submission.applicant,
            user_type: submission.user_type,
            locale: submission.locale,
            resource: submission.resource,
            justification: submission.justification,
            consent: submission.consent,
            state: State::Pending,
            decision: None,
            version: 1,
            created_at: now,
            updated_at: now,
            review: Review {
                required_approvals: 1,
                ..Review::default()
            },
        };
        let event = NewEvent {
            kind: EventKind::Submitted,
            access_request: id,
            actor: submitter.to_owned(),
            state: State::Pending,
            occurred_at: now,
            data: serde_json::json!({
                "user_type": request.user_type.as_str(),
                "resource": request.resource,
            }),
        };
        (request, event)
    }

    /// Applies `action` by `actor`: the changed request and its event, or
    /// the reason the current state forbids it.
    pub fn apply(
        &self,
        action: Action,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(AccessRequest, NewEvent), DecisionError> {
        if self.state != State::Pending {
            return Err(TransitionError {
                from: self.state,
                action: action.verb(),
            }
            .into());
        }
        let mut approvals = self.review.approvals.clone();
        if let Action::Approve { .. } = &action {
            // A rule's review may not be short-cut by the submitter.
            if self.review.rule.is_some() && actor == self.submitter {
                return Err(DecisionError::SelfApproval);
            }
            if approvals.iter().any(|approver| approver == actor) {
                return Err(DecisionError::AlreadyApproved);
            }
            approvals.push(actor.to_owned());
            let needed = usize::try_from(self.review.required_approvals).unwrap_or(1);
            if approvals.len() < needed {
                let event = NewEvent {
                    kind: EventKind::ApprovalRecorded,
                    access_request: self.id,
                    actor: actor.to_owned(),
                    state: State::Pending,
                    occurred_at: now,
                    data: serde_json::json!({
                        "reason": action.into_reason(),
                        "approvals": approvals.len(),
                        "required_approvals": needed,
                    }),
                };
                let changed = AccessRequest {
                    review: Review {
                        approvals,
                        ..self.review.clone()
                    },
                    version: self.version + 1,
                    updated_at: now,
                    ..self.clone()
                };
                return Ok((changed, event));
            }
        }
        let automatic = matches!(action, Action::Expire);
        let new_state = action.target_state();
        let kind = action.event_kind();
        let reason = action.into_reason();
        let event = NewEvent {
            kind,
            access_request: self.id,
            actor: actor.to_owned(),
            state: new_state,
            occurred_at: now,
            data: serde_json::json!({
                "previous_state": self.state.as_str(),
                "reason": reason,
                "automatic": automatic,
            }),
        };
        let changed = AccessRequest {
            state: new_state,
            decision: Some(Decision {
                actor: actor.to_owned(),
                decided_at: now,
                reason,
                automatic,
            }),
            version: self.version + 1,
            updated_at: now,
            review: Review {
                approvals,
                ..self.review.clone()
            },
            ..self.clone()
        };
        Ok((changed, event))
    }

    /// The decision a policy rule makes at submit (approve or reject, by
    /// `system`, automatic, with the rule and why), or `None` when the
    /// rule asks for review.
    pub fn decide_by_policy(
        &self,
        evaluation: &Evaluation,
        now: DateTime<Utc>,
    ) -> Option<Result<(AccessRequest, NewEvent), DecisionError>> {
        let explanation = evaluation.explanation();
        let action = match &evaluation.outcome {
            Outcome::Approve => Action::Approve {
                note: Some(explanation),
            },
            Outcome::Reject { reason } => Action::Reject {
                reason: format!("{reason} ({explanation})"),
            },
            Outcome::Review { .. } => return None,
        };
        Some(
            self.apply(action, SYSTEM_ACTOR, now)
                .map(|(mut changed, mut event)| {
                    if let Some(decision) = &mut changed.decision {
                        decision.automatic = true;
                    }
                    event.data["automatic"] = serde_json::json!(true);
                    event.data["rule"] = serde_json::json!(evaluation.rule);
                    (changed, event)
                }),
        )
    }

    /// Opaque version tag (AIP-154): changes whenever the request changes.
    pub fn etag(&self) -> String {
        let digest = Sha256::digest(format!("{}:{}", self.id, self.version));
        hex::encode(&digest[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission() -> NewAccessRequest {
        NewAccessRequest {
            applicant: Applicant {
                email: "ada@example.com".into(),
                full_name: "Ada Lovelace".into(),
                organization: "Analytical Engines".into(),
                phone: None,
            },
            user_type: UserType::Partner,
            locale: Locale::Fr,
            resource: "vpn-paris".into(),
            justification: "maintenance".into(),
            consent: Consent {
                version: "2026-01".into(),
                purposes: vec!["access_management".into()],
            },
            request_id: Some("retry-1".into()),
        }
    }

    fn pending() -> AccessRequest {
        AccessRequest::submit(AccessRequestId::generate(), "svc", submission(), Utc::now()).0
    }

    fn all_actions() -> Vec<Action> {
        vec![
            Action::Approve { note: None },
            Action::Reject {
                reason: "no".into(),
            },
            Action::Cancel { reason: None },
            Action::Expire,
        ]
    }

    #[test]
    fn submit_starts_pending_with_a_submitted_event() {
        let (request, event) =
            AccessRequest::submit(AccessRequestId::generate(), "svc", submission(), Utc::now());
        assert_eq!(request.state, State::Pending);
        assert_eq!(request.version, 1);
        assert_eq!(request.decision, None);
        assert_eq!(request.request_id.as_deref(), Some("retry-1"));
        assert_eq!(event.kind, EventKind::Submitted);
        assert_eq!(event.state, State::Pending);
        assert_eq!(event.actor, "svc");
    }

    #[test]
    fn every_action_is_legal_from_pending() {
        let expected = [
            (State::Approved, EventKind::Approved),
            (State::Rejected, EventKind::Rejected),
            (State::Cancelled, EventKind::Cancelled),
            (State::Expired, EventKind::Expired),
        ];
        for (action, (state, kind)) in all_actions().into_iter().zip(expected) {
            let now = Utc::now();
            let (changed, event) = pending().apply(action, "ops", now).unwrap();
            assert_eq!(changed.state, state);
            assert_eq!(changed.version, 2);
            assert_eq!(changed.updated_at, now);
            assert_eq!(event.kind, kind);
            assert_eq!(event.state, state);
            let decision = changed.decision.unwrap();
            assert_eq!(decision.actor, "ops");
            assert_eq!(decision.automatic, state == State::Expired);
        }
    }

    #[test]
    fn no_action_leaves_a_final_state() {
        let finals = [
            (Action::Approve { note: None }, "REQUEST_ALREADY_DECIDED"),
            (
                Action::Reject {
                    reason: "no".into(),
                },
                "REQUEST_ALREADY_DECIDED",
            ),
            (Action::Cancel { reason: None }, "REQUEST_ALREADY_CANCELLED"),
            (Action::Expire, "REQUEST_EXPIRED"),
        ];
        for (to_final, reason) in finals {
            let (closed, _) = pending().apply(to_final, "ops", Utc::now()).unwrap();
            for action in all_actions() {
                let verb = action.verb();
                let DecisionError::Transition(error) =
                    closed.apply(action, "ops", Utc::now()).unwrap_err()
                else {
                    panic!("a closed request refuses by its state");
                };
                assert_eq!(error.from, closed.state);
                assert_eq!(error.action, verb);
                assert_eq!(error.reason(), reason);
            }
        }
    }

    #[test]
    fn a_review_needs_distinct_approvals_and_never_the_submitters() {
        let policy = crate::domain::policy::Policy::parse(
            "[[rules]]\nid = \"two\"\naction = \"require_review\"\napprovals = 2\n",
        )
        .unwrap();
        let mut request = pending();
        let evaluation = policy.evaluate(&submission());
        request.review = Review::from_evaluation(&evaluation);
        assert!(request.decide_by_policy(&evaluation, Utc::now()).is_none());
        let approve = || Action::Approve { note: None };
        let submitter = request.submitter.clone();
        assert_eq!(
            request
                .apply(approve(), &submitter, Utc::now())
                .unwrap_err(),
            DecisionError::SelfApproval
        );
        let (once, event) = request.apply(approve(), "ops", Utc::now()).unwrap();
        assert_eq!(once.state, State::Pending);
        assert_eq!(event.kind, EventKind::ApprovalRecorded);
        assert_eq!(once.review.approvals, ["ops"]);
        assert_eq!(
            once.apply(approve(), "ops", Utc::now()).unwrap_err(),
            DecisionError::AlreadyApproved
        );
        let (twice, event) = once.apply(approve(), "sec", Utc::now()).unwrap();
        assert_eq!(twice.state, State::Approved);
        assert_eq!(event.kind, EventKind::Approved);
        assert_eq!(twice.review.approvals, ["ops", "sec"]);
        assert_eq!(twice.decision.unwrap().actor, "sec");
    }

    #[test]
    fn a_rule_decides_at_submit_as_system_with_its_reason() {
        let policy = crate::domain::policy::Policy::parse(
            "[[rules]]\nid = \"no\"\naction = \"reject\"\nreason = \"closed\"\n",
        )
        .unwrap();
        let evaluation = policy.evaluate(&submission());
        let (rejected, event) = pending()
            .decide_by_policy(&evaluation, Utc::now())
            .unwrap()
            .unwrap();
        assert_eq!(rejected.state, State::Rejected);
        let decision = rejected.decision.unwrap();
        assert_eq!(decision.actor, SYSTEM_ACTOR);
        assert!(decision.automatic);
        assert_eq!(
            decision.reason.as_deref(),
            Some("closed (rule no (matches every request))")
        );
        assert_eq!(event.data["rule"], "no");
        assert_eq!(event.data["automatic"], true);
    }

    #[test]
    fn decision_keeps_the_reason() {
        let (rejected, event) = pending()
            .apply(
                Action::Reject {
                    reason: "not a partner".into(),
                },
                "ops",
                Utc::now(),
            )
            .unwrap();
        assert_eq!(
            rejected.decision.unwrap().reason.as_deref(),
            Some("not a partner")
        );
        assert_eq!(event.data["reason"], "not a partner");
        assert_eq!(event.data["previous_state"], "pending");
    }

    #[test]
    fn etag_changes_with_every_change() {
        let request = pending();
        let (approved, _) = request
            .apply(Action::Approve { note: None }, "ops", Utc::now())
            .unwrap();
        assert_ne!(request.etag(), approved.etag());
        assert_eq!(request.etag(), request.clone().etag());
    }

    #[test]
    fn fingerprint_ignores_the_idempotency_key_only() {
        let first = submission();
        let retry = NewAccessRequest {
            request_id: Some("other".into()),
            ..submission()
        };
        assert_eq!(first.fingerprint(), retry.fingerprint());
        let changed = NewAccessRequest {
            resource: "vpn-lyon".into(),
            ..submission()
        };
        assert_ne!(first.fingerprint(), changed.fingerprint());
    }

    #[test]
    fn stored_names_round_trip() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        for kind in UserType::ALL {
            assert_eq!(UserType::parse(kind.as_str()), Some(kind));
        }
        for locale in Locale::ALL {
            assert_eq!(Locale::parse(locale.as_str()), Some(locale));
        }
        assert_eq!(State::parse("PENDING"), None);
    }
}
