//! The secondary indexes, in one place: the migration creates them, and a bulk load
//! into an empty database drops them first and builds them once at the end (sorting
//! once is far cheaper than keeping random-order indexes up to date row by row).

use sea_orm::ConnectionTrait;

use crate::Database;

/// The unique indexes on source references. They are never dropped, bulk load or not:
/// they are what makes a second item with the same reference a `Conflict`.
pub const UNIQUE_INDEXES: &[(&str, &str)] = &[
    (
        "alerts_source_ref",
        "CREATE UNIQUE INDEX IF NOT EXISTS alerts_source_ref ON alerts (source_id, source_ref)",
    ),
    (
        "referrals_source_ref",
        "CREATE UNIQUE INDEX IF NOT EXISTS referrals_source_ref ON referrals (source_id, source_ref)",
    ),
];

/// (name, `CREATE … IF NOT EXISTS …`) of every plain lookup index: dropped for a bulk
/// load into an empty database and built once after it.
pub const SECONDARY_INDEXES: &[(&str, &str)] = &[
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
        let count: Option<i64> = self
            .value("SELECT COUNT(*) FROM (SELECT id FROM people LIMIT 1) t")
            .await?;
        Ok(count.unwrap_or(0) == 0)
    }

    /// Drops the plain lookup indexes before a bulk load into an empty database (the
    /// unique indexes stay). Meant for `seed` with no server running: until
    /// [`Database::build_indexes`] runs, lookups by person, name and postcode are slow.
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

    /// Builds any lookup or unique index that is missing (after a bulk load, or one that
    /// was interrupted: opening the database runs this too), then refreshes the planner's
    /// statistics if it built any. Existing indexes are left alone, so an ordinary start
    /// takes no lock on the tables.
    pub async fn build_indexes(&self) -> anyhow::Result<()> {
        let existing: std::collections::BTreeSet<String> = self
            .conn
            .query_all_raw(self.statement(
                match self.backend() {
                    sea_orm::DbBackend::Postgres => {
                        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                    }
                    _ => "SELECT name FROM sqlite_master WHERE type = 'index'",
                },
                vec![],
            ))
            .await?
            .iter()
            .map(|row| row.try_get_by_index::<String>(0))
            .collect::<Result<_, _>>()?;
        let mut built = false;
        for (name, create) in UNIQUE_INDEXES.iter().chain(SECONDARY_INDEXES) {
            if !existing.contains(*name) {
                self.conn.execute_unprepared(create).await?;
                built = true;
            }
        }
        if built {
            // Fresh statistics, so the planners use the new indexes.
            self.conn.execute_unprepared("ANALYZE").await?;
        }
        Ok(())
    }
}
