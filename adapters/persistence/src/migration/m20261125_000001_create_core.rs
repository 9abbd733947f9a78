//! The first schema: people and their search keys, alerts, referrals, consent, feed
//! sources, and the append-only audit chain with its head.
//!
//! Written as SQL rather than with the schema builder because the parts that matter most
//! differ by database: the append-only triggers, the byte-order collation of the search
//! keys on PostgreSQL, and the single-row chain head.
//!
//! The secondary indexes (and the unique source-reference indexes) are created from
//! `crate::indexes`, so a bulk load can drop and rebuild them.
//!
//! Conventions: ids are text (UUIDs), times are microseconds since the Unix epoch in a
//! BIGINT, dates are ISO text (they sort), and each aggregate's full state is a JSON
//! document in `body` beside the columns that are queried, indexed or locked on.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COMMON: &str = r#"
CREATE TABLE people (
    id          TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    merged_into TEXT NULL,
    body        TEXT NOT NULL
);
CREATE TABLE person_identifiers (
    identifier TEXT PRIMARY KEY,
    person_id  TEXT NOT NULL REFERENCES people(id)
);
CREATE TABLE person_names (
    person_id  TEXT NOT NULL REFERENCES people(id),
    birth_date TEXT NOT NULL,
    family_key TEXT {COLLATE} NOT NULL
);
CREATE TABLE person_postcodes (
    person_id TEXT NOT NULL REFERENCES people(id),
    postcode  TEXT NOT NULL
);

CREATE TABLE alerts (
    id         TEXT PRIMARY KEY,
    person_id  TEXT NOT NULL REFERENCES people(id),
    source_id  TEXT NOT NULL,
    source_ref TEXT NOT NULL,
    version    BIGINT NOT NULL,
    body       TEXT NOT NULL
);
CREATE TABLE referrals (
    id         TEXT PRIMARY KEY,
    person_id  TEXT NOT NULL REFERENCES people(id),
    source_id  TEXT NOT NULL,
    source_ref TEXT NOT NULL,
    received   TEXT NOT NULL,
    version    BIGINT NOT NULL,
    body       TEXT NOT NULL
);

CREATE TABLE consents (
    nhs_number TEXT PRIMARY KEY,
    version    BIGINT NOT NULL,
    body       TEXT NOT NULL
);

CREATE TABLE sources (
    id                     TEXT {COLLATE} PRIMARY KEY,
    kind                   TEXT NOT NULL,
    name                   TEXT NOT NULL,
    expected_interval_secs BIGINT NOT NULL,
    last_message_at        BIGINT NULL,
    applied                BIGINT NOT NULL,
    unchanged              BIGINT NOT NULL
);

CREATE TABLE audit_events (
    seq       BIGINT PRIMARY KEY,
    at        BIGINT NOT NULL,
    person_id TEXT NULL,
    event     TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TABLE audit_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    len       BIGINT NOT NULL,
    last_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, len, last_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
"#;

/// SQLite: triggers refuse any change to an audit event once written — including
/// `INSERT OR REPLACE` over an existing position, which deletes without firing delete
/// triggers. (Also used where the table is rebuilt: `m20261207_000002`.)
pub(super) const SQLITE_EVENTS_APPEND_ONLY: &str = r#"
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_replace BEFORE INSERT ON audit_events
WHEN EXISTS (SELECT 1 FROM audit_events WHERE seq = NEW.seq)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
"#;

/// SQLite: triggers refuse a chain head that moves backwards or disappears.
const SQLITE_HEAD_FORWARD_ONLY: &str = r#"
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head
WHEN NEW.len < OLD.len OR NEW.id <> OLD.id
BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward'); END;
CREATE TRIGGER audit_head_kept BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward'); END;
"#;

/// PostgreSQL: the same, and TRUNCATE too.
const POSTGRES_APPEND_ONLY: &str = r#"
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
CREATE FUNCTION audit_head_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.len < OLD.len OR NEW.id <> OLD.id THEN
        RAISE EXCEPTION 'the audit chain head only moves forward';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_forward_only();
"#;

const DROP: &str = r#"
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP TABLE sources;
DROP TABLE consents;
DROP TABLE referrals;
DROP TABLE alerts;
DROP TABLE person_postcodes;
DROP TABLE person_names;
DROP TABLE person_identifiers;
DROP TABLE people;
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Postgres => {
                // Byte order for the folded search keys, so a prefix is a key range.
                db.execute_unprepared(&COMMON.replace("{COLLATE}", "COLLATE \"C\""))
                    .await?;
                db.execute_unprepared(POSTGRES_APPEND_ONLY).await?;
            }
            _ => {
                db.execute_unprepared(&COMMON.replace("{COLLATE}", ""))
                    .await?;
                db.execute_unprepared(SQLITE_EVENTS_APPEND_ONLY).await?;
                db.execute_unprepared(SQLITE_HEAD_FORWARD_ONLY).await?;
            }
        }
        for (_, create) in crate::indexes::UNIQUE_INDEXES
            .iter()
            .chain(crate::indexes::SECONDARY_INDEXES)
        {
            db.execute_unprepared(create).await?;
        }
        Ok(())
    }

    /// All or nothing on SQLite too (sea-orm-migration wraps only PostgreSQL by
    /// default): a failure half-way must not leave the audit table without its triggers.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "DROP FUNCTION audit_events_append_only() CASCADE; \
                 DROP FUNCTION audit_head_forward_only() CASCADE;",
            )
            .await?;
        }
        db.execute_unprepared(DROP).await?;
        Ok(())
    }
}
