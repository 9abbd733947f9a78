//! Credentials: Argon2id password hashing (the `argon2` crate, RustCrypto) and session
//! tokens from the operating system's random source.
//!
//! Hashing is deliberately slow (tens of milliseconds), so it runs on tokio's blocking
//! pool, never on a request thread.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use async_trait::async_trait;
use care_application::{PasswordHasher, RepoError, TokenSource};

/// Argon2id with the crate's default parameters (m = 19 MiB, t = 2, p = 1: the OWASP
/// recommendation). A verification with no stored hash runs against a hash of a random
/// password made at start, so an unknown user costs as much as a wrong password.
#[derive(Clone)]
pub struct Argon2Hasher {
    dummy: Arc<String>,
}

impl std::fmt::Debug for Argon2Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Argon2Hasher")
    }
}

fn hash_blocking(password: &[u8]) -> Result<String, RepoError> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| RepoError::Unexpected(anyhow::anyhow!("argon2 hashing failed: {e}")))
}

fn verify_blocking(password: &[u8], phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

impl Argon2Hasher {
    /// A hasher (hashes one random password to have something to compare unknown users
    /// against).
    pub fn new() -> Result<Self, RepoError> {
        let dummy = hash_blocking(RandomTokens.new_token().as_bytes())?;
        Ok(Self {
            dummy: Arc::new(dummy),
        })
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RepoError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RepoError::Unexpected(anyhow::anyhow!("hashing task failed: {e}")))
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &str) -> Result<String, RepoError> {
        let password = password.as_bytes().to_vec();
        blocking(move || hash_blocking(&password)).await?
    }

    async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let password = password.as_bytes().to_vec();
        let (phc, real) = match phc {
            Some(p) => (p.to_owned(), true),
            None => (self.dummy.as_str().to_owned(), false),
        };
        let matched = blocking(move || verify_blocking(&password, &phc))
            .await
            .unwrap_or(false);
        matched && real
    }
}

/// 256-bit tokens from the OS random source, as 64 hex digits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomTokens;

impl TokenSource for RandomTokens {
    fn new_token(&self) -> String {
        let mut bytes = [0u8; 32];
        // The OS random source failing is not something to carry on from: a token of
        // zeros would be guessable. `getrandom` only fails on broken platforms.
        if let Err(e) = getrandom::fill(&mut bytes) {
            random_source_failed(&e);
        }
        hex::encode(bytes)
    }
}

#[allow(clippy::panic)]
fn random_source_failed(e: &getrandom::Error) -> ! {
    panic!("the operating system's random source failed: {e}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let h = Argon2Hasher::new().unwrap();
        let a = h.hash("correct horse battery").await.unwrap();
        let b = h.hash("correct horse battery").await.unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(h.verify("correct horse battery", Some(&a)).await);
        assert!(!h.verify("correct horse batterz", Some(&a)).await);
        assert!(!h.verify("anything", Some("not a phc string")).await);
        assert!(!h.verify("anything", None).await);
    }

    #[test]
    fn tokens_are_256_bits_and_unique() {
        let t = RandomTokens.new_token();
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(t, RandomTokens.new_token());
    }
}
