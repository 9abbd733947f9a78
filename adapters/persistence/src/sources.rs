//! The registry of feed sources and their activity.

use std::time::Duration;

use async_trait::async_trait;
use care_application::{MessageOutcome, RepoError, SourceInfo, SourceRegistry};
use care_kernel::{Source, SourceId, SourceKind, Timestamp};
use sea_orm::Value;

use crate::{Database, Row, col, from_micros, micros, unexpected};

/// Feed sources in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlSources {
    db: Database,
}

impl SqlSources {
    /// The registry in this database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn decode(row: &Row<'_>) -> Result<SourceInfo, RepoError> {
        let id = SourceId::parse(&col::<String>(row, 0)?).map_err(unexpected)?;
        let kind = SourceKind::parse(&col::<String>(row, 1)?).map_err(unexpected)?;
        let last: Option<i64> = col(row, 4)?;
        Ok(SourceInfo {
            source: Source::new(id, kind),
            name: col(row, 2)?,
            expected_interval: Duration::from_secs(u64::try_from(col::<i64>(row, 3)?).unwrap_or(0)),
            last_message_at: last.map(from_micros).transpose()?,
            applied: u64::try_from(col::<i64>(row, 5)?).unwrap_or(0),
            unchanged: u64::try_from(col::<i64>(row, 6)?).unwrap_or(0),
            quarantined: u64::try_from(col::<i64>(row, 7)?).unwrap_or(0),
        })
    }

    async fn query(&self, sql: &str, values: Vec<Value>) -> Result<Vec<SourceInfo>, RepoError> {
        self.db.rows(sql, values, Self::decode).await
    }
}

const COLUMNS: &str =
    "id, kind, name, expected_interval_secs, last_message_at, applied, unchanged, quarantined";

#[async_trait]
impl SourceRegistry for SqlSources {
    async fn get(&self, id: &SourceId) -> Result<Option<SourceInfo>, RepoError> {
        Ok(self
            .query(
                &format!("SELECT {COLUMNS} FROM sources WHERE id = $1"),
                vec![id.as_str().into()],
            )
            .await?
            .pop())
    }

    async fn list(&self) -> Result<Vec<SourceInfo>, RepoError> {
        self.query(
            &format!("SELECT {COLUMNS} FROM sources ORDER BY id"),
            vec![],
        )
        .await
    }

    async fn register(&self, info: &SourceInfo) -> Result<(), RepoError> {
        let interval = i64::try_from(info.expected_interval.as_secs()).unwrap_or(i64::MAX);
        self.db
            .execute(
                "INSERT INTO sources (id, kind, name, expected_interval_secs, last_message_at, applied, unchanged) \
                 VALUES ($1, $2, $3, $4, NULL, 0, 0) \
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name, \
                 expected_interval_secs = excluded.expected_interval_secs",
                vec![
                    info.source.id.as_str().into(),
                    info.source.kind.as_str().into(),
                    info.name.clone().into(),
                    interval.into(),
                ],
            )
            .await
            .map_err(unexpected)?;
        Ok(())
    }

    async fn record_activity(
        &self,
        id: &SourceId,
        at: Timestamp,
        outcome: MessageOutcome,
    ) -> Result<(), RepoError> {
        let (applied, unchanged, quarantined): (i64, i64, i64) = match outcome {
            MessageOutcome::Applied => (1, 0, 0),
            MessageOutcome::Unchanged => (0, 1, 0),
            MessageOutcome::Quarantined => (0, 0, 1),
        };
        self.db
            .execute(
                "UPDATE sources SET \
                 last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < $1 THEN $1 ELSE last_message_at END, \
                 applied = applied + $2, unchanged = unchanged + $3, quarantined = quarantined + $4 \
                 WHERE id = $5",
                vec![
                    micros(at).into(),
                    applied.into(),
                    unchanged.into(),
                    quarantined.into(),
                    id.as_str().into(),
                ],
            )
            .await
            .map_err(unexpected)?;
        Ok(())
    }
}
