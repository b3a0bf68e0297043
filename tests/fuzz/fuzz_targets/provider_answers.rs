//! Every provider answer parser on any body, as a live call would hand it over: no panic;
//! what a parser returns keeps its promises (http(s) links, masked Aadhaar in the
//! `XXXX-XXXX-1234` form, four-digit mobile endings), and no text or redacted copy it returns
//! carries an Aadhaar-length (12-digit) number or a key named like a secret.
#![no_main]

use kyc_desk::server::providers::fuzzing;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Whether `text` has a run of exactly 12 ASCII digits (the shape of an Aadhaar number).
fn has_aadhaar_run(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|run| run.len() == 12)
}

fn assert_clean_text(what: &str, text: &str) {
    assert!(
        !has_aadhaar_run(text),
        "{what} keeps a 12-digit number: {text:?}"
    );
}

/// The key marks `redact_json` promises to drop (lower-case, `-` and `_` removed).
fn secret_like(key: &str) -> bool {
    let compact: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    compact.ends_with("token")
        || compact.contains("secret")
        || ["apikey", "developerkey", "accesskey", "password", "photo"]
            .iter()
            .any(|mark| compact.contains(mark))
}

fn assert_redacted(value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                assert!(!secret_like(key), "redacted copy keeps the key {key:?}");
                assert_clean_text("a redacted key", key);
                assert_redacted(item);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_redacted),
        Value::String(text) => assert_clean_text("a redacted string", text),
        Value::Number(number) => assert_clean_text("a redacted number", &number.to_string()),
        Value::Null | Value::Bool(_) => {}
    }
}

fn assert_masked_aadhaar(value: &Option<String>) {
    if let Some(masked) = value {
        let last4 = masked
            .strip_prefix("XXXX-XXXX-")
            .unwrap_or_else(|| panic!("masked Aadhaar {masked:?}"));
        assert!(
            last4.len() == 4 && last4.bytes().all(|b| b.is_ascii_digit()),
            "masked Aadhaar {masked:?}"
        );
    }
}

fn assert_web_link(link: &str) {
    let parsed = url::Url::parse(link).unwrap_or_else(|e| panic!("{link:?}: {e}"));
    assert!(matches!(parsed.scheme(), "http" | "https"), "{link:?}");
}

fuzz_target!(|body: &[u8]| {
    if let Ok(link) = fuzzing::message_central_link(body) {
        assert_web_link(&link.url);
        assert!(link.expires_in_minutes > 0);
        for text in [&link.token, &link.journey_id, &link.message]
            .into_iter()
            .flatten()
        {
            assert!(!text.is_empty());
            assert_clean_text("a Message Central field", text);
        }
        assert_redacted(&link.redacted_body);
    }

    if let Ok(link) = fuzzing::eko_created(body) {
        assert_web_link(&link.url);
        assert!(!link.reference_id.is_empty());
        assert_clean_text("the Eko reference", &link.reference_id);
        assert_redacted(&link.redacted_body);
    }

    if let Ok(status) = fuzzing::eko_status(body) {
        assert_eq!(status.completed, status.user.is_some());
        if let Some(user) = &status.user {
            assert_masked_aadhaar(&user.masked_aadhaar);
            if let Some(last4) = &user.mobile_last4 {
                assert!(last4.len() == 4 && last4.bytes().all(|b| b.is_ascii_digit()));
            }
            for text in [&user.name, &user.dob, &user.gender].into_iter().flatten() {
                assert_clean_text("an Eko user detail", text);
            }
        }
        for text in status
            .document_consent
            .iter()
            .chain(&status.document_requested)
        {
            assert_clean_text("an Eko document name", text);
        }
        assert_redacted(&status.redacted_body);
    }

    if let Ok(document) = fuzzing::eko_document(body, "AADHAAR") {
        assert_masked_aadhaar(&document.masked_aadhaar);
        assert_eq!(
            document.verification_status,
            document.verification_status.to_ascii_uppercase()
        );
        for text in [
            &document.name,
            &document.dob,
            &document.gender,
            &document.city,
            &document.state,
        ]
        .into_iter()
        .flatten()
        {
            assert_clean_text("an Eko document field", text);
        }
        assert_redacted(&document.redacted_body);
    }

    if let Some(detail) = fuzzing::error_detail(body) {
        let length = detail.chars().count();
        assert!(length > 0 && length <= 300, "{length} characters");
        // A detail cut at the limit may end in the first 12 digits of a longer number.
        if length < 300 {
            assert_clean_text("an error detail", &detail);
        }
    }
});
