//! The `privacy_notices` table: the versions of the customer's privacy notice. A version is
//! written once and never changed (a consent names it); saving writes the next version.

use sqlx::{AnyConnection, AnyPool};

/// One version of the notice as stored.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct NoticeRow {
    /// Version, from 1.
    pub version: i64,
    /// JSON: per language code, the notice's texts.
    pub texts: String,
    /// Who wrote it (`system` for the first).
    pub created_by: String,
    /// When (Unix seconds).
    pub created_at: i64,
}

/// The newest version.
pub async fn current(pool: &AnyPool) -> Result<Option<NoticeRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT version, texts, created_by, created_at FROM privacy_notices ORDER BY version DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
}

/// Writes the version after the newest; returns its number. Two admins saving at once meet
/// the primary key: one of them is told to reload.
pub async fn insert_next(
    conn: &mut AnyConnection,
    texts: &str,
    by: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO privacy_notices (version, texts, created_by, created_at) \
         SELECT COALESCE(MAX(version), 0) + 1, $1, $2, $3 FROM privacy_notices RETURNING version",
    )
    .bind(texts)
    .bind(by)
    .bind(now)
    .fetch_one(conn)
    .await
}
