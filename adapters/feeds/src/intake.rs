//! One submission — an HTTP body, an MLLP frame, a batch file — split into messages,
//! each applied through the feed session or quarantined with its raw bytes and reason.
//! A bad message never stops the ones after it; only a storage failure stops a
//! submission (and then nothing after it was acknowledged, so the sender sends again,
//! which is safe: applying is idempotent).

use std::future::Future;
use std::time::{Duration, Instant};

use care_application::{
    Durable, FeedFormat, FeedSession, FeedUnit, IngestCommand, IngestError, Rejected, Resubmission,
};
pub use care_application::{
    FeedReport as Report, MessageReport, MessageResult as Outcome, ResubmitError,
};
use care_hl7::Message;
use care_kernel::SourceId;
use care_kernel::UpdateOutcome;
use care_person::{Identifier, LocalId, NhsNumber};

use crate::hl7;

/// The longest a unit of work stays open: one durable commit per unit instead of several
/// per message, while the database's write lock (on SQLite, which readers' audit appends
/// also wait for, in turn) is never held for long. A unit also commits as soon as another
/// writer waits for the database (`FeedUnit::others_waiting`). How many messages a unit holds is
/// the database's say (`FeedSession::unit_capacity`).
const UNIT_OPEN_FOR: Duration = Duration::from_millis(50);

/// A submission's messages written in units of work, each committed when it fills up
/// or has been open long enough, and the last by [`Units::finish`]. Nothing written
/// through a unit is acknowledged before it commits: if a commit (or anything else)
/// fails, the submission fails and the sender sends it again, which is safe.
pub(crate) struct Units<'a> {
    session: &'a FeedSession,
    open: Option<OpenUnit>,
    /// Whether to leave the database to others between units for as long as the unit
    /// held it (a batch job in its own process, which the server's fair write queue
    /// cannot see), when another process has it open.
    share: bool,
}

struct OpenUnit {
    intake: Intake,
    unit: FeedUnit,
    messages: usize,
    since: Instant,
}

impl<'a> Units<'a> {
    pub(crate) fn new(session: &'a FeedSession) -> Self {
        Self {
            session,
            open: None,
            share: false,
        }
    }

    /// Units that leave the database to other processes between them (see `share`).
    pub(crate) fn sharing(session: &'a FeedSession) -> Self {
        Self {
            share: true,
            ..Self::new(session)
        }
    }

    /// The intake to submit the next message through (opening a unit if none is open).
    pub(crate) async fn intake(&mut self) -> Result<&Intake, IngestError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => {
                let unit = self.session.unit().await?;
                OpenUnit {
                    intake: Intake::new(unit.session().clone()),
                    unit,
                    messages: 0,
                    since: Instant::now(),
                }
            }
        };
        Ok(&self.open.insert(open).intake)
    }

    /// Notes a message written in the open unit, and commits the unit if it is full, has
    /// been open long enough or another writer waits. Whether it committed.
    pub(crate) async fn written(&mut self) -> Result<bool, IngestError> {
        match self.written_then_flush().await? {
            Some(durable) => durable.await.map(|()| true).map_err(IngestError::from),
            None => Ok(false),
        }
    }

    /// [`Units::written`], returning when the commit it made (if any) is durable rather
    /// than waiting for it: the next unit may be written meanwhile, but what the unit
    /// held may be acknowledged only once that has returned `Ok`.
    pub(crate) async fn written_then_flush(&mut self) -> Result<Option<Durable>, IngestError> {
        let capacity = self.session.unit_capacity();
        let full = self.open.as_mut().is_some_and(|open| {
            open.messages += 1;
            open.messages >= capacity
                || open.since.elapsed() >= UNIT_OPEN_FOR
                || open.unit.others_waiting()
        });
        if full {
            Ok(Some(self.commit_then_flush().await?))
        } else {
            Ok(None)
        }
    }

    async fn commit_then_flush(&mut self) -> Result<Durable, IngestError> {
        match self.open.take() {
            Some(open) => {
                let several = self.session.unit_capacity() > 1;
                let durable = open.unit.commit_then_flush().await?;
                if self.share && several && self.session.others_attached() {
                    tokio::time::sleep(open.since.elapsed().min(UNIT_OPEN_FOR)).await;
                }
                Ok(durable)
            }
            None => Ok(care_application::durable_already()),
        }
    }

    /// Commits what is still open: only then may the submission be acknowledged.
    pub(crate) async fn finish(self) -> Result<(), IngestError> {
        self.finish_then_flush()
            .await?
            .await
            .map_err(IngestError::from)
    }

    /// [`Units::finish`], returning when the commit is durable rather than waiting.
    pub(crate) async fn finish_then_flush(mut self) -> Result<Durable, IngestError> {
        self.commit_then_flush().await
    }
}

/// Messages waiting for a shared unit at most (senders wait beyond it: back-pressure).
const SHARED_QUEUE: usize = 256;

/// A framed message waiting for a shared unit (read and mapped already, by the
/// connection's own task), and where its answer goes.
#[derive(Debug)]
struct Waiting {
    raw: Vec<u8>,
    prepared: Hl7Prepared,
    reply: tokio::sync::oneshot::Sender<Result<MessageReport, String>>,
    order: InOrder,
    /// Its place among its sender's messages.
    place: u64,
}

/// One sender's messages in the order it sent them (an MLLP connection's): once one of
/// them is answered with an error (its own write failed, or its unit's commit), those
/// it queued after it are refused, not written: the sender sends them again after it,
/// and none is applied ahead of an earlier one. (A unit whose commit could not be made
/// durable is known to have failed only after the next unit was written: messages of
/// that next unit were applied after it, in order, and are answered as their own unit
/// turns out.)
#[derive(Debug, Clone)]
pub struct InOrder(std::sync::Arc<Places>);

/// The places given to a sender's messages, and the first that failed.
#[derive(Debug)]
struct Places {
    next: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl Default for InOrder {
    fn default() -> Self {
        Self(std::sync::Arc::new(Places {
            next: std::sync::atomic::AtomicU64::new(0),
            failed: std::sync::atomic::AtomicU64::new(u64::MAX),
        }))
    }
}

impl InOrder {
    /// The next message's place.
    fn place(&self) -> u64 {
        self.0
            .next
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }

    /// The message at `place` was answered with an error.
    fn failed_at(&self, place: u64) {
        self.0
            .failed
            .fetch_min(place, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a message before the one at `place` failed (those before it are written
    /// again when one fails on its own: they go on).
    fn behind_a_failure(&self, place: u64) -> bool {
        place > self.0.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The handle of [`Intake::shared`]. The writer stops when every handle is dropped.
#[derive(Debug, Clone)]
pub struct SharedIntake {
    tx: tokio::sync::mpsc::Sender<Waiting>,
    source: SourceId,
}

impl SharedIntake {
    /// Whether the writer still runs (it stops only when every handle is gone, or if it
    /// panicked).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Queues one HL7 v2 message, to be applied or quarantined in a unit shared with
    /// other connections' messages, and returns its answer to wait for (given once that
    /// unit has committed). It is read and mapped here, on the caller's task, so that the
    /// writer only writes. A caller that queues several before waiting has them written
    /// in the order queued, in as few units as the writer can, and none after one that
    /// fails (`order`).
    pub async fn queue_hl7(
        &self,
        index: usize,
        raw: &[u8],
        order: &InOrder,
    ) -> Result<impl Future<Output = Result<MessageReport, IngestError>> + use<>, IngestError> {
        let stopped = || IngestError::Unexpected(anyhow::anyhow!("the feed writer has stopped"));
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(Waiting {
                raw: raw.to_vec(),
                prepared: Hl7Prepared::read(index, raw, &self.source),
                reply,
                order: order.clone(),
                place: order.place(),
            })
            .await
            .map_err(|_| stopped())?;
        Ok(async move {
            answer
                .await
                .map_err(|_| stopped())?
                .map_err(|e| IngestError::Unexpected(anyhow::anyhow!(e)))
        })
    }
}

/// The writer behind [`SharedIntake`]: takes messages as they come, writes each into the
/// open unit, and commits when the unit is full, has been open long enough, another
/// writer waits, or no message is waiting; then answers the messages it held.
///
/// A message that fails on its own (its write, not the commit) takes nothing with it:
/// the unit is rolled back, that message alone is answered with the error, and the
/// messages the unit held are written again in a new one (applying is idempotent). A
/// failed commit fails every message of the unit: nothing in it is answered as applied.
async fn share_units(session: FeedSession, mut rx: tokio::sync::mpsc::Receiver<Waiting>) {
    let mut queue: std::collections::VecDeque<Waiting> = std::collections::VecDeque::new();
    'units: loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(message) => queue.push_back(message),
                None => return,
            }
        }
        let mut units = Units::new(&session);
        let mut held: Vec<(Waiting, MessageReport)> = Vec::new();
        let mut commit_failed: Option<String> = None;
        while let Some(message) = queue.pop_front() {
            if message.order.behind_a_failure(message.place) {
                let _ = message.reply.send(Err(
                    "an earlier message from this sender was not applied: send this one again after it"
                        .to_owned(),
                ));
                continue;
            }
            let written = match units.intake().await {
                Ok(intake) => intake.submit_hl7(&message.prepared, &message.raw).await,
                Err(e) => Err(e),
            };
            match written {
                Ok(report) => held.push((message, report)),
                Err(e) => {
                    message.order.failed_at(message.place);
                    let _ = message.reply.send(Err(e.to_string()));
                    for (again, _) in held.into_iter().rev() {
                        queue.push_front(again);
                    }
                    // `units` (and its open unit) is dropped here: rolled back.
                    continue 'units;
                }
            }
            match units.written_then_flush().await {
                Ok(Some(durable)) => answer_when(durable, std::mem::take(&mut held)),
                Ok(None) => {}
                Err(e) => {
                    commit_failed = Some(e.to_string());
                    break;
                }
            }
            if queue.is_empty()
                && let Ok(next) = rx.try_recv()
            {
                queue.push_back(next);
            }
        }
        // Nothing more waiting: commit what the unit holds.
        match commit_failed {
            Some(why) => answer(held, &Err(why)),
            None => match units.finish_then_flush().await {
                Ok(durable) => answer_when(durable, held),
                Err(e) => answer(held, &Err(e.to_string())),
            },
        }
    }
}

/// Answers a committed unit's messages once it is durable, from a task of its own: the
/// writer goes on to the next unit meanwhile (see [`FeedUnit::commit_then_flush`]).
fn answer_when(durable: Durable, held: Vec<(Waiting, MessageReport)>) {
    if held.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let flushed = durable.await.map_err(|e| IngestError::from(e).to_string());
        answer(held, &flushed);
    });
}

/// Answers a unit's messages: each its report if the unit is durable, else the error.
fn answer(held: Vec<(Waiting, MessageReport)>, unit: &Result<(), String>) {
    for (message, report) in held {
        let _ = message.reply.send(match unit {
            Ok(()) => Ok(report),
            Err(why) => {
                message.order.failed_at(message.place);
                Err(why.clone())
            }
        });
    }
}

/// The feed pipeline over one session.
#[derive(Debug, Clone)]
pub struct Intake {
    session: FeedSession,
}

impl Intake {
    /// A pipeline submitting through `session`.
    pub fn new(session: FeedSession) -> Self {
        Self { session }
    }

    /// The session.
    pub fn session(&self) -> &FeedSession {
        &self.session
    }

    /// Applies already-mapped commands for one message (HL7, FHIR resources, CSV rows),
    /// or quarantines the message with the mapping's reason, or the record's when they
    /// cannot be applied.
    pub async fn submit_mapped(
        &self,
        index: usize,
        format: FeedFormat,
        reference: Option<String>,
        raw: &[u8],
        mapped: Result<Vec<IngestCommand>, String>,
    ) -> Result<MessageReport, IngestError> {
        self.submit_mapped_about(index, format, reference, raw, mapped, &[])
            .await
    }

    /// [`Intake::submit_mapped`] for a message that is part of something larger (a FHIR
    /// Bundle entry): `about` names the people of the whole, who a quarantined part may
    /// be about even when it names them only by a reference into the whole.
    pub async fn submit_mapped_about(
        &self,
        index: usize,
        format: FeedFormat,
        reference: Option<String>,
        raw: &[u8],
        mapped: Result<Vec<IngestCommand>, String>,
        about: &[Identifier],
    ) -> Result<MessageReport, IngestError> {
        self.submit_mapped_as(
            index,
            format,
            reference,
            raw,
            mapped.as_deref().map_err(String::as_str),
            about,
        )
        .await
    }

    /// [`Intake::submit_mapped_about`] with the mapping borrowed.
    async fn submit_mapped_as(
        &self,
        index: usize,
        format: FeedFormat,
        reference: Option<String>,
        raw: &[u8],
        mapped: Result<&[IngestCommand], &str>,
        about: &[Identifier],
    ) -> Result<MessageReport, IngestError> {
        let failure = match mapped {
            Ok(commands) => match self.session.apply(commands).await {
                Ok(outcome) => {
                    return Ok(MessageReport {
                        index,
                        reference,
                        outcome: Outcome::from(outcome),
                    });
                }
                Err(e) if e.is_the_messages_fault() => e.to_string(),
                Err(e) => return Err(e),
            },
            Err(reason) => reason.to_owned(),
        };
        self.quarantine_about(index, format, reference, raw, failure, about)
            .await
    }

    /// Quarantines a message and reports it.
    pub async fn quarantine(
        &self,
        index: usize,
        format: FeedFormat,
        reference: Option<String>,
        raw: &[u8],
        reason: String,
    ) -> Result<MessageReport, IngestError> {
        self.quarantine_about(index, format, reference, raw, reason, &[])
            .await
    }

    async fn quarantine_about(
        &self,
        index: usize,
        format: FeedFormat,
        reference: Option<String>,
        raw: &[u8],
        reason: String,
        about: &[Identifier],
    ) -> Result<MessageReport, IngestError> {
        let mut subjects = subjects_in(format, raw, &self.session.source().id);
        for identifier in about {
            if !subjects.contains(identifier) {
                subjects.push(identifier.clone());
            }
        }
        let id = self
            .session
            .quarantine(Rejected {
                format,
                reference: reference.clone(),
                raw: raw.to_vec(),
                reason: reason.clone(),
                subjects,
            })
            .await?;
        // The reason can quote a value from the message (an NHS number): log only where.
        let location = reason.split(':').next().unwrap_or_default();
        tracing::info!(target: "feeds", source = %self.session.source().id, %id, %location, "message quarantined");
        Ok(MessageReport {
            index,
            reference,
            outcome: Outcome::Quarantined { id, reason },
        })
    }

    /// Applies messages sent to the returned handle — by several connections of one
    /// sender — in shared units of work: a message that arrives while others are being
    /// written joins their unit, so one durable commit answers many (group commit), and
    /// each is answered only once its unit has committed.
    pub fn shared(self) -> SharedIntake {
        let (tx, rx) = tokio::sync::mpsc::channel(SHARED_QUEUE);
        let source = self.session.source().id.clone();
        tokio::spawn(share_units(self.session, rx));
        SharedIntake { tx, source }
    }

    /// One HL7 v2 message (an MLLP frame): parsed, mapped, applied or quarantined, in
    /// one unit of work with the source's counters (one durable commit).
    pub async fn hl7_message(
        &self,
        index: usize,
        raw: &[u8],
    ) -> Result<MessageReport, IngestError> {
        let prepared = Hl7Prepared::read(index, raw, &self.session.source().id);
        let mut units = Units::new(&self.session);
        let report = units.intake().await?.submit_hl7(&prepared, raw).await?;
        units.finish().await?;
        Ok(report)
    }

    /// Applies an HL7 v2 message read and mapped, or quarantines it with the reason it
    /// could not be (`raw` is what is kept then).
    async fn submit_hl7(
        &self,
        prepared: &Hl7Prepared,
        raw: &[u8],
    ) -> Result<MessageReport, IngestError> {
        self.submit_mapped_as(
            prepared.index,
            FeedFormat::Hl7v2,
            prepared.reference.clone(),
            raw,
            prepared.mapped.as_deref().map_err(String::as_str),
            &[],
        )
        .await
    }

    /// HL7 v2 text holding one message, several, or an FHS/BHS batch: each message
    /// applied or quarantined on its own. Input that cannot be split into messages at
    /// all is quarantined whole.
    pub async fn hl7(&self, raw: &[u8]) -> Result<Report, IngestError> {
        let text = match care_hl7::decode(raw) {
            Ok(text) => text,
            Err(e) => {
                let one = self
                    .quarantine(0, FeedFormat::Hl7v2, None, raw, e.to_string())
                    .await?;
                return Ok(Report {
                    messages: vec![one],
                    warnings: Vec::new(),
                });
            }
        };
        let batch = match care_hl7::split_messages(&text) {
            Ok(batch) => batch,
            Err(e) => {
                let reference = care_hl7::best_effort_control_id(&text).map(str::to_owned);
                let one = self
                    .quarantine(0, FeedFormat::Hl7v2, reference, raw, e.to_string())
                    .await?;
                return Ok(Report {
                    messages: vec![one],
                    warnings: Vec::new(),
                });
            }
        };
        let mut report = Report {
            messages: Vec::with_capacity(batch.messages().len()),
            warnings: batch.warnings().iter().map(ToString::to_string).collect(),
        };
        // Read and mapped before any unit opens: while this submission parses, another
        // may write.
        let source = &self.session.source().id;
        let prepared: Vec<(&str, Hl7Prepared)> = batch
            .messages()
            .iter()
            .enumerate()
            .map(|(index, message)| {
                (
                    with_terminator(&text, message),
                    Hl7Prepared::from_text(index, message, source),
                )
            })
            .collect();
        let mut units = Units::new(&self.session);
        for (raw, prepared) in &prepared {
            let intake = units.intake().await?;
            report
                .messages
                .push(intake.submit_hl7(prepared, raw.as_bytes()).await?);
            units.written().await?;
        }
        units.finish().await?;
        Ok(report)
    }
}

/// An HL7 v2 message read and mapped to ingest commands (or the reason it could not
/// be), ready to apply: all the work on a message that needs no database, done before
/// its unit of work opens.
#[derive(Debug)]
struct Hl7Prepared {
    index: usize,
    reference: Option<String>,
    mapped: Result<Vec<IngestCommand>, String>,
}

impl Hl7Prepared {
    /// A message as framed (bytes, possibly not text).
    fn read(index: usize, raw: &[u8], source: &SourceId) -> Self {
        match care_hl7::decode(raw) {
            Ok(text) => Self::from_text(index, &text, source),
            Err(e) => Self {
                index,
                reference: None,
                mapped: Err(e.to_string()),
            },
        }
    }

    /// A message already decoded.
    fn from_text(index: usize, text: &str, source: &SourceId) -> Self {
        let mapped = match Message::parse(text) {
            Ok(message) => hl7::map_message(&message, source).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        Self {
            index,
            reference: care_hl7::best_effort_control_id(text).map(str::to_owned),
            mapped,
        }
    }
}

/// At most this many identifiers are kept per quarantined message.
const MAX_SUBJECTS: usize = 32;

/// Whom a message that could not be applied may be about, found leniently (the message
/// may be broken): every run of ten digits that is a valid NHS number, and this
/// source's ids — PID-3 and MRG-1 of an HL7 message, a FHIR Patient's id and
/// `Patient/{id}` references, a CSV row's `local_id`. Errs towards finding too many:
/// each one found makes reading the message an access to that person.
pub fn subjects_in(format: FeedFormat, raw: &[u8], source: &SourceId) -> Vec<Identifier> {
    let mut found: Vec<Identifier> = Vec::new();
    let mut push = |identifier: Identifier| {
        if found.len() < MAX_SUBJECTS && !found.contains(&identifier) {
            found.push(identifier);
        }
    };
    for nhs in nhs_numbers_in(raw) {
        push(Identifier::Nhs(nhs));
    }
    let local = |value: &str| {
        LocalId::new(source.clone(), value)
            .ok()
            .map(Identifier::Local)
    };
    match format {
        FeedFormat::Hl7v2 => {
            let text = String::from_utf8_lossy(raw);
            if let Ok(batch) = care_hl7::split_messages(&text) {
                for message in batch.parse_messages().flatten() {
                    for (segment, field) in [("PID", 3), ("MRG", 1)] {
                        for seg in message.segments_named(segment) {
                            for rep in seg.field(field).repetitions() {
                                if let Some(id) = local(&rep.component(1).value()) {
                                    push(id);
                                }
                            }
                        }
                    }
                }
            }
        }
        FeedFormat::Fhir => {
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(raw) {
                let mut stack = vec![&json];
                while let Some(value) = stack.pop() {
                    match value {
                        serde_json::Value::Object(map) => {
                            // A Patient may be known by its id or any of its identifiers.
                            if map.get("resourceType").and_then(|v| v.as_str()) == Some("Patient") {
                                let id = map.get("id").and_then(|v| v.as_str());
                                let values = map
                                    .get("identifier")
                                    .and_then(|v| v.as_array())
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|i| i.get("value")?.as_str());
                                for value in id.into_iter().chain(values) {
                                    if let Some(id) = local(value) {
                                        push(id);
                                    }
                                }
                            }
                            if let Some(reference) = map.get("reference").and_then(|v| v.as_str())
                                && let Some((_, tail)) = reference.rsplit_once("Patient/")
                                && let Some(id) = local(tail.split('/').next().unwrap_or(tail))
                            {
                                push(id);
                            }
                            stack.extend(map.values());
                        }
                        serde_json::Value::Array(items) => stack.extend(items),
                        _ => {}
                    }
                }
            }
        }
        FeedFormat::CsvReferrals | FeedFormat::CsvAlerts => {
            let mut reader = ::csv::ReaderBuilder::new().flexible(true).from_reader(raw);
            let column = reader
                .headers()
                .ok()
                .and_then(|h| h.iter().position(|c| c.trim() == "local_id"));
            if let Some(column) = column {
                for record in reader.records().flatten() {
                    if let Some(id) = record.get(column).and_then(local) {
                        push(id);
                    }
                }
            }
        }
    }
    found
}

/// Every valid NHS number written in `raw`: ten digits not touching other digits, as one
/// run or grouped 3-3-4 by single spaces or dashes (`943 476 5919`, `943-476-5919`).
fn nhs_numbers_in(raw: &[u8]) -> Vec<NhsNumber> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let starts = raw[i].is_ascii_digit() && (i == 0 || !raw[i - 1].is_ascii_digit());
        if !starts {
            i += 1;
            continue;
        }
        let mut digits = String::with_capacity(10);
        let mut j = i;
        while j < raw.len() && digits.len() < 10 {
            let b = raw[j];
            if b.is_ascii_digit() {
                digits.push(char::from(b));
                j += 1;
            } else if matches!(b, b' ' | b'-')
                && matches!(digits.len(), 3 | 6)
                && raw.get(j + 1).is_some_and(u8::is_ascii_digit)
            {
                j += 1;
            } else {
                break;
            }
        }
        let ends = j == raw.len() || !raw[j].is_ascii_digit();
        if digits.len() == 10
            && ends
            && let Ok(nhs) = NhsNumber::parse(&digits)
        {
            found.push(nhs);
        }
        // Go on from the next digit run (a separator may have joined two numbers).
        i += 1;
        while i < raw.len() && raw[i].is_ascii_digit() {
            i += 1;
        }
    }
    found
}

/// A message's text as it stood in the submission: the slice and the segment
/// terminator after it (CR, LF or CRLF), which splitting leaves out.
fn with_terminator<'a>(text: &'a str, message: &'a str) -> &'a str {
    let start = (message.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let Some(end) = start
        .checked_add(message.len())
        .filter(|&e| e <= text.len())
    else {
        return message;
    };
    let rest = &text.as_bytes()[end..];
    let extra = match rest {
        [b'\r', b'\n', ..] => 2,
        [b'\r' | b'\n', ..] => 1,
        _ => 0,
    };
    text.get(start..end + extra).unwrap_or(message)
}

/// Re-submits a quarantined message through an opened [`Resubmission`]: its bytes (or
/// the corrected ones given in their place) mapped again by `map` and applied. A message
/// that still cannot be applied leaves the entry open and comes back as
/// `ResubmitError::StillFailing` with the reason; anything else is the system's.
pub async fn resubmit_with(
    resubmission: Resubmission,
    corrected: Option<Vec<u8>>,
    map: impl FnOnce(&[u8], &SourceId) -> Result<Vec<IngestCommand>, String>,
) -> Result<UpdateOutcome, ResubmitError> {
    let source = resubmission.entry().source.clone();
    let commands = {
        let raw = corrected.as_deref().unwrap_or(&resubmission.entry().raw);
        map(raw, &source).map_err(ResubmitError::StillFailing)?
    };
    resubmission.apply(&commands, corrected).await.map_err(|e| {
        if e.is_the_messages_fault() {
            ResubmitError::StillFailing(e.to_string())
        } else {
            ResubmitError::Ingest(e)
        }
    })
}

/// Re-submits a quarantined HL7 v2 message (see [`resubmit_with`]).
pub async fn resubmit_hl7(
    resubmission: Resubmission,
    corrected: Option<Vec<u8>>,
) -> Result<UpdateOutcome, ResubmitError> {
    resubmit_with(resubmission, corrected, |raw, source| {
        let text = care_hl7::decode(raw).map_err(|e| e.to_string())?;
        let message = Message::parse(&text).map_err(|e| e.to_string())?;
        hl7::map_message(&message, source).map_err(|e| e.to_string())
    })
    .await
}

#[cfg(test)]
mod subject_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn nhs_numbers_are_found_as_runs_or_grouped_3_3_4() {
        let found = |text: &str| -> Vec<String> {
            nhs_numbers_in(text.as_bytes())
                .iter()
                .map(NhsNumber::digits)
                .collect()
        };
        assert_eq!(found("PID|1||9434765919^^^NHS^NH"), ["9434765919"]);
        assert_eq!(
            found("nhs 943 476 5919, or 943-476-5919."),
            ["9434765919", "9434765919"]
        );
        assert!(
            found("94347659190").is_empty(),
            "eleven digits are not a number"
        );
        assert!(found("19434765919").is_empty());
        assert!(found("943  476 5919").is_empty(), "one separator at a time");
        assert!(found("9434765918").is_empty(), "the check digit must pass");
        assert!(found("").is_empty());
        assert_eq!(found("9434765919 9434765919"), ["9434765919", "9434765919"]);
    }

    #[test]
    fn fhir_patients_are_found_by_id_identifier_and_versioned_references() {
        let source = SourceId::parse("acute-pas").unwrap();
        let body = br#"{"resourceType":"Bundle","entry":[
            {"resource":{"resourceType":"Patient","identifier":[{"system":"urn:mrn","value":"MRN7"}]}},
            {"resource":{"resourceType":"Flag","subject":{"reference":"Patient/p1/_history/2"}}}]}"#;
        let subjects = subjects_in(FeedFormat::Fhir, body, &source);
        for local in ["MRN7", "p1"] {
            let id = Identifier::Local(LocalId::new(source.clone(), local).unwrap());
            assert!(subjects.contains(&id), "{local} in {subjects:?}");
        }
    }
}
