//! Reminders for customer links that were sent and not started: the first
//! `KYC_DESK_REMINDER_AFTER` (24 hours) after the link was sent, then as long after each, at
//! most `KYC_DESK_REMINDERS` (2), through the channel the link was last sent by, in the
//! customer's language (the one they last chose on the link's page, else English) from the
//! admins'
//! templates ([`super::reminder_templates`]); never in quiet hours (India
//! time), never after the link expired, the session started or ended, or the operator turned
//! reminders off. Each reminder is a delivery row, a timeline event and an audit row. Every
//! instance runs the scheduler; a lease per session keeps two from sending the same reminder.
//! The time is a parameter, so tests move the clock.

use super::send;
use crate::channel::Channel;
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self};
use crate::server::state::AppState;
use crate::types::{AppError, KycStatus};
use std::time::Duration;

/// How long one instance holds a reminder while sending it.
pub const LEASE_SECONDS: i64 = 120;

/// When a reminder could not be sent, the next try is this much later.
pub const RETRY_AFTER_SECONDS: i64 = 3600;

/// India Standard Time, UTC+5:30 (India keeps no daylight saving time).
const INDIA_OFFSET_SECONDS: i64 = 5 * 3600 + 30 * 60;

/// Until when `now` lies in the quiet hours `(from, to)` (minutes after midnight, India
/// time), or `None` when it does not.
pub fn quiet_until(now: i64, quiet: Option<(u32, u32)>) -> Option<i64> {
    let (from, to) = quiet?;
    let local = now + INDIA_OFFSET_SECONDS;
    let minute = (local.rem_euclid(86_400) / 60) as u32;
    let quiet_now = if from < to {
        (from..to).contains(&minute)
    } else {
        minute >= from || minute < to
    };
    if !quiet_now {
        return None;
    }
    let day_start = local - local.rem_euclid(86_400);
    let mut end = day_start + i64::from(to) * 60 - INDIA_OFFSET_SECONDS;
    if end <= now {
        end += 86_400;
    }
    Some(end)
}

/// After a link was sent: its first reminder, unless one is scheduled already.
pub async fn schedule_after_send(
    state: &AppState,
    conn: &mut sqlx::AnyConnection,
    row: &SessionRow,
) -> Result<(), AppError> {
    let settings = &state.config.customer_links;
    if settings.max_reminders == 0 {
        return Ok(());
    }
    let at = db::now() + settings.reminder_after.as_secs() as i64;
    repo::schedule_reminder(conn, row.id, at, settings.max_reminders).await?;
    Ok(())
}

/// What became of one due reminder.
enum Turn {
    /// Sent; the next one then.
    Sent(Option<i64>),
    /// Not sent; try again then (or never).
    Later(Option<i64>),
}

/// Sends the reminders due at `now`; returns how many went out.
pub async fn run_due(state: &AppState, owner: &str, now: i64) -> Result<usize, AppError> {
    let mut sent = 0;
    for id in repo::due_reminders(&state.db.pool, now).await? {
        if !repo::claim_reminder(&state.db.pool, id, owner, now, now + LEASE_SECONDS).await? {
            continue;
        }
        let row = {
            let mut conn = state.db.pool.acquire().await?;
            repo::find(&mut conn, id).await?
        };
        let turn = match row {
            Some(row) => remind(state, &row, now).await?,
            None => Turn::Later(None),
        };
        let (was_sent, next) = match turn {
            Turn::Sent(next) => (true, next),
            Turn::Later(next) => (false, next),
        };
        let mut conn = state.db.pool.acquire().await?;
        repo::finish_reminder(&mut conn, id, owner, was_sent, next).await?;
        sent += usize::from(was_sent);
    }
    Ok(sent)
}

/// One due reminder: checked again, held back in quiet hours, else sent and recorded.
async fn remind(state: &AppState, row: &SessionRow, now: i64) -> Result<Turn, AppError> {
    let settings = &state.config.customer_links;
    let status = KycStatus::parse(&row.status).unwrap_or(KycStatus::Failed);
    let waiting = matches!(
        status,
        KycStatus::Issued | KycStatus::Opened | KycStatus::Consented
    );
    let channel = row.sent_channel.as_deref().and_then(Channel::parse);
    let (Some(link), Some(channel), true, true, true, true) = (
        super::customer_link_url(state, row),
        channel,
        waiting,
        row.reminders_on != 0,
        row.reminders_sent < settings.max_reminders,
        row.link_expires_at.is_some_and(|until| until > now),
    ) else {
        return Ok(Turn::Later(None));
    };
    if let Some(end) = quiet_until(now, settings.quiet_hours) {
        return Ok(Turn::Later(Some(end)));
    }
    let texts = super::reminder_templates::texts(
        state,
        row.customer_language
            .as_deref()
            .or(row.consent_language.as_deref())
            .unwrap_or("en"),
    )
    .await?;
    let company = send::company_name(state).await;
    let expires = row.link_expires_at.map(db::format_time).unwrap_or_default();
    let fill = |template: &str| {
        send::fill_template(template, &row.customer_name, &link, &expires, &company)
    };
    let (destination, masked) = match (channel, &row.email) {
        (Channel::Email, Some(email)) => (email.clone(), crate::validation::mask_email(email)),
        (Channel::Email, None) => return Ok(Turn::Later(None)),
        _ => (row.phone.clone(), crate::validation::mask_phone(&row.phone)),
    };
    let delivery = {
        let mut conn = state.db.pool.acquire().await?;
        repo::insert_delivery(&mut conn, row.id, channel, &masked, None, now).await?
    };
    let result = if channel == Channel::Email {
        send::send_email_with(
            state,
            &destination,
            &row.customer_name,
            &fill(&texts.email_subject),
            fill(&texts.email_body),
            &link,
        )
        .await
    } else {
        send::send_sms_with(state, row.sandbox != 0, channel, &destination, |_| {
            fill(&texts.sms)
        })
        .await
    }
    .map_err(|reason| crate::server::audit::mask_contacts(&reason));
    let number = row.reminders_sent + 1;
    let label = channel.label();
    let mut tx = state.db.begin().await?;
    let (turn, outcome) = match &result {
        Ok(message_id) => {
            repo::finish_delivery(&mut tx, delivery, "sent", message_id.as_deref(), None).await?;
            repo::add_event(
                &mut tx,
                row.id,
                "reminder",
                "system",
                &format!(
                    "Reminder {number} of {} sent by {label} to {masked}.",
                    settings.max_reminders
                ),
                now,
            )
            .await?;
            let next = (number < settings.max_reminders)
                .then(|| now + settings.reminder_after.as_secs() as i64);
            (Turn::Sent(next), Outcome::Success)
        }
        Err(reason) => {
            repo::finish_delivery(&mut tx, delivery, "failed", None, Some(reason)).await?;
            repo::add_event(
                &mut tx,
                row.id,
                "reminder_failed",
                "system",
                &format!(
                    "Reminder {number} by {label} to {masked} could not be sent: {reason}. Another try at {}.",
                    db::format_time(now + RETRY_AFTER_SECONDS)
                ),
                now,
            )
            .await?;
            (Turn::Later(Some(now + RETRY_AFTER_SECONDS)), Outcome::Error)
        }
    };
    state
        .audit
        .append(
            &mut tx,
            &RequestMeta::system(),
            &AuditEvent::new(Actor::System, "link.remind", outcome)
                .object("kyc_session", &row.public_id)
                .reason(result.as_ref().err().cloned().unwrap_or_default())
                .detail(serde_json::json!({
                    "channel": channel,
                    "destination": masked,
                    "reminder": number,
                })),
        )
        .await?;
    tx.commit().await?;
    Ok(turn)
}

/// Runs the scheduler on this instance, every [`EVERY`].
pub fn spawn(state: AppState) {
    let owner = format!("reminders-{}", uuid::Uuid::new_v4().simple());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = run_due(&state, &owner, db::now()).await {
                tracing::warn!(%error, "sending reminders failed; retrying shortly");
            }
        }
    });
}

/// How often the scheduler looks for due reminders.
pub const EVERY: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_are_india_time_and_end_at_their_end() {
        let quiet = Some((21 * 60, 9 * 60));
        // 2030-01-15 06:30 UTC is 12:00 in India: not quiet.
        let noon = 1_894_689_000;
        assert_eq!(quiet_until(noon, quiet), None);
        // 23:00 in India: quiet until 09:00 the next morning (03:30 UTC).
        let night = noon + 11 * 3600;
        assert_eq!(quiet_until(night, quiet), Some(noon + 21 * 3600));
        // 08:59 the next morning: quiet for another minute.
        let early = noon + 21 * 3600 - 60;
        assert_eq!(quiet_until(early, quiet), Some(noon + 21 * 3600));
        assert_eq!(quiet_until(noon + 21 * 3600, quiet), None);
        // A range within a day.
        assert_eq!(
            quiet_until(noon, Some((11 * 60, 13 * 60))),
            Some(noon + 3600)
        );
        assert_eq!(quiet_until(noon, None), None);
    }
}
