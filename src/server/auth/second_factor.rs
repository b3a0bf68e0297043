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

/// Whether `user_id` has a confirmed authenticator app.
pub async fn has_authenticator(state: &AppState, user_id: i64) -> Result<bool, sqlx::Error> {
    Ok(repo::find(&state.db.pool, user_id)
        .await?
        .is_some_and(|row| row.confirmed_at.is_some()))
}

/// The second factors a user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factors {
    /// A confirmed authenticator app.
    pub authenticator: bool,
    /// How many passkeys.
    pub passkeys: i64,
}

impl Factors {
    /// Whether there is any second factor.
    pub fn any(self) -> bool {
        self.authenticator || self.passkeys > 0
    }
}

/// The second factors of `user_id`.
pub async fn factors_of(state: &AppState, user_id: i64) -> Result<Factors, sqlx::Error> {
    Ok(Factors {
        authenticator: has_authenticator(state, user_id).await?,
        passkeys: crate::server::db::passkeys::count(&state.db.pool, user_id).await?,
    })
}

/// Whether `user_id` has a second factor: a confirmed authenticator app or a passkey.
pub async fn has_factor(state: &AppState, user_id: i64) -> Result<bool, sqlx::Error> {
    Ok(factors_of(state, user_id).await?.any())
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

/// The second step of signing in: `code` from the half-signed-in `user`'s authenticator, or
/// one of their recovery codes. When accepted, the session is fully signed in under a fresh id
/// (and counts as a step-up: the second factor was just given), and any earlier use of a
/// recovery code not yet reported is shown to the user once.
pub async fn complete_sign_in(
    state: &AppState,
    session: &tower_sessions::Session,
    meta: &RequestMeta,
    user: &AuthUser,
    code: &str,
) -> Result<CodeCheck, FactorError> {
    let recovery = looks_like_recovery_code(code);
    let check = if recovery {
        check_recovery_code(state, meta, user, code).await?
    } else {
        check_code(state, meta, user, code, false, "auth.second_factor").await?
    };
    if check == CodeCheck::Accepted {
        signed_in_with_factor(state, session, user, recovery).await?;
    }
    Ok(check)
}

/// Completes a sign-in whose second factor was just accepted (an authenticator code, a
/// recovery code, a passkey): the session is fully signed in under a fresh id and counts as a
/// step-up; a sign-in by recovery code says so, and any earlier use of a recovery code not yet
/// reported is shown to the user once.
pub async fn signed_in_with_factor(
    state: &AppState,
    session: &tower_sessions::Session,
    user: &AuthUser,
    recovery: bool,
) -> Result<(), FactorError> {
    let pool = &state.db.pool;
    let Some(record) = db::users::find_by_id(pool, user.id).await? else {
        return Ok(());
    };
    // A sign-in with a recovery code says so now; its use (and any earlier unreported one)
    // is reported at the next sign-in with another factor.
    let earlier = if recovery {
        Vec::new()
    } else {
        repo::take_unreported_uses(pool, user.id).await?
    };
    db::users::touch_sign_in(pool, user.id).await?;
    super::start_session_as(session, user.id, record.session_epoch, false).await?;
    super::mark_stepped_up(session).await?;
    let left = repo::unused_recovery_codes(pool, user.id).await?;
    let notice = if recovery {
        Some(format!(
            "You signed in with a recovery code; {left} of {RECOVERY_CODES} are left. If you lost your authenticator, ask an admin to reset it, or make new recovery codes on My account → Authenticator app."
        ))
    } else {
        earlier.last().map(|at| {
            format!(
                "A recovery code was used to sign in to your account on {} ({} use{} since you last signed in); {left} codes are left. If that was not you, tell an admin now.",
                db::format_time(*at),
                earlier.len(),
                if earlier.len() == 1 { "" } else { "s" },
            )
        })
    };
    if let Some(notice) = notice {
        session
            .insert(super::NOTICE_KEY, notice)
            .await
            .map_err(AuthError::from)?;
    }
    Ok(())
}

/// Recovery codes made at a time.
pub const RECOVERY_CODES: usize = 10;
/// Characters of a recovery code (base32: 5 bits each, 50 bits in all), shown in two halves.
const RECOVERY_CODE_CHARS: usize = 10;

/// A recovery code as typed: letters and digits only, lower case (spaces and dashes dropped).
fn normalize_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether `code` is meant as a recovery code (not six digits).
fn looks_like_recovery_code(code: &str) -> bool {
    let normalized = normalize_recovery_code(code);
    !(normalized.len() == DIGITS && normalized.bytes().all(|b| b.is_ascii_digit()))
}

/// The stored form of `user_id`'s recovery code `code`: a SHA-256 bound to the user. Codes
/// carry 50 random bits and every guess is throttled, so a slow hash adds nothing.
fn recovery_hash(user_id: i64, code: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("kyc-desk recovery code:{user_id}:{code}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes `user_id` ten new recovery codes (the old ones stop working) and returns them, to be
/// shown once: only their hashes are kept.
pub async fn issue_recovery_codes(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
) -> Result<Vec<SecretString>, FactorError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let mut raw = zeroize::Zeroizing::new([0u8; RECOVERY_CODE_CHARS]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, raw.as_mut());
        let chars: String = raw
            .iter()
            .map(|b| ALPHABET[usize::from(b & 31)] as char)
            .collect();
        hashes.push(recovery_hash(user.id, &chars));
        let (first, second) = chars.split_at(RECOVERY_CODE_CHARS / 2);
        codes.push(SecretString::from(format!("{first}-{second}")));
    }
    let mut tx = state.db.begin().await?;
    repo::replace_recovery_codes(&mut tx, user.id, &hashes).await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "auth.recovery_codes_issued", Outcome::Success)
                .object("user", user.id)
                .detail(serde_json::json!({ "codes": RECOVERY_CODES })),
        )
        .await?;
    tx.commit().await?;
    Ok(codes)
}

/// Checks recovery code `code` of the half-signed-in `user`: accepted once, counted on the
/// account's sign-in throttle like an authenticator code, its use audited.
async fn check_recovery_code(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    code: &str,
) -> Result<CodeCheck, FactorError> {
    let pool = &state.db.pool;
    if !has_factor(state, user.id).await? {
        return Ok(CodeCheck::NoFactor);
    }
    let attempt =
        match super::begin_own_attempt(state, meta, user, None, "auth.recovery_code").await? {
            Ok(attempt) => attempt,
            Err(refusal) => return Ok(CodeCheck::Throttled(refusal)),
        };
    let normalized = normalize_recovery_code(code);
    let accepted = normalized.len() == RECOVERY_CODE_CHARS
        && repo::use_recovery_code(pool, user.id, &recovery_hash(user.id, &normalized)).await?;
    let event = AuditEvent::new(
        user.actor(),
        "auth.recovery_code",
        if accepted {
            Outcome::Success
        } else {
            Outcome::Failure
        },
    )
    .object("user", user.id);
    if accepted {
        attempt.succeeded(pool).await.map_err(AuthError::from)?;
        let left = repo::unused_recovery_codes(pool, user.id).await?;
        state
            .audit
            .record(
                &state.db,
                meta,
                &event.detail(serde_json::json!({ "codes_left": left })),
            )
            .await;
        Ok(CodeCheck::Accepted)
    } else {
        drop(attempt);
        state
            .audit
            .record(
                &state.db,
                meta,
                &event.reason("wrong or already used recovery code"),
            )
            .await;
        Ok(CodeCheck::Wrong)
    }
}

/// How many unused recovery codes `user_id` has.
pub async fn recovery_codes_left(state: &AppState, user_id: i64) -> Result<i64, sqlx::Error> {
    repo::unused_recovery_codes(&state.db.pool, user_id).await
}

/// The outcome of a step-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepUp {
    /// Confirmed: the sensitive doors open for the step-up window.
    Confirmed,
    /// Wrong code or password (the attempt stays counted).
    Wrong,
    /// Too many wrong attempts on this account or address.
    Throttled(throttle::Refusal),
    /// The user's only second factors are passkeys: they confirm with one of those.
    UsePasskey,
    /// An SSO-only user without an authenticator: they confirm at the identity provider.
    UseSingleSignOn,
}

/// A step-up: the signed-in `user` confirms it is them with a fresh authenticator code (or,
/// without a second factor, their password); counted on the account's sign-in throttle, each
/// attempt audited as `auth.step_up`.
pub async fn step_up(
    state: &AppState,
    session: &tower_sessions::Session,
    meta: &RequestMeta,
    user: &AuthUser,
    secret: SecretString,
) -> Result<StepUp, FactorError> {
    let factors = factors_of(state, user.id).await?;
    if !factors.authenticator && factors.passkeys > 0 {
        return Ok(StepUp::UsePasskey);
    }
    if !factors.authenticator && user.sso_only {
        return Ok(StepUp::UseSingleSignOn);
    }
    let outcome = if factors.authenticator {
        match check_code(
            state,
            meta,
            user,
            secret.expose_secret(),
            false,
            "auth.step_up",
        )
        .await?
        {
            CodeCheck::Accepted => StepUp::Confirmed,
            CodeCheck::Throttled(refusal) => StepUp::Throttled(refusal),
            CodeCheck::Wrong | CodeCheck::NoFactor => StepUp::Wrong,
        }
    } else {
        let outcome =
            match super::check_own_password(state, meta, user, secret, "auth.step_up").await? {
                Ok(true) => StepUp::Confirmed,
                Ok(false) => StepUp::Wrong,
                Err(refusal) => return Ok(StepUp::Throttled(refusal)),
            };
        let event = AuditEvent::new(
            user.actor(),
            "auth.step_up",
            if outcome == StepUp::Confirmed {
                Outcome::Success
            } else {
                Outcome::Failure
            },
        )
        .object("user", user.id)
        .detail(serde_json::json!({ "method": "password" }));
        let event = if outcome == StepUp::Confirmed {
            event
        } else {
            event.reason("wrong password")
        };
        state.audit.record(&state.db, meta, &event).await;
        outcome
    };
    if outcome == StepUp::Confirmed {
        super::mark_stepped_up(session).await?;
    }
    Ok(outcome)
}

/// Removes the caller's own authenticator and recovery codes. Refused when their role must
/// have a second factor (it is their last one: an admin resets it instead, which makes them
/// set up a new one at once).
pub async fn remove_own(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
) -> Result<Result<(), String>, FactorError> {
    let factors = factors_of(state, user.id).await?;
    if !factors.authenticator {
        return Ok(Err(
            "No authenticator app is set up for your account.".into()
        ));
    }
    if super::must_have_factor(state, user.role) && factors.passkeys == 0 {
        return Ok(Err(format!(
            "Your role ({}) must have a second factor, and this is your only one, so it cannot be removed. Add a passkey first, or, if you are changing phones, ask an admin to reset it: you then set up the new one at your next sign-in.",
            user.role.label()
        )));
    }
    let mut tx = state.db.begin().await?;
    // The recovery codes stay while a passkey remains: they stand in for any second factor.
    repo::remove_authenticator(&mut tx, user.id, factors.passkeys == 0).await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "auth.second_factor_removed", Outcome::Success)
                .object("user", user.id),
        )
        .await?;
    tx.commit().await?;
    Ok(Ok(()))
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
