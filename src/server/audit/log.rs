//! Appending to the chain, the audit key, and verification.

use super::chain::{ChainWalker, GENESIS_MAC, VerifyReport, parse_packed, row_mac};
use super::{AuditEvent, RequestMeta, scrub};
use crate::server::db::{self, Db, audit as repo, audit::AuditRow};
use crate::server::vault::{Sealed, SecretSlot, Vault};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use sqlx::AnyConnection;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    /// A query failed.
    #[error("audit log: {0}")]
    Db(#[from] sqlx::Error),
    /// The stored audit key does not open with the configured master key.
    #[error(
        "the stored audit key cannot be opened with the configured master key (the key or its row was changed)"
    )]
    Key,
    /// Rows exist but their key is gone.
    #[error(
        "the audit log has rows but its key row is missing; restore the audit_key row from a backup"
    )]
    KeyMissing,
}

const KEY_SLOT: SecretSlot<'static> = SecretSlot {
    credential_id: 0,
    field: "audit-key",
    version: 0,
};

/// The audit log: appends rows to the chain and verifies it. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    key: Arc<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

fn decode_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let bytes = Zeroizing::new(STANDARD.decode(text).ok()?);
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

impl AuditLog {
    /// Opens the audit key (creating it from the master key on first start).
    pub async fn open(db: &Db, vault: &Vault) -> Result<AuditLog, AuditLogError> {
        let mut tx = db.pool.begin().await?;
        db::lock(&mut tx, "audit").await?;
        let key = match repo::sealed_key(&mut tx).await? {
            Some((ciphertext, nonce, key_version)) => {
                let sealed = Sealed {
                    ciphertext: STANDARD
                        .decode(ciphertext)
                        .map_err(|_| AuditLogError::Key)?,
                    nonce: STANDARD.decode(nonce).map_err(|_| AuditLogError::Key)?,
                    key_version,
                };
                let text = vault
                    .open(KEY_SLOT, &sealed)
                    .map_err(|_| AuditLogError::Key)?;
                decode_key(text.expose_secret()).ok_or(AuditLogError::Key)?
            }
            None => {
                if repo::head(&mut tx).await?.is_some() {
                    return Err(AuditLogError::KeyMissing);
                }
                let key = vault.master_key().derive("audit");
                Self::store_key(&mut tx, vault, &key).await?;
                key
            }
        };
        tx.commit().await?;
        Ok(AuditLog { key: Arc::new(key) })
    }

    /// An audit log over a given key (tests and tools).
    pub fn with_key(key: [u8; 32]) -> AuditLog {
        AuditLog {
            key: Arc::new(Zeroizing::new(key)),
        }
    }

    async fn store_key(
        conn: &mut AnyConnection,
        vault: &Vault,
        key: &[u8; 32],
    ) -> Result<(), sqlx::Error> {
        let text = SecretString::from(STANDARD.encode(key));
        let sealed = vault.seal(KEY_SLOT, &text);
        repo::put_sealed_key(
            conn,
            &STANDARD.encode(&sealed.ciphertext),
            &STANDARD.encode(&sealed.nonce),
            sealed.key_version,
        )
        .await
    }

    /// Seals the audit key under a new master key, inside the rotation's transaction.
    pub async fn reseal(&self, conn: &mut AnyConnection, new: &Vault) -> Result<(), sqlx::Error> {
        Self::store_key(conn, new, &self.key).await
    }

    /// Appends `event` inside the caller's transaction (so the change and its row commit
    /// together); takes the chain lock, which is held until that transaction ends.
    pub async fn append(
        &self,
        conn: &mut AnyConnection,
        meta: &RequestMeta,
        event: &AuditEvent,
    ) -> Result<i64, sqlx::Error> {
        db::lock(conn, "audit").await?;
        let (prev_seq, prev_mac) = repo::head(conn)
            .await?
            .unwrap_or((0, GENESIS_MAC.to_string()));
        let (actor_id, actor_email, actor_role) = event.actor.stored();
        let (object_type, object_id) = event
            .object
            .as_ref()
            .map(|(kind, id)| (kind.to_string(), id.clone()))
            .unwrap_or_default();
        let detail = if event.detail.is_null() {
            "{}".to_string()
        } else {
            scrub(&event.detail.to_string())
        };
        let mut row = AuditRow {
            seq: prev_seq + 1,
            at_ms: chrono::Utc::now().timestamp_millis(),
            actor_id,
            actor_email: actor_email.to_string(),
            actor_role: actor_role.to_string(),
            ip: meta.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            request_id: truncate(&meta.request_id, 100),
            action: event.action.to_string(),
            object_type,
            object_id,
            outcome: event.outcome.as_str().to_string(),
            reason: scrub(&truncate(&event.reason, 500)),
            detail,
            prev_mac,
            mac: String::new(),
        };
        row.mac = row_mac(&self.key, &row.prev_mac, &row);
        repo::insert(conn, &row).await?;
        tracing::info!(
            target: "audit",
            seq = row.seq,
            request_id = %row.request_id,
            actor_role = %row.actor_role,
            action = %row.action,
            outcome = %row.outcome,
            "audit"
        );
        Ok(row.seq)
    }

    /// Records `event` in a transaction of its own; a failure is returned (for callers that
    /// must not go on without the row, such as reads of personal data).
    pub async fn try_record(
        &self,
        db: &Db,
        meta: &RequestMeta,
        event: &AuditEvent,
    ) -> Result<i64, sqlx::Error> {
        let mut tx = db.pool.begin().await?;
        let seq = self.append(&mut tx, meta, event).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Records `event` in a transaction of its own; a failure is logged loudly with the
    /// request id (the action it describes has already happened or been refused).
    pub async fn record(&self, db: &Db, meta: &RequestMeta, event: &AuditEvent) {
        if let Err(error) = self.try_record(db, meta, event).await {
            tracing::error!(
                request_id = %meta.request_id,
                action = event.action,
                %error,
                "could not write the audit row"
            );
        }
    }

    /// Walks the whole chain from genesis.
    pub async fn verify(&self, db: &Db) -> Result<VerifyReport, sqlx::Error> {
        self.verify_from(db, 1, GENESIS_MAC).await
    }

    /// Walks the chain from `first_seq`, whose `prev_mac` must be `prev_mac` (an archive
    /// checkpoint: the MAC of row `first_seq - 1`, kept with the archived export).
    pub async fn verify_from(
        &self,
        db: &Db,
        first_seq: i64,
        prev_mac: &str,
    ) -> Result<VerifyReport, sqlx::Error> {
        const RANGE: i64 = 20_000;
        let mut walker = ChainWalker::new(&self.key, first_seq, prev_mac);
        let last = repo::head_of(&db.pool).await?.map_or(0, |(seq, _)| seq);
        // A row before the start (not archived as claimed) is caught by the gap check only if
        // it is at the start; rows are read by seq range, so the first one read must be
        // `first_seq`.
        let mut from = first_seq;
        while from <= last {
            let text = repo::packed_range(db, from, from + RANGE).await?;
            let rows = match parse_packed(&text) {
                Ok(rows) => rows,
                Err(problem) => {
                    return Err(sqlx::Error::Decode(problem.into()));
                }
            };
            for row in &rows {
                if !walker.push_packed(row) {
                    return Ok(walker.finish());
                }
            }
            from += RANGE;
        }
        Ok(walker.finish())
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_string(),
    }
}
