//! A message sent again while its first copy is still in the quarantine (a sender
//! retrying after an AE) is the same entry, not a new one: each entry keeps the SHA-256
//! of its bytes, unique per source among the open entries.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE quarantine ADD COLUMN raw_digest TEXT NULL;\n\
                 CREATE UNIQUE INDEX quarantine_open_digest ON quarantine (source_id, raw_digest) \
                 WHERE resolved_at IS NULL;",
            )
            .await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX quarantine_open_digest;\nALTER TABLE quarantine DROP COLUMN raw_digest;",
            )
            .await?;
        Ok(())
    }
}
