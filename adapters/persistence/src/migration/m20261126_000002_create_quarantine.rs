//! The feed quarantine: every message a feed could not apply, with its raw bytes and
//! the reason, until a System Manager re-submits it; and a quarantine counter per
//! source beside `applied` and `unchanged`.
//!
//! Same conventions as the first schema (ids are text, times are microseconds in a
//! BIGINT). Entries are never deleted by the application: resolving one fills in the
//! `resolved_*` columns and keeps the original bytes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COMMON: &str = r#"
ALTER TABLE sources ADD COLUMN quarantined BIGINT NOT NULL DEFAULT 0;
CREATE TABLE quarantine (
    id               TEXT PRIMARY KEY,
    source_id        TEXT {COLLATE} NOT NULL REFERENCES sources(id),
    format           TEXT NOT NULL,
    received_at      BIGINT NOT NULL,
    reference        TEXT NULL,
    raw              {BYTES} NOT NULL,
    reason           TEXT NOT NULL,
    resolved_at      BIGINT NULL,
    resolved_by      TEXT NULL,
    resolved_outcome TEXT NULL,
    corrected        {BYTES} NULL
);
CREATE INDEX quarantine_received ON quarantine (received_at, id);
CREATE INDEX quarantine_source_received ON quarantine (source_id, received_at, id);
"#;

const DROP: &str = r#"
DROP TABLE quarantine;
ALTER TABLE sources DROP COLUMN quarantined;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => COMMON
                .replace("{COLLATE}", "COLLATE \"C\"")
                .replace("{BYTES}", "BYTEA"),
            _ => COMMON.replace("{COLLATE}", "").replace("{BYTES}", "BLOB"),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared(DROP).await?;
        Ok(())
    }
}
