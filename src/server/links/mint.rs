//! Minting the provider's URL for a customer link when the customer presses Start: the URL
//! still valid and unused is reused; otherwise a new one is made, within the link's mint
//! budget (reserved in one statement, so parallel Starts cannot outrun it) and a Message
//! Central trial account's links; each mint is on the timeline and in the audit log.

use super::create::{
    ProviderLink, call_provider, credential_of, give_back_trial_link, option_id,
    options_with_credentials, search_text,
};
use super::{jobs, status_of, store_minted};
use crate::provider::Provider;
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::credentials::{self, CredentialRef};
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self, credentials as credential_repo};
use crate::server::providers::{ProviderError, eko};
use crate::server::state::AppState;
use crate::server::timing::phase_span;
use crate::types::{AppError, KycStatus};
use tracing::Instrument as _;

/// A provider URL closer than this to its expiry is not handed out again: the customer needs
/// time to get through the provider's first page.
const REUSE_MARGIN_SECS: i64 = 120;

/// Why no provider URL could be given.
#[derive(Debug)]
pub enum MintRefusal {
    /// Every mint of the link is spent.
    UsedUp,
    /// The provider (or its credential) failed; the words say how. Retryable.
    ProviderFailed(String),
    /// The session cannot start now (not consented, or ended meanwhile).
    NotStartable(KycStatus),
    /// The database failed.
    Internal(AppError),
}

impl From<AppError> for MintRefusal {
    fn from(error: AppError) -> Self {
        MintRefusal::Internal(error)
    }
}

impl From<sqlx::Error> for MintRefusal {
    fn from(error: sqlx::Error) -> Self {
        MintRefusal::Internal(error.into())
    }
}

/// Whether the session's current provider URL may be given to the customer again: it exists,
/// is not about to expire, and no return arrived since it was made (a single-use URL that
/// brought the customer back has been used).
pub fn reusable(row: &SessionRow, now: i64) -> bool {
    let Some(minted_at) = row.minted_at else {
        return false;
    };
    row.link_url.is_some()
        && row
            .provider_url_expires_at
            .is_some_and(|until| until > now + REUSE_MARGIN_SECS)
        && row.last_return_at.is_none_or(|back| back < minted_at)
}

/// What a Start comes to, decided inside the caller's write transaction (which may also have
/// recorded the consent, so one commit covers both).
#[derive(Debug)]
pub enum Prepared {
    /// The session's current provider URL is still good: go there again.
    Reuse(String),
    /// A mint of the budget was taken (the link's mint `number`, from 1): call
    /// [`mint_reserved`] after the commit.
    Reserved {
        /// Which of the link's mints this is.
        number: i64,
    },
    /// Every mint is spent; the timeline event and audit row are written in the transaction.
    UsedUp,
    /// The session cannot start now (ended meanwhile).
    NotStartable(KycStatus),
}

/// Decides a Start for `row` (read inside the transaction `conn`, after its row was locked):
/// the current URL when [`reusable`], else one mint reserved in one `UPDATE … WHERE
/// mint_count < mint_limit` (so parallel Starts cannot outrun the budget).
pub async fn prepare(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    meta: &RequestMeta,
    row: &SessionRow,
) -> Result<Prepared, AppError> {
    let status = status_of(row);
    if !matches!(
        status,
        KycStatus::Consented | KycStatus::Started | KycStatus::Returned
    ) {
        return Ok(Prepared::NotStartable(status));
    }
    if status == KycStatus::Started && reusable(row, db::now()) {
        return Ok(Prepared::Reuse(row.link_url.clone().unwrap_or_default()));
    }
    if repo::reserve_mint(&mut *conn, row.id).await? {
        Ok(Prepared::Reserved {
            number: row.mint_count + 1,
        })
    } else {
        record_used_up(conn, state, meta, row).await?;
        Ok(Prepared::UsedUp)
    }
}

/// The credential reads a mint needs, made before the mint is reserved (see
/// [`read_credentials`]).
pub struct CredentialsRead {
    /// The active credential versions (the one in service for the link's flow is among them).
    active: Result<Vec<credential_repo::CredentialRow>, sqlx::Error>,
    /// The sealed secrets of the version the link was made with.
    sealed: Result<Vec<credential_repo::SecretRow>, AppError>,
}

/// Reads what minting for `row` needs from the credentials: the active versions and, alongside,
/// the secrets of the version the link was made with (still the one in service unless the
/// credential was rotated since). A Start runs this at the same time as its consent and
/// reservation transaction, so the two reads cost no time of their own before the call.
pub async fn read_credentials(state: &AppState, row: &SessionRow) -> CredentialsRead {
    let (active, sealed) = async {
        tokio::join!(
            credential_repo::list_active(&state.db.pool),
            credentials::sealed_secrets(state, row.credential_id),
        )
    }
    .instrument(phase_span("start 5 credentials read"))
    .await;
    CredentialsRead { active, sealed }
}

/// Makes the provider URL of mint `number`, reserved for `row` (as read in the reserving
/// transaction), with the credentials `read` for it, and stores it; a failure gives the mint
/// back when the call provably never left.
pub async fn mint_reserved(
    state: &AppState,
    meta: &RequestMeta,
    row: &SessionRow,
    number: i64,
    read: CredentialsRead,
) -> Result<String, MintRefusal> {
    let CredentialsRead { active, sealed } = read;
    let active = active?;
    let options = options_with_credentials(state, &active);
    let wanted = option_id(row.provider, &row.environment, &row.flow);
    let offered = options.iter().find(|(option, _)| option.id == wanted);
    let Some(credential) = offered.and_then(|(option, _)| credential_of(&options, option)) else {
        give_back(state, row).await;
        let reason = "this provider flow is switched off (its credential was removed or is not in service); an admin can set it up again on the Credentials page".to_string();
        record_failure(state, meta, row, number, &reason).await?;
        return Err(MintRefusal::ProviderFailed(reason));
    };
    let trial = row.provider == Provider::MessageCentral && row.environment == "trial";
    if trial && !credentials::reserve_trial_link(state, credential).await? {
        give_back(state, row).await;
        let reason = crate::credential_kinds::trial_links_used_up();
        record_failure(state, meta, row, number, &reason).await?;
        return Err(MintRefusal::ProviderFailed(reason));
    }
    let unlocked = match sealed {
        Ok(sealed) if credential.id == row.credential_id => {
            credentials::unseal_for_call(state, credential.clone(), sealed)
        }
        _ => credentials::open_for_call(state, CredentialRef::Version(credential)).await,
    };
    // Eko asks a fresh client reference per request; Message Central needs none.
    let client_ref_id = (row.provider == Provider::Eko).then(eko::new_client_ref_id);
    let documents: Vec<String> = row
        .documents
        .split(',')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    let answer = call_provider(
        state,
        credential,
        unlocked,
        &row.flow,
        &row.public_id,
        client_ref_id.as_deref(),
        &documents,
        row.sandbox != 0,
    )
    .instrument(phase_span("start 6 provider call"))
    .await;
    match answer {
        Ok(link) => {
            record_mint(state, meta, row, number, &link, client_ref_id.as_deref())
                .instrument(phase_span("start 7 mint stored"))
                .await?;
            Ok(link.url)
        }
        Err(error) => {
            if !error.may_have_reached_provider() {
                give_back(state, row).await;
                if trial {
                    give_back_trial_link(state, credential).await;
                }
            }
            tracing::warn!(request_id = %meta.request_id, session = %row.public_id, %error, "minting a provider URL failed");
            let reason = error.operator_message();
            record_failure(state, meta, row, number, &reason).await?;
            Err(MintRefusal::ProviderFailed(provider_words(&error)))
        }
    }
}

/// What the customer is told when the provider failed: no internals, the provider's state in
/// plain words.
fn provider_words(error: &ProviderError) -> String {
    if error.may_have_reached_provider() {
        "The verification service did not answer properly.".into()
    } else {
        "The verification service could not be reached.".into()
    }
}

/// Gives a reserved mint back (the call provably never left, or never started).
async fn give_back(state: &AppState, row: &SessionRow) {
    let result = async {
        let mut tx = state.db.begin().await?;
        repo::give_back_mint(&mut tx, row.id).await?;
        tx.commit().await
    }
    .await;
    if let Err(error) = result {
        tracing::error!(%error, session = %row.public_id, "could not give back an unused mint");
    }
}

/// The timeline text of mint `number` (valid until `expires_at`) for a session as `row` has
/// it; `None` when a session in that state takes no URL (it has ended).
fn mint_event_detail(row: &SessionRow, number: i64, expires_at: i64) -> Option<String> {
    match status_of(row) {
        KycStatus::Consented | KycStatus::Returned => Some(format!(
            "The customer pressed Start; the provider's URL was made (mint {number} of {}), valid until {}.",
            row.mint_limit,
            db::format_time(expires_at)
        )),
        KycStatus::Started => {
            let why = if row
                .last_return_at
                .is_some_and(|back| row.minted_at.is_some_and(|minted| back >= minted))
            {
                "the previous one was used"
            } else {
                "the previous one expired"
            };
            Some(format!(
                "A new provider URL was made because {why} (mint {number} of {}), valid until {}.",
                row.mint_limit,
                db::format_time(expires_at)
            ))
        }
        _ => None,
    }
}

/// Stores a minted URL, moves the session to `started` (or notes the new mint), audits it.
async fn record_mint(
    state: &AppState,
    meta: &RequestMeta,
    row: &SessionRow,
    number: i64,
    link: &ProviderLink,
    client_ref_id: Option<&str>,
) -> Result<(), MintRefusal> {
    let now = db::now();
    let text = search_text(&[
        link.journey_id.as_deref(),
        link.reference_id.as_deref(),
        client_ref_id,
    ]);
    let first_poll = (row.provider == Provider::Eko).then_some(now + jobs::POLL_DELAYS[0]);
    let stored = repo::CreatedLink {
        url: &link.url,
        expires_at: link.expires_at,
        token: link.token.as_deref(),
        journey_id: link.journey_id.as_deref(),
        reference_id: link.reference_id.as_deref(),
        next_poll_at: first_poll,
        search_text: &text,
    };
    let mut tx = state.db.begin().await?;
    // Usually the session is as the reservation left it: the URL is stored and the move made
    // in one statement (which also takes the row's lock). Changed meanwhile (a return, a
    // parallel Start, an end): read under the lock and decide again.
    let stored_as_reserved = match mint_event_detail(row, number, link.expires_at) {
        Some(detail) => store_minted(&mut tx, row, &stored, client_ref_id, &detail).await?,
        None => false,
    };
    if !stored_as_reserved {
        let current = repo::lock_and_find(&mut tx, row.id, now)
            .await?
            .ok_or_else(|| AppError::NotFound("The session vanished.".into()))?;
        let Some(detail) = mint_event_detail(&current, number, link.expires_at) else {
            // Ended meanwhile (cancelled, withdrawn, expired): the URL is not stored or given.
            repo::add_event(
                &mut tx,
                row.id,
                "late_answer",
                "system",
                "The provider made a URL after the session had ended; it was not used.",
                now,
            )
            .await?;
            tx.commit().await?;
            return Err(MintRefusal::NotStartable(status_of(&current)));
        };
        if !store_minted(&mut tx, &current, &stored, client_ref_id, &detail).await? {
            return Err(AppError::Conflict(
                "This session changed meanwhile. Reload the page.".into(),
            )
            .into());
        }
    }
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(Actor::Anonymous, "link.mint", Outcome::Success)
                .object("kyc_session", &row.public_id)
                .detail(serde_json::json!({
                    "mint": number,
                    "limit": row.mint_limit,
                    "expires_at": link.expires_at,
                })),
        )
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A failed mint: a timeline event for the operator and an audit row.
async fn record_failure(
    state: &AppState,
    meta: &RequestMeta,
    row: &SessionRow,
    number: i64,
    reason: &str,
) -> Result<(), MintRefusal> {
    let mut tx = state.db.begin().await?;
    repo::add_event(
        &mut tx,
        row.id,
        "mint_failed",
        "system",
        &format!(
            "The customer pressed Start but the provider's URL could not be made (attempt {number}): {reason}. The customer was offered a retry."
        ),
        db::now(),
    )
    .await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(Actor::Anonymous, "link.mint", Outcome::Failure)
                .object("kyc_session", &row.public_id)
                .reason(reason),
        )
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The budget is spent: a timeline event and an audit row, in the caller's transaction.
async fn record_used_up(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    meta: &RequestMeta,
    row: &SessionRow,
) -> Result<(), AppError> {
    repo::add_event(
        &mut *conn,
        row.id,
        "mints_used_up",
        "customer",
        &format!(
            "The customer pressed Start but all {} provider URLs of this link were used; regenerate the link to give them a new one.",
            row.mint_limit
        ),
        db::now(),
    )
    .await?;
    state
        .audit
        .append(
            conn,
            meta,
            &AuditEvent::new(Actor::Anonymous, "link.mint", Outcome::Denied)
                .object("kyc_session", &row.public_id)
                .reason("every provider URL of the link was used"),
        )
        .await?;
    Ok(())
}
