//! Passkeys (WebAuthn): adding one (several per user, each named), and using one as the second
//! factor at sign-in or for a step-up. The relying party is the public URL's host; the ceremony
//! state lives in the server-side session between its two halves, so a browser cannot choose
//! the challenge it answers. Signature counters are kept and updated on every use.

use super::{AuthUser, must_have_factor, second_factor};
use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::db::passkeys as repo;
use crate::server::state::AppState;
use crate::types::{AppError, PasskeyRow};
use secrecy::SecretString;
use std::sync::Arc;
use tower_sessions::Session;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, DiscoverableKey, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Uuid, Webauthn,
    WebauthnBuilder,
};
use webauthn_rs_proto::ResidentKeyRequirement;

/// Session key of an unfinished registration: the name asked for and the ceremony state.
const REGISTRATION_KEY: &str = "kyc_desk.passkey_registration";
/// Session key of an unfinished authentication: what it is for and the ceremony state.
const AUTHENTICATION_KEY: &str = "kyc_desk.passkey_authentication";
/// Session key of an unfinished passkey-first sign-in (no account named yet).
const DISCOVERY_KEY: &str = "kyc_desk.passkey_discovery";
/// The high half of every user handle (the low half is the user id).
const HANDLE_PREFIX: u64 = 0x6b79_6364_6573_6b00;
/// Longest passkey name.
const NAME_MAX: usize = 60;

/// What a passkey authentication is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The second step of signing in.
    SignIn,
    /// A step-up before a sensitive action.
    StepUp,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign_in",
            Purpose::StepUp => "step_up",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Purpose::SignIn => "auth.second_factor",
            Purpose::StepUp => "auth.step_up",
        }
    }
}

/// The relying party for `public_url`, or `None` (logged) when its host cannot be one: browsers
/// offer passkeys only for a domain name (`localhost` included), never for an IP address.
pub fn relying_party(public_url: &url::Url) -> Option<Arc<Webauthn>> {
    let Some(host) = public_url.domain() else {
        tracing::info!(
            public_url = %public_url,
            "passkeys are off: browsers offer them only for a domain name (use http://localhost:PORT rather than 127.0.0.1)"
        );
        return None;
    };
    match WebauthnBuilder::new(host, public_url).and_then(|b| b.rp_name("KYC Desk").build()) {
        Ok(webauthn) => Some(Arc::new(webauthn)),
        Err(error) => {
            tracing::warn!(%error, public_url = %public_url, "passkeys are off");
            None
        }
    }
}

fn unavailable() -> AppError {
    AppError::Conflict(
        "Passkeys are not available on this address: KYC Desk must be opened by a domain name (its public URL), not an IP address.".into(),
    )
}

fn webauthn(state: &AppState) -> Result<&Webauthn, AppError> {
    state.webauthn.as_deref().ok_or_else(unavailable)
}

/// The stable WebAuthn user handle of `user_id` (no personal data in it).
fn user_handle(user_id: i64) -> Uuid {
    Uuid::from_u64_pair(HANDLE_PREFIX, user_id as u64)
}

/// The user id a user handle stands for, if it is one of ours.
fn user_of_handle(handle: Uuid) -> Option<i64> {
    let (high, low) = handle.as_u64_pair();
    (high == HANDLE_PREFIX).then_some(low as i64)
}

fn stored(record: &repo::PasskeyRecord) -> Result<Passkey, AppError> {
    serde_json::from_str(&record.credential).map_err(|error| {
        crate::server::web::internal_error(
            &format!("passkey {} does not parse: {error}", record.id),
            false,
        )
    })
}

fn encoded_id(passkey: &Passkey) -> String {
    serde_json::to_value(passkey.cred_id())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Stores the use of whichever of `records` verified `result`: its new signature counter and
/// the time (the one place both the second step and a passkey-first sign-in record it).
async fn record_use(
    state: &AppState,
    records: &[repo::PasskeyRecord],
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<(), AppError> {
    for record in records {
        let mut passkey = stored(record)?;
        if passkey.update_credential(result).is_some() {
            let json = serde_json::to_string(&passkey)
                .map_err(|error| crate::server::web::internal_error(&error, false))?;
            repo::used(&state.db.pool, record.id, &json).await?;
        }
    }
    Ok(())
}

fn session_error(error: tower_sessions::session::Error) -> AppError {
    AppError::from(super::AuthError::from(error))
}

/// The passkeys of `user_id`, as the account page lists them.
pub async fn list(state: &AppState, user_id: i64) -> Result<Vec<PasskeyRow>, AppError> {
    Ok(repo::of_user(&state.db.pool, user_id)
        .await?
        .into_iter()
        .map(|record| PasskeyRow {
            id: record.id,
            name: record.name,
            created: crate::server::db::format_time(record.created_at),
            last_used: record.last_used_at.map(crate::server::db::format_time),
        })
        .collect())
}

/// Begins adding a passkey named `name`: the options for the browser's
/// `navigator.credentials.create`, as JSON. The user's passkeys are excluded (one per
/// authenticator).
pub async fn begin_registration(
    state: &AppState,
    session: &Session,
    user: &AuthUser,
    name: &str,
) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::field(
            "name",
            "Give the passkey a name you will recognise (for example “Work laptop”).",
        ));
    }
    if name.chars().count() > NAME_MAX || name.chars().any(char::is_control) {
        return Err(AppError::field(
            "name",
            format!("At most {NAME_MAX} characters, on one line."),
        ));
    }
    let webauthn = webauthn(state)?;
    let existing = repo::of_user(&state.db.pool, user.id).await?;
    let mut exclude = Vec::with_capacity(existing.len());
    for record in &existing {
        exclude.push(stored(record)?.cred_id().clone());
    }
    let (mut options, registration) = webauthn
        .start_passkey_registration(
            user_handle(user.id),
            &user.email,
            &user.display_name,
            Some(exclude),
        )
        .map_err(|error| crate::server::web::internal_error(&error, false))?;
    // Ask for a discoverable credential where the device can keep one, so the passkey can
    // also sign in on its own (no email, no password); a security key short of slots may
    // still make a plain one, which works as the second step.
    if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
        selection.resident_key = Some(ResidentKeyRequirement::Preferred);
    }
    session
        .insert(REGISTRATION_KEY, (name.to_string(), registration))
        .await
        .map_err(session_error)?;
    serde_json::to_string(&options)
        .map_err(|error| crate::server::web::internal_error(&error, false))
}

/// Finishes adding a passkey with the browser's answer (`credential`, JSON). The user's first
/// second factor also gets its ten recovery codes (returned to be shown once).
pub async fn finish_registration(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    user: &AuthUser,
    credential: &str,
) -> Result<Option<Vec<SecretString>>, AppError> {
    let webauthn = webauthn(state)?;
    let Some((name, registration)) = session
        .remove::<(String, PasskeyRegistration)>(REGISTRATION_KEY)
        .await
        .map_err(session_error)?
    else {
        return Err(AppError::Conflict(
            "Adding this passkey was not begun here (or was finished already). Start again.".into(),
        ));
    };
    let answer: RegisterPublicKeyCredential = serde_json::from_str(credential).map_err(|_| {
        AppError::Request("The browser's answer could not be read. Try again.".into())
    })?;
    let first_factor = !second_factor::has_factor(state, user.id).await?;
    let passkey = match webauthn.finish_passkey_registration(&answer, &registration) {
        Ok(passkey) => passkey,
        Err(error) => {
            state
                .audit
                .record(
                    &state.db,
                    meta,
                    &AuditEvent::new(user.actor(), "auth.passkey_added", Outcome::Failure)
                        .object("user", user.id)
                        .reason(format!("the browser's answer was refused: {error}")),
                )
                .await;
            return Err(AppError::field(
                "name",
                "The passkey could not be verified. Try again (and let your device check it is you).",
            ));
        }
    };
    let json = serde_json::to_string(&passkey)
        .map_err(|error| crate::server::web::internal_error(&error, false))?;
    if !repo::insert(&state.db.pool, user.id, &name, &encoded_id(&passkey), &json).await? {
        return Err(AppError::Conflict(
            "This passkey is registered already.".into(),
        ));
    }
    state
        .audit
        .record(
            &state.db,
            meta,
            &AuditEvent::new(user.actor(), "auth.passkey_added", Outcome::Success)
                .object("user", user.id)
                .detail(serde_json::json!({ "name": name })),
        )
        .await;
    super::mark_stepped_up(session).await?;
    if first_factor {
        Ok(Some(
            second_factor::issue_recovery_codes(state, meta, user).await?,
        ))
    } else {
        Ok(None)
    }
}

/// Begins using one of `user`'s passkeys for `purpose`: the options for the browser's
/// `navigator.credentials.get`, as JSON.
pub async fn begin_authentication(
    state: &AppState,
    session: &Session,
    user: &AuthUser,
    purpose: Purpose,
) -> Result<String, AppError> {
    let webauthn = webauthn(state)?;
    let records = repo::of_user(&state.db.pool, user.id).await?;
    if records.is_empty() {
        return Err(AppError::Conflict(
            "No passkey is registered for your account.".into(),
        ));
    }
    let passkeys = records.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
    let (options, authentication) = webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|error| crate::server::web::internal_error(&error, false))?;
    session
        .insert(
            AUTHENTICATION_KEY,
            (purpose.as_str().to_string(), authentication),
        )
        .await
        .map_err(session_error)?;
    serde_json::to_string(&options)
        .map_err(|error| crate::server::web::internal_error(&error, false))
}

/// Finishes using a passkey for `purpose` with the browser's answer (`credential`, JSON):
/// `Ok(true)` when it verified (its counter is stored; for a sign-in the caller completes it),
/// `Ok(false)` when refused. Counted on the account's sign-in throttle, audited.
pub async fn finish_authentication(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    user: &AuthUser,
    purpose: Purpose,
    credential: &str,
) -> Result<Result<bool, super::throttle::Refusal>, AppError> {
    let webauthn = webauthn(state)?;
    let Some((begun_for, authentication)) = session
        .remove::<(String, PasskeyAuthentication)>(AUTHENTICATION_KEY)
        .await
        .map_err(session_error)?
    else {
        return Err(AppError::Conflict(
            "Using a passkey was not begun here (or was finished already). Try again.".into(),
        ));
    };
    if begun_for != purpose.as_str() {
        return Err(AppError::Conflict(
            "Using a passkey was begun for something else. Try again.".into(),
        ));
    }
    let answer: PublicKeyCredential = serde_json::from_str(credential).map_err(|_| {
        AppError::Request("The browser's answer could not be read. Try again.".into())
    })?;
    let attempt = match super::begin_own_attempt(state, meta, user, None, purpose.action()).await? {
        Ok(attempt) => attempt,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let event = |outcome| {
        AuditEvent::new(user.actor(), purpose.action(), outcome)
            .object("user", user.id)
            .detail(serde_json::json!({ "method": "passkey" }))
    };
    let result = match webauthn.finish_passkey_authentication(&answer, &authentication) {
        Ok(result) => result,
        Err(error) => {
            drop(attempt);
            state
                .audit
                .record(
                    &state.db,
                    meta,
                    &event(Outcome::Failure).reason(format!("passkey refused: {error}")),
                )
                .await;
            return Ok(Ok(false));
        }
    };
    let records = repo::of_user(&state.db.pool, user.id).await?;
    record_use(state, &records, &result).await?;
    attempt
        .succeeded(&state.db.pool)
        .await
        .map_err(super::AuthError::from)?;
    state
        .audit
        .record(&state.db, meta, &event(Outcome::Success))
        .await;
    if purpose == Purpose::StepUp {
        super::mark_stepped_up(session).await?;
    }
    Ok(Ok(true))
}

/// Why a passkey-first sign-in was refused.
#[derive(Debug)]
pub enum DiscoveredRefusal {
    /// The passkey is not one of ours, or did not verify (audited).
    Refused,
    /// The account is disabled.
    Disabled,
    /// Too many failed attempts for the account or the address.
    Throttled(super::throttle::Refusal),
}

/// Begins a passkey-first sign-in: options for `navigator.credentials.get` with no credential
/// named (the browser offers the passkeys it holds for this site), as JSON.
pub async fn begin_discovery(state: &AppState, session: &Session) -> Result<String, AppError> {
    let webauthn = webauthn(state)?;
    let (options, discovery) = webauthn
        .start_discoverable_authentication()
        .map_err(|error| crate::server::web::internal_error(&error, false))?;
    session
        .insert(DISCOVERY_KEY, discovery)
        .await
        .map_err(session_error)?;
    serde_json::to_string(&options)
        .map_err(|error| crate::server::web::internal_error(&error, false))
}

/// Finishes a passkey-first sign-in with the browser's answer: the passkey names its user (by
/// the user handle it holds); it must be one of that user's passkeys and verify (user
/// verification required, so it counts as both factors). On success the session is signed in
/// under a fresh id, as after a second step. Counted on the sign-in throttle of the account and
/// the address; audited as `auth.sign_in` with method `passkey`.
pub async fn finish_discovery(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    credential: &str,
) -> Result<Result<AuthUser, DiscoveredRefusal>, AppError> {
    let webauthn = webauthn(state)?;
    let Some(discovery) = session
        .remove::<DiscoverableAuthentication>(DISCOVERY_KEY)
        .await
        .map_err(session_error)?
    else {
        return Err(AppError::Conflict(
            "Signing in with a passkey was not begun here (or was finished already). Try again."
                .into(),
        ));
    };
    let answer: PublicKeyCredential = serde_json::from_str(credential).map_err(|_| {
        AppError::Request("The browser's answer could not be read. Try again.".into())
    })?;
    let refused = |reason: String| {
        AuditEvent::new(
            crate::server::audit::Actor::Anonymous,
            "auth.sign_in",
            Outcome::Failure,
        )
        .reason(reason)
        .detail(serde_json::json!({ "method": "passkey" }))
    };
    let user_id = webauthn
        .identify_discoverable_authentication(&answer)
        .ok()
        .and_then(|(handle, _)| user_of_handle(handle));
    let record = match user_id {
        Some(id) => crate::server::db::users::find_by_id(&state.db.pool, id).await?,
        None => None,
    };
    let Some(record) = record else {
        state
            .audit
            .record(
                &state.db,
                meta,
                &refused("a passkey of no account here".into()),
            )
            .await;
        return Ok(Err(DiscoveredRefusal::Refused));
    };
    let attempt =
        match super::throttle::begin(&state.db.pool, &state.sign_ins, meta.ip, &record.email)
            .await?
        {
            Ok(attempt) => attempt,
            Err(refusal) => return Ok(Err(DiscoveredRefusal::Throttled(refusal))),
        };
    let records = repo::of_user(&state.db.pool, record.id).await?;
    let passkeys = records.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
    let keys: Vec<DiscoverableKey> = passkeys.iter().map(DiscoverableKey::from).collect();
    let result = match webauthn.finish_discoverable_authentication(&answer, discovery, &keys) {
        Ok(result) => result,
        Err(error) => {
            drop(attempt);
            state
                .audit
                .record(
                    &state.db,
                    meta,
                    &refused(format!("passkey refused: {error}")).object("user", record.id),
                )
                .await;
            return Ok(Err(DiscoveredRefusal::Refused));
        }
    };
    attempt
        .succeeded(&state.db.pool)
        .await
        .map_err(super::AuthError::from)?;
    record_use(state, &records, &result).await?;
    if record.disabled != 0 {
        state
            .audit
            .record(
                &state.db,
                meta,
                &AuditEvent::new(
                    crate::server::audit::Actor::Anonymous,
                    "auth.sign_in",
                    Outcome::Denied,
                )
                .object("user", record.id)
                .reason("account disabled"),
            )
            .await;
        return Ok(Err(DiscoveredRefusal::Disabled));
    }
    let user = AuthUser::from_record(&record);
    second_factor::signed_in_with_factor(state, session, &user, false).await?;
    state
        .audit
        .record(
            &state.db,
            meta,
            &AuditEvent::new(user.actor(), "auth.sign_in", Outcome::Success)
                .object("user", user.id)
                .detail(serde_json::json!({ "method": "passkey" })),
        )
        .await;
    Ok(Ok(user))
}

/// Removes the caller's passkey `id`. Refused when it is the last second factor of a user whose
/// role must have one.
pub async fn remove(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    id: i64,
) -> Result<(), AppError> {
    let factors = second_factor::factors_of(state, user.id).await?;
    if must_have_factor(state, user.role) && !factors.authenticator && factors.passkeys <= 1 {
        return Err(AppError::Conflict(format!(
            "Your role ({}) must have a second factor, and this passkey is your only one. Add another passkey or an authenticator app first.",
            user.role.label()
        )));
    }
    let mut tx = state.db.begin().await?;
    if !repo::remove(&mut tx, user.id, id).await? {
        return Err(AppError::NotFound(
            "No such passkey on your account. Reload the page.".into(),
        ));
    }
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "auth.passkey_removed", Outcome::Success)
                .object("user", user.id)
                .detail(serde_json::json!({ "passkey": id })),
        )
        .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkeys_need_a_domain_name() {
        let url = |text: &str| url::Url::parse(text).unwrap();
        assert!(relying_party(&url("http://127.0.0.1:3000")).is_none());
        assert!(relying_party(&url("http://[::1]:3000")).is_none());
        assert!(relying_party(&url("http://localhost:3000")).is_some());
        assert!(relying_party(&url("https://kyc.bank.example")).is_some());
    }

    #[test]
    fn user_handles_are_stable_distinct_and_read_back() {
        assert_eq!(user_handle(7), user_handle(7));
        assert_ne!(user_handle(7), user_handle(8));
        assert_eq!(user_of_handle(user_handle(42)), Some(42));
        assert_eq!(user_of_handle(Uuid::from_u64_pair(1, 42)), None);
    }
}
