//! Bulk loading of new records (the `seed` command, and later initial loads): a batch
//! of people with their alerts, referrals and consent in one transaction, with
//! multi-row inserts. The rows are exactly those the repositories write one by one.

use care_alert::Alert;
use care_application::RepoError;
use care_consent::Consent;
use care_person::Person;
use care_referral::Referral;
use sea_orm::{ConnectionTrait, Statement, Value};

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

/// A batch turned into statements, ready to write: all the CPU work of a load (encoding
/// bodies, building search keys and SQL) done before the database connection is taken,
/// so it can run on another thread while the previous batch is written.
#[derive(Debug)]
pub struct PreparedImport {
    statements: Vec<Statement>,
}

fn chunked(
    db: &Database,
    out: &mut Vec<Statement>,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(ROWS_PER_INSERT).collect();
        let (sql, values) = insert_rows(table, columns, chunk);
        out.push(db.statement(&sql, values));
    }
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
    /// Turns a batch into its statements (no database access; any thread). Written with
    /// [`Database::write_import`]: a record that exists already (or an identifier
    /// another record holds) then fails the whole batch with `Conflict`.
    pub fn prepare_import(&self, batch: &ImportBatch) -> Result<PreparedImport, RepoError> {
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

        let mut statements = Vec::new();
        chunked(
            self,
            &mut statements,
            "people",
            &["id", "version", "merged_into", "body"],
            people,
        );
        chunked(
            self,
            &mut statements,
            "person_identifiers",
            &["identifier", "person_id"],
            identifiers,
        );
        chunked(
            self,
            &mut statements,
            "person_names",
            &["person_id", "birth_date", "family_key"],
            names,
        );
        chunked(
            self,
            &mut statements,
            "person_postcodes",
            &["person_id", "postcode"],
            postcodes,
        );
        chunked(self, &mut statements, "alerts", &alert_columns, alerts);
        chunked(
            self,
            &mut statements,
            "referrals",
            &referral_columns,
            referrals,
        );
        chunked(
            self,
            &mut statements,
            "consents",
            &["nhs_number", "version", "body"],
            consents,
        );
        Ok(PreparedImport { statements })
    }

    /// Writes a prepared batch in one transaction.
    pub async fn write_import(&self, prepared: PreparedImport) -> Result<(), RepoError> {
        let _turn = self.write_turn().await;
        let txn = self.conn.begin().await.map_err(unexpected)?;
        for statement in prepared.statements {
            txn.execute_raw(statement)
                .await
                .map_err(|e| unique_or_unexpected(e, || RepoError::Conflict))?;
        }
        txn.commit().await.map_err(unexpected)?;
        Ok(())
    }
}
