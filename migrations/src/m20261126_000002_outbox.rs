//! The email outbox: one row per email to send, inserted in the same
//! transaction as the change that causes it, claimed by workers with a
//! lease, and kept after sending as the record of what was sent.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    IdempotencyKey,
    MessageId,
    AccessRequestId,
    EventSeq,
    Template,
    Locale,
    UserType,
    Recipient,
    Data,
    State,
    Attempts,
    NextAttemptAtUs,
    LeaseToken,
    LeaseExpiresAtUs,
    LastError,
    CreatedAtUs,
    UpdatedAtUs,
    SentAtUs,
    RequeuedAtUs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .col(ColumnDef::new(Outbox::Id).string().not_null().primary_key())
                    .col(
                        ColumnDef::new(Outbox::IdempotencyKey)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Outbox::MessageId).string().not_null())
                    .col(ColumnDef::new(Outbox::AccessRequestId).string().not_null())
                    .col(ColumnDef::new(Outbox::EventSeq).big_integer().not_null())
                    .col(ColumnDef::new(Outbox::Template).string().not_null())
                    .col(ColumnDef::new(Outbox::Locale).string().not_null())
                    .col(ColumnDef::new(Outbox::UserType).string().not_null())
                    .col(ColumnDef::new(Outbox::Recipient).text().not_null())
                    .col(ColumnDef::new(Outbox::Data).text().not_null())
                    .col(ColumnDef::new(Outbox::State).string().not_null())
                    .col(ColumnDef::new(Outbox::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(Outbox::NextAttemptAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Outbox::LeaseToken).string().null())
                    .col(
                        ColumnDef::new(Outbox::LeaseExpiresAtUs)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(Outbox::LastError).text().null())
                    .col(ColumnDef::new(Outbox::CreatedAtUs).big_integer().not_null())
                    .col(ColumnDef::new(Outbox::UpdatedAtUs).big_integer().not_null())
                    .col(ColumnDef::new(Outbox::SentAtUs).big_integer().null())
                    .col(ColumnDef::new(Outbox::RequeuedAtUs).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // Workers look for due rows by state and time.
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_due")
                    .table(Outbox::Table)
                    .col(Outbox::State)
                    .col(Outbox::NextAttemptAtUs)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_access_request")
                    .table(Outbox::Table)
                    .col(Outbox::AccessRequestId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Outbox::Table).to_owned())
            .await
    }
}
