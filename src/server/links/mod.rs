//! KYC sessions: the state machine, link creation against either provider, the views the
//! pages read, cancel and regenerate. Returns, the Eko poller and expiry live in [`jobs`];
//! handing a link over in [`send`].

pub mod jobs;
pub mod send;

use crate::credentials::CredentialKind;
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::auth::AuthUser;
use crate::server::credentials as vault_credentials;
use crate::server::db::credentials::CredentialRow;
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self, credentials as credential_repo};
use crate::server::providers::{ProviderError, eko, message_central};
use crate::server::state::AppState;
use crate::server::timing;
use crate::types::{
    AppError, DeliveryView, FieldError, KycStatus, LinkFormOptions, LinkOption, NewLinkInput, Role,
    SessionDetail, SessionFilter, SessionPage, SessionSummary, TimelineEvent,
};
use crate::validation;
use std::collections::BTreeMap;
use std::time::Duration;

/// Sessions per list page.
pub const PAGE_SIZE: i64 = 50;

/// The consent statement stored with every session.
pub const CONSENT_NOTE: &str =
    "The operator confirmed that the customer consented to this identity verification.";

/// The label of a provider and flow.
pub fn provider_label(provider: &str, flow: &str) -> String {
    match (provider, flow) {
        ("message_central", "basic") => "Message Central · Basic".into(),
        ("message_central", "premium") => "Message Central · Premium".into(),
        ("eko", _) => "Eko DigiLocker".into(),
        (provider, flow) => format!("{provider} · {flow}"),
    }
}

fn status_of(row: &SessionRow) -> KycStatus {
    KycStatus::parse(&row.status).unwrap_or(KycStatus::Failed)
}

/// A random, unguessable public id: 24 lower-case letters (about 113 bits). Letters only, so
/// no id ever looks like a phone or Aadhaar number to a reader or to a digit-masking guard.
pub fn new_public_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
        .collect()
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

/// Moves `row` to `to` through the one table of legal moves, with a timeline event (and the
/// caller's audit row, in the same transaction). An illegal move is refused and logged.
pub async fn move_to(
    conn: &mut sqlx::AnyConnection,
    row: &SessionRow,
    to: KycStatus,
    actor: &str,
    detail: &str,
    error: Option<&str>,
) -> Result<(), AppError> {
    let from = status_of(row);
    if !from.may_become(to) {
        tracing::warn!(
            session = %row.public_id,
            from = from.as_str(),
            to = to.as_str(),
            "illegal KYC session transition refused"
        );
        return Err(AppError::Conflict(format!(
            "This session is {} and cannot become {}.",
            from.label().to_lowercase(),
            to.label().to_lowercase()
        )));
    }
    let now = db::now();
    if !repo::set_status(
        &mut *conn,
        row.id,
        from.as_str(),
        to.as_str(),
        to.is_final(),
        error,
        now,
    )
    .await?
    {
        return Err(AppError::Conflict(
            "This session changed meanwhile. Reload the page.".into(),
        ));
    }
    repo::add_event(&mut *conn, row.id, to.as_str(), actor, detail, now).await?;
    Ok(())
}

/// The provider flows that can issue links now, and the channels that can send them.
pub async fn options(state: &AppState) -> Result<LinkFormOptions, AppError> {
    Ok(options_from(
        state,
        &credential_repo::list_active(&state.db.pool).await?,
    ))
}

/// The form options the given active credentials allow, each with its credential.
fn options_with_credentials<'a>(
    state: &AppState,
    active: &'a [CredentialRow],
) -> Vec<(LinkOption, &'a CredentialRow)> {
    let sandbox_prefix = sandbox_base(state);
    let find = |kind: CredentialKind, environment: &str| {
        active
            .iter()
            .find(|row| row.kind == kind.as_str() && row.environment == environment)
    };
    let mut options = Vec::new();
    for environment in CredentialKind::MessageCentralEkyc.environments() {
        let Some(row) = find(CredentialKind::MessageCentralEkyc, environment) else {
            continue;
        };
        let settings: BTreeMap<String, String> =
            serde_json::from_str(&row.settings).unwrap_or_default();
        let sandbox = settings
            .get("base_url")
            .is_some_and(|u| u.starts_with(&sandbox_prefix));
        let trial = *environment == "trial";
        for (flow, field, name) in [
            ("basic", "basic_flow_id", "Basic"),
            ("premium", "premium_flow_id", "Premium"),
        ] {
            if settings.get(field).is_none_or(|id| id.trim().is_empty()) {
                continue;
            }
            let option = LinkOption {
                id: format!("message_central:{environment}:{flow}"),
                label: format!(
                    "Message Central · {name} ({environment}{})",
                    if sandbox { ", sandbox" } else { "" }
                ),
                provider: "message_central".into(),
                sandbox,
                documents: Vec::new(),
                trial_links_left: trial
                    .then(|| (crate::credentials::TRIAL_LINKS - row.trial_links_used).max(0)),
            };
            options.push((option, row));
        }
    }
    for environment in CredentialKind::EkoDigilocker.environments() {
        let Some(row) = find(CredentialKind::EkoDigilocker, environment) else {
            continue;
        };
        let settings: BTreeMap<String, String> =
            serde_json::from_str(&row.settings).unwrap_or_default();
        let sandbox = settings
            .get("base_url")
            .is_some_and(|u| u.starts_with(&sandbox_prefix));
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
            id: format!("eko:{environment}:digilocker"),
            label: format!(
                "Eko DigiLocker ({environment}{})",
                if sandbox { ", sandbox" } else { "" }
            ),
            provider: "eko".into(),
            sandbox,
            documents,
            trial_links_left: None,
        };
        options.push((option, row));
    }
    options
}

fn options_from(state: &AppState, active: &[CredentialRow]) -> LinkFormOptions {
    LinkFormOptions {
        options: options_with_credentials(state, active)
            .into_iter()
            .map(|(option, _)| option)
            .collect(),
        channels: send::channels_from(active),
    }
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
}

fn check_input(input: &NewLinkInput, options: &[LinkOption]) -> Result<CheckedLink, AppError> {
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
        if option.provider == "eko" {
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
            problem("option", crate::credentials::trial_links_used_up());
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
    })
}

fn search_text(row_parts: &[Option<&str>]) -> String {
    row_parts
        .iter()
        .flatten()
        .map(|p| p.to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the provider answered, reduced to what is stored.
struct ProviderLink {
    url: String,
    expires_at: i64,
    token: Option<String>,
    journey_id: Option<String>,
    reference_id: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn call_provider(
    state: &AppState,
    row: &CredentialRow,
    unlocked: Result<vault_credentials::Unlocked, AppError>,
    flow: &str,
    public_id: &str,
    client_ref_id: Option<&str>,
    documents: &[String],
    sandbox: bool,
) -> Result<ProviderLink, ProviderError> {
    let provider = if row.kind == CredentialKind::EkoDigilocker.as_str() {
        "eko"
    } else {
        "message_central"
    };
    let (settings, mut secrets) = unlocked
        .map_err(|e| ProviderError::Config(format!("the credential could not be read ({e})")))?;
    let setting = |name: &str| settings.get(name).cloned().unwrap_or_default();
    let now = db::now();
    let return_to = return_url(state, public_id);
    if provider == "eko" {
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
    let started = std::time::Instant::now();
    let active = credential_repo::list_active(&state.db.pool).await?;
    timing::record("2 active credentials", started);
    let options = options_with_credentials(state, &active);
    let offered: Vec<LinkOption> = options.iter().map(|(o, _)| o.clone()).collect();
    let checked = match check_input(&input, &offered) {
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
    let credential = options
        .iter()
        .find(|(o, _)| o.id == checked.option.id)
        .map(|(_, row)| *row)
        .ok_or_else(|| {
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

/// What writing a new session's `creating` row came to.
enum Creating {
    /// The row was written; its id.
    Written(i64),
    /// The form was already submitted; the session that submission made.
    Resubmitted(Box<SessionRow>),
}

async fn start(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    checked: &CheckedLink,
    credential: &CredentialRow,
    supersedes: Option<&SessionRow>,
    channels: Vec<String>,
) -> Result<SessionDetail, AppError> {
    let provider = checked.option.provider.as_str();
    let public_id = new_public_id();
    let client_ref_id = (provider == "eko").then(eko::new_client_ref_id);
    let documents = checked.documents.join(",");
    let now = db::now();
    let text = search_text(&[
        Some(&checked.customer_name),
        Some(&checked.phone),
        checked.email.as_deref(),
        checked.internal_ref.as_deref(),
        client_ref_id.as_deref(),
        Some(&public_id),
    ]);
    // A trial account's link is taken before the call (one statement, so concurrent
    // creations cannot overspend the five), and given back if no call is made.
    let trial = provider == "message_central" && checked.environment == "trial";
    if trial
        && !credential_repo::reserve_trial_link(
            &state.db,
            credential.id,
            crate::credentials::TRIAL_LINKS,
        )
        .await?
    {
        // The last one may have gone to this very form's first submission.
        if let Some(existing) = repo::find_by_key(&state.db.pool, &checked.idempotency_key).await? {
            return replay(state, user, existing).await;
        }
        return Err(AppError::field(
            "option",
            crate::credentials::trial_links_used_up(),
        ));
    }
    let asked = format!(
        "Asked {} for a link.",
        provider_label(provider, &checked.flow)
    );
    // The credential's secrets are read and opened while the row is written.
    let writing = async {
        let mut tx = state.db.begin().await?;
        let inserted = repo::insert(
            &mut tx,
            &repo::NewSession {
                public_id: &public_id,
                idempotency_key: &checked.idempotency_key,
                provider,
                flow: &checked.flow,
                environment: &checked.environment,
                credential_id: credential.id,
                sandbox: checked.option.sandbox,
                customer_name: &checked.customer_name,
                phone: &checked.phone,
                email: checked.email.as_deref(),
                internal_ref: checked.internal_ref.as_deref(),
                documents: &documents,
                consent_note: CONSENT_NOTE,
                created_by: user.id,
                client_ref_id: client_ref_id.as_deref(),
                supersedes: supersedes.map(|s| s.id),
                search_text: &text,
                now,
            },
        )
        .await;
        let id = match inserted {
            Ok(id) => id,
            // A resubmission (double click, retried request) meets the unique idempotency key.
            Err(error) if db::users::is_unique_violation(&error) => {
                drop(tx);
                let existing = repo::find_by_key(&state.db.pool, &checked.idempotency_key)
                    .await?
                    .ok_or_else(|| AppError::Conflict("Submit the form again.".into()))?;
                return Ok(Creating::Resubmitted(Box::new(existing)));
            }
            Err(error) => return Err(error.into()),
        };
        repo::add_event(&mut tx, id, "creating", &user.email, &asked, now).await?;
        tx.commit().await?;
        Ok(Creating::Written(id))
    };
    let started = std::time::Instant::now();
    let unlocking = async {
        let unlocked = vault_credentials::unlock_row(state, credential).await;
        timing::record("3b credential secrets (alongside)", started);
        unlocked
    };
    let (written, unlocked): (Result<Creating, AppError>, _) = tokio::join!(writing, unlocking);
    timing::record("3 creating write", started);
    if trial
        && !matches!(written, Ok(Creating::Written(_)))
        && let Err(error) = credential_repo::release_trial_link(&state.db, credential.id).await
    {
        tracing::error!(%error, "could not give back an unused Message Central trial link");
    }
    let id = match written? {
        Creating::Written(id) => id,
        Creating::Resubmitted(existing) => return replay(state, user, *existing).await,
    };

    let started = std::time::Instant::now();
    let answer = call_provider(
        state,
        credential,
        unlocked,
        &checked.flow,
        &public_id,
        client_ref_id.as_deref(),
        &checked.documents,
        checked.option.sandbox,
    )
    .await;
    timing::record("4 provider call", started);

    // The reserved trial link goes back only when the call provably never left (the
    // credential could not be read, or no connection was made); before the write below,
    // which holds the SQLite write turn this statement also takes.
    if trial
        && answer
            .as_ref()
            .is_err_and(|error| !error.may_have_reached_provider())
        && let Err(error) = credential_repo::release_trial_link(&state.db, credential.id).await
    {
        tracing::error!(%error, "could not give back an unused Message Central trial link");
    }
    let started = std::time::Instant::now();
    let mut tx = state.db.begin().await?;
    let audit_object = ("kyc_session", public_id.clone());
    let base_detail = serde_json::json!({
        "provider": provider,
        "flow": checked.flow,
        "environment": checked.environment,
        "sandbox": checked.option.sandbox,
        "phone": validation::mask_phone(&checked.phone),
        "regenerated_from": supersedes.map(|s| s.public_id.clone()),
    });
    let action = if supersedes.is_some() {
        "link.regenerate"
    } else {
        "link.create"
    };
    // On the usual path this request wrote the new session's whole row and timeline, so the
    // result card is built from what was written rather than read back.
    let mut known = None;
    let event = match answer {
        Ok(link) => {
            let text = search_text(&[
                Some(&text),
                link.journey_id.as_deref(),
                link.reference_id.as_deref(),
            ]);
            let first_poll = (provider == "eko").then_some(db::now() + jobs::POLL_DELAYS[0]);
            let created_at = db::now();
            if !repo::mark_created(
                &mut tx,
                id,
                &repo::CreatedLink {
                    url: &link.url,
                    expires_at: link.expires_at,
                    token: link.token.as_deref(),
                    journey_id: link.journey_id.as_deref(),
                    reference_id: link.reference_id.as_deref(),
                    next_poll_at: first_poll,
                    search_text: &text,
                },
                created_at,
            )
            .await?
            {
                // The sweeper gave up on this call meanwhile; the answer is kept on the
                // timeline, the session stays failed.
                repo::add_event(
                    &mut tx,
                    id,
                    "late_answer",
                    "system",
                    "The provider answered after the session had been marked failed; the link was not used.",
                    db::now(),
                )
                .await?;
            } else {
                let created = format!(
                    "Link created; valid until {}.",
                    db::format_time(link.expires_at)
                );
                repo::add_event(&mut tx, id, "created", &user.email, &created, created_at).await?;
                let timeline = [
                    ("creating", now, asked.clone()),
                    ("created", created_at, created),
                ]
                .into_iter()
                .map(|(kind, at, detail)| TimelineEvent {
                    at: db::format_time(at),
                    kind: kind.into(),
                    actor: user.email.clone(),
                    detail,
                })
                .collect::<Vec<_>>();
                let row = SessionRow {
                    id,
                    public_id: public_id.clone(),
                    idempotency_key: checked.idempotency_key.clone(),
                    provider: provider.to_string(),
                    flow: checked.flow.clone(),
                    environment: checked.environment.clone(),
                    credential_id: credential.id,
                    sandbox: i64::from(checked.option.sandbox),
                    customer_name: checked.customer_name.clone(),
                    phone: checked.phone.clone(),
                    email: checked.email.clone(),
                    internal_ref: checked.internal_ref.clone(),
                    documents: documents.clone(),
                    consent_note: CONSENT_NOTE.to_string(),
                    status: KycStatus::Created.as_str().to_string(),
                    link_url: Some(link.url.clone()),
                    expires_at: Some(link.expires_at),
                    provider_token: link.token.clone(),
                    journey_id: link.journey_id.clone(),
                    reference_id: link.reference_id.clone(),
                    client_ref_id: client_ref_id.clone(),
                    verification_id: None,
                    result: None,
                    last_error: None,
                    created_by: user.id,
                    created_at: now,
                    updated_at: created_at,
                    ended_at: None,
                    supersedes: supersedes.map(|s| s.id),
                    superseded_by: None,
                    next_poll_at: first_poll,
                    poll_count: 0,
                    creator_email: user.email.clone(),
                };
                known = Some((row, timeline));
            }
            if let Some(old) = supersedes {
                // Only an open session changes state; a failed or expired one is just linked.
                if status_of(old).is_open() {
                    move_to(
                        &mut tx,
                        old,
                        KycStatus::Superseded,
                        &user.email,
                        &format!("Replaced by a new link (session {public_id})."),
                        None,
                    )
                    .await?;
                } else {
                    repo::add_event(
                        &mut tx,
                        old.id,
                        "regenerated",
                        &user.email,
                        &format!("A new link was made for this customer (session {public_id})."),
                        db::now(),
                    )
                    .await?;
                }
                repo::set_superseded_by(&mut tx, old.id, id).await?;
            }
            AuditEvent::new(user.actor(), action, Outcome::Success)
                .object(audit_object.0, &audit_object.1)
                .detail(base_detail)
        }
        Err(error) => {
            let reason = error.operator_message();
            tracing::warn!(request_id = %meta.request_id, session = %public_id, %error, "link creation failed");
            // Write before reading: a SQLite transaction that reads first may not be allowed
            // to write later.
            repo::touch(&mut tx, id, db::now()).await?;
            let row = repo::find(&mut tx, id)
                .await?
                .ok_or_else(|| AppError::NotFound("The session vanished.".into()))?;
            move_to(
                &mut tx,
                &row,
                KycStatus::Failed,
                "system",
                &format!("The provider did not create a link: {reason}"),
                Some(&reason),
            )
            .await?;
            AuditEvent::new(user.actor(), action, Outcome::Failure)
                .object(audit_object.0, &audit_object.1)
                .reason(&reason)
                .detail(base_detail)
        }
    };
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
    let appending = std::time::Instant::now();
    state.audit.append(&mut tx, meta, &event).await?;
    tx.commit().await?;
    timing::record("5b audit append and commit", appending);
    timing::record("5 created write", started);
    match timeline {
        Some(timeline) => Ok(detail_from(
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

fn summary_of(row: &SessionRow) -> SessionSummary {
    let status = status_of(row);
    SessionSummary {
        public_id: row.public_id.clone(),
        customer_name: row.customer_name.clone(),
        phone_masked: validation::mask_phone(&row.phone),
        provider: row.provider.clone(),
        flow: row.flow.clone(),
        provider_label: provider_label(&row.provider, &row.flow),
        status,
        created_by: row.creator_email.clone(),
        created_at: db::format_time(row.created_at),
        expires_or_ended: match (row.ended_at, row.expires_at) {
            (Some(ended), _) if status.is_final() => format!("ended {}", db::format_time(ended)),
            (_, Some(expires)) => format!("expires {}", db::format_time(expires)),
            _ => "—".into(),
        },
        sandbox: row.sandbox != 0,
    }
}

/// An SVG QR code of `text` (our own markup). Served as an image by
/// `GET /sessions/{public_id}/qr.svg`; encoding tries eight masks over the whole symbol, about
/// a millisecond of CPU, so callers draw it on a blocking thread.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

async fn detail_of(
    state: &AppState,
    row: &SessionRow,
    show_contacts: bool,
) -> Result<SessionDetail, AppError> {
    let channels = send::configured_channels(state).await?;
    let (events, deliveries) = tokio::try_join!(
        repo::events(&state.db.pool, row.id),
        repo::deliveries(&state.db.pool, row.id)
    )?;
    let public_of = |id: Option<i64>| async move {
        match id {
            Some(id) => {
                let mut conn = state.db.pool.acquire().await?;
                Ok::<_, AppError>(repo::find(&mut conn, id).await?.map(|r| r.public_id))
            }
            None => Ok(None),
        }
    };
    let related = Related {
        supersedes: public_of(row.supersedes).await?,
        superseded_by: public_of(row.superseded_by).await?,
    };
    Ok(detail_from(
        row,
        show_contacts,
        channels,
        events.into_iter().map(timeline_event).collect(),
        deliveries.into_iter().map(delivery_view).collect(),
        related,
    ))
}

/// The public ids of the sessions a session replaced and was replaced by.
struct Related {
    supersedes: Option<String>,
    superseded_by: Option<String>,
}

fn timeline_event(event: repo::EventRow) -> TimelineEvent {
    TimelineEvent {
        at: db::format_time(event.at),
        kind: event.kind,
        actor: event.actor,
        detail: event.detail,
    }
}

fn delivery_view(delivery: repo::DeliveryRow) -> DeliveryView {
    DeliveryView {
        id: delivery.id,
        channel: delivery.channel,
        destination: delivery.destination_masked,
        outcome: delivery.outcome,
        error: delivery.error,
        by: delivery.by_email.unwrap_or_default(),
        at: db::format_time(delivery.attempted_at),
    }
}

/// A session's detail from its row and what is known about its timeline and deliveries.
fn detail_from(
    row: &SessionRow,
    show_contacts: bool,
    channels: Vec<String>,
    timeline: Vec<TimelineEvent>,
    deliveries: Vec<DeliveryView>,
    related: Related,
) -> SessionDetail {
    let status = status_of(row);
    let mut provider_ids = Vec::new();
    for (label, value) in [
        ("Journey id", &row.journey_id),
        ("Reference id", &row.reference_id),
        ("Client reference", &row.client_ref_id),
        ("Verification id", &row.verification_id),
    ] {
        if let Some(value) = value {
            provider_ids.push((label.to_string(), value.clone()));
        }
    }
    let result: Vec<(String, String)> = row
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    SessionDetail {
        summary: summary_of(row),
        link_url: row.link_url.clone().filter(|_| status.is_open()),
        expires_at_unix: row.expires_at.filter(|_| status.is_open()),
        email_masked: row.email.as_deref().map(|e| {
            if show_contacts {
                validation::mask_email(e)
            } else {
                "***".into()
            }
        }),
        internal_ref: row.internal_ref.clone(),
        documents: row
            .documents
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect(),
        consent_note: row.consent_note.clone(),
        provider_ids,
        result,
        last_error: row.last_error.clone(),
        supersedes: related.supersedes,
        superseded_by: related.superseded_by,
        timeline,
        deliveries,
        channels,
        has_email: row.email.is_some(),
    }
}

async fn session(state: &AppState, public_id: &str) -> Result<SessionRow, AppError> {
    repo::find_public(&state.db.pool, public_id.trim())
        .await?
        .ok_or_else(|| AppError::NotFound("There is no such KYC session.".into()))
}

/// One session's detail; opening it is recorded (a read of personal data).
pub async fn detail(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    public_id: &str,
) -> Result<SessionDetail, AppError> {
    let row = session(state, public_id).await?;
    state
        .audit
        .try_record(
            &state.db,
            meta,
            &AuditEvent::new(user.actor(), "session.view", Outcome::Success)
                .object("kyc_session", &row.public_id),
        )
        .await?;
    detail_of(state, &row, true).await
}

/// Parses the list filters (field-level messages).
pub fn parse_filter(
    filter: &SessionFilter,
    staff: &[(i64, String)],
) -> Result<repo::SessionQuery, AppError> {
    let mut fields = Vec::new();
    let mut problem = |field: &str, message: &str| {
        fields.push(FieldError {
            field: field.into(),
            message: message.into(),
        })
    };
    let mut query = repo::SessionQuery::default();
    let status = filter.status.trim();
    if !status.is_empty() {
        match KycStatus::parse(status) {
            Some(s) => query.status = Some(s.as_str().into()),
            None => problem("status", "Choose a status from the list."),
        }
    }
    match filter.provider.trim() {
        "" => {}
        p @ ("message_central" | "eko") => query.provider = Some(p.into()),
        _ => problem("provider", "Choose Message Central or Eko."),
    }
    match filter.flow.trim() {
        "" => {}
        f @ ("basic" | "premium" | "digilocker") => query.flow = Some(f.into()),
        _ => problem("flow", "Choose Basic, Premium or DigiLocker."),
    }
    let staff_email = filter.staff.trim().to_lowercase();
    if !staff_email.is_empty() {
        match staff.iter().find(|(_, email)| *email == staff_email) {
            Some((id, _)) => query.created_by = Some(*id),
            None => problem("staff", "No staff member has this email."),
        }
    }
    let date = |text: &str| {
        chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp())
    };
    if !filter.from.trim().is_empty() {
        match date(&filter.from) {
            Some(t) => query.from = Some(t),
            None => problem("from", "Use a date like 2026-11-22."),
        }
    }
    if !filter.to.trim().is_empty() {
        match date(&filter.to) {
            Some(t) => query.to = Some(t + 86_400),
            None => problem("to", "Use a date like 2026-11-22."),
        }
    }
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from >= to
    {
        problem("to", "“To” must not be before “From”.");
    }
    let q = filter.q.trim();
    if q.chars().count() > 100 {
        problem("q", "Search for at most 100 characters.");
    } else if q.split_whitespace().count() > 8 {
        problem("q", "Search for at most 8 words.");
    } else if !q.is_empty() {
        let digits = q.chars().filter(char::is_ascii_digit).count();
        match validation::normalize_phone(q) {
            Ok(phone) if digits >= 10 => query.phone = Some(phone),
            _ => query.text = Some(q.to_lowercase()),
        }
    }
    query.before_id = filter.before.filter(|b| *b > 0);
    match AppError::from_fields(fields) {
        Some(error) => Err(error),
        None => Ok(query),
    }
}

async fn staff_list(state: &AppState) -> Result<Vec<(i64, String)>, AppError> {
    Ok(db::users::list(&state.db.pool)
        .await?
        .into_iter()
        .map(|u| (u.id, u.email))
        .collect())
}

/// One page of the sessions list.
pub async fn list(state: &AppState, filter: &SessionFilter) -> Result<SessionPage, AppError> {
    let staff = staff_list(state).await?;
    let query = parse_filter(filter, &staff)?;
    let mut rows = repo::search(&state.db.pool, &query, PAGE_SIZE + 1).await?;
    let next_before = if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(SessionPage {
        sessions: rows.iter().map(summary_of).collect(),
        next_before,
        staff: staff.into_iter().map(|(_, e)| e).collect(),
    })
}

/// Cancels an open session.
pub async fn cancel(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    public_id: &str,
) -> Result<SessionDetail, AppError> {
    let row = session(state, public_id).await?;
    let mut tx = state.db.begin().await?;
    move_to(
        &mut tx,
        &row,
        KycStatus::Cancelled,
        &user.email,
        "Cancelled by staff; the link must not be used.",
        None,
    )
    .await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "link.cancel", Outcome::Success)
                .object("kyc_session", &row.public_id),
        )
        .await?;
    tx.commit().await?;
    let row = session(state, public_id).await?;
    detail_of(state, &row, true).await
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
    if !(status.is_open() || matches!(status, KycStatus::Expired | KycStatus::Failed)) {
        return Err(AppError::Conflict(format!(
            "A {} session cannot be regenerated.",
            status.label().to_lowercase()
        )));
    }
    if let Some(existing) = repo::find_by_key(&state.db.pool, idempotency_key.trim()).await? {
        return replay(state, user, existing).await;
    }
    let started = std::time::Instant::now();
    let active = credential_repo::list_active(&state.db.pool).await?;
    timing::record("2 active credentials", started);
    let options = options_with_credentials(state, &active);
    let offered: Vec<LinkOption> = options.iter().map(|(o, _)| o.clone()).collect();
    let option_id = format!("{}:{}:{}", row.provider, row.environment, row.flow);
    let input = NewLinkInput {
        option: option_id,
        customer_name: row.customer_name.clone(),
        phone: row.phone.clone(),
        email: row.email.clone().unwrap_or_default(),
        internal_ref: row.internal_ref.clone().unwrap_or_default(),
        documents: vec![row.documents.clone()],
        consent: "on".into(),
        idempotency_key: idempotency_key.into(),
    };
    let checked = check_input(&input, &offered).map_err(|error| match error {
        AppError::Validation { fields, .. } => AppError::Conflict(
            fields
                .first()
                .map(|f| f.message.clone())
                .unwrap_or_else(|| "This session cannot be regenerated.".into()),
        ),
        other => other,
    })?;
    let credential = options
        .iter()
        .find(|(o, _)| o.id == checked.option.id)
        .map(|(_, credential)| *credential)
        .ok_or_else(|| {
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

/// Whether `role` may act on sessions (create, send, cancel, regenerate).
pub fn may_act(role: Role) -> bool {
    matches!(role, Role::Operator | Role::Admin)
}

/// The actor of system actions.
pub fn system() -> (RequestMeta, Actor) {
    (RequestMeta::system(), Actor::System)
}

/// The dashboard's figures: counts by status for today / 7 / 30 days, the 30-day funnel,
/// links per day for 14 days, and open links expiring within 10 minutes.
pub async fn dashboard(state: &AppState) -> Result<crate::types::DashboardStats, AppError> {
    let now = db::now();
    let today = now - now.rem_euclid(86_400);
    let mut periods = Vec::new();
    for (label, since) in [
        ("Today", today),
        ("7 days", today - 6 * 86_400),
        ("30 days", today - 29 * 86_400),
    ] {
        let counts = repo::count_by_status(&state.db.pool, since).await?;
        let row: Vec<i64> = KycStatus::ALL
            .iter()
            .map(|s| {
                counts
                    .iter()
                    .find(|(name, _)| name == s.as_str())
                    .map(|(_, n)| *n)
                    .unwrap_or(0)
            })
            .collect();
        periods.push((label.to_string(), row));
    }
    let since = today - 29 * 86_400;
    let created: i64 = periods[2].1.iter().sum();
    let mut funnel = vec![("Created".to_string(), created)];
    for (label, kind) in [
        ("Sent", "sent"),
        ("Returned", "returned"),
        ("Completed", "completed"),
    ] {
        funnel.push((
            label.to_string(),
            repo::count_reached(&state.db.pool, since, kind).await?,
        ));
    }
    // A completed session counts as returned and sent even if those steps were skipped
    // (a link copied by hand, a provider that reports completion directly).
    for i in (1..funnel.len() - 1).rev() {
        funnel[i].1 = funnel[i].1.max(funnel[i + 1].1);
    }
    let first_day = today / 86_400 - 13;
    let per_day_counts = repo::count_per_day(&state.db.pool, first_day * 86_400).await?;
    let per_day = (0..14)
        .map(|offset| {
            let day = first_day + offset;
            let label = chrono::DateTime::from_timestamp(day * 86_400, 0)
                .map(|t| t.format("%m-%d").to_string())
                .unwrap_or_default();
            let count = per_day_counts
                .iter()
                .find(|(d, _)| *d == day)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            (label, count)
        })
        .collect();
    let expiring = repo::expiring(&state.db.pool, now, now + 600)
        .await?
        .iter()
        .map(summary_of)
        .collect();
    Ok(crate::types::DashboardStats {
        periods,
        funnel,
        per_day,
        expiring,
    })
}
