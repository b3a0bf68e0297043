//! Password hashing: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1), always
//! off the async runtime and at most one run per core at once (verifications reuse their work
//! memory), with a dummy hash so unknown accounts cost the same time as known ones. The queue
//! for a free run is bounded in length and in time: a caller that cannot get one soon is told
//! to come back ([`HashError::Busy`], answered 429 with `Retry-After`) instead of waiting
//! behind a flood of bogus sign-ins.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Memory cost in KiB.
pub const MEMORY_KIB: u32 = 19_456;
/// Iterations.
pub const ITERATIONS: u32 = 2;
/// Parallelism.
pub const PARALLELISM: u32 = 1;

/// Default longest wait for a free argon2 run.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);
/// Callers that may queue for a free argon2 run, per run allowed at once; more are told to
/// come back at once (a queue this long already takes seconds to drain).
pub const QUEUE_PER_SLOT: usize = 32;

/// Hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Only on a broken hash string or an exhausted thread pool.
    #[error("password hashing failed: {0}")]
    Failed(String),
    /// Every argon2 run is taken and the queue is full, or no run came free within the wait:
    /// the caller should try again after `retry_after_secs`.
    #[error("every password check is busy; the caller was asked to retry")]
    Busy {
        /// Seconds after which a retry may find a free run.
        retry_after_secs: u64,
    },
}

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
    /// One permit per argon2 run allowed at once (see [`argon2_slots`]), and the bounded
    /// queue for them.
    slots: Arc<Slots>,
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

/// The argon2 runs allowed at once and the bounded queue in front of them.
struct Slots {
    permits: Arc<Semaphore>,
    /// Callers waiting for a permit now.
    waiting: AtomicUsize,
    /// Most callers that may wait.
    max_waiting: usize,
    /// Longest wait.
    max_wait: Duration,
}

impl Slots {
    fn new(runs: usize, max_waiting: usize, max_wait: Duration) -> Self {
        Slots {
            permits: Arc::new(Semaphore::new(runs)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            max_wait,
        }
    }

    fn busy(&self) -> HashError {
        HashError::Busy {
            retry_after_secs: self.max_wait.as_secs().max(1),
        }
    }

    /// A permit at once, or after a wait in a queue of bounded length and time.
    async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, HashError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(self.busy());
        }
        let waited =
            tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        match waited {
            Ok(permit) => permit.map_err(|e| HashError::Failed(e.to_string())),
            Err(_) => Err(self.busy()),
        }
    }
}

/// Runs `work` off the runtime once an argon2 slot is free (or refuses as busy, see
/// [`Slots::acquire`]); the slot is held until `work` ends, even if the caller stops waiting.
async fn run_limited<T: Send + 'static>(
    slots: &Slots,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashError> {
    let slot = slots.acquire().await?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    })
    .await
    .map_err(|e| HashError::Failed(e.to_string()))
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
        .map_err(|e| HashError::Failed(e.to_string()))
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
    /// Prepares the dummy hash (one argon2 run, off the runtime); a caller waits at most
    /// [`DEFAULT_MAX_WAIT`] for a free run.
    pub async fn new() -> Result<Self, HashError> {
        Self::with_max_wait(DEFAULT_MAX_WAIT).await
    }

    /// [`Passwords::new`] with callers waiting at most `max_wait` for a free run.
    pub async fn with_max_wait(max_wait: Duration) -> Result<Self, HashError> {
        let runs = argon2_slots();
        let slots = Arc::new(Slots::new(runs, runs * QUEUE_PER_SLOT, max_wait));
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
            let parsed = PasswordHash::new(&hash).map_err(|e| HashError::Failed(e.to_string()))?;
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
        let slots = Arc::new(Slots::new(2, 8, Duration::from_secs(60)));
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_queue_for_a_run_is_bounded_in_length_and_time() {
        let slots = Arc::new(Slots::new(1, 1, Duration::from_millis(300)));
        let held = slots.permits.clone().try_acquire_owned().unwrap();
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { run_limited(&slots, || ()).await })
        };
        while slots.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // The queue is full: told at once to come back.
        assert!(matches!(
            run_limited(&slots, || ()).await,
            Err(HashError::Busy {
                retry_after_secs: 1
            })
        ));
        // The one waiting gives up after the longest wait.
        assert!(matches!(waiter.await.unwrap(), Err(HashError::Busy { .. })));
        drop(held);
        assert!(run_limited(&slots, || ()).await.is_ok());
        assert_eq!(slots.waiting.load(Ordering::SeqCst), 0);
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
