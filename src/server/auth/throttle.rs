//! Sign-in throttling, stored in the database so every app instance counts together. Every
//! password check (sign-in, change of one's own password, re-authentication) is an attempt,
//! counted and judged BEFORE argon2 runs, each counter by one statement that increments and
//! returns the count it made, so N guesses sent at once cannot all pass one check.
//!
//! - Per account (keyed by the typed email, whether or not such an account exists, so a lock
//!   reveals nothing): from the 5th attempt within 15 minutes, each attempt let through locks
//!   the account for 30 s, doubling up to 15 minutes; a correct password clears the count.
//! - Per client address (an IPv6 address by its /64, which one subscriber usually holds
//!   whole): 20 attempts within 10 minutes block the address (HTTP 429) until the window
//!   ends; a correct password gives its attempt back.
//! - In flight, per instance: at most [`ACCOUNT_MAX_IN_FLIGHT`] checks for one account and
//!   [`ADDRESS_MAX_IN_FLIGHT`] from one address at once; more are refused at once, so one
//!   client cannot fill the queue for argon2 that everybody's sign-in waits in.
//! - Customer returns per client address: anyone can call the return address without an
//!   account, so [`RETURNS_PER_ADDRESS`] returns within [`RETURN_WINDOW_SECS`] are answered
//!   and further ones refused (HTTP 429) until the window ends. Generous, because many
//!   customers can share one mobile network address.

use crate::server::db::{self, throttle};
use sqlx::AnyPool;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Attempts an account may have before locks start.
pub const ACCOUNT_FREE_FAILURES: i64 = 5;
/// Window over which account attempts are counted.
pub const ACCOUNT_WINDOW_SECS: i64 = 15 * 60;
/// First lock length; doubles with each further attempt.
pub const ACCOUNT_FIRST_LOCK_SECS: i64 = 30;
/// Longest account lock.
pub const ACCOUNT_MAX_LOCK_SECS: i64 = 15 * 60;
/// Attempts a client address may have within the window.
pub const ADDRESS_MAX_FAILURES: i64 = 20;
/// Window over which address attempts are counted.
pub const ADDRESS_WINDOW_SECS: i64 = 10 * 60;
/// Password checks for one account that may run (or wait for argon2) at once, per instance.
pub const ACCOUNT_MAX_IN_FLIGHT: usize = 2;
/// Password checks from one client address that may run (or wait for argon2) at once, per
/// instance.
pub const ADDRESS_MAX_IN_FLIGHT: usize = 8;
/// What a client refused for too many checks in flight is told to wait.
const IN_FLIGHT_RETRY_SECS: u64 = 1;
/// Customer returns one client address may make within the window.
pub const RETURNS_PER_ADDRESS: i64 = 60;
/// Window over which customer returns are counted.
pub const RETURN_WINDOW_SECS: i64 = 10 * 60;

/// Why an attempt was refused before any password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The account is locked after too many attempts.
    Account,
    /// The client address used up its attempts.
    Address,
    /// Too many checks for this account or from this address are running right now.
    InFlight,
    /// The client address made too many customer returns.
    Return,
    /// Too many requests to customer links from the client address, or to one link.
    Customer,
}

impl Scope {
    /// The stored spelling (audit detail).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Account => "account",
            Scope::Address => "address",
            Scope::InFlight => "in_flight",
            Scope::Return => "return",
            Scope::Customer => "customer",
        }
    }
}

/// A refused attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Which limit refused it.
    pub scope: Scope,
    /// Seconds until the next attempt may succeed.
    pub retry_after_secs: u64,
}

impl Refusal {
    /// What the sign-in page says.
    pub fn message(&self) -> String {
        let wait = human_wait(self.retry_after_secs);
        match self.scope {
            Scope::Account => {
                format!("Too many failed sign-ins for this email address. Try again in {wait}.")
            }
            Scope::Address => {
                format!("Too many failed sign-ins from your network. Try again in {wait}.")
            }
            Scope::Return | Scope::Customer => {
                format!("Too many requests from your network. Try again in {wait}.")
            }
            Scope::InFlight => format!(
                "A sign-in for this email address or from your network is already being checked. Try again in {wait}."
            ),
        }
    }
}

/// A wait in words ("12 seconds", "3 minutes").
pub fn human_wait(secs: u64) -> String {
    if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
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

/// The client a limit applies to: an IPv4 address, or the /64 network of an IPv6 address
/// (one subscriber's allocation: keying by the full address would give each of them 2^64
/// fresh budgets). IPv4-mapped IPv6 addresses count as their IPv4 address.
pub fn client_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{net}/64")
        }
    }
}

fn account_key(email: &str) -> String {
    format!("account:{email}")
}

fn address_key(ip: IpAddr) -> String {
    format!("address:{}", client_key(ip))
}

fn return_key(ip: IpAddr) -> String {
    format!("return:{}", client_key(ip))
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
    let counter = throttle::count_attempt(pool, &return_key(ip), now, RETURN_WINDOW_SECS).await?;
    if counter.failures > RETURNS_PER_ADDRESS {
        let window_end = counter.window_started_at + RETURN_WINDOW_SECS;
        return Ok(Some(Refusal {
            scope: Scope::Return,
            retry_after_secs: (window_end - now).max(1) as u64,
        }));
    }
    Ok(None)
}

/// Requests to customer links one client address may make within the window.
pub const CUSTOMER_REQUESTS_PER_ADDRESS: i64 = 120;
/// Requests one customer link may get within the window (from all addresses).
pub const CUSTOMER_REQUESTS_PER_LINK: i64 = 60;
/// Window over which customer-link requests are counted.
pub const CUSTOMER_WINDOW_SECS: i64 = 10 * 60;

/// Counts one request to a customer link from `ip` and to the link `link` names (a keyed hash
/// of its code, so that counting need not wait for the link's lookup and no code is stored),
/// both in one statement; refused once either went over its share within the window. Guessing
/// codes runs into the address's share.
pub async fn count_customer(
    db: &db::Db,
    ip: Option<IpAddr>,
    link: Option<&str>,
) -> Result<Option<Refusal>, sqlx::Error> {
    let now = db::now();
    let mut keys = Vec::new();
    let mut limits = Vec::new();
    if let Some(ip) = ip {
        keys.push(format!("customer:{}", client_key(ip)));
        limits.push(CUSTOMER_REQUESTS_PER_ADDRESS);
    }
    if let Some(link) = link {
        keys.push(format!("customer_link:{link}"));
        limits.push(CUSTOMER_REQUESTS_PER_LINK);
    }
    if keys.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let counters = throttle::count_attempts(db, &names, now, CUSTOMER_WINDOW_SECS).await?;
    Ok(counters
        .iter()
        .zip(limits)
        .find(|(counter, limit)| counter.failures > *limit)
        .map(|(counter, _)| Refusal {
            scope: Scope::Customer,
            retry_after_secs: (counter.window_started_at + CUSTOMER_WINDOW_SECS - now).max(1)
                as u64,
        }))
}

/// Work in flight on this instance, per key: password checks per account and per address,
/// and requests per client address (the request limit's per-client share).
#[derive(Debug, Default)]
pub struct InFlight {
    running: Mutex<HashMap<String, usize>>,
}

/// One check in flight for `key`; ends when dropped.
#[derive(Debug)]
struct InFlightSlot {
    owner: Arc<InFlight>,
    key: String,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        let mut running = self
            .owner
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = running.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.key);
            }
        }
    }
}

impl InFlight {
    /// A new, empty register.
    pub fn new() -> Arc<Self> {
        Arc::new(InFlight::default())
    }

    /// Takes one place for every key, or none if any key already has `cap` checks running.
    fn enter(self: &Arc<Self>, keys: &[(&str, usize)]) -> Option<Vec<InFlightSlot>> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if keys
            .iter()
            .any(|(key, cap)| running.get(*key).is_some_and(|n| n >= cap))
        {
            return None;
        }
        Some(
            keys.iter()
                .map(|(key, _)| {
                    *running.entry(key.to_string()).or_insert(0) += 1;
                    InFlightSlot {
                        owner: self.clone(),
                        key: key.to_string(),
                    }
                })
                .collect(),
        )
    }

    /// Takes one of at most `cap` places for `key`, or none when all are taken; the place is
    /// given back when the returned value is dropped.
    pub fn take(self: &Arc<Self>, key: &str, cap: usize) -> Option<InFlightPlace> {
        self.enter(&[(key, cap)])
            .map(|slots| InFlightPlace { _slots: slots })
    }

    /// Checks in flight now (tests prove that every place is given back).
    pub fn running(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }
}

/// One place taken with [`InFlight::take`]; given back when dropped.
#[derive(Debug)]
pub struct InFlightPlace {
    _slots: Vec<InFlightSlot>,
}

/// An attempt that was counted and let through: its password may be checked now. Dropping
/// it leaves the attempt counted (a wrong password); [`Attempt::succeeded`] gives it back.
#[derive(Debug)]
pub struct Attempt {
    account_key: String,
    address_key: Option<String>,
    _in_flight: Vec<InFlightSlot>,
}

impl Attempt {
    /// The password was right: the account's count is cleared and the address gets this
    /// attempt back.
    pub async fn succeeded(self, pool: &AnyPool) -> Result<(), sqlx::Error> {
        throttle::clear(pool, &self.account_key).await?;
        if let Some(key) = &self.address_key {
            throttle::refund(pool, key).await?;
        }
        Ok(())
    }

    /// No password was checked after all (no argon2 run came free in time): the attempt is
    /// given back to the account and the address, so a flood that fills the queue does not
    /// also use up a real user's attempts.
    pub async fn unchecked(self, pool: &AnyPool) -> Result<(), sqlx::Error> {
        throttle::refund(pool, &self.account_key).await?;
        if let Some(key) = &self.address_key {
            throttle::refund(pool, key).await?;
        }
        Ok(())
    }
}

/// Counts an attempt to check a password of `email` from `ip`, before any argon2 run: the
/// attempt to go on with, or why it is refused.
pub async fn begin(
    pool: &AnyPool,
    in_flight: &Arc<InFlight>,
    ip: Option<IpAddr>,
    email: &str,
) -> Result<Result<Attempt, Refusal>, sqlx::Error> {
    let account_key = account_key(email);
    let address_key = ip.map(address_key);
    let mut keys = vec![(account_key.as_str(), ACCOUNT_MAX_IN_FLIGHT)];
    if let Some(key) = &address_key {
        keys.push((key.as_str(), ADDRESS_MAX_IN_FLIGHT));
    }
    let Some(slots) = in_flight.enter(&keys) else {
        return Ok(Err(Refusal {
            scope: Scope::InFlight,
            retry_after_secs: IN_FLIGHT_RETRY_SECS,
        }));
    };
    let now = db::now();
    if let Some(key) = &address_key {
        let counter = throttle::count_attempt(pool, key, now, ADDRESS_WINDOW_SECS).await?;
        if counter.failures > ADDRESS_MAX_FAILURES {
            let window_end = counter.window_started_at + ADDRESS_WINDOW_SECS;
            return Ok(Err(Refusal {
                scope: Scope::Address,
                retry_after_secs: (window_end - now).max(1) as u64,
            }));
        }
    }
    let counter = throttle::admit_account_attempt(
        pool,
        &account_key,
        now,
        throttle::LockRule {
            free: ACCOUNT_FREE_FAILURES,
            first: ACCOUNT_FIRST_LOCK_SECS,
            max: ACCOUNT_MAX_LOCK_SECS,
            window: ACCOUNT_WINDOW_SECS,
        },
    )
    .await?;
    if counter.admitted == 0 {
        // Refused before any check: the address does not pay for a locked account.
        if let Some(key) = &address_key {
            throttle::refund(pool, key).await?;
        }
        return Ok(Err(Refusal {
            scope: Scope::Account,
            retry_after_secs: (counter.locked_until - now).max(1) as u64,
        }));
    }
    Ok(Ok(Attempt {
        account_key,
        address_key,
        _in_flight: slots,
    }))
}

/// How long the account is locked after its `failures`-th failure, if at all.
pub fn account_lock_secs(failures: i64) -> Option<i64> {
    if failures < ACCOUNT_FREE_FAILURES {
        return None;
    }
    let doublings = (failures - ACCOUNT_FREE_FAILURES).min(10) as u32;
    Some((ACCOUNT_FIRST_LOCK_SECS << doublings).min(ACCOUNT_MAX_LOCK_SECS))
}

/// Drops counters that no longer matter.
pub async fn prune(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    throttle::delete_stale(
        pool,
        db::now(),
        ACCOUNT_WINDOW_SECS
            .max(ADDRESS_WINDOW_SECS)
            .max(RETURN_WINDOW_SECS)
            .max(CUSTOMER_WINDOW_SECS),
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
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = |text: &str| client_key(text.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("198.51.100.7"), "198.51.100.7");
        assert_eq!(key("::ffff:198.51.100.7"), "198.51.100.7");
    }

    #[test]
    fn in_flight_places_are_capped_and_given_back() {
        let register = InFlight::new();
        let first = register.enter(&[("a", 2), ("x", 8)]).unwrap();
        let second = register.enter(&[("a", 2), ("y", 8)]).unwrap();
        assert!(register.enter(&[("a", 2), ("z", 8)]).is_none());
        assert_eq!(register.running(), 4, "a refusal takes no place");
        drop(first);
        assert!(register.enter(&[("a", 2)]).is_some());
        drop(second);
        assert_eq!(register.running(), 0);
    }

    #[test]
    fn waits_read_naturally() {
        assert_eq!(human_wait(1), "1 second");
        assert_eq!(human_wait(12), "12 seconds");
        assert_eq!(human_wait(60), "1 minute");
        assert_eq!(human_wait(61), "2 minutes");
    }
}
