//! Authenticator codes (TOTP): enrolment from the account page's server functions, the first
//! code confirming it, replayed codes refused, wrong codes throttled with the account's
//! sign-in counter, and the seed kept out of pages, audit rows and the database in clear.

use crate::common;

use common::{PASSWORD, TestApp};
use kyc_desk::server::audit::RequestMeta;
use kyc_desk::server::auth::AuthUser;
use kyc_desk::server::auth::second_factor::{self, CodeCheck};
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::Value;

fn code(key: &str, offset_steps: i64) -> String {
    common::totp_code(key, offset_steps)
}

async fn enrol_start(app: &TestApp, client: &reqwest::Client) -> String {
    let (status, body) = app.call(client, "start_authenticator", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["qr_svg"].as_str().unwrap().starts_with("<svg")
            || body["qr_svg"].as_str().unwrap().contains("<svg"),
        "{body}"
    );
    body["manual_key"].as_str().unwrap().to_string()
}

fn auth_user(row: &kyc_desk::types::UserRow) -> AuthUser {
    AuthUser {
        id: row.id,
        email: row.email.clone(),
        display_name: row.display_name.clone(),
        role: row.role,
        must_change_password: false,
        second_factor_pending: false,
    }
}

async fn audit_text(app: &TestApp) -> String {
    let rows: Vec<(String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT action, reason, detail FROM audit_log ORDER BY seq")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
    format!("{rows:?}")
}

both_backends!(
    authenticator_enrolment_is_confirmed_by_a_first_code,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let row = app.user("ops@example.com", Role::Operator).await;
        let client = app.signed_in("ops@example.com").await;

        let (_, state) = app.call(&client, "authenticator_status", &[]).await;
        assert_eq!(state["enrolled"], false);
        // Restarting gives a new key; only the last one counts.
        let first_key = enrol_start(&app, &client).await;
        let key = enrol_start(&app, &client).await;
        assert_ne!(first_key, key);
        assert!(key.len() >= 32, "160-bit seed in base32: {key}");

        // Sealed at rest: the stored row does not hold the key.
        let (ciphertext,): (String,) =
            sqlx::query_as("SELECT ciphertext FROM second_factors WHERE user_id = $1")
                .bind(row.id)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert!(!ciphertext.contains(&key));

        // A code of the old key, and a malformed code, do not confirm.
        let (status, body) = app
            .call(
                &client,
                "confirm_authenticator",
                &[("code", &code(&first_key, 0))],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = app
            .call(&client, "confirm_authenticator", &[("code", "12ab56")])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // The code of the previous step is accepted (clock drift).
        let (status, body) = app
            .call(
                &client,
                "confirm_authenticator",
                &[("code", &code(&key, -1))],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, state) = app.call(&client, "authenticator_status", &[]).await;
        assert_eq!(state["enrolled"], true);

        // After enrolment the key is shown nowhere: no new key, not on the page, not audited.
        let (status, body) = app.call(&client, "start_authenticator", &[]).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let (status, _, html) = app.get(&client, "/account/authenticator").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("authenticator-enrolled"), "{html}");
        assert!(!html.contains(&key));
        let audit = audit_text(&app).await;
        assert!(!audit.contains(&key), "{audit}");
        assert!(audit.contains("auth.second_factor_enrol"), "{audit}");
    }
);

both_backends!(
    a_used_authenticator_code_is_never_accepted_again,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let row = app.user("ops@example.com", Role::Operator).await;
        let client = app.signed_in("ops@example.com").await;
        let key = enrol_start(&app, &client).await;
        let confirming = code(&key, 0);
        let (status, body) = app
            .call(&client, "confirm_authenticator", &[("code", &confirming)])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        let user = auth_user(&row);
        let meta = RequestMeta::cli();
        let check = |code: String| {
            let (app, user, meta) = (&app, &user, &meta);
            async move {
                second_factor::check_code(&app.state, meta, user, &code, false, "auth.test")
                    .await
                    .unwrap()
            }
        };
        // The confirming code was used: refused. The next step's code is new: accepted once.
        assert_eq!(check(confirming.clone()).await, CodeCheck::Wrong);
        let next = code(&key, 1);
        if next != confirming {
            assert_eq!(check(next.clone()).await, CodeCheck::Accepted);
            assert_eq!(check(next).await, CodeCheck::Wrong);
            // An earlier step than the last one used is refused too.
            assert_eq!(check(code(&key, -1)).await, CodeCheck::Wrong);
        }
        // Two steps away: refused.
        assert_eq!(check(code(&key, 3)).await, CodeCheck::Wrong);
    }
);

both_backends!(
    wrong_authenticator_codes_are_throttled_with_the_sign_in_counter,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("ops@example.com", Role::Operator).await;
        let client = app.signed_in("ops@example.com").await;
        let key = enrol_start(&app, &client).await;
        let right = code(&key, 0);
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        for _ in 0..5 {
            let (status, body) = app
                .call(&client, "confirm_authenticator", &[("code", wrong)])
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        }
        // Locked: even the right code waits, and so does signing in (the same counter).
        let (status, body) = app
            .call(&client, "confirm_authenticator", &[("code", &right)])
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(body.to_string().contains("Too many wrong codes"), "{body}");
        let other = app.client();
        let (status, body): (StatusCode, Value) = app
            .call(
                &other,
                "login",
                &[("email", "ops@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
);

both_backends!(
    sign_in_with_an_authenticator_takes_a_second_step,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("ops@example.com", Role::Operator).await;
        let first = app.signed_in("ops@example.com").await;
        let key = app.enrol_authenticator(&first).await;

        // A wrong password reads as before; a right one leads to the second step only.
        let client = app.client();
        let (status, body) = app
            .call(
                &client,
                "login",
                &[
                    ("email", "ops@example.com"),
                    ("password", "not the password"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let (status, body) = app
            .call(
                &client,
                "login",
                &[
                    ("email", "ops@example.com"),
                    ("password", PASSWORD),
                    ("next", "/sessions"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["redirect_to"], "/login/code?next=%2Fsessions");

        // Half signed in: nothing but the second step.
        assert_eq!(app.whoami(&client).await, Value::Null);
        let (status, _, _) = app.get(&client, "/login/code").await;
        assert_eq!(status, StatusCode::OK);
        for page in [
            "/",
            "/sessions",
            "/account/authenticator",
            "/account/password",
        ] {
            let (status, location, _) = app.get(&client, page).await;
            assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
            assert_eq!(location.as_deref(), Some("/login/code"), "{page}");
        }
        let (status, body) = app.call(&client, "list_sessions", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _) = app.call(&client, "start_authenticator", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app.call(&client, "change_password", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // A wrong code, then the right one: fully signed in, sent where asked.
        let right = code(&key, 1);
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        let (status, body) = app
            .call(
                &client,
                "second_step",
                &[("code", wrong), ("next", "/sessions")],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = app
            .call(
                &client,
                "second_step",
                &[("code", &right), ("next", "/sessions")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["redirect_to"], "/sessions");
        assert_eq!(app.whoami(&client).await["email"], "ops@example.com");
        let (status, _, _) = app.get(&client, "/sessions").await;
        assert_eq!(status, StatusCode::OK);
        // The second step is done: not offered again.
        let (status, _) = app.call(&client, "second_step", &[("code", &right)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // The same code cannot open a second session.
        let again = app.client();
        let (status, _) = app
            .call(
                &again,
                "login",
                &[("email", "ops@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = app.call(&again, "second_step", &[("code", &right)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        // Signing out is reachable half signed in.
        let (status, _) = app.call(&again, "logout", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = app.get(&again, "/login/code").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
);
