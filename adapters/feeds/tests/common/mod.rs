//! A feed world over the in-memory adapters, or over a SQLite file: one registered acute
//! source and its feed account.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use care_application::{Services, SourceInfo};
use care_feeds::Intake;
use care_in_memory::{ManualClock, SpecPolicy, in_memory_ports};
use care_kernel::{Actor, OrganisationId, Role, Source, SourceId, SourceKind, Timestamp, UserId};

pub const SOURCE: &str = "acute-pas";

pub struct World {
    pub services: Services,
    pub clock: Arc<ManualClock>,
    /// The SQLite file's directory, kept for as long as the world.
    _dir: Option<tempfile::TempDir>,
}

impl World {
    /// Over the in-memory adapters.
    pub async fn new() -> Self {
        let clock = Self::clock();
        let ports = in_memory_ports(Arc::new(SpecPolicy::default()), clock.clone());
        Self::with(ports, clock, None).await
    }

    /// Over a new SQLite file (units of work on its write connection, as served).
    pub async fn on_sqlite() -> Self {
        let clock = Self::clock();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("feeds.db").display());
        let db = care_persistence::Database::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        let ports = db.ports(
            Arc::new(SpecPolicy::default()),
            clock.clone(),
            Arc::new(care_in_memory::UuidV7Ids),
        );
        Self::with(ports, clock, Some(dir)).await
    }

    /// The same world over other ports (a store wrapped to fail, in a test). For a
    /// world over the in-memory adapters: a SQLite world's file goes with the original.
    pub fn with_ports(&self, ports: care_application::Ports) -> Self {
        Self {
            services: Services::new(ports),
            clock: self.clock.clone(),
            _dir: None,
        }
    }

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(
            Timestamp::from_timestamp(1_790_000_000, 0).unwrap(),
        ))
    }

    async fn with(
        ports: care_application::Ports,
        clock: Arc<ManualClock>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let services = Services::new(ports);
        for (id, kind) in [
            (SOURCE, SourceKind::Acute),
            ("gp-emis", SourceKind::GpPractice),
        ] {
            services
                .ports()
                .sources
                .register(&SourceInfo::new(
                    Source::new(SourceId::parse(id).unwrap(), kind),
                    id,
                    Duration::from_secs(3600),
                ))
                .await
                .unwrap();
        }
        Self {
            services,
            clock,
            _dir: dir,
        }
    }

    pub fn feed(source: &str) -> Actor {
        Actor::new(
            UserId::parse("feed").unwrap(),
            OrganisationId::parse("RDZ").unwrap(),
            Role::Feed,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
        .with_feed_source(SourceId::parse(source).unwrap())
    }

    /// Whoever holds `local` as the feed source's local id, if anyone.
    pub async fn with_local_id(&self, local: &str) -> Option<care_person::Person> {
        let id = care_person::LocalId::new(SourceId::parse(SOURCE).unwrap(), local).unwrap();
        self.services
            .ports()
            .people
            .find_by_identifier(&care_person::Identifier::Local(id))
            .await
            .unwrap()
    }

    pub async fn intake(&self) -> Intake {
        self.intake_for(SOURCE).await
    }

    pub async fn intake_for(&self, source: &str) -> Intake {
        let session = self
            .services
            .open_feed(&Self::feed(source), &SourceId::parse(source).unwrap())
            .await
            .unwrap();
        Intake::new(session)
    }
}

/// The shared sample data (never edited; see `care_contract::shared_data`).
pub fn data(relative: &str) -> PathBuf {
    care_contract::shared_data().join(relative)
}
