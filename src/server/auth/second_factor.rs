//! Authenticator codes (TOTP, RFC 6238): enrolment (a fresh seed sealed by the vault, shown
//! once as a QR code and a manual key), confirmation with a first code, and checking a code
//! (±1 time step, each step accepted once, wrong codes counted on the account's sign-in
//! throttle). The seed never leaves this module except on the enrolment page.

use super::{AuthError, AuthUser, throttle};
use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::db::{self, second_factors as repo};
use crate::server::state::AppState;
use crate::server::vault::{Sealed, UserSecretSlot, Vault, VaultError};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use secrecy::{ExposeSecret, SecretString};
use totp_rs::{Algorithm, Secret, TOTP};

/// Seconds per time step (the authenticator apps' default).
pub const STEP_SECS: u64 = 30;
/// Digits per code.
const DIGITS: usize = 6;
/// Steps accepted either side of the current one (clock drift).
const SKEW_STEPS: i64 = 1;
/// Issuer shown in the authenticator app.
const ISSUER: &str = "KYC Desk";
/// Vault field of the seed.
const SEED_FIELD: &str = "totp_seed";

/// Failures of the second-factor layer.
#[derive(Debug, thiserror::Error)]
pub enum FactorError {
    /// Database, session or hashing failure.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The stored seed does not open under the current master key.
    #[error("the authenticator seed of user {0} does not open: {1}")]
    Vault(i64, VaultError),
}

impl From<sqlx::Error> for FactorError {
    fn from(error: sqlx::Error) -> Self {
        FactorError::Auth(error.into())
    }
}

/// What the enrolment page shows, once: the QR code and the key to type in by hand.
pub struct Enrolment {
    /// The base32 key (for manual entry).
    pub manual_key: SecretString,
    /// The `otpauth://` URI as an SVG QR code.
    pub qr_svg: SecretString,
}

/// The outcome of checking a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right, and its step not used before: accepted.
    Accepted,
    /// Wrong, or already used.
    Wrong,
    /// Too many wrong attempts on this account or address.
    Throttled(throttle::Refusal),
    /// No (confirmed or pending, as asked) factor.
    NoFactor,
}

fn slot(user_id: i64) -> UserSecretSlot<'static> {
    UserSecretSlot {
        user_id,
        field: SEED_FIELD,
    }
}

fn totp(seed_base32: &str, account: &str) -> Option<TOTP> {
    let bytes = Secret::Encoded(seed_base32.to_string()).to_bytes().ok()?;
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        0,
        STEP_SECS,
        bytes,
        Some(ISSUER.to_string()),
        account.to_string(),
    )
    .ok()
}

fn open_seed(vault: &Vault, row: &repo::FactorRecord) -> Result<SecretString, FactorError> {
    let sealed = Sealed {
        ciphertext: B64
            .decode(&row.ciphertext)
            .map_err(|_| FactorError::Vault(row.user_id, VaultError::Decrypt))?,
        nonce: B64
            .decode(&row.nonce)
            .map_err(|_| FactorError::Vault(row.user_id, VaultError::Decrypt))?,
        key_version: row.key_version,
    };
    vault
        .open(slot(row.user_id), &sealed)
        .map_err(|error| FactorError::Vault(row.user_id, error))
}

/// Seals `seed` for `user_id`: (ciphertext, nonce, key version) as stored.
pub fn seal_seed(vault: &Vault, user_id: i64, seed: &SecretString) -> (String, String, i64) {
    let sealed = vault.seal(slot(user_id), seed);
    (
        B64.encode(&sealed.ciphertext),
        B64.encode(&sealed.nonce),
        sealed.key_version,
    )
}

/// Re-seals every stored seed from `old` to `new` inside a master key rotation.
pub async fn reseal_all(
    conn: &mut sqlx::AnyConnection,
    old: &Vault,
    new: &Vault,
) -> Result<usize, FactorError> {
    let rows = repo::all_in(conn).await?;
    for row in &rows {
        let seed = open_seed(old, row)?;
        let (ciphertext, nonce, version) = seal_seed(new, row.user_id, &seed);
        repo::reseal(conn, row.user_id, &ciphertext, &nonce, version).await?;
    }
    Ok(rows.len())
}

/// Whether `user_id` has a confirmed authenticator factor.
pub async fn has_factor(state: &AppState, user_id: i64) -> Result<bool, sqlx::Error> {
    Ok(repo::find(&state.db.pool, user_id)
        .await?
        .is_some_and(|row| row.confirmed_at.is_some()))
}

/// Begins (or restarts) enrolment: a fresh seed, sealed and stored as pending; `None` when
/// the user already has a confirmed factor.
pub async fn begin_enrolment(
    state: &AppState,
    user: &AuthUser,
) -> Result<Option<Enrolment>, FactorError> {
    let mut raw = zeroize::Zeroizing::new([0u8; 20]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, raw.as_mut());
    let encoded = Secret::Raw(raw.to_vec()).to_encoded();
    let Secret::Encoded(seed) = &encoded else {
        unreachable!("to_encoded always yields an encoded secret")
    };
    let seed = SecretString::from(seed.clone());
    let Some(code) = totp(seed.expose_secret(), &user.email) else {
        unreachable!("a generated 160-bit seed is always valid")
    };
    let (ciphertext, nonce, version) = seal_seed(&state.vault, user.id, &seed);
    if !repo::put_pending(&state.db.pool, user.id, &ciphertext, &nonce, version).await? {
        return Ok(None);
    }
    let qr_svg = crate::server::links::view::qr_svg(&code.get_url()).unwrap_or_default();
    Ok(Some(Enrolment {
        manual_key: seed,
        qr_svg: SecretString::from(qr_svg),
    }))
}

/// The second step of signing in: `code` from the half-signed-in `user`'s authenticator.
/// When accepted, the session is fully signed in under a fresh id.
pub async fn complete_sign_in(
    state: &AppState,
    session: &tower_sessions::Session,
    meta: &RequestMeta,
    user: &AuthUser,
    code: &str,
) -> Result<CodeCheck, FactorError> {
    let check = check_code(state, meta, user, code, false, "auth.second_factor").await?;
    if check == CodeCheck::Accepted {
        let Some(record) = db::users::find_by_id(&state.db.pool, user.id).await? else {
            return Ok(CodeCheck::NoFactor);
        };
        db::users::touch_sign_in(&state.db.pool, user.id).await?;
        super::start_session_as(session, user.id, record.session_epoch, false).await?;
    }
    Ok(check)
}

/// The time step of `unix_secs`.
pub fn step_of(unix_secs: u64) -> i64 {
    (unix_secs / STEP_SECS) as i64
}

/// The step within ±[`SKEW_STEPS`] of now whose code is `code`, if any (compared in constant
/// time).
fn matching_step(totp: &TOTP, code: &str, now_secs: u64) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(now_secs);
    (now - SKEW_STEPS..=now + SKEW_STEPS).find(|step| {
        let expected = totp.generate((*step as u64) * STEP_SECS);
        expected
            .bytes()
            .zip(code.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    })
}

/// Checks `code` for `user`: when `confirming`, against the pending enrolment (and confirms
/// it); otherwise against the confirmed factor (and records its step, so it is never accepted
/// again). Each check is an attempt on the account's sign-in throttle; a right code clears it.
pub async fn check_code(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    code: &str,
    confirming: bool,
    action: &'static str,
) -> Result<CodeCheck, FactorError> {
    let pool = &state.db.pool;
    let Some(row) = repo::find(pool, user.id).await? else {
        return Ok(CodeCheck::NoFactor);
    };
    if row.confirmed_at.is_some() == confirming {
        return Ok(CodeCheck::NoFactor);
    }
    // The account's counter only: the password was right (or the session is signed in), so a
    // wrong code is a guess at this account, not a spray across accounts from one address.
    let attempt = match super::begin_own_attempt(state, meta, user, None, action).await? {
        Ok(attempt) => attempt,
        Err(refusal) => return Ok(CodeCheck::Throttled(refusal)),
    };
    let seed = open_seed(&state.vault, &row)?;
    let Some(generator) = totp(seed.expose_secret(), &user.email) else {
        return Err(FactorError::Vault(user.id, VaultError::Decrypt));
    };
    let now_secs = db::now().max(0) as u64;
    let accepted = match matching_step(&generator, code, now_secs) {
        Some(step) if confirming => repo::confirm(pool, user.id, step).await?,
        Some(step) => repo::use_step(pool, user.id, step).await?,
        None => false,
    };
    let event = AuditEvent::new(
        user.actor(),
        action,
        if accepted {
            Outcome::Success
        } else {
            Outcome::Failure
        },
    )
    .object("user", user.id);
    if accepted {
        attempt.succeeded(pool).await.map_err(AuthError::from)?;
        state.audit.record(&state.db, meta, &event).await;
        Ok(CodeCheck::Accepted)
    } else {
        // The attempt stays counted.
        drop(attempt);
        state
            .audit
            .record(&state.db, meta, &event.reason("wrong or already used code"))
            .await;
        Ok(CodeCheck::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_within_one_step_only() {
        let seed = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        let generator = totp(seed, "a@example.com").unwrap();
        let now = 1_800_000_000u64;
        let code_at = |secs: u64| generator.generate(secs);
        assert_eq!(
            matching_step(&generator, &code_at(now), now),
            Some(step_of(now))
        );
        assert_eq!(
            matching_step(&generator, &code_at(now - 30), now),
            Some(step_of(now) - 1)
        );
        assert_eq!(
            matching_step(&generator, &code_at(now + 30), now),
            Some(step_of(now) + 1)
        );
        assert_eq!(matching_step(&generator, &code_at(now - 90), now), None);
        assert_eq!(matching_step(&generator, "12345", now), None);
        assert_eq!(matching_step(&generator, "abcdef", now), None);
    }
}
