//! SMS and WhatsApp through Message Central: the sending token, the connection check, sending
//! a message, and what each failure reads as.

use super::first_line;
use crate::server::providers::{CappedReadError, ProviderHttp, read_capped};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;

/// Largest answer of the SMS API that is read (its answers are a few hundred bytes).
pub const MAX_SMS_ANSWER_BYTES: usize = 1024 * 1024;

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
    /// An answer larger than [`MAX_SMS_ANSWER_BYTES`] (not read further).
    TooLarge,
}

/// The JSON of an SMS API answer, read through [`read_capped`]; a body that is not JSON
/// reads as `null` (the callers then go by the status).
async fn answer_json(response: reqwest::Response) -> Result<serde_json::Value, SmsTokenError> {
    match read_capped(response, MAX_SMS_ANSWER_BYTES).await {
        Ok(body) => Ok(serde_json::from_slice(&body).unwrap_or_default()),
        Err(CappedReadError::TooLarge { .. }) => Err(SmsTokenError::TooLarge),
        Err(CappedReadError::Read(error)) => Err(SmsTokenError::of_transport(&error)),
    }
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
        .map_err(|e| SmsTokenError::of_transport(&e))?;
    let status = response.status();
    let body = answer_json(response).await?;
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

impl SmsTokenError {
    /// A request that got no answer: timed out, or never connected.
    fn of_transport(error: &reqwest::Error) -> Self {
        if error.is_timeout() {
            SmsTokenError::Timeout
        } else {
            SmsTokenError::Unreachable
        }
    }

    /// The connection check's sentence.
    fn check_reason(self) -> String {
        match self {
            SmsTokenError::Timeout => "Message Central did not answer in time.".into(),
            SmsTokenError::Unreachable => {
                "KYC Desk could not reach Message Central's SMS service (check the base URL).".into()
            }
            SmsTokenError::Refused => "Message Central refused the customer ID or password; an admin must correct them on the Credentials page.".into(),
            SmsTokenError::Unexpected(status) => format!(
                "Message Central's SMS service answered unexpectedly (HTTP {status})."
            ),
            SmsTokenError::TooLarge => format!(
                "Message Central's SMS service sent an answer larger than {} MiB, which KYC Desk does not read (check the base URL).",
                MAX_SMS_ANSWER_BYTES / (1024 * 1024)
            ),
        }
    }

    /// A send's clause (it completes "Sending by SMS to … failed: …").
    fn send_reason(self) -> String {
        match self {
            SmsTokenError::Timeout => "Message Central did not answer in time".into(),
            SmsTokenError::Unreachable => {
                "KYC Desk could not reach Message Central's SMS service".into()
            }
            SmsTokenError::Refused => {
                "Message Central refused the SMS customer ID or password".into()
            }
            SmsTokenError::Unexpected(status) => {
                format!("Message Central did not issue a sending token (HTTP {status})")
            }
            SmsTokenError::TooLarge => format!(
                "Message Central sent an answer larger than {} MiB, which KYC Desk does not read",
                MAX_SMS_ANSWER_BYTES / (1024 * 1024)
            ),
        }
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
        Err(error) => Err(error.check_reason()),
    }
}

/// One text message to hand over.
pub struct Sms<'a> {
    /// `SMS` or `WHATSAPP` (Message Central's flow type).
    pub flow: &'a str,
    /// The ten national digits of an Indian number.
    pub national_number: &'a str,
    /// The text.
    pub text: String,
}

/// Sends `sms` with the stored SMS settings and password: a sending token first, then the
/// message. `Ok` carries Message Central's verification id; `Err` a plain-words clause.
pub async fn send(
    http: &ProviderHttp,
    settings: &BTreeMap<String, String>,
    password: Option<SecretString>,
    sms: Sms<'_>,
) -> Result<Option<String>, String> {
    let setting = |name: &str| settings.get(name).cloned().unwrap_or_default();
    let token = sms_token(http, settings, password)
        .await
        .map_err(SmsTokenError::send_reason)?;
    let base = setting("base_url");
    let base = base.trim_end_matches('/');
    let mut query: Vec<(&str, String)> = vec![
        ("countryCode", "91".into()),
        ("customerId", setting("customer_id")),
        ("type", "SMS".into()),
        ("flowType", sms.flow.into()),
        ("mobileNumber", sms.national_number.into()),
        ("message", sms.text),
    ];
    let sender = setting("sender_id");
    if !sender.is_empty() {
        query.push(("senderId", sender));
    }
    let answer = http
        .client()
        .post(format!("{base}/verification/v3/send"))
        .query(&query)
        .header("authToken", token.expose_secret())
        .send()
        .await
        .map_err(|e| SmsTokenError::of_transport(&e).send_reason())?;
    let status = answer.status();
    let body = answer_json(answer)
        .await
        .map_err(SmsTokenError::send_reason)?;
    let code = body.get("responseCode").and_then(|c| c.as_i64());
    if status.is_success() && matches!(code, Some(200) | None) {
        Ok(body
            .pointer("/data/verificationId")
            .map(|v| v.to_string().trim_matches('"').to_string()))
    } else {
        let reason = body
            .pointer("/data/errorMessage")
            .or_else(|| body.get("message"))
            .and_then(|m| m.as_str())
            .map(first_line)
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        Err(format!(
            "Message Central did not send the message ({reason})"
        ))
    }
}
