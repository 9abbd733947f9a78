//! Whom a quarantined message may be about: the identifiers found in it, so that reading
//! it is decided and audited as an access to those people (an opted-out person's
//! message is not shown). A JSON array of identifier keys (`nhs:…`, `local:…:…`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE quarantine ADD COLUMN subjects TEXT NOT NULL DEFAULT '[]';",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE quarantine DROP COLUMN subjects;")
            .await?;
        Ok(())
    }
}
