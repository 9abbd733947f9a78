//! The clinical read use cases: search, the record summary, referrals, the GP summary,
//! and the System Manager's by-source view.

use std::collections::BTreeMap;

use care_access_audit::Outcome;
use care_consent::ConsentLevel;
use care_kernel::{Action, Actor, PersonId, Timestamp};
use care_person::{NhsNumber, Person, SearchCriteria};

use crate::ports::{Decision, HeldRecord, SubjectState};
use crate::views::{
    GpSummary, GpSummaryState, PersonSummary, ReferralList, SearchHit, SearchResults,
    SourceDemographics, SourceFreshness,
};
use crate::{AccessError, AuditReceipt, Services, WantedItems, gate::Access};

/// The most hits a search returns; more is a sign the search should be narrower.
pub const SEARCH_LIMIT: usize = 50;

fn criteria_kind(criteria: &SearchCriteria) -> &'static str {
    match criteria {
        SearchCriteria::NhsNumber(_) => "search:nhs_number",
        SearchCriteria::FamilyAndBirthDate { .. } => "search:family_birth_date",
        SearchCriteria::Postcode(_) => "search:postcode",
    }
}

impl Services {
    /// Searches people. Deceased people are left out unless `include_deceased`; people
    /// who died more than 8 years ago and opted-out people are never returned. The
    /// search and every hit considered are audited (values of the query are not).
    pub async fn search_people(
        &self,
        actor: &Actor,
        criteria: &SearchCriteria,
        include_deceased: bool,
    ) -> Result<SearchResults, AccessError> {
        let now = self.now();
        let today = self.today(now);
        let search = Access::new(actor, now, Action::SearchPeople).on(criteria_kind(criteria));
        // Role and purpose first, before anything about any person is looked at.
        if let Decision::Deny(reason) =
            self.decide(&search.about(None, Some(SubjectState::NEUTRAL)))
        {
            return Err(self.refuse(&search, reason).await);
        }

        let fetch = SEARCH_LIMIT * 2 + 1;
        let found = self.ports.people.search(criteria, fetch).await?;
        // When the store hit the fetch limit there may be more matches than were looked
        // at (the deceased and the hidden are filtered here): say the list is cut short.
        let store_cut_short = found.len() >= fetch;
        let candidates: Vec<Person> = found
            .into_iter()
            .filter(|p| p.searchable(today, include_deceased))
            .collect();
        let numbers: Vec<NhsNumber> = candidates
            .iter()
            .filter_map(|p| p.nhs_number().cloned())
            .collect();
        let consent: BTreeMap<NhsNumber, ConsentLevel> = self
            .ports
            .consent
            .get_many(&numbers)
            .await?
            .into_iter()
            .map(|c| (c.nhs_number().clone(), c.level()))
            .collect();

        let mut events = vec![search.event(Outcome::Permitted)];
        let mut hits = Vec::new();
        let mut truncated = store_cut_short;
        for person in &candidates {
            let level = person
                .nhs_number()
                .and_then(|n| consent.get(n).copied())
                .unwrap_or(ConsentLevel::Participating);
            let subject = SubjectState {
                consent: level,
                vital: person.vital_status(today),
                basis: actor.basis.as_ref().map(|b| b.kind()),
            };
            let look = search.about(Some(person.id()), Some(subject));
            let outcome = match self.decide(&look) {
                Decision::Permit if hits.len() == SEARCH_LIMIT => {
                    truncated = true;
                    continue;
                }
                Decision::Permit => {
                    hits.push(hit(person, level));
                    Outcome::Permitted
                }
                Decision::Deny(reason) => Outcome::Denied(reason),
            };
            events.push(look.event(outcome));
        }
        // One append for the search and all its hits: one durable write, and no timing
        // that grows with how many of the matches were refused.
        let chained = self.ports.audit.append(events).await?;
        let seq = chained
            .first()
            .map(|e| e.seq)
            .ok_or_else(|| anyhow::anyhow!("the audit log appended nothing"))?;
        Ok(SearchResults {
            hits,
            truncated,
            receipt: AuditReceipt::new(seq),
        })
    }

    /// A person's record summary: demographics with provenance, banner alerts (for
    /// roles that may see them) and per-source freshness.
    pub async fn person_summary(
        &self,
        actor: &Actor,
        id: PersonId,
    ) -> Result<PersonSummary, AccessError> {
        let now = self.now();
        let today = self.today(now);
        let read = Access::new(actor, now, Action::ReadDemographics).on("summary");
        // The items read with the record are those the role may see of someone (the
        // decision about no one in particular): a pharmacist's summary reads no
        // referrals, so its time says nothing of how many a council holds.
        let anyone = read.about(None, Some(SubjectState::NEUTRAL));
        let wanted = WantedItems {
            alerts: self.decide(&anyone.for_action(Action::ReadBannerAlerts)) == Decision::Permit,
            referrals: self.decide(&anyone.for_action(Action::ReadReferrals)) == Decision::Permit,
        };
        let (held, subject, receipt) = self.gate_record(read.clone(), id, wanted).await?;
        let HeldRecord {
            person,
            alerts,
            referrals,
            ..
        } = held;
        let look = read.about(Some(person.id()), Some(subject));
        let banner_allowed =
            self.decide(&look.for_action(Action::ReadBannerAlerts)) == Decision::Permit;
        // Freshness names the sources that hold something about the person: a role that
        // may not see referrals must not learn from it that a council holds one.
        let referrals_allowed =
            self.decide(&look.for_action(Action::ReadReferrals)) == Decision::Permit;
        // What the first read did not bring (a person with a consent, items filed under
        // records merged into this one) is read now, after the gate.
        let first_read_enough = person.merged_from().next().is_none()
            && (alerts.is_some() || !banner_allowed)
            && (referrals.is_some() || !referrals_allowed);
        let (alerts, referrals) = if first_read_enough {
            (alerts.unwrap_or_default(), referrals.unwrap_or_default())
        } else {
            self.alerts_and_referrals(&person, referrals_allowed)
                .await?
        };
        let alerts = if banner_allowed { alerts } else { Vec::new() };
        let referrals = if referrals_allowed {
            referrals
        } else {
            Vec::new()
        };
        let banner = banner_allowed.then(|| {
            care_alert::banner(&alerts, today)
                .into_iter()
                .cloned()
                .collect()
        });
        // After death GP-sourced items are closed: their times are not shown either.
        let shown_alerts: Vec<care_alert::Alert> = alerts
            .iter()
            .filter(|a| {
                banner_allowed
                    && (person.gp_record_open()
                        || a.placement() != care_alert::Placement::GpSummary)
            })
            .cloned()
            .collect();
        let freshness = self
            .freshness(&person, &shown_alerts, &referrals, now)
            .await?;
        Ok(PersonSummary {
            person: person.id(),
            nhs_number: person.nhs_number().cloned(),
            demographics: person.resolved(),
            vital_status: subject.vital,
            date_of_death: person.death().map(|d| d.date),
            consent: subject.consent,
            banner,
            freshness,
            receipt,
        })
    }

    /// A person's alerts and, if `with_referrals`, their referrals (else none), as
    /// [`Self::alerts_of`] and [`Self::referrals_of`] give them.
    async fn alerts_and_referrals(
        &self,
        person: &Person,
        with_referrals: bool,
    ) -> Result<(Vec<care_alert::Alert>, Vec<care_referral::Referral>), AccessError> {
        if with_referrals && person.merged_from().next().is_none() {
            // Both lists in one read where the store can (one round trip, one snapshot).
            return Ok(self
                .ports
                .alerts
                .list_with_referrals(person.id(), self.ports.referrals.as_ref())
                .await?);
        }
        // Both at once: on a networked database, one round trip's wait instead of two.
        futures_util::future::try_join(self.alerts_of(person), async {
            if with_referrals {
                self.referrals_of(person).await
            } else {
                Ok(Vec::new())
            }
        })
        .await
    }

    /// A person's alerts, including any still filed under records merged into theirs
    /// (a merge moves them, but a message racing the merge may file one late).
    async fn alerts_of(&self, person: &Person) -> Result<Vec<care_alert::Alert>, AccessError> {
        let mut alerts = self.ports.alerts.list_for_person(person.id()).await?;
        for retired in person.merged_from() {
            alerts.extend(self.ports.alerts.list_for_person(*retired).await?);
        }
        Ok(alerts)
    }

    /// A person's referrals, most recently received first, including any still filed
    /// under records merged into theirs.
    async fn referrals_of(
        &self,
        person: &Person,
    ) -> Result<Vec<care_referral::Referral>, AccessError> {
        let mut referrals = self.ports.referrals.list_for_person(person.id()).await?;
        if person.merged_from().next().is_some() {
            for retired in person.merged_from() {
                referrals.extend(self.ports.referrals.list_for_person(*retired).await?);
            }
            referrals.sort_by(|a, b| {
                b.details()
                    .received()
                    .cmp(&a.details().received())
                    .then(a.id().cmp(&b.id()))
            });
        }
        Ok(referrals)
    }

    async fn freshness(
        &self,
        person: &Person,
        alerts: &[care_alert::Alert],
        referrals: &[care_referral::Referral],
        now: Timestamp,
    ) -> Result<Vec<SourceFreshness>, AccessError> {
        let mut latest: BTreeMap<_, (care_kernel::SourceKind, Timestamp)> = BTreeMap::new();
        let statements = person
            .source_records()
            .map(|r| (&r.source, r.source_time))
            .chain(alerts.iter().map(|a| (a.source(), a.source_time())))
            .chain(referrals.iter().map(|r| (r.source(), r.source_time())));
        for (source, at) in statements {
            let entry = latest.entry(source.id.clone()).or_insert((source.kind, at));
            entry.1 = entry.1.max(at);
        }
        let registry: BTreeMap<_, _> = self
            .ports
            .sources
            .list()
            .await?
            .into_iter()
            .map(|s| (s.source.id.clone(), s))
            .collect();
        let mut out: Vec<SourceFreshness> = latest
            .into_iter()
            .map(|(id, (kind, at))| {
                let info = registry.get(&id);
                SourceFreshness {
                    name: info.map(|i| i.name.clone()),
                    last_message_at: info.and_then(|i| i.last_message_at),
                    stale: info.is_none_or(|i| i.is_stale(now)),
                    source: id,
                    kind,
                    last_update_for_person: at,
                }
            })
            .collect();
        out.sort_by_key(|f| std::cmp::Reverse(f.last_update_for_person));
        Ok(out)
    }

    /// A person's children's social-care referrals, most recently received first.
    pub async fn list_referrals(
        &self,
        actor: &Actor,
        id: PersonId,
    ) -> Result<ReferralList, AccessError> {
        let now = self.now();
        let (person, _, receipt) = self
            .gate_person(
                Access::new(actor, now, Action::ReadReferrals).on("referrals"),
                id,
            )
            .await?;
        let referrals = self.referrals_of(&person).await?;
        Ok(ReferralList {
            person: person.id(),
            referrals,
            receipt,
        })
    }

    /// The GP summary: GP practice alerts, or that the GP record closed at death.
    pub async fn gp_summary(&self, actor: &Actor, id: PersonId) -> Result<GpSummary, AccessError> {
        let now = self.now();
        let today = self.today(now);
        let (person, _, receipt) = self
            .gate_person(
                Access::new(actor, now, Action::ReadGpSummary).on("gp_summary"),
                id,
            )
            .await?;
        let state = match person.death() {
            Some(death) => GpSummaryState::ClosedAfterDeath {
                date_of_death: death.date,
            },
            None => {
                let alerts = self.alerts_of(&person).await?;
                let shown = care_alert::gp_summary(&alerts, today, person.gp_record_open())
                    .unwrap_or_default()
                    .into_iter()
                    .cloned()
                    .collect();
                GpSummaryState::Open { alerts: shown }
            }
        };
        Ok(GpSummary {
            person: person.id(),
            state,
            receipt,
        })
    }

    /// Each source's own statement of a person's demographics (System Manager, for data
    /// quality: which system holds the wrong address).
    pub async fn source_demographics(
        &self,
        actor: &Actor,
        id: PersonId,
    ) -> Result<SourceDemographics, AccessError> {
        let now = self.now();
        let (person, _, receipt) = self
            .gate_person(
                Access::new(actor, now, Action::ReadSourceDemographics).on("source_demographics"),
                id,
            )
            .await?;
        Ok(SourceDemographics {
            person: person.id(),
            records: person.source_records().cloned().collect(),
            receipt,
        })
    }
}

pub(crate) fn hit(person: &Person, level: ConsentLevel) -> SearchHit {
    let shown = person.resolved();
    SearchHit {
        person: person.id(),
        nhs_number: person.nhs_number().cloned(),
        name: shown.name.map(|s| s.value),
        birth_date: shown.birth_date.map(|s| s.value),
        gender: shown.gender.map(|s| s.value),
        postcode: shown.address.and_then(|s| s.value.postcode().cloned()),
        date_of_death: person.death().map(|d| d.date),
        ask_first: level == ConsentLevel::AskFirst,
    }
}
