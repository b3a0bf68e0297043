//! Soak benchmark for BENCHMARKS.md (not a test: it measures and reports, it asserts nothing).
//!
//! Starts the real `kyc-desk serve` as a separate process on a fresh PostgreSQL (or SQLite)
//! database with the provider sandbox, then for `--seconds` runs signed-in operators looping
//! over create link → list sessions → open detail, and auditors looping over the audit page →
//! audit CSV export. Reports throughput and p50/p99 per action, errors, the server's resident
//! memory (sampled from `/proc/<pid>/status`), and afterwards checks that every session has
//! exactly one `link.create` audit row and that the audit chain verifies.
//!
//! ```text
//! cargo build --release --features ssr,bench --bin kyc-soak --bin kyc-desk
//! target/release/kyc-soak --database-url postgres://postgres@127.0.0.1:5432/test --seconds 600
//! ```
//!
//! The sandbox holds at most [`MAX_LINKS`] open links (kept 24 h), so link creation is paced:
//! each operator creates at most one link per `--pace-ms`; by default the pace is chosen so
//! the whole run creates at most [`LINK_BUDGET`] links. Between creations the operators keep
//! listing and opening sessions without pause. Links alternate between Eko UAT (the seeded
//! sandbox credential; the server's poller then polls them too) and Message Central through a
//! second sandbox credential labelled production, because the seeded trial one allows only
//! five links.
//!
//! Users sign in one at a time before the load (`--sign-in-concurrency` to change that: each
//! sign-in runs argon2 with 19 MiB, so a burst of them moves the server's peak memory).

use clap::Parser;
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::auth::accounts;
use kyc_desk::server::sandbox::{MAX_LINKS, seed};
use kyc_desk::server::serve_process::{self, NotReady, ServeProcess};
use kyc_desk::server::{fresh_database, startup};
use kyc_desk::types::Role;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Links a run may create: the sandbox's cap less a margin for the links of earlier runs
/// against the same server (none here: each run starts its own) and rounding.
const LINK_BUDGET: u64 = (MAX_LINKS as u64) * 9 / 10;
const PASSWORD: &str = "soak test passphrase 2026";

#[derive(Parser)]
#[command(about = "KYC Desk soak benchmark: a real server process under steady mixed load")]
struct Cli {
    /// sqlite://path or postgres://... (a fresh database is made next to it).
    #[arg(long)]
    database_url: String,
    /// The `kyc-desk` binary to run (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Length of the load, in seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Concurrent signed-in operators.
    #[arg(long, default_value_t = 50)]
    operators: usize,
    /// Concurrent signed-in auditors.
    #[arg(long, default_value_t = 5)]
    auditors: usize,
    /// Least time between two link creations of one operator (default: keeps the run under
    /// the sandbox's link cap).
    #[arg(long)]
    pace_ms: Option<u64>,
    /// The auditors' export filter, as the query string of /audit/export.csv.
    #[arg(long, default_value = "action=link.create")]
    export_query: String,
    /// How many users sign in at once before the load starts (each sign-in runs argon2 with
    /// 19 MiB, so this moves the server's peak memory).
    #[arg(long, default_value_t = 1)]
    sign_in_concurrency: usize,
    /// Extra environment variable for the server, NAME=VALUE (repeatable), e.g. allocator
    /// settings such as MALLOC_ARENA_MAX=2.
    #[arg(long)]
    server_env: Vec<String>,
}

fn server_env(database_url: &str, master_key: &str, port: u16) -> Vec<(String, String)> {
    let anchor = kyc_desk::server::fresh_database::anchor_file_for(database_url)
        .map(|anchor| ("KYC_DESK_AUDIT_ANCHOR_FILE", anchor));
    [
        ("DATABASE_URL", database_url.to_string()),
        ("KYC_DESK_ADDR", format!("127.0.0.1:{port}")),
        ("KYC_DESK_MASTER_KEY", master_key.to_string()),
        ("KYC_DESK_SANDBOX", "true".into()),
        // Every simulated user connects from loopback, one client address: it may use every
        // place (the default share of one client is 32).
        ("KYC_DESK_MAX_CONCURRENT_REQUESTS_PER_CLIENT", "256".into()),
        // The soak signs its staff in by password only: it measures links, sessions and the
        // audit log, not second factors.
        ("KYC_DESK_SECOND_FACTOR_ROLES", "none".into()),
        ("RUST_LOG", "warn".into()),
    ]
    .into_iter()
    .chain(anchor)
    .map(|(name, value)| (name.to_string(), value))
    .collect()
}

/// Starts the server, run from the temporary folder so that no `.env` of the current folder
/// is read, and waits until it is ready.
async fn start_server(binary: &Path, env: &[(String, String)], port: u16) -> ServeProcess {
    let log = std::env::temp_dir().join(format!("kyc-soak-server-{port}.log"));
    let command = serve_process::command(binary, &std::env::temp_dir(), env.iter().cloned());
    let mut server = ServeProcess::spawn(command, port, log)
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    match server.wait_ready(Duration::from_secs(60)).await {
        Ok(()) => server,
        Err(NotReady::Exited(status)) => {
            panic!("the server exited ({status}); see {}", server.log.display())
        }
        Err(NotReady::TimedOut) => panic!("the server did not become ready"),
    }
}

/// Resident memory of a process, in KiB: (current VmRSS, peak VmHWM).
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Latencies of successful requests and the failures of one action.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    examples: Vec<String>,
}

impl Tally {
    fn ok(&mut self, started: Instant) {
        self.latencies.push(started.elapsed());
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.examples.len() < 3 {
            self.examples.push(what);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for example in other.examples {
            if self.examples.len() < 3 {
                self.examples.push(example);
            }
        }
    }
}

type Tallies = BTreeMap<&'static str, Tally>;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

async fn signed_in(base: &str, email: &str) -> reqwest::Client {
    let client = client();
    let response = client
        .post(format!("{base}/api/login"))
        .header("origin", base)
        .form(&[("email", email), ("password", PASSWORD)])
        .send()
        .await
        .expect("sign-in request");
    assert!(
        response.status().is_success(),
        "sign-in of {email} failed: {}",
        response.status()
    );
    client
}

/// POSTs a server function; the JSON answer, or a description of the failure.
async fn server_fn(
    client: &reqwest::Client,
    base: &str,
    function: &str,
    form: &[(&str, &str)],
) -> Result<serde_json::Value, String> {
    let response = client
        .post(format!("{base}/api/{function}"))
        .header("origin", base)
        .form(form)
        .send()
        .await
        .map_err(|e| format!("{function}: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("{function}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{function}: HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("{function}: not JSON ({e})"))
}

/// GETs a page or export; its length, or a description of the failure.
async fn get(client: &reqwest::Client, base: &str, path: &str) -> Result<usize, String> {
    let response = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {path}: HTTP {status}"));
    }
    Ok(body.len())
}

/// One operator: a link whenever the pace allows, and in between the list and a detail.
async fn operator(
    index: usize,
    client: reqwest::Client,
    base: String,
    first_create: Instant,
    pace: Duration,
    deadline: Instant,
) -> (Tallies, usize) {
    let mut tallies = Tallies::new();
    let mut next_create = first_create;
    let mut own: Vec<String> = Vec::new();
    let mut created = 0;
    let mut n = 0usize;
    let mut round = 0usize;
    while Instant::now() < deadline {
        round += 1;
        if Instant::now() >= next_create {
            next_create += pace;
            n += 1;
            let option = if n.is_multiple_of(2) {
                "eko:uat:digilocker"
            } else {
                "message_central:production:basic"
            };
            let key = format!("soak-{index}-{n}-{}", uuid::Uuid::new_v4().simple());
            let phone = format!("9{:09}", (index * 1_000_000 + n) % 1_000_000_000);
            let name = format!("Soak Customer {index} {n}");
            let started = Instant::now();
            let answer = server_fn(
                &client,
                &base,
                "create_link",
                &[
                    ("input[option]", option),
                    ("input[customer_name]", &name),
                    ("input[phone]", &phone),
                    ("input[consent]", "on"),
                    ("input[idempotency_key]", &key),
                ],
            )
            .await;
            let tally = tallies.entry("create_link").or_default();
            match answer.map(|v| v["summary"]["public_id"].as_str().map(str::to_string)) {
                Ok(Some(public_id)) => {
                    tally.ok(started);
                    own.push(public_id);
                    created += 1;
                }
                Ok(None) => tally.error("create_link: no public id in the answer".into()),
                Err(error) => tally.error(error),
            }
        }

        let started = Instant::now();
        let listed = server_fn(&client, &base, "list_sessions", &[]).await;
        let tally = tallies.entry("list_sessions").or_default();
        let newest = match listed {
            Ok(page) => {
                tally.ok(started);
                page["sessions"][0]["public_id"]
                    .as_str()
                    .map(str::to_string)
            }
            Err(error) => {
                tally.error(error);
                None
            }
        };

        // Alternate between one's own latest link and the newest of anyone's.
        let pick = if round.is_multiple_of(2) {
            own.last().cloned().or(newest)
        } else {
            newest.or_else(|| own.last().cloned())
        };
        if let Some(public_id) = pick {
            let started = Instant::now();
            let answer = server_fn(
                &client,
                &base,
                "session_detail",
                &[("public_id", public_id.as_str())],
            )
            .await;
            let tally = tallies.entry("session_detail").or_default();
            match answer {
                Ok(_) => tally.ok(started),
                Err(error) => tally.error(error),
            }
        }
    }
    (tallies, created)
}

/// One auditor: the audit page, then the CSV export.
async fn auditor(
    client: reqwest::Client,
    base: String,
    export_query: String,
    deadline: Instant,
) -> (Tallies, usize) {
    let mut tallies = Tallies::new();
    let mut exported_bytes = 0;
    while Instant::now() < deadline {
        let started = Instant::now();
        let page = get(&client, &base, "/audit").await;
        let tally = tallies.entry("GET /audit").or_default();
        match page {
            Ok(_) => tally.ok(started),
            Err(error) => tally.error(error),
        }
        let started = Instant::now();
        let export = get(&client, &base, &format!("/audit/export.csv?{export_query}")).await;
        let tally = tallies.entry("GET /audit/export.csv").or_default();
        match export {
            Ok(bytes) => {
                tally.ok(started);
                exported_bytes = bytes;
            }
            Err(error) => tally.error(error),
        }
    }
    (tallies, exported_bytes)
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

async fn create_users(state: &kyc_desk::server::state::AppState, role: Role, count: usize) {
    for i in 0..count {
        accounts::create_user(
            state,
            &RequestMeta::cli(),
            Actor::Cli,
            accounts::NewAccount {
                email: format!("{}{i}@soak.example", role.as_str()),
                display_name: format!("Soak {} {i}", role.as_str()),
                role: role.as_str().into(),
                password: secrecy::SecretString::from(PASSWORD),
                password_confirm: None,
            },
            false,
            false,
        )
        .await
        .expect("create a soak user");
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    sqlx::any::install_default_drivers();
    let binary = cli.server.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .expect("own path")
            .with_file_name("kyc-desk")
    });
    assert!(
        binary.exists(),
        "no server binary at {} (build it with --bin kyc-desk, or pass --server)",
        binary.display()
    );
    let pace = Duration::from_millis(
        cli.pace_ms
            .unwrap_or_else(|| (cli.seconds * 1000 * cli.operators as u64).div_ceil(LINK_BUDGET)),
    );
    let link_ceiling =
        (cli.seconds * 1000).div_ceil(pace.as_millis().max(1) as u64) * cli.operators as u64;
    if link_ceiling > MAX_LINKS as u64 {
        eprintln!(
            "warning: up to {link_ceiling} links at this pace, more than the sandbox holds ({MAX_LINKS}); \
             creations past the cap will fail"
        );
    }

    let database_url = fresh_database::next_to(&cli.database_url, "soak")
        .await
        .expect("create the soak database");
    let master_key = kyc_desk::server::vault::MasterKey::generate()
        .to_base64()
        .to_string();
    let port = serve_process::free_port();
    let mut env = server_env(&database_url, &master_key, port);
    for pair in &cli.server_env {
        let (name, value) = pair
            .split_once('=')
            .unwrap_or_else(|| panic!("--server-env {pair}: expected NAME=VALUE"));
        env.push((name.to_string(), value.to_string()));
    }

    // Accounts and one credential are made in-process, as `kyc-desk create-user` and
    // `kyc-desk credentials import` would (same code paths).
    {
        let config = startup::config_from(env.iter().cloned()).expect("configuration");
        let state = startup::open(config).await.expect("open the database");
        create_users(&state, Role::Operator, cli.operators).await;
        create_users(&state, Role::Auditor, cli.auditors).await;
        // The sandbox seeds Message Central as a trial account, which allows 5 links; a
        // second account on the same sandbox, labelled production, has no such cap.
        let sandbox_mc = kyc_desk::credential_kinds::CredentialInput {
            kind: "message_central_ekyc".into(),
            environment: "production".into(),
            settings: [
                (
                    "base_url",
                    format!("http://127.0.0.1:{port}/sandbox/message-central"),
                ),
                ("company_name", seed::MC_COMPANY.to_string()),
                ("basic_flow_id", seed::MC_BASIC_FLOW.to_string()),
                ("premium_flow_id", seed::MC_PREMIUM_FLOW.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            secrets: [("api_key".to_string(), seed::MC_API_KEY.to_string())]
                .into_iter()
                .collect(),
        };
        kyc_desk::server::credentials::save(
            &state,
            &RequestMeta::cli(),
            Actor::Cli,
            "kyc-soak",
            &sandbox_mc,
            true,
        )
        .await
        .expect("store the sandbox Message Central credential");
        state.db.pool.close().await;
    }

    let server = start_server(&binary, &env, port).await;
    let pid = server.child.id();
    let base = server.base.clone();
    let (rss_at_ready, _) = memory_kib(pid).unwrap_or_default();
    println!(
        "kyc-soak: server pid {pid} at {base} (log {}), database {}",
        server.log.display(),
        database_url.split('@').next_back().unwrap_or_default()
    );
    println!(
        "kyc-soak: {} operators (one link per {} ms each at most), {} auditors, {} s",
        cli.operators,
        pace.as_millis(),
        cli.auditors,
        cli.seconds
    );

    let emails: Vec<String> = (0..cli.operators)
        .map(|i| format!("operator{i}@soak.example"))
        .chain((0..cli.auditors).map(|i| format!("auditor{i}@soak.example")))
        .collect();
    let mut clients = Vec::new();
    for batch in emails.chunks(cli.sign_in_concurrency.max(1)) {
        let signing_in = batch.iter().map(|email| signed_in(&base, email));
        clients.extend(futures::future::join_all(signing_in).await);
    }
    let auditors = clients.split_off(cli.operators);
    let operators = clients;
    let (rss_after_sign_in, _) = memory_kib(pid).unwrap_or_default();

    // Memory, sampled every second; a line per minute shows the trend.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let (mut peak_rss, mut hwm) = (0u64, 0u64);
            let started = Instant::now();
            let mut next_line = 60;
            while sampling.load(Ordering::Relaxed) {
                if let Some((rss, high)) = memory_kib(pid) {
                    peak_rss = peak_rss.max(rss);
                    hwm = hwm.max(high);
                    if started.elapsed().as_secs() >= next_line {
                        println!(
                            "kyc-soak: t={next_line}s server VmRSS={:.1} MB VmHWM={:.1} MB",
                            rss as f64 / 1024.0,
                            high as f64 / 1024.0
                        );
                        next_line += 60;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (peak_rss, hwm)
        })
    };

    let started = Instant::now();
    let deadline = started + Duration::from_secs(cli.seconds);
    let mut tasks = Vec::new();
    for (i, client) in operators.into_iter().enumerate() {
        // Spread the operators' first creations over one pace period.
        let first = started + pace * i as u32 / cli.operators.max(1) as u32;
        tasks.push(tokio::spawn(operator(
            i,
            client,
            base.clone(),
            first,
            pace,
            deadline,
        )));
    }
    let mut audit_tasks = Vec::new();
    for client in auditors {
        audit_tasks.push(tokio::spawn(auditor(
            client,
            base.clone(),
            cli.export_query.clone(),
            deadline,
        )));
    }
    let mut tallies = Tallies::new();
    let mut created = 0;
    for task in tasks {
        let (t, c) = task.await.expect("operator task");
        created += c;
        for (action, tally) in t {
            tallies.entry(action).or_default().merge(tally);
        }
    }
    let mut export_bytes = 0;
    for task in audit_tasks {
        let (t, bytes) = task.await.expect("auditor task");
        export_bytes = export_bytes.max(bytes);
        for (action, tally) in t {
            tallies.entry(action).or_default().merge(tally);
        }
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let (peak_rss, sampled_hwm) = sampler.await.expect("sampler");
    let (rss_at_end, hwm) = memory_kib(pid).unwrap_or_default();
    let hwm = hwm.max(sampled_hwm);

    println!("\n| action | requests | errors | per second | p50 ms | p99 ms | max ms |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut total_errors = 0;
    for (action, tally) in &mut tallies {
        tally.latencies.sort();
        total_errors += tally.errors;
        println!(
            "| {action} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            tally.latencies.len(),
            tally.errors,
            tally.latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile_ms(&tally.latencies, 0.50),
            percentile_ms(&tally.latencies, 0.99),
            tally
                .latencies
                .last()
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        );
    }
    for (action, tally) in &tallies {
        for example in &tally.examples {
            println!("error example ({action}): {example}");
        }
    }
    println!(
        "\nkyc-soak: {:.1} s of load, {total_errors} errors; server memory: VmRSS {:.1} MB when ready, \
         {:.1} MB after the sign-ins, {:.1} MB at the end, sampled peak {:.1} MB, VmHWM {:.1} MB; largest export {:.1} KB",
        elapsed.as_secs_f64(),
        rss_at_ready as f64 / 1024.0,
        rss_after_sign_in as f64 / 1024.0,
        rss_at_end as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        export_bytes as f64 / 1024.0,
    );

    // Afterwards: one link.create row per session, and the chain verifies.
    let db = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&database_url)
        .await
        .expect("connect for the checks");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .expect("check query")
        }
    };
    let sessions = count("SELECT COUNT(*) FROM kyc_sessions").await;
    let without_one_row = count(
        "SELECT COUNT(*) FROM kyc_sessions s LEFT JOIN \
         (SELECT object_id, COUNT(*) AS n FROM audit_log WHERE action = 'link.create' \
          AND object_type = 'kyc_session' GROUP BY object_id) c ON c.object_id = s.public_id \
         WHERE c.n IS NULL OR c.n <> 1",
    )
    .await;
    let orphan_rows = count(
        "SELECT COUNT(*) FROM audit_log a WHERE a.action = 'link.create' AND NOT EXISTS \
         (SELECT 1 FROM kyc_sessions s WHERE s.public_id = a.object_id)",
    )
    .await;
    let (rows, first_seq, last_seq): (i64, Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT COUNT(*), MIN(seq), MAX(seq) FROM audit_log")
            .fetch_one(&db)
            .await
            .expect("audit figures");
    db.close().await;
    println!(
        "kyc-soak: links created (answered OK) {created}; sessions in the database {sessions}; \
         sessions without exactly one link.create row {without_one_row}; link.create rows without a session {orphan_rows}"
    );
    println!(
        "kyc-soak: audit rows {rows}, seq {}..{} ({})",
        first_seq.unwrap_or(0),
        last_seq.unwrap_or(0),
        if first_seq == Some(1) && last_seq == Some(rows) {
            "no gaps"
        } else {
            "GAPS"
        }
    );
    let verify_started = Instant::now();
    let verify = serve_process::command(&binary, &std::env::temp_dir(), env.iter().cloned())
        .arg("verify-audit")
        .output()
        .expect("run verify-audit");
    println!(
        "kyc-soak: verify-audit ({:.1} s, exit {}): {}",
        verify_started.elapsed().as_secs_f64(),
        verify.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&verify.stdout).trim()
    );
    if !verify.stderr.is_empty() {
        eprintln!("{}", String::from_utf8_lossy(&verify.stderr).trim());
    }
    drop(server);
}
