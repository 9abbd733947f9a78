//! In-memory users, organisations, sessions and security log.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use care_application::{
    AccountStore, Organisation, RepoError, SecurityEvent, SecurityEventKind, SecurityLog,
    SessionRecord, SessionStore, TokenHash, UserAccount,
};
use care_kernel::{OrganisationId, Timestamp, UserId};

use crate::lock;

/// Users and organisations in memory.
#[derive(Debug, Default)]
pub struct InMemoryAccounts {
    orgs: Mutex<BTreeMap<OrganisationId, Organisation>>,
    users: Mutex<BTreeMap<UserId, UserAccount>>,
}

#[async_trait]
impl AccountStore for InMemoryAccounts {
    async fn create_organisation(&self, org: &Organisation) -> Result<bool, RepoError> {
        let mut orgs = lock(&self.orgs);
        if orgs.contains_key(&org.id) {
            return Ok(false);
        }
        orgs.insert(org.id.clone(), org.clone());
        Ok(true)
    }

    async fn organisations(&self) -> Result<Vec<Organisation>, RepoError> {
        Ok(lock(&self.orgs).values().cloned().collect())
    }

    async fn create_user(&self, user: &UserAccount) -> Result<bool, RepoError> {
        if !lock(&self.orgs).contains_key(&user.organisation) {
            return Err(RepoError::Unexpected(anyhow::anyhow!(
                "no organisation {}",
                user.organisation
            )));
        }
        let mut users = lock(&self.users);
        if users.contains_key(&user.user) {
            return Ok(false);
        }
        users.insert(user.user.clone(), user.clone());
        Ok(true)
    }

    async fn user(&self, id: &UserId) -> Result<Option<UserAccount>, RepoError> {
        Ok(lock(&self.users).get(id).cloned())
    }

    async fn users(&self) -> Result<Vec<UserAccount>, RepoError> {
        Ok(lock(&self.users).values().cloned().collect())
    }

    async fn clear_failures(&self, user: &UserId, at: Timestamp) -> Result<bool, RepoError> {
        match lock(&self.users).get_mut(user) {
            Some(stored) => {
                stored.failures_cleared_at = Some(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn update_user(&self, user: &UserAccount) -> Result<bool, RepoError> {
        let mut users = lock(&self.users);
        match users.get_mut(&user.user) {
            Some(stored) => {
                *stored = user.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Sessions in memory.
#[derive(Debug, Default)]
pub struct InMemorySessions {
    sessions: Mutex<BTreeMap<[u8; 32], SessionRecord>>,
}

#[async_trait]
impl SessionStore for InMemorySessions {
    async fn create(&self, session: &SessionRecord) -> Result<(), RepoError> {
        let mut sessions = lock(&self.sessions);
        if sessions.contains_key(&session.token_hash.0) {
            return Err(RepoError::Unexpected(anyhow::anyhow!(
                "duplicate session token"
            )));
        }
        sessions.insert(session.token_hash.0, session.clone());
        Ok(())
    }

    async fn get(&self, token: &TokenHash) -> Result<Option<SessionRecord>, RepoError> {
        Ok(lock(&self.sessions).get(&token.0).cloned())
    }

    async fn touch(&self, token: &TokenHash, at: Timestamp) -> Result<bool, RepoError> {
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(&token.0) {
            Some(s) if s.revoked_at.is_none() && at > s.last_seen_at => {
                s.last_seen_at = at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke(&self, token: &TokenHash, at: Timestamp) -> Result<bool, RepoError> {
        let mut sessions = lock(&self.sessions);
        match sessions.get_mut(&token.0) {
            Some(s) if s.revoked_at.is_none() => {
                s.revoked_at = Some(at);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_user(&self, user: &UserId, at: Timestamp) -> Result<u64, RepoError> {
        let mut n = 0;
        for s in lock(&self.sessions).values_mut() {
            if &s.user == user && s.revoked_at.is_none() {
                s.revoked_at = Some(at);
                n += 1;
            }
        }
        Ok(n)
    }
}

/// The security log in memory.
#[derive(Debug, Default)]
pub struct InMemorySecurityLog {
    events: Mutex<Vec<SecurityEvent>>,
}

#[async_trait]
impl SecurityLog for InMemorySecurityLog {
    async fn append(&self, event: &SecurityEvent) -> Result<(), RepoError> {
        lock(&self.events).push(event.clone());
        Ok(())
    }

    async fn count(
        &self,
        user: &UserId,
        kind: SecurityEventKind,
        since: Timestamp,
    ) -> Result<u32, RepoError> {
        let n = lock(&self.events)
            .iter()
            .filter(|e| e.kind == kind && e.at >= since && e.user.as_ref() == Some(user))
            .count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn recent(&self, limit: usize) -> Result<Vec<SecurityEvent>, RepoError> {
        let events = lock(&self.events);
        Ok(events.iter().rev().take(limit).cloned().collect())
    }
}
