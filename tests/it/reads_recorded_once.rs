//! Reads of personal data are recorded exactly once: a full load of a session's page writes one
//! `session.view` row, a full load of the audit log one `audit.view` row, an export one row —
//! every time, however the server renders the page. (Server rendering used to build a page two
//! or three times while it looked for the data the page reads, and each build fetched — and
//! recorded — again.)

use crate::common::TestApp;
use crate::common::forms::{form_key, link_form};
use kyc_desk::types::Role;
use reqwest::StatusCode;
use std::collections::BTreeMap;

/// Full loads of each page per test: enough that a render which fetches twice only now and
/// then (it depended on timing) is caught.
const LOADS: usize = 25;

/// The audit rows of `action`, counted per request id.
async fn rows_per_request(app: &TestApp, action: &str) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT request_id, COUNT(*) FROM audit_log WHERE action = $1 GROUP BY request_id",
    )
    .bind(action)
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// GETs `path` in full and returns the request id the server gave it and the body.
async fn fetch(app: &TestApp, client: &reqwest::Client, path: &str) -> (String, String) {
    let response = client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every answer carries its request id")
        .to_string();
    (request_id, response.text().await.unwrap())
}

/// Loads the page at `path` in full and returns the request id the server gave it.
async fn load(app: &TestApp, client: &reqwest::Client, path: &str) -> String {
    let (request_id, body) = fetch(app, client, path).await;
    assert!(body.contains("</html>"), "GET {path}: the page is complete");
    request_id
}

/// Loads `path` [`LOADS`] times and checks that each load wrote exactly one `action` row.
async fn each_load_records_once(app: &TestApp, client: &reqwest::Client, path: &str, action: &str) {
    let before = rows_per_request(app, action).await;
    let mut loads = Vec::new();
    for _ in 0..LOADS {
        loads.push(load(app, client, path).await);
    }
    let after = rows_per_request(app, action).await;
    let new: BTreeMap<&String, i64> = after
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .map(|(id, n)| (id, *n))
        .collect();
    for request_id in &loads {
        assert_eq!(
            new.get(request_id).copied(),
            Some(1),
            "GET {path} (request {request_id}) wrote {:?} {action} rows; all loads: {new:?}",
            new.get(request_id)
        );
    }
    assert_eq!(new.len(), LOADS, "no {action} row without its page load");
}

both_backends!(a_session_page_load_records_one_view, |backend| async move {
    let app = crate::common::sandbox_app(backend, &[]).await;
    app.user("op@example.com", Role::Operator).await;
    app.user("aud@example.com", Role::Auditor).await;
    let operator = app.signed_in("op@example.com").await;
    let form = link_form("eko:uat:digilocker", "Asha Rao", None, &form_key());
    let args: Vec<(&str, &str)> = form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let (status, created) = app.call(&operator, "create_link", &args).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let public_id = created["summary"]["public_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/sessions/{public_id}");
    each_load_records_once(&app, &operator, &path, "session.view").await;
    let auditor = app.signed_in("aud@example.com").await;
    each_load_records_once(&app, &auditor, &path, "session.view").await;
});

both_backends!(an_audit_page_load_records_one_view, |backend| async move {
    let app = TestApp::start(backend).await;
    app.user("aud@example.com", Role::Auditor).await;
    let auditor = app.signed_in("aud@example.com").await;
    each_load_records_once(&app, &auditor, "/audit", "audit.view").await;
    each_load_records_once(&app, &auditor, "/audit?action=auth.", "audit.view").await;
});

both_backends!(an_export_records_one_row, |backend| async move {
    let app = TestApp::start(backend).await;
    app.user("aud@example.com", Role::Auditor).await;
    let auditor = app.signed_in("aud@example.com").await;
    let before = rows_per_request(&app, "audit.export").await;
    let mut exports = Vec::new();
    for _ in 0..5 {
        exports.push(fetch(&app, &auditor, "/audit/export.csv").await.0);
    }
    let after = rows_per_request(&app, "audit.export").await;
    for request_id in &exports {
        assert!(!before.contains_key(request_id));
        assert_eq!(after.get(request_id).copied(), Some(1), "{after:?}");
    }
});
