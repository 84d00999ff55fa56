//! The HTTP adapter of the providers' delivery webhooks: `POST
//! /webhooks/resend` and `POST /webhooks/sendgrid` on the service's own
//! router (not behind the API-key check: the provider's signature is the
//! proof). The signature is verified before anything else is read; then
//! each report is applied by the store, once per provider event id.
//!
//! Answers: 200 once every report is applied (or was before), 401 for a
//! missing or bad signature, 400 for a body that cannot be understood (both
//! store nothing), 404 when the provider's webhook key is not configured,
//! 503 when the database is unavailable (the provider retries later, and a
//! replay of what was applied changes nothing).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use tracing::{Span, debug, info, instrument, warn};

use crate::domain::mail::Delivery;
use crate::mail::webhooks::{
    self, DeliveryReport, ReportKind, ResendVerifier, SendGridVerifier, WebhookError,
};
use crate::store::Store;
use crate::store::delivery::{self as store_delivery, Applied};
use crate::telemetry::Metrics;

/// The verification keys of the configured webhooks.
#[derive(Clone, Debug, Default)]
pub struct WebhookKeys {
    pub resend: Option<ResendVerifier>,
    pub sendgrid: Option<SendGridVerifier>,
}

#[derive(Clone, Debug)]
struct Webhooks {
    store: Store,
    metrics: Arc<Metrics>,
    keys: WebhookKeys,
}

/// The webhook routes over `store`.
pub fn router(store: Store, metrics: Arc<Metrics>, keys: WebhookKeys) -> Router {
    Router::new()
        .route("/webhooks/resend", post(resend))
        .route("/webhooks/sendgrid", post(sendgrid))
        .with_state(Webhooks {
            store,
            metrics,
            keys,
        })
}

type Answer = (StatusCode, String);

async fn resend(State(hooks): State<Webhooks>, headers: HeaderMap, body: Bytes) -> Answer {
    const PROVIDER: &str = "resend";
    let Some(verifier) = &hooks.keys.resend else {
        return not_configured(PROVIDER, "mail_resend_webhook_secret");
    };
    let reports = verifier
        .verify(&headers, &body, Utc::now())
        .and_then(|event_id| webhooks::parse_resend(&body, event_id.as_str()));
    hooks.apply(PROVIDER, reports).await
}

async fn sendgrid(State(hooks): State<Webhooks>, headers: HeaderMap, body: Bytes) -> Answer {
    const PROVIDER: &str = "sendgrid";
    let Some(verifier) = &hooks.keys.sendgrid else {
        return not_configured(PROVIDER, "mail_sendgrid_webhook_public_key");
    };
    let reports = verifier
        .verify(&headers, &body, Utc::now())
        .and_then(|()| webhooks::parse_sendgrid(&body));
    hooks.apply(PROVIDER, reports).await
}

fn not_configured(provider: &str, key: &str) -> Answer {
    (
        StatusCode::NOT_FOUND,
        format!("the {provider} webhook is not configured on this server: set {key}\n"),
    )
}

impl Webhooks {
    /// Applies verified `reports`, or answers why there are none. Its span
    /// `webhook` (a child of the call's, exported with traces) carries the
    /// provider and counts, never an address.
    #[instrument(
        name = "webhook",
        skip_all,
        fields(provider, reports = tracing::field::Empty, applied = tracing::field::Empty)
    )]
    async fn apply(
        &self,
        provider: &'static str,
        reports: Result<Vec<DeliveryReport>, WebhookError>,
    ) -> Answer {
        let count = |outcome: &str| {
            self.metrics
                .delivery
                .webhook_events
                .inc(&[provider, outcome])
        };
        let reports = match reports {
            Ok(reports) => reports,
            Err(error @ WebhookError::Unauthorized(_)) => {
                count("unauthorized");
                warn!(provider, %error, "webhook refused");
                return (StatusCode::UNAUTHORIZED, format!("{error}\n"));
            }
            Err(error @ WebhookError::Malformed(_)) => {
                count("malformed");
                warn!(provider, %error, "webhook refused");
                return (StatusCode::BAD_REQUEST, format!("{error}\n"));
            }
        };
        Span::current().record("reports", reports.len());
        let mut applied = 0;
        for report in reports {
            let delivery = match &report.kind {
                ReportKind::Delivered => Delivery::Delivered,
                ReportKind::Delayed => Delivery::Delayed,
                ReportKind::Bounced { hard } => Delivery::Bounced { hard: *hard },
                ReportKind::Complained => Delivery::Complained,
                ReportKind::Accepted | ReportKind::Ignored(_) => {
                    count("ignored");
                    debug!(provider, kind = ?report.kind, "webhook event ignored");
                    continue;
                }
            };
            let stored = store_delivery::DeliveryReport {
                provider,
                event_id: report.event_id,
                email: report.email,
                provider_message_id: report.provider_message_id,
                delivery,
                occurred_at: report.occurred_at,
                detail: report.detail,
            };
            match self.store.apply_delivery(&stored).await {
                Ok(Applied::Recorded { .. }) => {
                    applied += 1;
                    count("applied");
                    self.metrics
                        .delivery
                        .reports
                        .inc(&[provider, delivery.report()]);
                }
                Ok(Applied::Replayed) => count("replayed"),
                Ok(Applied::Unmatched) => {
                    count("unmatched");
                    info!(provider, event = %stored.event_id, "webhook event about no email of this server; acknowledged");
                }
                Err(error) => {
                    warn!(provider, %error, "could not apply a webhook event; the provider will send it again");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "could not record the event now; send it again later\n".to_owned(),
                    );
                }
            }
        }
        Span::current().record("applied", applied);
        (StatusCode::OK, format!("{{\"applied\":{applied}}}\n"))
    }
}
