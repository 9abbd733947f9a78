//! A feed world over the in-memory adapters: one registered acute source and its feed
//! account.

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
}

impl World {
    pub async fn new() -> Self {
        let clock = Arc::new(ManualClock::new(
            Timestamp::from_timestamp(1_790_000_000, 0).unwrap(),
        ));
        let ports = in_memory_ports(Arc::new(SpecPolicy::default()), clock.clone());
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
        Self { services, clock }
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
