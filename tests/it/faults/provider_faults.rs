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

/// Eko's status answer once the customer finished: masked details in `user_details`.
fn eko_status_with_user() -> String {
    json!({
        "status": 0,
        "response_status_id": 0,
        "message": "Success",
        "data": {
            "user_details": {
                "name": "Asha Rao",
                "dob": "01-02-1990",
                "gender": "F",
                "eaadhaar": "987654322345",
                "mobile": "9876543210"
            },
            "document_requested": ["AADHAAR"],
            "document_consent": ["AADHAAR"]
        }
    })
    .to_string()
}

/// The newer document answer (`data.documents[]`).
fn eko_document_newer() -> String {
    json!({
        "status": 0,
        "data": {
            "verification_status": "SUCCESS",
            "documents": [{
                "document_type": "AADHAAR", "name": "Asha Rao", "dob": "01-02-1990",
                "gender": "F", "masked_aadhaar": "XXXX-XXXX-2345",
                "address": {"city": "Pune", "state": "Maharashtra"}
            }]
        }
    })
    .to_string()
}

/// The older document answer (the document's fields in `data`).
fn eko_document_older() -> String {
    json!({
        "status": 0,
        "data": {
            "care_of": "S/O Mohan Rao", "dob": "01-02-1990", "gender": "M", "name": "Ravi Rao",
            "uid": "987654322345", "split_address": {"dist": "Pune", "state": "Maharashtra"},
            "reference_id": 4242424
        }
    })
    .to_string()
}

/// A server whose Eko credential points at a strict Eko stand-in that makes links and
/// answers the status call with the customer's details (document calls: none yet).
async fn strict_eko_app(backend: Backend) -> (TestApp, reqwest::Client, FakeEko) {
    let app = TestApp::start_with(backend, &[]).await;
    app.user("olga@example.com", Role::Operator).await;
    let operator = app.signed_in("olga@example.com").await;
    let fake = FakeEko::start().await;
    fake.route(
        "POST",
        FakeEko::CREATE,
        Reply::Answer(200, Provider::Eko.success()),
    );
    fake.route(
        "GET",
        FakeEko::STATUS,
        Reply::Answer(200, eko_status_with_user()),
    );
    Provider::Eko.point_at(&app.state, &fake.base).await;
    (app, operator, fake)
}

async fn create_eko_link(app: &TestApp, operator: &reqwest::Client) -> String {
    let (status, body) = call_at(
        &app.base,
        operator,
        "create_link",
        &link_form(Provider::Eko.option(), "Asha Rao", None, &form_key()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["summary"]["status"], "started", "{body}");
    body["summary"]["public_id"].as_str().unwrap().to_string()
}

/// Makes the session due and runs one poll round, which must poll it.
async fn poll_now(app: &TestApp, public_id: &str) {
    sqlx::query("UPDATE kyc_sessions SET next_poll_at = 0 WHERE public_id = $1")
        .bind(public_id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    let polled = kyc_desk::server::links::jobs::poll_due(&app.state, "test-poller")
        .await
        .unwrap();
    assert_eq!(polled, 1);
}

async fn session_detail(
    app: &TestApp,
    operator: &reqwest::Client,
    public_id: &str,
) -> serde_json::Value {
    let (status, body) = call_at(
        &app.base,
        operator,
        "session_detail",
        &[("public_id".into(), public_id.into())],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn last_event(detail: &serde_json::Value) -> (String, String) {
    let event = detail["timeline"].as_array().unwrap().last().unwrap();
    (
        event["kind"].as_str().unwrap().to_string(),
        event["detail"].as_str().unwrap().to_string(),
    )
}

fn result_of(detail: &serde_json::Value) -> Vec<(String, String)> {
    serde_json::from_value(detail["result"].clone()).unwrap()
}

// Issue 18 §2: against a strict Eko whose status call answers with the customer's details
// and whose document call answers 404 in both shapes, the timeline names the document call
// and each address form tried (not "status"), the status details are kept as a partial
// result, and after repeated failures the session shows "provider not answering since …"
// on the list and detail and is listed on the dashboard, until a poll gets through.
both_backends!(
    eko_polls_name_the_failing_call_and_keep_the_status_details,
    |backend| async move {
        let (app, operator, fake) = strict_eko_app(backend).await;
        let public_id = create_eko_link(&app, &operator).await;
        fake.take_requests();

        poll_now(&app, &public_id).await;
        assert_eq!(
            fake.take_requests(),
            [
                format!("GET {}", FakeEko::STATUS),
                format!("POST {}", FakeEko::DOCUMENT),
                format!("GET {}", FakeEko::DOCUMENT_AADHAAR),
            ]
        );
        let detail = session_detail(&app, &operator, &public_id).await;
        assert_eq!(detail["summary"]["status"], "started", "{detail}");
        let (kind, note) = last_event(&detail);
        assert_eq!(kind, "polled");
        assert!(
            note.contains(
                "Eko document call failed (POST …/tools/kyc/digilocker/document answered HTTP 404, \
                 then GET …/tools/kyc/digilocker/document/AADHAAR answered HTTP 404)"
            ),
            "{note}"
        );
        assert!(!note.contains("status call failed"), "{note}");
        assert_plain(&note);
        let result = result_of(&detail);
        for (label, value) in [
            ("Name", "Asha Rao"),
            ("Date of birth", "01-02-1990"),
            ("Gender", "F"),
            ("Aadhaar", "XXXX-XXXX-2345"),
        ] {
            assert!(
                result.contains(&(label.to_string(), value.to_string())),
                "{label}: {result:?}"
            );
        }
        assert_eq!(detail["result_partial"], true);
        assert!(
            detail["summary"]["provider_alert"].is_null(),
            "one failure is not a pattern"
        );

        // Failing again and again: the list, the detail and the dashboard say so.
        poll_now(&app, &public_id).await;
        poll_now(&app, &public_id).await;
        let detail = session_detail(&app, &operator, &public_id).await;
        let alert = detail["summary"]["provider_alert"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            alert.starts_with("provider not answering since 20"),
            "{detail}"
        );
        let (status, list) = call_at(&app.base, &operator, "list_sessions", &[]).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let listed = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["public_id"] == public_id.as_str())
            .unwrap();
        assert_eq!(listed["provider_alert"], alert.as_str());
        let (status, stats) = call_at(&app.base, &operator, "dashboard_stats", &[]).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        let silent: Vec<&str> = stats["not_answering"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["public_id"].as_str().unwrap())
            .collect();
        assert_eq!(silent, [public_id.as_str()]);

        // The status call fails too: the note names it, and the partial result stays.
        fake.unroute("GET", FakeEko::STATUS);
        poll_now(&app, &public_id).await;
        let detail = session_detail(&app, &operator, &public_id).await;
        let (_, note) = last_event(&detail);
        assert!(
            note.contains(
                "Eko status call failed (GET …/tools/kyc/digilocker/status answered HTTP 404)"
            ),
            "{note}"
        );
        assert!(!note.contains("document"), "{note}");
        assert_eq!(detail["result_partial"], true);
        assert_eq!(result_of(&detail)[0], ("Name".into(), "Asha Rao".into()));

        // The provider answers again (the older document shape): completed, alert gone.
        fake.route(
            "GET",
            FakeEko::STATUS,
            Reply::Answer(200, eko_status_with_user()),
        );
        fake.route(
            "GET",
            FakeEko::DOCUMENT_AADHAAR,
            Reply::Answer(200, eko_document_older()),
        );
        poll_now(&app, &public_id).await;
        let detail = session_detail(&app, &operator, &public_id).await;
        assert_eq!(detail["summary"]["status"], "completed", "{detail}");
        assert_eq!(detail["result_partial"], false);
        assert!(detail["summary"]["provider_alert"].is_null());
        assert!(result_of(&detail).contains(&("Name".into(), "Ravi Rao".into())));
        let (_, stats) = call_at(&app.base, &operator, "dashboard_stats", &[]).await;
        assert_eq!(stats["not_answering"], json!([]));
        assert_audit_chain_intact(&app.state).await;
    }
);

// Issue 18 §2: the document call falls back from the newer `POST …/document` to the older
// `GET …/document/{type}` on 405, and back on 404 once the provider moves again; the shape
// that worked is tried first next time.
both_backends!(
    eko_document_call_falls_back_between_the_two_shapes,
    |backend| async move {
        let (app, operator, fake) = strict_eko_app(backend).await;
        fake.route(
            "POST",
            FakeEko::DOCUMENT,
            Reply::Answer(405, r#"{"message":"Method Not Allowed"}"#.into()),
        );
        fake.route(
            "GET",
            FakeEko::DOCUMENT_AADHAAR,
            Reply::Answer(200, eko_document_older()),
        );
        let first = create_eko_link(&app, &operator).await;
        fake.take_requests();
        poll_now(&app, &first).await;
        assert_eq!(
            fake.take_requests(),
            [
                format!("GET {}", FakeEko::STATUS),
                format!("POST {}", FakeEko::DOCUMENT),
                format!("GET {}", FakeEko::DOCUMENT_AADHAAR),
            ]
        );
        let detail = session_detail(&app, &operator, &first).await;
        assert_eq!(detail["summary"]["status"], "completed", "{detail}");
        assert_eq!(detail["result_partial"], false);
        assert!(result_of(&detail).contains(&("Name".into(), "Ravi Rao".into())));
        let (kind, note) = last_event(&detail);
        assert_eq!(kind, "completed");
        assert!(
            note.contains(
                "read with GET …/tools/kyc/digilocker/document/AADHAAR after POST …/tools/kyc/digilocker/document answered HTTP 405"
            ),
            "{note}"
        );

        // The provider moves back to the newer shape: the remembered GET is tried first,
        // answers 404, and POST gives the document.
        fake.unroute("GET", FakeEko::DOCUMENT_AADHAAR);
        fake.route(
            "POST",
            FakeEko::DOCUMENT,
            Reply::Answer(200, eko_document_newer()),
        );
        let second = create_eko_link(&app, &operator).await;
        fake.take_requests();
        poll_now(&app, &second).await;
        assert_eq!(
            fake.take_requests(),
            [
                format!("GET {}", FakeEko::STATUS),
                format!("GET {}", FakeEko::DOCUMENT_AADHAAR),
                format!("POST {}", FakeEko::DOCUMENT),
            ]
        );
        let detail = session_detail(&app, &operator, &second).await;
        assert_eq!(detail["summary"]["status"], "completed", "{detail}");
        let result = result_of(&detail);
        assert!(
            result.contains(&("City".into(), "Pune".into())),
            "{result:?}"
        );
        let (_, note) = last_event(&detail);
        assert!(
            note.contains(
                "read with POST …/tools/kyc/digilocker/document after GET …/tools/kyc/digilocker/document/AADHAAR answered HTTP 404"
            ),
            "{note}"
        );

        // Next time the shape that worked goes first: one document call.
        let third = create_eko_link(&app, &operator).await;
        fake.take_requests();
        poll_now(&app, &third).await;
        assert_eq!(
            fake.take_requests(),
            [
                format!("GET {}", FakeEko::STATUS),
                format!("POST {}", FakeEko::DOCUMENT),
            ]
        );
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
