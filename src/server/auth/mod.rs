//! Staff authentication: passwords, signed-in sessions with idle and absolute timeouts,
//! sign-in throttling and the role checks every server function runs.

pub mod accounts;
pub mod guard;
pub mod passkeys;
pub mod password;
pub mod second_factor;
pub mod single_sign_on;
pub mod throttle;

use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::db::{self, auth_sessions::AUTH_KEY, users::UserRecord};
use crate::server::state::AppState;
use crate::types::{CurrentUser, Role};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

/// Failures of the authentication layer. Logged in full; users see a generic message.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Database failure.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Session store failure.
    #[error("session store: {0}")]
    Session(#[from] tower_sessions::session::Error),
    /// Hashing failure.
    #[error(transparent)]
    Hash(#[from] password::HashError),
}

impl AuthError {
    /// Whether the failure means the database is unreachable right now (a 503 "try again in a
    /// moment"), whether it surfaced in a query or while the session store loaded a session.
    pub fn is_unavailable(&self) -> bool {
        match self {
            AuthError::Db(error) => db::is_unavailable(error),
            AuthError::Session(tower_sessions::session::Error::Store(
                tower_sessions::session_store::Error::Backend(text),
            )) => text.starts_with(db::auth_sessions::UNAVAILABLE_PREFIX),
            _ => false,
        }
    }
}

/// What a signed-in session remembers about its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAuth {
    /// The user.
    pub user_id: i64,
    /// The user's session epoch at sign-in; a bump ends this session.
    pub epoch: i64,
    /// Sign-in time, Unix milliseconds (absolute timeout).
    pub signed_in_at_ms: i64,
    /// Last request, Unix milliseconds (idle timeout).
    pub last_seen_at_ms: i64,
    /// The password was right but the second factor is still to be given: the session opens
    /// nothing but the second step (and sign-out) until it is.
    #[serde(default)]
    pub second_factor_pending: bool,
    /// When the user last confirmed it is them (step-up), Unix milliseconds.
    #[serde(default)]
    pub stepped_up_at_ms: Option<i64>,
    /// Signed in through single sign-on (sign-out then offers the provider's sign-out too).
    #[serde(default)]
    pub single_sign_on: bool,
    /// The identity provider said a second factor was used (an `amr` value the admin counts),
    /// which stands for KYC Desk's own for the second-factor policy.
    #[serde(default)]
    pub provider_mfa: bool,
}

/// A signed-in, enabled user whose session is within its timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// User id.
    pub id: i64,
    /// Email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Current role (read from the database on every request).
    pub role: Role,
    /// Must replace an initial or reset password before anything else.
    pub must_change_password: bool,
    /// Half signed in: the password was right, the second factor is still to be given.
    pub second_factor_pending: bool,
    /// The role must have a second factor and the user has none: only enrolment opens.
    pub must_enrol: bool,
    /// When the user last confirmed it is them (step-up), Unix milliseconds.
    pub stepped_up_at_ms: Option<i64>,
    /// A one-time message for the user, taken from the session by the page door.
    pub notice: Option<String>,
    /// Signs in only through single sign-on (no password to confirm with).
    pub sso_only: bool,
    /// This session was signed in through single sign-on.
    pub single_sign_on: bool,
}

impl AuthUser {
    fn from_record(user: &UserRecord) -> Self {
        AuthUser {
            id: user.id,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            role: user.role(),
            must_change_password: user.must_change_password != 0,
            second_factor_pending: false,
            must_enrol: false,
            stepped_up_at_ms: None,
            notice: None,
            sso_only: user.sso_only != 0,
            single_sign_on: false,
        }
    }

    /// Whether a step-up of this user is still fresh within `window`.
    pub fn stepped_up_within(&self, window: std::time::Duration) -> bool {
        self.stepped_up_at_ms
            .is_some_and(|at| now_ms() - at <= window.as_millis() as i64)
    }

    /// The audit actor for this user.
    pub fn actor(&self) -> Actor {
        Actor::User {
            id: self.id,
            email: self.email.clone(),
            role: self.role,
        }
    }

    /// The view pages get.
    pub fn current_user(&self) -> CurrentUser {
        CurrentUser {
            id: self.id,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role,
            must_change_password: self.must_change_password && !self.sso_only,
            must_enrol: self.must_enrol,
            sso_only: self.sso_only,
            single_sign_on: self.single_sign_on,
            notice: self.notice.clone(),
        }
    }
}

/// `last_seen_at_ms` is rewritten at most this often, so a burst of requests costs one write
/// (capped at a quarter of the idle timeout so short timeouts stay exact).
const LAST_SEEN_GRANULARITY_MS: i64 = 5_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The signed-in user of this session, or `None` (never signed in, timed out, disabled,
/// password changed elsewhere). An ended session is cleared so its cookie stops working.
pub async fn authenticate(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
) -> Result<Option<AuthUser>, AuthError> {
    let Some(mut auth) = session.get::<SessionAuth>(AUTH_KEY).await? else {
        return Ok(None);
    };
    let now = now_ms();
    let idle = state.config.session_idle_timeout.as_millis() as i64;
    let absolute = state.config.session_absolute_timeout.as_millis() as i64;
    let timed_out = if now - auth.last_seen_at_ms > idle {
        Some("idle timeout")
    } else if now - auth.signed_in_at_ms > absolute {
        Some("absolute timeout")
    } else {
        None
    };
    if let Some(reason) = timed_out {
        session.flush().await?;
        state
            .audit
            .record(
                &state.db,
                meta,
                &AuditEvent::new(Actor::System, "auth.session_timeout", Outcome::Success)
                    .object("user", auth.user_id)
                    .reason(reason),
            )
            .await;
        return Ok(None);
    }
    let user = db::users::find_by_id(&state.db.pool, auth.user_id).await?;
    let Some(user) = user.filter(|u| u.disabled == 0 && u.session_epoch == auth.epoch) else {
        session.flush().await?;
        return Ok(None);
    };
    if now - auth.last_seen_at_ms >= LAST_SEEN_GRANULARITY_MS.min(idle / 4) {
        auth.last_seen_at_ms = now;
        session.insert(AUTH_KEY, auth).await?;
    }
    let mut signed_in = AuthUser::from_record(&user);
    signed_in.second_factor_pending = auth.second_factor_pending;
    signed_in.stepped_up_at_ms = auth.stepped_up_at_ms;
    signed_in.single_sign_on = auth.single_sign_on;
    signed_in.must_enrol = !auth.second_factor_pending
        && !auth.provider_mfa
        && must_have_factor(state, signed_in.role)
        && !second_factor::has_factor(state, user.id).await?;
    Ok(Some(signed_in))
}

/// Whether users of `role` must have a second factor (`KYC_DESK_SECOND_FACTOR_ROLES`).
pub fn must_have_factor(state: &AppState, role: Role) -> bool {
    state.config.second_factor_roles.contains(&role)
}

/// Records in the session that its user just confirmed it is them (a step-up), opening the
/// sensitive doors for the step-up window.
pub async fn mark_stepped_up(session: &Session) -> Result<(), AuthError> {
    if let Some(mut auth) = session.get::<SessionAuth>(AUTH_KEY).await? {
        auth.stepped_up_at_ms = Some(now_ms());
        session.insert(AUTH_KEY, auth).await?;
    }
    Ok(())
}

/// The session key of a one-time message for the signed-in user (shown on the next page).
pub const NOTICE_KEY: &str = "kyc_desk.notice";

/// Takes the session's one-time message for its user, if any: it is shown once.
pub async fn take_notice(session: &Session) -> Result<Option<String>, AuthError> {
    // Read first: removing an absent key would still cost a session write on every page.
    if session.get::<String>(NOTICE_KEY).await?.is_none() {
        return Ok(None);
    }
    Ok(session.remove::<String>(NOTICE_KEY).await?)
}

/// Binds the session to `user` under a fresh session id (no fixation).
pub async fn start_session(session: &Session, user_id: i64, epoch: i64) -> Result<(), AuthError> {
    start_session_as(session, user_id, epoch, false).await
}

/// Binds the session to `user` under a fresh session id, half signed in when
/// `second_factor_pending` (the password was right, the second factor is still to come).
pub async fn start_session_as(
    session: &Session,
    user_id: i64,
    epoch: i64,
    second_factor_pending: bool,
) -> Result<(), AuthError> {
    session.cycle_id().await?;
    let now = now_ms();
    session
        .insert(
            AUTH_KEY,
            SessionAuth {
                user_id,
                epoch,
                signed_in_at_ms: now,
                last_seen_at_ms: now,
                second_factor_pending,
                stepped_up_at_ms: None,
                single_sign_on: false,
                provider_mfa: false,
            },
        )
        .await?;
    Ok(())
}

/// Why a sign-in was refused.
#[derive(Debug)]
pub enum SignInError {
    /// Wrong email or password (never says which).
    Invalid,
    /// Too many failures for this account or this client address.
    Throttled {
        /// Seconds until another attempt may succeed.
        retry_after_secs: u64,
        /// Plain-words explanation (never reveals whether the account exists).
        message: String,
    },
    /// Correct password, but an admin disabled the account.
    Disabled,
    /// Our failure.
    Internal(AuthError),
}

impl<E: Into<AuthError>> From<E> for SignInError {
    fn from(error: E) -> Self {
        SignInError::Internal(error.into())
    }
}

/// Checks email and password, applies throttling, and on success signs the session in. The
/// attempt is counted before argon2 runs (see [`throttle`]), so parallel guesses are held to
/// the same limits as one-at-a-time ones.
pub async fn sign_in(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    email_input: &str,
    password: SecretString,
) -> Result<AuthUser, SignInError> {
    let email = email_input.trim().to_lowercase();
    let pool = &state.db.pool;
    let attempt = match throttle::begin(pool, &state.sign_ins, meta.ip, &email).await? {
        Ok(attempt) => attempt,
        Err(refusal) => {
            state
                .audit_noise
                .record(
                    meta,
                    &AuditEvent::new(Actor::Anonymous, "auth.sign_in", Outcome::Denied)
                        .reason("throttled")
                        .detail(serde_json::json!({
                            "email": crate::validation::mask_email(&email),
                            "scope": refusal.scope.as_str(),
                        })),
                )
                .await;
            return Err(SignInError::Throttled {
                retry_after_secs: refusal.retry_after_secs,
                message: refusal.message(),
            });
        }
    };

    // An SSO-only user has no password: their stored hash (of a password nobody knows) is
    // not even checked, and the answer is the one an unknown email gets.
    let user = db::users::find_by_email(pool, &email)
        .await?
        .filter(|user| user.sso_only == 0);
    // Kept for a possible hash upgrade after a successful check.
    let password_again = SecretString::from(password.expose_secret().to_owned());
    let verified = match state
        .passwords
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await
    {
        Ok(verified) => verified,
        Err(error) => {
            attempt.unchecked(pool).await?;
            return Err(error.into());
        }
    };
    let (user, upgrade) = match (user, verified) {
        (Some(user), password::Verified::Yes { upgrade }) => (user, upgrade),
        _ => {
            // The attempt stays counted.
            drop(attempt);
            state
                .audit
                .record(
                    &state.db,
                    meta,
                    &AuditEvent::new(Actor::Anonymous, "auth.sign_in", Outcome::Failure)
                        .reason("wrong email or password")
                        .detail(
                            serde_json::json!({ "email": crate::validation::mask_email(&email) }),
                        ),
                )
                .await;
            return Err(SignInError::Invalid);
        }
    };
    attempt.succeeded(pool).await?;
    if user.disabled != 0 {
        state
            .audit
            .record(
                &state.db,
                meta,
                &AuditEvent::new(Actor::Anonymous, "auth.sign_in", Outcome::Denied)
                    .object("user", user.id)
                    .reason("account disabled"),
            )
            .await;
        return Err(SignInError::Disabled);
    }
    if upgrade {
        let stronger = state.passwords.hash(password_again).await?;
        db::users::upgrade_hash(pool, user.id, &stronger).await?;
    }
    let pending = second_factor::has_factor(state, user.id).await?;
    if !pending {
        db::users::touch_sign_in(pool, user.id).await?;
    }
    start_session_as(session, user.id, user.session_epoch, pending).await?;
    let mut signed_in = AuthUser::from_record(&user);
    signed_in.second_factor_pending = pending;
    signed_in.must_enrol = !pending && must_have_factor(state, signed_in.role);
    state
        .audit
        .record(
            &state.db,
            meta,
            &AuditEvent::new(signed_in.actor(), "auth.sign_in", Outcome::Success)
                .object("user", user.id)
                .detail(serde_json::json!({
                    "password_hash_upgraded": upgrade,
                    "second_factor_pending": pending,
                    "must_enrol": signed_in.must_enrol,
                })),
        )
        .await;
    Ok(signed_in)
}

/// Starts a counted attempt at a signed-in (or half signed-in) user's own secret — the password
/// again, or an authenticator code — on the account's counter and, when `ip` is given, the
/// address's; a refusal is recorded as audit noise under `action`. The one place both checks
/// begin, so their throttling cannot drift apart.
pub(crate) async fn begin_own_attempt(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    ip: Option<std::net::IpAddr>,
    action: &'static str,
) -> Result<Result<throttle::Attempt, throttle::Refusal>, sqlx::Error> {
    let begun = throttle::begin(&state.db.pool, &state.sign_ins, ip, &user.email).await?;
    if let Err(refusal) = &begun {
        state
            .audit_noise
            .record(
                meta,
                &AuditEvent::new(user.actor(), action, Outcome::Denied)
                    .object("user", user.id)
                    .reason("throttled after failed attempts")
                    .detail(serde_json::json!({ "scope": refusal.scope.as_str() })),
            )
            .await;
    }
    Ok(begun)
}

/// Checks the signed-in `user`'s own password (to change it, or to re-authenticate for a
/// sensitive change) as a counted attempt on their account, like a sign-in: `Ok(true)` when
/// right, `Ok(false)` when wrong (the attempt stays counted), or the refusal when the account
/// or address is throttled (recorded as `action` denied). Guessing from a stolen session
/// locks signing in too: the same account counter.
pub async fn check_own_password(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    password: SecretString,
    action: &'static str,
) -> Result<Result<bool, throttle::Refusal>, AuthError> {
    let pool = &state.db.pool;
    let attempt = match begin_own_attempt(state, meta, user, meta.ip, action).await? {
        Ok(attempt) => attempt,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let record = db::users::find_by_id(pool, user.id)
        .await?
        .filter(|record| record.sso_only == 0);
    let verified = match state
        .passwords
        .verify(password, record.map(|r| r.password_hash))
        .await
    {
        Ok(verified) => verified,
        Err(error) => {
            attempt.unchecked(pool).await?;
            return Err(error.into());
        }
    };
    if matches!(verified, password::Verified::Yes { .. }) {
        attempt.succeeded(pool).await?;
        Ok(Ok(true))
    } else {
        Ok(Ok(false))
    }
}

/// Ends this session.
pub async fn sign_out(
    state: &AppState,
    session: &Session,
    user: Option<&AuthUser>,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    session.flush().await?;
    if let Some(user) = user {
        state
            .audit
            .record(
                &state.db,
                meta,
                &AuditEvent::new(user.actor(), "auth.sign_out", Outcome::Success)
                    .object("user", user.id),
            )
            .await;
    }
    Ok(())
}
