//! The DPO's use cases: find a person's identity, read and change their consent.

use care_access_audit::Outcome;
use care_consent::{Consent, ConsentError, EvidenceStatus, Representative};
use care_kernel::{Action, Actor, DenyReason, Timestamp};
use care_person::{Identifier, NhsNumber, Person};

use crate::ports::{Decision, RepoError, SubjectState};
use crate::views::{ConsentView, IdentityView};
use crate::{AccessError, AuditReceipt, Services, gate::Access};

/// A change of consent the DPO records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentCommand {
    /// Opt out, by the person (`None`) or by a representative.
    OptOut {
        /// The representative, when one acts for the person.
        representative: Option<Representative>,
    },
    /// Ask first.
    AskFirst,
    /// Opt back in (DPO only).
    OptIn,
    /// Mark the representative's evidence as requested or verified.
    SetEvidenceStatus(EvidenceStatus),
}

impl ConsentCommand {
    fn resource(&self) -> &'static str {
        match self {
            ConsentCommand::OptOut { .. } => "consent:opt_out",
            ConsentCommand::AskFirst => "consent:ask_first",
            ConsentCommand::OptIn => "consent:opt_in",
            ConsentCommand::SetEvidenceStatus(_) => "consent:evidence_status",
        }
    }
}

/// How often a consent change is retried when someone else changed it meanwhile.
const CONSENT_RETRIES: usize = 3;

impl Services {
    /// The record an NHS number names (if the care record holds one) and what the policy
    /// needs to know of it. An opt-out can come before any source sends the record.
    async fn nhs_subject(
        &self,
        actor: &Actor,
        at: Timestamp,
        nhs: &NhsNumber,
    ) -> Result<(Option<Person>, SubjectState), AccessError> {
        let person = self
            .ports
            .people
            .find_by_identifier(&Identifier::Nhs(nhs.clone()))
            .await?;
        let subject = match &person {
            Some(p) => self.subject_state(p, actor, self.today(at)).await?,
            None => SubjectState::NEUTRAL,
        };
        Ok((person, subject))
    }

    /// Passes the gate for an action on the person an NHS number names, who must be in
    /// the record (an unknown number is audited as not found).
    pub(crate) async fn gate_known_nhs(
        &self,
        access: Access<'_>,
        nhs: &NhsNumber,
    ) -> Result<(Person, AuditReceipt), AccessError> {
        self.refuse_early(&access).await?;
        let (person, subject) = self.nhs_subject(access.actor, access.at, nhs).await?;
        let Some(person) = person else {
            return Err(self.refuse_unknown(&access).await);
        };
        let receipt = self
            .gate(&access.about(Some(person.id()), Some(subject)))
            .await?;
        Ok((person, receipt))
    }

    /// The identity of the person with an NHS number, for the DPO to be sure who they
    /// are dealing with: name, birth date, postcode and nothing clinical.
    pub async fn find_identity(
        &self,
        actor: &Actor,
        nhs: &NhsNumber,
    ) -> Result<IdentityView, AccessError> {
        let now = self.now();
        let (person, receipt) = self
            .gate_known_nhs(
                Access::new(actor, now, Action::FindIdentity).on("identity"),
                nhs,
            )
            .await?;
        let level = self
            .ports
            .consent
            .get(nhs)
            .await?
            .map(|c| c.level())
            .unwrap_or(care_consent::ConsentLevel::Participating);
        Ok(IdentityView {
            identity: crate::reads::hit(&person, level),
            receipt,
        })
    }

    /// A person's consent with its full history (the person need not be in the record).
    pub async fn consent(
        &self,
        actor: &Actor,
        nhs: &NhsNumber,
    ) -> Result<ConsentView, AccessError> {
        let now = self.now();
        self.refuse_early(&Access::new(actor, now, Action::AdministerConsent).on("consent"))
            .await?;
        let (person, subject) = self.nhs_subject(actor, now, nhs).await?;
        let receipt = self
            .gate(
                &Access::new(actor, now, Action::AdministerConsent)
                    .on("consent")
                    .about(person.as_ref().map(Person::id), Some(subject)),
            )
            .await?;
        let consent = self
            .ports
            .consent
            .get(nhs)
            .await?
            .unwrap_or_else(|| Consent::participating(nhs.clone()));
        Ok(view(consent, person.as_ref(), receipt))
    }

    /// Records a consent change. The access is decided first; the change is checked
    /// against the consent rules; then the audit event is appended (permitted, or denied
    /// as an invalid change, so the audit never shows a change that was not made) and
    /// only then is the change stored.
    pub async fn change_consent(
        &self,
        actor: &Actor,
        nhs: &NhsNumber,
        command: ConsentCommand,
        reason: &str,
    ) -> Result<ConsentView, AccessError> {
        let now = self.now();
        self.refuse_early(
            &Access::new(actor, now, Action::AdministerConsent).on(command.resource()),
        )
        .await?;
        let (person, subject) = self.nhs_subject(actor, now, nhs).await?;
        let change = Access::new(actor, now, Action::AdministerConsent)
            .on(command.resource())
            .about(person.as_ref().map(Person::id), Some(subject));
        if let Decision::Deny(reason) = self.decide(&change) {
            return Err(self.refuse(&change, reason).await);
        }
        let mut receipt = None;
        for _ in 0..CONSENT_RETRIES {
            let mut consent = self
                .ports
                .consent
                .get(nhs)
                .await?
                .unwrap_or_else(|| Consent::participating(nhs.clone()));
            let applied = match &command {
                ConsentCommand::OptOut { representative } => {
                    consent.opt_out(actor, now, representative.clone(), reason)
                }
                ConsentCommand::AskFirst => consent.ask_first(actor, now, reason),
                ConsentCommand::OptIn => consent.opt_in(actor, now, reason),
                ConsentCommand::SetEvidenceStatus(status) => {
                    consent.set_evidence_status(actor, now, *status, reason)
                }
            };
            if let Err(refused) = applied {
                if let AccessError::Unexpected(e) =
                    self.refuse(&change, DenyReason::InvalidChange).await
                {
                    return Err(AccessError::Unexpected(e));
                }
                return Err(match refused {
                    ConsentError::Invalid(invalid) => AccessError::Invalid(invalid),
                    other => AccessError::Rejected(other.to_string()),
                });
            }
            let receipt = match receipt {
                Some(r) => r,
                None => *receipt.insert(self.audit_outcome(&change, Outcome::Permitted).await?),
            };
            match self.ports.consent.save(&consent).await {
                Ok(version) => {
                    consent.set_version(version);
                    tracing::info!(target: "security", role = actor.role.as_str(), change = command.resource(), "consent changed");
                    return Ok(view(consent, person.as_ref(), receipt));
                }
                Err(RepoError::Conflict) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(AccessError::Rejected(
            "consent was being changed by someone else; try again".into(),
        ))
    }
}

fn view(consent: Consent, person: Option<&Person>, receipt: AuditReceipt) -> ConsentView {
    ConsentView {
        nhs_number: consent.nhs_number().clone(),
        person: person.map(Person::id),
        level: consent.level(),
        representative: consent.representative().cloned(),
        history: consent.history().to_vec(),
        receipt,
    }
}
