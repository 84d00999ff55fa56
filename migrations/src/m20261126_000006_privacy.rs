//! Encryption at rest and GDPR rights. Personal columns of `access_requests`
//! and `outbox` now hold values sealed with the data subject's key (the key
//! itself lives in the key store, see the server's `crypto` module), so the
//! columns keep their types. New columns:
//!
//! - `access_requests.subject_id`: whose key seals the row (NULL once erased);
//! - `access_requests.applicant_index`: blind index (HMAC) of the applicant's
//!   email, for "every request of this person" (NULL once erased), indexed;
//! - `access_requests.erased_at_us`: when the row's personal data was erased
//!   (subject erasure or retention); the row stays as an anonymous tombstone;
//! - `outbox.purged_at_us`: when a sent email's recipient and data were
//!   purged by the retention job.
//!
//! The page-token signing key leaves the `settings` table: it is derived from
//! the key file now, so a dump holds no key in clear (tokens issued before
//! the upgrade are refused as invalid; clients list again from the start).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessRequests {
    Table,
    SubjectId,
    ApplicantIndex,
    ErasedAtUs,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    PurgedAtUs,
}

const APPLICANT_INDEX: &str = "idx_access_requests_applicant_index";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            ColumnDef::new(AccessRequests::SubjectId)
                .string_len(36)
                .null()
                .to_owned(),
            ColumnDef::new(AccessRequests::ApplicantIndex)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(AccessRequests::ErasedAtUs)
                .big_integer()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AccessRequests::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(ColumnDef::new(Outbox::PurgedAtUs).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared("DELETE FROM settings WHERE key = 'page_token_key'")
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(APPLICANT_INDEX)
                    .table(AccessRequests::Table)
                    .col(AccessRequests::ApplicantIndex)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(APPLICANT_INDEX)
                    .table(AccessRequests::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .drop_column(Outbox::PurgedAtUs)
                    .to_owned(),
            )
            .await?;
        for column in [
            AccessRequests::ErasedAtUs,
            AccessRequests::ApplicantIndex,
            AccessRequests::SubjectId,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AccessRequests::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
