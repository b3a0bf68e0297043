//! Where secrets may go: the sandbox stays on this machine and its credentials never serve real
//! customers; saving a credential (a rotation, or a change of where its secrets are sent) needs a
//! step-up (the admin's password or authenticator code, throttled with sign-in, audited);
//! provider hosts are the documented ones.

use crate::common::{self, TestApp};
use kyc_desk::credential_kinds::CredentialKind;
use kyc_desk::server::credentials::{self, CredentialRef};
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn save(
    app: &TestApp,
    client: &reqwest::Client,
    input: Value,
    step_up: Option<&str>,
) -> (StatusCode, Value) {
    if let Some(secret) = step_up {
        let (status, body) = app.call(client, "step_up", &[("secret", secret)]).await;
        if status != StatusCode::OK {
            return (status, body);
        }
    }
    let response = client
        .post(format!("{}/api/save_credential", app.base))
        .header("origin", &app.base)
        .json(&json!({ "input": input }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn mc(base_url: &str, api_key: Option<&str>) -> Value {
    let mut secrets = serde_json::Map::new();
    if let Some(key) = api_key {
        secrets.insert("api_key".into(), json!(key));
    }
    json!({
        "kind": "message_central_ekyc", "environment": "production",
        "settings": {"company_name": "Acme Bank", "basic_flow_id": "FLOW-1", "base_url": base_url},
        "secrets": secrets,
    })
}

async fn actions(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT action, outcome FROM audit_log ORDER BY seq")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap()
}

both_backends!(
    sandbox_credentials_are_switched_off_without_the_sandbox,
    |backend| async move {
        let sandboxed = common::sandbox_app(backend, &[]).await;
        // The same database, served again with the sandbox off (loopback still allow-listed,
        // so only the sandbox rule switches them off).
        let app = TestApp::start_on(&sandboxed.database_url, None, &[]).await;
        let views = credentials::list(&app.state).await.unwrap();
        assert_eq!(views.len(), 3);
        for view in &views {
            let reason = view.switched_off.as_deref().unwrap_or_default();
            assert!(reason.contains("sandbox is off"), "{view:?}");
        }
        let opened = credentials::open(
            &app.state,
            CredentialRef::Active(CredentialKind::MessageCentralSms, "staging"),
        )
        .await;
        assert!(opened.is_err(), "a switched-off credential is not unlocked");
        let options = kyc_desk::server::links::create::options(&app.state)
            .await
            .unwrap();
        assert!(options.options.is_empty(), "{options:?}");
        assert!(options.channels.is_empty(), "{options:?}");

        // The Credentials page says so.
        app.user("root@example.com", Role::Admin).await;
        let admin = app.signed_in("root@example.com").await;
        let (status, _, page) = app.get(&admin, "/credentials").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("credential-switched-off"), "{page}");
        // With the sandbox on they are in use.
        let views = credentials::list(&sandboxed.state).await.unwrap();
        assert!(views.iter().all(|v| v.switched_off.is_none()), "{views:?}");
    }
);

both_backends!(
    a_real_link_is_never_sent_through_the_sandbox,
    |backend| async move {
        let app = common::sandbox_app(backend, &[]).await;
        app.user("olga@example.com", Role::Operator).await;
        let operator = app.signed_in("olga@example.com").await;
        let form = common::forms::link_form_with(
            "message_central:trial:basic",
            "Asha Rao",
            "9123456780",
            &common::forms::form_key(),
            &[],
        );
        let response = operator
            .post(format!("{}/api/create_link", app.base))
            .header("origin", &app.base)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let created: Value = response.json().await.unwrap();
        let public_id = created["summary"]["public_id"]
            .as_str()
            .unwrap()
            .to_string();
        // As if it had been made with a real provider credential.
        sqlx::query("UPDATE kyc_sessions SET sandbox = 0 WHERE public_id = $1")
            .bind(&public_id)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        let (status, body) = app
            .call(
                &operator,
                "send_link",
                &[("public_id", &public_id), ("channel", "sms")],
            )
            .await;
        assert_ne!(status, StatusCode::OK, "{body}");
        assert!(body.to_string().contains("real messages"), "{body}");
        app.user("root@example.com", Role::Admin).await;
        let admin = app.signed_in("root@example.com").await;
        let (status, _, outbox) = app.get(&admin, "/sandbox/messages").await;
        assert_eq!(status, StatusCode::OK);
        assert!(!outbox.contains("sandbox-message\""), "{outbox}");
    }
);

both_backends!(moving_a_secret_is_a_rotation, |backend| async move {
    let app = TestApp::start(backend).await;
    app.user("root@example.com", Role::Admin).await;
    let admin = app.signed_in_only("root@example.com").await;
    // Without a step-up no save passes the door, not even a first one.
    let (status, body) = save(
        &app,
        &admin,
        mc("http://127.0.0.1:9/mc", Some("first-api-key-123456")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["StepUpRequired"]["method"], "Password", "{body}");
    // A wrong password does not confirm it.
    let (status, body) = save(
        &app,
        &admin,
        mc("http://127.0.0.1:9/mc", Some("first-api-key-123456")),
        Some("not my password"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("secret"), "{body}");
    assert!(credentials::list(&app.state).await.unwrap().is_empty());
    let (status, body) = save(
        &app,
        &admin,
        mc("http://127.0.0.1:9/mc", Some("first-api-key-123456")),
        Some(common::PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Pointing the key elsewhere is a rotation: a new version carrying the key, audited as one.
    let (status, body) = save(&app, &admin, mc("http://localhost:9/elsewhere", None), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["change"], "rotated", "{body}");
    let (_, _, secrets) =
        credentials::unlock(&app.state, CredentialKind::MessageCentralEkyc, "production")
            .await
            .unwrap()
            .unwrap();
    use secrecy::ExposeSecret as _;
    assert_eq!(secrets["api_key"].expose_secret(), "first-api-key-123456");
    let audit = actions(&app).await;
    for expected in [
        ("auth.step_up", "failure"),
        ("auth.step_up", "success"),
        ("credential.rotate", "success"),
    ] {
        assert!(
            audit.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {audit:?}"
        );
    }

    // A plain setting is still a plain edit.
    let mut edit = mc("http://localhost:9/elsewhere", None);
    edit["settings"]["company_name"] = json!("Acme Bank Ltd");
    let (status, body) = save(&app, &admin, edit, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["change"], "updated", "{body}");

    // SMTP: a password is never sent to a remote host without TLS.
    let smtp = |host: &str, tls: &str, password: Option<&str>| {
        json!({
            "kind": "smtp", "environment": "default",
            "settings": {"host": host, "port": "587", "tls": tls, "username": "mailer", "from": "kyc@example.com"},
            "secrets": password.map(|p| json!({"password": p})).unwrap_or(json!({})),
        })
    };
    let (status, body) = save(
        &app,
        &admin,
        smtp("127.0.0.1", "starttls", Some("smtp-pass")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = save(&app, &admin, smtp("mail.example.com", "none", None), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("without TLS"), "{body}");
});

both_backends!(
    provider_hosts_are_the_documented_ones,
    |backend| async move {
        // No extra host allowed: only the documented ones.
        let app = TestApp::start_with(backend, &[("KYC_DESK_EXTRA_PROVIDER_HOSTS", "")]).await;
        app.user("root@example.com", Role::Admin).await;
        let admin = app.signed_in("root@example.com").await;
        for refused in [
            "https://attacker.example/mc",
            "https://ekyc.messagecentral.com.attacker.example",
            "https://ekyc.messagecentral.com@attacker.example",
            "http://127.0.0.1:9/mc",
            "https://[::1]:9/mc",
        ] {
            let (status, body) =
                save(&app, &admin, mc(refused, Some("an-api-key-123456")), None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {body}");
            assert!(body.to_string().contains("base_url"), "{body}");
        }
        let (status, body) = save(
            &app,
            &admin,
            mc("https://ekyc.messagecentral.com", Some("an-api-key-123456")),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
);

both_backends!(step_up_is_throttled_with_sign_in, |backend| async move {
    let app = TestApp::start(backend).await;
    app.user("root@example.com", Role::Admin).await;
    let admin = app.signed_in_only("root@example.com").await;
    for _ in 0..kyc_desk::server::auth::throttle::ACCOUNT_FREE_FAILURES {
        let (status, body) = app.call(&admin, "step_up", &[("secret", "a guess")]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    // Now even the right password waits, and signing in is locked too.
    let (status, body) = app
        .call(&admin, "step_up", &[("secret", common::PASSWORD)])
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, body) = save(
        &app,
        &admin,
        mc("http://127.0.0.1:9/mc", Some("guess-api-key-123456")),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app
        .call(
            &app.client(),
            "login",
            &[
                ("email", "root@example.com"),
                ("password", common::PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
});
