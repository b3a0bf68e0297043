//! KYC Desk's own customer link (`/v/{code}`): issued without a provider call; the customer's
//! page (no personal data but the number's last digits, English and Hindi, the versioned
//! privacy notice); consent recorded with the notice version, language, time and keyed hashes;
//! the provider's URL minted at Start, reused while valid and unused, minted again within the
//! link's budget (which parallel Starts cannot outrun); withdrawal; an expired or unknown link
//! says so; the one-time code and its limits; the admin's notice versions.

use crate::common;

use common::{TestApp, forms};
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::Value;

const OPERATOR: &str = "olga@example.com";
const ADMIN: &str = "root@example.com";

/// A sandbox server (with `extra` settings) and a signed-in operator and admin.
async fn world(
    backend: common::Backend,
    extra: &[(&str, &str)],
) -> (TestApp, reqwest::Client, reqwest::Client) {
    let app = common::sandbox_app(backend, extra).await;
    app.user(OPERATOR, Role::Operator).await;
    app.user(ADMIN, Role::Admin).await;
    let operator = app.signed_in(OPERATOR).await;
    let admin = app.signed_in(ADMIN).await;
    (app, operator, admin)
}

/// Issues a customer link of `option` with the form's `extra` fields; returns the detail.
async fn issue(
    app: &TestApp,
    operator: &reqwest::Client,
    option: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut fields = vec![("handover", "customer_link")];
    fields.extend_from_slice(extra);
    let args = forms::link_form_with(
        option,
        "Asha Rao",
        "9876543210",
        &forms::form_key(),
        &fields,
    );
    let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.call(operator, "create_link", &args).await
}

/// The code of a customer link's address.
fn code_of(detail: &Value) -> String {
    let url = detail["link_url"].as_str().expect("a link");
    url.rsplit("/v/").next().unwrap().to_string()
}

/// A customer's browser: its own cookies, no redirects followed.
fn customer() -> reqwest::Client {
    forms::browser()
}

async fn get(app: &TestApp, client: &reqwest::Client, path: &str) -> (StatusCode, String) {
    let response = client
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// Posts a customer form from the page's own origin; status, `Location`, body.
async fn post(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String, String) {
    let response = client
        .post(format!("{}{path}", app.base))
        .header("origin", &app.base)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, response.text().await.unwrap())
}

async fn detail(app: &TestApp, client: &reqwest::Client, public_id: &str) -> Value {
    let (status, body) = app
        .call(client, "session_detail", &[("public_id", public_id)])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn kinds(detail: &Value) -> Vec<String> {
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

async fn scalar(app: &TestApp, sql: &str, public_id: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(public_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

async fn execute(app: &TestApp, sql: &str, public_id: &str) {
    sqlx::query(sql)
        .bind(public_id)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
}

both_backends!(
    a_customer_link_mints_the_provider_url_when_the_customer_starts,
    |backend| async move {
        let (app, operator, _admin) = world(backend, &[]).await;

        // Lifetimes outside the bounds are field errors.
        for bad in ["0", "169", "two days"] {
            let (status, body) = issue(
                &app,
                &operator,
                "eko:uat:digilocker",
                &[("lifetime_hours", bad)],
            )
            .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert!(body.to_string().contains("lifetime_hours"), "{body}");
        }
        let (status, body) = issue(&app, &operator, "message_central:trial:basic", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["summary"]["status"], "issued", "{body}");
        let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let code = code_of(&body);
        assert_eq!(code.len(), 22, "128 bits, URL-safe base64: {code}");
        assert!(
            code.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert!(
            body["link_url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/v/", app.base)),
            "{body}"
        );
        assert_eq!(body["customer_link"]["mints_used"], 0);
        assert_eq!(body["customer_link"]["mint_limit"], 3);
        assert!(body["customer_link"]["consent"].is_null());
        assert_eq!(kinds(&body), ["issued"]);
        // No provider call yet: no trial link spent, no mint.
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) FROM link_mints m JOIN kyc_sessions s ON s.id = m.session_id WHERE s.public_id = $1", &public_id).await,
            0
        );
        let hours = scalar(
            &app,
            "SELECT (link_expires_at - created_at) / 3600 FROM kyc_sessions WHERE public_id = $1",
            &public_id,
        )
        .await;
        assert_eq!(hours, 72, "the default lifetime");

        // The customer opens it: the company, the number's last digits, what happens, the
        // notice; no name, no full number.
        let browser = customer();
        let (status, page) = get(&app, &browser, &format!("/v/{code}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("ending 3210"), "{page}");
        assert!(page.contains("Privacy notice (version 1)"), "{page}");
        assert!(page.contains("Message Central"), "{page}");
        assert!(
            !page.contains("9876543210") && !page.contains("Asha"),
            "{page}"
        );
        assert!(
            !page.contains("<script"),
            "no script on the customer's page"
        );
        assert!(page.len() < 30 * 1024, "{} bytes", page.len());
        let shown = detail(&app, &operator, &public_id).await;
        assert_eq!(shown["summary"]["status"], "opened");
        assert!(shown["customer_link"]["opened_at"].is_string(), "{shown}");

        // Hindi, kept by a cookie.
        let (_, hindi) = get(&app, &browser, &format!("/v/{code}?lang=hi")).await;
        assert!(
            hindi.contains("lang=\"hi\"") && hindi.contains("गोपनीयता सूचना"),
            "{hindi}"
        );
        let (_, again) = get(&app, &browser, &format!("/v/{code}")).await;
        assert!(again.contains("lang=\"hi\""), "the choice is kept");

        // Start without consent: the page again, with the reason; nothing minted.
        let start = format!("/v/{code}/start");
        let (status, _, page) = post(
            &app,
            &browser,
            &start,
            &[("lang", "hi"), ("notice_version", "1")],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("टिक करें"), "the reason, in Hindi: {page}");
        // A cross-site post changes nothing.
        let refused = browser
            .post(format!("{}{start}", app.base))
            .header("origin", "https://evil.example")
            .form(&[("consent", "on"), ("notice_version", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            detail(&app, &operator, &public_id).await["summary"]["status"],
            "opened"
        );

        // Start with consent: on to the provider's URL, made now.
        let consent = [("lang", "hi"), ("notice_version", "1"), ("consent", "on")];
        let (status, first_url, _) = post(&app, &browser, &start, &consent).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(first_url.contains("/sandbox/"), "{first_url}");
        let shown = detail(&app, &operator, &public_id).await;
        assert_eq!(shown["summary"]["status"], "started", "{shown}");
        assert_eq!(shown["customer_link"]["mints_used"], 1);
        let given = &shown["customer_link"]["consent"];
        assert_eq!(given["notice_version"], 1, "{shown}");
        assert_eq!(given["language"], "hi");
        assert_eq!(given["client_hash"].as_str().unwrap().len(), 12);
        let stored_hash: String =
            sqlx::query_scalar("SELECT consent_client_hash FROM kyc_sessions WHERE public_id = $1")
                .bind(&public_id)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert_eq!(stored_hash.len(), 64);
        assert!(!stored_hash.contains("127.0.0.1"));
        assert_eq!(kinds(&shown), ["issued", "opened", "consented", "started"]);
        // The staff-facing link is still KYC Desk's.
        assert!(
            shown["link_url"].as_str().unwrap().contains("/v/"),
            "{shown}"
        );

        // Back while it is valid and unused: the same URL, no new mint.
        let (status, url, _) = post(&app, &browser, &start, &consent).await;
        assert_eq!(
            (status, url.as_str()),
            (StatusCode::SEE_OTHER, first_url.as_str())
        );
        assert_eq!(
            detail(&app, &operator, &public_id).await["customer_link"]["mints_used"],
            1
        );

        // The provider's URL expired before the customer used it: a new one.
        execute(
            &app,
            "UPDATE kyc_sessions SET provider_url_expires_at = 1 WHERE public_id = $1",
            &public_id,
        )
        .await;
        let (status, second_url, _) = post(&app, &browser, &start, &consent).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_ne!(second_url, first_url);
        let shown = detail(&app, &operator, &public_id).await;
        assert_eq!(shown["customer_link"]["mints_used"], 2);
        assert!(kinds(&shown).contains(&"minted".to_string()), "{shown}");

        // Used: the customer came back from it; the next Start makes the third.
        let (status, _) = get(
            &app,
            &app.client(),
            &format!("/kyc/return/{public_id}?status=failed"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            detail(&app, &operator, &public_id).await["summary"]["status"],
            "returned"
        );
        let (status, third_url, _) = post(&app, &browser, &start, &consent).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(third_url != second_url && third_url != first_url);
        let shown = detail(&app, &operator, &public_id).await;
        assert_eq!(shown["summary"]["status"], "started");
        assert_eq!(shown["customer_link"]["mints_used"], 3);

        // The budget is spent: a clear page, and the operator sees it.
        execute(
            &app,
            "UPDATE kyc_sessions SET provider_url_expires_at = 1 WHERE public_id = $1",
            &public_id,
        )
        .await;
        let (status, _, page) = post(&app, &browser, &start, &[("lang", "en")]).await;
        assert_eq!(status, StatusCode::CONFLICT, "{page}");
        assert!(
            page.contains("cannot start the verification again"),
            "{page}"
        );
        assert!(
            page.contains("Ask KYC Desk Sandbox for a new link"),
            "{page}"
        );
        let shown = detail(&app, &operator, &public_id).await;
        assert_eq!(shown["customer_link"]["mints_used"], 3);
        assert!(kinds(&shown).contains(&"mints_used_up".to_string()));
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) FROM link_mints m JOIN kyc_sessions s ON s.id = m.session_id WHERE s.public_id = $1", &public_id).await,
            3
        );
        // A Message Central trial account spends one of its links per mint, not per issue.
        let trial_used: i64 = sqlx::query_scalar(
            "SELECT trial_links_used FROM credentials WHERE kind = 'message_central_ekyc' \
             AND environment = 'trial' AND status = 'active'",
        )
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        assert_eq!(trial_used, 3);

        // Withdrawal ends it; the page says so from then on.
        let (status, page) = get(&app, &browser, &format!("/v/{code}/withdraw?lang=en")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Withdraw your consent?"), "{page}");
        let (status, _, page) = post(
            &app,
            &browser,
            &format!("/v/{code}/withdraw"),
            &[("lang", "en")],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("Your consent was withdrawn"), "{page}");
        let shown = detail(&app, &operator, &public_id).await;
        assert_eq!(shown["summary"]["status"], "withdrawn");
        assert!(
            shown["link_url"].is_null(),
            "an ended session offers no link"
        );
        let (_, page) = get(&app, &browser, &format!("/v/{code}")).await;
        assert!(page.contains("Your consent was withdrawn"), "{page}");
        let (status, _, _) = post(&app, &browser, &start, &consent).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a withdrawn link's Start shows the end page"
        );
        assert_eq!(
            detail(&app, &operator, &public_id).await["customer_link"]["mints_used"],
            3
        );

        // Each step is audited; the code itself is in no audit row.
        let audit = app.audit_text().await;
        for action in ["link.open", "link.consent", "link.mint", "link.withdraw"] {
            assert!(audit.contains(action), "{action} audited");
        }
        assert!(!audit.contains(&code), "the link's code is a bearer token");

        // An unknown code, and an expired link.
        let (status, page) = get(&app, &browser, "/v/AAAAAAAAAAAAAAAAAAAAAA").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(page.contains("This link is not valid"), "{page}");
        let (_, other) = issue(
            &app,
            &operator,
            "eko:uat:digilocker",
            &[("lifetime_hours", "1")],
        )
        .await;
        let other_id = other["summary"]["public_id"].as_str().unwrap().to_string();
        execute(
            &app,
            "UPDATE kyc_sessions SET link_expires_at = 1, expires_at = 1 WHERE public_id = $1",
            &other_id,
        )
        .await;
        let (status, page) = get(&app, &browser, &format!("/v/{}?lang=en", code_of(&other))).await;
        assert_eq!(status, StatusCode::GONE);
        assert!(
            page.contains("This link has expired")
                && page.contains("Ask KYC Desk Sandbox for a new one"),
            "{page}"
        );
    }
);

both_backends!(
    a_link_made_with_a_version_no_longer_in_service_mints_with_the_current_one,
    |backend| async move {
        let (app, operator, _admin) = world(backend, &[]).await;
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let code = code_of(&body);
        // The link was made with a credential version that is no longer the one in service
        // (as after a rotation); another credential's id stands in for it here. Start reads
        // that version's secrets alongside the active versions, and must not use them.
        execute(
            &app,
            "UPDATE kyc_sessions SET credential_id = (SELECT MIN(id) FROM credentials WHERE kind <> 'eko_digilocker') WHERE public_id = $1",
            &public_id,
        )
        .await;
        let browser = customer();
        let (status, _) = get(&app, &browser, &format!("/v/{code}")).await;
        assert_eq!(status, StatusCode::OK);
        let consent = [("lang", "en"), ("notice_version", "1"), ("consent", "on")];
        let (status, location, body) =
            post(&app, &browser, &format!("/v/{code}/start"), &consent).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert!(location.contains("/sandbox/"), "{location}");
        let shown = detail(&app, &operator, &public_id).await;
        assert_eq!(shown["summary"]["status"], "started", "{shown}");
        assert_eq!(shown["customer_link"]["mints_used"], 1, "{shown}");
    }
);

/// `n` presses of Start with consent on the link `code`, each from its own browser, all at
/// once; the answers' statuses.
fn starts_at_once(
    app: &TestApp,
    code: &str,
    n: usize,
) -> impl std::future::Future<Output = Vec<StatusCode>> {
    let starts: Vec<_> = (0..n)
        .map(|_| {
            let app_base = app.base.clone();
            let path = format!("{app_base}/v/{code}/start");
            tokio::spawn(async move {
                forms::browser()
                    .post(path)
                    .header("origin", app_base)
                    .form(&[("lang", "en"), ("consent", "on"), ("notice_version", "1")])
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    async move {
        let mut statuses = Vec::new();
        for start in starts {
            statuses.push(start.await.unwrap());
        }
        statuses
    }
}

both_backends!(
    parallel_starts_cannot_outrun_the_mint_budget,
    |backend| async move {
        let (app, operator, _admin) = world(backend, &[("KYC_DESK_LINK_MINTS", "2")]).await;
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let code = code_of(&body);
        let browser = customer();
        let (status, _) = get(&app, &browser, &format!("/v/{code}")).await;
        assert_eq!(status, StatusCode::OK);
        let consent = [("lang", "en"), ("notice_version", "1"), ("consent", "on")];
        let (status, _, _) = post(&app, &browser, &format!("/v/{code}/start"), &consent).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        // Its URL expired: eight Starts at once may make one more URL between them.
        execute(
            &app,
            "UPDATE kyc_sessions SET provider_url_expires_at = 1 WHERE public_id = $1",
            &public_id,
        )
        .await;
        let starts = starts_at_once(&app, &code, 8);
        let mut redirected = 0;
        for status in starts.await {
            if status == StatusCode::SEE_OTHER {
                redirected += 1;
            }
        }
        assert!(redirected >= 1, "one Start got the new URL");
        let mints = scalar(
            &app,
            "SELECT mint_count FROM kyc_sessions WHERE public_id = $1",
            &public_id,
        )
        .await;
        assert_eq!(mints, 2, "never more than the budget");
        assert_eq!(
            scalar(&app, "SELECT COUNT(*) FROM link_mints m JOIN kyc_sessions s ON s.id = m.session_id WHERE s.public_id = $1", &public_id).await,
            2
        );
        // The Eko poller follows the newest mint's reference, and polls it.
        let (current, newest, polled): (Option<String>, Option<String>, Option<i64>) =
            sqlx::query_as(
                "SELECT s.reference_id, (SELECT m.reference_id FROM link_mints m \
                 WHERE m.session_id = s.id ORDER BY m.id DESC LIMIT 1), s.next_poll_at \
                 FROM kyc_sessions s WHERE s.public_id = $1",
            )
            .bind(&public_id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert!(current.is_some(), "an Eko mint has a reference");
        assert_eq!(current, newest);
        assert!(polled.is_some(), "the session is being polled");
    }
);

both_backends!(
    parallel_first_starts_consent_once_and_mint_within_the_budget,
    |backend| async move {
        // Eight first presses of Start at once (a double tap, a second tab): the consent, its
        // move and the mint's reservation are one statement for the first to get the row; the
        // others find it consented and go on from there, and the budget of one holds.
        let (app, operator, _admin) = world(backend, &[("KYC_DESK_LINK_MINTS", "1")]).await;
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let code = code_of(&body);
        let (status, _) = get(&app, &customer(), &format!("/v/{code}")).await;
        assert_eq!(status, StatusCode::OK);
        let starts = starts_at_once(&app, &code, 8);
        let mut redirected = 0;
        for status in starts.await {
            assert!(
                [StatusCode::SEE_OTHER, StatusCode::CONFLICT].contains(&status),
                "a Start is sent on or told the link is used up, got {status}"
            );
            if status == StatusCode::SEE_OTHER {
                redirected += 1;
            }
        }
        assert!(redirected >= 1, "the first Start got the URL");
        let count = |sql: &'static str| scalar(&app, sql, &public_id);
        assert_eq!(
            count("SELECT mint_count FROM kyc_sessions WHERE public_id = $1").await,
            1
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM link_mints m JOIN kyc_sessions s ON s.id = m.session_id WHERE s.public_id = $1").await,
            1,
            "one provider URL made"
        );
        for kind in ["consented", "started"] {
            let events: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM kyc_events e JOIN kyc_sessions s ON s.id = e.session_id \
                 WHERE s.public_id = $1 AND e.kind = $2",
            )
            .bind(&public_id)
            .bind(kind)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
            assert_eq!(events, 1, "one {kind} event on the timeline");
        }
        for action in ["link.consent", "link.mint"] {
            let rows: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit_log WHERE action = $1 AND object_id = $2 \
                 AND outcome = 'success'",
            )
            .bind(action)
            .bind(&public_id)
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
            assert_eq!(rows, 1, "one successful {action} audit row");
        }
        let status: String =
            sqlx::query_scalar("SELECT status FROM kyc_sessions WHERE public_id = $1")
                .bind(&public_id)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert_eq!(status, "started");
        let report = app.state.audit.verify(&app.state.db).await.unwrap();
        assert!(report.broken.is_none(), "{}", report.summary());
    }
);

/// The one-time codes in the sandbox's outbox, oldest first.
async fn codes_sent(app: &TestApp, admin: &reqwest::Client) -> Vec<String> {
    let outbox = admin
        .get(format!("{}/sandbox/messages", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut codes: Vec<(usize, String)> = outbox
        .match_indices(" is your code to verify")
        .filter_map(|(at, _)| {
            let code = outbox.get(at.checked_sub(6)?..at)?;
            code.chars()
                .all(|c| c.is_ascii_digit())
                .then(|| (at, code.to_string()))
        })
        .collect();
    codes.sort();
    codes.into_iter().map(|(_, code)| code).collect()
}

both_backends!(
    a_one_time_code_guards_start_and_is_limited,
    |backend| async move {
        let (app, operator, admin) =
            world(backend, &[("KYC_DESK_CUSTOMER_CODE_FLOWS", "digilocker")]).await;
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        assert_eq!(body["customer_link"]["code_required"], true, "{body}");
        let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let code = code_of(&body);
        let browser = customer();
        let (_, page) = get(&app, &browser, &format!("/v/{code}")).await;
        assert!(page.contains("Send me a code"), "{page}");
        let start = format!("/v/{code}/start");
        let consent = [("lang", "en"), ("notice_version", "1"), ("consent", "on")];
        // Start without a code: refused, nothing minted, no consent recorded yet.
        let (status, _, page) = post(&app, &browser, &start, &consent).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("Enter the 6 digits"), "{page}");

        let (status, _, page) = post(&app, &browser, &format!("/v/{code}/code"), &consent).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("We sent a code"), "{page}");
        let sent = codes_sent(&app, &admin).await;
        assert_eq!(sent.len(), 1, "one code in the outbox");
        let right = sent[0].clone();
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        let with_code = |typed: &'static str| {
            [
                ("lang", "en"),
                ("notice_version", "1"),
                ("consent", "on"),
                ("code", typed),
            ]
        };
        let (status, _, page) = post(&app, &browser, &start, &with_code(wrong)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("You can try 4 more times"), "{page}");
        let right: &'static str = Box::leak(right.into_boxed_str());
        let (status, url, _) = post(&app, &browser, &start, &with_code(right)).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "the right code starts");
        assert!(url.contains("/sandbox/"), "{url}");
        let hash: String = sqlx::query_scalar(
            "SELECT COALESCE(otp_hash, 'spent') FROM kyc_sessions WHERE public_id = $1",
        )
        .bind(&public_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
        assert_eq!(hash, "spent", "a used code is gone");

        // Another link: five wrong codes lock it for an hour, the right one included.
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        let other_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let code = code_of(&body);
        let start = format!("/v/{code}/start");
        let (_, _) = get(&app, &browser, &format!("/v/{code}")).await;
        let (status, _, _) = post(&app, &browser, &format!("/v/{code}/code"), &consent).await;
        assert_eq!(status, StatusCode::OK);
        let right: &'static str =
            Box::leak(codes_sent(&app, &admin).await[1].clone().into_boxed_str());
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        let wrong: &'static str = Box::leak(wrong.to_string().into_boxed_str());
        for left in (0..5).rev() {
            let (status, _, page) = post(&app, &browser, &start, &with_code(wrong)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            if left > 0 {
                assert!(page.contains(&format!("try {left} more")), "{page}");
            } else {
                assert!(page.contains("Too many wrong codes"), "{page}");
            }
        }
        let (status, _, page) = post(&app, &browser, &start, &with_code(right)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "locked: even the right code"
        );
        assert!(page.contains("Too many wrong codes"), "{page}");
        let (status, _, _) = post(&app, &browser, &format!("/v/{code}/code"), &consent).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "no codes while locked"
        );
        let shown = detail(&app, &operator, &other_id).await;
        assert!(
            kinds(&shown).contains(&"code_locked".to_string()),
            "{shown}"
        );
        assert_eq!(shown["summary"]["status"], "opened", "nothing started");

        // Sends are limited per link.
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        let code = code_of(&body);
        for _ in 0..5 {
            let (status, _, _) = post(&app, &browser, &format!("/v/{code}/code"), &consent).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, _, page) = post(&app, &browser, &format!("/v/{code}/code"), &consent).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
        assert!(page.contains("Too many codes were sent"), "{page}");
    }
);

both_backends!(
    the_privacy_notice_is_versioned_and_named_by_the_consent,
    |backend| async move {
        let (app, operator, admin) = world(backend, &[]).await;
        let (status, notice) = app.call(&admin, "privacy_notice", &[]).await;
        assert_eq!(status, StatusCode::OK, "{notice}");
        assert_eq!(notice["version"], 1);
        assert!(notice["hi"]["purpose"].as_str().unwrap().contains("सत्यापन"));
        let (status, _) = app.call(&operator, "privacy_notice", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "admins only");

        let mut form: Vec<(String, String)> = Vec::new();
        for language in ["en", "hi"] {
            for part in [
                "purpose",
                "data_items",
                "retention",
                "withdrawal",
                "complaint",
            ] {
                form.push((
                    format!("notice[{language}][{part}]"),
                    format!("{language} {part} of version two"),
                ));
            }
        }
        let args = |form: &[(String, String)]| -> Vec<(String, String)> { form.to_vec() };
        // A missing part is a field error; nothing is written.
        let mut missing = args(&form);
        missing.retain(|(name, _)| name != "notice[hi][retention]");
        let pairs: Vec<(&str, &str)> = missing
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (status, body) = app.call(&admin, "save_privacy_notice", &pairs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().contains("hi.retention"), "{body}");
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, _) = app.call(&operator, "save_privacy_notice", &pairs).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, saved) = app.call(&admin, "save_privacy_notice", &pairs).await;
        assert_eq!(status, StatusCode::OK, "{saved}");
        assert_eq!(saved["version"], 2);
        assert_eq!(saved["created_by"], ADMIN);
        // Version 1 is kept as it was.
        let first: String =
            sqlx::query_scalar("SELECT texts FROM privacy_notices WHERE version = $1")
                .bind(1i64)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert!(first.contains("Reserve Bank of India"), "{first}");
        assert!(app.audit_text().await.contains("notice.save"));

        // The customer texts page shows the saved version, rendered by the server (the page
        // works before its code arrives); the credentials page no longer carries the texts.
        let (status, _, texts) = app.get(&admin, "/texts").await;
        assert_eq!(status, StatusCode::OK);
        for shown in [
            "Version 2 · saved by",
            "en retention of version two",
            r#"data-testid="email-template-form""#,
            r#"data-testid="reminder-templates-form""#,
        ] {
            assert!(texts.contains(shown), "/texts shows {shown}: {texts}");
        }
        let (_, _, credentials) = app.get(&admin, "/credentials").await;
        assert!(!credentials.contains("notice-editor"), "{credentials}");
        let (status, _, _) = app.get(&operator, "/texts").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "admins only");

        // The customer sees version 2 and consents to it; a page still showing version 1
        // is asked again.
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let code = code_of(&body);
        let browser = customer();
        let (_, page) = get(&app, &browser, &format!("/v/{code}?lang=en")).await;
        assert!(
            page.contains("Privacy notice (version 2)")
                && page.contains("en retention of version two"),
            "{page}"
        );
        let start = format!("/v/{code}/start");
        let (status, _, _) = post(
            &app,
            &browser,
            &start,
            &[("lang", "en"), ("notice_version", "1"), ("consent", "on")],
        )
        .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "consent to an old version is not taken"
        );
        let shown = detail(&app, &operator, &public_id).await;
        assert!(
            shown["customer_link"]["consent"].is_null() && shown["summary"]["status"] == "opened",
            "nothing of a refused consent is kept: {shown}"
        );
        let (status, _, _) = post(
            &app,
            &browser,
            &start,
            &[("lang", "en"), ("notice_version", "2"), ("consent", "on")],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let shown = detail(&app, &operator, &public_id).await;
        assert_eq!(
            shown["customer_link"]["consent"]["notice_version"], 2,
            "{shown}"
        );
        assert_eq!(shown["customer_link"]["consent"]["language"], "en");
    }
);

/// Reads the event stream of `response` until an event of `kind` about `public_id` arrives
/// (or a minute passes); returns what it read.
async fn read_until(response: &mut reqwest::Response, public_id: &str, kind: &str) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(seen.contains(public_id) && seen.contains(&format!("\"kind\":\"{kind}\""))) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event for {public_id}; read: {seen}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the stream ended; read: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    seen
}

both_backends!(
    staff_see_session_moves_as_they_happen,
    |backend| async move {
        let (app, operator, _admin) = world(backend, &[]).await;
        // Signed-out callers are sent to sign in, like at every staff door.
        let refused = customer()
            .get(format!("{}/sessions/events", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::SEE_OTHER);
        assert!(
            refused.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/login")
        );
        let mut stream = operator
            .get(format!("{}/sessions/events", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        assert_eq!(
            stream.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
        let seen = read_until(&mut stream, &public_id, "issued").await;
        assert!(seen.contains("event: sessions"), "{seen}");
        // The customer opens the link: the staff's stream hears it.
        let (status, _) = get(&app, &customer(), &format!("/v/{}", code_of(&body))).await;
        assert_eq!(status, StatusCode::OK);
        let seen = read_until(&mut stream, &public_id, "opened").await;
        assert!(seen.contains("\"status\":\"opened\""), "{seen}");
        assert!(
            !seen.contains("Asha") && !seen.contains("9876543210"),
            "statuses only: {seen}"
        );
    }
);

/// 2030-01-15 12:00 in India (06:30 UTC).
const NOON_IN_INDIA: i64 = 1_894_689_000;

async fn reminder_rows(app: &TestApp, public_id: &str) -> Vec<(String, String, Option<i64>)> {
    sqlx::query_as(
        "SELECT d.channel, d.outcome, d.attempted_by FROM deliveries d JOIN kyc_sessions s \
         ON s.id = d.session_id WHERE s.public_id = $1 AND d.attempted_by IS NULL ORDER BY d.id",
    )
    .bind(public_id)
    .fetch_all(&app.state.db.pool)
    .await
    .unwrap()
}

async fn next_reminder(app: &TestApp, public_id: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT next_reminder_at FROM kyc_sessions WHERE public_id = $1")
        .bind(public_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap()
}

/// Issues a customer link valid until well after the test's clock and sends it by SMS.
async fn sent_link(app: &TestApp, operator: &reqwest::Client) -> (String, String) {
    let (status, body) = issue(app, operator, "eko:uat:digilocker", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let public_id = body["summary"]["public_id"].as_str().unwrap().to_string();
    let (status, sent) = app
        .call(
            operator,
            "send_link",
            &[("public_id", public_id.as_str()), ("channel", "sms")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    execute(
        app,
        &format!(
            "UPDATE kyc_sessions SET link_expires_at = {}, expires_at = {} WHERE public_id = $1",
            NOON_IN_INDIA + 30 * 86_400,
            NOON_IN_INDIA + 30 * 86_400
        ),
        &public_id,
    )
    .await;
    (public_id, code_of(&body))
}

both_backends!(
    reminders_wait_for_quiet_hours_and_go_once_across_instances,
    |backend| async move {
        use kyc_desk::server::links::reminders::run_due;
        let (app, operator, admin) = world(backend, &[]).await;
        let (public_id, code) = sent_link(&app, &operator).await;
        // Sending scheduled the first reminder a day later.
        let first = next_reminder(&app, &public_id)
            .await
            .expect("a reminder is scheduled");
        let now = kyc_desk::server::db::now();
        assert!(
            (now + 86_400 - 5..=now + 86_400 + 5).contains(&first),
            "{first}"
        );
        assert_eq!(
            run_due(&app.state, "a", now).await.unwrap(),
            0,
            "not due yet"
        );

        // Due at noon India time: sent by the link's channel, in English.
        execute(
            &app,
            &format!(
                "UPDATE kyc_sessions SET next_reminder_at = {NOON_IN_INDIA} WHERE public_id = $1"
            ),
            &public_id,
        )
        .await;
        assert_eq!(run_due(&app.state, "a", NOON_IN_INDIA).await.unwrap(), 1);
        assert_eq!(
            reminder_rows(&app, &public_id).await,
            [("sms".into(), "sent".into(), None)]
        );
        let outbox = admin
            .get(format!("{}/sandbox/messages", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            outbox.contains("Reminder: KYC Desk Sandbox is waiting"),
            "{outbox}"
        );
        assert!(
            outbox.contains(&format!("/v/{code}")),
            "the reminder carries the customer link"
        );
        let shown = detail(&app, &operator, &public_id).await;
        assert!(kinds(&shown).contains(&"reminder".to_string()), "{shown}");
        assert_eq!(shown["customer_link"]["reminders_sent"], 1);
        assert_eq!(
            next_reminder(&app, &public_id).await,
            Some(NOON_IN_INDIA + 86_400)
        );

        // The next falls at 23:00 India time: held until 09:00.
        let night = NOON_IN_INDIA + 11 * 3600;
        execute(
            &app,
            &format!("UPDATE kyc_sessions SET next_reminder_at = {night} WHERE public_id = $1"),
            &public_id,
        )
        .await;
        assert_eq!(run_due(&app.state, "a", night).await.unwrap(), 0);
        let morning = NOON_IN_INDIA + 21 * 3600;
        assert_eq!(next_reminder(&app, &public_id).await, Some(morning));
        assert_eq!(reminder_rows(&app, &public_id).await.len(), 1);

        // Two instances at 09:00: one reminder between them; then none is left.
        let (a, b) = tokio::join!(
            run_due(&app.state, "instance-a", morning),
            run_due(&app.state, "instance-b", morning)
        );
        assert_eq!(a.unwrap() + b.unwrap(), 1, "sent once");
        assert_eq!(reminder_rows(&app, &public_id).await.len(), 2);
        assert_eq!(next_reminder(&app, &public_id).await, None, "two at most");
        assert_eq!(
            run_due(&app.state, "a", morning + 5 * 86_400)
                .await
                .unwrap(),
            0
        );
        let audit = app.audit_text().await;
        assert_eq!(
            audit.matches("link.remind").count(),
            2,
            "one audit row each"
        );

        // A link the customer started is not reminded.
        let (started_id, started_code) = sent_link(&app, &operator).await;
        let browser = customer();
        get(&app, &browser, &format!("/v/{started_code}")).await;
        let (status, _, _) = post(
            &app,
            &browser,
            &format!("/v/{started_code}/start"),
            &[("lang", "hi"), ("notice_version", "1"), ("consent", "on")],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        execute(
            &app,
            &format!(
                "UPDATE kyc_sessions SET next_reminder_at = {NOON_IN_INDIA} WHERE public_id = $1"
            ),
            &started_id,
        )
        .await;
        assert_eq!(run_due(&app.state, "a", NOON_IN_INDIA).await.unwrap(), 0);
        assert_eq!(next_reminder(&app, &started_id).await, None);

        // The operator turns a link's reminders off; an expired link gets none either.
        let (off_id, _) = sent_link(&app, &operator).await;
        let (status, body) = app
            .call(
                &operator,
                "set_link_reminders",
                &[("public_id", off_id.as_str()), ("on", "false")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["customer_link"]["reminders_on"], false);
        assert_eq!(next_reminder(&app, &off_id).await, None);
        let (expired_id, _) = sent_link(&app, &operator).await;
        execute(
            &app,
            &format!(
                "UPDATE kyc_sessions SET next_reminder_at = {NOON_IN_INDIA}, link_expires_at = {} WHERE public_id = $1",
                NOON_IN_INDIA - 1
            ),
            &expired_id,
        )
        .await;
        assert_eq!(run_due(&app.state, "a", NOON_IN_INDIA).await.unwrap(), 0);
        assert!(reminder_rows(&app, &expired_id).await.is_empty());
    }
);

both_backends!(
    customer_routes_are_limited_per_link_and_per_address,
    |backend| async move {
        use kyc_desk::server::auth::throttle::{
            CUSTOMER_REQUESTS_PER_ADDRESS, CUSTOMER_REQUESTS_PER_LINK,
        };
        let (app, operator, _admin) = world(backend, &[]).await;
        let (_, body) = issue(&app, &operator, "eko:uat:digilocker", &[]).await;
        let code = code_of(&body);
        let browser = customer();
        // One link: its share, then 429 with a wait, in words.
        for n in 0..CUSTOMER_REQUESTS_PER_LINK {
            let (status, _) = get(&app, &browser, &format!("/v/{code}")).await;
            assert_eq!(status, StatusCode::OK, "request {n}");
        }
        let refused = browser
            .get(format!("{}/v/{code}?lang=en", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        let page = refused.text().await.unwrap();
        assert!(
            page.contains("Too many requests from your network"),
            "{page}"
        );
        // Guessing codes from one address runs into the address's share (every request above
        // counted on it, the refused one too).
        let mut statuses = Vec::new();
        for n in 0..(CUSTOMER_REQUESTS_PER_ADDRESS - CUSTOMER_REQUESTS_PER_LINK - 1) {
            let (status, _) = get(&app, &browser, &format!("/v/guess{n:017}")).await;
            statuses.push(status);
        }
        assert!(
            statuses.iter().all(|s| *s == StatusCode::NOT_FOUND),
            "unknown codes are not found until the share is spent: {statuses:?}"
        );
        let (status, _) = get(&app, &browser, "/v/guessAAAAAAAAAAAAAAAAA").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    }
);

/// The reminder-template form: both languages' three texts, named as the server reads them.
fn reminder_form(en_sms: &str, hi_sms: &str, en_body: &str) -> Vec<(String, String)> {
    [
        ("en", "sms", en_sms),
        ("en", "email_subject", "A reminder from {company}"),
        ("en", "email_body", en_body),
        ("hi", "sms", hi_sms),
        ("hi", "email_subject", "{company} की ओर से अनुस्मारक"),
        ("hi", "email_body", "प्रिय {name}, यहाँ जारी रखें: {link}"),
    ]
    .into_iter()
    .map(|(language, part, text)| (format!("templates[{language}][{part}]"), text.to_string()))
    .collect()
}

both_backends!(
    reminders_use_the_admins_templates_in_the_customers_language,
    |backend| async move {
        use kyc_desk::server::links::reminders::run_due;
        let (app, operator, admin) = world(backend, &[]).await;
        // The built-in texts until an admin saves; admins only.
        let (status, shown) = app.call(&admin, "reminder_templates", &[]).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(shown["updated_by"], "KYC Desk");
        assert!(
            shown["hi"]["sms"].as_str().unwrap().contains("{link}"),
            "{shown}"
        );
        let (status, _) = app.call(&operator, "reminder_templates", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // No {link} in the Hindi SMS, an unknown placeholder in the English email: field
        // errors by name, nothing saved.
        let saved_rows = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM message_templates WHERE name LIKE 'reminder%'",
            )
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap()
        };
        let bad = reminder_form(
            "Nudge from {company}: {link}",
            "याद दिलाएँ {company}",
            "Dear {nmae}, continue: {link}",
        );
        let pairs: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, body) = app.call(&admin, "save_reminder_templates", &pairs).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let text = body.to_string();
        assert!(
            text.contains("hi.sms") && text.contains("en.email_body") && text.contains("{nmae}"),
            "{text}"
        );
        assert_eq!(saved_rows().await, 0);

        let good = reminder_form(
            "Nudge from {company}: {link}",
            "याद दिलाएँ {company}: {link}",
            "Dear {name}, continue: {link}",
        );
        let pairs: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, _) = app.call(&operator, "save_reminder_templates", &pairs).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, saved) = app.call(&admin, "save_reminder_templates", &pairs).await;
        assert_eq!(status, StatusCode::OK, "{saved}");
        assert_eq!(saved["updated_by"], ADMIN);
        assert_eq!(saved_rows().await, 4);
        assert!(app.audit_text().await.contains("template.update"));

        // A customer who switched their page to Hindi is reminded in Hindi; one who never
        // opened the page, in English.
        let (hindi_id, hindi_code) = sent_link(&app, &operator).await;
        let browser = customer();
        let (status, _) = get(&app, &browser, &format!("/v/{hindi_code}")).await;
        assert_eq!(status, StatusCode::OK);
        let (status, page) = get(&app, &browser, &format!("/v/{hindi_code}?lang=hi")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("<html lang=\"hi\">"), "the page is in Hindi");
        let (english_id, english_code) = sent_link(&app, &operator).await;
        for public_id in [&hindi_id, &english_id] {
            execute(
                &app,
                &format!(
                    "UPDATE kyc_sessions SET next_reminder_at = {NOON_IN_INDIA} WHERE public_id = $1"
                ),
                public_id,
            )
            .await;
        }
        assert_eq!(run_due(&app.state, "a", NOON_IN_INDIA).await.unwrap(), 2);
        let outbox = admin
            .get(format!("{}/sandbox/messages", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // Each message: the admin's text with the company filled, then that customer's link.
        let message_with = |start: &str, code: &str| {
            outbox.match_indices(start).any(|(at, _)| {
                outbox[at..]
                    .chars()
                    .take(200)
                    .collect::<String>()
                    .contains(&format!("/v/{code}"))
            })
        };
        assert!(
            message_with("याद दिलाएँ KYC Desk Sandbox: ", &hindi_code),
            "{outbox}"
        );
        assert!(
            message_with("Nudge from KYC Desk Sandbox: ", &english_code),
            "{outbox}"
        );
        assert!(!outbox.contains("Reminder: KYC Desk Sandbox is waiting"));
    }
);
