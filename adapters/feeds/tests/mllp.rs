//! The MLLP listener in process, over the in-memory adapters: the allow-list, a
//! disabled account, broken framing and a frame that never ends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use care_application::{
    AccountSettings, Accounts, IdentityPorts, LockoutPolicy, NewUser, PasswordHasher, RepoError,
    SessionPolicy, TokenSource,
};
use care_feeds::mllp::{self, MllpSettings};
use care_in_memory::{InMemoryAccounts, InMemorySecurityLog, InMemorySessions};
use care_kernel::{OrganisationId, Role, SourceId, UserId};
use common::{SOURCE, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Passwords are not the point here.
struct PlainHasher;

#[async_trait]
impl PasswordHasher for PlainHasher {
    async fn hash(&self, password: &str) -> Result<String, RepoError> {
        Ok(format!("plain:{password}"))
    }
    async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        phc == Some(&format!("plain:{password}"))
    }
}

struct FixedTokens;

impl TokenSource for FixedTokens {
    fn new_token(&self) -> String {
        "token".into()
    }
}

async fn accounts(world: &World) -> Accounts {
    let accounts = Accounts::new(
        world.services.clone(),
        IdentityPorts {
            accounts: Arc::new(InMemoryAccounts::default()),
            sessions: Arc::new(InMemorySessions::default()),
            security: Arc::new(InMemorySecurityLog::default()),
            hasher: Arc::new(PlainHasher),
            tokens: Arc::new(FixedTokens),
        },
        AccountSettings {
            lockout: LockoutPolicy::default(),
            sessions: SessionPolicy::default(),
        },
    );
    accounts
        .provision_organisation(
            OrganisationId::parse("RDZ").unwrap(),
            "Dorset County Hospital",
        )
        .await
        .unwrap();
    accounts
        .provision_user(NewUser {
            user: UserId::parse("pas").unwrap(),
            display_name: "PAS interface".into(),
            organisation: OrganisationId::parse("RDZ").unwrap(),
            role: Role::Feed,
            feed_source: Some(SourceId::parse(SOURCE).unwrap()),
            password: "Interface-Engine-Tangerine-7".into(),
        })
        .await
        .unwrap();
    accounts
}

/// The listener's settings for the feed account `pas`.
fn pas_settings() -> MllpSettings {
    MllpSettings::new(UserId::parse("pas").unwrap())
}

async fn listen(world: &World, accounts: &Accounts, settings: MllpSettings) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(mllp::serve(
        listener,
        world.services.clone(),
        accounts.clone(),
        settings,
        std::future::pending(),
    ));
    addr
}

fn frame(body: &str) -> Vec<u8> {
    let mut f = vec![0x0b];
    f.extend_from_slice(body.as_bytes());
    f.extend_from_slice(&[0x1c, 0x0d]);
    f
}

const ADT: &str = "MSH|^~\\&|PAS|RDZ|CARE|DCR|20260101090000||ADT^A01|m1|P|2.4\r\
                   EVN|A01|20260101090000\r\
                   PID|1||L1^^^RDZ^MR||Smith^Sam||19800101|F\r";

/// An ADT about a new person with local id `local`, message control id `control`.
fn adt(control: &str, local: &str) -> String {
    ADT.replace("|m1|", &format!("|{control}|"))
        .replace("L1^^^", &format!("{local}^^^"))
}

/// A message with no PID (it cannot say whom it is about: quarantined).
fn no_pid(control: &str) -> String {
    format!(
        "MSH|^~\\&|PAS|RDZ|CARE|DCR|20260101090000||ADT^A01|{control}|P|2.4\rEVN|A01|20260101090000\r"
    )
}

/// Messages framed one after another, to be sent in one write.
fn framed_all(bodies: impl IntoIterator<Item = String>) -> Vec<u8> {
    bodies.into_iter().flat_map(|body| frame(&body)).collect()
}

/// Every ACK in what a listener sent.
fn acks_in(answers: &str) -> Vec<String> {
    answers
        .split('\u{1c}')
        .filter(|ack| ack.contains("MSA"))
        .map(str::to_owned)
        .collect()
}

/// Everything the listener sends until it closes the connection (or 10 s pass).
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the listener closed the connection in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_address_outside_the_allow_list_gets_nothing() {
    let world = World::new().await;
    let accounts = accounts(&world).await;
    let mut settings = pas_settings();
    settings.allowed = Arc::new(|ip| !ip.is_loopback());
    let addr = listen(&world, &accounts, settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(&frame(ADT)).await;
    assert_eq!(until_closed(&mut stream).await, "", "no ACK, no data");
}

#[tokio::test]
async fn a_disabled_account_stops_the_feed() {
    let world = World::new().await;
    let accounts = accounts(&world).await;
    let mut settings = pas_settings();
    settings.recheck_account = Duration::ZERO;
    let addr = listen(&world, &accounts, settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&frame(ADT)).await.unwrap();
    let mut ack = [0u8; 512];
    let n = stream.read(&mut ack).await.unwrap();
    assert!(String::from_utf8_lossy(&ack[..n]).contains("MSA|AA|m1"));
    let sm = care_kernel::Actor::new(
        UserId::parse("sm").unwrap(),
        OrganisationId::parse("DCR").unwrap(),
        Role::SystemManager,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    );
    accounts
        .disable_user(&sm, &UserId::parse("pas").unwrap())
        .await
        .unwrap();
    let _ = stream.write_all(&frame(&ADT.replace("|m1|", "|m2|"))).await;
    assert_eq!(
        until_closed(&mut stream).await,
        "",
        "the next message is not taken once the account is disabled"
    );
    let events = accounts.security_events(&sm, 20).await.unwrap();
    assert!(
        events.value.iter().any(|e| e.kind
            == care_application::SecurityEventKind::FeedAccountRefused
            && e.user.as_ref().map(UserId::as_str) == Some("pas")),
        "the refusal is in the security log"
    );
}

#[tokio::test]
async fn a_frame_that_never_ends_is_dropped_at_its_deadline() {
    let world = World::new().await;
    let accounts = accounts(&world).await;
    let mut settings = pas_settings();
    settings.frame_deadline = Duration::from_millis(300);
    let addr = listen(&world, &accounts, settings).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A byte every 100 ms: never idle, never a whole frame.
    stream.write_all(&[0x0b]).await.unwrap();
    let trickle = async {
        for _ in 0..50 {
            if stream.write_all(b"x").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(10), trickle)
            .await
            .unwrap_or(false),
        "the connection was closed while the frame trickled in"
    );
}

#[tokio::test]
async fn bytes_outside_a_frame_get_an_ar_and_the_connection_closes() {
    let world = World::new().await;
    let accounts = accounts(&world).await;
    let addr = listen(&world, &accounts, pas_settings()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(ADT.as_bytes()).await.unwrap();
    let answer = until_closed(&mut stream).await;
    assert!(answer.contains("MSA|AR"), "{answer:?}");
}

/// Several connections of one sender share units of work: every message is answered,
/// each after its unit committed, a bad one is quarantined without taking its unit's
/// neighbours with it, and everything answered AA is in the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_of_one_sender_share_units_and_every_message_is_answered() {
    share_units_and_answer_every_message(World::new().await).await;
}

/// The same over a SQLite file, where a unit holds many messages (group commit on the
/// write connection, as served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_of_one_sender_share_units_and_every_message_is_answered_on_sqlite() {
    share_units_and_answer_every_message(World::on_sqlite().await).await;
}

async fn share_units_and_answer_every_message(world: World) {
    let accounts = accounts(&world).await;
    let addr = listen(&world, &accounts, pas_settings()).await;
    let senders = (0..8).map(|c| {
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut acks = Vec::new();
            for i in 0..25 {
                let body = if c == 3 && i == 10 {
                    no_pid("bad")
                } else {
                    adt(&format!("c{c}m{i}"), &format!("C{c}N{i}"))
                };
                acks.push(
                    ack_of(&mut stream, &body)
                        .await
                        .expect("the listener answered"),
                );
            }
            acks
        })
    });
    let mut all = Vec::new();
    for sender in senders.collect::<Vec<_>>() {
        all.push(sender.await.unwrap());
    }
    for (c, acks) in all.iter().enumerate() {
        for (i, ack) in acks.iter().enumerate() {
            if c == 3 && i == 10 {
                assert!(
                    ack.contains("MSA|AE|bad"),
                    "the bad message is quarantined: {ack}"
                );
            } else {
                assert!(ack.contains(&format!("MSA|AA|c{c}m{i}")), "{ack}");
                assert!(
                    world.with_local_id(&format!("C{c}N{i}")).await.is_some(),
                    "message c{c}m{i} answered AA is in the record"
                );
            }
        }
    }
}

/// A sender that sends many messages before reading any ACK (here 150 in one write:
/// more than the listener takes at a time) gets one ACK per message, in the order sent,
/// each naming its own message; a bad one among them is quarantined alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_ahead_of_their_acks_are_answered_in_order() {
    let world = World::on_sqlite().await;
    let accounts = accounts(&world).await;
    let addr = listen(&world, &accounts, pas_settings()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let sent = framed_all((0..150).map(|i| match i {
        70 => no_pid("bad"),
        _ => adt(&format!("p{i}"), &format!("P{i}")),
    }));
    stream.write_all(&sent).await.unwrap();
    let mut answers = Vec::new();
    while answers.iter().filter(|b| **b == 0x1c).count() < 150 {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("answers in time")
            .unwrap();
        assert!(n > 0, "the listener answered every message before closing");
        answers.extend_from_slice(&chunk[..n]);
    }
    let acks = acks_in(&String::from_utf8_lossy(&answers));
    assert_eq!(acks.len(), 150);
    for (i, ack) in acks.iter().enumerate() {
        if i == 70 {
            assert!(
                ack.contains("MSA|AE|bad"),
                "the bad one is quarantined: {ack}"
            );
        } else {
            assert!(
                ack.contains(&format!("MSA|AA|p{i}\r")),
                "ACK {i} in order: {ack}"
            );
            assert!(world.with_local_id(&format!("P{i}")).await.is_some());
        }
    }
}

/// Sends one framed message and reads its ACK; `None` if the listener closed the
/// connection instead.
async fn ack_of(stream: &mut TcpStream, body: &str) -> Option<String> {
    stream.write_all(&frame(body)).await.ok()?;
    let mut ack = Vec::new();
    while !ack.ends_with(&[0x1c, 0x0d]) {
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .ok()?;
        if n == 0 {
            return None;
        }
        ack.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&ack).into_owned())
}

/// A quarantine store that fails to keep one message (a storage failure that belongs to
/// that message alone).
struct FailsFor(Arc<dyn care_application::QuarantineStore>);

#[async_trait]
impl care_application::QuarantineStore for FailsFor {
    async fn put(
        &self,
        message: &care_application::QuarantinedMessage,
    ) -> Result<uuid::Uuid, RepoError> {
        if String::from_utf8_lossy(&message.raw).contains("POISON") {
            return Err(RepoError::Unexpected(anyhow::anyhow!("disk says no")));
        }
        self.0.put(message).await
    }
    async fn get(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<care_application::QuarantinedMessage>, RepoError> {
        self.0.get(id).await
    }
    async fn list(
        &self,
        filter: &care_application::QuarantineFilter,
        limit: usize,
    ) -> Result<Vec<care_application::QuarantineSummary>, RepoError> {
        self.0.list(filter, limit).await
    }
    async fn resolve(
        &self,
        id: uuid::Uuid,
        resolution: &care_application::Resolution,
    ) -> Result<bool, RepoError> {
        self.0.resolve(id, resolution).await
    }
}

/// A listening world over the in-memory adapters whose quarantine fails to keep any
/// message holding "POISON" (in memory: a SQLite unit's own stores would not go through
/// the failing one).
async fn failing_to_keep_poison() -> (World, SocketAddr) {
    let base = World::new().await;
    let mut ports = base.services.ports().clone();
    ports.quarantine = Arc::new(FailsFor(ports.quarantine.clone()));
    let world = base.with_ports(ports);
    let accounts = accounts(&world).await;
    let addr = listen(&world, &accounts, pas_settings()).await;
    (world, addr)
}

/// A message that fails on its own, sent again and again by its connection, must not
/// take down the sender's other connections that shared a unit with it (found by a
/// second reader: it used to close them dozens of times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_keeps_failing_does_not_take_its_neighbours_down() {
    let (_world, addr) = failing_to_keep_poison().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poison = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tries = 0;
            // No PID: quarantined, and the quarantine fails for this one.
            let body = &no_pid("POISON");
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                assert!(
                    ack_of(&mut stream, body).await.is_none(),
                    "a message that could not be kept is not acknowledged"
                );
                tries += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            tries
        })
    };
    let healthy = (0..3)
        .map(|c| {
            tokio::spawn(async move {
                let mut closed = 0;
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let mut i = 0;
                while i < 300 {
                    let body = adt(&format!("g{c}m{i}"), &format!("G{c}N{i}"));
                    match ack_of(&mut stream, &body).await {
                        Some(ack) => {
                            assert!(ack.contains(&format!("MSA|AA|g{c}m{i}")), "{ack}");
                            i += 1;
                        }
                        None => {
                            closed += 1;
                            stream = TcpStream::connect(addr).await.unwrap();
                        }
                    }
                }
                closed
            })
        })
        .collect::<Vec<_>>();
    let mut closed = 0;
    for connection in healthy {
        closed += connection.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let tries = poison.await.unwrap();
    assert!(tries > 0, "the failing message was sent");
    assert_eq!(
        closed, 0,
        "healthy connections were closed because of another connection's failing message \
         (it was sent {tries} times)"
    );
}

/// All the ACKs a listener sends until it closes the connection.
async fn acks_until_closed(stream: &mut TcpStream) -> Vec<String> {
    acks_in(&until_closed(stream).await)
}

/// Messages sent ahead of their ACKs, one of which cannot be kept (a storage failure of
/// its own): those before it are acknowledged, it and those after it are not — and
/// none after it was applied ahead of it (the sender sends them again, after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_message_that_fails_none_sent_behind_it_is_applied() {
    let (world, addr) = failing_to_keep_poison().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let sent = framed_all((0..12).map(|i| match i {
        // No PID: quarantined, and the quarantine fails for this one.
        5 => no_pid("POISON"),
        _ => adt(&format!("f{i}"), &format!("F{i}")),
    }));
    stream.write_all(&sent).await.unwrap();
    let acks = acks_until_closed(&mut stream).await;
    assert_eq!(acks.len(), 5, "the five before the failing one: {acks:?}");
    for (i, ack) in acks.iter().enumerate() {
        assert!(ack.contains(&format!("MSA|AA|f{i}\r")), "{ack}");
    }
    for i in 0..12 {
        let applied = world.with_local_id(&format!("F{i}")).await.is_some();
        assert_eq!(applied, i < 5, "message f{i}");
    }
}

/// Good frames, then bytes outside any frame, in one write: the good ones are answered
/// (AA) in order, then one AR, and the connection closes.
#[tokio::test]
async fn good_frames_before_broken_framing_are_answered_first() {
    let world = World::new().await;
    let accounts = accounts(&world).await;
    let addr = listen(&world, &accounts, pas_settings()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut sent = framed_all((0..3).map(|i| adt(&format!("j{i}"), &format!("J{i}"))));
    sent.extend_from_slice(ADT.as_bytes());
    stream.write_all(&sent).await.unwrap();
    let acks = acks_until_closed(&mut stream).await;
    assert_eq!(acks.len(), 4, "{acks:?}");
    for (i, ack) in acks.iter().take(3).enumerate() {
        assert!(ack.contains(&format!("MSA|AA|j{i}\r")), "{ack}");
    }
    assert!(acks[3].contains("MSA|AR"), "{}", acks[3]);
}

/// Units whose commits are never made durable: the flush after each commit fails (a
/// disk that fails under the log), as the SQLite write connection reports it.
struct NeverDurable(Arc<dyn care_application::UnitOfWork>);

struct NotFlushed(Box<dyn care_application::Unit>);

#[async_trait]
impl care_application::UnitOfWork for NeverDurable {
    async fn begin(&self) -> Result<Box<dyn care_application::Unit>, RepoError> {
        Ok(Box::new(NotFlushed(self.0.begin().await?)))
    }
    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

#[async_trait]
impl care_application::Unit for NotFlushed {
    fn stores(&self, outside: &care_application::FeedStores) -> care_application::FeedStores {
        self.0.stores(outside)
    }
    async fn commit(self: Box<Self>) -> Result<(), RepoError> {
        Err(RepoError::Unexpected(anyhow::anyhow!(
            "the log's flush failed"
        )))
    }
    async fn commit_then_flush(self: Box<Self>) -> Result<care_application::Durable, RepoError> {
        self.0.commit().await?;
        Ok(Box::pin(std::future::ready(Err(RepoError::Unexpected(
            anyhow::anyhow!("the log's flush failed"),
        )))))
    }
}

/// A message whose unit committed but could not be made durable is never acknowledged:
/// the shared writer answers a unit only once its commit is durable (it writes the next
/// unit meanwhile), so the sender gets no AA and sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_not_made_durable_is_not_acknowledged() {
    not_durable_not_acknowledged(World::new().await).await;
}

/// The same over a SQLite file, through its units of work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_not_made_durable_is_not_acknowledged_on_sqlite() {
    not_durable_not_acknowledged(World::on_sqlite().await).await;
}

async fn not_durable_not_acknowledged(base: World) {
    let mut ports = base.services.ports().clone();
    ports.units = Arc::new(NeverDurable(ports.units.clone()));
    let world = base.with_ports(ports);
    let accounts = accounts(&world).await;
    let addr = listen(&world, &accounts, pas_settings()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&framed_all(
            (0..40).map(|i| adt(&format!("d{i}"), &format!("D{i}"))),
        ))
        .await
        .unwrap();
    let acks = acks_until_closed(&mut stream).await;
    assert!(acks.is_empty(), "nothing acknowledged: {acks:?}");
    assert!(
        world.with_local_id("D0").await.is_some(),
        "the first message was written and committed, only not made durable"
    );
}
