//! Bulk loading of new records (the `seed` command, and later initial loads): a batch
//! of people with their alerts, referrals and consent in one transaction, with
//! multi-row inserts. The rows are exactly those the repositories write one by one.

use care_alert::Alert;
use care_application::RepoError;
use care_consent::Consent;
use care_person::Person;
use care_referral::Referral;
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait, Value};

use crate::items::{StoredItem, insert_row};
use crate::people::{identifier_key, insert_rows, search_rows};
use crate::{Database, to_json, unexpected, unique_or_unexpected, version_value};

/// Rows per INSERT statement: well under SQLite's and PostgreSQL's parameter limits.
const ROWS_PER_INSERT: usize = 400;

/// New records to load together. Every record must be new (version 0).
#[derive(Debug, Default)]
pub struct ImportBatch {
    /// People.
    pub people: Vec<Person>,
    /// Their alerts.
    pub alerts: Vec<Alert>,
    /// Their referrals.
    pub referrals: Vec<Referral>,
    /// Their consent.
    pub consents: Vec<Consent>,
}

async fn insert_chunked(
    db: &Database,
    txn: &DatabaseTransaction,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<(), RepoError> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(ROWS_PER_INSERT).collect();
        let (sql, values) = insert_rows(table, columns, chunk);
        txn.execute_raw(db.statement(&sql, values))
            .await
            .map_err(|e| unique_or_unexpected(e, || RepoError::Conflict))?;
    }
    Ok(())
}

fn item_rows<T: StoredItem>(
    items: &[T],
) -> Result<(Vec<&'static str>, Vec<Vec<Value>>), RepoError> {
    let mut columns = Vec::new();
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let (item_columns, row) = insert_row(item)?;
        columns = item_columns;
        rows.push(row);
    }
    Ok((columns, rows))
}

impl Database {
    /// Writes a batch of new records in one transaction. A record that exists already
    /// (or an identifier another record holds) fails the whole batch with `Conflict`.
    pub async fn import(&self, batch: &ImportBatch) -> Result<(), RepoError> {
        let mut people = Vec::with_capacity(batch.people.len());
        let mut identifiers = Vec::new();
        let mut names = Vec::new();
        let mut postcodes = Vec::new();
        for person in &batch.people {
            if person.version() != 0 {
                return Err(RepoError::Conflict);
            }
            let id = person.id().to_string();
            let mut stored = person.clone();
            stored.set_version(1);
            people.push(vec![
                id.clone().into(),
                version_value(1),
                person.merged_into().map(|p| p.to_string()).into(),
                to_json(&stored)?.into(),
            ]);
            if person.merged_into().is_some() {
                continue;
            }
            for identifier in person.identifiers() {
                identifiers.push(vec![identifier_key(&identifier).into(), id.clone().into()]);
            }
            let (person_names, person_postcodes) = search_rows(person);
            for (key, birth) in person_names {
                names.push(vec![id.clone().into(), birth.into(), key.into()]);
            }
            for postcode in person_postcodes {
                postcodes.push(vec![id.clone().into(), postcode.into()]);
            }
        }
        let mut consents = Vec::with_capacity(batch.consents.len());
        for consent in &batch.consents {
            if consent.version() != 0 {
                return Err(RepoError::Conflict);
            }
            let mut stored = consent.clone();
            stored.set_version(1);
            consents.push(vec![
                consent.nhs_number().digits().into(),
                version_value(1),
                to_json(&stored)?.into(),
            ]);
        }
        let (alert_columns, alerts) = item_rows(&batch.alerts)?;
        let (referral_columns, referrals) = item_rows(&batch.referrals)?;

        let txn = self.conn.begin().await.map_err(unexpected)?;
        insert_chunked(
            self,
            &txn,
            "people",
            &["id", "version", "merged_into", "body"],
            people,
        )
        .await?;
        insert_chunked(
            self,
            &txn,
            "person_identifiers",
            &["identifier", "person_id"],
            identifiers,
        )
        .await?;
        insert_chunked(
            self,
            &txn,
            "person_names",
            &["person_id", "birth_date", "family_key"],
            names,
        )
        .await?;
        insert_chunked(
            self,
            &txn,
            "person_postcodes",
            &["person_id", "postcode"],
            postcodes,
        )
        .await?;
        insert_chunked(self, &txn, "alerts", &alert_columns, alerts).await?;
        insert_chunked(self, &txn, "referrals", &referral_columns, referrals).await?;
        insert_chunked(
            self,
            &txn,
            "consents",
            &["nhs_number", "version", "body"],
            consents,
        )
        .await?;
        txn.commit().await.map_err(unexpected)?;
        Ok(())
    }
}
