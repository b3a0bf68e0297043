//! A verdict comes from the provider or from a named staff member, never from a URL: forged
//! customer returns move a session to `returned` at most and are shown as a claim; operators
//! and admins record a Message Central outcome with a note (auditors cannot); Eko sessions
//! end only on Eko's answers; repeated returns count on one timeline event; returns carry the
//! client address, are limited per address, and find their session by the journey id or token
//! of any of its mints, through the mint table's indexes.

use crate::audit::rows_of;
use crate::common;

use common::{TestApp, forms};
use kyc_desk::server::auth::throttle::RETURNS_PER_ADDRESS;
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::Value;

const OPERATOR: &str = "olga@example.com";
const ADMIN: &str = "root@example.com";
const AUDITOR: &str = "audrey@example.com";

/// A sandbox server with an operator, an admin and an auditor signed in.
async fn world(
    backend: common::Backend,
) -> (TestApp, reqwest::Client, reqwest::Client, reqwest::Client) {
    let app = common::sandbox_app(backend, &[]).await;
    app.user(OPERATOR, Role::Operator).await;
    app.user(ADMIN, Role::Admin).await;
    app.user(AUDITOR, Role::Auditor).await;
    let operator = app.signed_in(OPERATOR).await;
    let admin = app.signed_in(ADMIN).await;
    let auditor = app.signed_in(AUDITOR).await;
    (app, operator, admin, auditor)
}

/// Creates a link of `option` for `name`; returns its public id.
async fn create(app: &TestApp, client: &reqwest::Client, option: &str, name: &str) -> String {
    let args = forms::link_form_with(option, name, "9876543210", &forms::form_key(), &[]);
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, body) = app.call(client, "create_link", &args).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["summary"]["status"], "started", "{body}");
    body["summary"]["public_id"].as_str().unwrap().to_string()
}

async fn detail(app: &TestApp, client: &reqwest::Client, public_id: &str) -> Value {
    let (status, body) = app
        .call(client, "session_detail", &[("public_id", public_id)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// A column of the session `public_id`, as text.
async fn column(app: &TestApp, name: &str, public_id: &str) -> String {
    sqlx::query_scalar(&format!(
        "SELECT {name} FROM kyc_sessions WHERE public_id = $1"
    ))
    .bind(public_id)
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap()
}

/// A customer's (or anyone's) anonymous GET of `path`; returns status, request id, body.
async fn anonymous_get(app: &TestApp, path: &str) -> (StatusCode, String, String) {
    let response = app
        .client()
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, request_id, response.text().await.unwrap())
}

async fn record(
    app: &TestApp,
    client: &reqwest::Client,
    public_id: &str,
    outcome: &str,
    note: &str,
) -> (StatusCode, Value) {
    app.call(
        client,
        "record_outcome",
        &[
            ("public_id", public_id),
            ("outcome", outcome),
            ("note", note),
        ],
    )
    .await
}

fn kinds(detail: &Value) -> Vec<String> {
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

both_backends!(
    forged_returns_leave_message_central_sessions_returned,
    |backend| async move {
        let (app, operator, _, _) = world(backend).await;
        let approved = create(&app, &operator, "message_central:trial:basic", "Asha Rao").await;
        let denied = create(&app, &operator, "message_central:trial:basic", "Ravi Kumar").await;
        let by_token = create(
            &app,
            &operator,
            "message_central:trial:premium",
            "Meena Das",
        )
        .await;
        let by_path = create(
            &app,
            &operator,
            "message_central:trial:premium",
            "Kiran Rao",
        )
        .await;

        // The fixed return address with a journey id and a forged status, as anyone can type
        // it into a browser.
        let journey = column(&app, "journey_id", &approved).await;
        let (status, request_id, page) = anonymous_get(
            &app,
            &format!("/kyc/return?journey_id={journey}&status=approved"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Thank you"), "{page}");
        let journey = column(&app, "journey_id", &denied).await;
        anonymous_get(
            &app,
            &format!("/kyc/return?journey_id={journey}&status=denied"),
        )
        .await;
        let token = column(&app, "provider_token", &by_token).await;
        anonymous_get(&app, &format!("/kyc/return?token={token}&status=completed")).await;
        anonymous_get(&app, &format!("/kyc/return/{by_path}?status=verified")).await;

        for (public_id, claim) in [
            (&approved, "approved"),
            (&denied, "denied"),
            (&by_token, "completed"),
            (&by_path, "verified"),
        ] {
            let seen = detail(&app, &operator, public_id).await;
            assert_eq!(seen["summary"]["status"], "returned", "{claim}: {seen}");
            assert_eq!(seen["return_claim"]["reported"], claim, "{seen}");
            assert_eq!(seen["return_claim"]["count"], 1, "{seen}");
            assert_eq!(seen["outcome_recordable"], true, "{seen}");
            assert!(seen["recorded_outcome"].is_null(), "{seen}");
            assert!(seen["last_error"].is_null(), "{seen}");
            assert_eq!(kinds(&seen).last().unwrap(), "returned", "{seen}");
            let event = seen["timeline"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(event["actor"], "customer");
            assert!(
                event["detail"].as_str().unwrap().contains(&format!(
                    "Customer's browser reported: {claim} — not confirmed"
                )),
                "{event}"
            );
        }

        // No verdict reached the audit log; each return has its own row carrying the real
        // request's client address and request id.
        assert!(rows_of(&app, "link.status").await.is_empty());
        let returns = rows_of(&app, "link.return").await;
        assert_eq!(returns.len(), 4, "{returns:#?}");
        let first = &returns[0];
        assert_eq!(first.actor_role, "anonymous");
        assert_eq!(first.object_id, approved);
        assert_eq!(first.ip, "127.0.0.1", "{first:#?}");
        assert_eq!(first.request_id, request_id, "{first:#?}");
        assert!(!first.request_id.starts_with("system-"));
        assert!(first.detail.contains("approved"), "{first:#?}");
        assert!(
            !returns.iter().any(|r| r.detail.contains(&token)),
            "the token is never recorded"
        );
    }
);

both_backends!(
    staff_record_message_central_outcomes_with_a_note,
    |backend| async move {
        let (app, operator, admin, auditor) = world(backend).await;
        let public_id = create(&app, &operator, "message_central:trial:basic", "Asha Rao").await;
        let other = create(&app, &operator, "message_central:trial:basic", "Ravi Kumar").await;

        // Before the customer came back there is nothing to confirm.
        let (status, body) = record(&app, &operator, &public_id, "completed", "Checked.").await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(detail(&app, &operator, &public_id).await["return_claim"].is_null());

        for id in [&public_id, &other] {
            anonymous_get(&app, &format!("/kyc/return/{id}?status=approved")).await;
        }

        // An auditor reads the session but cannot record: the gate refuses them over HTTP.
        let (status, body) = record(&app, &auditor, &public_id, "completed", "I say so.").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.to_string().contains("cannot do this"), "{body}");
        assert_eq!(
            detail(&app, &auditor, &public_id).await["summary"]["status"],
            "returned"
        );

        // The note and the outcome are required, each named under its field.
        let (status, body) = record(&app, &operator, &public_id, "completed", "   ").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let fields = body["Validation"]["fields"].as_array().unwrap();
        assert_eq!(fields.len(), 1, "{body}");
        assert_eq!(fields[0]["field"], "note");
        let (status, body) = record(&app, &operator, &public_id, "", "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let named: Vec<&str> = body["Validation"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, ["outcome", "note"], "{body}");
        let (status, body) = record(&app, &operator, &public_id, "approved", "x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) =
            record(&app, &operator, &public_id, "completed", &"n".repeat(501)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["Validation"]["fields"][0]["field"], "note");
        assert_eq!(
            detail(&app, &operator, &public_id).await["summary"]["status"],
            "returned",
            "refused forms change nothing"
        );
        assert!(rows_of(&app, "link.outcome_recorded").await.is_empty());

        // The operator checked Message Central's console and records the outcome.
        let note = "Console shows the journey verified; customer called from 9876543210.";
        let (status, done) = record(&app, &operator, &public_id, "completed", note).await;
        assert_eq!(status, StatusCode::OK, "{done}");
        assert_eq!(done["summary"]["status"], "completed");
        assert_eq!(done["outcome_recordable"], false);
        assert_eq!(done["recorded_outcome"]["outcome"], "completed");
        assert_eq!(done["recorded_outcome"]["by"], OPERATOR);
        let stored_note = done["recorded_outcome"]["note"].as_str().unwrap();
        assert!(stored_note.starts_with("Console shows the journey verified"));
        assert!(!stored_note.contains("9876543210"), "{stored_note}");
        let last = done["timeline"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["kind"], "completed");
        assert_eq!(last["actor"], OPERATOR);
        assert!(
            last["detail"].as_str().unwrap().contains("Console shows"),
            "{last}"
        );
        assert!(!last["detail"].as_str().unwrap().contains("9876543210"));

        let rows = rows_of(&app, "link.outcome_recorded").await;
        assert_eq!(rows.len(), 1, "{rows:#?}");
        let row = &rows[0];
        assert_eq!(row.actor_email, OPERATOR);
        assert_eq!(row.actor_role, "operator");
        assert_eq!(row.object_id, public_id);
        assert_eq!(row.outcome, "success");
        assert_eq!(row.ip, "127.0.0.1");
        assert!(row.detail.contains("\"completed\""), "{row:#?}");
        assert!(row.detail.contains("Console shows"), "{row:#?}");
        assert!(
            row.detail.contains("approved"),
            "the claim is kept: {row:#?}"
        );
        assert!(!row.detail.contains("9876543210"), "{row:#?}");

        // Auditors see the claim, the confirmation and who made it.
        let seen = detail(&app, &auditor, &public_id).await;
        assert_eq!(seen["return_claim"]["reported"], "approved");
        assert_eq!(seen["recorded_outcome"]["by"], OPERATOR);
        assert_eq!(seen["recorded_outcome"]["outcome"], "completed");

        // Once recorded, the outcome is not recorded again.
        let (status, body) = record(&app, &admin, &public_id, "failed", "Changed my mind.").await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        // An admin records a failure for the other session, whatever its browser claimed.
        let (status, failed) = record(
            &app,
            &admin,
            &other,
            "failed",
            "Console: face match rejected.",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{failed}");
        assert_eq!(failed["summary"]["status"], "failed");
        assert!(
            failed["last_error"].as_str().unwrap().contains(ADMIN),
            "{failed}"
        );
        assert_eq!(rows_of(&app, "link.outcome_recorded").await.len(), 2);
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
    eko_sessions_end_only_on_what_eko_answers,
    |backend| async move {
        let (app, operator, admin, _) = world(backend).await;
        let public_id = create(&app, &operator, "eko:uat:digilocker", "Meera Iyer").await;
        anonymous_get(&app, &format!("/kyc/return/{public_id}?status=approved")).await;
        let seen = detail(&app, &operator, &public_id).await;
        assert_eq!(seen["summary"]["status"], "returned", "{seen}");
        assert_eq!(seen["return_claim"]["reported"], "approved");
        assert_eq!(seen["outcome_recordable"], false, "{seen}");
        for client in [&operator, &admin] {
            let (status, body) =
                record(&app, client, &public_id, "completed", "Looks fine to me.").await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert!(body.to_string().contains("Eko"), "{body}");
        }
        assert_eq!(
            detail(&app, &operator, &public_id).await["summary"]["status"],
            "returned"
        );
        assert!(rows_of(&app, "link.outcome_recorded").await.is_empty());
        // Only Eko's own answer can end it: the customer never consented in DigiLocker, so
        // Eko's status API says not finished and the session stays open.
        assert_eq!(
            kyc_desk::server::links::jobs::poll_due(&app.state, "test-poller")
                .await
                .unwrap(),
            1
        );
        let polled = detail(&app, &operator, &public_id).await;
        assert_eq!(polled["summary"]["status"], "returned", "{polled}");
        assert_eq!(kinds(&polled).last().unwrap(), "polled");
        assert!(polled["recorded_outcome"].is_null());
    }
);

both_backends!(
    repeated_returns_count_on_one_timeline_event,
    |backend| async move {
        let (app, operator, _, _) = world(backend).await;
        let public_id = create(&app, &operator, "message_central:trial:basic", "Asha Rao").await;
        let before = detail(&app, &operator, &public_id).await;
        let events_before = kinds(&before).len();
        for _ in 0..50 {
            let (status, _, _) =
                anonymous_get(&app, &format!("/kyc/return/{public_id}?status=approved")).await;
            assert_eq!(status, StatusCode::OK);
        }
        let seen = detail(&app, &operator, &public_id).await;
        assert_eq!(seen["summary"]["status"], "returned");
        assert_eq!(kinds(&seen).len(), events_before + 1, "{seen}");
        let event = seen["timeline"].as_array().unwrap().last().unwrap().clone();
        assert!(
            event["detail"]
                .as_str()
                .unwrap()
                .contains("came back 50 times"),
            "{event}"
        );
        assert_eq!(seen["return_claim"]["count"], 50);

        // After the end, late returns count on one event of their own.
        let (status, body) = record(&app, &operator, &public_id, "completed", "Checked.").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for _ in 0..3 {
            anonymous_get(&app, &format!("/kyc/return/{public_id}?status=denied")).await;
        }
        let after = detail(&app, &operator, &public_id).await;
        assert_eq!(after["summary"]["status"], "completed");
        let late: Vec<&Value> = after["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "late_answer")
            .collect();
        assert_eq!(late.len(), 1, "{after}");
        assert!(
            late[0]["detail"]
                .as_str()
                .unwrap()
                .contains("came back 53 times"),
            "{}",
            late[0]
        );
        assert_eq!(kinds(&after).len(), events_before + 3, "{after}");
    }
);

both_backends!(
    returns_are_limited_per_client_address,
    |backend| async move {
        let app = common::sandbox_app(backend, &[]).await;
        for n in 0..RETURNS_PER_ADDRESS {
            let (status, _, _) = anonymous_get(
                &app,
                "/kyc/return?journey_id=no-such-journey&status=approved",
            )
            .await;
            assert_eq!(status, StatusCode::OK, "return {n}");
        }
        let response = app
            .client()
            .get(format!(
                "{}/kyc/return?journey_id=no-such-journey&status=approved",
                app.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(wait > 0 && wait <= 600, "{wait}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let page = response.text().await.unwrap();
        assert!(
            page.contains("Too many requests from your network"),
            "{page}"
        );
        // The session-named return address counts for the same address too.
        let (status, _, _) = anonymous_get(&app, "/kyc/return/nosuchsession?status=ok").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
);

both_backends!(
    a_return_through_an_earlier_mint_still_finds_its_session,
    |backend| async move {
        // A session follows its newest provider URL, so its own row no longer carries an
        // earlier one's ids; a customer who comes back through the earlier URL is still matched
        // (through the mint rows) and the return lands on the session.
        let (app, operator, _, _) = world(backend).await;
        let public_id = create(&app, &operator, "message_central:trial:basic", "Asha Rao").await;
        let earlier = column(&app, "journey_id", &public_id).await;
        // A later mint, as a customer link's new provider URL records it.
        let pool = &app.state.db.pool;
        sqlx::query(
            "INSERT INTO link_mints (session_id, minted_at, expires_at, token, journey_id) \
             SELECT id, updated_at + 1, COALESCE(expires_at, 0), 'T-LATER', 'J-LATER' \
             FROM kyc_sessions WHERE public_id = $1",
        )
        .bind(&public_id)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE kyc_sessions SET journey_id = 'J-LATER', provider_token = 'T-LATER' \
             WHERE public_id = $1",
        )
        .bind(&public_id)
        .execute(pool)
        .await
        .unwrap();
        let (status, _, _) = anonymous_get(
            &app,
            &format!("/kyc/return?journey_id={earlier}&status=approved"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let seen = detail(&app, &operator, &public_id).await;
        assert_eq!(seen["summary"]["status"], "returned", "{seen}");
        assert_eq!(seen["return_claim"]["reported"], "approved", "{seen}");
    }
);

both_backends!(return_lookups_read_the_mint_indexes, |backend| async move {
    // A return is matched through `link_mints` (every minted URL's ids); the session table
    // carries no index of its own on those ids (each would be one more entry written by every
    // update that moves a session).
    let app = TestApp::start(backend).await;
    let pool = &app.state.db.pool;
    let indexed = |table: &str, column: &str| {
        let sql = match backend {
            common::Backend::Sqlite => format!(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}' \
                 AND sql LIKE '%({column})%' ORDER BY name"
            ),
            common::Backend::Postgres => format!(
                "SELECT indexname::text FROM pg_indexes WHERE tablename = '{table}' \
                 AND indexdef LIKE '%({column})%' ORDER BY indexname"
            ),
        };
        async move {
            sqlx::query_scalar::<_, String>(&sql)
                .fetch_all(pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(indexed("link_mints", "token").await, ["link_mints_token"]);
    assert_eq!(
        indexed("link_mints", "journey_id").await,
        ["link_mints_journey"]
    );
    for column in ["provider_token", "journey_id", "reference_id"] {
        assert!(indexed("kyc_sessions", column).await.is_empty(), "{column}");
    }
    if backend == common::Backend::Sqlite {
        // And the lookups a return makes read them instead of the whole table.
        for (column, index) in [
            ("token", "link_mints_token"),
            ("journey_id", "link_mints_journey"),
        ] {
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
                "EXPLAIN QUERY PLAN {} WHERE s.id = (SELECT m.session_id FROM link_mints m \
                 WHERE m.{column} = 'x' ORDER BY m.id DESC LIMIT 1)",
                kyc_desk::server::db::links::SESSION_SELECT
            ))
            .fetch_all(pool)
            .await
            .unwrap();
            assert!(
                plan.iter()
                    .any(|(.., step)| step.contains(&format!("USING INDEX {index}"))),
                "{plan:?}"
            );
        }
    }
});
