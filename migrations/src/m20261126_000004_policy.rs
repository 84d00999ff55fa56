//! The decision policy's marks on a request: which rule matched at submit
//! and why, how many distinct approvals it needs, and who has approved.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessRequests {
    Table,
    PolicyRule,
    PolicyExplanation,
    RequiredApprovals,
    Approvals,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        let columns = [
            ColumnDef::new(AccessRequests::PolicyRule)
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(AccessRequests::PolicyExplanation)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(AccessRequests::RequiredApprovals)
                .integer()
                .not_null()
                .default(1)
                .to_owned(),
            // JSON list of the administrators who approved so far.
            ColumnDef::new(AccessRequests::Approvals)
                .text()
                .not_null()
                .default("[]")
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(AccessRequests::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            AccessRequests::PolicyRule,
            AccessRequests::PolicyExplanation,
            AccessRequests::RequiredApprovals,
            AccessRequests::Approvals,
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
