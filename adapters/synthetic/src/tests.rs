use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, OnceLock};

use care_alert::{AlertCategory, Placement, Severity};
use care_consent::{ChangeKind, ConsentLevel, EvidenceStatus};
use care_kernel::{Date, SourceKind};
use care_person::{NhsNumber, Postcode, SearchCriteria, VitalStatus};
use care_referral::{InvolvementLevel, ReferralSource, ReferralStatus};

use super::*;
use crate::tables::OUTWARDS;

fn now() -> Timestamp {
    Timestamp::from_timestamp(1_772_000_000, 0).unwrap() // 2026-02-25
}

fn today() -> Date {
    now().date_naive()
}

fn generator(seed: u64) -> Generator {
    Generator::new(seed, now()).unwrap()
}

/// 20,000 people of seed 42, built once for the coverage tests.
fn sample() -> &'static [SyntheticPerson] {
    static SAMPLE: OnceLock<Vec<SyntheticPerson>> = OnceLock::new();
    SAMPLE.get_or_init(|| generator(42).people(20_000).collect())
}

#[test]
fn the_same_seed_gives_the_same_people_and_another_seed_other_people() {
    let a: Vec<_> = generator(7).people(300).collect();
    let b: Vec<_> = generator(7).people(300).collect();
    assert_eq!(a, b);
    let bytes = |people: &[SyntheticPerson]| serde_json::to_vec(people).unwrap();
    assert_eq!(bytes(&a), bytes(&b));

    let c: Vec<_> = generator(8).people(300).collect();
    assert_ne!(bytes(&a), bytes(&c));
    let ids_a: HashSet<_> = a.iter().map(|p| p.person.id()).collect();
    assert!(c.iter().all(|p| !ids_a.contains(&p.person.id())));
    let nhs_a: HashSet<_> = a.iter().filter_map(|p| p.person.nhs_number()).collect();
    let shared = c
        .iter()
        .filter_map(|p| p.person.nhs_number())
        .filter(|n| nhs_a.contains(n))
        .count();
    assert!(shared < 30, "{shared} NHS numbers shared between seeds");
}

#[test]
fn any_person_can_be_built_on_their_own() {
    let g = generator(3);
    let streamed: Vec<_> = g.people_range(95..105).collect();
    for p in &streamed {
        assert_eq!(*p, g.person(p.index));
    }
    assert_eq!(g.person(0).person.id(), g.person_id(0));
    // The moment of generation is the only time used: a later `now` shifts dates but a
    // generator never reads the clock, so the same `now` is the same dataset.
    assert_eq!(generator(3).person(100), g.person(100));
}

#[test]
fn nhs_numbers_are_valid_unique_and_from_the_999_test_range() {
    let g = generator(11);
    let mut seen = HashSet::with_capacity(NHS_NUMBER_CAPACITY as usize);
    for i in 0..NHS_NUMBER_CAPACITY {
        let n = g.nhs_number(i).unwrap();
        let digits = n.digits();
        assert!(digits.starts_with("999"), "{digits}");
        assert_eq!(NhsNumber::parse(&digits), Ok(n.clone()));
        assert!(seen.insert(n), "person {i} shares an NHS number");
    }
    assert_eq!(g.nhs_number(NHS_NUMBER_CAPACITY), None);

    for p in g.people(100_000) {
        assert_eq!(p.person.nhs_number(), g.nhs_number(p.index).as_ref());
    }
    let beyond = g.person(NHS_NUMBER_CAPACITY + 5);
    assert!(beyond.person.nhs_number().is_none());
    assert!(beyond.consent.is_none());
    assert!(beyond.person.local_ids().next().is_some());
}

#[test]
fn every_person_has_identifiers_and_complete_demographics() {
    for p in sample() {
        let locals = p.person.local_ids().count();
        assert!(
            (1..=3).contains(&locals),
            "person {}: {locals} local ids",
            p.index
        );
        let records: Vec<_> = p.person.source_records().collect();
        assert!((1..=3).contains(&records.len()), "person {}", p.index);
        for r in &records {
            let d = &r.demographics;
            assert!(d.name.is_some() && d.birth_date.is_some() && d.address.is_some());
            assert!(r.source_time <= now());
            let address = d.address.as_ref().unwrap();
            let postcode = address.postcode().unwrap().as_str();
            let (outward, inward) = postcode.split_once(' ').unwrap();
            assert!(OUTWARDS.iter().any(|o| o.code == outward), "{postcode}");
            let inward = inward.as_bytes();
            assert!(inward[0].is_ascii_digit() && inward[1..].iter().all(u8::is_ascii_uppercase));
            if let Some(gp) = &d.registered_gp {
                assert!(gp.code().starts_with("J81") && gp.code().len() == 6);
                assert!(gp.name().is_some());
            }
        }
        let resolved = p.person.resolved();
        assert!(resolved.name.is_some() && resolved.birth_date.is_some());
        for alert in &p.alerts {
            assert_eq!(alert.person(), p.person.id());
            assert!(alert.source_time() <= now());
        }
        for referral in &p.referrals {
            assert_eq!(referral.person(), p.person.id());
            assert_eq!(referral.source().kind, SourceKind::SocialCare);
        }
    }
}

#[test]
fn ages_span_a_century_and_households_share_postcodes() {
    let births: Vec<Date> = sample()
        .iter()
        .filter_map(|p| p.person.resolved().birth_date.map(|b| b.value))
        .collect();
    let ages: Vec<i64> = births
        .iter()
        .map(|b| (today() - *b).num_days() / 365)
        .collect();
    assert!(ages.contains(&0));
    assert!(ages.iter().any(|a| *a >= 95));
    let children = ages.iter().filter(|a| **a < 18).count();
    assert!((2_000..6_000).contains(&children), "{children} children");

    let mut per_postcode: BTreeMap<Postcode, usize> = BTreeMap::new();
    for p in sample() {
        if let Some(address) = p.person.resolved().address {
            *per_postcode
                .entry(address.value.postcode().unwrap().clone())
                .or_default() += 1;
        }
    }
    let shared = per_postcode.values().filter(|n| **n >= 3).count();
    assert!(shared > 500, "{shared} postcodes with three or more people");

    // Common names and twins: some family-and-birth-date searches have several hits.
    let mut by_name_and_birth: BTreeMap<(String, Date), usize> = BTreeMap::new();
    for p in sample() {
        let r = p.person.resolved();
        let key = (
            r.name.unwrap().value.family_key().as_str().to_owned(),
            r.birth_date.unwrap().value,
        );
        *by_name_and_birth.entry(key).or_default() += 1;
    }
    assert!(by_name_and_birth.values().filter(|n| **n >= 2).count() > 50);

    let families: BTreeSet<String> = sample()
        .iter()
        .flat_map(|p| {
            p.person
                .source_records()
                .filter_map(|r| r.demographics.name.clone())
        })
        .map(|n| n.family().to_owned())
        .collect();
    for name in [
        "Smith",
        "O'Brien",
        "Nowak",
        "Łukasiewicz",
        "Müller",
        "D'Souza",
    ] {
        assert!(families.contains(name), "{name}");
    }
}

#[test]
fn sources_sometimes_disagree_and_precedence_decides() {
    let mut postcodes_differ = 0;
    let mut names_differ = 0;
    let mut shown_from_lower_precedence = 0;
    for p in sample() {
        let records: Vec<_> = p.person.source_records().collect();
        let postcodes: BTreeSet<_> = records
            .iter()
            .filter_map(|r| r.demographics.address.as_ref()?.postcode().cloned())
            .collect();
        let families: BTreeSet<_> = records
            .iter()
            .filter_map(|r| Some(r.demographics.name.as_ref()?.family().to_owned()))
            .collect();
        postcodes_differ += usize::from(postcodes.len() > 1);
        names_differ += usize::from(families.len() > 1);
        let best = records
            .iter()
            .map(|r| r.source.kind.precedence())
            .min()
            .unwrap();
        let shown = p.person.resolved().address.unwrap();
        assert_eq!(shown.kind.precedence(), best);
        shown_from_lower_precedence += usize::from(shown.kind != SourceKind::National);
    }
    assert!(postcodes_differ > 300, "{postcodes_differ}");
    assert!(names_differ > 100, "{names_differ}");
    assert!(shown_from_lower_precedence > 1_000);
}

#[test]
fn about_one_and_a_half_percent_are_dead_some_beyond_the_eight_years() {
    let mut counts: std::collections::HashMap<VitalStatus, usize> = Default::default();
    for p in sample() {
        *counts.entry(p.person.vital_status(today())).or_default() += 1;
        if let Some(death) = p.person.death() {
            let birth = p.person.resolved().birth_date.unwrap().value;
            assert!(death.date >= birth && death.date <= today());
            for a in &p.alerts {
                assert!(a.details().recorded() <= death.date);
            }
        }
    }
    let recent = counts.get(&VitalStatus::Deceased).copied().unwrap_or(0);
    let old = counts
        .get(&VitalStatus::DeceasedBeyondRetention)
        .copied()
        .unwrap_or(0);
    assert!(
        (140..260).contains(&recent),
        "{recent} died in the last 8 years"
    );
    assert!((50..150).contains(&old), "{old} died before");
}

#[test]
fn consent_covers_ask_first_and_opt_outs_by_person_and_representative() {
    let mut levels: BTreeMap<ConsentLevel, usize> = BTreeMap::new();
    let mut by_representative = 0;
    let mut by_person = 0;
    let mut opted_back_in = 0;
    let mut evidence: BTreeSet<EvidenceStatus> = BTreeSet::new();
    for p in sample() {
        let Some(c) = &p.consent else { continue };
        assert_eq!(Some(c.nhs_number()), p.person.nhs_number());
        assert_eq!(c.version(), 0);
        *levels.entry(c.level()).or_default() += 1;
        for change in c.history() {
            assert_eq!(change.by.as_str(), "synthetic-dpo");
            assert_eq!(change.organisation.as_str(), "DPO");
            assert!(change.at <= now());
            match &change.kind {
                ChangeKind::OptOutByPerson => by_person += 1,
                ChangeKind::OptOutByRepresentative { .. } => by_representative += 1,
                ChangeKind::OptIn => opted_back_in += 1,
                _ => {}
            }
        }
        if let Some(r) = c.representative() {
            evidence.insert(r.evidence_status());
        }
    }
    let ask_first = levels.get(&ConsentLevel::AskFirst).copied().unwrap_or(0);
    let opted_out = levels.get(&ConsentLevel::OptedOut).copied().unwrap_or(0);
    assert!((300..500).contains(&ask_first), "{ask_first} ask first");
    assert!((130..270).contains(&opted_out), "{opted_out} opted out");
    assert!(by_person > 50 && by_representative > 20 && opted_back_in > 20);
    assert_eq!(evidence.len(), EvidenceStatus::ALL.len());
}

#[test]
fn alerts_cover_every_category_and_severity_in_the_banner_and_the_gp_summary() {
    let mut categories: BTreeMap<(AlertCategory, bool), usize> = BTreeMap::new();
    let mut severities: BTreeSet<Severity> = BTreeSet::new();
    let mut ended = 0;
    let mut refs = HashSet::new();
    for a in sample().iter().flat_map(|p| &p.alerts) {
        let gp = a.placement() == Placement::GpSummary;
        assert_eq!(gp, a.source().kind == SourceKind::GpPractice);
        *categories.entry((a.details().category(), gp)).or_default() += 1;
        severities.insert(a.details().severity());
        ended += usize::from(!a.is_active(today()));
        assert!(refs.insert((a.source().id.clone(), a.source_ref().to_owned())));
    }
    for category in AlertCategory::ALL {
        for gp in [false, true] {
            assert!(
                categories.contains_key(&(*category, gp)),
                "{category:?} gp={gp}"
            );
        }
    }
    assert_eq!(severities.len(), Severity::ALL.len());
    assert!(ended > refs.len() / 10, "{ended} of {} ended", refs.len());
}

#[test]
fn referrals_cover_every_status_source_and_level_and_mostly_concern_children() {
    let mut statuses = BTreeSet::new();
    let mut sources = BTreeSet::new();
    let mut levels = BTreeSet::new();
    let (mut children, mut children_referred, mut adults, mut adults_referred) = (0, 0, 0, 0);
    let mut refs = HashSet::new();
    for p in sample() {
        let birth = p.person.resolved().birth_date.unwrap().value;
        let child = (today() - birth).num_days() < 18 * 365;
        if child {
            children += 1;
            children_referred += usize::from(!p.referrals.is_empty());
        } else {
            adults += 1;
            adults_referred += usize::from(!p.referrals.is_empty());
        }
        for r in &p.referrals {
            let d = r.details();
            statuses.insert(d.status());
            sources.insert(d.referral_source());
            levels.extend(d.involvement());
            assert_eq!(d.status().is_closed(), d.closed().is_some());
            if let Some(closed) = d.closed() {
                assert!(closed >= d.received() && closed <= today());
            }
            assert!(d.received() >= birth);
            assert!(refs.insert((r.source().id.clone(), r.source_ref().to_owned())));
            // The council that sent it knows the child.
            assert!(p.person.local_ids().any(|l| *l.source() == r.source().id));
        }
    }
    assert_eq!(statuses.len(), ReferralStatus::ALL.len());
    assert_eq!(sources.len(), ReferralSource::ALL.len());
    assert_eq!(levels.len(), InvolvementLevel::ALL.len());
    assert!(children_referred * adults > 10 * adults_referred * children);
}

#[test]
fn there_are_about_three_alerts_and_referrals_a_person() {
    let items: usize = sample()
        .iter()
        .map(|p| p.alerts.len() + p.referrals.len())
        .sum();
    let per_person = items as f64 / sample().len() as f64;
    assert!((2.8..3.2).contains(&per_person), "{per_person} a person");
}

#[test]
fn json_lines_are_one_person_a_line_and_repeatable() {
    let mut a = Vec::new();
    write_json_lines(5, now(), 3, &mut a).unwrap();
    let mut b = Vec::new();
    write_json_lines(5, now(), 3, &mut b).unwrap();
    assert_eq!(a, b);
    let text = String::from_utf8(a).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["index"], i as u64);
    }
}

#[test]
fn the_fixed_sources_are_valid_and_councils_are_nightly() {
    let sources = sources().unwrap();
    let ids: BTreeSet<&str> = sources.iter().map(|s| s.source.id.as_str()).collect();
    assert_eq!(ids.len(), 7);
    for s in &sources {
        let hours = s.expected_interval.as_secs() / 3600;
        match s.source.kind {
            SourceKind::SocialCare => assert_eq!(hours, 26),
            _ => assert_eq!(hours, 1),
        }
    }
}

#[tokio::test]
async fn loaded_people_are_found_by_postcode() {
    let ports = care_in_memory::in_memory_ports(
        Arc::new(care_in_memory::SpecPolicy::default()),
        Arc::new(care_in_memory::ManualClock::new(now())),
    );
    let people = &sample()[..3_000];
    let summary = load(&ports, people.iter().cloned()).await.unwrap();
    assert_eq!(summary.sources, 7);
    assert_eq!(summary.people, 3_000);
    let alerts: usize = people.iter().map(|p| p.alerts.len()).sum();
    let referrals: usize = people.iter().map(|p| p.referrals.len()).sum();
    let consents = people.iter().filter(|p| p.consent.is_some()).count();
    assert_eq!(summary.alerts, alerts as u64);
    assert_eq!(summary.referrals, referrals as u64);
    assert_eq!(summary.consents, consents as u64);

    // The postcode most people in the sample share, by any source's statement.
    let mut by_postcode: BTreeMap<Postcode, BTreeSet<care_kernel::PersonId>> = BTreeMap::new();
    for p in people {
        for pc in p.person.postcodes() {
            by_postcode
                .entry(pc.clone())
                .or_default()
                .insert(p.person.id());
        }
    }
    let (postcode, expected) = by_postcode.iter().max_by_key(|(_, ids)| ids.len()).unwrap();
    assert!(expected.len() >= 3, "{} people", expected.len());
    let found = ports
        .people
        .search(&SearchCriteria::Postcode(postcode.clone()), 100)
        .await
        .unwrap();
    let found: BTreeSet<_> = found.iter().map(|p| p.id()).collect();
    assert_eq!(&found, expected);

    let first = &people[0];
    let stored = ports.people.get(first.person.id()).await.unwrap().unwrap();
    assert_eq!(stored.version(), 1);
    assert_eq!(
        ports
            .alerts
            .list_for_person(first.person.id())
            .await
            .unwrap()
            .len(),
        first.alerts.len()
    );
    let registered = ports.sources.list().await.unwrap();
    assert_eq!(registered.len(), 7);
    assert!(registered.iter().all(|s| s.last_message_at.is_some()));
}
