//! FHIR R4 intake over the in-memory adapters: every shared FHIR JSON sample (never
//! edited) read or quarantined with its reason, and the feed semantics of SPEC §5 for
//! bundles — idempotent, ordered by source time, a bad entry quarantined with its raw
//! resource while the others apply, and re-submission after a fix.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use care_alert::{Alert, AlertCategory, Severity};
use care_application::{FeedFormat, Services, SourceInfo};
use care_feeds::fhir::resubmit_fhir;
use care_feeds::intake::ResubmitError;
use care_feeds::{Intake, Outcome, Report};
use care_in_memory::{ManualClock, SpecPolicy, in_memory_ports};
use care_kernel::{
    Actor, OrganisationId, Role, Source, SourceId, SourceKind, Timestamp, UpdateOutcome, UserId,
};
use care_person::{Gender, Identifier, LocalId, NhsNumber, Person};
use care_referral::{Referral, ReferralSource, ReferralStatus};
use chrono::NaiveDate;
use serde_json::{Value, json};

const SOURCE: &str = "fhir-feed";

struct World {
    services: Services,
}

impl World {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::new(
            Timestamp::from_timestamp(1_790_000_000, 0).unwrap(),
        ));
        let services = Services::new(in_memory_ports(Arc::new(SpecPolicy::default()), clock));
        services
            .ports()
            .sources
            .register(&SourceInfo::new(
                Source::new(SourceId::parse(SOURCE).unwrap(), SourceKind::Acute),
                SOURCE,
                Duration::from_secs(3600),
            ))
            .await
            .unwrap();
        Self { services }
    }

    async fn intake(&self) -> Intake {
        let feed = Actor::new(
            UserId::parse("fhir-feed-account").unwrap(),
            OrganisationId::parse("RDZ").unwrap(),
            Role::Feed,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
        .with_feed_source(SourceId::parse(SOURCE).unwrap());
        let session = self
            .services
            .open_feed(&feed, &SourceId::parse(SOURCE).unwrap())
            .await
            .unwrap();
        Intake::new(session)
    }

    async fn send(&self, body: &[u8]) -> Report {
        self.intake().await.fhir(body).await.unwrap()
    }

    async fn find(&self, identifier: Identifier) -> Person {
        self.services
            .ports()
            .people
            .find_by_identifier(&identifier)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no one with {identifier:?}"))
    }

    async fn by_local(&self, local: &str) -> Person {
        let id = LocalId::new(SourceId::parse(SOURCE).unwrap(), local).unwrap();
        self.find(Identifier::Local(id)).await
    }

    async fn by_nhs(&self, nhs: &str) -> Person {
        self.find(Identifier::Nhs(NhsNumber::parse(nhs).unwrap()))
            .await
    }

    async fn alerts(&self, person: &Person) -> Vec<Alert> {
        let mut alerts = self
            .services
            .ports()
            .alerts
            .list_for_person(person.id())
            .await
            .unwrap();
        alerts.sort_by(|a, b| a.source_ref().cmp(b.source_ref()));
        alerts
    }

    async fn referrals(&self, person: &Person) -> Vec<Referral> {
        self.services
            .ports()
            .referrals
            .list_for_person(person.id())
            .await
            .unwrap()
    }
}

/// A shared FHIR sample's bytes (never edited).
fn sample(relative: &str) -> Vec<u8> {
    let root = care_contract::shared_data().join("fhir-r4");
    assert!(
        root.is_dir(),
        "the shared FHIR samples are missing: expected {}",
        root.display()
    );
    let path = root.join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn family_and_given(person: &Person) -> (String, String) {
    let name = person.resolved().name.unwrap().value;
    (name.family().to_owned(), name.given().to_owned())
}

fn reason(report: &Report, index: usize) -> &str {
    match &report.messages[index].outcome {
        Outcome::Quarantined { reason, .. } => reason,
        other => panic!("message {index} was {other:?}, not quarantined: {report:?}"),
    }
}

fn assert_applied(report: &Report) {
    for m in &report.messages {
        assert_eq!(m.outcome, Outcome::Applied, "{report:?}");
    }
}

#[tokio::test]
async fn the_pds_patient_is_read_with_its_death_practice_and_address() {
    let world = World::new().await;
    let report = world.send(&sample("uk-pds/Patient.json")).await;
    assert_eq!(report.counts(), (1, 0, 0), "{report:?}");
    assert_eq!(
        report.messages[0].reference.as_deref(),
        Some("Patient/9000000009")
    );
    assert!(
        report.warnings[0].contains("no meta.lastUpdated"),
        "{report:?}"
    );
    let person = world.by_nhs("9000000009").await;
    assert_eq!(
        person.local_ids().next().unwrap().value(),
        "9000000009",
        "the resource id is the local id too"
    );
    assert_eq!(family_and_given(&person), ("Smith".into(), "Jane".into()));
    let shown = person.resolved();
    assert_eq!(shown.gender.unwrap().value, Gender::Female);
    assert_eq!(shown.birth_date.unwrap().value, day(2010, 10, 22));
    assert_eq!(shown.registered_gp.unwrap().value.code(), "Y12345");
    let home = shown.address.unwrap().value;
    assert_eq!(home.lines()[0], "1 Trevelyan Square");
    assert_eq!(home.postcode().unwrap().as_str(), "LS1 6AE");
    assert_eq!(person.death().unwrap().date, day(2010, 10, 22));
    // The same file again changes nothing.
    let again = world.send(&sample("uk-pds/Patient.json")).await;
    assert_eq!(again.counts(), (0, 1, 0));
}

#[tokio::test]
async fn the_pds_sensitive_patient_is_read() {
    let world = World::new().await;
    let report = world.send(&sample("uk-pds/Sensitive_Patient.json")).await;
    assert_eq!(report.counts(), (1, 0, 0), "{report:?}");
    let person = world.by_nhs("9000000025").await;
    assert_eq!(family_and_given(&person), ("Smythe".into(), "Janet".into()));
    assert_eq!(person.death().unwrap().date, day(2010, 10, 22));
    assert!(person.resolved().address.is_none());
}

#[tokio::test]
async fn a_pds_searchset_bundle_gives_its_entries_the_bundles_time() {
    let world = World::new().await;
    let report = world
        .send(&sample("uk-pds/dateOfDeath_searchset.json"))
        .await;
    assert_eq!(report.counts(), (1, 0, 0), "{report:?}");
    assert!(report.warnings.is_empty(), "dated by Bundle.timestamp");
    let person = world.by_nhs("9733163201").await;
    assert_eq!(family_and_given(&person), ("TUNNEY".into(), "Debra".into()));
    let death = person.death().unwrap();
    assert_eq!(death.date, day(2019, 2, 7));
    assert_eq!(death.source_time.to_rfc3339(), "2024-09-27T10:09:45+00:00");
    let shown = person.resolved();
    assert_eq!(shown.registered_gp.unwrap().value.code(), "A20047");
    assert_eq!(
        shown.address.unwrap().value.postcode().unwrap().as_str(),
        "DN17 4RF"
    );
}

#[tokio::test]
async fn the_bars_service_request_needs_its_patient_in_the_same_bundle() {
    let world = World::new().await;
    let raw = sample("uk-bars/ServiceRequest-GET-success.json");
    // Alone, its subject is a urn:uuid of nothing sent: quarantined as received.
    let alone = world.send(&raw).await;
    assert!(
        reason(&alone, 0).starts_with(
            "ServiceRequest.subject: urn:uuid:9589fb37-87a2-48d8-968f-b371429208a8 is not an entry"
        ),
        "{alone:?}"
    );
    let Outcome::Quarantined { id, .. } = &alone.messages[0].outcome else {
        unreachable!()
    };
    let kept = world
        .services
        .ports()
        .quarantine
        .get(*id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.raw, raw, "a lone resource is kept exactly as received");
    assert_eq!(kept.format, FeedFormat::Fhir);

    // With the Patient it names in the same Bundle (after it: Patients go first), it is read.
    let request: Value = serde_json::from_slice(&raw).unwrap();
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:71d2b38e", "resource": request},
            {"fullUrl": "urn:uuid:9589fb37-87a2-48d8-968f-b371429208a8", "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
                "name": [{"family": "Bars", "given": ["Ben"]}]
            }}
        ]
    });
    let report = world.send(&serde_json::to_vec(&bundle).unwrap()).await;
    assert_eq!(report.counts(), (2, 0, 0), "{report:?}");
    assert_eq!(report.messages[0].index, 0, "reported in Bundle order");
    let person = world.by_nhs("9434765919").await;
    let referrals = world.referrals(&person).await;
    assert_eq!(referrals.len(), 1);
    let referral = &referrals[0];
    assert_eq!(
        referral.source_ref(),
        "71d2b38e-b81c-4894-a522-6a65265b1d58"
    );
    let details = referral.details();
    assert_eq!(details.status(), ReferralStatus::AwaitingDecision);
    assert_eq!(details.received(), day(2021, 11, 26));
    assert_eq!(details.team(), "Transfer of Care");
    assert_eq!(details.referral_source(), ReferralSource::Other);
    assert_eq!(
        referral.source_time().to_rfc3339(),
        "2021-11-26T15:00:00+00:00"
    );
}

#[tokio::test]
async fn the_hl7_core_examples_are_read_or_quarantined_with_their_reason() {
    let world = World::new().await;
    // (file, what happens to its one resource)
    let expected: [(&str, Result<(), &str>); 14] = [
        ("Patient-example.json", Ok(())),
        ("Patient-pat1.json", Ok(())),
        ("Patient-pat3.json", Ok(())),
        (
            "Patient-pat4.json",
            Err("Patient.deceased[x]: deceasedBoolean is true but no date"),
        ),
        ("Flag-example.json", Ok(())),
        ("AllergyIntolerance-example.json", Ok(())),
        (
            "AllergyIntolerance-nka.json",
            Err("AllergyIntolerance.code: \"NKA\" states that no allergy is known"),
        ),
        ("ServiceRequest-myringotomy.json", Ok(())),
        (
            "AuditEvent-example-rest.json",
            Err("resourceType: resourceType AuditEvent is not one this record reads"),
        ),
        (
            "AuditEvent-example-search.json",
            Err("resourceType: resourceType AuditEvent is not one"),
        ),
        (
            "Consent-consent-example-Out.json",
            Err("resourceType: resourceType Consent is not one"),
        ),
        (
            "Consent-consent-example-basic.json",
            Err("resourceType: resourceType Consent is not one"),
        ),
        (
            "Linkage-example.json",
            Err("resourceType: resourceType Linkage is not one"),
        ),
        (
            "RelatedPerson-peter.json",
            Err("resourceType: resourceType RelatedPerson is not one"),
        ),
    ];
    for (file, outcome) in expected {
        let report = world
            .send(&sample(&format!("hl7-core-examples/{file}")))
            .await;
        assert_eq!(report.messages.len(), 1, "{file}: {report:?}");
        match outcome {
            Ok(()) => assert_eq!(report.counts(), (1, 0, 0), "{file}: {report:?}"),
            Err(prefix) => assert!(reason(&report, 0).starts_with(prefix), "{file}: {report:?}"),
        }
    }

    // Patient/example: its official name, not-deceased, and its Australian address kept
    // whole; the Flag and the AllergyIntolerance about Patient/example reach it.
    let example = world.by_local("example").await;
    assert_eq!(
        family_and_given(&example),
        ("Chalmers".into(), "Peter".into())
    );
    assert!(example.death().is_none());
    let address = example.resolved().address.unwrap().value;
    assert_eq!(
        address.lines(),
        ["534 Erewhon St", "PleasantVille", "Rainbow", "Vic", "3999"]
    );
    assert!(address.postcode().is_none());
    let alerts = world.alerts(&example).await;
    assert_eq!(alerts.len(), 2);
    let allergy = alerts[0].details();
    assert_eq!(alerts[0].source_ref(), "AllergyIntolerance/example");
    assert_eq!(allergy.category(), AlertCategory::Allergy);
    assert_eq!(
        allergy.description(),
        "Allergy: Cashew nuts (reaction: Anaphylactic reaction, Urticaria)"
    );
    assert_eq!(allergy.severity(), Severity::High);
    assert_eq!(allergy.recorded(), day(2014, 10, 9));
    let dog = alerts[1].details();
    assert_eq!(alerts[1].source_ref(), "Flag/example");
    assert_eq!(dog.category(), AlertCategory::EnvironmentalHazard);
    assert_eq!(
        dog.description(),
        "Patient has a big dog at his home. Always always wear a suit of armor or take other active counter-measures"
    );
    assert_eq!(dog.active_from(), day(2015, 1, 17));
    assert_eq!(dog.active_to(), Some(day(2016, 12, 1)), "inactive: ended");

    assert_eq!(
        family_and_given(&world.by_local("pat1").await),
        ("Donald".into(), "Duck".into())
    );
    let pat3 = world.by_local("pat3").await;
    assert_eq!(pat3.death().unwrap().date, day(2015, 2, 14));

    // The myringotomy referral names its patient by an absolute URL.
    let beverly = world.by_local("77662").await;
    let referrals = world.referrals(&beverly).await;
    assert_eq!(referrals.len(), 1);
    let details = referrals[0].details();
    assert_eq!(referrals[0].source_ref(), "myringotomy");
    assert_eq!(details.team(), "ENT");
    assert_eq!(details.status(), ReferralStatus::AwaitingDecision);
    assert_eq!(details.received(), day(2014, 2, 14));
    assert_eq!(details.referral_source(), ReferralSource::Health);
}

#[tokio::test]
async fn bundles_of_what_this_record_does_not_read_are_quarantined_entry_by_entry() {
    let world = World::new().await;
    let response = world
        .send(&sample("hl7-core-examples/Bundle-bundle-response.json"))
        .await;
    assert_eq!(response.counts(), (1, 0, 9), "{response:?}");
    assert_eq!(response.messages[0].outcome, Outcome::Applied);
    assert_eq!(
        family_and_given(&world.by_local("12423").await),
        ("Chalmers".into(), "Peter".into())
    );
    assert!(reason(&response, 1).contains("without a resource"));
    assert!(reason(&response, 7).contains("resourceType Parameters is not one"));
    assert!(reason(&response, 8).contains("resourceType Bundle is not one"));

    for (file, entries) in [
        ("uk-pds/RelatedPersonBundle.json", 1),
        ("microsoft-expected/ADT-A40-01-expected.json", 7),
        ("hl7-core-definitions/CompartmentDefinition-patient.json", 1),
        (
            "hl7-core-definitions/SearchParameter-Patient-identifier.json",
            1,
        ),
        (
            "hl7-core-definitions/SearchParameter-clinical-patient.json",
            1,
        ),
        (
            "hl7-core-definitions/SearchParameter-individual-family.json",
            1,
        ),
    ] {
        let report = world.send(&sample(file)).await;
        assert_eq!(report.counts(), (0, 0, entries), "{file}: {report:?}");
        for i in 0..entries {
            assert!(
                reason(&report, i).contains("is not one this record reads"),
                "{file}: {report:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_synthea_export_is_read_line_by_line_with_us_identifiers_as_local_ids() {
    let world = World::new().await;
    let intake = world.intake().await;
    for file in [
        "synthea/Patient.000.ndjson",
        "synthea/AllergyIntolerance.000.ndjson",
    ] {
        let text = String::from_utf8(sample(file)).unwrap();
        let mut applied = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let report = intake.fhir(line.as_bytes()).await.unwrap();
            assert_eq!(report.counts(), (1, 0, 0), "{file}: {report:?}");
            applied += 1;
        }
        let lines = if file.contains("Patient") { 13 } else { 11 };
        assert_eq!(applied, lines, "{file}");
    }
    let first = world.by_local("129c6ac7-8d06-89de-ad63-0204a93e76c3").await;
    assert!(first.nhs_number().is_none(), "an SSN is not an NHS number");
    assert_eq!(
        first.death().unwrap().date,
        day(1989, 5, 9),
        "as written (-04:00)"
    );
    let address = first.resolved().address.unwrap().value;
    assert!(address.postcode().is_none());
    assert!(
        address.lines().contains(&"66801".to_owned()),
        "the ZIP code kept as a line"
    );

    let allergic = world.by_local("cbc86e51-9eca-3855-76ec-c058f72c5761").await;
    let alerts = world.alerts(&allergic).await;
    assert_eq!(alerts.len(), 8);
    assert!(
        alerts
            .iter()
            .all(|a| a.details().category() == AlertCategory::Allergy
                && a.details().severity() == Severity::Low
                && a.details().recorded() == day(1996, 12, 27))
    );
    let nuts = world.by_local("a5cb8ce9-cec6-6b23-0990-cbaf753578a4").await;
    let alerts = world.alerts(&nuts).await;
    assert_eq!(alerts.len(), 3);
    let tree_nut = alerts
        .iter()
        .find(|a| a.source_ref() == "AllergyIntolerance/1e4c4ad8-677b-2ddc-8fb7-44ad5b7c2aa9")
        .unwrap();
    assert!(
        tree_nut.details().description().starts_with(
            "Allergy: Tree nut (substance) (reaction: Wheal (finding), Dyspnea (finding),"
        ),
        "{}",
        tree_nut.details().description()
    );
}

/// A Bundle for one person: a Patient (by urn:uuid), a referral, a flag and an allergy
/// about it, stated at `timestamp`; `flag_status` lets a test spoil the middle entry.
fn care_bundle(timestamp: &str, family: &str, flag_status: &str) -> Value {
    json!({
        "resourceType": "Bundle", "type": "collection", "timestamp": timestamp,
        "entry": [
            {"fullUrl": "urn:uuid:sr", "resource": {
                "resourceType": "ServiceRequest", "id": "ref-1", "status": "active",
                "subject": {"reference": "urn:uuid:pt"}, "authoredOn": "2026-01-10",
                "code": {"text": "Children's social care assessment"},
                "requester": {"reference": "urn:uuid:mum"}
            }},
            {"fullUrl": "urn:uuid:flag", "resource": {
                "resourceType": "Flag", "id": "flag-1", "status": flag_status,
                "code": {"text": "Safeguarding: child protection plan"},
                "subject": {"reference": "urn:uuid:pt"}, "period": {"start": "2026-01-11"}
            }},
            {"fullUrl": "urn:uuid:pt", "resource": {
                "resourceType": "Patient", "id": "child-1",
                "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
                "name": [{"use": "official", "family": family, "given": ["Kim"]}],
                "birthDate": "2015-06-01", "gender": "other"
            }},
            {"fullUrl": "urn:uuid:mum", "resource": {
                "resourceType": "AllergyIntolerance", "id": "allergy-1",
                "code": {"text": "Penicillin"}, "criticality": "high",
                "patient": {"reference": "Patient/child-1"}, "recordedDate": "2020-01-01"
            }}
        ]
    })
}

#[tokio::test]
async fn a_bundle_applies_patients_first_and_the_same_bundle_again_changes_nothing() {
    let world = World::new().await;
    let bundle = serde_json::to_vec(&care_bundle("2026-02-01T09:00:00Z", "Lee", "active")).unwrap();
    let report = world.send(&bundle).await;
    assert_applied(&report);
    assert_eq!(report.counts(), (4, 0, 0));
    let references: Vec<_> = report
        .messages
        .iter()
        .map(|m| (m.index, m.reference.clone().unwrap()))
        .collect();
    assert_eq!(
        references,
        [
            (0, "ServiceRequest/ref-1".to_owned()),
            (1, "Flag/flag-1".to_owned()),
            (2, "Patient/child-1".to_owned()),
            (3, "AllergyIntolerance/allergy-1".to_owned()),
        ]
    );
    let child = world.by_nhs("9434765919").await;
    assert_eq!(child.local_ids().next().unwrap().value(), "child-1");
    assert_eq!(world.alerts(&child).await.len(), 2);
    let flag = world.alerts(&child).await.remove(1);
    assert_eq!(flag.details().category(), AlertCategory::Safeguarding);
    let referral = world.referrals(&child).await.remove(0);
    assert_eq!(
        referral.details().team(),
        "Children's social care assessment"
    );
    assert_eq!(
        referral.details().referral_source(),
        ReferralSource::Other,
        "the requester is an AllergyIntolerance entry: nobody this record knows"
    );

    let again = world.send(&bundle).await;
    assert_eq!(again.counts(), (0, 4, 0), "idempotent: {again:?}");

    // An older statement never overwrites a newer one; a newer one does.
    let older = care_bundle("2026-01-01T09:00:00Z", "Older", "active");
    let report = world.send(&serde_json::to_vec(&older).unwrap()).await;
    assert_eq!(report.counts(), (0, 4, 0), "{report:?}");
    let newer = care_bundle("2026-03-01T09:00:00Z", "Newer", "inactive");
    let report = world.send(&serde_json::to_vec(&newer).unwrap()).await;
    assert_eq!(report.counts(), (4, 0, 0), "{report:?}");
    let child = world.by_nhs("9434765919").await;
    assert_eq!(family_and_given(&child).0, "Newer");
    let flag = world.alerts(&child).await.remove(1);
    assert_eq!(flag.details().active_to(), Some(day(2026, 3, 1)));

    // An undated statement is the oldest there is: it never overrides a dated one.
    let mut undated = care_bundle("2026-04-01T09:00:00Z", "Undated", "active");
    undated.as_object_mut().unwrap().remove("timestamp");
    let report = world.send(&serde_json::to_vec(&undated).unwrap()).await;
    assert_eq!(report.counts(), (0, 4, 0), "{report:?}");
    assert!(report.warnings[0].starts_with("4 resource(s) carry no meta.lastUpdated"));
}

#[tokio::test]
async fn a_bad_entry_is_quarantined_with_its_resource_while_the_others_apply() {
    let world = World::new().await;
    let bundle = care_bundle("2026-02-01T09:00:00Z", "Lee", "sometimes");
    let report = world.send(&serde_json::to_vec(&bundle).unwrap()).await;
    assert_eq!(report.counts(), (3, 0, 1), "{report:?}");
    let Outcome::Quarantined { id, reason } = &report.messages[1].outcome else {
        panic!("{report:?}")
    };
    assert!(reason.starts_with("Flag.status: \"sometimes\""), "{reason}");
    assert_eq!(report.messages[1].reference.as_deref(), Some("Flag/flag-1"));
    let entry = world
        .services
        .ports()
        .quarantine
        .get(*id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.format, FeedFormat::Fhir);
    assert_eq!(entry.reference.as_deref(), Some("Flag/flag-1"));
    assert_eq!(
        serde_json::from_slice::<Value>(&entry.raw).unwrap(),
        bundle["entry"][1]["resource"],
        "the entry's resource is kept"
    );

    // Re-submitted as it was, it fails again; corrected (status, and a subject that
    // needs no Bundle), it applies and resolves.
    let system_manager = Actor::new(
        UserId::parse("sm").unwrap(),
        OrganisationId::parse("DCR").unwrap(),
        Role::SystemManager,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    let open = world
        .services
        .open_resubmission(&system_manager, *id)
        .await
        .unwrap();
    match resubmit_fhir(open, None).await {
        // Kept alone, its urn:uuid subject no longer resolves.
        Err(ResubmitError::StillFailing(why)) => {
            assert!(
                why.starts_with("Flag.subject: urn:uuid:pt is not an entry"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    let mut fixed = bundle["entry"][1]["resource"].clone();
    fixed["status"] = json!("active");
    fixed["subject"] = json!({"reference": "Patient/child-1"});
    let open = world
        .services
        .open_resubmission(&system_manager, *id)
        .await
        .unwrap();
    let outcome = resubmit_fhir(open, Some(serde_json::to_vec(&fixed).unwrap()))
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    let child = world.by_nhs("9434765919").await;
    assert!(
        world
            .alerts(&child)
            .await
            .iter()
            .any(|a| a.source_ref() == "Flag/flag-1")
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_fhir_resource_is_quarantined_whole_with_the_reason() {
    let world = World::new().await;
    let cut = br#"{"resourceType": "Patient", "id": "#;
    let report = world.send(cut).await;
    assert_eq!(report.counts(), (0, 0, 1));
    assert_eq!(
        reason(&report, 0),
        "not JSON: EOF while parsing a value at line 1 column 34"
    );
    let report = world.send(br#"{"id": "x"}"#).await;
    assert_eq!(reason(&report, 0), "not a FHIR resource: no resourceType");
    let report = world
        .send(br#"{"resourceType": "Bundle", "entry": {"resource": 1}}"#)
        .await;
    assert!(
        reason(&report, 0).starts_with("Bundle.entry: invalid type"),
        "{report:?}"
    );
    let report = world
        .send(br#"{"resourceType": "Bundle", "timestamp": "now", "entry": []}"#)
        .await;
    assert!(
        reason(&report, 0).starts_with("Bundle.timestamp"),
        "{report:?}"
    );
}
