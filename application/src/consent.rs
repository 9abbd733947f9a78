//! The DPO's use cases: find a person's identity, read and change their consent.

use care_consent::{Consent, ConsentError, EvidenceStatus, Representative};
use care_kernel::{Action, Actor, Timestamp};
use care_person::{Identifier, NhsNumber, Person};

use crate::ports::{RepoError, SubjectState};
use crate::views::{ConsentView, IdentityView};
use crate::{AccessError, AuditReceipt, Services};

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
    /// Passes the gate for a consent action on an NHS number. The person may not be in
    /// the care record yet (an opt-out can come first); the access is audited either way.
    pub(crate) async fn gate_nhs(
        &self,
        actor: &Actor,
        at: Timestamp,
        action: Action,
        nhs: &NhsNumber,
        resource: &str,
    ) -> Result<(Option<Person>, AuditReceipt), AccessError> {
        let person = self
            .ports
            .people
            .find_by_identifier(&Identifier::Nhs(nhs.clone()))
            .await?;
        let subject = match &person {
            Some(p) => self.subject_state(p, actor, self.today(at)).await?,
            None => SubjectState::NEUTRAL,
        };
        let receipt = self
            .gate(
                actor,
                at,
                action,
                person.as_ref().map(Person::id),
                Some(subject),
                Some(resource.to_owned()),
            )
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
            .gate_nhs(actor, now, Action::FindIdentity, nhs, "identity")
            .await?;
        let person = person.ok_or(AccessError::NotFound)?;
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

    /// A person's consent with its full history.
    pub async fn consent(
        &self,
        actor: &Actor,
        nhs: &NhsNumber,
    ) -> Result<ConsentView, AccessError> {
        let now = self.now();
        let (person, receipt) = self
            .gate_nhs(actor, now, Action::AdministerConsent, nhs, "consent")
            .await?;
        let consent = self
            .ports
            .consent
            .get(nhs)
            .await?
            .unwrap_or_else(|| Consent::participating(nhs.clone()));
        Ok(view(consent, person.as_ref(), receipt))
    }

    /// Records a consent change. The change is audited before it is stored; a change
    /// the rules refuse (e.g. opt-in by anyone but the DPO) is audited as permitted
    /// access and answered with the rule's refusal.
    pub async fn change_consent(
        &self,
        actor: &Actor,
        nhs: &NhsNumber,
        command: ConsentCommand,
        reason: &str,
    ) -> Result<ConsentView, AccessError> {
        let now = self.now();
        let (person, receipt) = self
            .gate_nhs(
                actor,
                now,
                Action::AdministerConsent,
                nhs,
                command.resource(),
            )
            .await?;
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
            match applied {
                Ok(()) => {}
                Err(ConsentError::Invalid(invalid)) => return Err(AccessError::Invalid(invalid)),
                Err(other) => return Err(AccessError::Rejected(other.to_string())),
            }
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
