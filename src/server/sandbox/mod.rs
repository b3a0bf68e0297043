//! The built-in provider sandbox: emulators of Message Central e-KYC Now, Eko DigiLocker and
//! the Message Central SMS / WhatsApp send API, plus a customer journey page that stands in
//! for the provider's own pages. See `/work/shared/PROVIDERS.md` for the real services.
//!
//! The routes mirror the real paths, so the real provider clients work unchanged when their
//! base URL is `{public_base}/sandbox/message-central` or `{public_base}/sandbox/eko`:
//!
//! | route (under the `/sandbox` nest) | emulates |
//! | --- | --- |
//! | `POST /message-central/ekyc/api/v1/redirection/generate-url` | e-KYC Now link |
//! | `GET  /message-central/auth/v1/authentication/token` | CPaaS auth token |
//! | `POST /message-central/verification/v3/send` | SMS / WhatsApp send (a sink) |
//! | `POST /eko/tools/kyc/digilocker` | DigiLocker consent URL |
//! | `GET  /eko/tools/kyc/digilocker/status` | DigiLocker status poll |
//! | `POST /eko/tools/kyc/digilocker/document` | DigiLocker document (newer shape) |
//! | `GET`/`POST /journey/{token}` | the customer's side: approve, deny or abandon |
//!
//! The outbox page ([`Sandbox::outbox_page`]) is served by the console at `/sandbox/messages`
//! to signed-in admins only (a file route of the access table).
//!
//! Everything is deliberately **in memory**: this is a development and test tool, so links,
//! decisions, auth tokens and sent messages vanish with the process, and every store is
//! capped so a long-running dev server cannot grow without bound. It checks credentials the
//! way the real services do (so a wrong key fails here before it fails in production) but
//! it never logs them, and the identity it hands out is made up, with the Aadhaar number
//! only ever masked.

mod eko;
mod journey;
mod message_central;
mod sms;

pub mod seed;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng as _;
use rand::distributions::Alphanumeric;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a generated link stays usable (Message Central documents 30 minutes; Eko
/// publishes nothing, so the sandbox uses the same figure for both).
pub const LINK_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How long a link and its outcome are kept, so status polls after the decision still work.
pub const LINK_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// Most links held at once; creating more is answered "too many requests".
pub const MAX_LINKS: usize = 10_000;
/// Most sent messages kept in the sink; the oldest are dropped first.
pub const MAX_SENT_MESSAGES: usize = 1_000;
/// How long an SMS auth token stays valid (the real lifetime is not documented).
pub const SMS_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Most SMS auth tokens held at once; the oldest are dropped first.
pub const MAX_SMS_TOKENS: usize = 1_000;

/// What the sandbox accepts; in the app this comes from the stored sandbox credentials.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Expected Bearer token for e-KYC Now (without the `Bearer ` prefix).
    pub mc_api_key: String,
    /// Expected `company_name`.
    pub mc_company_name: String,
    /// Accepted flow ids (for example a basic and a premium flow).
    pub mc_flow_ids: Vec<String>,
    /// Expected Eko `developer_key` header.
    pub eko_developer_key: String,
    /// The Eko access key the `secret-key` signature is checked against.
    pub eko_access_key: String,
    /// Expected Message Central CPaaS customer id.
    pub sms_customer_id: String,
    /// Message Central CPaaS password (the token call sends it base64-encoded).
    pub sms_password: String,
    /// Where the app is reachable, e.g. `http://127.0.0.1:3000`; journey URLs start with it.
    pub public_base: String,
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("mc_api_key", &"[redacted]")
            .field("mc_company_name", &self.mc_company_name)
            .field("mc_flow_ids", &self.mc_flow_ids)
            .field("eko_developer_key", &"[redacted]")
            .field("eko_access_key", &"[redacted]")
            .field("sms_customer_id", &self.sms_customer_id)
            .field("sms_password", &"[redacted]")
            .field("public_base", &self.public_base)
            .finish()
    }
}

/// The channel a sink message was sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageChannel {
    /// `flowType=SMS`.
    Sms,
    /// `flowType=WHATSAPP`.
    WhatsApp,
}

impl MessageChannel {
    /// The name Message Central uses (`SMS`, `WHATSAPP`).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageChannel::Sms => "SMS",
            MessageChannel::WhatsApp => "WHATSAPP",
        }
    }
}

/// One message the SMS / WhatsApp sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// SMS or WhatsApp.
    pub channel: MessageChannel,
    /// The `countryCode` query parameter, e.g. `91`.
    pub country_code: String,
    /// The `mobileNumber` query parameter, as sent.
    pub mobile: String,
    /// The `senderId` query parameter, when sent.
    pub sender_id: Option<String>,
    /// The message text.
    pub text: String,
    /// The `verificationId` the sandbox answered with.
    pub verification_id: u64,
    /// When the sandbox accepted it.
    pub sent_at: chrono::DateTime<chrono::Utc>,
}

/// The in-process provider sandbox. Cloning is cheap and every clone shares the same state.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: SandboxConfig,
    /// `public_base` without a trailing slash.
    base: String,
    state: Mutex<State>,
}

/// Everything the sandbox remembers. Guarded by one mutex that is never held across an
/// `.await`, so a plain `std::sync::Mutex` is enough.
struct State {
    /// Links by their journey token.
    links: HashMap<String, Link>,
    /// Eko reference id → journey token.
    eko_references: HashMap<u64, String>,
    /// Next Eko reference id (starts at a random 8-digit number so ids look real and stay
    /// well clear of 12 digits, which readers would take for an Aadhaar number).
    next_reference: u64,
    /// Next SMS verification id.
    next_verification: u64,
    /// SMS auth tokens and when they were issued.
    sms_tokens: HashMap<String, Instant>,
    /// The sink, oldest first.
    sent: VecDeque<SentMessage>,
}

/// One generated link and what the customer did with it.
struct Link {
    created: Instant,
    decision: Option<Decision>,
    kind: LinkKind,
}

/// What the customer chose on the journey page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Approve,
    Deny,
    Abandon,
}

enum LinkKind {
    MessageCentral {
        flow_id: String,
        journey_id: String,
        /// Where to send the customer afterwards, when the caller named a place.
        redirect_url: Option<String>,
    },
    Eko {
        reference_id: u64,
        initiator_id: String,
        client_ref_id: Option<String>,
        documents: Vec<String>,
        redirect_url: String,
        /// Made when the customer finishes; sent on the redirect and checked on document
        /// calls, as the older docs describe.
        verification_id: Option<String>,
    },
}

impl Link {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.created) > LINK_LIFETIME
    }
}

/// The made-up person every approved journey shares. The Aadhaar number exists only in its
/// masked form: the sandbox must not be the place a full number leaks from.
struct SandboxPerson;

impl SandboxPerson {
    const NAME: &str = "Asha Sandbox Rao";
    const DOB: &str = "01-02-1990";
    const GENDER: &str = "F";
    const MASKED_AADHAAR: &str = "XXXX-XXXX-2345";
    const MOBILE: &str = "9000056789";
    const CARE_OF: &str = "D/O Ravi Rao";
    const HOUSE: &str = "12, Sandbox Lane";
    const LOCALITY: &str = "Shivajinagar";
    const CITY: &str = "Pune";
    const DISTRICT: &str = "Pune";
    const STATE: &str = "Maharashtra";
    const PINCODE: &str = "411005";
    const COUNTRY: &str = "India";
    const ISSUE_DATE: &str = "15-06-2021";
}

/// Refusals at the HTTP level, each in the wire shape of the service it imitates. Business
/// errors that real services send with HTTP 200 are ordinary answers, not variants here.
#[derive(Debug, thiserror::Error)]
enum SandboxError {
    /// Message Central (FastAPI style): `{"detail": ...}`.
    #[error("Message Central refusal {status}: {detail}")]
    Mc {
        /// The HTTP status.
        status: StatusCode,
        /// The `detail` text.
        detail: &'static str,
    },
    /// Eko's gateway refuses a bad developer key, signature or timestamp with a bare 403.
    #[error("Eko signature refused")]
    EkoForbidden,
    /// Eko's gateway answers 415 for a body that is not JSON.
    #[error("unsupported content type")]
    UnsupportedMediaType,
    /// A body that could not be read at all.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A store is full.
    #[error("too many requests")]
    TooMany,
}

impl IntoResponse for SandboxError {
    fn into_response(self) -> Response {
        match self {
            SandboxError::Mc { status, detail } => {
                (status, Json(json!({ "detail": detail }))).into_response()
            }
            SandboxError::EkoForbidden => (
                StatusCode::FORBIDDEN,
                Json(json!({ "message": "Forbidden" })),
            )
                .into_response(),
            SandboxError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Json(json!({ "message": "Unsupported Media Type" })),
            )
                .into_response(),
            SandboxError::BadRequest(message) => {
                (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
            }
            SandboxError::TooMany => (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({ "message": "Too many requests", "detail": "Too many requests" })),
            )
                .into_response(),
        }
    }
}

impl Sandbox {
    /// A sandbox that accepts the credentials in `config`, with empty state.
    pub fn new(config: SandboxConfig) -> Self {
        let base = config.public_base.trim().trim_end_matches('/').to_string();
        let state = State {
            links: HashMap::new(),
            eko_references: HashMap::new(),
            next_reference: rand::thread_rng().gen_range(10_000_000..50_000_000),
            next_verification: rand::thread_rng().gen_range(100_000..900_000),
            sms_tokens: HashMap::new(),
            sent: VecDeque::new(),
        };
        Sandbox {
            inner: Arc::new(Inner {
                config,
                base,
                state: Mutex::new(state),
            }),
        }
    }

    /// Routes to nest under "/sandbox" — `Router::new().nest("/sandbox", sandbox.router())`.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/message-central/ekyc/api/v1/redirection/generate-url",
                post(message_central::generate_url),
            )
            .route(
                "/message-central/auth/v1/authentication/token",
                get(sms::token),
            )
            .route("/message-central/verification/v3/send", post(sms::send))
            .route("/eko/tools/kyc/digilocker", post(eko::create))
            .route("/eko/tools/kyc/digilocker/status", get(eko::status))
            .route("/eko/tools/kyc/digilocker/document", post(eko::document))
            .route("/journey/{token}", get(journey::show).post(journey::decide))
            .with_state(self.clone())
    }

    /// Messages the SMS/WhatsApp sink received (newest last), for tests and a debug page.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        self.lock().sent.iter().cloned().collect()
    }

    /// The outbox page: every message the sink holds, newest first, numbers masked.
    pub fn outbox_page(&self) -> Response {
        sms::outbox(self)
    }

    fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The customer-facing URL of a journey.
    fn journey_url(&self, token: &str) -> String {
        format!("{}/sandbox/journey/{token}", self.inner.base)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still usable for a
        // dev tool; refusing every later request would be worse.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Drops links past their retention and reports whether there is room for one more.
    fn make_room(&mut self, now: Instant) -> bool {
        let before = self.links.len();
        self.links
            .retain(|_, link| now.duration_since(link.created) <= LINK_RETENTION);
        if self.links.len() != before {
            let links = &self.links;
            self.eko_references
                .retain(|_, token| links.contains_key(token));
        }
        self.links.len() < MAX_LINKS
    }
}

/// A random token of letters and digits (about 190 bits for 32 characters).
fn random_token(length: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(char::from)
        .collect()
}

/// Compares two secrets without stopping at the first difference, so response timing says
/// nothing about how much of a guess was right (the length may still show).
fn same_secret(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A header's value, trimmed; `None` when absent, empty or not visible ASCII.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// The query string's parameters (the first of repeated names wins), percent-decoded.
fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        map.entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    map
}

/// A non-empty, trimmed parameter from a [`query_map`].
fn param<'a>(map: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    map.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

impl Sandbox {
    /// Whether `text` is a customer return address of this console (`{public_base}/kyc/return/…`),
    /// the only place a sandbox journey may send a browser: anything else would make the
    /// sandbox an open redirect (and a phishing page) on the console's own domain.
    fn is_return_url(&self, text: &str) -> bool {
        let (Ok(url), Ok(base)) = (url::Url::parse(text), url::Url::parse(&self.inner.base)) else {
            return false;
        };
        url.origin() == base.origin()
            && url.username().is_empty()
            && url.password().is_none()
            && url
                .path()
                .strip_prefix("/kyc/return/")
                .is_some_and(|rest| !rest.is_empty())
    }
}

/// What a refused `redirect_url` is told.
const RETURN_URL_RULE: &str =
    "redirect_url must be this console's return address ({public_url}/kyc/return/...)";

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SandboxConfig {
        SandboxConfig {
            mc_api_key: "mc-secret-key".into(),
            mc_company_name: "Acme".into(),
            mc_flow_ids: vec!["flow-1".into()],
            eko_developer_key: "dev-secret-key".into(),
            eko_access_key: "access-secret-key".into(),
            sms_customer_id: "C-1".into(),
            sms_password: "sms-secret-password".into(),
            public_base: "http://127.0.0.1:3000/".into(),
        }
    }

    #[test]
    fn debug_hides_every_secret() {
        let sandbox = Sandbox::new(config());
        for shown in [format!("{:?}", config()), format!("{sandbox:?}")] {
            for secret in [
                "mc-secret-key",
                "dev-secret-key",
                "access-secret-key",
                "sms-secret-password",
            ] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }

    #[test]
    fn journey_urls_ignore_a_trailing_slash() {
        let sandbox = Sandbox::new(config());
        assert_eq!(
            sandbox.journey_url("abc"),
            "http://127.0.0.1:3000/sandbox/journey/abc"
        );
    }

    #[test]
    fn journeys_return_only_to_the_console() {
        let sandbox = Sandbox::new(config());
        assert!(sandbox.is_return_url("http://127.0.0.1:3000/kyc/return/abc"));
        assert!(sandbox.is_return_url("http://127.0.0.1:3000/kyc/return/abc?x=1"));
        for refused in [
            "https://phish.example/kyc/return/abc",
            "http://127.0.0.1:3001/kyc/return/abc",
            "https://127.0.0.1:3000/kyc/return/abc",
            "http://127.0.0.1:3000/login",
            "http://127.0.0.1:3000/kyc/return/",
            "http://127.0.0.1:3000/kyc/return/../../login",
            "http://user@127.0.0.1:3000/kyc/return/abc",
            "javascript:alert(1)",
        ] {
            assert!(!sandbox.is_return_url(refused), "{refused}");
        }
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn tokens_are_random_and_alphanumeric() {
        let a = random_token(32);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_token(32));
    }
}
