//! Wire clients for the two KYC providers: [`message_central`] (e-KYC Now redirection links)
//! and [`eko`] (DigiLocker by consent). See `/work/shared/PROVIDERS.md` for the facts they
//! follow.
//!
//! Everything here runs on the server only. Credentials arrive as [`SecretString`]s, go out
//! only in request headers marked sensitive, and never appear in a `Debug`, a `Display`, an
//! error or a log line. Raw provider answers are never handed to callers: they get typed
//! results with Aadhaar numbers already masked, plus a [`redact_json`] copy of the answer for
//! diagnosis.
//!
//! [`SecretString`]: secrecy::SecretString

pub mod eko;
pub mod message_central;

use reqwest::header::HeaderValue;
use serde_json::Value;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// A stored credential's setting `name` ('' when missing), as a provider client reads it.
fn setting(settings: &std::collections::BTreeMap<String, String>, name: &str) -> String {
    settings.get(name).cloned().unwrap_or_default()
}

/// Takes the decrypted secret `name` out of `secrets` (empty when missing: the provider then
/// refuses the call, which is reported like any refused credential).
fn take_secret(
    secrets: &mut std::collections::BTreeMap<String, secrecy::SecretString>,
    name: &str,
) -> secrecy::SecretString {
    secrets
        .remove(name)
        .unwrap_or_else(|| secrecy::SecretString::from(String::new()))
}

/// How long to wait for a TCP + TLS connection to a provider.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole provider call (connect, send, read the full answer) may take.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Pauses before the second and third attempt of a read-only call (status poll, document).
pub const DEFAULT_POLL_RETRY_DELAYS: [Duration; 2] =
    [Duration::from_millis(200), Duration::from_millis(800)];
/// Largest provider answer we read; a document answer with a photo is well under this.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// Longest provider-supplied detail kept in an error.
const MAX_DETAIL_CHARS: usize = 300;

/// The one HTTP client the server uses for provider calls.
///
/// `reqwest::Client` keeps its connection pool behind an `Arc`, so cloning this is cheap and
/// every clone shares the pool: build one at start and put it in the application state.
#[derive(Clone, Debug)]
pub struct ProviderHttp {
    client: reqwest::Client,
    poll_retry_delays: Arc<[Duration]>,
    /// The Eko document call shape that last worked, per base URL (tried first next time).
    eko_document_shapes:
        Arc<std::sync::Mutex<std::collections::HashMap<String, eko::DocumentShape>>>,
}

impl ProviderHttp {
    /// Builds the client with the given connect and whole-request time limits.
    ///
    /// Redirects are not followed: providers authenticate with custom headers
    /// (`api_key`, `developer_key`, `secret-key`) that reqwest would carry to whatever host a
    /// redirect names, so a redirect is reported as an HTTP error instead.
    pub fn new(
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .user_agent(concat!("KYC-Desk/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ProviderError::Config(format!(
                    "the HTTP client could not be built: {}",
                    describe(&e)
                ))
            })?;
        Ok(ProviderHttp {
            client,
            poll_retry_delays: Arc::from(DEFAULT_POLL_RETRY_DELAYS.as_slice()),
            eko_document_shapes: Arc::default(),
        })
    }

    /// Builds the client with [`DEFAULT_CONNECT_TIMEOUT`] and [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn with_default_timeouts() -> Result<Self, ProviderError> {
        Self::new(DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT)
    }

    /// Replaces the pauses between attempts of read-only calls; one retry per entry, so an
    /// empty list means "never retry". Tests use tiny delays to stay fast.
    pub fn with_poll_retry_delays(mut self, delays: impl Into<Vec<Duration>>) -> Self {
        self.poll_retry_delays = Arc::from(delays.into());
        self
    }

    /// The pauses between attempts of read-only calls.
    pub fn poll_retry_delays(&self) -> &[Duration] {
        &self.poll_retry_delays
    }

    /// The Eko document shape that last worked against `base_url`, if any.
    pub(crate) fn eko_document_shape(&self, base_url: &str) -> Option<eko::DocumentShape> {
        self.eko_document_shapes
            .lock()
            .ok()
            .and_then(|shapes| shapes.get(base_url).copied())
    }

    /// Remembers that `shape` worked against `base_url`.
    pub(crate) fn remember_eko_document_shape(&self, base_url: &str, shape: eko::DocumentShape) {
        if let Ok(mut shapes) = self.eko_document_shapes.lock() {
            shapes.insert(base_url.to_string(), shape);
        }
    }

    /// The shared reqwest client, for other outbound calls (SMS, e-mail APIs) that should use
    /// the same pool and time limits.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Why a provider call failed. Every variant is safe to log and to show: none carries a
/// credential, and provider texts in it have Aadhaar numbers masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider did not answer within the request time limit.
    #[error("the provider did not answer within the time limit")]
    Timeout,
    /// No connection could be made (DNS, refused, TLS handshake, connect time limit): the
    /// request never left.
    #[error("could not connect to the provider: {0}")]
    Connect(String),
    /// The connection broke after it was made, while the request or answer was in flight.
    #[error("the connection to the provider broke during the call: {0}")]
    Interrupted(String),
    /// An HTTP status we have no more specific meaning for.
    #[error("the provider answered HTTP {status}{}", suffix(.detail))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The provider's `detail`/`message`, masked and shortened, when it sent one.
        detail: Option<String>,
    },
    /// Message Central answered 401; `detail` tells which header it disliked.
    #[error("Message Central refused the request (HTTP 401){}", suffix(.detail))]
    Unauthorized {
        /// The provider's `detail` text, when present.
        detail: Option<String>,
    },
    /// Eko answered 403: wrong `secret-key`, wrong developer key, or a stale timestamp.
    #[error("Eko refused the request signature (HTTP 403)")]
    SignatureRejected,
    /// Eko answered HTTP 200 with a non-zero `status` / `response_status_id`.
    #[error("Eko business error {code}: {message}")]
    Business {
        /// The Eko code (`status`, else `response_type_id`, else `response_status_id`).
        code: i64,
        /// Eko's `message`, masked.
        message: String,
    },
    /// Eko refused some request fields (`invalid_params`): field name → Eko's message.
    #[error("Eko rejected request fields: {}", join_fields(.fields))]
    Validation {
        /// Field name and Eko's message for it.
        fields: Vec<(String, String)>,
    },
    /// The provider answered 429.
    #[error("the provider is rate limiting requests (HTTP 429)")]
    RateLimited,
    /// The answer was not what the documented shape promises (bad or truncated JSON, no
    /// `url`, ...).
    #[error("the provider's answer could not be understood: {0}")]
    Malformed(String),
    /// Our own settings are unusable (empty key, bad base URL, ...): nothing was sent.
    #[error("provider settings are unusable: {0}")]
    Config(String),
}

fn suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

fn join_fields(fields: &[(String, String)]) -> String {
    if fields.is_empty() {
        return "(no field named)".to_string();
    }
    fields
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ProviderError {
    /// Plain words for the operator (or the admin) saying what went wrong and what to do.
    pub fn operator_message(&self) -> String {
        match self {
            ProviderError::Timeout => {
                "The provider did not answer in time. The request may still have \
                 been processed, so check the session before trying again."
                    .to_string()
            }
            ProviderError::Connect(_) => {
                "KYC Desk could not reach the provider (network, firewall or \
                 address problem). Nothing was sent, so it is safe to try again; if it keeps \
                 happening, an admin should check the base URL on the Credentials page."
                    .to_string()
            }
            ProviderError::Interrupted(_) => {
                "The connection to the provider broke during the call. The \
                 request may have been processed, so check the session before trying again."
                    .to_string()
            }
            ProviderError::Http { status, .. } => http_message(*status),
            ProviderError::Unauthorized { detail } => mc_unauthorized_message(detail.as_deref()),
            ProviderError::SignatureRejected => {
                "Eko refused the request signature: the access key or \
                 developer key is wrong, or the server clock is off."
                    .to_string()
            }
            ProviderError::Business { code, message } => eko_business_message(*code, message),
            ProviderError::Validation { fields } if fields.is_empty() => {
                "Eko refused the request as invalid without naming a field; an admin should check \
                 the initiator ID and user code on the Credentials page."
                    .to_string()
            }
            ProviderError::Validation { fields } => format!(
                "Eko refused some of the request's fields: {}. Correct them and try again.",
                join_fields(fields)
            ),
            ProviderError::RateLimited => {
                "The provider is limiting how many requests we send. Wait a \
                 minute, then try again."
                    .to_string()
            }
            ProviderError::Malformed(_) => {
                "The provider sent an answer KYC Desk could not read. The \
                 request may have been processed, so check the session before trying again."
                    .to_string()
            }
            ProviderError::Config(problem) => format!(
                "The provider settings cannot be used: {problem}. An admin must correct them on the \
                 Credentials page."
            ),
        }
    }

    /// Whether the provider may have received (and acted on) the request. Only a failed
    /// connection and our own unusable settings prove it never left; callers must not retry
    /// a link-creating call when this is `true`, or the customer could get two live links.
    pub fn may_have_reached_provider(&self) -> bool {
        !matches!(self, ProviderError::Connect(_) | ProviderError::Config(_))
    }

    /// Whether a read-only call (status poll, document fetch) is worth another attempt.
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Timeout
            | ProviderError::Connect(_)
            | ProviderError::Interrupted(_)
            | ProviderError::RateLimited => true,
            ProviderError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

fn http_message(status: u16) -> String {
    match status {
        300..=399 => format!(
            "The provider answered with a redirect (HTTP {status}), which KYC Desk does not follow; \
             an admin should check the base URL on the Credentials page."
        ),
        404 | 405 | 415 => format!(
            "The provider did not recognise the address or form of the request (HTTP {status}); an \
             admin should check the base URL on the Credentials page."
        ),
        401 | 403 => format!(
            "The provider refused our credentials (HTTP {status}); an admin should check them on \
             the Credentials page."
        ),
        500..=599 => {
            format!("The provider is having trouble (HTTP {status}). Try again in a few minutes.")
        }
        _ => format!("The provider answered with an unexpected error (HTTP {status})."),
    }
}

fn mc_unauthorized_message(detail: Option<&str>) -> String {
    let lower = detail.unwrap_or_default().to_ascii_lowercase();
    if lower.contains("bearer") {
        "The Message Central API key is malformed — an admin must re-enter it on the Credentials page."
            .to_string()
    } else if lower.contains("company name") || lower.contains("company_name") {
        "Message Central did not accept the company name — an admin must enter the company name \
         given at sign-up on the Credentials page."
            .to_string()
    } else if lower.contains("flow_id") || lower.contains("flow id") {
        "Message Central did not receive a flow ID — an admin must set the flow ID for this flow on \
         the Credentials page."
            .to_string()
    } else {
        "Message Central refused the API key. A newer key may have been generated in their console \
         (which cancels the old one at once); an admin must paste the current key on the \
         Credentials page."
            .to_string()
    }
}

fn eko_business_message(code: i64, message: &str) -> String {
    match code {
        302 => "The customer entered a wrong one-time password in DigiLocker; they can try again."
            .to_string(),
        303 => "The customer's one-time password expired before it was used; send them a new link."
            .to_string(),
        319 => {
            "Eko does not recognise the initiator ID — an admin must check the registered mobile \
                number on the Eko credential on the Credentials page."
                .to_string()
        }
        327 => "The customer has not given consent in DigiLocker yet; the status will change once \
                they finish."
            .to_string(),
        346 => "The Eko user code is not onboarded — an admin must check the user code on the \
                Credentials page or ask Eko to onboard it."
            .to_string(),
        347 => {
            "The Eko account balance is too low — whoever manages the Eko account must top it up \
                before more links can be made."
                .to_string()
        }
        463 => "Eko does not know this reference.".to_string(),
        _ if message.trim().is_empty() => format!("Eko refused the request (code {code})."),
        _ => format!("Eko refused the request (code {code}): {}", message.trim()),
    }
}

/// Replaces every Aadhaar-shaped number in `text` with `XXXX-XXXX-` and its last four digits.
///
/// Aadhaar-shaped means a run of exactly 12 ASCII digits, or three groups of four digits
/// separated by single spaces, hyphens or dots, not touching other digits. Longer digit runs
/// (13-digit millisecond timestamps, 16-digit ids) are left alone. A 12-digit phone number
/// with country code is masked too: hiding too much is the safe mistake.
pub fn mask_aadhaar(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // Whole digit runs are consumed at once, so `i` always starts a run.
        let run = digit_run(&chars, i);
        let end = if run == 12 {
            Some(i + 12)
        } else if run == 4 {
            grouped_end(&chars, i)
        } else {
            None
        };
        match end {
            Some(end) => {
                out.push_str("XXXX-XXXX-");
                out.extend(&chars[end - 4..end]);
                i = end;
            }
            None => {
                out.extend(&chars[i..i + run]);
                i += run;
            }
        }
    }
    out
}

fn digit_run(chars: &[char], start: usize) -> usize {
    chars.get(start..).map_or(0, |rest| {
        rest.iter().take_while(|c| c.is_ascii_digit()).count()
    })
}

/// End of a `dddd dddd dddd` group starting at `start` (where four digits are known to be).
fn grouped_end(chars: &[char], start: usize) -> Option<usize> {
    let mut pos = start + 4;
    for _ in 0..2 {
        if !matches!(chars.get(pos), Some(' ' | '-' | '.')) {
            return None;
        }
        pos += 1;
        if digit_run(chars, pos) != 4 {
            return None;
        }
        pos += 4;
    }
    Some(pos)
}

/// Names (lowercase, `-` and `_` removed) that mark a key whose value must not be kept.
const SECRET_KEY_MARKS: [&str; 6] = [
    "apikey",
    "secretkey",
    "developerkey",
    "accesskey",
    "password",
    "photo",
];

fn is_secret_key(key: &str) -> bool {
    let compact: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect();
    compact == "token"
        || compact.ends_with("token")
        || compact.contains("secret")
        || SECRET_KEY_MARKS.iter().any(|mark| compact.contains(mark))
}

/// A copy of a provider answer fit for storage: keys named like secrets or photos
/// (`api_key`, `secret-key`, `developer_key`, `access_key`, `token`, `photo`, `photo_link`,
/// `password`, ...) are dropped, Aadhaar numbers in every string are masked, and a number
/// whose written form holds one (a 12-digit integer, also negative or written as a float) is
/// replaced by its masked text.
pub fn redact_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| !is_secret_key(key))
                .map(|(key, value)| (mask_aadhaar(key), redact_json(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        Value::String(text) => Value::String(mask_aadhaar(text)),
        Value::Number(number) => {
            let text = number.to_string();
            let masked = mask_aadhaar(&text);
            if masked == text {
                value.clone()
            } else {
                Value::String(masked)
            }
        }
        Value::Null | Value::Bool(_) => value.clone(),
    }
}

/// The display form `XXXX-XXXX-1234` of an Aadhaar value, whether it arrives full
/// (`123456781234`, `1234 5678 1234`) or already masked (`xxxxxxxx1234`, `XXXX-XXXX-1234`).
/// `None` when the value does not look like either (for example a `Y`/`N` flag).
pub(crate) fn masked_aadhaar_value(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let masked_form = raw.chars().any(|c| matches!(c, 'x' | 'X' | '*'));
    if digits.len() == 12 || (digits.len() == 4 && masked_form) {
        Some(format!("XXXX-XXXX-{}", &digits[digits.len() - 4..]))
    } else {
        None
    }
}

/// A non-empty text from a JSON string or number, with Aadhaar numbers masked.
pub(crate) fn text_of(value: Option<&Value>) -> Option<String> {
    let text = match value? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then(|| mask_aadhaar(&text))
}

/// An integer from a JSON number or a numeric string (providers are not consistent).
pub(crate) fn int_of(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `{base}{path}` as a URL, refusing a base that is not plain `http(s)://host[/path]`.
pub(crate) fn endpoint(base: &str, path: &str, what: &str) -> Result<Url, ProviderError> {
    let base = base.trim().trim_end_matches('/');
    if base.is_empty() {
        return Err(ProviderError::Config(format!(
            "the {what} base URL is empty"
        )));
    }
    let url = Url::parse(&format!("{base}{path}"))
        .map_err(|_| ProviderError::Config(format!("the {what} base URL is not a valid URL")))?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !plain {
        return Err(ProviderError::Config(format!(
            "the {what} base URL must be a plain http(s) address without query or login"
        )));
    }
    Ok(url)
}

/// A header value holding a credential: refused if it cannot be sent, and marked sensitive
/// so hyper and reqwest never print it.
pub(crate) fn secret_header(value: &str, what: &str) -> Result<HeaderValue, ProviderError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        ProviderError::Config(format!(
            "the {what} contains characters that cannot be sent"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// A provider's answer: status and full body (the body is read inside the time limit).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// Sends `request` and reads the whole answer, mapping transport failures to typed errors.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Answer, ProviderError> {
    let mut response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(body_error)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ProviderError::Malformed(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer { status, body })
}

fn transport_error(error: reqwest::Error) -> ProviderError {
    // The URL can carry an initiator id or reference in its query: keep it out of the text.
    let error = error.without_url();
    // A connect time-out is both "connect" and "timeout"; it proves the request never left,
    // so it must count as Connect.
    if error.is_connect() {
        ProviderError::Connect(describe(&error))
    } else if error.is_timeout() {
        ProviderError::Timeout
    } else if error.is_builder() {
        ProviderError::Config(describe(&error))
    } else {
        ProviderError::Interrupted(describe(&error))
    }
}

fn body_error(error: reqwest::Error) -> ProviderError {
    let error = error.without_url();
    if error.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Malformed(format!("the answer was cut off: {}", describe(&error)))
    }
}

/// An error and its causes on one line (reqwest's own text stops at "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The provider's own explanation in an error answer (`detail` or `message`), masked and cut
/// to a readable length; a short plain-text answer is kept as is, an HTML page is not.
pub(crate) fn error_detail(body: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(json) => {
            let field = json.get("detail").or_else(|| json.get("message"))?;
            match field {
                Value::String(s) => s.clone(),
                other => redact_json(other).to_string(),
            }
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body).trim().to_string();
            if text.starts_with('<') || text.chars().count() > MAX_DETAIL_CHARS {
                return None;
            }
            text
        }
    };
    let text = mask_aadhaar(text.trim());
    if text.is_empty() {
        return None;
    }
    Some(text.chars().take(MAX_DETAIL_CHARS).collect())
}

/// Runs a read-only call, retrying transient failures after each of the configured pauses.
/// Each attempt builds its request afresh (a new Eko signature timestamp each time).
pub(crate) async fn retry_reads<T, F, Fut>(
    http: &ProviderHttp,
    operation: &'static str,
    mut attempt: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut delays = http.poll_retry_delays().iter();
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(error) if error.is_transient() => match delays.next() {
                Some(delay) => {
                    tracing::warn!(operation, attempt = tries, %error, "provider call failed; retrying");
                    tokio::time::sleep(*delay).await;
                    tries += 1;
                }
                None => return Err(error),
            },
            outcome => return outcome,
        }
    }
}

/// The answer parsers, fed a provider's raw body the way a live call feeds them, for the fuzz
/// targets in `tests/fuzz`. Not an API: nothing in the product calls these.
#[doc(hidden)]
pub mod fuzzing {
    use super::{ProviderError, eko, message_central};

    /// A Message Central generate-URL answer (HTTP 2xx).
    pub fn message_central_link(body: &[u8]) -> Result<message_central::McLink, ProviderError> {
        message_central::parse_link(body)
    }

    /// An Eko create-URL answer (HTTP 2xx).
    pub fn eko_created(body: &[u8]) -> Result<eko::EkoLink, ProviderError> {
        eko::parse_created(&eko::json_object(body)?)
    }

    /// An Eko status answer (HTTP 2xx).
    pub fn eko_status(body: &[u8]) -> Result<eko::EkoStatus, ProviderError> {
        eko::parse_status(&eko::json_object(body)?)
    }

    /// An Eko document answer (HTTP 2xx) for `document_type`.
    pub fn eko_document(
        body: &[u8],
        document_type: &str,
    ) -> Result<eko::EkoDocument, ProviderError> {
        eko::parse_document(&eko::json_object(body)?, document_type)
    }

    /// The provider's explanation in an error answer (any HTTP status).
    pub fn error_detail(body: &[u8]) -> Option<String> {
        super::error_detail(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_plain_and_grouped_aadhaar_numbers() {
        assert_eq!(mask_aadhaar("123456782345"), "XXXX-XXXX-2345");
        assert_eq!(mask_aadhaar("uid 1234 5678 2345."), "uid XXXX-XXXX-2345.");
        assert_eq!(mask_aadhaar("a1234-5678-2345b"), "aXXXX-XXXX-2345b");
        assert_eq!(mask_aadhaar("1234 5678-2345"), "XXXX-XXXX-2345");
        assert_eq!(mask_aadhaar("uid 1234.5678.2345."), "uid XXXX-XXXX-2345.");
        assert_eq!(
            mask_aadhaar("two: 111122223333 and 444455556666"),
            "two: XXXX-XXXX-3333 and XXXX-XXXX-6666"
        );
        assert_eq!(mask_aadhaar("नाम 123456789012"), "नाम XXXX-XXXX-9012");
    }

    #[test]
    fn leaves_other_numbers_alone() {
        for text in [
            "1700000000000",     // 13-digit timestamp
            "12345678901",       // 11 digits
            "1234567890123456",  // 16 digits
            "1234 5678 901",     // short last group
            "12345 5678 9012",   // long first group
            "1234  5678 9012",   // double space
            "XXXX-XXXX-2345",    // already masked
            "9962981729",        // mobile
            "reference 7654321", // short id
            "",
        ] {
            assert_eq!(mask_aadhaar(text), text, "{text}");
        }
    }

    #[test]
    fn redacts_json_secrets_photos_and_aadhaar() {
        let raw = json!({
            "status": 0,
            "api_key": "Bearer abc",
            "secret-key": "sig",
            "Developer_Key": "dev",
            "access_key": "acc",
            "token": "tok",
            "authToken": "tok2",
            "data": {
                "uid": "123456782345",
                "aadhaar_number": 123456782345u64,
                "reference_id": 1234567,
                "photo": "base64...",
                "photo_link": "https://x/photo.jpg",
                "documents": [{"masked_aadhaar": "XXXX-XXXX-2345", "note": "id 1234 5678 2345"}],
                "ok": true,
                "none": null
            }
        });
        let clean = redact_json(&raw);
        assert_eq!(
            clean,
            json!({
                "status": 0,
                "data": {
                    "uid": "XXXX-XXXX-2345",
                    "aadhaar_number": "XXXX-XXXX-2345",
                    "reference_id": 1234567,
                    "documents": [{"masked_aadhaar": "XXXX-XXXX-2345", "note": "id XXXX-XXXX-2345"}],
                    "ok": true,
                    "none": null
                }
            })
        );
    }

    /// Found by the `provider_answers` fuzz target's property check: a 12-digit number written
    /// negative or as a float (`1.23456789012e11` is stored as `123456789012.0`) was kept.
    #[test]
    fn redacts_aadhaar_length_numbers_in_any_notation() {
        let raw: Value = serde_json::from_str(
            r#"{"a": -123456789012, "b": 1.23456789012e11, "c": 123456789012, "d": 1234567890123, "e": 42, "f": 0.5}"#,
        )
        .unwrap();
        assert_eq!(
            redact_json(&raw),
            json!({
                "a": "-XXXX-XXXX-9012",
                "b": "XXXX-XXXX-9012.0",
                "c": "XXXX-XXXX-9012",
                "d": 1234567890123u64,
                "e": 42,
                "f": 0.5
            })
        );
    }

    #[test]
    fn normalises_aadhaar_values() {
        assert_eq!(
            masked_aadhaar_value("123456782345").as_deref(),
            Some("XXXX-XXXX-2345")
        );
        assert_eq!(
            masked_aadhaar_value("xxxxxxxx2345").as_deref(),
            Some("XXXX-XXXX-2345")
        );
        assert_eq!(
            masked_aadhaar_value("XXXX XXXX 2345").as_deref(),
            Some("XXXX-XXXX-2345")
        );
        assert_eq!(masked_aadhaar_value("Y"), None);
        assert_eq!(masked_aadhaar_value("2345"), None);
        assert_eq!(masked_aadhaar_value("12345678"), None);
    }

    #[test]
    fn only_connect_and_config_errors_prove_nothing_was_sent() {
        let reached = [
            ProviderError::Timeout,
            ProviderError::Interrupted("reset".into()),
            ProviderError::Http {
                status: 500,
                detail: None,
            },
            ProviderError::Unauthorized { detail: None },
            ProviderError::SignatureRejected,
            ProviderError::Business {
                code: 463,
                message: String::new(),
            },
            ProviderError::Validation { fields: vec![] },
            ProviderError::RateLimited,
            ProviderError::Malformed("x".into()),
        ];
        for error in reached {
            assert!(error.may_have_reached_provider(), "{error:?}");
        }
        assert!(!ProviderError::Connect("refused".into()).may_have_reached_provider());
        assert!(!ProviderError::Config("empty key".into()).may_have_reached_provider());
    }

    #[test]
    fn operator_messages_name_the_fix() {
        let unauthorized = |detail: &str| {
            ProviderError::Unauthorized {
                detail: Some(detail.into()),
            }
            .operator_message()
        };
        assert_eq!(
            unauthorized("API Key must be 'Bearer '"),
            "The Message Central API key is malformed — an admin must re-enter it on the Credentials page."
        );
        assert!(unauthorized("Missing company name in Header").contains("company name"));
        assert!(unauthorized("Missing flow_id header/query.").contains("flow ID"));
        assert!(
            ProviderError::Unauthorized { detail: None }
                .operator_message()
                .contains("paste the current key")
        );
        assert_eq!(
            ProviderError::SignatureRejected.operator_message(),
            "Eko refused the request signature: the access key or developer key is wrong, or the server clock is off."
        );
        let business = |code| {
            ProviderError::Business {
                code,
                message: "m".into(),
            }
            .operator_message()
        };
        assert_eq!(business(463), "Eko does not know this reference.");
        assert!(business(302).contains("wrong one-time password"));
        assert!(business(303).contains("expired"));
        assert!(business(319).contains("initiator ID"));
        assert!(business(327).contains("not given consent"));
        assert!(business(346).contains("user code"));
        assert!(business(347).contains("balance"));
        assert_eq!(business(999), "Eko refused the request (code 999): m");
        let validation = ProviderError::Validation {
            fields: vec![("initiator_id".into(), "must be 10 digits".into())],
        };
        assert!(
            validation
                .operator_message()
                .contains("initiator_id: must be 10 digits")
        );
        assert!(
            ProviderError::Http {
                status: 404,
                detail: None
            }
            .operator_message()
            .contains("base URL")
        );
        assert!(
            ProviderError::Http {
                status: 503,
                detail: None
            }
            .operator_message()
            .contains("trouble")
        );
        assert!(
            ProviderError::RateLimited
                .operator_message()
                .contains("Wait a minute")
        );
    }

    #[test]
    fn error_details_are_masked_and_short() {
        assert_eq!(
            error_detail(br#"{"detail":"bad uid 123456782345"}"#).as_deref(),
            Some("bad uid XXXX-XXXX-2345")
        );
        assert_eq!(
            error_detail(br#"{"message":"nope"}"#).as_deref(),
            Some("nope")
        );
        assert_eq!(error_detail(b"<html>gateway</html>"), None);
        assert_eq!(
            error_detail(b"Service Unavailable").as_deref(),
            Some("Service Unavailable")
        );
        assert_eq!(error_detail(b""), None);
    }

    #[test]
    fn endpoints_refuse_odd_base_urls() {
        assert_eq!(
            endpoint(
                "https://api.eko.in/ekoicici/v3/",
                "/tools/kyc/digilocker",
                "Eko"
            )
            .unwrap()
            .as_str(),
            "https://api.eko.in/ekoicici/v3/tools/kyc/digilocker"
        );
        for bad in ["", "ftp://x", "not a url", "https://u:p@x", "https://x?a=b"] {
            assert!(
                matches!(endpoint(bad, "/p", "Eko"), Err(ProviderError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn secret_headers_are_sensitive() {
        let header = secret_header("Bearer k", "API key").unwrap();
        assert!(header.is_sensitive());
        assert!(matches!(
            secret_header("a\nb", "API key"),
            Err(ProviderError::Config(_))
        ));
    }
}
