//! In-process adapters for every port: stores held in memory (for tests and for trying
//! the core without a database), the system clock and a settable clock, UUID v7 ids, and
//! [`SpecPolicy`], the access policy of SPEC §2 written out in Rust as the reference the
//! casbin policy files are tested against.
//!
//! The stores keep every rule of their port's contract (optimistic versions, unique
//! identifiers, an append-only chain) so the contract suites in `care-contract` pass on
//! them exactly as on the database adapters.

mod accounts;
mod policy;
mod stores;

pub use accounts::{InMemoryAccounts, InMemorySecurityLog, InMemorySessions};

pub use policy::SpecPolicy;
pub use stores::{
    InMemoryAlerts, InMemoryAuditLog, InMemoryConsent, InMemoryPeople, InMemoryQuarantine,
    InMemoryReferrals, InMemorySources,
};

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use care_application::{
    AccessPolicy, Clock, FeedStores, IdGenerator, Ports, RepoError, Unit, UnitOfWork,
};
use care_kernel::Timestamp;
use uuid::Uuid;

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every store
/// keeps its invariants between statements, so the data is consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The real clock. The one place the system time is read.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// A clock that stands still until moved: tests say "nine years after death" with it.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: Timestamp) -> Self {
        Self {
            micros: AtomicI64::new(at.timestamp_micros()),
        }
    }

    /// Sets the time.
    pub fn set(&self, at: Timestamp) {
        self.micros.store(at.timestamp_micros(), Ordering::SeqCst);
    }

    /// Moves the time on.
    pub fn advance(&self, by: chrono::Duration) {
        self.micros
            .fetch_add(by.num_microseconds().unwrap_or(i64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_timestamp_micros(self.micros.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

/// Time-ordered UUIDs (v7), so ids sort roughly by creation and index well.
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// Units of work in memory: no transaction (each write is visible at once and nothing
/// is ever rolled back, which the port's contract allows), so a unit writes through the
/// stores it is given.
#[derive(Debug, Default, Clone, Copy)]
pub struct InMemoryUnits;

#[async_trait]
impl UnitOfWork for InMemoryUnits {
    async fn begin(&self) -> Result<Box<dyn Unit>, RepoError> {
        Ok(Box::new(InMemoryUnits))
    }

    /// As on SQLite: one writer at a time, so units may be large.
    fn capacity(&self) -> usize {
        500
    }
}

#[async_trait]
impl Unit for InMemoryUnits {
    fn stores(&self, outside: &FeedStores) -> FeedStores {
        outside.clone()
    }

    async fn commit(self: Box<Self>) -> Result<(), RepoError> {
        Ok(())
    }
}

/// Ports wired entirely in memory, with the given policy and clock.
pub fn in_memory_ports(policy: Arc<dyn AccessPolicy>, clock: Arc<dyn Clock>) -> Ports {
    Ports {
        people: Arc::new(InMemoryPeople::default()),
        referrals: Arc::new(InMemoryReferrals::default()),
        alerts: Arc::new(InMemoryAlerts::default()),
        consent: Arc::new(InMemoryConsent::default()),
        audit: Arc::new(InMemoryAuditLog::default()),
        policy,
        sources: Arc::new(InMemorySources::default()),
        quarantine: Arc::new(InMemoryQuarantine::default()),
        units: Arc::new(InMemoryUnits),
        clock,
        ids: Arc::new(UuidV7Ids),
    }
}
