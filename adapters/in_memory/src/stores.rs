use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use care_access_audit::{AuditEvent, ChainHead, ChainedEvent};
use care_alert::Alert;
use care_application::{
    AlertRepository, AuditError, AuditLog, ConsentRepository, MessageOutcome, PersonRepository,
    QuarantineFilter, QuarantineStore, QuarantineSummary, QuarantinedMessage, ReferralRepository,
    RepoError, Resolution, SourceInfo, SourceRegistry,
};
use care_consent::Consent;
use care_kernel::{AlertId, PersonId, ReferralId, SourceId, Timestamp};
use care_person::{Identifier, NhsNumber, Person, SearchCriteria};
use care_referral::Referral;
use uuid::Uuid;

use crate::lock;

#[derive(Debug, Default)]
struct PeopleState {
    people: HashMap<PersonId, Person>,
    /// Identifier → the live record holding it.
    owners: HashMap<Identifier, PersonId>,
}

impl PeopleState {
    fn check(&self, person: &Person) -> Result<(), RepoError> {
        let stored = self.people.get(&person.id()).map_or(0, Person::version);
        if stored != person.version() {
            return Err(RepoError::Conflict);
        }
        if person.merged_into().is_none() {
            for identifier in person.identifiers() {
                if let Some(owner) = self.owners.get(&identifier)
                    && *owner != person.id()
                {
                    return Err(RepoError::IdentifierTaken(describe(&identifier)));
                }
            }
        }
        Ok(())
    }

    fn put(&mut self, person: &Person) -> u64 {
        if let Some(old) = self.people.get(&person.id()) {
            for identifier in old.identifiers() {
                if self.owners.get(&identifier) == Some(&old.id()) {
                    self.owners.remove(&identifier);
                }
            }
        }
        if person.merged_into().is_none() {
            for identifier in person.identifiers() {
                self.owners.insert(identifier, person.id());
            }
        }
        let mut stored = person.clone();
        let version = person.version() + 1;
        stored.set_version(version);
        self.people.insert(person.id(), stored);
        version
    }
}

/// The identifier's kind and source, never its value (values are personal data).
fn describe(identifier: &Identifier) -> String {
    match identifier {
        Identifier::Nhs(_) => "nhs_number".to_owned(),
        Identifier::Local(l) => format!("local id of {}", l.source()),
    }
}

/// People held in memory.
#[derive(Debug, Default)]
pub struct InMemoryPeople {
    state: Mutex<PeopleState>,
}

#[async_trait]
impl PersonRepository for InMemoryPeople {
    async fn get(&self, id: PersonId) -> Result<Option<Person>, RepoError> {
        Ok(lock(&self.state).people.get(&id).cloned())
    }

    async fn find_by_identifier(&self, id: &Identifier) -> Result<Option<Person>, RepoError> {
        let state = lock(&self.state);
        Ok(state
            .owners
            .get(id)
            .and_then(|owner| state.people.get(owner))
            .cloned())
    }

    async fn search(
        &self,
        criteria: &SearchCriteria,
        limit: usize,
    ) -> Result<Vec<Person>, RepoError> {
        let state = lock(&self.state);
        if let SearchCriteria::NhsNumber(n) = criteria {
            let owner = state.owners.get(&Identifier::Nhs(n.clone()));
            return Ok(owner
                .and_then(|id| state.people.get(id))
                .cloned()
                .into_iter()
                .collect());
        }
        let mut found: Vec<Person> = state
            .people
            .values()
            .filter(|p| p.merged_into().is_none() && p.matches(criteria))
            .cloned()
            .collect();
        found.sort_by_key(Person::id);
        found.truncate(limit);
        Ok(found)
    }

    async fn save(&self, person: &Person) -> Result<u64, RepoError> {
        let mut state = lock(&self.state);
        state.check(person)?;
        Ok(state.put(person))
    }

    async fn save_merge(&self, survivor: &Person, retired: &Person) -> Result<(), RepoError> {
        care_application::ports::check_merge(survivor, retired)?;
        let mut state = lock(&self.state);
        // The retired record gives up its identifiers, so store it first when checking
        // the survivor's.
        let stored_retired = state.people.get(&retired.id()).map_or(0, Person::version);
        if stored_retired != retired.version() {
            return Err(RepoError::Conflict);
        }
        let mut trial = PeopleState {
            people: state.people.clone(),
            owners: state.owners.clone(),
        };
        trial.put(retired);
        trial.check(survivor)?;
        trial.put(survivor);
        *state = trial;
        Ok(())
    }
}

/// A map by id with a unique (source, source reference) index, for alerts and referrals.
#[derive(Debug)]
struct BySourceRef<K, V> {
    items: HashMap<K, V>,
    refs: HashMap<(SourceId, String), K>,
}

impl<K, V> Default for BySourceRef<K, V> {
    fn default() -> Self {
        Self {
            items: HashMap::new(),
            refs: HashMap::new(),
        }
    }
}

macro_rules! source_ref_store {
    ($(#[$doc:meta])* $name:ident, $port:ident, $item:ty, $id:ty, $sort:expr) => {
        $(#[$doc])*
        #[derive(Debug, Default)]
        pub struct $name {
            state: Mutex<BySourceRef<$id, $item>>,
        }

        #[async_trait]
        impl $port for $name {
            async fn find_by_source_ref(
                &self,
                source: &SourceId,
                source_ref: &str,
            ) -> Result<Option<$item>, RepoError> {
                let state = lock(&self.state);
                Ok(state
                    .refs
                    .get(&(source.clone(), source_ref.to_owned()))
                    .and_then(|id| state.items.get(id))
                    .cloned())
            }

            async fn save(&self, item: &$item) -> Result<u64, RepoError> {
                let mut state = lock(&self.state);
                let key = (item.source().id.clone(), item.source_ref().to_owned());
                if state.refs.get(&key).is_some_and(|existing| *existing != item.id()) {
                    return Err(RepoError::Conflict);
                }
                let stored = state.items.get(&item.id()).map_or(0, |i| i.version());
                if stored != item.version() {
                    return Err(RepoError::Conflict);
                }
                let mut kept = item.clone();
                kept.set_version(stored + 1);
                state.refs.insert(key, item.id());
                state.items.insert(item.id(), kept);
                Ok(stored + 1)
            }

            async fn list_for_person(&self, person: PersonId) -> Result<Vec<$item>, RepoError> {
                let state = lock(&self.state);
                let mut found: Vec<$item> = state
                    .items
                    .values()
                    .filter(|i| i.person() == person)
                    .cloned()
                    .collect();
                found.sort_by($sort);
                Ok(found)
            }

            async fn reassign_person(&self, from: PersonId, to: PersonId) -> Result<u64, RepoError> {
                let mut state = lock(&self.state);
                let mut moved = 0;
                for item in state.items.values_mut().filter(|i| i.person() == from) {
                    item.reassign(to);
                    item.set_version(item.version() + 1);
                    moved += 1;
                }
                Ok(moved)
            }
        }
    };
}

source_ref_store!(
    /// Referrals held in memory.
    InMemoryReferrals,
    ReferralRepository,
    Referral,
    ReferralId,
    |a: &Referral, b: &Referral| b
        .details()
        .received()
        .cmp(&a.details().received())
        .then(a.id().cmp(&b.id()))
);

source_ref_store!(
    /// Alerts held in memory.
    InMemoryAlerts,
    AlertRepository,
    Alert,
    AlertId,
    |a: &Alert, b: &Alert| a.id().cmp(&b.id())
);

/// Consent held in memory.
#[derive(Debug, Default)]
pub struct InMemoryConsent {
    state: Mutex<HashMap<NhsNumber, Consent>>,
}

#[async_trait]
impl ConsentRepository for InMemoryConsent {
    async fn get(&self, nhs_number: &NhsNumber) -> Result<Option<Consent>, RepoError> {
        Ok(lock(&self.state).get(nhs_number).cloned())
    }

    async fn get_many(&self, nhs_numbers: &[NhsNumber]) -> Result<Vec<Consent>, RepoError> {
        let state = lock(&self.state);
        let mut seen = std::collections::HashSet::new();
        Ok(nhs_numbers
            .iter()
            .filter(|n| seen.insert(*n))
            .filter_map(|n| state.get(n).cloned())
            .collect())
    }

    async fn save(&self, consent: &Consent) -> Result<u64, RepoError> {
        let mut state = lock(&self.state);
        let stored = state.get(consent.nhs_number()).map_or(0, Consent::version);
        if stored != consent.version() {
            return Err(RepoError::Conflict);
        }
        let mut kept = consent.clone();
        kept.set_version(stored + 1);
        state.insert(consent.nhs_number().clone(), kept);
        Ok(stored + 1)
    }
}

#[derive(Debug, Default)]
struct Chain {
    events: Vec<ChainedEvent>,
    head: ChainHead,
}

/// The audit chain held in memory: one mutex serialises appends.
#[derive(Debug, Default)]
pub struct InMemoryAuditLog {
    chain: Mutex<Chain>,
}

impl InMemoryAuditLog {
    /// A log holding the given events under the given head, as a store would load them:
    /// nothing is checked, so tests can hand it a tampered chain to verify.
    pub fn from_parts(events: Vec<ChainedEvent>, head: ChainHead) -> Self {
        Self {
            chain: Mutex::new(Chain { events, head }),
        }
    }

    /// Every event and the head, as stored (for tests and exports).
    pub fn snapshot(&self) -> (Vec<ChainedEvent>, ChainHead) {
        let chain = lock(&self.chain);
        (chain.events.clone(), chain.head)
    }
}

#[async_trait]
impl AuditLog for InMemoryAuditLog {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<ChainedEvent>, AuditError> {
        let mut chain = lock(&self.chain);
        let mut head = chain.head;
        let linked: Vec<ChainedEvent> = events.into_iter().map(|e| head.append(e)).collect();
        chain.events.extend(linked.iter().cloned());
        chain.head = head;
        Ok(linked)
    }

    async fn head(&self) -> Result<ChainHead, AuditError> {
        Ok(lock(&self.chain).head)
    }

    async fn read(&self, from: u64, limit: usize) -> Result<Vec<ChainedEvent>, AuditError> {
        let chain = lock(&self.chain);
        let start = usize::try_from(from).unwrap_or(usize::MAX);
        // Stored in append order: the position is the index (unless a test tampered).
        Ok(chain
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn for_person(
        &self,
        person: PersonId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<AuditEvent>, AuditError> {
        let chain = lock(&self.chain);
        Ok(chain
            .events
            .iter()
            .map(|c| &c.event)
            .filter(|e| e.person == Some(person) && e.at >= from && e.at < to)
            .cloned()
            .collect())
    }
}

/// Feed sources held in memory.
#[derive(Debug, Default)]
pub struct InMemorySources {
    state: Mutex<BTreeMap<SourceId, SourceInfo>>,
}

#[async_trait]
impl SourceRegistry for InMemorySources {
    async fn get(&self, id: &SourceId) -> Result<Option<SourceInfo>, RepoError> {
        Ok(lock(&self.state).get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<SourceInfo>, RepoError> {
        Ok(lock(&self.state).values().cloned().collect())
    }

    async fn register(&self, info: &SourceInfo) -> Result<(), RepoError> {
        let mut state = lock(&self.state);
        let mut info = info.clone();
        if let Some(existing) = state.get(&info.source.id) {
            info.last_message_at = existing.last_message_at;
            info.applied = existing.applied;
            info.unchanged = existing.unchanged;
            info.quarantined = existing.quarantined;
        }
        state.insert(info.source.id.clone(), info);
        Ok(())
    }

    async fn record_activity(
        &self,
        id: &SourceId,
        at: Timestamp,
        outcome: MessageOutcome,
    ) -> Result<(), RepoError> {
        let mut state = lock(&self.state);
        if let Some(info) = state.get_mut(id) {
            info.last_message_at = Some(info.last_message_at.map_or(at, |last| last.max(at)));
            match outcome {
                MessageOutcome::Applied => info.applied += 1,
                MessageOutcome::Unchanged => info.unchanged += 1,
                MessageOutcome::Quarantined => info.quarantined += 1,
            }
        }
        Ok(())
    }
}

/// The quarantine, in memory.
#[derive(Debug, Default)]
pub struct InMemoryQuarantine {
    state: Mutex<HashMap<Uuid, QuarantinedMessage>>,
}

#[async_trait]
impl QuarantineStore for InMemoryQuarantine {
    async fn put(&self, message: &QuarantinedMessage) -> Result<Uuid, RepoError> {
        let mut state = lock(&self.state);
        if state.contains_key(&message.id) {
            return Err(RepoError::Conflict);
        }
        if message.resolution.is_none()
            && let Some(open) = state.values().find(|m| {
                m.resolution.is_none() && m.source == message.source && m.raw == message.raw
            })
        {
            return Ok(open.id);
        }
        state.insert(message.id, message.clone());
        Ok(message.id)
    }

    async fn get(&self, id: Uuid) -> Result<Option<QuarantinedMessage>, RepoError> {
        Ok(lock(&self.state).get(&id).cloned())
    }

    async fn list(
        &self,
        filter: &QuarantineFilter,
        limit: usize,
    ) -> Result<Vec<QuarantineSummary>, RepoError> {
        let state = lock(&self.state);
        let mut found: Vec<&QuarantinedMessage> = state
            .values()
            .filter(|m| filter.source.as_ref().is_none_or(|s| *s == m.source))
            .filter(|m| !filter.open_only || m.resolution.is_none())
            .collect();
        found.sort_by(|a, b| b.received_at.cmp(&a.received_at).then(a.id.cmp(&b.id)));
        Ok(found
            .into_iter()
            .take(limit)
            .map(QuarantineSummary::from)
            .collect())
    }

    async fn resolve(&self, id: Uuid, resolution: &Resolution) -> Result<bool, RepoError> {
        let mut state = lock(&self.state);
        match state.get_mut(&id) {
            Some(m) if m.resolution.is_none() => {
                m.resolution = Some(resolution.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
