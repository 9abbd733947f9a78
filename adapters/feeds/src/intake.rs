//! One submission — an HTTP body, an MLLP frame, a batch file — split into messages,
//! each applied through the feed session or quarantined with its raw bytes and reason.
//! A bad message never stops the ones after it; only a storage failure stops a
//! submission (and then nothing after it was acknowledged, so the sender sends again,
//! which is safe: applying is idempotent).

use care_application::{
    FeedFormat, FeedSession, IngestCommand, IngestError, Rejected, Resubmission,
};
use care_hl7::Message;
use care_kernel::UpdateOutcome;
use serde::Serialize;
use uuid::Uuid;

use crate::hl7;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It changed the record.
    Applied,
    /// It changed nothing: a repeat, older than what is held, or nothing this record
    /// keeps (a discharge without a death).
    Unchanged,
    /// It was set aside; the quarantine entry says why.
    Quarantined {
        /// The quarantine entry.
        id: Uuid,
        /// Why.
        reason: String,
    },
}

impl Outcome {
    fn of(outcome: UpdateOutcome) -> Self {
        match outcome {
            UpdateOutcome::Applied => Outcome::Applied,
            UpdateOutcome::Unchanged | UpdateOutcome::Stale => Outcome::Unchanged,
        }
    }
}

/// One message of a submission and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageReport {
    /// Its position in the submission, from 0.
    pub index: usize,
    /// What names it to its sender (HL7 MSH-10, a FHIR resource id, a CSV line).
    pub reference: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What became of a submission's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Each message, in order.
    pub messages: Vec<MessageReport>,
    /// Things about the submission as a whole (e.g. a batch trailer's count that does
    /// not match), none of which stopped a message.
    pub warnings: Vec<String>,
}

impl Report {
    /// How many messages were applied, unchanged and quarantined.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for m in &self.messages {
            match m.outcome {
                Outcome::Applied => counts.0 += 1,
                Outcome::Unchanged => counts.1 += 1,
                Outcome::Quarantined { .. } => counts.2 += 1,
            }
        }
        counts
    }
}

/// The feed pipeline over one session.
#[derive(Debug, Clone)]
pub struct Intake {
    session: FeedSession,
}

/// Whether an ingest error is the message's fault (quarantine it) or the system's
/// (stop, acknowledge nothing, let the sender retry).
fn is_the_messages_fault(error: &IngestError) -> bool {
    matches!(
        error,
        IngestError::Invalid(_) | IngestError::Conflict(_) | IngestError::Busy
    )
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

    /// Applies a message's commands, or quarantines it when they cannot be applied.
    async fn settle(
        &self,
        index: usize,
        format: FeedFormat,
        reference: Option<String>,
        raw: &[u8],
        mapped: Result<Vec<IngestCommand>, String>,
    ) -> Result<MessageReport, IngestError> {
        let failure = match mapped {
            Ok(commands) => match self.session.apply(&commands).await {
                Ok(outcome) => {
                    return Ok(MessageReport {
                        index,
                        reference,
                        outcome: Outcome::of(outcome),
                    });
                }
                Err(e) if is_the_messages_fault(&e) => e.to_string(),
                Err(e) => return Err(e),
            },
            Err(reason) => reason,
        };
        self.quarantine(index, format, reference, raw, failure)
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
        let id = self
            .session
            .quarantine(Rejected {
                format,
                reference: reference.clone(),
                raw: raw.to_vec(),
                reason: reason.clone(),
            })
            .await?;
        tracing::info!(target: "feeds", source = %self.session.source().id, %id, %reason, "message quarantined");
        Ok(MessageReport {
            index,
            reference,
            outcome: Outcome::Quarantined { id, reason },
        })
    }

    /// Applies already-mapped commands for one message (FHIR resources, CSV rows), or
    /// quarantines the message with the mapping's reason.
    pub async fn submit_mapped(
        &self,
        index: usize,
        format: FeedFormat,
        reference: Option<String>,
        raw: &[u8],
        mapped: Result<Vec<IngestCommand>, String>,
    ) -> Result<MessageReport, IngestError> {
        self.settle(index, format, reference, raw, mapped).await
    }

    /// One HL7 v2 message (an MLLP frame): parsed, mapped, applied or quarantined.
    pub async fn hl7_message(
        &self,
        index: usize,
        raw: &[u8],
    ) -> Result<MessageReport, IngestError> {
        let text = match care_hl7::decode(raw) {
            Ok(text) => text,
            Err(e) => {
                return self
                    .quarantine(index, FeedFormat::Hl7v2, None, raw, e.to_string())
                    .await;
            }
        };
        let reference = care_hl7::best_effort_control_id(&text).map(str::to_owned);
        let mapped = match Message::parse(&text) {
            Ok(message) => {
                hl7::map_message(&message, &self.session.source().id).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        self.settle(index, FeedFormat::Hl7v2, reference, raw, mapped)
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
        for (index, message) in batch.messages().iter().enumerate() {
            report
                .messages
                .push(self.hl7_message(index, message.as_bytes()).await?);
        }
        Ok(report)
    }
}

/// Re-submits a quarantined HL7 v2 message (or the corrected one given in its place)
/// through an opened [`Resubmission`]. A message that still cannot be applied leaves the
/// entry open and comes back as `Err` with the reason.
pub async fn resubmit_hl7(
    resubmission: Resubmission,
    corrected: Option<Vec<u8>>,
) -> Result<UpdateOutcome, ResubmitError> {
    let raw = corrected
        .clone()
        .unwrap_or_else(|| resubmission.entry().raw.clone());
    let source = resubmission.entry().source.clone();
    let commands = {
        let text =
            care_hl7::decode(&raw).map_err(|e| ResubmitError::StillFailing(e.to_string()))?;
        let message =
            Message::parse(&text).map_err(|e| ResubmitError::StillFailing(e.to_string()))?;
        hl7::map_message(&message, &source)
            .map_err(|e| ResubmitError::StillFailing(e.to_string()))?
    };
    resubmission.apply(&commands, corrected).await.map_err(|e| {
        if is_the_messages_fault(&e) {
            ResubmitError::StillFailing(e.to_string())
        } else {
            ResubmitError::Ingest(e)
        }
    })
}

/// Why a re-submission did not resolve its entry.
#[derive(Debug, thiserror::Error)]
pub enum ResubmitError {
    /// The message still cannot be applied; the entry stays open.
    #[error("{0}")]
    StillFailing(String),
    /// Storage failed.
    #[error(transparent)]
    Ingest(IngestError),
}
