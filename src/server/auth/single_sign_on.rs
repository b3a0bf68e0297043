//! Single sign-on for staff through the company's OpenID Connect provider: the
//! authorization-code flow with PKCE (`openidconnect`), state and nonce checked, the ID token's
//! signature, audience, expiry and nonce verified by the crate. The provider's settings and
//! client secret are the `single_sign_on` credential (kept in the vault, edited on the
//! credentials page like the providers'); the discovery document is read at start and cached.
//!
//! Accounts are never created by a sign-on: an admin creates the user, and the first sign-on
//! links the account by the provider's verified email; later ones find it by the provider's
//! subject. A sign-on is a first factor; the provider's `amr` counts as KYC Desk's second factor
//! only for the values the admin named. A fresh sign-on at the provider (`prompt=login`) is the
//! step-up of an SSO-only user who has no second factor of KYC Desk's own.

use super::{AuthUser, SessionAuth, must_have_factor, now_ms, second_factor, start_session_as};
use crate::credential_kinds::CredentialKind;
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::credentials::{self, CredentialRef};
use crate::server::db::{self, auth_sessions::AUTH_KEY, identities, users};
use crate::server::state::AppState;
use crate::types::AppError;
use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse as _,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tower_sessions::Session;

/// Where the browser starts a sign-on (`?next=` a local path; `?confirm=1` for a step-up).
pub const START_ROUTE: &str = "/login/sso";
/// Where the identity provider sends the browser back (register `{public URL}` + this).
pub const CALLBACK_ROUTE: &str = "/login/sso/callback";
/// The session key of a sign-on in progress (state, nonce, PKCE verifier).
const PENDING_KEY: &str = "kyc_desk.sso_pending";
/// How long a started sign-on may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// How long a discovery document (and its signing keys) is used before it is read again.
const DISCOVERY_FOR: Duration = Duration::from_secs(600);

/// The single-sign-on settings of the active credential. No `Debug`: it holds the secret.
pub struct SsoSettings {
    /// Issuer URL (no trailing slash).
    pub issuer: String,
    /// Client id at the provider.
    pub client_id: String,
    client_secret: SecretString,
    /// The ID-token claim holding the email.
    pub email_claim: String,
    /// `amr` values that count as KYC Desk's second factor (empty: none does).
    pub mfa_amr: Vec<String>,
    /// "Sign in with …".
    pub label: String,
}

impl SsoSettings {
    fn from_opened(opened: credentials::Opened) -> Self {
        let setting = |name: &str| {
            opened
                .settings
                .get(name)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let or = |value: String, default: &str| {
            if value.is_empty() {
                default.to_string()
            } else {
                value
            }
        };
        SsoSettings {
            issuer: setting("issuer").trim_end_matches('/').to_string(),
            client_id: setting("client_id"),
            client_secret: opened
                .secrets
                .get("client_secret")
                .cloned()
                .unwrap_or_else(|| SecretString::from(String::new())),
            email_claim: or(setting("email_claim"), "email"),
            mfa_amr: setting("mfa_amr")
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect(),
            label: or(setting("button_label"), "single sign-on"),
        }
    }

    /// Whether the provider's `amr` values say a second factor was used, as the admin counts it.
    pub fn counts_as_second_factor(&self, amr: &[String]) -> bool {
        amr.iter().any(|value| self.mfa_amr.contains(value))
    }
}

/// The active single-sign-on settings, or `None` when single sign-on is not set up.
pub async fn settings(state: &AppState) -> Result<Option<SsoSettings>, AppError> {
    Ok(credentials::open(
        state,
        CredentialRef::Active(CredentialKind::SingleSignOn, "default"),
    )
    .await?
    .map(SsoSettings::from_opened))
}

/// What the sign-in page offers: the button's label, and where to sign out at the provider.
pub async fn sign_in_label(state: &AppState) -> Option<String> {
    match settings(state).await {
        Ok(settings) => settings.map(|s| s.label),
        Err(error) => {
            tracing::warn!(%error, "the single-sign-on settings could not be read");
            None
        }
    }
}

/// Discovered providers, cached; and the HTTP client that talks to them (no redirects
/// followed: a redirect could send a request somewhere the admin never named).
pub struct SsoDirectory {
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(String, Instant, ProviderMetadataWithLogout)>>,
}

impl SsoDirectory {
    /// A directory with nothing discovered yet.
    pub fn new(connect_timeout: Duration, request_timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Sign-ons are rare: a fresh connection each time, never one the provider may have
            // closed while it sat idle (a reset the staff member would see as a failure).
            .pool_max_idle_per_host(0)
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(SsoDirectory {
            http,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The discovery document (with signing keys) of `issuer`: cached for a while; read again
    /// when older or when `fresh` (signing keys may have rotated).
    async fn metadata(
        &self,
        issuer: &str,
        fresh: bool,
    ) -> Result<ProviderMetadataWithLogout, SsoError> {
        let mut cached = self.cached.lock().await;
        if !fresh
            && let Some((at_issuer, at, metadata)) = cached.as_ref()
            && at_issuer == issuer
            && at.elapsed() < DISCOVERY_FOR
        {
            return Ok(metadata.clone());
        }
        let issuer_url = IssuerUrl::new(issuer.to_string())
            .map_err(|e| SsoError::Unreachable(format!("the issuer URL is not valid ({e})")))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer_url, &self.http)
            .await
            .map_err(|error| {
                SsoError::Unreachable(format!(
                    "its discovery document ({issuer}/.well-known/openid-configuration) could not be read: {}",
                    error_chain(&error)
                ))
            })?;
        *cached = Some((issuer.to_string(), Instant::now(), metadata.clone()));
        Ok(metadata)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a sign-on did not go through. Each reads as a plain sentence for the page the browser
/// lands on; none reveals a secret.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// Single sign-on is not set up.
    #[error("Single sign-on is not set up. Sign in with your email and password.")]
    NotConfigured,
    /// The provider could not be reached or answered nonsense (retryable).
    #[error("The identity provider could not be reached: {0}. Try again in a moment.")]
    Unreachable(String),
    /// A callback this browser did not start, or one used already, or an old one.
    #[error(
        "This sign-in answer was not started in this browser, was used already or is too old. Start again from the sign-in page."
    )]
    NotStartedHere,
    /// The provider declined (the user cancelled, say).
    #[error("The identity provider did not sign you in ({0}).")]
    Declined(String),
    /// The answer did not check out (signature, nonce, audience, code).
    #[error("The identity provider's answer could not be verified ({0}). Start again.")]
    Invalid(String),
    /// The provider gave no usable email.
    #[error("{0}")]
    NoEmail(String),
    /// No KYC Desk account has the email.
    #[error(
        "There is no KYC Desk account for {0}. Ask an admin to create one; single sign-on does not create accounts."
    )]
    NoAccount(String),
    /// The account is linked to another identity at this provider.
    #[error(
        "This KYC Desk account is linked to another identity at your identity provider. Ask an admin to unlink it."
    )]
    LinkedElsewhere,
    /// The account is disabled.
    #[error("Your KYC Desk account is disabled. Ask an admin.")]
    Disabled,
    /// A step-up by sign-on for someone else than the signed-in user.
    #[error(
        "You confirmed as another person than the one signed in here. Sign out and sign in again."
    )]
    WrongPerson,
    /// Our failure (database, session store): logged with the request id.
    #[error("internal: {0}")]
    Internal(String),
}

impl SsoError {
    /// The HTTP status of the page that says so.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            SsoError::NotConfigured => StatusCode::NOT_FOUND,
            SsoError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            SsoError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            SsoError::NoAccount(_) | SsoError::Disabled | SsoError::LinkedElsewhere => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The audit reason (no email addresses beyond masked ones, no tokens).
    fn reason(&self) -> &'static str {
        match self {
            SsoError::NotConfigured => "not set up",
            SsoError::Unreachable(_) => "provider unreachable",
            SsoError::NotStartedHere => "callback not started here or replayed",
            SsoError::Declined(_) => "declined by the provider",
            SsoError::Invalid(_) => "answer failed verification",
            SsoError::NoEmail(_) => "no verified email",
            SsoError::NoAccount(_) => "no account for the email",
            SsoError::LinkedElsewhere => "account linked to another identity",
            SsoError::Disabled => "account disabled",
            SsoError::WrongPerson => "step-up as another person",
            SsoError::Internal(_) => "internal failure",
        }
    }
}

impl From<AppError> for SsoError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Conflict(text) => SsoError::Unreachable(text),
            other => SsoError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for SsoError {
    fn from(error: sqlx::Error) -> Self {
        SsoError::Internal(error.to_string())
    }
}

impl From<super::AuthError> for SsoError {
    fn from(error: super::AuthError) -> Self {
        SsoError::Internal(error.to_string())
    }
}

impl From<tower_sessions::session::Error> for SsoError {
    fn from(error: tower_sessions::session::Error) -> Self {
        SsoError::Internal(error.to_string())
    }
}

/// A sign-on in progress, kept in the (server-side) session until the callback takes it.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    pkce_verifier: String,
    issuer: String,
    next: String,
    /// A step-up of this signed-in user, not a sign-in.
    confirm_user: Option<i64>,
    started_at_ms: i64,
}

fn client(
    settings: &SsoSettings,
    metadata: ProviderMetadataWithLogout,
    state: &AppState,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    SsoError,
> {
    let redirect = RedirectUrl::new(callback_url(state))
        .map_err(|e| SsoError::Internal(format!("redirect URL: {e}")))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(settings.client_id.clone()),
        Some(ClientSecret::new(
            settings.client_secret.expose_secret().to_string(),
        )),
    )
    .set_redirect_uri(redirect))
}

/// The callback URL the provider must have registered for KYC Desk.
pub fn callback_url(state: &AppState) -> String {
    format!(
        "{}{CALLBACK_ROUTE}",
        state.config.public_url.as_str().trim_end_matches('/')
    )
}

/// Starts a sign-on (or, with `confirm_user`, a step-up by sign-on): remembers state, nonce and
/// PKCE verifier in the session and returns the provider's authorization URL to send the
/// browser to.
pub async fn begin(
    state: &AppState,
    session: &Session,
    next: &str,
    confirm_user: Option<i64>,
) -> Result<String, SsoError> {
    let settings = settings(state).await?.ok_or(SsoError::NotConfigured)?;
    let metadata = state.sso.metadata(&settings.issuer, false).await?;
    let client = client(&settings, metadata, state)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge);
    if confirm_user.is_some() {
        // A step-up: the person signs in at the provider again, whatever session it has.
        request = request
            .add_prompt(CoreAuthPrompt::Login)
            .set_max_age(Duration::ZERO);
    }
    let (url, csrf, nonce) = request.url();
    session
        .insert(
            PENDING_KEY,
            Pending {
                state: csrf.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                issuer: settings.issuer.clone(),
                next: next.to_string(),
                confirm_user,
                started_at_ms: now_ms(),
            },
        )
        .await?;
    Ok(url.to_string())
}

/// What a verified answer of the provider says about the person.
struct Verified {
    subject: String,
    email: String,
    amr: Vec<String>,
    auth_time_ms: Option<i64>,
}

/// Where the browser goes after a successful callback.
pub struct Landed {
    /// A local path.
    pub redirect_to: String,
}

/// The query of the provider's answer.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The state we sent.
    pub state: Option<String>,
    /// An error code, when the provider declined.
    pub error: Option<String>,
    /// Its description.
    pub error_description: Option<String>,
}

/// Handles the provider's answer: checks it against the sign-on this session started (state;
/// then the code exchanged with the PKCE verifier, the ID token's signature and nonce), finds
/// (or, the first time, links by verified email) the account and signs the session in — half
/// signed in when KYC Desk's own second factor is still needed. Every outcome is audited.
pub async fn callback(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    query: CallbackQuery,
) -> Result<Landed, SsoError> {
    let pending: Option<Pending> = session.remove(PENDING_KEY).await?;
    let result = finish(state, session, meta, query, pending).await;
    if let Err(error) = &result {
        let outcome = match error {
            SsoError::Internal(_) | SsoError::Unreachable(_) => Outcome::Failure,
            _ => Outcome::Denied,
        };
        if let SsoError::Internal(text) = error {
            tracing::error!(request_id = %meta.request_id, error = %text, "single sign-on failed");
        }
        state
            .audit_noise
            .record(
                meta,
                &AuditEvent::new(Actor::Anonymous, "auth.single_sign_on", outcome)
                    .reason(error.reason()),
            )
            .await;
    }
    result
}

async fn finish(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    query: CallbackQuery,
    pending: Option<Pending>,
) -> Result<Landed, SsoError> {
    let Some(pending) = pending else {
        return Err(SsoError::NotStartedHere);
    };
    if now_ms() - pending.started_at_ms > PENDING_FOR.as_millis() as i64
        || query.state.as_deref() != Some(pending.state.as_str())
    {
        return Err(SsoError::NotStartedHere);
    }
    if let Some(error) = query.error {
        let description: String = query
            .error_description
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let error: String = error.chars().filter(|c| !c.is_control()).take(60).collect();
        return Err(SsoError::Declined(if description.is_empty() {
            error
        } else {
            format!("{error}: {description}")
        }));
    }
    let code = query
        .code
        .filter(|code| !code.is_empty())
        .ok_or_else(|| SsoError::Invalid("no authorization code".into()))?;
    let settings = settings(state).await?.ok_or(SsoError::NotConfigured)?;
    if settings.issuer != pending.issuer {
        return Err(SsoError::Invalid(
            "the single-sign-on settings changed meanwhile".into(),
        ));
    }
    let verified = exchange(state, &settings, &pending, code).await?;
    if let Some(user_id) = pending.confirm_user {
        return confirm(
            state, session, meta, &settings, &pending, user_id, &verified,
        )
        .await;
    }
    sign_in(state, session, meta, &settings, &pending, verified).await
}

/// Exchanges the code (with the PKCE verifier) and verifies the ID token; reads the keys
/// again once when the signature does not check (the provider may have rotated them).
async fn exchange(
    state: &AppState,
    settings: &SsoSettings,
    pending: &Pending,
    code: String,
) -> Result<Verified, SsoError> {
    let metadata = state.sso.metadata(&settings.issuer, false).await?;
    let oidc = client(settings, metadata, state)?;
    let token = oidc
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| SsoError::Unreachable(format!("it names no token endpoint ({e})")))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
        .request_async(&state.sso.http)
        .await
        .map_err(|error| match error {
            openidconnect::RequestTokenError::ServerResponse(response) => SsoError::Invalid(
                format!("the provider refused the code: {}", response.error()),
            ),
            other => SsoError::Unreachable(format!(
                "the code could not be exchanged: {}",
                error_chain(&other)
            )),
        })?;
    let id_token = token
        .id_token()
        .ok_or_else(|| SsoError::Invalid("no ID token in the answer".into()))?;
    let nonce = Nonce::new(pending.nonce.clone());
    let claims = match id_token.claims(&oidc.id_token_verifier(), &nonce) {
        Ok(claims) => claims.clone(),
        Err(first) => {
            let metadata = state.sso.metadata(&settings.issuer, true).await?;
            let again = client(settings, metadata, state)?;
            match id_token.claims(&again.id_token_verifier(), &nonce) {
                Ok(claims) => claims.clone(),
                Err(_) => return Err(SsoError::Invalid(first.to_string())),
            }
        }
    };
    if let Some(expected) = claims.access_token_hash() {
        let verifier = oidc.id_token_verifier();
        let actual = id_token
            .signing_alg()
            .and_then(|alg| id_token.signing_key(&verifier).map(|key| (alg, key)))
            .map_err(|e| SsoError::Invalid(e.to_string()))
            .and_then(|(alg, key)| {
                AccessTokenHash::from_token(token.access_token(), alg, key)
                    .map_err(|e| SsoError::Invalid(e.to_string()))
            })?;
        if actual != *expected {
            return Err(SsoError::Invalid(
                "the access token does not belong to the ID token".into(),
            ));
        }
    }
    let email = if settings.email_claim == "email" {
        if claims.email_verified() != Some(true) {
            return Err(SsoError::NoEmail(
                "Your identity provider did not confirm your email address (email_verified), so it cannot be matched to a KYC Desk account. Ask your identity provider's admin.".into(),
            ));
        }
        claims.email().map(|email| email.to_string())
    } else {
        claim_of(&id_token.to_string(), &settings.email_claim)
    };
    let email = email
        .map(|email| email.trim().to_lowercase())
        .filter(|email| crate::validation::normalize_email(email).is_ok())
        .ok_or_else(|| {
            SsoError::NoEmail(format!(
                "Your identity provider sent no email address in the claim '{}'. Ask an admin to check the single-sign-on settings.",
                settings.email_claim
            ))
        })?;
    Ok(Verified {
        subject: claims.subject().to_string(),
        email,
        amr: claims
            .auth_method_refs()
            .map(|values| values.iter().map(|v| v.to_string()).collect())
            .unwrap_or_default(),
        auth_time_ms: claims.auth_time().map(|at| at.timestamp_millis()),
    })
}

/// A string claim of an ID token whose signature was checked already (the crate's claim types
/// know only the standard claims; the admin may name another, such as `upn`).
fn claim_of(jwt: &str, claim: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get(claim)?.as_str().map(str::to_string)
}

async fn sign_in(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    settings: &SsoSettings,
    pending: &Pending,
    verified: Verified,
) -> Result<Landed, SsoError> {
    let pool = &state.db.pool;
    let (user, identity_id, linked_now) =
        match identities::find(pool, &settings.issuer, &verified.subject).await? {
            Some(identity) => {
                let user = users::find_by_id(pool, identity.user_id)
                    .await?
                    .ok_or_else(|| SsoError::NoAccount(verified.email.clone()))?;
                (user, identity.id, false)
            }
            None => {
                let user = users::find_by_email(pool, &verified.email)
                    .await?
                    .ok_or_else(|| SsoError::NoAccount(verified.email.clone()))?;
                if identities::of_user_at(pool, user.id, &settings.issuer)
                    .await?
                    .is_some()
                {
                    return Err(SsoError::LinkedElsewhere);
                }
                if user.disabled != 0 {
                    return Err(SsoError::Disabled);
                }
                if !identities::link(pool, user.id, &settings.issuer, &verified.subject).await? {
                    return Err(SsoError::LinkedElsewhere);
                }
                let identity = identities::find(pool, &settings.issuer, &verified.subject)
                    .await?
                    .ok_or_else(|| SsoError::Internal("the new identity vanished".into()))?;
                (user, identity.id, true)
            }
        };
    if user.disabled != 0 {
        return Err(SsoError::Disabled);
    }
    identities::touch(pool, identity_id).await?;
    let provider_mfa = settings.counts_as_second_factor(&verified.amr);
    let pending_factor = !provider_mfa && second_factor::has_factor(state, user.id).await?;
    if !pending_factor {
        users::touch_sign_in(pool, user.id).await?;
    }
    start_session_as(session, user.id, user.session_epoch, pending_factor).await?;
    if let Some(mut auth) = session.get::<SessionAuth>(AUTH_KEY).await? {
        auth.single_sign_on = true;
        auth.provider_mfa = provider_mfa;
        // A sign-in with a second factor counts as a step-up, as KYC Desk's own does.
        if provider_mfa {
            auth.stepped_up_at_ms = Some(now_ms());
        }
        session.insert(AUTH_KEY, auth).await?;
    }
    let mut signed_in = AuthUser::from_record(&user);
    signed_in.second_factor_pending = pending_factor;
    state
        .audit
        .record(
            &state.db,
            meta,
            &AuditEvent::new(signed_in.actor(), "auth.sign_in", Outcome::Success)
                .object("user", user.id)
                .detail(serde_json::json!({
                    "method": "single_sign_on",
                    "issuer": settings.issuer,
                    "linked_now": linked_now,
                    "provider_second_factor": provider_mfa,
                    // What the provider said, so an admin can name the right `amr` values.
                    "provider_amr": verified.amr,
                    "second_factor_pending": pending_factor,
                    "must_enrol": !pending_factor && !provider_mfa
                        && must_have_factor(state, signed_in.role)
                        && !second_factor::has_factor(state, user.id).await?,
                })),
        )
        .await;
    let redirect_to = if pending_factor {
        format!(
            "{}?next={}",
            crate::access::SECOND_STEP_PAGE,
            url::form_urlencoded::byte_serialize(pending.next.as_bytes()).collect::<String>()
        )
    } else if user.must_change_password != 0 && user.sso_only == 0 {
        crate::access::PASSWORD_PAGE.to_string()
    } else {
        pending.next.clone()
    };
    Ok(Landed { redirect_to })
}

async fn confirm(
    state: &AppState,
    session: &Session,
    meta: &RequestMeta,
    settings: &SsoSettings,
    pending: &Pending,
    user_id: i64,
    verified: &Verified,
) -> Result<Landed, SsoError> {
    let identity = identities::find(&state.db.pool, &settings.issuer, &verified.subject).await?;
    let signed_in: Option<SessionAuth> = session.get(AUTH_KEY).await?;
    if identity.is_none_or(|identity| identity.user_id != user_id)
        || signed_in.is_none_or(|auth| auth.user_id != user_id)
    {
        return Err(SsoError::WrongPerson);
    }
    // `max_age=0` asked for a fresh sign-in at the provider; its time says whether it was.
    let fresh = verified
        .auth_time_ms
        .is_some_and(|at| now_ms() - at <= state.config.step_up_window.as_millis() as i64);
    if !fresh {
        return Err(SsoError::Invalid(
            "the identity provider did not ask you to sign in again".into(),
        ));
    }
    super::mark_stepped_up(session).await?;
    let user = db::users::find_by_id(&state.db.pool, user_id)
        .await?
        .ok_or(SsoError::WrongPerson)?;
    state
        .audit
        .record(
            &state.db,
            meta,
            &AuditEvent::new(
                AuthUser::from_record(&user).actor(),
                "auth.step_up",
                Outcome::Success,
            )
            .object("user", user_id)
            .detail(serde_json::json!({ "method": "single_sign_on" })),
        )
        .await;
    Ok(Landed {
        redirect_to: pending.next.clone(),
    })
}

/// Where to sign out at the provider too (RP-initiated logout), when it offers it: back to
/// KYC Desk's sign-in page afterwards.
pub async fn provider_sign_out_url(state: &AppState) -> Option<String> {
    let settings = settings(state).await.ok()??;
    let metadata = state.sso.metadata(&settings.issuer, false).await.ok()?;
    let endpoint = metadata
        .additional_metadata()
        .end_session_endpoint
        .clone()?;
    let back = PostLogoutRedirectUrl::new(format!(
        "{}/login",
        state.config.public_url.as_str().trim_end_matches('/')
    ))
    .ok()?;
    Some(
        openidconnect::LogoutRequest::from(endpoint)
            .set_client_id(ClientId::new(settings.client_id))
            .set_post_logout_redirect_uri(back)
            .http_get_url()
            .to_string(),
    )
}

/// Reads the discovery document of the configured provider at start, so a wrong issuer or an
/// unreachable provider is in the log before anyone tries to sign in.
pub async fn discover_at_start(state: &AppState) {
    match settings(state).await {
        Ok(Some(settings)) => match state.sso.metadata(&settings.issuer, true).await {
            Ok(_) => tracing::info!(issuer = %settings.issuer, "single sign-on ready"),
            Err(error) => tracing::error!(
                issuer = %settings.issuer,
                %error,
                "single sign-on is set up but its identity provider could not be reached; staff cannot sign on until it can"
            ),
        },
        Ok(None) => {}
        Err(error) => tracing::error!(%error, "the single-sign-on settings could not be read"),
    }
}

/// Checks a saved single-sign-on credential for the credentials page's test: the discovery
/// document and keys are read (fresh) and its endpoints named.
pub async fn test_settings(state: &AppState) -> Result<String, String> {
    let settings = settings(state)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "Single sign-on is not set up.".to_string())?;
    let metadata = state
        .sso
        .metadata(&settings.issuer, true)
        .await
        .map_err(|e| e.to_string())?;
    let token = metadata
        .token_endpoint()
        .map(|url| url.to_string())
        .ok_or_else(|| {
            "The provider names no token endpoint; the code flow cannot work.".to_string()
        })?;
    Ok(format!(
        "Read the discovery document of {}: sign-in at {}, tokens at {}, {} signing key(s). Register {} as the redirect URI.",
        settings.issuer,
        metadata.authorization_endpoint().as_str(),
        token,
        metadata.jwks().keys().len(),
        callback_url(state)
    ))
}
