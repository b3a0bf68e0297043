//! A provider that is slow, failing, rate limiting, garbled, cut off or hanging up while a
//! link is being made.

use super::*;

#[derive(Clone, Copy, Debug)]
enum ProviderFault {
    SlowerThanTheTimeLimit,
    ServerError,
    RateLimited,
    MalformedJson,
    TruncatedJson,
    NoUrl,
    DroppedMidAnswer,
}

impl ProviderFault {
    fn reply(self, provider: Provider) -> Reply {
        match self {
            ProviderFault::SlowerThanTheTimeLimit => {
                Reply::Late(Duration::from_secs(30), provider.success())
            }
            ProviderFault::ServerError => {
                Reply::Answer(500, r#"{"message":"Internal Server Error"}"#.into())
            }
            ProviderFault::RateLimited => {
                Reply::Answer(429, r#"{"detail":"Too many requests"}"#.into())
            }
            ProviderFault::MalformedJson => {
                Reply::Answer(200, r#"{"url": "https://x.example/j", "token": tok"#.into())
            }
            ProviderFault::TruncatedJson => Reply::Truncated(provider.success()),
            ProviderFault::NoUrl => Reply::Answer(200, provider.success_without_url()),
            ProviderFault::DroppedMidAnswer => Reply::Dropped,
        }
    }

    /// What the operator must be told (a part of the message).
    fn told(self) -> &'static str {
        match self {
            ProviderFault::SlowerThanTheTimeLimit => "The provider did not answer in time.",
            ProviderFault::ServerError => "The provider is having trouble (HTTP 500).",
            ProviderFault::RateLimited => "The provider is limiting how many requests we send.",
            ProviderFault::MalformedJson | ProviderFault::TruncatedJson | ProviderFault::NoUrl => {
                "The provider sent an answer KYC Desk could not read."
            }
            ProviderFault::DroppedMidAnswer => {
                "The connection to the provider broke during the call."
            }
        }
    }
}

/// For Eko and for Message Central in turn: the provider misbehaves in one way while an
/// operator creates a link. The operator gets an answer within the time limit (plus a
/// margin) saying in plain words what happened; the session is kept as `failed` with that
/// reason, one `failed` timeline event and one `link.create` failure audit row; and the
/// provider was asked exactly once (a link-creating call is never retried).
async fn provider_fault(backend: Backend, fault: ProviderFault) {
    let app = TestApp::start_with(
        backend,
        &[
            ("KYC_DESK_PROVIDER_TIMEOUT", "1s"),
            ("KYC_DESK_PROVIDER_CONNECT_TIMEOUT", "1s"),
        ],
    )
    .await;
    app.user("olga@example.com", Role::Operator).await;
    let operator = app.signed_in("olga@example.com").await;
    for provider in [Provider::Eko, Provider::MessageCentral] {
        let context = format!("{provider:?} / {fault:?}");
        let fake = FakeProvider::start(vec![fault.reply(provider)]).await;
        provider.point_at(&app.state, &fake.base).await;

        let started = Instant::now();
        let (status, body) = call_at(
            &app.base,
            &operator,
            "create_link",
            &link_form(provider.option(), "Asha Rao", None, &form_key()),
        )
        .await;
        let took = started.elapsed();
        assert!(
            took < PROVIDER_TIMEOUT + HANG_MARGIN,
            "{context}: creation hung for {took:?}"
        );

        // What the operator sees.
        assert_eq!(status, StatusCode::OK, "{context}: {body}");
        assert_eq!(body["summary"]["status"], "failed", "{context}: {body}");
        assert!(body["link_url"].is_null(), "{context}: no link is offered");
        let told = body["last_error"].as_str().unwrap_or_default().to_string();
        assert!(told.contains(fault.told()), "{context}: told {told:?}");
        assert_plain(&told);
        let shown_timeline = body["timeline"].to_string();
        assert_plain(&shown_timeline);

        // What the database keeps.
        let public_id = body["summary"]["public_id"].as_str().unwrap();
        let kept = stored(&app.state.db.pool, public_id).await;
        assert_eq!(kept.status, "failed", "{context}");
        assert_eq!(kept.last_error.as_deref(), Some(told.as_str()), "{context}");
        assert_eq!(kept.link_url, None, "{context}");
        assert_eq!(kept.kinds(), ["creating", "failed"], "{context}: {kept:?}");
        assert!(kept.events[1].1.contains(&told), "{context}: {kept:?}");
        let audit = audit_rows_about(&app.state.db, "link.create", public_id).await;
        assert_eq!(audit.len(), 1, "{context}: {audit:#?}");
        assert_eq!(audit[0].outcome, "failure", "{context}");
        assert_eq!(audit[0].reason, told, "{context}");
        assert_plain(&audit[0].detail);

        // What the provider saw: one request, no retry.
        assert_eq!(fake.requests(), [provider.request()], "{context}");
    }
    let creations = all_rows(&app.state.db)
        .await
        .into_iter()
        .filter(|row| row.action == "link.create")
        .count();
    assert_eq!(creations, 2);
    assert_audit_chain_intact(&app.state).await;
}

both_backends!(
    a_provider_slower_than_the_time_limit,
    |backend| async move {
        provider_fault(backend, ProviderFault::SlowerThanTheTimeLimit).await;
    }
);

both_backends!(a_provider_answering_500, |backend| async move {
    provider_fault(backend, ProviderFault::ServerError).await;
});

both_backends!(a_provider_answering_429, |backend| async move {
    provider_fault(backend, ProviderFault::RateLimited).await;
});

both_backends!(a_provider_answering_malformed_json, |backend| async move {
    provider_fault(backend, ProviderFault::MalformedJson).await;
});

both_backends!(a_provider_answering_truncated_json, |backend| async move {
    provider_fault(backend, ProviderFault::TruncatedJson).await;
});

both_backends!(
    a_provider_answering_200_without_a_url,
    |backend| async move {
        provider_fault(backend, ProviderFault::NoUrl).await;
    }
);

both_backends!(
    a_provider_dropping_the_connection_mid_answer,
    |backend| async move {
        provider_fault(backend, ProviderFault::DroppedMidAnswer).await;
    }
);

/// The SMS API answering with more than the cap (and no length): the check stops reading at
/// 1 MiB and says so, instead of buffering the whole answer and calling it "unexpected".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_answer_larger_than_the_cap_is_refused_unread() {
    use kyc_desk::server::notify::sms;
    let fake = FakeProvider::start(vec![Reply::Huge(20 * 1024 * 1024)]).await;
    let http = kyc_desk::server::providers::ProviderHttp::with_default_timeouts().unwrap();
    let settings = std::collections::BTreeMap::from([
        ("base_url".to_string(), fake.base.clone()),
        ("customer_id".to_string(), "C-1".to_string()),
    ]);
    let told = sms::check_sms(&http, &settings, Some(secrecy::SecretString::from("pw")))
        .await
        .unwrap_err();
    assert!(told.contains("larger than 1 MiB"), "{told}");
    let sent = sms::send(
        &http,
        &settings,
        Some(secrecy::SecretString::from("pw")),
        sms::Sms {
            flow: "SMS",
            national_number: "9876543210",
            text: "hello".into(),
        },
    )
    .await
    .unwrap_err();
    assert!(sent.contains("larger than 1 MiB"), "{sent}");
    // Never reached the send itself: the token answer was already refused.
    assert_eq!(fake.requests().len(), 2);
}
