//! Benchmarks for BENCHMARKS.md (not tests: they measure, they do not assert).
//!
//! ```text
//! cargo run --release --features ssr --bin kyc-bench -- audit-append --database-url URL
//! cargo run --release --features ssr --bin kyc-bench -- audit-verify --database-url URL --rows 1000000
//! cargo run --release --features ssr --bin kyc-bench -- links --database-url URL --seconds 30
//! cargo run --release --features ssr --bin kyc-bench -- sign-in-flood --database-url URL
//! cargo run --release --features ssr --bin kyc-bench -- sign-in-burst --server-binary PATH --database-url URL
//! ```
//! Each run creates its own fresh database (a SQLite file, or a new PostgreSQL database next
//! to the one in the URL) and drops nothing the app uses.

use clap::{Parser, Subcommand};
use kyc_desk::server::audit::{
    Actor, AuditEvent, AuditLog, GENESIS_MAC, Outcome, RequestMeta, row_mac,
};
use kyc_desk::server::db::{Db, audit::AuditRow};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "KYC Desk benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit appends per second with concurrent writers.
    AuditAppend {
        /// sqlite://path or postgres://... (a fresh database is made next to it).
        #[arg(long)]
        database_url: String,
        /// Concurrent writers.
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Appends per writer.
        #[arg(long, default_value_t = 500)]
        per_writer: usize,
    },
    /// Link creation through KYC Desk vs. a bare call to the sandbox, under concurrent load.
    Links {
        /// sqlite://path or postgres://...
        #[arg(long)]
        database_url: String,
        /// Concurrent signed-in operators.
        #[arg(long, default_value_t = 50)]
        operators: usize,
        /// Seconds of load per phase.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Each operator starts one creation every this many milliseconds (0: back to back,
        /// which measures capacity rather than the time one creation takes).
        #[arg(long, default_value_t = 0)]
        pace_ms: u64,
    },
    /// Fills N sessions (with events) and times the sessions page rendered on the server.
    Sessions {
        /// sqlite://path or postgres://...
        #[arg(long)]
        database_url: String,
        /// Sessions to write.
        #[arg(long, default_value_t = 1_000_000)]
        rows: i64,
        /// Requests per measured page.
        #[arg(long, default_value_t = 40)]
        requests: usize,
    },
    /// The customer link at scale: the customer's page (`/v/{code}`, first opening and again)
    /// among N sessions, and Start (consent, a provider URL minted, 303) against a bare
    /// sandbox create call from the same tool, in one run.
    CustomerLink {
        /// sqlite://path or postgres://... (a fresh database is made next to it).
        #[arg(long)]
        database_url: String,
        /// Sessions to write (each with a customer link).
        #[arg(long, default_value_t = 1_000_000)]
        rows: i64,
        /// Customer pages measured (each opened twice).
        #[arg(long, default_value_t = 400)]
        requests: usize,
        /// Starts measured (and as many bare provider calls).
        #[arg(long, default_value_t = 300)]
        starts: usize,
    },
    /// A real user's sign-in time, idle and while waves of parallel wrong-password sign-ins
    /// for another account pour in from another address.
    SignInFlood {
        /// sqlite://path or postgres://...
        #[arg(long)]
        database_url: String,
        /// Parallel wrong-password sign-ins per wave.
        #[arg(long, default_value_t = 200)]
        parallel: usize,
        /// The real user's sign-ins measured in each phase.
        #[arg(long, default_value_t = 20)]
        samples: usize,
    },
    /// A real user's sign-in time alone and while a burst of parallel wrong-password sign-ins
    /// for a fresh account arrives from a fresh address, against a `kyc-desk` binary run as its
    /// own process (so builds of different commits can be compared with the same client).
    SignInBurst {
        /// The `kyc-desk` binary to run (`serve` and `create-user`).
        #[arg(long)]
        server_binary: std::path::PathBuf,
        /// sqlite://path or postgres://... (a fresh database is made next to it).
        #[arg(long)]
        database_url: String,
        /// Parallel wrong-password sign-ins per burst.
        #[arg(long, default_value_t = 200)]
        parallel: usize,
        /// Bursts (each with its own account and address), and as many sign-ins alone.
        #[arg(long, default_value_t = 15)]
        samples: usize,
    },
    /// Time to verify a chain of N rows.
    AuditVerify {
        /// sqlite://path or postgres://...
        #[arg(long)]
        database_url: String,
        /// Rows to write before verifying.
        #[arg(long, default_value_t = 1_000_000)]
        rows: i64,
        /// Verify the chain already in this database (written by an earlier run) instead.
        #[arg(long)]
        existing: bool,
    },
}

/// A fresh database for one benchmark run.
async fn fresh(url: &str) -> String {
    let made = kyc_desk::server::fresh_database::next_to(url, "bench")
        .await
        .expect("create a fresh database");
    if !url.starts_with("sqlite:") {
        MADE_ON_POSTGRES
            .lock()
            .unwrap()
            .push((url.to_string(), made.clone()));
    }
    made
}

/// The PostgreSQL databases this run made (the server's URL as given, the new database's URL):
/// dropped when the run ends, as each can hold a million sessions. (SQLite files stay in the
/// temporary folder, for a look.)
static MADE_ON_POSTGRES: std::sync::Mutex<Vec<(String, String)>> =
    std::sync::Mutex::new(Vec::new());

/// Drops the databases in [`MADE_ON_POSTGRES`], ending any connection still open to them.
async fn drop_made_databases() {
    let made = std::mem::take(&mut *MADE_ON_POSTGRES.lock().unwrap());
    for (server, database) in made {
        let Some(name) = url::Url::parse(&database)
            .ok()
            .map(|made| made.path().trim_start_matches('/').to_string())
        else {
            continue;
        };
        let dropped = async {
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&server).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
        }
        .await;
        match dropped {
            Ok(_) => println!("dropped the run's database {name}"),
            Err(error) => eprintln!("could not drop the run's database {name}: {error}"),
        }
    }
}

async fn open(url: &str) -> Db {
    let db = Db::connect(url).await.expect("open database");
    db.migrate().await.expect("migrate");
    db
}

fn key() -> [u8; 32] {
    [42u8; 32]
}

async fn audit_append(url: &str, writers: usize, per_writer: usize) {
    let url = fresh(url).await;
    let db = open(&url).await;
    let log = AuditLog::with_key(key());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let db = db.clone();
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let t = Instant::now();
                log.try_record(
                    &db,
                    &RequestMeta::system(),
                    &AuditEvent::new(Actor::System, "bench.append", Outcome::Success)
                        .object("writer", writer)
                        .detail(serde_json::json!({ "i": i })),
                )
                .await
                .expect("append");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total = writers * per_writer;
    let report = log.verify(&db).await.unwrap();
    println!(
        "audit-append backend={} writers={writers} appends={total} seconds={:.2} appends_per_second={:.0} p50_ms={:.2} p99_ms={:.2} chain_ok={} rows={}",
        if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        },
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() * 99 / 100].as_secs_f64() * 1000.0,
        report.broken.is_none(),
        report.rows,
    );
}

async fn audit_verify(url: &str, rows: i64, existing: bool) {
    let url = if existing {
        url.to_string()
    } else {
        fresh(url).await
    };
    let db = open(&url).await;
    let key = key();
    let rows = if existing { 0 } else { rows };
    // Realistic rows, written in large batches (the chain is computed here exactly as the
    // app computes it; only the batching differs).
    let started = Instant::now();
    let mut prev = GENESIS_MAC.to_string();
    let batch = 500i64;
    let mut seq = 1i64;
    while seq <= rows {
        let mut tx = db.pool.begin().await.unwrap();
        let end = (seq + batch - 1).min(rows);
        let mut sql = String::from(
            "INSERT INTO audit_log (seq, at_ms, actor_id, actor_email, actor_role, ip, request_id, action, \
             object_type, object_id, outcome, reason, detail, prev_mac, mac) VALUES ",
        );
        let mut batch_rows = Vec::new();
        for s in seq..=end {
            let mut row = AuditRow {
                seq: s,
                at_ms: 1_790_000_000_000 + s * 37,
                actor_id: Some(s % 40 + 1),
                actor_email: format!("operator{}@bank.example", s % 40),
                actor_role: "operator".into(),
                ip: "10.1.2.3".into(),
                request_id: uuid::Uuid::new_v4().to_string(),
                action: "link.create".into(),
                object_type: "kyc_session".into(),
                object_id: uuid::Uuid::new_v4().simple().to_string(),
                outcome: "success".into(),
                reason: String::new(),
                detail: format!(
                    "{{\"environment\":\"uat\",\"flow\":\"digilocker\",\"phone\":\"+91******{:04}\",\"provider\":\"eko\",\"sandbox\":false}}",
                    s % 10_000
                ),
                prev_mac: prev.clone(),
                mac: String::new(),
                key_epoch: 1,
            };
            row.mac = row_mac(&key, &row.prev_mac, &row);
            prev = row.mac.clone();
            batch_rows.push(row);
        }
        let mut n = 0;
        for (i, _) in batch_rows.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..15 {
                if c > 0 {
                    sql.push(',');
                }
                n += 1;
                sql.push_str(&format!("${n}"));
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for row in &batch_rows {
            query = query
                .bind(row.seq)
                .bind(row.at_ms)
                .bind(row.actor_id)
                .bind(row.actor_email.clone())
                .bind(row.actor_role.clone())
                .bind(row.ip.clone())
                .bind(row.request_id.clone())
                .bind(row.action.clone())
                .bind(row.object_type.clone())
                .bind(row.object_id.clone())
                .bind(row.outcome.clone())
                .bind(row.reason.clone())
                .bind(row.detail.clone())
                .bind(row.prev_mac.clone())
                .bind(row.mac.clone());
        }
        query.execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        seq = end + 1;
    }
    println!(
        "wrote {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let log = AuditLog::with_key(key);
    let mut best = Duration::MAX;
    for run in 1..=3 {
        let started = Instant::now();
        let report = log.verify(&db).await.unwrap();
        let elapsed = started.elapsed();
        best = best.min(elapsed);
        println!(
            "audit-verify backend={} run={run} rows={} seconds={:.2} ok={}",
            if url.starts_with("sqlite") {
                "sqlite"
            } else {
                "postgres"
            },
            report.rows,
            elapsed.as_secs_f64(),
            report.broken.is_none()
        );
    }
    println!("audit-verify best_seconds={:.2}", best.as_secs_f64());
}

/// A KYC Desk server in this process, on a free port, with the sandbox and its credentials.
async fn start_app(url: &str) -> (kyc_desk::server::state::AppState, String) {
    use kyc_desk::server::startup;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = bench_config(
        url,
        addr,
        [
            ("KYC_DESK_SANDBOX", "true".to_string()),
            // A tool that plays many clients sends each one's address as the loopback proxy
            // would (`customer-link`); the others send none and are loopback themselves.
            ("KYC_DESK_TRUSTED_PROXIES", "127.0.0.1".to_string()),
            // Every simulated user connects from loopback, one client address: it may use
            // every place (the default share of one client is 32).
            (
                "KYC_DESK_MAX_CONCURRENT_REQUESTS_PER_CLIENT",
                "256".to_string(),
            ),
        ],
    );
    let state = startup::open(config).await.expect("open");
    kyc_desk::server::sandbox::seed::seed(&state)
        .await
        .expect("seed");
    startup::serve_in_background(listener, state.clone());
    (state, format!("http://{addr}"))
}

const BENCH_PASSWORD: &str = "benchmark passphrase 2026";

async fn signed_in_users(
    state: &kyc_desk::server::state::AppState,
    base: &str,
    role: kyc_desk::types::Role,
    count: usize,
) -> Vec<reqwest::Client> {
    use kyc_desk::server::auth::accounts;
    let mut clients = Vec::new();
    for i in 0..count {
        let email = format!("{}{i}@bench.example", role.as_str());
        accounts::create_user(
            state,
            &RequestMeta::cli(),
            Actor::Cli,
            accounts::NewAccount {
                email: email.clone(),
                display_name: format!("Bench {i}"),
                role: role.as_str().into(),
                password: secrecy::SecretString::from(BENCH_PASSWORD),
                password_confirm: None,
            },
            false,
            false,
        )
        .await
        .expect("user");
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = client
            .post(format!("{base}/api/login"))
            .header("origin", base)
            .form(&[("email", email.as_str()), ("password", BENCH_PASSWORD)])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "sign-in failed");
        clients.push(client);
    }
    clients
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn report(
    label: &str,
    backend: &str,
    mut latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
) {
    latencies.sort();
    println!(
        "{label} backend={backend} requests={} errors={errors} seconds={:.1} per_second={:.0} p50_ms={:.2} p99_ms={:.2}",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
}

async fn links(url: &str, operators: usize, seconds: u64, pace_ms: u64) {
    let phases = PhaseTimer::install();
    let pace = Duration::from_millis(pace_ms);
    // Operators start spread over one pace interval, not all at once.
    let offset = move |i: usize| pace.mul_f64(i as f64 / operators as f64);
    let backend = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    // Phase 1: a bare, signed Eko create call to a sandbox, from the same load tool.
    let bare_url = fresh(url).await;
    let (_bare_state, bare_base) = start_app(&bare_url).await;
    let creds = kyc_desk::server::providers::eko::EkoCredentials {
        base_url: format!("{bare_base}/sandbox/eko"),
        developer_key: secrecy::SecretString::from(
            kyc_desk::server::sandbox::seed::EKO_DEVELOPER_KEY,
        ),
        access_key: secrecy::SecretString::from(kyc_desk::server::sandbox::seed::EKO_ACCESS_KEY),
        initiator_id: kyc_desk::server::sandbox::seed::EKO_INITIATOR_ID.into(),
        user_code: kyc_desk::server::sandbox::seed::EKO_USER_CODE.into(),
    };
    let http = kyc_desk::server::providers::ProviderHttp::with_default_timeouts().unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..operators {
        let http = http.clone();
        let creds = creds.clone();
        let back = format!("{bare_base}/kyc/return/x");
        let first = started + offset(i);
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            let mut next_start = first;
            while next_start < deadline {
                tokio::time::sleep_until(next_start.into()).await;
                next_start = (next_start + pace).max(Instant::now());
                let t = Instant::now();
                let result = kyc_desk::server::providers::eko::create_digilocker_url(
                    &http,
                    &creds,
                    &kyc_desk::server::providers::eko::new_client_ref_id(),
                    &[],
                    &back,
                )
                .await;
                match result {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await.unwrap();
        all.extend(l);
        errors += e;
    }
    report("bare-sandbox-call", backend, all, errors, started.elapsed());

    // Phase 2: the same provider call made by KYC Desk's create_link, signed-in operators.
    let app_url = fresh(url).await;
    let (state, base) = start_app(&app_url).await;
    let clients = signed_in_users(&state, &base, kyc_desk::types::Role::Operator, operators).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        let base = base.clone();
        let first = started + offset(i);
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0);
            let (mut qr_latencies, mut qr_errors) = (Vec::new(), 0);
            let mut n = 0;
            let mut next_start = first;
            while next_start < deadline {
                tokio::time::sleep_until(next_start.into()).await;
                next_start = (next_start + pace).max(Instant::now());
                n += 1;
                let key = format!("bench-{i}-{n}-{}", uuid::Uuid::new_v4().simple());
                let t = Instant::now();
                let response = client
                    .post(format!("{base}/api/create_link"))
                    .header("origin", &base)
                    .form(&[
                        ("input[option]", "eko:uat:digilocker"),
                        ("input[customer_name]", "Bench Customer"),
                        ("input[phone]", "9876543210"),
                        ("input[consent]", "on"),
                        ("input[idempotency_key]", key.as_str()),
                        ("input[handover]", "provider_url"),
                    ])
                    .send()
                    .await;
                let created = match response {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .filter(|body| body["summary"]["status"] == "started"),
                    _ => None,
                };
                let Some(created) = created else {
                    errors += 1;
                    continue;
                };
                latencies.push(t.elapsed());
                // Then the result card's QR image, as the browser fetches it.
                let t = Instant::now();
                let qr = client
                    .get(format!(
                        "{base}/sessions/{}/qr.svg",
                        created["summary"]["public_id"].as_str().unwrap_or_default()
                    ))
                    .send()
                    .await;
                let drawn = match qr {
                    Ok(r) if r.status().is_success() => {
                        r.text().await.is_ok_and(|svg| svg.contains("<svg"))
                    }
                    _ => false,
                };
                if drawn {
                    qr_latencies.push(t.elapsed());
                } else {
                    qr_errors += 1;
                }
            }
            (latencies, errors, qr_latencies, qr_errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    let (mut all_qr, mut qr_errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e, ql, qe) = task.await.unwrap();
        all.extend(l);
        errors += e;
        all_qr.extend(ql);
        qr_errors += qe;
    }
    let elapsed = started.elapsed();
    report("kyc-desk-create-link", backend, all, errors, elapsed);
    report("kyc-desk-qr-image", backend, all_qr, qr_errors, elapsed);
    // Where the creations' time went, measured inside the server.
    phases.print();
    let report = state.audit.verify(&state.db).await.unwrap();
    println!("audit chain after the run: {}", report.summary());
}

async fn sessions(url: &str, rows: i64, requests: usize) {
    let backend = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let url = fresh(url).await;
    let (state, base) = start_app(&url).await;
    let auditors = signed_in_users(&state, &base, kyc_desk::types::Role::Auditor, 1).await;
    let operators: Vec<i64> = {
        let mut ids = Vec::new();
        for i in 0..20 {
            let user = kyc_desk::server::auth::accounts::create_user(
                &state,
                &RequestMeta::cli(),
                Actor::Cli,
                kyc_desk::server::auth::accounts::NewAccount {
                    email: format!("staff{i}@bench.example"),
                    display_name: format!("Staff {i}"),
                    role: "operator".into(),
                    password: secrecy::SecretString::from(BENCH_PASSWORD),
                    password_confirm: None,
                },
                false,
                false,
            )
            .await
            .unwrap();
            ids.push(user.id);
        }
        ids
    };
    let credential: i64 =
        sqlx::query_scalar("SELECT id FROM credentials WHERE kind = 'eko_digilocker'")
            .fetch_one(&state.db.pool)
            .await
            .unwrap();
    let names = [
        "Asha Rao",
        "Ravi Kumar",
        "Meera Iyer",
        "Kiran Das",
        "Arjun Mehta",
        "Priya Nair",
        "Vikram Singh",
        "Neha Gupta",
    ];
    let statuses = [
        "completed",
        "completed",
        "completed",
        "expired",
        "failed",
        "issued",
        "started",
        "cancelled",
    ];
    let started = Instant::now();
    let now = kyc_desk::server::db::now();
    let batch = 1000i64;
    let mut next = 0i64;
    while next < rows {
        let end = (next + batch).min(rows);
        let mut tx = state.db.pool.begin().await.unwrap();
        let mut sql = String::from(
            "INSERT INTO kyc_sessions (public_id, idempotency_key, provider, flow, environment, credential_id, sandbox, \
             customer_name, phone, documents, consent_note, status, created_by, created_at, updated_at, expires_at, \
             ended_at, reference_id, search_text) VALUES ",
        );
        for i in next..end {
            if i > next {
                sql.push(',');
            }
            let name = format!("{} {}", names[(i % 8) as usize], i);
            let phone = format!("+9198{:08}", i);
            let created = now - (rows - i) * 2;
            let status = statuses[(i % 8) as usize];
            sql.push_str(&format!(
                "('p{i:012}', 'k{i:012}', 'eko', 'digilocker', 'uat', {credential}, 1, '{name}', '{phone}', 'AADHAAR', 'ok', '{status}', {}, {created}, {created}, {}, {}, 'R{i}', '{} {phone} r{i}')",
                operators[(i % 20) as usize],
                created + 86_400,
                if status == "issued" || status == "started" { "NULL".to_string() } else { (created + 600).to_string() },
                name.to_lowercase(),
            ));
        }
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
        // The search terms, exactly as the app derives them from the search text.
        let ids: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, search_text FROM kyc_sessions WHERE idempotency_key >= $1 AND idempotency_key < $2",
        )
        .bind(format!("k{next:012}"))
        .bind(format!("k{end:012}"))
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        let mut terms = String::from("INSERT INTO kyc_search_terms (term, session_id) VALUES ");
        let mut first = true;
        for (id, text) in &ids {
            for term in kyc_desk::server::db::links::search_terms(text) {
                if !first {
                    terms.push(',');
                }
                first = false;
                terms.push_str(&format!("('{}', {id})", term.replace('\'', "''")));
            }
        }
        sqlx::query(&terms).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        next = end;
    }
    sqlx::query("INSERT INTO kyc_events (session_id, at, kind, actor, detail) SELECT id, created_at, 'created', 'bench', 'Link created.' FROM kyc_sessions")
        .execute(&state.db.pool)
        .await
        .unwrap();
    // A table loaded long ago has been vacuumed (PostgreSQL's autovacuum also runs after
    // inserts), which index-only scans need; statistics on both backends.
    let settle = match state.db.backend {
        kyc_desk::server::db::Backend::Sqlite => "ANALYZE",
        kyc_desk::server::db::Backend::Postgres => "VACUUM ANALYZE",
    };
    sqlx::raw_sql(settle).execute(&state.db.pool).await.unwrap();
    println!(
        "seeded {rows} sessions with events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let deep: i64 = sqlx::query_scalar("SELECT id FROM kyc_sessions ORDER BY id LIMIT 1 OFFSET $1")
        .bind(rows / 2)
        .fetch_one(&state.db.pool)
        .await
        .unwrap();
    // The one day the date-range page shows (the one the middle session was created on).
    let day_start = (now - rows * 2 + rows / 2).div_euclid(86_400) * 86_400;
    // The plans behind the pages (the list's query, as the page runs it).
    let staff3: i64 =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'staff3@bench.example'")
            .fetch_one(&state.db.pool)
            .await
            .unwrap();
    use kyc_desk::server::db::links::SessionQuery;
    for (label, query) in [
        ("first-page", SessionQuery::default()),
        (
            "filtered",
            SessionQuery {
                status: Some("failed".into()),
                created_by: Some(staff3),
                ..SessionQuery::default()
            },
        ),
        (
            "deep-cursor",
            SessionQuery {
                before_id: Some(deep),
                ..SessionQuery::default()
            },
        ),
        (
            "search-name",
            SessionQuery {
                text: Some(format!("meera iyer {}", rows / 3 / 8 * 8 + 2)),
                ..SessionQuery::default()
            },
        ),
        (
            "search-common-word",
            SessionQuery {
                text: Some("meera".into()),
                ..SessionQuery::default()
            },
        ),
        (
            "search-phone",
            SessionQuery {
                phone: Some(format!("+9198{:08}", rows / 3)),
                ..SessionQuery::default()
            },
        ),
        (
            "date-range",
            SessionQuery {
                from: Some(day_start),
                to: Some(day_start + 86_400),
                ..SessionQuery::default()
            },
        ),
    ] {
        let plan = kyc_desk::server::db::links::explain_search(&state.db, &query, 51)
            .await
            .unwrap();
        println!("plan backend={backend} page={label}:");
        for line in plan {
            println!("    {line}");
        }
    }
    let client = &auditors[0];
    for (label, path) in [
        ("first-page", "/sessions".to_string()),
        (
            "filtered",
            "/sessions?status=failed&staff=staff3%40bench.example".to_string(),
        ),
        ("deep-cursor", format!("/sessions?before={deep}")),
        (
            "search-name",
            format!("/sessions?q=meera%20iyer%20{}", rows / 3 / 8 * 8 + 2),
        ),
        (
            "search-phone",
            format!("/sessions?q=%2B9198{:08}", rows / 3),
        ),
        ("search-common-word", "/sessions?q=meera".to_string()),
        (
            "search-date-range",
            format!(
                "/sessions?from={}&to={}",
                chrono::DateTime::from_timestamp(now - rows * 2 + rows / 2, 0)
                    .unwrap()
                    .format("%Y-%m-%d"),
                chrono::DateTime::from_timestamp(now - rows * 2 + rows / 2, 0)
                    .unwrap()
                    .format("%Y-%m-%d"),
            ),
        ),
        (
            "search-rare-word",
            "/sessions?q=nobody-has-this".to_string(),
        ),
    ] {
        let mut latencies = Vec::new();
        for _ in 0..requests {
            let t = Instant::now();
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            let body = response.text().await.unwrap();
            assert!(body.contains("</html>"));
            latencies.push(t.elapsed());
        }
        latencies.sort();
        println!(
            "sessions-page backend={backend} rows={rows} page={label} p50_ms={:.1} p95_ms={:.1} max_ms={:.1}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.95),
            percentile(&latencies, 1.0),
        );
    }
}

/// The customer code of seeded session `i` (22 characters, as a real one).
fn bench_code(i: i64) -> String {
    format!("bench{i:017}")
}

async fn customer_link(url: &str, rows: i64, requests: usize, starts: usize) {
    let backend = if url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    let phases = PhaseTimer::install();
    let url = fresh(url).await;
    // Customers come from many addresses: the tool sends each request as another client
    // through the trusted loopback proxy, so the per-address limit does not refuse the run.
    let (state, base) = start_app(&url).await;
    let creator = signed_in_users(&state, &base, kyc_desk::types::Role::Operator, 1).await;
    drop(creator);
    let operator: i64 = sqlx::query_scalar("SELECT MIN(id) FROM users")
        .fetch_one(&state.db.pool)
        .await
        .unwrap();
    let credential: i64 =
        sqlx::query_scalar("SELECT id FROM credentials WHERE kind = 'eko_digilocker'")
            .fetch_one(&state.db.pool)
            .await
            .unwrap();
    let now = kyc_desk::server::db::now();
    let started = Instant::now();
    let batch = 1000i64;
    let mut next = 0i64;
    while next < rows {
        let end = (next + batch).min(rows);
        let mut sql = String::from(
            "INSERT INTO kyc_sessions (public_id, idempotency_key, provider, flow, environment, credential_id, sandbox, \
             customer_name, phone, documents, consent_note, status, created_by, created_at, updated_at, expires_at, \
             customer_code, link_expires_at, mint_limit, search_text) VALUES ",
        );
        for i in next..end {
            if i > next {
                sql.push(',');
            }
            let created = now - (rows - i);
            sql.push_str(&format!(
                "('c{i:012}', 'ck{i:012}', 'eko', 'digilocker', 'uat', {credential}, 1, 'Customer {i}', '+9198{i:08}', \
                 'AADHAAR', 'ok', 'issued', {operator}, {created}, {created}, {exp}, '{code}', {exp}, 3, 'customer {i}')",
                exp = now + 72 * 3600,
                code = bench_code(i),
            ));
        }
        sqlx::query(&sql).execute(&state.db.pool).await.unwrap();
        next = end;
    }
    let settle = match state.db.backend {
        kyc_desk::server::db::Backend::Sqlite => "ANALYZE",
        kyc_desk::server::db::Backend::Postgres => "VACUUM ANALYZE",
    };
    sqlx::raw_sql(settle).execute(&state.db.pool).await.unwrap();
    println!(
        "seeded {rows} sessions with customer links in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut client_number = 0u32;
    let mut next_address = || {
        client_number += 1;
        format!(
            "10.{}.{}.{}",
            client_number >> 16 & 255,
            client_number >> 8 & 255,
            client_number & 255
        )
    };
    // Sessions spread over the table, the last `starts` kept for Start.
    let step = ((rows - starts as i64) / requests as i64).max(1);
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for n in 0..requests as i64 {
        let code = bench_code(n * step);
        for latencies in [&mut first, &mut again] {
            let t = Instant::now();
            let response = client
                .get(format!("{base}/v/{code}"))
                .header("x-forwarded-for", next_address())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::OK, "/v/{code}");
            let body = response.text().await.unwrap();
            assert!(body.contains("customer-intro"));
            latencies.push(t.elapsed());
        }
    }
    for (label, mut latencies) in [("first-open", first), ("again", again)] {
        latencies.sort();
        println!(
            "customer-page backend={backend} rows={rows} visit={label} n={} p50_ms={:.2} p95_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            latencies.len(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.95),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
        );
    }

    // Start: the page opened first (as a customer does), then consent + mint + 303, against
    // the bare signed Eko create call to the same sandbox, alternating, from the same tool.
    let creds = kyc_desk::server::providers::eko::EkoCredentials {
        base_url: format!("{base}/sandbox/eko"),
        developer_key: secrecy::SecretString::from(
            kyc_desk::server::sandbox::seed::EKO_DEVELOPER_KEY,
        ),
        access_key: secrecy::SecretString::from(kyc_desk::server::sandbox::seed::EKO_ACCESS_KEY),
        initiator_id: kyc_desk::server::sandbox::seed::EKO_INITIATOR_ID.into(),
        user_code: kyc_desk::server::sandbox::seed::EKO_USER_CODE.into(),
    };
    let http = kyc_desk::server::providers::ProviderHttp::with_default_timeouts().unwrap();
    let (mut bare, mut start) = (Vec::new(), Vec::new());
    drop(phases.take());
    for n in 0..starts as i64 {
        let code = bench_code(rows - 1 - n);
        let address = next_address();
        let opened = client
            .get(format!("{base}/v/{code}"))
            .header("x-forwarded-for", &address)
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), reqwest::StatusCode::OK);
        let t = Instant::now();
        kyc_desk::server::providers::eko::create_digilocker_url(
            &http,
            &creds,
            &kyc_desk::server::providers::eko::new_client_ref_id(),
            &["AADHAAR".to_string()],
            &format!("{base}/kyc/return/x"),
        )
        .await
        .unwrap();
        bare.push(t.elapsed());
        let t = Instant::now();
        let response = client
            .post(format!("{base}/v/{code}/start"))
            .header("origin", &base)
            .header("x-forwarded-for", &address)
            .form(&[("lang", "en"), ("notice_version", "1"), ("consent", "on")])
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::SEE_OTHER,
            "/v/{code}/start"
        );
        start.push(t.elapsed());
    }
    bare.sort();
    start.sort();
    for (label, latencies) in [("bare-sandbox-call", &bare), ("start-redirect", &start)] {
        println!(
            "customer-start backend={backend} phase={label} n={} p50_ms={:.2} p95_ms={:.2} p99_ms={:.2}",
            latencies.len(),
            percentile(latencies, 0.50),
            percentile(latencies, 0.95),
            percentile(latencies, 0.99),
        );
    }
    println!(
        "customer-start backend={backend} overhead p50_ms={:.2} p99_ms={:.2}",
        percentile(&start, 0.50) - percentile(&bare, 0.50),
        percentile(&start, 0.99) - percentile(&bare, 0.99),
    );
    // Where the Starts' time went, measured inside the server (the whole answer, then each
    // phase; the rest of a Start's time is HTTP and the router's layers).
    phases.print();
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::AuditAppend {
            database_url,
            writers,
            per_writer,
        } => audit_append(&database_url, writers, per_writer).await,
        Command::AuditVerify {
            database_url,
            rows,
            existing,
        } => audit_verify(&database_url, rows, existing).await,
        Command::Links {
            database_url,
            operators,
            seconds,
            pace_ms,
        } => links(&database_url, operators, seconds, pace_ms).await,
        Command::Sessions {
            database_url,
            rows,
            requests,
        } => sessions(&database_url, rows, requests).await,
        Command::CustomerLink {
            database_url,
            rows,
            requests,
            starts,
        } => customer_link(&database_url, rows, requests, starts).await,
        Command::SignInFlood {
            database_url,
            parallel,
            samples,
        } => sign_in_flood(&database_url, parallel, samples).await,
        Command::SignInBurst {
            server_binary,
            database_url,
            parallel,
            samples,
        } => sign_in_burst(&server_binary, &database_url, parallel, samples).await,
    }
    drop_made_databases().await;
}

/// One sign-in from client address `from` (through the trusted loopback proxy): its status
/// and how long it took.
async fn timed_sign_in(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
    from: &str,
) -> (u16, Duration) {
    let started = Instant::now();
    let status = client
        .post(format!("{base}/api/login"))
        .header("origin", base)
        .header("x-forwarded-for", from)
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    (status, started.elapsed())
}

/// The real user's `samples` sign-ins one after another; their times, sorted.
async fn real_user_sign_ins(base: &str, samples: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..samples {
        let client = reqwest::Client::new();
        let (status, took) = timed_sign_in(
            &client,
            base,
            "real@bench.example",
            BENCH_PASSWORD,
            "198.51.100.20",
        )
        .await;
        assert_eq!(status, 200, "the real user's sign-in failed");
        times.push(took);
    }
    times.sort();
    times
}

/// The configuration of an in-process server on `addr` for the database at `url`: a fresh
/// master key, the audit anchor file PostgreSQL needs, and `extra` settings.
fn bench_config<const N: usize>(
    url: &str,
    addr: std::net::SocketAddr,
    extra: [(&'static str, String); N],
) -> kyc_desk::server::config::Config {
    let master_key = kyc_desk::server::vault::MasterKey::generate()
        .to_base64()
        .to_string();
    let anchor = kyc_desk::server::fresh_database::anchor_file_for(url)
        .map(|anchor| ("KYC_DESK_AUDIT_ANCHOR_FILE", anchor));
    kyc_desk::server::startup::config_from(
        [
            ("DATABASE_URL", url.to_string()),
            ("KYC_DESK_ADDR", addr.to_string()),
            ("KYC_DESK_MASTER_KEY", master_key),
            // The benchmarks sign staff in by password only (they time other things).
            ("KYC_DESK_SECOND_FACTOR_ROLES", "none".to_string()),
        ]
        .into_iter()
        .chain(extra)
        .chain(anchor),
    )
    .expect("config")
}

async fn sign_in_flood(url: &str, parallel: usize, samples: usize) {
    use kyc_desk::server::startup;
    let url = fresh(url).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = bench_config(
        &url,
        addr,
        [("KYC_DESK_TRUSTED_PROXIES", "127.0.0.1".to_string())],
    );
    let state = startup::open(config).await.expect("open");
    startup::serve_in_background(listener, state.clone());
    let base = format!("http://{addr}");
    for email in ["real@bench.example", "target@bench.example"] {
        kyc_desk::server::auth::accounts::create_user(
            &state,
            &RequestMeta::cli(),
            Actor::Cli,
            kyc_desk::server::auth::accounts::NewAccount {
                email: email.into(),
                display_name: "Bench".into(),
                role: "operator".into(),
                password: secrecy::SecretString::from(BENCH_PASSWORD),
                password_confirm: None,
            },
            false,
            false,
        )
        .await
        .expect("user");
    }
    // Warm up (connections, argon2 memory), then the idle figure.
    real_user_sign_ins(&base, 3).await;
    let idle = real_user_sign_ins(&base, samples).await;

    let hashed_before = state.passwords.verifications();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers = std::sync::Arc::new(std::sync::Mutex::new(
        std::collections::BTreeMap::<u16, u64>::new(),
    ));
    let flood = {
        let (stop, answers, base) = (stop.clone(), answers.clone(), base.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let wave = (0..parallel).map(|i| {
                    let client = client.clone();
                    let base = base.clone();
                    async move {
                        timed_sign_in(
                            &client,
                            &base,
                            "target@bench.example",
                            &format!("wrong guess {i}"),
                            "203.0.113.5",
                        )
                        .await
                        .0
                    }
                });
                for status in futures::future::join_all(wave).await {
                    *answers.lock().unwrap().entry(status).or_default() += 1;
                }
            }
        })
    };
    // Let the first wave arrive before measuring.
    while answers.lock().unwrap().values().sum::<u64>() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let flooded = real_user_sign_ins(&base, samples).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    flood.await.unwrap();
    let hashed = state.passwords.verifications() - hashed_before;

    let median = |times: &[Duration]| times[times.len() / 2].as_secs_f64() * 1000.0;
    let worst = |times: &[Duration]| times[times.len() - 1].as_secs_f64() * 1000.0;
    let answers = answers.lock().unwrap().clone();
    let total: u64 = answers.values().sum();
    println!(
        "sign-in-flood idle_median_ms={:.1} idle_max_ms={:.1} flood_median_ms={:.1} flood_max_ms={:.1} ratio_median={:.2}",
        median(&idle),
        worst(&idle),
        median(&flooded),
        worst(&flooded),
        median(&flooded) / median(&idle)
    );
    println!(
        "sign-in-flood guesses={total} answers={answers:?} argon2_runs_during_flood={hashed} (the real user's {samples} included)"
    );
}

/// A real user's sign-in alone and during bursts of `parallel` wrong guesses, against
/// `binary` run as a child process on a fresh database. Each burst targets its own account
/// from its own address: the case the limits must hold (guesses that all arrive before any is
/// counted), not a flood of an already locked account. Sign-ins alone and during a burst
/// alternate, so a machine's changing load touches both alike.
async fn sign_in_burst(binary: &std::path::Path, url: &str, parallel: usize, samples: usize) {
    use kyc_desk::server::serve_process::{self, ServeProcess};
    // The server runs in the temporary folder (no `.env` of ours is read there).
    let binary = &std::fs::canonicalize(binary).expect("the server binary");
    let url = fresh(url).await;
    let port = serve_process::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let master_key = kyc_desk::server::vault::MasterKey::generate()
        .to_base64()
        .to_string();
    let mut env = vec![
        ("DATABASE_URL".to_string(), url.clone()),
        ("KYC_DESK_ADDR".to_string(), format!("127.0.0.1:{port}")),
        ("KYC_DESK_PUBLIC_URL".to_string(), base.clone()),
        ("KYC_DESK_MASTER_KEY".to_string(), master_key),
        (
            "KYC_DESK_SECOND_FACTOR_ROLES".to_string(),
            "none".to_string(),
        ),
        (
            "KYC_DESK_TRUSTED_PROXIES".to_string(),
            "127.0.0.1".to_string(),
        ),
        ("RUST_LOG".to_string(), "warn".to_string()),
    ];
    if let Some(anchor) = kyc_desk::server::fresh_database::anchor_file_for(&url) {
        env.push(("KYC_DESK_AUDIT_ANCHOR_FILE".to_string(), anchor));
    }
    let workdir = std::env::temp_dir();
    let targets: Vec<String> = (0..samples)
        .map(|i| format!("target{}@bench.example", letters(i)))
        .collect();
    for email in std::iter::once("real@bench.example").chain(targets.iter().map(String::as_str)) {
        use std::io::Write;
        let mut child = serve_process::command(binary, &workdir, env.iter().cloned())
            .args(["create-user", "--email", email, "--role", "operator"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run create-user");
        writeln!(child.stdin.take().unwrap(), "{BENCH_PASSWORD}").unwrap();
        assert!(
            child.wait().unwrap().success(),
            "create-user {email} failed"
        );
    }
    let log = workdir.join(format!("kyc-bench-burst-{port}.log"));
    let mut server = ServeProcess::spawn(
        serve_process::command(binary, &workdir, env.iter().cloned()),
        port,
        log,
    )
    .expect("start the server");
    server
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("server not ready ({e:?}): {}", server.log_text()));

    real_user_sign_ins(&base, 3).await;
    let client = reqwest::Client::new();
    let mut alone = Vec::new();
    let mut during = Vec::new();
    let mut answers = std::collections::BTreeMap::<u16, u64>::new();
    for (i, target) in targets.iter().enumerate() {
        alone.extend(real_user_sign_ins(&base, 1).await);
        let from = format!("203.0.113.{}", i + 1);
        let burst: Vec<_> = (0..parallel)
            .map(|n| {
                let (client, base, target, from) =
                    (client.clone(), base.clone(), target.clone(), from.clone());
                tokio::spawn(async move {
                    timed_sign_in(&client, &base, &target, &format!("wrong {n}"), &from)
                        .await
                        .0
                })
            })
            .collect();
        during.extend(real_user_sign_ins(&base, 1).await);
        for status in futures::future::join_all(burst).await {
            *answers.entry(status.unwrap()).or_default() += 1;
        }
    }
    alone.sort();
    during.sort();
    println!(
        "sign-in-burst alone_median_ms={:.1} alone_max_ms={:.1} burst_median_ms={:.1} burst_max_ms={:.1} ratio_median={:.2}",
        percentile(&alone, 0.5),
        percentile(&alone, 1.0),
        percentile(&during, 0.5),
        percentile(&during, 1.0),
        percentile(&during, 0.5) / percentile(&alone, 0.5),
    );
    println!("sign-in-burst bursts={samples} of {parallel} guesses, answers={answers:?}");
}

/// `n` written with letters only (fresh names must not read as digit runs in audit scans).
fn letters(mut n: usize) -> String {
    let mut out = String::new();
    loop {
        out.insert(0, (b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            return out;
        }
    }
}

/// Times the spans the server opens around each phase of a link creation
/// (`server::timing::phase_span`), from their start to their close, by phase.
#[derive(Clone, Default)]
struct PhaseTimer {
    phases: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<Duration>>>>,
}

/// When a phase's span started, kept with the span.
struct PhaseStarted {
    phase: String,
    at: Instant,
}

/// Reads a phase span's `phase` field.
struct PhaseName(Option<String>);

impl tracing::field::Visit for PhaseName {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "phase" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "phase" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl PhaseTimer {
    /// Installs the timer as this process's only subscriber, seeing phase spans and nothing
    /// else, and returns a handle to what it collects.
    fn install() -> Self {
        use tracing_subscriber::filter;
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        let timer = PhaseTimer::default();
        // A global filter, not a per-layer one: with the per-layer filter some phase spans
        // (those created while another phase span was entered on the thread, and others) never
        // reached the timer, and their phases were missing from the table.
        tracing_subscriber::registry()
            .with(filter::filter_fn(|metadata| {
                metadata.is_span() && metadata.name() == kyc_desk::server::timing::PHASE_SPAN
            }))
            .with(timer.clone())
            .init();
        timer
    }

    /// Prints the durations collected so far, one line per phase (p50, p95, p99), and forgets
    /// them.
    fn print(&self) {
        for (phase, mut took) in self.take() {
            took.sort();
            println!(
                "  phase {phase:<36} n={:<5} p50_ms={:.2} p95_ms={:.2} p99_ms={:.2}",
                took.len(),
                percentile(&took, 0.50),
                percentile(&took, 0.95),
                percentile(&took, 0.99)
            );
        }
    }

    /// Takes every duration collected so far, by phase.
    fn take(&self) -> std::collections::BTreeMap<String, Vec<Duration>> {
        self.phases
            .lock()
            .map(|mut phases| std::mem::take(&mut *phases))
            .unwrap_or_default()
    }
}

impl<S> tracing_subscriber::Layer<S> for PhaseTimer
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attributes: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        context: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut name = PhaseName(None);
        attributes.record(&mut name);
        if let (Some(phase), Some(span)) = (name.0, context.span(id)) {
            span.extensions_mut().insert(PhaseStarted {
                phase,
                at: Instant::now(),
            });
        }
    }

    fn on_close(&self, id: tracing::span::Id, context: tracing_subscriber::layer::Context<'_, S>) {
        let Some(started) = context
            .span(&id)
            .and_then(|span| span.extensions_mut().remove::<PhaseStarted>())
        else {
            return;
        };
        if let Ok(mut phases) = self.phases.lock() {
            phases
                .entry(started.phase)
                .or_default()
                .push(started.at.elapsed());
        }
    }
}
