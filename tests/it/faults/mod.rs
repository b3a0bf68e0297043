//! Faults KYC Desk must live through without losing anything: a provider that is slow,
//! failing, rate limiting, garbled, cut off or hanging up while a link is being made; the
//! process killed in the middle of a creation; a mail server that is down, refuses the
//! sign-in or hangs up; a database that cannot be written at start; PostgreSQL restarting
//! under a running server. Each test checks what the operator is told and what the database
//! keeps (session status and error, timeline, deliveries, audit rows).

use crate::audit::all_rows;
use crate::common::fakes::{provider::*, smtp::*};
use crate::common::forms::*;
use crate::common::process::*;
use crate::common::{Backend, TestApp, fresh_database, test_master_key};

use kyc_desk::credential_kinds::CredentialInput;
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::db::audit::AuditRow;
use kyc_desk::server::sandbox;
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

mod customer_link_faults;
mod kill_mid_creation;
mod postgres_restart;
mod provider_faults;
mod smtp_faults;
mod start_faults;

/// The provider time limit the tests configure (the smallest the configuration accepts).
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(1);
/// How much longer than the provider time limit a failed creation may take to answer: a
/// hang check, not a benchmark.
const HANG_MARGIN: Duration = Duration::from_secs(5);

/// Pieces of library and wire text that must never reach an operator.
const RAW_FRAGMENTS: &[&str] = &[
    "reqwest",
    "hyper",
    "serde",
    "sqlx",
    "lettre",
    "error decoding",
    "error sending request",
    "expected value",
    "line 1",
    "eof",
    "127.0.0.1",
    "http://",
    "os error",
    "incompletemessage",
    "permanent error",
    "response error",
    "network error",
    "connection error",
    "5.7.8",
];

fn assert_plain(text: &str) {
    let lower = without_random_tokens(text).to_lowercase();
    for fragment in RAW_FRAGMENTS {
        assert!(
            !lower.contains(fragment),
            "raw text {fragment:?} reached the operator: {text}"
        );
    }
}

/// `text` without the random values a page carries (a CSP nonce, a customer link's code), which
/// can spell a fragment by chance ("EOf…" once failed a run).
fn without_random_tokens(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["nonce=\"", "/v/"]
        .iter()
        .filter_map(|marker| rest.find(marker).map(|i| (i, marker.len())))
        .min()
    {
        let (start, marker_len) = at;
        kept.push_str(&rest[..start + marker_len]);
        rest = &rest[start + marker_len..];
        let token_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=_-".contains(c)))
            .unwrap_or(rest.len());
        rest = &rest[token_len..];
    }
    kept.push_str(rest);
    kept
}

async fn save_credential(
    state: &kyc_desk::server::state::AppState,
    kind: &str,
    environment: &str,
    settings: &[(&str, &str)],
    secrets: &[(&str, &str)],
) {
    kyc_desk::server::credentials::save(
        state,
        &RequestMeta::cli(),
        Actor::Cli,
        "cli",
        &CredentialInput {
            kind: kind.into(),
            environment: environment.into(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        true,
    )
    .await
    .unwrap_or_else(|error| panic!("save {kind}/{environment}: {error}"));
}

/// What the database holds about one session.
#[derive(Debug)]
struct Stored {
    status: String,
    last_error: Option<String>,
    link_url: Option<String>,
    /// Timeline (`kyc_events`): kind and detail, oldest first.
    events: Vec<(String, String)>,
    /// Deliveries: outcome and error, oldest first.
    deliveries: Vec<(String, Option<String>)>,
}

async fn stored(pool: &sqlx::AnyPool, public_id: &str) -> Stored {
    let (id, status, last_error, link_url): (i64, String, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT id, status, last_error, link_url FROM kyc_sessions WHERE public_id = $1",
        )
        .bind(public_id)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|error| panic!("session {public_id} is in the database: {error}"));
    let events =
        sqlx::query_as("SELECT kind, detail FROM kyc_events WHERE session_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(pool)
            .await
            .unwrap();
    let deliveries =
        sqlx::query_as("SELECT outcome, error FROM deliveries WHERE session_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(pool)
            .await
            .unwrap();
    Stored {
        status,
        last_error,
        link_url,
        events,
        deliveries,
    }
}

impl Stored {
    fn kinds(&self) -> Vec<&str> {
        self.events.iter().map(|(kind, _)| kind.as_str()).collect()
    }
}

async fn audit_rows_about(
    db: &kyc_desk::server::db::Db,
    action: &str,
    public_id: &str,
) -> Vec<AuditRow> {
    all_rows(db)
        .await
        .into_iter()
        .filter(|row| row.action == action && row.object_id == public_id)
        .collect()
}

async fn assert_audit_chain_intact(state: &kyc_desk::server::state::AppState) {
    let report = state.audit.verify(&state.db).await.unwrap();
    assert!(report.broken.is_none(), "{}", report.summary());
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    Eko,
    MessageCentral,
}

impl Provider {
    fn option(self) -> &'static str {
        match self {
            Provider::Eko => "eko:uat:digilocker",
            Provider::MessageCentral => "message_central:production:basic",
        }
    }

    /// The path the provider is called at, under the base URL the credential names.
    fn request(self) -> &'static str {
        match self {
            Provider::Eko => "POST /eko/tools/kyc/digilocker",
            Provider::MessageCentral => "POST /mc/ekyc/api/v1/redirection/generate-url",
        }
    }

    fn success(self) -> String {
        match self {
            Provider::Eko => json!({
                "status": 0,
                "response_status_id": 0,
                "response_type_id": 1,
                "message": "Success",
                "data": {
                    "reference_id": 4242424,
                    "url": "https://digilocker.example/consent/abc",
                    "document_requested": ["AADHAAR"],
                }
            }),
            Provider::MessageCentral => json!({
                "url": "https://ekyc.example/journey/abc",
                "token": "tok-123",
                "journey_id": "M1768000001",
                "expires_in_minutes": 30,
                "message": "URL generated",
            }),
        }
        .to_string()
    }

    fn success_without_url(self) -> String {
        match self {
            Provider::Eko => json!({
                "status": 0,
                "response_status_id": 0,
                "message": "Success",
                "data": { "reference_id": 4242424 }
            }),
            Provider::MessageCentral => json!({
                "token": "tok-123",
                "journey_id": "M1768000001",
                "expires_in_minutes": 30,
                "message": "URL generated",
            }),
        }
        .to_string()
    }

    /// Points this provider's credential at `base` (a fake provider).
    async fn point_at(self, state: &kyc_desk::server::state::AppState, base: &str) {
        match self {
            Provider::Eko => {
                save_credential(
                    state,
                    "eko_digilocker",
                    "uat",
                    &[
                        ("base_url", &format!("{base}/eko")),
                        ("initiator_id", sandbox::seed::EKO_INITIATOR_ID),
                        ("user_code", sandbox::seed::EKO_USER_CODE),
                        ("documents", "AADHAAR"),
                    ],
                    &[
                        ("developer_key", sandbox::seed::EKO_DEVELOPER_KEY),
                        ("access_key", sandbox::seed::EKO_ACCESS_KEY),
                    ],
                )
                .await
            }
            Provider::MessageCentral => {
                save_credential(
                    state,
                    "message_central_ekyc",
                    "production",
                    &[
                        ("base_url", &format!("{base}/mc")),
                        ("company_name", "Acme Ltd"),
                        ("basic_flow_id", "FLOW-BASIC-01"),
                        ("body_encoding", "json"),
                    ],
                    &[("api_key", "mc-fault-test-key-Zx81")],
                )
                .await
            }
        }
    }
}
