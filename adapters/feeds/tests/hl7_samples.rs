//! Every HL7 v2 sample in `shared/data/hl7v2` (written by others, used as they are) goes
//! through the feed pipeline: each message is applied or quarantined with a readable
//! reason, never dropped, never a panic or a hang. The table says which, and why.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use care_feeds::{Outcome, Report};
use care_kernel::SourceId;
use care_person::{Identifier, NhsNumber, Person};
use common::{SOURCE, World, data};

/// (file, applied, quarantined, the start of every quarantine reason (one of these))
const EXPECTED: &[(&str, usize, usize, &[&str])] = &[
    // Comment lines (`//`, `/* */`) inside messages, BAR/ORM/QRY types, and one
    // message whose MSH-2 is `^~\}` (three characters then a field separator).
    (
        "hapi-nhapi/hapi-messages.txt",
        0,
        18,
        &[
            "segment ",
            "MSH-9: message type",
            "MSH-2 encoding characters invalid",
        ],
    ),
    // A24 (link patients) is not a message this record reads.
    (
        "hapi-nhapi/segmentfinder_a24_custom_delimiters.hl7",
        0,
        1,
        &["MSH-9: message type ADT^A24"],
    ),
    ("microsoft-fhir-converter/ADT-A01-01.hl7", 1, 0, &[]),
    ("microsoft-fhir-converter/ADT-A03-01.hl7", 1, 0, &[]),
    ("microsoft-fhir-converter/ADT-A04-01.hl7", 1, 0, &[]),
    ("microsoft-fhir-converter/ADT-A08-01.hl7", 1, 0, &[]),
    ("microsoft-fhir-converter/ADT-A28-01.hl7", 1, 0, &[]),
    ("microsoft-fhir-converter/ADT-A31-01.hl7", 1, 0, &[]),
    ("microsoft-fhir-converter/ADT-A40-01.hl7", 1, 0, &[]),
    ("microsoft-fhir-converter/ADT-A40-02.hl7", 1, 0, &[]),
    // Begins with a UTF-8 BOM.
    ("microsoft-fhir-converter/ADT04-251.hl7", 1, 0, &[]),
    // Pathology is for a later version: kept in the quarantine until then.
    (
        "microsoft-fhir-converter/ORU-R01-01.hl7",
        0,
        1,
        &["MSH-9: message type ORU^R01"],
    ),
    ("microsoft-fhir-converter/REF-I12-01.hl7", 1, 0, &[]),
    ("microsoft-fhir-converter/REF-I14-01.hl7", 1, 0, &[]),
    // Fuzzer-found inputs that hang or overflow other parsers.
    (
        "nhapi-bad-inputs/LegacyPipeParser_HL7Exception_hang1.bin",
        0,
        1,
        &["MSH-2 encoding characters invalid"],
    ),
    (
        "nhapi-bad-inputs/PipeParser_HL7Exception_so.bin",
        0,
        1,
        &["MSH-2 encoding characters invalid"],
    ),
    (
        "nhapi-bad-inputs/PipeParser_HL7Exception_so5.bin",
        0,
        1,
        &["MSH-2 encoding characters invalid"],
    ),
    (
        "nhapi-bad-inputs/PipeParser_NoException_id_000146_sig_02_src_000682_002159_op_splice_rep_4.bin",
        0,
        1,
        &["segment 2"],
    ),
    (
        "python-hl7/rep_sample_hl7.hl7",
        0,
        1,
        &["MSH-9: message type ORU^R01"],
    ),
    // An Australian batch: PID-8 is "1", not an HL7 administrative sex (M F O U A N).
    (
        "python-hl7/sample_file1_FHS_BHS_batch.hl7",
        0,
        3,
        &["PID-8: \"1\" is not an HL7 administrative sex"],
    ),
    // The NHS number in PID-3 has nine digits.
    (
        "uk-nhs/il-hans_ADT_A01_invalid_nhs_number.hl7",
        0,
        1,
        &["PID-3: NHS number \"247868469\""],
    ),
    ("uk-nhs/il-hans_ADT_A01_simhosp_nhsnbr.hl7", 1, 0, &[]),
    ("uk-nhs/il-hans_ADT_A03_pkb_nhs_nh.hl7", 1, 0, &[]),
    // Simulated Hospital: ADT applied, ORU (pathology) quarantined.
    (
        "uk-nhs/simhospital-messages-excerpt.hl7",
        53,
        68,
        &["MSH-9: message type ORU^R01"],
    ),
];

fn every_file(dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            every_file(&path, out);
        } else if path.extension().is_none_or(|e| e != "json") {
            let root = data("hl7v2");
            out.push(path.strip_prefix(&root).unwrap().display().to_string());
        }
    }
}

async fn submit(world: &World, file: &str) -> Report {
    let bytes = std::fs::read(data("hl7v2").join(file)).unwrap();
    let intake = world.intake().await;
    tokio::time::timeout(std::time::Duration::from_secs(10), intake.hl7(&bytes))
        .await
        .unwrap_or_else(|_| panic!("{file} hung"))
        .unwrap()
}

#[tokio::test]
async fn every_sample_message_is_applied_or_quarantined_with_a_readable_reason() {
    let mut files = Vec::new();
    every_file(&data("hl7v2"), &mut files);
    files.sort();
    let listed: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    assert_eq!(
        files, listed,
        "every HL7 v2 sample file has a row in the table (and only those)"
    );
    for &(file, applied, quarantined, reasons) in EXPECTED {
        let world = World::new().await;
        let report = submit(&world, file).await;
        let (a, u, q) = report.counts();
        assert_eq!((a, u, q), (applied, 0, quarantined), "{file}");
        for message in &report.messages {
            if let Outcome::Quarantined { id, reason } = &message.outcome {
                assert!(
                    reasons.iter().any(|r| reason.starts_with(r)),
                    "{file}: unexpected reason {reason:?}"
                );
                let kept = world
                    .services
                    .ports()
                    .quarantine
                    .get(*id)
                    .await
                    .unwrap()
                    .expect("the quarantine holds the message");
                assert!(!kept.raw.is_empty(), "{file}: raw bytes kept");
                assert_eq!(&kept.reason, reason);
            }
        }
        // The source's counters say the same.
        let info = world
            .services
            .ports()
            .sources
            .get(&SourceId::parse(SOURCE).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (info.applied as usize, info.quarantined as usize),
            (applied, quarantined),
            "{file}: counters"
        );
    }
}

async fn by_nhs(world: &World, nhs: &str) -> Person {
    world
        .services
        .ports()
        .people
        .find_by_identifier(&Identifier::Nhs(NhsNumber::parse(nhs).unwrap()))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no one with NHS number {nhs}"))
}

async fn by_local(world: &World, local: &str) -> Person {
    world
        .with_local_id(local)
        .await
        .unwrap_or_else(|| panic!("no one with local id {local}"))
}

#[tokio::test]
async fn a_uk_admission_lands_with_its_nhs_number_local_id_name_address_and_practice() {
    let world = World::new().await;
    submit(&world, "uk-nhs/il-hans_ADT_A01_simhosp_nhsnbr.hl7").await;
    let person = by_nhs(&world, "2478684691").await;
    assert_eq!(by_local(&world, "2590157853").await.id(), person.id());
    let shown = person.resolved();
    let name = shown.name.unwrap();
    assert_eq!(name.value.family(), "Esterkin");
    assert_eq!(name.value.given(), "AKI Scenario 6");
    assert_eq!(name.source.as_str(), SOURCE, "the feed's source, not MSH-3");
    assert_eq!(
        shown.birth_date.unwrap().value,
        care_kernel::Date::from_ymd_opt(1989, 1, 18).unwrap()
    );
    let address = shown.address.unwrap().value;
    assert_eq!(address.postcode().unwrap().as_str(), "RW21 6KC");
    assert_eq!(address.lines()[0], "170 Juice Place");
    assert_eq!(shown.registered_gp.unwrap().value.code(), "12345");
    assert_eq!(
        name.as_of.to_rfc3339(),
        "2020-05-08T12:06:43+00:00",
        "source time from EVN-2, UK summer time"
    );
}

#[tokio::test]
async fn the_bom_file_and_custom_escapes_read_as_text() {
    let world = World::new().await;
    let report = submit(&world, "microsoft-fhir-converter/ADT04-251.hl7").await;
    assert_eq!(report.counts(), (1, 0, 0));
}

#[tokio::test]
async fn an_admission_with_an_allergy_makes_an_allergy_alert() {
    let world = World::new().await;
    submit(&world, "microsoft-fhir-converter/ADT-A01-01.hl7").await;
    let person = by_local(&world, "PATID1234").await;
    let alerts = world
        .services
        .ports()
        .alerts
        .list_for_person(person.id())
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1);
    let details = alerts[0].details();
    assert_eq!(details.category(), care_alert::AlertCategory::Allergy);
    assert!(details.description().contains("PENICILLIN"), "{details:?}");
    assert_eq!(details.severity(), care_alert::Severity::Low, "AL1-4 MI");
}

#[tokio::test]
async fn a_referral_message_makes_a_referral_named_by_rf1_6() {
    let world = World::new().await;
    submit(&world, "microsoft-fhir-converter/REF-I12-01.hl7").await;
    let person = by_local(&world, "PATID1234").await;
    let referrals = world
        .services
        .ports()
        .referrals
        .list_for_person(person.id())
        .await
        .unwrap();
    assert_eq!(referrals.len(), 1);
    assert_eq!(referrals[0].source_ref(), "226839");
    assert_eq!(
        referrals[0].details().status(),
        care_referral::ReferralStatus::AwaitingDecision
    );
    assert_eq!(referrals[0].details().team(), "Medical");
}

#[tokio::test]
async fn a_referral_cancellation_closes_the_referral() {
    let world = World::new().await;
    submit(&world, "microsoft-fhir-converter/REF-I12-01.hl7").await;
    submit(&world, "microsoft-fhir-converter/REF-I14-01.hl7").await;
    let person = by_local(&world, "PATID1234").await;
    let referrals = world
        .services
        .ports()
        .referrals
        .list_for_person(person.id())
        .await
        .unwrap();
    assert!(
        referrals
            .iter()
            .any(|r| r.details().status() == care_referral::ReferralStatus::ClosedNoFurtherAction),
        "{referrals:?}"
    );
}
