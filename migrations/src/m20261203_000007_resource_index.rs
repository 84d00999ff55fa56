//! ListAccessRequests filters by resource (the console's queue of one
//! gateway): an index on `(resource, created_at_us, id)` serves that filter
//! in either order of submission time without scanning other resources'
//! requests.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AccessRequests {
    Table,
    Resource,
    CreatedAtUs,
    Id,
}

const RESOURCE_CREATED_INDEX: &str = "idx_access_requests_resource_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(RESOURCE_CREATED_INDEX)
                    .table(AccessRequests::Table)
                    .col(AccessRequests::Resource)
                    .col(AccessRequests::CreatedAtUs)
                    .col(AccessRequests::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(RESOURCE_CREATED_INDEX)
                    .table(AccessRequests::Table)
                    .to_owned(),
            )
            .await
    }
}
