//! The nightly CSV batch through the feed pipeline, on the in-memory adapters: a bad row
//! in the middle is quarantined (line, column, raw bytes) while the rest is applied;
//! the same file twice changes nothing; an older row never overwrites a newer one; a
//! quarantined row, corrected, is re-submitted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use care_application::{QuarantineFilter, QuarantinedMessage, Services, SourceInfo};
use care_feeds::Intake;
use care_feeds::csv::{CsvKind, CsvSummary, ingest_csv, resubmit_csv};
use care_feeds::intake::ResubmitError;
use care_in_memory::{ManualClock, SpecPolicy, in_memory_ports};
use care_kernel::{
    Actor, OrganisationId, Role, Source, SourceId, SourceKind, Timestamp, UpdateOutcome, UserId,
};
use care_referral::{Referral, ReferralStatus};

const COUNCIL: &str = "council-dc";
const REFERRALS: &str = "referral_id,nhs_number,local_id,received_date,team,referral_source,status,closed_date,involvement,updated_at";

fn actor(role: Role) -> Actor {
    Actor::new(
        UserId::parse("batch").unwrap(),
        OrganisationId::parse(COUNCIL).unwrap(),
        role,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
}

async fn services() -> Services {
    let clock = Arc::new(ManualClock::new(
        Timestamp::from_timestamp(1_790_000_000, 0).unwrap(),
    ));
    let services = Services::new(in_memory_ports(Arc::new(SpecPolicy::default()), clock));
    services
        .ports()
        .sources
        .register(&SourceInfo::new(
            Source::new(SourceId::parse(COUNCIL).unwrap(), SourceKind::SocialCare),
            "Dorset Council children's social care",
            Duration::from_secs(26 * 3600),
        ))
        .await
        .unwrap();
    services
}

async fn load(services: &Services, kind: CsvKind, text: &str) -> CsvSummary {
    let source = SourceId::parse(COUNCIL).unwrap();
    let session = services
        .open_feed(&actor(Role::Feed).with_feed_source(source.clone()), &source)
        .await
        .unwrap();
    let mut last = 0;
    let summary = ingest_csv(&Intake::new(session), kind, text.as_bytes(), |bytes| {
        assert!(bytes >= last, "progress only goes forward");
        last = bytes;
    })
    .await
    .unwrap();
    assert_eq!(
        last,
        text.len() as u64,
        "progress ends at the file's length"
    );
    summary
}

async fn referral(services: &Services, reference: &str) -> Referral {
    services
        .ports()
        .referrals
        .find_by_source_ref(&SourceId::parse(COUNCIL).unwrap(), reference)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("referral {reference} was not stored"))
}

async fn quarantine(services: &Services) -> Vec<QuarantinedMessage> {
    let store = &services.ports().quarantine;
    let mut entries = Vec::new();
    for summary in store.list(&QuarantineFilter::default(), 100).await.unwrap() {
        entries.push(store.get(summary.id).await.unwrap().unwrap());
    }
    entries
}

fn counts(summary: &CsvSummary) -> (u64, u64, u64, u64) {
    (
        summary.read,
        summary.applied,
        summary.unchanged,
        summary.quarantined,
    )
}

const BAD_ROW: &str = "R3,9434765919,C-3,2026-01-05,MASH,police,opne,,,2026-01-06T10:00:00Z";

fn file_with_a_bad_row_in_the_middle() -> String {
    format!(
        "{REFERRALS}\r\n\
         R1,,C-1,2026-01-05,\"MASH, north\",school,accepted,,child_in_need,2026-01-06T10:00:00Z\r\n\
         R2,,C-2,2026-01-05,\"Early help\nhub\",self,awaiting_decision,,,2026-01-06T10:00:00Z\r\n\
         {BAD_ROW}\r\n\
         R4,,C-4,2026-01-05,MASH,health_visitor,closed_no_further_action,2026-01-07,,2026-01-07T10:00:00Z\r\n\
         R5,,C-1,2026-01-09,MASH,family,accepted,,early_help,2026-01-09T10:00:00Z\r\n"
    )
}

#[tokio::test]
async fn a_bad_row_is_quarantined_with_its_line_column_and_bytes_and_the_rest_is_applied() {
    let services = services().await;
    let summary = load(
        &services,
        CsvKind::Referrals,
        &file_with_a_bad_row_in_the_middle(),
    )
    .await;
    assert_eq!(counts(&summary), (5, 4, 0, 1));
    for (reference, status) in [
        ("R1", ReferralStatus::Accepted),
        ("R2", ReferralStatus::AwaitingDecision),
        ("R4", ReferralStatus::ClosedNoFurtherAction),
        ("R5", ReferralStatus::Accepted),
    ] {
        assert_eq!(
            referral(&services, reference).await.details().status(),
            status
        );
    }
    // R1 and R5 name the same client: one person.
    assert_eq!(
        referral(&services, "R1").await.person(),
        referral(&services, "R5").await.person()
    );

    // The quoted line break makes R2 two lines: R3 is on line 5.
    let entries = quarantine(&services).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.reference.as_deref(), Some("line 5"));
    assert!(
        entry.reason.starts_with(
            r#"line 5, column status: "opne" is not one of awaiting_decision, accepted,"#
        ),
        "{}",
        entry.reason
    );
    assert_eq!(entry.raw, format!("{REFERRALS}\n{BAD_ROW}").as_bytes());
    assert_eq!(summary.first_quarantined[0].id, entry.id);
    assert_eq!(summary.first_quarantined[0].line, 5);

    // The source's counts say the same.
    let info = services
        .ports()
        .sources
        .get(&SourceId::parse(COUNCIL).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.applied, info.unchanged, info.quarantined), (4, 0, 1));
}

#[tokio::test]
async fn a_quarantined_row_is_resubmitted_once_corrected() {
    let services = services().await;
    load(
        &services,
        CsvKind::Referrals,
        &file_with_a_bad_row_in_the_middle(),
    )
    .await;
    let id = quarantine(&services).await[0].id;
    let manager = actor(Role::SystemManager);

    // As it was, it still fails, and the entry stays open.
    let again = services.open_resubmission(&manager, id).await.unwrap();
    match resubmit_csv(again, None).await {
        Err(ResubmitError::StillFailing(reason)) => {
            assert!(reason.contains("column status"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    let corrected = format!("{REFERRALS}\n{}", BAD_ROW.replace("opne", "accepted"));
    let resubmission = services.open_resubmission(&manager, id).await.unwrap();
    let outcome = resubmit_csv(resubmission, Some(corrected.clone().into_bytes()))
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Applied);
    let stored = referral(&services, "R3").await;
    assert_eq!(stored.details().status(), ReferralStatus::Accepted);
    let entry = services.ports().quarantine.get(id).await.unwrap().unwrap();
    let resolution = entry.resolution.unwrap();
    assert_eq!(resolution.corrected.unwrap(), corrected.as_bytes());
    assert_eq!(
        entry.raw,
        format!("{REFERRALS}\n{BAD_ROW}").as_bytes(),
        "the row as received is kept"
    );
}

#[tokio::test]
async fn the_same_file_twice_changes_nothing_the_second_time() {
    let services = services().await;
    let file = file_with_a_bad_row_in_the_middle();
    let first = load(&services, CsvKind::Referrals, &file).await;
    assert_eq!(counts(&first), (5, 4, 0, 1));
    let mut before = Vec::new();
    for reference in ["R1", "R2", "R4", "R5"] {
        let r = referral(&services, reference).await;
        before.push((r.id(), r.person(), r.version()));
    }
    let second = load(&services, CsvKind::Referrals, &file).await;
    // The bad row is bad again (and quarantined again: each delivery is kept).
    assert_eq!(counts(&second), (5, 0, 4, 1));
    let mut after = Vec::new();
    for reference in ["R1", "R2", "R4", "R5"] {
        let r = referral(&services, reference).await;
        after.push((r.id(), r.person(), r.version()));
    }
    assert_eq!(after, before, "nothing was written again");
}

#[tokio::test]
async fn an_older_row_never_overwrites_a_newer_one_whatever_the_order_in_the_file() {
    let services = services().await;
    let file = format!(
        "{REFERRALS}\n\
         R1,,C-1,2026-01-05,MASH,school,closed_transferred,2026-02-01,,2026-02-01T09:00:00Z\n\
         R1,,C-1,2026-01-05,MASH,school,accepted,,child_in_need,2026-01-10T09:00:00Z\n\
         R1,,C-1,2026-01-05,MASH,school,awaiting_decision,,,2026-01-05T09:00:00Z\n\
         R2,,C-2,2026-01-05,MASH,school,awaiting_decision,,,2026-01-05T09:00:00Z\n\
         R2,,C-2,2026-01-05,Child protection,school,accepted,,child_protection_plan,2026-01-12T09:00:00+00:00\n\
         R2,,C-2,2026-01-05,MASH,school,accepted,,,2026-01-12T08:00:00Z\n"
    );
    let summary = load(&services, CsvKind::Referrals, &file).await;
    assert_eq!(counts(&summary), (6, 3, 3, 0));
    let r1 = referral(&services, "R1").await;
    assert_eq!(r1.details().status(), ReferralStatus::ClosedTransferred);
    assert_eq!(r1.source_time().to_rfc3339(), "2026-02-01T09:00:00+00:00");
    let r2 = referral(&services, "R2").await;
    assert_eq!(r2.details().team(), "Child protection");
    assert_eq!(r2.source_time().to_rfc3339(), "2026-01-12T09:00:00+00:00");
}

#[tokio::test]
async fn alerts_load_the_same_way() {
    let services = services().await;
    let file = "alert_id,nhs_number,local_id,category,description,severity,recorded_date,active_from,active_to,updated_at\n\
                A1,9434765919,C-1,environmental_hazard,\"Dangerous dog; visit in pairs\",high,2026-03-01,,,2026-03-01T09:00:00Z\n\
                A2,,C-2,safeguarding,Known to MASH,,2026-03-01,2026-03-02,,2026-03-01T09:00:00Z\n\
                A3,,C-2,alergy,Nuts,,2026-03-01,,,2026-03-01T09:00:00Z\n";
    let summary = load(&services, CsvKind::Alerts, file).await;
    assert_eq!(counts(&summary), (3, 2, 0, 1));
    let entry = &quarantine(&services).await[0];
    assert_eq!(
        entry.format,
        care_application::FeedFormat::CsvAlerts,
        "filed as an alerts row"
    );
    assert!(
        entry
            .reason
            .starts_with(r#"line 4, column category: "alergy""#),
        "{}",
        entry.reason
    );
    let a1 = services
        .ports()
        .alerts
        .find_by_source_ref(&SourceId::parse(COUNCIL).unwrap(), "A1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a1.details().description(), "Dangerous dog; visit in pairs");
}

#[tokio::test]
async fn a_bad_header_stops_the_file_before_any_row() {
    let services = services().await;
    let source = SourceId::parse(COUNCIL).unwrap();
    let session = services
        .open_feed(&actor(Role::Feed).with_feed_source(source.clone()), &source)
        .await
        .unwrap();
    let file = format!(
        "{}\nR1,,C-1,2026-01-05,MASH,school,accepted,,,2026-01-06T10:00:00Z\n",
        REFERRALS.replace("status", "state")
    );
    let error = ingest_csv(
        &Intake::new(session),
        CsvKind::Referrals,
        file.as_bytes(),
        |_| {},
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains(r#"unknown column "state""#)
            && error.contains(r#"missing column(s) "status""#),
        "{error}"
    );
    assert!(quarantine(&services).await.is_empty());
    let r1 = services
        .ports()
        .referrals
        .find_by_source_ref(&source, "R1")
        .await
        .unwrap();
    assert!(r1.is_none(), "no row was applied");
}
