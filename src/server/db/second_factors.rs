//! The `second_factors` and `recovery_codes` tables: each user's authenticator (TOTP) factor,
//! its seed sealed by the vault and the last time step whose code was accepted; and the user's
//! single-use recovery codes, kept hashed.

use sqlx::{AnyConnection, AnyPool};

/// A user's authenticator factor as stored. Holds the sealed seed, so no `Debug`/`Serialize`.
#[derive(sqlx::FromRow, Clone)]
pub struct FactorRecord {
    /// The user.
    pub user_id: i64,
    /// Base64 ciphertext of the base32 seed.
    pub ciphertext: String,
    /// Base64 nonce.
    pub nonce: String,
    /// Master key version it was sealed under.
    pub key_version: i64,
    /// When the first code confirmed it (Unix seconds); `None` while enrolment is pending.
    pub confirmed_at: Option<i64>,
    /// The last time step whose code was accepted.
    pub last_step: i64,
}

const COLUMNS: &str = "user_id, ciphertext, nonce, key_version, confirmed_at, last_step";

/// The factor of `user_id`, confirmed or pending.
pub async fn find(pool: &AnyPool, user_id: i64) -> Result<Option<FactorRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM second_factors WHERE user_id = $1"
    ))
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// Stores a new pending seed for `user_id`, replacing an earlier pending one; a confirmed
/// factor is left alone (`false`).
pub async fn put_pending(
    pool: &AnyPool,
    user_id: i64,
    ciphertext: &str,
    nonce: &str,
    key_version: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO second_factors (user_id, ciphertext, nonce, key_version, confirmed_at, last_step, created_at) \
         VALUES ($1, $2, $3, $4, NULL, 0, $5) \
         ON CONFLICT (user_id) DO UPDATE SET ciphertext = excluded.ciphertext, nonce = excluded.nonce, \
         key_version = excluded.key_version, last_step = 0, created_at = excluded.created_at \
         WHERE second_factors.confirmed_at IS NULL",
    )
    .bind(user_id)
    .bind(ciphertext)
    .bind(nonce)
    .bind(key_version)
    .bind(super::now())
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Confirms the pending factor of `user_id` with the code of time step `step`; `false` when
/// nothing was pending (confirmed meanwhile, or never begun).
pub async fn confirm(pool: &AnyPool, user_id: i64, step: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE second_factors SET confirmed_at = $1, last_step = $2 \
         WHERE user_id = $3 AND confirmed_at IS NULL",
    )
    .bind(super::now())
    .bind(step)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records that the code of time step `step` was used; `false` when that step (or a later
/// one) was used already, so a code is accepted once even when two requests race.
pub async fn use_step(pool: &AnyPool, user_id: i64, step: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE second_factors SET last_step = $1 \
         WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $1",
    )
    .bind(step)
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Every stored factor (for re-sealing under a new master key).
pub async fn all_in(conn: &mut AnyConnection) -> Result<Vec<FactorRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM second_factors ORDER BY user_id"
    ))
    .fetch_all(conn)
    .await
}

/// Replaces the sealed seed of `user_id` (master key rotation).
pub async fn reseal(
    conn: &mut AnyConnection,
    user_id: i64,
    ciphertext: &str,
    nonce: &str,
    key_version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE second_factors SET ciphertext = $1, nonce = $2, key_version = $3 WHERE user_id = $4",
    )
    .bind(ciphertext)
    .bind(nonce)
    .bind(key_version)
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes `user_id`'s authenticator and recovery codes (an admin's reset, or the user's own
/// removal); `true` when there was an authenticator.
pub async fn remove_all(conn: &mut AnyConnection, user_id: i64) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let result = sqlx::query("DELETE FROM second_factors WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

/// Removes `user_id`'s authenticator, and their recovery codes when `with_recovery_codes`.
pub async fn remove_authenticator(
    conn: &mut AnyConnection,
    user_id: i64,
    with_recovery_codes: bool,
) -> Result<(), sqlx::Error> {
    if with_recovery_codes {
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM second_factors WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Replaces every recovery code of `user_id` with the ones hashed in `hashes`.
pub async fn replace_recovery_codes(
    conn: &mut AnyConnection,
    user_id: i64,
    hashes: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let now = super::now();
    for hash in hashes {
        sqlx::query(
            "INSERT INTO recovery_codes (user_id, code_hash, created_at, used_at, reported_at) \
             VALUES ($1, $2, $3, NULL, NULL)",
        )
        .bind(user_id)
        .bind(hash)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Marks the unused recovery code hashed `hash` of `user_id` used; `false` when there is no
/// such unused code (wrong, or used already — two racing requests cannot both use it).
pub async fn use_recovery_code(
    pool: &AnyPool,
    user_id: i64,
    hash: &str,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE recovery_codes SET used_at = $1 \
         WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(super::now())
    .bind(user_id)
    .bind(hash)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// How many unused recovery codes `user_id` has.
pub async fn unused_recovery_codes(pool: &AnyPool, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
        .bind(user_id)
        .fetch_one(pool)
        .await
}

/// The use times of `user_id`'s recovery codes not yet reported to them, oldest first, now
/// marked reported (each use is told once).
pub async fn take_unreported_uses(pool: &AnyPool, user_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    let uses: Vec<i64> = sqlx::query_scalar(
        "SELECT used_at FROM recovery_codes \
         WHERE user_id = $1 AND used_at IS NOT NULL AND reported_at IS NULL ORDER BY used_at",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    if !uses.is_empty() {
        sqlx::query(
            "UPDATE recovery_codes SET reported_at = $1 \
             WHERE user_id = $2 AND used_at IS NOT NULL AND reported_at IS NULL",
        )
        .bind(super::now())
        .bind(user_id)
        .execute(pool)
        .await?;
    }
    Ok(uses)
}

/// The ids of every user with a confirmed authenticator (for the users page).
pub async fn enrolled_users(pool: &AnyPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM second_factors WHERE confirmed_at IS NOT NULL")
        .fetch_all(pool)
        .await
}
