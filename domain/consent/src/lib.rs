//! Consent (SPEC §3 "Consent — three levels"): participating, ask first, opted out;
//! opt-out by the person or by a representative; opt-in by the DPO only; full history.
//!
//! Consent is held per NHS number: it is the person's choice, recorded before or after
//! any source has sent their record, and it survives merges of local records.

use care_kernel::{Actor, InvalidValue, OrganisationId, Role, Timestamp, UserId};
use care_person::NhsNumber;
use serde::{Deserialize, Serialize};
use thiserror::Error;

care_kernel::named_enum!(
    /// The three consent levels.
    ConsentLevel, "level" {
        /// Implied consent for direct care (the default).
        Participating => "participating",
        /// Professionals must assert permission or an emergency, per access.
        AskFirst => "ask_first",
        /// Available to no staff, even in an emergency.
        OptedOut => "opted_out",
    }
);

impl ConsentLevel {
    /// How open the level is: a change to a more open level restores access.
    const fn openness(self) -> u8 {
        match self {
            ConsentLevel::OptedOut => 0,
            ConsentLevel::AskFirst => 1,
            ConsentLevel::Participating => 2,
        }
    }
}

care_kernel::named_enum!(
    /// Where the DPO stands with a representative's evidence of authority.
    EvidenceStatus, "evidence_status" {
        /// Not asked for (yet).
        NotRequested => "not_requested",
        /// Asked for, not yet seen.
        Requested => "requested",
        /// Seen and verified.
        Verified => "verified",
    }
);

fn text(field: &'static str, raw: &str, max: usize) -> Result<String, InvalidValue> {
    let value = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if value.is_empty() {
        return Err(InvalidValue::new(field, "is required"));
    }
    if value.chars().count() > max {
        return Err(InvalidValue::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(value)
}

/// Someone opting a person out on their behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Representative {
    name: String,
    relationship: String,
    evidence_reference: String,
    evidence_status: EvidenceStatus,
}

impl Representative {
    /// A representative must confirm that the person lacks capacity and that they have
    /// authority to act, and an evidence reference is kept.
    pub fn new(
        name: &str,
        relationship: &str,
        lacks_capacity_confirmed: bool,
        authority_confirmed: bool,
        evidence_reference: &str,
    ) -> Result<Self, InvalidValue> {
        if !lacks_capacity_confirmed {
            return Err(InvalidValue::new(
                "lacks_capacity_confirmed",
                "the representative must confirm that the person lacks capacity",
            ));
        }
        if !authority_confirmed {
            return Err(InvalidValue::new(
                "authority_confirmed",
                "the representative must confirm their authority to act",
            ));
        }
        Ok(Self {
            name: text("representative_name", name, 200)?,
            relationship: text("relationship", relationship, 100)?,
            evidence_reference: text("evidence_reference", evidence_reference, 200)?,
            evidence_status: EvidenceStatus::NotRequested,
        })
    }

    /// The representative's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Their relationship to the person.
    pub fn relationship(&self) -> &str {
        &self.relationship
    }
    /// The reference of their evidence of authority.
    pub fn evidence_reference(&self) -> &str {
        &self.evidence_reference
    }
    /// Where the DPO stands with the evidence.
    pub fn evidence_status(&self) -> EvidenceStatus {
        self.evidence_status
    }
}

/// What a consent change was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChangeKind {
    /// The person opted out.
    OptOutByPerson,
    /// A representative opted the person out.
    OptOutByRepresentative {
        /// The representative, as recorded then.
        representative: Representative,
    },
    /// The person asked to be asked first.
    AskFirst,
    /// Back to participating.
    OptIn,
    /// The DPO updated the status of a representative's evidence.
    EvidenceStatus {
        /// The new status.
        status: EvidenceStatus,
    },
}

/// One entry of a person's consent history: who changed what, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentChange {
    /// When.
    pub at: Timestamp,
    /// Who recorded it.
    pub by: UserId,
    /// Their organisation.
    pub organisation: OrganisationId,
    /// Their role.
    pub role: Role,
    /// The level before.
    pub from: ConsentLevel,
    /// The level after.
    pub to: ConsentLevel,
    /// What kind of change.
    pub kind: ChangeKind,
    /// Why, in the recorder's words.
    pub reason: String,
}

/// Refusals of consent changes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConsentError {
    /// Only the DPO can restore access (opt back in).
    #[error("only the data protection officer can opt a person back in")]
    OnlyDpoMayOptIn,
    /// The change asks for the level already held.
    #[error("consent is already {0}")]
    AlreadyAtLevel(&'static str),
    /// Evidence status is only kept for an opt-out by a representative.
    #[error("there is no representative's opt-out to update")]
    NoRepresentative,
    /// A field was invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

/// Whether a person's record may be shown, as their consent decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Shown for direct care.
    Visible,
    /// Shown only when permission or an emergency is asserted for the access.
    NeedsBasis,
    /// Shown to no one: for clinical roles the person does not exist.
    Hidden,
}

/// A person's consent: the level in force and every change that led to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    nhs_number: NhsNumber,
    level: ConsentLevel,
    representative: Option<Representative>,
    history: Vec<ConsentChange>,
    version: u64,
}

impl Consent {
    /// A person who has said nothing participates (implied consent).
    pub fn participating(nhs_number: NhsNumber) -> Self {
        Self {
            nhs_number,
            level: ConsentLevel::Participating,
            representative: None,
            history: Vec::new(),
            version: 0,
        }
    }

    /// Rebuilds consent from storage.
    pub fn restore(
        nhs_number: NhsNumber,
        level: ConsentLevel,
        representative: Option<Representative>,
        history: Vec<ConsentChange>,
        version: u64,
    ) -> Self {
        Self {
            nhs_number,
            level,
            representative,
            history,
            version,
        }
    }

    /// Whose consent this is.
    pub fn nhs_number(&self) -> &NhsNumber {
        &self.nhs_number
    }
    /// The level in force.
    pub fn level(&self) -> ConsentLevel {
        self.level
    }
    /// The representative of the opt-out in force, if one made it.
    pub fn representative(&self) -> Option<&Representative> {
        self.representative.as_ref()
    }
    /// Every change, oldest first.
    pub fn history(&self) -> &[ConsentChange] {
        &self.history
    }
    /// The version loaded (for optimistic locking by repositories).
    pub fn version(&self) -> u64 {
        self.version
    }
    /// Set by repositories when storing or loading.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// What the level means for showing the record.
    pub fn visibility(&self) -> Visibility {
        match self.level {
            ConsentLevel::Participating => Visibility::Visible,
            ConsentLevel::AskFirst => Visibility::NeedsBasis,
            ConsentLevel::OptedOut => Visibility::Hidden,
        }
    }

    fn change(
        &mut self,
        actor: &Actor,
        at: Timestamp,
        to: ConsentLevel,
        kind: ChangeKind,
        reason: &str,
    ) -> Result<(), ConsentError> {
        let reason = text("reason", reason, 1000)?;
        if to.openness() > self.level.openness() && actor.role != Role::Dpo {
            return Err(ConsentError::OnlyDpoMayOptIn);
        }
        self.history.push(ConsentChange {
            at,
            by: actor.user.clone(),
            organisation: actor.organisation.clone(),
            role: actor.role,
            from: self.level,
            to,
            kind,
            reason,
        });
        self.level = to;
        Ok(())
    }

    /// Records an opt-out, by the person (`representative: None`) or by a representative.
    /// An opt-out by a representative over the person's own opt-out is recorded too (it
    /// brings a representative and evidence to keep); the same opt-out twice is refused.
    pub fn opt_out(
        &mut self,
        actor: &Actor,
        at: Timestamp,
        representative: Option<Representative>,
        reason: &str,
    ) -> Result<(), ConsentError> {
        if self.level == ConsentLevel::OptedOut && representative.is_none() {
            return Err(ConsentError::AlreadyAtLevel(
                ConsentLevel::OptedOut.as_str(),
            ));
        }
        let kind = match &representative {
            None => ChangeKind::OptOutByPerson,
            Some(r) => ChangeKind::OptOutByRepresentative {
                representative: r.clone(),
            },
        };
        self.change(actor, at, ConsentLevel::OptedOut, kind, reason)?;
        self.representative = representative;
        Ok(())
    }

    /// Records that professionals must ask first. From opted-out this restores access
    /// and so is for the DPO only.
    pub fn ask_first(
        &mut self,
        actor: &Actor,
        at: Timestamp,
        reason: &str,
    ) -> Result<(), ConsentError> {
        if self.level == ConsentLevel::AskFirst {
            return Err(ConsentError::AlreadyAtLevel(
                ConsentLevel::AskFirst.as_str(),
            ));
        }
        self.change(
            actor,
            at,
            ConsentLevel::AskFirst,
            ChangeKind::AskFirst,
            reason,
        )?;
        self.representative = None;
        Ok(())
    }

    /// Opts the person back in to participating: the DPO only.
    pub fn opt_in(
        &mut self,
        actor: &Actor,
        at: Timestamp,
        reason: &str,
    ) -> Result<(), ConsentError> {
        if self.level == ConsentLevel::Participating {
            return Err(ConsentError::AlreadyAtLevel(
                ConsentLevel::Participating.as_str(),
            ));
        }
        if actor.role != Role::Dpo {
            return Err(ConsentError::OnlyDpoMayOptIn);
        }
        self.change(
            actor,
            at,
            ConsentLevel::Participating,
            ChangeKind::OptIn,
            reason,
        )?;
        self.representative = None;
        Ok(())
    }

    /// The DPO marks a representative's evidence as requested or verified.
    pub fn set_evidence_status(
        &mut self,
        actor: &Actor,
        at: Timestamp,
        status: EvidenceStatus,
        reason: &str,
    ) -> Result<(), ConsentError> {
        let Some(rep) = self.representative.as_mut() else {
            return Err(ConsentError::NoRepresentative);
        };
        rep.evidence_status = status;
        let level = self.level;
        self.change(
            actor,
            at,
            level,
            ChangeKind::EvidenceStatus { status },
            reason,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn actor(role: Role) -> Actor {
        Actor::new(
            UserId::parse("u1").unwrap(),
            OrganisationId::parse("ORG1").unwrap(),
            role,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
    }
    fn at(secs: i64) -> Timestamp {
        Timestamp::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }
    fn consent() -> Consent {
        Consent::participating(NhsNumber::parse("9434765919").unwrap())
    }
    fn rep() -> Representative {
        Representative::new("Jo Bloggs", "daughter", true, true, "LPA-123").unwrap()
    }

    #[test]
    fn everyone_participates_until_they_say_otherwise() {
        let c = consent();
        assert_eq!(c.level(), ConsentLevel::Participating);
        assert_eq!(c.visibility(), Visibility::Visible);
        assert!(c.history().is_empty());
    }

    #[test]
    fn a_representative_must_confirm_capacity_authority_and_give_evidence() {
        assert_eq!(
            Representative::new("Jo", "son", false, true, "E1")
                .unwrap_err()
                .field,
            "lacks_capacity_confirmed"
        );
        assert_eq!(
            Representative::new("Jo", "son", true, false, "E1")
                .unwrap_err()
                .field,
            "authority_confirmed"
        );
        assert_eq!(
            Representative::new("Jo", "son", true, true, " ")
                .unwrap_err()
                .field,
            "evidence_reference"
        );
        assert_eq!(
            Representative::new("", "son", true, true, "E1")
                .unwrap_err()
                .field,
            "representative_name"
        );
    }

    #[test]
    fn opt_out_by_a_representative_is_kept_with_history_and_evidence_status() {
        let mut c = consent();
        let dpo = actor(Role::Dpo);
        c.opt_out(&dpo, at(1), Some(rep()), "form received")
            .unwrap();
        assert_eq!(c.visibility(), Visibility::Hidden);
        assert_eq!(
            c.representative().unwrap().evidence_status(),
            EvidenceStatus::NotRequested
        );
        c.set_evidence_status(&dpo, at(2), EvidenceStatus::Requested, "asked for LPA")
            .unwrap();
        c.set_evidence_status(&dpo, at(3), EvidenceStatus::Verified, "LPA seen")
            .unwrap();
        assert_eq!(
            c.representative().unwrap().evidence_status(),
            EvidenceStatus::Verified
        );
        let h = c.history();
        assert_eq!(h.len(), 3);
        assert_eq!(
            (h[0].from, h[0].to),
            (ConsentLevel::Participating, ConsentLevel::OptedOut)
        );
        assert!(matches!(
            h[0].kind,
            ChangeKind::OptOutByRepresentative { .. }
        ));
        assert_eq!(h[2].reason, "LPA seen");
        assert_eq!(h[2].by.as_str(), "u1");
    }

    #[test]
    fn only_the_dpo_opts_a_person_back_in() {
        let mut c = consent();
        c.opt_out(&actor(Role::Dpo), at(1), None, "phoned").unwrap();
        for role in Role::ALL.into_iter().filter(|r| *r != Role::Dpo) {
            assert_eq!(
                c.clone().opt_in(&actor(role), at(2), "asked"),
                Err(ConsentError::OnlyDpoMayOptIn)
            );
            assert_eq!(
                c.clone().ask_first(&actor(role), at(2), "asked"),
                Err(ConsentError::OnlyDpoMayOptIn)
            );
        }
        c.opt_in(&actor(Role::Dpo), at(2), "person asked to opt back in")
            .unwrap();
        assert_eq!(c.level(), ConsentLevel::Participating);
        assert_eq!(c.representative(), None);
        assert_eq!(c.history().len(), 2);
    }

    #[test]
    fn ask_first_needs_a_basis_and_no_change_is_refused() {
        let mut c = consent();
        c.ask_first(&actor(Role::Dpo), at(1), "person's wish")
            .unwrap();
        assert_eq!(c.visibility(), Visibility::NeedsBasis);
        assert_eq!(
            c.ask_first(&actor(Role::Dpo), at(2), "again"),
            Err(ConsentError::AlreadyAtLevel("ask_first"))
        );
        assert!(matches!(
            c.opt_in(&actor(Role::Dpo), at(3), " "),
            Err(ConsentError::Invalid(_))
        ));
        assert_eq!(
            c.set_evidence_status(&actor(Role::Dpo), at(3), EvidenceStatus::Verified, "x"),
            Err(ConsentError::NoRepresentative)
        );
    }
}
