//! The `user_identities` table: which subject at which identity provider (issuer) is which
//! staff user. One identity per user per issuer, one user per subject; written at the first
//! single sign-on (linked by verified email) and read by subject afterwards.

use sqlx::{AnyConnection, AnyPool};

/// One linked identity.
#[derive(sqlx::FromRow, Clone, Debug)]
pub struct IdentityRecord {
    /// Row id.
    pub id: i64,
    /// The user.
    pub user_id: i64,
    /// The identity provider's issuer URL.
    pub issuer: String,
    /// The subject (`sub`) the provider gives this user.
    pub subject: String,
    /// When it was linked (Unix seconds).
    pub linked_at: i64,
    /// When it last signed in (Unix seconds).
    pub last_used_at: i64,
}

const COLUMNS: &str = "id, user_id, issuer, subject, linked_at, last_used_at";

/// The identity of `subject` at `issuer`, if linked.
pub async fn find(
    pool: &AnyPool,
    issuer: &str,
    subject: &str,
) -> Result<Option<IdentityRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM user_identities WHERE issuer = $1 AND subject = $2"
    ))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(pool)
    .await
}

/// The identity `user_id` has at `issuer`, if any.
pub async fn of_user_at(
    pool: &AnyPool,
    user_id: i64,
    issuer: &str,
) -> Result<Option<IdentityRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM user_identities WHERE user_id = $1 AND issuer = $2"
    ))
    .bind(user_id)
    .bind(issuer)
    .fetch_optional(pool)
    .await
}

/// The ids of every user with a linked identity (at any issuer).
pub async fn linked_users(pool: &AnyPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT user_id FROM user_identities")
        .fetch_all(pool)
        .await
}

/// Links `subject` at `issuer` to `user_id`; `false` when either side is linked already (a
/// race with another first sign-on, or a second subject for the same user).
pub async fn link(
    pool: &AnyPool,
    user_id: i64,
    issuer: &str,
    subject: &str,
) -> Result<bool, sqlx::Error> {
    let now = super::now();
    let result = sqlx::query(
        "INSERT INTO user_identities (user_id, issuer, subject, linked_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(issuer)
    .bind(subject)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records a sign-on through identity `id`.
pub async fn touch(pool: &AnyPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE user_identities SET last_used_at = $1 WHERE id = $2")
        .bind(super::now())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes every identity of `user_id` (an admin unlinks, so the next sign-on links anew by
/// email); returns how many there were.
pub async fn unlink_all(conn: &mut AnyConnection, user_id: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM user_identities WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}
