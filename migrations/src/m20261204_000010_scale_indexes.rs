//! Indexes for the steps whose cost grew with the table size (issue 17,
//! measured at 1,000,000 requests with `loadtest/scale.sh`):
//! - `idempotency_keys (access_request_id)`: erasing a request forgets its
//!   idempotency key, found by the request;
//! - `access_requests (subject_id)`: the retention job deletes a person's
//!   key once none of their requests holds data;
//! - `access_requests (decided_at_us)` over the rows not erased yet (a
//!   partial index: SQLite and PostgreSQL both have them): the retention
//!   job's search for closed requests past their period reads only those,
//!   not every PENDING request.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessRequests {
    Table,
    SubjectId,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    AccessRequestId,
}

const IDEMPOTENCY_REQUEST_INDEX: &str = "idx_idempotency_keys_access_request";
const SUBJECT_INDEX: &str = "idx_access_requests_subject";
const RETENTION_INDEX: &str = "idx_access_requests_retention";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(IDEMPOTENCY_REQUEST_INDEX)
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::AccessRequestId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(SUBJECT_INDEX)
                    .table(AccessRequests::Table)
                    .col(AccessRequests::SubjectId)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "CREATE INDEX {RETENTION_INDEX} ON access_requests (decided_at_us) \
                 WHERE erased_at_us IS NULL AND decided_at_us IS NOT NULL"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            (RETENTION_INDEX, AccessRequests::Table.into_iden()),
            (SUBJECT_INDEX, AccessRequests::Table.into_iden()),
            (
                IDEMPOTENCY_REQUEST_INDEX,
                IdempotencyKeys::Table.into_iden(),
            ),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
