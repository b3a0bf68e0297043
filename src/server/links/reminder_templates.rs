//! The reminder texts, admin-edited templates in English and Hindi: the SMS/WhatsApp text
//! (India's DLT rules drop a text that does not match a registered template, so it must be
//! the admin's, word for word) and the email's subject and body. Stored as rows of
//! `message_templates` (`reminder_sms_en`, `reminder_email_en`, … ); until an admin saves
//! them, the built-in texts below are used.

use super::send;
use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::auth::AuthUser;
use crate::server::db::{self, links as repo};
use crate::server::state::AppState;
use crate::types::{AppError, FieldError, ReminderTemplates, ReminderTexts};

/// The placeholders a reminder may use.
pub const PLACEHOLDERS: [&str; 4] = ["{name}", "{link}", "{expires}", "{company}"];

/// The longest SMS text accepted.
pub const SMS_MAX_CHARS: usize = 500;

/// The languages, as the customer's consent names them.
const LANGUAGES: [&str; 2] = ["en", "hi"];

/// The built-in texts of `language`.
fn built_in(language: &str) -> ReminderTexts {
    match language {
        "hi" => ReminderTexts {
            sms: "अनुस्मारक: {company} आपके पहचान सत्यापन की प्रतीक्षा कर रहा है। यहाँ जारी रखें: {link} ({expires} तक मान्य)".into(),
            email_subject: "अनुस्मारक: {company} के लिए अपनी पहचान सत्यापित करें".into(),
            email_body: "प्रिय {name},\n\n{company} अब भी आपके पहचान सत्यापन की प्रतीक्षा कर रहा है। इसमें कुछ ही मिनट लगते हैं:\n\n{link}\n\nयह लिंक {expires} तक काम करेगा। अगर आप पहले ही पूरा कर चुके हैं, तो इस संदेश को अनदेखा करें।".into(),
        },
        _ => ReminderTexts {
            sms: "Reminder: {company} is waiting for your identity verification. Continue here: {link} (valid until {expires})".into(),
            email_subject: "Reminder: verify your identity for {company}".into(),
            email_body: "Dear {name},\n\n{company} is still waiting for your identity verification. It takes a few minutes:\n\n{link}\n\nThe link works until {expires}. If you have finished already, ignore this message.".into(),
        },
    }
}

fn sms_row(language: &str) -> String {
    format!("reminder_sms_{language}")
}

fn email_row(language: &str) -> String {
    format!("reminder_email_{language}")
}

/// The texts of one language (`en`, `hi`; anything else is English): the saved ones, else
/// the built-in ones.
pub async fn texts(state: &AppState, language: &str) -> Result<ReminderTexts, AppError> {
    let language = if language == "hi" { "hi" } else { "en" };
    let mut texts = built_in(language);
    if let Some((_, sms)) = repo::template(&state.db.pool, &sms_row(language)).await? {
        texts.sms = sms;
    }
    if let Some((subject, body)) = repo::template(&state.db.pool, &email_row(language)).await? {
        texts.email_subject = subject;
        texts.email_body = body;
    }
    Ok(texts)
}

/// Both languages, with who saved them last (admins' editor).
pub async fn current(state: &AppState) -> Result<ReminderTemplates, AppError> {
    let mut templates = ReminderTemplates {
        updated_by: "KYC Desk".into(),
        en: texts(state, "en").await?,
        hi: texts(state, "hi").await?,
        ..ReminderTemplates::default()
    };
    let mut newest = 0;
    for language in LANGUAGES {
        for name in [sms_row(language), email_row(language)] {
            if let Some((_, _, by, at)) = repo::template_with_author(&state.db.pool, &name).await?
                && at > newest
            {
                newest = at;
                templates.updated_by = by;
                templates.updated_at = db::format_time(at);
            }
        }
    }
    Ok(templates)
}

/// Placeholders in `text` that are not ours (`{nmae}`), or a brace left open.
fn unknown_placeholders(text: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open..];
        match after.find('}') {
            Some(close) => {
                let candidate = &after[..=close];
                if !PLACEHOLDERS.contains(&candidate) {
                    unknown.push(candidate.to_string());
                }
                rest = &after[close + 1..];
            }
            None => {
                unknown.push(after.chars().take(20).collect());
                break;
            }
        }
    }
    unknown
}

/// Checks one language's texts; field errors are named `{language}.sms`,
/// `{language}.email_subject`, `{language}.email_body`.
fn check(language: &str, texts: &ReminderTexts) -> (ReminderTexts, Vec<FieldError>) {
    let mut fields = Vec::new();
    let sms = texts.sms.trim().replace("\r\n", "\n");
    let sms_problem = if sms.is_empty() {
        Some("Enter the SMS text, exactly as registered as a DLT template.".to_string())
    } else if !sms.contains("{link}") {
        Some("The SMS must contain {link}, or the customer gets no link.".to_string())
    } else if sms.chars().count() > SMS_MAX_CHARS {
        Some(format!("Use at most {SMS_MAX_CHARS} characters."))
    } else {
        None
    };
    if let Some(message) = sms_problem {
        fields.push(FieldError {
            field: format!("{language}.sms"),
            message,
        });
    }
    let prefix = format!("{language}.email_");
    let (subject, body, email_fields) =
        send::check_email_template(&texts.email_subject, &texts.email_body, &prefix);
    fields.extend(email_fields);
    for (part, text) in [
        ("sms", &sms),
        ("email_subject", &subject),
        ("email_body", &body),
    ] {
        let field = format!("{language}.{part}");
        let unknown = unknown_placeholders(text);
        if !unknown.is_empty() && !fields.iter().any(|f| f.field == field) {
            fields.push(FieldError {
                field,
                message: format!(
                    "Unknown placeholder {}: use {{name}}, {{link}}, {{expires}} or {{company}}.",
                    unknown.join(", ")
                ),
            });
        }
    }
    (
        ReminderTexts {
            sms,
            email_subject: subject,
            email_body: body,
        },
        fields,
    )
}

/// Saves both languages (admins, after a step-up): every text is required, each message
/// carries `{link}`, no unknown placeholder. All or nothing, audited `template.update`.
pub async fn save(
    state: &AppState,
    meta: &RequestMeta,
    user: &AuthUser,
    templates: ReminderTemplates,
) -> Result<ReminderTemplates, AppError> {
    let (en, mut fields) = check("en", &templates.en);
    let (hi, hi_fields) = check("hi", &templates.hi);
    fields.extend(hi_fields);
    if let Some(error) = AppError::from_fields(fields) {
        return Err(error);
    }
    let now = db::now();
    let mut tx = state.db.begin().await?;
    for (language, texts) in [("en", &en), ("hi", &hi)] {
        repo::save_template(
            &mut tx,
            &sms_row(language),
            "",
            &texts.sms,
            &user.email,
            now,
        )
        .await?;
        repo::save_template(
            &mut tx,
            &email_row(language),
            &texts.email_subject,
            &texts.email_body,
            &user.email,
            now,
        )
        .await?;
    }
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(user.actor(), "template.update", Outcome::Success)
                .object("template", "reminders"),
        )
        .await?;
    tx.commit().await?;
    Ok(ReminderTemplates {
        updated_by: user.email.clone(),
        updated_at: db::format_time(now),
        en,
        hi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_texts_pass_the_checks_in_both_languages() {
        for language in LANGUAGES {
            let (_, fields) = check(language, &built_in(language));
            assert!(fields.is_empty(), "{language}: {fields:?}");
        }
    }

    #[test]
    fn unknown_placeholders_and_a_missing_link_are_field_errors() {
        let texts = ReminderTexts {
            sms: "Hello {nmae}, continue at {link}".into(),
            email_subject: "Reminder".into(),
            email_body: "No link here {company".into(),
        };
        let (_, fields) = check("hi", &texts);
        let named: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(named, ["hi.email_body", "hi.sms"]);
        assert!(fields[1].message.contains("{nmae}"), "{:?}", fields[1]);
        assert!(fields[0].message.contains("{link}"), "{:?}", fields[0]);
        assert_eq!(unknown_placeholders("{company"), ["{company"]);
        assert!(unknown_placeholders("{name} {link} {expires} {company}").is_empty());
    }
}
