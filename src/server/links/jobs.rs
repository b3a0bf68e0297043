//! Following sessions to their end without anyone watching: the customer's return, the Eko
//! status poller (with a lease so several instances never poll one session at once), the
//! expiry sweep, and failing calls interrupted by a crash.

use super::{move_to, status_of};
use crate::credential_kinds::CredentialKind;
use crate::provider::Provider;
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::credentials::{self, CredentialRef, Opened};
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self};
use crate::server::providers::{ProviderError, eko};
use crate::server::state::AppState;
use crate::types::{AppError, KycStatus};

use std::time::Duration;

/// Seconds between Eko status polls: 30 s, growing to 10 minutes.
pub const POLL_DELAYS: [i64; 6] = [30, 60, 120, 240, 480, 600];
/// How long a poller may hold a session.
pub const POLL_LEASE_SECONDS: i64 = 120;
/// Most query parameters recorded from a return.
pub const MAX_RETURN_PARAMS: usize = 20;
/// Longest recorded parameter name or value.
pub const MAX_RETURN_VALUE: usize = 100;

fn next_delay(poll_count: i64) -> i64 {
    POLL_DELAYS[(poll_count.max(0) as usize).min(POLL_DELAYS.len() - 1)]
}

/// The query parameters of a return, made safe to store and show: at most
/// [`MAX_RETURN_PARAMS`] pairs, names and values cut to [`MAX_RETURN_VALUE`] characters,
/// control characters dropped, long digit runs (Aadhaar, phone numbers) masked, and values
/// of names that look secret replaced.
pub fn sanitize_return_params(pairs: &[(String, String)]) -> Vec<(String, String)> {
    let clean = |text: &str| -> String {
        let text: String = text
            .chars()
            .filter(|c| !c.is_control() && !crate::validation::is_hidden_format(*c))
            .take(MAX_RETURN_VALUE)
            .collect();
        crate::server::audit::scrub(&text)
    };
    pairs
        .iter()
        .take(MAX_RETURN_PARAMS)
        .map(|(name, value)| {
            let name = clean(name);
            let lower = name.to_lowercase();
            let value = if ["token", "key", "secret", "password", "auth"]
                .iter()
                .any(|s| lower.contains(s))
            {
                "[hidden]".to_string()
            } else {
                clean(value)
            };
            (name, value)
        })
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Longest recorded claim (the `status` a return carried), in characters.
pub const MAX_CLAIM_CHARS: usize = 40;

/// Records a customer's return from a provider journey. A return is the customer's *claim*:
/// anyone can edit the address their browser lands on, so it moves an open session to
/// `returned` at most, keeps what it reported on the session, and counts repeated returns on
/// one timeline event. The verdict comes from Eko's APIs (the poller is made due at once) or,
/// for Message Central, from a staff member ([`super::outcome`]). `public_id` is `None` for
/// the fixed Message Central return address (matched by journey id or token). Unknown and
/// ended sessions are answered the same way (the customer sees a thank-you page either way);
/// a return after the end is counted but changes nothing. The audit row carries `meta`, the
/// real request's client address and request id.
pub async fn handle_return(
    state: &AppState,
    meta: &RequestMeta,
    public_id: Option<&str>,
    raw: &[(String, String)],
) -> Result<(), AppError> {
    let row = match public_id {
        Some(id) => repo::find_public(&state.db.pool, id).await?,
        None => {
            repo::find_by_journey(
                &state.db.pool,
                param(raw, "journey_id").or(param(raw, "journeyId")),
                param(raw, "token"),
            )
            .await?
        }
    };
    let Some(found) = row else {
        tracing::info!(request_id = %meta.request_id, "return for an unknown KYC session ignored");
        return Ok(());
    };
    let params = sanitize_return_params(raw);
    let shown = if params.is_empty() {
        "no parameters".to_string()
    } else {
        params
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let claim: Option<String> =
        param(&params, "status").map(|c| c.chars().take(MAX_CLAIM_CHARS).collect());
    let now = db::now();
    let mut tx = state.db.begin().await?;
    // Re-read under the transaction: concurrent returns of one session count one by one.
    let Some(row) = repo::lock_and_find(&mut tx, found.id, now).await? else {
        return Ok(());
    };
    let status = status_of(&row);
    let count = repo::count_return(&mut tx, row.id, claim.as_deref(), now).await?;
    let reported = match &claim {
        Some(claim) => format!("{claim} — not confirmed"),
        None => "no status".to_string(),
    };
    let times = if count == 1 {
        String::new()
    } else {
        format!(
            " (came back {count} times, last at {})",
            db::format_time(now)
        )
    };
    if !status.is_open() {
        let detail = format!(
            "The customer's browser came back after the session had ended ({}); nothing changed{times}. Customer's browser reported: {reported}. Parameters: {shown}.",
            status.label().to_lowercase()
        );
        if !repo::rewrite_customer_event(&mut tx, row.id, "late_answer", &detail).await? {
            repo::add_event(&mut tx, row.id, "late_answer", "customer", &detail, now).await?;
        }
    } else {
        let verdict_from = if row.provider == Provider::MessageCentral {
            "a staff member records the outcome after checking Message Central's console"
        } else {
            "Eko's status API decides"
        };
        let detail = format!(
            "The customer's browser came back from the journey{times}. Customer's browser reported: {reported}; {verdict_from}. Parameters: {shown}."
        );
        if status != KycStatus::Returned {
            move_to(
                &mut tx,
                &row,
                KycStatus::Returned,
                "customer",
                &detail,
                None,
            )
            .await?;
        } else if !repo::rewrite_customer_event(&mut tx, row.id, "returned", &detail).await? {
            repo::add_event(&mut tx, row.id, "returned", "customer", &detail, now).await?;
        }
        if row.provider == Provider::Eko {
            // Poll at once: the customer has just given (or refused) consent.
            let verification_id = param(&params, "verification_id");
            repo::set_result(&mut tx, row.id, None, verification_id).await?;
            repo::poll_now(&mut tx, row.id, db::now()).await?;
        }
    }
    let after = if status.is_open() {
        KycStatus::Returned
    } else {
        status
    };
    let event = AuditEvent::new(Actor::Anonymous, "link.return", Outcome::Success)
        .object("kyc_session", &row.public_id)
        .reason(format!(
            "the customer's browser came back; reported: {reported}"
        ))
        .detail(serde_json::json!({
            "claim": claim,
            "returns": count,
            "from": status.as_str(),
            "status": after.as_str(),
        }));
    state.audit.append(&mut tx, meta, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// The active Eko credential of `environment`, unlocked for a call.
pub(super) async fn eko_credentials(
    state: &AppState,
    environment: &str,
) -> Result<eko::EkoCredentials, ProviderError> {
    let opened = credentials::open_for_call(
        state,
        CredentialRef::Active(CredentialKind::EkoDigilocker, environment),
    )
    .await?;
    let Some(Opened {
        settings,
        mut secrets,
        ..
    }) = opened
    else {
        return Err(ProviderError::Config(
            "there is no active Eko credential any more".into(),
        ));
    };
    Ok(eko::EkoCredentials::from_stored(&settings, &mut secrets))
}

/// Failed polls in a row after which a session shows "provider not answering".
pub const FAILING_AFTER: i64 = 3;

/// What one poll found.
enum PollFinding {
    /// Not finished yet.
    Waiting(String),
    /// Finished; the masked result.
    Completed(Vec<(String, String)>, String),
    /// The customer refused consent, or the provider failed the request.
    Failed(String),
    /// A call failed (the note names which call and the address form tried). `partial` holds
    /// the masked details the status call gave when only the document call failed.
    CallFailed {
        note: String,
        partial: Option<Vec<(String, String)>>,
    },
}

/// `(label, value)` pairs of the values present, each scrubbed once more.
fn result_pairs(fields: &[(&str, Option<String>)]) -> Vec<(String, String)> {
    fields
        .iter()
        .filter_map(|(label, value)| {
            value
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (label.to_string(), crate::server::audit::scrub(v)))
        })
        .collect()
}

async fn poll_provider(state: &AppState, row: &SessionRow) -> PollFinding {
    let creds = match eko_credentials(state, &row.environment).await {
        Ok(creds) => creds,
        Err(error) => {
            return PollFinding::CallFailed {
                note: format!("Eko status call not made: {}", error.operator_message()),
                partial: None,
            };
        }
    };
    let reference_id = row.reference_id.clone().unwrap_or_default();
    let status = match eko::get_status(
        &state.providers,
        &creds,
        &reference_id,
        row.client_ref_id.as_deref(),
    )
    .await
    {
        Ok(status) => status,
        Err(error) => {
            let failed = eko::FailedCall {
                form: eko::STATUS_FORM.to_string(),
                error,
            };
            return PollFinding::CallFailed {
                note: eko::failure_note("status", &[failed]),
                partial: None,
            };
        }
    };
    if status.document_consent.as_deref() == Some("N") {
        return PollFinding::Failed("The customer refused consent in DigiLocker.".into());
    }
    if !status.completed {
        return PollFinding::Waiting("Eko: the customer has not finished yet.".into());
    }
    // What the status call told us, kept as a partial result if no document comes.
    let from_status = status
        .user
        .as_ref()
        .map(|user| {
            result_pairs(&[
                ("Name", user.name.clone()),
                ("Date of birth", user.dob.clone()),
                ("Gender", user.gender.clone()),
                ("Aadhaar", user.masked_aadhaar.clone()),
                (
                    "Mobile",
                    user.mobile_last4.clone().map(|l| format!("******{l}")),
                ),
            ])
        })
        .unwrap_or_default();
    let document_type = row
        .documents
        .split(',')
        .next()
        .filter(|d| !d.is_empty())
        .unwrap_or("AADHAAR")
        .to_string();
    let fetched = match eko::fetch_document(
        &state.providers,
        &creds,
        &reference_id,
        row.client_ref_id.as_deref(),
        row.verification_id.as_deref(),
        &document_type,
    )
    .await
    {
        Ok(fetched) => fetched,
        Err(attempts) => {
            let kept = if from_status.is_empty() {
                String::new()
            } else {
                " The details from the status call are kept as a partial result.".to_string()
            };
            return PollFinding::CallFailed {
                note: format!("{}{kept}", eko::failure_note("document", &attempts)),
                partial: (!from_status.is_empty()).then_some(from_status),
            };
        }
    };
    let document = fetched.document;
    let shape_note = fetched
        .fell_back_from
        .as_ref()
        .map(|failed| {
            format!(
                " (document read with {} after {})",
                fetched.shape.form(&document_type),
                failed.summary()
            )
        })
        .unwrap_or_default();
    if document.is_verified() {
        let result = result_pairs(&[
            ("Document", Some(document.document_type.clone())),
            ("Name", document.name.clone()),
            ("Date of birth", document.dob.clone()),
            ("Gender", document.gender.clone()),
            ("Aadhaar", document.masked_aadhaar.clone()),
            ("City", document.city.clone()),
            ("State", document.state.clone()),
        ]);
        PollFinding::Completed(
            result,
            format!("Eko: consent given; {document_type} verified{shape_note}."),
        )
    } else if document.verification_status == "PENDING" {
        PollFinding::Waiting(format!(
            "Eko: consent given; the {document_type} document is not ready yet{shape_note}."
        ))
    } else {
        PollFinding::Failed(format!(
            "Eko reported the {document_type} document as {}.",
            document.verification_status.to_lowercase()
        ))
    }
}

/// Polls one session if its lease can be taken; returns whether it was polled.
pub async fn poll_session(state: &AppState, id: i64, owner: &str) -> Result<bool, AppError> {
    let now = db::now();
    if !repo::claim_poll(&state.db.pool, id, owner, now, POLL_LEASE_SECONDS).await? {
        return Ok(false);
    }
    let row = {
        let mut conn = state.db.pool.acquire().await?;
        repo::find(&mut conn, id).await?
    };
    let Some(row) = row else { return Ok(false) };
    let finding = poll_provider(state, &row).await;
    let mut tx = state.db.begin().await?;
    // Re-read under the transaction: the session may have ended while we waited.
    let current = repo::lock_and_find(&mut tx, id, db::now())
        .await?
        .ok_or_else(|| AppError::NotFound("The session vanished.".into()))?;
    let status = status_of(&current);
    match finding {
        _ if !status.is_open() => {
            repo::add_event(
                &mut tx,
                id,
                "late_answer",
                "system",
                "Eko answered after the session had ended; nothing changed.",
                db::now(),
            )
            .await?;
            repo::release_poll(&mut tx, id, owner, None).await?;
        }
        PollFinding::Completed(result, note) => {
            let json = serde_json::to_string(&result).unwrap_or_else(|_| "[]".into());
            repo::store_result(&mut tx, id, &json, false).await?;
            repo::clear_poll_failures(&mut tx, id).await?;
            move_to(
                &mut tx,
                &current,
                KycStatus::Completed,
                "system",
                &note,
                None,
            )
            .await?;
            repo::release_poll(&mut tx, id, owner, None).await?;
            record_system_status(state, &mut tx, &current, KycStatus::Completed, &note).await?;
        }
        PollFinding::Failed(reason) => {
            repo::clear_poll_failures(&mut tx, id).await?;
            move_to(
                &mut tx,
                &current,
                KycStatus::Failed,
                "system",
                &reason,
                Some(&reason),
            )
            .await?;
            repo::release_poll(&mut tx, id, owner, None).await?;
            record_system_status(state, &mut tx, &current, KycStatus::Failed, &reason).await?;
        }
        // Not over yet: noted on the timeline, polled again later.
        PollFinding::Waiting(note) => {
            repo::clear_poll_failures(&mut tx, id).await?;
            poll_again(&mut tx, &current, owner, now, &note).await?;
        }
        // A call failed: noted (naming the call), counted, polled again later; what the
        // status call gave is kept meanwhile.
        PollFinding::CallFailed { note, partial } => {
            if let Some(partial) = partial {
                let json = serde_json::to_string(&partial).unwrap_or_else(|_| "[]".into());
                repo::store_result(&mut tx, id, &json, true).await?;
            }
            repo::note_poll_failure(&mut tx, id, now).await?;
            poll_again(&mut tx, &current, owner, now, &note).await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

/// Notes an unfinished poll of `row` on its timeline and hands the session back for the
/// next poll, a little later than the last (none once that would be past its expiry).
async fn poll_again(
    tx: &mut sqlx::AnyConnection,
    row: &SessionRow,
    owner: &str,
    now: i64,
    note: &str,
) -> Result<(), AppError> {
    let delay = next_delay(row.poll_count + 1);
    let next = row
        .expires_at
        .filter(|expires| now + delay < *expires)
        .map(|_| now + delay);
    repo::add_event(&mut *tx, row.id, "polled", "system", note, db::now()).await?;
    repo::release_poll(tx, row.id, owner, next).await?;
    Ok(())
}

async fn record_system_status(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    row: &SessionRow,
    to: KycStatus,
    reason: &str,
) -> Result<(), AppError> {
    let note = format!("{} → {}: {reason}", row.status, to.as_str());
    audit_system_status(state, tx, row, to, note).await
}

/// The audit row of a status the system (not a staff member) gave a session: a success when
/// it completed, a failure for any other end; `note` says from what, to what and why.
async fn audit_system_status(
    state: &AppState,
    tx: &mut sqlx::AnyConnection,
    row: &SessionRow,
    to: KycStatus,
    note: String,
) -> Result<(), AppError> {
    let outcome = if to == KycStatus::Completed {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let event = AuditEvent::new(Actor::System, "link.status", outcome)
        .object("kyc_session", &row.public_id)
        .reason(note);
    state
        .audit
        .append(tx, &RequestMeta::system(), &event)
        .await?;
    Ok(())
}

/// Polls every due Eko session once; returns how many were polled.
pub async fn poll_due(state: &AppState, owner: &str) -> Result<usize, AppError> {
    let mut polled = 0;
    for id in repo::due_polls(&state.db.pool, db::now()).await? {
        if poll_session(state, id, owner).await? {
            polled += 1;
        }
    }
    Ok(polled)
}

/// Ends open sessions past their expiry, and fails sessions whose provider call was
/// interrupted (still `creating` long after any call could still answer). Returns how
/// many sessions changed.
pub async fn sweep(state: &AppState) -> Result<usize, AppError> {
    let now = db::now();
    let mut changed = 0;
    for (id, _) in repo::expired_open(&state.db.pool, now).await? {
        let mut tx = state.db.begin().await?;
        let Some(row) = repo::lock_and_find(&mut tx, id, now).await? else {
            continue;
        };
        if !status_of(&row).is_open() || row.expires_at.is_none_or(|e| e >= now) {
            continue;
        }
        let note = "The link expired before the customer finished.";
        if move_to(&mut tx, &row, KycStatus::Expired, "system", note, None)
            .await
            .is_ok()
        {
            record_system_status(state, &mut tx, &row, KycStatus::Expired, note).await?;
            tx.commit().await?;
            changed += 1;
        }
    }
    let grace = state.config.provider_request_timeout.as_secs() as i64 + 30;
    for id in repo::stale_creating(&state.db.pool, now - grace).await? {
        let mut tx = state.db.begin().await?;
        let Some(row) = repo::lock_and_find(&mut tx, id, now).await? else {
            continue;
        };
        let reason = "Interrupted before the provider answered (KYC Desk stopped during the call). Create the link again.";
        if move_to(
            &mut tx,
            &row,
            KycStatus::Failed,
            "system",
            reason,
            Some(reason),
        )
        .await
        .is_ok()
        {
            record_system_status(state, &mut tx, &row, KycStatus::Failed, reason).await?;
            tx.commit().await?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Runs the poller and the sweep in the background, every few seconds.
pub fn spawn(state: AppState) {
    let owner = format!("instance-{}", uuid::Uuid::new_v4().simple());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(error) = sweep(&state).await {
                tracing::warn!(%error, "session sweep failed; retrying shortly");
            }
            if let Err(error) = poll_due(&state, &owner).await {
                tracing::warn!(%error, "Eko status polling failed; retrying shortly");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_parameters_are_bounded_and_masked() {
        let mut pairs: Vec<(String, String)> = vec![
            ("status".into(), "approved".into()),
            ("uid".into(), "123412341234".into()),
            ("token".into(), "abc".into()),
            ("note".into(), "x".repeat(500)),
            ("evil".into(), "a\u{0}b\nc\u{202E}d\u{200B}".into()),
        ];
        for i in 0..30 {
            pairs.push((format!("p{i}"), "v".into()));
        }
        let clean = sanitize_return_params(&pairs);
        assert_eq!(clean.len(), MAX_RETURN_PARAMS);
        assert_eq!(clean[0], ("status".into(), "approved".into()));
        assert_eq!(clean[1].1, "********1234");
        assert_eq!(clean[2].1, "[hidden]");
        assert_eq!(clean[3].1.chars().count(), MAX_RETURN_VALUE);
        assert_eq!(clean[4].1, "abcd");
    }

    #[test]
    fn polls_back_off_to_ten_minutes() {
        assert_eq!(next_delay(0), 30);
        assert_eq!(next_delay(1), 60);
        assert_eq!(next_delay(50), 600);
    }
}
