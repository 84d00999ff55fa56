//! `sesame.v1.PrivacyService`: a data subject's export, erasure and consent
//! records (admin only). The work is in `store::privacy`.

use sesame_proto::v1 as pb;
use sesame_proto::v1::privacy_service_server::PrivacyService;
use tonic::{Request, Response, Status};

use super::paging::Paging;
use super::{convert, paging, principal, status};
use crate::auth::{Permission, authorize};
use crate::domain::validation::{MAX_REASON_CHARS, TextRule, Validator, Violations};
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

// Each RPC's argument checks, run after authorization and before the
// store call. Public so that the fuzz targets (fuzz/) run exactly these.

/// Checks an ExportSubjectData message: the person's email.
pub fn check_export_subject_data(
    message: &pb::ExportSubjectDataRequest,
) -> Result<String, Violations> {
    let mut check = Validator::new();
    let email = check.email("email", &message.email);
    check.finish()?;
    Ok(email.expect("validated above"))
}

/// Checks an EraseSubject message: the person's email and the reason.
pub fn check_erase_subject(
    message: &pb::EraseSubjectRequest,
) -> Result<(String, String), Violations> {
    let mut check = Validator::new();
    let email = check.email("email", &message.email);
    let reason = check.text(
        "reason",
        &message.reason,
        TextRule::required(MAX_REASON_CHARS),
    );
    check.finish()?;
    let (Some(email), Some(reason)) = (email, reason) else {
        unreachable!("validated above");
    };
    Ok((email, reason))
}

/// Checks a ListConsentRecords message: the person's email and paging.
pub fn check_list_consent_records(
    message: &pb::ListConsentRecordsRequest,
) -> Result<(String, Paging<'_>), Violations> {
    let mut check = Validator::new();
    let email = check.email("email", &message.email);
    let paging = paging::paging(&mut check, message.page_size, &message.page_token);
    check.finish()?;
    Ok((email.expect("validated above"), paging))
}

#[tonic::async_trait]
impl PrivacyService for PrivacyApi {
    async fn export_subject_data(
        &self,
        request: Request<pb::ExportSubjectDataRequest>,
    ) -> Result<Response<pb::ExportSubjectDataResponse>, Status> {
        let caller = principal(&request)?;
        authorize(&caller, Permission::ManagePrivacy)?;
        let email = check_export_subject_data(request.get_ref())?;
        let Some(export) = self.store.export_subject(&email).await? else {
            return Err(status::subject_not_found());
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
        let (email, reason) = check_erase_subject(request.get_ref())?;
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
        let (email, paging) = check_list_consent_records(request.get_ref())?;
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
