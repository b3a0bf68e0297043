//! Envelope encryption of stored credential secrets: AES-256-GCM under a master key that comes
//! from the environment (or a key file), a random 96-bit nonce per encryption, and associated
//! data that binds each ciphertext to its credential, field and version.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Length of the master key in bytes.
pub const KEY_BYTES: usize = 32;
/// Length of a GCM nonce in bytes.
pub const NONCE_BYTES: usize = 12;

/// Vault failures. `Decrypt` is deliberately one generic error: a flipped byte, a swapped
/// field and a wrong key must be indistinguishable.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Authentication of a ciphertext failed.
    #[error("a stored secret could not be decrypted (wrong master key or altered data)")]
    Decrypt,
    /// The configured key is not usable.
    #[error("{variable}: {problem}")]
    Key {
        /// The variable or file at fault.
        variable: String,
        /// What is wrong.
        problem: String,
    },
}

fn key_problem(variable: impl Into<String>, problem: impl Into<String>) -> VaultError {
    VaultError::Key {
        variable: variable.into(),
        problem: problem.into(),
    }
}

/// The 32-byte master key. Never printed; zeroed on drop.
pub struct MasterKey(Zeroizing<[u8; KEY_BYTES]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([REDACTED])")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        MasterKey(bytes)
    }

    /// Parses the base64 text of a key; `variable` names the source in errors.
    pub fn from_base64(text: &str, variable: &str) -> Result<Self, VaultError> {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| key_problem(variable, "is not valid base64"))?,
        );
        if decoded.len() != KEY_BYTES {
            return Err(key_problem(
                variable,
                format!(
                    "must decode to {KEY_BYTES} bytes, not {} (generate one with `openssl rand -base64 32`)",
                    decoded.len()
                ),
            ));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        bytes.copy_from_slice(&decoded);
        Ok(MasterKey(bytes))
    }

    /// The key as base64 text (for writing a key file).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }

    /// A sub-key for one purpose (audit MACs, fingerprints), so the master key itself is only
    /// ever used for encryption.
    pub fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref()).expect("any key length");
        mac.update(b"kyc-desk/derive/");
        mac.update(purpose.as_bytes());
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// A value stored next to the data that tells, at start, whether this is the key the
    /// data was encrypted with (without revealing the key).
    pub fn check_value(&self) -> String {
        hex(&self.derive("key-check")[..16])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a secret belongs; encrypted as associated data so a ciphertext copied to another
/// row, field or version does not decrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSlot<'a> {
    /// Credential id.
    pub credential_id: i64,
    /// Field name (`api_key`, `access_key`, ...).
    pub field: &'a str,
    /// Credential version.
    pub version: i64,
}

/// Where a sealed value belongs: its associated data, so a ciphertext moved to another place
/// does not decrypt.
pub trait Slot {
    /// The associated data bound into the ciphertext.
    fn associated_data(&self) -> Vec<u8>;
}

/// A user's own secret (the authenticator seed), bound to the user and the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserSecretSlot<'a> {
    /// User id.
    pub user_id: i64,
    /// Field name (`totp_seed`).
    pub field: &'a str,
}

impl Slot for UserSecretSlot<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!("kyc-desk/user/{}/{}", self.user_id, self.field).into_bytes()
    }
}

impl Slot for SecretSlot<'_> {
    fn associated_data(&self) -> Vec<u8> {
        format!(
            "kyc-desk/credential/{}/{}/{}",
            self.credential_id, self.field, self.version
        )
        .into_bytes()
    }
}

/// An encrypted secret as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Ciphertext with the GCM tag.
    pub ciphertext: Vec<u8>,
    /// The 96-bit nonce.
    pub nonce: Vec<u8>,
    /// Version of the master key it was sealed under.
    pub key_version: i64,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sealed({} bytes, key v{})",
            self.ciphertext.len(),
            self.key_version
        )
    }
}

/// Encrypts and decrypts secrets under the current master key.
pub struct Vault {
    key: MasterKey,
    key_version: i64,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault(key v{})", self.key_version)
    }
}

impl Vault {
    /// A vault over `key`, known to the database as `key_version`.
    pub fn new(key: MasterKey, key_version: i64) -> Self {
        Vault { key, key_version }
    }

    /// The master key's version.
    pub fn key_version(&self) -> i64 {
        self.key_version
    }

    /// The master key (for deriving sub-keys).
    pub fn master_key(&self) -> &MasterKey {
        &self.key
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.key.0.as_ref()).expect("32-byte key")
    }

    /// Encrypts `secret` for `slot` with a fresh random nonce.
    pub fn seal(&self, slot: impl Slot, secret: &SecretString) -> Sealed {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: &slot.associated_data(),
                },
            )
            .expect("AES-GCM encryption does not fail for in-memory data");
        Sealed {
            ciphertext,
            nonce: nonce.to_vec(),
            key_version: self.key_version,
        }
    }

    /// Decrypts a secret of `slot`; any mismatch is the one generic [`VaultError::Decrypt`].
    pub fn open(&self, slot: impl Slot, sealed: &Sealed) -> Result<SecretString, VaultError> {
        if sealed.nonce.len() != NONCE_BYTES || sealed.key_version != self.key_version {
            return Err(VaultError::Decrypt);
        }
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &slot.associated_data(),
                    },
                )
                .map_err(|_| VaultError::Decrypt)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Decrypt)?;
        Ok(SecretString::from(text.to_owned()))
    }

    /// A short, key-dependent fingerprint of a secret, safe to show (it cannot be reversed or
    /// checked against guesses without the master key).
    pub fn fingerprint(&self, secret: &SecretString) -> String {
        let sub_key = self.key.derive("fingerprint");
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(sub_key.as_ref()).expect("any key length");
        mac.update(secret.expose_secret().as_bytes());
        hex(&mac.finalize().into_bytes()[..6])
    }

    /// A keyed hash of `value` for `purpose` (hex): what is kept instead of a customer's client
    /// address or user agent, or a one-time code. Without the master key it cannot be checked
    /// against guesses (an IPv4 address has only 2^32 of them).
    pub fn keyed_hash(&self, purpose: &str, value: &str) -> String {
        let sub_key = self.key.derive(purpose);
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(sub_key.as_ref()).expect("any key length");
        mac.update(value.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

/// The last four characters of a secret, for `•••• 1234` displays (nothing for short secrets,
/// where four characters would be most of it).
pub fn last_four(secret: &SecretString) -> String {
    let chars: Vec<char> = secret.expose_secret().chars().collect();
    if chars.len() < 12 {
        return String::new();
    }
    chars[chars.len() - 4..].iter().collect()
}

/// Where the master key comes from. Its `Debug` never shows an inline key.
#[derive(Clone)]
pub enum KeySource {
    /// `KYC_DESK_MASTER_KEY` (base64).
    Inline(SecretString),
    /// `KYC_DESK_MASTER_KEY_FILE`; `generate` creates it (mode 0600) if missing — dev only.
    File {
        /// The key file.
        path: PathBuf,
        /// Create the file when it does not exist.
        generate: bool,
    },
    /// No key configured.
    None,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Inline(_) => f.write_str("Inline([redacted])"),
            KeySource::File { path, generate } => f
                .debug_struct("File")
                .field("path", path)
                .field("generate", generate)
                .finish(),
            KeySource::None => f.write_str("None"),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Inline(_) => f.write_str("KYC_DESK_MASTER_KEY"),
            KeySource::File { path, .. } => {
                write!(f, "KYC_DESK_MASTER_KEY_FILE ({})", path.display())
            }
            KeySource::None => f.write_str("no master key"),
        }
    }
}

/// Loads the master key from its source; `Ok(None)` when none is configured.
pub fn load_key(source: &KeySource) -> Result<Option<MasterKey>, VaultError> {
    match source {
        KeySource::None => Ok(None),
        KeySource::Inline(text) => {
            MasterKey::from_base64(text.expose_secret(), "KYC_DESK_MASTER_KEY").map(Some)
        }
        KeySource::File { path, generate } => {
            if !path.exists() && *generate {
                let key = MasterKey::generate();
                write_key_file(path, &key)?;
                tracing::warn!(
                    "generated a development master key in {}; production must supply its own \
                     (KYC_DESK_MASTER_KEY or KYC_DESK_MASTER_KEY_FILE) and keep a backup of it",
                    path.display()
                );
                return Ok(Some(key));
            }
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                key_problem(
                    "KYC_DESK_MASTER_KEY_FILE",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?);
            MasterKey::from_base64(
                &text,
                &format!("KYC_DESK_MASTER_KEY_FILE ({})", path.display()),
            )
            .map(Some)
        }
    }
}

/// Writes a key file readable by the owner only.
pub fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), VaultError> {
    use std::io::Write as _;
    let problem = |e: std::io::Error| {
        key_problem(
            "KYC_DESK_MASTER_KEY_FILE",
            format!("cannot write {}: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(problem)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(problem)?;
    file.write_all(key.to_base64().as_bytes())
        .map_err(problem)?;
    file.write_all(b"\n").map_err(problem)?;
    file.sync_all().map_err(problem)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn slot(field: &str) -> SecretSlot<'_> {
        SecretSlot {
            credential_id: 7,
            field,
            version: 2,
        }
    }

    #[test]
    fn round_trip() {
        let vault = Vault::new(MasterKey::generate(), 1);
        let secret = SecretString::from("sk_live_0123456789abcdef");
        let sealed = vault.seal(slot("api_key"), &secret);
        assert!(!sealed.ciphertext.windows(8).any(|w| w == b"sk_live_"));
        let opened = vault.open(slot("api_key"), &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "sk_live_0123456789abcdef");
    }

    #[test]
    fn tampering_swapping_and_wrong_keys_fail_alike() {
        let vault = Vault::new(MasterKey::generate(), 1);
        let sealed = vault.seal(slot("api_key"), &SecretString::from("value-1234567890"));
        let generic = VaultError::Decrypt.to_string();

        for i in 0..sealed.ciphertext.len() {
            let mut flipped = sealed.clone();
            flipped.ciphertext[i] ^= 0x01;
            assert_eq!(
                vault
                    .open(slot("api_key"), &flipped)
                    .unwrap_err()
                    .to_string(),
                generic
            );
        }
        let mut bad_nonce = sealed.clone();
        bad_nonce.nonce[0] ^= 0x80;
        assert_eq!(
            vault
                .open(slot("api_key"), &bad_nonce)
                .unwrap_err()
                .to_string(),
            generic
        );
        for other in [
            SecretSlot {
                credential_id: 8,
                field: "api_key",
                version: 2,
            },
            SecretSlot {
                credential_id: 7,
                field: "access_key",
                version: 2,
            },
            SecretSlot {
                credential_id: 7,
                field: "api_key",
                version: 3,
            },
        ] {
            assert_eq!(vault.open(other, &sealed).unwrap_err().to_string(), generic);
        }
        let stranger = Vault::new(MasterKey::generate(), 1);
        assert_eq!(
            stranger
                .open(slot("api_key"), &sealed)
                .unwrap_err()
                .to_string(),
            generic
        );
    }

    #[test]
    fn nonces_never_repeat_in_ten_thousand_encryptions() {
        let vault = Vault::new(MasterKey::generate(), 1);
        let secret = SecretString::from("same plaintext every time");
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(vault.seal(slot("api_key"), &secret).nonce));
        }
    }

    #[test]
    fn keys_parse_from_base64_and_never_print() {
        let key = MasterKey::generate();
        let text = key.to_base64();
        let again = MasterKey::from_base64(&text, "KYC_DESK_MASTER_KEY").unwrap();
        assert_eq!(again.check_value(), key.check_value());
        assert_eq!(format!("{key:?}"), "MasterKey([REDACTED])");
        let short = MasterKey::from_base64("c2hvcnQ=", "KYC_DESK_MASTER_KEY").unwrap_err();
        assert!(short.to_string().contains("32 bytes"));
        let junk = MasterKey::from_base64("***", "KYC_DESK_MASTER_KEY").unwrap_err();
        assert!(junk.to_string().contains("base64"));
    }

    #[test]
    fn fingerprints_are_stable_per_key_and_last_four_hides_short_secrets() {
        let vault = Vault::new(MasterKey::generate(), 1);
        let secret = SecretString::from("abcdefghijkl1234");
        assert_eq!(vault.fingerprint(&secret), vault.fingerprint(&secret));
        assert_eq!(vault.fingerprint(&secret).len(), 12);
        assert_ne!(
            vault.fingerprint(&secret),
            vault.fingerprint(&SecretString::from("abcdefghijkl1235"))
        );
        assert_eq!(last_four(&secret), "1234");
        assert_eq!(last_four(&SecretString::from("short")), "");
    }

    #[test]
    fn dev_key_files_are_generated_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/master.key");
        let source = KeySource::File {
            path: path.clone(),
            generate: true,
        };
        let first = load_key(&source).unwrap().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let second = load_key(&source).unwrap().unwrap();
        assert_eq!(first.check_value(), second.check_value());
        let missing = KeySource::File {
            path: dir.path().join("nope.key"),
            generate: false,
        };
        assert!(
            load_key(&missing)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
    }
}
