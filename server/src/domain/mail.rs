//! Which emails a change causes, when a failed send is tried again, and
//! what a provider's delivery report does to an email.
//!
//! Pure: the store enqueues what [`emails_for`] returns in the same
//! transaction as the change; the worker asks [`retry_at`] after a
//! transient failure; the store applies a [`Delivery`] report when
//! [`Delivery::replaces`] the email's last one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::request::SYSTEM_ACTOR;
use super::{AccessRequest, AccessRequestId, EventKind, Locale, NewEvent, State, UserType};

/// Every kind of email, each with a template per locale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MailTemplate {
    /// To the applicant: the request was received.
    ApplicantReceived,
    /// To the applicant: access approved.
    ApplicantApproved,
    /// To the applicant: access rejected, with the reason.
    ApplicantRejected,
    /// To the applicant: the request was cancelled.
    ApplicantCancelled,
    /// To every configured administrator: a new request waits.
    AdminNewRequest,
    /// To the applicant: the request was not decided in time and expired.
    ApplicantExpired,
    /// To every configured administrator: a request is past half its
    /// review SLA.
    AdminReminder,
    /// To every configured administrator: a request is past its review SLA.
    AdminEscalation,
}

impl MailTemplate {
    /// Every template.
    pub const ALL: [MailTemplate; 8] = [
        MailTemplate::ApplicantReceived,
        MailTemplate::ApplicantApproved,
        MailTemplate::ApplicantRejected,
        MailTemplate::ApplicantCancelled,
        MailTemplate::AdminNewRequest,
        MailTemplate::ApplicantExpired,
        MailTemplate::AdminReminder,
        MailTemplate::AdminEscalation,
    ];

    /// The stable name, also the template file stem.
    pub fn as_str(self) -> &'static str {
        match self {
            MailTemplate::ApplicantReceived => "applicant_received",
            MailTemplate::ApplicantApproved => "applicant_approved",
            MailTemplate::ApplicantRejected => "applicant_rejected",
            MailTemplate::ApplicantCancelled => "applicant_cancelled",
            MailTemplate::AdminNewRequest => "admin_new_request",
            MailTemplate::ApplicantExpired => "applicant_expired",
            MailTemplate::AdminReminder => "admin_reminder",
            MailTemplate::AdminEscalation => "admin_escalation",
        }
    }

    /// Parses a name produced by [`MailTemplate::as_str`].
    pub fn parse(raw: &str) -> Option<MailTemplate> {
        MailTemplate::ALL
            .into_iter()
            .find(|template| template.as_str() == raw)
    }
}

/// One email to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEmail {
    pub template: MailTemplate,
    pub recipient: String,
    pub locale: Locale,
    pub user_type: UserType,
    /// Template variables.
    pub data: serde_json::Value,
}

/// The emails that event `kind` on `request` causes. Administrators get
/// their emails in English.
pub fn emails_for(kind: EventKind, request: &AccessRequest, admins: &[String]) -> Vec<NewEmail> {
    let reason = request.decision.as_ref().and_then(|d| d.reason.clone());
    let data = json!({
        "full_name": request.applicant.full_name,
        "organization": request.applicant.organization,
        "applicant_email": request.applicant.email,
        "resource": request.resource,
        "request": request.id.name(),
        "user_type": request.user_type.as_str(),
        "reason": reason,
        "submitted": request.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
    });
    let to_applicant = |template| NewEmail {
        template,
        recipient: request.applicant.email.clone(),
        locale: request.locale,
        user_type: request.user_type,
        data: data.clone(),
    };
    let to_admins = |template| {
        admins
            .iter()
            .map(|admin| NewEmail {
                template,
                recipient: admin.clone(),
                locale: Locale::En,
                user_type: request.user_type,
                data: data.clone(),
            })
            .collect::<Vec<_>>()
    };
    match kind {
        EventKind::Submitted => {
            let mut emails = vec![to_applicant(MailTemplate::ApplicantReceived)];
            emails.extend(to_admins(MailTemplate::AdminNewRequest));
            emails
        }
        EventKind::Approved => vec![to_applicant(MailTemplate::ApplicantApproved)],
        EventKind::Rejected => vec![to_applicant(MailTemplate::ApplicantRejected)],
        EventKind::Cancelled => vec![to_applicant(MailTemplate::ApplicantCancelled)],
        EventKind::Expired => vec![to_applicant(MailTemplate::ApplicantExpired)],
        EventKind::Reminded => to_admins(MailTemplate::AdminReminder),
        EventKind::Escalated => to_admins(MailTemplate::AdminEscalation),
        EventKind::CodeIssued
        | EventKind::CodeRedeemed
        | EventKind::CodeRevoked
        | EventKind::CodeRedemptionFailed
        | EventKind::ApprovalRecorded
        | EventKind::EmailRequeued
        | EventKind::EmailDelivered
        | EventKind::EmailDeliveryDelayed
        | EventKind::EmailBounced
        | EventKind::EmailComplained
        | EventKind::EmailSuppressed
        | EventKind::SuppressionLifted
        | EventKind::EmailSent
        | EventKind::EmailFailed
        | EventKind::EmailDead
        | EventKind::Erased => Vec::new(),
    }
}

/// An event about one email of `request` (sent, failed, dead, requeued),
/// by `system`, recording the request's current `state`. An `error` in
/// `data` loses its addresses: events carry no personal data (the full
/// reply stays in the admin-only outbox row).
pub fn delivery_event(
    kind: EventKind,
    request: AccessRequestId,
    state: State,
    mut data: serde_json::Value,
    at: DateTime<Utc>,
) -> NewEvent {
    if let Some(error) = data.get("error").and_then(|error| error.as_str()) {
        data["error"] = json!(redact_addresses(error));
    }
    NewEvent {
        kind,
        access_request: request,
        actor: SYSTEM_ACTOR.to_owned(),
        state,
        occurred_at: at,
        data,
    }
}

/// The transports whose deliveries are reported back by webhook: the
/// delivery rate counts the emails they accepted.
pub const TRACKED_PROVIDERS: [&str; 2] = ["resend", "sendgrid"];

/// What a provider reported about an email it accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The recipient's server accepted it.
    Delivered,
    /// The recipient's server deferred it; the provider keeps trying.
    Delayed,
    /// It bounced: `hard` for good (the address does not exist, say).
    Bounced { hard: bool },
    /// The recipient marked it as spam.
    Complained,
}

impl Delivery {
    /// The stored form (`outbox.delivery`); a bounce is `bounced` either way.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Delayed => "delayed",
            Delivery::Bounced { .. } => "bounced",
            Delivery::Complained => "complained",
        }
    }

    /// The report's name in metrics.
    pub fn report(self) -> &'static str {
        match self {
            Delivery::Bounced { hard: true } => "bounced_hard",
            Delivery::Bounced { hard: false } => "bounced_soft",
            other => other.as_str(),
        }
    }

    /// The event it appends.
    pub fn event_kind(self) -> EventKind {
        match self {
            Delivery::Delivered => EventKind::EmailDelivered,
            Delivery::Delayed => EventKind::EmailDeliveryDelayed,
            Delivery::Bounced { .. } => EventKind::EmailBounced,
            Delivery::Complained => EventKind::EmailComplained,
        }
    }

    /// Why the address is suppressed after this report, if it is: a hard
    /// bounce or a complaint.
    pub fn suppresses(self) -> Option<&'static str> {
        match self {
            Delivery::Bounced { hard: true } => Some("hard_bounce"),
            Delivery::Complained => Some("complaint"),
            Delivery::Delivered | Delivery::Delayed | Delivery::Bounced { hard: false } => None,
        }
    }

    /// Whether this report becomes the email's delivery state over the
    /// `current` one (stored form). Reports arrive out of order: a delay
    /// never hides a later outcome, and a delivery never hides a bounce or a
    /// complaint (a bounce can follow a delivery; a complaint follows it).
    /// Every report appends its event either way.
    pub fn replaces(self, current: Option<&str>) -> bool {
        let rank = |delivery: &str| match delivery {
            "delayed" => 1,
            "delivered" => 2,
            "bounced" | "complained" => 3,
            _ => 0,
        };
        rank(self.as_str()) >= current.map_or(0, rank)
    }
}

/// When to try again after failed attempt number `attempt` (1-based), or
/// `None` when the email is past its lifetime and goes dead. `jitter` in
/// [0, 1) spreads retries of many emails over +-20 % of the delay.
pub fn retry_at(
    attempt: u32,
    schedule: &[Duration],
    lifetime: Duration,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    let index = (attempt.max(1) as usize - 1).min(schedule.len().saturating_sub(1));
    let base = schedule
        .get(index)
        .copied()
        .unwrap_or(Duration::from_secs(60));
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    let delay = chrono::Duration::from_std(base.mul_f64(factor)).ok()?;
    let next = now + delay;
    let deadline = created_at + chrono::Duration::from_std(lifetime).ok()?;
    (next <= deadline).then_some(next)
}

/// `text` with every email address replaced by `<address>`: SMTP replies
/// often repeat the recipient, which must not reach events or logs.
pub fn redact_addresses(text: &str) -> String {
    text.split_inclusive(|c: char| c.is_whitespace())
        .map(|word| {
            let core = word.trim_end();
            let trailing = &word[core.len()..];
            if core.contains('@') {
                format!("<address>{trailing}")
            } else {
                word.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_reports_do_not_go_backwards_and_only_hard_ones_suppress() {
        assert!(Delivery::Delivered.replaces(None));
        assert!(Delivery::Delivered.replaces(Some("delayed")));
        assert!(!Delivery::Delayed.replaces(Some("delivered")));
        assert!(Delivery::Bounced { hard: true }.replaces(Some("delivered")));
        assert!(!Delivery::Delivered.replaces(Some("bounced")));
        assert!(Delivery::Complained.replaces(Some("delivered")));
        assert_eq!(
            Delivery::Bounced { hard: true }.suppresses(),
            Some("hard_bounce")
        );
        assert_eq!(Delivery::Bounced { hard: false }.suppresses(), None);
        assert_eq!(Delivery::Complained.suppresses(), Some("complaint"));
        assert_eq!(Delivery::Delivered.suppresses(), None);
        assert_eq!(Delivery::Bounced { hard: false }.report(), "bounced_soft");
        assert_eq!(
            Delivery::Bounced { hard: true }.event_kind(),
            EventKind::EmailBounced
        );
    }
    use crate::domain::{AccessRequestId, Action, Applicant, Consent, NewAccessRequest};

    fn request() -> AccessRequest {
        let submission = NewAccessRequest {
            applicant: Applicant {
                email: "ada@example.com".into(),
                full_name: "Ada".into(),
                organization: "AE".into(),
                phone: None,
            },
            user_type: UserType::Partner,
            locale: Locale::Fr,
            resource: "vpn".into(),
            justification: "j".into(),
            consent: Consent {
                version: "1".into(),
                purposes: vec!["p".into()],
            },
            request_id: None,
        };
        AccessRequest::submit(AccessRequestId::generate(), "svc", submission, Utc::now()).0
    }

    #[test]
    fn a_submission_mails_the_applicant_and_every_admin() {
        let admins = vec!["ops@example.com".to_owned(), "sec@example.com".to_owned()];
        let emails = emails_for(EventKind::Submitted, &request(), &admins);
        let summary: Vec<(MailTemplate, &str, Locale)> = emails
            .iter()
            .map(|email| (email.template, email.recipient.as_str(), email.locale))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    MailTemplate::ApplicantReceived,
                    "ada@example.com",
                    Locale::Fr
                ),
                (MailTemplate::AdminNewRequest, "ops@example.com", Locale::En),
                (MailTemplate::AdminNewRequest, "sec@example.com", Locale::En),
            ]
        );
    }

    #[test]
    fn decisions_mail_the_applicant_with_the_reason() {
        let rejected = request()
            .apply(
                Action::Reject {
                    reason: "no".into(),
                },
                "ops",
                Utc::now(),
            )
            .unwrap()
            .0;
        let emails = emails_for(EventKind::Rejected, &rejected, &[]);
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].template, MailTemplate::ApplicantRejected);
        assert_eq!(emails[0].data["reason"], "no");
        assert!(emails_for(EventKind::EmailSent, &rejected, &[]).is_empty());
    }

    #[test]
    fn deadlines_mail_the_admins_and_expiry_the_applicant() {
        let admins = vec!["ops@example.com".to_owned(), "sec@example.com".to_owned()];
        for (kind, template) in [
            (EventKind::Reminded, MailTemplate::AdminReminder),
            (EventKind::Escalated, MailTemplate::AdminEscalation),
        ] {
            let emails = emails_for(kind, &request(), &admins);
            assert_eq!(emails.len(), 2);
            assert!(emails.iter().all(|email| email.template == template
                && email.locale == Locale::En
                && email.recipient != "ada@example.com"));
        }
        let expired = request()
            .apply(Action::Expire, "system", Utc::now())
            .unwrap()
            .0;
        let emails = emails_for(EventKind::Expired, &expired, &admins);
        assert_eq!(emails.len(), 1);
        assert_eq!(
            (
                emails[0].template,
                emails[0].recipient.as_str(),
                emails[0].locale
            ),
            (
                MailTemplate::ApplicantExpired,
                "ada@example.com",
                Locale::Fr
            )
        );
    }

    #[test]
    fn retries_follow_the_schedule_with_jitter_until_the_lifetime() {
        let schedule = [Duration::from_secs(30), Duration::from_secs(120)];
        let created = Utc::now();
        let lifetime = Duration::from_secs(600);
        let first = retry_at(1, &schedule, lifetime, created, created, 0.5).unwrap();
        assert_eq!((first - created).num_seconds(), 30);
        let low = retry_at(2, &schedule, lifetime, created, created, 0.0).unwrap();
        let high = retry_at(2, &schedule, lifetime, created, created, 0.999).unwrap();
        assert_eq!((low - created).num_seconds(), 96);
        assert_eq!((high - created).num_seconds(), 143);
        // Past the schedule, the last delay repeats.
        let later = retry_at(9, &schedule, lifetime, created, created, 0.5).unwrap();
        assert_eq!((later - created).num_seconds(), 120);
        // Beyond the lifetime: dead.
        let late = created + chrono::Duration::seconds(550);
        assert_eq!(retry_at(3, &schedule, lifetime, created, late, 0.5), None);
    }

    #[test]
    fn addresses_are_redacted_from_replies() {
        assert_eq!(
            redact_addresses("550 5.1.1 <ada@example.com>: Recipient address rejected"),
            "550 5.1.1 <address> Recipient address rejected"
        );
        assert_eq!(redact_addresses("451 try later"), "451 try later");
    }

    #[test]
    fn template_names_round_trip() {
        for template in MailTemplate::ALL {
            assert_eq!(MailTemplate::parse(template.as_str()), Some(template));
        }
    }
}
