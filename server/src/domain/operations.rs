//! The operations on an access request, each deciding from the current
//! state and returning a [`Change`]: submit (with the consent rule and the
//! policy's verdict), decide (approve, reject, cancel, expire), the review
//! deadlines' reminder and escalation, and erasure. Gateway-code
//! operations are in [`super::codes`]. Pure: the caller reads the state,
//! passes the clock, and hands the change to the store's writer.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::codes::event_effect;
use super::deadline::{Deadlines, Due, deadline_event};
use super::effects::{Change, Effect, RequestWrite};
use super::mail::emails_for;
use super::policy::Evaluation;
use super::request::Review;
use super::{
    AccessRequest, AccessRequestId, Action, DomainError, EventKind, NewAccessRequest, NewEvent,
    State,
};

/// Refuses a submission that lacks consent to a purpose in `required`.
pub fn require_consent(
    submission: &NewAccessRequest,
    required: &[String],
) -> Result<(), DomainError> {
    let missing: Vec<String> = required
        .iter()
        .filter(|purpose| !submission.consent.purposes.contains(purpose))
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DomainError::ConsentRequired { missing })
    }
}

/// A new request as `submitter` submitted it, with the policy's
/// `evaluation`: PENDING, or decided at once by a rule (by `system`, with
/// the gateway code of an approval). The applicant is told; the
/// administrators (`admins`) are asked to review only when no rule decided.
pub fn submit(
    id: AccessRequestId,
    submitter: &str,
    submission: NewAccessRequest,
    evaluation: &Evaluation,
    admins: &[String],
    now: DateTime<Utc>,
) -> Result<Change, DomainError> {
    let (mut request, mut event) = AccessRequest::submit(id, submitter, submission, now);
    request.review = Review::from_evaluation(evaluation);
    event.data["rule"] = json!(evaluation.rule);
    let decided = request.decide_by_policy(evaluation, now).transpose()?;
    // A request a rule decided at once asks no administrator to review it.
    let reviewers: &[String] = if decided.is_some() { &[] } else { admins };
    let mut effects = vec![Effect::Event {
        emails: emails_for(EventKind::Submitted, &request, reviewers),
        event,
        seal_reason: false,
    }];
    let Some((changed, decision)) = decided else {
        return Ok(Change {
            request,
            write: RequestWrite::Insert,
            effects,
        });
    };
    effects.extend(decision_effects(&changed, decision, admins));
    Ok(Change {
        request: changed,
        write: RequestWrite::Insert,
        effects,
    })
}

/// Who decides a request: the deciding key's name (the event's actor) and
/// whether it may approve a request it submitted itself
/// (`allow_self_approval`).
#[derive(Clone, Copy, Debug)]
pub struct Decider<'a> {
    pub name: &'a str,
    pub may_approve_own: bool,
}

/// `action` on `current` by `by`. With `expected_etag`, refuses a
/// request that changed since the caller read it; an erased request
/// (`erased`) never changes.
pub fn decide(
    current: &AccessRequest,
    erased: bool,
    expected_etag: Option<&str>,
    action: Action,
    by: Decider<'_>,
    admins: &[String],
    now: DateTime<Utc>,
) -> Result<Change, DomainError> {
    if erased {
        return Err(DomainError::Erased);
    }
    if let Some(etag) = expected_etag
        && etag != current.etag()
    {
        return Err(DomainError::EtagMismatch);
    }
    let approving = matches!(action, Action::Approve { .. });
    let (changed, event) = current.apply(action, by.name, now)?;
    // Separation of duties: the key that submitted a request does not
    // approve it, unless the operator allowed it (a rule's review never
    // allows it: `apply` refuses that case itself).
    if approving && by.name == current.submitter && !by.may_approve_own {
        return Err(DomainError::SelfApproval);
    }
    let effects = decision_effects(&changed, event, admins);
    Ok(Change {
        request: changed,
        write: RequestWrite::Update {
            expected_version: current.version,
        },
        effects,
    })
}

/// The decision's event (its reason sealed: an administrator or a rule
/// wrote it) and what follows: an approval issues the gateway code, whose
/// event carries the applicant's email; other decisions email at once.
fn decision_effects(changed: &AccessRequest, event: NewEvent, admins: &[String]) -> Vec<Effect> {
    let approved = changed.state == State::Approved;
    let emails = if approved {
        Vec::new()
    } else {
        emails_for(event.kind, changed, admins)
    };
    let mut effects = vec![Effect::Event {
        emails,
        seal_reason: true,
        event: event.clone(),
    }];
    if approved {
        effects.push(Effect::IssueCode {
            actor: event.actor,
            reissued: false,
            at: event.occurred_at,
        });
    }
    effects
}

/// The reminder (`Due::Remind`) or escalation (`Due::Escalate`) of the
/// PENDING `request` at `at`: its mark, the event by `system`, and an email
/// to every administrator, unless the applicant was erased (`erased`):
/// there is nobody to write about, the event stream still tells.
pub fn deadline_step(
    request: &AccessRequest,
    erased: bool,
    step: Due,
    deadlines: &Deadlines,
    admins: &[String],
    at: DateTime<Utc>,
) -> Option<Change> {
    let kind = match step {
        Due::Remind => EventKind::Reminded,
        Due::Escalate => EventKind::Escalated,
        // Expiry is a decision: see [`decide`].
        Due::Expire => return None,
    };
    let event = deadline_event(kind, request.id, request.created_at, deadlines, at);
    let emails = if erased {
        Vec::new()
    } else {
        emails_for(kind, request, admins)
    };
    Some(Change {
        request: request.clone(),
        write: RequestWrite::MarkDeadline { step, at },
        effects: vec![Effect::Event {
            event,
            emails,
            seal_reason: false,
        }],
    })
}

/// The events of erasing the applicant of request `request`, whose state
/// was `state`: a PENDING one is cancelled first, a live code
/// (`code_revoked`) is revoked, and `request.erased` closes the record.
pub fn erasure_effects(
    request: AccessRequestId,
    state: State,
    code_revoked: bool,
    actor: &str,
    reason: &str,
    automatic: bool,
    at: DateTime<Utc>,
) -> Vec<Effect> {
    let pending = state == State::Pending;
    let state_after = if pending { State::Cancelled } else { state };
    let event = |kind, data| NewEvent {
        kind,
        access_request: request,
        actor: actor.to_owned(),
        state: state_after,
        occurred_at: at,
        data,
    };
    let mut effects = Vec::new();
    if pending {
        effects.push(event_effect(event(
            EventKind::Cancelled,
            json!({
                "previous_state": State::Pending.as_str(),
                "reason": "the applicant's personal data was erased",
                "automatic": automatic,
            }),
        )));
    }
    if code_revoked {
        effects.push(event_effect(event(
            EventKind::CodeRevoked,
            json!({ "reason": "the applicant's personal data was erased" }),
        )));
    }
    effects.push(event_effect(event(
        EventKind::Erased,
        json!({ "reason": reason, "automatic": automatic }),
    )));
    effects
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::policy::{Outcome, Policy};
    use crate::domain::request::{Applicant, Consent, Locale, UserType};

    /// A valid submission consenting to `purposes` (shared by the domain's
    /// tests).
    pub(crate) fn submission(purposes: &[&str]) -> NewAccessRequest {
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
                purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
            },
            request_id: None,
        }
    }

    fn admins() -> Vec<String> {
        vec!["root@example.com".to_owned()]
    }

    /// A PENDING request (no rule: manual review) submitted by `submitter`.
    fn pending_from(submitter: &str) -> AccessRequest {
        let evaluation = Policy::manual().evaluate(&submission(&[]));
        submit(
            AccessRequestId::generate(),
            submitter,
            submission(&[]),
            &evaluation,
            &admins(),
            Utc::now(),
        )
        .unwrap()
        .request
    }

    /// An administrator that did not submit the requests of these tests.
    fn root() -> Decider<'static> {
        Decider {
            name: "root",
            may_approve_own: false,
        }
    }

    #[test]
    fn the_submitting_key_approves_only_when_allowed() {
        let pending = pending_from("admin-who-submits");
        let approve = || Action::Approve { note: None };
        let own = |may_approve_own| Decider {
            name: &pending.submitter,
            may_approve_own,
        };
        let now = Utc::now();
        assert_eq!(
            decide(&pending, false, None, approve(), own(false), &admins(), now).unwrap_err(),
            DomainError::SelfApproval
        );
        let approved = decide(&pending, false, None, approve(), own(true), &admins(), now)
            .expect("allowed by the operator");
        assert_eq!(approved.request.state, State::Approved);
        // Rejecting or cancelling one's own request stays possible.
        let reject = Action::Reject {
            reason: "withdrawn".to_owned(),
        };
        assert!(decide(&pending, false, None, reject, own(false), &admins(), now).is_ok());
        assert!(decide(&pending, false, None, approve(), root(), &admins(), now).is_ok());
    }

    #[test]
    fn consent_lists_every_missing_purpose() {
        let required = vec!["access_management".to_owned(), "audit".to_owned()];
        assert_eq!(
            require_consent(&submission(&["audit"]), &required),
            Err(DomainError::ConsentRequired {
                missing: vec!["access_management".to_owned()]
            })
        );
        assert!(require_consent(&submission(&["audit", "access_management"]), &required).is_ok());
    }

    #[test]
    fn a_manual_submit_emails_applicant_and_admins() {
        let evaluation = Policy::manual().evaluate(&submission(&[]));
        let change = submit(
            AccessRequestId::generate(),
            "svc",
            submission(&[]),
            &evaluation,
            &admins(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(change.request.state, State::Pending);
        assert_eq!(change.write, RequestWrite::Insert);
        let [Effect::Event { emails, .. }] = change.effects.as_slice() else {
            panic!("one event expected: {:?}", change.effects);
        };
        assert_eq!(emails.len(), 2, "applicant and one admin");
    }

    #[test]
    fn a_rule_approval_asks_no_review_and_issues_a_code() {
        let mut evaluation = Policy::manual().evaluate(&submission(&[]));
        evaluation.outcome = Outcome::Approve;
        evaluation.rule = Some("partners".to_owned());
        let change = submit(
            AccessRequestId::generate(),
            "svc",
            submission(&[]),
            &evaluation,
            &admins(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(change.request.state, State::Approved);
        let Effect::Event { emails, .. } = &change.effects[0] else {
            panic!("submitted event first");
        };
        assert_eq!(emails.len(), 1, "the applicant only");
        assert!(matches!(
            change.effects[1],
            Effect::Event {
                seal_reason: true,
                ..
            }
        ));
        assert!(matches!(
            change.effects[2],
            Effect::IssueCode {
                reissued: false,
                ..
            }
        ));
    }

    #[test]
    fn a_stale_etag_or_an_erased_request_is_refused() {
        let pending = pending_from("svc");
        let reject = || Action::Reject {
            reason: "no".to_owned(),
        };
        let now = Utc::now();
        assert_eq!(
            decide(
                &pending,
                false,
                Some("stale"),
                reject(),
                root(),
                &admins(),
                now
            )
            .unwrap_err(),
            DomainError::EtagMismatch
        );
        assert_eq!(
            decide(&pending, true, None, reject(), root(), &admins(), now).unwrap_err(),
            DomainError::Erased
        );
        let change = decide(
            &pending,
            false,
            Some(&pending.etag()),
            reject(),
            root(),
            &admins(),
            now,
        )
        .unwrap();
        assert_eq!(change.request.state, State::Rejected);
        assert_eq!(
            change.write,
            RequestWrite::Update {
                expected_version: pending.version
            }
        );
    }

    #[test]
    fn erasing_a_pending_request_cancels_it_first() {
        let effects = erasure_effects(
            AccessRequestId::generate(),
            State::Pending,
            false,
            "dpo",
            "ticket",
            false,
            Utc::now(),
        );
        assert_eq!(effects.len(), 2);
    }
}
