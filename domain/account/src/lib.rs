//! Accounts: the rules of SPEC §4 that do not need a database or a clock of their own —
//! the password policy, lockout after repeated failures, and when a session ends.
//!
//! Pure: the caller passes the time in.

use std::sync::OnceLock;
use std::time::Duration;

use care_kernel::{InvalidValue, Timestamp};
use serde::{Deserialize, Serialize};

/// The shortest password accepted (SPEC §4).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest: Argon2 would take anything, but a megabyte "password" is an attack.
pub const MAX_PASSWORD_CHARS: usize = 256;

static COMMON: &str = include_str!("data/common-passwords.txt");

fn is_common(password: &str) -> bool {
    static SET: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    let set = SET.get_or_init(|| {
        COMMON
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    });
    set.contains(password.to_lowercase().as_str())
}

/// Checks a new password against the policy: at least 12 characters, not a known common
/// password (case-insensitively), and not containing the username (case-insensitively).
/// The error never contains the password.
pub fn check_password(username: &str, password: &str) -> Result<(), InvalidValue> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(InvalidValue::new(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(InvalidValue::new(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    if password.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            "password",
            "must not contain control characters",
        ));
    }
    let lower = password.to_lowercase();
    let name = username.trim().to_lowercase();
    if !name.is_empty() && lower.contains(&name) {
        return Err(InvalidValue::new(
            "password",
            "must not contain the username",
        ));
    }
    if is_common(password) {
        return Err(InvalidValue::new("password", "is a known common password"));
    }
    Ok(())
}

/// Lockout after repeated failed sign-ins (SPEC §4: e.g. 5 in 15 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutPolicy {
    /// Failures that lock the account.
    pub max_failures: u32,
    /// The window they are counted over; the lock lasts until the oldest of them leaves it.
    pub window: Duration,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
        }
    }
}

impl LockoutPolicy {
    /// From when failures count: the start of the window, or the last successful
    /// sign-in or password reset if that is later (a success clears the count).
    pub fn counting_from(&self, now: Timestamp, cleared_at: Option<Timestamp>) -> Timestamp {
        let start = now - chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX);
        match cleared_at {
            Some(c) if c > start => c,
            _ => start,
        }
    }

    /// Whether this many recent failures lock the account.
    pub fn is_locked(&self, recent_failures: u32) -> bool {
        recent_failures >= self.max_failures
    }
}

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPolicy {
    /// Ends a session nobody has used for this long (SPEC §4: default 15 minutes).
    pub idle_timeout: Duration,
    /// Ends every session this long after sign-in, however busy.
    pub absolute_lifetime: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(15 * 60),
            absolute_lifetime: Duration::from_secs(12 * 60 * 60),
        }
    }
}

/// Why a session is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Signed out or revoked (account disabled, password reset).
    Revoked,
    /// Unused for longer than the idle timeout.
    Idle,
    /// Older than the absolute lifetime.
    Expired,
}

impl SessionPolicy {
    /// Whether a session signed in at `created_at`, last used at `last_seen_at`, is still
    /// live at `now`; a session exactly at a limit is over.
    pub fn check(
        &self,
        now: Timestamp,
        created_at: Timestamp,
        last_seen_at: Timestamp,
        revoked: bool,
    ) -> Result<(), SessionEnd> {
        if revoked {
            return Err(SessionEnd::Revoked);
        }
        if elapsed(created_at, now) >= self.absolute_lifetime {
            return Err(SessionEnd::Expired);
        }
        if elapsed(last_seen_at, now) >= self.idle_timeout {
            return Err(SessionEnd::Idle);
        }
        Ok(())
    }

    /// When the session would end if not used again.
    pub fn ends_at(&self, created_at: Timestamp, last_seen_at: Timestamp) -> Timestamp {
        let idle = last_seen_at + to_chrono(self.idle_timeout);
        let absolute = created_at + to_chrono(self.absolute_lifetime);
        idle.min(absolute)
    }
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    (to - from).to_std().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn password_policy() {
        assert!(check_password("gp", "correct horse battery").is_ok());
        assert_eq!(
            check_password("gp", "short pass").unwrap_err().field,
            "password"
        );
        let e = check_password("mary.smith", "Mary.Smith-2026!!").unwrap_err();
        assert!(e.reason.contains("username"), "{e}");
        // In Django's list, and 12 characters long.
        let e = check_password("gp", "QWERTYUIOP12").unwrap_err();
        assert!(e.reason.contains("common"), "{e}");
        assert!(check_password("gp", &"x".repeat(300)).is_err());
        assert!(check_password("gp", "abc\u{0}defghijklmn").is_err());
        // 12 characters counted as characters, not bytes.
        assert!(check_password("gp", "ééééééééééé").is_err());
        assert!(check_password("gp", "éééééééééééz").is_ok());
    }

    #[test]
    fn the_common_list_is_loaded() {
        assert!(is_common("123456"));
        assert!(is_common("PASSWORD"));
        assert!(!is_common("vermilion-otter-lantern"));
    }

    #[test]
    fn lockout_counts_from_the_window_or_the_last_success() {
        let p = LockoutPolicy::default();
        assert_eq!(p.counting_from(t(1000), None), t(100));
        assert_eq!(p.counting_from(t(1000), Some(t(50))), t(100));
        assert_eq!(p.counting_from(t(1000), Some(t(500))), t(500));
        assert!(!p.is_locked(4));
        assert!(p.is_locked(5));
    }

    #[test]
    fn sessions_end_when_idle_expired_or_revoked() {
        let p = SessionPolicy::default();
        assert_eq!(p.check(t(899), t(0), t(0), false), Ok(()));
        assert_eq!(p.check(t(900), t(0), t(0), false), Err(SessionEnd::Idle));
        assert_eq!(p.check(t(1000), t(0), t(500), false), Ok(()));
        assert_eq!(p.check(t(10), t(0), t(0), true), Err(SessionEnd::Revoked));
        let lifetime = 12 * 3600;
        assert_eq!(
            p.check(t(lifetime), t(0), t(lifetime - 1), false),
            Err(SessionEnd::Expired)
        );
        assert_eq!(p.ends_at(t(0), t(100)), t(1000));
        assert_eq!(p.ends_at(t(0), t(lifetime - 10)), t(lifetime));
    }
}
