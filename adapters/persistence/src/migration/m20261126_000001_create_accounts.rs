//! Accounts: organisations, users, sessions (by token hash) and the append-only
//! security log.
//!
//! Same conventions as the first schema: ids are text (byte-order collation on
//! PostgreSQL, so "ordered by id" is the ids' own order on both databases), times are
//! microseconds since the Unix epoch in a BIGINT. Token hashes are raw bytes. A security
//! event's user is not a foreign key: a failed sign-in records the name that was tried,
//! which need not exist.
//!
//! `security_events` is append-only in the database, as `audit_events` is: triggers
//! refuse UPDATE and DELETE (and `INSERT OR REPLACE` on SQLite, TRUNCATE on PostgreSQL).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COMMON: &str = r#"
CREATE TABLE organisations (
    id         TEXT {COLLATE} PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    id                  TEXT {COLLATE} PRIMARY KEY,
    display_name        TEXT NOT NULL,
    organisation_id     TEXT {COLLATE} NOT NULL REFERENCES organisations(id),
    role                TEXT NOT NULL,
    feed_source         TEXT NULL,
    password_hash       TEXT NOT NULL,
    disabled            BOOLEAN NOT NULL,
    created_at          BIGINT NOT NULL,
    failures_cleared_at BIGINT NULL
);
CREATE INDEX users_organisation ON users (organisation_id);
CREATE TABLE sessions (
    token_hash   {BYTES} PRIMARY KEY,
    user_id      TEXT {COLLATE} NOT NULL REFERENCES users(id),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    revoked_at   BIGINT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE TABLE security_events (
    id      {SERIAL},
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    user_id TEXT NULL,
    client  TEXT NOT NULL,
    detail  TEXT NULL
);
CREATE INDEX security_events_user_kind_at ON security_events (user_id, kind, at);
"#;

/// SQLite: no change to a security event once written, including `INSERT OR REPLACE`
/// over an existing id (which deletes without firing delete triggers).
const SQLITE_APPEND_ONLY: &str = r#"
CREATE TRIGGER security_events_no_update BEFORE UPDATE ON security_events
BEGIN SELECT RAISE(ABORT, 'security events are append-only'); END;
CREATE TRIGGER security_events_no_delete BEFORE DELETE ON security_events
BEGIN SELECT RAISE(ABORT, 'security events are append-only'); END;
CREATE TRIGGER security_events_no_replace BEFORE INSERT ON security_events
WHEN EXISTS (SELECT 1 FROM security_events WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'security events are append-only'); END;
"#;

/// PostgreSQL: the same, and TRUNCATE too.
const POSTGRES_APPEND_ONLY: &str = r#"
CREATE FUNCTION security_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'security events are append-only';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER security_events_no_change BEFORE UPDATE OR DELETE ON security_events
    FOR EACH ROW EXECUTE FUNCTION security_events_append_only();
CREATE TRIGGER security_events_no_truncate BEFORE TRUNCATE ON security_events
    FOR EACH STATEMENT EXECUTE FUNCTION security_events_append_only();
"#;

const DROP: &str = r#"
DROP TABLE security_events;
DROP TABLE sessions;
DROP TABLE users;
DROP TABLE organisations;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(
                    &COMMON
                        .replace("{COLLATE}", "COLLATE \"C\"")
                        .replace("{BYTES}", "BYTEA")
                        .replace(
                            "{SERIAL}",
                            "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                        ),
                )
                .await?;
                db.execute_unprepared(POSTGRES_APPEND_ONLY).await?;
            }
            _ => {
                db.execute_unprepared(
                    &COMMON
                        .replace("{COLLATE}", "")
                        .replace("{BYTES}", "BLOB")
                        .replace("{SERIAL}", "INTEGER PRIMARY KEY AUTOINCREMENT"),
                )
                .await?;
                db.execute_unprepared(SQLITE_APPEND_ONLY).await?;
            }
        }
        Ok(())
    }

    /// All or nothing on SQLite too: a failure half-way must not leave the security
    /// log without its triggers.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION security_events_append_only() CASCADE;")
                .await?;
        }
        db.execute_unprepared(DROP).await?;
        Ok(())
    }
}
