//! The optional one-time code a customer gives before Start (per flow,
//! `KYC_DESK_CUSTOMER_CODE_FLOWS`): 6 digits sent by SMS to the session's mobile, valid 10
//! minutes, stored as a keyed hash; 5 wrong tries lock the link's codes for an hour; at most 5
//! sends per link. Each try is counted before it is compared, so parallel guesses cannot
//! outrun the limit.

use crate::channel::Channel;
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::db::links::SessionRow;
use crate::server::db::{self, links as repo};
use crate::server::links::send;
use crate::server::state::AppState;
use crate::types::AppError;

/// How long a code works.
pub const CODE_LIFETIME_SECS: i64 = 10 * 60;
/// Wrong tries before the lock.
pub const MAX_TRIES: i64 = 5;
/// How long the lock lasts.
pub const LOCK_SECS: i64 = 60 * 60;
/// Codes one link may send.
pub const MAX_SENDS: i64 = 5;

/// What happened to a request for a code.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Sent.
    Sent,
    /// The link sent its share of codes.
    LimitReached,
    /// The link refuses codes until then (Unix seconds).
    Locked(i64),
    /// The SMS could not be sent (the words are for the log and the timeline).
    Failed(String),
}

/// What a given code came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// Right: the customer may start.
    Passed,
    /// Not six digits.
    Malformed,
    /// Wrong; this many tries are left.
    Wrong(i64),
    /// Expired, or none was sent.
    Expired,
    /// Locked until then (Unix seconds).
    Locked(i64),
}

fn hash(state: &AppState, row: &SessionRow, code: &str) -> String {
    state
        .vault
        .keyed_hash("customer_one_time_code", &format!("{}:{code}", row.id))
}

/// Sends a new code to the session's mobile.
pub async fn send_code(
    state: &AppState,
    meta: &RequestMeta,
    row: &SessionRow,
) -> Result<Sent, AppError> {
    let now = db::now();
    if let Some(until) = row.otp_locked_until.filter(|until| *until > now) {
        return Ok(Sent::Locked(until));
    }
    let code = {
        use rand::Rng as _;
        format!("{:06}", rand::thread_rng().gen_range(0..1_000_000u32))
    };
    let stored = {
        let mut conn = state.db.pool.acquire().await?;
        repo::store_code(
            &mut conn,
            row.id,
            &hash(state, row, &code),
            now + CODE_LIFETIME_SECS,
            MAX_SENDS,
            now,
        )
        .await?
    };
    if !stored {
        return Ok(Sent::LimitReached);
    }
    let company = send::company_name(state).await;
    let result = send::send_sms_with(state, row.sandbox != 0, Channel::Sms, &row.phone, |_| {
        format!(
            "{code} is your code to verify your identity for {company}. It works for 10 minutes. Do not share it with anyone."
        )
    })
    .await
    .map_err(|reason| crate::server::audit::mask_contacts(&reason));
    let masked = crate::validation::mask_phone(&row.phone);
    let mut tx = state.db.begin().await?;
    let (detail, outcome) = match &result {
        Ok(_) => (
            format!("A one-time code was sent by SMS to {masked}."),
            Outcome::Success,
        ),
        Err(reason) => (
            format!("A one-time code could not be sent by SMS to {masked}: {reason}."),
            Outcome::Error,
        ),
    };
    repo::add_event(&mut tx, row.id, "code_sent", "customer", &detail, now).await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(Actor::Anonymous, "link.code_send", outcome)
                .object("kyc_session", &row.public_id)
                .reason(result.as_ref().err().cloned().unwrap_or_default()),
        )
        .await?;
    tx.commit().await?;
    Ok(match result {
        Ok(_) => Sent::Sent,
        Err(reason) => {
            tracing::warn!(request_id = %meta.request_id, session = %row.public_id, %reason, "one-time code not sent");
            Sent::Failed(reason)
        }
    })
}

/// Checks a code the customer typed.
pub async fn check_code(
    state: &AppState,
    meta: &RequestMeta,
    row: &SessionRow,
    typed: &str,
) -> Result<Checked, AppError> {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if typed.len() != 6 || !typed.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Checked::Malformed);
    }
    let now = db::now();
    if let Some(until) = row.otp_locked_until.filter(|until| *until > now) {
        return Ok(Checked::Locked(until));
    }
    let Some(expected) = row
        .otp_hash
        .as_deref()
        .filter(|_| row.otp_expires_at.is_some_and(|until| until > now))
    else {
        return Ok(Checked::Expired);
    };
    let mut tx = state.db.begin().await?;
    let Some(try_number) = repo::count_code_try(&mut tx, row.id, MAX_TRIES, now).await? else {
        tx.commit().await?;
        return Ok(Checked::Locked(
            row.otp_locked_until.unwrap_or(now + LOCK_SECS),
        ));
    };
    // Keyed hashes are compared: how long the comparison takes tells nothing about the code.
    let right = hash(state, row, &typed) == expected;
    let answer = if right {
        repo::code_passed(&mut tx, row.id, now).await?;
        repo::add_event(
            &mut tx,
            row.id,
            "code_passed",
            "customer",
            "The customer gave the right one-time code.",
            now,
        )
        .await?;
        Checked::Passed
    } else if try_number >= MAX_TRIES {
        repo::lock_codes(&mut tx, row.id, now + LOCK_SECS).await?;
        repo::add_event(
            &mut tx,
            row.id,
            "code_locked",
            "customer",
            &format!(
                "{MAX_TRIES} wrong one-time codes: the link refuses codes until {}.",
                db::format_time(now + LOCK_SECS)
            ),
            now,
        )
        .await?;
        Checked::Locked(now + LOCK_SECS)
    } else {
        Checked::Wrong(MAX_TRIES - try_number)
    };
    let outcome = if right {
        Outcome::Success
    } else {
        Outcome::Denied
    };
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(Actor::Anonymous, "link.code_check", outcome)
                .object("kyc_session", &row.public_id)
                .detail(serde_json::json!({ "try": try_number })),
        )
        .await?;
    tx.commit().await?;
    Ok(answer)
}
