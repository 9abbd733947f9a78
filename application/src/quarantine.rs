//! The quarantine, for the System Manager: feed messages that could not be applied,
//! listed with their reasons and re-submitted after a fix (of the message, or of the
//! mapping that refused it). Reading raw messages shows personal data, so every call is
//! audited like any other access.

use care_kernel::{Action, Actor, DenyReason, InvalidValue, PersonId, UpdateOutcome};
use care_person::Identifier;
use uuid::Uuid;

use crate::ingest::{IngestCommand, IngestError};
use crate::ports::{
    Decision, QuarantineFilter, QuarantineSummary, QuarantinedMessage, Resolution, SubjectState,
};
use crate::{AccessError, AuditReceipt, Services, gate::Access};

/// The reason a list shows for a message about someone the reader may not see.
pub const WITHHELD: &str = "withheld: this message is about a record not shown to your role";

/// The most entries one listing returns.
pub const QUARANTINE_PAGE_MAX: usize = 1000;

/// A page of the quarantine.
#[derive(Debug, Clone)]
pub struct QuarantineList {
    /// Newest first.
    pub entries: Vec<QuarantineSummary>,
    receipt: AuditReceipt,
}

impl QuarantineList {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// One quarantined message, opened for re-submission (see
/// [`Services::open_resubmission`]). The feed adapter reads [`Resubmission::entry`],
/// maps the message (or the corrected one) again, and calls [`Resubmission::apply`].
#[derive(Debug)]
pub struct Resubmission {
    services: Services,
    actor: Actor,
    entry: QuarantinedMessage,
    receipt: AuditReceipt,
    withheld: bool,
}

impl Resubmission {
    /// Whether the message is about someone the re-submitter may not see (opted out,
    /// died more than 8 years ago): it may still be re-submitted — the record keeps
    /// taking their data — but why it fails must not be shown ([`WITHHELD`]).
    pub fn withheld(&self) -> bool {
        self.withheld
    }

    /// The message as it was quarantined.
    pub fn entry(&self) -> &QuarantinedMessage {
        &self.entry
    }

    /// The audit receipt of the re-submission.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }

    /// Applies the message's statements for its source and marks the entry resolved
    /// (with the corrected message, if one replaced it). On error the entry stays open.
    pub async fn apply(
        self,
        commands: &[IngestCommand],
        corrected: Option<Vec<u8>>,
    ) -> Result<UpdateOutcome, IngestError> {
        let source = self.services.registered_source(&self.entry.source).await?;
        let outcome = self.services.apply_commands(&source, commands).await?;
        let resolution = Resolution {
            at: self.services.now(),
            by: self.actor.user.clone(),
            outcome,
            corrected,
        };
        self.services
            .ports
            .quarantine
            .resolve(self.entry.id, &resolution)
            .await?;
        Ok(outcome)
    }
}

impl Services {
    /// Lists quarantined messages, newest first (System Manager; audited).
    pub async fn quarantined(
        &self,
        actor: &Actor,
        filter: &QuarantineFilter,
        limit: usize,
    ) -> Result<QuarantineList, AccessError> {
        let access = Access::new(actor, self.now(), Action::ViewFeedStatus).on("quarantine");
        self.refuse_early(&access).await?;
        if limit == 0 || limit > QUARANTINE_PAGE_MAX {
            return Err(InvalidValue::new(
                "limit",
                format!("must be between 1 and {QUARANTINE_PAGE_MAX}"),
            )
            .into());
        }
        let receipt = self.gate(&access).await?;
        let mut entries = self.ports.quarantine.list(filter, limit).await?;
        // A reason can quote a value from the message: for a message about someone this
        // role may not see, the list says only that it is withheld.
        for entry in &mut entries {
            if self.withholds(&access, &entry.subjects).await? {
                entry.reason = WITHHELD.to_owned();
                entry.subjects.clear();
            }
        }
        Ok(QuarantineList { entries, receipt })
    }

    /// One quarantined message with its raw bytes (System Manager; audited). A message
    /// holds personal data: reading it is also an access to each person it may be about
    /// (`read_source_demographics`, under their consent and vital status, one audit
    /// event each), and a message about someone this role may not see — an opted-out
    /// person, one who died more than 8 years ago — answers as an unknown entry.
    pub async fn quarantined_message(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<(QuarantinedMessage, AuditReceipt), AccessError> {
        let now = self.now();
        let access = Access::new(actor, now, Action::ViewFeedStatus).on(format!("quarantine:{id}"));
        self.refuse_early(&access).await?;
        let Some(entry) = self.ports.quarantine.get(id).await? else {
            return Err(self.refuse(&access, DenyReason::NotFound).await);
        };
        let people = access
            .for_action(Action::ReadSourceDemographics)
            .on(format!("quarantine:{id}"));
        for (person, subject) in self.subjects_of(actor, now, &entry.subjects).await? {
            self.gate(&people.about(person, Some(subject))).await?;
        }
        let receipt = self.gate(&access).await?;
        Ok((entry, receipt))
    }

    /// Each person a quarantined message may be about, once, with what the policy needs
    /// to know of them: a record found by an identifier, or (for an NHS number no record
    /// holds yet) the consent recorded for that number.
    async fn subjects_of(
        &self,
        actor: &Actor,
        now: care_kernel::Timestamp,
        subjects: &[Identifier],
    ) -> Result<Vec<(Option<PersonId>, SubjectState)>, AccessError> {
        let today = self.today(now);
        let mut found: Vec<(Option<PersonId>, SubjectState)> = Vec::new();
        let mut seen_nhs = Vec::new();
        for identifier in subjects {
            match self.ports.people.find_by_identifier(identifier).await? {
                Some(person) => {
                    if found.iter().any(|(p, _)| *p == Some(person.id())) {
                        continue;
                    }
                    let state = self.subject_state(&person, actor, today).await?;
                    found.push((Some(person.id()), state));
                }
                None => {
                    if let Identifier::Nhs(nhs) = identifier
                        && !seen_nhs.contains(nhs)
                    {
                        seen_nhs.push(nhs.clone());
                        let consent = self.ports.consent.get(nhs).await?;
                        found.push((
                            None,
                            SubjectState {
                                consent: consent
                                    .map_or(care_consent::ConsentLevel::Participating, |c| {
                                        c.level()
                                    }),
                                vital: care_person::VitalStatus::Alive,
                                basis: None,
                            },
                        ));
                    }
                }
            }
        }
        Ok(found)
    }

    /// Opens a quarantined message for re-submission (System Manager; audited). An
    /// entry already resolved is refused: its message has been applied.
    pub async fn open_resubmission(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<Resubmission, AccessError> {
        let access = Access::new(actor, self.now(), Action::ResubmitQuarantine)
            .on(format!("quarantine:{id}"));
        let receipt = self.gate(&access).await?;
        let entry = self
            .ports
            .quarantine
            .get(id)
            .await?
            .ok_or(AccessError::NotFound)?;
        if entry.resolution.is_some() {
            return Err(AccessError::Rejected(
                "this message has already been re-submitted and applied".into(),
            ));
        }
        let withheld = self.withholds(&access, &entry.subjects).await?;
        Ok(Resubmission {
            services: self.clone(),
            actor: actor.clone(),
            entry,
            receipt,
            withheld,
        })
    }

    /// Whether a message about these people is one whose content (and reason) this
    /// actor may not see.
    async fn withholds(
        &self,
        access: &Access<'_>,
        subjects: &[Identifier],
    ) -> Result<bool, AccessError> {
        let people = access.for_action(Action::ReadSourceDemographics);
        Ok(self
            .subjects_of(access.actor, access.at, subjects)
            .await?
            .into_iter()
            .any(|(person, subject)| {
                self.decide(&people.about(person, Some(subject))) != Decision::Permit
            }))
    }
}
