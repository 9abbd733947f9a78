//! Schema migrations, applied on start and by `carerecord migrate`.

mod m20261125_000001_create_core;
mod m20261126_000001_create_accounts;
mod m20261126_000002_create_quarantine;
mod m20261126_000003_quarantine_subjects;
mod m20261126_000004_quarantine_dedup;
mod m20261207_000001_identifiers_clustered;

use sea_orm_migration::prelude::*;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_core::Migration),
            Box::new(m20261126_000001_create_accounts::Migration),
            Box::new(m20261126_000002_create_quarantine::Migration),
            Box::new(m20261126_000003_quarantine_subjects::Migration),
            Box::new(m20261126_000004_quarantine_dedup::Migration),
            Box::new(m20261207_000001_identifiers_clustered::Migration),
        ]
    }
}
