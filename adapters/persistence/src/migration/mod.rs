//! Schema migrations, applied on start and by `carerecord migrate`.

mod m20261125_000001_create_core;
mod m20261126_000001_create_accounts;
mod m20261126_000002_create_quarantine;
mod m20261126_000003_quarantine_subjects;
mod m20261126_000004_quarantine_dedup;
mod m20261207_000001_identifiers_clustered;
mod m20261207_000002_audit_seq_rowid;

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

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
            Box::new(m20261207_000002_audit_seq_rowid::Migration),
        ]
    }
}

/// On SQLite, rebuilds `table` as `CREATE TABLE table definition` with every row
/// (`columns`, copied in `order`), then creates its secondary indexes (from
/// `crate::indexes`), `after` (its triggers) and its planner statistics (dropped with
/// the old table): SQLite cannot change a table's kind or primary key in place. A no-op
/// elsewhere (a table's layout there is SQLite's own business). Run it in the
/// migration's transaction, so a failure leaves the old table.
async fn rebuild_sqlite_table(
    manager: &SchemaManager<'_>,
    table: &str,
    definition: &str,
    columns: &str,
    order: &str,
    after: &str,
) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    let indexes: Vec<&str> = crate::indexes::SECONDARY_INDEXES
        .iter()
        .map(|(_, create)| *create)
        .filter(|create| create.contains(&format!(" ON {table} (")))
        .collect();
    let sql = format!(
        "CREATE TABLE {table}_rebuilt {definition};\n\
         INSERT INTO {table}_rebuilt ({columns}) SELECT {columns} FROM {table} ORDER BY {order};\n\
         DROP TABLE {table};\n\
         ALTER TABLE {table}_rebuilt RENAME TO {table};\n\
         {};\n\
         {after}\n\
         ANALYZE {table};",
        indexes.join(";\n")
    );
    manager.get_connection().execute_unprepared(&sql).await?;
    Ok(())
}

/// A new SQLite file migrated up to, not including, the migration named `name`, and the
/// first column of every row a query returns, as text (for the migrations' tests).
#[cfg(test)]
mod testing {
    use sea_orm_migration::MigratorTrait;
    use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

    use super::Migrator;

    pub(super) async fn just_before(name: &str) -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let db = Database::connect(url).await.expect("connect");
        let position = Migrator::migrations()
            .iter()
            .position(|m| m.name() == name)
            .expect("the migration is listed");
        let before = u32::try_from(position).expect("a few migrations");
        Migrator::up(&db, Some(before))
            .await
            .expect("earlier migrations");
        (dir, db)
    }

    pub(super) async fn texts(db: &DatabaseConnection, sql: &str) -> Vec<String> {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect("query")
            .iter()
            .map(|row| row.try_get_by_index(0).expect("text"))
            .collect()
    }
}
