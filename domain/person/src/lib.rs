//! People in the care record: NHS numbers, demographics from many sources resolved by
//! precedence with provenance, merges, and what a death changes (SPEC §3 "Person").

mod demographics;
mod nhs_number;
mod person;

pub use demographics::{
    Address, DemographicFields, Demographics, Gender, GpPractice, NameKey, PersonName, Postcode,
    ResolvedDemographics, SourceRecord, Sourced,
};
pub use nhs_number::NhsNumber;
pub use person::{
    DECEASED_RETENTION, Death, Identifier, LocalId, MergeSummary, Person, PersonError, VitalStatus,
};

use care_kernel::Date;

/// The ways a professional can look a person up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchCriteria {
    /// Exact NHS number.
    NhsNumber(NhsNumber),
    /// Family name prefix (case- and accent-insensitive) and exact birth date.
    FamilyAndBirthDate {
        /// The folded prefix of the family name.
        family_prefix: NameKey,
        /// The date of birth.
        birth_date: Date,
    },
    /// Exact postcode.
    Postcode(Postcode),
}

#[cfg(test)]
mod tests {
    use super::*;
    use care_kernel::{PersonId, Source, SourceId, SourceKind, Timestamp, UpdateOutcome};
    use proptest::prelude::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }
    fn date(y: i32, m: u32, d: u32) -> Date {
        Date::from_ymd_opt(y, m, d).unwrap()
    }
    fn source(id: &str, kind: SourceKind) -> Source {
        Source::new(SourceId::parse(id).unwrap(), kind)
    }
    fn pid(n: u128) -> PersonId {
        PersonId::from_uuid(uuid::Uuid::from_u128(n))
    }
    fn demo(family: &str, birth: Option<Date>, postcode: Option<&str>) -> Demographics {
        Demographics {
            name: Some(PersonName::new(family, "Alex").unwrap()),
            birth_date: birth,
            gender: None,
            address: postcode.map(|p| {
                Address::new(vec!["1 High St".into()], Some(Postcode::parse(p).unwrap())).unwrap()
            }),
            registered_gp: None,
        }
    }
    fn nhs() -> NhsNumber {
        NhsNumber::parse("9434765919").unwrap()
    }

    #[test]
    fn gp_outranks_acute_which_outranks_social_care_field_by_field() {
        let mut p = Person::new(pid(1));
        let council = source("council", SourceKind::SocialCare);
        let acute = source("acute", SourceKind::Acute);
        let gp = source("gp", SourceKind::GpPractice);
        p.apply_demographics(
            council.clone(),
            at(30),
            demo("Council", Some(date(2010, 1, 1)), Some("DT1 1AA")),
        )
        .unwrap();
        p.apply_demographics(acute.clone(), at(20), demo("Acute", None, Some("BH1 1AA")))
            .unwrap();
        p.apply_demographics(
            gp.clone(),
            at(10),
            Demographics {
                name: Some(PersonName::new("Gp", "Alex").unwrap()),
                ..Demographics::default()
            },
        )
        .unwrap();

        let shown = p.resolved();
        let name = shown.name.unwrap();
        assert_eq!(name.value.family(), "Gp");
        assert_eq!(name.source.as_str(), "gp");
        assert_eq!(name.as_of, at(10));
        // GP sent no address: the next source in precedence supplies it, and says so.
        let address = shown.address.unwrap();
        assert_eq!(address.value.postcode().unwrap().as_str(), "BH1 1AA");
        assert_eq!(address.source.as_str(), "acute");
        assert_eq!(address.kind, SourceKind::Acute);
        // Only the council knows the birth date.
        assert_eq!(shown.birth_date.unwrap().source.as_str(), "council");
    }

    #[test]
    fn an_older_statement_from_a_source_never_overwrites_a_newer_one() {
        let mut p = Person::new(pid(1));
        let acute = source("acute", SourceKind::Acute);
        assert_eq!(
            p.apply_demographics(acute.clone(), at(20), demo("New", None, None))
                .unwrap(),
            UpdateOutcome::Applied
        );
        assert_eq!(
            p.apply_demographics(acute.clone(), at(10), demo("Old", None, None))
                .unwrap(),
            UpdateOutcome::Stale
        );
        assert_eq!(
            p.apply_demographics(acute.clone(), at(20), demo("New", None, None))
                .unwrap(),
            UpdateOutcome::Unchanged
        );
        assert_eq!(p.resolved().name.unwrap().value.family(), "New");
    }

    #[test]
    fn a_different_nhs_number_is_refused_not_overwritten() {
        let mut p = Person::new(pid(1));
        p.add_identifier(Identifier::Nhs(nhs())).unwrap();
        let other = NhsNumber::from_first_nine(999_000_001).unwrap();
        assert_eq!(
            p.add_identifier(Identifier::Nhs(other)),
            Err(PersonError::NhsNumberConflict)
        );
        assert_eq!(
            p.add_identifier(Identifier::Nhs(nhs())),
            Ok(UpdateOutcome::Unchanged)
        );
    }

    #[test]
    fn merge_moves_every_identifier_and_statement_and_loses_nothing() {
        let acute = source("acute", SourceKind::Acute);
        let council = source("council", SourceKind::SocialCare);
        let mut survivor = Person::new(pid(1));
        survivor
            .add_identifier(Identifier::Local(
                LocalId::new(acute.id.clone(), "H1").unwrap(),
            ))
            .unwrap();
        survivor
            .apply_demographics(acute.clone(), at(10), demo("Survivor", None, None))
            .unwrap();
        let mut retired = Person::new(pid(2));
        retired.add_identifier(Identifier::Nhs(nhs())).unwrap();
        retired
            .add_identifier(Identifier::Local(
                LocalId::new(acute.id.clone(), "H2").unwrap(),
            ))
            .unwrap();
        retired
            .apply_demographics(acute.clone(), at(20), demo("Newer", None, None))
            .unwrap();
        retired
            .apply_demographics(
                council.clone(),
                at(5),
                demo("Council", None, Some("DT1 1AA")),
            )
            .unwrap();
        retired
            .record_death(date(2024, 1, 1), council.clone(), at(6))
            .unwrap();

        let summary = survivor.absorb(&mut retired).unwrap();
        assert_eq!(summary.identifiers_moved, 2);
        assert_eq!(survivor.nhs_number(), Some(&nhs()));
        assert_eq!(survivor.local_ids().count(), 2);
        assert_eq!(survivor.source_records().count(), 2);
        assert_eq!(survivor.resolved().name.unwrap().value.family(), "Newer");
        assert!(survivor.death().is_some());
        assert_eq!(survivor.merged_from().collect::<Vec<_>>(), vec![&pid(2)]);
        assert_eq!(retired.merged_into(), Some(pid(1)));
        assert_eq!(retired.identifiers().count(), 0);
        // The retired record keeps what it held, for history, but takes no more updates.
        assert_eq!(retired.source_records().count(), 2);
        assert_eq!(
            retired.apply_demographics(acute, at(30), demo("Late", None, None)),
            Err(PersonError::MergedAway(pid(1)))
        );
        assert!(!retired.searchable(date(2024, 6, 1), true));
    }

    #[test]
    fn merge_refuses_two_different_nhs_numbers_and_itself() {
        let mut a = Person::new(pid(1));
        a.add_identifier(Identifier::Nhs(nhs())).unwrap();
        let mut b = Person::new(pid(2));
        b.add_identifier(Identifier::Nhs(
            NhsNumber::from_first_nine(999_000_001).unwrap(),
        ))
        .unwrap();
        assert_eq!(
            a.absorb(&mut b).unwrap_err(),
            PersonError::NhsNumberConflict
        );
        let mut a2 = a.clone();
        assert!(matches!(
            a.absorb(&mut a2),
            Err(PersonError::InvalidMerge(_))
        ));
    }

    #[test]
    fn deceased_people_are_searchable_only_when_asked_and_never_after_eight_years() {
        let gp = source("gp", SourceKind::GpPractice);
        let mut p = Person::new(pid(1));
        let today = date(2026, 11, 25);
        assert!(p.searchable(today, false));
        assert!(p.gp_record_open());
        p.record_death(date(2020, 3, 1), gp.clone(), at(0)).unwrap();
        assert_eq!(p.vital_status(today), VitalStatus::Deceased);
        assert!(!p.searchable(today, false));
        assert!(p.searchable(today, true));
        assert!(!p.gp_record_open());
        // Exactly eight years after death is still shown; the day after is not.
        assert_eq!(p.vital_status(date(2028, 3, 1)), VitalStatus::Deceased);
        assert_eq!(
            p.vital_status(date(2028, 3, 2)),
            VitalStatus::DeceasedBeyondRetention
        );
        assert!(!p.searchable(date(2029, 1, 1), true));
    }

    #[test]
    fn a_death_survives_an_older_message_and_only_a_newer_trusted_correction_clears_it() {
        let gp = source("gp", SourceKind::GpPractice);
        let council = source("council", SourceKind::SocialCare);
        let mut p = Person::new(pid(1));
        p.record_death(date(2025, 1, 1), gp.clone(), at(100))
            .unwrap();
        // An older ADT without a death changes demographics but not the death.
        p.apply_demographics(gp.clone(), at(50), demo("Smith", None, None))
            .unwrap();
        assert!(p.death().is_some());
        assert_eq!(
            p.record_not_deceased(&gp, at(50)).unwrap(),
            UpdateOutcome::Stale
        );
        // A less trusted source cannot undo a GP-reported death.
        assert_eq!(
            p.record_not_deceased(&council, at(200)).unwrap(),
            UpdateOutcome::Stale
        );
        assert!(p.death().is_some());
        assert_eq!(
            p.record_death(date(2024, 12, 31), council.clone(), at(50))
                .unwrap(),
            UpdateOutcome::Stale
        );
        assert_eq!(
            p.record_not_deceased(&gp, at(200)).unwrap(),
            UpdateOutcome::Applied
        );
        assert!(p.death().is_none());
        // The erroneous report arriving again later stays corrected.
        assert_eq!(
            p.record_death(date(2025, 1, 1), gp.clone(), at(100))
                .unwrap(),
            UpdateOutcome::Stale
        );
        assert!(p.death().is_none());
        assert_eq!(
            p.record_death(date(2025, 2, 1), gp.clone(), at(300))
                .unwrap(),
            UpdateOutcome::Applied
        );
    }

    #[test]
    fn search_matches_any_source_by_folded_family_prefix_birth_date_or_postcode() {
        let mut p = Person::new(pid(1));
        p.add_identifier(Identifier::Nhs(nhs())).unwrap();
        p.apply_demographics(
            source("gp", SourceKind::GpPractice),
            at(0),
            demo("Ó'Brien", Some(date(1980, 5, 6)), Some("BH1 1AA")),
        )
        .unwrap();
        p.apply_demographics(
            source("council", SourceKind::SocialCare),
            at(0),
            demo("Byrne", Some(date(1980, 5, 6)), Some("DT1 2PQ")),
        )
        .unwrap();
        let by_name = |prefix: &str, birth| SearchCriteria::FamilyAndBirthDate {
            family_prefix: NameKey::parse_prefix(prefix).unwrap(),
            birth_date: birth,
        };
        assert!(p.matches(&by_name("obr", date(1980, 5, 6))));
        assert!(p.matches(&by_name("BYR", date(1980, 5, 6))));
        assert!(!p.matches(&by_name("obr", date(1980, 5, 7))));
        assert!(!p.matches(&by_name("brien", date(1980, 5, 6))));
        assert!(p.matches(&SearchCriteria::Postcode(
            Postcode::parse("dt12pq").unwrap()
        )));
        assert!(p.matches(&SearchCriteria::NhsNumber(nhs())));
        assert!(!p.matches(&SearchCriteria::Postcode(
            Postcode::parse("BH2 1AA").unwrap()
        )));
    }

    fn arb_family() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["Smith", "Jones", "Patel", "Nowak", "Brown"])
            .prop_map(String::from)
    }

    proptest! {
        /// Whatever order a set of statements arrives in, the record ends the same.
        #[test]
        fn final_demographics_do_not_depend_on_arrival_order(
            updates in prop::collection::vec((0usize..3, 0i64..6, arb_family()), 1..12),
            seed in any::<u64>(),
        ) {
            let sources = [
                source("gp", SourceKind::GpPractice),
                source("acute", SourceKind::Acute),
                source("council", SourceKind::SocialCare),
            ];
            let apply = |order: &[usize]| {
                let mut p = Person::new(pid(1));
                for &i in order {
                    let (s, t, family) = &updates[i];
                    p.apply_demographics(sources[*s].clone(), at(*t), demo(family, None, None)).unwrap();
                }
                p
            };
            let in_order: Vec<usize> = (0..updates.len()).collect();
            let mut shuffled = in_order.clone();
            // A deterministic shuffle from the seed (Fisher–Yates with an LCG).
            let mut state = seed;
            for i in (1..shuffled.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (state >> 33) as usize % (i + 1));
            }
            let a = apply(&in_order);
            let b = apply(&shuffled);
            prop_assert_eq!(a.resolved(), b.resolved());
            prop_assert_eq!(a.source_records().cloned().collect::<Vec<_>>(), b.source_records().cloned().collect::<Vec<_>>());
        }
    }
}
