//! Sign-in throttling, stored in the database so every app instance counts together.
//!
//! - Per account (keyed by the typed email, whether or not such an account exists, so a lock
//!   reveals nothing): after 5 failures within 15 minutes each further failure locks the
//!   account for 30 s, doubling up to 15 minutes.
//! - Per client address: 20 failures within 10 minutes block the address (HTTP 429) until the
//!   window ends.
//! - Customer returns per client address: anyone can call the return address without an
//!   account, so [`RETURNS_PER_ADDRESS`] returns within [`RETURN_WINDOW_SECS`] are answered
//!   and further ones refused (HTTP 429) until the window ends. Generous, because many
//!   customers can share one mobile network address.

use crate::server::db::{self, throttle};
use sqlx::AnyPool;
use std::net::IpAddr;

/// Failures an account may have before locks start.
pub const ACCOUNT_FREE_FAILURES: i64 = 5;
/// Window over which account failures are counted.
pub const ACCOUNT_WINDOW_SECS: i64 = 15 * 60;
/// First lock length; doubles with each further failure.
pub const ACCOUNT_FIRST_LOCK_SECS: i64 = 30;
/// Longest account lock.
pub const ACCOUNT_MAX_LOCK_SECS: i64 = 15 * 60;
/// Failures a client address may have within the window.
pub const ADDRESS_MAX_FAILURES: i64 = 20;
/// Window over which address failures are counted.
pub const ADDRESS_WINDOW_SECS: i64 = 10 * 60;

/// Customer returns one client address may make within the window.
pub const RETURNS_PER_ADDRESS: i64 = 60;
/// Window over which customer returns are counted.
pub const RETURN_WINDOW_SECS: i64 = 10 * 60;

/// A refused attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `account` or `address`.
    pub scope: &'static str,
    /// Seconds until the next attempt may succeed.
    pub retry_after_secs: u64,
}

impl Refusal {
    /// What the sign-in page says.
    pub fn message(&self) -> String {
        let wait = human_wait(self.retry_after_secs);
        match self.scope {
            "account" => {
                format!("Too many failed sign-ins for this email address. Try again in {wait}.")
            }
            "return" => format!("Too many requests from your network. Try again in {wait}."),
            _ => format!("Too many failed sign-ins from your network. Try again in {wait}."),
        }
    }
}

/// A wait in words ("12 seconds", "3 minutes").
pub fn human_wait(secs: u64) -> String {
    if secs < 60 {
        format!("{secs} seconds")
    } else {
        let minutes = secs.div_ceil(60);
        if minutes == 1 {
            "1 minute".into()
        } else {
            format!("{minutes} minutes")
        }
    }
}

fn account_key(email: &str) -> String {
    format!("account:{email}")
}

fn address_key(ip: IpAddr) -> String {
    format!("address:{ip}")
}

fn return_key(ip: IpAddr) -> String {
    format!("return:{ip}")
}

/// Counts one customer return from `ip`; refused once the address made more than
/// [`RETURNS_PER_ADDRESS`] within the window. A request without a known address is not
/// counted (there is nothing to count it against).
pub async fn count_return(
    pool: &AnyPool,
    ip: Option<IpAddr>,
) -> Result<Option<Refusal>, sqlx::Error> {
    let Some(ip) = ip else { return Ok(None) };
    let now = db::now();
    let counter = throttle::add_failure(pool, &return_key(ip), now, RETURN_WINDOW_SECS).await?;
    if counter.failures > RETURNS_PER_ADDRESS {
        let window_end = counter.window_started_at + RETURN_WINDOW_SECS;
        return Ok(Some(Refusal {
            scope: "return",
            retry_after_secs: (window_end - now).max(1) as u64,
        }));
    }
    Ok(None)
}

/// Whether an attempt for `email` from `ip` must be refused now.
pub async fn check(
    pool: &AnyPool,
    ip: Option<IpAddr>,
    email: &str,
) -> Result<Option<Refusal>, sqlx::Error> {
    let now = db::now();
    if let Some(ip) = ip
        && let Some(counter) = throttle::get(pool, &address_key(ip)).await?
    {
        let window_end = counter.window_started_at + ADDRESS_WINDOW_SECS;
        if counter.failures >= ADDRESS_MAX_FAILURES && window_end > now {
            return Ok(Some(Refusal {
                scope: "address",
                retry_after_secs: (window_end - now) as u64,
            }));
        }
    }
    if let Some(counter) = throttle::get(pool, &account_key(email)).await?
        && counter.locked_until > now
    {
        return Ok(Some(Refusal {
            scope: "account",
            retry_after_secs: (counter.locked_until - now) as u64,
        }));
    }
    Ok(None)
}

/// Counts one failed attempt for `email` and `ip`, locking the account when due.
pub async fn record_failure(
    pool: &AnyPool,
    ip: Option<IpAddr>,
    email: &str,
) -> Result<(), sqlx::Error> {
    let now = db::now();
    if let Some(ip) = ip {
        throttle::add_failure(pool, &address_key(ip), now, ADDRESS_WINDOW_SECS).await?;
    }
    let key = account_key(email);
    let counter = throttle::add_failure(pool, &key, now, ACCOUNT_WINDOW_SECS).await?;
    if let Some(lock) = account_lock_secs(counter.failures) {
        throttle::lock_until(pool, &key, now + lock).await?;
    }
    Ok(())
}

/// How long the account is locked after its `failures`-th failure, if at all.
pub fn account_lock_secs(failures: i64) -> Option<i64> {
    if failures < ACCOUNT_FREE_FAILURES {
        return None;
    }
    let doublings = (failures - ACCOUNT_FREE_FAILURES).min(10) as u32;
    Some((ACCOUNT_FIRST_LOCK_SECS << doublings).min(ACCOUNT_MAX_LOCK_SECS))
}

/// Forgets an account's failures after a successful sign-in.
pub async fn clear_account(pool: &AnyPool, email: &str) -> Result<(), sqlx::Error> {
    throttle::clear(pool, &account_key(email)).await
}

/// Drops counters that no longer matter.
pub async fn prune(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    throttle::delete_stale(
        pool,
        db::now(),
        ACCOUNT_WINDOW_SECS
            .max(ADDRESS_WINDOW_SECS)
            .max(RETURN_WINDOW_SECS),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_locks_grow_and_are_capped() {
        assert_eq!(account_lock_secs(4), None);
        assert_eq!(account_lock_secs(5), Some(30));
        assert_eq!(account_lock_secs(6), Some(60));
        assert_eq!(account_lock_secs(7), Some(120));
        assert_eq!(account_lock_secs(50), Some(ACCOUNT_MAX_LOCK_SECS));
    }

    #[test]
    fn waits_read_naturally() {
        assert_eq!(human_wait(12), "12 seconds");
        assert_eq!(human_wait(60), "1 minute");
        assert_eq!(human_wait(61), "2 minutes");
    }
}
