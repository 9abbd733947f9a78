//! The port contract suites, run against the in-memory adapters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use care_application::ItemStores;
use std::sync::Arc;

use care_in_memory::{
    InMemoryAccounts, InMemoryAlerts, InMemoryAuditLog, InMemoryConsent, InMemoryPeople,
    InMemoryQuarantine, InMemoryReferrals, InMemorySecurityLog, InMemorySessions, InMemorySources,
    ManualClock, SystemClock, UuidV7Ids,
};

#[tokio::test]
async fn people_keep_the_person_repository_contract() {
    let people = InMemoryPeople::default();
    care_contract::person_repository(&people).await;
    care_contract::person_search(&people).await;
    care_contract::person_merge(&people).await;
}

#[tokio::test]
async fn referrals_keep_the_referral_repository_contract() {
    care_contract::referral_repository(&InMemoryReferrals::default(), &InMemoryPeople::default())
        .await;
}

#[tokio::test]
async fn alerts_keep_the_alert_repository_contract() {
    care_contract::alert_repository(&InMemoryAlerts::default(), &InMemoryPeople::default()).await;
    care_contract::alerts_with_referrals(
        &InMemoryAlerts::default(),
        &InMemoryReferrals::default(),
        &InMemoryPeople::default(),
    )
    .await;
}

#[tokio::test]
async fn consent_keeps_the_consent_repository_contract() {
    care_contract::consent_repository(&InMemoryConsent::default()).await;
    care_contract::person_with_consent(&InMemoryPeople::default(), &InMemoryConsent::default())
        .await;
    care_contract::person_with_items(
        &InMemoryPeople::default(),
        ItemStores {
            consent: &InMemoryConsent::default(),
            alerts: Some(&InMemoryAlerts::default()),
            referrals: Some(&InMemoryReferrals::default()),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_log_keeps_the_audit_log_contract() {
    care_contract::audit_log(Arc::new(InMemoryAuditLog::default())).await;
}

#[tokio::test]
async fn sources_keep_the_source_registry_contract() {
    care_contract::source_registry(&InMemorySources::default()).await;
}

#[tokio::test]
async fn the_quarantine_keeps_the_quarantine_store_contract() {
    care_contract::quarantine_store(&InMemoryQuarantine::default(), &InMemorySources::default())
        .await;
}

#[tokio::test]
async fn units_of_work_keep_the_unit_of_work_contract() {
    let ports = care_in_memory::in_memory_ports(
        Arc::new(care_in_memory::SpecPolicy::default()),
        Arc::new(SystemClock),
    );
    care_contract::unit_of_work(ports.units.as_ref(), &ports.feed_stores()).await;
    care_contract::feed_stores_in_a_unit(ports.units.as_ref(), &ports.feed_stores()).await;
}

#[tokio::test]
async fn accounts_keep_the_account_store_contract() {
    care_contract::account_store(&InMemoryAccounts::default()).await;
}

#[tokio::test]
async fn sessions_keep_the_session_store_contract() {
    care_contract::session_store(&InMemorySessions::default(), &InMemoryAccounts::default()).await;
}

#[tokio::test]
async fn the_security_log_keeps_the_security_log_contract() {
    care_contract::security_log(&InMemorySecurityLog::default()).await;
}

#[test]
fn clocks_and_ids_keep_their_contracts() {
    care_contract::clock(&SystemClock);
    care_contract::clock(&ManualClock::new(chrono::DateTime::UNIX_EPOCH));
    care_contract::id_generator(&UuidV7Ids);
}
