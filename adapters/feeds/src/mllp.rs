//! The MLLP listener: HL7 v2 over TCP, each message framed as
//! `<VT> message <FS><CR>` (0x0B … 0x1C 0x0D), answered by one ACK in the same framing.
//!
//! - `AA`: applied (or unchanged: a repeat is acknowledged as accepted).
//! - `AE`: quarantined; MSA-3 and ERR carry the reason.
//! - `AR`: the framing could not be read (bytes outside a frame, a frame over the size
//!   limit); the connection is closed after it, since the stream's framing is lost.
//!
//! Back-pressure rather than buffering: a connection's messages are handled in order,
//! and nothing more is read from it until the ACKs of the frames already read are
//! written (a sender that sends several before reading their ACKs — up to 64 taken at a
//! time — has them queued together, written in as few units as the writer can, and none
//! applied behind one that failed); at most `max_connections` connections are served at
//! once (others wait in the kernel's backlog); a frame must arrive whole within a minute
//! of its first byte and a connection idle for five minutes between frames is closed.
//! When storage fails the connection is closed without an ACK, so the sender sends the
//! message again (applying is idempotent).
//!
//! The source is the configured feed account's, never MSH-3/MSH-4's.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use care_application::{Accounts, FeedSession, IngestError, Services};
use care_hl7::{AckCode, Message};
use care_kernel::UserId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::intake::{InOrder, Intake, MessageReport, Outcome, SharedIntake};

/// Start of a frame.
pub const VT: u8 = 0x0B;
/// End of a frame (followed by CR).
pub const FS: u8 = 0x1C;
/// Carriage return.
pub const CR: u8 = 0x0D;

/// How the listener runs.
#[derive(Clone)]
pub struct MllpSettings {
    /// The feed account whose source this listener's messages are for (checked on
    /// every connection: a disabled account stops the feed).
    pub account: UserId,
    /// The largest frame accepted.
    pub max_frame: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// A connection silent for this long between frames is closed.
    pub idle_timeout: Duration,
    /// A frame must arrive whole within this time of its first byte.
    pub frame_deadline: Duration,
    /// How often a long-lived connection checks again that its feed account is still
    /// enabled (a disabled account stops the feed within this time).
    pub recheck_account: Duration,
    /// Whether an address may connect (the allow-list).
    pub allowed: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

impl std::fmt::Debug for MllpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpSettings")
            .field("account", &self.account)
            .field("max_frame", &self.max_frame)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl MllpSettings {
    /// Defaults: 1 MiB frames, 64 connections, 5 minutes idle, any address.
    pub fn new(account: UserId) -> Self {
        Self {
            account,
            max_frame: 1024 * 1024,
            max_connections: 64,
            idle_timeout: Duration::from_secs(300),
            frame_deadline: Duration::from_secs(60),
            recheck_account: Duration::from_secs(15),
            allowed: Arc::new(|_| true),
        }
    }
}

/// Serves MLLP on `listener` until `shutdown` completes; connections in progress finish
/// their current message.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    accounts: Accounts,
    settings: MllpSettings,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let settings = Arc::new(settings);
    let writers = Writers::default();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(target: "feeds", error = %e, "MLLP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // An ACK is a small answer the sender waits for: send it at once, not when the
        // sender's acknowledgement of the previous one arrives (Nagle). Failing to set it
        // costs latency only.
        let _ = stream.set_nodelay(true);
        let services = services.clone();
        let accounts = accounts.clone();
        let settings = settings.clone();
        let writers = writers.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, services, accounts, &settings, &writers).await
            {
                tracing::warn!(target: "feeds", %peer, error = %e, "MLLP connection ended");
            }
            drop(permit);
        });
    }
}

/// The shared writer of each sending address: connections from one sender put their
/// messages into shared units of work (one durable commit for many messages), as long as
/// one of them is open. Only where a unit holds more than one message (SQLite): on
/// PostgreSQL a unit holds one, and each connection writes its own, in parallel.
#[derive(Clone, Default)]
struct Writers(Arc<std::sync::Mutex<HashMap<IpAddr, Weak<SharedIntake>>>>);

/// What a connection writes its messages through.
enum Writer {
    Shared(Arc<SharedIntake>),
    Own(Intake),
}

/// A message's answer, to wait for.
type Answer<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<MessageReport, IngestError>> + Send + 'a>>;

impl Writer {
    /// Hands over framed messages, in order, and returns their answers in the same
    /// order. A shared writer has them all queued at once (written in as few units as it
    /// can); a connection's own writer applies each only when its answer is awaited.
    async fn queue_all<'a>(
        &'a self,
        first: usize,
        frames: &'a [Vec<u8>],
        order: &InOrder,
    ) -> Result<Vec<Answer<'a>>, IngestError> {
        let mut answers: Vec<Answer<'a>> = Vec::with_capacity(frames.len());
        for (k, frame) in frames.iter().enumerate() {
            answers.push(match self {
                Writer::Shared(shared) => {
                    Box::pin(shared.queue_hl7(first + k, frame, order).await?)
                }
                Writer::Own(intake) => Box::pin(intake.hl7_message(first + k, frame)),
            });
        }
        Ok(answers)
    }
}

/// Complete frames taken from one read and answered together at most.
const PIPELINE: usize = 64;

impl Writers {
    /// The sender's writer (started on `session` if it has none running), or the
    /// connection's own where units hold one message.
    fn for_sender(&self, client: IpAddr, session: FeedSession) -> Writer {
        if session.unit_capacity() <= 1 {
            return Writer::Own(Intake::new(session));
        }
        let mut writers = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writers.retain(|_, writer| writer.strong_count() > 0);
        if let Some(writer) = writers.get(&client).and_then(Weak::upgrade)
            && writer.is_running()
        {
            return Writer::Shared(writer);
        }
        let writer = Arc::new(Intake::new(session).shared());
        writers.insert(client, Arc::downgrade(&writer));
        Writer::Shared(writer)
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The sender closed the connection, or was silent for too long.
    #[error("closed")]
    Closed,
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    services: Services,
    accounts: Accounts,
    settings: &MllpSettings,
    writers: &Writers,
) -> Result<(), ConnectionError> {
    let client = peer.ip();
    if !(settings.allowed)(client) {
        if let Err(e) = accounts.record_network_refusal(client, "mllp").await {
            tracing::error!(target: "feeds", error = %e, "could not record a network refusal");
        }
        return Err(ConnectionError::Refused(
            "address outside the allow-list".into(),
        ));
    }
    let actor = feed_actor(&accounts, settings, client).await?;
    let Some(source) = actor.feed_source.clone() else {
        return Err(ConnectionError::Refused(format!(
            "account {} is not a feed account",
            settings.account
        )));
    };
    let session = services.open_feed(&actor, &source).await?;
    let intake = writers.for_sender(client, session);
    let mut checked = tokio::time::Instant::now();
    let mut partial_since: Option<tokio::time::Instant> = None;
    let mut frames = Framer::new(settings.max_frame);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut index = 0usize;
    let order = InOrder::default();
    loop {
        // Every complete frame already read is answered, in order, before reading more:
        // a sender that sends several before reading their ACKs has them written
        // together (up to `PIPELINE` at a time).
        let mut ready = Vec::new();
        let mut unreadable = None;
        while ready.len() < PIPELINE {
            match frames.next_frame() {
                Next::Frame(frame) => {
                    partial_since = None;
                    ready.push(frame);
                }
                Next::NeedMore => {
                    if frames.is_empty() {
                        partial_since = None;
                    }
                    break;
                }
                other => {
                    unreadable = Some(other);
                    break;
                }
            }
        }
        if !ready.is_empty() {
            if checked.elapsed() >= settings.recheck_account {
                feed_actor(&accounts, settings, client).await?;
                checked = tokio::time::Instant::now();
            }
            let at = services.ports().clock.now();
            let answers = intake.queue_all(index, &ready, &order).await?;
            index += ready.len();
            // The ACKs go out together, in one write (small writes one after another
            // would wait for the sender's delayed TCP acknowledgements).
            let mut replies = Vec::new();
            for (frame, answer) in ready.iter().zip(answers) {
                match answer.await {
                    Ok(report) => framed(&mut replies, ack_for(&report, frame, at).as_bytes()),
                    Err(e) => {
                        // Those before it are answered; the rest are not, and come again.
                        write_all(&mut stream, &replies).await?;
                        return Err(e.into());
                    }
                }
            }
            write_all(&mut stream, &replies).await?;
        }
        let (text, reason, refused) = match unreadable {
            Some(Next::Junk(junk)) => (
                String::from_utf8_lossy(&junk).into_owned(),
                "bytes outside an MLLP frame (expected 0x0B … 0x1C 0x0D)".to_owned(),
                "framing lost",
            ),
            Some(_) => (
                String::new(),
                format!("frame larger than {} bytes", settings.max_frame),
                "frame too large",
            ),
            // More frames may be waiting in what was read.
            None if ready.len() == PIPELINE => continue,
            None => {
                match read_more(
                    &mut stream,
                    &mut frames,
                    &mut chunk,
                    &mut partial_since,
                    settings,
                )
                .await
                {
                    Err(ConnectionError::Closed) => return Ok(()),
                    read => read?,
                }
                continue;
            }
        };
        let reply = care_hl7::ack_unreadable(
            &text,
            AckCode::AR,
            Some(&reason),
            &new_control_id(),
            &hl7_time(services.ports().clock.now()),
        );
        write_frame(&mut stream, reply.as_bytes()).await?;
        return Err(ConnectionError::Refused(refused.into()));
    }
}

/// Reads what the sender sent next into the framer; fails with `Closed` when the sender
/// closed the connection or fell silent for too long.
async fn read_more(
    stream: &mut TcpStream,
    frames: &mut Framer,
    chunk: &mut [u8],
    partial_since: &mut Option<tokio::time::Instant>,
    settings: &MllpSettings,
) -> Result<(), ConnectionError> {
    // A frame begun must end within the frame deadline (a sender trickling bytes would
    // otherwise hold a connection slot for ever); between frames, the idle timeout
    // applies.
    let wait = match partial_since {
        Some(since) => settings
            .frame_deadline
            .saturating_sub(since.elapsed())
            .min(settings.idle_timeout),
        None => settings.idle_timeout,
    };
    let read = tokio::time::timeout(wait, stream.read(chunk)).await;
    match read {
        Err(_) | Ok(Ok(0)) => Err(ConnectionError::Closed),
        Ok(Ok(n)) => {
            frames.push(&chunk[..n]);
            if partial_since.is_none() {
                *partial_since = Some(tokio::time::Instant::now());
            }
            Ok(())
        }
        Ok(Err(e)) => Err(e.into()),
    }
}

/// The configured feed account as an actor, or the refusal — recorded in the security
/// log, since a feed that stops is something the System Manager must see.
async fn feed_actor(
    accounts: &Accounts,
    settings: &MllpSettings,
    client: IpAddr,
) -> Result<care_kernel::Actor, ConnectionError> {
    match accounts.feed_actor(&settings.account, client).await {
        Ok(actor) => Ok(actor),
        Err(e) => {
            let why = format!("mllp: {e}");
            if let Err(log) = accounts
                .record_feed_account_refused(&settings.account, client, &why)
                .await
            {
                tracing::error!(target: "feeds", error = %log, "could not record a feed account refusal");
            }
            Err(ConnectionError::Refused(format!("feed account: {e}")))
        }
    }
}

/// The ACK of one framed message, from what became of it.
fn ack_for(report: &MessageReport, frame: &[u8], at: care_kernel::Timestamp) -> String {
    let (code, text) = match &report.outcome {
        Outcome::Applied | Outcome::Unchanged => (AckCode::AA, None),
        Outcome::Quarantined { reason, .. } => (AckCode::AE, Some(reason.as_str())),
    };
    let decoded = care_hl7::decode(frame).unwrap_or_else(|_| String::from_utf8_lossy(frame));
    let control_id = new_control_id();
    let now = hl7_time(at);
    match Message::parse_header(&decoded) {
        Ok(message) => care_hl7::ack(&message, code, text, &control_id, &now),
        Err(_) => care_hl7::ack_unreadable(&decoded, code, text, &control_id, &now),
    }
}

async fn write_frame(stream: &mut TcpStream, body: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 3);
    framed(&mut out, body);
    write_all(stream, &out).await
}

/// Appends `body` to `out` in MLLP framing.
fn framed(out: &mut Vec<u8>, body: &[u8]) {
    out.push(VT);
    out.extend_from_slice(body);
    out.extend_from_slice(&[FS, CR]);
}

/// Writes, giving up after [`WRITE_DEADLINE`]: a sender that never reads its ACKs must
/// not hold a connection slot for ever.
async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    tokio::time::timeout(WRITE_DEADLINE, write)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the sender does not read")
        })?
}

/// How long an ACK may wait for the sender to read it.
const WRITE_DEADLINE: Duration = Duration::from_secs(60);

fn hl7_time(at: care_kernel::Timestamp) -> String {
    at.format("%Y%m%d%H%M%S+0000").to_string()
}

fn new_control_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..20].to_owned()
}

/// What the framer has next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// A whole frame's content.
    Frame(Vec<u8>),
    /// Bytes that are not inside a frame (other than whitespace between frames).
    Junk(Vec<u8>),
    /// A frame grew past the limit.
    TooLarge,
    /// Nothing complete yet.
    NeedMore,
}

/// Splits a byte stream into MLLP frames, however the reads cut it.
#[derive(Debug)]
struct Framer {
    buffer: Vec<u8>,
    max_frame: usize,
}

impl Framer {
    fn new(max_frame: usize) -> Self {
        Self {
            buffer: Vec::new(),
            max_frame,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    fn next_frame(&mut self) -> Next {
        // Whitespace between frames (a CR or LF some senders add) is allowed.
        let start = self
            .buffer
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'));
        let Some(start) = start else {
            self.buffer.clear();
            return Next::NeedMore;
        };
        if self.buffer[start] != VT {
            return Next::Junk(std::mem::take(&mut self.buffer));
        }
        let body = start + 1;
        let end = self.buffer[body..].windows(2).position(|w| w == [FS, CR]);
        match end {
            Some(len) => {
                if len > self.max_frame {
                    return Next::TooLarge;
                }
                let frame = self.buffer[body..body + len].to_vec();
                self.buffer.drain(..body + len + 2);
                Next::Frame(frame)
            }
            None if self.buffer.len() - body > self.max_frame + 1 => Next::TooLarge,
            None => Next::NeedMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut f = vec![VT];
        f.extend_from_slice(body);
        f.extend_from_slice(&[FS, CR]);
        f
    }

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let stream = [frame(b"MSH|one"), frame(b"MSH|two")].concat();
        for cut in 0..stream.len() {
            let mut framer = Framer::new(100);
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                framer.push(part);
                loop {
                    match framer.next_frame() {
                        Next::Frame(f) => got.push(f),
                        Next::NeedMore => break,
                        other => panic!("cut at {cut}: {other:?}"),
                    }
                }
            }
            assert_eq!(
                got,
                vec![b"MSH|one".to_vec(), b"MSH|two".to_vec()],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn several_frames_in_one_read_and_whitespace_between() {
        let mut framer = Framer::new(100);
        framer.push(&[frame(b"a"), b"\r\n".to_vec(), frame(b"b")].concat());
        assert_eq!(framer.next_frame(), Next::Frame(b"a".to_vec()));
        assert_eq!(framer.next_frame(), Next::Frame(b"b".to_vec()));
        assert_eq!(framer.next_frame(), Next::NeedMore);
    }

    #[test]
    fn bytes_outside_a_frame_are_junk() {
        let mut framer = Framer::new(100);
        framer.push(b"MSH|no frame\r");
        assert!(matches!(framer.next_frame(), Next::Junk(_)));
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_it_ends() {
        let mut framer = Framer::new(10);
        framer.push(&[VT]);
        framer.push(&[b'x'; 11]);
        assert_eq!(framer.next_frame(), Next::NeedMore);
        framer.push(b"x");
        assert_eq!(framer.next_frame(), Next::TooLarge);
        let mut exact = Framer::new(3);
        exact.push(&frame(b"abc"));
        assert_eq!(exact.next_frame(), Next::Frame(b"abc".to_vec()));
    }
}
