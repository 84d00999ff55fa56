//! Database schema migrations for Sesame, for SQLite and PostgreSQL alike.
//!
//! Run at every `sesame serve` start and by `sesame migrate`. Migrations are
//! append-only: a released migration is never edited, a change is a new one.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_init;
mod m20261126_000002_outbox;
mod m20261126_000003_gateway_codes;
mod m20261126_000004_policy;
mod m20261126_000005_deadlines;
mod m20261126_000006_privacy;
mod m20261203_000007_resource_index;
mod m20261203_000008_gateway_key_resources;
mod m20261203_000009_email_delivery;
mod m20261204_000010_scale_indexes;

/// The ordered list of every migration.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_init::Migration),
            Box::new(m20261126_000002_outbox::Migration),
            Box::new(m20261126_000003_gateway_codes::Migration),
            Box::new(m20261126_000004_policy::Migration),
            Box::new(m20261126_000005_deadlines::Migration),
            Box::new(m20261126_000006_privacy::Migration),
            Box::new(m20261203_000007_resource_index::Migration),
            Box::new(m20261203_000008_gateway_key_resources::Migration),
            Box::new(m20261203_000009_email_delivery::Migration),
            Box::new(m20261204_000010_scale_indexes::Migration),
        ]
    }
}
