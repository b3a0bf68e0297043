//! Scale-out: two real `kyc-desk serve` processes on one PostgreSQL database, as behind a load
//! balancer. Sessions, sign-in throttling, the Eko poller's lease and the audit chain must all
//! hold across processes, not only within one (the in-process tests share memory and could
//! not tell).
//!
//! PostgreSQL only: several processes writing one SQLite file is not a supported deployment.

use crate::common::{self, Backend, PASSWORD};
use kyc_desk::server::auth::throttle;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Eko sessions created (and then polled); more than one poller tick can take (20), so both
/// instances have work at once.
const EKO_SESSIONS: usize = 40;
/// Message Central sessions created against the sandbox of instance A (with a credential
/// labelled production: the seeded trial one allows only 5 links).
const MC_SESSIONS: usize = 20;
/// How long the fake Eko takes to answer a status poll: long enough that the two pollers'
/// work overlaps, so a broken lease would show as a session polled twice.
const STATUS_DELAY: Duration = Duration::from_millis(300);

/// One `kyc-desk serve` process. Killed when dropped, also when the test panics; its log is
/// printed then, to explain the failure.
struct Instance {
    name: &'static str,
    base: String,
    child: Child,
    log: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of instance {} ---", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Two distinct free ports (both held while asked for, so they differ).
fn free_ports() -> (u16, u16) {
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    )
}

/// The environment both processes (and the command line) share: one database, one master key.
fn shared_env(database_url: &str) -> Vec<(&'static str, String)> {
    let anchor = kyc_desk::server::fresh_database::anchor_file_for(database_url);
    let mut env = vec![
        ("DATABASE_URL", database_url.to_string()),
        ("KYC_DESK_MASTER_KEY", common::test_master_key()),
        ("KYC_DESK_SITE_ROOT", "target/site".into()),
        ("KYC_DESK_SANDBOX", "true".into()),
        // The test client stands in for a load balancer on this machine.
        ("KYC_DESK_TRUSTED_PROXIES", "127.0.0.1".into()),
        ("RUST_LOG", "warn".into()),
    ];
    if let Some(anchor) = anchor {
        env.push(("KYC_DESK_AUDIT_ANCHOR_FILE", anchor));
    }
    env
}

fn kyc_desk_command(env: &[(&'static str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kyc-desk"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

/// Runs a `kyc-desk` command to its end; returns exit code, stdout, stderr.
async fn cli(database_url: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let env = shared_env(database_url);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = kyc_desk_command(&env)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kyc-desk");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

async fn create_user(database_url: &str, email: &str, role: &str) {
    let (code, _, stderr) = cli(
        database_url,
        &["create-user", "--email", email, "--role", role],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(code, 0, "create-user {email}: {stderr}");
}

impl Instance {
    /// Starts `kyc-desk serve` on a free port and waits until it answers `/readyz`.
    async fn start(
        name: &'static str,
        port: u16,
        database_url: &str,
        logs: &tempfile::TempDir,
    ) -> Instance {
        let log = logs.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut env = shared_env(database_url);
        env.push(("KYC_DESK_ADDR", format!("127.0.0.1:{port}")));
        let child = kyc_desk_command(&env)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start kyc-desk serve");
        let mut instance = Instance {
            name,
            base: format!("http://127.0.0.1:{port}"),
            child,
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = instance.child.try_wait().unwrap() {
                panic!("instance {name} exited early: {status}");
            }
            if let Ok(response) = http.get(format!("{}/readyz", instance.base)).send().await
                && response.status() == StatusCode::OK
            {
                return instance;
            }
            assert!(
                Instant::now() < deadline,
                "instance {name} did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client that keeps no cookies: each request carries the session cookie it is given, so
/// which instance issued a cookie and where it is used is explicit.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Signs in on `base`, optionally as if forwarded for `client_ip`; returns the status and
/// the session cookie (`name=value; ...`) on success.
async fn sign_in(
    base: &str,
    email: &str,
    password: &str,
    client_ip: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = http()
        .post(format!("{base}/api/login"))
        .header("origin", base)
        .form(&[("email", email), ("password", password)]);
    if let Some(ip) = client_ip {
        request = request.header("x-forwarded-for", ip);
    }
    let response = request.send().await.expect("login request");
    let status = response.status();
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_string)
        .collect();
    let body = response.json().await.unwrap_or(Value::Null);
    let cookie = (status == StatusCode::OK && !cookies.is_empty()).then(|| cookies.join("; "));
    (status, cookie, body)
}

/// Calls a server function on `base` with `cookie`.
async fn call(
    base: &str,
    cookie: &str,
    function: &str,
    args: &[(String, String)],
) -> (StatusCode, Value) {
    let response = http()
        .post(format!("{base}/api/{function}"))
        .header("origin", base)
        .header("cookie", cookie)
        .form(args)
        .send()
        .await
        .expect("server function request");
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn whoami(base: &str, cookie: &str) -> Value {
    let (status, body) = call(base, cookie, "whoami", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn link_args(option: &str, n: usize) -> Vec<(String, String)> {
    let key = format!("scaleout-{n}-{}", uuid::Uuid::new_v4().simple());
    common::forms::link_form_with(
        option,
        &format!("Customer {n}"),
        &format!("98765{n:05}"),
        &key,
        &[],
    )
}

/// Answers Eko's create call with a fresh numeric reference id each time.
struct EkoCreate {
    next_reference: AtomicU64,
}

impl Respond for EkoCreate {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let reference = self.next_reference.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(json!({
            "status": 0, "response_status_id": 0, "response_type_id": 0,
            "message": "DigiLocker URL generated successfully",
            "data": {
                "reference_id": reference,
                "url": format!("https://digilocker.example/journey/{reference}"),
            },
        }))
    }
}

/// A fake Eko UAT: creates links, and answers every status poll "not finished yet", slowly.
async fn fake_eko() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(kyc_desk::server::providers::eko::CREATE_PATH))
        .respond_with(EkoCreate {
            next_reference: AtomicU64::new(7_000_001),
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(kyc_desk::server::providers::eko::STATUS_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "status": 0, "response_status_id": 0, "response_type_id": 0,
                    "message": "pending", "data": {"user_details": {}},
                }))
                .set_delay(STATUS_DELAY),
        )
        .mount(&server)
        .await;
    server
}

/// The two instances, the database they share (read directly for the checks), the fake Eko.
struct Cluster {
    a: Instance,
    b: Instance,
    database_url: String,
    db: sqlx::AnyPool,
    eko: MockServer,
    /// Successful sign-ins made by the test (each must leave one audit row).
    sign_ins: AtomicUsize,
}

impl Cluster {
    fn bases(&self) -> [&str; 2] {
        [&self.a.base, &self.b.base]
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }

    /// Signs in and asserts it worked; counts the sign-in.
    async fn signed_in(&self, base: &str, email: &str) -> String {
        let (status, cookie, body) = sign_in(base, email, PASSWORD, None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "sign-in of {email} on {base}: {body}"
        );
        self.sign_ins.fetch_add(1, Ordering::SeqCst);
        cookie.expect("a session cookie")
    }
}

/// (1) A session cookie issued by A is a valid session on B, and signing out on B ends it on A.
async fn sessions_are_shared(cluster: &Cluster) {
    let (a, b) = (&cluster.a.base, &cluster.b.base);
    let cookie = cluster.signed_in(a, "olga@example.com").await;
    assert_eq!(whoami(b, &cookie).await["email"], "olga@example.com");
    assert_eq!(whoami(a, &cookie).await["email"], "olga@example.com");
    // A role-checked call on B, too.
    let (status, body) = call(b, &cookie, "list_sessions", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = call(b, &cookie, "logout", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The same cookie, presented again to A (a browser that missed the removal, or a thief).
    assert_eq!(whoami(a, &cookie).await, Value::Null);
    assert_eq!(whoami(b, &cookie).await, Value::Null);
    let (status, _) = call(a, &cookie, "list_sessions", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// (2) Failed sign-ins split between A and B add up: per account and per client address.
async fn throttling_is_shared(cluster: &Cluster) {
    let (a, b) = (&cluster.a.base, &cluster.b.base);
    // Neither instance alone sees enough failures to lock the account.
    let on_a = (throttle::ACCOUNT_FREE_FAILURES + 1) / 2;
    let on_b = throttle::ACCOUNT_FREE_FAILURES - on_a;
    assert!(on_a < throttle::ACCOUNT_FREE_FAILURES && on_b < throttle::ACCOUNT_FREE_FAILURES);
    for (base, times) in [(a, on_a), (b, on_b)] {
        for _ in 0..times {
            let (status, _, body) =
                sign_in(base, "tom@example.com", "not the password!", None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        }
    }
    for base in [a, b] {
        let (status, cookie, body) = sign_in(base, "tom@example.com", PASSWORD, None).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(cookie.is_none());
    }

    // Per address (X-Forwarded-For from a trusted proxy): different emails, so no account
    // lock interferes; half of the allowed failures on each instance.
    let address = "198.51.100.7";
    for i in 0..throttle::ADDRESS_MAX_FAILURES {
        let base = if i % 2 == 0 { a } else { b };
        let (status, _, body) = sign_in(
            base,
            &format!("nobody{i}@example.com"),
            "not the password!",
            Some(address),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    for base in [a, b] {
        let (status, _, body) = sign_in(base, "olga@example.com", PASSWORD, Some(address)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(
            body["TooManyRequests"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("your network"),
            "{body}"
        );
    }
    // Another address is not affected.
    let (status, _, body) = sign_in(b, "olga@example.com", PASSWORD, Some("198.51.100.8")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    cluster.sign_ins.fetch_add(1, Ordering::SeqCst);
}

/// (4) Concurrent link creations, detail views and sign-ins on both instances; returns the
/// public ids created. The audit chain is checked afterwards, in [`audit_chain_is_whole`].
async fn load_on_both(cluster: &Arc<Cluster>) -> BTreeMap<String, String> {
    let operator_a = cluster.signed_in(&cluster.a.base, "olga@example.com").await;
    let operator_b = cluster.signed_in(&cluster.b.base, "pia@example.com").await;
    let creators = 6;
    let mut tasks = Vec::new();
    for creator in 0..creators {
        let cluster = cluster.clone();
        let cookie = if creator % 2 == 0 {
            operator_a.clone()
        } else {
            operator_b.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut created = Vec::new();
            let mut n = creator;
            while n < EKO_SESSIONS + MC_SESSIONS {
                let option = if n < EKO_SESSIONS {
                    "eko:uat:digilocker"
                } else {
                    "message_central:production:basic"
                };
                // Alternate instances request by request, as a round-robin balancer would.
                let [here, there] = if n % 2 == 0 {
                    cluster.bases()
                } else {
                    let [a, b] = cluster.bases();
                    [b, a]
                };
                let (status, body) =
                    call(here, &cookie, "create_link", &link_args(option, n)).await;
                assert_eq!(status, StatusCode::OK, "create {n} on {here}: {body}");
                let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
                // The other instance shows it at once (and records the view).
                let (status, detail) = call(
                    there,
                    &cookie,
                    "session_detail",
                    &[("public_id".into(), public_id.clone())],
                )
                .await;
                assert_eq!(status, StatusCode::OK, "detail on {there}: {detail}");
                created.push((public_id, option.to_string()));
                n += creators;
            }
            created
        }));
    }
    let mut sign_in_tasks = Vec::new();
    for i in 0..8 {
        let cluster = cluster.clone();
        sign_in_tasks.push(tokio::spawn(async move {
            let base = cluster.bases()[i % 2];
            let email = ["olga@example.com", "pia@example.com", "ada@example.com"][i % 3];
            cluster.signed_in(base, email).await;
        }));
    }
    let mut created = BTreeMap::new();
    for task in tasks {
        for (public_id, option) in task.await.unwrap() {
            assert!(created.insert(public_id, option).is_none(), "a repeated id");
        }
    }
    for task in sign_in_tasks {
        task.await.unwrap();
    }
    assert_eq!(created.len(), EKO_SESSIONS + MC_SESSIONS);
    created
}

/// (3) Both pollers work on the due Eko sessions at once, and each session is asked about
/// exactly once: the lease keeps the other process off it.
async fn one_poller_per_session(cluster: &Cluster) {
    let eko_sessions = cluster
        .count("SELECT COUNT(*) FROM kyc_sessions WHERE provider = 'eko' AND status = 'started'")
        .await;
    assert_eq!(eko_sessions, EKO_SESSIONS as i64);
    assert_eq!(
        cluster
            .count("SELECT COUNT(*) FROM kyc_sessions WHERE provider = 'eko' AND poll_count > 0")
            .await,
        0,
        "nothing polled yet (the first poll is 30 s after creation)"
    );
    // Everything due now; both processes' pollers tick every few seconds.
    sqlx::query("UPDATE kyc_sessions SET next_poll_at = 0 WHERE provider = 'eko'")
        .execute(&cluster.db)
        .await
        .unwrap();
    let mut owners = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let held: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM kyc_sessions WHERE lease_owner IS NOT NULL",
        )
        .fetch_all(&cluster.db)
        .await
        .unwrap();
        owners.extend(held);
        let done = cluster
            .count(
                "SELECT COUNT(*) FROM kyc_sessions WHERE provider = 'eko' AND poll_count > 0 \
                 AND lease_owner IS NULL",
            )
            .await;
        if done == eko_sessions {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {eko_sessions} sessions were polled in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        owners.len(),
        2,
        "both processes should have held poll leases: {owners:?}"
    );

    let mut polls_per_reference: BTreeMap<String, usize> = BTreeMap::new();
    for request in cluster.eko.received_requests().await.unwrap() {
        if request.url.path() == kyc_desk::server::providers::eko::STATUS_PATH {
            let reference = request
                .url
                .query_pairs()
                .find(|(k, _)| k == "reference_id")
                .map(|(_, v)| v.into_owned())
                .expect("reference_id on a status poll");
            *polls_per_reference.entry(reference).or_default() += 1;
        }
    }
    let twice: Vec<_> = polls_per_reference
        .iter()
        .filter(|(_, n)| **n != 1)
        .collect();
    assert!(
        twice.is_empty(),
        "sessions polled more than once: {twice:?}"
    );
    assert_eq!(polls_per_reference.len(), EKO_SESSIONS);
    let references: BTreeSet<String> = sqlx::query_scalar(
        "SELECT reference_id FROM kyc_sessions WHERE provider = 'eko' AND reference_id IS NOT NULL",
    )
    .fetch_all(&cluster.db)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(
        references,
        polls_per_reference.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        cluster
            .count("SELECT COUNT(*) FROM kyc_events WHERE kind = 'polled'")
            .await,
        EKO_SESSIONS as i64
    );
}

/// (4, continued) One gap-free chain that verifies, with exactly one `link.create` row per
/// session created and one `auth.sign_in` success per sign-in.
async fn audit_chain_is_whole(cluster: &Cluster, created: &BTreeMap<String, String>) {
    let (code, stdout, stderr) = cli(&cluster.database_url, &["verify-audit"], "").await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (rows, first, last): (i64, i64, i64) =
        sqlx::query_as("SELECT COUNT(*), MIN(seq), MAX(seq) FROM audit_log")
            .fetch_one(&cluster.db)
            .await
            .unwrap();
    assert_eq!((first, last), (1, rows), "seq has gaps");
    assert!(
        stdout.contains(&format!("{rows} rows verified")),
        "{stdout}"
    );

    let per_session: Vec<(String, i64)> = sqlx::query_as(
        "SELECT object_id, COUNT(*) FROM audit_log WHERE action = 'link.create' \
         GROUP BY object_id",
    )
    .fetch_all(&cluster.db)
    .await
    .unwrap();
    let sessions = cluster.count("SELECT COUNT(*) FROM kyc_sessions").await;
    assert_eq!(sessions, created.len() as i64);
    assert_eq!(per_session.len(), created.len());
    for (public_id, count) in per_session {
        assert_eq!(count, 1, "{public_id}");
        assert!(created.contains_key(&public_id), "{public_id}");
    }
    let successes = cluster
        .count(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.sign_in' AND outcome = 'success'",
        )
        .await;
    assert_eq!(successes, cluster.sign_ins.load(Ordering::SeqCst) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_postgres_database() {
    let (database_url, _) = common::fresh_database(Backend::Postgres).await;
    let logs = tempfile::tempdir().unwrap();
    let eko = fake_eko().await;

    // The command line prepares the database, as an operator would: users, an Eko UAT
    // credential pointing at the fake Eko, and a Message Central one at A's sandbox (the
    // sandbox seeds the other kinds).
    let (port_a, port_b) = free_ports();
    create_user(&database_url, "olga@example.com", "operator").await;
    for (email, role) in [
        ("pia@example.com", "operator"),
        ("tom@example.com", "operator"),
        ("ada@example.com", "auditor"),
    ] {
        create_user(&database_url, email, role).await;
    }
    let credential = json!({
        "kind": "eko_digilocker", "environment": "uat",
        "settings": {
            "base_url": eko.uri(), "initiator_id": "9962981729", "user_code": "20810200",
            "documents": "AADHAAR",
        },
        "secrets": {
            "developer_key": kyc_desk::server::sandbox::seed::EKO_DEVELOPER_KEY,
            "access_key": kyc_desk::server::sandbox::seed::EKO_ACCESS_KEY,
        },
    });
    let message_central = json!({
        "kind": "message_central_ekyc", "environment": "production",
        "settings": {
            "base_url": format!("http://127.0.0.1:{port_a}/sandbox/message-central"),
            "company_name": kyc_desk::server::sandbox::seed::MC_COMPANY,
            "basic_flow_id": kyc_desk::server::sandbox::seed::MC_BASIC_FLOW,
        },
        "secrets": {"api_key": kyc_desk::server::sandbox::seed::MC_API_KEY},
    });
    for credential in [credential, message_central] {
        let (code, _, stderr) = cli(
            &database_url,
            &["credentials", "import"],
            &credential.to_string(),
        )
        .await;
        assert_eq!(code, 0, "{stderr}");
    }

    // One after the other, so only A seeds the sandbox credentials (B finds them).
    let a = Instance::start("A", port_a, &database_url, &logs).await;
    let b = Instance::start("B", port_b, &database_url, &logs).await;
    let db = sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .unwrap();
    let cluster = Arc::new(Cluster {
        a,
        b,
        database_url: database_url.clone(),
        db,
        eko,
        sign_ins: AtomicUsize::new(0),
    });

    sessions_are_shared(&cluster).await;
    throttling_is_shared(&cluster).await;
    let created = load_on_both(&cluster).await;
    one_poller_per_session(&cluster).await;
    audit_chain_is_whole(&cluster, &created).await;
    cluster.db.close().await;
}
