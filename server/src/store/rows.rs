//! The mapping between a stored access-request row and the domain's
//! [`AccessRequest`]: one column list for every write and read.

use sea_orm::Set;

use super::entities::access_request;
use super::{Result, StoreError, from_micros, to_micros};
use crate::domain::request::Review;
use crate::domain::{
    AccessRequest, AccessRequestId, Applicant, Consent, Decision, Locale, State, UserType,
};

fn approvals_json(approvals: &[String]) -> String {
    serde_json::to_string(approvals).expect("strings always serialize")
}

pub(super) fn access_request_row(request: &AccessRequest) -> access_request::ActiveModel {
    let decision = request.decision.as_ref();
    access_request::ActiveModel {
        id: Set(request.id.to_string()),
        submitter: Set(request.submitter.clone()),
        request_id: Set(request.request_id.clone()),
        applicant_email: Set(request.applicant.email.clone()),
        applicant_full_name: Set(request.applicant.full_name.clone()),
        applicant_organization: Set(request.applicant.organization.clone()),
        applicant_phone: Set(request.applicant.phone.clone()),
        user_type: Set(request.user_type.as_str().to_owned()),
        locale: Set(request.locale.as_str().to_owned()),
        resource: Set(request.resource.clone()),
        justification: Set(request.justification.clone()),
        consent_version: Set(request.consent.version.clone()),
        consent_purposes: Set(
            serde_json::to_string(&request.consent.purposes).expect("strings always serialize")
        ),
        state: Set(request.state.as_str().to_owned()),
        decided_by: Set(decision.map(|d| d.actor.clone())),
        decided_at_us: Set(decision.map(|d| to_micros(d.decided_at))),
        decision_reason: Set(decision.and_then(|d| d.reason.clone())),
        decision_automatic: Set(decision.is_some_and(|d| d.automatic)),
        version: Set(request.version),
        created_at_us: Set(to_micros(request.created_at)),
        updated_at_us: Set(to_micros(request.updated_at)),
        policy_rule: Set(request.review.rule.clone()),
        policy_explanation: Set(request.review.explanation.clone()),
        required_approvals: Set(i32::try_from(request.review.required_approvals).unwrap_or(1)),
        approvals: Set(approvals_json(&request.review.approvals)),
        reminded_at_us: Set(None),
        escalated_at_us: Set(None),
        subject_id: Set(None),
        applicant_index: Set(None),
        erased_at_us: Set(None),
    }
}

pub(super) fn to_domain(row: access_request::Model) -> Result<AccessRequest> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("access request {}: {what}", row.id));
    let id = row
        .id
        .parse::<AccessRequestId>()
        .map_err(|_| corrupt("bad id"))?;
    let state = State::parse(&row.state).ok_or_else(|| corrupt("unknown state"))?;
    let user_type = UserType::parse(&row.user_type).ok_or_else(|| corrupt("unknown user type"))?;
    let locale = Locale::parse(&row.locale).ok_or_else(|| corrupt("unknown locale"))?;
    let purposes: Vec<String> =
        serde_json::from_str(&row.consent_purposes).map_err(|_| corrupt("bad consent purposes"))?;
    let decision = match (row.decided_by, row.decided_at_us) {
        (Some(actor), Some(decided_at_us)) => Some(Decision {
            actor,
            decided_at: from_micros(decided_at_us)?,
            reason: row.decision_reason,
            automatic: row.decision_automatic,
        }),
        _ => None,
    };
    Ok(AccessRequest {
        id,
        submitter: row.submitter,
        request_id: row.request_id,
        applicant: Applicant {
            email: row.applicant_email,
            full_name: row.applicant_full_name,
            organization: row.applicant_organization,
            phone: row.applicant_phone,
        },
        user_type,
        locale,
        resource: row.resource,
        justification: row.justification,
        consent: Consent {
            version: row.consent_version,
            purposes,
        },
        state,
        decision,
        version: row.version,
        created_at: from_micros(row.created_at_us)?,
        updated_at: from_micros(row.updated_at_us)?,
        review: Review {
            rule: row.policy_rule,
            explanation: row.policy_explanation,
            required_approvals: u32::try_from(row.required_approvals)
                .map_err(|_| corrupt("bad required approvals"))?,
            approvals: serde_json::from_str(&row.approvals)
                .map_err(|_| corrupt("bad approvals"))?,
        },
    })
}
