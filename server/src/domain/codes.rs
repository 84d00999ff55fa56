//! The life of a gateway code: its reported status, how long it is valid,
//! and the rules of issuing, revoking, reissuing and redeeming one, each
//! returning the [`Effect`]s to record. The code's format and digest are in
//! [`super::gateway_code`]; sealing it for its email is in `crypto::codes`.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::effects::{CodeChange, Effect};
use super::mail::{MailTemplate, NewEmail, emails_for};
use super::{AccessRequest, AccessRequestId, DomainError, EventKind, NewEvent, State};

/// How codes are issued: validity, per resource if set, and the wrong
/// guesses a code survives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodePolicy {
    /// Validity of a code.
    pub validity: Duration,
    /// Validity per resource (gateway), overriding `validity`.
    pub validity_by_resource: HashMap<String, Duration>,
    /// Wrong guesses of one code before it is revoked.
    pub max_failed_attempts: i32,
}

impl CodePolicy {
    /// How long a code for `resource` stays valid.
    pub fn validity_for(&self, resource: &str) -> Duration {
        self.validity_by_resource
            .get(resource)
            .copied()
            .unwrap_or(self.validity)
    }
}

/// Where a code is in its life, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeState {
    Active,
    Redeemed,
    Revoked,
    Expired,
}

/// What is known about a code, never the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeStatus {
    /// The stored code's row id (not the code).
    pub id: String,
    pub state: CodeState,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub redeemed_at: Option<DateTime<Utc>>,
    pub redeemed_by: Option<String>,
    pub failed_attempts: i32,
}

/// Why a redemption failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("no such gateway code")]
    NotFound,
    #[error("the gateway code was already redeemed")]
    Used,
    #[error("the gateway code was revoked")]
    Revoked,
    #[error("the gateway code has expired")]
    Expired,
    #[error("this gateway key may not redeem codes for resource {resource:?}")]
    ResourceNotAllowed { resource: String },
}

/// The gateway presenting a code: its key's name (the actor) and the
/// resources the key is bound to (empty: unbound, any resource).
#[derive(Clone, Copy, Debug)]
pub struct Redeemer<'a> {
    pub name: &'a str,
    pub resources: &'a [String],
}

impl Redeemer<'_> {
    /// Whether this gateway may redeem a code for `resource`.
    pub fn may_redeem_for(&self, resource: &str) -> bool {
        self.resources.is_empty() || self.resources.iter().any(|bound| bound == resource)
    }
}

/// An event about the code of `request` (codes exist only for approved
/// requests).
pub fn code_event(
    kind: EventKind,
    request: AccessRequestId,
    actor: &str,
    at: DateTime<Utc>,
    data: serde_json::Value,
) -> NewEvent {
    NewEvent {
        kind,
        access_request: request,
        actor: actor.to_owned(),
        state: State::Approved,
        occurred_at: at,
        data,
    }
}

/// The `code.issued` event of a code issued at `at`, valid until
/// `expires_at`, and the applicant's approval email that will carry it
/// (the writer adds the sealed code).
pub fn issued(
    request: &AccessRequest,
    actor: &str,
    reissued: bool,
    at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> (NewEvent, Vec<NewEmail>) {
    let event = code_event(
        EventKind::CodeIssued,
        request.id,
        actor,
        at,
        json!({
            "expires_at": expires_at.to_rfc3339(),
            "reissued": reissued,
        }),
    );
    let mut emails = emails_for(EventKind::Approved, request, &[]);
    for email in &mut emails {
        if email.template == MailTemplate::ApplicantApproved {
            email.data["code_expires"] = json!(expires_at.format("%Y-%m-%d %H:%M UTC").to_string());
            if reissued {
                email.data["reissued"] = json!(true);
            }
        }
    }
    (event, emails)
}

/// Revokes the request's live code (`latest`, its newest code): the new
/// status and the effects.
pub fn revoke(
    request: AccessRequestId,
    latest: Option<&CodeStatus>,
    actor: &str,
    reason: Option<String>,
    at: DateTime<Utc>,
) -> Result<(CodeStatus, Vec<Effect>), DomainError> {
    let Some(live) = latest.filter(|status| status.state == CodeState::Active) else {
        return Err(DomainError::CodeNotActive);
    };
    let effects = vec![
        Effect::CodeChange {
            code: live.id.clone(),
            change: CodeChange::Revoked { at },
        },
        Effect::ForgetUnsentCodes,
        event_effect(code_event(
            EventKind::CodeRevoked,
            request,
            actor,
            at,
            json!({ "reason": reason }),
        )),
    ];
    let revoked = CodeStatus {
        state: CodeState::Revoked,
        ..live.clone()
    };
    Ok((revoked, effects))
}

/// Revokes the request's live code, if any, and issues a new one. The
/// request must be approved and its code not redeemed.
pub fn reissue(
    request: &AccessRequest,
    latest: Option<&CodeStatus>,
    actor: &str,
    at: DateTime<Utc>,
) -> Result<Vec<Effect>, DomainError> {
    if request.state != State::Approved {
        return Err(DomainError::RequestNotApproved);
    }
    let mut effects = Vec::new();
    match latest {
        Some(used) if used.state == CodeState::Redeemed => return Err(DomainError::CodeUsed),
        Some(live) if live.state == CodeState::Active => {
            effects.push(Effect::CodeChange {
                code: live.id.clone(),
                change: CodeChange::Revoked { at },
            });
            effects.push(event_effect(code_event(
                EventKind::CodeRevoked,
                request.id,
                actor,
                at,
                json!({ "reason": "replaced by a reissued code" }),
            )));
        }
        // Revoked or expired already, or none yet: nothing to revoke.
        Some(_) | None => {}
    }
    // The previous approval email, if not sent yet, must not deliver the
    // revoked code (nor RetryEmail later).
    effects.push(Effect::ForgetUnsentCodes);
    effects.push(Effect::IssueCode {
        actor: actor.to_owned(),
        reissued: true,
        at,
    });
    Ok(effects)
}

/// Redeems the code whose digest matched, `status`, of a request for
/// `resource`, presented by `gateway`. A gateway bound to other resources
/// learns nothing of the code's state.
pub fn redeem(
    request: AccessRequestId,
    resource: &str,
    status: &CodeStatus,
    gateway: Redeemer<'_>,
    at: DateTime<Utc>,
) -> Result<Vec<Effect>, RedeemError> {
    if !gateway.may_redeem_for(resource) {
        return Err(RedeemError::ResourceNotAllowed {
            resource: resource.to_owned(),
        });
    }
    let gateway = gateway.name;
    match status.state {
        CodeState::Redeemed => return Err(RedeemError::Used),
        CodeState::Revoked => return Err(RedeemError::Revoked),
        CodeState::Expired => return Err(RedeemError::Expired),
        CodeState::Active => {}
    }
    Ok(vec![
        Effect::CodeChange {
            code: status.id.clone(),
            change: CodeChange::Redeemed {
                gateway: gateway.to_owned(),
                at,
            },
        },
        event_effect(code_event(
            EventKind::CodeRedeemed,
            request,
            gateway,
            at,
            json!({}),
        )),
    ])
}

/// A wrong guess at the live code `live` of `request`: it counts against
/// the code, and the last allowed one revokes it. Whether it revoked, and
/// the effects.
pub fn wrong_guess(
    request: AccessRequestId,
    live: &CodeStatus,
    gateway: &str,
    max_failed_attempts: i32,
    at: DateTime<Utc>,
) -> (bool, Vec<Effect>) {
    let attempts = live.failed_attempts + 1;
    let revoke = attempts >= max_failed_attempts;
    let mut effects = vec![
        Effect::CodeChange {
            code: live.id.clone(),
            change: CodeChange::FailedAttempt {
                attempts,
                revoke,
                at,
            },
        },
        event_effect(code_event(
            EventKind::CodeRedemptionFailed,
            request,
            gateway,
            at,
            json!({
                "reason": format!("wrong code, attempt {attempts} of {max_failed_attempts}"),
            }),
        )),
    ];
    if revoke {
        effects.push(Effect::ForgetUnsentCodes);
        effects.push(event_effect(code_event(
            EventKind::CodeRevoked,
            request,
            "system",
            at,
            json!({
                "reason": format!("{attempts} wrong guesses"),
                "automatic": true,
            }),
        )));
    }
    (revoke, effects)
}

/// An event that causes no email and carries no reason to seal.
pub fn event_effect(event: NewEvent) -> Effect {
    Effect::Event {
        event,
        emails: Vec::new(),
        seal_reason: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: CodeState) -> CodeStatus {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        CodeStatus {
            id: "code-1".into(),
            state,
            issued_at: at,
            expires_at: at + chrono::Duration::hours(1),
            redeemed_at: None,
            redeemed_by: None,
            failed_attempts: 0,
        }
    }

    #[test]
    fn only_an_active_code_is_redeemed_or_revoked() {
        let request = AccessRequestId::generate();
        let at = Utc::now();
        let gw = Redeemer {
            name: "gw",
            resources: &[],
        };
        assert!(redeem(request, "vpn", &status(CodeState::Active), gw, at).is_ok());
        assert_eq!(
            redeem(request, "vpn", &status(CodeState::Redeemed), gw, at),
            Err(RedeemError::Used)
        );
        assert_eq!(
            redeem(request, "vpn", &status(CodeState::Expired), gw, at),
            Err(RedeemError::Expired)
        );
        assert_eq!(
            revoke(request, Some(&status(CodeState::Revoked)), "ada", None, at).unwrap_err(),
            DomainError::CodeNotActive
        );
        let (revoked, effects) =
            revoke(request, Some(&status(CodeState::Active)), "ada", None, at).unwrap();
        assert_eq!(revoked.state, CodeState::Revoked);
        assert_eq!(effects.len(), 3);
    }

    #[test]
    fn a_bound_gateway_redeems_only_its_resources_codes() {
        let request = AccessRequestId::generate();
        let at = Utc::now();
        let bound = ["vpn-paris".to_owned(), "vpn-lyon".to_owned()];
        let gw = Redeemer {
            name: "gw-paris",
            resources: &bound,
        };
        let effects = redeem(request, "vpn-lyon", &status(CodeState::Active), gw, at).unwrap();
        assert_eq!(effects.len(), 2);
        for state in [CodeState::Active, CodeState::Redeemed, CodeState::Revoked] {
            assert_eq!(
                redeem(request, "vpn-berlin", &status(state), gw, at),
                Err(RedeemError::ResourceNotAllowed {
                    resource: "vpn-berlin".into()
                }),
                "whatever the code's state ({state:?})"
            );
        }
        assert!(!gw.may_redeem_for("VPN-PARIS"), "resources compare exactly");
    }

    fn approved_request() -> AccessRequest {
        use crate::domain::operations;
        use crate::domain::policy::{Outcome, Policy};
        let submission = operations::tests::submission(&["access_management"]);
        let mut evaluation = Policy::manual().evaluate(&submission);
        evaluation.outcome = Outcome::Approve;
        evaluation.rule = Some("partners".into());
        let change = operations::submit(
            AccessRequestId::generate(),
            "svc",
            submission,
            &evaluation,
            &[],
            Utc::now(),
        )
        .unwrap();
        assert_eq!(change.request.state, State::Approved);
        change.request
    }

    #[test]
    fn a_reissue_revokes_the_live_code_and_refuses_a_redeemed_one() {
        let request = approved_request();
        let at = Utc::now();
        let effects = reissue(&request, Some(&status(CodeState::Active)), "ada", at).unwrap();
        assert!(matches!(
            effects.as_slice(),
            [
                Effect::CodeChange {
                    change: CodeChange::Revoked { .. },
                    ..
                },
                Effect::Event { .. },
                Effect::ForgetUnsentCodes,
                Effect::IssueCode { reissued: true, .. },
            ]
        ));
        let effects = reissue(&request, Some(&status(CodeState::Expired)), "ada", at).unwrap();
        assert_eq!(effects.len(), 2, "nothing to revoke: {effects:?}");
        assert_eq!(
            reissue(&request, Some(&status(CodeState::Redeemed)), "ada", at).unwrap_err(),
            DomainError::CodeUsed
        );
        let pending = AccessRequest {
            state: State::Pending,
            ..request
        };
        assert_eq!(
            reissue(&pending, None, "ada", at).unwrap_err(),
            DomainError::RequestNotApproved
        );
    }

    #[test]
    fn the_last_allowed_wrong_guess_revokes() {
        let request = AccessRequestId::generate();
        let mut live = status(CodeState::Active);
        let (revoked, effects) = wrong_guess(request, &live, "gw", 3, Utc::now());
        assert!(!revoked);
        assert_eq!(effects.len(), 2);
        live.failed_attempts = 2;
        let (revoked, effects) = wrong_guess(request, &live, "gw", 3, Utc::now());
        assert!(revoked);
        assert!(effects.contains(&Effect::ForgetUnsentCodes));
    }
}
