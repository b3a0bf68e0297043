//! Handing a link over: the message from the admin's template (email as HTML and plain text,
//! SMS and WhatsApp with the DLT template), sent through [`crate::server::notify`]. Every
//! attempt is a `deliveries` row, a timeline event and an audit row; a failure never marks the
//! link as sent.

use super::status_of;
use crate::channel::Channel;
use crate::credential_kinds::CredentialKind;
use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::auth::AuthUser;
use crate::server::credentials::{self, CredentialRef, Opened};
use crate::server::db::credentials::CredentialRow;
use crate::server::db::links::{self as repo};
use crate::server::db::{self, credentials as credential_repo};
use crate::server::notify::{email, sms};
use crate::server::state::AppState;
use crate::types::{AppError, SessionDetail};
use crate::validation;

use std::collections::BTreeMap;

/// The channels that can send links now: `email` with an active SMTP credential, `sms` and
/// `whatsapp` as the active Message Central SMS credential allows.
pub async fn configured_channels(state: &AppState) -> Result<Vec<String>, AppError> {
    let active = credential_repo::list_active(&state.db.pool).await?;
    Ok(channels_from(&in_use(state, &active)))
}

/// The active credentials the running configuration does not switch off (a sandbox credential
/// with the sandbox off, a destination no longer allowed): only these send anything.
pub fn in_use(state: &AppState, active: &[CredentialRow]) -> Vec<CredentialRow> {
    active
        .iter()
        .filter(|row| in_service(state, row))
        .cloned()
        .collect()
}

/// Whether the running configuration lets the stored credential `row` serve (see
/// [`crate::server::destination::switched_off`]).
pub fn in_service(state: &AppState, row: &CredentialRow) -> bool {
    CredentialKind::parse(&row.kind).is_some_and(|kind| {
        crate::server::destination::switched_off(
            &state.config,
            kind,
            &row.saved_by,
            &serde_json::from_str(&row.settings).unwrap_or_default(),
            false,
        )
        .is_none()
    })
}

/// The channels the given active credentials allow.
pub fn channels_from(active: &[CredentialRow]) -> Vec<String> {
    let mut channels = Vec::new();
    let find = |kind: CredentialKind, environment: &str| {
        active
            .iter()
            .find(|row| row.kind == kind.as_str() && row.environment == environment)
    };
    if find(CredentialKind::Smtp, "default").is_some() {
        channels.push(Channel::Email.to_string());
    }
    if let Some(row) = CredentialKind::MessageCentralSms
        .environments()
        .iter()
        .find_map(|environment| find(CredentialKind::MessageCentralSms, environment))
    {
        let settings: BTreeMap<String, String> =
            serde_json::from_str(&row.settings).unwrap_or_default();
        let allowed = settings
            .get("channels")
            .cloned()
            .unwrap_or_else(|| "sms".into());
        for channel in [Channel::Sms, Channel::WhatsApp] {
            if allowed.split(',').any(|c| c.trim() == channel.as_str()) {
                channels.push(channel.to_string());
            }
        }
    }
    channels
}

/// Fills `{name}`, `{link}`, `{expires}` and `{company}` in a template.
pub fn fill_template(
    template: &str,
    name: &str,
    link: &str,
    expires: &str,
    company: &str,
) -> String {
    template
        .replace("{name}", name)
        .replace("{link}", link)
        .replace("{expires}", expires)
        .replace("{company}", company)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The HTML part of a link email: the plain text escaped, paragraphs kept, and the link
/// made a button-like anchor.
pub fn email_html(body: &str, link: &str) -> String {
    let escaped_link = html_escape(link);
    let paragraphs: Vec<String> = body
        .split("\n\n")
        .map(|p| {
            let p = html_escape(p.trim()).replace('\n', "<br>");
            if p.contains(&escaped_link) {
                p.replace(
                    &escaped_link,
                    &format!(
                        "<a href=\"{escaped_link}\" style=\"display:inline-block;padding:10px 16px;background:#1f5fbf;color:#fff;border-radius:6px;text-decoration:none\">Verify my identity</a><br><span style=\"font-size:12px;color:#555\">{escaped_link}</span>"
                    ),
                )
            } else {
                p
            }
        })
        .map(|p| format!("<p>{p}</p>"))
        .collect();
    format!(
        "<!doctype html><html><body style=\"font-family:system-ui,sans-serif;line-height:1.5;color:#1b1f24\">{}</body></html>",
        paragraphs.join("")
    )
}

pub(crate) async fn company_name(state: &AppState) -> String {
    let mut conn = match state.db.pool.acquire().await {
        Ok(conn) => conn,
        Err(_) => return "our team".into(),
    };
    for environment in CredentialKind::MessageCentralEkyc.environments() {
        if let Ok(Some(row)) = credential_repo::active(
            &mut conn,
            CredentialKind::MessageCentralEkyc.as_str(),
            environment,
        )
        .await
        {
            let settings: BTreeMap<String, String> =
                serde_json::from_str(&row.settings).unwrap_or_default();
            if let Some(name) = settings
                .get("company_name")
                .filter(|n| !n.trim().is_empty())
            {
                return name.trim().to_string();
            }
        }
    }
    "our team".into()
}

async fn send_email(
    state: &AppState,
    to: &str,
    name: &str,
    link: &str,
    expires: &str,
) -> Result<Option<String>, String> {
    let (subject, body) = repo::template(&state.db.pool, "link_email")
        .await
        .map_err(|_| "the email template could not be read".to_string())?
        .unwrap_or_else(|| {
            (
                "Complete your identity verification".into(),
                "Dear {name},\n\nPlease verify your identity: {link}\n\nValid until {expires}."
                    .into(),
            )
        });
    let company = company_name(state).await;
    let subject = fill_template(&subject, name, link, expires, &company);
    let text = fill_template(&body, name, link, expires, &company);
    send_email_with(state, to, name, &subject, text, link).await
}

/// Sends one email (its subject and plain text filled already; the HTML part made from the
/// text, with `link` as a button) through the active SMTP credential.
pub(crate) async fn send_email_with(
    state: &AppState,
    to: &str,
    name: &str,
    subject: &str,
    text: String,
    link: &str,
) -> Result<Option<String>, String> {
    let unlocked = credentials::open(
        state,
        CredentialRef::Active(CredentialKind::Smtp, "default"),
    )
    .await
    .map_err(|_| "the email credential could not be read".to_string())?;
    let Some(Opened {
        settings,
        mut secrets,
        ..
    }) = unlocked
    else {
        return Err("no email (SMTP) credential is configured".into());
    };
    let html = email_html(&text, link);
    email::send(
        &settings,
        secrets.remove("password"),
        email::Email {
            to,
            name,
            subject: subject.replace(['\r', '\n'], " "),
            text,
            html,
        },
    )
    .await
}

async fn send_sms(
    state: &AppState,
    sandbox_session: bool,
    channel: Channel,
    phone: &str,
    name: &str,
    link: &str,
    expires: &str,
) -> Result<Option<String>, String> {
    let company = company_name(state).await;
    send_sms_with(state, sandbox_session, channel, phone, |template| {
        let template = if template.trim().is_empty() {
            "Dear {name}, complete your KYC for {company}: {link} (valid until {expires})"
        } else {
            template
        };
        fill_template(template, name, link, expires, &company)
    })
    .await
}

/// Sends one text by SMS or WhatsApp through the active SMS credential (never the sandbox's
/// for a real session); `text_of` makes the text from the credential's link template.
pub(crate) async fn send_sms_with(
    state: &AppState,
    sandbox_session: bool,
    channel: Channel,
    phone: &str,
    text_of: impl FnOnce(&str) -> String,
) -> Result<Option<String>, String> {
    let Some(national) = phone.strip_prefix("+91") else {
        return Err("SMS and WhatsApp sending supports Indian (+91) numbers only; send by email or copy the link".into());
    };
    let mut found = None;
    for environment in CredentialKind::MessageCentralSms.environments() {
        if let Ok(Some(unlocked)) = credentials::open(
            state,
            CredentialRef::Active(CredentialKind::MessageCentralSms, environment),
        )
        .await
        {
            // A real customer's link never goes to the sandbox's outbox.
            if !sandbox_session
                && crate::server::destination::is_sandbox_credential(
                    &unlocked.row.saved_by,
                    &unlocked.settings,
                )
            {
                continue;
            }
            found = Some(unlocked);
            break;
        }
    }
    let Some(Opened {
        settings,
        mut secrets,
        ..
    }) = found
    else {
        return Err(if sandbox_session {
            "no SMS / WhatsApp credential is configured".into()
        } else {
            "no SMS / WhatsApp credential for real messages is configured (the sandbox's sends sandbox links only)".into()
        });
    };
    let template = settings.get("template").cloned().unwrap_or_default();
    let text = text_of(&template);
    let flow = if channel == Channel::WhatsApp {
        "WHATSAPP"
    } else {
        "SMS"
    };
    sms::send(
        &state.providers,
        &settings,
        secrets.remove("password"),
        sms::Sms {
            flow,
            national_number: national,
            text,
        },
    )
    .await
}

/// Sends the link of an open session on `channel`. The attempt is recorded whatever
/// happens; a failure comes back as an error with the reason (the link stays usable).
pub async fn send(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    public_id: &str,
    channel: &str,
) -> Result<SessionDetail, AppError> {
    let Some(channel) = Channel::parse(&channel.trim().to_lowercase()) else {
        return Err(AppError::field("channel", "Choose email, SMS or WhatsApp."));
    };
    if !configured_channels(state)
        .await?
        .iter()
        .any(|c| c == channel.as_str())
    {
        return Err(AppError::Conflict(format!(
            "Sending by {channel} is not configured; an admin can add it on the Credentials page."
        )));
    }
    let row = repo::find_public(&state.db.pool, public_id.trim())
        .await?
        .ok_or_else(|| AppError::NotFound("There is no such KYC session.".into()))?;
    let status = status_of(&row);
    if !status.is_open() {
        return Err(AppError::Conflict(format!(
            "This session is {}; its link can no longer be sent.",
            status.label().to_lowercase()
        )));
    }
    // A customer link is what is handed over; a session without one (an in-person hand-over)
    // sends the provider's URL.
    let link = super::customer_link_url(state, &row)
        .or_else(|| row.link_url.clone())
        .unwrap_or_default();
    let (destination, masked) = if channel == Channel::Email {
        let email = row.email.clone().ok_or_else(|| {
            AppError::Conflict(
                "This customer has no email address; use SMS, WhatsApp or copy the link.".into(),
            )
        })?;
        let masked = validation::mask_email(&email);
        (email, masked)
    } else {
        (row.phone.clone(), validation::mask_phone(&row.phone))
    };
    let already_sent = repo::deliveries(&state.db.pool, row.id)
        .await?
        .iter()
        .any(|d| d.outcome == "sent");
    let delivery_id = {
        let mut tx = state.db.begin().await?;
        let id = repo::insert_delivery(&mut tx, row.id, channel, &masked, Some(user.id), db::now())
            .await?;
        tx.commit().await?;
        id
    };
    let expires = row
        .expires_at
        .map(db::format_time)
        .unwrap_or_else(|| "soon".into());
    let result = if channel == Channel::Email {
        send_email(state, &destination, &row.customer_name, &link, &expires).await
    } else {
        send_sms(
            state,
            row.sandbox != 0,
            channel,
            &destination,
            &row.customer_name,
            &link,
            &expires,
        )
        .await
    }
    .map_err(|reason| crate::server::audit::mask_contacts(&reason));
    let channel_label = channel.label();
    let action = if already_sent {
        "link.resend"
    } else {
        "link.send"
    };
    let mut tx = state.db.begin().await?;
    let outcome = match &result {
        Ok(message_id) => {
            repo::finish_delivery(&mut tx, delivery_id, "sent", message_id.as_deref(), None)
                .await?;
            let detail = format!("Sent by {channel_label} to {masked}.");
            repo::add_event(&mut tx, row.id, "sent", &user.email, &detail, db::now()).await?;
            repo::set_sent_channel(&mut tx, row.id, channel.as_str()).await?;
            super::reminders::schedule_after_send(state, &mut tx, &row).await?;
            Outcome::Success
        }
        Err(reason) => {
            repo::finish_delivery(&mut tx, delivery_id, "failed", None, Some(reason)).await?;
            repo::add_event(
                &mut tx,
                row.id,
                "delivery_failed",
                &user.email,
                &format!("Sending by {channel_label} to {masked} failed: {reason}."),
                db::now(),
            )
            .await?;
            Outcome::Error
        }
    };
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), action, outcome)
                .object("kyc_session", &row.public_id)
                .reason(result.as_ref().err().cloned().unwrap_or_default())
                .detail(serde_json::json!({ "channel": channel, "destination": masked })),
        )
        .await?;
    tx.commit().await?;
    if let Err(reason) = result {
        tracing::warn!(request_id = %meta.request_id, session = %row.public_id, %channel, %reason, "delivery failed");
        return Err(AppError::Unavailable(format!(
            "Sending by {channel_label} to {masked} failed: {reason}. The link was not marked as sent and still works; try again."
        )));
    }
    let row = repo::find_public(&state.db.pool, public_id.trim())
        .await?
        .ok_or_else(|| AppError::NotFound("The session vanished.".into()))?;
    super::view::detail_of(state, &row, true).await
}

/// The email template admins edit: (subject, body).
pub async fn email_template(state: &AppState) -> Result<(String, String), AppError> {
    Ok(repo::template(&state.db.pool, "link_email")
        .await?
        .unwrap_or_default())
}

/// Checks an email template: the subject one line of at most 200 characters, the body at
/// most 5,000 characters and containing `{link}`. Returns the trimmed subject and body (line
/// ends as `\n`) and the field errors, named `{prefix}subject` and `{prefix}body`.
pub(crate) fn check_email_template(
    subject: &str,
    body: &str,
    prefix: &str,
) -> (String, String, Vec<crate::types::FieldError>) {
    let mut fields = Vec::new();
    let subject = subject.trim();
    let body = body.trim().replace("\r\n", "\n");
    if subject.is_empty() {
        fields.push(crate::types::FieldError {
            field: format!("{prefix}subject"),
            message: "Enter a subject.".into(),
        });
    } else if subject.chars().count() > 200 || subject.contains(['\n', '\r']) {
        fields.push(crate::types::FieldError {
            field: format!("{prefix}subject"),
            message: "Use one line of at most 200 characters.".into(),
        });
    }
    if !body.contains("{link}") {
        fields.push(crate::types::FieldError {
            field: format!("{prefix}body"),
            message: "The message must contain {link}, or the customer gets no link.".into(),
        });
    } else if body.chars().count() > 5000 {
        fields.push(crate::types::FieldError {
            field: format!("{prefix}body"),
            message: "Use at most 5,000 characters.".into(),
        });
    }
    (subject.to_string(), body, fields)
}

/// Saves the email template (admins), checked by [`check_email_template`].
pub async fn save_email_template(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    subject: &str,
    body: &str,
) -> Result<(String, String), AppError> {
    let (subject, body, fields) = check_email_template(subject, body, "");
    if let Some(error) = AppError::from_fields(fields) {
        return Err(error);
    }
    let subject = subject.as_str();
    let mut tx = state.db.begin().await?;
    repo::save_template(
        &mut tx,
        "link_email",
        subject,
        &body,
        &user.email,
        db::now(),
    )
    .await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "template.update", Outcome::Success)
                .object("template", "link_email"),
        )
        .await?;
    tx.commit().await?;
    Ok((subject.to_string(), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_and_html_is_escaped() {
        let text = fill_template(
            "Hi {name}: {link} until {expires} — {company}",
            "Asha",
            "https://x/y?a=1&b=2",
            "10:00",
            "Bank",
        );
        assert_eq!(text, "Hi Asha: https://x/y?a=1&b=2 until 10:00 — Bank");
        let html = email_html(
            "Dear <b>Asha</b>,\n\nGo: https://x/y?a=1&b=2",
            "https://x/y?a=1&b=2",
        );
        assert!(html.contains("Dear &lt;b&gt;Asha&lt;/b&gt;"));
        assert!(html.contains("href=\"https://x/y?a=1&amp;b=2\""));
    }
}
