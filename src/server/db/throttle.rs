//! The `sign_in_throttle` table: attempt counters per account and per client address,
//! shared by every app instance on the same database. Each attempt is counted, and its fate
//! decided, by one statement (`INSERT … ON CONFLICT … DO UPDATE … RETURNING`), so attempts
//! arriving together cannot all read the same count and all pass.

use sqlx::AnyPool;

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Counter {
    /// Attempts counted in the current window.
    pub failures: i64,
    /// Start of the current window (Unix seconds).
    pub window_started_at: i64,
    /// Refuse attempts until this time (Unix seconds); 0 when not locked.
    pub locked_until: i64,
    /// Whether the attempt this statement counted was let through (1) or refused by a
    /// running lock (0).
    pub admitted: i64,
}

const RETURNING: &str = "RETURNING failures, window_started_at, locked_until, admitted";

/// The upsert that counts one attempt on each key of `VALUES` (`$1` now, `$2` the start of a
/// window still running): a key whose window ended starts a new one.
fn count_sql(values: &str) -> String {
    format!(
        "INSERT INTO sign_in_throttle (key, failures, window_started_at, locked_until, admitted) \
         VALUES {values} \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN sign_in_throttle.window_started_at <= $2 THEN 1 ELSE sign_in_throttle.failures + 1 END, \
           window_started_at = CASE WHEN sign_in_throttle.window_started_at <= $2 THEN $1 ELSE sign_in_throttle.window_started_at END, \
           admitted = 1 \
         {RETURNING}, key"
    )
}

/// Counts one attempt on `key`, starting a new window when the old one is older than
/// `window_secs`; returns the counter after the update (the caller compares the count with
/// its limit: the count it gets is its own, whatever runs at the same time).
pub async fn count_attempt<'c, E>(
    executor: E,
    key: &str,
    now: i64,
    window_secs: i64,
) -> Result<Counter, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let row: KeyedCounter = sqlx::query_as(&count_sql("($3, 1, $1, 0, 1)"))
        .bind(now)
        .bind(now - window_secs)
        .bind(key)
        .fetch_one(executor)
        .await?;
    Ok(row.counter())
}

/// A counter with the key it belongs to (a statement counting several keys returns their rows
/// in no set order).
#[derive(sqlx::FromRow)]
struct KeyedCounter {
    key: String,
    failures: i64,
    window_started_at: i64,
    locked_until: i64,
    admitted: i64,
}

impl KeyedCounter {
    fn counter(&self) -> Counter {
        Counter {
            failures: self.failures,
            window_started_at: self.window_started_at,
            locked_until: self.locked_until,
            admitted: self.admitted,
        }
    }
}

/// Counts one attempt on each of `keys` (as [`count_attempt`], all in one statement) in one
/// write transaction, and returns the counters in the order of `keys`. These are request
/// limits, not records: the commit does not wait for the disk
/// ([`super::WriteTx::commit_unflushed`]), so a crash can forget the last fraction of a second
/// of counts, which is a limit's acceptable loss and saves every customer request a disk
/// flush.
pub async fn count_attempts(
    db: &super::Db,
    keys: &[&str],
    now: i64,
    window_secs: i64,
) -> Result<Vec<Counter>, sqlx::Error> {
    // One row per key: PostgreSQL refuses a statement that updates a row twice.
    let mut unique: Vec<&str> = keys.to_vec();
    unique.sort_unstable();
    unique.dedup();
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let values = (0..unique.len())
        .map(|i| format!("(${}, 1, $1, 0, 1)", i + 3))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = count_sql(&values);
    let mut statement = sqlx::query_as::<_, KeyedCounter>(&sql)
        .bind(now)
        .bind(now - window_secs);
    for key in &unique {
        statement = statement.bind(*key);
    }
    let mut tx = db.begin_unflushed().await?;
    let rows = statement.fetch_all(&mut *tx).await?;
    tx.commit_unflushed().await?;
    keys.iter()
        .map(|key| {
            rows.iter()
                .find(|row| row.key == *key)
                .map(KeyedCounter::counter)
                .ok_or(sqlx::Error::RowNotFound)
        })
        .collect()
}

/// The account lock rule the statement applies: after the `free`-th attempt within a window,
/// each attempt let through locks the account for `first` seconds, doubling per attempt up
/// to `max`.
#[derive(Debug, Clone, Copy)]
pub struct LockRule {
    /// Attempts before locks start.
    pub free: i64,
    /// First lock length (seconds).
    pub first: i64,
    /// Longest lock (seconds).
    pub max: i64,
    /// Window over which attempts are counted (seconds).
    pub window: i64,
}

/// Counts one attempt on account `key` unless a lock is running, in one statement: a locked
/// account's attempt is refused (`admitted` 0) and not counted; an attempt let through is
/// counted and, from the `free`-th on, locks the account at once, before its password is
/// checked (a correct password then clears the counter).
pub async fn admit_account_attempt(
    pool: &AnyPool,
    key: &str,
    now: i64,
    rule: LockRule,
) -> Result<Counter, sqlx::Error> {
    // The count this attempt makes, computed from the row as it was.
    let expired = "sign_in_throttle.window_started_at <= $3";
    let locked = "sign_in_throttle.locked_until > $2";
    let count = format!("(CASE WHEN {expired} THEN 1 ELSE sign_in_throttle.failures + 1 END)");
    // first << min(count - free, 10), capped at max; no lock below `free`. `<<` and CASE
    // read the same on SQLite and PostgreSQL (LEAST/MIN do not).
    let doublings =
        format!("CAST(CASE WHEN {count} - $4 > 10 THEN 10 ELSE {count} - $4 END AS INTEGER)");
    let lock = format!(
        "(CASE WHEN {count} < $4 THEN 0 \
          WHEN ($5 << {doublings}) > $6 THEN $2 + $6 \
          ELSE $2 + ($5 << {doublings}) END)"
    );
    let sql = format!(
        "INSERT INTO sign_in_throttle (key, failures, window_started_at, locked_until, admitted) \
         VALUES ($1, 1, $2, $7, 1) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN {locked} THEN sign_in_throttle.failures ELSE {count} END, \
           window_started_at = CASE WHEN NOT ({locked}) AND {expired} THEN $2 ELSE sign_in_throttle.window_started_at END, \
           locked_until = CASE WHEN {locked} THEN sign_in_throttle.locked_until ELSE {lock} END, \
           admitted = CASE WHEN {locked} THEN 0 ELSE 1 END \
         {RETURNING}"
    );
    let first_lock = if rule.free <= 1 {
        now + rule.first.min(rule.max)
    } else {
        0
    };
    sqlx::query_as(&sql)
        .bind(key)
        .bind(now)
        .bind(now - rule.window)
        .bind(rule.free)
        .bind(rule.first)
        .bind(rule.max)
        .bind(first_lock)
        .fetch_one(pool)
        .await
}

/// Takes back one counted attempt of `key` (one that turned out not to count against it: a
/// correct password, or an attempt another rule refused before any password was checked).
pub async fn refund(pool: &AnyPool, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sign_in_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0",
    )
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets the attempts of `key` (after a successful sign-in).
pub async fn clear(pool: &AnyPool, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sign_in_throttle WHERE key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes counters whose window and lock are both over.
pub async fn delete_stale(pool: &AnyPool, now: i64, window_secs: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM sign_in_throttle WHERE window_started_at < $1 AND locked_until < $2",
    )
    .bind(now - window_secs)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
