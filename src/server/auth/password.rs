//! Password hashing: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1), always
//! off the async runtime, with a dummy hash so unknown accounts cost the same time as known ones.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Memory cost in KiB.
pub const MEMORY_KIB: u32 = 19_456;
/// Iterations.
pub const ITERATIONS: u32 = 2;
/// Parallelism.
pub const PARALLELISM: u32 = 1;

/// Hashing failed (only on a broken hash string or an exhausted thread pool).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// The outcome of checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Correct; `upgrade` when the stored hash uses weaker parameters than today's.
    Yes {
        /// The hash should be replaced by one with the current parameters.
        upgrade: bool,
    },
    /// Wrong password (or no such account).
    No,
}

/// Hashes and verifies passwords.
#[derive(Clone)]
pub struct Passwords {
    dummy_hash: Arc<str>,
    verifications: Arc<AtomicU64>,
    hashes: Arc<AtomicU64>,
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .expect("the OWASP argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &SecretString) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

fn is_current(hash: &PasswordHash<'_>) -> bool {
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    hash.algorithm.as_str() == "argon2id"
        && hash.version == Some(Version::V0x13.into())
        && params.m_cost() >= MEMORY_KIB
        && params.t_cost() >= ITERATIONS
        && params.p_cost() >= PARALLELISM
}

impl Passwords {
    /// Prepares the dummy hash (one argon2 run, off the runtime).
    pub async fn new() -> Result<Self, HashError> {
        let dummy = SecretString::from(format!("dummy-{}", uuid::Uuid::new_v4()));
        let dummy_hash = tokio::task::spawn_blocking(move || hash_blocking(&dummy))
            .await
            .map_err(|e| HashError(e.to_string()))??;
        Ok(Passwords {
            dummy_hash: dummy_hash.into(),
            verifications: Arc::new(AtomicU64::new(0)),
            hashes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Hashes a new password with the current parameters.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        self.hashes.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| HashError(e.to_string()))?
    }

    /// Checks `password` against `stored` — or, when there is no account, against the dummy
    /// hash, so the answer takes the same time either way and is always `No`.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        let account_exists = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        self.verifications.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| HashError(e.to_string()))?;
            // Verification uses the parameters recorded in the hash, so old hashes still verify.
            let matches = Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok();
            Ok(if matches && account_exists {
                Verified::Yes {
                    upgrade: !is_current(&parsed),
                }
            } else {
                Verified::No
            })
        })
        .await
        .map_err(|e| HashError(e.to_string()))?
    }

    /// How many argon2 verifications ran (lets tests prove unknown accounts pay the same cost).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// How many new hashes were made (lets tests prove a refused request cost no argon2 run).
    pub fn hashes(&self) -> u64 {
        self.hashes.load(Ordering::Relaxed)
    }
}

/// Hashes with explicitly weaker parameters; used to prove that old hashes are upgraded.
pub fn weak_hash_for_tests(password: &str) -> String {
    let params = Params::new(4096, 1, 1, None).expect("valid parameters");
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing works")
        .to_string()
}

/// Whether a stored hash uses the current parameters.
pub fn hash_is_current(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| is_current(&parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_use_owasp_parameters_and_verify() {
        let passwords = Passwords::new().await.unwrap();
        let hash = passwords
            .hash(SecretString::from("a long passphrase here"))
            .await
            .unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hash_is_current(&hash));
        assert_eq!(
            passwords
                .verify(
                    SecretString::from("a long passphrase here"),
                    Some(hash.clone())
                )
                .await
                .unwrap(),
            Verified::Yes { upgrade: false }
        );
        assert_eq!(
            passwords
                .verify(SecretString::from("wrong"), Some(hash))
                .await
                .unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn weak_hashes_verify_and_ask_for_upgrade() {
        let passwords = Passwords::new().await.unwrap();
        let weak = weak_hash_for_tests("old password 123");
        assert!(!hash_is_current(&weak));
        assert_eq!(
            passwords
                .verify(SecretString::from("old password 123"), Some(weak))
                .await
                .unwrap(),
            Verified::Yes { upgrade: true }
        );
    }

    #[tokio::test]
    async fn unknown_accounts_still_run_argon2() {
        let passwords = Passwords::new().await.unwrap();
        let before = passwords.verifications();
        assert_eq!(
            passwords
                .verify(SecretString::from("anything"), None)
                .await
                .unwrap(),
            Verified::No
        );
        assert_eq!(passwords.verifications(), before + 1);
    }
}
