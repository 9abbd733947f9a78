//! The `carerecord` binary end to end, on a temporary SQLite file: migrate, seed and
//! verify-audit, including a row edited behind the application's back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use care_persistence::Database;
use sea_orm::ConnectionTrait;

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

#[tokio::test]
async fn verify_audit_names_the_first_event_edited_directly_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("care.db").display());

    let migrated = carerecord(&url, &["migrate"]);
    assert!(migrated.status.success(), "{}", text(&migrated));
    let seeded = carerecord(
        &url,
        &[
            "seed",
            "--people",
            "200",
            "--seed",
            "4",
            "--as-of",
            "2026-11-25",
        ],
    );
    assert!(seeded.status.success(), "{}", text(&seeded));
    assert!(
        text(&seeded).contains("seeded 200 people"),
        "{}",
        text(&seeded)
    );
    // Each source is noted as having sent the seeded data, at its latest statement.
    {
        let db = Database::connect(&url).await.unwrap();
        let silent = db
            .connection()
            .query_one_raw(sea_orm::Statement::from_string(
                db.connection().get_database_backend(),
                "SELECT count(*) AS n FROM sources WHERE last_message_at IS NULL OR applied = 0",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(silent, 0, "a seeded source shows as silent");
    }
    let again = carerecord(&url, &["seed", "--people", "10", "--seed", "5"]);
    assert!(
        !again.status.success(),
        "seed refuses a database that holds people"
    );
    assert!(
        text(&again).contains("already holds people"),
        "{}",
        text(&again)
    );

    // Each verification appends its own event first: after three runs the chain has
    // three events, and each run verified all there were.
    for expected in 1..=3 {
        let ok = carerecord(&url, &["verify-audit"]);
        assert!(ok.status.success(), "{}", text(&ok));
        assert!(
            text(&ok).contains(&format!("verified: {expected} events")),
            "{}",
            text(&ok)
        );
    }

    // Someone with the database file drops the guard and edits event 1.
    let db = Database::connect(&url).await.unwrap();
    let conn = db.connection();
    assert!(
        conn.execute_unprepared(
            "UPDATE audit_events SET event = replace(event, 'LOCAL', 'ELSEWHERE') WHERE seq = 1"
        )
        .await
        .is_err(),
        "the database refuses to edit audit events"
    );
    conn.execute_unprepared("DROP TRIGGER audit_events_no_update")
        .await
        .unwrap();
    conn.execute_unprepared(
        "UPDATE audit_events SET event = replace(event, 'LOCAL', 'ELSEWHERE') WHERE seq = 1",
    )
    .await
    .unwrap();
    drop(db);

    let broken = carerecord(&url, &["verify-audit"]);
    assert!(!broken.status.success(), "a broken chain fails the command");
    assert!(
        text(&broken).contains("broken at event 1"),
        "{}",
        text(&broken)
    );
}

#[test]
fn an_unreadable_policy_file_is_named_and_fails_the_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_carerecord"))
        .args([
            "policy",
            "--model",
            "/nonexistent/model.conf",
            "--policy",
            "/nonexistent/policy.csv",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot read /nonexistent/model.conf"),
        "{}",
        text(&out)
    );
}
