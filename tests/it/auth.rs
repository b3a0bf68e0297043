//! Sign-in, sessions, roles, users and the HTTP security rules, against a real server on
//! SQLite and on PostgreSQL.

use crate::common;

use common::{PASSWORD, TestApp};
use kyc_desk::server::auth::{accounts, password};
use kyc_desk::server::db;
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::Value;

/// A create-user submission, the field expected to be refused, and words of its message.
type BadCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

fn err_field<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body["Validation"]["fields"]
        .as_array()?
        .iter()
        .find(|f| f["field"] == field)
        .and_then(|f| f["message"].as_str())
}

fn cookie_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("kyc_desk_session="))
}

both_backends!(
    setup_link_creates_the_first_admin_once,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let token = accounts::issue_setup_token(&app.state)
            .await
            .unwrap()
            .expect("no users yet");
        let client = app.client();

        let (status, _, html) = app.get(&client, &format!("/setup/{token}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Set up KYC Desk"));
        let (_, state) = app.call(&client, "setup_state", &[("token", &token)]).await;
        assert_eq!(state, "Usable");
        let (_, state) = app
            .call(&client, "setup_state", &[("token", "forged")])
            .await;
        assert_eq!(state, "Unknown");

        // A weak password is refused field by field, and nothing is created.
        let (status, body) = app
            .call(
                &client,
                "create_first_admin",
                &[
                    ("token", &token),
                    ("email", "not-an-email"),
                    ("display_name", "Asha"),
                    ("password", "short"),
                    ("password_confirm", "different"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err_field(&body, "email").is_some());
        assert!(err_field(&body, "password").unwrap().contains("12"));
        assert!(err_field(&body, "password_confirm").is_some());
        assert_eq!(db::users::count(&app.state.db.pool).await.unwrap(), 0);

        // A forged token creates nothing.
        let (status, _) = app
            .call(
                &client,
                "create_first_admin",
                &[
                    ("token", "forged"),
                    ("email", "asha@example.com"),
                    ("display_name", "Asha"),
                    ("password", PASSWORD),
                    ("password_confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (status, body) = app
            .call(
                &client,
                "create_first_admin",
                &[
                    ("token", &token),
                    ("email", "Asha@Example.com"),
                    ("display_name", "Asha"),
                    ("password", PASSWORD),
                    ("password_confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let me = app.whoami(&client).await;
        assert_eq!(me["email"], "asha@example.com");
        assert_eq!(me["role"], "admin");

        // The link is spent: a second use is refused and the page says so.
        let (status, _) = app
            .call(
                &app.client(),
                "create_first_admin",
                &[
                    ("token", &token),
                    ("email", "eve@example.com"),
                    ("display_name", "Eve"),
                    ("password", PASSWORD),
                    ("password_confirm", PASSWORD),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (_, state) = app
            .call(&app.client(), "setup_state", &[("token", &token)])
            .await;
        assert_eq!(state, "AlreadySetUp");
        assert_eq!(db::users::count(&app.state.db.pool).await.unwrap(), 1);
        assert!(
            accounts::issue_setup_token(&app.state)
                .await
                .unwrap()
                .is_none()
        );
    }
);

both_backends!(
    wrong_password_and_unknown_email_look_the_same,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("op@example.com", Role::Operator).await;
        let client = app.client();

        let before = app.state.passwords.verifications();
        let (wrong_status, wrong_body) = app
            .call(
                &client,
                "login",
                &[
                    ("email", "op@example.com"),
                    ("password", "wrong password here"),
                ],
            )
            .await;
        let (unknown_status, unknown_body) = app
            .call(
                &client,
                "login",
                &[
                    ("email", "nobody@example.com"),
                    ("password", "wrong password here"),
                ],
            )
            .await;
        assert_eq!(wrong_status, StatusCode::UNAUTHORIZED);
        assert_eq!(unknown_status, wrong_status);
        assert_eq!(unknown_body, wrong_body);
        assert_eq!(wrong_body, "InvalidCredentials");
        // Both ran one argon2 verification: the unknown email was checked against the dummy hash.
        assert_eq!(app.state.passwords.verifications(), before + 2);
        assert_eq!(app.whoami(&client).await, Value::Null);

        let client = app.signed_in("OP@example.com ").await;
        assert_eq!(app.whoami(&client).await["email"], "op@example.com");
    }
);

both_backends!(
    pages_redirect_and_functions_answer_401_without_session,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let client = app.client();
        let (status, location, _) = app.get(&client, "/").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location.as_deref(), Some("/login"));
        let (status, location, _) = app.get(&client, "/users?tab=1").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location.as_deref(), Some("/login?next=%2Fusers%3Ftab%3D1"));
        let (status, _, html) = app.get(&client, "/login").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Sign in"));
        for function in [
            "list_users",
            "set_user_role",
            "set_user_disabled",
            "reset_user_password",
            "create_user",
            "change_password",
        ] {
            let (status, body) = app
                .call(
                    &client,
                    function,
                    &[
                        ("user_id", "1"),
                        ("role", "admin"),
                        ("disabled", "true"),
                        ("password", PASSWORD),
                        ("email", "x@example.com"),
                        ("display_name", "X"),
                        ("current_password", PASSWORD),
                        ("new_password", PASSWORD),
                        ("confirm_password", PASSWORD),
                    ],
                )
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{function}: {body}");
            assert_eq!(body, "Unauthorized", "{function}");
        }
    }
);

both_backends!(
    roles_see_only_their_pages_and_functions,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("admin@example.com", Role::Admin).await;
        app.user("op@example.com", Role::Operator).await;
        app.user("aud@example.com", Role::Auditor).await;
        let admin = app.signed_in("admin@example.com").await;
        let operator = app.signed_in("op@example.com").await;
        let auditor = app.signed_in("aud@example.com").await;

        let expectations: &[(&reqwest::Client, &str, StatusCode)] = &[
            (&admin, "/users", StatusCode::OK),
            (&admin, "/credentials", StatusCode::OK),
            (&admin, "/texts", StatusCode::OK),
            (&admin, "/audit", StatusCode::OK),
            (&admin, "/links", StatusCode::OK),
            (&operator, "/", StatusCode::OK),
            (&operator, "/links", StatusCode::OK),
            (&operator, "/sessions", StatusCode::OK),
            (&operator, "/users", StatusCode::FORBIDDEN),
            (&operator, "/credentials", StatusCode::FORBIDDEN),
            (&operator, "/texts", StatusCode::FORBIDDEN),
            (&auditor, "/texts", StatusCode::FORBIDDEN),
            (&operator, "/audit", StatusCode::FORBIDDEN),
            (&auditor, "/sessions", StatusCode::OK),
            (&auditor, "/audit", StatusCode::OK),
            (&auditor, "/links", StatusCode::FORBIDDEN),
            (&auditor, "/users", StatusCode::FORBIDDEN),
        ];
        for (client, path, expected) in expectations {
            let (status, _, html) = app.get(client, path).await;
            assert_eq!(status, *expected, "{path}");
            if *expected == StatusCode::FORBIDDEN {
                assert!(html.contains("No access"), "{path} shows the 403 panel");
                assert!(
                    !html.contains("admin@example.com"),
                    "{path} leaks no user data"
                );
            }
        }

        // The navigation lists exactly what the role may open.
        let (_, _, html) = app.get(&operator, "/").await;
        assert!(
            html.contains("data-testid=\"nav/links\"")
                && html.contains("data-testid=\"nav/sessions\"")
        );
        assert!(
            !html.contains("data-testid=\"nav/users\"")
                && !html.contains("data-testid=\"nav/audit\"")
        );
        let (_, _, html) = app.get(&auditor, "/").await;
        assert!(
            html.contains("data-testid=\"nav/audit\"")
                && !html.contains("data-testid=\"nav/links\"")
        );
        let (_, _, html) = app.get(&admin, "/").await;
        for area in ["links", "sessions", "users", "credentials", "audit"] {
            assert!(
                html.contains(&format!("data-testid=\"nav/{area}\"")),
                "admin nav has {area}"
            );
        }

        for client in [&operator, &auditor] {
            let (status, body) = app.call(client, "list_users", &[]).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(
                body["Forbidden"]
                    .as_str()
                    .unwrap()
                    .contains("cannot do this")
            );
            let (status, _) = app
                .call(
                    client,
                    "set_user_role",
                    &[("user_id", "1"), ("role", "operator")],
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN);
        }
        let (status, body) = app.call(&admin, "list_users", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.as_array().unwrap().len(), 3);
    }
);

both_backends!(
    admin_creates_user_who_must_change_password,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("admin@example.com", Role::Admin).await;
        let admin = app.signed_in("admin@example.com").await;

        let bad_cases: &[BadCase] = &[
            (
                &[
                    ("email", "nope"),
                    ("display_name", "N"),
                    ("role", "operator"),
                    ("password", PASSWORD),
                ],
                "email",
                "needs an @",
            ),
            (
                &[
                    ("email", "n@example.com"),
                    ("display_name", " "),
                    ("role", "operator"),
                    ("password", PASSWORD),
                ],
                "display_name",
                "display name",
            ),
            (
                &[
                    ("email", "n@example.com"),
                    ("display_name", "N"),
                    ("role", "root"),
                    ("password", PASSWORD),
                ],
                "role",
                "operator, admin or auditor",
            ),
            (
                &[
                    ("email", "n@example.com"),
                    ("display_name", "N"),
                    ("role", "operator"),
                    ("password", "short"),
                ],
                "password",
                "at least 12",
            ),
            (
                &[
                    ("email", "n@example.com"),
                    ("display_name", "N"),
                    ("role", "operator"),
                    ("password", "N@Example.com"),
                ],
                "password",
                "email",
            ),
            (
                &[
                    ("email", "n@example.com"),
                    ("display_name", "N"),
                    ("role", "operator"),
                    ("password", "password1234"),
                ],
                "password",
                "commonly used",
            ),
            (
                &[
                    ("email", "admin@example.com"),
                    ("display_name", "N"),
                    ("role", "operator"),
                    ("password", PASSWORD),
                ],
                "email",
                "already exists",
            ),
        ];
        for (args, field, needle) in bad_cases {
            let (status, body) = app.call(&admin, "create_user", args).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{args:?}");
            let message =
                err_field(&body, field).unwrap_or_else(|| panic!("no {field} error in {body}"));
            assert!(message.contains(needle), "{field}: {message}");
        }
        let long = "x".repeat(129);
        let (status, body) = app
            .call(
                &admin,
                "create_user",
                &[
                    ("email", "n@example.com"),
                    ("display_name", "N"),
                    ("role", "operator"),
                    ("password", &long),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            err_field(&body, "password")
                .unwrap()
                .contains("at most 128")
        );
        assert_eq!(
            db::users::count(&app.state.db.pool).await.unwrap(),
            1,
            "nothing was created"
        );

        let (status, body) = app
            .call(
                &admin,
                "create_user",
                &[
                    ("email", "New.Op@example.com"),
                    ("display_name", "New Op"),
                    ("role", "operator"),
                    ("password", "initial password 123"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["email"], "new.op@example.com");
        assert_eq!(body["must_change_password"], true);

        let op = app.client();
        let (status, body) = app
            .call(
                &op,
                "login",
                &[
                    ("email", "new.op@example.com"),
                    ("password", "initial password 123"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["redirect_to"], "/account/password");
        let (status, location, _) = app.get(&op, "/sessions").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location.as_deref(), Some("/account/password"));
        let (status, _, html) = app.get(&op, "/account/password").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Choose your own"));

        let (status, body) = app
            .call(
                &op,
                "change_password",
                &[
                    ("current_password", "initial password 123"),
                    ("new_password", "my own secret phrase"),
                    ("confirm_password", "my own secret phrase"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _, _) = app.get(&op, "/sessions").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(app.whoami(&op).await["must_change_password"], false);
    }
);

both_backends!(the_last_active_admin_is_protected, |backend| async move {
    let app = TestApp::start(backend).await;
    let first = app.user("admin@example.com", Role::Admin).await;
    let admin = app.signed_in("admin@example.com").await;
    let id = first.id.to_string();

    let (status, body) = app
        .call(
            &admin,
            "set_user_role",
            &[("user_id", &id), ("role", "operator")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["Conflict"]
            .as_str()
            .unwrap()
            .contains("last active admin")
    );
    let (status, _) = app
        .call(
            &admin,
            "set_user_disabled",
            &[("user_id", &id), ("disabled", "true")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A second admin who is disabled does not count.
    let second = app.user("admin2@example.com", Role::Admin).await;
    let second_id = second.id.to_string();
    let (status, _) = app
        .call(
            &admin,
            "set_user_disabled",
            &[("user_id", &second_id), ("disabled", "true")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(
            &admin,
            "set_user_role",
            &[("user_id", &id), ("role", "operator")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Once another admin is active, the first may be demoted.
    let (status, _) = app
        .call(
            &admin,
            "set_user_disabled",
            &[("user_id", &second_id), ("disabled", "false")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            &admin,
            "set_user_role",
            &[("user_id", &id), ("role", "operator")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "operator");
    // The demotion applies at once: the same session is now an operator's.
    let (status, _) = app.call(&admin, "list_users", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = app
        .call(
            &admin,
            "set_user_role",
            &[("user_id", "999999"), ("role", "operator")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
});

both_backends!(
    disabling_and_resetting_end_sessions_at_once,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("admin@example.com", Role::Admin).await;
        let op = app.user("op@example.com", Role::Operator).await;
        let admin = app.signed_in("admin@example.com").await;
        let op_browser_1 = app.signed_in("op@example.com").await;
        let op_browser_2 = app.signed_in("op@example.com").await;
        assert_eq!(
            db::auth_sessions::count_for_user(&app.state.db.pool, op.id)
                .await
                .unwrap(),
            2
        );
        let id = op.id.to_string();

        let (status, body) = app
            .call(
                &admin,
                "set_user_disabled",
                &[("user_id", &id), ("disabled", "true")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["disabled"], true);
        assert_eq!(
            db::auth_sessions::count_for_user(&app.state.db.pool, op.id)
                .await
                .unwrap(),
            0
        );
        for browser in [&op_browser_1, &op_browser_2] {
            assert_eq!(app.whoami(browser).await, Value::Null);
            let (status, location, _) = app.get(browser, "/sessions").await;
            assert_eq!(status, StatusCode::SEE_OTHER);
            assert!(location.unwrap().starts_with("/login"));
        }
        let (status, body) = app
            .call(
                &app.client(),
                "login",
                &[("email", "op@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body["Forbidden"].as_str().unwrap().contains("disabled"));

        let (status, _) = app
            .call(
                &admin,
                "set_user_disabled",
                &[("user_id", &id), ("disabled", "false")],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let op_browser = app.signed_in("op@example.com").await;

        // Reset: weak passwords refused; a good one ends sessions and forces a change.
        let (status, body) = app
            .call(
                &admin,
                "reset_user_password",
                &[("user_id", &id), ("password", "short")],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err_field(&body, "password").is_some());
        let (status, body) = app
            .call(
                &admin,
                "reset_user_password",
                &[("user_id", &id), ("password", "temporary phrase 77")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["must_change_password"], true);
        assert_eq!(app.whoami(&op_browser).await, Value::Null);
        let (status, _) = app
            .call(
                &app.client(),
                "login",
                &[("email", "op@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "the old password no longer works"
        );
        let fresh = app.client();
        let (status, body) = app
            .call(
                &fresh,
                "login",
                &[
                    ("email", "op@example.com"),
                    ("password", "temporary phrase 77"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["redirect_to"], "/account/password");
        let (status, body) = app.call(&fresh, "list_users", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
);

both_backends!(
    changing_own_password_checks_rules_and_ends_other_sessions,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("op@example.com", Role::Operator).await;
        let here = app.signed_in("op@example.com").await;
        let elsewhere = app.signed_in("op@example.com").await;

        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "wrong current pass",
                "a fresh new phrase",
                "a fresh new phrase",
                "current_password",
            ),
            (PASSWORD, "short", "short", "new_password"),
            (PASSWORD, "op@example.com", "op@example.com", "new_password"),
            (PASSWORD, "qwerty123456", "qwerty123456", "new_password"),
            (PASSWORD, PASSWORD, PASSWORD, "new_password"),
            (
                PASSWORD,
                "a fresh new phrase",
                "another phrase",
                "confirm_password",
            ),
        ];
        for (current, new, confirm, field) in cases {
            let (status, body) = app
                .call(
                    &here,
                    "change_password",
                    &[
                        ("current_password", current),
                        ("new_password", new),
                        ("confirm_password", confirm),
                    ],
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {body}");
            assert!(err_field(&body, field).is_some(), "{field}: {body}");
        }
        let (status, _) = app
            .call(
                &here,
                "change_password",
                &[
                    ("current_password", PASSWORD),
                    ("new_password", "a fresh new phrase"),
                    ("confirm_password", "a fresh new phrase"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            app.whoami(&here).await["email"],
            "op@example.com",
            "this session continues"
        );
        assert_eq!(
            app.whoami(&elsewhere).await,
            Value::Null,
            "the other session ended"
        );
        let (status, _) = app
            .call(
                &app.client(),
                "login",
                &[
                    ("email", "op@example.com"),
                    ("password", "a fresh new phrase"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        // Guessing the current password from a (stolen) session is throttled like signing in.
        let change_with = |current: &'static str| {
            let app = &app;
            let here = here.clone();
            async move {
                app.call(
                    &here,
                    "change_password",
                    &[
                        ("current_password", current),
                        ("new_password", "yet another new phrase"),
                        ("confirm_password", "yet another new phrase"),
                    ],
                )
                .await
            }
        };
        for _ in 0..5 {
            let (status, body) = change_with("a wrong guess of it").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        }
        let (status, body) = change_with("a fresh new phrase").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(
            body.to_string()
                .contains("Too many wrong current passwords"),
            "{body}"
        );
        let throttled = crate::audit::rows_of(&app, "auth.password_change")
            .await
            .into_iter()
            .filter(|r| r.outcome == "denied")
            .count();
        assert_eq!(throttled, 1);
    }
);

both_backends!(
    session_id_rotates_and_old_cookies_stop_working,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("op@example.com", Role::Operator).await;
        let login = |cookie: Option<String>| {
            let app = &app;
            async move {
                let mut request = reqwest::Client::new()
                    .post(format!("{}/api/login", app.base))
                    .form(&[("email", "op@example.com"), ("password", PASSWORD)]);
                if let Some(cookie) = cookie {
                    request = request.header("cookie", cookie);
                }
                request.send().await.unwrap()
            }
        };
        let first = login(None).await;
        let first_cookie = cookie_of(&first).expect("session cookie set");
        assert!(first_cookie.contains("HttpOnly"));
        assert!(first_cookie.contains("SameSite=Strict"));
        assert!(
            !first_cookie.contains("Secure"),
            "plain-HTTP localhost has no Secure flag"
        );
        let first_pair = first_cookie.split(';').next().unwrap().to_string();

        // Signing in again with that cookie (or a planted one) yields a different id.
        let second = login(Some(first_pair.clone())).await;
        let second_pair = cookie_of(&second)
            .expect("new cookie")
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert_ne!(first_pair, second_pair);
        let planted = login(Some("kyc_desk_session=attacker-chosen-id".into())).await;
        let planted_pair = cookie_of(&planted)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        assert_ne!(planted_pair, "kyc_desk_session=attacker-chosen-id");

        let whoami_with = |cookie: String| {
            let app = &app;
            async move {
                let response = reqwest::Client::new()
                    .post(format!("{}/api/whoami", app.base))
                    .header("cookie", cookie)
                    .send()
                    .await
                    .unwrap();
                response.json::<Value>().await.unwrap()
            }
        };
        assert_eq!(
            whoami_with(first_pair.clone()).await,
            Value::Null,
            "the pre-rotation id is dead"
        );
        assert_eq!(
            whoami_with(second_pair.clone()).await["email"],
            "op@example.com"
        );

        // After sign-out, replaying the cookie gets nothing.
        let response = reqwest::Client::new()
            .post(format!("{}/api/logout", app.base))
            .header("cookie", second_pair.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(whoami_with(second_pair).await, Value::Null);
    }
);

both_backends!(
    secure_cookie_when_public_url_is_https,
    |backend| async move {
        let app = TestApp::start_with(
            backend,
            &[("KYC_DESK_PUBLIC_URL", "https://kyc.example.com")],
        )
        .await;
        app.user("op@example.com", Role::Operator).await;
        let response = reqwest::Client::new()
            .post(format!("{}/api/login", app.base))
            .form(&[("email", "op@example.com"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert!(cookie_of(&response).unwrap().contains("Secure"));
        assert!(
            response.headers()["strict-transport-security"]
                .to_str()
                .unwrap()
                .contains("max-age=")
        );
    }
);

both_backends!(
    idle_and_absolute_timeouts_end_sessions,
    |backend| async move {
        let app = TestApp::start_with(
            backend,
            &[
                ("KYC_DESK_SESSION_IDLE_TIMEOUT", "3s"),
                ("KYC_DESK_SESSION_ABSOLUTE_TIMEOUT", "7s"),
            ],
        )
        .await;
        app.user("op@example.com", Role::Operator).await;

        // Idle: counted from the last request, so steady activity keeps the session alive ...
        let active = app.signed_in("op@example.com").await;
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            assert_eq!(app.whoami(&active).await["email"], "op@example.com");
        }
        // ... and silence ends it.
        let idle = app.signed_in("op@example.com").await;
        tokio::time::sleep(std::time::Duration::from_millis(4200)).await;
        assert_eq!(app.whoami(&idle).await, Value::Null);

        // Absolute: a session kept busy well past the idle timeout still ends after 7 s.
        let steady = app.signed_in("op@example.com").await;
        let started = std::time::Instant::now();
        let mut ended_after = None;
        for _ in 0..14 {
            tokio::time::sleep(std::time::Duration::from_millis(900)).await;
            if app.whoami(&steady).await == Value::Null {
                ended_after = Some(started.elapsed());
                break;
            }
        }
        let ended_after = ended_after.expect("the absolute timeout ended the busy session");
        assert!(
            ended_after > std::time::Duration::from_secs(6),
            "it outlived two idle periods: {ended_after:?}"
        );
    }
);

both_backends!(
    sign_in_throttling_per_account_and_per_address,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("op@example.com", Role::Operator).await;
        let client = app.client();
        let attempt = |email: &'static str, password: &'static str| {
            let app = &app;
            let client = client.clone();
            async move {
                let response = client
                    .post(format!("{}/api/login", app.base))
                    .form(&[("email", email), ("password", password)])
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let retry = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let body: Value = response.json().await.unwrap();
                (status, retry, body)
            }
        };
        for _ in 0..5 {
            let (status, _, _) = attempt("op@example.com", "wrong password!!").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        // Locked: even the right password is refused for now, with Retry-After.
        let (status, retry, body) = attempt("op@example.com", PASSWORD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = retry.expect("Retry-After").parse().unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        let message = body["TooManyRequests"]["message"]
            .as_str()
            .unwrap()
            .to_string();

        // An unknown email locks the same way with the same words: the lock reveals nothing.
        for _ in 0..5 {
            attempt("ghost@example.com", "wrong password!!").await;
        }
        let (status, _, body) = attempt("ghost@example.com", PASSWORD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            body["TooManyRequests"]["message"]
                .as_str()
                .unwrap()
                .split(" Try again")
                .next(),
            message.split(" Try again").next()
        );

        // Per address: 20 failures in the window block every further attempt from it.
        for i in 0..10 {
            let email: &'static str = Box::leak(format!("user{i}@example.com").into_boxed_str());
            attempt(email, "wrong password!!").await;
        }
        let (status, retry, body) = attempt("someone.else@example.com", "wrong password!!").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(
            body["TooManyRequests"]["message"]
                .as_str()
                .unwrap()
                .contains("your network")
        );
        assert!(retry.unwrap().parse::<u64>().unwrap() > 60);
    }
);

both_backends!(cross_origin_posts_are_refused, |backend| async move {
    let app = TestApp::start(backend).await;
    app.user("op@example.com", Role::Operator).await;
    let client = app.signed_in("op@example.com").await;
    let post = |headers: Vec<(&'static str, String)>| {
        let app = &app;
        let client = client.clone();
        async move {
            let mut request = client.post(format!("{}/api/logout", app.base));
            for (name, value) in headers {
                request = request.header(name, value);
            }
            request.send().await.unwrap()
        }
    };
    let refused = post(vec![("origin", "https://evil.example".into())]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.text().await.unwrap().contains("another site"));
    assert_eq!(
        post(vec![("origin", "null".into())]).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(vec![("sec-fetch-site", "cross-site".into())])
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.whoami(&client).await["email"],
        "op@example.com",
        "nothing ran"
    );
    assert_eq!(
        post(vec![("origin", app.base.clone())]).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.whoami(&client).await, Value::Null);
});

both_backends!(security_headers_limits_and_health, |backend| async move {
    let app = TestApp::start(backend).await;
    let client = app.client();
    let response = client
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    let html = response.text().await.unwrap();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(csp.contains("'wasm-unsafe-eval'"));
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(
        html.contains(&format!("nonce=\"{nonce}\"")),
        "scripts carry the header's nonce"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.contains_key("x-request-id"));
    assert!(
        !headers.contains_key("strict-transport-security"),
        "no HSTS over plain HTTP"
    );

    let second = client
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    assert_ne!(
        second.headers()["content-security-policy"],
        headers["content-security-policy"],
        "a fresh nonce per response"
    );

    let big = "a".repeat(1024 * 1024 + 10);
    let response = client
        .post(format!("{}/api/login", app.base))
        .form(&[("email", big.as_str()), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The server closes a connection whose oversized body it did not read; a new client
    // avoids racing that close on a reused connection.
    let client = app.client();
    let (status, _, body) = app.get(&client, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, body) = app.get(&client, "/readyz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));
    app.state.db.pool.close().await;
    let (status, _, _) = app.get(&client, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
});

both_backends!(
    weak_password_hashes_are_upgraded_at_sign_in,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let user = app.user("op@example.com", Role::Operator).await;
        let weak = password::weak_hash_for_tests(PASSWORD);
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(&weak)
            .bind(user.id)
            .execute(&app.state.db.pool)
            .await
            .unwrap();
        app.signed_in("op@example.com").await;
        let stored = db::users::find_by_id(&app.state.db.pool, user.id)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(stored.password_hash, weak);
        assert!(password::hash_is_current(&stored.password_hash));
        app.signed_in("op@example.com").await;
    }
);

both_backends!(
    sessions_are_shared_between_instances,
    |backend| async move {
        let first = TestApp::start(backend).await;
        let second = TestApp::start_on(&first.database_url, None, &[]).await;
        first.user("op@example.com", Role::Operator).await;
        let client = first.signed_in("op@example.com").await;
        // reqwest keys cookies by host, and both instances are on 127.0.0.1.
        assert_eq!(second.whoami(&client).await["email"], "op@example.com");
    }
);

/// On SQLite a session write (every few seconds per signed-in user) queues for the process's
/// write turn like every other writer, rather than meeting an open write transaction in
/// SQLite's busy handler, which sleeps in growing steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_session_writes_wait_for_the_write_turn() {
    use tower_sessions::SessionStore as _;
    use tower_sessions::cookie::time::{Duration as CookieDuration, OffsetDateTime};
    let app = TestApp::start(common::Backend::Sqlite).await;
    let store = db::auth_sessions::SqlSessionStore::new(app.state.db.clone());
    let mut record = tower_sessions::session::Record {
        id: Default::default(),
        data: Default::default(),
        expiry_date: OffsetDateTime::now_utc() + CookieDuration::hours(1),
    };
    let turn = app
        .state
        .db
        .write_turn()
        .await
        .expect("SQLite writers take turns");
    let writer = tokio::spawn({
        let store = store.clone();
        async move { store.create(&mut record).await.map(|()| record.id) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !writer.is_finished(),
        "a session write went ahead while another writer held the turn"
    );
    drop(turn);
    let id = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
        .await
        .expect("the session write goes ahead once the turn is free")
        .unwrap()
        .unwrap();
    assert!(store.load(&id).await.unwrap().is_some());
}

/// One sign-in attempt from client address `from` (the test server trusts the loopback proxy's
/// `X-Forwarded-For`): status, `Retry-After` and the JSON body.
async fn sign_in_from(
    app: &TestApp,
    email: &str,
    password: &str,
    from: &str,
) -> (StatusCode, Option<u64>, Value) {
    let response = app
        .client()
        .post(format!("{}/api/login", app.base))
        .header("origin", &app.base)
        .header("x-forwarded-for", from)
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .expect("an answer");
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry, body)
}

/// Every answer of a flood is a refusal of the guess: 401, or 429 with `Retry-After`.
fn assert_refused(answers: &[(StatusCode, Option<u64>, Value)]) -> usize {
    let mut throttled = 0;
    for (status, retry, body) in answers {
        match *status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry.is_some_and(|secs| secs >= 1), "{body}");
                throttled += 1;
            }
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    throttled
}

both_backends!(
    parallel_guesses_for_one_account_are_held_to_its_limit,
    |backend| async move {
        let app = TestApp::start_with(backend, &[("KYC_DESK_TRUSTED_PROXIES", "127.0.0.1")]).await;
        app.user("op@example.com", Role::Operator).await;
        app.user("real@example.com", Role::Operator).await;
        let before = app.state.passwords.verifications();
        let guesses = (0..200).map(|i| {
            let app = &app;
            async move {
                sign_in_from(
                    app,
                    "op@example.com",
                    &format!("wrong guess {i}!"),
                    "203.0.113.5",
                )
                .await
            }
        });
        let answers = futures::future::join_all(guesses).await;
        let hashed = app.state.passwords.verifications() - before;
        assert!(
            hashed <= kyc_desk::server::auth::throttle::ACCOUNT_FREE_FAILURES as u64,
            "{hashed} of 200 parallel guesses were checked with argon2"
        );
        let throttled = assert_refused(&answers);
        assert_eq!(
            throttled as u64,
            200 - hashed,
            "every other guess is refused unchecked"
        );
        assert_eq!(
            app.state.sign_ins.running(),
            0,
            "every in-flight place was given back"
        );

        // Someone else signs in from elsewhere as usual.
        let (status, _, body) =
            sign_in_from(&app, "real@example.com", PASSWORD, "198.51.100.20").await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The flood left a few audit rows, not 200: the refusals are counted per minute.
        app.state.audit_noise.flush().await;
        let rows = crate::audit::rows_of(&app, "auth.sign_in").await;
        assert!(rows.len() <= 12, "{} rows", rows.len());
        let denied: Vec<_> = rows
            .iter()
            .filter(|r| r.outcome == "denied")
            .cloned()
            .collect();
        assert_eq!(crate::audit::events_counted(&denied), throttled as u64);
    }
);

both_backends!(
    parallel_guesses_from_one_ipv6_network_are_held_to_its_limit,
    |backend| async move {
        let app = TestApp::start_with(backend, &[("KYC_DESK_TRUSTED_PROXIES", "127.0.0.1")]).await;
        let before = app.state.passwords.verifications();
        // 200 accounts, 200 addresses, all in one /64.
        let guesses = (0..200).map(|i| {
            let app = &app;
            async move {
                sign_in_from(
                    app,
                    &format!("user{i}@example.com"),
                    "wrong guess!!",
                    &format!("2001:db8:7:9:{i:x}::1"),
                )
                .await
            }
        });
        let answers = futures::future::join_all(guesses).await;
        let hashed = app.state.passwords.verifications() - before;
        assert!(
            hashed <= kyc_desk::server::auth::throttle::ADDRESS_MAX_FAILURES as u64,
            "{hashed} of 200 parallel guesses from one /64 were checked with argon2"
        );
        assert!(assert_refused(&answers) >= 180);
        // The next /64 is another client.
        let (status, _, body) = sign_in_from(
            &app,
            "user1@example.com",
            "wrong guess!!",
            "2001:db8:7:a::1",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
);

both_backends!(
    a_full_queue_for_password_checks_answers_429,
    |backend| async move {
        let app = TestApp::start_with(
            backend,
            &[
                ("KYC_DESK_TRUSTED_PROXIES", "127.0.0.1"),
                ("KYC_DESK_PASSWORD_CHECK_WAIT", "1s"),
                // The queue for argon2 is the limit under test, not the request limit.
                ("KYC_DESK_MAX_CONCURRENT_REQUESTS", "1000"),
            ],
        )
        .await;
        // 400 different accounts from 400 different addresses: no throttle applies, but only
        // so many checks may queue for argon2; the rest are told to come back.
        let guesses = (0..400).map(|i| {
            let app = &app;
            async move {
                sign_in_from(
                    app,
                    &format!("user{i}@example.com"),
                    "wrong guess!!",
                    &format!("198.18.{}.{}", i / 200, i % 200 + 1),
                )
                .await
            }
        });
        let answers = futures::future::join_all(guesses).await;
        let busy: Vec<_> = answers
            .iter()
            .filter(|(status, _, _)| *status == StatusCode::TOO_MANY_REQUESTS)
            .collect();
        assert!(!busy.is_empty(), "no check was refused for a full queue");
        assert_refused(&answers);
        for (_, retry, body) in busy {
            assert!(retry.is_some(), "{body}");
            assert!(
                body.to_string().contains("checking many passwords"),
                "{body}"
            );
        }
        // A check that never ran used up no attempt: only the 401s count (account + address).
        let wrong = answers
            .iter()
            .filter(|(status, _, _)| *status == StatusCode::UNAUTHORIZED)
            .count() as i64;
        let counted: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sign_in_throttle WHERE failures > 0")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        assert_eq!(counted, 2 * wrong);
        // Once the flood is over, a sign-in goes through.
        app.user("op@example.com", Role::Operator).await;
        app.signed_in("op@example.com").await;
    }
);

both_backends!(
    one_statement_counts_and_locks_like_the_rule,
    |backend| async move {
        use kyc_desk::server::auth::throttle::{
            ACCOUNT_FIRST_LOCK_SECS, ACCOUNT_FREE_FAILURES, ACCOUNT_MAX_LOCK_SECS,
            account_lock_secs,
        };
        use kyc_desk::server::db::throttle::{LockRule, admit_account_attempt, count_attempt};
        let app = TestApp::start(backend).await;
        let pool = &app.state.db.pool;
        let rule = LockRule {
            free: ACCOUNT_FREE_FAILURES,
            first: ACCOUNT_FIRST_LOCK_SECS,
            max: ACCOUNT_MAX_LOCK_SECS,
            // Long enough for the locks to reach their cap within one window.
            window: 100_000,
        };
        let mut now = 1_000_000;
        for n in 1..=12_i64 {
            let counter = admit_account_attempt(pool, "account:x", now, rule)
                .await
                .unwrap();
            assert_eq!(counter.admitted, 1, "attempt {n}");
            assert_eq!(counter.failures, n);
            let lock = account_lock_secs(n).map_or(0, |secs| now + secs);
            assert_eq!(counter.locked_until, lock, "attempt {n}");
            if lock > 0 {
                // Refused and not counted while the lock runs.
                let refused = admit_account_attempt(pool, "account:x", lock - 1, rule)
                    .await
                    .unwrap();
                assert_eq!((refused.admitted, refused.failures), (0, n));
                assert_eq!(refused.locked_until, lock);
                now = lock;
            }
        }
        // A new window starts the count again.
        let counter = admit_account_attempt(pool, "account:x", now + rule.window + 1, rule)
            .await
            .unwrap();
        assert_eq!(
            (counter.admitted, counter.failures, counter.locked_until),
            (1, 1, 0)
        );
        for n in 1..=3 {
            let counter = count_attempt(pool, "address:y", now, 600).await.unwrap();
            assert_eq!(counter.failures, n);
        }
        assert_eq!(
            count_attempt(pool, "address:y", now + 601, 600)
                .await
                .unwrap()
                .failures,
            1
        );
    }
);

both_backends!(
    a_stored_session_key_is_not_a_session,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("root@example.com", Role::Admin).await;
        // Sign in without a cookie store, to see the cookie the browser would keep.
        let plain = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let response = plain
            .post(format!("{}/api/login", app.base))
            .header("origin", &app.base)
            .form(&[
                ("email", "root@example.com"),
                ("password", common::PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| c.strip_prefix("kyc_desk_session="))
            .and_then(|c| c.split(';').next())
            .expect("a session cookie")
            .to_string();
        let whoami = |value: String| {
            let plain = plain.clone();
            let base = app.base.clone();
            async move {
                let response = plain
                    .post(format!("{base}/api/whoami"))
                    .header("origin", &base)
                    .header("cookie", format!("kyc_desk_session={value}"))
                    .send()
                    .await
                    .unwrap();
                response.json::<serde_json::Value>().await.unwrap()
            }
        };
        assert!(
            !whoami(cookie.clone()).await.is_null(),
            "the cookie is a session"
        );
        let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM auth_sessions")
            .fetch_all(&app.state.db.pool)
            .await
            .unwrap();
        assert!(!stored.is_empty());
        for key in stored {
            assert_ne!(key, cookie, "the session id is stored as is");
            assert!(
                whoami(key).await.is_null(),
                "a stored key took the session over"
            );
        }
    }
);
