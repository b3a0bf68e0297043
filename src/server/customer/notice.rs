//! The customer's privacy notice (India's DPDP Act): the current version for the customer's
//! page, and an admin saving a new version (checked field by field, audited). A version a
//! consent names is never changed; saving always writes the next one.

use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::auth::AuthUser;
use crate::server::db::{self, notices as repo};
use crate::server::state::AppState;
use crate::types::{AppError, FieldError, NoticeTexts, PrivacyNotice};

/// Longest text of one notice section, in characters.
pub const MAX_SECTION_CHARS: usize = 2000;

/// The current notice. The first version is written by the migration, so one always exists.
pub async fn current(state: &AppState) -> Result<PrivacyNotice, AppError> {
    let row = repo::current(&state.db.pool)
        .await?
        .ok_or_else(|| AppError::NotFound("There is no privacy notice.".into()))?;
    Ok(notice_of(&row))
}

fn notice_of(row: &repo::NoticeRow) -> PrivacyNotice {
    let mut notice: PrivacyNotice = serde_json::from_str(&row.texts).unwrap_or_default();
    notice.version = row.version;
    notice.created_by = row.created_by.clone();
    notice.created_at = if row.created_at == 0 {
        "with KYC Desk".into()
    } else {
        db::format_time(row.created_at)
    };
    notice
}

/// Checks every section of both languages; a field error names `en.purpose`, `hi.retention`….
fn check(notice: &PrivacyNotice) -> Result<PrivacyNotice, AppError> {
    let mut fields = Vec::new();
    let mut clean = |language: &str, texts: &NoticeTexts| {
        let mut out = NoticeTexts::default();
        for (name, value, slot) in [
            ("purpose", &texts.purpose, &mut out.purpose),
            ("data_items", &texts.data_items, &mut out.data_items),
            ("retention", &texts.retention, &mut out.retention),
            ("withdrawal", &texts.withdrawal, &mut out.withdrawal),
            ("complaint", &texts.complaint, &mut out.complaint),
        ] {
            let value = value.trim().replace("\r\n", "\n");
            let field = format!("{language}.{name}");
            if value.is_empty() {
                fields.push(FieldError {
                    field,
                    message: "Write this part of the notice; the law asks for each.".into(),
                });
            } else if value.chars().count() > MAX_SECTION_CHARS {
                fields.push(FieldError {
                    field,
                    message: format!("Use at most {MAX_SECTION_CHARS} characters."),
                });
            } else if value.chars().any(|c| c.is_control() && c != '\n') {
                fields.push(FieldError {
                    field,
                    message: "Remove the control characters from this text.".into(),
                });
            }
            *slot = value;
        }
        out
    };
    let en = clean("en", &notice.en);
    let hi = clean("hi", &notice.hi);
    match AppError::from_fields(fields) {
        Some(error) => Err(error),
        None => Ok(PrivacyNotice {
            en,
            hi,
            ..PrivacyNotice::default()
        }),
    }
}

/// Saves `notice` as the next version (admins, after a step-up); audited `notice.save` with
/// the new version number.
pub async fn save(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    notice: PrivacyNotice,
) -> Result<PrivacyNotice, AppError> {
    let checked = check(&notice)?;
    let texts = serde_json::json!({ "en": checked.en, "hi": checked.hi }).to_string();
    let mut tx = state.db.begin().await?;
    let version = match repo::insert_next(&mut tx, &texts, &user.email, db::now()).await {
        Ok(version) => version,
        Err(error) if db::users::is_unique_violation(&error) => {
            return Err(AppError::Conflict(
                "Someone saved the notice at the same moment. Reload the page and check it.".into(),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "notice.save", Outcome::Success)
                .object("privacy_notice", version.to_string()),
        )
        .await?;
    tx.commit().await?;
    current(state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_of_both_languages_is_asked_for() {
        let mut notice = PrivacyNotice::default();
        notice.en.purpose = "  Why  ".into();
        let Err(AppError::Validation { fields, .. }) = check(&notice) else {
            panic!("an incomplete notice passed");
        };
        assert_eq!(fields.len(), 9, "{fields:?}");
        assert!(fields.iter().any(|f| f.field == "hi.complaint"));
        assert!(!fields.iter().any(|f| f.field == "en.purpose"));
        for texts in [&mut notice.en, &mut notice.hi] {
            texts.purpose = "p".into();
            texts.data_items = "d".into();
            texts.retention = "r".into();
            texts.withdrawal = "w".into();
            texts.complaint = "c".into();
        }
        notice.hi.retention = "x".repeat(MAX_SECTION_CHARS + 1);
        let Err(AppError::Validation { fields, .. }) = check(&notice) else {
            panic!("an over-long section passed");
        };
        assert_eq!(fields[0].field, "hi.retention");
        notice.hi.retention = "r\r\nkept".into();
        assert_eq!(check(&notice).unwrap().hi.retention, "r\nkept");
    }
}
