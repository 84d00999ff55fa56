//! Gateway codes: one row per code issued for an approved request. The code
//! itself is never stored: only its public selector (to find the row) and a
//! SHA-256 digest of the whole code.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GatewayCodes {
    Table,
    Id,
    AccessRequestId,
    Selector,
    Digest,
    State,
    FailedAttempts,
    IssuedBy,
    IssuedAtUs,
    ExpiresAtUs,
    RedeemedAtUs,
    RedeemedBy,
    UpdatedAtUs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(GatewayCodes::Table)
                    .col(
                        ColumnDef::new(GatewayCodes::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(GatewayCodes::AccessRequestId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(GatewayCodes::Selector).string().not_null())
                    .col(ColumnDef::new(GatewayCodes::Digest).string().not_null())
                    .col(ColumnDef::new(GatewayCodes::State).string().not_null())
                    .col(
                        ColumnDef::new(GatewayCodes::FailedAttempts)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(GatewayCodes::IssuedBy).string().not_null())
                    .col(
                        ColumnDef::new(GatewayCodes::IssuedAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(GatewayCodes::ExpiresAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(GatewayCodes::RedeemedAtUs)
                            .big_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(GatewayCodes::RedeemedBy).string().null())
                    .col(
                        ColumnDef::new(GatewayCodes::UpdatedAtUs)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_gateway_codes_request")
                    .table(GatewayCodes::Table)
                    .col(GatewayCodes::AccessRequestId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_gateway_codes_selector")
                    .table(GatewayCodes::Table)
                    .col(GatewayCodes::Selector)
                    .to_owned(),
            )
            .await?;
        // At most one ACTIVE code per selector (a partial index: SQLite and
        // PostgreSQL both have them), so a selector finds one live code;
        // old codes may share it.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_gateway_codes_active_selector \
                 ON gateway_codes (selector) WHERE state = 'active'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GatewayCodes::Table).to_owned())
            .await
    }
}
