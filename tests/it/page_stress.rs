//! Pages that always answer: many concurrent full-page renders of every staff page while links
//! are created, the audit log is read and exported, and more app instances start in the same
//! process. Each request has a deadline, so a render that never finishes fails the test with
//! its path and request id instead of stalling the suite.
//!
//! The instances started during the renders are what brought the hang out: building a router
//! generates leptos' route list, and that generation suppresses resource loading through a
//! process-wide flag, so a page render in flight at that moment used to wait forever (see
//! `server::web::page_routes`).

use crate::common::TestApp;
use kyc_desk::server::web;
use kyc_desk::types::Role;
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Longest a single request may take before it counts as a stall (far above any honest render
/// on a loaded two-core machine; the point is to fail rather than hang).
const DEADLINE: Duration = Duration::from_secs(30);
/// Rounds of "every page for every role" each renderer runs.
const ROUNDS: usize = 4;
/// Concurrent renderers per role.
const RENDERERS_PER_ROLE: usize = 3;

/// GETs `path` and reads its whole body within [`DEADLINE`]; panics naming the path and the
/// request id when the head or the body does not arrive in time.
async fn full_page(app: &TestApp, client: &reqwest::Client, path: &str) -> (StatusCode, String) {
    let request = client.get(format!("{}{path}", app.base)).send();
    let response = match tokio::time::timeout(DEADLINE, request).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => panic!("GET {path}: no answer: {error}"),
        Err(_) => panic!("GET {path}: no answer head within {DEADLINE:?}"),
    };
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    match tokio::time::timeout(DEADLINE, response.text()).await {
        Ok(Ok(body)) => (status, body),
        Ok(Err(error)) => panic!("GET {path} (request {request_id}): the body broke off: {error}"),
        Err(_) => {
            panic!("GET {path} (request {request_id}): the body did not finish within {DEADLINE:?}")
        }
    }
}

/// Every staff page a role may open, with the detail page of `public_id`.
fn pages_of(role: Role, public_id: &str) -> Vec<String> {
    let mut pages: Vec<String> = vec![
        "/".into(),
        "/sessions".into(),
        "/sessions?status=started".into(),
        format!("/sessions/{public_id}"),
        "/account/password".into(),
    ];
    match role {
        Role::Operator => pages.push("/links".into()),
        Role::Admin => pages.extend(
            [
                "/links",
                "/users",
                "/credentials",
                "/texts",
                "/audit",
                "/audit?action=auth.",
            ]
            .map(String::from),
        ),
        Role::Auditor => pages.extend(["/audit", "/audit?action=link."].map(String::from)),
    }
    pages
}

both_backends!(
    every_staff_page_answers_under_concurrent_renders_writes_and_new_instances,
    |backend| async move {
        let app = Arc::new(crate::common::sandbox_app(backend, &[]).await);
        app.user("admin@example.com", Role::Admin).await;
        app.user("op@example.com", Role::Operator).await;
        app.user("aud@example.com", Role::Auditor).await;
        let clients = [
            (Role::Admin, app.signed_in("admin@example.com").await),
            (Role::Operator, app.signed_in("op@example.com").await),
            (Role::Auditor, app.signed_in("aud@example.com").await),
        ];
        let operator = clients[1].1.clone();
        let (status, first) = create_link(&app, &operator, "Asha Rao").await;
        assert_eq!(status, StatusCode::OK, "{first}");
        let public_id = first["summary"]["public_id"].as_str().unwrap().to_string();

        let done = Arc::new(AtomicBool::new(false));
        let mut background = Vec::new();
        // Links created the whole time.
        let created = Arc::new(AtomicUsize::new(0));
        {
            let (app, operator, done, created) =
                (app.clone(), operator.clone(), done.clone(), created.clone());
            background.push(tokio::spawn(async move {
                let mut n = 0;
                while !done.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("Customer {n}");
                    let call = create_link(&app, &operator, &name);
                    let (status, body) = tokio::time::timeout(DEADLINE, call)
                        .await
                        .expect("create_link answers within the deadline");
                    assert_eq!(status, StatusCode::OK, "{body}");
                    created.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // The audit log read and exported the whole time.
        {
            let (app, auditor, done) = (app.clone(), clients[2].1.clone(), done.clone());
            background.push(tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let list = app.call(&auditor, "list_audit", &[]);
                    let (status, body) = tokio::time::timeout(DEADLINE, list)
                        .await
                        .expect("list_audit answers within the deadline");
                    assert_eq!(status, StatusCode::OK, "{body}");
                    let (status, csv) = full_page(&app, &auditor, "/audit/export.csv").await;
                    assert_eq!(status, StatusCode::OK);
                    assert!(csv.starts_with("\"seq\","), "{csv}");
                }
            }));
        }
        // More instances of the app built in this process while pages render (what every test
        // that starts a server does, and what a second instance in one process does).
        let instances = Arc::new(AtomicUsize::new(0));
        {
            let (app, done, instances) = (app.clone(), done.clone(), instances.clone());
            background.push(tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    let state = app.state.clone();
                    tokio::task::spawn_blocking(move || drop(web::router(state)))
                        .await
                        .unwrap();
                    instances.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }

        let mut renderers = Vec::new();
        for (role, client) in &clients {
            for _ in 0..RENDERERS_PER_ROLE {
                let (app, client, role) = (app.clone(), client.clone(), *role);
                let pages = pages_of(role, &public_id);
                renderers.push(tokio::spawn(async move {
                    let mut rendered = 0usize;
                    for _ in 0..ROUNDS {
                        for path in &pages {
                            let (status, html) = full_page(&app, &client, path).await;
                            assert_eq!(status, StatusCode::OK, "{role:?} {path}: {html}");
                            // The whole answer arrived: the page and leptos' closing script.
                            assert!(
                                html.contains("</html>") && html.contains("__INCOMPLETE_CHUNKS"),
                                "{path}: {html}"
                            );
                            assert!(
                                html.contains("data-testid=\"current-user\""),
                                "{path} rendered the signed-in layout"
                            );
                            rendered += 1;
                        }
                    }
                    rendered
                }));
            }
        }
        let mut rendered = 0;
        for renderer in renderers {
            rendered += renderer.await.expect("a renderer failed");
        }
        done.store(true, Ordering::Relaxed);
        for task in background {
            task.await.expect("a background task failed");
        }
        let expected: usize = [Role::Admin, Role::Operator, Role::Auditor]
            .iter()
            .map(|role| pages_of(*role, &public_id).len() * ROUNDS * RENDERERS_PER_ROLE)
            .sum();
        assert_eq!(rendered, expected);
        assert!(
            created.load(Ordering::Relaxed) > 0,
            "links were created meanwhile"
        );
        assert!(
            instances.load(Ordering::Relaxed) > 0,
            "instances were built meanwhile"
        );
    }
);

/// Creates an Eko link (the sandbox allows any number, unlike the trial Message Central one).
async fn create_link(
    app: &TestApp,
    client: &reqwest::Client,
    name: &str,
) -> (StatusCode, serde_json::Value) {
    let key = format!("form-{}", uuid::Uuid::new_v4().simple());
    let args = [
        ("input[option]", "eko:uat:digilocker"),
        ("input[customer_name]", name),
        ("input[phone]", "9123456780"),
        ("input[consent]", "on"),
        ("input[idempotency_key]", key.as_str()),
        ("input[handover]", "provider_url"),
    ];
    app.call(client, "create_link", &args).await
}
