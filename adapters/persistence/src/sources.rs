//! The registry of feed sources and their activity.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
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
    /// Within a unit of work: the activity it records, written when it commits.
    tallies: Option<Arc<Tallies>>,
}

impl SqlSources {
    /// The registry in this database.
    pub fn new(db: Database) -> Self {
        Self { db, tallies: None }
    }

    /// The registry within a unit of work (`db` is the unit's): activity is added up in
    /// `tallies` and written by [`Tallies::write`] when the unit commits.
    pub(crate) fn in_unit(db: Database, tallies: Arc<Tallies>) -> Self {
        Self {
            db,
            tallies: Some(tallies),
        }
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

    /// Sources as stored, with the activity a unit has recorded and not yet written
    /// (a unit reads its own writes).
    async fn query(&self, sql: &str, values: Vec<Value>) -> Result<Vec<SourceInfo>, RepoError> {
        let mut found = self.db.rows(sql, values, Self::decode).await?;
        if let Some(tallies) = &self.tallies {
            for info in &mut found {
                tallies.add_to(info)?;
            }
        }
        Ok(found)
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
        let mut tally = Tally {
            last_message_at: micros(at),
            ..Tally::default()
        };
        *match outcome {
            MessageOutcome::Applied => &mut tally.applied,
            MessageOutcome::Unchanged => &mut tally.unchanged,
            MessageOutcome::Quarantined => &mut tally.quarantined,
        } = 1;
        match &self.tallies {
            Some(tallies) => tallies.add(id, tally),
            None => write_activity(&self.db, id.as_str(), &tally).await,
        }
    }
}

/// A source's activity, to add to its row.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// The latest message time, in microseconds.
    last_message_at: i64,
    applied: i64,
    unchanged: i64,
    quarantined: i64,
}

/// The activity a unit of work records, per source, added up in memory: one statement
/// per source when the unit commits instead of one per message, in the same transaction
/// (on SQLite a feed unit holds up to hundreds of messages of one source, and the row's
/// update was 3% of a feed's CPU, docs/BENCHMARKS.md; on PostgreSQL a unit holds one
/// message, so it saves nothing there). Dropped with a unit that rolls back; once the
/// unit has ended, recording more fails, as every store of an ended unit does.
#[derive(Debug)]
pub(crate) struct Tallies(Mutex<Option<BTreeMap<String, Tally>>>);

impl Default for Tallies {
    fn default() -> Self {
        Self(Mutex::new(Some(BTreeMap::new())))
    }
}

impl Tallies {
    fn add(&self, id: &SourceId, tally: Tally) -> Result<(), RepoError> {
        let mut open = crate::reader::lock(&self.0);
        let all = open.as_mut().ok_or_else(|| {
            RepoError::Unexpected(anyhow::anyhow!(
                "the unit of work has ended (committed or rolled back)"
            ))
        })?;
        let sum = all.entry(id.as_str().to_owned()).or_insert(Tally {
            last_message_at: tally.last_message_at,
            ..Tally::default()
        });
        sum.last_message_at = sum.last_message_at.max(tally.last_message_at);
        sum.applied += tally.applied;
        sum.unchanged += tally.unchanged;
        sum.quarantined += tally.quarantined;
        Ok(())
    }

    /// Adds what was recorded for `info`'s source to it.
    fn add_to(&self, info: &mut SourceInfo) -> Result<(), RepoError> {
        let open = crate::reader::lock(&self.0);
        let Some(tally) = open
            .as_ref()
            .and_then(|all| all.get(info.source.id.as_str()))
        else {
            return Ok(());
        };
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let last = from_micros(tally.last_message_at)?;
        info.last_message_at = Some(info.last_message_at.map_or(last, |held| held.max(last)));
        info.applied += count(tally.applied);
        info.unchanged += count(tally.unchanged);
        info.quarantined += count(tally.quarantined);
        Ok(())
    }

    /// Takes no more (the unit has ended); returns what was added up.
    pub(crate) fn close(&self) -> Option<BTreeMap<String, Tally>> {
        crate::reader::lock(&self.0).take()
    }

    /// Writes what was added up through `db` (the unit's, as it ends), and takes no
    /// more.
    pub(crate) async fn write(&self, db: &Database) -> Result<(), RepoError> {
        let all = self.close().unwrap_or_default();
        for (id, tally) in &all {
            write_activity(db, id, tally).await?;
        }
        Ok(())
    }
}

/// Adds activity to a source's row (a source not registered has none: nothing changes).
async fn write_activity(db: &Database, id: &str, tally: &Tally) -> Result<(), RepoError> {
    db.execute(
        "UPDATE sources SET \
         last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < $1 THEN $1 ELSE last_message_at END, \
         applied = applied + $2, unchanged = unchanged + $3, quarantined = quarantined + $4 \
         WHERE id = $5",
        vec![
            tally.last_message_at.into(),
            tally.applied.into(),
            tally.unchanged.into(),
            tally.quarantined.into(),
            id.into(),
        ],
    )
    .await
    .map_err(unexpected)?;
    Ok(())
}
