//! Deterministic synthetic people for tests, demos and the benchmark dataset (SPEC §7:
//! 1,000,000 people with 3,000,000 alerts and referrals).
//!
//! [`Generator::person`] builds person `i` of a dataset from `(seed, i)` alone: the same
//! seed gives byte-identical people, any person can be built without the others, and
//! [`Generator::people`] streams them without ever holding the dataset. No clock is read:
//! the `now` given to [`Generator::new`] anchors birth dates, deaths and source times.
//!
//! What a dataset holds, so tests can rely on it:
//! - **Identity.** Person `i < `[`NHS_NUMBER_CAPACITY`] has a valid NHS number from the
//!   999 test range, unique within the dataset; the test range only has about 909,000
//!   valid numbers, so people past the capacity have none (they are known by local ids
//!   only, as social-care-only clients are). Every person has local ids at one to three
//!   sources and demographics from one to three sources (the national PDS among them for
//!   most), which sometimes disagree: an old address, an abbreviated street, a family
//!   name spelled without its accent or apostrophe, in capitals or with two letters
//!   swapped, a missing middle name, rarely a birth date a day out.
//! - **Households.** People come in households of one to eight consecutive indices that
//!   share a postcode and address and mostly a family name: heads, partners, children
//!   (twins among them) and other adults. About 30,000 Dorset, Bournemouth and Poole
//!   postcodes (`BH1`–`BH25`, `DT1`–`DT11`, `SP7`, `SP8`) are shared by several people.
//! - **Deaths.** About 1% died within the last 8 years, 0.5% longer ago.
//! - **Consent.** About 2% ask first, 1% opted out (a third of them by a representative,
//!   whose evidence is at every [`EvidenceStatus`](care_consent::EvidenceStatus)), 0.3%
//!   opted out and were opted back in by the DPO. Everyone else has no consent record.
//! - **Alerts and referrals.** About three per person in all: alerts of every category
//!   and severity from GP, hospital, community and council sources (so both the banner
//!   and the GP summary have some), a fifth of them ended; children's social-care
//!   referrals from the council of the child's area in every status, referral source and
//!   level of involvement, closed ones with their closed date.

mod generate;
mod tables;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use care_alert::Alert;
use care_application::{Ports, SourceInfo, SourceRegistry};
use care_consent::Consent;
use care_kernel::{InvalidValue, Source, SourceId, SourceKind, Timestamp, UpdateOutcome};
use care_person::Person;
use care_referral::Referral;
use serde::Serialize;

pub use generate::{Generator, NHS_NUMBER_CAPACITY};

/// The identifiers of the synthetic sources, for tests that need to name one.
pub mod source_ids {
    /// The national demographics service.
    pub const PDS: &str = "pds";
    /// The one GP system that feeds every practice.
    pub const GP: &str = "gp-ems";
    /// University Hospitals Dorset (Bournemouth, Poole, Christchurch).
    pub const ACUTE_UHD: &str = "acute-uhd";
    /// Dorset County Hospital (Dorchester).
    pub const ACUTE_DCHFT: &str = "acute-dchft";
    /// Dorset HealthCare (community and mental health).
    pub const COMMUNITY: &str = "community-dhc";
    /// BCP Council children's and adult social care.
    pub const COUNCIL_BCP: &str = "council-bcp";
    /// Dorset Council children's and adult social care.
    pub const COUNCIL_DC: &str = "council-dc";
}

const REALTIME: Duration = Duration::from_secs(60 * 60);
const NIGHTLY: Duration = Duration::from_secs(26 * 60 * 60);

/// The sources a synthetic dataset comes from: the national PDS, one GP system feeding
/// every practice, two acute trusts, a community trust and two councils. Real-time feeds
/// are expected hourly; the councils' nightly extracts every 26 hours.
pub fn sources() -> Result<Vec<SourceInfo>, InvalidValue> {
    let described = [
        (
            source_ids::PDS,
            SourceKind::National,
            "NHS Personal Demographics Service (PDS)",
            REALTIME,
        ),
        (
            source_ids::GP,
            SourceKind::GpPractice,
            "Dorset GP practices (EMIS Web)",
            REALTIME,
        ),
        (
            source_ids::ACUTE_UHD,
            SourceKind::Acute,
            "University Hospitals Dorset PAS",
            REALTIME,
        ),
        (
            source_ids::ACUTE_DCHFT,
            SourceKind::Acute,
            "Dorset County Hospital PAS",
            REALTIME,
        ),
        (
            source_ids::COMMUNITY,
            SourceKind::Community,
            "Dorset HealthCare community services (SystmOne)",
            REALTIME,
        ),
        (
            source_ids::COUNCIL_BCP,
            SourceKind::SocialCare,
            "BCP Council social care (nightly extract)",
            NIGHTLY,
        ),
        (
            source_ids::COUNCIL_DC,
            SourceKind::SocialCare,
            "Dorset Council social care (nightly extract)",
            NIGHTLY,
        ),
    ];
    described
        .into_iter()
        .map(|(id, kind, name, interval)| {
            Ok(SourceInfo::new(
                Source::new(SourceId::parse(id)?, kind),
                name,
                interval,
            ))
        })
        .collect()
}

/// One synthetic person with everything the sources say about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyntheticPerson {
    /// The person's index in the dataset (what [`Generator::person`] was given).
    pub index: u64,
    /// The record: identifiers, each source's demographics, death.
    pub person: Person,
    /// Alerts about the person, ended ones included.
    pub alerts: Vec<Alert>,
    /// Children's social-care referrals about the person.
    pub referrals: Vec<Referral>,
    /// The person's consent, when they changed it (none means participating).
    pub consent: Option<Consent>,
}

/// What [`load`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Sources registered.
    pub sources: usize,
    /// People saved.
    pub people: u64,
    /// Alerts saved.
    pub alerts: u64,
    /// Referrals saved.
    pub referrals: u64,
    /// Consent records saved.
    pub consents: u64,
}

/// Registers [`sources`] and writes every person, alert, referral and consent through the
/// repository ports, one at a time, in the order given. The people must be new to the
/// repositories (their version is 0). Each source is then noted as having sent one batch
/// at the latest source time it stated, so a freshly seeded record shows how fresh each
/// source's data is rather than every source as silent.
pub async fn load(
    ports: &Ports,
    people: impl IntoIterator<Item = SyntheticPerson>,
) -> anyhow::Result<LoadSummary> {
    let sources = sources()?;
    for info in &sources {
        ports
            .sources
            .register(info)
            .await
            .with_context(|| format!("registering source {}", info.source.id))?;
    }
    let mut latest = LatestStatements::default();
    let mut summary = LoadSummary {
        sources: sources.len(),
        ..LoadSummary::default()
    };
    for p in people {
        latest.note(&p);
        ports
            .people
            .save(&p.person)
            .await
            .with_context(|| format!("saving synthetic person {}", p.index))?;
        summary.people += 1;
        for alert in &p.alerts {
            ports
                .alerts
                .save(alert)
                .await
                .with_context(|| format!("saving an alert of synthetic person {}", p.index))?;
            summary.alerts += 1;
        }
        for referral in &p.referrals {
            ports
                .referrals
                .save(referral)
                .await
                .with_context(|| format!("saving a referral of synthetic person {}", p.index))?;
            summary.referrals += 1;
        }
        if let Some(consent) = &p.consent {
            ports
                .consent
                .save(consent)
                .await
                .with_context(|| format!("saving consent of synthetic person {}", p.index))?;
            summary.consents += 1;
        }
    }
    latest.record(ports.sources.as_ref()).await?;
    Ok(summary)
}

/// The latest source time each source stated in a dataset, so that a seeded record
/// shows how fresh each source's data is rather than every source as silent.
#[derive(Debug, Default, Clone)]
pub struct LatestStatements {
    latest: std::collections::BTreeMap<SourceId, Timestamp>,
}

impl LatestStatements {
    /// Notes what one person's statements say (demographics, death, alerts, referrals).
    pub fn note(&mut self, p: &SyntheticPerson) {
        let mut note = |source: &SourceId, at: Timestamp| {
            let held = self.latest.entry(source.clone()).or_insert(at);
            *held = (*held).max(at);
        };
        for record in p.person.source_records() {
            note(&record.source.id, record.source_time);
        }
        if let Some(death) = p.person.death() {
            note(&death.source.id, death.source_time);
        }
        for alert in &p.alerts {
            note(&alert.source().id, alert.source_time());
        }
        for referral in &p.referrals {
            note(&referral.source().id, referral.source_time());
        }
    }

    /// Notes each source as having sent one batch at its latest source time.
    pub async fn record(&self, sources: &dyn SourceRegistry) -> anyhow::Result<()> {
        for (source, at) in &self.latest {
            sources
                .record_activity(source, *at, UpdateOutcome::Applied.into())
                .await
                .with_context(|| format!("noting the freshness of source {source}"))?;
        }
        Ok(())
    }
}

/// Writes people `0..people` of the dataset `(seed, now)` as JSON lines, one
/// [`SyntheticPerson`] per line, streaming.
pub fn write_json_lines<W: Write + ?Sized>(
    seed: u64,
    now: Timestamp,
    people: u64,
    out: &mut W,
) -> anyhow::Result<()> {
    let generator = Generator::new(seed, now)?;
    for person in generator.people(people) {
        serde_json::to_writer(&mut *out, &person)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
