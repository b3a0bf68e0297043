//! Connection tests of stored credentials (against the built-in sandbox and a real SMTP
//! server), and the leak checks: no canary secret in any response, page or log line.

use crate::common;

use common::TestApp;
use kyc_desk::credential_kinds::CredentialKind;
use kyc_desk::server::credentials;
use kyc_desk::server::notify;
use kyc_desk::server::vault::MasterKey;
use kyc_desk::types::{AppError, Role};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every log line the test binary writes, so tests can search it for secrets.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,h2=info,sqlx=info")
            .with_ansi(false)
            .with_writer(move || SharedWriter(writer.clone()))
            .init();
        buffer
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn sandbox_app(backend: common::Backend) -> TestApp {
    let key = MasterKey::generate().to_base64().to_string();
    let app = common::sandbox_app(backend, &[("KYC_DESK_MASTER_KEY", &key)]).await;
    // The public URL defaults to the test server's own address, where the sandbox answers.
    assert_eq!(
        app.state.config.public_url.as_str().trim_end_matches('/'),
        app.base
    );
    app
}

both_backends!(connection_tests_against_the_sandbox, |backend| async move {
    let app = sandbox_app(backend).await;
    let (ok, message) =
        credentials::test_connection(&app.state, CredentialKind::EkoDigilocker, "uat", false)
            .await
            .unwrap();
    assert!(ok, "{message}");
    assert!(message.contains("accepted the signature"));

    let (ok, message) = credentials::test_connection(
        &app.state,
        CredentialKind::MessageCentralSms,
        "staging",
        false,
    )
    .await
    .unwrap();
    assert!(ok, "{message}");

    // Message Central: no harmless call, so a test needs an explicit yes and counts a trial link.
    let refused = credentials::test_connection(
        &app.state,
        CredentialKind::MessageCentralEkyc,
        "trial",
        false,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, AppError::Conflict(m) if m.contains("5 trial links left")),
        "{refused:?}"
    );
    let (ok, message) = credentials::test_connection(
        &app.state,
        CredentialKind::MessageCentralEkyc,
        "trial",
        true,
    )
    .await
    .unwrap();
    assert!(ok, "{message}");
    let views = credentials::list(&app.state).await.unwrap();
    let trial = views
        .iter()
        .find(|v| v.kind == CredentialKind::MessageCentralEkyc)
        .unwrap();
    assert_eq!(trial.trial_links_used, 1);
    assert!(trial.last_test.as_deref().unwrap().starts_with("Passed"));

    let missing = credentials::test_connection(&app.state, CredentialKind::Smtp, "default", false)
        .await
        .unwrap_err();
    assert!(matches!(missing, AppError::NotFound(_)));
});

#[tokio::test]
async fn smtp_check_connects_to_a_real_server_and_explains_failures() {
    let port = common::process::free_port();
    let mut server = std::process::Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .spawn()
        .expect("python3 -m aiosmtpd (installed by the test command)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let settings = |port: u16| -> BTreeMap<String, String> {
        [
            ("host", "127.0.0.1".to_string()),
            ("port", port.to_string()),
            ("tls", "none".into()),
            ("from", "kyc@example.com".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    let result = notify::check_smtp(&settings(port), None).await;
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        result.as_ref().is_ok_and(|m| m.contains("answered")),
        "{result:?}"
    );

    let closed = notify::check_smtp(&settings(common::process::free_port()), None)
        .await
        .unwrap_err();
    assert!(closed.contains("could not connect"), "{closed}");
}

both_backends!(
    no_secret_reaches_a_response_a_page_or_the_log,
    |backend| async move {
        let logs = captured_logs();
        let key = MasterKey::generate().to_base64().to_string();
        let app = TestApp::start_with(backend, &[("KYC_DESK_MASTER_KEY", &key)]).await;
        app.user("admin@example.com", Role::Admin).await;
        let admin = app.signed_in("admin@example.com").await;
        let canary = format!("canary-leak-{}", uuid::Uuid::new_v4().simple());
        let save = |secrets: serde_json::Value, _unused: Option<&str>| {
            let app = &app;
            let admin = admin.clone();
            let body = serde_json::json!({
                "input": {
                    "kind": "message_central_ekyc", "environment": "production",
                    "settings": {"company_name": "Acme Bank", "basic_flow_id": "FLOW-1", "base_url": "http://127.0.0.1:9/mc"},
                    "secrets": secrets,
                },
            });
            async move {
                let response = admin
                    .post(format!("{}/api/save_credential", app.base))
                    .header("origin", &app.base)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                (response.status(), response.text().await.unwrap())
            }
        };
        let mut bodies = Vec::new();
        let (status, body) = save(
            serde_json::json!({"api_key": format!("Bearer {canary}-one")}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        bodies.push(body);
        // A step-up with a wrong password (the canary typed as one) is refused without it.
        let (status, body) = app
            .call(&admin, "step_up", &[("secret", &format!("{canary}-typed"))])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        bodies.push(body.to_string());
        let (status, body) = save(
            serde_json::json!({"api_key": format!("{canary}-two")}),
            Some(common::PASSWORD),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("\"rotated\""));
        bodies.push(body);
        let (status, body) = save(
            serde_json::json!({"api_key": format!("{canary}\nthree")}),
            Some(common::PASSWORD),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        bodies.push(body);
        let (_, listed) = app.call(&admin, "list_credentials", &[]).await;
        bodies.push(listed.to_string());
        let (_, tested) = app
            .call(
                &admin,
                "test_credential",
                &[
                    ("kind", "message_central_ekyc"),
                    ("environment", "production"),
                    ("confirm_generation", "true"),
                ],
            )
            .await;
        bodies.push(tested.to_string());
        let (status, _, page) = app.get(&admin, "/credentials").await;
        assert_eq!(status, StatusCode::OK);
        bodies.push(page);
        assert!(
            bodies[4].contains("•••• ") || bodies[4].contains("last4"),
            "the list shows masked values: {}",
            bodies[4]
        );
        for body in &bodies {
            assert!(
                !body.contains(&canary),
                "a response carries the secret: {body}"
            );
        }
        let log = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
        assert!(log.contains("credential.rotate"), "the log was captured");
        assert!(!log.contains(&canary), "the log carries the secret");
    }
);

both_backends!(one_time_tokens_never_reach_the_log, |backend| async move {
    let logs = captured_logs();
    let app = common::sandbox_app(backend, &[]).await;
    let token = kyc_desk::server::auth::accounts::issue_setup_token(&app.state)
        .await
        .unwrap()
        .expect("a setup token on a fresh database");
    let client = app.client();
    let (status, _, _) = app.get(&client, &format!("/setup/{token}")).await;
    assert_eq!(status, StatusCode::OK);
    // A sandbox journey's token, straight from the emulator.
    let journey_token = "JourneyTokenThatMustNotBeLogged42";
    let (_, _, _) = app
        .get(&client, &format!("/sandbox/journey/{journey_token}"))
        .await;
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(text.contains("/setup/[redacted]"), "the request was logged");
    assert!(!text.contains(&token), "the setup token reached the log");
    assert!(
        !text.contains(journey_token),
        "the journey token reached the log"
    );
});
