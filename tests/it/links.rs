//! KYC links end to end against the built-in sandbox: creation (idempotent), the state
//! machine, customer returns, the Eko poller and its lease, expiry, interrupted calls,
//! sending by email (a real SMTP server) and SMS, the list, the export and the audit rows.

use crate::audit::{all_rows, rows_of};
use crate::common;

use common::{TestApp, forms};
use kyc_desk::credential_kinds::CredentialInput;
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::links::jobs;
use kyc_desk::server::sandbox;
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;

/// A sandbox server with its credentials seeded, an operator and an admin signed in.
async fn sandbox_app(backend: common::Backend) -> (TestApp, reqwest::Client, reqwest::Client) {
    let app = common::sandbox_app(backend, &[]).await;
    app.user("olga@example.com", Role::Operator).await;
    app.user("root@example.com", Role::Admin).await;
    let operator = app.signed_in("olga@example.com").await;
    let admin = app.signed_in("root@example.com").await;
    (app, operator, admin)
}

fn link_args(
    option: &str,
    name: &str,
    phone: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    forms::link_form_with(option, name, phone, &forms::form_key(), extra)
}

async fn call(
    app: &TestApp,
    client: &reqwest::Client,
    function: &str,
    args: &[(String, String)],
) -> (StatusCode, Value) {
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.call(client, function, &args).await
}

async fn create(app: &TestApp, client: &reqwest::Client, args: &[(String, String)]) -> Value {
    let (status, body) = call(app, client, "create_link", args).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn detail(app: &TestApp, client: &reqwest::Client, public_id: &str) -> Value {
    let (status, body) = app
        .call(client, "session_detail", &[("public_id", public_id)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Walks the sandbox journey of `link` with `decision`; follows the redirect back to KYC
/// Desk and returns the return page's body.
async fn journey(app: &TestApp, link: &str, decision: &str) -> String {
    let client = app.client();
    let response = client
        .post(link)
        .header("origin", &app.base)
        .form(&[("decision", decision)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "journey answer");
    let back = response.headers()["location"].to_str().unwrap().to_string();
    assert!(
        back.starts_with(&format!("{}/kyc/return/", app.base)),
        "{back}"
    );
    let page = client.get(&back).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    page.text().await.unwrap()
}

fn timeline_kinds(detail: &Value) -> Vec<String> {
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

both_backends!(
    message_central_links_are_created_once_and_followed_to_the_end,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        let (status, options) = app.call(&operator, "link_options", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<&str> = options["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "message_central:trial:basic",
                "message_central:trial:premium",
                "eko:uat:digilocker"
            ]
        );
        assert_eq!(options["options"][0]["trial_links_left"], 5);
        assert_eq!(options["options"][0]["sandbox"], true);
        assert_eq!(options["channels"], serde_json::json!(["sms", "whatsapp"]));

        let args = link_args(
            "message_central:trial:basic",
            "Asha Rao",
            "98765 43210",
            &[("internal_ref", "CUST-42")],
        );
        let first = create(&app, &operator, &args).await;
        assert_eq!(first["summary"]["status"], "started");
        assert_eq!(first["summary"]["phone_masked"], "+91******3210");
        let link = first["link_url"].as_str().unwrap().to_string();
        assert!(
            link.starts_with(&format!("{}/sandbox/journey/", app.base)),
            "{link}"
        );
        // The result card (built from what the call wrote) is exactly the stored session.
        let stored = detail(
            &app,
            &operator,
            first["summary"]["public_id"].as_str().unwrap(),
        )
        .await;
        assert_eq!(first, stored);
        assert_eq!(
            first["timeline"].as_array().unwrap().len(),
            2,
            "{}",
            first["timeline"]
        );

        // The QR code is an image of its own, drawn for signed-in staff only.
        let qr_path = format!(
            "{}/sessions/{}/qr.svg",
            app.base,
            first["summary"]["public_id"].as_str().unwrap()
        );
        let qr = operator.get(&qr_path).send().await.unwrap();
        assert_eq!(qr.status(), StatusCode::OK);
        assert_eq!(qr.headers()["content-type"], "image/svg+xml");
        assert!(qr.text().await.unwrap().contains("<svg"));
        let anonymous = app.client().get(&qr_path).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        // Auditors review: they see that a link exists and its status, never the usable link
        // or its QR code.
        app.user("audra@example.com", Role::Auditor).await;
        let auditor = app.signed_in("audra@example.com").await;
        let qr = auditor.get(&qr_path).send().await.unwrap();
        assert_eq!(qr.status(), StatusCode::FORBIDDEN);
        let reviewed = detail(
            &app,
            &auditor,
            first["summary"]["public_id"].as_str().unwrap(),
        )
        .await;
        assert!(reviewed["link_url"].is_null(), "{reviewed}");
        assert_eq!(reviewed["link_withheld"], true);
        assert_eq!(reviewed["summary"]["status"], "started");
        assert!(!reviewed.to_string().contains(&link), "{reviewed}");
        for unknown in ["nosuchsession", "a%00b", "%27%20OR%201%3D1", "ABC"] {
            let unknown = operator
                .get(format!("{}/sessions/{unknown}/qr.svg", app.base))
                .send()
                .await
                .unwrap();
            assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        }
        assert!(first["expires_at_unix"].as_i64().unwrap() > kyc_desk::server::db::now() + 25 * 60);

        // The same form again (a double click, a resubmission): the same session, no call.
        let again = create(&app, &operator, &args).await;
        assert_eq!(again["summary"]["public_id"], first["summary"]["public_id"]);
        let (_, options) = app.call(&operator, "link_options", &[]).await;
        assert_eq!(
            options["options"][0]["trial_links_left"], 4,
            "one provider call only"
        );
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kyc_sessions")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(count, 1);
        // Concurrent double submission of a fresh form: still one session.
        let args2 = link_args(
            "message_central:trial:premium",
            "Ravi Kumar",
            "+91 91234 56789",
            &[],
        );
        let (a, b) = tokio::join!(
            call(&app, &operator, "create_link", &args2),
            call(&app, &operator, "create_link", &args2)
        );
        assert_eq!(a.0, StatusCode::OK, "{}", a.1);
        assert_eq!(b.0, StatusCode::OK, "{}", b.1);
        assert_eq!(a.1["summary"]["public_id"], b.1["summary"]["public_id"]);
        let (_, options) = app.call(&operator, "link_options", &[]).await;
        assert_eq!(options["options"][0]["trial_links_left"], 3);

        // The customer approves; the return page thanks them. Message Central reports no
        // result to KYC Desk, so the return is the customer's claim: the session is
        // `returned`, awaiting confirmation, until an operator records the outcome.
        let public_id = first["summary"]["public_id"].as_str().unwrap();
        let page = journey(&app, &link, "approve").await;
        assert!(page.contains("Thank you"));
        let returned = detail(&app, &operator, public_id).await;
        assert_eq!(returned["summary"]["status"], "returned");
        assert_eq!(returned["return_claim"]["reported"], "approved");
        assert_eq!(returned["outcome_recordable"], true);
        assert_eq!(
            timeline_kinds(&returned),
            ["creating", "started", "returned"]
        );
        assert!(
            returned["timeline"][2]["detail"]
                .as_str()
                .unwrap()
                .contains("status=approved")
        );
        let (status, done) = app
            .call(
                &operator,
                "record_outcome",
                &[
                    ("public_id", public_id),
                    ("outcome", "completed"),
                    ("note", "Message Central console: verified."),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{done}");
        assert_eq!(done["summary"]["status"], "completed");
        assert!(done["link_url"].is_null(), "an ended session shows no link");
        assert_eq!(
            timeline_kinds(&done),
            ["creating", "started", "returned", "completed"]
        );
        assert_eq!(done["timeline"][3]["actor"], "olga@example.com");

        // A second return after the end is recorded and changes nothing.
        let client = app.client();
        client
            .get(format!("{}/kyc/return/{public_id}?status=denied", app.base))
            .send()
            .await
            .unwrap();
        let after = detail(&app, &operator, public_id).await;
        assert_eq!(after["summary"]["status"], "completed");
        assert_eq!(timeline_kinds(&after).last().unwrap(), "late_answer");

        // The other session's customer declines: still only a claim; the operator records the
        // failure they see in the console.
        let second = a.1;
        journey(&app, second["link_url"].as_str().unwrap(), "deny").await;
        let second_id = second["summary"]["public_id"].as_str().unwrap();
        let claimed = detail(&app, &operator, second_id).await;
        assert_eq!(claimed["summary"]["status"], "returned");
        assert_eq!(claimed["return_claim"]["reported"], "denied");
        let (status, failed) = app
            .call(
                &operator,
                "record_outcome",
                &[
                    ("public_id", second_id),
                    ("outcome", "failed"),
                    ("note", "Message Central console: customer declined."),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{failed}");
        assert_eq!(failed["summary"]["status"], "failed");

        // Audit: two creations by the operator, three returns from the customer's browser,
        // two outcomes recorded by the operator, detail reads.
        let creations = rows_of(&app, "link.create").await;
        assert_eq!(creations.len(), 2);
        assert!(creations.iter().all(|r| r.actor_email == "olga@example.com"
            && r.outcome == "success"
            && r.object_type == "kyc_session"));
        assert!(creations.iter().all(|r| r.detail.contains("+91******")));
        assert!(rows_of(&app, "link.status").await.is_empty());
        let returns = rows_of(&app, "link.return").await;
        assert_eq!(returns.len(), 3);
        assert!(
            returns
                .iter()
                .all(|r| r.actor_role == "anonymous" && !r.ip.is_empty())
        );
        let outcomes = rows_of(&app, "link.outcome_recorded").await;
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes.iter().all(|r| r.actor_email == "olga@example.com"));
        // Three reads by the test's steps, one by the check that the result card is the
        // stored session, one by the auditor.
        assert_eq!(rows_of(&app, "session.view").await.len(), 5);
        assert!(
            app.state
                .audit
                .verify(&app.state.db)
                .await
                .unwrap()
                .broken
                .is_none()
        );

        // Three trial links are left; six operators' forms at once get exactly three links.
        let forms: Vec<Vec<(String, String)>> = (0..6)
            .map(|i| {
                link_args(
                    "message_central:trial:basic",
                    &format!("Trial Customer {i}"),
                    "9876543210",
                    &[],
                )
            })
            .collect();
        let answers = futures::future::join_all(
            forms
                .iter()
                .map(|f| call(&app, &operator, "create_link", f)),
        )
        .await;
        let created = answers
            .iter()
            .filter(|(status, body)| {
                *status == StatusCode::OK && body["summary"]["status"] == "started"
            })
            .count();
        assert_eq!(created, 3, "{answers:?}");
        for (status, body) in answers
            .iter()
            .filter(|(status, _)| *status != StatusCode::OK)
        {
            assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
            assert!(body.to_string().contains("All 5 trial links"), "{body}");
        }
        let used: i64 = sqlx::query_scalar(
            "SELECT trial_links_used FROM credentials WHERE kind = 'message_central_ekyc' AND environment = 'trial'",
        )
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        assert_eq!(used, 5);
    }
);

both_backends!(
    eko_links_are_polled_to_completion_with_masked_results,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        let created = create(
            &app,
            &operator,
            &link_args(
                "eko:uat:digilocker",
                "Meera Iyer",
                "9123456780",
                &[("email", "meera@example.com")],
            ),
        )
        .await;
        assert_eq!(created["summary"]["status"], "started");
        assert_eq!(created["documents"], serde_json::json!(["AADHAAR"]));
        let public_id = created["summary"]["public_id"]
            .as_str()
            .unwrap()
            .to_string();
        journey(&app, created["link_url"].as_str().unwrap(), "approve").await;
        let returned = detail(&app, &operator, &public_id).await;
        assert_eq!(returned["summary"]["status"], "returned");
        // The return makes the session due at once; one poll finishes it.
        assert_eq!(jobs::poll_due(&app.state, "test-poller").await.unwrap(), 1);
        let done = detail(&app, &operator, &public_id).await;
        assert_eq!(done["summary"]["status"], "completed", "{done}");
        let result: Vec<(String, String)> = serde_json::from_value(done["result"].clone()).unwrap();
        let aadhaar = result
            .iter()
            .find(|(k, _)| k == "Aadhaar")
            .expect("masked Aadhaar")
            .1
            .clone();
        assert!(aadhaar.starts_with("XXXX-XXXX-"), "{aadhaar}");
        assert!(result.iter().any(|(k, _)| k == "Name"));
        assert_eq!(
            jobs::poll_due(&app.state, "test-poller").await.unwrap(),
            0,
            "no polls after the end"
        );

        // No 12-digit (Aadhaar-length) number in the stored result, errors or timeline.
        let texts: Vec<(String,)> = sqlx::query_as(
            "SELECT COALESCE(result, '') || ' ' || COALESCE(last_error, '') FROM kyc_sessions \
             UNION ALL SELECT detail FROM kyc_events",
        )
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        assert!(texts.len() >= 4);
        for (text,) in texts {
            let mut run = 0;
            for c in text.chars() {
                run = if c.is_ascii_digit() { run + 1 } else { 0 };
                assert!(run < 12, "12-digit number stored: {text}");
            }
        }

        // A refused consent ends failed at the next poll.
        let declined = create(
            &app,
            &operator,
            &link_args("eko:uat:digilocker", "Kiran Das", "9123456781", &[]),
        )
        .await;
        let declined_id = declined["summary"]["public_id"]
            .as_str()
            .unwrap()
            .to_string();
        let client = app.client();
        client
            .post(declined["link_url"].as_str().unwrap())
            .form(&[("decision", "deny")])
            .send()
            .await
            .unwrap();
        sqlx::query("UPDATE kyc_sessions SET next_poll_at = 0 WHERE public_id = $1")
            .bind(&declined_id)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        jobs::poll_due(&app.state, "test-poller").await.unwrap();
        let failed = detail(&app, &operator, &declined_id).await;
        assert_eq!(failed["summary"]["status"], "failed", "{failed}");
        assert!(
            failed["last_error"]
                .as_str()
                .unwrap()
                .contains("refused consent")
        );
    }
);

both_backends!(
    two_pollers_never_poll_one_session_at_once,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        let created = create(
            &app,
            &operator,
            &link_args("eko:uat:digilocker", "Meera Iyer", "9123456780", &[]),
        )
        .await;
        let public_id = created["summary"]["public_id"]
            .as_str()
            .unwrap()
            .to_string();
        sqlx::query("UPDATE kyc_sessions SET next_poll_at = 0 WHERE public_id = $1")
            .bind(&public_id)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        // A second instance on the same database polls at the same moment.
        let second =
            TestApp::start_on(&app.database_url, None, &[("KYC_DESK_SANDBOX", "true")]).await;
        let id: i64 = sqlx::query_scalar("SELECT id FROM kyc_sessions WHERE public_id = $1")
            .bind(&public_id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            jobs::poll_session(&app.state, id, "instance-a"),
            jobs::poll_session(&second.state, id, "instance-b")
        );
        let polled = [a.unwrap(), b.unwrap()];
        assert_eq!(polled.iter().filter(|p| **p).count(), 1, "{polled:?}");
        let polls: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM kyc_events WHERE kind = 'polled'")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert_eq!(polls, 1);
        // The lease is released and the next poll scheduled with back-off.
        let (owner, next): (Option<String>, Option<i64>) =
            sqlx::query_as("SELECT lease_owner, next_poll_at FROM kyc_sessions WHERE id = $1")
                .bind(id)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert!(owner.is_none());
        assert!(next.unwrap() >= kyc_desk::server::db::now() + 50);
    }
);

both_backends!(
    the_form_is_checked_field_by_field_and_nothing_is_created,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        let (status, body) = call(
            &app,
            &operator,
            "create_link",
            &[("input[phone]".to_string(), "12345".to_string())],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let fields: Vec<String> = body["Validation"]["fields"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|f| f["field"].as_str().unwrap().to_string())
            .collect();
        for expected in [
            "option",
            "customer_name",
            "phone",
            "consent",
            "idempotency_key",
        ] {
            assert!(
                fields.contains(&expected.to_string()),
                "{expected} missing in {body}"
            );
        }
        let long_ref = "R".repeat(65);
        let (status, body) = call(
            &app,
            &operator,
            "create_link",
            &link_args(
                "eko:uat:digilocker",
                "A <b>",
                "+91 12345",
                &[
                    ("email", "nope"),
                    ("internal_ref", &long_ref),
                    ("documents][0", "SHOE_SIZE"),
                ],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let message = |field: &str| {
            body["Validation"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["field"] == field)
                .map(|f| f["message"].as_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("no message for {field}: {body}"))
        };
        assert!(message("phone").contains("Indian mobile"));
        assert!(message("email").to_lowercase().contains("email"));
        assert!(message("internal_ref").contains("64"));
        assert!(message("documents").contains("SHOE_SIZE"));
        assert!(message("customer_name").contains("<"));
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM kyc_sessions")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(count, 0);
        // Auditors may read but not create.
        app.user("ada@example.com", Role::Auditor).await;
        let auditor = app.signed_in("ada@example.com").await;
        let (status, _) = call(
            &app,
            &auditor,
            "create_link",
            &link_args("eko:uat:digilocker", "Asha Rao", "9876543210", &[]),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.call(&auditor, "list_sessions", &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
);

both_backends!(
    cancel_regenerate_expiry_and_interrupted_calls,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        let eko = |name: &str| link_args("eko:uat:digilocker", name, "9876543210", &[]);
        let first = create(&app, &operator, &eko("Asha Rao")).await;
        let first_id = first["summary"]["public_id"].as_str().unwrap().to_string();
        assert_eq!(first, detail(&app, &operator, &first_id).await);

        // Regenerate: a new link, the old one superseded, both linked.
        let (status, new) = app
            .call(
                &operator,
                "regenerate_link",
                &[
                    ("public_id", &first_id),
                    ("idempotency_key", &forms::form_key()),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{new}");
        let new_id = new["summary"]["public_id"].as_str().unwrap().to_string();
        assert_ne!(new_id, first_id);
        assert_eq!(new["supersedes"], first_id.as_str());
        assert_eq!(new, detail(&app, &operator, &new_id).await);
        let old = detail(&app, &operator, &first_id).await;
        assert_eq!(old["summary"]["status"], "superseded");
        assert_eq!(old["superseded_by"], new_id.as_str());
        assert_eq!(rows_of(&app, "link.regenerate").await.len(), 1);

        // Cancel an open session; an ended one cannot be cancelled (illegal transition).
        let (status, cancelled) = app
            .call(&operator, "cancel_link", &[("public_id", &new_id)])
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cancelled["summary"]["status"], "cancelled");
        let qr = operator
            .get(format!("{}/sessions/{new_id}/qr.svg", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(qr.status(), StatusCode::NOT_FOUND, "no QR code once closed");
        let (status, body) = app
            .call(&operator, "cancel_link", &[("public_id", &new_id)])
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let (status, _) = app
            .call(&operator, "cancel_link", &[("public_id", &first_id)])
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(rows_of(&app, "link.cancel").await.len(), 1);
        let (status, _) = app
            .call(
                &operator,
                "send_link",
                &[("public_id", &new_id), ("channel", "sms")],
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "a cancelled link is not sent");

        // Expiry: a link past its time ends within one sweep, by the system.
        let expiring = create(&app, &operator, &eko("Ravi Kumar")).await;
        let expiring_id = expiring["summary"]["public_id"]
            .as_str()
            .unwrap()
            .to_string();
        sqlx::query("UPDATE kyc_sessions SET expires_at = $1 WHERE public_id = $2")
            .bind(kyc_desk::server::db::now() - 1)
            .bind(&expiring_id)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(jobs::sweep(&app.state).await.unwrap(), 1);
        assert_eq!(
            detail(&app, &operator, &expiring_id).await["summary"]["status"],
            "expired"
        );
        let status_rows = rows_of(&app, "link.status").await;
        assert!(
            status_rows.iter().any(|r| r.object_id == expiring_id
                && r.actor_role == "system"
                && r.reason.contains("expired")),
            "{status_rows:#?}"
        );

        // A call interrupted by a crash: `creating` long ago becomes failed with the reason.
        let stuck = create(&app, &operator, &eko("Kiran Das")).await;
        let stuck_id = stuck["summary"]["public_id"].as_str().unwrap().to_string();
        sqlx::query("UPDATE kyc_sessions SET status = 'creating', created_at = created_at - 3600 WHERE public_id = $1")
            .bind(&stuck_id)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(jobs::sweep(&app.state).await.unwrap(), 1);
        let failed = detail(&app, &operator, &stuck_id).await;
        assert_eq!(failed["summary"]["status"], "failed");
        assert!(
            failed["last_error"]
                .as_str()
                .unwrap()
                .contains("Interrupted before the provider answered")
        );
        assert!(
            app.state
                .audit
                .verify(&app.state.db)
                .await
                .unwrap()
                .broken
                .is_none()
        );
    }
);

both_backends!(
    a_provider_failure_fails_the_session_in_plain_words,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        // Point the Eko credential at a port where nothing listens.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut settings = BTreeMap::new();
        settings.insert("base_url".to_string(), format!("http://{closed}/eko"));
        settings.insert(
            "initiator_id".to_string(),
            sandbox::seed::EKO_INITIATOR_ID.to_string(),
        );
        settings.insert(
            "user_code".to_string(),
            sandbox::seed::EKO_USER_CODE.to_string(),
        );
        settings.insert("documents".to_string(), "AADHAAR".to_string());
        save_settings(&app, "eko_digilocker", "uat", settings).await;
        let failed = create(
            &app,
            &operator,
            &link_args("eko:uat:digilocker", "Asha Rao", "9876543210", &[]),
        )
        .await;
        assert_eq!(failed["summary"]["status"], "failed");
        let reason = failed["last_error"].as_str().unwrap();
        assert!(
            reason.contains("Eko") || reason.contains("reach"),
            "{reason}"
        );
        assert!(!reason.contains("127.0.0.1"), "no internals: {reason}");
        let row = rows_of(&app, "link.create").await;
        assert_eq!(row.len(), 1);
        assert_eq!(row[0].outcome, "failure");
        assert_eq!(timeline_kinds(&failed), ["creating", "failed"]);

        // A Message Central trial call that never left gives its reserved trial link back.
        let mut settings = BTreeMap::new();
        for (name, value) in [
            ("base_url", format!("http://{closed}/mc")),
            ("company_name", sandbox::seed::MC_COMPANY.to_string()),
            ("basic_flow_id", sandbox::seed::MC_BASIC_FLOW.to_string()),
            (
                "premium_flow_id",
                sandbox::seed::MC_PREMIUM_FLOW.to_string(),
            ),
            ("body_encoding", "json".to_string()),
        ] {
            settings.insert(name.to_string(), value);
        }
        save_settings(&app, "message_central_ekyc", "trial", settings).await;
        let failed = create(
            &app,
            &operator,
            &link_args("message_central:trial:basic", "Asha Rao", "9876543210", &[]),
        )
        .await;
        assert_eq!(failed["summary"]["status"], "failed");
        let (_, options) = app.call(&operator, "link_options", &[]).await;
        let trial = options["options"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == "message_central:trial:basic")
            .cloned()
            .unwrap();
        assert_eq!(trial["trial_links_left"], 5, "{options}");
    }
);

/// A real SMTP server (aiosmtpd) writing what it receives into a maildir; killed on drop.
struct SmtpServer(std::process::Child);

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_smtp(dir: &std::path::Path) -> (SmtpServer, u16) {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m aiosmtpd (installed by the test command)");
    let child = SmtpServer(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (child, port)
}

async fn save_smtp(app: &TestApp, port: u16) {
    let settings: BTreeMap<String, String> = [
        ("host", "127.0.0.1".to_string()),
        ("port", port.to_string()),
        ("tls", "none".to_string()),
        ("from", "kyc@bank.example".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    save_settings(app, "smtp", "default", settings).await;
}

/// Saves new settings for a credential as the command line does, keeping its secrets.
async fn save_settings(
    app: &TestApp,
    kind: &str,
    environment: &str,
    settings: BTreeMap<String, String>,
) {
    kyc_desk::server::credentials::save(
        &app.state,
        &RequestMeta::cli(),
        Actor::Cli,
        "cli",
        &CredentialInput {
            kind: kind.into(),
            environment: environment.into(),
            settings,
            secrets: BTreeMap::new(),
        },
        // The command line runs with the operator's own access to the server: it counts as
        // re-authenticated (a destination change is a rotation there too).
        true,
    )
    .await
    .unwrap_or_else(|error| panic!("save {kind}/{environment}: {error:?}"));
}

both_backends!(
    links_are_sent_by_email_and_sms_and_failures_are_retryable,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        let mail_dir = tempfile::tempdir().unwrap();
        let (smtp, port) = start_smtp(mail_dir.path());
        save_smtp(&app, port).await;
        let created = create(
            &app,
            &operator,
            &link_args(
                "eko:uat:digilocker",
                "Meera Iyer",
                "9123456780",
                &[("email", "Meera@Example.com")],
            ),
        )
        .await;
        let public_id = created["summary"]["public_id"]
            .as_str()
            .unwrap()
            .to_string();
        let link = created["link_url"].as_str().unwrap().to_string();
        assert_eq!(
            created["channels"],
            serde_json::json!(["email", "sms", "whatsapp"])
        );

        let (status, sent) = app
            .call(
                &operator,
                "send_link",
                &[("public_id", &public_id), ("channel", "email")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        assert_eq!(sent["summary"]["status"], "started");
        assert_eq!(sent["deliveries"][0]["destination"], "m***@example.com");
        assert_eq!(sent["deliveries"][0]["outcome"], "sent");
        // The SMTP server received one message with both parts and the link.
        let mut mail = String::new();
        for _ in 0..50 {
            if let Ok(entries) = std::fs::read_dir(mail_dir.path().join("new")) {
                for entry in entries.flatten() {
                    mail = std::fs::read_to_string(entry.path()).unwrap();
                }
            }
            if !mail.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            mail.contains("To: \"Meera Iyer\" <meera@example.com>")
                || mail.contains("meera@example.com"),
            "{mail}"
        );
        assert!(
            mail.contains("text/plain") && mail.contains("text/html"),
            "{mail}"
        );
        let unfolded = mail
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        assert!(unfolded.contains(&link), "the link is in the mail: {mail}");

        // SMS through the sandbox; a resend is recorded as such.
        let (status, sms) = app
            .call(
                &operator,
                "send_link",
                &[("public_id", &public_id), ("channel", "sms")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sms}");
        assert_eq!(sms["deliveries"][0]["destination"], "+91******6780");
        assert_eq!(rows_of(&app, "link.send").await.len(), 1);
        let resends = rows_of(&app, "link.resend").await;
        assert_eq!(resends.len(), 1);
        assert!(resends[0].detail.contains("+91******6780"));

        // The mail server goes away: the attempt fails with the reason, is recorded, the
        // link stays usable, and a retry works once the server is back.
        drop(smtp);
        let second = create(
            &app,
            &operator,
            &link_args(
                "eko:uat:digilocker",
                "Ravi Kumar",
                "9123456781",
                &[("email", "ravi@example.com")],
            ),
        )
        .await;
        let second_id = second["summary"]["public_id"].as_str().unwrap().to_string();
        let (status, body) = app
            .call(
                &operator,
                "send_link",
                &[("public_id", &second_id), ("channel", "email")],
            )
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let message = body.to_string();
        assert!(
            message.contains("could not connect to the mail server")
                && message.contains("try again"),
            "{message}"
        );
        let after = detail(&app, &operator, &second_id).await;
        assert_eq!(
            after["summary"]["status"], "started",
            "a failure never marks a link sent"
        );
        assert_eq!(after["deliveries"][0]["outcome"], "failed");
        assert!(after["link_url"].is_string());
        let errors: Vec<_> = rows_of(&app, "link.send")
            .await
            .into_iter()
            .filter(|r| r.outcome == "error")
            .collect();
        assert_eq!(errors.len(), 1);
        let (smtp, port) = start_smtp(mail_dir.path());
        save_smtp(&app, port).await;
        let (status, retried) = app
            .call(
                &operator,
                "send_link",
                &[("public_id", &second_id), ("channel", "email")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{retried}");
        assert_eq!(retried["summary"]["status"], "started");
        drop(smtp);
    }
);

both_backends!(
    the_list_filters_searches_pages_and_exports,
    |backend| async move {
        let (app, operator, admin) = sandbox_app(backend).await;
        let credential: i64 =
            sqlx::query_scalar("SELECT id FROM credentials WHERE kind = 'eko_digilocker'")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        let olga: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'olga@example.com'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        // 60 sessions written directly (the provider is not the point here).
        let mut conn = app.state.db.pool.acquire().await.unwrap();
        for i in 0..60 {
            let name = if i == 7 {
                "=HYPERLINK(\"x\"), \"Quoted\"".to_string()
            } else {
                format!("Customer {i:02}")
            };
            let phone = format!("+9198765{i:05}");
            kyc_desk::server::db::links::insert(
                &mut conn,
                &kyc_desk::server::db::links::NewSession {
                    public_id: &format!("pub{i:04}"),
                    idempotency_key: &format!("key-{i:04}-xxxxxxxxxxxx"),
                    provider: "eko",
                    flow: "digilocker",
                    environment: "uat",
                    credential_id: credential,
                    sandbox: true,
                    customer_name: &name,
                    phone: &phone,
                    email: Some("someone@example.com"),
                    internal_ref: Some(&format!("REF-{i}")),
                    documents: "AADHAAR",
                    consent_note: "ok",
                    created_by: olga,
                    client_ref_id: None,
                    supersedes: None,
                    search_text: &format!("{} {phone} ref-{i}", name.to_lowercase()),
                    now: kyc_desk::server::db::now() - 60 + i,
                    customer_link: None,
                },
            )
            .await
            .unwrap();
        }
        drop(conn);
        let list = |filter: Vec<(&'static str, String)>| {
            let app = &app;
            let operator = operator.clone();
            async move {
                let args: Vec<(String, String)> = filter
                    .into_iter()
                    .map(|(k, v)| (format!("filter[{k}]"), v))
                    .collect();
                let args: Vec<(&str, &str)> =
                    args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                app.call(&operator, "list_sessions", &args).await
            }
        };
        let (status, page) = list(vec![]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let sessions = page["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 50);
        assert_eq!(sessions[0]["public_id"], "pub0059", "newest first");
        assert_eq!(sessions[0]["phone_masked"], "+91******0059");
        let before = page["next_before"].as_i64().unwrap();
        let (_, page2) = list(vec![("before", before.to_string())]).await;
        assert_eq!(page2["sessions"].as_array().unwrap().len(), 10);
        assert!(page2["next_before"].is_null());
        let (_, found) = list(vec![("q", "ref-42".into())]).await;
        assert_eq!(found["sessions"].as_array().unwrap().len(), 1);
        let (_, found) = list(vec![("q", "98765 00013".into())]).await;
        assert_eq!(
            found["sessions"][0]["public_id"], "pub0013",
            "search by phone"
        );
        // Every word must start one of the session's words: "customer 1" finds Customer 10–19
        // and Customer 01, whose reference REF-1 has the word "1".
        let (_, found) = list(vec![
            ("q", "customer 1".into()),
            ("status", "creating".into()),
        ])
        .await;
        let mut names: Vec<String> = found["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["customer_name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(names.len(), 11, "{names:?}");
        assert_eq!(names[0], "Customer 01");
        assert_eq!(names[1], "Customer 10");
        assert_eq!(names[10], "Customer 19");
        let count = |page: &serde_json::Value| page["sessions"].as_array().unwrap().len();
        let (_, found) = list(vec![("q", "CUSTOM".into())]).await;
        assert_eq!(count(&found), 50, "a word prefix, any case");
        let (_, found) = list(vec![("q", "ustomer".into())]).await;
        assert_eq!(count(&found), 0, "the middle of a word is not a match");
        let (_, found) = list(vec![("q", "987650000".into())]).await;
        assert_eq!(count(&found), 10, "the start of a national number");
        let (_, found) = list(vec![("q", "hyperlink quoted".into())]).await;
        assert_eq!(found["sessions"][0]["public_id"], "pub0007");
        let (status, found) = list(vec![("q", "a b c d e f g h i".into())]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{found}");
        let (_, none) = list(vec![("provider", "message_central".into())]).await;
        assert!(none["sessions"].as_array().unwrap().is_empty());
        let (_, mine) = list(vec![("staff", "olga@example.com".into())]).await;
        assert_eq!(mine["sessions"].as_array().unwrap().len(), 50);
        let (status, bad) = list(vec![("status", "happy".into()), ("from", "monday".into())]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

        // A date range lists by creation time, newest first, even where ids disagree (here
        // pub0010..pub0014 were created on 5 January in the reverse order of their ids, two
        // in the same second), and its cursor pages through them without gaps or repeats.
        let day = 1_767_571_200; // 2026-01-05 00:00 UTC
        for (i, at) in [
            (10, day + 500),
            (11, day + 400),
            (12, day + 300),
            (13, day + 300),
            (14, day + 100),
        ] {
            sqlx::query("UPDATE kyc_sessions SET created_at = $1 WHERE public_id = $2")
                .bind(at)
                .bind(format!("pub{i:04}"))
                .execute(&app.state.db.pool)
                .await
                .unwrap();
        }
        let expected = ["pub0010", "pub0011", "pub0013", "pub0012", "pub0014"];
        let ids = |page: &serde_json::Value| -> Vec<String> {
            page["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["public_id"].as_str().unwrap().to_string())
                .collect()
        };
        let (status, on_day) = list(vec![
            ("from", "2026-01-05".into()),
            ("to", "2026-01-05".into()),
        ])
        .await;
        assert_eq!(status, StatusCode::OK, "{on_day}");
        assert_eq!(ids(&on_day), expected);
        let query = kyc_desk::server::db::links::SessionQuery {
            from: Some(day),
            to: Some(day + 86_400),
            ..Default::default()
        };
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let rows = kyc_desk::server::db::links::search(
                &app.state.db.pool,
                &kyc_desk::server::db::links::SessionQuery {
                    before_id: cursor,
                    ..query.clone()
                },
                2,
            )
            .await
            .unwrap();
            paged.extend(rows.iter().map(|r| r.public_id.clone()));
            if rows.len() < 2 {
                break;
            }
            cursor = rows.last().map(|r| r.id);
        }
        assert_eq!(paged, expected, "pages of two by cursor");
        let (_, after_day) = list(vec![("from", "2026-01-06".into())]).await;
        let before = after_day["next_before"].as_i64().unwrap().to_string();
        let (_, rest) = list(vec![("from", "2026-01-06".into()), ("before", before)]).await;
        let mut later = ids(&after_day);
        later.extend(ids(&rest));
        assert_eq!(later.len(), 55, "{later:?}");
        assert!(later.iter().all(|id| !expected.contains(&id.as_str())));

        // CSV: masked by default, quoted and neutralised, contacts only for admins.
        let csv = operator
            .get(format!("{}/sessions/export.csv?q=customer", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(csv.status(), StatusCode::OK);
        let csv = csv.text().await.unwrap();
        assert_eq!(csv.split("\r\n").filter(|l| !l.is_empty()).count(), 1 + 59);
        // A leading + is neutralised like any formula character.
        assert!(csv.contains("\"'+91******0012\""), "{csv}");
        assert!(!csv.contains("someone@example.com"));
        let all = operator
            .get(format!("{}/sessions/export.csv", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            all.contains("\"'=HYPERLINK(\"\"x\"\"), \"\"Quoted\"\"\""),
            "{all}"
        );
        let refused = operator
            .get(format!("{}/sessions/export.csv?contacts=1", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let full = admin
            .get(format!("{}/sessions/export.csv?contacts=1", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(full.contains("\"'+919876500012\"") && full.contains("someone@example.com"));
        assert_eq!(rows_of(&app, "session.export").await.len(), 3);
        let _ = all_rows(&app.state.db).await;
    }
);

both_backends!(
    the_email_template_is_edited_by_admins_only,
    |backend| async move {
        let (app, operator, admin) = sandbox_app(backend).await;
        let (status, template) = app.call(&admin, "email_template", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(template[1].as_str().unwrap().contains("{link}"));
        let (status, body) = app
            .call(
                &admin,
                "save_email_template",
                &[("subject", "Hi\nthere"), ("body", "no link here")],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let fields = body["Validation"]["fields"].to_string();
        assert!(
            fields.contains("subject") && fields.contains("{link}"),
            "{body}"
        );
        let (status, saved) = app
            .call(
                &admin,
                "save_email_template",
                &[
                    ("subject", "Verify for {company}"),
                    ("body", "Hello {name}, open {link} before {expires}."),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{saved}");
        assert_eq!(rows_of(&app, "template.update").await.len(), 1);
        let (status, _) = app
            .call(
                &operator,
                "save_email_template",
                &[("subject", "x"), ("body", "{link}")],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
);

both_backends!(
    whatsapp_sending_and_returns_found_by_journey_id,
    |backend| async move {
        let (app, operator, admin) = sandbox_app(backend).await;
        let created = create(
            &app,
            &operator,
            &link_args("message_central:trial:basic", "Asha Rao", "9123456780", &[]),
        )
        .await;
        let public_id = created["summary"]["public_id"]
            .as_str()
            .unwrap()
            .to_string();
        let link = created["link_url"].as_str().unwrap().to_string();

        // WhatsApp: the sink receives the message with the link; the delivery and the
        // timeline show the masked number.
        let (status, sent) = app
            .call(
                &operator,
                "send_link",
                &[("public_id", &public_id), ("channel", "whatsapp")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        assert_eq!(sent["summary"]["status"], "started");
        assert_eq!(sent["deliveries"][0]["channel"], "whatsapp");
        assert_eq!(sent["deliveries"][0]["destination"], "+91******6780");
        assert!(
            sent["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["detail"] == "Sent by WhatsApp to +91******6780."),
            "{sent}"
        );
        // The outbox holds customers' names and live links: signed-in admins only.
        for (client, refused) in [
            (app.client(), StatusCode::UNAUTHORIZED),
            (operator.clone(), StatusCode::FORBIDDEN),
        ] {
            let (status, _, body) = app.get(&client, "/sandbox/messages").await;
            assert_eq!(status, refused);
            assert!(!body.contains("Asha") && !body.contains(&link), "{body}");
        }
        let outbox = admin
            .get(format!("{}/sandbox/messages", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let row = outbox
            .split("<tr data-testid=\"sandbox-message\">")
            .nth(1)
            .expect("one message in the sink");
        assert!(
            row.contains("WHATSAPP") && row.contains("+91******6780"),
            "{row}"
        );
        assert!(row.contains(&link.replace('&', "&amp;")), "{row}");
        assert!(!outbox.contains("9123456780"), "the number is masked");
        let sends = rows_of(&app, "link.send").await;
        assert_eq!(sends.len(), 1);
        assert!(sends[0].detail.contains("whatsapp"), "{}", sends[0].detail);

        // Message Central's fixed return address: the session is found by its journey id.
        let journey_id = sent["provider_ids"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == "Journey id")
            .map(|p| p[1].as_str().unwrap().to_string())
            .expect("a journey id");
        let page = app
            .client()
            .get(format!(
                "{}/kyc/return?journeyId={journey_id}&status=approved",
                app.base
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Thank you"), "{page}");
        // The customer's claim only: the session waits for an operator's confirmation.
        let returned = detail(&app, &operator, &public_id).await;
        assert_eq!(returned["summary"]["status"], "returned");
        assert_eq!(returned["return_claim"]["reported"], "approved");
        // An unknown journey id changes nothing and still thanks the customer.
        let page = app
            .client()
            .get(format!(
                "{}/kyc/return?journey_id=no-such-journey&status=approved",
                app.base
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("Thank you"), "{page}");
    }
);

both_backends!(
    dashboard_counts_funnel_chart_and_expiring,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        let credential: i64 =
            sqlx::query_scalar("SELECT id FROM credentials WHERE kind = 'eko_digilocker'")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        let olga: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'olga@example.com'")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        let now = kyc_desk::server::db::now();
        let today = now - now.rem_euclid(86_400);
        // (name, created at, status, expires at, events reached)
        let sessions: [(&str, i64, &str, i64, &[&str]); 7] = [
            (
                "A",
                today,
                "completed",
                now + 3600,
                &["sent", "returned", "completed"],
            ),
            ("B", today, "started", now + 300, &[]),
            ("C", today, "issued", now + 3600, &["sent"]),
            ("D", today - 3 * 86_400 + 10, "failed", now, &[]),
            ("E", today - 20 * 86_400, "completed", now, &["completed"]),
            ("F", today - 40 * 86_400, "completed", now, &["completed"]),
            // The customer came back; no verdict yet: returned, not completed.
            ("G", today, "returned", now + 3600, &["sent", "returned"]),
        ];
        let mut conn = app.state.db.pool.acquire().await.unwrap();
        for (name, created_at, status, expires_at, events) in sessions {
            let id = kyc_desk::server::db::links::insert(
                &mut conn,
                &kyc_desk::server::db::links::NewSession {
                    public_id: &format!("dashboard{name}"),
                    idempotency_key: &format!("dashboard-key-{name}-xxxxxxxx"),
                    provider: "eko",
                    flow: "digilocker",
                    environment: "uat",
                    credential_id: credential,
                    sandbox: true,
                    customer_name: &format!("Customer {name}"),
                    phone: "+919876500000",
                    email: None,
                    internal_ref: None,
                    documents: "AADHAAR",
                    consent_note: "ok",
                    created_by: olga,
                    client_ref_id: None,
                    supersedes: None,
                    search_text: "customer",
                    now: created_at,
                    customer_link: None,
                },
            )
            .await
            .unwrap();
            sqlx::query("UPDATE kyc_sessions SET status = $1, expires_at = $2 WHERE id = $3")
                .bind(status)
                .bind(expires_at)
                .bind(id)
                .execute(&mut *conn)
                .await
                .unwrap();
            for kind in events {
                kyc_desk::server::db::links::add_event(&mut conn, id, kind, "test", "", created_at)
                    .await
                    .unwrap();
            }
        }
        drop(conn);
        let (status, stats) = app.call(&operator, "dashboard_stats", &[]).await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        let count = |period: usize, status: &str| {
            let index = kyc_desk::types::KycStatus::ALL
                .iter()
                .position(|s| s.as_str() == status)
                .unwrap();
            stats["periods"][period][1][index].as_i64().unwrap()
        };
        assert_eq!(stats["periods"][0][0], "Today");
        assert_eq!(
            [
                count(0, "completed"),
                count(0, "started"),
                count(0, "issued"),
                count(0, "failed")
            ],
            [1, 1, 1, 0]
        );
        assert_eq!(count(1, "failed"), 1, "7 days include D");
        assert_eq!(count(1, "completed"), 1);
        assert_eq!(count(2, "completed"), 2, "30 days include E, not F");
        assert_eq!(count(0, "returned"), 1, "G awaits confirmation");
        // Created 6; E completed without a recorded send, opening, start or return, so it
        // counts for each; so does A, and G (returned) counts as opened and started.
        // G came back but is not completed: awaiting confirmation, counted apart.
        assert_eq!(
            stats["funnel"],
            serde_json::json!([
                ["Created", 6],
                ["Sent", 3],
                ["Opened", 2],
                ["Started", 2],
                ["Returned", 2],
                ["Completed", 2]
            ])
        );
        assert_eq!(stats["awaiting_confirmation"], 1);
        let per_day = stats["per_day"].as_array().unwrap();
        assert_eq!(per_day.len(), 14);
        assert_eq!(per_day[13][1], 4, "today");
        assert_eq!(per_day[10][1], 1, "three days ago");
        let total: i64 = per_day.iter().map(|d| d[1].as_i64().unwrap()).sum();
        assert_eq!(total, 5, "older sessions are outside the chart");
        let expiring = stats["expiring"].as_array().unwrap();
        assert_eq!(expiring.len(), 1);
        assert_eq!(expiring[0]["public_id"], "dashboardB");

        // The landing page draws both charts as SVG on the server (readable without JavaScript).
        let page = operator
            .get(format!("{}/", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.matches("<svg").count() >= 2, "{page}");
        assert!(page.contains("dashboardB"), "the expiring link is listed");
        assert!(
            page.contains("1 returned session is awaiting confirmation"),
            "{page}"
        );
    }
);

// Issue 18 §4: an export filtered by a customer's address or phone number records the
// filter as typed with the address and number masked (it was recorded URL-encoded, as
// `meera%40example.com` and `98765%2043210`, which no scrub read).
both_backends!(
    exports_filtered_by_contact_details_are_recorded_masked,
    |backend| async move {
        let (app, operator, _) = sandbox_app(backend).await;
        app.user("ada@example.com", Role::Auditor).await;
        let auditor = app.signed_in("ada@example.com").await;
        for q in ["meera@example.com", "98765 43210"] {
            let response = operator
                .get(format!("{}/sessions/export.csv", app.base))
                .query(&[("q", q)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let response = auditor
            .get(format!("{}/audit/export.csv", app.base))
            .query(&[("q", "1234 5678 9012")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut recorded: Vec<String> = rows_of(&app, "session.export")
            .await
            .iter()
            .map(|row| {
                let detail: Value = serde_json::from_str(&row.detail).unwrap();
                detail["filter"]["q"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let audit_export = rows_of(&app, "audit.export").await;
        let detail: Value = serde_json::from_str(&audit_export[0].detail).unwrap();
        recorded.push(
            detail["filter"]["q"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        assert_eq!(
            recorded,
            ["m***@example.com", "***** *3210", "**** **** 9012"]
        );
    }
);
