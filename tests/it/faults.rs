//! Faults KYC Desk must live through without losing anything: a provider that is slow,
//! failing, rate limiting, garbled, cut off or hanging up while a link is being made; the
//! process killed in the middle of a creation; a mail server that is down, refuses the
//! sign-in or hangs up; a database that cannot be written at start; PostgreSQL restarting
//! under a running server. Each test checks what the operator is told and what the database
//! keeps (session status and error, timeline, deliveries, audit rows).

use crate::audit::all_rows;
use crate::common::{Backend, PASSWORD, TestApp, fresh_database, test_master_key};

use kyc_desk::credential_kinds::CredentialInput;
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::db::audit::AuditRow;
use kyc_desk::server::sandbox;
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

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
    let lower = text.to_lowercase();
    for fragment in RAW_FRAGMENTS {
        assert!(
            !lower.contains(fragment),
            "raw text {fragment:?} reached the operator: {text}"
        );
    }
}

// ------------------------------------------------------------------ shared helpers

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

fn form_key() -> String {
    format!("form-{}", uuid::Uuid::new_v4().simple())
}

fn link_form(option: &str, name: &str, email: Option<&str>, key: &str) -> Vec<(String, String)> {
    let mut form = vec![
        ("input[option]".to_string(), option.to_string()),
        ("input[customer_name]".to_string(), name.to_string()),
        ("input[phone]".to_string(), "9876543210".to_string()),
        ("input[consent]".to_string(), "on".to_string()),
        ("input[idempotency_key]".to_string(), key.to_string()),
    ];
    if let Some(email) = email {
        form.push(("input[email]".to_string(), email.to_string()));
    }
    form
}

/// Calls a server function of the server at `base` (which need not be a [`TestApp`]).
async fn call_at(
    base: &str,
    client: &reqwest::Client,
    function: &str,
    args: &[(String, String)],
) -> (StatusCode, Value) {
    let response = client
        .post(format!("{base}/api/{function}"))
        .header("origin", base)
        .form(args)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{function} at {base}: {error}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn sign_in_at(base: &str, email: &str) -> reqwest::Client {
    let client = browser();
    let (status, body) = call_at(
        base,
        &client,
        "login",
        &[
            ("email".into(), email.into()),
            ("password".into(), PASSWORD.into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "sign-in of {email}: {body}");
    client
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

/// A port nothing listens on (bound once, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Aborts a background task when dropped, so a fake server dies with its test.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ------------------------------------------------------------------ a fake provider

/// How the fake provider treats one request.
#[derive(Clone, Debug)]
enum Reply {
    /// Answers at once with this status and body.
    Answer(u16, String),
    /// Answers 200 with this body, but only after this long.
    Late(Duration, String),
    /// Promises (Content-Length) more body than it sends, then closes the connection.
    Truncated(String),
    /// Closes the connection in the middle of the answer's headers.
    Dropped,
    /// Reads the request and never answers (keeps the connection open).
    Silent,
}

/// An HTTP server on a raw socket that plays a script: the n-th request gets the n-th reply
/// (the last one repeats), and every request is counted (method and path).
struct FakeProvider {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    _task: AbortOnDrop,
}

impl FakeProvider {
    async fn start(script: Vec<Reply>) -> FakeProvider {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                let script = script.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    let Some(request_line) = read_http_request(&mut stream).await else {
                        return;
                    };
                    let reply = {
                        let mut seen = seen.lock().unwrap();
                        let mut parts = request_line.split(' ');
                        seen.push(format!(
                            "{} {}",
                            parts.next().unwrap_or_default(),
                            parts.next().unwrap_or_default()
                        ));
                        script[(seen.len() - 1).min(script.len() - 1)].clone()
                    };
                    play(stream, reply).await;
                });
            }
        });
        FakeProvider {
            base,
            requests,
            _task: AbortOnDrop(task),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request (head and Content-Length body); returns its request line.
async fn read_http_request(stream: &mut TcpStream) -> Option<String> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            return head.lines().next().map(str::to_string);
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn http_answer(status: u16, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} Fake\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn play(mut stream: TcpStream, reply: Reply) {
    match reply {
        Reply::Answer(status, body) => {
            let _ = stream
                .write_all(http_answer(status, &body).as_bytes())
                .await;
        }
        Reply::Late(delay, body) => {
            tokio::time::sleep(delay).await;
            let _ = stream.write_all(http_answer(200, &body).as_bytes()).await;
        }
        Reply::Truncated(body) => {
            let half = &body[..body.len() / 2];
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len() + 100
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(half.as_bytes()).await;
            let _ = stream.flush().await;
        }
        Reply::Dropped => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Ty").await;
            let _ = stream.flush().await;
        }
        Reply::Silent => {
            std::future::pending::<()>().await;
        }
    }
    let _ = stream.shutdown().await;
}

// ------------------------------------------------------------------ 1. provider faults

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

#[derive(Clone, Copy, Debug)]
enum ProviderFault {
    SlowerThanTheTimeLimit,
    ServerError,
    RateLimited,
    MalformedJson,
    TruncatedJson,
    NoUrl,
    DroppedMidAnswer,
}

impl ProviderFault {
    fn reply(self, provider: Provider) -> Reply {
        match self {
            ProviderFault::SlowerThanTheTimeLimit => {
                Reply::Late(Duration::from_secs(30), provider.success())
            }
            ProviderFault::ServerError => {
                Reply::Answer(500, r#"{"message":"Internal Server Error"}"#.into())
            }
            ProviderFault::RateLimited => {
                Reply::Answer(429, r#"{"detail":"Too many requests"}"#.into())
            }
            ProviderFault::MalformedJson => {
                Reply::Answer(200, r#"{"url": "https://x.example/j", "token": tok"#.into())
            }
            ProviderFault::TruncatedJson => Reply::Truncated(provider.success()),
            ProviderFault::NoUrl => Reply::Answer(200, provider.success_without_url()),
            ProviderFault::DroppedMidAnswer => Reply::Dropped,
        }
    }

    /// What the operator must be told (a part of the message).
    fn told(self) -> &'static str {
        match self {
            ProviderFault::SlowerThanTheTimeLimit => "The provider did not answer in time.",
            ProviderFault::ServerError => "The provider is having trouble (HTTP 500).",
            ProviderFault::RateLimited => "The provider is limiting how many requests we send.",
            ProviderFault::MalformedJson | ProviderFault::TruncatedJson | ProviderFault::NoUrl => {
                "The provider sent an answer KYC Desk could not read."
            }
            ProviderFault::DroppedMidAnswer => {
                "The connection to the provider broke during the call."
            }
        }
    }
}

/// For Eko and for Message Central in turn: the provider misbehaves in one way while an
/// operator creates a link. The operator gets an answer within the time limit (plus a
/// margin) saying in plain words what happened; the session is kept as `failed` with that
/// reason, one `failed` timeline event and one `link.create` failure audit row; and the
/// provider was asked exactly once (a link-creating call is never retried).
async fn provider_fault(backend: Backend, fault: ProviderFault) {
    let app = TestApp::start_with(
        backend,
        &[
            ("KYC_DESK_PROVIDER_TIMEOUT", "1s"),
            ("KYC_DESK_PROVIDER_CONNECT_TIMEOUT", "1s"),
        ],
    )
    .await;
    app.user("olga@example.com", Role::Operator).await;
    let operator = app.signed_in("olga@example.com").await;
    for provider in [Provider::Eko, Provider::MessageCentral] {
        let context = format!("{provider:?} / {fault:?}");
        let fake = FakeProvider::start(vec![fault.reply(provider)]).await;
        provider.point_at(&app.state, &fake.base).await;

        let started = Instant::now();
        let (status, body) = call_at(
            &app.base,
            &operator,
            "create_link",
            &link_form(provider.option(), "Asha Rao", None, &form_key()),
        )
        .await;
        let took = started.elapsed();
        assert!(
            took < PROVIDER_TIMEOUT + HANG_MARGIN,
            "{context}: creation hung for {took:?}"
        );

        // What the operator sees.
        assert_eq!(status, StatusCode::OK, "{context}: {body}");
        assert_eq!(body["summary"]["status"], "failed", "{context}: {body}");
        assert!(body["link_url"].is_null(), "{context}: no link is offered");
        let told = body["last_error"].as_str().unwrap_or_default().to_string();
        assert!(told.contains(fault.told()), "{context}: told {told:?}");
        assert_plain(&told);
        let shown_timeline = body["timeline"].to_string();
        assert_plain(&shown_timeline);

        // What the database keeps.
        let public_id = body["summary"]["public_id"].as_str().unwrap();
        let kept = stored(&app.state.db.pool, public_id).await;
        assert_eq!(kept.status, "failed", "{context}");
        assert_eq!(kept.last_error.as_deref(), Some(told.as_str()), "{context}");
        assert_eq!(kept.link_url, None, "{context}");
        assert_eq!(kept.kinds(), ["creating", "failed"], "{context}: {kept:?}");
        assert!(kept.events[1].1.contains(&told), "{context}: {kept:?}");
        let audit = audit_rows_about(&app.state.db, "link.create", public_id).await;
        assert_eq!(audit.len(), 1, "{context}: {audit:#?}");
        assert_eq!(audit[0].outcome, "failure", "{context}");
        assert_eq!(audit[0].reason, told, "{context}");
        assert_plain(&audit[0].detail);

        // What the provider saw: one request, no retry.
        assert_eq!(fake.requests(), [provider.request()], "{context}");
    }
    let creations = all_rows(&app.state.db)
        .await
        .into_iter()
        .filter(|row| row.action == "link.create")
        .count();
    assert_eq!(creations, 2);
    assert_audit_chain_intact(&app.state).await;
}

both_backends!(
    a_provider_slower_than_the_time_limit,
    |backend| async move {
        provider_fault(backend, ProviderFault::SlowerThanTheTimeLimit).await;
    }
);

both_backends!(a_provider_answering_500, |backend| async move {
    provider_fault(backend, ProviderFault::ServerError).await;
});

both_backends!(a_provider_answering_429, |backend| async move {
    provider_fault(backend, ProviderFault::RateLimited).await;
});

both_backends!(a_provider_answering_malformed_json, |backend| async move {
    provider_fault(backend, ProviderFault::MalformedJson).await;
});

both_backends!(a_provider_answering_truncated_json, |backend| async move {
    provider_fault(backend, ProviderFault::TruncatedJson).await;
});

both_backends!(
    a_provider_answering_200_without_a_url,
    |backend| async move {
        provider_fault(backend, ProviderFault::NoUrl).await;
    }
);

both_backends!(
    a_provider_dropping_the_connection_mid_answer,
    |backend| async move {
        provider_fault(backend, ProviderFault::DroppedMidAnswer).await;
    }
);

// ------------------------------------------------------------------ 2. SIGKILL mid-creation

/// A `kyc-desk serve` process on its own port, logging to a file; SIGKILLed when dropped.
struct ServerProcess {
    child: Child,
    base: String,
    log: PathBuf,
}

impl ServerProcess {
    fn spawn(database_url: &str, log_dir: &Path, name: &str, extra: &[(&str, &str)]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kyc-desk"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("KYC_DESK_ADDR", &addr)
            .env("KYC_DESK_MASTER_KEY", test_master_key())
            .env("KYC_DESK_SITE_ROOT", "target/site")
            .env("RUST_LOG", "warn")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start kyc-desk serve");
        ServerProcess {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    async fn wait_ready(&mut self) {
        let client = browser();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kyc-desk exited early ({status}):\n{}", self.log());
            }
            if let Ok(response) = client.get(format!("{}/readyz", self.base)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kyc-desk did not become ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no shutdown handler runs, nothing is flushed.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn session_by_key(pool: &sqlx::AnyPool, key: &str) -> Option<(String, String)> {
    sqlx::query_as("SELECT public_id, status FROM kyc_sessions WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// The real binary is SIGKILLed while one creation waits for the provider and after another
/// one's answer was stored. After a restart on the same database, neither is lost: the
/// answered one stays `created` with its link, and the interrupted one leaves `creating`
/// within a minute, as `failed` with "interrupted before the provider answered". The provider
/// is never called again for either. (Message Central: it has no status poll, so every
/// request the fake provider sees is a creation.)
async fn killed_mid_creation(backend: Backend) {
    let (database_url, dir) = fresh_database(backend).await;
    let logs = tempfile::tempdir().unwrap();
    // The first request is answered; every later one waits forever.
    let provider = FakeProvider::start(vec![
        Reply::Answer(200, Provider::MessageCentral.success()),
        Reply::Silent,
    ])
    .await;
    // An in-process instance (no background jobs) prepares the database and reads it.
    let setup = TestApp::start_on(&database_url, dir, &[]).await;
    setup.user("olga@example.com", Role::Operator).await;
    Provider::MessageCentral
        .point_at(&setup.state, &provider.base)
        .await;
    let pool = setup.state.db.pool.clone();

    // A long provider time limit in the first run, so the call is surely still waiting when
    // the process is killed; the restarted one uses the short limit the sweep derives from.
    let mut first = ServerProcess::spawn(
        &database_url,
        logs.path(),
        "first",
        &[("KYC_DESK_PROVIDER_TIMEOUT", "60s")],
    );
    first.wait_ready().await;
    let operator = sign_in_at(&first.base, "olga@example.com").await;

    let (status, answered) = call_at(
        &first.base,
        &operator,
        "create_link",
        &link_form(
            Provider::MessageCentral.option(),
            "Asha Rao",
            None,
            &form_key(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered["summary"]["status"], "created");
    let answered_id = answered["summary"]["public_id"]
        .as_str()
        .unwrap()
        .to_string();
    let answered_link = answered["link_url"].as_str().unwrap().to_string();

    let waiting_key = form_key();
    let waiting_call = {
        let base = first.base.clone();
        let form = link_form(
            Provider::MessageCentral.option(),
            "Ravi Kumar",
            None,
            &waiting_key,
        );
        tokio::spawn(async move {
            // The process dies under this request; whatever comes back is not the point.
            let _ = operator
                .post(format!("{base}/api/create_link"))
                .header("origin", &base)
                .form(&form)
                .send()
                .await;
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let waiting_id = loop {
        if let Some((public_id, status)) = session_by_key(&pool, &waiting_key).await
            && status == "creating"
            && provider.requests().len() == 2
        {
            break public_id;
        }
        assert!(
            Instant::now() < deadline,
            "the second creation never reached the provider:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill();
    let _ = waiting_call.await;
    assert_eq!(stored(&pool, &waiting_id).await.status, "creating");

    let mut second = ServerProcess::spawn(
        &database_url,
        logs.path(),
        "second",
        &[("KYC_DESK_PROVIDER_TIMEOUT", "1s")],
    );
    second.wait_ready().await;
    let restarted = Instant::now();
    let interrupted = loop {
        let kept = stored(&pool, &waiting_id).await;
        if kept.status != "creating" {
            break kept;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(60),
            "still creating a minute after the restart:\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "{backend:?}: the interrupted creation failed {:?} after the restart",
        restarted.elapsed()
    );

    // The interrupted creation: failed, in plain words, once.
    assert_eq!(interrupted.status, "failed", "{interrupted:?}");
    let reason = interrupted.last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("Interrupted before the provider answered"),
        "{reason}"
    );
    assert_plain(&reason);
    assert_eq!(
        interrupted.kinds(),
        ["creating", "failed"],
        "{interrupted:?}"
    );
    let status_rows = audit_rows_about(&setup.state.db, "link.status", &waiting_id).await;
    assert_eq!(status_rows.len(), 1, "{status_rows:#?}");
    assert_eq!(status_rows[0].outcome, "failure");
    assert_eq!(status_rows[0].actor_role, "system");
    assert!(status_rows[0].reason.contains("Interrupted"));
    // ... and the operator sees it so on the restarted server.
    let operator = sign_in_at(&second.base, "olga@example.com").await;
    let (status, shown) = call_at(
        &second.base,
        &operator,
        "session_detail",
        &[("public_id".into(), waiting_id.clone())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["summary"]["status"], "failed");
    assert_eq!(shown["last_error"], reason.as_str());

    // The answered creation: still created, its link unchanged, nothing added.
    let kept = stored(&pool, &answered_id).await;
    assert_eq!(kept.status, "created", "{kept:?}");
    assert_eq!(kept.link_url.as_deref(), Some(answered_link.as_str()));
    assert_eq!(kept.kinds(), ["creating", "created"], "{kept:?}");
    let created_rows = audit_rows_about(&setup.state.db, "link.create", &answered_id).await;
    assert_eq!(created_rows.len(), 1);
    assert_eq!(created_rows[0].outcome, "success");
    let (status, shown) = call_at(
        &second.base,
        &operator,
        "session_detail",
        &[("public_id".into(), answered_id.clone())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["summary"]["status"], "created");
    assert_eq!(shown["link_url"], answered_link.as_str());

    // Nothing called the provider again after the restart.
    assert_eq!(
        provider.requests(),
        [
            Provider::MessageCentral.request(),
            Provider::MessageCentral.request()
        ]
    );
    assert_audit_chain_intact(&setup.state).await;
}

both_backends!(a_kill_mid_creation_loses_nothing, |backend| async move {
    killed_mid_creation(backend).await;
});

// ------------------------------------------------------------------ 3. SMTP faults

/// How the fake mail server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SmtpMode {
    /// Accepts the message (and AUTH with the expected password).
    Working,
    /// Hangs up right after `MAIL FROM`.
    HangUpAfterMailFrom,
}

/// A small SMTP server on a raw socket: EHLO advertises AUTH PLAIN/LOGIN, AUTH succeeds only
/// with `password`, and messages are kept in memory.
struct FakeSmtp {
    mode: Arc<Mutex<SmtpMode>>,
    messages: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    _task: AbortOnDrop,
}

impl FakeSmtp {
    async fn start(port: u16, mode: SmtpMode, password: &'static str) -> FakeSmtp {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the fake mail server");
        let mode = Arc::new(Mutex::new(mode));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = {
            let (mode, messages, connections) =
                (mode.clone(), messages.clone(), connections.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let mode = *mode.lock().unwrap();
                    let messages = messages.clone();
                    tokio::spawn(async move {
                        let _ = smtp_dialogue(stream, mode, password, messages).await;
                    });
                }
            })
        };
        FakeSmtp {
            mode,
            messages,
            connections,
            _task: AbortOnDrop(task),
        }
    }

    fn set_mode(&self, mode: SmtpMode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}

fn plain_auth_password(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split('\0').nth(2).map(str::to_string)
}

async fn smtp_dialogue(
    stream: TcpStream,
    mode: SmtpMode,
    password: &str,
    messages: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 fake.smtp ESMTP ready\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        let answer: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250-fake.smtp\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let mut encoded = command["AUTH PLAIN".len()..].trim().to_string();
            if encoded.is_empty() {
                write.write_all(b"334 \r\n").await?;
                line.clear();
                read.read_line(&mut line).await?;
                encoded = line.trim().to_string();
            }
            if plain_auth_password(&encoded).as_deref() == Some(password) {
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM") {
            if mode == SmtpMode::HangUpAfterMailFrom {
                return Ok(());
            }
            "250 2.1.0 OK\r\n".into()
        } else if upper.starts_with("RCPT TO") {
            "250 2.1.5 OK\r\n".into()
        } else if upper == "DATA" {
            write
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut message = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                message.push_str(&line);
            }
            messages.lock().unwrap().push(message);
            "250 2.0.0 OK queued as FAKE1\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else {
            "502 5.5.2 Command not recognised\r\n".into()
        };
        write.write_all(answer.as_bytes()).await?;
    }
}

async fn point_smtp_at(
    state: &kyc_desk::server::state::AppState,
    port: u16,
    login: Option<(&str, &str)>,
) {
    let port = port.to_string();
    let mut settings = vec![
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("tls", "none"),
        ("from", "kyc@bank.example"),
    ];
    let mut secrets = Vec::new();
    if let Some((username, password)) = login {
        settings.push(("username", username));
        secrets.push(("password", password));
    }
    save_credential(state, "smtp", "default", &settings, &secrets).await;
}

#[derive(Clone, Copy, Debug)]
enum SmtpFault {
    /// Nothing listens on the configured port.
    Down,
    /// The server answers 535 to the sign-in.
    RefusesSignIn,
    /// The server hangs up in the middle of the dialogue.
    HangsUp,
}

/// An email hand-over meets a mail-server fault: the operator is told in plain words, the
/// delivery is kept as `failed` with the reason, the session stays open with the same link
/// (never marked sent), and once the fault is fixed a retry delivers the link and only then
/// marks the session sent.
async fn smtp_fault(backend: Backend, fault: SmtpFault) {
    const RIGHT_PASSWORD: &str = "mail-password-right";
    let app = TestApp::start_with(backend, &[("KYC_DESK_SANDBOX", "true")]).await;
    sandbox::seed::seed(&app.state).await.unwrap();
    app.user("olga@example.com", Role::Operator).await;
    let operator = app.signed_in("olga@example.com").await;
    let port = free_port();
    let server = match fault {
        SmtpFault::Down => {
            point_smtp_at(&app.state, port, None).await;
            None
        }
        SmtpFault::RefusesSignIn => {
            point_smtp_at(&app.state, port, Some(("kyc-desk", "mail-password-wrong"))).await;
            Some(FakeSmtp::start(port, SmtpMode::Working, RIGHT_PASSWORD).await)
        }
        SmtpFault::HangsUp => {
            point_smtp_at(&app.state, port, None).await;
            Some(FakeSmtp::start(port, SmtpMode::HangUpAfterMailFrom, RIGHT_PASSWORD).await)
        }
    };
    let (status, created) = call_at(
        &app.base,
        &operator,
        "create_link",
        &link_form(
            "eko:uat:digilocker",
            "Meera Iyer",
            Some("meera@example.com"),
            &form_key(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["summary"]["status"], "created");
    let public_id = created["summary"]["public_id"]
        .as_str()
        .unwrap()
        .to_string();
    let link = created["link_url"].as_str().unwrap().to_string();
    let send = [
        ("public_id".to_string(), public_id.clone()),
        ("channel".to_string(), "email".to_string()),
    ];

    let (status, refused) = call_at(&app.base, &operator, "send_link", &send).await;
    let context = format!("{fault:?}");
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{context}: {refused}"
    );
    let told = refused["Unavailable"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let expected = match fault {
        SmtpFault::Down | SmtpFault::HangsUp => "could not connect to the mail server",
        SmtpFault::RefusesSignIn => "the mail server refused KYC Desk's username or password",
    };
    assert!(told.contains(expected), "{context}: {refused}");
    assert!(
        told.contains("was not marked as sent and still works"),
        "{context}: {told}"
    );
    assert_plain(&told);

    let kept = stored(&app.state.db.pool, &public_id).await;
    assert_eq!(kept.status, "created", "{context}: never marked sent");
    assert_eq!(kept.link_url.as_deref(), Some(link.as_str()), "{context}");
    assert_eq!(kept.deliveries.len(), 1, "{context}: {kept:?}");
    assert_eq!(kept.deliveries[0].0, "failed", "{context}");
    let reason = kept.deliveries[0].1.clone().unwrap_or_default();
    assert!(reason.contains(expected), "{context}: {reason}");
    assert_plain(&reason);
    assert_eq!(
        kept.kinds(),
        ["creating", "created", "delivery_failed"],
        "{context}"
    );
    let audit = audit_rows_about(&app.state.db, "link.send", &public_id).await;
    assert_eq!(audit.len(), 1, "{context}: {audit:#?}");
    assert_eq!(audit[0].outcome, "error");
    assert_eq!(audit[0].reason, reason);
    // The operator still sees the open session with its link.
    let (status, shown) = call_at(
        &app.base,
        &operator,
        "session_detail",
        &[("public_id".into(), public_id.clone())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["summary"]["status"], "created");
    assert_eq!(shown["link_url"], link.as_str());
    assert_eq!(shown["deliveries"][0]["outcome"], "failed");
    if let Some(server) = &server {
        assert_eq!(
            server.messages().len(),
            0,
            "{context}: no message was accepted"
        );
    }

    // The fault is fixed; the retry delivers the link.
    let server = match fault {
        SmtpFault::Down => FakeSmtp::start(port, SmtpMode::Working, RIGHT_PASSWORD).await,
        SmtpFault::RefusesSignIn => {
            point_smtp_at(&app.state, port, Some(("kyc-desk", RIGHT_PASSWORD))).await;
            server.unwrap()
        }
        SmtpFault::HangsUp => {
            let server = server.unwrap();
            server.set_mode(SmtpMode::Working);
            server
        }
    };
    let connections_before = server.connections.load(Ordering::SeqCst);
    let (status, sent) = call_at(&app.base, &operator, "send_link", &send).await;
    assert_eq!(status, StatusCode::OK, "{context}: {sent}");
    assert_eq!(sent["summary"]["status"], "sent");
    assert_eq!(sent["link_url"], link.as_str());
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        connections_before + 1
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{context}");
    let unfolded = messages[0]
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(
        unfolded.contains(&link),
        "{context}: the link is in the mail"
    );

    let kept = stored(&app.state.db.pool, &public_id).await;
    assert_eq!(kept.status, "sent");
    assert_eq!(kept.link_url.as_deref(), Some(link.as_str()));
    let outcomes: Vec<&str> = kept.deliveries.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["failed", "sent"], "{context}");
    assert_eq!(
        kept.kinds(),
        ["creating", "created", "delivery_failed", "sent"],
        "{context}"
    );
    let outcomes: Vec<String> = audit_rows_about(&app.state.db, "link.send", &public_id)
        .await
        .into_iter()
        .map(|row| row.outcome)
        .collect();
    assert_eq!(outcomes, ["error", "success"], "{context}");
    assert_audit_chain_intact(&app.state).await;
}

both_backends!(a_mail_server_that_is_down, |backend| async move {
    smtp_fault(backend, SmtpFault::Down).await;
});

both_backends!(a_mail_server_refusing_the_sign_in, |backend| async move {
    smtp_fault(backend, SmtpFault::RefusesSignIn).await;
});

both_backends!(
    a_mail_server_hanging_up_mid_dialogue,
    |backend| async move {
        smtp_fault(backend, SmtpFault::HangsUp).await;
    }
);

// ------------------------------------------------------------------ 4. start-up faults

/// Applies the first `count` embedded migrations (through the product's own pool, so an
/// SQLite file is in WAL mode like a real one), leaving the later ones for the binary.
async fn migrate_first(backend: Backend, database_url: &str, count: usize) {
    let db = kyc_desk::server::db::Db::connect(database_url)
        .await
        .expect("open the database");
    let mut migrator = migrations_of(backend).await;
    migrator.migrations = std::borrow::Cow::Owned(migrator.migrations[..count].to_vec());
    migrator
        .run(&db.pool)
        .await
        .expect("apply the first migrations");
    db.pool.close().await;
}

async fn migrations_of(backend: Backend) -> sqlx::migrate::Migrator {
    let folder = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let migrator = sqlx::migrate::Migrator::new(Path::new(folder))
        .await
        .expect("read the migrations");
    assert!(
        migrator.migrations.len() > 1,
        "a later migration is left to apply"
    );
    migrator
}

/// The applied migration versions and the schema objects of a database, read without
/// writing anything.
async fn schema_of(backend: Backend, database_url: &str) -> (Vec<i64>, Vec<String>) {
    let url = match backend {
        Backend::Sqlite => format!("{database_url}?mode=ro"),
        Backend::Postgres => database_url.to_string(),
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("open the database to read its schema");
    let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let objects = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar("SELECT type || ' ' || name FROM sqlite_master ORDER BY type, name")
                .fetch_all(&mut conn)
                .await
                .unwrap()
        }
        Backend::Postgres => sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap(),
    };
    (versions, objects)
}

/// `kyc-desk serve` on `database_url`, expected to fail before it serves.
fn failing_start(database_url: &str, cwd: &Path) -> Command {
    failing_start_of(Path::new(env!("CARGO_BIN_EXE_kyc-desk")), database_url, cwd)
}

/// [`failing_start`] of the binary at `program`.
fn failing_start_of(program: &Path, database_url: &str, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("KYC_DESK_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("KYC_DESK_MASTER_KEY", test_master_key())
        .env("RUST_LOG", "warn")
        // Away from the repository, so no `.env` there is read.
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `command` to its end (killing it if it is still up after 30 s, which means it
/// started serving instead of refusing); returns the exit code and standard error.
fn run_to_exit(mut command: Command) -> (Option<i32>, String) {
    let mut child = command.spawn().expect("start kyc-desk");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "kyc-desk did not stop although it cannot use its database:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status, status);
    (
        status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of `nobody`.
fn nobody() -> (u32, u32) {
    let name = std::ffi::CString::new("nobody").unwrap();
    // SAFETY: getpwnam takes a NUL-terminated name; the returned record is read at once,
    // before any other call could reuse its static storage.
    unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        assert!(!entry.is_null(), "this machine has a `nobody` user");
        ((*entry).pw_uid, (*entry).pw_gid)
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The database cannot be written at start (an SQLite file the server's user may only read;
/// a PostgreSQL database set read-only): the server refuses to start with an error naming the
/// problem, and the schema is exactly as it was (no migration half-applied, none recorded).
async fn read_only_start(backend: Backend) {
    let (database_url, dir) = fresh_database(backend).await;
    migrate_first(backend, &database_url, 1).await;
    let before = schema_of(backend, &database_url).await;
    assert_eq!(before.0, [1]);
    let cwd = tempfile::tempdir().unwrap();
    set_mode(cwd.path(), 0o755);
    let mut command = failing_start(&database_url, cwd.path());
    match backend {
        Backend::Sqlite => {
            let dir = dir.as_ref().unwrap().path();
            // Readable by everyone, writable only by its owner (root), like a data folder
            // left behind by a first run as root. Root ignores modes, so the server runs as
            // `nobody` when the tests run as root.
            set_mode(dir, 0o755);
            set_mode(&dir.join("kyc-desk.db"), 0o444);
            if is_root() {
                use std::os::unix::process::CommandExt as _;
                // A copy `nobody` can run: the checkout may sit in a folder only root may
                // enter (such as /root).
                let program = cwd.path().join("kyc-desk");
                std::fs::copy(env!("CARGO_BIN_EXE_kyc-desk"), &program).unwrap();
                set_mode(&program, 0o755);
                command = failing_start_of(&program, &database_url, cwd.path());
                let (uid, gid) = nobody();
                command.uid(uid).gid(gid);
            }
        }
        Backend::Postgres => {
            let name = url::Url::parse(&database_url).unwrap().path()[1..].to_string();
            let admin = std::env::var("TEST_POSTGRES_URL").unwrap();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .unwrap();
            sqlx::query(&format!(
                "ALTER DATABASE {name} SET default_transaction_read_only = on"
            ))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let (code, stderr) = run_to_exit(command);
    eprintln!("{backend:?}, read-only database: exit {code:?}: {stderr}");
    assert!(
        code.is_some_and(|code| code != 0),
        "exit {code:?}: {stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(lower.contains("cannot start"), "{stderr}");
    assert!(
        lower.contains("read-only") || lower.contains("readonly"),
        "the message names the problem: {stderr}"
    );
    let advice = match backend {
        Backend::Sqlite => "give that user write access to the file and to its folder",
        Backend::Postgres => "point DATABASE_URL at a writable primary",
    };
    assert!(
        stderr.contains(advice),
        "the message says what to do: {stderr}"
    );
    assert_eq!(schema_of(backend, &database_url).await, before);
}

both_backends!(a_read_only_database_stops_the_start, |backend| async move {
    read_only_start(backend).await;
});

/// The disk fills up while the server migrates an SQLite database at start (simulated with a
/// file-size limit, so writes fail with EFBIG), first before any pending migration can be
/// written, then after some could: the server refuses to start with an error saying what to
/// check, and every migration is either wholly applied and recorded or not there at all (the
/// schema equals that of a database migrated exactly as far). (PostgreSQL's disk belongs to
/// its server; there is nothing of ours to fill there.)
#[tokio::test]
async fn a_full_disk_stops_the_start() {
    let all = migrations_of(Backend::Sqlite).await.migrations.len();
    // 36 KiB leaves room for SQLite's 32 KiB shared-memory index but not for the write-ahead
    // log of the second migration; 64 KiB lets the second one through and stops a later one.
    for limit_kib in [36, 64] {
        let (database_url, dir) = fresh_database(Backend::Sqlite).await;
        migrate_first(Backend::Sqlite, &database_url, 1).await;
        let before = schema_of(Backend::Sqlite, &database_url).await;
        assert_eq!(before.0, [1]);
        let dir = dir.unwrap();
        let mut command = failing_start(&database_url, dir.path());
        let limit: libc::rlim_t = limit_kib * 1024;
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit).
            unsafe {
                command.pre_exec(move || {
                    // Ignored, SIGXFSZ lets an oversized write fail with EFBIG instead of
                    // killing the process.
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let limit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let (code, stderr) = run_to_exit(command);
        eprintln!("full disk at {limit_kib} KiB: exit {code:?}: {stderr}");
        assert!(
            code.is_some_and(|code| code != 0),
            "exit {code:?}: {stderr}"
        );
        assert!(stderr.contains("cannot start"), "{stderr}");
        assert!(
            stderr.contains("check that its disk is not full"),
            "the message names the problem: {stderr}"
        );
        let after = schema_of(Backend::Sqlite, &database_url).await;
        let applied = after.0.len();
        assert!(applied < all, "the start failed, so a migration is missing");
        let versions: Vec<i64> = (1..=applied as i64).collect();
        assert_eq!(after.0, versions, "applied in order, without gaps");
        let (reference_url, _reference_dir) = fresh_database(Backend::Sqlite).await;
        migrate_first(Backend::Sqlite, &reference_url, applied).await;
        assert_eq!(
            after,
            schema_of(Backend::Sqlite, &reference_url).await,
            "no half-applied migration at {limit_kib} KiB"
        );
        if limit_kib == 36 {
            assert_eq!(after, before, "nothing could be written");
        } else {
            assert!(applied > 1, "the limit let a migration through: {after:?}");
        }
    }
}

// ------------------------------------------------------------------ 5. PostgreSQL restart

fn pg_cluster(action: &str) -> std::process::Output {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql lists the cluster version")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
        .expect("one PostgreSQL version is installed");
    Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", action])
        .output()
        .expect("run pg_ctlcluster")
}

/// Starts PostgreSQL again when dropped, so a failing test never leaves it down.
struct PostgresBackOnDrop;

impl Drop for PostgresBackOnDrop {
    fn drop(&mut self) {
        let output = pg_cluster("start");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() && !text.contains("already running") {
            eprintln!("could not start PostgreSQL again: {text}");
        }
    }
}

/// PostgreSQL stops and starts again under a running server: meanwhile `/readyz` answers
/// 503, a page answers a friendly 503 page and a server function a plain 503; afterwards the
/// server recovers by itself (the operator stays signed in and creates a link) and the audit
/// chain verifies. Run alone: it stops the PostgreSQL server every other test uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared PostgreSQL server; test.sh runs it alone"]
async fn postgres_restarting_under_a_running_server() {
    let app = TestApp::start_with(Backend::Postgres, &[("KYC_DESK_SANDBOX", "true")]).await;
    sandbox::seed::seed(&app.state).await.unwrap();
    app.user("olga@example.com", Role::Operator).await;
    let operator = app.signed_in("olga@example.com").await;
    let back_on_drop = PostgresBackOnDrop;
    database_outage_and_recovery(
        &app,
        &operator,
        || {
            let stopped = pg_cluster("stop");
            assert!(
                stopped.status.success(),
                "{}",
                String::from_utf8_lossy(&stopped.stderr)
            );
        },
        async || {
            let started = pg_cluster("start");
            assert!(
                started.status.success(),
                "{}",
                String::from_utf8_lossy(&started.stderr)
            );
        },
    )
    .await;
    drop(back_on_drop);
}

/// A TCP relay between the server and PostgreSQL that can be cut (existing connections closed,
/// new ones refused) and restored on the same port: a database outage that leaves the shared
/// PostgreSQL server alone.
struct DatabaseRelay {
    port: u16,
    upstream: std::net::SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl DatabaseRelay {
    async fn start(upstream: std::net::SocketAddr) -> DatabaseRelay {
        let relay = DatabaseRelay {
            port: free_port(),
            upstream,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        relay.restore().await;
        relay
    }

    /// Listens again on the same port.
    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the relay port again");
        let (upstream, tasks) = (self.upstream, self.tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let piped = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(piped.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Closes every relayed connection and stops listening.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for DatabaseRelay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A database outage seen from outside, and the recovery after it: `outage` takes PostgreSQL
/// away from `app`, `recovery` gives it back.
async fn database_outage_and_recovery(
    app: &TestApp,
    operator: &reqwest::Client,
    outage: impl FnOnce(),
    recovery: impl AsyncFnOnce(),
) {
    let create = || link_form("message_central:trial:basic", "Asha Rao", None, &form_key());
    let (status, before) = call_at(&app.base, operator, "create_link", &create()).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["summary"]["status"], "created");

    outage();
    let (status, _, body) = app.get(&app.client(), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body, "database unavailable");
    let (status, _, page) = app.get(operator, "/sessions").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    assert!(page.contains("cannot reach its database"), "{page}");
    assert!(page.contains("Nothing was lost"), "{page}");
    assert_plain(&page.replace(&app.base, ""));
    for raw in [
        "pooltimedout",
        "connection refused",
        "error returned",
        "panicked",
    ] {
        assert!(!page.to_lowercase().contains(raw), "{page}");
    }
    let (status, body) = app.call(operator, "list_sessions", &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let told = body["Unavailable"].as_str().unwrap_or_default();
    assert!(
        told.contains("The database is not reachable right now"),
        "{body}"
    );
    assert_plain(told);

    recovery().await;
    let back_at = Instant::now();
    loop {
        let (status, _, _) = app.get(&app.client(), "/readyz").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            back_at.elapsed() < Duration::from_secs(30),
            "the server did not recover by itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "ready again {:?} after the database came back",
        back_at.elapsed()
    );

    // The same signed-in operator carries on.
    let (status, after) = call_at(&app.base, operator, "create_link", &create()).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["summary"]["status"], "created");
    let (status, _, page) = app.get(operator, "/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("Temporarily unavailable"));
    for session in [&before, &after] {
        let public_id = session["summary"]["public_id"].as_str().unwrap();
        let kept = stored(&app.state.db.pool, public_id).await;
        assert_eq!(kept.status, "created");
        assert_eq!(kept.kinds(), ["creating", "created"]);
    }
    assert_audit_chain_intact(&app.state).await;
}

/// The network between the server and PostgreSQL breaks and comes back (every connection
/// closed, new ones refused): meanwhile `/readyz` answers 503, a page a friendly 503 page and
/// a server function a plain 503; afterwards the server recovers by itself (the operator stays
/// signed in and creates a link) and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_a_while() {
    let (database_url, _) = fresh_database(Backend::Postgres).await;
    let mut url = url::Url::parse(&database_url).unwrap();
    let upstream = (
        url.host_str().unwrap().to_string(),
        url.port().unwrap_or(5432),
    );
    let upstream = tokio::net::lookup_host(upstream)
        .await
        .unwrap()
        .next()
        .unwrap();
    let relay = DatabaseRelay::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(relay.port)).unwrap();
    let app = TestApp::start_on(url.as_str(), None, &[("KYC_DESK_SANDBOX", "true")]).await;
    sandbox::seed::seed(&app.state).await.unwrap();
    app.user("olga@example.com", Role::Operator).await;
    let operator = app.signed_in("olga@example.com").await;
    database_outage_and_recovery(
        &app,
        &operator,
        || relay.cut(),
        async || relay.restore().await,
    )
    .await;
}
