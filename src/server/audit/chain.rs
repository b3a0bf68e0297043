//! The MAC chain: canonical row encoding, row MACs, and the walk that verifies rows against
//! their key epochs and the checkpoints of the anchor file.

use crate::server::db::audit::AuditRow;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// The `prev_mac` of the first row.
pub const GENESIS_MAC: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const DOMAIN: &[u8] = b"kyc-desk/audit/v1";

/// The bytes a row's MAC covers besides `prev_mac`: every stored field but the two MACs, each
/// as a 4-byte big-endian length and its UTF-8 bytes, so no two different rows encode alike.
/// The key epoch is covered from epoch 2 on (rows of epoch 1 were written before epochs
/// existed, and their MACs must keep verifying).
pub fn canonical_encoding(row: &AuditRow) -> Vec<u8> {
    let actor_id = row.actor_id.map(|id| id.to_string()).unwrap_or_default();
    let fields: [&str; 13] = [
        &row.seq.to_string(),
        &row.at_ms.to_string(),
        &actor_id,
        &row.actor_email,
        &row.actor_role,
        &row.ip,
        &row.request_id,
        &row.action,
        &row.object_type,
        &row.object_id,
        &row.outcome,
        &row.reason,
        &row.detail,
    ];
    let mut out = Vec::with_capacity(64 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    for field in fields {
        push_field(&mut out, field);
    }
    if row.key_epoch != 1 {
        push_field(&mut out, &row.key_epoch.to_string());
    }
    out
}

fn push_field(out: &mut Vec<u8>, field: &str) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field.as_bytes());
}

/// `HMAC-SHA256(key, domain ‖ prev_mac ‖ canonical encoding)`, lower-case hex.
pub fn row_mac(key: &[u8; 32], prev_mac: &str, row: &AuditRow) -> String {
    let keyed = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    fields_mac(&keyed, prev_mac, &canonical_encoding(row))
}

/// The MAC over an already encoded row, from a keyed HMAC state (cloned, so the key schedule
/// is computed once per walk, not once per row).
fn fields_mac(keyed: &Hmac<Sha256>, prev_mac: &str, encoded: &[u8]) -> String {
    let mut mac = keyed.clone();
    mac.update(DOMAIN);
    mac.update(&(prev_mac.len() as u32).to_be_bytes());
    mac.update(prev_mac.as_bytes());
    mac.update(encoded);
    hex(&mac.finalize().into_bytes())
}

/// The number of columns of a packed row (see [`parse_packed`]).
pub const PACKED_FIELDS: usize = 16;

/// One row of a packed range, borrowed: the 13 MAC-covered fields, then `prev_mac`, `mac`,
/// `key_epoch`.
pub type PackedRow<'a> = [&'a str; PACKED_FIELDS];

/// Splits the text the database packs a range of rows into: every column of every row as
/// `<byte length>:<text>`, rows one after the other in seq order.
pub fn parse_packed(text: &str) -> Result<Vec<PackedRow<'_>>, String> {
    let mut rows = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut row = [""; PACKED_FIELDS];
        for field in row.iter_mut() {
            let colon = rest
                .find(':')
                .ok_or_else(|| "packed audit rows are truncated".to_string())?;
            let len: usize = rest[..colon]
                .parse()
                .map_err(|_| "packed audit rows have a bad length".to_string())?;
            let start = colon + 1;
            let end = start + len;
            if end > rest.len() || !rest.is_char_boundary(end) {
                return Err("packed audit rows are truncated".into());
            }
            *field = &rest[start..end];
            rest = &rest[end..];
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Lower-case hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Why the chain breaks at a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The row's contents do not match its MAC: a field was changed (or rows were swapped).
    MacMismatch,
    /// Rows are missing: the chain jumps from `expected` to the next stored seq.
    Gap {
        /// The next stored seq.
        found: i64,
    },
    /// The row's `prev_mac` is not the MAC of the row before it.
    BrokenLink,
    /// The row claims a key epoch other than the one in force at its seq: a row signed with a
    /// retired key after its epoch ended.
    WrongEpoch {
        /// The epoch the row claims.
        claimed: i64,
        /// The epoch that signs this seq.
        expected: i64,
    },
    /// The row is not the one a checkpoint recorded at this seq: the chain was cut and
    /// written again after the checkpoint.
    CheckpointMismatch {
        /// The checkpoint's line in the anchor file.
        line: usize,
    },
    /// The database holds fewer rows than the newest checkpoint recorded.
    Truncated {
        /// The last row still present (0 when none is).
        after: i64,
        /// The seq the checkpoint recorded.
        checkpoint_seq: i64,
        /// When the checkpoint was written.
        time: String,
    },
    /// A line of the anchor file is not a checkpoint KYC Desk signed.
    ForgedCheckpoint {
        /// The line number, from 1.
        line: usize,
    },
    /// The anchor file is missing or empty although the chain records that checkpoints were
    /// written to it.
    AnchorMissing {
        /// The anchor file.
        path: String,
        /// The row that recorded the first checkpoint.
        since_seq: i64,
    },
    /// The anchor file exists but cannot be read.
    AnchorUnreadable {
        /// The anchor file.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
}

impl Break {
    /// Whether the break is about the anchor file or the log's length rather than one row.
    fn is_anchor(&self) -> bool {
        matches!(
            self,
            Break::Truncated { .. }
                | Break::ForgedCheckpoint { .. }
                | Break::AnchorMissing { .. }
                | Break::AnchorUnreadable { .. }
        )
    }
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::MacMismatch => write!(
                f,
                "mac mismatch: the row's contents are not what was recorded (a field was changed or rows were reordered)"
            ),
            Break::Gap { found } => write!(
                f,
                "gap in seq: the row is missing (the next stored row is seq {found}); rows were deleted"
            ),
            Break::BrokenLink => write!(
                f,
                "broken link: its prev_mac is not the MAC of the row before it"
            ),
            Break::WrongEpoch { claimed, expected } => write!(
                f,
                "wrong key epoch: the row claims epoch {claimed}, but epoch {expected} signs this seq (a row signed with a retired key)"
            ),
            Break::CheckpointMismatch { line } => write!(
                f,
                "the row is not the one the checkpoint on line {line} of the anchor file recorded; rows were removed and the chain written again after it"
            ),
            Break::Truncated {
                after,
                checkpoint_seq,
                time,
            } => write!(
                f,
                "rows after seq {after} are missing: the checkpoint of {time} records the chain up to seq {checkpoint_seq}; rows were deleted"
            ),
            Break::ForgedCheckpoint { line } => write!(
                f,
                "line {line} of the anchor file is not a checkpoint signed with the audit key; the anchor file was tampered with"
            ),
            Break::AnchorMissing { path, since_seq } => write!(
                f,
                "the anchor file {path} is missing or empty, but the log records (seq {since_seq}) that checkpoints were written to it; it was removed or replaced"
            ),
            Break::AnchorUnreadable { path, reason } => {
                write!(f, "the anchor file {path} cannot be read ({reason})")
            }
        }
    }
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Rows verified before the first break (all rows when intact).
    pub rows: u64,
    /// Seq of the last verified row (0 for an empty log).
    pub head_seq: i64,
    /// MAC of the last verified row (the genesis value for an empty log).
    pub head_mac: String,
    /// The first broken seq and why, if any.
    pub broken: Option<(i64, Break)>,
    /// The newest checkpoint the chain was checked against, in words (`None` when there is
    /// none yet, or the chain was not checked against checkpoints).
    pub checkpoint: Option<String>,
}

impl VerifyReport {
    /// One line for the page and the command line.
    pub fn summary(&self) -> String {
        match &self.broken {
            None => format!(
                "{} rows verified; the chain is intact (head seq {}, MAC {}){}.",
                self.rows,
                self.head_seq,
                self.head_mac,
                match &self.checkpoint {
                    Some(checkpoint) => format!(" and reaches {checkpoint}"),
                    None => String::new(),
                }
            ),
            Some((_, why)) if why.is_anchor() => format!(
                "Verification FAILED: {why}. {} rows verified (head seq {}).",
                self.rows, self.head_seq
            ),
            Some((seq, why)) => format!(
                "Verification FAILED at seq {seq}: {why}. {} rows before it verified.",
                self.rows
            ),
        }
    }
}

/// One key epoch as a walk uses it: the first seq it signs and its keyed HMAC state. Holds
/// key material: no `Debug`, no `Serialize`.
#[derive(Clone)]
pub struct EpochKey {
    /// The epoch number.
    pub epoch: i64,
    /// The first seq signed in this epoch.
    pub first_seq: i64,
    keyed: Hmac<Sha256>,
}

impl EpochKey {
    /// The epoch `epoch`, signing from `first_seq`, with `key`.
    pub fn new(epoch: i64, first_seq: i64, key: &[u8; 32]) -> Self {
        EpochKey {
            epoch,
            first_seq,
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length"),
        }
    }
}

impl EpochKey {
    /// The keyed HMAC state (checkpoints are signed with it too, under their own domain).
    pub fn keyed(&self) -> &Hmac<Sha256> {
        &self.keyed
    }
}

/// The epoch that signs `seq`: the newest one starting at or before it (`epochs` oldest
/// first).
fn epoch_of(epochs: &[EpochKey], seq: i64) -> Option<&EpochKey> {
    epochs.iter().rev().find(|e| e.first_seq <= seq)
}

/// A point a checkpoint pinned: the row at `seq` must have MAC `mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waypoint {
    /// The seq the checkpoint recorded.
    pub seq: i64,
    /// The MAC it recorded.
    pub mac: String,
    /// Its line in the anchor file, from 1.
    pub line: usize,
}

/// Walks rows in seq order, from a starting point (genesis, or an archive checkpoint).
pub struct ChainWalker {
    epochs: Arc<[EpochKey]>,
    waypoints: Arc<[Waypoint]>,
    next_waypoint: usize,
    encoded: Vec<u8>,
    expected_seq: i64,
    prev_mac: String,
    rows: u64,
    broken: Option<(i64, Break)>,
}

impl ChainWalker {
    /// A walk with one key (epoch 1 from seq 1) that starts at `first_seq`, whose `prev_mac`
    /// must be `prev_mac`.
    #[cfg(test)]
    pub fn new(key: &[u8; 32], first_seq: i64, prev_mac: &str) -> Self {
        Self::with(
            vec![EpochKey::new(1, 1, key)].into(),
            Vec::new().into(),
            first_seq,
            prev_mac,
        )
    }

    /// A walk over key `epochs` (oldest first) that must pass through `waypoints` (sorted by
    /// seq; those before `first_seq` are ignored).
    pub fn with(
        epochs: Arc<[EpochKey]>,
        waypoints: Arc<[Waypoint]>,
        first_seq: i64,
        prev_mac: &str,
    ) -> Self {
        let next_waypoint = waypoints.partition_point(|w| w.seq < first_seq);
        ChainWalker {
            epochs,
            waypoints,
            next_waypoint,
            encoded: Vec::with_capacity(1024),
            expected_seq: first_seq,
            prev_mac: prev_mac.to_string(),
            rows: 0,
            broken: None,
        }
    }

    /// Checks the next row; returns false once the chain is broken (stop walking).
    #[cfg(test)]
    pub fn push(&mut self, row: &AuditRow) -> bool {
        let texts = [
            row.seq.to_string(),
            row.at_ms.to_string(),
            row.actor_id.map(|id| id.to_string()).unwrap_or_default(),
            row.key_epoch.to_string(),
        ];
        let packed: PackedRow<'_> = [
            &texts[0],
            &texts[1],
            &texts[2],
            &row.actor_email,
            &row.actor_role,
            &row.ip,
            &row.request_id,
            &row.action,
            &row.object_type,
            &row.object_id,
            &row.outcome,
            &row.reason,
            &row.detail,
            &row.prev_mac,
            &row.mac,
            &texts[3],
        ];
        self.push_packed(&packed)
    }

    /// Checks the next row of a packed range; returns false once the chain is broken.
    pub fn push_packed(&mut self, row: &PackedRow<'_>) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let Ok(seq) = row[0].parse::<i64>() else {
            self.broken = Some((self.expected_seq, Break::MacMismatch));
            return false;
        };
        if seq != self.expected_seq {
            self.broken = Some((self.expected_seq, Break::Gap { found: seq }));
            return false;
        }
        let (prev_mac, mac) = (row[13], row[14]);
        if prev_mac != self.prev_mac {
            self.broken = Some((seq, Break::BrokenLink));
            return false;
        }
        let (Ok(claimed), Some(epoch)) = (row[15].parse::<i64>(), epoch_of(&self.epochs, seq))
        else {
            self.broken = Some((seq, Break::MacMismatch));
            return false;
        };
        if claimed != epoch.epoch {
            self.broken = Some((
                seq,
                Break::WrongEpoch {
                    claimed,
                    expected: epoch.epoch,
                },
            ));
            return false;
        }
        self.encoded.clear();
        for field in &row[..13] {
            push_field(&mut self.encoded, field);
        }
        if claimed != 1 {
            push_field(&mut self.encoded, &claimed.to_string());
        }
        let computed = fields_mac(&epoch.keyed, prev_mac, &self.encoded);
        if !constant_time_eq(computed.as_bytes(), mac.as_bytes()) {
            self.broken = Some((seq, Break::MacMismatch));
            return false;
        }
        while let Some(waypoint) = self.waypoints.get(self.next_waypoint)
            && waypoint.seq <= seq
        {
            if waypoint.seq == seq && !constant_time_eq(waypoint.mac.as_bytes(), mac.as_bytes()) {
                self.broken = Some((
                    seq,
                    Break::CheckpointMismatch {
                        line: waypoint.line,
                    },
                ));
                return false;
            }
            self.next_waypoint += 1;
        }
        self.prev_mac = computed;
        self.expected_seq += 1;
        self.rows += 1;
        true
    }

    /// The report.
    pub fn finish(self) -> VerifyReport {
        VerifyReport {
            rows: self.rows,
            head_seq: self.expected_seq - 1,
            head_mac: self.prev_mac,
            broken: self.broken,
            checkpoint: None,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, prev: &str, key: &[u8; 32]) -> AuditRow {
        let mut row = AuditRow {
            seq,
            at_ms: 1_700_000_000_000 + seq,
            actor_id: Some(1),
            actor_email: "a@example.com".into(),
            actor_role: "admin".into(),
            ip: "127.0.0.1".into(),
            request_id: format!("r{seq}"),
            action: "user.create".into(),
            object_type: "user".into(),
            object_id: seq.to_string(),
            outcome: "success".into(),
            reason: String::new(),
            detail: "{}".into(),
            prev_mac: prev.into(),
            mac: String::new(),
            key_epoch: 1,
        };
        row.mac = row_mac(key, prev, &row);
        row
    }

    fn chain(n: i64, key: &[u8; 32]) -> Vec<AuditRow> {
        let mut rows = Vec::new();
        let mut prev = GENESIS_MAC.to_string();
        for seq in 1..=n {
            let r = row(seq, &prev, key);
            prev = r.mac.clone();
            rows.push(r);
        }
        rows
    }

    fn walk(rows: &[AuditRow], key: &[u8; 32]) -> VerifyReport {
        let mut walker = ChainWalker::new(key, 1, GENESIS_MAC);
        for r in rows {
            if !walker.push(r) {
                break;
            }
        }
        walker.finish()
    }

    fn packed(rows: &[AuditRow]) -> String {
        let mut out = String::new();
        for r in rows {
            let actor = r.actor_id.map(|a| a.to_string()).unwrap_or_default();
            for f in [
                r.seq.to_string().as_str(),
                &r.at_ms.to_string(),
                &actor,
                &r.actor_email,
                &r.actor_role,
                &r.ip,
                &r.request_id,
                &r.action,
                &r.object_type,
                &r.object_id,
                &r.outcome,
                &r.reason,
                &r.detail,
                &r.prev_mac,
                &r.mac,
                &r.key_epoch.to_string(),
            ] {
                out.push_str(&format!("{}:{f}", f.len()));
            }
        }
        out
    }

    #[test]
    fn packed_rows_verify_like_rows() {
        let key = [7u8; 32];
        let mut rows = chain(4, &key);
        rows[1].reason = "ünïcödé: 12:34".into();
        rows[1].mac = row_mac(&key, &rows[1].prev_mac, &rows[1]);
        rows[2].prev_mac = rows[1].mac.clone();
        rows[2].mac = row_mac(&key, &rows[2].prev_mac, &rows[2]);
        rows[3].prev_mac = rows[2].mac.clone();
        rows[3].mac = row_mac(&key, &rows[3].prev_mac, &rows[3]);
        let text = packed(&rows);
        let parsed = parse_packed(&text).unwrap();
        assert_eq!(parsed.len(), 4);
        let mut walker = ChainWalker::new(&key, 1, GENESIS_MAC);
        assert!(parsed.iter().all(|r| walker.push_packed(r)));
        assert_eq!(walker.finish().rows, 4);
        rows[2].detail = "{\"i\":9}".into();
        let text = packed(&rows);
        let parsed = parse_packed(&text).unwrap();
        let mut walker = ChainWalker::new(&key, 1, GENESIS_MAC);
        for r in &parsed {
            if !walker.push_packed(r) {
                break;
            }
        }
        assert_eq!(walker.finish().broken, Some((3, Break::MacMismatch)));
        assert!(parse_packed("3:abc").is_err());
        assert!(parse_packed("9:x").is_err());
    }

    #[test]
    fn intact_chain_verifies() {
        let key = [7u8; 32];
        let report = walk(&chain(5, &key), &key);
        assert_eq!(report.rows, 5);
        assert_eq!(report.head_seq, 5);
        assert!(report.broken.is_none());
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let key = [7u8; 32];
        let mut a = row(1, GENESIS_MAC, &key);
        let mut b = a.clone();
        a.actor_email = "ab".into();
        a.actor_role = "c".into();
        b.actor_email = "a".into();
        b.actor_role = "bc".into();
        assert_ne!(canonical_encoding(&a), canonical_encoding(&b));
    }

    #[test]
    fn changed_deleted_and_swapped_rows_are_named() {
        let key = [7u8; 32];
        let mut rows = chain(6, &key);
        rows[2].reason = "edited".into();
        assert_eq!(walk(&rows, &key).broken, Some((3, Break::MacMismatch)));

        let mut rows = chain(6, &key);
        rows.remove(3);
        assert_eq!(walk(&rows, &key).broken, Some((4, Break::Gap { found: 5 })));

        let mut rows = chain(6, &key);
        let (a, b) = (rows[1].seq, rows[2].seq);
        rows[1].seq = b;
        rows[2].seq = a;
        rows.swap(1, 2);
        let report = walk(&rows, &key);
        assert_eq!(report.broken.map(|b| b.0), Some(2));

        let other_key = [8u8; 32];
        assert_eq!(
            walk(&chain(2, &key), &other_key).broken,
            Some((1, Break::MacMismatch))
        );
    }

    /// Rows 1..=n: 1..first_2 in epoch 1 under `a`, the rest in epoch 2 under `b`.
    fn two_epochs(n: i64, first_2: i64, a: &[u8; 32], b: &[u8; 32]) -> Vec<AuditRow> {
        let mut rows = Vec::new();
        let mut prev = GENESIS_MAC.to_string();
        for seq in 1..=n {
            let mut r = row(seq, &prev, a);
            if seq >= first_2 {
                r.key_epoch = 2;
                r.mac = row_mac(b, &prev, &r);
            }
            prev = r.mac.clone();
            rows.push(r);
        }
        rows
    }

    fn walk_epochs(
        rows: &[AuditRow],
        epochs: Vec<EpochKey>,
        waypoints: Vec<Waypoint>,
    ) -> VerifyReport {
        let mut walker = ChainWalker::with(epochs.into(), waypoints.into(), 1, GENESIS_MAC);
        for r in rows {
            if !walker.push(r) {
                break;
            }
        }
        walker.finish()
    }

    #[test]
    fn rows_verify_under_the_epoch_of_their_seq_only() {
        let (a, b) = ([7u8; 32], [9u8; 32]);
        let epochs = || vec![EpochKey::new(1, 1, &a), EpochKey::new(2, 4, &b)];
        let rows = two_epochs(6, 4, &a, &b);
        let report = walk_epochs(&rows, epochs(), Vec::new());
        assert!(report.broken.is_none(), "{}", report.summary());
        assert_eq!(report.rows, 6);

        // A row relabelled with an epoch other than its seq's is named.
        let mut relabelled = rows.clone();
        relabelled[4].key_epoch = 3;
        assert_eq!(
            walk_epochs(&relabelled, epochs(), Vec::new()).broken,
            Some((
                5,
                Break::WrongEpoch {
                    claimed: 3,
                    expected: 2
                }
            ))
        );

        // Signed with the retired key of epoch 1 after epoch 2 began.
        let mut forged = rows.clone();
        forged[5].key_epoch = 1;
        forged[5].mac = row_mac(&a, &forged[5].prev_mac, &forged[5]);
        assert_eq!(
            walk_epochs(&forged, epochs(), Vec::new()).broken,
            Some((
                6,
                Break::WrongEpoch {
                    claimed: 1,
                    expected: 2
                }
            ))
        );
        let mut forged = rows.clone();
        forged[5].mac = row_mac(&a, &forged[5].prev_mac, &forged[5]);
        assert_eq!(
            walk_epochs(&forged, epochs(), Vec::new()).broken,
            Some((6, Break::MacMismatch))
        );
    }

    #[test]
    fn a_row_other_than_the_checkpointed_one_is_named() {
        let key = [7u8; 32];
        let rows = chain(5, &key);
        let pin = |seq: i64, mac: &str| Waypoint {
            seq,
            mac: mac.to_string(),
            line: 2,
        };
        let epochs = || vec![EpochKey::new(1, 1, &key)];
        let report = walk_epochs(&rows, epochs(), vec![pin(3, &rows[2].mac), pin(9, "x")]);
        assert!(report.broken.is_none(), "{}", report.summary());
        let report = walk_epochs(&rows, epochs(), vec![pin(3, &rows[1].mac)]);
        assert_eq!(
            report.broken,
            Some((3, Break::CheckpointMismatch { line: 2 }))
        );
        assert_eq!(report.rows, 2);
    }

    #[test]
    fn a_truncated_chain_names_the_last_row_left() {
        let report = VerifyReport {
            rows: 7,
            head_seq: 7,
            head_mac: GENESIS_MAC.into(),
            broken: Some((
                8,
                Break::Truncated {
                    after: 7,
                    checkpoint_seq: 10,
                    time: "2026-11-28T14:05:00.000Z".into(),
                },
            )),
            checkpoint: None,
        };
        assert_eq!(
            report.summary(),
            "Verification FAILED: rows after seq 7 are missing: the checkpoint of \
             2026-11-28T14:05:00.000Z records the chain up to seq 10; rows were deleted. 7 rows \
             verified (head seq 7)."
        );
    }
}
