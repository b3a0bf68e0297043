//! What the pages read about KYC sessions: the list (with its filters), one session's
//! detail, the dashboard's figures, the QR image of a link and the sessions CSV rows.

use super::{send, session, status_of};
use crate::provider::Provider;
use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::auth::AuthUser;
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self};
use crate::server::state::AppState;
use crate::types::{
    AppError, DeliveryView, FieldError, KycStatus, RecordedOutcome, ReturnClaim, SessionDetail,
    SessionFilter, SessionPage, SessionSummary, TimelineEvent,
};
use crate::validation;

/// Sessions per list page.
pub const PAGE_SIZE: i64 = 50;

/// The label of a provider and flow.
pub fn provider_label(provider: Provider, flow: &str) -> String {
    match (provider, flow) {
        (Provider::MessageCentral, "basic") => "Message Central · Basic".into(),
        (Provider::MessageCentral, "premium") => "Message Central · Premium".into(),
        (Provider::Eko, _) => "Eko DigiLocker".into(),
        (provider, flow) => format!("{provider} · {flow}"),
    }
}

fn summary_of(row: &SessionRow) -> SessionSummary {
    let status = status_of(row);
    SessionSummary {
        public_id: row.public_id.clone(),
        customer_name: row.customer_name.clone(),
        phone_masked: validation::mask_phone(&row.phone),
        provider: row.provider,
        flow: row.flow.clone(),
        provider_label: provider_label(row.provider, &row.flow),
        status,
        created_by: row.creator_email.clone(),
        created_at: db::format_time(row.created_at),
        expires_or_ended: match (row.ended_at, row.expires_at) {
            (Some(ended), _) if status.is_final() => format!("ended {}", db::format_time(ended)),
            (_, Some(expires)) => format!("expires {}", db::format_time(expires)),
            _ => "—".into(),
        },
        sandbox: row.sandbox != 0,
        provider_alert: provider_alert(row, status),
    }
}

/// "provider not answering since …" while an open session's last
/// [`jobs::FAILING_AFTER`](super::jobs::FAILING_AFTER) polls or more all failed.
fn provider_alert(row: &SessionRow, status: KycStatus) -> Option<String> {
    let since = row.poll_failing_since?;
    (status.is_open() && row.poll_failures >= super::jobs::FAILING_AFTER).then(|| {
        format!(
            "provider not answering since {} ({} failed polls in a row)",
            db::format_time(since),
            row.poll_failures
        )
    })
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

/// A session's detail, with its timeline, deliveries and related sessions read from the
/// database.
pub(super) async fn detail_of(
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
        state,
        row,
        show_contacts,
        channels,
        events.into_iter().map(timeline_event).collect(),
        deliveries.into_iter().map(delivery_view).collect(),
        related,
    ))
}

/// The public ids of the sessions a session replaced and was replaced by.
pub(super) struct Related {
    pub(super) supersedes: Option<String>,
    pub(super) superseded_by: Option<String>,
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
        channel: delivery.channel.to_string(),
        destination: delivery.destination_masked,
        outcome: delivery.outcome,
        error: delivery.error,
        by: delivery.by_email.unwrap_or_default(),
        at: db::format_time(delivery.attempted_at),
    }
}

/// A session's detail from its row and what is known about its timeline and deliveries.
pub(super) fn detail_from(
    state: &AppState,
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
        // A customer link is what staff hand over; otherwise the provider's URL.
        link_url: super::customer_link_url(state, row)
            .or_else(|| row.link_url.clone())
            .filter(|_| status.is_open()),
        link_withheld: false,
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
        result_partial: row.result_partial != 0 && !result.is_empty(),
        result,
        last_error: row.last_error.clone(),
        supersedes: related.supersedes,
        superseded_by: related.superseded_by,
        timeline,
        deliveries,
        channels,
        has_email: row.email.is_some(),
        return_claim: (row.return_count > 0).then(|| ReturnClaim {
            reported: row.return_claim.clone().filter(|c| !c.is_empty()),
            count: row.return_count,
            last_at: row.last_return_at.map(db::format_time).unwrap_or_default(),
        }),
        recorded_outcome: match (&row.outcome_by, row.outcome_at) {
            (Some(by), Some(at)) if status.is_final() => Some(RecordedOutcome {
                outcome: status,
                by: by.clone(),
                at: db::format_time(at),
                note: row.outcome_note.clone().unwrap_or_default(),
            }),
            _ => None,
        },
        outcome_recordable: super::outcome::recordable(row),
        customer_link: customer_link_view(row),
    }
}

/// The customer link part of a session's detail.
fn customer_link_view(row: &SessionRow) -> Option<crate::types::CustomerLinkView> {
    row.customer_code.as_ref()?;
    let short = |hash: &Option<String>| {
        hash.as_deref()
            .map(|h| h.chars().take(12).collect::<String>())
            .unwrap_or_default()
    };
    Some(crate::types::CustomerLinkView {
        expires_at: row.link_expires_at.map(db::format_time).unwrap_or_default(),
        mints_used: row.mint_count,
        mint_limit: row.mint_limit,
        opened_at: row.opened_at.map(db::format_time),
        code_required: row.otp_required != 0,
        reminders_on: row.reminders_on != 0,
        reminders_sent: row.reminders_sent,
        next_reminder: row.next_reminder_at.map(db::format_time),
        consent: match (row.consent_notice_version, row.consent_at) {
            (Some(version), Some(at)) => Some(crate::types::ConsentView {
                notice_version: version,
                language: row.consent_language.clone().unwrap_or_default(),
                at: db::format_time(at),
                client_hash: short(&row.consent_client_hash),
                agent_hash: short(&row.consent_agent_hash),
            }),
            _ => None,
        },
    })
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
    let mut detail = detail_of(state, &row, true).await?;
    // A reviewer sees that a link exists and its status, not the usable link itself.
    if !crate::access::LIVE_LINKS.admits(user.role) {
        detail.link_withheld = detail.link_url.take().is_some();
    }
    Ok(detail)
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
    let provider = filter.provider.trim();
    match Provider::parse(provider) {
        Some(p) => query.provider = Some(p),
        None if provider.is_empty() => {}
        None => problem("provider", "Choose Message Central or Eko."),
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

/// The list filters that are set, as typed (not URL-encoded), for an audit row; a search
/// (which may be a customer's name, phone number or address) is masked like free text.
pub fn recorded_filter(filter: &SessionFilter) -> serde_json::Map<String, serde_json::Value> {
    [
        ("status", &filter.status),
        ("provider", &filter.provider),
        ("flow", &filter.flow),
        ("staff", &filter.staff),
        ("from", &filter.from),
        ("to", &filter.to),
        ("q", &filter.q),
    ]
    .into_iter()
    .filter(|(_, value)| !value.trim().is_empty())
    .map(|(name, value)| {
        let value = if name == "q" {
            crate::server::audit::mask_contacts(value.trim())
        } else {
            value.trim().to_string()
        };
        (name.to_string(), serde_json::json!(value))
    })
    .collect()
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
    let returned_index = KycStatus::ALL
        .iter()
        .position(|s| *s == KycStatus::Returned)
        .unwrap_or_default();
    let awaiting_confirmation = periods[2].1[returned_index];
    let mut funnel = vec![("Created".to_string(), created)];
    for (label, kind) in [
        ("Sent", "sent"),
        ("Opened", "opened"),
        ("Started", "started"),
        ("Returned", "returned"),
        ("Completed", "completed"),
    ] {
        funnel.push((
            label.to_string(),
            repo::count_reached(&state.db.pool, since, kind).await?,
        ));
    }
    // A completed session counts as returned, started, opened and sent even if those steps
    // were skipped (a link copied by hand, an in-person hand-over, a provider that reports
    // completion directly).
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
    let not_answering = repo::failing_polls(&state.db.pool, super::jobs::FAILING_AFTER)
        .await?
        .iter()
        .map(summary_of)
        .collect();
    Ok(crate::types::DashboardStats {
        periods,
        funnel,
        awaiting_confirmation,
        per_day,
        expiring,
        not_answering,
    })
}

/// The header of the sessions CSV export, matching [`csv_line`].
pub const CSV_HEADER: [&str; 15] = [
    "session",
    "customer",
    "phone",
    "email",
    "internal_reference",
    "provider",
    "flow",
    "status",
    "created_by",
    "created_at_utc",
    "expires_at_utc",
    "ended_at_utc",
    "journey_id",
    "reference_id",
    "sandbox",
];

/// One sessions CSV line (with CRLF). Phone and email are masked unless `contacts` (an
/// admin asked for contact details).
pub fn csv_line(row: &SessionRow, contacts: bool) -> String {
    let phone = if contacts {
        row.phone.clone()
    } else {
        validation::mask_phone(&row.phone)
    };
    let email = row
        .email
        .as_deref()
        .map(|e| {
            if contacts {
                e.to_string()
            } else {
                validation::mask_email(e)
            }
        })
        .unwrap_or_default();
    let time = |t: Option<i64>| t.map(db::format_time).unwrap_or_default();
    crate::server::csv::line([
        row.public_id.clone(),
        row.customer_name.clone(),
        phone,
        email,
        row.internal_ref.clone().unwrap_or_default(),
        row.provider.to_string(),
        row.flow.clone(),
        row.status.clone(),
        row.creator_email.clone(),
        db::format_time(row.created_at),
        time(row.expires_at),
        time(row.ended_at),
        row.journey_id.clone().unwrap_or_default(),
        row.reference_id.clone().unwrap_or_default(),
        (row.sandbox != 0).to_string(),
    ])
}
