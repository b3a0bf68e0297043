//! Delivery channels: email through the configured SMTP server, SMS/WhatsApp through Message
//! Central's send API. Today: the connection checks the credentials page runs.

use crate::server::providers::ProviderHttp;
use base64::Engine as _;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long an SMTP check may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the SMTP server with the stored settings, authenticates when a username is
/// set, and quits. `Err` carries a plain-words reason for the operator.
pub async fn check_smtp(
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
) -> Result<String, String> {
    let host = settings.get("host").cloned().unwrap_or_default();
    let port: u16 = settings
        .get("port")
        .and_then(|p| p.parse().ok())
        .ok_or("The SMTP port is not a number; correct it on the Credentials page.")?;
    let tls = settings
        .get("tls")
        .map(String::as_str)
        .unwrap_or("starttls");
    let builder = match tls {
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
            .map_err(|e| format!("The SMTP host cannot be used for TLS: {e}."))?,
        _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
            .map_err(|e| format!("The SMTP host cannot be used for STARTTLS: {e}."))?,
    };
    let mut builder = builder.port(port).timeout(Some(SMTP_TIMEOUT));
    let username = settings.get("username").cloned().unwrap_or_default();
    if !username.is_empty() {
        let password = password
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(username, password));
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = builder.build();
    match transport.test_connection().await {
        Ok(true) => Ok(format!(
            "Connected to {host}:{port}{}, and the server answered.",
            if settings.get("username").is_some_and(|u| !u.is_empty()) {
                " and signed in"
            } else {
                ""
            }
        )),
        Ok(false) => Err(format!(
            "{host}:{port} accepted the connection but did not answer as a mail server."
        )),
        Err(error) => Err(smtp_reason(&error, &host, port)),
    }
}

fn smtp_reason(error: &lettre::transport::smtp::Error, host: &str, port: u16) -> String {
    let text = error.to_string();
    if error.is_permanent() && text.to_lowercase().contains("auth") || text.contains("535") {
        format!(
            "{host}:{port} refused the username or password; an admin must correct them on the Credentials page."
        )
    } else if error.is_timeout() {
        format!(
            "{host}:{port} did not answer within {} seconds.",
            SMTP_TIMEOUT.as_secs()
        )
    } else if error.is_tls() {
        format!(
            "The TLS handshake with {host}:{port} failed; check the TLS mode and port (STARTTLS is usually 587, TLS 465)."
        )
    } else if error.is_permanent() || error.is_transient() {
        format!("{host}:{port} refused the session: {text}.")
    } else {
        format!(
            "KYC Desk could not connect to {host}:{port} (it may be down, or the host or port may be wrong)."
        )
    }
}

/// Asks Message Central for an auth token with the stored SMS credentials (a call that sends
/// nothing). `Err` carries a plain-words reason.
pub async fn check_sms(
    http: &ProviderHttp,
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
) -> Result<String, String> {
    let base = settings.get("base_url").cloned().unwrap_or_default();
    let customer_id = settings.get("customer_id").cloned().unwrap_or_default();
    let key = base64::engine::general_purpose::STANDARD.encode(
        password
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default(),
    );
    let response = http
        .client()
        .get(format!(
            "{}/auth/v1/authentication/token",
            base.trim_end_matches('/')
        ))
        .query(&[
            ("customerId", customer_id.as_str()),
            ("key", key.as_str()),
            ("scope", "NEW"),
            ("country", "91"),
            ("email", ""),
        ])
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                "Message Central did not answer in time.".to_string()
            } else {
                "KYC Desk could not reach Message Central's SMS service (check the base URL)."
                    .to_string()
            }
        })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let has_token = body
        .get("token")
        .and_then(|t| t.as_str())
        .is_some_and(|t| !t.is_empty());
    if status.is_success() && has_token {
        Ok("Message Central accepted the customer ID and password (it issued a token; nothing was sent).".into())
    } else if status.as_u16() == 401 || body.get("status").and_then(|s| s.as_i64()) == Some(401) {
        Err("Message Central refused the customer ID or password; an admin must correct them on the Credentials page.".into())
    } else {
        Err(format!(
            "Message Central's SMS service answered unexpectedly (HTTP {}).",
            status.as_u16()
        ))
    }
}
