//! Council CSV extracts (the nightly batch): referrals and alerts, one row a message.
//!
//! A file is RFC 4180 CSV in UTF-8 (a leading byte-order mark is ignored; lines end in
//! LF or CRLF; a field holding a comma, a quote or a line break is quoted, `""` inside
//! quotes being one quote). Its first record is a **header** naming every column of the
//! kind exactly once, in any order ([`CsvKind::columns`]); a column that is missing,
//! unknown or repeated fails the whole file before any row is applied
//! ([`CsvError::Header`]). Every other record is a row:
//!
//! | referrals | | alerts | |
//! |---|---|---|---|
//! | `referral_id` | the council's reference (1–64 characters), required | `alert_id` | likewise |
//! | `nhs_number` | 10 digits with a valid check digit, or empty | `nhs_number` | likewise |
//! | `local_id` | the council's client id, or empty (one of the two is required) | `local_id` | likewise |
//! | `received_date` | `YYYY-MM-DD`, required | `category` | [`AlertCategory`], required |
//! | `team` | team or service referred to, required | `description` | 1–500 characters, required |
//! | `referral_source` | [`ReferralSource`], required | `severity` | [`Severity`]; empty is `unknown` |
//! | `status` | [`ReferralStatus`], required | `recorded_date` | `YYYY-MM-DD`, required |
//! | `closed_date` | `YYYY-MM-DD`, for a closed status only | `active_from` | `YYYY-MM-DD`; empty is the recorded date |
//! | `involvement` | [`InvolvementLevel`], or empty | `active_to` | `YYYY-MM-DD`, or empty |
//! | `updated_at` | RFC 3339 date-time: the source time, the ordering key | `updated_at` | likewise |
//!
//! Values are trimmed; enumerations are spelled in lower case as listed in
//! `docs/FEEDS.md`. The rows are read as a stream (memory stays flat however long the
//! file is) and each is applied on its own through the [`Intake`]: a row that cannot be
//! read or applied is quarantined and the rest of the file goes on.
//!
//! **What a quarantined row keeps.** Its raw bytes are the file's header line, a line
//! feed, and the row exactly as it stood in the file (quoted line breaks and all; only
//! the line ending after it is left off) — a CSV file of one row, which is what
//! [`resubmit_csv`] reads again, and what a System Manager edits to correct it. The
//! entry's reference is `line N`, the row's first line in the file (lines are counted
//! by line feeds, from 1 for the header); its reason names the line and the column,
//! e.g. `line 17, column status: "opne" is not one of awaiting_decision, accepted, …`.

use std::io::Read;

use ::csv::ByteRecord;
use care_alert::{AlertCategory, AlertDetails, Severity};
use care_application::{FeedFormat, IngestCommand, IngestError, PersonIdentity, Resubmission};
use care_kernel::{Date, InvalidValue, SourceId, Timestamp, UpdateOutcome};
use care_person::{LocalId, NhsNumber};
use care_referral::{InvolvementLevel, ReferralDetails, ReferralSource, ReferralStatus};
use uuid::Uuid;

use crate::intake::{Intake, Outcome, ResubmitError, Units};

/// The two kinds of extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvKind {
    /// Children's social-care referrals.
    Referrals,
    /// Alerts.
    Alerts,
}

const REFERRAL_COLUMNS: &[&str] = &[
    "referral_id",
    "nhs_number",
    "local_id",
    "received_date",
    "team",
    "referral_source",
    "status",
    "closed_date",
    "involvement",
    "updated_at",
];

const ALERT_COLUMNS: &[&str] = &[
    "alert_id",
    "nhs_number",
    "local_id",
    "category",
    "description",
    "severity",
    "recorded_date",
    "active_from",
    "active_to",
    "updated_at",
];

impl CsvKind {
    /// The columns a file of this kind must name in its header (any order).
    pub const fn columns(self) -> &'static [&'static str] {
        match self {
            CsvKind::Referrals => REFERRAL_COLUMNS,
            CsvKind::Alerts => ALERT_COLUMNS,
        }
    }

    /// The format its quarantined rows are filed under.
    pub const fn format(self) -> FeedFormat {
        match self {
            CsvKind::Referrals => FeedFormat::CsvReferrals,
            CsvKind::Alerts => FeedFormat::CsvAlerts,
        }
    }

    /// The kind whose rows are filed under `format`, if it is a CSV format.
    pub const fn of_format(format: FeedFormat) -> Option<Self> {
        match format {
            FeedFormat::CsvReferrals => Some(CsvKind::Referrals),
            FeedFormat::CsvAlerts => Some(CsvKind::Alerts),
            _ => None,
        }
    }

    /// `referrals` or `alerts`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CsvKind::Referrals => "referrals",
            CsvKind::Alerts => "alerts",
        }
    }
}

/// Why a file was not read to its end. Rows before the failure stay applied (applying
/// is idempotent, so loading the whole file again is safe).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The header is missing or does not name the kind's columns; no row was applied.
    #[error("the header of the {kind} file: {problem}")]
    Header {
        /// What kind of file was expected.
        kind: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The file could not be read.
    #[error("reading the file after line {line}: {source}")]
    Read {
        /// The last line read.
        line: u64,
        /// Why.
        source: ::csv::Error,
    },
    /// Storage failed (the row being applied was neither applied nor quarantined).
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// A quarantined row, as the summary of a load lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    /// The row's first line in the file.
    pub line: u64,
    /// The quarantine entry.
    pub id: Uuid,
    /// Why.
    pub reason: String,
}

/// What became of a file's rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CsvSummary {
    /// Rows read (the header not counted).
    pub read: u64,
    /// Rows that changed the record.
    pub applied: u64,
    /// Rows that changed nothing: repeats, or older than what is held.
    pub unchanged: u64,
    /// Rows set aside in the quarantine.
    pub quarantined: u64,
    /// The first [`CsvSummary::EXAMPLES`] quarantined rows (the rest are counted only,
    /// so that memory stays flat on a file that is wrong throughout).
    pub first_quarantined: Vec<QuarantinedRow>,
}

impl CsvSummary {
    /// How many quarantined rows the summary keeps.
    pub const EXAMPLES: usize = 20;
}

/// Reads a CSV extract of `kind` and applies each row through `intake`, quarantining
/// the rows that cannot be read or applied. `progress` is told how many bytes have been
/// read after each row. The reader is read synchronously, a buffer at a time: it is
/// meant for files and pipes, which do not keep the runtime waiting long.
pub async fn ingest_csv<R: Read>(
    intake: &Intake,
    kind: CsvKind,
    reader: R,
    mut progress: impl FnMut(u64),
) -> Result<CsvSummary, CsvError> {
    let mut file = Rows::new(reader);
    let header = file.header(kind)?;
    let source = intake.session().source().id.clone();
    let mut summary = CsvSummary::default();
    let mut message = Vec::new();
    // A nightly load runs beside the server: between units it leaves the database to
    // the server's writers (readers' audit appends) for as long as it held it.
    let mut units = Units::sharing(intake.session());
    while let Some(line) = file.next_row()? {
        let mapped = header
            .map_row(kind, &file.record, line, &source)
            .map_err(|e| e.to_string());
        message.clear();
        message.extend_from_slice(&header.raw);
        message.push(b'\n');
        message.extend_from_slice(&file.raw);
        let index = usize::try_from(summary.read).unwrap_or(usize::MAX);
        let report = units
            .intake()
            .await?
            .submit_mapped(
                index,
                kind.format(),
                Some(format!("line {line}")),
                &message,
                mapped,
            )
            .await?;
        summary.read += 1;
        match report.outcome {
            Outcome::Applied => summary.applied += 1,
            Outcome::Unchanged => summary.unchanged += 1,
            Outcome::Quarantined { id, reason } => {
                summary.quarantined += 1;
                if summary.first_quarantined.len() < CsvSummary::EXAMPLES {
                    summary
                        .first_quarantined
                        .push(QuarantinedRow { line, id, reason });
                }
            }
        }
        units.written().await?;
        progress(file.bytes_read());
    }
    units.finish().await?;
    progress(file.bytes_read());
    Ok(summary)
}

/// Re-submits a quarantined CSV row (or the corrected one given in its place: a header
/// line and one row, as the entry's raw bytes are) through an opened [`Resubmission`].
/// A row that still cannot be applied leaves the entry open and comes back as `Err`
/// with the reason.
pub async fn resubmit_csv(
    resubmission: Resubmission,
    corrected: Option<Vec<u8>>,
) -> Result<UpdateOutcome, ResubmitError> {
    let entry = resubmission.entry();
    let Some(kind) = CsvKind::of_format(entry.format) else {
        return Err(ResubmitError::StillFailing(format!(
            "the entry is a {} message, not a CSV row",
            entry.format.as_str()
        )));
    };
    crate::intake::resubmit_with(resubmission, corrected, |raw, source| {
        map_one_row(kind, raw, source)
    })
    .await
}

/// Maps a stored row (a header line and one row) to its commands.
fn map_one_row(kind: CsvKind, raw: &[u8], source: &SourceId) -> Result<Vec<IngestCommand>, String> {
    let mut file = Rows::new(raw);
    let header = file.header(kind).map_err(|e| e.to_string())?;
    let Some(line) = file.next_row().map_err(|e| e.to_string())? else {
        return Err("there is a header but no row".to_owned());
    };
    let commands = header
        .map_row(kind, &file.record, line, source)
        .map_err(|e| e.to_string())?;
    if file.next_row().map_err(|e| e.to_string())?.is_some() {
        return Err("a re-submission holds the header and one row, not several".to_owned());
    }
    Ok(commands)
}

/// A reader that keeps what passed through it until told it is no longer needed, so
/// each row's original bytes can be quarantined.
struct Tee<R> {
    inner: R,
    kept: Vec<u8>,
    /// The file offset of `kept[0]`.
    base: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.kept.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl<R> Tee<R> {
    /// Copies the bytes from `start` to `end` (file offsets) into `into`, and forgets
    /// everything before `end`.
    fn take(&mut self, start: u64, end: u64, into: &mut Vec<u8>) {
        let at = |offset: u64| usize::try_from(offset.saturating_sub(self.base)).unwrap_or(0);
        let (from, to) = (at(start), at(end).min(self.kept.len()));
        into.clear();
        if let Some(bytes) = self.kept.get(from..to) {
            into.extend_from_slice(bytes);
        }
        // Dropping the front is a copy of what stays (at most the CSV reader's buffer
        // ahead): done once in a while, not per row.
        if to >= 64 * 1024 && to * 2 >= self.kept.len() {
            self.kept.drain(..to);
            self.base += to as u64;
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The records of a file, each with its raw bytes and first line.
struct Rows<R> {
    reader: ::csv::Reader<Tee<R>>,
    record: ByteRecord,
    raw: Vec<u8>,
}

impl<R: Read> Rows<R> {
    fn new(inner: R) -> Self {
        let reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            // A row with the wrong number of fields is that row's fault: quarantined,
            // not an error that ends the file.
            .flexible(true)
            .buffer_capacity(64 * 1024)
            .from_reader(Tee {
                inner,
                kept: Vec::new(),
                base: 0,
            });
        Self {
            reader,
            record: ByteRecord::new(),
            raw: Vec::new(),
        }
    }

    fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    /// Reads the next record into `record` and its bytes into `raw` (without the line
    /// endings around it), returning its first line, or `None` at the end.
    fn next_row(&mut self) -> Result<Option<u64>, CsvError> {
        let read = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|source| CsvError::Read {
                line: self.reader.position().line(),
                source,
            })?;
        if !read {
            return Ok(None);
        }
        let (start, line) = self
            .record
            .position()
            .map_or((0, 1), |p| (p.byte(), p.line()));
        let end = self.reader.position().byte();
        self.reader.get_mut().take(start, end, &mut self.raw);
        // The slice begins where the last record ended: after its line ending (or the
        // CR of a CRLF), and before any blank lines the reader skipped.
        let mut line = line;
        let leading = self
            .raw
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .inspect(|b| line += u64::from(**b == b'\n'))
            .count();
        let trailing = self.raw[leading..]
            .iter()
            .rev()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        self.raw.truncate(self.raw.len() - trailing);
        self.raw.drain(..leading);
        Ok(Some(line))
    }

    /// Reads and checks the header.
    fn header(&mut self, kind: CsvKind) -> Result<Header, CsvError> {
        let problem = |problem: String| CsvError::Header {
            kind: kind.as_str(),
            problem,
        };
        if self.next_row()?.is_none() {
            return Err(problem(format!(
                "the file is empty; it must start with the header {}",
                kind.columns().join(",")
            )));
        }
        let raw = self.raw.strip_prefix(BOM).unwrap_or(&self.raw).to_vec();
        let mut positions = vec![None; kind.columns().len()];
        let mut problems = Vec::new();
        for (at, name) in self.record.iter().enumerate() {
            let name = String::from_utf8_lossy(name);
            let name = name.trim();
            match kind.columns().iter().position(|c| *c == name) {
                Some(column) => match positions[column] {
                    Some(_) => problems.push(format!("column {name:?} appears twice")),
                    None => positions[column] = Some(at),
                },
                None => problems.push(format!("unknown column {name:?}")),
            }
        }
        let missing: Vec<String> = kind
            .columns()
            .iter()
            .zip(&positions)
            .filter(|(_, at)| at.is_none())
            .map(|(name, _)| format!("{name:?}"))
            .collect();
        if !missing.is_empty() {
            problems.push(format!("missing column(s) {}", missing.join(", ")));
        }
        if !problems.is_empty() {
            return Err(problem(format!(
                "{} (a {} file names each of {} once, in any order)",
                problems.join("; "),
                kind.as_str(),
                kind.columns().join(",")
            )));
        }
        Ok(Header {
            positions: positions.into_iter().flatten().collect(),
            fields: self.record.len(),
            raw,
        })
    }
}

/// Where each of the kind's columns is in a row, and the header's own bytes.
struct Header {
    /// For each of [`CsvKind::columns`], its field index.
    positions: Vec<usize>,
    /// How many fields a row has.
    fields: usize,
    /// The header line as the file gives it (without a BOM or line ending).
    raw: Vec<u8>,
}

/// What is wrong with a row: where, and what.
#[derive(Debug)]
struct RowError {
    line: u64,
    column: Option<&'static str>,
    message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(column) => write!(f, "line {}, column {column}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// One row, read column by column.
struct Row<'a> {
    kind: CsvKind,
    header: &'a Header,
    record: &'a ByteRecord,
    line: u64,
}

impl Header {
    fn map_row(
        &self,
        kind: CsvKind,
        record: &ByteRecord,
        line: u64,
        source: &SourceId,
    ) -> Result<Vec<IngestCommand>, RowError> {
        let row = Row {
            kind,
            header: self,
            record,
            line,
        };
        if record.len() != self.fields {
            return Err(RowError {
                line,
                column: None,
                message: format!(
                    "{} fields where the header has {}",
                    record.len(),
                    self.fields
                ),
            });
        }
        Ok(vec![match kind {
            CsvKind::Referrals => row.referral(source)?,
            CsvKind::Alerts => row.alert(source)?,
        }])
    }
}

impl Row<'_> {
    fn error(&self, column: &'static str, message: impl Into<String>) -> RowError {
        RowError {
            line: self.line,
            column: Some(column),
            message: message.into(),
        }
    }

    /// A domain refusal, placed at the column it names.
    fn invalid(&self, e: InvalidValue) -> RowError {
        let column = self
            .kind
            .columns()
            .iter()
            .copied()
            .find(|c| *c == e.field)
            .unwrap_or(e.field);
        self.error(column, e.reason)
    }

    /// The trimmed text of a column (empty when blank).
    fn text(&self, column: &'static str) -> Result<&str, RowError> {
        let at = self
            .kind
            .columns()
            .iter()
            .position(|c| *c == column)
            .and_then(|i| self.header.positions.get(i))
            .copied()
            .unwrap_or(usize::MAX);
        let bytes = self.record.get(at).unwrap_or_default();
        std::str::from_utf8(bytes)
            .map(str::trim)
            .map_err(|_| self.error(column, "is not UTF-8 text"))
    }

    fn optional(&self, column: &'static str) -> Result<Option<&str>, RowError> {
        let text = self.text(column)?;
        Ok((!text.is_empty()).then_some(text))
    }

    fn required(&self, column: &'static str) -> Result<&str, RowError> {
        self.optional(column)?
            .ok_or_else(|| self.error(column, "is empty; it is required"))
    }

    /// A source's reference for its item, checked here so the reason names the line.
    fn reference(&self, column: &'static str) -> Result<&str, RowError> {
        let value = self.required(column)?;
        if value.len() > 64 || value.chars().any(char::is_control) {
            return Err(self.error(
                column,
                "must be 1 to 64 characters without control characters",
            ));
        }
        Ok(value)
    }

    fn identity(&self, source: &SourceId) -> Result<PersonIdentity, RowError> {
        let nhs = self
            .optional("nhs_number")?
            .map(|raw| {
                NhsNumber::parse(raw)
                    .map_err(|e| self.error("nhs_number", format!("{raw:?}: {}", e.reason)))
            })
            .transpose()?;
        let local = self
            .optional("local_id")?
            .map(|raw| {
                LocalId::new(source.clone(), raw)
                    .map_err(|e| self.error("local_id", format!("{raw:?}: {}", e.reason)))
            })
            .transpose()?;
        PersonIdentity::new(nhs, local).map_err(|_| {
            self.error(
                "nhs_number",
                "nhs_number and local_id are both empty; at least one is required",
            )
        })
    }

    fn date(&self, column: &'static str) -> Result<Option<Date>, RowError> {
        self.optional(column)?
            .map(|raw| parse_date(raw).map_err(|e| self.error(column, e)))
            .transpose()
    }

    fn required_date(&self, column: &'static str) -> Result<Date, RowError> {
        let raw = self.required(column)?;
        parse_date(raw).map_err(|e| self.error(column, e))
    }

    fn time(&self, column: &'static str) -> Result<Timestamp, RowError> {
        let raw = self.required(column)?;
        chrono::DateTime::parse_from_rfc3339(raw)
            .map(|t| t.to_utc())
            .map_err(|_| {
                self.error(
                    column,
                    format!("{raw:?} is not an RFC 3339 date and time (e.g. 2026-11-25T23:10:00Z)"),
                )
            })
    }

    /// One of a named enumeration's values, or `None` when blank.
    fn choice<T: Copy>(
        &self,
        column: &'static str,
        all: &[T],
        name: fn(T) -> &'static str,
    ) -> Result<Option<T>, RowError> {
        let Some(raw) = self.optional(column)? else {
            return Ok(None);
        };
        all.iter()
            .copied()
            .find(|v| name(*v) == raw)
            .map(Some)
            .ok_or_else(|| {
                let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
                self.error(
                    column,
                    format!("{raw:?} is not one of {}", names.join(", ")),
                )
            })
    }

    fn required_choice<T: Copy>(
        &self,
        column: &'static str,
        all: &[T],
        name: fn(T) -> &'static str,
    ) -> Result<T, RowError> {
        self.choice(column, all, name)?
            .ok_or_else(|| self.error(column, "is empty; it is required"))
    }

    fn referral(&self, source: &SourceId) -> Result<IngestCommand, RowError> {
        let source_ref = self.reference("referral_id")?;
        let identity = self.identity(source)?;
        let received = self.required_date("received_date")?;
        let team = self.required("team")?;
        let referral_source = self.required_choice(
            "referral_source",
            ReferralSource::ALL,
            ReferralSource::as_str,
        )?;
        let status = self.required_choice("status", ReferralStatus::ALL, ReferralStatus::as_str)?;
        let closed = self.date("closed_date")?;
        let involvement = self.choice(
            "involvement",
            InvolvementLevel::ALL,
            InvolvementLevel::as_str,
        )?;
        let source_time = self.time("updated_at")?;
        let details =
            ReferralDetails::new(received, team, referral_source, status, closed, involvement)
                .map_err(|e| self.invalid(e))?;
        Ok(IngestCommand::Referral {
            identity,
            source_ref: source_ref.to_owned(),
            details,
            source_time,
        })
    }

    fn alert(&self, source: &SourceId) -> Result<IngestCommand, RowError> {
        let source_ref = self.reference("alert_id")?;
        let identity = self.identity(source)?;
        let category =
            self.required_choice("category", AlertCategory::ALL, AlertCategory::as_str)?;
        let description = self.required("description")?;
        let severity = self
            .choice("severity", Severity::ALL, Severity::as_str)?
            .unwrap_or(Severity::Unknown);
        let recorded = self.required_date("recorded_date")?;
        let active_from = self.date("active_from")?.unwrap_or(recorded);
        let active_to = self.date("active_to")?;
        let source_time = self.time("updated_at")?;
        let details = AlertDetails::new(
            category,
            description,
            severity,
            recorded,
            active_from,
            active_to,
        )
        .map_err(|e| self.invalid(e))?;
        Ok(IngestCommand::Alert {
            identity,
            source_ref: source_ref.to_owned(),
            details,
            source_time,
        })
    }
}

/// A date written `YYYY-MM-DD`, exactly.
fn parse_date(raw: &str) -> Result<Date, String> {
    let b = raw.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(format!("{raw:?} is not a date (YYYY-MM-DD)"));
    }
    let number = |range: std::ops::Range<usize>| raw[range].parse::<u32>().unwrap_or(0);
    let year = i32::try_from(number(0..4)).unwrap_or(0);
    Date::from_ymd_opt(year, number(5..7), number(8..10))
        .ok_or_else(|| format!("{raw:?} is not a calendar date"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const HEADER: &str = "referral_id,nhs_number,local_id,received_date,team,referral_source,status,closed_date,involvement,updated_at";
    const GOOD: &str = "R1,9434765919,C-1,2026-01-05,Children's MASH,school,accepted,,child_in_need,2026-01-06T10:00:00Z";

    fn source() -> SourceId {
        SourceId::parse("council-dc").unwrap()
    }

    /// A row's line, its kept bytes, and what it maps to.
    type ReadRow = (u64, Vec<u8>, Result<Vec<IngestCommand>, String>);

    /// Each row of `text`.
    fn read(kind: CsvKind, text: &[u8]) -> Result<Vec<ReadRow>, CsvError> {
        let mut file = Rows::new(text);
        let header = file.header(kind)?;
        let mut rows = Vec::new();
        while let Some(line) = file.next_row()? {
            let mapped = header
                .map_row(kind, &file.record, line, &source())
                .map_err(|e| e.to_string());
            rows.push((line, file.raw.clone(), mapped));
        }
        Ok(rows)
    }

    fn one_referral(row: &str) -> Result<ReferralDetails, String> {
        let rows = read(CsvKind::Referrals, format!("{HEADER}\n{row}\n").as_bytes()).unwrap();
        assert_eq!(rows.len(), 1);
        match rows.into_iter().next().unwrap().2?.remove(0) {
            IngestCommand::Referral { details, .. } => Ok(details),
            other => panic!("{other:?}"),
        }
    }

    fn header_problem(kind: CsvKind, text: &str) -> String {
        match read(kind, text.as_bytes()) {
            Err(CsvError::Header { problem, .. }) => problem,
            other => panic!("expected a header error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_row_maps_to_a_referral_from_the_files_source() {
        let rows = read(CsvKind::Referrals, format!("{HEADER}\n{GOOD}\n").as_bytes()).unwrap();
        let (line, raw, mapped) = &rows[0];
        assert_eq!(*line, 2);
        assert_eq!(raw, GOOD.as_bytes());
        let IngestCommand::Referral {
            identity,
            source_ref,
            details,
            source_time,
        } = &mapped.as_ref().unwrap()[0]
        else {
            panic!()
        };
        assert_eq!(source_ref, "R1");
        assert_eq!(
            identity.nhs_number().unwrap(),
            &NhsNumber::parse("9434765919").unwrap()
        );
        assert_eq!(identity.local_id().unwrap().source(), &source());
        assert_eq!(details.status(), ReferralStatus::Accepted);
        assert_eq!(details.team(), "Children's MASH");
        assert_eq!(details.involvement(), Some(InvolvementLevel::ChildInNeed));
        assert_eq!(source_time.to_rfc3339(), "2026-01-06T10:00:00+00:00");
    }

    #[test]
    fn columns_may_come_in_any_order() {
        let text = "updated_at,status,team,referral_id,received_date,referral_source,local_id,nhs_number,involvement,closed_date\n\
                    2026-01-06T10:00:00+01:00,closed_transferred,MASH,R9,2026-01-05,police,C-9,,,2026-02-01\n";
        let rows = read(CsvKind::Referrals, text.as_bytes()).unwrap();
        let IngestCommand::Referral {
            details,
            source_time,
            ..
        } = &rows[0].2.as_ref().unwrap()[0]
        else {
            panic!()
        };
        assert_eq!(details.status(), ReferralStatus::ClosedTransferred);
        assert_eq!(details.closed(), Date::from_ymd_opt(2026, 2, 1));
        assert_eq!(source_time.to_rfc3339(), "2026-01-06T09:00:00+00:00");
    }

    #[test]
    fn the_header_must_name_every_column_once_and_nothing_else() {
        let missing = header_problem(
            CsvKind::Referrals,
            "referral_id,nhs_number,local_id,received_date,team,referral_source,closed_date,involvement,updated_at\n",
        );
        assert!(
            missing.contains(r#"missing column(s) "status""#),
            "{missing}"
        );
        let unknown = header_problem(CsvKind::Referrals, &format!("{HEADER},colour\n"));
        assert!(unknown.contains(r#"unknown column "colour""#), "{unknown}");
        let twice = header_problem(CsvKind::Referrals, &format!("{HEADER},team\n"));
        assert!(twice.contains(r#"column "team" appears twice"#), "{twice}");
        let empty = header_problem(CsvKind::Alerts, "");
        assert!(empty.contains("the file is empty"), "{empty}");
        // An alerts header is not a referrals header.
        let wrong_kind = header_problem(CsvKind::Referrals, &ALERT_COLUMNS.join(","));
        assert!(
            wrong_kind.contains(r#"unknown column "alert_id""#),
            "{wrong_kind}"
        );
        assert!(wrong_kind.contains("missing column(s)"), "{wrong_kind}");
        // Names are exact.
        let capitalised = header_problem(CsvKind::Referrals, &HEADER.replace("team", "Team"));
        assert!(
            capitalised.contains(r#"unknown column "Team""#),
            "{capitalised}"
        );
    }

    #[test]
    fn each_bad_field_is_named_with_its_line_and_column() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "status",
                "opne",
                r#"line 2, column status: "opne" is not one of awaiting_decision, accepted, closed_no_further_action, closed_transferred"#,
            ),
            (
                "status",
                "",
                "line 2, column status: is empty; it is required",
            ),
            (
                "referral_source",
                "teacher",
                r#"line 2, column referral_source: "teacher" is not one of police, school, health_visitor, health, self"#,
            ),
            (
                "involvement",
                "cin",
                r#"line 2, column involvement: "cin" is not one of early_help"#,
            ),
            (
                "received_date",
                "05/01/2026",
                r#"line 2, column received_date: "05/01/2026" is not a date (YYYY-MM-DD)"#,
            ),
            (
                "received_date",
                "2026-02-30",
                r#"line 2, column received_date: "2026-02-30" is not a calendar date"#,
            ),
            (
                "nhs_number",
                "9434765918",
                r#"line 2, column nhs_number: "9434765918": check digit does not match"#,
            ),
            (
                "nhs_number",
                "94347",
                r#"line 2, column nhs_number: "94347": must have 10 digits"#,
            ),
            (
                "local_id",
                "C 1",
                r#"line 2, column local_id: "C 1": must not contain spaces"#,
            ),
            (
                "updated_at",
                "2026-01-06 10:00",
                r#"line 2, column updated_at: "2026-01-06 10:00" is not an RFC 3339 date and time"#,
            ),
            (
                "updated_at",
                "",
                "line 2, column updated_at: is empty; it is required",
            ),
            ("team", "", "line 2, column team: is empty; it is required"),
            (
                "referral_id",
                "",
                "line 2, column referral_id: is empty; it is required",
            ),
            (
                "closed_date",
                "2026-02-01",
                "line 2, column closed_date: an open referral has no closed date",
            ),
        ];
        for (column, value, expected) in cases {
            let at = REFERRAL_COLUMNS.iter().position(|c| c == column).unwrap();
            let mut fields: Vec<&str> = GOOD.split(',').collect();
            fields[at] = value;
            let reason = one_referral(&fields.join(",")).unwrap_err();
            assert!(reason.starts_with(expected), "{column}={value:?}: {reason}");
        }
        let mut closed: Vec<&str> = GOOD.split(',').collect();
        closed[6] = "closed_no_further_action";
        assert_eq!(
            one_referral(&closed.join(",")).unwrap_err(),
            "line 2, column closed_date: a closed referral needs its closed date"
        );
        closed[7] = "2025-12-31";
        assert_eq!(
            one_referral(&closed.join(",")).unwrap_err(),
            "line 2, column closed_date: cannot be before the date received"
        );
        let mut anonymous: Vec<&str> = GOOD.split(',').collect();
        anonymous[1] = "";
        anonymous[2] = " ";
        assert!(
            one_referral(&anonymous.join(","))
                .unwrap_err()
                .contains("nhs_number and local_id are both empty")
        );
        assert_eq!(
            one_referral("R1,9434765919,C-1,2026-01-05").unwrap_err(),
            "line 2: 4 fields where the header has 10"
        );
        let mut bytes = format!("{HEADER}\n{}", GOOD.replace("MASH", "M#SH")).into_bytes();
        let at = bytes.iter().position(|b| *b == b'#').unwrap();
        bytes[at] = 0xC0;
        let rows = read(CsvKind::Referrals, &bytes).unwrap();
        assert_eq!(
            rows[0].2.as_ref().unwrap_err(),
            "line 2, column team: is not UTF-8 text"
        );
    }

    #[test]
    fn alerts_default_their_severity_and_start_and_check_their_period() {
        let header = ALERT_COLUMNS.join(",");
        let text = format!(
            "{header}\n\
             A1,,C-1,environmental_hazard,Dangerous dog at the address,,2026-03-01,,,2026-03-01T09:00:00Z\n\
             A2,,C-1,allergy,Penicillin,severe,2026-03-01,,,2026-03-01T09:00:00Z\n\
             A3,,C-1,other,Key safe,low,2026-03-01,2026-03-10,2026-03-09,2026-03-01T09:00:00Z\n"
        );
        let rows = read(CsvKind::Alerts, text.as_bytes()).unwrap();
        let IngestCommand::Alert { details, .. } = &rows[0].2.as_ref().unwrap()[0] else {
            panic!()
        };
        assert_eq!(details.severity(), Severity::Unknown);
        assert_eq!(details.active_from(), details.recorded());
        assert_eq!(details.category(), AlertCategory::EnvironmentalHazard);
        assert_eq!(
            rows[1].2.as_ref().unwrap_err(),
            r#"line 3, column severity: "severe" is not one of high, moderate, low, unknown"#
        );
        assert_eq!(
            rows[2].2.as_ref().unwrap_err(),
            "line 4, column active_to: cannot be before the start of the active period"
        );
    }

    #[test]
    fn quoted_fields_keep_commas_quotes_and_line_breaks_and_lines_are_counted_through_them() {
        let text = format!(
            "{HEADER}\n\
             R1,,C-1,2026-01-05,\"Team A, north\",school,accepted,,,2026-01-06T10:00:00Z\n\
             R2,,C-2,2026-01-05,\"The \"\"first\"\"\nresponse team\",school,accepted,,,2026-01-06T10:00:00Z\n\
             R3,,C-3,2026-01-05,MASH,school,opne,,,2026-01-06T10:00:00Z\n"
        );
        let rows = read(CsvKind::Referrals, text.as_bytes()).unwrap();
        let team = |i: usize| match &rows[i].2.as_ref().unwrap()[0] {
            IngestCommand::Referral { details, .. } => details.team().to_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(team(0), "Team A, north");
        // The domain folds whitespace (the line break) in a team name into one space.
        assert_eq!(team(1), "The \"first\" response team");
        assert_eq!(
            rows[1].1,
            b"R2,,C-2,2026-01-05,\"The \"\"first\"\"\nresponse team\",school,accepted,,,2026-01-06T10:00:00Z"
        );
        assert_eq!(
            rows[2].0, 5,
            "the row after a two-line row starts on line 5"
        );
        assert!(
            rows[2]
                .2
                .as_ref()
                .unwrap_err()
                .starts_with("line 5, column status")
        );
    }

    #[test]
    fn crlf_line_endings_blank_lines_and_a_missing_final_line_ending_are_read() {
        let text = format!(
            "{HEADER}\r\n{GOOD}\r\n\r\n\r\n{}\r\n{}",
            GOOD.replace("R1", "R2"),
            GOOD.replace("R1", "R3")
        );
        let rows = read(CsvKind::Referrals, text.as_bytes()).unwrap();
        let lines: Vec<u64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 5, 6]);
        for (i, row) in rows.iter().enumerate() {
            assert!(row.2.is_ok(), "{:?}", row.2);
            assert_eq!(row.1, GOOD.replace("R1", &format!("R{}", i + 1)).as_bytes());
        }
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_column_or_the_kept_header() {
        let text = format!("\u{feff}{HEADER}\n{GOOD}\n");
        let mut file = Rows::new(text.as_bytes());
        let header = file.header(CsvKind::Referrals).unwrap();
        assert_eq!(header.raw, HEADER.as_bytes());
        assert!(file.next_row().unwrap().is_some());
        assert!(
            header
                .map_row(CsvKind::Referrals, &file.record, 2, &source())
                .is_ok()
        );
    }

    #[test]
    fn a_kept_row_is_a_file_of_its_own_that_maps_the_same() {
        let stored = format!("{HEADER}\n{GOOD}");
        assert!(map_one_row(CsvKind::Referrals, stored.as_bytes(), &source()).is_ok());
        let two = format!("{stored}\n{GOOD}");
        assert!(
            map_one_row(CsvKind::Referrals, two.as_bytes(), &source())
                .unwrap_err()
                .contains("not several")
        );
        assert!(
            map_one_row(CsvKind::Referrals, HEADER.as_bytes(), &source())
                .unwrap_err()
                .contains("no row")
        );
    }

    #[test]
    fn kept_bytes_stay_right_across_many_buffer_refills() {
        // Long enough that the reader refills its buffer and the tee drops its front
        // many times.
        let mut text = format!("{HEADER}\n");
        for i in 0..20_000 {
            text.push_str(&GOOD.replace("R1", &format!("R{i}")));
            text.push('\n');
        }
        let rows = read(CsvKind::Referrals, text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 20_000);
        for (i, (line, raw, _)) in rows.iter().enumerate().step_by(997) {
            assert_eq!(*line, i as u64 + 2);
            assert_eq!(raw, GOOD.replace("R1", &format!("R{i}")).as_bytes());
        }
    }

    #[test]
    fn dates_are_exactly_year_month_day() {
        assert_eq!(
            parse_date("2026-11-25").unwrap(),
            Date::from_ymd_opt(2026, 11, 25).unwrap()
        );
        for bad in [
            "2026-1-25",
            "26-11-25",
            "2026/11/25",
            "2026-11-25T00:00",
            "+2026-11-2",
            "",
        ] {
            assert!(parse_date(bad).is_err(), "{bad:?}");
        }
    }
}
