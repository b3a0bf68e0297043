//! The `setup_tokens` table: hashes of the one-time links that create the first admin.

use sqlx::{AnyConnection, AnyPool};

/// Stores the hash of a new setup token.
pub async fn insert(pool: &AnyPool, token_hash: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO setup_tokens (token_hash, created_at) VALUES ($1, $2)")
        .bind(token_hash)
        .bind(super::now())
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether a token with this hash was issued.
pub async fn exists(pool: &AnyPool, token_hash: &str) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM setup_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_one(pool)
        .await?;
    Ok(count > 0)
}

/// Same as [`exists`], inside a transaction.
pub async fn exists_in(conn: &mut AnyConnection, token_hash: &str) -> Result<bool, sqlx::Error> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM setup_tokens WHERE token_hash = $1")
        .bind(token_hash)
        .fetch_one(conn)
        .await?;
    Ok(count > 0)
}

/// Removes every setup token (the first admin exists).
pub async fn delete_all(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM setup_tokens")
        .execute(conn)
        .await?;
    Ok(())
}
