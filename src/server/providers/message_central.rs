//! Message Central e-KYC Now: one call, "generate a redirection URL" for a flow
//! (PROVIDERS.md §1). There is no status endpoint; the customer comes back through the flow's
//! redirection URL.
//!
//! The call is never retried here: each generated URL is a live, single-use link (and on a
//! trial account each one spends one of five), so a caller that gets an error with
//! [`ProviderError::may_have_reached_provider`] must record the doubt instead of calling again.

use super::{
    ProviderError, ProviderHttp, endpoint, error_detail, int_of, redact_json, secret_header, send,
    text_of,
};
use crate::provider::Provider;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Instant;

/// Production host.
pub const PRODUCTION_BASE_URL: &str = "https://ekyc.messagecentral.com";
/// Trial / staging host (trial key and predefined trial flow).
pub const STAGING_BASE_URL: &str = "https://ekyc-staging.messagecentral.com";
/// Path of the generate-URL call, appended to the base URL.
pub const GENERATE_URL_PATH: &str = "/ekyc/api/v1/redirection/generate-url";
/// Link lifetime assumed when the answer does not state one (the documented value).
pub const DEFAULT_EXPIRES_IN_MINUTES: i64 = 30;

/// How `company_name` is sent.
///
/// The guide's table says a JSON body, its cURL sample a multipart form field. JSON is the
/// default. `Form` sends `application/x-www-form-urlencoded`: our reqwest build has no
/// `multipart` feature, and a server that reads a form field reads it from either encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyEncoding {
    /// `{"company_name": "..."}` as `application/json`.
    #[default]
    Json,
    /// `company_name=...` as `application/x-www-form-urlencoded`.
    Form,
}

/// What a call needs from the stored Message Central credential.
///
/// Deliberately not `Serialize`: the API key must never leave the server.
#[derive(Clone)]
pub struct McCredentials {
    /// [`PRODUCTION_BASE_URL`], [`STAGING_BASE_URL`] or the built-in sandbox.
    pub base_url: String,
    /// The company name given at sign-up.
    pub company_name: String,
    /// The API key, without the `Bearer ` prefix (one pasted with it is accepted too).
    pub api_key: SecretString,
    /// How the body is encoded.
    pub encoding: BodyEncoding,
}

impl McCredentials {
    /// From a stored credential's settings and decrypted secrets (the API key is taken).
    pub fn from_stored(
        settings: &std::collections::BTreeMap<String, String>,
        secrets: &mut std::collections::BTreeMap<String, SecretString>,
    ) -> Self {
        let setting = |name: &str| super::setting(settings, name);
        McCredentials {
            base_url: setting("base_url"),
            company_name: setting("company_name"),
            api_key: super::take_secret(secrets, "api_key"),
            encoding: if setting("body_encoding") == "form" {
                BodyEncoding::Form
            } else {
                BodyEncoding::Json
            },
        }
    }
}

impl std::fmt::Debug for McCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McCredentials")
            .field("base_url", &self.base_url)
            .field("company_name", &self.company_name)
            .field("api_key", &"[redacted]")
            .field("encoding", &self.encoding)
            .finish()
    }
}

/// A generated e-KYC link.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McLink {
    /// The single-use URL to give the customer.
    pub url: String,
    /// The link's token, when returned (used to match the customer's return).
    pub token: Option<String>,
    /// The journey id, when returned (used to match the customer's return).
    pub journey_id: Option<String>,
    /// Minutes the link stays valid.
    pub expires_in_minutes: i64,
    /// The provider's message, when present.
    pub message: Option<String>,
    /// The answer with secrets (including `token`) dropped and Aadhaar numbers masked.
    pub redacted_body: Value,
}

/// Asks Message Central for a new e-KYC link for `flow_id`. Never retried (see the module
/// documentation).
pub async fn generate_url(
    http: &ProviderHttp,
    creds: &McCredentials,
    flow_id: &str,
) -> Result<McLink, ProviderError> {
    generate_url_returning_to(http, creds, flow_id, None).await
}

/// [`generate_url`], naming where the customer returns as a `redirect_url` query parameter.
/// Only the built-in sandbox reads it: a real flow's redirection URL is set once in Message
/// Central's console (pointing at KYC Desk's `/kyc/return`).
pub async fn generate_url_returning_to(
    http: &ProviderHttp,
    creds: &McCredentials,
    flow_id: &str,
    redirect_url: Option<&str>,
) -> Result<McLink, ProviderError> {
    let mut url = endpoint(&creds.base_url, GENERATE_URL_PATH, "Message Central")?;
    if let Some(redirect_url) = redirect_url {
        url.query_pairs_mut()
            .append_pair("redirect_url", redirect_url);
    }
    let flow_id = flow_id.trim();
    if flow_id.is_empty() {
        return Err(ProviderError::Config("the flow ID is empty".into()));
    }
    let flow_header = HeaderValue::from_str(flow_id).map_err(|_| {
        ProviderError::Config("the flow ID contains characters that cannot be sent".into())
    })?;
    let company_name = creds.company_name.trim();
    if company_name.is_empty() {
        return Err(ProviderError::Config("the company name is empty".into()));
    }
    let key = creds.api_key.expose_secret().trim();
    // Admins sometimes paste the key with its prefix; sending "Bearer Bearer ..." would fail.
    let key = key
        .strip_prefix("Bearer ")
        .or_else(|| key.strip_prefix("bearer "))
        .unwrap_or(key)
        .trim();
    if key.is_empty() {
        return Err(ProviderError::Config(
            "the Message Central API key is empty".into(),
        ));
    }
    let api_key = secret_header(&format!("Bearer {key}"), "Message Central API key")?;

    let request = http
        .client()
        .post(url)
        .header("flow_id", flow_header)
        .header("api_key", api_key);
    let request = match creds.encoding {
        BodyEncoding::Json => request.json(&json!({ "company_name": company_name })),
        BodyEncoding::Form => request.form(&[("company_name", company_name)]),
    };

    let started = Instant::now();
    let answer = send(request).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(provider = Provider::MessageCentral.as_str(), elapsed_ms, %error, "generate-url failed");
            return Err(error);
        }
    };
    tracing::info!(
        provider = Provider::MessageCentral.as_str(),
        http_status = answer.status,
        elapsed_ms,
        "generate-url answered"
    );
    match answer.status {
        200..=299 => parse_link(&answer.body),
        401 => Err(ProviderError::Unauthorized {
            detail: error_detail(&answer.body),
        }),
        429 => Err(ProviderError::RateLimited),
        status => Err(ProviderError::Http {
            status,
            detail: error_detail(&answer.body),
        }),
    }
}

/// Reads a successful generate-URL answer; `url` is required and must be an http(s) URL.
pub(super) fn parse_link(body: &[u8]) -> Result<McLink, ProviderError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Malformed(format!("the answer is not valid JSON ({e})")))?;
    if !json.is_object() {
        return Err(ProviderError::Malformed(
            "the answer is not a JSON object".into(),
        ));
    }
    let url = json
        .get("url")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .ok_or_else(|| ProviderError::Malformed("the answer has no `url`".into()))?;
    let is_web_link = url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
    if !is_web_link {
        return Err(ProviderError::Malformed(
            "the answer's `url` is not an http(s) address".into(),
        ));
    }
    let expires_in_minutes = int_of(json.get("expires_in_minutes"))
        .filter(|minutes| *minutes > 0)
        .unwrap_or(DEFAULT_EXPIRES_IN_MINUTES);
    Ok(McLink {
        url: url.to_string(),
        token: text_of(json.get("token")),
        journey_id: text_of(json.get("journey_id")),
        expires_in_minutes,
        message: text_of(json.get("message")),
        redacted_body: redact_json(&json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_api_key() {
        let creds = McCredentials {
            base_url: STAGING_BASE_URL.into(),
            company_name: "Acme".into(),
            api_key: SecretString::from("very-secret-key-123"),
            encoding: BodyEncoding::Json,
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("very-secret-key-123"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn parses_the_documented_answer() {
        let link = parse_link(
            br#"{"url":"https://ekyc.example/j/abc","token":"tk","journey_id":"M1768","expires_in_minutes":30,"message":"ok"}"#,
        )
        .unwrap();
        assert_eq!(link.url, "https://ekyc.example/j/abc");
        assert_eq!(link.token.as_deref(), Some("tk"));
        assert_eq!(link.journey_id.as_deref(), Some("M1768"));
        assert_eq!(link.expires_in_minutes, 30);
        assert_eq!(link.message.as_deref(), Some("ok"));
        assert!(link.redacted_body.get("token").is_none());
    }

    #[test]
    fn optional_fields_default() {
        let link =
            parse_link(br#"{"url":"https://e/x","journey_id":12345,"expires_in_minutes":"15"}"#)
                .unwrap();
        assert_eq!(link.journey_id.as_deref(), Some("12345"));
        assert_eq!(link.expires_in_minutes, 15);
        let link = parse_link(br#"{"url":"https://e/x"}"#).unwrap();
        assert_eq!(link.expires_in_minutes, DEFAULT_EXPIRES_IN_MINUTES);
        assert_eq!(link.token, None);
    }

    #[test]
    fn refuses_answers_without_a_usable_url() {
        for body in [
            &br#"{"token":"t"}"#[..],
            br#"{"url":""}"#,
            br#"{"url":"javascript:alert(1)"}"#,
            br#"{"url":"https://e/x""#,
            br#"[]"#,
            b"",
        ] {
            assert!(
                matches!(parse_link(body), Err(ProviderError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
