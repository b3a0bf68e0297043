//! KYC links and sessions: the new-link form, creating, sending, cancelling and
//! regenerating links, recording a Message Central outcome, the sessions list and detail, and
//! the dashboard.

use crate::types::{
    AppError, DashboardStats, LinkFormOptions, NewLinkInput, ReminderTemplates, SessionDetail,
    SessionFilter, SessionPage,
};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {crate::server::auth::guard, crate::server::links, crate::server::web::respond};

/// What the new-link form offers (operators and admins).
#[server(endpoint = "link_options")]
pub async fn link_options() -> Result<LinkFormOptions, AppError> {
    respond(async move {
        let (caller, _) = guard::require("link_options").await?;
        links::options(&caller.state).await
    })
    .await
}

/// Creates a KYC link (operators and admins). Resubmitting the same form returns the same
/// session without a second provider call.
#[server(endpoint = "create_link")]
pub async fn create_link(input: NewLinkInput) -> Result<SessionDetail, AppError> {
    use tracing::Instrument as _;
    respond(async move {
        let (caller, user) = guard::require("create_link").await?;
        links::create(&caller.state, &caller.meta, &user, input).await
    })
    .instrument(crate::server::timing::phase_span("6 create_link function"))
    .await
}

/// Turns a customer link's reminders on or off (operators and admins).
#[server(endpoint = "set_link_reminders")]
pub async fn set_link_reminders(public_id: String, on: bool) -> Result<SessionDetail, AppError> {
    respond(async move {
        let (caller, user) = guard::require("set_link_reminders").await?;
        links::set_reminders(&caller.state, &caller.meta, &user, &public_id, on).await
    })
    .await
}

/// One session in full (everyone; auditors read only). Opening it is recorded.
#[server(endpoint = "session_detail")]
pub async fn get_session_detail(public_id: String) -> Result<SessionDetail, AppError> {
    respond(async move {
        let (caller, user) = guard::require("session_detail").await?;
        links::detail(&caller.state, &caller.meta, &user, &public_id).await
    })
    .await
}

/// One page of the sessions list (everyone).
#[server(endpoint = "list_sessions")]
pub async fn list_sessions(filter: Option<SessionFilter>) -> Result<SessionPage, AppError> {
    respond(async move {
        let (caller, _) = guard::require("list_sessions").await?;
        links::list(&caller.state, &filter.unwrap_or_default()).await
    })
    .await
}

/// Sends a session's link by `email`, `sms` or `whatsapp` (operators and admins).
#[server(endpoint = "send_link")]
pub async fn send_link(public_id: String, channel: String) -> Result<SessionDetail, AppError> {
    respond(async move {
        let (caller, user) = guard::require("send_link").await?;
        links::send::send(&caller.state, &caller.meta, &user, &public_id, &channel).await
    })
    .await
}

/// Cancels an open session (operators and admins).
#[server(endpoint = "cancel_link")]
pub async fn cancel_link(public_id: String) -> Result<SessionDetail, AppError> {
    respond(async move {
        let (caller, user) = guard::require("cancel_link").await?;
        links::cancel(&caller.state, &caller.meta, &user, &public_id).await
    })
    .await
}

/// Records the outcome (`completed` or `failed`) of a Message Central session whose customer
/// came back, as the staff member found it in Message Central's console, with a required
/// note (operators and admins).
#[server(endpoint = "record_outcome")]
pub async fn record_outcome(
    public_id: String,
    outcome: String,
    note: String,
) -> Result<SessionDetail, AppError> {
    respond(async move {
        let (caller, user) = guard::require("record_outcome").await?;
        links::outcome::record(
            &caller.state,
            &caller.meta,
            &user,
            &public_id,
            &outcome,
            &note,
        )
        .await
    })
    .await
}

/// Makes a new link for the same customer; an open old one becomes superseded (operators
/// and admins).
#[server(endpoint = "regenerate_link")]
pub async fn regenerate_link(
    public_id: String,
    idempotency_key: String,
) -> Result<SessionDetail, AppError> {
    respond(async move {
        let (caller, user) = guard::require("regenerate_link").await?;
        links::regenerate(
            &caller.state,
            &caller.meta,
            &user,
            &public_id,
            &idempotency_key,
        )
        .await
    })
    .await
}

/// The reminder templates in English and Hindi (admins).
#[server(endpoint = "reminder_templates")]
pub async fn get_reminder_templates() -> Result<ReminderTemplates, AppError> {
    respond(async move {
        let (caller, _) = guard::require("reminder_templates").await?;
        links::reminder_templates::current(&caller.state).await
    })
    .await
}

/// Saves the reminder templates of both languages (admins, after a step-up); placeholders
/// `{name}`, `{link}` (required), `{expires}`, `{company}`.
#[server(endpoint = "save_reminder_templates")]
pub async fn save_reminder_templates(
    templates: ReminderTemplates,
) -> Result<ReminderTemplates, AppError> {
    respond(async move {
        let (caller, user) = guard::require("save_reminder_templates").await?;
        links::reminder_templates::save(&caller.state, &caller.meta, &user, templates).await
    })
    .await
}

/// The dashboard's figures (everyone).
#[server(endpoint = "dashboard_stats")]
pub async fn get_dashboard_stats() -> Result<DashboardStats, AppError> {
    respond(async move {
        let (caller, _) = guard::require("dashboard_stats").await?;
        links::dashboard(&caller.state).await
    })
    .await
}

/// The email template that carries links: (subject, body) (admins).
#[server(endpoint = "email_template")]
pub async fn email_template() -> Result<(String, String), AppError> {
    respond(async move {
        let (caller, _) = guard::require("email_template").await?;
        links::send::email_template(&caller.state).await
    })
    .await
}

/// Saves the email template (admins); placeholders `{name}`, `{link}`, `{expires}`,
/// `{company}`.
#[server(endpoint = "save_email_template")]
pub async fn save_email_template(
    subject: String,
    body: String,
) -> Result<(String, String), AppError> {
    respond(async move {
        let (caller, user) = guard::require("save_email_template").await?;
        links::send::save_email_template(&caller.state, &caller.meta, &user, &subject, &body).await
    })
    .await
}
