//! Checkpoints of the audit chain outside the database: one signed line per checkpoint in an
//! append-only file (and in the log), so rows deleted from the end of the chain, or the whole
//! chain, are found by comparing the database with the newest checkpoint.
//!
//! A line is JSON: `{"seq":…,"mac":"…","time":"…","epoch":…,"hmac":"…"}`, where `hmac` is
//! `HMAC-SHA256(key of epoch, domain ‖ seq ‖ mac ‖ time ‖ epoch)` (each field length-prefixed).
//! Whoever can edit the database or the file still cannot write a checkpoint that verifies.

use super::chain::hex;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

const DOMAIN: &[u8] = b"kyc-desk/audit-anchor/v1";

/// One checkpoint: the chain's head at a moment, signed with the audit key of its epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Seq of the head row.
    pub seq: i64,
    /// MAC of the head row.
    pub mac: String,
    /// When the checkpoint was written (UTC, RFC 3339).
    pub time: String,
    /// Key epoch of the head row (its key signs the checkpoint).
    pub epoch: i64,
    /// The signature, lower-case hex.
    pub hmac: String,
}

fn signature(keyed: &Hmac<Sha256>, seq: i64, mac: &str, time: &str, epoch: i64) -> String {
    let mut hmac = keyed.clone();
    hmac.update(DOMAIN);
    for field in [seq.to_string().as_str(), mac, time, &epoch.to_string()] {
        hmac.update(&(field.len() as u32).to_be_bytes());
        hmac.update(field.as_bytes());
    }
    hex(&hmac.finalize().into_bytes())
}

impl Checkpoint {
    /// A checkpoint of the head (`seq`, `mac`) signed in `epoch` with its keyed HMAC state.
    pub fn sign(keyed: &Hmac<Sha256>, seq: i64, mac: &str, epoch: i64) -> Checkpoint {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let hmac = signature(keyed, seq, mac, &time, epoch);
        Checkpoint {
            seq,
            mac: mac.to_string(),
            time,
            epoch,
            hmac,
        }
    }

    /// Whether the signature is the one `keyed` (the key of the checkpoint's epoch) gives.
    pub fn verifies(&self, keyed: &Hmac<Sha256>) -> bool {
        let expected = signature(keyed, self.seq, &self.mac, &self.time, self.epoch);
        expected.len() == self.hmac.len()
            && expected
                .bytes()
                .zip(self.hmac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The line written to the file (without its newline).
    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint serialises")
    }

    /// "the checkpoint of <time> (seq N)", for reports.
    pub fn describe(&self) -> String {
        format!("the checkpoint of {} (seq {})", self.time, self.seq)
    }
}

/// One non-blank line of the anchor file: its number (from 1) and the checkpoint, or `None`
/// when the line is not a checkpoint at all.
pub type Line = (usize, Option<Checkpoint>);

/// Every line of the anchor file; `Ok(None)` when the file does not exist.
pub fn read_all(path: &Path) -> std::io::Result<Option<Vec<Line>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    Ok(Some(
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(index, line)| (index + 1, serde_json::from_str(line).ok()))
            .collect(),
    ))
}

/// The last checkpoint of the file (read from its end only), if its last line is one.
pub fn last(path: &Path) -> std::io::Result<Option<Checkpoint>> {
    const TAIL: u64 = 4096;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(TAIL)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let tail = String::from_utf8_lossy(&tail);
    Ok(tail
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(|line| serde_json::from_str(line).ok()))
}

/// Creates the anchor file (and its folder) if it does not exist; true when it was created.
pub fn create(path: &Path) -> std::io::Result<bool> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    match open_append(path, true) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error),
    }
}

fn open_append(path: &Path, create_new: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true);
    if create_new {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o640);
    }
    options.open(path)
}

/// Appends one checkpoint line (the file is only ever opened for appending) and flushes it
/// to disk.
pub fn append(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let mut file = open_append(path, false)?;
    let mut line = checkpoint.line();
    line.push('\n');
    // One write of one short line: concurrent writers (several instances sharing the file)
    // never interleave inside a line.
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(byte: u8) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&[byte; 32]).unwrap()
    }

    #[test]
    fn checkpoints_verify_only_unchanged_and_with_their_key() {
        let checkpoint = Checkpoint::sign(&keyed(1), 12, &"ab".repeat(32), 2);
        assert!(checkpoint.verifies(&keyed(1)));
        assert!(!checkpoint.verifies(&keyed(2)));
        let parsed: Checkpoint = serde_json::from_str(&checkpoint.line()).unwrap();
        assert_eq!(parsed, checkpoint);
        for forged in [
            Checkpoint {
                seq: 13,
                ..checkpoint.clone()
            },
            Checkpoint {
                mac: "cd".repeat(32),
                ..checkpoint.clone()
            },
            Checkpoint {
                epoch: 1,
                ..checkpoint.clone()
            },
            Checkpoint {
                time: "2020-01-01T00:00:00.000Z".into(),
                ..checkpoint.clone()
            },
        ] {
            assert!(!forged.verifies(&keyed(1)), "{forged:?}");
        }
    }

    #[test]
    fn the_file_is_appended_to_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors/audit.jsonl");
        assert_eq!(read_all(&path).unwrap(), None);
        assert_eq!(last(&path).unwrap(), None);
        assert!(create(&path).unwrap());
        assert!(!create(&path).unwrap());
        let first = Checkpoint::sign(&keyed(1), 1, &"00".repeat(32), 1);
        let second = Checkpoint::sign(&keyed(1), 2, &"11".repeat(32), 1);
        append(&path, &first).unwrap();
        append(&path, &second).unwrap();
        assert_eq!(last(&path).unwrap(), Some(second.clone()));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"not a checkpoint\n")
            .unwrap();
        assert_eq!(
            read_all(&path).unwrap().unwrap(),
            vec![(1, Some(first)), (2, Some(second)), (3, None)]
        );
    }
}
