//! The `sign_in_throttle` table: failure counters per account and per client address,
//! shared by every app instance on the same database.

use sqlx::AnyPool;

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Counter {
    /// Failures in the current window.
    pub failures: i64,
    /// Start of the current window (Unix seconds).
    pub window_started_at: i64,
    /// Refuse attempts until this time (Unix seconds); 0 when not locked.
    pub locked_until: i64,
}

/// The counter for `key`, if any failure was recorded.
pub async fn get(pool: &AnyPool, key: &str) -> Result<Option<Counter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT failures, window_started_at, locked_until FROM sign_in_throttle WHERE key = $1",
    )
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// Adds one failure to `key` atomically, starting a new window when the old one is older than
/// `window_secs`; returns the counter after the update.
pub async fn add_failure(
    pool: &AnyPool,
    key: &str,
    now: i64,
    window_secs: i64,
) -> Result<Counter, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO sign_in_throttle (key, failures, window_started_at, locked_until) \
         VALUES ($1, 1, $2, 0) \
         ON CONFLICT (key) DO UPDATE SET \
           failures = CASE WHEN sign_in_throttle.window_started_at <= $3 THEN 1 ELSE sign_in_throttle.failures + 1 END, \
           window_started_at = CASE WHEN sign_in_throttle.window_started_at <= $3 THEN $2 ELSE sign_in_throttle.window_started_at END \
         RETURNING failures, window_started_at, locked_until",
    )
    .bind(key)
    .bind(now)
    .bind(now - window_secs)
    .fetch_one(pool)
    .await
}

/// Locks `key` until `until`.
pub async fn lock_until(pool: &AnyPool, key: &str, until: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sign_in_throttle SET locked_until = $1 WHERE key = $2")
        .bind(until)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Forgets the failures of `key` (after a successful sign-in).
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
