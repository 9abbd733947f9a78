//! On SQLite, `person_identifiers` becomes a `WITHOUT ROWID` table: its rows live in the
//! B-tree of their primary key (the identifier) instead of in a rowid table with a
//! separate index on the identifier. Finding a person by an identifier is then one
//! B-tree seek instead of two (index, then row), the index on `person_id` holds the
//! identifier itself (the summary's consent join reads no row), and a new identifier is
//! one B-tree insert fewer. PostgreSQL has no rowid tables: nothing changes there.
//!
//! SQLite cannot change a table's kind in place: a new table is filled from the old,
//! which is dropped (with its index), and takes its name.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The table as `kind` (`WITHOUT ROWID`, or a rowid table), with every row and its index.
async fn rebuild(manager: &SchemaManager<'_>, kind: &str) -> Result<(), DbErr> {
    super::rebuild_sqlite_table(
        manager,
        "person_identifiers",
        &format!(
            "(identifier TEXT PRIMARY KEY, person_id TEXT NOT NULL REFERENCES people(id)){kind}"
        ),
        "identifier, person_id",
        "identifier",
        "",
    )
    .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild(manager, " WITHOUT ROWID").await
    }

    /// All or nothing: a failure half-way must not leave the identifiers in a table of
    /// another name.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        rebuild(manager, "").await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::sea_orm::ConnectionTrait;
    use sea_orm_migration::{MigrationName, MigratorTrait};

    use super::super::testing::{just_before, texts};
    use crate::migration::Migrator;

    const TABLE: &str = "SELECT sql FROM sqlite_master WHERE name = 'person_identifiers'";
    /// Every row, read through the index on `person_id`.
    const ROWS: &str = "SELECT identifier || ' ' || person_id FROM person_identifiers \
         INDEXED BY person_identifiers_person ORDER BY person_id, identifier";

    #[tokio::test]
    async fn identifiers_move_to_a_clustered_table_and_back_with_their_index() {
        let (_dir, db) = just_before(super::Migration.name()).await;
        db.execute_unprepared(
            "INSERT INTO people (id, version, body) VALUES ('p1', 1, '{}'), ('p2', 1, '{}');
             INSERT INTO person_identifiers (identifier, person_id) VALUES
                 ('nhs:9990000018', 'p1'), ('local:pas:7', 'p1'), ('nhs:9990000026', 'p2');",
        )
        .await
        .expect("rows");
        let held = texts(&db, ROWS).await;
        assert_eq!(held.len(), 3);
        assert!(!texts(&db, TABLE).await[0].contains("WITHOUT ROWID"));

        Migrator::up(&db, Some(1)).await.expect("this migration");
        assert!(texts(&db, TABLE).await[0].contains("WITHOUT ROWID"));
        assert_eq!(
            texts(&db, ROWS).await,
            held,
            "every row, and the index on person_id"
        );
        let refused = db
            .execute_unprepared(
                "INSERT INTO person_identifiers (identifier, person_id) VALUES ('nhs:9990000018', 'p2')",
            )
            .await;
        assert!(
            refused.is_err(),
            "an identifier is still held by one record only"
        );

        Migrator::down(&db, Some(1)).await.expect("down");
        assert!(!texts(&db, TABLE).await[0].contains("WITHOUT ROWID"));
        assert_eq!(texts(&db, ROWS).await, held);
    }
}
