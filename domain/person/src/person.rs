use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use care_kernel::{
    Date, InvalidValue, PersonId, Source, SourceId, Timestamp, UpdateOrder, UpdateOutcome,
};
use chrono::Months;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::demographics::{Demographics, NameKey, Postcode, ResolvedDemographics, SourceRecord};
use crate::nhs_number::NhsNumber;

/// How long after death a record may still be shown (SPEC §3: "this information will go back 8 years").
pub const DECEASED_RETENTION: Months = Months::new(8 * 12);

/// A source's own identifier for a person (a hospital number, a council client id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LocalId {
    source: SourceId,
    value: String,
}

impl LocalId {
    /// A local id is 1 to 64 printable characters without spaces, scoped to its source.
    pub fn new(source: SourceId, value: &str) -> Result<Self, InvalidValue> {
        let value = value.trim();
        if value.is_empty() || value.len() > 64 {
            return Err(InvalidValue::new("local_id", "must be 1 to 64 characters"));
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidValue::new(
                "local_id",
                "must not contain spaces or control characters",
            ));
        }
        Ok(Self {
            source,
            value: value.to_owned(),
        })
    }

    /// The source whose id this is.
    pub fn source(&self) -> &SourceId {
        &self.source
    }

    /// The id as the source spells it.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Any identifier a person is known by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identifier {
    /// The national NHS number.
    Nhs(NhsNumber),
    /// A source's local id.
    Local(LocalId),
}

/// A recorded death, with the source that said so and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Death {
    /// Date of death.
    pub date: Date,
    /// The source that reported it.
    pub source: Source,
    /// The source time of the report.
    pub source_time: Timestamp,
}

/// Whether a person is alive, and if not whether their record may still be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitalStatus {
    /// No death recorded.
    Alive,
    /// Died within the last 8 years: shown when asked for, with the GP record closed.
    Deceased,
    /// Died more than 8 years ago: never shown.
    DeceasedBeyondRetention,
}

impl VitalStatus {
    /// Every status.
    pub const ALL: [VitalStatus; 3] = [
        VitalStatus::Alive,
        VitalStatus::Deceased,
        VitalStatus::DeceasedBeyondRetention,
    ];

    /// The status's name as policy files spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            VitalStatus::Alive => "alive",
            VitalStatus::Deceased => "deceased",
            VitalStatus::DeceasedBeyondRetention => "deceased_beyond_retention",
        }
    }
}

/// Refusals of the person aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PersonError {
    /// An update names an NHS number different from the one the person already has.
    #[error("the person already has a different NHS number")]
    NhsNumberConflict,
    /// A merge of a record into itself, or of a record already merged away.
    #[error("cannot merge: {0}")]
    InvalidMerge(&'static str),
    /// An update for a record that was merged into another; the caller must follow it.
    #[error("the record was merged into {0}")]
    MergedAway(PersonId),
}

/// What a merge moved from the retired record to the survivor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSummary {
    /// The record merged away.
    pub retired: PersonId,
    /// The identifiers the survivor took over.
    pub identifiers_moved: usize,
    /// The sources whose statements the survivor took over (or kept, where newer).
    pub sources_merged: usize,
}

/// A person in the care record: identifiers, every source's latest statement of their
/// demographics, death, and merge links. Shown values are derived, never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    id: PersonId,
    nhs_number: Option<NhsNumber>,
    local_ids: BTreeSet<LocalId>,
    records: BTreeMap<SourceId, SourceRecord>,
    death: Option<Death>,
    /// The source time of the last correction that cleared a death: reports of death
    /// from before it are stale.
    death_cleared_at: Option<Timestamp>,
    merged_into: Option<PersonId>,
    merged_from: BTreeSet<PersonId>,
    version: u64,
}

impl Person {
    /// A new, empty record with the given id.
    pub fn new(id: PersonId) -> Self {
        Self {
            id,
            nhs_number: None,
            local_ids: BTreeSet::new(),
            records: BTreeMap::new(),
            death: None,
            death_cleared_at: None,
            merged_into: None,
            merged_from: BTreeSet::new(),
            version: 0,
        }
    }

    /// The internal id.
    pub fn id(&self) -> PersonId {
        self.id
    }

    /// The NHS number, if any source has given one.
    pub fn nhs_number(&self) -> Option<&NhsNumber> {
        self.nhs_number.as_ref()
    }

    /// Every local id the person is known by.
    pub fn local_ids(&self) -> impl Iterator<Item = &LocalId> {
        self.local_ids.iter()
    }

    /// Every identifier: the NHS number and the local ids.
    pub fn identifiers(&self) -> impl Iterator<Item = Identifier> + '_ {
        self.nhs_number
            .iter()
            .cloned()
            .map(Identifier::Nhs)
            .chain(self.local_ids.iter().cloned().map(Identifier::Local))
    }

    /// Each source's latest statement.
    pub fn source_records(&self) -> impl Iterator<Item = &SourceRecord> + Clone {
        self.records.values()
    }

    /// The recorded death, if any.
    pub fn death(&self) -> Option<&Death> {
        self.death.as_ref()
    }

    /// When a source last corrected a death recorded in error (reports older than this
    /// are stale).
    pub fn death_cleared_at(&self) -> Option<Timestamp> {
        self.death_cleared_at
    }

    /// Where this record went, if it was merged into another.
    pub fn merged_into(&self) -> Option<PersonId> {
        self.merged_into
    }

    /// The records merged into this one.
    pub fn merged_from(&self) -> impl Iterator<Item = &PersonId> {
        self.merged_from.iter()
    }

    /// The version the record was loaded at (repositories use it for optimistic locking).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Set by a repository when it stores or loads the record; nothing else should call it.
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// Rebuilds a record from storage. Repositories call this; the invariants it trusts
    /// (one NHS number, identifiers owned by one live record) are theirs to keep.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        id: PersonId,
        nhs_number: Option<NhsNumber>,
        local_ids: impl IntoIterator<Item = LocalId>,
        records: impl IntoIterator<Item = SourceRecord>,
        death: Option<Death>,
        death_cleared_at: Option<Timestamp>,
        merged_into: Option<PersonId>,
        merged_from: impl IntoIterator<Item = PersonId>,
        version: u64,
    ) -> Self {
        Self {
            id,
            nhs_number,
            local_ids: local_ids.into_iter().collect(),
            records: records
                .into_iter()
                .map(|r| (r.source.id.clone(), r))
                .collect(),
            death,
            death_cleared_at,
            merged_into,
            merged_from: merged_from.into_iter().collect(),
            version,
        }
    }

    fn live(&self) -> Result<(), PersonError> {
        match self.merged_into {
            Some(survivor) => Err(PersonError::MergedAway(survivor)),
            None => Ok(()),
        }
    }

    /// Adds an identifier. An NHS number different from the one held is refused: two
    /// people's records must never be joined by a typo in one feed.
    pub fn add_identifier(&mut self, identifier: Identifier) -> Result<UpdateOutcome, PersonError> {
        self.live()?;
        match identifier {
            Identifier::Nhs(n) => match &self.nhs_number {
                Some(held) if *held == n => Ok(UpdateOutcome::Unchanged),
                Some(_) => Err(PersonError::NhsNumberConflict),
                None => {
                    self.nhs_number = Some(n);
                    Ok(UpdateOutcome::Applied)
                }
            },
            Identifier::Local(id) => Ok(if self.local_ids.insert(id) {
                UpdateOutcome::Applied
            } else {
                UpdateOutcome::Unchanged
            }),
        }
    }

    /// Takes a source's statement of demographics. Each source's latest statement is kept;
    /// an older one is `Stale`, the same one again `Unchanged`. Two different statements
    /// with the same source time are ordered by their content, so the outcome never
    /// depends on arrival order.
    pub fn apply_demographics(
        &mut self,
        source: Source,
        source_time: Timestamp,
        demographics: Demographics,
    ) -> Result<UpdateOutcome, PersonError> {
        self.live()?;
        let incoming = SourceRecord {
            source,
            source_time,
            demographics,
        };
        Ok(match self.records.entry(incoming.source.id.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(incoming);
                UpdateOutcome::Applied
            }
            Entry::Occupied(mut slot) => {
                let stored = slot.get_mut();
                let same = stored.source == incoming.source
                    && stored.demographics == incoming.demographics;
                match UpdateOrder::of(stored.source_time, incoming.source_time) {
                    UpdateOrder::Older => UpdateOutcome::Stale,
                    UpdateOrder::SameTime if same => UpdateOutcome::Unchanged,
                    UpdateOrder::SameTime if stored.demographics > incoming.demographics => {
                        UpdateOutcome::Stale
                    }
                    UpdateOrder::SameTime | UpdateOrder::Newer => {
                        *stored = incoming;
                        UpdateOutcome::Applied
                    }
                }
            }
        })
    }

    /// Records a death reported by a source. A report older than the death held, or
    /// than a later correction, is stale; a newer one may correct the date (or, with the
    /// same date, moves the report's time on).
    pub fn record_death(
        &mut self,
        date: Date,
        source: Source,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, PersonError> {
        self.live()?;
        if self
            .death_cleared_at
            .is_some_and(|cleared| source_time <= cleared)
        {
            return Ok(UpdateOutcome::Stale);
        }
        let incoming = Death {
            date,
            source,
            source_time,
        };
        match &self.death {
            Some(held) if *held == incoming => Ok(UpdateOutcome::Unchanged),
            Some(held) if held.source_time >= incoming.source_time => Ok(UpdateOutcome::Stale),
            _ => {
                self.death = Some(incoming);
                Ok(UpdateOutcome::Applied)
            }
        }
    }

    /// A source states explicitly that the person is not dead (e.g. HL7 PID-30 = `N`),
    /// correcting a death recorded in error. It clears the death only when it is newer than
    /// the death report and comes from a source at least as trusted as the one that
    /// reported it. A message that merely omits death information never clears it.
    pub fn record_not_deceased(
        &mut self,
        source: &Source,
        source_time: Timestamp,
    ) -> Result<UpdateOutcome, PersonError> {
        self.live()?;
        match &self.death {
            None => Ok(UpdateOutcome::Unchanged),
            Some(held)
                if held.source_time < source_time
                    && source.kind.precedence() <= held.source.kind.precedence() =>
            {
                self.death = None;
                self.death_cleared_at = Some(source_time);
                Ok(UpdateOutcome::Applied)
            }
            Some(_) => Ok(UpdateOutcome::Stale),
        }
    }

    /// Alive, recently deceased, or deceased more than 8 years before `today`.
    pub fn vital_status(&self, today: Date) -> VitalStatus {
        match &self.death {
            None => VitalStatus::Alive,
            Some(death) => match death.date.checked_add_months(DECEASED_RETENTION) {
                Some(limit) if today <= limit => VitalStatus::Deceased,
                _ => VitalStatus::DeceasedBeyondRetention,
            },
        }
    }

    /// After death the GP record closes: GP-sourced items are no longer shown.
    pub fn gp_record_open(&self) -> bool {
        self.death.is_none()
    }

    /// Whether a search may return this record: live (not merged away), not beyond
    /// retention, and deceased only when the search asks for deceased people.
    pub fn searchable(&self, today: Date, include_deceased: bool) -> bool {
        self.merged_into.is_none()
            && match self.vital_status(today) {
                VitalStatus::Alive => true,
                VitalStatus::Deceased => include_deceased,
                VitalStatus::DeceasedBeyondRetention => false,
            }
    }

    /// The demographics shown, each field with its provenance.
    pub fn resolved(&self) -> ResolvedDemographics {
        ResolvedDemographics::resolve(self.records.values())
    }

    /// The family-name keys of every source's statement (searches match any of them, so a
    /// person can be found by a name a partner system still holds).
    pub fn family_keys(&self) -> BTreeSet<NameKey> {
        self.records
            .values()
            .filter_map(|r| r.demographics.name.as_ref().map(|n| n.family_key()))
            .collect()
    }

    /// Every birth date any source states.
    pub fn birth_dates(&self) -> BTreeSet<Date> {
        self.records
            .values()
            .filter_map(|r| r.demographics.birth_date)
            .collect()
    }

    /// Every postcode any source states.
    pub fn postcodes(&self) -> BTreeSet<&Postcode> {
        self.records
            .values()
            .filter_map(|r| r.demographics.address.as_ref()?.postcode())
            .collect()
    }

    /// Whether this record matches a search (identity only; visibility is separate).
    pub fn matches(&self, criteria: &crate::SearchCriteria) -> bool {
        match criteria {
            crate::SearchCriteria::NhsNumber(n) => self.nhs_number.as_ref() == Some(n),
            crate::SearchCriteria::FamilyAndBirthDate {
                family_prefix,
                birth_date,
            } => self.records.values().any(|r| {
                r.demographics.birth_date == Some(*birth_date)
                    && r.demographics
                        .name
                        .as_ref()
                        .is_some_and(|n| n.family_key().starts_with(family_prefix))
            }),
            crate::SearchCriteria::Postcode(p) => self.postcodes().contains(p),
        }
    }

    /// Merges `retired` into this record (HL7 A40): this record takes every identifier,
    /// every source statement (keeping the newer where both have one) and the death if
    /// it has none or the retired one's is newer. The retired record keeps its own
    /// statements for history, gives up its identifiers and points here. Nothing is lost.
    pub fn absorb(&mut self, retired: &mut Person) -> Result<MergeSummary, PersonError> {
        self.live()?;
        if retired.id == self.id {
            return Err(PersonError::InvalidMerge(
                "a record cannot be merged into itself",
            ));
        }
        if retired.merged_into.is_some() {
            return Err(PersonError::InvalidMerge("the record was already merged"));
        }
        if let (Some(a), Some(b)) = (&self.nhs_number, &retired.nhs_number)
            && a != b
        {
            return Err(PersonError::NhsNumberConflict);
        }
        let mut identifiers_moved = 0;
        if self.nhs_number.is_none() && retired.nhs_number.is_some() {
            self.nhs_number = retired.nhs_number.take();
            identifiers_moved += 1;
        }
        retired.nhs_number = None;
        for id in std::mem::take(&mut retired.local_ids) {
            if self.local_ids.insert(id) {
                identifiers_moved += 1;
            }
        }
        let mut sources_merged = 0;
        for (source, record) in &retired.records {
            let take = self
                .records
                .get(source)
                .is_none_or(|held| held.source_time < record.source_time);
            if take {
                self.records.insert(source.clone(), record.clone());
                sources_merged += 1;
            }
        }
        match (&self.death, &retired.death) {
            (None, Some(d)) => self.death = Some(d.clone()),
            (Some(held), Some(d)) if held.source_time < d.source_time => {
                self.death = Some(d.clone());
            }
            _ => {}
        }
        self.death_cleared_at = self.death_cleared_at.max(retired.death_cleared_at);
        if let (Some(death), Some(cleared)) = (&self.death, self.death_cleared_at)
            && death.source_time <= cleared
        {
            self.death = None;
        }
        self.merged_from.insert(retired.id);
        self.merged_from.extend(retired.merged_from.iter().copied());
        retired.merged_into = Some(self.id);
        Ok(MergeSummary {
            retired: retired.id,
            identifiers_moved,
            sources_merged,
        })
    }
}
