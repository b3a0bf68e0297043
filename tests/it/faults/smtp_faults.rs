//! A mail server that is down, refuses the sign-in, rejects the recipient or hangs up while a
//! link is emailed.

use super::*;

async fn point_smtp_at(
    state: &kyc_desk::server::state::AppState,
    port: u16,
    login: Option<(&str, &str)>,
) {
    let port = port.to_string();
    let mut settings = vec![
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("tls", "none"),
        ("from", "kyc@bank.example"),
    ];
    let mut secrets = Vec::new();
    if let Some((username, password)) = login {
        settings.push(("username", username));
        secrets.push(("password", password));
    }
    save_credential(state, "smtp", "default", &settings, &secrets).await;
}

#[derive(Clone, Copy, Debug)]
enum SmtpFault {
    /// Nothing listens on the configured port.
    Down,
    /// The server answers 535 to the sign-in.
    RefusesSignIn,
    /// The server hangs up in the middle of the dialogue.
    HangsUp,
    /// The server rejects the recipient with a 550 quoting the customer's address.
    RejectsRecipient,
}

/// An email hand-over meets a mail-server fault: the operator is told in plain words, the
/// delivery is kept as `failed` with the reason, the session stays open with the same link
/// (never marked sent), and once the fault is fixed a retry delivers the link and only then
/// marks the session sent.
async fn smtp_fault(backend: Backend, fault: SmtpFault) {
    const RIGHT_PASSWORD: &str = "mail-password-right";
    let app = TestApp::start_with(backend, &[("KYC_DESK_SANDBOX", "true")]).await;
    sandbox::seed::seed(&app.state).await.unwrap();
    app.user("olga@example.com", Role::Operator).await;
    let operator = app.signed_in("olga@example.com").await;
    let port = free_port();
    let server = match fault {
        SmtpFault::Down => {
            point_smtp_at(&app.state, port, None).await;
            None
        }
        SmtpFault::RefusesSignIn => {
            point_smtp_at(&app.state, port, Some(("kyc-desk", "mail-password-wrong"))).await;
            Some(FakeSmtp::start(port, SmtpMode::Working, RIGHT_PASSWORD).await)
        }
        SmtpFault::HangsUp => {
            point_smtp_at(&app.state, port, None).await;
            Some(FakeSmtp::start(port, SmtpMode::HangUpAfterMailFrom, RIGHT_PASSWORD).await)
        }
        SmtpFault::RejectsRecipient => {
            point_smtp_at(&app.state, port, None).await;
            Some(FakeSmtp::start(port, SmtpMode::RejectRecipient, RIGHT_PASSWORD).await)
        }
    };
    let (status, created) = call_at(
        &app.base,
        &operator,
        "create_link",
        &link_form(
            "eko:uat:digilocker",
            "Meera Iyer",
            Some("meera@example.com"),
            &form_key(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["summary"]["status"], "started");
    let public_id = created["summary"]["public_id"]
        .as_str()
        .unwrap()
        .to_string();
    let link = created["link_url"].as_str().unwrap().to_string();
    let send = [
        ("public_id".to_string(), public_id.clone()),
        ("channel".to_string(), "email".to_string()),
    ];

    let (status, refused) = call_at(&app.base, &operator, "send_link", &send).await;
    let context = format!("{fault:?}");
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{context}: {refused}"
    );
    let told = refused["Unavailable"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let expected = match fault {
        SmtpFault::Down | SmtpFault::HangsUp => "could not connect to the mail server",
        SmtpFault::RefusesSignIn => "the mail server refused KYC Desk's username or password",
        SmtpFault::RejectsRecipient => {
            "the mail server refused the message (SMTP reply 550, permanent failure)"
        }
    };
    assert!(told.contains(expected), "{context}: {refused}");
    assert!(
        told.contains("was not marked as sent and still works"),
        "{context}: {told}"
    );
    assert_plain(&told);

    let kept = stored(&app.state.db.pool, &public_id).await;
    assert_eq!(kept.status, "started", "{context}: never marked sent");
    assert_eq!(kept.link_url.as_deref(), Some(link.as_str()), "{context}");
    assert_eq!(kept.deliveries.len(), 1, "{context}: {kept:?}");
    assert_eq!(kept.deliveries[0].0, "failed", "{context}");
    let reason = kept.deliveries[0].1.clone().unwrap_or_default();
    assert!(reason.contains(expected), "{context}: {reason}");
    assert_plain(&reason);
    assert_eq!(
        kept.kinds(),
        ["creating", "started", "delivery_failed"],
        "{context}"
    );
    let audit = audit_rows_about(&app.state.db, "link.send", &public_id).await;
    assert_eq!(audit.len(), 1, "{context}: {audit:#?}");
    assert_eq!(audit[0].outcome, "error");
    assert_eq!(audit[0].reason, reason);
    // The server's words (which quote the recipient's address) are kept nowhere: not in
    // the delivery, the timeline, the audit row or what the operator was told.
    let timeline = format!("{:?}", kept.events);
    for text in [
        &told,
        &reason,
        &timeline,
        &audit[0].reason,
        &audit[0].detail,
    ] {
        for quoted in [
            "meera@example.com",
            "Recipient address",
            "5.1.1",
            "User unknown",
        ] {
            assert!(
                !text.contains(quoted),
                "{context}: {quoted:?} kept in {text}"
            );
        }
    }
    // The operator still sees the open session with its link.
    let (status, shown) = call_at(
        &app.base,
        &operator,
        "session_detail",
        &[("public_id".into(), public_id.clone())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["summary"]["status"], "started");
    assert_eq!(shown["link_url"], link.as_str());
    assert_eq!(shown["deliveries"][0]["outcome"], "failed");
    if let Some(server) = &server {
        assert_eq!(
            server.messages().len(),
            0,
            "{context}: no message was accepted"
        );
    }

    // The fault is fixed; the retry delivers the link.
    let server = match fault {
        SmtpFault::Down => FakeSmtp::start(port, SmtpMode::Working, RIGHT_PASSWORD).await,
        SmtpFault::RefusesSignIn => {
            point_smtp_at(&app.state, port, Some(("kyc-desk", RIGHT_PASSWORD))).await;
            server.unwrap()
        }
        SmtpFault::HangsUp | SmtpFault::RejectsRecipient => {
            let server = server.unwrap();
            server.set_mode(SmtpMode::Working);
            server
        }
    };
    let connections_before = server.connections.load(Ordering::SeqCst);
    let (status, sent) = call_at(&app.base, &operator, "send_link", &send).await;
    assert_eq!(status, StatusCode::OK, "{context}: {sent}");
    assert_eq!(sent["summary"]["status"], "started");
    assert_eq!(sent["link_url"], link.as_str());
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        connections_before + 1
    );
    let messages = server.messages();
    assert_eq!(messages.len(), 1, "{context}");
    let unfolded = messages[0]
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(
        unfolded.contains(&link),
        "{context}: the link is in the mail"
    );

    let kept = stored(&app.state.db.pool, &public_id).await;
    assert_eq!(kept.status, "started");
    assert_eq!(kept.link_url.as_deref(), Some(link.as_str()));
    let outcomes: Vec<&str> = kept.deliveries.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["failed", "sent"], "{context}");
    assert_eq!(
        kept.kinds(),
        ["creating", "started", "delivery_failed", "sent"],
        "{context}"
    );
    let outcomes: Vec<String> = audit_rows_about(&app.state.db, "link.send", &public_id)
        .await
        .into_iter()
        .map(|row| row.outcome)
        .collect();
    assert_eq!(outcomes, ["error", "success"], "{context}");
    assert_audit_chain_intact(&app.state).await;
}

both_backends!(a_mail_server_that_is_down, |backend| async move {
    smtp_fault(backend, SmtpFault::Down).await;
});

both_backends!(a_mail_server_refusing_the_sign_in, |backend| async move {
    smtp_fault(backend, SmtpFault::RefusesSignIn).await;
});

both_backends!(
    a_mail_server_hanging_up_mid_dialogue,
    |backend| async move {
        smtp_fault(backend, SmtpFault::HangsUp).await;
    }
);

both_backends!(
    a_mail_server_rejecting_the_recipient,
    |backend| async move {
        smtp_fault(backend, SmtpFault::RejectsRecipient).await;
    }
);
