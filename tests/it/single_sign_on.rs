//! Single sign-on against a real OpenID provider: the `oidc-provider` package started on
//! loopback by `end2end/oidc/provider.mjs` for each test. The first sign-on links an account
//! an admin made by verified email; accounts are never created by it; replayed, foreign and
//! forged callbacks are refused with a clear page; the provider's `amr` stands for the second
//! factor only when the admin counts it; SSO-only users have no password and step up at the
//! provider; the client secret never reaches a page or an audit row.

use crate::common;

use common::{PASSWORD, TestApp};
use kyc_desk::types::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};

const CLIENT_SECRET: &str = "sso-canary-client-secret-7f3a9c";

/// A running test identity provider; stopped when dropped.
struct Provider {
    issuer: String,
    child: Child,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the provider with KYC Desk's callback (and sign-in page) registered for `app`.
fn start_provider(app: &TestApp) -> Provider {
    let root = env!("CARGO_MANIFEST_DIR");
    let package = format!("{root}/end2end/node_modules/oidc-provider");
    assert!(
        std::path::Path::new(&package).exists(),
        "the test identity provider is not installed ({package} is missing): run `./setup.sh test` (npm ci in end2end)"
    );
    let mut child = Command::new("node")
        .arg(format!("{root}/end2end/oidc/provider.mjs"))
        .args(["--secret", CLIENT_SECRET])
        .args(["--redirect", &format!("{}/login/sso/callback", app.base)])
        .args(["--post-logout", &format!("{}/login", app.base)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node end2end/oidc/provider.mjs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the provider's first line");
    let issuer = line
        .strip_prefix("issuer ")
        .unwrap_or_else(|| panic!("the provider did not start: {line:?}"))
        .trim()
        .to_string();
    Provider { issuer, child }
}

async fn app_with_provider(
    backend: common::Backend,
    extra: &[(&str, &str)],
) -> (TestApp, Provider) {
    let mut vars = vec![("KYC_DESK_PUBLIC_URL", "http://localhost")];
    vars.extend_from_slice(extra);
    let app = TestApp::start_with(backend, &vars).await;
    let provider = start_provider(&app);
    (app, provider)
}

/// Saves the single-sign-on credential as the (stepped-up) admin on `admin`.
async fn set_up_sso(app: &TestApp, admin: &reqwest::Client, issuer: &str, mfa_amr: &str) {
    let response = admin
        .post(format!("{}/api/save_credential", app.base))
        .header("origin", &app.base)
        .json(&json!({ "input": {
            "kind": "single_sign_on", "environment": "default",
            "settings": {"issuer": issuer, "client_id": "kyc-desk", "mfa_amr": mfa_amr, "button_label": "Acme staff login"},
            "secrets": {"client_secret": CLIENT_SECRET},
        }}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "saving the SSO credential: {body}");
}

/// One hop of a browser: status, Location (absolute) and body.
async fn hop(client: &reqwest::Client, url: &str) -> (StatusCode, Option<String>, String) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status();
    let location = response.headers().get("location").map(|value| {
        let value = value.to_str().unwrap();
        response.url().join(value).unwrap().to_string()
    });
    (status, location, response.text().await.unwrap())
}

/// A page that a browser's script submits at once (the provider's "Submitting Callback",
/// when a sign-in as another person ends its earlier session): the form's action and fields.
fn auto_submitted_form(body: &str) -> Option<(String, Vec<(String, String)>)> {
    if !body.contains("document.forms[0].submit()") {
        return None;
    }
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[start..].split('"').next()?.to_string())
    };
    let form = body.split("<form").nth(1)?;
    let action = attribute(form.split('>').next()?, "action")?;
    let fields = form
        .split("<input")
        .skip(1)
        .filter_map(|input| Some((attribute(input, "name")?, attribute(input, "value")?)))
        .collect();
    Some((action, fields))
}

/// Follows redirects from `url` until the provider's sign-in form or KYC Desk's callback.
async fn follow(
    app: &TestApp,
    client: &reqwest::Client,
    url: &str,
) -> (StatusCode, String, String) {
    let mut url = url.to_string();
    for _ in 0..10 {
        let (mut status, mut location, mut body) = hop(client, &url).await;
        if let Some((action, fields)) = auto_submitted_form(&body) {
            let response = client.post(&action).form(&fields).send().await.unwrap();
            status = response.status();
            location = response.headers().get("location").map(|value| {
                response
                    .url()
                    .join(value.to_str().unwrap())
                    .unwrap()
                    .to_string()
            });
            url = action;
            body = response.text().await.unwrap();
        }
        match location {
            Some(next)
                if status.is_redirection()
                    && !next.starts_with(&format!("{}/login/sso/callback", app.base)) =>
            {
                url = next
            }
            Some(next) if status.is_redirection() => return (status, next, body),
            _ => return (status, url, body),
        }
    }
    panic!("too many redirects from {url}");
}

/// Signs `email` in at the provider through KYC Desk's `/login/sso?next=…`; returns the
/// callback URL the provider sent the browser to (not yet opened).
async fn through_provider(
    app: &TestApp,
    client: &reqwest::Client,
    start: &str,
    email: &str,
    mfa: bool,
) -> String {
    let (status, url, body) = follow(app, client, &format!("{}{start}", app.base)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the provider's sign-in form: {url} {body}"
    );
    assert!(body.contains("name=\"login\""), "{body}");
    let mut form = vec![
        ("login", email.to_string()),
        ("password", "anything".to_string()),
    ];
    if mfa {
        form.push(("mfa", "1".into()));
    }
    let response = client.post(&url).form(&form).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let next = response
        .url()
        .join(response.headers()["location"].to_str().unwrap())
        .unwrap()
        .to_string();
    let (status, callback, body) = follow(app, client, &next).await;
    assert!(
        status.is_redirection()
            && callback.starts_with(&format!("{}/login/sso/callback", app.base)),
        "the provider did not send the browser back: {status} {callback} {}",
        &body[body.len().saturating_sub(1500)..]
    );
    callback
}

/// A whole sign-on: where KYC Desk sends the browser after the callback, or its refusal page.
async fn sign_on(
    app: &TestApp,
    client: &reqwest::Client,
    email: &str,
    mfa: bool,
) -> (StatusCode, Option<String>, String) {
    let callback = through_provider(app, client, "/login/sso?next=/sessions", email, mfa).await;
    let answer = hop(client, &callback).await;
    if !answer.0.is_redirection() {
        eprintln!("sign-on of {email} refused: {} {}", answer.0, answer.2);
    }
    answer
}

both_backends!(
    a_first_sign_on_links_by_verified_email,
    |backend| async move {
        let (app, provider) = app_with_provider(backend, &[]).await;
        app.user("admin@example.com", Role::Admin).await;
        let admin = app.signed_in("admin@example.com").await;
        let visitor = app.client();

        // Not set up: the button is absent and the route says so in words.
        let (_, body) = app
            .call(
                &visitor,
                "sign_in_options",
                &[("provider_sign_out", "false")],
            )
            .await;
        assert_eq!(body["single_sign_on"], Value::Null, "{body}");
        let (status, _, page) = hop(&visitor, &format!("{}/login/sso", app.base)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(page.contains("Single sign-on is not set up"), "{page}");

        // Set up with a provider that does not answer: the sign-in route says so in words.
        set_up_sso(&app, &admin, "http://127.0.0.1:9", "mfa").await;
        let (status, _, page) = hop(&visitor, &format!("{}/login/sso", app.base)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{page}");
        assert!(
            page.contains("The identity provider could not be reached"),
            "{page}"
        );
        assert!(!page.contains(CLIENT_SECRET));

        set_up_sso(&app, &admin, &provider.issuer, "mfa").await;
        let (status, body) = app
            .call(
                &admin,
                "test_credential",
                &[("kind", "single_sign_on"), ("environment", "default")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.as_str().unwrap().contains("discovery document"),
            "{body}"
        );
        let (_, body) = app
            .call(
                &visitor,
                "sign_in_options",
                &[("provider_sign_out", "false")],
            )
            .await;
        assert_eq!(body["single_sign_on"], "Acme staff login");
        let (_, _, login_page) = hop(&visitor, &format!("{}/login", app.base)).await;
        assert!(
            login_page.contains("Sign in with Acme staff login"),
            "{login_page}"
        );

        // The first sign-on links the account the admin made, by verified email.
        app.user("ops@example.com", Role::Operator).await;
        let ops = app.client();
        let (status, location, _) = sign_on(&app, &ops, "ops@example.com", false).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location, Some(format!("{}/sessions", app.base)));
        let me = app.whoami(&ops).await;
        assert_eq!(me["email"], "ops@example.com", "{me}");
        assert_eq!(me["single_sign_on"], true, "{me}");
        let linked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM user_identities")
            .fetch_one(&app.state.db.pool)
            .await
            .unwrap();
        assert_eq!(linked, 1);
        // Later sign-ons find it by subject (no second link).
        let again = app.client();
        let (status, _, _) = sign_on(&app, &again, "ops@example.com", false).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(app.whoami(&again).await["email"], "ops@example.com");

        // Sign-on creates no account, and an unverified email matches none.
        let stranger = app.client();
        let (status, _, page) = sign_on(&app, &stranger, "nobody@example.com", false).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            page.contains("There is no KYC Desk account for nobody@example.com"),
            "{page}"
        );
        app.user("unverified@example.com", Role::Operator).await;
        let (status, _, page) = sign_on(&app, &app.client(), "unverified@example.com", false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            page.contains("did not confirm your email address"),
            "{page}"
        );
        assert_eq!(app.whoami(&stranger).await, Value::Null);

        // A replayed callback, a foreign one (another browser) and a forged state are refused.
        let browser = app.client();
        let callback =
            through_provider(&app, &browser, "/login/sso", "ops@example.com", false).await;
        // Coming from the provider's site the browser leaves the SameSite=Strict session cookie
        // off; KYC Desk's answer sends it on to the same address from its own page, touching
        // nothing (the sign-on stays to be finished).
        let response = browser
            .get(&callback)
            .header("sec-fetch-site", "cross-site")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bounce = response.text().await.unwrap();
        let path = callback
            .strip_prefix(&app.base)
            .unwrap()
            .replace('&', "&amp;");
        assert!(
            bounce.contains(&format!(
                "<meta http-equiv=\"refresh\" content=\"0;url={path}\">"
            )),
            "{bounce}"
        );
        let thief = app.client();
        let (status, _, page) = hop(&thief, &callback).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "a foreign callback: {page}"
        );
        assert!(page.contains("was not started in this browser"), "{page}");
        let (status, _, page) = hop(&browser, &callback).await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "the browser that started it: {page}"
        );
        let replay = app.client();
        let (status, _, _) = hop(&replay, &format!("{}/login/sso", app.base)).await;
        assert!(status.is_redirection());
        let (status, _, page) = hop(&browser, &callback).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "replayed: {page}");
        let (status, _, page) = hop(&replay, &callback).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "replayed into another sign-on: {page}"
        );
        assert_eq!(app.whoami(&replay).await, Value::Null);
        let forged = app.client();
        let (status, _, _) = hop(&forged, &format!("{}/login/sso", app.base)).await;
        assert!(status.is_redirection());
        let (status, _, page) = hop(
            &forged,
            &format!("{}/login/sso/callback?code=abc&state=forged", app.base),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert_eq!(app.whoami(&thief).await, Value::Null);
        assert_eq!(app.whoami(&forged).await, Value::Null);

        // A disabled account is refused.
        let ops_id =
            sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE email = 'ops@example.com'")
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
        let (status, body) = app
            .call(
                &admin,
                "set_user_disabled",
                &[("user_id", &ops_id.to_string()), ("disabled", "true")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _, page) = sign_on(&app, &app.client(), "ops@example.com", false).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(page.contains("disabled"), "{page}");

        // Signing out of an SSO session offers the provider's sign-out.
        let (_, body) = app
            .call(
                &visitor,
                "sign_in_options",
                &[("provider_sign_out", "true")],
            )
            .await;
        let sign_out = body["provider_sign_out"].as_str().unwrap_or_default();
        assert!(
            sign_out.starts_with(&format!("{}/session/end", provider.issuer)),
            "{body}"
        );
        assert!(sign_out.contains("post_logout_redirect_uri="), "{sign_out}");

        let audit = app.audit_text().await;
        assert!(audit.contains("linked_now"), "{audit}");
        assert!(
            audit.contains("callback not started here or replayed"),
            "{audit}"
        );
        assert!(audit.contains("no account for the email"), "{audit}");
        assert!(
            !audit.contains(CLIENT_SECRET),
            "the client secret reached the audit log"
        );
        let (_, _, credentials_page) = app.get(&admin, "/credentials").await;
        assert!(!credentials_page.contains(CLIENT_SECRET));
    }
);

both_backends!(
    the_providers_second_factor_counts_only_when_named,
    |backend| async move {
        let (app, provider) =
            app_with_provider(backend, &[("KYC_DESK_SECOND_FACTOR_ROLES", "admin")]).await;
        app.user("first@example.com", Role::Admin).await;
        let first = app.signed_in_only("first@example.com").await;
        let key = app.enrol_authenticator(&first).await;
        let (status, body) = app
            .call(
                &first,
                "step_up",
                &[("secret", &common::totp_code(&key, 1))],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        set_up_sso(&app, &first, &provider.issuer, "mfa").await;

        // An admin without a factor, signed on without the provider's second factor: enrol first.
        app.user("boss@example.com", Role::Admin).await;
        let plain = app.client();
        let (status, _, _) = sign_on(&app, &plain, "boss@example.com", false).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(app.whoami(&plain).await["must_enrol"], true);
        let (status, location, _) = app.get(&plain, "/users").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(location.as_deref(), Some("/account/authenticator"));

        // With it (amr "mfa"): nothing to enrol, and the sign-on counts as a fresh step-up.
        let strong = app.client();
        let (status, _, _) = sign_on(&app, &strong, "boss@example.com", true).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(
            app.whoami(&strong).await["must_enrol"],
            false,
            "{}",
            app.audit_text().await
        );
        let (status, body) = app.call(&strong, "list_users", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app.call(&strong, "email_template", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app
            .call(
                &strong,
                "save_email_template",
                &[("subject", "Verify"), ("body", "Open {link}")],
            )
            .await;
        assert_ne!(
            status,
            StatusCode::FORBIDDEN,
            "a sign-on with the provider's second factor is a step-up: {body}"
        );

        // A user with KYC Desk's own factor still gives it after a sign-on without the provider's.
        app.user("ops@example.com", Role::Operator).await;
        let ops = app.signed_in_only("ops@example.com").await;
        let key = app.enrol_authenticator(&ops).await;
        let own = app.client();
        let (status, location, _) = sign_on(&app, &own, "ops@example.com", false).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert!(
            location
                .unwrap()
                .starts_with(&format!("{}/login/code", app.base))
        );
        let (status, _) = app.call(&own, "list_sessions", &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "half signed in");
        let (status, body) = app
            .call(
                &own,
                "second_step",
                &[("code", &common::totp_code(&key, 1))],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = app.call(&own, "list_sessions", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
);

both_backends!(
    sso_only_users_have_no_password_and_step_up_at_the_provider,
    |backend| async move {
        let (app, provider) = app_with_provider(backend, &[]).await;
        app.user("admin@example.com", Role::Admin).await;
        let admin = app.signed_in("admin@example.com").await;
        set_up_sso(&app, &admin, &provider.issuer, "").await;

        // Created without a password.
        let (status, row) = app
            .call(
                &admin,
                "create_user",
                &[
                    ("email", "sso@example.com"),
                    ("display_name", "Sso"),
                    ("role", "admin"),
                    ("sso_only", "true"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{row}");
        assert_eq!(row["sso_only"], true);
        assert_eq!(row["must_change_password"], false);
        let id = row["id"].as_i64().unwrap().to_string();
        // A password never works for them: the answer is an unknown email's.
        let (status, unknown) = app
            .call(
                &app.client(),
                "login",
                &[("email", "nobody@example.com"), ("password", PASSWORD)],
            )
            .await;
        let (status_sso, refused) = app
            .call(
                &app.client(),
                "login",
                &[("email", "sso@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!((status_sso, &refused), (status, &unknown));
        let (status, body) = app
            .call(
                &admin,
                "reset_user_password",
                &[("user_id", &id), ("password", "a brand new password 9")],
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");

        // Signed on; a sensitive door asks for a fresh sign-on at the provider.
        let sso = app.client();
        let (status, _, _) = sign_on(&app, &sso, "sso@example.com", false).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let me = app.whoami(&sso).await;
        assert_eq!(me["sso_only"], true, "{me}");
        let (status, body) = app
            .call(
                &sso,
                "set_user_role",
                &[("user_id", &id), ("role", "admin")],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["StepUpRequired"]["method"], "SingleSignOn", "{body}");
        let (status, body) = app.call(&sso, "step_up", &[("secret", PASSWORD)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body.to_string().contains("identity provider"), "{body}");

        // Someone else at the provider cannot confirm for them.
        app.user("other@example.com", Role::Operator).await;
        let callback = through_provider(
            &app,
            &sso,
            "/login/sso?confirm=1&next=/users",
            "other@example.com",
            false,
        )
        .await;
        let (status, _, page) = hop(&sso, &callback).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert!(page.contains("another person"), "{page}");
        // They themselves can.
        let callback = through_provider(
            &app,
            &sso,
            "/login/sso?confirm=1&next=/users",
            "sso@example.com",
            false,
        )
        .await;
        let (status, location, page) = hop(&sso, &callback).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(location, Some(format!("{}/users", app.base)));
        let (status, body) = app
            .call(
                &sso,
                "set_user_role",
                &[("user_id", &id), ("role", "admin")],
            )
            .await;
        assert_ne!(status, StatusCode::FORBIDDEN, "{body}");
        let step_ups: Vec<String> = sqlx::query_scalar(
            "SELECT detail FROM audit_log WHERE action = 'auth.step_up' AND outcome = 'success'",
        )
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
        assert!(
            step_ups.iter().any(|d| d.contains("single_sign_on")),
            "{step_ups:?}"
        );

        // The admin can allow a password again, and unlink the identity (sessions end).
        let (status, row) = app
            .call(
                &admin,
                "set_user_sign_on",
                &[("user_id", &id), ("change", "unlink")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{row}");
        assert_eq!(row["sso_linked"], false);
        assert_eq!(
            app.whoami(&sso).await,
            Value::Null,
            "unlinking ends their sessions"
        );
        let (status, row) = app
            .call(
                &admin,
                "set_user_sign_on",
                &[("user_id", &id), ("change", "allow_password")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{row}");
        assert_eq!(row["sso_only"], false);
        let (status, body) = app
            .call(
                &admin,
                "set_user_sign_on",
                &[("user_id", &id), ("change", "sideways")],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
);
