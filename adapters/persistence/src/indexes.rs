//! The secondary indexes, in one place: the migration creates them, and a bulk load
//! into an empty database drops them first and builds them once at the end (sorting
//! once is far cheaper than keeping random-order indexes up to date row by row).

use sea_orm::ConnectionTrait;

use crate::Database;

/// (name, `CREATE … IF NOT EXISTS …`) of every index that is not a primary key.
pub const SECONDARY_INDEXES: &[(&str, &str)] = &[
    (
        "alerts_source_ref",
        "CREATE UNIQUE INDEX IF NOT EXISTS alerts_source_ref ON alerts (source_id, source_ref)",
    ),
    (
        "referrals_source_ref",
        "CREATE UNIQUE INDEX IF NOT EXISTS referrals_source_ref ON referrals (source_id, source_ref)",
    ),
    (
        "person_identifiers_person",
        "CREATE INDEX IF NOT EXISTS person_identifiers_person ON person_identifiers (person_id)",
    ),
    (
        "person_names_lookup",
        "CREATE INDEX IF NOT EXISTS person_names_lookup ON person_names (birth_date, family_key)",
    ),
    (
        "person_names_person",
        "CREATE INDEX IF NOT EXISTS person_names_person ON person_names (person_id)",
    ),
    (
        "person_postcodes_lookup",
        "CREATE INDEX IF NOT EXISTS person_postcodes_lookup ON person_postcodes (postcode)",
    ),
    (
        "person_postcodes_person",
        "CREATE INDEX IF NOT EXISTS person_postcodes_person ON person_postcodes (person_id)",
    ),
    (
        "alerts_person",
        "CREATE INDEX IF NOT EXISTS alerts_person ON alerts (person_id)",
    ),
    (
        "referrals_person",
        "CREATE INDEX IF NOT EXISTS referrals_person ON referrals (person_id)",
    ),
    (
        "audit_events_person",
        "CREATE INDEX IF NOT EXISTS audit_events_person ON audit_events (person_id, at)",
    ),
];

impl Database {
    /// Whether the database holds no people yet (a bulk load may drop indexes then).
    pub async fn is_empty(&self) -> anyhow::Result<bool> {
        let row = self
            .conn
            .query_one_raw(self.statement(
                "SELECT COUNT(*) FROM (SELECT id FROM people LIMIT 1) t",
                vec![],
            ))
            .await?;
        let count: i64 = match row {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        Ok(count == 0)
    }

    /// Drops the secondary indexes before a bulk load into an empty database. Only do
    /// this with no other writer: uniqueness of source references is not checked until
    /// [`Database::build_indexes`] runs (and fails if the load broke it).
    pub async fn drop_indexes_for_bulk_load(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.is_empty().await?,
            "indexes are only dropped for a load into an empty database"
        );
        for (name, _) in SECONDARY_INDEXES {
            self.conn
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }

    /// Builds any secondary index that is missing (after a bulk load, or one that was
    /// interrupted: opening the database runs this too).
    pub async fn build_indexes(&self) -> anyhow::Result<()> {
        for (_, create) in SECONDARY_INDEXES {
            self.conn.execute_unprepared(create).await?;
        }
        // Fresh statistics, so the planners use the new indexes.
        self.conn.execute_unprepared("ANALYZE").await?;
        Ok(())
    }
}
