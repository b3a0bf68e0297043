//! A Message Central verdict recorded by a named staff member. Message Central documents no
//! result API, so its customer's return is only a claim; an operator or admin checks the
//! provider's console and records `completed` or `failed` with a note, on the timeline and in
//! an audit row (`link.outcome_recorded`) that names them.

use super::view::{self, detail_of};
use super::{move_to, session, status_of};
use crate::provider::Provider;
use crate::server::audit::{self, AuditEvent, Outcome, RequestMeta};
use crate::server::auth::AuthUser;
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self};
use crate::server::state::AppState;
use crate::types::{AppError, FieldError, KycStatus, SessionDetail};

/// Longest note, in characters (shared with the form).
pub use crate::types::MAX_OUTCOME_NOTE_CHARS as MAX_NOTE_CHARS;

/// Whether staff may record an outcome for `row` now: a Message Central session in `returned`
/// (sessions that returned before claims were counted included), or still open after its
/// customer's browser came back. Eko sessions end only on what Eko's status and document APIs
/// answer.
pub fn recordable(row: &SessionRow) -> bool {
    let status = status_of(row);
    row.provider == Provider::MessageCentral
        && (status == KycStatus::Returned || (status.is_open() && row.return_count > 0))
}

/// Checks the form: the outcome (`completed` or `failed`) and a note of at most
/// [`MAX_NOTE_CHARS`] characters, both required; every bad field is named.
pub fn parse(outcome: &str, note: &str) -> Result<(KycStatus, String), AppError> {
    let mut fields = Vec::new();
    let mut problem = |field: &str, message: String| {
        fields.push(FieldError {
            field: field.into(),
            message,
        })
    };
    let verdict = match outcome.trim() {
        "completed" => Some(KycStatus::Completed),
        "failed" => Some(KycStatus::Failed),
        "" => {
            problem(
                "outcome",
                "Choose the outcome Message Central's console shows: completed or failed.".into(),
            );
            None
        }
        _ => {
            problem("outcome", "Choose completed or failed.".into());
            None
        }
    };
    let note = note.trim();
    let length = note.chars().count();
    if note.is_empty() {
        problem(
            "note",
            "Write what you checked in Message Central's console (for example its verification reference).".into(),
        );
    } else if length > MAX_NOTE_CHARS {
        problem(
            "note",
            format!("Keep the note to {MAX_NOTE_CHARS} characters (it has {length})."),
        );
    } else if note.chars().any(|c| {
        (c.is_control() && c != '\n' && c != '\r' && c != '\t')
            || crate::validation::is_hidden_format(c)
    }) {
        problem(
            "note",
            "Remove control or invisible formatting characters from the note.".into(),
        );
    }
    match (AppError::from_fields(fields), verdict) {
        (Some(error), _) => Err(error),
        (None, Some(verdict)) => Ok((verdict, note.to_string())),
        (None, None) => unreachable!("a missing outcome is a field error"),
    }
}

/// Records the outcome `outcome` of the Message Central session `public_id`, as `user` found it
/// in the provider's console, with `note`.
pub async fn record(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    public_id: &str,
    outcome: &str,
    note: &str,
) -> Result<SessionDetail, AppError> {
    let (verdict, note) = parse(outcome, note)?;
    // Phone numbers, emails and Aadhaar numbers typed into the note are masked before it is
    // stored anywhere.
    let note = audit::scrub(&note);
    let found = session(state, public_id).await?;
    let mut tx = state.db.begin().await?;
    // Re-read under the transaction: a return, the sweep or another staff member may have
    // changed the session meanwhile.
    let row = repo::lock_and_find(&mut tx, found.id, db::now())
        .await?
        .ok_or_else(|| AppError::NotFound("There is no such KYC session.".into()))?;
    refuse_unless_recordable(&row)?;
    let from = status_of(&row);
    let claim = row.return_claim.clone().unwrap_or_default();
    let reported = if claim.is_empty() {
        "no status".to_string()
    } else {
        claim.clone()
    };
    let detail = format!(
        "Outcome recorded after checking Message Central's console: {}. The customer's browser had reported: {reported}. Note: {note}",
        verdict.as_str()
    );
    let error = (verdict == KycStatus::Failed).then(|| {
        format!(
            "Recorded as failed by {} after checking Message Central: {note}",
            user.email
        )
    });
    move_to(
        &mut tx,
        &row,
        verdict,
        &user.email,
        &detail,
        error.as_deref(),
    )
    .await?;
    repo::set_recorded_outcome(&mut tx, row.id, &user.email, &note, db::now()).await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "link.outcome_recorded", Outcome::Success)
                .object("kyc_session", &row.public_id)
                .reason(format!(
                    "{} → {} recorded by staff after checking Message Central's console",
                    from.as_str(),
                    verdict.as_str()
                ))
                .detail(serde_json::json!({
                    "outcome": verdict.as_str(),
                    "from": from.as_str(),
                    "customer_claim": claim,
                    "note": note,
                })),
        )
        .await?;
    tx.commit().await?;
    let row = session(state, public_id).await?;
    detail_of(state, &row, true).await
}

/// Why an outcome cannot be recorded for `row`, if it cannot.
fn refuse_unless_recordable(row: &SessionRow) -> Result<(), AppError> {
    if recordable(row) {
        return Ok(());
    }
    let status = status_of(row);
    Err(AppError::Conflict(
        if row.provider != Provider::MessageCentral {
            format!(
                "{} sessions end only on what the provider's status and document APIs answer; an outcome cannot be recorded by hand.",
                view::provider_label(row.provider, &row.flow)
            )
        } else if !status.is_open() {
            format!(
                "This session is {} already; its outcome cannot be recorded again.",
                status.label().to_lowercase()
            )
        } else {
            "The customer has not come back from Message Central yet; record the outcome once they have.".into()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_names_every_bad_field() {
        let error = parse("", "").unwrap_err();
        assert!(error.field_message("outcome").is_some());
        assert!(error.field_message("note").is_some());
        let error = parse("approved", "checked").unwrap_err();
        assert_eq!(
            error.field_message("outcome").as_deref(),
            Some("Choose completed or failed.")
        );
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        let error = parse("failed", &long).unwrap_err();
        assert!(error.field_message("note").unwrap().contains("500"));
        assert!(parse("failed", "a\u{202E}b").is_err());
        assert_eq!(
            parse(" completed ", "  Console shows verified.  ").unwrap(),
            (KycStatus::Completed, "Console shows verified.".to_string())
        );
        assert!(parse("failed", &"y".repeat(MAX_NOTE_CHARS)).is_ok());
    }
}
