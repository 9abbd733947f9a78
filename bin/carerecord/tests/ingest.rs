//! `carerecord ingest` end to end on temporary SQLite files: a clean load, a load with a
//! bad row (quarantined, the command fails), an unregistered source, and a load killed
//! midway then run again, which must end exactly where a clean load ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use care_application::SourceRegistry;
use care_persistence::{Database, SqlSources};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

const COUNCIL: &str = "council-bcp";
const HEADER: &str = "referral_id,nhs_number,local_id,received_date,team,referral_source,status,closed_date,involvement,updated_at";

fn carerecord(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carerecord"))
        .env("CARE_DATABASE_URL", url)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ingest(url: &str, file: &Path) -> Output {
    carerecord(
        url,
        &[
            "ingest",
            "--source",
            COUNCIL,
            "--kind",
            "referrals",
            file.to_str().unwrap(),
        ],
    )
}

/// A migrated database file in `dir` with the synthetic sources registered (as `seed`
/// and `demo` register them).
async fn database(dir: &Path, name: &str) -> (String, Database) {
    let url = format!("sqlite://{}", dir.join(name).display());
    let db = Database::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let sources = SqlSources::new(db.clone());
    for source in care_synthetic::sources().unwrap() {
        sources.register(&source).await.unwrap();
    }
    (url, db)
}

async fn count(db: &Database, sql: &str) -> i64 {
    let row = db
        .connection()
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// Every referral by its source reference, with what it says and its source time, and
/// how many people there are: what two loads of one file must agree on.
async fn end_state(db: &Database) -> (Vec<(String, String, String)>, i64, i64) {
    let rows = db
        .connection()
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT source_ref, body FROM referrals ORDER BY source_ref",
        ))
        .await
        .unwrap();
    let referrals = rows
        .iter()
        .map(|row| {
            let reference: String = row.try_get_by_index(0).unwrap();
            let body: String = row.try_get_by_index(1).unwrap();
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(body["details"].is_object(), "{body}");
            (
                reference,
                body["details"].to_string(),
                body["source_time"].to_string(),
            )
        })
        .collect();
    (
        referrals,
        count(db, "SELECT count(*) FROM people").await,
        count(db, "SELECT count(*) FROM person_identifiers").await,
    )
}

#[tokio::test]
async fn a_clean_load_applies_every_row_and_a_second_load_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = database(dir.path(), "care.db").await;
    let file = dir.path().join("referrals.csv");
    let written = carerecord(
        &url,
        &[
            "ingest",
            "--source",
            COUNCIL,
            "--kind",
            "referrals",
            "--write-synthetic",
            "500",
            file.to_str().unwrap(),
        ],
    );
    assert!(written.status.success(), "{}", text(&written));

    let first = ingest(&url, &file);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("read 500 rows")
            && text(&first).contains("500 applied, 0 unchanged, 0 quarantined"),
        "{}",
        text(&first)
    );
    // Every fifth row restates the one before it: 400 referrals.
    assert_eq!(count(&db, "SELECT count(*) FROM referrals").await, 400);

    let second = ingest(&url, &file);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("0 applied, 500 unchanged, 0 quarantined"),
        "{}",
        text(&second)
    );
}

#[tokio::test]
async fn a_quarantined_row_fails_the_command_after_the_rest_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = database(dir.path(), "care.db").await;
    let file = dir.path().join("referrals.csv");
    std::fs::write(
        &file,
        format!(
            "{HEADER}\n\
             R1,,C-1,2026-01-05,MASH,school,accepted,,,2026-01-06T10:00:00Z\n\
             R2,,C-2,2026-01-05,MASH,school,opne,,,2026-01-06T10:00:00Z\n\
             R3,,C-3,2026-01-05,MASH,school,accepted,,,2026-01-06T10:00:00Z\n"
        ),
    )
    .unwrap();
    let out = ingest(&url, &file);
    assert!(!out.status.success(), "a quarantined row fails the command");
    let said = text(&out);
    assert!(
        said.contains("2 applied, 0 unchanged, 1 quarantined"),
        "{said}"
    );
    assert!(
        said.contains(r#"line 3, column status: "opne" is not one of"#),
        "{said}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM referrals").await, 2);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM quarantine WHERE format = 'csv_referrals' AND reference = 'line 3'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn an_unregistered_source_or_a_bad_header_is_refused_before_any_row() {
    let dir = tempfile::tempdir().unwrap();
    let (url, db) = database(dir.path(), "care.db").await;
    let file = dir.path().join("referrals.csv");
    std::fs::write(
        &file,
        format!("{HEADER}\nR1,,C-1,2026-01-05,MASH,school,accepted,,,2026-01-06T10:00:00Z\n"),
    )
    .unwrap();
    let out = carerecord(
        &url,
        &[
            "ingest",
            "--source",
            "council-elsewhere",
            "--kind",
            "referrals",
            file.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("source council-elsewhere is not registered"),
        "{}",
        text(&out)
    );
    let alerts = carerecord(
        &url,
        &[
            "ingest",
            "--source",
            COUNCIL,
            "--kind",
            "alerts",
            file.to_str().unwrap(),
        ],
    );
    assert!(!alerts.status.success());
    assert!(
        text(&alerts).contains(r#"unknown column "referral_id""#),
        "{}",
        text(&alerts)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM referrals").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM quarantine").await, 0);
}

/// The slow one: 20,000 rows (16,000 referrals), killed midway, loaded again; compared with a clean load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_killed_midway_and_run_again_ends_as_a_clean_load_does() {
    let dir = tempfile::tempdir().unwrap();
    let (killed_url, killed_db) = database(dir.path(), "killed.db").await;
    let (clean_url, clean_db) = database(dir.path(), "clean.db").await;
    let file = dir.path().join("referrals.csv");
    let written = carerecord(
        &killed_url,
        &[
            "ingest",
            "--source",
            COUNCIL,
            "--kind",
            "referrals",
            "--write-synthetic",
            "20000",
            file.to_str().unwrap(),
        ],
    );
    assert!(written.status.success(), "{}", text(&written));

    let load = |url: &str| {
        Command::new(env!("CARGO_BIN_EXE_carerecord"))
            .env("CARE_DATABASE_URL", url)
            .args([
                "ingest",
                "--source",
                COUNCIL,
                "--kind",
                "referrals",
                file.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The clean load runs beside the other (each waits on its own disk flushes).
    let clean_load = load(&clean_url);
    let mut child = load(&killed_url);
    // Kill it once it has written a few thousand referrals (and well before the end).
    let started = Instant::now();
    loop {
        let written = count(&killed_db, "SELECT count(*) FROM referrals").await;
        if written >= 3_000 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load ended before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the load made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = count(&killed_db, "SELECT count(*) FROM referrals").await;
    assert!(
        partial < 16_000,
        "killed midway: {partial} referrals of 16,000"
    );

    let again = ingest(&killed_url, &file);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("read 20000 rows") && text(&again).contains(" 0 quarantined"),
        "{}",
        text(&again)
    );
    let clean = clean_load.wait_with_output().unwrap();
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(
        text(&clean).contains("20000 applied, 0 unchanged, 0 quarantined"),
        "{}",
        text(&clean)
    );

    let (killed, clean) = (end_state(&killed_db).await, end_state(&clean_db).await);
    assert_eq!(killed.0.len(), 16_000);
    assert_eq!(killed.1, clean.1, "people");
    assert_eq!(killed.2, clean.2, "identifiers");
    assert!(killed.0 == clean.0, "the referrals differ");
    assert_eq!(
        count(&killed_db, "SELECT count(*) FROM quarantine").await,
        0
    );
}
