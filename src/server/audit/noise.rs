//! Refusals anyone can provoke (a cross-origin post, a throttled sign-in, a role refusal),
//! recorded without letting a flood grow the audit log or queue on its chain lock: the first
//! such event per client (an IPv6 client by its /64), kind and minute is appended as usual;
//! its repeats within that minute only go to the tracing log and are counted, and one summary
//! row with the count is appended once the minute is over (or at [`Noise::flush`]).

use super::{AuditEvent, AuditLog, RequestMeta};
use crate::server::auth::throttle::client_key;
use crate::server::db::{self, Db};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

/// Longest request path kept in an audit row, in characters.
pub const MAX_STORED_PATH_CHARS: usize = 200;
/// Clients × kinds tracked at once; events beyond it are counted together under one "many
/// clients" bucket, so a flood from many addresses cannot grow this map without bound.
const MAX_BUCKETS: usize = 10_000;
/// How often closed minutes are written out.
const FLUSH_EVERY: Duration = Duration::from_secs(15);
/// The client key of the shared bucket used once [`MAX_BUCKETS`] is reached.
const MANY_CLIENTS: &str = "many clients";

/// `path` cut to [`MAX_STORED_PATH_CHARS`] characters (an ellipsis marks a cut), for audit
/// details: a request path is chosen by whoever sends it.
pub fn short_path(path: &str) -> String {
    match path.char_indices().nth(MAX_STORED_PATH_CHARS) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_string(),
    }
}

/// What makes two events the same kind of noise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    client: String,
    action: &'static str,
    outcome: &'static str,
    reason: String,
    actor: (Option<i64>, String, String),
}

/// The events of one key within one minute.
struct Bucket {
    minute: i64,
    /// The first event, as recorded (the summary repeats its actor, action and outcome).
    first: AuditEvent,
    first_meta: RequestMeta,
    /// Its row, once written.
    first_seq: Option<i64>,
    /// Events after the first (tracing only so far).
    repeats: u64,
    /// The request id of the latest repeat.
    last_request_id: String,
}

struct Inner {
    db: Db,
    audit: AuditLog,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

/// The aggregating recorder of floodable refusals. Cheap to clone.
#[derive(Clone)]
pub struct Noise {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Noise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Noise")
    }
}

fn minute_now() -> i64 {
    db::now().div_euclid(60)
}

impl Noise {
    /// A recorder appending to `audit` on `db`; a background task writes out each minute's
    /// counts (it ends when the last clone of the recorder is dropped).
    pub fn new(db: Db, audit: AuditLog) -> Noise {
        let inner = Arc::new(Inner {
            db,
            audit,
            buckets: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(flush_closed_minutes(weak));
        Noise { inner }
    }

    /// Records `event` of a request with `meta`: appended if it is the first of its kind
    /// from this client in this minute, otherwise counted and logged to tracing only.
    pub async fn record(&self, meta: &RequestMeta, event: &AuditEvent) {
        let minute = minute_now();
        let (key, closed) = {
            let mut buckets = self.lock();
            let mut key = key_of(meta, event);
            if !buckets.contains_key(&key) && buckets.len() >= MAX_BUCKETS {
                key.client = MANY_CLIENTS.into();
            }
            match buckets.get_mut(&key) {
                Some(bucket) if bucket.minute == minute => {
                    bucket.repeats += 1;
                    bucket.last_request_id.clone_from(&meta.request_id);
                    tracing::info!(
                        request_id = %meta.request_id,
                        action = event.action,
                        reason = %event.reason,
                        client = %key.client,
                        "repeated refusal counted (one audit row per client and minute)"
                    );
                    return;
                }
                _ => {}
            }
            let closed = buckets.insert(
                key.clone(),
                Bucket {
                    minute,
                    first: event.clone(),
                    first_meta: meta.clone(),
                    first_seq: None,
                    repeats: 0,
                    last_request_id: meta.request_id.clone(),
                },
            );
            (key, closed)
        };
        if let Some(bucket) = closed {
            self.inner.write_summary(bucket).await;
        }
        let seq = match self
            .inner
            .audit
            .try_record(&self.inner.db, meta, event)
            .await
        {
            Ok(seq) => Some(seq),
            Err(error) => {
                tracing::error!(
                    request_id = %meta.request_id,
                    action = event.action,
                    %error,
                    "could not write the audit row"
                );
                None
            }
        };
        if let Some(bucket) = self.lock().get_mut(&key)
            && bucket.minute == minute
        {
            bucket.first_seq = seq;
        }
    }

    /// Writes out every count now, the current minute's too (tests; shutdown).
    pub async fn flush(&self) {
        let all: Vec<Bucket> = self.lock().drain().map(|(_, bucket)| bucket).collect();
        for bucket in all {
            self.inner.write_summary(bucket).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Bucket>> {
        self.inner.lock()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Bucket>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes out the buckets of minutes that are over.
    fn take_closed(&self) -> Vec<Bucket> {
        let minute = minute_now();
        let mut buckets = self.lock();
        let closed: Vec<Key> = buckets
            .iter()
            .filter(|(_, bucket)| bucket.minute < minute)
            .map(|(key, _)| key.clone())
            .collect();
        closed
            .into_iter()
            .filter_map(|key| buckets.remove(&key))
            .collect()
    }

    /// Appends the summary row of a bucket whose first event was followed by repeats.
    async fn write_summary(&self, bucket: Bucket) {
        if bucket.repeats == 0 {
            return;
        }
        let minute_start = db::format_time(bucket.minute * 60);
        let event = AuditEvent {
            reason: format!(
                "{}; repeated {} more times within the minute",
                bucket.first.reason, bucket.repeats
            ),
            detail: serde_json::json!({
                "repeats": bucket.repeats,
                "first_seq": bucket.first_seq,
                "minute": minute_start,
            }),
            ..bucket.first
        };
        let meta = RequestMeta {
            ip: bucket.first_meta.ip,
            request_id: bucket.last_request_id,
        };
        self.audit.record(&self.db, &meta, &event).await;
    }
}

fn key_of(meta: &RequestMeta, event: &AuditEvent) -> Key {
    let (id, email, role) = event.actor.stored();
    Key {
        client: meta.ip.map(client_key).unwrap_or_default(),
        action: event.action,
        outcome: event.outcome.as_str(),
        reason: event.reason.clone(),
        actor: (id, email.to_string(), role.to_string()),
    }
}

async fn flush_closed_minutes(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        for bucket in inner.take_closed() {
            inner.write_summary(bucket).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_are_cut() {
        assert_eq!(short_path("/api/login"), "/api/login");
        let long = format!("/{}", "é".repeat(5000));
        let cut = short_path(&long);
        assert_eq!(cut.chars().count(), MAX_STORED_PATH_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
