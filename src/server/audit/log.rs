//! Appending to the chain, the audit key epochs, checkpoints, and verification.

use super::anchor::{self, Checkpoint};
use super::chain::{
    Break, ChainWalker, EpochKey, GENESIS_MAC, VerifyReport, Waypoint, parse_packed, row_mac,
};
use super::{Actor, AuditEvent, Outcome, RequestMeta, scrub};
use crate::server::db::{Db, audit as repo, audit::AuditRow, audit::EpochRow};
use crate::server::vault::{Sealed, SecretSlot, Vault};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::AnyConnection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use zeroize::Zeroizing;

/// Why the audit log could not be opened, or its keys used.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    /// A query failed.
    #[error("audit log: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored audit key does not open with the configured master key.
    #[error(
        "the stored audit key of epoch {0} cannot be opened with the configured master key (the key, or its row, was changed; after a master-key rotation restart with the new key)"
    )]
    Key(i64),
    /// Rows exist but their keys are gone.
    #[error(
        "the audit log has rows but its key rows are missing; restore the audit_key_epochs table from a backup"
    )]
    KeyMissing,
    /// A row or checkpoint names an epoch whose key is not stored.
    #[error("the audit key of epoch {0} is not stored")]
    EpochMissing(i64),
    /// A log over a given key (tests, tools) has no master key to seal a new epoch under.
    #[error("this audit log has no master key to seal a new audit key epoch under")]
    Unsealed,
}

impl From<AuditLogError> for sqlx::Error {
    fn from(error: AuditLogError) -> Self {
        match error {
            AuditLogError::Db(error) => error,
            other => sqlx::Error::Configuration(Box::new(other)),
        }
    }
}

/// Why a checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// Reading the head or writing the anchor_start row failed.
    #[error("audit checkpoint: {0}")]
    Db(#[from] sqlx::Error),
    /// The anchor file could not be written.
    #[error("audit checkpoint: cannot write the anchor file {path}: {source}")]
    Io {
        /// The anchor file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

type Key = Arc<Zeroizing<[u8; 32]>>;

/// The audit log: appends rows to the chain, writes checkpoints and verifies. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    /// Opens the stored epoch keys (`None` for a log over one given key).
    vault: Option<Arc<Vault>>,
    /// Epoch keys opened so far, shared by clones.
    keys: Arc<RwLock<BTreeMap<i64, Key>>>,
    /// Where checkpoints go and are checked against.
    anchor: Option<PathBuf>,
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

/// The associated data an epoch key is sealed with: it binds the epoch and its first seq, so
/// a seal moved to another epoch, or a changed `first_seq`, does not open. Epoch 1 from seq 1
/// keeps the slot of the single audit key before epochs, so that key moved over unchanged.
fn epoch_field(epoch: i64, first_seq: i64) -> String {
    if epoch == 1 && first_seq == 1 {
        "audit-key".into()
    } else {
        format!("audit-key/epoch/{epoch}/from/{first_seq}")
    }
}

fn slot(field: &str) -> SecretSlot<'_> {
    SecretSlot {
        credential_id: 0,
        field,
        version: 0,
    }
}

/// Opens one stored epoch key with `vault`.
pub fn open_epoch_key(vault: &Vault, row: &EpochRow) -> Result<Zeroizing<[u8; 32]>, AuditLogError> {
    let bad = || AuditLogError::Key(row.epoch);
    let sealed = Sealed {
        ciphertext: STANDARD.decode(&row.ciphertext).map_err(|_| bad())?,
        nonce: STANDARD.decode(&row.nonce).map_err(|_| bad())?,
        key_version: row.key_version,
    };
    let field = epoch_field(row.epoch, row.first_seq);
    let text = vault.open(slot(&field), &sealed).map_err(|_| bad())?;
    decode_key(text.expose_secret()).ok_or_else(bad)
}

fn seal_epoch_key(vault: &Vault, epoch: i64, first_seq: i64, key: &[u8; 32]) -> EpochRow {
    let text = SecretString::from(STANDARD.encode(key));
    let field = epoch_field(epoch, first_seq);
    let sealed = vault.seal(slot(&field), &text);
    EpochRow {
        epoch,
        first_seq,
        ciphertext: STANDARD.encode(&sealed.ciphertext),
        nonce: STANDARD.encode(&sealed.nonce),
        key_version: sealed.key_version,
    }
}

fn random_key() -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    key
}

impl AuditLog {
    /// Opens every audit key epoch (creating epoch 1 with a random key on first start).
    pub async fn open(db: &Db, vault: &Arc<Vault>) -> Result<AuditLog, AuditLogError> {
        let mut tx = db.begin().await?;
        let (head, _) = repo::lock_head(&mut tx).await?;
        let stored = repo::epochs(&mut tx).await?;
        let mut keys = BTreeMap::new();
        if stored.is_empty() {
            if head.is_some() {
                return Err(AuditLogError::KeyMissing);
            }
            let key = random_key();
            repo::insert_epoch(&mut tx, &seal_epoch_key(vault, 1, 1, &key)).await?;
            keys.insert(1, Arc::new(key));
        }
        for row in &stored {
            keys.insert(row.epoch, Arc::new(open_epoch_key(vault, row)?));
        }
        tx.commit().await?;
        Ok(AuditLog {
            vault: Some(Arc::clone(vault)),
            keys: Arc::new(RwLock::new(keys)),
            anchor: None,
        })
    }

    /// An audit log over one given key, as epoch 1 (tests and tools).
    pub fn with_key(key: [u8; 32]) -> AuditLog {
        AuditLog {
            vault: None,
            keys: Arc::new(RwLock::new(BTreeMap::from([(
                1,
                Arc::new(Zeroizing::new(key)),
            )]))),
            anchor: None,
        }
    }

    /// The same log, writing checkpoints to and checking against the anchor file `path`.
    pub fn anchored(mut self, path: Option<PathBuf>) -> AuditLog {
        self.anchor = path;
        self
    }

    /// The anchor file, if checkpoints are kept.
    pub fn anchor_file(&self) -> Option<&Path> {
        self.anchor.as_deref()
    }

    fn cached(&self, epoch: i64) -> Option<Key> {
        self.keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&epoch)
            .cloned()
    }

    /// The key of `epoch`: opened before, or read and opened now (an epoch another process
    /// started, by `rotate-audit-key` for instance).
    async fn key_for(&self, conn: &mut AnyConnection, epoch: i64) -> Result<Key, AuditLogError> {
        if let Some(key) = self.cached(epoch) {
            return Ok(key);
        }
        let vault = self
            .vault
            .as_ref()
            .ok_or(AuditLogError::EpochMissing(epoch))?;
        let row = repo::epoch(conn, epoch)
            .await?
            .ok_or(AuditLogError::EpochMissing(epoch))?;
        let key = Arc::new(open_epoch_key(vault, &row)?);
        self.keys
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(epoch, Arc::clone(&key));
        Ok(key)
    }

    /// Starts a new key epoch inside the caller's transaction, whose keys are sealed under
    /// `vault` (the new one on master-key rotation, when every older epoch is re-sealed under
    /// it too). Returns the log to append the rotation's own row with: it signs in the new
    /// epoch. This log is left as it was, so a rolled-back rotation leaves nothing behind.
    pub async fn start_epoch(
        &self,
        conn: &mut AnyConnection,
        vault: &Arc<Vault>,
    ) -> Result<AuditLog, AuditLogError> {
        let (head, newest) = repo::lock_head(conn).await?;
        let mut keys = BTreeMap::new();
        for row in repo::epochs(conn).await? {
            let key = self.key_for(conn, row.epoch).await?;
            if row.key_version != vault.key_version() {
                repo::reseal_epoch(conn, &seal_epoch_key(vault, row.epoch, row.first_seq, &key))
                    .await?;
            }
            keys.insert(row.epoch, key);
        }
        let epoch = newest.unwrap_or(0) + 1;
        let first_seq = head.map_or(1, |(seq, _)| seq + 1);
        let key = random_key();
        repo::insert_epoch(conn, &seal_epoch_key(vault, epoch, first_seq, &key)).await?;
        keys.insert(epoch, Arc::new(key));
        Ok(AuditLog {
            vault: Some(Arc::clone(vault)),
            keys: Arc::new(RwLock::new(keys)),
            anchor: self.anchor.clone(),
        })
    }

    /// `rotate-audit-key`: a new epoch with a fresh random key, recorded in its first row.
    /// Returns the new epoch.
    pub async fn rotate_key(&self, db: &Db, meta: &RequestMeta) -> Result<i64, AuditLogError> {
        let vault = self.vault.clone().ok_or(AuditLogError::EpochMissing(0))?;
        let mut tx = db.begin().await?;
        let rotated = self.start_epoch(&mut tx, &vault).await?;
        let epoch = repo::lock_head(&mut tx).await?.1.unwrap_or(1);
        rotated
            .append(
                &mut tx,
                meta,
                &AuditEvent::new(Actor::Cli, "audit.key_rotate", Outcome::Success)
                    .detail(serde_json::json!({ "from_epoch": epoch - 1, "to_epoch": epoch })),
            )
            .await?;
        tx.commit().await?;
        Ok(epoch)
    }

    /// Appends `event` inside the caller's transaction (so the change and its row commit
    /// together); takes the chain lock, which is held until that transaction ends. The row is
    /// signed in the newest key epoch.
    pub async fn append(
        &self,
        conn: &mut AnyConnection,
        meta: &RequestMeta,
        event: &AuditEvent,
    ) -> Result<i64, sqlx::Error> {
        let (head, newest) = repo::lock_head(conn).await?;
        let (prev_seq, prev_mac) = head.unwrap_or((0, GENESIS_MAC.to_string()));
        let key_epoch = newest.unwrap_or(1);
        let key = self.key_for(conn, key_epoch).await?;
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
            key_epoch,
        };
        row.mac = row_mac(&key, &row.prev_mac, &row);
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

    /// Writes a checkpoint of the chain's head to the anchor file and the log, unless there is
    /// no anchor file, no row, or nothing new since the last checkpoint. The file's first
    /// checkpoint is preceded by an `audit.anchor_start` row, so that the chain itself says a
    /// checkpoint is expected from then on. Returns the checkpoint written.
    pub async fn checkpoint(&self, db: &Db) -> Result<Option<Checkpoint>, AnchorError> {
        let Some(path) = &self.anchor else {
            return Ok(None);
        };
        let io = |source| AnchorError::Io {
            path: path.display().to_string(),
            source,
        };
        anchor::create(path).map_err(io)?;
        // Announced once per file, in the chain itself (also after a failed first attempt).
        if anchor::last(path).map_err(io)?.is_none()
            && repo::first_anchor_start(&db.pool, &path.display().to_string())
                .await?
                .is_none()
        {
            self.try_record(
                db,
                &RequestMeta::system(),
                &AuditEvent::new(Actor::System, "audit.anchor_start", Outcome::Success)
                    .object("anchor_file", path.display())
                    .reason("checkpoints of the audit chain are written to this file from now on"),
            )
            .await?;
        }
        let Some((seq, mac, epoch)) = repo::head_with_epoch(&db.pool).await? else {
            return Ok(None);
        };
        if anchor::last(path)
            .map_err(io)?
            .is_some_and(|last| last.seq == seq && last.mac == mac)
        {
            return Ok(None);
        }
        let mut conn = db.pool.acquire().await?;
        let key = self
            .key_for(&mut conn, epoch)
            .await
            .map_err(sqlx::Error::from)?;
        drop(conn);
        let checkpoint = Checkpoint::sign(EpochKey::new(epoch, 0, &key).keyed(), seq, &mac, epoch);
        anchor::append(path, &checkpoint).map_err(io)?;
        tracing::info!(
            target: "audit_anchor",
            seq = checkpoint.seq,
            mac = %checkpoint.mac,
            time = %checkpoint.time,
            epoch = checkpoint.epoch,
            hmac = %checkpoint.hmac,
            file = %path.display(),
            "audit checkpoint"
        );
        Ok(Some(checkpoint))
    }

    /// Walks the whole chain from genesis.
    pub async fn verify(&self, db: &Db) -> Result<VerifyReport, sqlx::Error> {
        self.verify_from(db, 1, GENESIS_MAC).await
    }

    /// Every stored epoch with its key, oldest first.
    async fn epoch_keys(&self, db: &Db) -> Result<Arc<[EpochKey]>, sqlx::Error> {
        let mut conn = db.pool.acquire().await?;
        let mut stored: Vec<(i64, i64)> = repo::epochs(&mut conn)
            .await?
            .into_iter()
            .map(|row| (row.epoch, row.first_seq))
            .collect();
        if stored.is_empty() && self.vault.is_none() {
            // A log over a given key, on a database whose epochs were never stored.
            stored.push((1, 1));
        }
        let mut epochs = Vec::with_capacity(stored.len());
        for (epoch, first_seq) in stored {
            let key = self.key_for(&mut conn, epoch).await?;
            epochs.push(EpochKey::new(epoch, first_seq, &key));
        }
        Ok(epochs.into())
    }

    /// Walks the chain from `first_seq`, whose `prev_mac` must be `prev_mac` (an archive
    /// checkpoint: the MAC of row `first_seq - 1`, kept with the archived export), checking
    /// each row against the key epoch of its seq and the chain against the anchor file.
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
        let epochs = self.epoch_keys(db).await?;
        let anchors = self.read_anchors(db, &epochs).await?;
        let waypoints: Arc<[Waypoint]> = anchors.waypoints.into();
        let mut report = self
            .walk(db, &epochs, &waypoints, first_seq, prev_mac)
            .await?;
        report.checkpoint = anchors.newest.as_ref().map(Checkpoint::describe);
        if report.broken.is_some() {
            return Ok(report);
        }
        report.broken = anchors.problem;
        if report.broken.is_none()
            && let Some(newest) = anchors.newest
            && newest.seq > report.head_seq
        {
            report.broken = Some((
                report.head_seq + 1,
                Break::Truncated {
                    after: report.head_seq,
                    checkpoint_seq: newest.seq,
                    time: newest.time,
                },
            ));
        }
        Ok(report)
    }

    /// The anchor file read and each line's signature checked.
    async fn read_anchors(&self, db: &Db, epochs: &[EpochKey]) -> Result<Anchors, sqlx::Error> {
        let mut anchors = Anchors::default();
        let Some(path) = &self.anchor else {
            return Ok(anchors);
        };
        let shown = path.display().to_string();
        let lines = match anchor::read_all(path) {
            Ok(lines) => lines.unwrap_or_default(),
            Err(error) => {
                anchors.problem = Some((
                    0,
                    Break::AnchorUnreadable {
                        path: shown,
                        reason: error.to_string(),
                    },
                ));
                return Ok(anchors);
            }
        };
        if lines.is_empty() {
            if let Some(since_seq) = repo::first_anchor_start(&db.pool, &shown).await? {
                anchors.problem = Some((
                    since_seq,
                    Break::AnchorMissing {
                        path: shown,
                        since_seq,
                    },
                ));
            }
            return Ok(anchors);
        }
        for (line, checkpoint) in lines {
            let signed = checkpoint.filter(|c| {
                epochs
                    .iter()
                    .find(|e| e.epoch == c.epoch)
                    .is_some_and(|e| c.verifies(e.keyed()))
            });
            match signed {
                Some(checkpoint) => {
                    anchors.waypoints.push(Waypoint {
                        seq: checkpoint.seq,
                        mac: checkpoint.mac.clone(),
                        line,
                    });
                    if anchors
                        .newest
                        .as_ref()
                        .is_none_or(|newest| checkpoint.seq >= newest.seq)
                    {
                        anchors.newest = Some(checkpoint);
                    }
                }
                None if anchors.problem.is_none() => {
                    anchors.problem = Some((0, Break::ForgedCheckpoint { line }));
                }
                None => {}
            }
        }
        anchors.waypoints.sort_by_key(|w| (w.seq, w.line));
        Ok(anchors)
    }

    async fn walk(
        &self,
        db: &Db,
        epochs: &Arc<[EpochKey]>,
        waypoints: &Arc<[Waypoint]>,
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
                let epochs = Arc::clone(epochs);
                let waypoints = Arc::clone(waypoints);
                async move {
                    let text = repo::packed_range(db, from, from + RANGE).await?;
                    tokio::task::spawn_blocking(move || check_range(epochs, waypoints, &text))
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
            checkpoint: None,
        })
    }
}

/// What the anchor file says.
#[derive(Default)]
struct Anchors {
    /// Every signed checkpoint's pin, by seq.
    waypoints: Vec<Waypoint>,
    /// The signed checkpoint of the highest seq.
    newest: Option<Checkpoint>,
    /// The first problem with the file itself.
    problem: Option<(i64, Break)>,
}

/// One range checked on its own: where it starts and what a walk from there found.
struct CheckedRange {
    /// The first row's seq and stored `prev_mac` (None for an empty range).
    first: Option<(i64, String)>,
    report: VerifyReport,
}

fn check_range(
    epochs: Arc<[EpochKey]>,
    waypoints: Arc<[Waypoint]>,
    text: &str,
) -> Result<CheckedRange, sqlx::Error> {
    let rows = parse_packed(text).map_err(|problem| sqlx::Error::Decode(problem.into()))?;
    let Some(first) = rows.first() else {
        return Ok(CheckedRange {
            first: None,
            report: ChainWalker::with(epochs, waypoints, 0, GENESIS_MAC).finish(),
        });
    };
    let Ok(first_seq) = first[0].parse::<i64>() else {
        return Err(sqlx::Error::Decode("audit seq is not a number".into()));
    };
    let mut walker = ChainWalker::with(epochs, waypoints, first_seq, first[13]);
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
            checkpoint: None,
        })
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_string(),
    }
}
