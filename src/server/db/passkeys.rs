//! The `passkeys` table: each user's WebAuthn credentials, by name, with the credential as
//! webauthn-rs serialises it (public key and counter; nothing secret).

use sqlx::{AnyConnection, AnyPool};

/// One stored passkey.
#[derive(sqlx::FromRow, Clone, Debug)]
pub struct PasskeyRecord {
    /// Row id.
    pub id: i64,
    /// The user.
    pub user_id: i64,
    /// The name the user gave it.
    pub name: String,
    /// The credential id, base64url.
    pub credential_id: String,
    /// The credential as JSON (webauthn-rs `Passkey`).
    pub credential: String,
    /// When it was added (Unix seconds).
    pub created_at: i64,
    /// When it last signed in or confirmed (Unix seconds).
    pub last_used_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, name, credential_id, credential, created_at, last_used_at";

/// The passkeys of `user_id`, oldest first.
pub async fn of_user(pool: &AnyPool, user_id: i64) -> Result<Vec<PasskeyRecord>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY id"
    ))
    .bind(user_id)
    .fetch_all(pool)
    .await
}

/// How many passkeys `user_id` has.
pub async fn count(pool: &AnyPool, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM passkeys WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(pool)
        .await
}

/// Stores a new passkey; `false` when its credential id is stored already.
pub async fn insert(
    pool: &AnyPool,
    user_id: i64,
    name: &str,
    credential_id: &str,
    credential: &str,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO passkeys (user_id, name, credential_id, credential, created_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT (credential_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(name)
    .bind(credential_id)
    .bind(credential)
    .bind(super::now())
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Records a use of passkey `id` and its updated credential (the signature counter).
pub async fn used(pool: &AnyPool, id: i64, credential: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE passkeys SET credential = $1, last_used_at = $2 WHERE id = $3")
        .bind(credential)
        .bind(super::now())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes passkey `id` of `user_id`; `false` when there is no such passkey of theirs.
pub async fn remove(conn: &mut AnyConnection, user_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Removes every passkey of `user_id` (an admin's reset); how many there were.
pub async fn remove_all(conn: &mut AnyConnection, user_id: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM passkeys WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}

/// The ids of every user with at least one passkey (for the users page).
pub async fn users_with_passkeys(pool: &AnyPool) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT DISTINCT user_id FROM passkeys")
        .fetch_all(pool)
        .await
}
