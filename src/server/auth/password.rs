//! Password hashing: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1), always
//! off the async runtime and at most one run per core at once (verifications reuse their work
//! memory), with a dummy hash so unknown accounts cost the same time as known ones.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Semaphore;

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
    /// One permit per argon2 run allowed at once (see [`argon2_slots`]).
    slots: Arc<Semaphore>,
    /// Argon2 work memory for verifications, at most one buffer per slot, reused: allocating
    /// 19 MiB per sign-in left the allocator holding most of it afterwards (115 MB after 55
    /// sign-ins one at a time).
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
}

/// How many argon2 runs may go at once: one per core. Each run holds 19 MiB and keeps a core
/// busy, so more at once only adds memory; unbounded, a burst of 55 sign-ins (right or wrong,
/// known account or not) took the server past 1 GB, and the allocator kept it afterwards.
pub fn argon2_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `work` off the runtime once an argon2 slot is free; the slot is held until `work`
/// ends, even if the caller stops waiting.
async fn run_limited<T: Send + 'static>(
    slots: &Arc<Semaphore>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| HashError(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|e| HashError(e.to_string()))
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

/// Whether `password` matches `hash`, computing argon2 (with the hash's own parameters) in
/// `memory`, which is grown to the hash's memory cost if needed and kept for the next call.
fn verify_in(
    memory: &mut Vec<Block>,
    password: &[u8],
    hash: &PasswordHash<'_>,
) -> argon2::password_hash::Result<bool> {
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return Ok(false);
    };
    let params = Params::try_from(hash)?;
    let algorithm = Algorithm::try_from(hash.algorithm)?;
    let version = hash
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes)?;
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..])?)
    })?;
    // `Output` compares in constant time.
    Ok(computed == expected)
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
        let slots = Arc::new(Semaphore::new(argon2_slots()));
        let dummy = SecretString::from(format!("dummy-{}", uuid::Uuid::new_v4()));
        let dummy_hash = run_limited(&slots, move || hash_blocking(&dummy)).await??;
        Ok(Passwords {
            dummy_hash: dummy_hash.into(),
            verifications: Arc::new(AtomicU64::new(0)),
            hashes: Arc::new(AtomicU64::new(0)),
            slots,
            memory: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Hashes a new password with the current parameters.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        self.hashes.fetch_add(1, Ordering::Relaxed);
        run_limited(&self.slots, move || hash_blocking(&password)).await?
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
        let memory = self.memory.clone();
        run_limited(&self.slots, move || {
            let parsed = PasswordHash::new(&hash).map_err(|e| HashError(e.to_string()))?;
            // At most one run per slot at once, so there are never more buffers than slots.
            let mut buffer = memory
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
                .unwrap_or_default();
            // Verification uses the parameters recorded in the hash, so old hashes still verify.
            let matches = verify_in(&mut buffer, password.expose_secret().as_bytes(), &parsed)
                .unwrap_or(false);
            memory
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(buffer);
            Ok(if matches && account_exists {
                Verified::Yes {
                    upgrade: !is_current(&parsed),
                }
            } else {
                Verified::No
            })
        })
        .await?
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

    #[test]
    fn reused_memory_verifies_like_the_library() {
        use argon2::password_hash::PasswordVerifier as _;
        let weak = weak_hash_for_tests("old password 123");
        let strong = hash_blocking(&SecretString::from("a long passphrase here")).unwrap();
        // One buffer through all cases: a small hash, a larger one, then the small one again.
        let mut memory = Vec::new();
        for (hash, password) in [
            (&weak, "old password 123"),
            (&strong, "a long passphrase here"),
            (&weak, "old password 123"),
        ] {
            let parsed = PasswordHash::new(hash).unwrap();
            for (attempt, right) in [(password, true), ("another password", false)] {
                assert_eq!(
                    verify_in(&mut memory, attempt.as_bytes(), &parsed).unwrap(),
                    right,
                    "{hash} {attempt}"
                );
                assert_eq!(
                    Argon2::default()
                        .verify_password(attempt.as_bytes(), &parsed)
                        .is_ok(),
                    right
                );
            }
        }
        assert_eq!(memory.len(), MEMORY_KIB as usize);
        let no_output = PasswordHash::new("$argon2id$v=19$m=4096,t=1,p=1$c2FsdHNhbHQ").unwrap();
        assert!(!verify_in(&mut memory, b"x", &no_output).unwrap());
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn argon2_runs_wait_for_a_free_slot() {
        use std::sync::atomic::AtomicUsize;
        let slots = Arc::new(Semaphore::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut runs = Vec::new();
        for _ in 0..8 {
            let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
            runs.push(tokio::spawn(async move {
                run_limited(&slots, move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
                .unwrap();
            }));
        }
        for run in runs {
            run.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert!(argon2_slots() >= 1);
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
