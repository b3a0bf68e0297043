//! A scan of every audit row the whole test suite wrote. Run by the test command after the
//! suite, over every PostgreSQL database the suite's tests created (each dual test runs on
//! PostgreSQL too, so every recorded action of the suite is covered).

use crate::common::PASSWORD;
use sqlx::Connection;

/// Values the suite types that must never appear in an audit row.
const FORBIDDEN: &[&str] = &[
    PASSWORD,
    "another long passphrase 7",
    "wrong password 123",
    "a long admin passphrase",
    "canary-",
    "kyc-canary",
    // Customer emails and phone numbers the link tests use (only masked forms may appear).
    "meera@example.com",
    "ravi@example.com",
    "someone@example.com",
    "9876543210",
    "9123456780",
    "9123456781",
    // Sandbox secrets.
    "sandbox-message-central-api-key",
    "sandbox-sms-password",
    "d2fe1d99-6298-4af2-8cc5-d97dcf46df30",
];

fn has_twelve_digits(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 12 {
            return true;
        }
    }
    false
}

/// `text` as a person reads it: percent escapes decoded, `+` read as a space (URL queries
/// are recorded too).
fn decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with single spaces, dashes and dots between digits removed, so a number written
/// in groups (`98765 43210`, `1234-5678-9012`) reads as one.
fn collapsed(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            let joins = matches!(c, ' ' | '-' | '.')
                && *i > 0
                && chars[i - 1].is_ascii_digit()
                && chars.get(i + 1).is_some_and(char::is_ascii_digit);
            !joins
        })
        .map(|(_, c)| *c)
        .collect()
}

/// Whether `text` holds an Aadhaar number written in three groups of four digits.
fn has_grouped_aadhaar(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let digits_at =
        |at: usize| (at..at + 4).all(|i| chars.get(i).is_some_and(char::is_ascii_digit));
    let separator_at = |at: usize| matches!(chars.get(at), Some(' ' | '-' | '.'));
    (0..chars.len()).any(|start| {
        (start == 0 || !chars[start - 1].is_ascii_digit())
            && digits_at(start)
            && separator_at(start + 4)
            && digits_at(start + 5)
            && separator_at(start + 9)
            && digits_at(start + 10)
            && !chars.get(start + 14).is_some_and(char::is_ascii_digit)
    })
}

/// Whether `text` holds something shaped like a recovery code (`abcde-fghij`: two runs of five
/// base32 letters or digits 2–7 around a dash), standing on its own.
fn has_recovery_code(text: &str) -> bool {
    let b = text.as_bytes();
    let code_char = |c: u8| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c);
    // Base64url ids (session public ids) hold dashes too: a code stands apart from them.
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    (0..b.len().saturating_sub(10)).any(|i| {
        b[i..i + 5].iter().all(|&c| code_char(c))
            && b[i + 5] == b'-'
            && b[i + 6..i + 11].iter().all(|&c| code_char(c))
            && (i == 0 || !word(b[i - 1]))
            && b.get(i + 11).is_none_or(|&c| !word(c))
    })
}

/// Whether `text` holds a run of 32 or more base32 capitals and digits 2–7: the shape of an
/// authenticator seed as the enrolment page shows it.
fn has_totp_seed(text: &str) -> bool {
    let mut run = 0;
    for c in text.bytes() {
        if c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c) {
            run += 1;
            if run >= 32 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// What is wrong with one stored text: forbidden values however written, the shapes of
/// recovery codes and authenticator seeds, and Aadhaar-length numbers (plain, grouped or
/// percent-encoded).
fn problems_in(text: &str, with_numbers: bool) -> Vec<String> {
    let readable = decoded(text);
    let joined = collapsed(&readable);
    let mut found: Vec<String> = FORBIDDEN
        .iter()
        .filter(|needle| {
            [text, readable.as_str(), joined.as_str()]
                .iter()
                .any(|t| t.contains(*needle))
        })
        .map(|needle| format!("contains {needle:?}"))
        .collect();
    if has_recovery_code(&readable) {
        found.push(format!("has a recovery code: {text}"));
    }
    if has_totp_seed(&readable) {
        found.push(format!("has an authenticator seed: {text}"));
    }
    if with_numbers && (has_twelve_digits(&readable) || has_grouped_aadhaar(&readable)) {
        found.push(format!("has an Aadhaar-length number: {text}"));
    }
    found
}

#[test]
fn the_scan_catches_numbers_written_in_groups_or_encoded() {
    for leak in [
        r#"{"filter":"q=98765%2043210"}"#,
        r#"{"filter":{"q":"98765 43210"}}"#,
        "q=98765+43210",
        "987.654.3210",
        "1234 5678 9012",
        "1234-5678-9012",
        "q=1234%205678%209012",
        "to meera%40example.com",
        r#"{"code":"abcde-fg2h7"}"#,
        "seed JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    ] {
        assert!(!problems_in(leak, true).is_empty(), "{leak}");
    }
    for clean in [
        r#"{"filter":{"q":"***** *3210"}}"#,
        "**** **** 9012",
        "2026-11-22 14:30:00.123 UTC",
        "m***@example.com",
        "auth.recovery_codes_issued",
        "link-created-by-admin",
        "Zq_abcde-fghij_x9",
        "AADHAAR,PAN",
    ] {
        assert_eq!(problems_in(clean, true), Vec::<String>::new(), "{clean}");
    }
}

#[tokio::test]
#[ignore = "run by the test command after the whole suite (it reads the suite's databases)"]
async fn every_audit_row_of_the_suite_is_clean() {
    let admin_url = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
    sqlx::any::install_default_drivers();
    let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap();
    let databases: Vec<(String,)> =
        sqlx::query_as("SELECT datname::text FROM pg_database WHERE datname LIKE 'kycdesk_t_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    let mut rows_scanned = 0usize;
    let mut databases_with_rows = 0usize;
    let mut problems = Vec::new();
    for (name,) in &databases {
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(name);
        let Ok(mut conn) = sqlx::AnyConnection::connect(url.as_str()).await else {
            continue;
        };
        let rows: Vec<(i64, String, String, String, String, String, String)> = match sqlx::query_as(
            "SELECT seq, actor_email, action, object_id, reason, detail, request_id FROM audit_log",
        )
        .fetch_all(&mut conn)
        .await
        {
            Ok(rows) => rows,
            Err(_) => continue,
        };
        if !rows.is_empty() {
            databases_with_rows += 1;
        }
        for (seq, actor_email, action, object_id, reason, detail, request_id) in rows {
            rows_scanned += 1;
            // Who and what may hold numbers of their own (request ids); the content may not.
            let who = format!("{actor_email} {action} {request_id}");
            let content = format!("{object_id} {reason} {detail}");
            for problem in problems_in(&who, false)
                .into_iter()
                .chain(problems_in(&content, true))
            {
                problems.push(format!("{name} seq {seq} ({action}) {problem}"));
            }
        }
    }
    // The scan must have had something to look at: the suite writes thousands of rows.
    assert!(
        databases_with_rows >= 20,
        "only {databases_with_rows} suite databases had audit rows"
    );
    assert!(
        rows_scanned >= 2000,
        "only {rows_scanned} audit rows scanned"
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    println!("scanned {rows_scanned} audit rows in {databases_with_rows} databases: clean");
}
