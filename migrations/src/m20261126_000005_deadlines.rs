//! Review deadlines: when the administrators were reminded of a PENDING
//! request and when it was escalated. The scheduler sets each column with a
//! conditional UPDATE (`... AND reminded_at_us IS NULL`) in the transaction
//! that appends the event and queues the emails, so that of several replicas
//! exactly one sends each. An index on `(state, created_at_us)` finds the
//! PENDING requests past a deadline without scanning decided ones.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessRequests {
    Table,
    State,
    CreatedAtUs,
    RemindedAtUs,
    EscalatedAtUs,
}

const STATE_CREATED_INDEX: &str = "idx_access_requests_state_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(AccessRequests::Table)
                    .add_column(
                        ColumnDef::new(AccessRequests::RemindedAtUs)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AccessRequests::Table)
                    .add_column(
                        ColumnDef::new(AccessRequests::EscalatedAtUs)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(STATE_CREATED_INDEX)
                    .table(AccessRequests::Table)
                    .col(AccessRequests::State)
                    .col(AccessRequests::CreatedAtUs)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(STATE_CREATED_INDEX)
                    .table(AccessRequests::Table)
                    .to_owned(),
            )
            .await?;
        for column in [AccessRequests::EscalatedAtUs, AccessRequests::RemindedAtUs] {
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
