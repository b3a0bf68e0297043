//! Eko DigiLocker (PROVIDERS.md §2): create a consent URL, poll its status, fetch the
//! document. Eko pushes nothing, so the poller drives the last two.
//!
//! The document call has two documented shapes ([`DocumentShape`]); [`fetch_document`] tries
//! the one that last worked and falls back to the other on 404/405, and a failure names each
//! address form tried ([`failure_note`]).
//!
//! Every request is signed afresh ([`secret_key`] over the current time in milliseconds).
//! Creating a URL is never retried (it may have made a live link); the status poll and the
//! document fetch are reads and are retried on transient failures, see
//! [`ProviderHttp::with_poll_retry_delays`].

use super::{
    ProviderError, ProviderHttp, endpoint, error_detail, int_of, masked_aadhaar_value, redact_json,
    retry_reads, secret_header, send, text_of,
};
use crate::provider::Provider;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// UAT (sandbox) base.
pub const UAT_BASE_URL: &str = "https://staging.eko.in/ekoapi/v3";
/// Production base (may require a whitelisted static IP in India).
pub const PRODUCTION_BASE_URL: &str = "https://api.eko.in/ekoicici/v3";
/// Create-URL path.
pub const CREATE_PATH: &str = "/tools/kyc/digilocker";
/// Status path.
pub const STATUS_PATH: &str = "/tools/kyc/digilocker/status";
/// Document path (newer, POST shape).
pub const DOCUMENT_PATH: &str = "/tools/kyc/digilocker/document";
/// Document requested when the caller names none.
pub const DEFAULT_DOCUMENT: &str = "AADHAAR";
/// Longest `client_ref_id` Eko accepts.
pub const MAX_CLIENT_REF_ID_LEN: usize = 20;
/// Eko's code for "consent not given yet": a pending state, not a failure, when polling.
pub const CODE_PENDING: i64 = 327;

/// What a call needs from the stored Eko credential.
///
/// Deliberately not `Serialize`: the keys must never leave the server.
#[derive(Clone)]
pub struct EkoCredentials {
    /// [`UAT_BASE_URL`], [`PRODUCTION_BASE_URL`] or the built-in sandbox.
    pub base_url: String,
    /// The developer key (sent as the `developer_key` header).
    pub developer_key: SecretString,
    /// The access key (only ever used to sign; never sent).
    pub access_key: SecretString,
    /// Registered mobile number of the API user.
    pub initiator_id: String,
    /// Retailer / agent code.
    pub user_code: String,
}

impl EkoCredentials {
    /// From a stored credential's settings and decrypted secrets (the secrets are taken).
    pub fn from_stored(
        settings: &std::collections::BTreeMap<String, String>,
        secrets: &mut std::collections::BTreeMap<String, SecretString>,
    ) -> Self {
        let setting = |name: &str| super::setting(settings, name);
        EkoCredentials {
            base_url: setting("base_url"),
            developer_key: super::take_secret(secrets, "developer_key"),
            access_key: super::take_secret(secrets, "access_key"),
            initiator_id: setting("initiator_id"),
            user_code: setting("user_code"),
        }
    }
}

impl std::fmt::Debug for EkoCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EkoCredentials")
            .field("base_url", &self.base_url)
            .field("developer_key", &"[redacted]")
            .field("access_key", &"[redacted]")
            .field("initiator_id", &self.initiator_id)
            .field("user_code", &self.user_code)
            .finish()
    }
}

/// A created DigiLocker consent URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EkoLink {
    /// Eko's reference for the request (it may arrive as a number; kept as text).
    pub reference_id: String,
    /// The URL to give the customer.
    pub url: String,
    /// The answer with secrets dropped and Aadhaar numbers masked.
    pub redacted_body: Value,
}

/// What the customer shared, as the status call reports it (masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EkoUserDetails {
    /// Name.
    pub name: Option<String>,
    /// Date of birth as Eko writes it.
    pub dob: Option<String>,
    /// Gender as Eko writes it.
    pub gender: Option<String>,
    /// `XXXX-XXXX-1234`, when `eaadhaar` carries an Aadhaar number (full or masked).
    pub masked_aadhaar: Option<String>,
    /// Whether an e-Aadhaar is available, when `eaadhaar` is a `Y`/`N` flag instead.
    pub eaadhaar_available: Option<bool>,
    /// Last four digits of the mobile number.
    pub mobile_last4: Option<String>,
}

/// The state of a DigiLocker request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EkoStatus {
    /// The customer finished (Eko returned non-empty `user_details`).
    pub completed: bool,
    /// The customer's details, once completed.
    pub user: Option<EkoUserDetails>,
    /// Eko's `document_consent`, as text.
    pub document_consent: Option<String>,
    /// The documents that were requested, as Eko echoes them.
    pub document_requested: Vec<String>,
    /// The answer with secrets dropped and Aadhaar numbers masked.
    pub redacted_body: Value,
}

/// A fetched document, reduced to what the product keeps (no photo, masked Aadhaar).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EkoDocument {
    /// The document type (`AADHAAR`, ...).
    pub document_type: String,
    /// `SUCCESS`, `PENDING`, or whatever Eko sends, upper-cased.
    pub verification_status: String,
    /// Name.
    pub name: Option<String>,
    /// Date of birth (`DD-MM-YYYY` in the newer shape).
    pub dob: Option<String>,
    /// Gender.
    pub gender: Option<String>,
    /// `XXXX-XXXX-1234`; never a full number.
    pub masked_aadhaar: Option<String>,
    /// City (or district / village when no city is given).
    pub city: Option<String>,
    /// State.
    pub state: Option<String>,
    /// The answer with secrets and photos dropped and Aadhaar numbers masked.
    pub redacted_body: Value,
}

impl EkoDocument {
    /// Whether Eko reports the document as verified.
    pub fn is_verified(&self) -> bool {
        self.verification_status == "SUCCESS"
    }
}

/// The `secret-key` header: `base64(HMAC-SHA256(key = base64(access_key) as text,
/// message = timestamp))`. The key is the base64 *text*; decoding it back gives a 403.
pub fn secret_key(access_key: &str, timestamp_ms: &str) -> String {
    let key = STANDARD.encode(access_key.as_bytes());
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp_ms.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// A fresh `client_ref_id`: `KD` and 18 random characters from an upper-case base32 alphabet
/// without look-alikes (20 characters, 90 random bits, URL-safe).
pub fn new_client_ref_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let mut id = String::with_capacity(MAX_CLIENT_REF_ID_LEN);
    id.push_str("KD");
    for _ in 0..18 {
        id.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    id
}

fn now_ms() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .to_string()
}

/// The three authentication headers, signed now.
fn signed_headers(creds: &EkoCredentials) -> Result<HeaderMap, ProviderError> {
    let developer_key = creds.developer_key.expose_secret().trim();
    let access_key = creds.access_key.expose_secret().trim();
    if developer_key.is_empty() {
        return Err(ProviderError::Config(
            "the Eko developer key is empty".into(),
        ));
    }
    if access_key.is_empty() {
        return Err(ProviderError::Config("the Eko access key is empty".into()));
    }
    let timestamp = now_ms();
    let mut headers = HeaderMap::new();
    headers.insert(
        "developer_key",
        secret_header(developer_key, "Eko developer key")?,
    );
    headers.insert(
        "secret-key",
        secret_header(&secret_key(access_key, &timestamp), "Eko signature")?,
    );
    headers.insert(
        "secret-key-timestamp",
        HeaderValue::from_str(&timestamp).expect("digits are a valid header value"),
    );
    Ok(headers)
}

fn required<'a>(value: &'a str, what: &str) -> Result<&'a str, ProviderError> {
    let value = value.trim();
    if value.is_empty() {
        Err(ProviderError::Config(format!("the Eko {what} is empty")))
    } else {
        Ok(value)
    }
}

fn check_client_ref_id(id: &str) -> Result<(), ProviderError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLIENT_REF_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ProviderError::Config(format!(
            "client_ref_id must be 1 to {MAX_CLIENT_REF_ID_LEN} letters, digits, '-' or '_'"
        )))
    }
}

/// Asks Eko for a DigiLocker consent URL. `documents` defaults to `["AADHAAR"]` when empty.
/// Never retried (see the module documentation).
pub async fn create_digilocker_url(
    http: &ProviderHttp,
    creds: &EkoCredentials,
    client_ref_id: &str,
    documents: &[String],
    redirect_url: &str,
) -> Result<EkoLink, ProviderError> {
    let url = endpoint(&creds.base_url, CREATE_PATH, "Eko")?;
    let initiator_id = required(&creds.initiator_id, "initiator ID")?;
    let user_code = required(&creds.user_code, "user code")?;
    check_client_ref_id(client_ref_id)?;
    let mut document_requested: Vec<String> = documents
        .iter()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty())
        .collect();
    if document_requested.is_empty() {
        document_requested.push(DEFAULT_DOCUMENT.to_string());
    }
    let redirect_ok = url::Url::parse(redirect_url.trim())
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !redirect_ok {
        return Err(ProviderError::Config(
            "the redirect URL must be an absolute http(s) address".into(),
        ));
    }
    let body = json!({
        "initiator_id": initiator_id,
        "user_code": user_code,
        "client_ref_id": client_ref_id,
        "document_requested": document_requested,
        "redirect_url": redirect_url.trim(),
    });
    let request = http
        .client()
        .post(url)
        .headers(signed_headers(creds)?)
        .json(&body);
    let json = call("create", request).await?;
    parse_created(&json)
}

/// Reads a create-URL answer: a business error, or `data.reference_id` and an http(s)
/// `data.url`.
pub(super) fn parse_created(json: &Value) -> Result<EkoLink, ProviderError> {
    if let Some(error) = business_error(json) {
        return Err(error);
    }
    let data = json.get("data").unwrap_or(&Value::Null);
    let reference_id = text_of(data.get("reference_id"))
        .ok_or_else(|| ProviderError::Malformed("the answer has no `data.reference_id`".into()))?;
    let link = data
        .get("url")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|u| url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")))
        .ok_or_else(|| ProviderError::Malformed("the answer has no usable `data.url`".into()))?;
    Ok(EkoLink {
        reference_id,
        url: link.to_string(),
        redacted_body: redact_json(json),
    })
}

/// Polls a DigiLocker request. A request the customer has not finished is `completed: false`
/// (Eko answers with empty `user_details`, or with code 327), not an error. Retried on
/// transient failures.
pub async fn get_status(
    http: &ProviderHttp,
    creds: &EkoCredentials,
    reference_id: &str,
    client_ref_id: Option<&str>,
) -> Result<EkoStatus, ProviderError> {
    let mut url = endpoint(&creds.base_url, STATUS_PATH, "Eko")?;
    let initiator_id = required(&creds.initiator_id, "initiator ID")?;
    let reference_id = required(reference_id, "reference ID")?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("initiator_id", initiator_id);
        query.append_pair("reference_id", reference_id);
        if let Some(client_ref_id) = client_ref_id.map(str::trim).filter(|c| !c.is_empty()) {
            query.append_pair("client_ref_id", client_ref_id);
        }
    }
    signed_get(http, creds, ("status", "eko.status"), &url, parse_status).await
}

/// The two documented shapes of Eko's document call (PROVIDERS.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentShape {
    /// Newer: `POST {base}/tools/kyc/digilocker/document` with a JSON body.
    Post,
    /// Older: `GET {base}/tools/kyc/digilocker/document/{document_type}` with a query.
    GetByType,
}

impl DocumentShape {
    /// The other shape (the one to fall back to).
    pub fn other(self) -> Self {
        match self {
            DocumentShape::Post => DocumentShape::GetByType,
            DocumentShape::GetByType => DocumentShape::Post,
        }
    }

    /// The address form, for messages: `POST …/tools/kyc/digilocker/document` or
    /// `GET …/tools/kyc/digilocker/document/AADHAAR`.
    pub fn form(self, document_type: &str) -> String {
        match self {
            DocumentShape::Post => format!("POST …{DOCUMENT_PATH}"),
            DocumentShape::GetByType => format!("GET …{DOCUMENT_PATH}/{document_type}"),
        }
    }
}

/// The address form of the status call, for messages.
pub const STATUS_FORM: &str = "GET …/tools/kyc/digilocker/status";

/// One Eko call that failed: the address form tried and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedCall {
    /// `POST …/tools/kyc/digilocker/document`, [`STATUS_FORM`], ...
    pub form: String,
    /// Why it failed.
    pub error: ProviderError,
}

impl FailedCall {
    /// `GET …/document/AADHAAR answered HTTP 404`, in a few plain words.
    pub fn summary(&self) -> String {
        let what = match &self.error {
            ProviderError::Http { status, .. } => format!("answered HTTP {status}"),
            ProviderError::Unauthorized { .. } => "answered HTTP 401".into(),
            ProviderError::SignatureRejected => "answered HTTP 403".into(),
            ProviderError::RateLimited => "answered HTTP 429".into(),
            ProviderError::Business { code, .. } => format!("answered with business error {code}"),
            ProviderError::Validation { .. } => "refused some request fields".into(),
            ProviderError::Timeout => "did not answer in time".into(),
            ProviderError::Connect(_) => "could not be reached".into(),
            ProviderError::Interrupted(_) => "broke off mid-answer".into(),
            ProviderError::Malformed(_) => "sent an unreadable answer".into(),
            ProviderError::Config(_) => "was not sent (settings unusable)".into(),
        };
        format!("{} {what}", self.form)
    }
}

/// The timeline's words for a failed Eko call: which call (`status`, `document`), each
/// address form tried and how it failed, then what to do about the last failure.
pub fn failure_note(call: &str, attempts: &[FailedCall]) -> String {
    let tried = attempts
        .iter()
        .map(FailedCall::summary)
        .collect::<Vec<_>>()
        .join(", then ");
    match attempts.last() {
        Some(last) => format!(
            "Eko {call} call failed ({tried}). {}",
            last.error.operator_message()
        ),
        None => format!("Eko {call} call failed."),
    }
}

/// A document fetched by [`fetch_document`], and the shape that gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedDocument {
    /// The document.
    pub document: EkoDocument,
    /// The shape that answered.
    pub shape: DocumentShape,
    /// The shape tried first, when it failed and the other one answered.
    pub fell_back_from: Option<FailedCall>,
}

/// Fetches the shared document in whichever documented shape the provider answers: first
/// the shape that last worked against this base URL (the newer `POST` one at first), then,
/// when that answers 404 or 405 (address or method unknown), the other. The shape that
/// answers is remembered, so later polls do not waste a call. `Err` lists every attempt.
pub async fn fetch_document(
    http: &ProviderHttp,
    creds: &EkoCredentials,
    reference_id: &str,
    client_ref_id: Option<&str>,
    verification_id: Option<&str>,
    document_type: &str,
) -> Result<FetchedDocument, Vec<FailedCall>> {
    let document_type = match document_type.trim() {
        "" => DEFAULT_DOCUMENT,
        other => other,
    };
    let base = creds.base_url.trim().trim_end_matches('/').to_string();
    let first = http
        .eko_document_shape(&base)
        .unwrap_or(DocumentShape::Post);
    let mut failed: Vec<FailedCall> = Vec::new();
    for shape in [first, first.other()] {
        let outcome = get_document_in(
            http,
            creds,
            shape,
            reference_id,
            client_ref_id,
            verification_id,
            document_type,
        )
        .await;
        match outcome {
            Ok(document) => {
                http.remember_eko_document_shape(&base, shape);
                return Ok(FetchedDocument {
                    document,
                    shape,
                    fell_back_from: failed.pop(),
                });
            }
            Err(error) => {
                let unknown_form = matches!(
                    error,
                    ProviderError::Http {
                        status: 404 | 405,
                        ..
                    }
                );
                failed.push(FailedCall {
                    form: shape.form(document_type),
                    error,
                });
                if !unknown_form {
                    break;
                }
            }
        }
    }
    Err(failed)
}

/// Fetches the shared document with the newer `POST .../document` call, reading either
/// answer shape. A document not yet available comes back with `verification_status`
/// `PENDING`, not an error. Retried on transient failures.
pub async fn get_document(
    http: &ProviderHttp,
    creds: &EkoCredentials,
    reference_id: &str,
    client_ref_id: Option<&str>,
    verification_id: Option<&str>,
    document_type: &str,
) -> Result<EkoDocument, ProviderError> {
    get_document_in(
        http,
        creds,
        DocumentShape::Post,
        reference_id,
        client_ref_id,
        verification_id,
        document_type,
    )
    .await
}

/// Fetches the shared document with the call of `shape`, reading either answer shape.
/// Retried on transient failures.
pub async fn get_document_in(
    http: &ProviderHttp,
    creds: &EkoCredentials,
    shape: DocumentShape,
    reference_id: &str,
    client_ref_id: Option<&str>,
    verification_id: Option<&str>,
    document_type: &str,
) -> Result<EkoDocument, ProviderError> {
    let initiator_id = required(&creds.initiator_id, "initiator ID")?;
    let user_code = required(&creds.user_code, "user code")?;
    let reference_id = required(reference_id, "reference ID")?;
    let document_type = match document_type.trim() {
        "" => DEFAULT_DOCUMENT,
        other => other,
    };
    let client_ref_id = client_ref_id.map(str::trim).filter(|c| !c.is_empty());
    match shape {
        DocumentShape::Post => {
            let url = endpoint(&creds.base_url, DOCUMENT_PATH, "Eko")?;
            let mut body = Map::new();
            body.insert("initiator_id".into(), json!(initiator_id));
            body.insert("user_code".into(), json!(user_code));
            if let Some(client_ref_id) = client_ref_id {
                body.insert("client_ref_id".into(), json!(client_ref_id));
            }
            body.insert("document_type".into(), json!([document_type]));
            if let Some(verification_id) = verification_id.map(str::trim).filter(|v| !v.is_empty())
            {
                body.insert("verification_id".into(), json!(verification_id));
            }
            // Sent back with the type Eko gave it in: a number when it is one.
            let reference = reference_id
                .parse::<i64>()
                .map_or_else(|_| json!(reference_id), |n| json!(n));
            body.insert("reference_id".into(), reference);
            let body = Value::Object(body);

            let (url, body) = (&url, &body);
            retry_reads(http, "eko.document", move || async move {
                let request = http
                    .client()
                    .post(url.clone())
                    .headers(signed_headers(creds)?)
                    .json(body);
                let json = call("document", request).await?;
                parse_document(&json, document_type)
            })
            .await
        }
        DocumentShape::GetByType => {
            let mut url = endpoint(&creds.base_url, DOCUMENT_PATH, "Eko")?;
            url.path_segments_mut()
                .map_err(|_| ProviderError::Config("the Eko base URL cannot take a path".into()))?
                .push(document_type);
            {
                let mut query = url.query_pairs_mut();
                query.append_pair("initiator_id", initiator_id);
                if let Some(client_ref_id) = client_ref_id {
                    query.append_pair("client_ref_id", client_ref_id);
                }
                query.append_pair("reference_id", reference_id);
            }
            signed_get(http, creds, ("document", "eko.document"), &url, |json| {
                parse_document(json, document_type)
            })
            .await
        }
    }
}

/// A signed GET of `url` for the call `operation` (`"status"`, `"document"`), parsed by
/// `parse`; a read, so retried (as `retry_as`) on transient failures. GET has no body: no
/// content type, only the signature headers.
async fn signed_get<T>(
    http: &ProviderHttp,
    creds: &EkoCredentials,
    (operation, retry_as): (&'static str, &'static str),
    url: &url::Url,
    parse: impl Fn(&Value) -> Result<T, ProviderError>,
) -> Result<T, ProviderError> {
    let parse = &parse;
    retry_reads(http, retry_as, move || async move {
        let request = http
            .client()
            .get(url.clone())
            .headers(signed_headers(creds)?);
        let json = call(operation, request).await?;
        parse(&json)
    })
    .await
}

/// Sends one signed call and returns its JSON answer when HTTP says success; business
/// errors inside it are the caller's to read.
async fn call(
    operation: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Value, ProviderError> {
    let started = Instant::now();
    let answer = send(request).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(provider = Provider::Eko.as_str(), operation, elapsed_ms, %error, "call failed");
            return Err(error);
        }
    };
    tracing::info!(
        provider = Provider::Eko.as_str(),
        operation,
        http_status = answer.status,
        elapsed_ms,
        "answered"
    );
    match answer.status {
        200..=299 => json_object(&answer.body),
        403 => Err(ProviderError::SignatureRejected),
        429 => Err(ProviderError::RateLimited),
        status => Err(ProviderError::Http {
            status,
            detail: error_detail(&answer.body),
        }),
    }
}

/// The body of a successful answer, which must be a JSON object.
pub(super) fn json_object(body: &[u8]) -> Result<Value, ProviderError> {
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Malformed(format!("the answer is not valid JSON ({e})")))?;
    if json.is_object() {
        Ok(json)
    } else {
        Err(ProviderError::Malformed(
            "the answer is not a JSON object".into(),
        ))
    }
}

/// The business error inside an HTTP 200 answer, if any: `status` non-zero, or
/// `response_status_id` present and non-zero (both are checked; either alone is seen).
///
/// The code reported is `status` when non-zero, else a positive `response_type_id`, else
/// `response_status_id`. An `invalid_params` map, or `response_status_id = 1` with
/// `response_type_id = -1`, is a validation error.
fn business_error(json: &Value) -> Option<ProviderError> {
    let status = int_of(json.get("status"));
    let status_id = int_of(json.get("response_status_id"));
    let type_id = int_of(json.get("response_type_id"));
    let failed = status.is_some_and(|s| s != 0) || status_id.is_some_and(|s| s != 0);
    if !failed {
        return None;
    }
    let invalid = json
        .get("invalid_params")
        .or_else(|| json.get("data").and_then(|d| d.get("invalid_params")));
    if let Some(Value::Object(params)) = invalid {
        let fields = params
            .iter()
            .map(|(field, message)| {
                let message =
                    text_of(Some(message)).unwrap_or_else(|| redact_json(message).to_string());
                (field.clone(), message)
            })
            .collect();
        return Some(ProviderError::Validation { fields });
    }
    if status_id == Some(1) && type_id == Some(-1) {
        return Some(ProviderError::Validation { fields: Vec::new() });
    }
    let code = status
        .filter(|s| *s != 0)
        .or(type_id.filter(|t| *t > 0))
        .or(status_id)
        .unwrap_or(-1);
    Some(ProviderError::Business {
        code,
        message: text_of(json.get("message")).unwrap_or_default(),
    })
}

fn texts(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(|i| text_of(Some(i))).collect(),
        other => text_of(other).into_iter().collect(),
    }
}

/// Whether Eko answered "still pending" (a business code, not a failure), and its `data`;
/// any other business error is the call's error.
fn pending_and_data(json: &Value) -> Result<(bool, &Value), ProviderError> {
    let pending = match business_error(json) {
        Some(ProviderError::Business {
            code: CODE_PENDING, ..
        }) => true,
        Some(error) => return Err(error),
        None => false,
    };
    Ok((pending, json.get("data").unwrap_or(&Value::Null)))
}

pub(super) fn parse_status(json: &Value) -> Result<EkoStatus, ProviderError> {
    let (pending, data) = pending_and_data(json)?;
    let user = if pending {
        None
    } else {
        data.get("user_details").and_then(user_details)
    };
    let document_consent = match data.get("document_consent") {
        Some(Value::Array(_)) => {
            Some(texts(data.get("document_consent")).join(", ")).filter(|s| !s.is_empty())
        }
        Some(Value::Bool(b)) => Some(b.to_string()),
        other => text_of(other),
    };
    Ok(EkoStatus {
        completed: user.is_some(),
        user,
        document_consent,
        document_requested: texts(data.get("document_requested")),
        redacted_body: redact_json(json),
    })
}

/// The user details, or `None` when Eko sent them empty (`{}`, `null`, `""`, `[]`, or only
/// blank values): that is how it says "not completed yet".
fn user_details(value: &Value) -> Option<EkoUserDetails> {
    let object = value.as_object()?;
    let field = |name: &str| text_of(object.get(name));
    let eaadhaar = field("eaadhaar");
    let masked_aadhaar = eaadhaar.as_deref().and_then(masked_aadhaar_value);
    let eaadhaar_available = match eaadhaar.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("Y" | "YES" | "TRUE") => Some(true),
        Some("N" | "NO" | "FALSE") => Some(false),
        _ => None,
    };
    let mobile_last4 = object
        .get("mobile")
        .and_then(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .map(|m| m.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|digits| digits.len() >= 4)
        .map(|digits| digits[digits.len() - 4..].to_string());
    let details = EkoUserDetails {
        name: field("name"),
        dob: field("dob"),
        gender: field("gender"),
        masked_aadhaar,
        eaadhaar_available,
        mobile_last4,
    };
    let empty = details.name.is_none()
        && details.dob.is_none()
        && details.gender.is_none()
        && details.masked_aadhaar.is_none()
        && details.eaadhaar_available.is_none()
        && details.mobile_last4.is_none();
    (!empty).then_some(details)
}

pub(super) fn parse_document(
    json: &Value,
    document_type: &str,
) -> Result<EkoDocument, ProviderError> {
    let (pending, data) = pending_and_data(json)?;
    let reported_status = text_of(data.get("verification_status")).map(|s| s.to_ascii_uppercase());
    let empty = |status: String| EkoDocument {
        document_type: document_type.to_string(),
        verification_status: status,
        name: None,
        dob: None,
        gender: None,
        masked_aadhaar: None,
        city: None,
        state: None,
        redacted_body: redact_json(json),
    };
    if pending {
        return Ok(empty("PENDING".to_string()));
    }

    // Newer shape: `data.documents[]`; older shape: the document's fields directly in `data`.
    let (document, status) = match data.get("documents") {
        Some(Value::Array(documents)) => {
            let wanted = documents.iter().find(|d| {
                d.get("document_type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(document_type))
            });
            match wanted.or_else(|| documents.first()) {
                Some(document) => (
                    document,
                    reported_status.unwrap_or_else(|| "SUCCESS".into()),
                ),
                None => return Ok(empty(reported_status.unwrap_or_else(|| "PENDING".into()))),
            }
        }
        _ if ["name", "uid", "dob", "care_of"]
            .iter()
            .any(|k| data.get(k).is_some()) =>
        {
            (data, reported_status.unwrap_or_else(|| "SUCCESS".into()))
        }
        _ => match reported_status {
            Some(status) => return Ok(empty(status)),
            None => {
                return Err(ProviderError::Malformed(
                    "the answer holds no document".into(),
                ));
            }
        },
    };

    let field = |name: &str| text_of(document.get(name));
    let masked_aadhaar = ["masked_aadhaar", "uid", "aadhaar", "aadhaar_number"]
        .iter()
        .filter_map(|k| document.get(*k).and_then(|v| text_of(Some(v))))
        .find_map(|v| masked_aadhaar_value(&v));
    let address = ["split_address", "address"]
        .iter()
        .filter_map(|k| document.get(*k).and_then(Value::as_object))
        .collect::<Vec<_>>();
    let from_address = |keys: &[&str]| {
        address
            .iter()
            .flat_map(|a| keys.iter().filter_map(|k| text_of(a.get(*k))))
            .next()
    };
    Ok(EkoDocument {
        document_type: field("document_type").unwrap_or_else(|| document_type.to_string()),
        verification_status: status,
        name: field("name"),
        dob: field("dob"),
        gender: field("gender"),
        masked_aadhaar,
        city: from_address(&["city", "district", "dist", "vtc"]),
        state: from_address(&["state"]),
        redacted_body: redact_json(json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_key_matches_the_documented_vectors() {
        assert_eq!(
            secret_key("TEST_ACCESS_KEY_DO_NOT_USE", "1700000000000"),
            "u30ak/iOGwKCaspqCeiYng8fd98QDx7kF3DBBOadQHk="
        );
        assert_eq!(
            secret_key("test-access-key-123", "1700000000000"),
            "88lqTf9ew69XbVbeczjxVL8/B4vibfp1MvTi1mIj2Xo="
        );
    }

    #[test]
    fn client_ref_ids_are_short_unique_and_url_safe() {
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_client_ref_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 20);
            assert!(id.starts_with("KD"));
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            );
            check_client_ref_id(id).unwrap();
        }
        assert!(check_client_ref_id("").is_err());
        assert!(check_client_ref_id("123456789012345678901").is_err());
        assert!(check_client_ref_id("a b").is_err());
    }

    #[test]
    fn debug_hides_the_keys() {
        let creds = EkoCredentials {
            base_url: UAT_BASE_URL.into(),
            developer_key: SecretString::from("dev-key-secret-1"),
            access_key: SecretString::from("access-key-secret-2"),
            initiator_id: "9962981729".into(),
            user_code: "20810200".into(),
        };
        let shown = format!("{creds:?}");
        assert!(!shown.contains("dev-key-secret-1") && !shown.contains("access-key-secret-2"));
    }

    #[test]
    fn business_errors_check_both_codes() {
        assert_eq!(
            business_error(&json!({"status": 0, "response_status_id": 0})),
            None
        );
        assert_eq!(business_error(&json!({"status": 0})), None);
        assert_eq!(
            business_error(&json!({"status": "0", "response_status_id": null})),
            None
        );
        assert_eq!(
            business_error(&json!({"status": 463, "message": "not found"})),
            Some(ProviderError::Business {
                code: 463,
                message: "not found".into()
            })
        );
        assert_eq!(
            business_error(
                &json!({"status": 0, "response_status_id": 1, "response_type_id": 347, "message": "m"})
            ),
            Some(ProviderError::Business {
                code: 347,
                message: "m".into()
            })
        );
        assert_eq!(
            business_error(&json!({"status": 0, "response_status_id": 2})),
            Some(ProviderError::Business {
                code: 2,
                message: String::new()
            })
        );
        assert_eq!(
            business_error(&json!({"response_status_id": 1, "response_type_id": -1,
                "invalid_params": {"initiator_id": "Invalid", "user_code": "Required"}})),
            Some(ProviderError::Validation {
                fields: vec![
                    ("initiator_id".into(), "Invalid".into()),
                    ("user_code".into(), "Required".into())
                ]
            })
        );
        assert_eq!(
            business_error(&json!({"response_status_id": 1, "response_type_id": -1})),
            Some(ProviderError::Validation { fields: vec![] })
        );
    }

    #[test]
    fn status_pending_and_completed() {
        let pending = parse_status(&json!({"status": 0, "data": {"user_details": {}}})).unwrap();
        assert!(!pending.completed && pending.user.is_none());
        let blank = parse_status(
            &json!({"status": 0, "data": {"user_details": {"name": "", "mobile": ""}}}),
        )
        .unwrap();
        assert!(!blank.completed);
        let consent = parse_status(&json!({"status": 327, "message": "pending"})).unwrap();
        assert!(!consent.completed);
        let done = parse_status(&json!({"status": 0, "data": {
            "user_details": {"name": "Asha Rao", "dob": "01-02-1990", "gender": "F",
                             "eaadhaar": "123456782345", "mobile": "9876543210"},
            "document_consent": ["AADHAAR"], "document_requested": ["AADHAAR"]}}))
        .unwrap();
        let user = done.user.unwrap();
        assert!(done.completed);
        assert_eq!(user.masked_aadhaar.as_deref(), Some("XXXX-XXXX-2345"));
        assert_eq!(user.mobile_last4.as_deref(), Some("3210"));
        assert_eq!(done.document_consent.as_deref(), Some("AADHAAR"));
        let flag = parse_status(
            &json!({"status": 0, "data": {"user_details": {"name": "A", "eaadhaar": "Y"}}}),
        )
        .unwrap();
        let user = flag.user.unwrap();
        assert_eq!(
            (user.masked_aadhaar, user.eaadhaar_available),
            (None, Some(true))
        );
        assert_eq!(
            parse_status(&json!({"status": 463, "message": "no"})),
            Err(ProviderError::Business {
                code: 463,
                message: "no".into()
            })
        );
    }

    #[test]
    fn documents_in_both_shapes() {
        let newer = parse_document(
            &json!({"status": 0, "data": {"verification_status": "SUCCESS", "documents": [{
                "document_type": "AADHAAR", "name": "Asha Rao", "dob": "01-02-1990", "gender": "F",
                "masked_aadhaar": "XXXX-XXXX-2345", "address": {"city": "Pune", "state": "Maharashtra"},
                "photo": "/9j/4AAQ", "issue_date": "01-01-2020"}]}}),
            "AADHAAR",
        )
        .unwrap();
        assert!(newer.is_verified());
        assert_eq!(newer.masked_aadhaar.as_deref(), Some("XXXX-XXXX-2345"));
        assert_eq!(
            (newer.city.as_deref(), newer.state.as_deref()),
            (Some("Pune"), Some("Maharashtra"))
        );
        assert!(!newer.redacted_body.to_string().contains("/9j/"));

        let older = parse_document(
            &json!({"status": 0, "data": {"care_of": "S/O X", "dob": "1990-02-01", "gender": "M",
                "name": "Ravi", "photo_link": "https://p/x.jpg", "uid": "123456782345",
                "split_address": {"dist": "Pune", "state": "Maharashtra"}, "reference_id": 42}}),
            "AADHAAR",
        )
        .unwrap();
        assert_eq!(older.verification_status, "SUCCESS");
        assert_eq!(older.masked_aadhaar.as_deref(), Some("XXXX-XXXX-2345"));
        assert_eq!(older.city.as_deref(), Some("Pune"));
        let body = older.redacted_body.to_string();
        assert!(!body.contains("123456782345") && !body.contains("photo"));

        let pending = parse_document(
            &json!({"status": 0, "data": {"verification_status": "PENDING", "documents": []}}),
            "AADHAAR",
        )
        .unwrap();
        assert_eq!(pending.verification_status, "PENDING");
        assert!(matches!(
            parse_document(&json!({"status": 0, "data": {}}), "AADHAAR"),
            Err(ProviderError::Malformed(_))
        ));
    }
}
