//! On SQLite, an audit event's position (`seq`) becomes the table's rowid. Declared
//! `BIGINT PRIMARY KEY` it was a column beside the rowid with an index of its own, so
//! every append wrote three B-trees (rows, the `seq` index, the person index) and the
//! append-only trigger's lookup went through that index. As `INTEGER PRIMARY KEY` —
//! SQLite's spelling for a rowid alias — an append writes two, and the trigger's lookup
//! is a rowid seek. The person's reads are unchanged; PostgreSQL is unchanged.
//!
//! SQLite cannot change a table's primary key in place: the events are copied, in
//! order and unchanged (the chain verifies the same after), into a new table, which
//! takes the old one's name, its index and its append-only triggers. Dropping the old
//! table fires no trigger. The copy takes time in proportion to the events held (9.5 s
//! for 1.57 million on a 2-core test machine), once; being one transaction, it needs
//! free disk for about two more copies of the table (the new one in the write-ahead log
//! until it commits, then in the file beside the old one's freed pages).

use sea_orm_migration::prelude::*;

use super::m20261125_000001_create_core::SQLITE_EVENTS_APPEND_ONLY;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The table with `seq` as `seq_type PRIMARY KEY`, every event, its index and triggers.
async fn rebuild(manager: &SchemaManager<'_>, seq_type: &str) -> Result<(), DbErr> {
    super::rebuild_sqlite_table(
        manager,
        "audit_events",
        &format!(
            "(seq {seq_type} PRIMARY KEY, at BIGINT NOT NULL, person_id TEXT NULL, \
             event TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)"
        ),
        "seq, at, person_id, event, prev_hash, hash",
        "seq",
        SQLITE_EVENTS_APPEND_ONLY,
    )
    .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild(manager, "INTEGER").await
    }

    /// All or nothing: a failure half-way must not leave the events without their
    /// triggers, or in a table of another name.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild(manager, "BIGINT").await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::sea_orm::ConnectionTrait;
    use sea_orm_migration::{MigrationName, MigratorTrait};

    use super::super::testing::{just_before, texts};
    use crate::migration::Migrator;

    const TABLE: &str = "SELECT sql FROM sqlite_master WHERE name = 'audit_events'";
    /// Every event, whole, in order.
    const EVENTS: &str = "SELECT seq || ' ' || at || ' ' || coalesce(person_id, '-') || ' ' \
         || event || ' ' || prev_hash || ' ' || hash FROM audit_events ORDER BY seq";
    /// Every event's person, read through the person index.
    const BY_PERSON: &str = "SELECT CAST(seq AS TEXT) FROM audit_events INDEXED BY audit_events_person \
         WHERE person_id = 'p1' ORDER BY at";

    /// Each of these must be refused: the triggers came with the table.
    const TAMPERING: [&str; 3] = [
        "UPDATE audit_events SET event = 'x' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 0",
        "INSERT OR REPLACE INTO audit_events (seq, at, event, prev_hash, hash) \
         VALUES (1, 0, 'x', 'x', 'x')",
    ];

    async fn check(db: &sea_orm::DatabaseConnection, events: &[String], seq_type: &str) {
        let table = texts(db, TABLE).await[0]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            table.contains(&format!("seq {seq_type} PRIMARY KEY")),
            "{table}"
        );
        assert_eq!(
            texts(db, EVENTS).await,
            events,
            "every event, unchanged, in order"
        );
        assert_eq!(texts(db, BY_PERSON).await, ["0", "2"]);
        for sql in TAMPERING {
            assert!(db.execute_unprepared(sql).await.is_err(), "refused: {sql}");
        }
    }

    #[tokio::test]
    async fn audit_events_move_to_a_rowid_table_and_back_with_index_and_triggers() {
        let (_dir, db) = just_before(super::Migration.name()).await;
        db.execute_unprepared(
            "INSERT INTO audit_events (seq, at, person_id, event, prev_hash, hash) VALUES
                 (0, 10, 'p1', '{\"a\":0}', '00', 'h0'),
                 (1, 11, NULL, '{\"a\":1}', 'h0', 'h1'),
                 (2, 12, 'p1', '{\"a\":2}', 'h1', 'h2');",
        )
        .await
        .expect("events");
        let events = texts(&db, EVENTS).await;
        check(&db, &events, "BIGINT").await;

        Migrator::up(&db, Some(1)).await.expect("this migration");
        check(&db, &events, "INTEGER").await;

        Migrator::down(&db, Some(1)).await.expect("down");
        check(&db, &events, "BIGINT").await;
    }
}
