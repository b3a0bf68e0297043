//! Creating KYC links: the options the active credentials offer, the form check, and the
//! creation itself in named phases (reserve a trial link, write the `creating` row, call the
//! provider, record the outcome); regenerating a link for the same customer.

use super::view::{Related, detail_from, detail_of, provider_label};
use super::{jobs, move_to, send, session, status_of};
use crate::credential_kinds::CredentialKind;
use crate::provider::Provider;
use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::auth::AuthUser;
use crate::server::credentials::{self, CredentialRef, Opened};
use crate::server::db::credentials::CredentialRow;
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self, credentials as credential_repo};
use crate::server::providers::{ProviderError, eko, message_central};
use crate::server::state::AppState;
use crate::types::{
    AppError, FieldError, KycStatus, LinkFormOptions, LinkOption, NewLinkInput, SessionDetail,
    TimelineEvent,
};
use crate::validation;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::Instrument as _;

/// The consent statement stored with every session.
pub const CONSENT_NOTE: &str =
    "The operator confirmed that the customer consented to this identity verification.";

/// A random, unguessable public id: 24 lower-case letters (about 113 bits). Letters only, so
/// no id ever looks like a phone or Aadhaar number to a reader or to a digit-masking guard.
pub fn new_public_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
        .collect()
}

/// A customer link's code: 128 random bits, URL-safe base64 (22 characters, short enough for
/// an SMS).
pub fn new_customer_code() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The public address a customer returns to.
pub fn return_url(state: &AppState, public_id: &str) -> String {
    format!(
        "{}/kyc/return/{public_id}",
        state.config.public_url.as_str().trim_end_matches('/')
    )
}

fn sandbox_base(state: &AppState) -> String {
    format!(
        "{}/sandbox/",
        state.config.public_url.as_str().trim_end_matches('/')
    )
}

/// The provider flows that can issue links now, and the channels that can send them.
pub async fn options(state: &AppState) -> Result<LinkFormOptions, AppError> {
    Ok(options_from(
        state,
        &credential_repo::list_active(&state.db.pool).await?,
    ))
}

/// The credential behind the chosen form option, if it is still offered.
pub(super) fn credential_of<'a>(
    options: &[(LinkOption, &'a CredentialRow)],
    chosen: &LinkOption,
) -> Option<&'a CredentialRow> {
    options
        .iter()
        .find(|(option, _)| option.id == chosen.id)
        .map(|(_, credential)| *credential)
}

/// A credential's settings, and whether it points at the built-in sandbox.
fn settings_of(row: &CredentialRow, sandbox_prefix: &str) -> (BTreeMap<String, String>, bool) {
    let settings: BTreeMap<String, String> =
        serde_json::from_str(&row.settings).unwrap_or_default();
    let sandbox = settings
        .get("base_url")
        .is_some_and(|u| u.starts_with(sandbox_prefix));
    (settings, sandbox)
}

/// The form options the given active credentials allow, each with its credential.
pub(super) fn options_with_credentials<'a>(
    state: &AppState,
    active: &'a [CredentialRow],
) -> Vec<(LinkOption, &'a CredentialRow)> {
    let sandbox_prefix = sandbox_base(state);
    // A credential the running configuration switches off offers nothing.
    let find = |kind: CredentialKind, environment: &str| {
        active.iter().find(|row| {
            row.kind == kind.as_str()
                && row.environment == environment
                && super::send::in_service(state, row)
        })
    };
    let mut options = Vec::new();
    for environment in CredentialKind::MessageCentralEkyc.environments() {
        let Some(row) = find(CredentialKind::MessageCentralEkyc, environment) else {
            continue;
        };
        let (settings, sandbox) = settings_of(row, &sandbox_prefix);
        let trial = *environment == "trial";
        for (flow, field, name) in [
            ("basic", "basic_flow_id", "Basic"),
            ("premium", "premium_flow_id", "Premium"),
        ] {
            if settings.get(field).is_none_or(|id| id.trim().is_empty()) {
                continue;
            }
            let option = LinkOption {
                id: option_id(Provider::MessageCentral, environment, flow),
                label: format!(
                    "Message Central · {name} ({environment}{})",
                    if sandbox { ", sandbox" } else { "" }
                ),
                provider: Provider::MessageCentral,
                sandbox,
                documents: Vec::new(),
                trial_links_left: trial
                    .then(|| (crate::credential_kinds::TRIAL_LINKS - row.trial_links_used).max(0)),
            };
            options.push((option, row));
        }
    }
    for environment in CredentialKind::EkoDigilocker.environments() {
        let Some(row) = find(CredentialKind::EkoDigilocker, environment) else {
            continue;
        };
        let (settings, sandbox) = settings_of(row, &sandbox_prefix);
        let mut documents: Vec<String> = settings
            .get("documents")
            .map(|d| {
                d.split(',')
                    .map(|x| x.trim().to_uppercase())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if documents.is_empty() {
            documents.push("AADHAAR".into());
        }
        let option = LinkOption {
            id: option_id(Provider::Eko, environment, "digilocker"),
            label: format!(
                "Eko DigiLocker ({environment}{})",
                if sandbox { ", sandbox" } else { "" }
            ),
            provider: Provider::Eko,
            sandbox,
            documents,
            trial_links_left: None,
        };
        options.push((option, row));
    }
    options
}

/// A [`LinkOption::id`], as the form submits it: `provider:environment:flow`.
pub(super) fn option_id(provider: Provider, environment: &str, flow: &str) -> String {
    format!("{provider}:{environment}:{flow}")
}

fn options_from(state: &AppState, active: &[CredentialRow]) -> LinkFormOptions {
    LinkFormOptions {
        options: options_with_credentials(state, active)
            .into_iter()
            .map(|(option, _)| option)
            .collect(),
        channels: send::channels_from(&send::in_use(state, active)),
        lifetime_hours_default: hours(state.config.customer_links.default_lifetime),
        lifetime_hours_min: hours(state.config.customer_links.min_lifetime).max(1),
        lifetime_hours_max: hours(state.config.customer_links.max_lifetime),
    }
}

fn hours(duration: Duration) -> i64 {
    (duration.as_secs() / 3600) as i64
}

/// A checked new-link form.
struct CheckedLink {
    option: LinkOption,
    environment: String,
    flow: String,
    customer_name: String,
    phone: String,
    email: Option<String>,
    internal_ref: Option<String>,
    documents: Vec<String>,
    idempotency_key: String,
    /// KYC Desk's customer link (`None`: the provider's URL at once, in person).
    customer_link: Option<CheckedCustomerLink>,
}

/// The customer-link choices of a checked form.
struct CheckedCustomerLink {
    lifetime: Duration,
    reminders_on: bool,
}

/// The customer link's lifetime the form asked for, within the configured bounds.
fn lifetime_of(
    text: &str,
    settings: &crate::server::config::CustomerLinkSettings,
) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(settings.default_lifetime);
    }
    let min = hours(settings.min_lifetime).max(1);
    let max = hours(settings.max_lifetime);
    match text.parse::<i64>() {
        Ok(h) if (min..=max).contains(&h) => Ok(Duration::from_secs(h as u64 * 3600)),
        _ => Err(format!(
            "Choose a lifetime from {min} to {max} hours (whole hours)."
        )),
    }
}

fn check_input(
    input: &NewLinkInput,
    options: &[LinkOption],
    settings: &crate::server::config::CustomerLinkSettings,
) -> Result<CheckedLink, AppError> {
    let mut fields = Vec::new();
    let mut problem = |field: &str, message: String| {
        fields.push(FieldError {
            field: field.into(),
            message,
        })
    };
    let option = options.iter().find(|o| o.id == input.option).cloned();
    if option.is_none() {
        problem(
            "option",
            if input.option.trim().is_empty() {
                "Choose a provider and flow.".into()
            } else {
                "This provider flow is not available any more (its credential changed). Choose again.".into()
            },
        );
    }
    if let Some(message) = validation::customer_name_problem(&input.customer_name) {
        problem("customer_name", message);
    }
    let phone = validation::normalize_phone(&input.phone)
        .map_err(|message| problem("phone", message))
        .ok();
    let email = validation::optional_email(&input.email)
        .map_err(|message| problem("email", message))
        .ok()
        .flatten();
    if let Some(message) = validation::internal_reference_problem(&input.internal_ref) {
        problem("internal_ref", message);
    }
    let mut documents: Vec<String> = input
        .documents
        .iter()
        .flat_map(|d| d.split(','))
        .map(|d| d.trim().to_uppercase())
        .filter(|d| !d.is_empty())
        .collect();
    documents.dedup();
    if let Some(option) = &option {
        if option.provider == Provider::Eko {
            if documents.is_empty() {
                documents.push("AADHAAR".into());
            }
            if let Some(bad) = documents.iter().find(|d| !option.documents.contains(d)) {
                problem(
                    "documents",
                    format!("{bad} cannot be requested with this credential."),
                );
            }
        } else {
            documents.clear();
        }
        if option.trial_links_left == Some(0) {
            problem("option", crate::credential_kinds::trial_links_used_up());
        }
    }
    if !matches!(input.consent.as_str(), "on" | "true" | "yes") {
        problem(
            "consent",
            "Confirm that the customer consented to the verification.".into(),
        );
    }
    let key = input.idempotency_key.trim();
    if !(16..=64).contains(&key.len())
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problem(
            "idempotency_key",
            "This form is out of date. Reload the page and try again.".into(),
        );
    }
    let handover = input.handover.trim();
    let customer_link = match handover {
        "" | crate::types::HANDOVER_CUSTOMER_LINK => {
            match lifetime_of(&input.lifetime_hours, settings) {
                Ok(lifetime) => Some(CheckedCustomerLink {
                    lifetime,
                    reminders_on: input.reminders.trim() != "off",
                }),
                Err(message) => {
                    problem("lifetime_hours", message);
                    None
                }
            }
        }
        crate::types::HANDOVER_PROVIDER_URL => None,
        _ => {
            problem(
                "handover",
                "Choose how the customer gets the link: KYC Desk's link, or the provider's URL now.".into(),
            );
            None
        }
    };
    if let Some(error) = AppError::from_fields(fields) {
        return Err(error);
    }
    let option = option.expect("checked above");
    let mut parts = option.id.split(':');
    let _provider = parts.next();
    let environment = parts.next().unwrap_or_default().to_string();
    let flow = parts.next().unwrap_or_default().to_string();
    Ok(CheckedLink {
        option,
        environment,
        flow,
        customer_name: input.customer_name.trim().to_string(),
        phone: phone.unwrap_or_default(),
        email,
        internal_ref: Some(input.internal_ref.trim().to_string()).filter(|r| !r.is_empty()),
        documents,
        idempotency_key: key.to_string(),
        customer_link,
    })
}

pub(super) fn search_text(row_parts: &[Option<&str>]) -> String {
    row_parts
        .iter()
        .flatten()
        .map(|p| p.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the provider answered, reduced to what is stored.
pub(super) struct ProviderLink {
    pub(super) url: String,
    pub(super) expires_at: i64,
    pub(super) token: Option<String>,
    pub(super) journey_id: Option<String>,
    pub(super) reference_id: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn call_provider(
    state: &AppState,
    row: &CredentialRow,
    unlocked: Result<Option<Opened>, ProviderError>,
    flow: &str,
    public_id: &str,
    client_ref_id: Option<&str>,
    documents: &[String],
    sandbox: bool,
) -> Result<ProviderLink, ProviderError> {
    let Some(Opened {
        settings,
        mut secrets,
        ..
    }) = unlocked?
    else {
        // Opening a given version always finds it.
        return Err(ProviderError::Config(
            "the credential could not be read (it is no longer stored)".into(),
        ));
    };
    let setting = |name: &str| settings.get(name).cloned().unwrap_or_default();
    let now = db::now();
    let return_to = return_url(state, public_id);
    if row.kind == CredentialKind::EkoDigilocker.as_str() {
        let creds = eko::EkoCredentials::from_stored(&settings, &mut secrets);
        let link = eko::create_digilocker_url(
            &state.providers,
            &creds,
            client_ref_id.unwrap_or_default(),
            documents,
            &return_to,
        )
        .await?;
        Ok(ProviderLink {
            url: link.url,
            expires_at: now + state.config.eko_link_lifetime.as_secs() as i64,
            token: None,
            journey_id: None,
            reference_id: Some(link.reference_id),
        })
    } else {
        let creds = message_central::McCredentials::from_stored(&settings, &mut secrets);
        let flow_id = setting(if flow == "premium" {
            "premium_flow_id"
        } else {
            "basic_flow_id"
        });
        let result = message_central::generate_url_returning_to(
            &state.providers,
            &creds,
            &flow_id,
            sandbox.then_some(return_to.as_str()),
        )
        .await;
        let link = result?;
        Ok(ProviderLink {
            url: link.url,
            expires_at: now + link.expires_in_minutes.clamp(1, 24 * 60) * 60,
            token: link.token,
            journey_id: link.journey_id,
            reference_id: None,
        })
    }
}

/// Creates a link: the session row first (`creating`), then the provider call, then the
/// link (`created`) or the failure (`failed`), each with its timeline event and audit row.
/// A second submission of the same form returns the first one's session, without a call.
pub async fn create(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    input: NewLinkInput,
) -> Result<SessionDetail, AppError> {
    let active = credential_repo::list_active(&state.db.pool)
        .instrument(crate::server::timing::phase_span("2 active credentials"))
        .await?;
    let options = options_with_credentials(state, &active);
    let offered: Vec<LinkOption> = options.iter().map(|(o, _)| o.clone()).collect();
    let checked = match check_input(&input, &offered, &state.config.customer_links) {
        Ok(checked) => checked,
        // A resubmitted form whose first submission went through is answered with that
        // session even if the form would no longer pass (say, the flow was switched off).
        Err(error) => {
            return match repo::find_by_key(&state.db.pool, input.idempotency_key.trim()).await? {
                Some(existing) => replay(state, user, existing).await,
                None => Err(error),
            };
        }
    };
    let credential = credential_of(&options, &checked.option).ok_or_else(|| {
        AppError::field(
            "option",
            "This provider flow is not available any more. Choose again.",
        )
    })?;
    start(
        state,
        meta,
        user,
        &checked,
        credential,
        None,
        send::channels_from(&active),
    )
    .await
}

async fn replay(
    state: &AppState,
    user: &AuthUser,
    existing: SessionRow,
) -> Result<SessionDetail, AppError> {
    if existing.created_by != user.id {
        return Err(AppError::Conflict(
            "This form was already used by someone else. Reload the page.".into(),
        ));
    }
    // The first submission may still be waiting for the provider: wait for its answer
    // rather than calling again.
    let deadline = tokio::time::Instant::now()
        + state.config.provider_request_timeout
        + Duration::from_secs(5);
    let mut row = existing;
    while status_of(&row) == KycStatus::Creating && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut conn = state.db.pool.acquire().await?;
        row = repo::find(&mut conn, row.id)
            .await?
            .ok_or_else(|| AppError::NotFound("The session vanished.".into()))?;
    }
    detail_of(state, &row, true).await
}

/// A new session before anything is written: the checked form, its credential, and the ids
/// and texts chosen for it.
struct Draft<'a> {
    checked: &'a CheckedLink,
    credential: &'a CredentialRow,
    /// The session a regeneration replaces.
    supersedes: Option<&'a SessionRow>,
    public_id: String,
    client_ref_id: Option<String>,
    /// The documents, comma-separated as stored.
    documents: String,
    search_text: String,
    /// The `creating` event's text.
    asked: String,
    now: i64,
    /// The customer link's code and expiry, when the session hands one out.
    customer_code: Option<String>,
    link_expires_at: i64,
    /// Provider URLs the customer link may mint.
    mint_limit: i64,
    /// Whether the customer page asks a one-time code first.
    otp_required: bool,
}

impl<'a> Draft<'a> {
    fn new(
        state: &AppState,
        checked: &'a CheckedLink,
        credential: &'a CredentialRow,
        supersedes: Option<&'a SessionRow>,
    ) -> Self {
        let now = db::now();
        let settings = &state.config.customer_links;
        let customer_code = checked.customer_link.as_ref().map(|_| new_customer_code());
        let provider = checked.option.provider;
        let public_id = new_public_id();
        let client_ref_id = (provider == Provider::Eko).then(eko::new_client_ref_id);
        let search_text = search_text(&[
            Some(&checked.customer_name),
            Some(&checked.phone),
            checked.email.as_deref(),
            checked.internal_ref.as_deref(),
            client_ref_id.as_deref(),
            Some(&public_id),
        ]);
        Draft {
            checked,
            credential,
            supersedes,
            public_id,
            client_ref_id,
            documents: checked.documents.join(","),
            search_text,
            asked: format!(
                "Asked {} for a link.",
                provider_label(provider, &checked.flow)
            ),
            now,
            link_expires_at: now
                + checked
                    .customer_link
                    .as_ref()
                    .map_or(0, |c| c.lifetime.as_secs() as i64),
            customer_code,
            mint_limit: settings.mint_limit,
            otp_required: settings.code_flows.contains(&checked.flow),
        }
    }

    fn provider(&self) -> Provider {
        self.checked.option.provider
    }

    /// Whether the link spends one of a Message Central trial account's links.
    fn is_trial(&self) -> bool {
        self.provider() == Provider::MessageCentral && self.checked.environment == "trial"
    }

    /// The row written in `creating`.
    fn new_session(&self, created_by: i64) -> repo::NewSession<'_> {
        let checked = self.checked;
        repo::NewSession {
            public_id: &self.public_id,
            idempotency_key: &checked.idempotency_key,
            provider: self.provider().as_str(),
            flow: &checked.flow,
            environment: &checked.environment,
            credential_id: self.credential.id,
            sandbox: checked.option.sandbox,
            customer_name: &checked.customer_name,
            phone: &checked.phone,
            email: checked.email.as_deref(),
            internal_ref: checked.internal_ref.as_deref(),
            documents: &self.documents,
            consent_note: CONSENT_NOTE,
            created_by,
            client_ref_id: self.client_ref_id.as_deref(),
            supersedes: self.supersedes.map(|s| s.id),
            search_text: &self.search_text,
            now: self.now,
            customer_link: self
                .customer_code
                .as_deref()
                .zip(checked.customer_link.as_ref())
                .map(|(code, link)| repo::NewCustomerLink {
                    code,
                    expires_at: self.link_expires_at,
                    mint_limit: self.mint_limit,
                    otp_required: self.otp_required,
                    reminders_on: link.reminders_on,
                }),
        }
    }

    /// The audit row's detail, whatever the outcome.
    fn audit_detail(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.provider(),
            "flow": self.checked.flow,
            "environment": self.checked.environment,
            "sandbox": self.checked.option.sandbox,
            "phone": validation::mask_phone(&self.checked.phone),
            "regenerated_from": self.supersedes.map(|s| s.public_id.clone()),
            "handover": if self.customer_code.is_some() {
                crate::types::HANDOVER_CUSTOMER_LINK
            } else {
                crate::types::HANDOVER_PROVIDER_URL
            },
        })
    }
}

/// Creates the session of a checked form in four phases: reserve a trial link, write the
/// `creating` row, call the provider, record the outcome.
async fn start(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    checked: &CheckedLink,
    credential: &CredentialRow,
    supersedes: Option<&SessionRow>,
    channels: Vec<String>,
) -> Result<SessionDetail, AppError> {
    let draft = Draft::new(state, checked, credential, supersedes);
    if draft.customer_code.is_some() {
        // KYC Desk's own link: no provider call until the customer presses Start.
        return issue(state, meta, user, &draft, channels).await;
    }
    if draft.is_trial() && !credentials::reserve_trial_link(state, credential).await? {
        // The last one may have gone to this very form's first submission.
        if let Some(existing) = repo::find_by_key(&state.db.pool, &checked.idempotency_key).await? {
            return replay(state, user, existing).await;
        }
        return Err(AppError::field(
            "option",
            crate::credential_kinds::trial_links_used_up(),
        ));
    }

    // The credential's secrets are read and opened while the row is written.
    let unlocking = credentials::open_for_call(state, CredentialRef::Version(credential))
        .instrument(crate::server::timing::phase_span(
            "3b credential secrets (alongside)",
        ));
    let (written, unlocked) =
        async { tokio::join!(write_creating(state, user, &draft), unlocking) }
            .instrument(crate::server::timing::phase_span("3 creating write"))
            .await;
    if draft.is_trial() && !matches!(written, Ok(Creating::Written(_))) {
        give_back_trial_link(state, credential).await;
    }
    let id = match written? {
        Creating::Written(id) => id,
        Creating::Resubmitted(existing) => return replay(state, user, *existing).await,
    };

    let answer = call_provider(
        state,
        credential,
        unlocked,
        &checked.flow,
        &draft.public_id,
        draft.client_ref_id.as_deref(),
        &checked.documents,
        checked.option.sandbox,
    )
    .instrument(crate::server::timing::phase_span("4 provider call"))
    .await;
    // The reserved trial link goes back only when the call provably never left (the
    // credential could not be read, or no connection was made); before the outcome's write,
    // which holds the SQLite write turn this statement also takes.
    if draft.is_trial()
        && answer
            .as_ref()
            .is_err_and(|error| !error.may_have_reached_provider())
    {
        give_back_trial_link(state, credential).await;
    }

    let (row, timeline) = record_outcome(state, meta, user, &draft, id, answer)
        .instrument(crate::server::timing::phase_span("5 created write"))
        .await?;
    match timeline {
        Some(timeline) => Ok(detail_from(
            state,
            &row,
            true,
            channels,
            timeline,
            Vec::new(),
            Related {
                supersedes: supersedes.map(|old| old.public_id.clone()),
                superseded_by: None,
            },
        )),
        None => detail_of(state, &row, true).await,
    }
}

/// Issues KYC Desk's customer link: the session is written `issued` with its timeline event
/// and audit row in one transaction (superseding the old session of a regeneration); the
/// provider is not called until the customer presses Start.
async fn issue(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    draft: &Draft<'_>,
    channels: Vec<String>,
) -> Result<SessionDetail, AppError> {
    let mut tx = state.db.begin().await?;
    let new = draft.new_session(user.id);
    let id = match repo::insert(&mut tx, &new).await {
        Ok(id) => id,
        Err(error) if db::users::is_unique_violation(&error) => {
            drop(tx);
            let existing = repo::find_by_key(&state.db.pool, &draft.checked.idempotency_key)
                .await?
                .ok_or_else(|| AppError::Conflict("Submit the form again.".into()))?;
            return replay(state, user, existing).await;
        }
        Err(error) => return Err(error.into()),
    };
    let detail = format!(
        "Customer link issued for {}; valid until {}. The provider's URL is made when the customer presses Start.",
        provider_label(draft.provider(), &draft.checked.flow),
        db::format_time(draft.link_expires_at)
    );
    repo::add_event(&mut tx, id, "issued", &user.email, &detail, draft.now).await?;
    if let Some(old) = draft.supersedes {
        supersede(&mut tx, user, old, id, &draft.public_id).await?;
    }
    let action = if draft.supersedes.is_some() {
        "link.regenerate"
    } else {
        "link.create"
    };
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), action, Outcome::Success)
                .object("kyc_session", &draft.public_id)
                .detail(draft.audit_detail()),
        )
        .await?;
    tx.commit().await?;
    let row = SessionRow::as_inserted(id, &new, draft.provider(), &user.email);
    Ok(detail_from(
        state,
        &row,
        true,
        channels,
        vec![TimelineEvent {
            at: db::format_time(draft.now),
            kind: "issued".into(),
            actor: user.email.clone(),
            detail,
        }],
        Vec::new(),
        Related {
            supersedes: draft.supersedes.map(|old| old.public_id.clone()),
            superseded_by: None,
        },
    ))
}

/// Gives back a reserved trial link; a failure is logged (the caller's answer stands).
pub(super) async fn give_back_trial_link(state: &AppState, credential: &CredentialRow) {
    if let Err(error) = credentials::give_back_trial_link(state, credential).await {
        tracing::error!(%error, "could not give back an unused Message Central trial link");
    }
}

/// What writing a new session's `creating` row came to.
enum Creating {
    /// The row was written; its id.
    Written(i64),
    /// The form was already submitted; the session that submission made.
    Resubmitted(Box<SessionRow>),
}

/// Writes the `creating` row and its timeline event, before the provider is called.
async fn write_creating(
    state: &AppState,
    user: &AuthUser,
    draft: &Draft<'_>,
) -> Result<Creating, AppError> {
    let mut tx = state.db.begin().await?;
    let inserted = repo::insert(&mut tx, &draft.new_session(user.id)).await;
    let id = match inserted {
        Ok(id) => id,
        // A resubmission (double click, retried request) meets the unique idempotency key.
        Err(error) if db::users::is_unique_violation(&error) => {
            drop(tx);
            let existing = repo::find_by_key(&state.db.pool, &draft.checked.idempotency_key)
                .await?
                .ok_or_else(|| AppError::Conflict("Submit the form again.".into()))?;
            return Ok(Creating::Resubmitted(Box::new(existing)));
        }
        Err(error) => return Err(error.into()),
    };
    repo::add_event(
        &mut tx,
        id,
        "creating",
        &user.email,
        &draft.asked,
        draft.now,
    )
    .await?;
    tx.commit().await?;
    Ok(Creating::Written(id))
}

/// A just-created session as this request wrote it, and its timeline.
type Known = (SessionRow, Vec<TimelineEvent>);

/// Records the provider's answer: the link (`created`, superseding the old session of a
/// regeneration) or the failure (`failed`), then the audit row, in one transaction. Returns
/// the session's row, and its timeline when this request wrote all of it.
async fn record_outcome(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    draft: &Draft<'_>,
    id: i64,
    answer: Result<ProviderLink, ProviderError>,
) -> Result<(SessionRow, Option<Vec<TimelineEvent>>), AppError> {
    let mut tx = state.db.begin().await?;
    let action = if draft.supersedes.is_some() {
        "link.regenerate"
    } else {
        "link.create"
    };
    let (event, known) = match answer {
        Ok(link) => {
            let known = record_created(&mut tx, user, draft, id, &link).await?;
            if let Some(old) = draft.supersedes {
                supersede(&mut tx, user, old, id, &draft.public_id).await?;
            }
            (
                AuditEvent::new(user.actor(), action, Outcome::Success),
                known,
            )
        }
        Err(error) => {
            let reason = record_failure(&mut tx, meta, draft, id, &error).await?;
            (
                AuditEvent::new(user.actor(), action, Outcome::Failure).reason(&reason),
                None,
            )
        }
    };
    let event = event
        .object("kyc_session", &draft.public_id)
        .detail(draft.audit_detail());
    let (row, timeline) = match known {
        Some((row, timeline)) => (row, Some(timeline)),
        None => {
            let row = repo::find(&mut tx, id)
                .await?
                .ok_or_else(|| AppError::NotFound("The session vanished.".into()))?;
            (row, None)
        }
    };
    // Last, so the chain lock is held only for the append and the commit.
    async {
        state.audit.append(&mut tx, meta, &event).await?;
        tx.commit().await
    }
    .instrument(crate::server::timing::phase_span(
        "5b audit append and commit",
    ))
    .await?;
    Ok((row, timeline))
}

/// Stores the link; on the usual path this request wrote the new session's whole row and
/// timeline, so they come back for the result card rather than being read again. `None`
/// when the sweeper gave up on the call meanwhile (the answer is kept on the timeline, the
/// session stays failed).
async fn record_created(
    tx: &mut sqlx::AnyConnection,
    user: &AuthUser,
    draft: &Draft<'_>,
    id: i64,
    link: &ProviderLink,
) -> Result<Option<Known>, AppError> {
    let text = search_text(&[
        Some(&draft.search_text),
        link.journey_id.as_deref(),
        link.reference_id.as_deref(),
    ]);
    let first_poll =
        (draft.provider() == Provider::Eko).then_some(db::now() + jobs::POLL_DELAYS[0]);
    let created_at = db::now();
    let created_link = repo::CreatedLink {
        url: &link.url,
        expires_at: link.expires_at,
        token: link.token.as_deref(),
        journey_id: link.journey_id.as_deref(),
        reference_id: link.reference_id.as_deref(),
        next_poll_at: first_poll,
        search_text: &text,
    };
    if !repo::mark_created(&mut *tx, id, &created_link, created_at).await? {
        repo::add_event(
            &mut *tx,
            id,
            "late_answer",
            "system",
            "The provider answered after the session had been marked failed; the link was not used.",
            db::now(),
        )
        .await?;
        return Ok(None);
    }
    let created = format!(
        "The provider's URL was created for an in-person hand-over; valid until {}.",
        db::format_time(link.expires_at)
    );
    repo::add_event(&mut *tx, id, "started", &user.email, &created, created_at).await?;
    let timeline = [
        ("creating", draft.now, draft.asked.clone()),
        ("started", created_at, created),
    ]
    .into_iter()
    .map(|(kind, at, detail)| TimelineEvent {
        at: db::format_time(at),
        kind: kind.into(),
        actor: user.email.clone(),
        detail,
    })
    .collect();
    let row = SessionRow::as_inserted(
        id,
        &draft.new_session(user.id),
        draft.provider(),
        &user.email,
    )
    .with_created_link(&created_link, created_at);
    Ok(Some((row, timeline)))
}

/// Points a regenerated session's old session at the new one. Only an open session changes
/// state; a failed or expired one is just linked.
async fn supersede(
    tx: &mut sqlx::AnyConnection,
    user: &AuthUser,
    old: &SessionRow,
    id: i64,
    public_id: &str,
) -> Result<(), AppError> {
    if status_of(old).is_open() {
        move_to(
            &mut *tx,
            old,
            KycStatus::Superseded,
            &user.email,
            &format!("Replaced by a new link (session {public_id})."),
            None,
        )
        .await?;
    } else {
        repo::add_event(
            &mut *tx,
            old.id,
            "regenerated",
            &user.email,
            &format!("A new link was made for this customer (session {public_id})."),
            db::now(),
        )
        .await?;
    }
    repo::set_superseded_by(&mut *tx, old.id, id).await?;
    Ok(())
}

/// Fails the session with the provider's error in plain words; returns those words.
async fn record_failure(
    tx: &mut sqlx::AnyConnection,
    meta: &RequestMeta,
    draft: &Draft<'_>,
    id: i64,
    error: &ProviderError,
) -> Result<String, AppError> {
    let reason = error.operator_message();
    tracing::warn!(request_id = %meta.request_id, session = %draft.public_id, %error, "link creation failed");
    // Write before reading: a SQLite transaction that reads first may not be allowed to
    // write later.
    let row = repo::lock_and_find(&mut *tx, id, db::now())
        .await?
        .ok_or_else(|| AppError::NotFound("The session vanished.".into()))?;
    move_to(
        &mut *tx,
        &row,
        KycStatus::Failed,
        "system",
        &format!("The provider did not create a link: {reason}"),
        Some(&reason),
    )
    .await?;
    Ok(reason)
}

/// Creates a new link for the same customer and flow; the old session becomes
/// `superseded` and both point at each other.
pub async fn regenerate(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    public_id: &str,
    idempotency_key: &str,
) -> Result<SessionDetail, AppError> {
    let row = session(state, public_id).await?;
    let status = status_of(&row);
    if !(status.is_open()
        || matches!(
            status,
            KycStatus::Expired | KycStatus::Failed | KycStatus::Withdrawn
        ))
    {
        return Err(AppError::Conflict(format!(
            "A {} session cannot be regenerated.",
            status.label().to_lowercase()
        )));
    }
    if let Some(existing) = repo::find_by_key(&state.db.pool, idempotency_key.trim()).await? {
        return replay(state, user, existing).await;
    }
    let active = credential_repo::list_active(&state.db.pool)
        .instrument(crate::server::timing::phase_span("2 active credentials"))
        .await?;
    let options = options_with_credentials(state, &active);
    let offered: Vec<LinkOption> = options.iter().map(|(o, _)| o.clone()).collect();
    let input = NewLinkInput {
        option: option_id(row.provider, &row.environment, &row.flow),
        customer_name: row.customer_name.clone(),
        phone: row.phone.clone(),
        email: row.email.clone().unwrap_or_default(),
        internal_ref: row.internal_ref.clone().unwrap_or_default(),
        documents: vec![row.documents.clone()],
        consent: "on".into(),
        idempotency_key: idempotency_key.into(),
        handover: if row.customer_code.is_some() {
            crate::types::HANDOVER_CUSTOMER_LINK
        } else {
            crate::types::HANDOVER_PROVIDER_URL
        }
        .into(),
        lifetime_hours: String::new(),
        reminders: if row.customer_code.is_some() && row.reminders_on == 0 {
            "off".into()
        } else {
            String::new()
        },
    };
    let checked =
        check_input(&input, &offered, &state.config.customer_links).map_err(
            |error| match error {
                AppError::Validation { fields, .. } => AppError::Conflict(
                    fields
                        .first()
                        .map(|f| f.message.clone())
                        .unwrap_or_else(|| "This session cannot be regenerated.".into()),
                ),
                other => other,
            },
        )?;
    let credential = credential_of(&options, &checked.option).ok_or_else(|| {
        AppError::Conflict("This provider flow is not available any more.".into())
    })?;
    start(
        state,
        meta,
        user,
        &checked,
        credential,
        Some(&row),
        send::channels_from(&active),
    )
    .await
}
