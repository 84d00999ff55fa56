//! `sesame.v1.PrivacyService`: a data subject's export, erasure and consent
//! records (admin only). The work is in `store::privacy`.

use sesame_proto::v1 as pb;
use sesame_proto::v1::privacy_service_server::PrivacyService;
use tonic::{Code, Request, Response, Status};

use super::{convert, paging, principal, status};
use crate::auth::{Permission, authorize};
use crate::domain::validation::{MAX_REASON_CHARS, TextRule, Validator};
use crate::store::Store;

/// Serves the privacy RPCs.
#[derive(Clone, Debug)]
pub struct PrivacyApi {
    store: Store,
}

impl PrivacyApi {
    /// The service over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// The checked email of a data subject.
fn subject_email(check: &mut Validator, raw: &str) -> Option<String> {
    check.email("email", raw)
}

#[tonic::async_trait]
impl PrivacyService for PrivacyApi {
    async fn export_subject_data(
        &self,
        request: Request<pb::ExportSubjectDataRequest>,
    ) -> Result<Response<pb::ExportSubjectDataResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManagePrivacy)?;
        let mut check = Validator::new();
        let email = subject_email(&mut check, &request.get_ref().email);
        check.finish()?;
        let email = email.expect("validated above");
        let Some(export) = self.store.export_subject(&email).await? else {
            return Err(status::with_reason(
                Code::NotFound,
                "Sesame holds no personal data about this email address",
                "SUBJECT_NOT_FOUND",
                Default::default(),
            ));
        };
        Ok(Response::new(pb::ExportSubjectDataResponse {
            json: serde_json::to_string_pretty(&export.document)
                .expect("a JSON value always serializes"),
            access_request_count: i32::try_from(export.requests).unwrap_or(i32::MAX),
            truncated: export.truncated,
        }))
    }

    async fn erase_subject(
        &self,
        request: Request<pb::EraseSubjectRequest>,
    ) -> Result<Response<pb::EraseSubjectResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManagePrivacy)?;
        let message = request.into_inner();
        let mut check = Validator::new();
        let email = subject_email(&mut check, &message.email);
        let reason = check.text(
            "reason",
            &message.reason,
            TextRule::required(MAX_REASON_CHARS),
        );
        check.finish()?;
        let (Some(email), Some(reason)) = (email, reason) else {
            unreachable!("validated above");
        };
        let erasure = self
            .store
            .erase_subject(&email, &caller.name, &reason)
            .await?;
        let count = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(Response::new(pb::EraseSubjectResponse {
            erased_access_requests: count(erasure.erased_requests),
            cancelled_access_requests: count(erasure.cancelled_requests),
            dropped_emails: count(erasure.dropped_emails),
            key_deleted: erasure.key_deleted,
        }))
    }

    async fn list_consent_records(
        &self,
        request: Request<pb::ListConsentRecordsRequest>,
    ) -> Result<Response<pb::ListConsentRecordsResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManagePrivacy)?;
        let message = request.get_ref();
        let mut check = Validator::new();
        let email = subject_email(&mut check, &message.email);
        let paging = paging::paging(&mut check, message.page_size, &message.page_token);
        check.finish()?;
        let email = email.expect("validated above");
        let page = self
            .store
            .list_consents(&caller.name, &email, paging.page_size, paging.page_token)
            .await?;
        Ok(Response::new(pb::ListConsentRecordsResponse {
            consent_records: page
                .records
                .iter()
                .map(|record| pb::ConsentRecord {
                    access_request: record.request.id.name(),
                    version: record.request.consent.version.clone(),
                    purposes: record.request.consent.purposes.clone(),
                    grant_time: Some(convert::timestamp(record.request.created_at)),
                })
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}
