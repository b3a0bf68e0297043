//! The `audit_log` and `audit_key_epochs` tables.

use super::Bind;
use sqlx::{AnyConnection, AnyPool};

/// One audit row exactly as stored (and as its MAC covers it).
#[derive(sqlx::FromRow, Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// UTC time in Unix milliseconds.
    pub at_ms: i64,
    /// Staff user id, when the actor is a user.
    pub actor_id: Option<i64>,
    /// Staff email ('' for system, cli and anonymous actors).
    pub actor_email: String,
    /// Role at the time, or `system` / `cli` / `anonymous`.
    pub actor_role: String,
    /// Client address ('' when unknown).
    pub ip: String,
    /// Request id of the log lines.
    pub request_id: String,
    /// Dotted verb.
    pub action: String,
    /// Object type ('' when none).
    pub object_type: String,
    /// Object id ('' when none).
    pub object_id: String,
    /// `success` / `failure` / `denied` / `error`.
    pub outcome: String,
    /// Plain-words reason.
    pub reason: String,
    /// Detail JSON text.
    pub detail: String,
    /// MAC of the previous row (the genesis value for seq 1).
    pub prev_mac: String,
    /// HMAC-SHA256 over `prev_mac` and the row's canonical encoding, hex.
    pub mac: String,
    /// The audit key epoch whose key signed the row.
    pub key_epoch: i64,
}

const COLUMNS: &str = "seq, at_ms, actor_id, actor_email, actor_role, ip, request_id, action, \
                       object_type, object_id, outcome, reason, detail, prev_mac, mac, key_epoch";

/// Takes the chain lock for the rest of the transaction and reads where the next row goes,
/// in one statement: the last row's seq and MAC (`None` for an empty log) and the newest key
/// epoch (`None` before the first epoch exists), as the head row (kept by triggers on
/// `audit_log` and `audit_key_epochs`) holds them once the lock is held. Writing the row makes
/// PostgreSQL hold its row lock (and return the newest committed values after a wait) and
/// SQLite take its write lock, so appends, epoch changes and first-start checks never
/// interleave.
pub async fn lock_head(
    conn: &mut AnyConnection,
) -> Result<(Option<(i64, String)>, Option<i64>), sqlx::Error> {
    let (seq, mac, epoch): (i64, Option<String>, Option<i64>) = sqlx::query_as(
        "UPDATE audit_chain_head SET seq = seq WHERE id = 1 RETURNING seq, mac, newest_epoch",
    )
    .fetch_one(conn)
    .await?;
    Ok((mac.filter(|_| seq > 0).map(|mac| (seq, mac)), epoch))
}

/// The last row's seq, MAC and key epoch, read from the pool (what a checkpoint records).
pub async fn head_with_epoch(pool: &AnyPool) -> Result<Option<(i64, String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT seq, mac, key_epoch FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(pool)
        .await
}

/// The first row recording that checkpoints began in the anchor file `path`, if any.
pub async fn first_anchor_start(pool: &AnyPool, path: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(seq) FROM audit_log WHERE action = 'audit.anchor_start' AND object_id = $1",
    )
    .bind(path)
    .fetch_one(pool)
    .await
}

/// The last row's seq and MAC, read from the pool.
pub async fn head_of(pool: &AnyPool) -> Result<Option<(i64, String)>, sqlx::Error> {
    sqlx::query_as("SELECT seq, mac FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(pool)
        .await
}

/// Appends one row.
pub async fn insert(conn: &mut AnyConnection, row: &AuditRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(row.seq)
    .bind(row.at_ms)
    .bind(row.actor_id)
    .bind(&row.actor_email)
    .bind(&row.actor_role)
    .bind(&row.ip)
    .bind(&row.request_id)
    .bind(&row.action)
    .bind(&row.object_type)
    .bind(&row.object_id)
    .bind(&row.outcome)
    .bind(&row.reason)
    .bind(&row.detail)
    .bind(&row.prev_mac)
    .bind(&row.mac)
    .bind(row.key_epoch)
    .execute(conn)
    .await?;
    Ok(())
}

/// One row by seq.
pub async fn find(pool: &AnyPool, seq: i64) -> Result<Option<AuditRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq = $1"))
        .bind(seq)
        .fetch_optional(pool)
        .await
}

/// Number of rows.
pub async fn count(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(pool)
        .await
}

/// Filters of the auditor's page, already parsed.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// From this time (Unix ms, inclusive).
    pub from_ms: Option<i64>,
    /// Before this time (Unix ms, exclusive).
    pub to_ms: Option<i64>,
    /// Part of the actor's email or role.
    pub actor: Option<String>,
    /// An action, or a prefix ending in `.` (`user.`).
    pub action: Option<String>,
    /// Object type.
    pub object_type: Option<String>,
    /// Object id (with a type).
    pub object_id: Option<String>,
    /// Outcome.
    pub outcome: Option<String>,
    /// Words searched in reason and detail.
    pub text: Option<String>,
    /// Keyset cursor: rows with a smaller seq only.
    pub before_seq: Option<i64>,
}

/// `LIKE` pattern matching `text` anywhere, with wildcards in `text` taken literally.
fn contains_pattern(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

fn where_clause(query: &AuditQuery) -> (String, Vec<Bind>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut binds = Vec::new();
    let next = |bind: Bind, binds: &mut Vec<Bind>| {
        binds.push(bind);
        format!("${}", binds.len())
    };
    if let Some(from) = query.from_ms {
        let p = next(Bind::Int(from), &mut binds);
        conditions.push(format!("at_ms >= {p}"));
    }
    if let Some(to) = query.to_ms {
        let p = next(Bind::Int(to), &mut binds);
        conditions.push(format!("at_ms < {p}"));
    }
    if let Some(actor) = &query.actor {
        let p = next(Bind::Text(contains_pattern(actor)), &mut binds);
        conditions.push(format!(
            "(LOWER(actor_email) LIKE {p} ESCAPE '\\' OR actor_role LIKE {p} ESCAPE '\\')"
        ));
    }
    if let Some(action) = &query.action {
        if let Some(prefix) = action.strip_suffix('.') {
            let p = next(Bind::Text(format!("{prefix}.%")), &mut binds);
            conditions.push(format!("action LIKE {p}"));
        } else {
            let p = next(Bind::Text(action.clone()), &mut binds);
            conditions.push(format!("action = {p}"));
        }
    }
    if let Some(object_type) = &query.object_type {
        let p = next(Bind::Text(object_type.clone()), &mut binds);
        conditions.push(format!("object_type = {p}"));
    }
    if let Some(object_id) = &query.object_id {
        let p = next(Bind::Text(object_id.clone()), &mut binds);
        conditions.push(format!("object_id = {p}"));
    }
    if let Some(outcome) = &query.outcome {
        let p = next(Bind::Text(outcome.clone()), &mut binds);
        conditions.push(format!("outcome = {p}"));
    }
    if let Some(text) = &query.text {
        let p = next(Bind::Text(contains_pattern(text)), &mut binds);
        conditions.push(format!(
            "(LOWER(reason) LIKE {p} ESCAPE '\\' OR LOWER(detail) LIKE {p} ESCAPE '\\')"
        ));
    }
    if let Some(before) = query.before_seq {
        let p = next(Bind::Int(before), &mut binds);
        conditions.push(format!("seq < {p}"));
    }
    (super::where_clause(&conditions), binds)
}

/// Up to `limit` rows matching `query`, newest first (keyset: pass the last seq as the
/// next page's `before_seq`).
pub async fn search(
    pool: &AnyPool,
    query: &AuditQuery,
    limit: i64,
) -> Result<Vec<AuditRow>, sqlx::Error> {
    let (clause, binds) = where_clause(query);
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log {clause} ORDER BY seq DESC LIMIT {}",
        limit.clamp(1, 1000)
    );
    sqlx::query_as_with::<_, AuditRow, _>(&sql, super::arguments(binds)?)
        .fetch_all(pool)
        .await
}

/// One audit key epoch as stored: its key sealed under the master key.
#[derive(sqlx::FromRow, Clone)]
pub struct EpochRow {
    /// The epoch number, from 1.
    pub epoch: i64,
    /// The first seq signed in this epoch.
    pub first_seq: i64,
    /// Sealed key, base64.
    pub ciphertext: String,
    /// GCM nonce, base64.
    pub nonce: String,
    /// Version of the master key it is sealed under.
    pub key_version: i64,
}

impl std::fmt::Debug for EpochRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EpochRow(epoch {}, from seq {}, key v{})",
            self.epoch, self.first_seq, self.key_version
        )
    }
}

const EPOCH_COLUMNS: &str = "epoch, first_seq, ciphertext, nonce, key_version";

/// Every epoch, oldest first.
pub async fn epochs(conn: &mut AnyConnection) -> Result<Vec<EpochRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {EPOCH_COLUMNS} FROM audit_key_epochs ORDER BY epoch"
    ))
    .fetch_all(conn)
    .await
}

/// One epoch.
pub async fn epoch(conn: &mut AnyConnection, epoch: i64) -> Result<Option<EpochRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {EPOCH_COLUMNS} FROM audit_key_epochs WHERE epoch = $1"
    ))
    .bind(epoch)
    .fetch_optional(conn)
    .await
}

/// Stores a new epoch (first start, key rotation). Call under the `audit` lock.
pub async fn insert_epoch(conn: &mut AnyConnection, row: &EpochRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_key_epochs (epoch, first_seq, ciphertext, nonce, key_version, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(row.epoch)
    .bind(row.first_seq)
    .bind(&row.ciphertext)
    .bind(&row.nonce)
    .bind(row.key_version)
    .bind(super::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Replaces an epoch's seal (master-key rotation re-seals every epoch under the new key).
pub async fn reseal_epoch(conn: &mut AnyConnection, row: &EpochRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE audit_key_epochs SET ciphertext = $1, nonce = $2, key_version = $3 WHERE epoch = $4",
    )
    .bind(&row.ciphertext)
    .bind(&row.nonce)
    .bind(row.key_version)
    .bind(row.epoch)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows with `from <= seq < to`, packed by the database into one text: every column of every
/// row as `<byte length>:<text>`, rows in seq order (see `audit::chain::parse_packed`). One
/// round trip per range keeps a million-row verification fast on both backends.
pub async fn packed_range(db: &super::Db, from: i64, to: i64) -> Result<String, sqlx::Error> {
    let columns = [
        "CAST(seq AS TEXT)",
        "CAST(at_ms AS TEXT)",
        "COALESCE(CAST(actor_id AS TEXT), '')",
        "actor_email",
        "actor_role",
        "ip",
        "request_id",
        "action",
        "object_type",
        "object_id",
        "outcome",
        "reason",
        "detail",
        "prev_mac",
        "mac",
        "CAST(key_epoch AS TEXT)",
    ];
    let packed = columns
        .iter()
        .map(|c| format!("CAST(octet_length({c}) AS TEXT) || ':' || {c}"))
        .collect::<Vec<_>>()
        .join(" || ");
    let aggregate = match db.backend {
        super::Backend::Sqlite => format!("group_concat({packed}, '' ORDER BY seq)"),
        super::Backend::Postgres => format!("string_agg({packed}, '' ORDER BY seq)"),
    };
    sqlx::query_scalar(&format!(
        "SELECT COALESCE({aggregate}, '') FROM audit_log WHERE seq >= $1 AND seq < $2"
    ))
    .bind(from)
    .bind(to)
    .fetch_one(&db.pool)
    .await
}
