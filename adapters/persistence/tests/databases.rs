//! The port contract suites and the audit chain's database guarantees, on SQLite (a
//! temporary file) and on PostgreSQL (the database named by `CARE_TEST_POSTGRES_URL`;
//! `.ci/run` creates a fresh one per run). One test per database runs everything in
//! order on one connection pool.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use care_access_audit::{AuditEvent, ChainBreak, ChainVerifier, Outcome};
use care_application::{AuditLog, ItemStores, SecurityEvent, SecurityEventKind, SecurityLog};
use care_kernel::{Action, OrganisationId, PersonId, Purpose, Role, Timestamp, UserId};
use care_persistence::{
    Database, SqlAccounts, SqlAlerts, SqlAuditLog, SqlConsent, SqlPeople, SqlQuarantine,
    SqlReferrals, SqlSecurityLog, SqlSessions, SqlSources,
};
use sea_orm::{ConnectionTrait, DbBackend};

const POSTGRES_URL: &str = "CARE_TEST_POSTGRES_URL";

/// The application's ports over a database: the SPEC policy, the system clock, v7 ids.
fn ports_of(db: &Database) -> care_application::Ports {
    db.ports(
        Arc::new(care_in_memory::SpecPolicy::default()),
        Arc::new(care_in_memory::SystemClock),
        Arc::new(care_in_memory::UuidV7Ids),
    )
}

/// A migrated SQLite file `name` in `dir` (batch pool shape).
async fn migrated_sqlite(dir: &tempfile::TempDir, name: &str) -> Database {
    let url = format!("sqlite://{}", dir.path().join(name).display());
    let db = Database::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    db
}

async fn contracts(db: &Database) {
    let people = SqlPeople::new(db.clone());
    care_contract::person_repository(&people).await;
    care_contract::person_search(&people).await;
    care_contract::person_merge(&people).await;
    care_contract::referral_repository(&SqlReferrals::new(db.clone()), &people).await;
    care_contract::alert_repository(&SqlAlerts::new(db.clone()), &people).await;
    care_contract::alerts_with_referrals(
        &SqlAlerts::new(db.clone()),
        &SqlReferrals::new(db.clone()),
        &people,
    )
    .await;
    care_contract::consent_repository(&SqlConsent::new(db.clone())).await;
    care_contract::person_with_consent(&people, &SqlConsent::new(db.clone())).await;
    care_contract::person_with_items(
        &people,
        ItemStores {
            consent: &SqlConsent::new(db.clone()),
            alerts: Some(&SqlAlerts::new(db.clone())),
            referrals: Some(&SqlReferrals::new(db.clone())),
        },
    )
    .await;
    care_contract::source_registry(&SqlSources::new(db.clone())).await;
    care_contract::quarantine_store(
        &SqlQuarantine::new(db.clone()),
        &SqlSources::new(db.clone()),
    )
    .await;
    let ports = ports_of(db);
    care_contract::unit_of_work(ports.units.as_ref(), &ports.feed_stores()).await;
    care_contract::feed_stores_in_a_unit(ports.units.as_ref(), &ports.feed_stores()).await;
    care_contract::audit_log(Arc::new(SqlAuditLog::new(db.clone()))).await;
    let accounts = SqlAccounts::new(db.clone());
    care_contract::account_store(&accounts).await;
    care_contract::session_store(&SqlSessions::new(db.clone()), &accounts).await;
    care_contract::security_log(&SqlSecurityLog::new(db.clone())).await;
    // The stores `identity_stores` hands out are the same adapters.
    let (accounts, sessions, security) = db.identity_stores();
    care_contract::account_store(accounts.as_ref()).await;
    care_contract::session_store(sessions.as_ref(), accounts.as_ref()).await;
    care_contract::security_log(security.as_ref()).await;
}

fn event(n: i64) -> AuditEvent {
    AuditEvent {
        at: Timestamp::from_timestamp(1_760_000_000 + n, 123_456_789).unwrap(),
        user: UserId::parse("u9").unwrap(),
        organisation: OrganisationId::parse("RDZ").unwrap(),
        role: Role::Gp,
        client: IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7)),
        action: Action::ReadGpSummary,
        person: Some(PersonId::from_uuid(uuid::Uuid::new_v4())),
        resource: Some("gp_summary".into()),
        purpose: Purpose::Other("death-review".into()),
        basis: None,
        outcome: Outcome::Denied(care_kernel::DenyReason::PurposeNotDirectCare),
    }
}

async fn verify(log: &dyn AuditLog) -> Result<u64, ChainBreak> {
    let head = log.head().await.unwrap();
    let mut verifier = ChainVerifier::new();
    let mut next = 0;
    while next < head.len {
        let page = log.read(next, 1000).await.unwrap();
        if page.is_empty() {
            break;
        }
        for e in &page {
            verifier.push(e)?;
            next += 1;
        }
    }
    verifier.finish(&head).map(|v| v.len)
}

/// Two app servers (two pools) appending at once still build one valid chain, and the
/// chain survives reconnecting.
async fn two_servers_one_chain(url: &str) {
    let a = Database::connect(url).await.unwrap();
    let b = Database::connect(url).await.unwrap();
    let logs = [Arc::new(SqlAuditLog::new(a)), Arc::new(SqlAuditLog::new(b))];
    let start = logs[0].head().await.unwrap().len;
    // Taking turns: each server's next batch must chain on the head the other one
    // moved, not on one it remembers.
    for n in 0..4 {
        let chained = logs[n % 2]
            .append(vec![event(-1 - n as i64)])
            .await
            .unwrap();
        assert_eq!(
            chained[0].seq,
            start + n as u64,
            "one chain, no gap or fork"
        );
    }
    let start = start + 4;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let log = Arc::clone(&logs[i % 2]);
            tokio::spawn(async move {
                for j in 0..20 {
                    log.append(vec![event(i as i64 * 1000 + j)]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let reopened = SqlAuditLog::new(Database::connect(url).await.unwrap());
    let len = verify(&reopened).await.unwrap();
    assert_eq!(len, start + 160);
}

/// The database refuses to change audit events; someone who gets past that (a DBA
/// dropping the trigger) is caught by verification at the first bad position.
async fn tampering_is_refused_and_found(db: &Database) {
    let conn = db.connection();
    let log = SqlAuditLog::new(db.clone());
    log.append((0..5).map(event).collect()).await.unwrap();
    let head = log.head().await.unwrap();
    let target = head.len - 3;
    let edit = format!(
        "UPDATE audit_events SET event = replace(event, 'RDZ', 'XXX') WHERE seq = {target}"
    );
    let delete = format!("DELETE FROM audit_events WHERE seq = {}", target + 1);
    assert!(
        conn.execute_unprepared(&edit).await.is_err(),
        "updates are refused"
    );
    assert!(
        conn.execute_unprepared(&delete).await.is_err(),
        "deletes are refused"
    );
    let replace = match db.backend() {
        DbBackend::Postgres => format!(
            "INSERT INTO audit_events (seq, at, person_id, event, prev_hash, hash) \
             SELECT seq, at, person_id, event, prev_hash, hash FROM audit_events WHERE seq = {target} \
             ON CONFLICT (seq) DO UPDATE SET event = excluded.event"
        ),
        _ => format!(
            "INSERT OR REPLACE INTO audit_events (seq, at, person_id, event, prev_hash, hash) \
             SELECT seq, at, person_id, event, prev_hash, hash FROM audit_events WHERE seq = {target}"
        ),
    };
    assert!(
        conn.execute_unprepared(&replace).await.is_err(),
        "replacing an event is refused"
    );
    assert!(
        conn.execute_unprepared("UPDATE audit_head SET len = len - 1")
            .await
            .is_err(),
        "the head never moves back"
    );
    assert!(
        conn.execute_unprepared("DELETE FROM audit_head")
            .await
            .is_err(),
        "the head is kept"
    );
    assert_eq!(verify(&log).await, Ok(head.len));

    match db.backend() {
        DbBackend::Postgres => conn
            .execute_unprepared("ALTER TABLE audit_events DISABLE TRIGGER USER")
            .await
            .unwrap(),
        _ => conn
            .execute_unprepared(
                "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete",
            )
            .await
            .unwrap(),
    };
    conn.execute_unprepared(&edit).await.unwrap();
    assert_eq!(
        verify(&log).await,
        Err(ChainBreak::Altered { position: target })
    );
    conn.execute_unprepared(&delete).await.unwrap();
    let err = verify(&log).await.unwrap_err();
    assert_eq!(
        err.position(),
        target,
        "the first bad event is still the edited one"
    );
}

/// The database refuses to change or remove security events, whoever asks.
async fn security_events_are_append_only(db: &Database) {
    let conn = db.connection();
    let log = SqlSecurityLog::new(db.clone());
    let kept = SecurityEvent {
        at: Timestamp::from_timestamp_micros(1_760_000_000_123_456).unwrap(),
        kind: SecurityEventKind::SignInFailed,
        user: Some(UserId::parse("tamper.target").unwrap()),
        client: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
        detail: Some("wrong password".into()),
    };
    log.append(&kept).await.unwrap();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            db.backend(),
            "SELECT MAX(id) FROM security_events",
        ))
        .await
        .unwrap()
        .unwrap();
    let id: i64 = row.try_get_by_index(0).unwrap();
    let attempts = [
        format!("UPDATE security_events SET detail = 'nothing happened' WHERE id = {id}"),
        format!("UPDATE security_events SET kind = 'sign_in_succeeded' WHERE id = {id}"),
        "UPDATE security_events SET user_id = NULL".to_owned(),
        format!("DELETE FROM security_events WHERE id = {id}"),
        "DELETE FROM security_events".to_owned(),
        match db.backend() {
            DbBackend::Postgres => format!(
                "INSERT INTO security_events (id, at, kind, user_id, client, detail) \
                 OVERRIDING SYSTEM VALUE \
                 SELECT id, at, kind, user_id, client, 'replaced' FROM security_events WHERE id = {id} \
                 ON CONFLICT (id) DO UPDATE SET detail = excluded.detail"
            ),
            _ => format!(
                "INSERT OR REPLACE INTO security_events (id, at, kind, user_id, client, detail) \
                 SELECT id, at, kind, user_id, client, 'replaced' FROM security_events WHERE id = {id}"
            ),
        },
    ];
    for sql in &attempts {
        assert!(
            conn.execute_unprepared(sql).await.is_err(),
            "refused by the database: {sql}"
        );
    }
    if db.backend() == DbBackend::Postgres {
        assert!(
            conn.execute_unprepared("TRUNCATE security_events")
                .await
                .is_err(),
            "truncation is refused"
        );
    }
    assert_eq!(
        log.recent(1).await.unwrap(),
        vec![kept.clone()],
        "the event is as appended"
    );
    assert_eq!(
        log.count(
            kept.user.as_ref().unwrap(),
            SecurityEventKind::SignInFailed,
            kept.at
        )
        .await
        .unwrap(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_adapters_keep_every_port_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("care.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let url = format!("sqlite://{}", path.display());
    let db = Database::connect(&url).await.unwrap();
    assert!(path.exists(), "a missing database file is created");
    db.migrate().await.unwrap();
    db.migrate().await.unwrap(); // idempotent
    let mode = db
        .connection()
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode.try_get_by_index::<String>(0).unwrap(), "wal");
    contracts(&db).await;
    security_events_are_append_only(&db).await;
    two_servers_one_chain(&url).await;
    tampering_is_refused_and_found(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_adapters_keep_every_port_contract() {
    let Ok(url) = std::env::var(POSTGRES_URL) else {
        eprintln!(
            "PostgreSQL tests skipped: set {POSTGRES_URL} to a fresh database (bash .ci/run does)"
        );
        return;
    };
    eprintln!(
        "PostgreSQL tests running against {}",
        url.split('@').next_back().unwrap_or("")
    );
    let db = Database::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    db.migrate().await.unwrap();
    assert_eq!(db.backend(), DbBackend::Postgres);
    contracts(&db).await;
    security_events_are_append_only(&db).await;
    // Under a server default of REPEATABLE READ, a second server's `FOR UPDATE` on the
    // audit head would fail rather than wait: each write transaction asks for READ
    // COMMITTED.
    set_default_isolation(&db, Some("repeatable read")).await;
    two_servers_one_chain(&url).await;
    set_default_isolation(&db, None).await;
    a_dropped_transaction_lets_go_of_its_locks(&url).await;
    tampering_is_refused_and_found(&db).await;
}

/// A transaction dropped without a commit (a request cancelled mid-write) lets go of its
/// locks at once: the pool flushes its queued `ROLLBACK` when it takes the connection
/// back (sqlx pings every connection it takes back; a change that skips that ping must
/// keep this).
async fn a_dropped_transaction_lets_go_of_its_locks(url: &str) {
    use sea_orm::TransactionTrait;
    let lock = "SELECT len FROM audit_head WHERE id = 1 FOR UPDATE";
    let (a, b) = (
        Database::connect(url).await.unwrap(),
        Database::connect(url).await.unwrap(),
    );
    let dropped = a.connection().begin().await.unwrap();
    dropped.execute_unprepared(lock).await.unwrap();
    drop(dropped);
    let other = b.connection().begin().await.unwrap();
    other
        .execute_unprepared("SET LOCAL lock_timeout = '5s'")
        .await
        .unwrap();
    other
        .execute_unprepared(lock)
        .await
        .expect("the dropped transaction still holds the audit head's lock");
    other.rollback().await.unwrap();
}

/// Sets the database's default isolation level (`None`: back to the server's), for
/// connections opened after it.
async fn set_default_isolation(db: &Database, level: Option<&str>) {
    let setting = match level {
        Some(level) => format!("SET default_transaction_isolation = ''{level}''"),
        None => "RESET default_transaction_isolation".to_owned(),
    };
    db.connection()
        .execute_unprepared(&format!(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I {setting}', current_database()); \
             END $$"
        ))
        .await
        .unwrap();
}

/// Waits (up to 5 s, else fails with `what`) until `unit` sees another writer waiting.
async fn until_others_wait(unit: &dyn care_application::Unit, what: &str) {
    let asked = std::time::Instant::now();
    while !unit.others_waiting() {
        assert!(
            asked.elapsed() < std::time::Duration::from_secs(5),
            "{what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// On SQLite one writer at a time: back-to-back units of work must not keep the other
/// writers of the process (readers' audit appends, session touches) out. They wait
/// their turn in a fair queue, at most about one unit each, instead of polling SQLite's
/// busy timeout and rarely finding the lock free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_writers_get_their_turn_between_units_of_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_sqlite(&dir, "turns.db").await;
    let ports = ports_of(&db);
    let outside = ports.feed_stores();
    let units = ports.units.clone();
    let feed = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut n = 0;
        while started.elapsed() < std::time::Duration::from_millis(1500) {
            let unit = units.begin().await.unwrap();
            let stores = unit.stores(&outside);
            for _ in 0..20 {
                n += 1;
                let mut person =
                    care_person::Person::new(PersonId::from_uuid(uuid::Uuid::new_v4()));
                person
                    .add_identifier(care_person::Identifier::Local(
                        care_person::LocalId::new(
                            care_kernel::SourceId::parse("turns").unwrap(),
                            &format!("L{n}"),
                        )
                        .unwrap(),
                    ))
                    .unwrap();
                stores.people.save(&person).await.unwrap();
            }
            // A unit that holds the lock a while, as a busy batch does.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            unit.commit().await.unwrap();
        }
    });
    let log = SqlSecurityLog::new(db.clone());
    let mut worst = std::time::Duration::ZERO;
    let mut writes = 0;
    while !feed.is_finished() {
        let asked = std::time::Instant::now();
        log.append(&SecurityEvent {
            at: Timestamp::from_timestamp(1_760_000_000, 0).unwrap(),
            kind: SecurityEventKind::SignInFailed,
            user: None,
            client: IpAddr::V4(Ipv4Addr::LOCALHOST),
            detail: Some("turns".into()),
        })
        .await
        .unwrap();
        worst = worst.max(asked.elapsed());
        writes += 1;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    feed.await.unwrap();
    assert!(writes >= 10, "only {writes} writes got in beside the units");
    assert!(
        worst < std::time::Duration::from_millis(500),
        "a writer waited {worst:?} beside the units"
    );

    // A unit sees that another writer waits (so the feeds commit early for it), and
    // no longer once that writer got its turn.
    let unit = ports.units.begin().await.unwrap();
    assert!(!unit.others_waiting(), "no one waits yet");
    let waiter = {
        let log = SqlSecurityLog::new(db.clone());
        tokio::spawn(async move {
            log.append(&SecurityEvent {
                at: Timestamp::from_timestamp(1_760_000_001, 0).unwrap(),
                kind: SecurityEventKind::SignInFailed,
                user: None,
                client: IpAddr::V4(Ipv4Addr::LOCALHOST),
                detail: Some("waiting".into()),
            })
            .await
            .unwrap();
        })
    };
    until_others_wait(unit.as_ref(), "the unit never saw the waiting writer").await;
    unit.commit().await.unwrap();
    waiter.await.unwrap();
    let next = ports.units.begin().await.unwrap();
    assert!(
        !next.others_waiting(),
        "the writer is counted only while it waits"
    );
    next.commit().await.unwrap();
}

/// On a SQLite file an audit batch is a unit of work on the write connection, beside the
/// feeds' units: an open feed unit sees an append waiting (so it commits early for it);
/// a batch the database refuses answers every caller with an error, leaves the head
/// where it was, and leaves the write connection and the turn free for the next unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_audit_batches_take_turns_with_feed_units_on_the_write_connection() {
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_sqlite(&dir, "audit-units.db").await;
    let ports = ports_of(&db);
    let log = Arc::new(SqlAuditLog::new(db.clone()));
    log.append(vec![event(1)]).await.unwrap();

    let unit = ports.units.begin().await.unwrap();
    let waiting = {
        let log = Arc::clone(&log);
        tokio::spawn(async move { log.append(vec![event(2)]).await })
    };
    until_others_wait(
        unit.as_ref(),
        "the feed unit never saw the audit append waiting",
    )
    .await;
    assert!(!waiting.is_finished(), "the append waits for the open unit");
    unit.commit().await.unwrap();
    waiting.await.unwrap().unwrap();
    assert_eq!(verify(log.as_ref()).await, Ok(2));

    // A row put where the next event goes (behind the adapter's back): the database
    // refuses every batch that would write there.
    let head = log.head().await.unwrap();
    db.connection()
        .execute_unprepared(&format!(
            "INSERT INTO audit_events (seq, at, person_id, event, prev_hash, hash) \
             VALUES ({}, 0, NULL, '{{}}', 'x', 'x')",
            head.len
        ))
        .await
        .unwrap();
    let callers: Vec<_> = (0..8)
        .map(|n| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.append(vec![event(10 + n)]).await })
        })
        .collect();
    for caller in callers {
        assert!(
            caller.await.unwrap().is_err(),
            "every caller of a refused batch hears of it"
        );
    }
    assert_eq!(log.head().await.unwrap(), head, "the head did not move");
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), ports.units.begin())
        .await
        .expect("the write connection and the turn are free after a refused batch")
        .unwrap();
    next.commit().await.unwrap();
}

/// A checkpoint must leave the locks of the process's other connections alone. It once
/// flushed the file by opening and closing it, which on Linux drops every POSIX lock the
/// process holds on the file (https://sqlite.org/howtocorrupt.html, 2.2): another process
/// that then opened the database and closed it believed itself the last user and deleted
/// the live write-ahead log, and committed writes were lost. The other process here is
/// Python's sqlite3 (skipped, with a line, where there is no python3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoint_leaves_a_live_pools_locks_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("care.db");
    let url = format!("sqlite://{}", path.display());
    let serving = Database::connect_serving(&url).await.unwrap();
    serving.migrate().await.unwrap();
    Database::connect(&url)
        .await
        .unwrap()
        .checkpoint()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let other = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute('SELECT COUNT(*) FROM organisations').fetchall(); c.close()",
        )
        .arg(&path)
        .status();
    let Ok(status) = other else {
        eprintln!("skipped: no python3 to open the database from another process");
        return;
    };
    assert!(
        status.success(),
        "the other process could read the database"
    );
    for suffix in ["-wal", "-shm"] {
        let file = dir.path().join(format!("care.db{suffix}"));
        assert!(
            file.exists(),
            "another process closing the database removed the live pool's {suffix} file"
        );
    }
}

/// The write-ahead log is copied into the database file off the commit path, by the
/// checkpoints' thread, and starts again from its beginning while commits keep coming and
/// readers keep reading. The commits' own checkpoint waits until 10,000 pages (40 MB):
/// without the thread the log would grow that long before anything copied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_is_checkpointed_and_restarted_under_steady_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_sqlite(&dir, "care.db").await;
    let wal = dir.path().join("care.db-wal");
    let log = Arc::new(SqlAuditLog::new(db.clone()));
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = tokio::spawn({
        let (log, reading) = (log.clone(), reading.clone());
        async move {
            let mut reads = 0u64;
            while reading.load(std::sync::atomic::Ordering::Relaxed) {
                log.head().await.unwrap();
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        }
    });
    // Each append is a commit of a few pages (the event, its indexes, the chain head):
    // some 16,000 pages in all, well past the commits' own threshold.
    let mut largest = 0;
    for n in 0..4_000 {
        log.append(vec![event(n)]).await.unwrap();
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.await.unwrap() > 0, "the reader read meanwhile");
    assert!(
        largest < 16 * 1024 * 1024,
        "the log grew to {largest} bytes: nothing copied it and started it again"
    );
    assert_eq!(verify(log.as_ref()).await, Ok(4_000));
}

/// The checkpoint thread waits for the write turn to finish a copy; dropping the
/// database while a unit holds that turn must not wait for the unit (on a
/// single-threaded runtime, the unit's task could never run again to end it), nor does
/// the thread keep the unit from committing afterwards.
#[tokio::test]
async fn dropping_a_sqlite_database_does_not_wait_for_the_turn_its_checkpoints_queue_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_sqlite(&dir, "care.db").await;
    let ports = ports_of(&db);
    // One commit of well over a thousand log pages (12,000 event rows); the unit then
    // holds the turn before any writer starts the log again, so the thread wants the
    // turn to finish copying them.
    SqlAuditLog::new(db.clone())
        .append((0..12_000).map(event).collect())
        .await
        .unwrap();
    let unit = ports.units.begin().await.unwrap();
    let wal = std::fs::metadata(dir.path().join("care.db-wal"))
        .unwrap()
        .len();
    assert!(wal > 1_000 * 4_096, "the log is long enough ({wal} bytes)");
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(ports);
    let (done, dropped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(db);
        let _ = done.send(());
    });
    assert!(
        dropped
            .recv_timeout(std::time::Duration::from_secs(10))
            .is_ok(),
        "dropping the database waited for the turn the unit holds"
    );
    unit.commit().await.unwrap();
}

/// Reads outside a unit of work run on the caller's thread (rusqlite readers): they must
/// never wait for a writer — a unit holding SQLite's write lock — and must see only what
/// was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_do_not_wait_for_a_unit_holding_the_write_lock() {
    use care_application::PersonRepository;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("reads.db").display());
    let db = Database::connect_serving(&url).await.unwrap();
    db.migrate().await.unwrap();
    let ports = ports_of(&db);
    let people = SqlPeople::new(db.clone());
    let committed = care_person::Person::new(PersonId::from_uuid(uuid::Uuid::new_v4()));
    people.save(&committed).await.unwrap();

    let outside = ports.feed_stores();
    let unit = ports.units.begin().await.unwrap();
    let stores = unit.stores(&outside);
    let pending = care_person::Person::new(PersonId::from_uuid(uuid::Uuid::new_v4()));
    stores.people.save(&pending).await.unwrap();
    assert!(
        stores.people.get(pending.id()).await.unwrap().is_some(),
        "inside the unit, its own write is seen"
    );
    let asked = std::time::Instant::now();
    for _ in 0..100 {
        assert!(people.get(committed.id()).await.unwrap().is_some());
        assert!(
            people.get(pending.id()).await.unwrap().is_none(),
            "outside the unit, an uncommitted write is not seen"
        );
    }
    let took = asked.elapsed();
    assert!(
        took < std::time::Duration::from_millis(500),
        "200 reads beside an open unit took {took:?}"
    );
    unit.commit().await.unwrap();
    assert!(
        people.get(pending.id()).await.unwrap().is_some(),
        "after the commit, a reader sees it"
    );
}

/// A unit on a SQLite file runs on the process's one write connection: a unit dropped
/// without commit must leave nothing and hand the connection back, and a store kept
/// after its unit ended must fail rather than write outside any transaction.
#[tokio::test]
async fn a_sqlite_unit_ends_cleanly_on_its_write_connection() {
    use care_application::PersonRepository;
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_sqlite(&dir, "units.db").await;
    let ports = ports_of(&db);
    let outside = ports.feed_stores();
    let person = || care_person::Person::new(PersonId::from_uuid(uuid::Uuid::new_v4()));

    use care_application::{MessageOutcome, SourceInfo};
    let source = care_kernel::Source::new(
        care_kernel::SourceId::parse("pas-units").unwrap(),
        care_kernel::SourceKind::Acute,
    );
    outside
        .sources
        .register(&SourceInfo::new(
            source.clone(),
            "PAS",
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    let applied = || async {
        let info = outside.sources.get(&source.id).await.unwrap().unwrap();
        info.applied
    };
    let record = |stores: &care_application::FeedStores| {
        let sources = stores.sources.clone();
        let id = source.id.clone();
        async move {
            sources
                .record_activity(&id, Timestamp::UNIX_EPOCH, MessageOutcome::Applied)
                .await
        }
    };

    let dropped = person();
    let unit = ports.units.begin().await.unwrap();
    let kept = unit.stores(&outside);
    kept.people.save(&dropped).await.unwrap();
    record(&kept).await.unwrap();
    drop(unit);
    assert_eq!(
        outside.people.get(dropped.id()).await.unwrap(),
        None,
        "a dropped unit is rolled back"
    );
    assert_eq!(applied().await, 0, "with the activity it recorded");
    assert!(
        kept.people.save(&person()).await.is_err(),
        "a store of an ended unit refuses to write"
    );
    assert!(record(&kept).await.is_err(), "its sources' activity too");

    let committed = person();
    let unit = ports.units.begin().await.unwrap();
    let stores = unit.stores(&outside);
    stores.people.save(&committed).await.unwrap();
    record(&stores).await.unwrap();
    record(&stores).await.unwrap();
    unit.commit().await.unwrap();
    assert!(
        stores.people.save(&person()).await.is_err(),
        "a store of a committed unit refuses to write"
    );
    assert!(record(&stores).await.is_err(), "its sources' activity too");
    assert!(outside.people.get(committed.id()).await.unwrap().is_some());
    assert_eq!(applied().await, 2, "what the unit recorded, once");
    // Outside units, the pool still writes (the write connection was handed back and
    // holds no lock).
    let after = person();
    SqlPeople::new(db.clone()).save(&after).await.unwrap();
    assert!(outside.people.get(after.id()).await.unwrap().is_some());
}

/// In a SQLite unit a person is written without a savepoint: what `save_merge` is
/// given that is not a merge is refused before any write, and the unit goes on.
#[tokio::test]
async fn a_sqlite_unit_outlives_a_merge_refused_before_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = migrated_sqlite(&dir, "merge.db").await;
    let ports = ports_of(&db);
    let outside = ports.feed_stores();
    let person = || care_person::Person::new(PersonId::from_uuid(uuid::Uuid::new_v4()));
    let unit = ports.units.begin().await.unwrap();
    let stores = unit.stores(&outside);
    let mut a = person();
    a.set_version(stores.people.save(&a).await.unwrap());
    let b = person();
    assert!(
        stores.people.save_merge(&a, &a).await.is_err(),
        "one record"
    );
    assert!(
        stores.people.save_merge(&a, &b).await.is_err(),
        "the retired record is not marked merged"
    );
    let after = person();
    stores.people.save(&after).await.unwrap();
    unit.commit().await.unwrap();
    assert!(outside.people.get(after.id()).await.unwrap().is_some());
    assert!(outside.people.get(a.id()).await.unwrap().is_some());
}

/// A batch load leaves the database to other processes between its units only when
/// another process has it open: the units must see one (Python's sqlite3 here, also
/// from another PID namespace; skipped with a line where that cannot run) and only while
/// it is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_units_see_whether_another_process_has_the_database_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("care.db");
    let db = migrated_sqlite(&dir, "care.db").await;
    let ports = ports_of(&db);
    assert!(
        !ports.units.others_attached(),
        "this process's own connections are not others"
    );
    // Plainly, and from another PID namespace (as from another container), where this
    // process cannot see the other's PID.
    let launchers: [&[&str]; 2] = [
        &["python3"],
        &["unshare", "-p", "-f", "--mount-proc", "python3"],
    ];
    for launcher in launchers {
        let other = std::process::Command::new(launcher[0])
            .args(&launcher[1..])
            .arg("-c")
            .arg(
                "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
                 c.execute('SELECT COUNT(*) FROM organisations').fetchall(); \
                 print('open', flush=True); sys.stdin.read(); c.close()",
            )
            .arg(&path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut other) = other else {
            eprintln!("skipped: cannot run {launcher:?} to open the database from another process");
            continue;
        };
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(other.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        if line.trim() != "open" {
            eprintln!("skipped: {launcher:?} could not open the database (not permitted here?)");
            drop(other.stdin.take());
            let _ = other.wait();
            continue;
        }
        assert!(
            ports.units.others_attached(),
            "another process holds the database open ({launcher:?})"
        );
        drop(other.stdin.take());
        assert!(other.wait().unwrap().success());
        assert!(
            !ports.units.others_attached(),
            "once it has closed it, nobody else ({launcher:?})"
        );
    }
}
