//! The `master_keys`, `credentials` and `credential_secrets` tables.

use sqlx::{AnyConnection, AnyPool};

/// One credential version as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialRow {
    /// Id (part of every secret's associated data).
    pub id: i64,
    /// Kind (stored spelling).
    pub kind: String,
    /// Environment.
    pub environment: String,
    /// Version (part of every secret's associated data).
    pub version: i64,
    /// JSON object of non-secret settings.
    pub settings: String,
    /// Who saved it (email or `cli`).
    pub saved_by: String,
    /// When (Unix seconds).
    pub saved_at: i64,
    /// Trial links used with it.
    pub trial_links_used: i64,
    /// Last connection test (Unix seconds).
    pub last_test_at: Option<i64>,
    /// 1 when the last test succeeded.
    pub last_test_ok: Option<i64>,
    /// What the last test said.
    pub last_test_message: Option<String>,
}

/// One secret field as stored (ciphertext is base64 text).
#[derive(Clone, sqlx::FromRow)]
pub struct SecretRow {
    /// Credential id.
    pub credential_id: i64,
    /// Field name.
    pub field: String,
    /// Base64 ciphertext; `None` once retired.
    pub ciphertext: Option<String>,
    /// Base64 nonce; `None` once retired.
    pub nonce: Option<String>,
    /// Master key version it is sealed under.
    pub key_version: Option<i64>,
    /// Last four characters.
    pub last4: String,
    /// Fingerprint.
    pub fingerprint: String,
}

const COLUMNS: &str = "id, kind, environment, version, settings, saved_by, saved_at, \
                       trial_links_used, last_test_at, last_test_ok, last_test_message";

/// The newest master key version and its check value.
pub async fn latest_master_key(pool: &AnyPool) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT version, check_value FROM master_keys ORDER BY version DESC LIMIT 1")
        .fetch_optional(pool)
        .await
}

/// Records a master key version.
pub async fn insert_master_key(
    conn: &mut AnyConnection,
    version: i64,
    check_value: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO master_keys (version, check_value, created_at) VALUES ($1, $2, $3)")
        .bind(version)
        .bind(check_value)
        .bind(super::now())
        .execute(conn)
        .await?;
    Ok(())
}

/// Number of secrets still encrypted (not wiped).
pub async fn count_sealed(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM credential_secrets WHERE ciphertext IS NOT NULL")
        .fetch_one(pool)
        .await
}

/// The active version of one kind and environment.
pub async fn active(
    conn: &mut AnyConnection,
    kind: &str,
    environment: &str,
) -> Result<Option<CredentialRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM credentials WHERE kind = $1 AND environment = $2 AND status = 'active'"
    ))
    .bind(kind)
    .bind(environment)
    .fetch_optional(conn)
    .await
}

/// Every active credential.
pub async fn list_active(pool: &AnyPool) -> Result<Vec<CredentialRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM credentials WHERE status = 'active' ORDER BY kind, environment"
    ))
    .fetch_all(pool)
    .await
}

/// Inserts a new active version and returns its id.
pub async fn insert(
    conn: &mut AnyConnection,
    kind: &str,
    environment: &str,
    version: i64,
    settings: &str,
    saved_by: &str,
    trial_links_used: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO credentials (kind, environment, version, status, settings, saved_by, saved_at, trial_links_used) \
         VALUES ($1, $2, $3, 'active', $4, $5, $6, $7) RETURNING id",
    )
    .bind(kind)
    .bind(environment)
    .bind(version)
    .bind(settings)
    .bind(saved_by)
    .bind(super::now())
    .bind(trial_links_used)
    .fetch_one(conn)
    .await
}

/// Retires a version and wipes its ciphertexts.
pub async fn retire(conn: &mut AnyConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE credentials SET status = 'retired', retired_at = $1 WHERE id = $2")
        .bind(super::now())
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE credential_secrets SET ciphertext = NULL, nonce = NULL, key_version = NULL WHERE credential_id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces the non-secret settings of a version in place.
pub async fn update_settings(
    conn: &mut AnyConnection,
    id: i64,
    settings: &str,
    saved_by: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE credentials SET settings = $1, saved_by = $2, saved_at = $3 WHERE id = $4")
        .bind(settings)
        .bind(saved_by)
        .bind(super::now())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the outcome of a connection test.
pub async fn record_test(
    pool: &AnyPool,
    id: i64,
    ok: bool,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE credentials SET last_test_at = $1, last_test_ok = $2, last_test_message = $3 WHERE id = $4",
    )
    .bind(super::now())
    .bind(i64::from(ok))
    .bind(message)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Takes one of a trial account's `limit` links before the call that spends it; `false` when
/// all are taken. One statement, so concurrent creations can never take more than `limit`.
pub async fn reserve_trial_link(db: &super::Db, id: i64, limit: i64) -> Result<bool, sqlx::Error> {
    let _turn = db.write_turn().await?;
    let taken = sqlx::query(
        "UPDATE credentials SET trial_links_used = trial_links_used + 1 \
         WHERE id = $1 AND trial_links_used < $2",
    )
    .bind(id)
    .bind(limit)
    .execute(&db.pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Gives back a reserved trial link whose call provably never reached the provider.
pub async fn release_trial_link(db: &super::Db, id: i64) -> Result<(), sqlx::Error> {
    let _turn = db.write_turn().await?;
    sqlx::query(
        "UPDATE credentials SET trial_links_used = trial_links_used - 1 \
         WHERE id = $1 AND trial_links_used > 0",
    )
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The secrets of one version.
pub async fn secrets_of(conn: &mut AnyConnection, id: i64) -> Result<Vec<SecretRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT credential_id, field, ciphertext, nonce, key_version, last4, fingerprint \
         FROM credential_secrets WHERE credential_id = $1 ORDER BY field",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

/// A stored secret with the version of its credential.
#[derive(sqlx::FromRow)]
struct SealedJoinRow {
    #[sqlx(flatten)]
    secret: SecretRow,
    version: i64,
}

/// Every secret still encrypted, with the version of its credential (for key rotation).
pub async fn all_sealed(conn: &mut AnyConnection) -> Result<Vec<(SecretRow, i64)>, sqlx::Error> {
    let rows: Vec<SealedJoinRow> =
        sqlx::query_as(
            "SELECT s.credential_id, s.field, s.ciphertext, s.nonce, s.key_version, s.last4, s.fingerprint, c.version \
             FROM credential_secrets s JOIN credentials c ON c.id = s.credential_id \
             WHERE s.ciphertext IS NOT NULL ORDER BY s.credential_id, s.field",
        )
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.secret, row.version))
        .collect())
}

/// Stores one encrypted secret (insert or replace).
pub async fn put_secret(conn: &mut AnyConnection, row: &SecretRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO credential_secrets (credential_id, field, ciphertext, nonce, key_version, last4, fingerprint) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (credential_id, field) DO UPDATE SET ciphertext = excluded.ciphertext, \
         nonce = excluded.nonce, key_version = excluded.key_version, last4 = excluded.last4, \
         fingerprint = excluded.fingerprint",
    )
    .bind(row.credential_id)
    .bind(&row.field)
    .bind(&row.ciphertext)
    .bind(&row.nonce)
    .bind(row.key_version)
    .bind(&row.last4)
    .bind(&row.fingerprint)
    .execute(conn)
    .await?;
    Ok(())
}
