//! The first schema: API keys, access requests, idempotency keys, the event
//! log with its sequence counter, and server settings.
//!
//! Times are stored as microseconds since the Unix epoch (BIGINT) so that
//! ordering and keyset pagination behave the same on SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `prev_hash` of the first event: 32 zero bytes, hex.
const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Name,
    Role,
    KeyHash,
    KeyPrefix,
    CreatedAtUs,
    RevokedAtUs,
}

#[derive(DeriveIden)]
enum AccessRequests {
    Table,
    Id,
    Submitter,
    RequestId,
    ApplicantEmail,
    ApplicantFullName,
    ApplicantOrganization,
    ApplicantPhone,
    UserType,
    Locale,
    Resource,
    Justification,
    ConsentVersion,
    ConsentPurposes,
    State,
    DecidedBy,
    DecidedAtUs,
    DecisionReason,
    DecisionAutomatic,
    Version,
    CreatedAtUs,
    UpdatedAtUs,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Principal,
    RequestId,
    RequestHash,
    AccessRequestId,
    CreatedAtUs,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Seq,
    EventType,
    AccessRequestId,
    Actor,
    State,
    Data,
    OccurredAtUs,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum EventCounter {
    Table,
    Id,
    LastSeq,
    LastHash,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(
                        ColumnDef::new(ApiKeys::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::Name)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::Role).string().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::KeyHash)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::KeyPrefix).string().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::CreatedAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ApiKeys::RevokedAtUs).big_integer().null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AccessRequests::Table)
                    .col(
                        ColumnDef::new(AccessRequests::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(AccessRequests::Submitter)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AccessRequests::RequestId).string().null())
                    .col(
                        ColumnDef::new(AccessRequests::ApplicantEmail)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AccessRequests::ApplicantFullName)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AccessRequests::ApplicantOrganization)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AccessRequests::ApplicantPhone).text().null())
                    .col(ColumnDef::new(AccessRequests::UserType).string().not_null())
                    .col(ColumnDef::new(AccessRequests::Locale).string().not_null())
                    .col(ColumnDef::new(AccessRequests::Resource).text().not_null())
                    .col(
                        ColumnDef::new(AccessRequests::Justification)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AccessRequests::ConsentVersion)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AccessRequests::ConsentPurposes)
                            .text()
                            .not_null(),
                    )
                    .col(ColumnDef::new(AccessRequests::State).string().not_null())
                    .col(ColumnDef::new(AccessRequests::DecidedBy).string().null())
                    .col(
                        ColumnDef::new(AccessRequests::DecidedAtUs)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(AccessRequests::DecisionReason).text().null())
                    .col(
                        ColumnDef::new(AccessRequests::DecisionAutomatic)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(AccessRequests::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AccessRequests::CreatedAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AccessRequests::UpdatedAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Newest-first keyset pagination, overall and per submitter.
        manager
            .create_index(
                Index::create()
                    .name("idx_access_requests_created")
                    .table(AccessRequests::Table)
                    .col(AccessRequests::CreatedAtUs)
                    .col(AccessRequests::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_access_requests_submitter_created")
                    .table(AccessRequests::Table)
                    .col(AccessRequests::Submitter)
                    .col(AccessRequests::CreatedAtUs)
                    .col(AccessRequests::Id)
                    .to_owned(),
            )
            .await?;

        // One row per (caller, request_id): the unique primary key is what
        // makes concurrent retries of one submit collapse into one request.
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(
                        ColumnDef::new(IdempotencyKeys::Principal)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestHash)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::AccessRequestId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreatedAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::Principal)
                            .col(IdempotencyKeys::RequestId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdempotencyKeys::Table, IdempotencyKeys::AccessRequestId)
                            .to(AccessRequests::Table, AccessRequests::Id),
                    )
                    .to_owned(),
            )
            .await?;

        // The append-only event log. `seq` is assigned from `event_counter`
        // inside the writing transaction, so sequences commit in order; each
        // row's `hash` chains it to the previous one (tamper evidence), and
        // the counter keeps the last hash so the tail is covered too.
        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(
                        ColumnDef::new(Events::Seq)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Events::EventType).string().not_null())
                    .col(ColumnDef::new(Events::AccessRequestId).string().not_null())
                    .col(ColumnDef::new(Events::Actor).string().not_null())
                    .col(ColumnDef::new(Events::State).string().not_null())
                    .col(ColumnDef::new(Events::Data).text().not_null())
                    .col(
                        ColumnDef::new(Events::OccurredAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Events::PrevHash).string().not_null())
                    .col(ColumnDef::new(Events::Hash).string().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Events::Table, Events::AccessRequestId)
                            .to(AccessRequests::Table, AccessRequests::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_access_request")
                    .table(Events::Table)
                    .col(Events::AccessRequestId)
                    .col(Events::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventCounter::Table)
                    .col(
                        ColumnDef::new(EventCounter::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(EventCounter::LastSeq)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(EventCounter::LastHash).string().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(EventCounter::Table)
                    .columns([
                        EventCounter::Id,
                        EventCounter::LastSeq,
                        EventCounter::LastHash,
                    ])
                    .values_panic([1.into(), 0i64.into(), GENESIS_HASH.into()])
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Settings::Table)
                    .col(
                        ColumnDef::new(Settings::Key)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Settings::Value).text().not_null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Settings::Table.into_iden(),
            EventCounter::Table.into_iden(),
            Events::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            AccessRequests::Table.into_iden(),
            ApiKeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
