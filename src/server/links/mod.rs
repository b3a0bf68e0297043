//! KYC sessions: the one table of legal status moves every change goes through, and
//! cancelling. Creating links (and regenerating them) lives in [`create`], what the pages read
//! in [`view`], returns, the Eko poller and expiry in [`jobs`], handing a link over in
//! [`send`], a Message Central verdict recorded by staff in [`outcome`].

pub mod create;
pub mod jobs;
pub mod mint;
pub mod outcome;
pub mod reminder_templates;
pub mod reminders;
pub mod send;
pub mod view;

pub use create::{create, options, regenerate};
pub use view::{dashboard, detail, list, parse_filter, qr_svg};

use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::auth::AuthUser;
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self};
use crate::server::state::AppState;
use crate::types::{AppError, KycStatus, SessionDetail};

/// The customer link of a session that has one: `{public_url}/v/{code}`.
pub fn customer_link_url(state: &AppState, row: &SessionRow) -> Option<String> {
    row.customer_code.as_ref().map(|code| {
        format!(
            "{}{}{code}",
            state.config.public_url.as_str().trim_end_matches('/'),
            crate::server::customer::LINK_PREFIX
        )
    })
}

fn status_of(row: &SessionRow) -> KycStatus {
    KycStatus::parse(&row.status).unwrap_or(KycStatus::Failed)
}

/// The status `row` moves from, if the one table of legal moves lets it become `to`; an
/// illegal move is refused and logged.
fn legal_from(row: &SessionRow, to: KycStatus) -> Result<KycStatus, AppError> {
    let from = status_of(row);
    if from.may_become(to) {
        return Ok(from);
    }
    tracing::warn!(
        session = %row.public_id,
        from = from.as_str(),
        to = to.as_str(),
        "illegal KYC session transition refused"
    );
    Err(AppError::Conflict(format!(
        "This session is {} and cannot become {}.",
        from.label().to_lowercase(),
        to.label().to_lowercase()
    )))
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
    let from = legal_from(row, to)?;
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

/// [`move_to`] `consented` for the customer, the consent's record (and with `reserve_mint` one
/// of the link's provider-URL mints) written by the same statement as the move, with the
/// timeline event. Returns the session as it now stands; `None`, and nothing written, when the
/// session is no longer as `row` has it, already consented, the notice version the customer
/// was shown is no longer the current one, or (with `reserve_mint`) no mint is left.
pub async fn consent_to(
    conn: &mut sqlx::AnyConnection,
    row: &SessionRow,
    consent: &repo::Consent<'_>,
    reserve_mint: bool,
    detail: &str,
) -> Result<Option<SessionRow>, AppError> {
    let to = KycStatus::Consented;
    let from = legal_from(row, to)?;
    let consented =
        repo::record_consent(&mut *conn, row.id, from.as_str(), consent, reserve_mint).await?;
    if consented.is_some() {
        repo::add_event(
            &mut *conn,
            row.id,
            to.as_str(),
            "customer",
            detail,
            consent.at,
        )
        .await?;
    }
    Ok(consented)
}

/// A provider URL minted for `row` stored, with its timeline event: a first mint moves the
/// session to `started` through the one table of legal moves (the move written by the same
/// statement as the URL), a further one (`row` already `started`) adds a `minted` event.
/// `detail` is the event's text. False, and nothing written (and, on PostgreSQL, no row lock
/// taken), when the session is no longer as `row` has it: read it under its lock then.
pub async fn store_minted(
    conn: &mut sqlx::AnyConnection,
    row: &SessionRow,
    link: &repo::CreatedLink<'_>,
    client_ref_id: Option<&str>,
    detail: &str,
) -> Result<bool, AppError> {
    let to = KycStatus::Started;
    let (from, kind) = match status_of(row) {
        KycStatus::Started => (KycStatus::Started, "minted"),
        _ => (legal_from(row, to)?, to.as_str()),
    };
    let now = db::now();
    let stored = repo::store_mint(
        &mut *conn,
        row.id,
        from.as_str(),
        to.as_str(),
        link,
        client_ref_id,
        now,
    )
    .await?;
    if stored {
        repo::add_event(&mut *conn, row.id, kind, "customer", detail, now).await?;
    }
    Ok(stored)
}

/// The session with `public_id`, or a not-found error.
async fn session(state: &AppState, public_id: &str) -> Result<SessionRow, AppError> {
    repo::find_public(&state.db.pool, public_id.trim())
        .await?
        .ok_or_else(|| AppError::NotFound("There is no such KYC session.".into()))
}

/// Turns a customer link's reminders on or off (operators and admins); audited
/// `link.reminders`, on the timeline.
pub async fn set_reminders(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    public_id: &str,
    on: bool,
) -> Result<SessionDetail, AppError> {
    let row = session(state, public_id).await?;
    if row.customer_code.is_none() {
        return Err(AppError::Conflict(
            "This session's provider URL was handed over in person; it has no reminders.".into(),
        ));
    }
    let mut tx = state.db.begin().await?;
    repo::set_reminders(&mut tx, row.id, on).await?;
    if on {
        // A link already sent and still waiting gets its reminder back.
        if row.sent_channel.is_some() {
            reminders::schedule_after_send(state, &mut tx, &row).await?;
        }
    }
    repo::add_event(
        &mut tx,
        row.id,
        "reminders",
        &user.email,
        if on {
            "Reminders turned on."
        } else {
            "Reminders turned off."
        },
        db::now(),
    )
    .await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "link.reminders", Outcome::Success)
                .object("kyc_session", &row.public_id)
                .detail(serde_json::json!({ "on": on })),
        )
        .await?;
    tx.commit().await?;
    let row = session(state, public_id).await?;
    view::detail_of(state, &row, true).await
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
    view::detail_of(state, &row, true).await
}
