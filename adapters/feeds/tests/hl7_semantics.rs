//! Feed semantics over HL7 v2 (SPEC §5): idempotent, ordered by source time, merges
//! followed by updates to the retired identifier, deaths never undone by older
//! messages, nothing lost, and re-submission after a fix. Every test runs over the
//! in-memory adapters and over a SQLite file (`in_memory::…`, `sqlite::…`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use care_application::{IngestError, QuarantineFilter};
use care_feeds::intake::{ResubmitError, resubmit_hl7};
use care_feeds::{Outcome, Report};
use care_kernel::{Actor, OrganisationId, Role, SourceId, UpdateOutcome, UserId};
use care_person::{Identifier, Person};
use common::{SOURCE, World};

/// An ADT message about local id `local`, sent at `time` (HL7 DTM), with a family name
/// and extra PID fields from 29 on (`death`: PID-29|PID-30).
fn adt(event: &str, control: &str, time: &str, local: &str, family: &str, death: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RDZ|CARE|DCR|{time}||ADT^{event}|{control}|P|2.4\r\
         EVN|{event}|{time}\r\
         PID|1||{local}^^^RDZ^MR||{family}^Sam||19800101|F|||1 High St^^Poole^^BH15 1AA||||||||||||||||||{death}\r"
    )
}

fn merge(control: &str, time: &str, survivor: &str, retired: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RDZ|CARE|DCR|{time}||ADT^A40|{control}|P|2.4\r\
         EVN|A40|{time}\r\
         PID|1||{survivor}^^^RDZ^MR||Merged^Sam\r\
         MRG|{retired}^^^RDZ^MR\r"
    )
}

async fn send(world: &World, body: &str) -> Report {
    world.intake().await.hl7(body.as_bytes()).await.unwrap()
}

async fn person(world: &World, local: &str) -> Person {
    world
        .with_local_id(local)
        .await
        .unwrap_or_else(|| panic!("no one with local id {local}"))
}

fn family(person: &Person) -> String {
    person.resolved().name.unwrap().value.family().to_owned()
}

async fn the_same_batch_twice_changes_nothing_the_second_time(world: World) {
    let batch = [
        adt("A01", "m1", "20260101090000", "L1", "Smith", ""),
        adt("A01", "m2", "20260101090100", "L2", "Jones", ""),
        adt("A08", "m3", "20260101090200", "L1", "Smyth", ""),
    ]
    .concat();
    assert_eq!(send(&world, &batch).await.counts(), (3, 0, 0));
    let again = send(&world, &batch).await;
    assert_eq!(again.counts(), (0, 3, 0), "{again:?}");
    assert_eq!(family(&person(&world, "L1").await), "Smyth");
}

async fn updates_arriving_in_reverse_order_leave_the_newest(world: World) {
    let newer = adt("A08", "m2", "20260102120000", "L1", "Newer", "");
    let older = adt("A08", "m1", "20260101120000", "L1", "Older", "");
    assert_eq!(send(&world, &newer).await.counts(), (1, 0, 0));
    assert_eq!(
        send(&world, &older).await.counts(),
        (0, 1, 0),
        "older than what is held: unchanged"
    );
    assert_eq!(family(&person(&world, "L1").await), "Newer");
}

async fn after_a_merge_updates_to_the_retired_identifier_reach_the_survivor(world: World) {
    send(
        &world,
        &adt("A01", "m1", "20260101090000", "KEEP", "Keeper", ""),
    )
    .await;
    send(
        &world,
        &adt("A01", "m2", "20260101090000", "GONE", "Gone", ""),
    )
    .await;
    let keep = person(&world, "KEEP").await.id();
    assert_eq!(
        send(&world, &merge("m3", "20260101100000", "KEEP", "GONE"))
            .await
            .counts(),
        (1, 0, 0)
    );
    assert_eq!(
        person(&world, "GONE").await.id(),
        keep,
        "the retired id follows"
    );
    let update = adt("A08", "m4", "20260101110000", "GONE", "Updated", "");
    assert_eq!(send(&world, &update).await.counts(), (1, 0, 0));
    let survivor = person(&world, "KEEP").await;
    assert_eq!(survivor.id(), keep);
    assert_eq!(family(&survivor), "Updated");
    // The same merge again changes nothing.
    assert_eq!(
        send(&world, &merge("m3", "20260101100000", "KEEP", "GONE"))
            .await
            .counts(),
        (0, 1, 0)
    );
}

async fn a_death_stays_when_an_older_message_without_one_arrives(world: World) {
    send(
        &world,
        &adt("A08", "m2", "20260301090000", "L1", "Smith", "20260228|Y"),
    )
    .await;
    let died = care_kernel::Date::from_ymd_opt(2026, 2, 28).unwrap();
    assert_eq!(person(&world, "L1").await.death().unwrap().date, died);
    let older = adt("A08", "m1", "20260201090000", "L1", "Smith", "");
    send(&world, &older).await;
    assert_eq!(person(&world, "L1").await.death().unwrap().date, died);
    // Even an older explicit "not deceased" does not undo it.
    let older_alive = adt("A08", "m0", "20260101090000", "L1", "Smith", "|N");
    assert_eq!(send(&world, &older_alive).await.counts(), (0, 1, 0));
    assert!(person(&world, "L1").await.death().is_some());
}

async fn a_bad_message_in_a_batch_is_quarantined_and_the_rest_go_on(world: World) {
    let batch = [
        adt("A01", "ok1", "20260101090000", "L1", "Smith", ""),
        adt("A01", "bad", "2026-01-01", "L2", "Jones", ""),
        adt("A01", "ok2", "20260101090200", "L3", "Brown", ""),
    ]
    .concat();
    let report = send(&world, &batch).await;
    assert_eq!(report.counts(), (2, 0, 1));
    let Outcome::Quarantined { id, reason } = &report.messages[1].outcome else {
        panic!("{report:?}")
    };
    assert_eq!(report.messages[1].reference.as_deref(), Some("bad"));
    assert!(reason.starts_with("EVN-2"), "{reason}");
    let kept = world
        .services
        .ports()
        .quarantine
        .get(*id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.raw,
        adt("A01", "bad", "2026-01-01", "L2", "Jones", "").as_bytes(),
        "the message's own bytes"
    );
    person(&world, "L3").await;
}

fn system_manager() -> Actor {
    Actor::new(
        UserId::parse("sm").unwrap(),
        OrganisationId::parse("DCR").unwrap(),
        Role::SystemManager,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    )
}

async fn a_quarantined_message_is_resubmitted_after_a_fix_once(world: World) {
    let bad = adt("A01", "m1", "20260101090000", "L1", "Smith", "20260101|X");
    let report = send(&world, &bad).await;
    let Outcome::Quarantined { id, reason } = &report.messages[0].outcome else {
        panic!("{report:?}")
    };
    assert!(reason.starts_with("PID-30"), "{reason}");
    let sm = system_manager();
    let listed = world
        .services
        .quarantined(
            &sm,
            &QuarantineFilter {
                source: None,
                open_only: true,
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(listed.entries.len(), 1);

    // Re-submitting it unchanged fails the same way and leaves it open.
    let again = world.services.open_resubmission(&sm, *id).await.unwrap();
    match resubmit_hl7(again, None).await {
        Err(ResubmitError::StillFailing(why)) => assert!(why.starts_with("PID-30")),
        other => panic!("{other:?}"),
    }
    // Corrected, it applies and the entry is resolved with the correction kept.
    let fixed = adt("A01", "m1", "20260101090000", "L1", "Smith", "20260101|Y");
    let open = world.services.open_resubmission(&sm, *id).await.unwrap();
    let outcome = resubmit_hl7(open, Some(fixed.clone().into_bytes()))
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    assert!(person(&world, "L1").await.death().is_some());
    let entry = world
        .services
        .ports()
        .quarantine
        .get(*id)
        .await
        .unwrap()
        .unwrap();
    let resolution = entry.resolution.unwrap();
    assert_eq!(resolution.by.as_str(), "sm");
    assert_eq!(resolution.corrected.unwrap(), fixed.into_bytes());
    assert_eq!(entry.raw, bad.into_bytes(), "the original stays");
    assert!(
        world.services.open_resubmission(&sm, *id).await.is_err(),
        "resolved entries are not re-submitted twice"
    );
    // Only the System Manager re-submits.
    let feed = World::feed(SOURCE);
    assert!(world.services.open_resubmission(&feed, *id).await.is_err());
}

async fn a_feed_account_submits_only_for_its_own_source(world: World) {
    let err = world
        .services
        .open_feed(&World::feed("gp-emis"), &SourceId::parse(SOURCE).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Forbidden(_)), "{err:?}");
}

async fn a_discharge_without_a_death_is_read_and_changes_nothing(world: World) {
    let discharge = adt("A03", "m1", "20260101090000", "L9", "Smith", "");
    let report = send(&world, &discharge).await;
    assert_eq!(report.counts(), (0, 1, 0), "{report:?}");
    assert!(
        world.with_local_id("L9").await.is_none(),
        "no empty record is made for it"
    );
    let died = adt("A03", "m2", "20260101100000", "L9", "Smith", "20260101|Y");
    assert_eq!(send(&world, &died).await.counts(), (1, 0, 0));
}

fn with_allergy(control: &str, time: &str, local: &str) -> String {
    format!(
        "{}AL1|1|DA|PEN^Penicillin|SV|Rash\r",
        adt("A08", control, time, local, "Allergic", "")
    )
}

async fn the_same_allergy_of_two_people_is_two_alerts(world: World) {
    send(&world, &with_allergy("m1", "20260101090000", "PA")).await;
    send(&world, &with_allergy("m2", "20260102090000", "PB")).await;
    for local in ["PA", "PB"] {
        let id = person(&world, local).await.id();
        let alerts = world
            .services
            .ports()
            .alerts
            .list_for_person(id)
            .await
            .unwrap();
        assert_eq!(alerts.len(), 1, "{local} keeps their own allergy alert");
    }
    // The same allergy again for the same person updates it rather than adding one.
    assert_eq!(
        send(&world, &with_allergy("m1", "20260101090000", "PA"))
            .await
            .counts(),
        (0, 1, 0)
    );
}

async fn a_message_that_sends_only_identifiers_keeps_what_the_source_said_before(world: World) {
    send(
        &world,
        &adt("A08", "m1", "20260101090000", "L1", "Smith", ""),
    )
    .await;
    let sparse = "MSH|^~\\&|PAS|RDZ|CARE|DCR|20260102090000||ADT^A08|m2|P|2.4\r\
                  EVN|A08|20260102090000\r\
                  PID|1||L1^^^RDZ^MR|||||F\r";
    assert_eq!(send(&world, sparse).await.counts(), (1, 0, 0));
    let shown = person(&world, "L1").await.resolved();
    assert_eq!(
        shown.name.unwrap().value.family(),
        "Smith",
        "the name was not sent: kept"
    );
    assert_eq!(
        shown.address.unwrap().value.postcode().unwrap().as_str(),
        "BH15 1AA"
    );
}

async fn an_explicit_null_clears_what_the_source_said_before(world: World) {
    send(
        &world,
        &adt("A08", "m1", "20260101090000", "L1", "Smith", ""),
    )
    .await;
    // `""` in PID-11 (address) and PID-8 (sex): "delete the value you hold"; PID-5 and
    // PID-7 are empty: "not sent", kept.
    let nulls = "MSH|^~\\&|PAS|RDZ|CARE|DCR|20260102090000||ADT^A08|m2|P|2.4\r\
                 EVN|A08|20260102090000\r\
                 PID|1||L1^^^RDZ^MR|||||\"\"|||\"\"\r";
    assert_eq!(send(&world, nulls).await.counts(), (1, 0, 0));
    let shown = person(&world, "L1").await.resolved();
    assert!(shown.address.is_none(), "the address was nulled: cleared");
    assert!(shown.gender.is_none(), "the sex was nulled: cleared");
    assert_eq!(
        shown.name.unwrap().value.family(),
        "Smith",
        "not sent: kept"
    );
    assert!(shown.birth_date.is_some(), "not sent: kept");

    // A null name is not an unreadable name: the message applies and clears it.
    let no_name = "MSH|^~\\&|PAS|RDZ|CARE|DCR|20260103090000||ADT^A08|m3|P|2.4\r\
                   EVN|A08|20260103090000\r\
                   PID|1||L1^^^RDZ^MR||\"\"\r";
    assert_eq!(send(&world, no_name).await.counts(), (1, 0, 0));
    let shown = person(&world, "L1").await.resolved();
    assert!(shown.name.is_none(), "the name was nulled: cleared");
    assert!(shown.birth_date.is_some(), "still kept");
}

async fn a_non_ascii_time_is_quarantined_not_a_panic(world: World) {
    let report = send(&world, &adt("A01", "m1", "2016010é1", "L1", "Smith", "")).await;
    assert_eq!(report.counts(), (0, 0, 1), "{report:?}");
}

async fn a_merge_whose_survivor_takes_the_retired_records_nhs_number_applies(world: World) {
    let nhs = care_person::NhsNumber::from_first_nine(999_000_111)
        .unwrap()
        .digits();
    // L1 holds the NHS number; L2 is known by its local id only.
    let with_nhs = adt("A01", "m1", "20260101090000", "L1", "Numbered", "")
        .replace("L1^^^RDZ^MR", &format!("L1^^^RDZ^MR~{nhs}^^^NHS^NH"));
    send(&world, &with_nhs).await;
    send(
        &world,
        &adt("A01", "m2", "20260101090000", "L2", "Local", ""),
    )
    .await;
    // The source merges L1 into L2, and says L2 now carries the NHS number.
    let a40 = format!(
        "MSH|^~\\&|PAS|RDZ|CARE|DCR|20260101100000||ADT^A40|m3|P|2.4\r\
         EVN|A40|20260101100000\r\
         PID|1||L2^^^RDZ^MR~{nhs}^^^NHS^NH||Local^Sam\r\
         MRG|L1^^^RDZ^MR\r"
    );
    assert_eq!(send(&world, &a40).await.counts(), (1, 0, 0));
    let survivor = person(&world, "L2").await;
    assert_eq!(person(&world, "L1").await.id(), survivor.id());
    assert_eq!(survivor.nhs_number().unwrap().digits(), nhs);
}

fn dpo() -> Actor {
    Actor::new(
        UserId::parse("dpo").unwrap(),
        OrganisationId::parse("DCR").unwrap(),
        Role::Dpo,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    )
}

async fn a_quarantined_message_about_an_opted_out_person_is_not_shown(world: World) {
    let nhs = care_person::NhsNumber::from_first_nine(999_000_222).unwrap();
    let numbered = |control: &str, local: &str, sex: &str| {
        adt("A01", control, "20260101090000", local, "Private", "")
            .replace(
                &format!("{local}^^^RDZ^MR"),
                &format!("{local}^^^RDZ^MR~{}^^^NHS^NH", nhs.digits()),
            )
            .replace("|19800101|F|", &format!("|19800101|{sex}|"))
    };
    assert_eq!(
        send(&world, &numbered("m1", "OPT1", "F")).await.counts(),
        (1, 0, 0)
    );
    world
        .services
        .change_consent(
            &dpo(),
            &nhs,
            care_application::ConsentCommand::OptOut {
                representative: None,
            },
            "asked by phone",
        )
        .await
        .unwrap();
    let report = send(&world, &numbered("m2", "OPT1", "Q")).await;
    let Outcome::Quarantined { id, .. } = &report.messages[0].outcome else {
        panic!("{report:?}")
    };
    let entry = world
        .services
        .ports()
        .quarantine
        .get(*id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        entry.subjects.contains(&Identifier::Nhs(nhs.clone())),
        "the NHS number is found in the message: {:?}",
        entry.subjects
    );
    let sm = system_manager();
    assert!(
        matches!(
            world.services.quarantined_message(&sm, *id).await,
            Err(care_application::AccessError::NotFound)
        ),
        "an opted-out person's message is not shown"
    );
    let listed = world
        .services
        .quarantined(&sm, &QuarantineFilter::default(), 10)
        .await
        .unwrap();
    let row = listed.entries.iter().find(|e| e.id == *id).unwrap();
    assert_eq!(row.reason, care_application::WITHHELD, "nor is its reason");
    assert!(row.subjects.is_empty());
    let resubmission = world.services.open_resubmission(&sm, *id).await.unwrap();
    assert!(
        resubmission.withheld(),
        "it may be re-submitted, but why it fails is not shown"
    );
    // A participating person's message is, and the read is audited against them.
    let other = adt("A01", "m3", "20260101090000", "OPEN1", "Open", "")
        .replace("|19800101|F|", "|19800101|Q|");
    send(
        &world,
        &adt("A01", "m0", "20260101080000", "OPEN1", "Open", ""),
    )
    .await;
    let report = send(&world, &other).await;
    let Outcome::Quarantined { id, .. } = &report.messages[0].outcome else {
        panic!("{report:?}")
    };
    let (shown, _) = world.services.quarantined_message(&sm, *id).await.unwrap();
    assert_eq!(shown.raw, other.into_bytes());
    let open = person(&world, "OPEN1").await.id();
    let head = world.services.ports().audit.head().await.unwrap();
    let events = world
        .services
        .ports()
        .audit
        .read(0, head.len as usize)
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e.event.person == Some(open)
            && e.event.action == care_kernel::Action::ReadSourceDemographics),
        "the read is in the person's audit"
    );
}

async fn an_nhs_number_named_by_its_oid_is_read_as_one(world: World) {
    let nhs = care_person::NhsNumber::from_first_nine(999_000_333).unwrap();
    let message = adt("A01", "m1", "20260101090000", "OID1", "Oid", "").replace(
        "OID1^^^RDZ^MR",
        &format!(
            "OID1^^^RDZ^MR~{}^^^&2.16.840.1.113883.2.1.4.1&ISO",
            nhs.digits()
        ),
    );
    assert_eq!(send(&world, &message).await.counts(), (1, 0, 0));
    assert_eq!(person(&world, "OID1").await.nhs_number(), Some(&nhs));
}

async fn a_bad_message_sent_again_is_the_same_quarantine_entry(world: World) {
    let bad = adt("A01", "m1", "2026-01-01", "L1", "Smith", "");
    let first = send(&world, &bad).await;
    let again = send(&world, &bad).await;
    let id = |r: &Report| match &r.messages[0].outcome {
        Outcome::Quarantined { id, .. } => *id,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        id(&first),
        id(&again),
        "a retry does not fill the quarantine"
    );
    let open = world
        .services
        .ports()
        .quarantine
        .list(
            &QuarantineFilter {
                source: None,
                open_only: true,
            },
            10,
        )
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
}

async fn a_merge_naming_a_third_records_nhs_number_is_quarantined_with_why(world: World) {
    let nhs = care_person::NhsNumber::from_first_nine(999_000_444)
        .unwrap()
        .digits();
    let with_nhs = adt("A01", "m1", "20260101090000", "T1", "Third", "")
        .replace("T1^^^RDZ^MR", &format!("T1^^^RDZ^MR~{nhs}^^^NHS^NH"));
    send(&world, &with_nhs).await;
    send(
        &world,
        &adt("A01", "m2", "20260101090000", "T2", "Second", ""),
    )
    .await;
    send(
        &world,
        &adt("A01", "m3", "20260101090000", "T3", "Gone", ""),
    )
    .await;
    let a40 = format!(
        "MSH|^~\\&|PAS|RDZ|CARE|DCR|20260101100000||ADT^A40|m4|P|2.4\r\
         EVN|A40|20260101100000\r\
         PID|1||T2^^^RDZ^MR~{nhs}^^^NHS^NH||Second^Sam\r\
         MRG|T3^^^RDZ^MR\r"
    );
    let report = send(&world, &a40).await;
    let Outcome::Quarantined { reason, .. } = &report.messages[0].outcome else {
        panic!("{report:?}")
    };
    assert!(reason.contains("belongs to another record"), "{reason}");
}

async fn a_merge_the_database_refuses_amid_a_batch_takes_nothing_with_it(world: World) {
    // As above, in one batch (one unit of work on SQLite): the refusal comes from the
    // store, after the unit has written the messages before it.
    let nhs = care_person::NhsNumber::from_first_nine(999_000_445)
        .unwrap()
        .digits();
    let batch = [
        adt("A01", "m1", "20260101090000", "T1", "Third", "")
            .replace("T1^^^RDZ^MR", &format!("T1^^^RDZ^MR~{nhs}^^^NHS^NH")),
        adt("A01", "m2", "20260101090000", "T2", "Second", ""),
        adt("A01", "m3", "20260101090000", "T3", "Gone", ""),
        format!(
            "MSH|^~\\&|PAS|RDZ|CARE|DCR|20260101100000||ADT^A40|m4|P|2.4\r\
             EVN|A40|20260101100000\r\
             PID|1||T2^^^RDZ^MR~{nhs}^^^NHS^NH||Second^Sam\r\
             MRG|T3^^^RDZ^MR\r"
        ),
        adt("A01", "m5", "20260101090000", "T5", "After", ""),
    ]
    .concat();
    let report = send(&world, &batch).await;
    assert_eq!(report.counts(), (4, 0, 1), "{report:?}");
    assert!(matches!(
        report.messages[3].outcome,
        Outcome::Quarantined { .. }
    ));
    for local in ["T1", "T2", "T3", "T5"] {
        person(&world, local).await;
    }
    assert_eq!(family(&person(&world, "T5").await), "After");
}

/// Each test above, over the in-memory adapters and over a SQLite file.
macro_rules! on_each_store {
    ($($name:ident),* $(,)?) => {
        mod in_memory {
            use super::World;
            $(#[tokio::test]
            async fn $name() {
                super::$name(World::new().await).await;
            })*
        }
        mod sqlite {
            use super::World;
            $(#[tokio::test]
            async fn $name() {
                super::$name(World::on_sqlite().await).await;
            })*
        }
    };
}

on_each_store!(
    the_same_batch_twice_changes_nothing_the_second_time,
    updates_arriving_in_reverse_order_leave_the_newest,
    after_a_merge_updates_to_the_retired_identifier_reach_the_survivor,
    a_death_stays_when_an_older_message_without_one_arrives,
    a_bad_message_in_a_batch_is_quarantined_and_the_rest_go_on,
    a_quarantined_message_is_resubmitted_after_a_fix_once,
    a_feed_account_submits_only_for_its_own_source,
    a_discharge_without_a_death_is_read_and_changes_nothing,
    the_same_allergy_of_two_people_is_two_alerts,
    a_message_that_sends_only_identifiers_keeps_what_the_source_said_before,
    an_explicit_null_clears_what_the_source_said_before,
    a_non_ascii_time_is_quarantined_not_a_panic,
    a_merge_whose_survivor_takes_the_retired_records_nhs_number_applies,
    a_quarantined_message_about_an_opted_out_person_is_not_shown,
    an_nhs_number_named_by_its_oid_is_read_as_one,
    a_bad_message_sent_again_is_the_same_quarantine_entry,
    a_merge_naming_a_third_records_nhs_number_is_quarantined_with_why,
    a_merge_the_database_refuses_amid_a_batch_takes_nothing_with_it,
);
