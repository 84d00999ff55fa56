//! `sesame.v1.EmailService`: list, retry and preview emails, list and lift
//! suppressions (admin only).

use std::sync::Arc;

use sesame_proto::v1 as pb;
use sesame_proto::v1::email_service_server::EmailService;
use tonic::{Request, Response, Status};

use super::paging::Paging;
use super::{convert, paging, principal};
use crate::auth::{Permission, authorize};
use crate::domain::mail::MailTemplate;
use crate::domain::validation::{EnumInput, Validator, Violations};
use crate::domain::{Locale, UserType};
use crate::mail::Templates;
use crate::store::Store;
use crate::store::delivery::SuppressionRecord;
use crate::store::outbox::{DEAD, EmailFilter, EmailRecord, PENDING, SENT, SUPPRESSED};

/// Largest `data_json` accepted by PreviewEmail.
pub const MAX_PREVIEW_DATA_BYTES: usize = 16 * 1024;
/// Resource collection of emails.
const EMAILS: &str = "emails/";
/// Resource collection of suppressions.
const SUPPRESSIONS: &str = "suppressions/";

/// Serves the email RPCs.
#[derive(Clone, Debug)]
pub struct EmailApi {
    store: Store,
    templates: Arc<Templates>,
}

impl EmailApi {
    /// The service over `store`, rendering with `templates`.
    pub fn new(store: Store, templates: Arc<Templates>) -> Self {
        Self { store, templates }
    }
}

fn template_to_proto(template: MailTemplate) -> pb::EmailTemplate {
    match template {
        MailTemplate::ApplicantReceived => pb::EmailTemplate::ApplicantReceived,
        MailTemplate::ApplicantApproved => pb::EmailTemplate::ApplicantApproved,
        MailTemplate::ApplicantRejected => pb::EmailTemplate::ApplicantRejected,
        MailTemplate::ApplicantCancelled => pb::EmailTemplate::ApplicantCancelled,
        MailTemplate::AdminNewRequest => pb::EmailTemplate::AdminNewRequest,
        MailTemplate::ApplicantExpired => pb::EmailTemplate::ApplicantExpired,
        MailTemplate::AdminReminder => pb::EmailTemplate::AdminReminder,
        MailTemplate::AdminEscalation => pb::EmailTemplate::AdminEscalation,
    }
}

fn template_input(raw: i32) -> EnumInput<MailTemplate> {
    match pb::EmailTemplate::try_from(raw) {
        Ok(pb::EmailTemplate::Unspecified) => EnumInput::Unset,
        Ok(pb::EmailTemplate::ApplicantReceived) => {
            EnumInput::Value(MailTemplate::ApplicantReceived)
        }
        Ok(pb::EmailTemplate::ApplicantApproved) => {
            EnumInput::Value(MailTemplate::ApplicantApproved)
        }
        Ok(pb::EmailTemplate::ApplicantRejected) => {
            EnumInput::Value(MailTemplate::ApplicantRejected)
        }
        Ok(pb::EmailTemplate::ApplicantCancelled) => {
            EnumInput::Value(MailTemplate::ApplicantCancelled)
        }
        Ok(pb::EmailTemplate::AdminNewRequest) => EnumInput::Value(MailTemplate::AdminNewRequest),
        Ok(pb::EmailTemplate::ApplicantExpired) => EnumInput::Value(MailTemplate::ApplicantExpired),
        Ok(pb::EmailTemplate::AdminReminder) => EnumInput::Value(MailTemplate::AdminReminder),
        Ok(pb::EmailTemplate::AdminEscalation) => EnumInput::Value(MailTemplate::AdminEscalation),
        Err(_) => EnumInput::Unknown(raw),
    }
}

fn state_input(raw: i32) -> EnumInput<&'static str> {
    match pb::EmailState::try_from(raw) {
        Ok(pb::EmailState::Unspecified) => EnumInput::Unset,
        Ok(pb::EmailState::Pending) => EnumInput::Value(PENDING),
        Ok(pb::EmailState::Sent) => EnumInput::Value(SENT),
        Ok(pb::EmailState::Dead) => EnumInput::Value(DEAD),
        Ok(pb::EmailState::Suppressed) => EnumInput::Value(SUPPRESSED),
        Err(_) => EnumInput::Unknown(raw),
    }
}

fn email(record: &EmailRecord) -> pb::Email {
    let state = match record.state.as_str() {
        PENDING => pb::EmailState::Pending,
        SENT => pb::EmailState::Sent,
        DEAD => pb::EmailState::Dead,
        SUPPRESSED => pb::EmailState::Suppressed,
        _ => pb::EmailState::Unspecified,
    };
    let delivery = match record.delivery.as_deref() {
        Some("delivered") => pb::EmailDelivery::Delivered,
        Some("delayed") => pb::EmailDelivery::Delayed,
        Some("bounced") => pb::EmailDelivery::Bounced,
        Some("complained") => pb::EmailDelivery::Complained,
        _ => pb::EmailDelivery::Unspecified,
    };
    pb::Email {
        name: format!("{EMAILS}{}", record.id),
        access_request: record.access_request.name(),
        template: template_to_proto(record.template).into(),
        locale: record.locale.as_str().to_owned(),
        recipient: record.recipient.clone(),
        state: state.into(),
        attempts: record.attempts,
        last_error: record.last_error.clone().unwrap_or_default(),
        message_id: record.message_id.clone(),
        create_time: Some(convert::timestamp(record.created_at)),
        next_attempt_time: (record.state == PENDING)
            .then(|| convert::timestamp(record.next_attempt_at)),
        send_time: record.sent_at.map(convert::timestamp),
        provider: record.transport.clone().unwrap_or_default(),
        provider_message_id: record.provider_message_id.clone().unwrap_or_default(),
        delivery: delivery.into(),
        delivery_time: record.delivery_at.map(convert::timestamp),
        delivery_detail: record.delivery_detail.clone().unwrap_or_default(),
    }
}

fn suppression(record: &SuppressionRecord) -> pb::Suppression {
    let reason = match record.reason.as_str() {
        "hard_bounce" => pb::SuppressionReason::HardBounce,
        "complaint" => pb::SuppressionReason::Complaint,
        _ => pb::SuppressionReason::Unspecified,
    };
    pb::Suppression {
        name: format!("{SUPPRESSIONS}{}", record.id),
        recipient: record.recipient.clone(),
        reason: reason.into(),
        provider: record.provider.clone(),
        detail: record.detail.clone().unwrap_or_default(),
        email: format!("{EMAILS}{}", record.email),
        create_time: Some(convert::timestamp(record.created_at)),
    }
}

// The argument checks of each RPC, run after authorization and before any
// store call. Public so that the fuzz targets (fuzz/) run exactly these.

/// Checks a ListEmails message: its paging and its filters.
pub fn check_list_emails(
    message: &pb::ListEmailsRequest,
) -> Result<(Paging<'_>, EmailFilter), Violations> {
    let mut check = Validator::new();
    let paging = paging::paging(&mut check, message.page_size, &message.page_token);
    let state = check.optional_enum("state", state_input(message.state));
    let access_request = check.optional_name("access_request", &message.access_request);
    check.finish()?;
    let filter = EmailFilter {
        state,
        access_request,
    };
    Ok((paging, filter))
}

/// Checks a RetryEmail message: the email's id.
pub fn check_retry_email(message: &pb::RetryEmailRequest) -> Result<uuid::Uuid, Violations> {
    resource_id(&message.name, EMAILS)
}

/// The uuid of a resource name `{collection}{uuid}`.
fn resource_id(name: &str, collection: &str) -> Result<uuid::Uuid, Violations> {
    let id = name
        .strip_prefix(collection)
        .and_then(|raw| uuid::Uuid::try_parse(raw).ok());
    let Some(id) = id else {
        let mut check = Validator::new();
        check.violation(
            "name",
            format!("must be a resource name of the form {collection}{{uuid}}"),
        );
        return Err(check.finish().expect_err("a violation was recorded"));
    };
    Ok(id)
}

/// Checks a ListSuppressions message: its paging and its address filter.
pub fn check_list_suppressions(
    message: &pb::ListSuppressionsRequest,
) -> Result<(Paging<'_>, Option<String>), Violations> {
    let mut check = Validator::new();
    let paging = paging::paging(&mut check, message.page_size, &message.page_token);
    let address = if message.address.trim().is_empty() {
        None
    } else {
        check.email("address", &message.address)
    };
    check.finish()?;
    Ok((paging, address))
}

/// The checked arguments of PreviewEmail.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviewArgs {
    pub template: MailTemplate,
    pub locale: Locale,
    pub user_type: UserType,
    /// The sample values overridden by the caller's `data_json`.
    pub data: serde_json::Value,
}

/// Checks a PreviewEmail message; rendering may still refuse the data.
pub fn check_preview_email(message: &pb::PreviewEmailRequest) -> Result<PreviewArgs, Violations> {
    let mut check = Validator::new();
    let template = check.required_enum("template", template_input(message.template));
    let locale = match message.locale.trim().to_ascii_lowercase().as_str() {
        "" => Some(Locale::En),
        raw => {
            let parsed = Locale::parse(raw);
            if parsed.is_none() {
                check.violation("locale", "must be one of: en, fr");
            }
            parsed
        }
    };
    let user_type = check
        .optional_enum("user_type", convert::user_type_input(message.user_type))
        .unwrap_or(UserType::Employee);
    let mut data = crate::mail::sample_data(user_type.as_str());
    if message.data_json.len() > MAX_PREVIEW_DATA_BYTES {
        check.violation("data_json", "must be at most 16 KiB");
    } else if !message.data_json.trim().is_empty() {
        match serde_json::from_str::<serde_json::Value>(&message.data_json) {
            Ok(serde_json::Value::Object(given)) => {
                for (key, value) in given {
                    data[key] = value;
                }
            }
            Ok(_) => check.violation("data_json", "must be a JSON object"),
            Err(error) => check.violation("data_json", format!("is not valid JSON: {error}")),
        }
    }
    check.finish()?;
    let (Some(template), Some(locale)) = (template, locale) else {
        unreachable!("validated above");
    };
    Ok(PreviewArgs {
        template,
        locale,
        user_type,
        data,
    })
}

#[tonic::async_trait]
impl EmailService for EmailApi {
    async fn list_emails(
        &self,
        request: Request<pb::ListEmailsRequest>,
    ) -> Result<Response<pb::ListEmailsResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManageEmails)?;
        let message = request.into_inner();
        let (paging, filter) = check_list_emails(&message)?;
        let page = self
            .store
            .list_emails(&caller.name, &filter, paging.page_size, paging.page_token)
            .await?;
        Ok(Response::new(pb::ListEmailsResponse {
            emails: page.emails.iter().map(email).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn retry_email(
        &self,
        request: Request<pb::RetryEmailRequest>,
    ) -> Result<Response<pb::RetryEmailResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManageEmails)?;
        let id = check_retry_email(request.get_ref())?;
        let retried = self.store.retry_email(id, &caller.name).await?;
        Ok(Response::new(pb::RetryEmailResponse {
            email: Some(email(&retried)),
        }))
    }

    async fn preview_email(
        &self,
        request: Request<pb::PreviewEmailRequest>,
    ) -> Result<Response<pb::PreviewEmailResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManageEmails)?;
        let args = check_preview_email(request.get_ref())?;
        let rendered = self
            .templates
            .render(args.template, args.locale, args.user_type, &args.data)
            .map_err(|error| {
                let mut check = Validator::new();
                check.violation("data_json", error.to_string());
                Status::from(check.finish().unwrap_err())
            })?;
        Ok(Response::new(pb::PreviewEmailResponse {
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
        }))
    }

    async fn list_suppressions(
        &self,
        request: Request<pb::ListSuppressionsRequest>,
    ) -> Result<Response<pb::ListSuppressionsResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManageEmails)?;
        let message = request.into_inner();
        let (paging, address) = check_list_suppressions(&message)?;
        let page = self
            .store
            .list_suppressions(
                &caller.name,
                address.as_deref(),
                paging.page_size,
                paging.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListSuppressionsResponse {
            suppressions: page.suppressions.iter().map(suppression).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn delete_suppression(
        &self,
        request: Request<pb::DeleteSuppressionRequest>,
    ) -> Result<Response<pb::DeleteSuppressionResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManageEmails)?;
        let id = resource_id(&request.get_ref().name, SUPPRESSIONS)?;
        self.store.delete_suppression(id, &caller.name).await?;
        Ok(Response::new(pb::DeleteSuppressionResponse {}))
    }
}
