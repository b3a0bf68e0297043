//! The `auth_sessions` table: staff sign-in sessions (not KYC sessions), as a tower-sessions
//! store in the application database, so every app instance behind a load balancer sees the
//! same sessions, and all sessions of one user can be ended at once. Rows are keyed by the
//! SHA-256 of the session id, never the id itself: whoever can read the table cannot present
//! a stored key as a cookie and take a session over.

use super::Db;
use async_trait::async_trait;
use sqlx::AnyPool;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

/// Key of the signed-in user's data inside a session record.
pub const AUTH_KEY: &str = "auth";

/// Session store over the application's database. Its writes take the SQLite write turn
/// like every other writer (a signed-in user's session is rewritten every few seconds).
#[derive(Clone, Debug)]
pub struct SqlSessionStore {
    db: Db,
}

impl SqlSessionStore {
    /// A store over `db`.
    pub fn new(db: Db) -> Self {
        SqlSessionStore { db }
    }
}

/// How the text of a store error starts when the database could not be reached. The store's
/// error type carries only text, so this is how an outage stays recognisable (and is answered
/// 503 rather than 500) after passing through tower-sessions.
pub const UNAVAILABLE_PREFIX: &str = "database unavailable: ";

fn backend(error: sqlx::Error) -> session_store::Error {
    if super::is_unavailable(&error) {
        session_store::Error::Backend(format!("{UNAVAILABLE_PREFIX}{error}"))
    } else {
        session_store::Error::Backend(error.to_string())
    }
}

/// The key a session is stored under: the hex SHA-256 of its id (the cookie's value). The id
/// is 128 random bits, so a plain hash (no salt, no stretching) is enough.
fn stored_key(id: &Id) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(id.to_string().as_bytes()))
}

fn user_id_of(record: &Record) -> Option<i64> {
    record
        .data
        .get(AUTH_KEY)
        .and_then(|auth| auth.get("user_id"))
        .and_then(|id| id.as_i64())
}

impl SqlSessionStore {
    /// Writes `record`; `on_conflict` says what a stored session with the same id gets. The
    /// number of rows written (0 when `DO NOTHING` met an existing id).
    async fn write(&self, record: &Record, on_conflict: &str) -> session_store::Result<u64> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let written = sqlx::query(&format!(
            "INSERT INTO auth_sessions (id, user_id, data, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) {on_conflict}"
        ))
        .bind(stored_key(&record.id))
        .bind(user_id_of(record))
        .bind(&data)
        .bind(record.expiry_date.unix_timestamp())
        .execute(&self.db.pool)
        .await
        .map_err(backend)?;
        Ok(written.rows_affected())
    }
}

#[async_trait]
impl SessionStore for SqlSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let _turn = self.db.write_turn().await.map_err(backend)?;
        // A fresh id collides with astronomically small probability; retry rather than overwrite.
        while self.write(record, "DO NOTHING").await? == 0 {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let _turn = self.db.write_turn().await.map_err(backend)?;
        self.write(
            record,
            "DO UPDATE SET user_id = excluded.user_id, data = excluded.data, \
             expires_at = excluded.expires_at",
        )
        .await?;
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT data, expires_at FROM auth_sessions WHERE id = $1 AND expires_at > $2",
        )
        .bind(stored_key(id))
        .bind(super::now())
        .fetch_optional(&self.db.pool)
        .await
        .map_err(backend)?;
        let Some((data, expires_at)) = row else {
            return Ok(None);
        };
        let data =
            serde_json::from_str(&data).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date =
            tower_sessions::cookie::time::OffsetDateTime::from_unix_timestamp(expires_at)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let _turn = self.db.write_turn().await.map_err(backend)?;
        sqlx::query("DELETE FROM auth_sessions WHERE id = $1")
            .bind(stored_key(id))
            .execute(&self.db.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// Ends every session of one user (disable, password reset, password change).
pub async fn delete_for_user(
    conn: &mut sqlx::AnyConnection,
    user_id: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM auth_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Number of stored sessions of one user (tests and the users page).
pub async fn count_for_user(pool: &AnyPool, user_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM auth_sessions WHERE user_id = $1 AND expires_at > $2")
        .bind(user_id)
        .bind(super::now())
        .fetch_one(pool)
        .await
}

/// Removes expired sessions; run periodically.
pub async fn delete_expired(pool: &AnyPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM auth_sessions WHERE expires_at <= $1")
        .bind(super::now())
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
