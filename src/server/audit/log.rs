//! Appending to the chain, the audit key, and verification.

use super::chain::{Break, ChainWalker, GENESIS_MAC, VerifyReport, parse_packed, row_mac};
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
        let mut tx = db.begin().await?;
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
        let mut tx = db.begin().await?;
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
    ///
    /// Ranges of rows are read and checked on all cores at once: each range is checked on its
    /// own, starting from its first row's stored `prev_mac`, and the seams are checked when the
    /// results are joined in seq order, so the report is the one a single sequential walk
    /// would give.
    pub async fn verify_from(
        &self,
        db: &Db,
        first_seq: i64,
        prev_mac: &str,
    ) -> Result<VerifyReport, sqlx::Error> {
        use futures::StreamExt;
        const RANGE: i64 = 20_000;
        let last = repo::head_of(&db.pool).await?.map_or(0, |(seq, _)| seq);
        let in_flight = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8)
            + 1;
        let ranges = futures::stream::iter((first_seq..=last).step_by(RANGE as usize))
            .map(|from| {
                let key = Arc::clone(&self.key);
                async move {
                    let text = repo::packed_range(db, from, from + RANGE).await?;
                    tokio::task::spawn_blocking(move || check_range(&key, &text))
                        .await
                        .map_err(|e| sqlx::Error::Protocol(format!("verification task: {e}")))?
                }
            })
            .buffered(in_flight);
        futures::pin_mut!(ranges);
        let mut joined = JoinedChain {
            expected_seq: first_seq,
            prev_mac: prev_mac.to_string(),
            rows: 0,
        };
        while let Some(range) = ranges.next().await {
            if let Some(report) = joined.join(range?) {
                return Ok(report);
            }
        }
        Ok(VerifyReport {
            rows: joined.rows,
            head_seq: joined.expected_seq - 1,
            head_mac: joined.prev_mac,
            broken: None,
        })
    }
}

/// One range checked on its own: where it starts and what a walk from there found.
struct CheckedRange {
    /// The first row's seq and stored `prev_mac` (None for an empty range).
    first: Option<(i64, String)>,
    report: VerifyReport,
}

fn check_range(key: &[u8; 32], text: &str) -> Result<CheckedRange, sqlx::Error> {
    let rows = parse_packed(text).map_err(|problem| sqlx::Error::Decode(problem.into()))?;
    let Some(first) = rows.first() else {
        return Ok(CheckedRange {
            first: None,
            report: ChainWalker::new(key, 0, GENESIS_MAC).finish(),
        });
    };
    let Ok(first_seq) = first[0].parse::<i64>() else {
        return Err(sqlx::Error::Decode("audit seq is not a number".into()));
    };
    let mut walker = ChainWalker::new(key, first_seq, first[13]);
    for row in &rows {
        if !walker.push_packed(row) {
            break;
        }
    }
    Ok(CheckedRange {
        first: Some((first_seq, first[13].to_string())),
        report: walker.finish(),
    })
}

/// The chain verified so far, as ranges are joined in seq order.
struct JoinedChain {
    expected_seq: i64,
    prev_mac: String,
    rows: u64,
}

impl JoinedChain {
    /// Joins the next range; returns the final report once the chain is found broken.
    fn join(&mut self, range: CheckedRange) -> Option<VerifyReport> {
        let (first_seq, first_prev_mac) = range.first?;
        let broken = if first_seq != self.expected_seq {
            Some((self.expected_seq, Break::Gap { found: first_seq }))
        } else if first_prev_mac != self.prev_mac {
            Some((first_seq, Break::BrokenLink))
        } else {
            self.rows += range.report.rows;
            self.expected_seq = range.report.head_seq + 1;
            self.prev_mac = range.report.head_mac;
            range.report.broken
        };
        broken.map(|broken| VerifyReport {
            rows: self.rows,
            head_seq: self.expected_seq - 1,
            head_mac: self.prev_mac.clone(),
            broken: Some(broken),
        })
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_string(),
    }
}
