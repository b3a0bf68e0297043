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
            let all = format!("{actor_email} {action} {object_id} {reason} {detail} {request_id}");
            for needle in FORBIDDEN {
                if all.contains(needle) {
                    problems.push(format!("{name} seq {seq} ({action}) contains {needle:?}"));
                }
            }
            let content = format!("{object_id} {reason} {detail}");
            if has_twelve_digits(&content) {
                problems.push(format!(
                    "{name} seq {seq} ({action}) has a 12-digit number: {content}"
                ));
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
