//! No request waits forever on another: a writer that never lets go of the write lock (the
//! SQLite write turn, or a PostgreSQL row lock such as the audit chain's) makes the others wait
//! a bounded time and then answer 503 with a reference, and the whole-request deadline turns
//! any longer wait into a logged 503 as well. Both are retryable: once the lock is free, the
//! same call succeeds.

use crate::common::TestApp;
use kyc_desk::types::Role;
use reqwest::StatusCode;

/// Something that holds the lock every audited change needs, until dropped.
enum HeldLock {
    SqliteTurn(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>),
    PostgresRow(#[allow(dead_code)] sqlx::Transaction<'static, sqlx::Any>),
}

/// Takes the write lock an audited change needs, as a stuck writer would.
async fn hold_the_write_lock(app: &TestApp) -> HeldLock {
    match app.state.db.backend {
        kyc_desk::server::db::Backend::Sqlite => HeldLock::SqliteTurn(
            app.state
                .db
                .write_turn()
                .await
                .unwrap()
                .expect("SQLite has a write turn"),
        ),
        kyc_desk::server::db::Backend::Postgres => {
            let mut tx = app.state.db.pool.begin().await.unwrap();
            kyc_desk::server::db::audit::lock_head(&mut tx)
                .await
                .unwrap();
            HeldLock::PostgresRow(tx)
        }
    }
}

/// An admin's role change for another user: a write with its audit row in one transaction.
async fn change_role(
    app: &TestApp,
    admin: &reqwest::Client,
    user_id: i64,
) -> (StatusCode, String, String) {
    let response = admin
        .post(format!("{}/api/set_user_role", app.base))
        .header("origin", &app.base)
        .form(&[("user_id", user_id.to_string()), ("role", "auditor".into())])
        .send()
        .await
        .expect("an answer, not a stall");
    let status = response.status();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    (status, request_id, response.text().await.unwrap())
}

both_backends!(
    a_stuck_writer_makes_others_wait_a_bounded_time,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("admin@example.com", Role::Admin).await;
        let op = app.user("op@example.com", Role::Operator).await;
        let admin = app.signed_in("admin@example.com").await;

        let held = hold_the_write_lock(&app).await;
        let (status, request_id, body) = change_role(&app, &admin, op.id).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("try again"), "{body}");
        assert!(
            body.contains(&request_id),
            "the answer names its reference: {body}"
        );
        drop(held);

        let (status, _, body) = change_role(&app, &admin, op.id).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "the same call succeeds once the lock is free: {body}"
        );
        assert!(body.contains("\"auditor\""), "{body}");
    }
);

both_backends!(
    a_request_past_its_deadline_is_answered_503,
    |backend| async move {
        let app = TestApp::start_with(
            backend,
            &[
                ("KYC_DESK_PROVIDER_CONNECT_TIMEOUT", "1s"),
                ("KYC_DESK_PROVIDER_TIMEOUT", "1s"),
                ("KYC_DESK_REQUEST_DEADLINE", "3s"),
            ],
        )
        .await;
        app.user("admin@example.com", Role::Admin).await;
        let op = app.user("op@example.com", Role::Operator).await;
        let admin = app.signed_in("admin@example.com").await;

        // The lock wait (10 s) is longer than the deadline (3 s): the deadline answers first.
        let held = hold_the_write_lock(&app).await;
        let (status, request_id, body) = change_role(&app, &admin, op.id).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body.contains("did not finish this request in time"),
            "{body}"
        );
        assert!(body.contains(&request_id), "{body}");
        drop(held);

        // Retryable: the same call succeeds once the lock is free.
        let (status, _, body) = change_role(&app, &admin, op.id).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // A page under the same deadline renders normally.
        let (status, _, html) = app.get(&admin, "/users").await;
        assert_eq!(status, StatusCode::OK, "{html}");
    }
);

/// A request whose body arrives a trickle at a time: its head and a first chunk are sent, the
/// rest never is. Returns the connection (kept open while held) and a task reading the answer.
async fn trickling_request(app: &TestApp) -> Held {
    trickling_request_from(app, None).await
}

/// A trickling request in progress: its connection and the task reading its answer.
type Held = (
    tokio::net::tcp::OwnedWriteHalf,
    tokio::task::JoinHandle<String>,
);

/// Holds one trickling request per entry of `from` (a client address, or none) and sends
/// `probe` until it is answered `status` (at most 100 tries): the held requests and that
/// answer, if it came. A held request that arrived while a probe had a place was refused;
/// another is held in its place, so the probe meets every held request in progress.
async fn hold_and_probe<Probe, Answer>(
    app: &TestApp,
    from: &[Option<&str>],
    status: StatusCode,
    probe: Probe,
) -> (Vec<Held>, Option<reqwest::Response>)
where
    Probe: Fn() -> Answer,
    Answer: std::future::Future<Output = reqwest::Result<reqwest::Response>>,
{
    let mut held = Vec::new();
    for client in from {
        held.push(trickling_request_from(app, *client).await);
    }
    for _ in 0..100 {
        for (slot, client) in held.iter_mut().zip(from) {
            if slot.1.is_finished() {
                *slot = trickling_request_from(app, *client).await;
            }
        }
        let response = probe().await.unwrap();
        if response.status() == status {
            return (held, Some(response));
        }
        // The held requests may not have reached the server yet.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    (held, None)
}

/// [`trickling_request`] from client address `from` (through the trusted loopback proxy).
async fn trickling_request_from(app: &TestApp, from: Option<&str>) -> Held {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = app.base.strip_prefix("http://").unwrap().to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let forwarded = from
        .map(|ip| format!("x-forwarded-for: {ip}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /api/login HTTP/1.1\r\nhost: {addr}\r\norigin: {}\r\n{forwarded}content-type: application/x-www-form-urlencoded\r\ntransfer-encoding: chunked\r\n\r\n5\r\nemail\r\n",
        app.base
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.flush().await.unwrap();
    let answer = tokio::spawn(async move {
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&chunk[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
        String::from_utf8_lossy(&answer).to_string()
    });
    (writer, answer)
}

both_backends!(
    a_trickled_body_is_cut_off_at_the_body_time_limit,
    |backend| async move {
        let app = TestApp::start_with(backend, &[("KYC_DESK_REQUEST_BODY_TIMEOUT", "2s")]).await;
        let (_held, answer) = trickling_request(&app).await;
        // Answered by the body limit (2 s), not left to the request deadline (60 s).
        let answer = tokio::time::timeout(std::time::Duration::from_secs(30), answer)
            .await
            .expect("an answer well before the request deadline")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
);

both_backends!(
    requests_beyond_the_concurrency_limit_get_503_with_retry_after,
    |backend| async move {
        let app = TestApp::start_with(
            backend,
            &[
                ("KYC_DESK_MAX_CONCURRENT_REQUESTS", "2"),
                ("KYC_DESK_REQUEST_BODY_TIMEOUT", "5s"),
            ],
        )
        .await;
        let client = app.client();
        // Two requests in progress (their bodies still arriving) take both places.
        let (held, refused) =
            hold_and_probe(&app, &[None, None], StatusCode::SERVICE_UNAVAILABLE, || {
                client.get(format!("{}/login", app.base)).send()
            })
            .await;
        let refused = refused.expect("a third request at once is refused");
        assert_eq!(refused.headers()["retry-after"], "1");
        assert!(refused.text().await.unwrap().contains("try again"));
        // The liveness probe is always answered.
        let health = client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        // Once the two are over (408 at their body limit), requests are served again.
        for (_held, answer) in held {
            assert!(answer.await.unwrap().starts_with("HTTP/1.1 408"));
        }
        let (status, _, _) = app.get(&client, "/login").await;
        assert_eq!(status, StatusCode::OK);
    }
);

both_backends!(one_client_cannot_take_every_place, |backend| async move {
    let app = TestApp::start_with(
        backend,
        &[
            ("KYC_DESK_TRUSTED_PROXIES", "127.0.0.1"),
            ("KYC_DESK_MAX_CONCURRENT_REQUESTS", "4"),
            ("KYC_DESK_MAX_CONCURRENT_REQUESTS_PER_CLIENT", "2"),
            ("KYC_DESK_REQUEST_BODY_TIMEOUT", "5s"),
        ],
    )
    .await;
    let client = app.client();
    let page_from = |from: &'static str| {
        let (client, base) = (client.clone(), app.base.clone());
        async move {
            client
                .get(format!("{base}/login"))
                .header("x-forwarded-for", from)
                .send()
                .await
                .unwrap()
        }
    };
    // One client's two requests in progress take its whole share (two of four places);
    // its /64 counts as one client.
    let (held, refused) = hold_and_probe(
        &app,
        &[Some("2001:db8:5:6::1"), Some("2001:db8:5:6::2")],
        StatusCode::TOO_MANY_REQUESTS,
        || async { Ok(page_from("2001:db8:5:6::3").await) },
    )
    .await;
    let refused = refused.expect("a third request at once from the same client is refused");
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        refused.text().await.unwrap().contains("from your network"),
        "the refusal says whose requests are too many"
    );
    // Another client is served meanwhile: places are left for everybody else.
    let other = page_from("198.51.100.44").await;
    assert_eq!(other.status(), StatusCode::OK);
    // Once the two are over, the client is served again.
    for (_held, answer) in held {
        assert!(answer.await.unwrap().starts_with("HTTP/1.1 408"));
    }
    assert_eq!(page_from("2001:db8:5:6::3").await.status(), StatusCode::OK);
});
