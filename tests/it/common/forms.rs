//! Link forms and sign-in for a server addressed by its base URL: a spawned `kyc-desk serve`
//! process as much as a [`super::TestApp`].

use super::PASSWORD;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// A fresh idempotency key, as the link form makes one per form.
pub fn form_key() -> String {
    format!("form-{}", uuid::Uuid::new_v4().simple())
}

/// The link form as the page posts it to `create_link`: `option`, customer, phone, consent
/// and idempotency `key`, handing over the provider's URL at once (the in-person hand-over
/// the older tests exercise; `("handover", "customer_link")` in `extra` issues KYC Desk's
/// link instead); each `extra` field (named without `input[...]`) replaces or adds one.
pub fn link_form_with(
    option: &str,
    name: &str,
    phone: &str,
    key: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = vec![
        ("input[option]".into(), option.into()),
        ("input[customer_name]".into(), name.into()),
        ("input[phone]".into(), phone.into()),
        ("input[consent]".into(), "on".into()),
        ("input[idempotency_key]".into(), key.into()),
        ("input[handover]".into(), "provider_url".into()),
    ];
    for (field, value) in extra {
        let field = format!("input[{field}]");
        form.retain(|(n, _)| *n != field);
        form.push((field, value.to_string()));
    }
    form
}

/// The link form for a customer with the tests' phone number and, optionally, an email.
pub fn link_form(
    option: &str,
    name: &str,
    email: Option<&str>,
    key: &str,
) -> Vec<(String, String)> {
    let extra: Vec<(&str, &str)> = email.map(|email| ("email", email)).into_iter().collect();
    link_form_with(option, name, "9876543210", key, &extra)
}

/// Calls a server function of the server at `base` (which need not be a [`TestApp`]).
pub async fn call_at(
    base: &str,
    client: &reqwest::Client,
    function: &str,
    args: &[(String, String)],
) -> (StatusCode, Value) {
    let response = client
        .post(format!("{base}/api/{function}"))
        .header("origin", base)
        .form(args)
        .send()
        .await
        .unwrap_or_else(|error| panic!("{function} at {base}: {error}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A browser-like client: keeps cookies, does not follow redirects, gives up after a minute.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A client signed in at `base` as `email` with the tests' password.
pub async fn sign_in_at(base: &str, email: &str) -> reqwest::Client {
    let client = browser();
    let (status, body) = call_at(
        base,
        &client,
        "login",
        &[
            ("email".into(), email.into()),
            ("password".into(), PASSWORD.into()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "sign-in of {email}: {body}");
    client
}
