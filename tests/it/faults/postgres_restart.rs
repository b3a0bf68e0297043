//! PostgreSQL restarting, or unreachable for a while, under a running server.

use super::*;

/// Runs `pg_ctlcluster` on the one installed cluster. A stop may wait up to ten minutes (not
/// `pg_ctl`'s default minute) for the shutdown checkpoint: after the whole suite it can have
/// tens of thousands of files of the suite's databases to sync on a slow disk.
fn pg_cluster(action: &str) -> std::process::Output {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql lists the cluster version")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .next()
        .expect("one PostgreSQL version is installed");
    Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            action,
            "--",
            "-t",
            "600",
        ])
        .output()
        .expect("run pg_ctlcluster")
}

/// Asks the PostgreSQL server for a checkpoint and waits for it.
async fn checkpoint_now() {
    let url = std::env::var("TEST_POSTGRES_URL").expect("TEST_POSTGRES_URL");
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query("CHECKPOINT")
        .execute(&mut conn)
        .await
        .expect("CHECKPOINT");
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
    // The suite's databases leave much to write back; a checkpoint taken now (however long it
    // takes) keeps the stop below quick, so the outage the test watches is the one it made.
    checkpoint_now().await;
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
    assert_eq!(before["summary"]["status"], "started");

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
    assert_eq!(after["summary"]["status"], "started");
    let (status, _, page) = app.get(operator, "/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("Temporarily unavailable"));
    for session in [&before, &after] {
        let public_id = session["summary"]["public_id"].as_str().unwrap();
        let kept = stored(&app.state.db.pool, public_id).await;
        assert_eq!(kept.status, "started");
        assert_eq!(kept.kinds(), ["creating", "started"]);
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
