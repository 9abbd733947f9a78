//! Sign-in rate limiting per client address and per account name (`governor`), on top
//! of the lockout the application applies after repeated failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Network refusals written to the security log per minute and address.
pub const REFUSALS_RECORDED_PER_MINUTE: u32 = 60;

/// Sign-in attempts allowed per minute, per address and per account.
#[derive(Debug)]
pub struct SignInLimits {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    per_account: DefaultKeyedRateLimiter<String>,
    refusal_records: DefaultKeyedRateLimiter<IpAddr>,
    in_progress: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn account_key(account: &str) -> String {
    account.trim().to_lowercase().chars().take(128).collect()
}

impl SignInLimits {
    /// Limits of `per_address` and `per_account` attempts a minute (each at least 1).
    pub fn new(per_address: u32, per_account: u32) -> Self {
        let quota =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            per_address: RateLimiter::keyed(quota(per_address)),
            per_account: RateLimiter::keyed(quota(per_account)),
            refusal_records: RateLimiter::keyed(quota(REFUSALS_RECORDED_PER_MINUTE)),
            in_progress: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a network refusal from this address should be written to the security
    /// log: the first [`REFUSALS_RECORDED_PER_MINUTE`] a minute are, the rest only
    /// counted in the metrics, so that a scanner cannot fill the database.
    pub fn may_record_refusal(&self, client: IpAddr) -> bool {
        if self.refusal_records.len() > 10_000 {
            self.refusal_records.retain_recent();
        }
        self.refusal_records.check_key(&client).is_ok()
    }

    /// Waits until no other sign-in for this account is in progress on this server, so
    /// that parallel guesses are counted one after another and the lockout holds.
    pub async fn one_at_a_time(&self, account: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self
                .in_progress
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.len() > 10_000 {
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            map.entry(account_key(account)).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Whether one more attempt from this address for this account may go ahead.
    pub fn check(&self, client: IpAddr, account: &str) -> bool {
        let key = account_key(account);
        let address_ok = self.per_address.check_key(&client).is_ok();
        let account_ok = self.per_account.check_key(&key).is_ok();
        // Forget idle keys now and then so the maps stay small.
        if self.per_account.len() > 10_000 {
            self.per_account.retain_recent();
        }
        if self.per_address.len() > 10_000 {
            self.per_address.retain_recent();
        }
        address_ok && account_ok
    }
}

impl Default for SignInLimits {
    /// 30 attempts a minute per address, 10 per account.
    fn default() -> Self {
        Self::new(30, 10)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_apply_per_address_and_per_account() {
        let l = SignInLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(l.check(a, "gp"));
        assert!(l.check(a, "GP"));
        assert!(
            !l.check(b, "gp"),
            "the account's limit holds across addresses"
        );
        assert!(l.check(a, "dpo"));
        assert!(
            !l.check(a, "auditor"),
            "the address's limit holds across accounts"
        );
    }

    #[test]
    fn network_refusals_are_recorded_up_to_a_limit_per_address() {
        let l = SignInLimits::default();
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        let b: IpAddr = "203.0.113.10".parse().unwrap();
        let recorded = (0..100).filter(|_| l.may_record_refusal(a)).count();
        assert_eq!(recorded, REFUSALS_RECORDED_PER_MINUTE as usize);
        assert!(
            l.may_record_refusal(b),
            "another address has its own allowance"
        );
    }
}
