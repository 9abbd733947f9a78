//! Accounts and sessions (SPEC §4): sign-in with lockout, session tokens that expire
//! when idle and after an absolute lifetime, sign-out, and the System Manager's user and
//! organisation administration (audited in the chain like every other access).
//!
//! Sign-in outcomes, network refusals and rate limiting go to the security log: they
//! concern no person's record and often no known user.

use std::net::IpAddr;
use std::sync::Arc;

use care_account::{LockoutPolicy, SessionEnd, SessionPolicy, check_password};
use care_kernel::{
    Action, Actor, InvalidValue, OrganisationId, Role, SourceId, Timestamp, UserId, bounded_text,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::ports::{
    AccountStore, Organisation, PasswordHasher, RepoError, SESSION_TOUCH_GRANULARITY,
    SecurityEvent, SecurityEventKind, SecurityLog, SessionRecord, SessionStore, TokenHash,
    TokenSource, UserAccount,
};
use crate::{AccessError, AuditReceipt, Services, gate::Access};

/// The ports accounts need, as the composition root wires them.
#[derive(Clone)]
pub struct IdentityPorts {
    /// Users and organisations.
    pub accounts: Arc<dyn AccountStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// The security log.
    pub security: Arc<dyn SecurityLog>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// Session tokens.
    pub tokens: Arc<dyn TokenSource>,
}

impl std::fmt::Debug for IdentityPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityPorts { .. }")
    }
}

/// Lockout and session lifetimes.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountSettings {
    /// Lockout after repeated failures.
    pub lockout: LockoutPolicy,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
}

/// Why a sign-in failed. Unknown user, wrong password and disabled account read the
/// same, so that sign-in does not tell which account names exist.
#[derive(Debug, Error)]
pub enum SignInError {
    /// Wrong user name or password (or a disabled account).
    #[error("the user name or password is wrong")]
    InvalidCredentials,
    /// Too many recent failures.
    #[error("the account is locked after repeated failed sign-ins; try again later")]
    Locked {
        /// Seconds until a retry may succeed (at most the lockout window).
        retry_after_secs: u64,
    },
    /// Storage failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<RepoError> for SignInError {
    fn from(e: RepoError) -> Self {
        SignInError::Unexpected(anyhow::Error::new(e))
    }
}

/// Why a token does not authenticate.
#[derive(Debug, Error)]
pub enum AuthError {
    /// No such session (or a malformed token).
    #[error("not signed in")]
    Unknown,
    /// The session ended.
    #[error("the session has ended")]
    Ended(SessionEnd),
    /// The account was disabled.
    #[error("the account is disabled")]
    Disabled,
    /// Storage failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<RepoError> for AuthError {
    fn from(e: RepoError) -> Self {
        AuthError::Unexpected(anyhow::Error::new(e))
    }
}

/// A new session.
#[derive(Clone)]
pub struct SignedIn {
    /// The bearer token: shown once, stored only hashed.
    pub token: String,
    /// Who signed in.
    pub user: UserId,
    /// Their role.
    pub role: Role,
    /// Their organisation.
    pub organisation: OrganisationId,
    /// When the session ends if unused.
    pub idle_timeout_secs: u64,
    /// When it ends however it is used.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("user", &self.user)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// An authenticated request's session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The actor, acting for direct care with no basis (the adapter adds the declared
    /// purpose and basis of the request).
    pub actor: Actor,
    /// When the session ends if unused from now.
    pub ends_at: Timestamp,
}

/// A user as the System Manager sees it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// Account name.
    pub user: UserId,
    /// Name.
    pub display_name: String,
    /// Organisation.
    pub organisation: OrganisationId,
    /// Role.
    pub role: Role,
    /// Feed source, for feed accounts.
    pub feed_source: Option<SourceId>,
    /// Disabled or not.
    pub disabled: bool,
    /// Created at.
    pub created_at: Timestamp,
}

impl From<&UserAccount> for UserSummary {
    fn from(u: &UserAccount) -> Self {
        Self {
            user: u.user.clone(),
            display_name: u.display_name.clone(),
            organisation: u.organisation.clone(),
            role: u.role,
            feed_source: u.feed_source.clone(),
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// A new user, as the System Manager (or the operator at the console) describes it.
#[derive(Clone)]
pub struct NewUser {
    /// Account name.
    pub user: UserId,
    /// Name.
    pub display_name: String,
    /// Organisation (must exist).
    pub organisation: OrganisationId,
    /// Role.
    pub role: Role,
    /// Required for feed accounts, refused for others.
    pub feed_source: Option<SourceId>,
    /// The initial password (checked against the policy).
    pub password: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("user", &self.user)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A result of an administration use case, with its audit receipt.
#[derive(Debug, Clone)]
pub struct Administered<T> {
    /// The result.
    pub value: T,
    receipt: AuditReceipt,
}

impl<T> Administered<T> {
    /// The audit receipt.
    pub fn receipt(&self) -> AuditReceipt {
        self.receipt
    }
}

/// The account use cases.
#[derive(Debug, Clone)]
pub struct Accounts {
    services: Services,
    ports: IdentityPorts,
    settings: AccountSettings,
}

/// Hashes a token as it is stored.
pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

const MAX_DISPLAY_NAME: usize = 200;
const MAX_ORG_NAME: usize = 200;
/// A password this long is refused before it is hashed (a cheap denial of service).
const MAX_SIGN_IN_PASSWORD_BYTES: usize = 1024;

impl Accounts {
    /// The account use cases over the record's services and the identity ports.
    pub fn new(services: Services, ports: IdentityPorts, settings: AccountSettings) -> Self {
        Self {
            services,
            ports,
            settings,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> AccountSettings {
        self.settings
    }

    fn now(&self) -> Timestamp {
        self.services.ports().clock.now()
    }

    async fn log(
        &self,
        kind: SecurityEventKind,
        user: Option<UserId>,
        client: IpAddr,
        detail: Option<String>,
    ) -> Result<(), RepoError> {
        let event = SecurityEvent {
            at: self.now(),
            kind,
            user,
            client,
            detail,
        };
        tracing::info!(target: "security", kind = kind.as_str(), user = event.user.as_ref().map(UserId::as_str), %client, "security event");
        self.ports.security.append(&event).await
    }

    /// Signs in. Unknown users, wrong passwords and disabled accounts fail alike (and
    /// take alike long: an unknown user's attempt is still checked against a hash).
    /// Five failures within the lockout window lock the account until the oldest leaves
    /// it; a correct password does not unlock it.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<SignedIn, SignInError> {
        let now = self.now();
        let user = UserId::parse(username).ok();
        let account = match &user {
            Some(u) => self.ports.accounts.user(u).await?,
            None => None,
        };
        // Every well-formed name is counted, known or not, so that lockout does not tell
        // which account names exist.
        if let Some(name) = &user {
            let cleared = account.as_ref().and_then(|a| a.failures_cleared_at);
            let since = self.settings.lockout.counting_from(now, cleared);
            let failures = self
                .ports
                .security
                .count(name, SecurityEventKind::SignInFailed, since)
                .await?;
            if self.settings.lockout.is_locked(failures) {
                self.log(SecurityEventKind::SignInLocked, user.clone(), client, None)
                    .await?;
                return Err(SignInError::Locked {
                    retry_after_secs: self.settings.lockout.window.as_secs(),
                });
            }
        }
        let phc = account.as_ref().map(|a| a.password_hash.as_str());
        let password_ok = password.len() <= MAX_SIGN_IN_PASSWORD_BYTES
            && self.ports.hasher.verify(password, phc).await;
        let account = match account {
            Some(a) if password_ok && !a.disabled => a,
            other => {
                let detail = match &other {
                    None => "unknown user",
                    Some(a) if a.disabled => "account disabled",
                    Some(_) => "wrong password",
                };
                self.log(
                    SecurityEventKind::SignInFailed,
                    user,
                    client,
                    Some(detail.into()),
                )
                .await?;
                return Err(SignInError::InvalidCredentials);
            }
        };

        let token = self.ports.tokens.new_token();
        let session = SessionRecord {
            token_hash: hash_token(&token),
            user: account.user.clone(),
            created_at: now,
            last_seen_at: now,
            revoked_at: None,
        };
        self.ports.sessions.create(&session).await?;
        self.ports
            .accounts
            .clear_failures(&account.user, now)
            .await?;
        self.log(
            SecurityEventKind::SignInSucceeded,
            Some(account.user.clone()),
            client,
            None,
        )
        .await?;
        Ok(SignedIn {
            token,
            user: account.user,
            role: account.role,
            organisation: account.organisation,
            idle_timeout_secs: self.settings.sessions.idle_timeout.as_secs(),
            expires_at: now
                + chrono::Duration::from_std(self.settings.sessions.absolute_lifetime)
                    .unwrap_or(chrono::Duration::MAX),
        })
    }

    /// The actor behind a bearer token, if its session is live and its account enabled.
    /// Notes the use (at most one write per session per few seconds).
    pub async fn authenticate(
        &self,
        token: &str,
        client: IpAddr,
    ) -> Result<Authenticated, AuthError> {
        if token.is_empty() || token.len() > 256 {
            return Err(AuthError::Unknown);
        }
        let now = self.now();
        let hash = hash_token(token);
        let (session, account) = self
            .ports
            .sessions
            .get_with_account(&hash, self.ports.accounts.as_ref())
            .await?
            .ok_or(AuthError::Unknown)?;
        self.settings
            .sessions
            .check(
                now,
                session.created_at,
                session.last_seen_at,
                session.revoked_at.is_some(),
            )
            .map_err(AuthError::Ended)?;
        if account.disabled {
            return Err(AuthError::Disabled);
        }
        // Write `last_seen_at` at most every few seconds, and often enough that a short
        // idle timeout is still honoured.
        let every = SESSION_TOUCH_GRANULARITY.min(self.settings.sessions.idle_timeout / 4);
        let granularity = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::zero());
        let last_seen = if now - session.last_seen_at >= granularity {
            self.ports.sessions.touch(&hash, now).await?;
            now
        } else {
            session.last_seen_at
        };
        let mut actor = Actor::new(account.user, account.organisation, account.role, client);
        if let Some(source) = account.feed_source {
            actor = actor.with_feed_source(source);
        }
        Ok(Authenticated {
            actor,
            ends_at: self
                .settings
                .sessions
                .ends_at(session.created_at, last_seen),
        })
    }

    /// The actor of a feed account that submits over a channel configured for it rather
    /// than signed in (an MLLP listener): the account must exist and be enabled. Whether
    /// it may submit for a source is the feed session's check.
    pub async fn feed_actor(&self, user: &UserId, client: IpAddr) -> Result<Actor, AuthError> {
        let account = self
            .ports
            .accounts
            .user(user)
            .await?
            .ok_or(AuthError::Unknown)?;
        if account.disabled {
            return Err(AuthError::Disabled);
        }
        let mut actor = Actor::new(account.user, account.organisation, account.role, client);
        if let Some(source) = account.feed_source {
            actor = actor.with_feed_source(source);
        }
        Ok(actor)
    }

    /// Signs out: the session's token stops working at once, on every server.
    pub async fn sign_out(&self, token: &str, client: IpAddr) -> Result<bool, AuthError> {
        let now = self.now();
        let hash = hash_token(token);
        let Some(session) = self.ports.sessions.get(&hash).await? else {
            return Ok(false);
        };
        let revoked = self.ports.sessions.revoke(&hash, now).await?;
        if revoked {
            self.log(
                SecurityEventKind::SignedOut,
                Some(session.user),
                client,
                None,
            )
            .await?;
        }
        Ok(revoked)
    }

    /// Records a request refused because its address is outside the allow-list.
    pub async fn record_network_refusal(
        &self,
        client: IpAddr,
        path: &str,
    ) -> Result<(), RepoError> {
        let detail: String = path.chars().take(200).collect();
        self.log(
            SecurityEventKind::NetworkRefused,
            None,
            client,
            Some(detail),
        )
        .await
    }

    /// Records a connection refused because the feed account configured for its channel
    /// may not submit (unknown, disabled, not a feed account).
    pub async fn record_feed_account_refused(
        &self,
        user: &UserId,
        client: IpAddr,
        why: &str,
    ) -> Result<(), RepoError> {
        let detail: String = why.chars().take(200).collect();
        self.log(
            SecurityEventKind::FeedAccountRefused,
            Some(user.clone()),
            client,
            Some(detail),
        )
        .await
    }

    /// Records a sign-in refused by the rate limit.
    pub async fn record_rate_limited(
        &self,
        client: IpAddr,
        username: &str,
    ) -> Result<(), RepoError> {
        self.log(
            SecurityEventKind::RateLimited,
            UserId::parse(username).ok(),
            client,
            None,
        )
        .await
    }

    // ---- administration (System Manager) ----------------------------------------------

    /// Administration in two steps: `refuse_admin` first (a refusal is audited before
    /// anything else is looked at), then, once the request is known to be valid,
    /// `gate_admin` appends the permitted event naming what is changed.
    async fn refuse_admin(&self, actor: &Actor, what: &str) -> Result<(), AccessError> {
        let access = Access::new(actor, self.now(), Action::ManageUsers).on(what.to_owned());
        self.services.refuse_early(&access).await
    }

    async fn gate_admin(&self, actor: &Actor, what: &str) -> Result<AuditReceipt, AccessError> {
        let access = Access::new(actor, self.now(), Action::ManageUsers).on(what.to_owned());
        self.services.gate(&access).await
    }

    /// Audits an administration request that was refused as invalid, and returns its
    /// error (or the audit's own failure, which outranks it).
    async fn refuse_invalid(&self, actor: &Actor, what: &str, error: AccessError) -> AccessError {
        let access = Access::new(actor, self.now(), Action::ManageUsers).on(what.to_owned());
        match self
            .services
            .refuse(&access, care_kernel::DenyReason::InvalidChange)
            .await
        {
            AccessError::Unexpected(e) => AccessError::Unexpected(e),
            _ => error,
        }
    }

    fn administered<T>(value: T, receipt: AuditReceipt) -> Administered<T> {
        Administered { value, receipt }
    }

    async fn validate_new_user(&self, new: &NewUser) -> Result<(), AccessError> {
        bounded_text("display_name", &new.display_name, MAX_DISPLAY_NAME)?;
        check_password(new.user.as_str(), &new.password)?;
        match (new.role, &new.feed_source) {
            (Role::Feed, None) => {
                return Err(
                    InvalidValue::new("feed_source", "a feed account needs its source").into(),
                );
            }
            (role, Some(_)) if role != Role::Feed => {
                return Err(
                    InvalidValue::new("feed_source", "only feed accounts have a source").into(),
                );
            }
            _ => {}
        }
        let orgs = self.ports.accounts.organisations().await?;
        if !orgs.iter().any(|o| o.id == new.organisation) {
            return Err(InvalidValue::new("organisation", "no such organisation").into());
        }
        if let Some(source) = &new.feed_source
            && self.services.ports().sources.get(source).await?.is_none()
        {
            return Err(InvalidValue::new("feed_source", "no such feed source").into());
        }
        Ok(())
    }

    async fn store_new_user(&self, new: NewUser) -> Result<UserSummary, AccessError> {
        self.validate_new_user(&new).await?;
        self.insert_user(new).await
    }

    async fn insert_user(&self, new: NewUser) -> Result<UserSummary, AccessError> {
        let account = UserAccount {
            password_hash: self.ports.hasher.hash(&new.password).await?,
            user: new.user,
            display_name: bounded_text("display_name", &new.display_name, MAX_DISPLAY_NAME)?,
            organisation: new.organisation,
            role: new.role,
            feed_source: new.feed_source,
            disabled: false,
            created_at: self.now(),
            failures_cleared_at: None,
        };
        if !self.ports.accounts.create_user(&account).await? {
            return Err(AccessError::Rejected(format!(
                "user {} already exists",
                account.user
            )));
        }
        Ok(UserSummary::from(&account))
    }

    /// Creates a user (System Manager).
    pub async fn create_user(
        &self,
        actor: &Actor,
        new: NewUser,
    ) -> Result<Administered<UserSummary>, AccessError> {
        let what = format!("users:create:{}:{}", new.user, new.role.as_str());
        self.refuse_admin(actor, &what).await?;
        if let Err(e) = self.validate_new_user(&new).await {
            return Err(self.refuse_invalid(actor, &what, e).await);
        }
        let receipt = self.gate_admin(actor, &what).await?;
        Ok(Self::administered(self.insert_user(new).await?, receipt))
    }

    /// Every user (System Manager).
    pub async fn users(
        &self,
        actor: &Actor,
    ) -> Result<Administered<Vec<UserSummary>>, AccessError> {
        self.refuse_admin(actor, "users:list").await?;
        let receipt = self.gate_admin(actor, "users:list").await?;
        let users = self.ports.accounts.users().await?;
        Ok(Self::administered(
            users.iter().map(UserSummary::from).collect(),
            receipt,
        ))
    }

    /// Changes one user: refused (and audited) for other roles before anything is looked
    /// at; audited as an invalid change when the user does not exist; otherwise audited
    /// as permitted, naming the user, and done.
    async fn change_user(
        &self,
        actor: &Actor,
        what: &str,
        user: &UserId,
        change: impl FnOnce(&mut UserAccount),
    ) -> Result<Administered<UserSummary>, AccessError> {
        let what = format!("{what}:{user}");
        let Some(mut account) = self.ports.accounts.user(user).await? else {
            let missing = InvalidValue::new("user", "no such user").into();
            return Err(self.refuse_invalid(actor, &what, missing).await);
        };
        let receipt = self.gate_admin(actor, &what).await?;
        change(&mut account);
        self.ports.accounts.update_user(&account).await?;
        Ok(Self::administered(UserSummary::from(&account), receipt))
    }

    /// Disables a user: they cannot sign in, and their sessions end at once.
    pub async fn disable_user(
        &self,
        actor: &Actor,
        user: &UserId,
    ) -> Result<Administered<UserSummary>, AccessError> {
        self.refuse_admin(actor, &format!("users:disable:{user}"))
            .await?;
        if &actor.user == user {
            let own = InvalidValue::new("user", "you cannot disable your own account").into();
            return Err(self
                .refuse_invalid(actor, &format!("users:disable:{user}"), own)
                .await);
        }
        let done = self
            .change_user(actor, "users:disable", user, |a| a.disabled = true)
            .await?;
        self.ports.sessions.revoke_user(user, self.now()).await?;
        Ok(done)
    }

    /// Enables a disabled user again.
    pub async fn enable_user(
        &self,
        actor: &Actor,
        user: &UserId,
    ) -> Result<Administered<UserSummary>, AccessError> {
        self.refuse_admin(actor, &format!("users:enable:{user}"))
            .await?;
        self.change_user(actor, "users:enable", user, |a| a.disabled = false)
            .await
    }

    /// Sets a new password (checked against the policy), clears the failure count and
    /// ends the user's sessions.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        user: &UserId,
        password: &str,
    ) -> Result<Administered<UserSummary>, AccessError> {
        let what = format!("users:reset_password:{user}");
        self.refuse_admin(actor, &what).await?;
        if let Err(e) = check_password(user.as_str(), password) {
            return Err(self.refuse_invalid(actor, &what, e.into()).await);
        }
        let hash = self.ports.hasher.hash(password).await?;
        let now = self.now();
        let done = self
            .change_user(actor, "users:reset_password", user, |a| {
                a.password_hash = hash;
                a.failures_cleared_at = Some(now);
            })
            .await?;
        self.ports.sessions.revoke_user(user, now).await?;
        Ok(done)
    }

    /// Creates an organisation (System Manager).
    pub async fn create_organisation(
        &self,
        actor: &Actor,
        id: OrganisationId,
        name: &str,
    ) -> Result<Administered<Organisation>, AccessError> {
        let what = format!("organisations:create:{id}");
        self.refuse_admin(actor, &what).await?;
        if let Err(e) = bounded_text("name", name, MAX_ORG_NAME) {
            return Err(self.refuse_invalid(actor, &what, e.into()).await);
        }
        let receipt = self.gate_admin(actor, &what).await?;
        let org = self.store_organisation(id, name).await?;
        Ok(Self::administered(org, receipt))
    }

    async fn store_organisation(
        &self,
        id: OrganisationId,
        name: &str,
    ) -> Result<Organisation, AccessError> {
        let org = Organisation {
            id,
            name: bounded_text("name", name, MAX_ORG_NAME)?,
            created_at: self.now(),
        };
        if !self.ports.accounts.create_organisation(&org).await? {
            return Err(AccessError::Rejected(format!(
                "organisation {} already exists",
                org.id
            )));
        }
        Ok(org)
    }

    /// The newest security events — sign-ins, sign-outs, network refusals, rate
    /// limiting — at most `limit` (1 to 1,000), newest first (System Manager).
    pub async fn security_events(
        &self,
        actor: &Actor,
        limit: usize,
    ) -> Result<Administered<Vec<SecurityEvent>>, AccessError> {
        self.refuse_admin(actor, "security_events:list").await?;
        if !(1..=1_000).contains(&limit) {
            let bad = InvalidValue::new("limit", "must be 1 to 1000").into();
            return Err(self
                .refuse_invalid(actor, "security_events:list", bad)
                .await);
        }
        let receipt = self.gate_admin(actor, "security_events:list").await?;
        Ok(Self::administered(
            self.ports.security.recent(limit).await?,
            receipt,
        ))
    }

    /// Every organisation (System Manager).
    pub async fn organisations(
        &self,
        actor: &Actor,
    ) -> Result<Administered<Vec<Organisation>>, AccessError> {
        let receipt = self.gate_admin(actor, "organisations:list").await?;
        Ok(Self::administered(
            self.ports.accounts.organisations().await?,
            receipt,
        ))
    }

    // ---- provisioning by the operator at the console -----------------------------------

    /// Creates an organisation if it does not exist (for `carerecord demo` and
    /// `carerecord user`: the operator at the server's console, not an API caller).
    pub async fn provision_organisation(
        &self,
        id: OrganisationId,
        name: &str,
    ) -> Result<(), AccessError> {
        match self.store_organisation(id, name).await {
            Ok(_) | Err(AccessError::Rejected(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets a user's password (console provisioning), checked against the policy.
    pub async fn provision_password(
        &self,
        user: &UserId,
        password: &str,
    ) -> Result<(), AccessError> {
        check_password(user.as_str(), password)?;
        let hash = self.ports.hasher.hash(password).await?;
        let mut account = self
            .ports
            .accounts
            .user(user)
            .await?
            .ok_or_else(|| InvalidValue::new("user", "no such user"))?;
        account.password_hash = hash;
        account.failures_cleared_at = Some(self.now());
        self.ports.accounts.update_user(&account).await?;
        Ok(())
    }

    /// Whether a user exists (console provisioning).
    pub async fn user_exists(&self, user: &UserId) -> Result<bool, AccessError> {
        Ok(self.ports.accounts.user(user).await?.is_some())
    }

    /// Creates a user (console provisioning; see [`Accounts::provision_organisation`]).
    pub async fn provision_user(&self, new: NewUser) -> Result<UserSummary, AccessError> {
        self.store_new_user(new).await
    }
}
