//! Checkpoints of a SQLite file's write-ahead log, on a thread of their own, off the
//! commit path.
//!
//! By default SQLite checkpoints inside a `COMMIT`: the commit that takes the log past
//! 1,000 pages copies them into the database file and flushes it before it returns. The
//! audit chain's batches and the feeds' units commit one after the other, each holding
//! the process's write turn, so every caller waiting for the turn waited for that copy
//! too: it was half of an audit batch's commit time under load (docs/BENCHMARKS.md).
//!
//! Here a thread copies the log every [`EVERY`] with a `PASSIVE` checkpoint, which takes
//! no write lock: writers go on committing while it copies. The log only starts again
//! from its beginning once all of it is in the database file when a writer begins, which
//! under a steady stream of commits a passive copy alone never sees. So when the log
//! has grown past [`RESTART_AT`] pages, the thread copies what was committed meanwhile
//! while it holds the write turn: a short tail, after which the next writer starts the log
//! again. The commit paths keep SQLite's own checkpoint as a backstop, at [`BACKSTOP`]
//! pages (another process writing, a reader holding the log for a long time).
//!
//! The thread queues for the turn as a feed's unit does, not counted as a waiting
//! writer: a unit does not commit early for it (counted, it made a feed's units commit
//! after every message while it waited). It waits on the turn's own queue from this
//! thread, parked between polls, and gives up when the database is being dropped.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::OpenFlags;

use crate::conn::Turn;
use crate::reader::{lock, open};

/// How often the log is copied into the database file.
const EVERY: Duration = Duration::from_millis(20);
/// Log pages after which a copy is finished under the write turn, so that the log
/// starts again (SQLite's own checkpoint threshold).
const RESTART_AT: i64 = 1_000;
/// `wal_autocheckpoint` of the connections that commit: SQLite checkpoints in a commit
/// only if the log has grown this long all the same.
pub(crate) const BACKSTOP: u32 = 10_000;

/// The checkpointing thread of one file; stopped and joined when dropped.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpoints {
    /// Starts checkpointing the file at `path` (in WAL mode), taking `turn` to finish.
    pub(crate) fn start(path: String, turn: Turn) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoints".to_owned())
            .spawn(move || run(&path, &turn, &stopped))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *lock(stopped) = true;
        wake.notify_all();
        // Joined, so that its connection is closed when the last handle to the
        // database is gone, as the others are. This waits for a copy in progress (disk
        // time, on whatever thread drops the last handle), never for the write turn.
        if let Some(thread) = self.thread.take() {
            // Woken if it waits for the turn (perhaps held by whoever drops this).
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

fn run(path: &str, turn: &Turn, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut conn = None;
    let mut under_turn = None;
    // Said once when copies start failing (a full disk, say), not every turn; meanwhile
    // the commits' own checkpoints (the backstop) keep the log bounded.
    let mut failing = false;
    loop {
        let guard = lock(stopped);
        let (guard, _) = wake
            .wait_timeout_while(guard, EVERY, |stopped| !*stopped)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *guard {
            return;
        }
        drop(guard);
        let copied = match &conn {
            Some(conn) => copy(conn, turn, stopped, &mut under_turn),
            // Opened again at the next turn if it failed (another process recovering
            // the log, say).
            None => connect(path).map(|opened| conn = Some(opened)),
        };
        match copied {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("checkpoints failed (the commits' own will do): {e}");
            }
            Err(_) => {}
        }
    }
}

/// The thread's connection: durable copies (the log is flushed before it is copied,
/// the file before the copy counts as done), set here rather than left to the build's
/// default.
fn connect(path: &str) -> rusqlite::Result<rusqlite::Connection> {
    let conn = open(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE,
        Duration::from_secs(1),
        1_024,
    )?;
    conn.execute_batch("PRAGMA synchronous = FULL;")?;
    Ok(conn)
}

/// One turn: copy what can be copied, and if the log is long, copy it again holding the
/// write turn, so that the next writer finds all of it copied and starts it again (a
/// passive copy that caught up is not enough: a reader still reading from the log keeps
/// the next writer from starting it again, and commits go on coming). Not again while
/// the log stays as it was under the turn (no commit since: nothing for the turn to
/// change).
fn copy(
    conn: &rusqlite::Connection,
    turn: &Turn,
    stopped: &Mutex<bool>,
    under_turn: &mut Option<i64>,
) -> rusqlite::Result<()> {
    let (log, done) = passive(conn)?;
    if log < RESTART_AT || (done >= log && *under_turn == Some(log)) {
        return Ok(());
    }
    match wait_for(turn, stopped) {
        Some(_turn) => {
            *under_turn = Some(passive(conn)?.0);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Copies what it can of the log into the database file without waiting for anyone;
/// answers the log's length and how much of it is in the file, in pages (both -1 when
/// another connection is copying).
fn passive(conn: &rusqlite::Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

/// Wakes the thread that waits for the turn.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The write turn, in its queue, or `None` once `stopped` (the queue place is given up).
fn wait_for(turn: &Turn, stopped: &Mutex<bool>) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut take = std::pin::pin!(turn.take_for_unit());
    loop {
        if let Poll::Ready(guard) = take.as_mut().poll(&mut cx) {
            return Some(guard);
        }
        if *lock(stopped) {
            return None;
        }
        // Unparked by the turn coming free or by `Drop`; the timeout is a safety net.
        std::thread::park_timeout(Duration::from_millis(50));
    }
}
