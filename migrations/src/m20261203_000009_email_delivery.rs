//! Delivery through HTTP email providers: which transport sent each email
//! and the provider's id of it, what the provider reported afterwards (by
//! webhook), the suppressed addresses (by blind index only), and the
//! webhook events already applied, so a replayed event is applied once.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Provider,
    ProviderMessageId,
    PinnedProvider,
    Delivery,
    DeliveryAtUs,
    DeliveryDetail,
}

#[derive(DeriveIden)]
enum Suppressions {
    Table,
    Id,
    AddressIndex,
    Reason,
    Provider,
    Detail,
    EmailId,
    CreatedAtUs,
}

#[derive(DeriveIden)]
enum WebhookEvents {
    Table,
    Provider,
    EventId,
    ReceivedAtUs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            // The transport of the last attempt (`resend`, `smtp`, ...).
            ColumnDef::new(Outbox::Provider).text().null().to_owned(),
            // The provider's id of the sent email (Resend id, X-Message-Id).
            ColumnDef::new(Outbox::ProviderMessageId)
                .text()
                .null()
                .to_owned(),
            // Set when an attempt's outcome is unknown (a timeout after the
            // request was sent): the retry must go to the same provider.
            ColumnDef::new(Outbox::PinnedProvider)
                .text()
                .null()
                .to_owned(),
            // `delivered`, `delayed`, `bounced` or `complained`.
            ColumnDef::new(Outbox::Delivery).text().null().to_owned(),
            ColumnDef::new(Outbox::DeliveryAtUs)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Outbox::DeliveryDetail)
                .text()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Outbox::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("outbox_provider_message")
                    .table(Outbox::Table)
                    .col(Outbox::ProviderMessageId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Suppressions::Table)
                    .col(
                        ColumnDef::new(Suppressions::Id)
                            .string_len(36)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Suppressions::AddressIndex)
                            .string_len(64)
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Suppressions::Reason).text().not_null())
                    .col(ColumnDef::new(Suppressions::Provider).text().not_null())
                    .col(ColumnDef::new(Suppressions::Detail).text().null())
                    .col(ColumnDef::new(Suppressions::EmailId).text().not_null())
                    .col(
                        ColumnDef::new(Suppressions::CreatedAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("suppressions_created")
                    .table(Suppressions::Table)
                    .col(Suppressions::CreatedAtUs)
                    .col(Suppressions::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookEvents::Table)
                    .col(ColumnDef::new(WebhookEvents::Provider).text().not_null())
                    .col(ColumnDef::new(WebhookEvents::EventId).text().not_null())
                    .col(
                        ColumnDef::new(WebhookEvents::ReceivedAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(WebhookEvents::Provider)
                            .col(WebhookEvents::EventId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Suppressions::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("outbox_provider_message")
                    .table(Outbox::Table)
                    .to_owned(),
            )
            .await?;
        for column in [
            Outbox::DeliveryDetail,
            Outbox::DeliveryAtUs,
            Outbox::Delivery,
            Outbox::PinnedProvider,
            Outbox::ProviderMessageId,
            Outbox::Provider,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Outbox::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
