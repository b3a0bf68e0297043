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

/// An SMTP transport built from stored settings, and where it connects.
pub struct SmtpTarget {
    /// The transport (authenticates when a username is set).
    pub transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Builds the transport the stored SMTP settings describe; `Err` is a plain-words clause
/// naming the setting at fault.
pub fn smtp_transport(
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
    timeout: Duration,
) -> Result<SmtpTarget, String> {
    let host = settings.get("host").cloned().unwrap_or_default();
    let port: u16 = settings
        .get("port")
        .and_then(|p| p.parse().ok())
        .ok_or("the SMTP port is not a number")?;
    let builder = match settings
        .get("tls")
        .map(String::as_str)
        .unwrap_or("starttls")
    {
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host),
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&host)
            .map_err(|_| "the SMTP host cannot be used for TLS".to_string())?,
        _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host)
            .map_err(|_| "the SMTP host cannot be used for STARTTLS".to_string())?,
    };
    let mut builder = builder.port(port).timeout(Some(timeout));
    let username = settings.get("username").cloned().unwrap_or_default();
    if !username.is_empty() {
        let password = password
            .map(|p| p.expose_secret().to_string())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(username, password));
    }
    Ok(SmtpTarget {
        transport: builder.build(),
        host,
        port,
    })
}

/// Connects to the SMTP server with the stored settings, authenticates when a username is
/// set, and quits. `Err` carries a plain-words reason for the operator.
pub async fn check_smtp(
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
) -> Result<String, String> {
    let SmtpTarget {
        transport,
        host,
        port,
    } = smtp_transport(settings, password, SMTP_TIMEOUT).map_err(|problem| {
        format!(
            "{}; correct it on the Credentials page.",
            sentence(&problem)
        )
    })?;
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

fn sentence(clause: &str) -> String {
    let mut chars = clause.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
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

/// Why Message Central issued no SMS sending token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsTokenError {
    /// No answer within the provider timeout.
    Timeout,
    /// No connection (wrong base URL, service down).
    Unreachable,
    /// The customer ID or password was refused.
    Refused,
    /// Any other answer (its HTTP status).
    Unexpected(u16),
}

/// Asks Message Central for a sending token with the stored SMS settings and password.
pub async fn sms_token(
    http: &ProviderHttp,
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
) -> Result<SecretString, SmsTokenError> {
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
                SmsTokenError::Timeout
            } else {
                SmsTokenError::Unreachable
            }
        })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    match body.get("token").and_then(|t| t.as_str()) {
        Some(token) if status.is_success() && !token.is_empty() => {
            Ok(SecretString::from(token.to_string()))
        }
        _ if status.as_u16() == 401 || body.get("status").and_then(|s| s.as_i64()) == Some(401) => {
            Err(SmsTokenError::Refused)
        }
        _ => Err(SmsTokenError::Unexpected(status.as_u16())),
    }
}

/// Asks Message Central for an auth token with the stored SMS credentials (a call that sends
/// nothing). `Err` carries a plain-words reason.
pub async fn check_sms(
    http: &ProviderHttp,
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
) -> Result<String, String> {
    match sms_token(http, settings, password).await {
        Ok(_) => Ok("Message Central accepted the customer ID and password (it issued a token; nothing was sent).".into()),
        Err(SmsTokenError::Timeout) => Err("Message Central did not answer in time.".into()),
        Err(SmsTokenError::Unreachable) => Err(
            "KYC Desk could not reach Message Central's SMS service (check the base URL).".into(),
        ),
        Err(SmsTokenError::Refused) => Err("Message Central refused the customer ID or password; an admin must correct them on the Credentials page.".into()),
        Err(SmsTokenError::Unexpected(status)) => Err(format!(
            "Message Central's SMS service answered unexpectedly (HTTP {status})."
        )),
    }
}
