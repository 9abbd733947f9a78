//! Alerts and referrals: a source's items about a person, unique by (source, reference),
//! stored the same way, so one generic store serves both ports.

use std::marker::PhantomData;

use async_trait::async_trait;
use care_alert::Alert;
use care_application::{AlertRepository, ReferralRepository, RepoError};
use care_kernel::{PersonId, SourceId};
use care_referral::Referral;
use sea_orm::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    Database, col, from_json, to_json, unexpected, unique_or_unexpected, version_of, version_value,
};

/// What the generic store needs of an item type.
pub trait StoredItem: Serialize + DeserializeOwned + Send + Sync + Sized {
    /// The table.
    const TABLE: &'static str;
    /// How a person's items are listed.
    const ORDER: &'static str;
    /// The item's id as text.
    fn id_text(&self) -> String;
    /// Whose it is.
    fn person(&self) -> PersonId;
    /// The owning source.
    fn source_id(&self) -> &SourceId;
    /// The source's reference.
    fn source_ref(&self) -> &str;
    /// The version held.
    fn version(&self) -> u64;
    /// Sets person and version from their columns (the columns are the truth).
    fn restore(&mut self, person: PersonId, version: u64);
    /// The extra column the table has (referrals: the date received), if any.
    fn extra(&self) -> Option<(&'static str, Value)>;
}

impl StoredItem for Alert {
    const TABLE: &'static str = "alerts";
    const ORDER: &'static str = "id";
    fn id_text(&self) -> String {
        self.id().to_string()
    }
    fn person(&self) -> PersonId {
        Alert::person(self)
    }
    fn source_id(&self) -> &SourceId {
        &self.source().id
    }
    fn source_ref(&self) -> &str {
        Alert::source_ref(self)
    }
    fn version(&self) -> u64 {
        Alert::version(self)
    }
    fn restore(&mut self, person: PersonId, version: u64) {
        self.reassign(person);
        self.set_version(version);
    }
    fn extra(&self) -> Option<(&'static str, Value)> {
        None
    }
}

impl StoredItem for Referral {
    const TABLE: &'static str = "referrals";
    const ORDER: &'static str = "received DESC, id";
    fn id_text(&self) -> String {
        self.id().to_string()
    }
    fn person(&self) -> PersonId {
        Referral::person(self)
    }
    fn source_id(&self) -> &SourceId {
        &self.source().id
    }
    fn source_ref(&self) -> &str {
        Referral::source_ref(self)
    }
    fn version(&self) -> u64 {
        Referral::version(self)
    }
    fn restore(&mut self, person: PersonId, version: u64) {
        self.reassign(person);
        self.set_version(version);
    }
    fn extra(&self) -> Option<(&'static str, Value)> {
        Some(("received", self.details().received().to_string().into()))
    }
}

/// The columns and values of a new item's row (version 1).
pub(crate) fn insert_row<T: StoredItem>(
    item: &T,
) -> Result<(Vec<&'static str>, Vec<Value>), RepoError> {
    if item.version() != 0 {
        return Err(RepoError::Conflict);
    }
    let mut columns = vec![
        "id",
        "person_id",
        "source_id",
        "source_ref",
        "version",
        "body",
    ];
    let mut row: Vec<Value> = vec![
        item.id_text().into(),
        item.person().to_string().into(),
        item.source_id().as_str().into(),
        item.source_ref().into(),
        version_value(1),
        to_json(item)?.into(),
    ];
    if let Some((column, value)) = item.extra() {
        columns.push(column);
        row.push(value);
    }
    Ok((columns, row))
}

/// An item from its `person_id`, `version` and `body` columns, starting at column `at`
/// (the columns are the truth for person and version).
fn decode_at<T: StoredItem>(row: &crate::Row<'_>, at: usize) -> Result<T, RepoError> {
    let person: String = col(row, at)?;
    let person = uuid::Uuid::parse_str(&person).map_err(unexpected)?;
    let mut item: T = from_json(&col::<String>(row, at + 2)?)?;
    item.restore(PersonId::from_uuid(person), version_of(col(row, at + 1)?));
    Ok(item)
}

/// Alerts or referrals in SQLite or PostgreSQL.
#[derive(Debug)]
pub struct SqlItems<T> {
    db: Database,
    _items: PhantomData<fn() -> T>,
}

impl<T> Clone for SqlItems<T> {
    fn clone(&self) -> Self {
        Self::new(self.db.clone())
    }
}

/// Alerts in SQLite or PostgreSQL.
pub type SqlAlerts = SqlItems<Alert>;
/// Referrals in SQLite or PostgreSQL.
pub type SqlReferrals = SqlItems<Referral>;

impl<T> SqlItems<T> {
    /// The store over this database.
    pub fn new(db: Database) -> Self {
        Self {
            db,
            _items: PhantomData,
        }
    }
}

impl<T: StoredItem> SqlItems<T> {
    async fn query(&self, sql: &str, values: Vec<Value>) -> Result<Vec<T>, RepoError> {
        self.db.rows(sql, values, |row| decode_at(row, 0)).await
    }

    async fn find(&self, source: &SourceId, source_ref: &str) -> Result<Option<T>, RepoError> {
        let sql = format!(
            "SELECT person_id, version, body FROM {} WHERE source_id = $1 AND source_ref = $2",
            T::TABLE
        );
        Ok(self
            .query(&sql, vec![source.as_str().into(), source_ref.into()])
            .await?
            .pop())
    }

    async fn store(&self, item: &T) -> Result<u64, RepoError> {
        let new_version = item.version() + 1;
        if item.version() == 0 {
            let (columns, row) = insert_row(item)?;
            let (sql, values) = crate::people::insert_rows(T::TABLE, &columns, vec![row]);
            // A taken id or a taken (source, reference) both mean someone got there first.
            self.db
                .execute_alone(&sql, values)
                .await
                .map_err(|e| unique_or_unexpected(e, || RepoError::Conflict))?;
        } else {
            let body = to_json(item)?;
            let person = item.person().to_string();
            let extra = item.extra();
            let set_extra = extra
                .as_ref()
                .map(|(column, _)| format!(", {column} = $6"))
                .unwrap_or_default();
            let sql = format!(
                "UPDATE {} SET person_id = $1, version = $2, body = $3{set_extra} \
                 WHERE id = $4 AND version = $5",
                T::TABLE
            );
            let mut values: Vec<Value> = vec![
                person.into(),
                version_value(new_version),
                body.into(),
                item.id_text().into(),
                version_value(item.version()),
            ];
            if let Some((_, value)) = extra {
                values.push(value);
            }
            let done = self.db.execute(&sql, values).await.map_err(unexpected)?;
            if done != 1 {
                return Err(RepoError::Conflict);
            }
        }
        Ok(new_version)
    }

    async fn list(&self, person: PersonId) -> Result<Vec<T>, RepoError> {
        let sql = format!(
            "SELECT person_id, version, body FROM {} WHERE person_id = $1 ORDER BY {}",
            T::TABLE,
            T::ORDER
        );
        self.query(&sql, vec![person.to_string().into()]).await
    }

    async fn reassign(&self, from: PersonId, to: PersonId) -> Result<u64, RepoError> {
        let sql = format!(
            "UPDATE {} SET person_id = $1, version = version + 1 WHERE person_id = $2",
            T::TABLE
        );
        self.db
            .execute(&sql, vec![to.to_string().into(), from.to_string().into()])
            .await
            .map_err(unexpected)
    }
}

#[async_trait]
impl AlertRepository for SqlItems<Alert> {
    async fn find_by_source_ref(
        &self,
        source: &SourceId,
        source_ref: &str,
    ) -> Result<Option<Alert>, RepoError> {
        self.find(source, source_ref).await
    }
    async fn save(&self, alert: &Alert) -> Result<u64, RepoError> {
        self.store(alert).await
    }
    async fn list_for_person(&self, person: PersonId) -> Result<Vec<Alert>, RepoError> {
        self.list(person).await
    }
    async fn list_with_referrals(
        &self,
        person: PersonId,
        _same_record: &dyn ReferralRepository,
    ) -> Result<(Vec<Alert>, Vec<Referral>), RepoError> {
        // One query (referrals are in this database): on PostgreSQL one round trip per
        // record summary instead of two, and on SQLite one read transaction.
        let rows = self
            .db
            .rows(
                ALERTS_AND_REFERRALS,
                vec![person.to_string().into()],
                |row| Either::decode(&col::<String>(row, 0)?, row, 1),
            )
            .await?;
        let (mut alerts, mut referrals) = (Vec::new(), Vec::new());
        for row in rows {
            match row {
                Either::Alert(a) => alerts.push(a),
                Either::Referral(r) => referrals.push(r),
            }
        }
        Ok((alerts, referrals))
    }
    async fn reassign_person(&self, from: PersonId, to: PersonId) -> Result<u64, RepoError> {
        self.reassign(from, to).await
    }
}

/// A row of [`ALERTS_AND_REFERRALS`] (or of a query that unites them with more).
pub(crate) enum Either {
    Alert(Alert),
    Referral(Referral),
}

impl Either {
    /// The alert (`kind` "a") or referral (else) whose `person_id`, `version` and `body`
    /// columns start at column `at`.
    pub(crate) fn decode(kind: &str, row: &crate::Row<'_>, at: usize) -> Result<Self, RepoError> {
        Ok(if kind == "a" {
            Self::Alert(decode_at(row, at)?)
        } else {
            Self::Referral(decode_at(row, at)?)
        })
    }
}

/// A person's alerts, then their referrals, each in its own list's order
/// (`StoredItem::ORDER`: alerts by id; referrals most recently received first).
const ALERTS_AND_REFERRALS: &str = "SELECT 'a' AS kind, person_id, version, body, '' AS received, id \
     FROM alerts WHERE person_id = $1 \
     UNION ALL \
     SELECT 'r', person_id, version, body, received, id FROM referrals WHERE person_id = $1 \
     ORDER BY 1, 5 DESC, 6";

#[async_trait]
impl ReferralRepository for SqlItems<Referral> {
    async fn find_by_source_ref(
        &self,
        source: &SourceId,
        source_ref: &str,
    ) -> Result<Option<Referral>, RepoError> {
        self.find(source, source_ref).await
    }
    async fn save(&self, referral: &Referral) -> Result<u64, RepoError> {
        self.store(referral).await
    }
    async fn list_for_person(&self, person: PersonId) -> Result<Vec<Referral>, RepoError> {
        self.list(person).await
    }
    async fn reassign_person(&self, from: PersonId, to: PersonId) -> Result<u64, RepoError> {
        self.reassign(from, to).await
    }
}
