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
            kyc_desk::server::db::lock(&mut tx, "audit").await.unwrap();
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
