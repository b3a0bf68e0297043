//! Types shared by the browser and the server: roles, view rows, form results and the
//! error every server function returns. Nothing in here may carry a secret.

use crate::provider::Provider;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a staff member may do in KYC Desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Creates, shares and follows KYC links.
    Operator,
    /// Everything an operator does, plus users and provider credentials.
    Admin,
    /// Reads sessions and the audit log; changes nothing.
    Auditor,
}

impl Role {
    /// Every role, in the order forms list them.
    pub const ALL: [Role; 3] = [Role::Operator, Role::Admin, Role::Auditor];

    /// The stored and submitted spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    /// The spelling shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Role::Operator => "Operator",
            Role::Admin => "Admin",
            Role::Auditor => "Auditor",
        }
    }

    /// Parses the stored spelling; anything else is `None`.
    pub fn parse(value: &str) -> Option<Role> {
        match value.trim() {
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed-in staff member, as pages see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentUser {
    /// Database id.
    pub id: i64,
    /// Sign-in email (lower case).
    pub email: String,
    /// Name shown in the header.
    pub display_name: String,
    /// Role at the time of the request.
    pub role: Role,
    /// True until the user replaces the initial password an admin gave them.
    pub must_change_password: bool,
    /// True while the user's role needs a second factor and they have none: only enrolment
    /// opens until they set one up.
    pub must_enrol: bool,
    /// A message for the user about their own account, shown once (a recovery code was used to
    /// sign in, for instance).
    pub notice: Option<String>,
    /// Signs in only through single sign-on: has no password (the password pages are hidden).
    #[serde(default)]
    pub sso_only: bool,
    /// This session was signed in through single sign-on.
    #[serde(default)]
    pub single_sign_on: bool,
}

/// What the sign-in page offers besides email and password.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInChoices {
    /// "Sign in with {label}" when single sign-on is set up.
    pub single_sign_on: Option<String>,
    /// Where to sign out at the identity provider too (asked for after an SSO sign-out).
    pub provider_sign_out: Option<String>,
}

/// How a step-up (re-confirmation before a sensitive action) is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepUpMethod {
    /// The code from the user's authenticator app.
    Code,
    /// The user's password (a user without a second factor).
    Password,
    /// One of the user's passkeys (their only second factors).
    Passkey,
    /// Signing in again at the identity provider (an SSO-only user without a second factor
    /// of KYC Desk's own).
    SingleSignOn,
}

/// One of the caller's passkeys, as the account page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyRow {
    /// Row id.
    pub id: i64,
    /// The name the user gave it.
    pub name: String,
    /// When it was added, formatted in UTC.
    pub created: String,
    /// When it was last used, formatted in UTC.
    pub last_used: Option<String>,
}

/// One row of the users page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    /// Database id.
    pub id: i64,
    /// Sign-in email.
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Current role.
    pub role: Role,
    /// Disabled users cannot sign in.
    pub disabled: bool,
    /// Whether the user still has to replace an initial or reset password.
    pub must_change_password: bool,
    /// Signs in only through single sign-on (no password).
    pub sso_only: bool,
    /// Has signed in through single sign-on (an identity is linked).
    pub sso_linked: bool,
    /// Whether the user has a second factor (an authenticator app or a passkey). (After the
    /// single-sign-on fields: the bundle check looks for the table name `second_factors`, which
    /// `second_factor` followed by `sso_only` would spell in the bundle's field-name table.)
    pub second_factor: bool,
    /// Last successful sign-in, formatted in UTC, if any.
    pub last_sign_in: Option<String>,
    /// Creation time, formatted in UTC.
    pub created: String,
}

/// What the sign-in page does after a successful sign-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedIn {
    /// Where to go next (always a local path).
    pub redirect_to: String,
}

/// Whether a setup link can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetupLinkState {
    /// The link is valid and no user exists yet.
    Usable,
    /// An admin already exists; setup links no longer work.
    AlreadySetUp,
    /// The token is not one the server issued.
    Unknown,
}

/// A message attached to one form field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The form field's name.
    pub field: String,
    /// What is wrong, in plain words.
    pub message: String,
}

/// The error every server function returns. Its text is written for the operator; internal
/// details never travel in it (they are logged with the request id instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// No valid session.
    #[error("Your session has ended. Please sign in again.")]
    Unauthorized,
    /// Sign-in refused: wrong email or password (never says which).
    #[error("Wrong email or password.")]
    InvalidCredentials,
    /// Signed in, but this role (or state) may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Input was rejected; `fields` names each bad field.
    #[error("{message}")]
    Validation {
        /// Summary for the whole form.
        message: String,
        /// Per-field messages.
        fields: Vec<FieldError>,
    },
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. the last admin).
    #[error("{0}")]
    Conflict(String),
    /// Too many attempts; try again later.
    #[error("{message}")]
    TooManyRequests {
        /// What happened and when to retry.
        message: String,
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// A dependency (database, provider, mail server) is unavailable right now.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed on the server; details are in the log under this reference.
    #[error(
        "Something went wrong on our side. Please try again; if it keeps happening, give an admin this reference: {request_id}"
    )]
    Internal {
        /// The request id the server logged the details under.
        request_id: String,
    },
    /// The request could not be made or understood (network, malformed arguments).
    #[error("{0}")]
    Request(String),
    /// A sensitive action needs a fresh confirmation (step-up) first; the form offers it.
    #[error("{}", match method {
        StepUpMethod::Code => "Confirm it is you first: enter the code from your authenticator app, then try again.",
        StepUpMethod::Password => "Confirm it is you first: enter your password, then try again.",
        StepUpMethod::Passkey => "Confirm it is you first with your passkey, then try again.",
        StepUpMethod::SingleSignOn => "Confirm it is you first by signing in again at your identity provider, then try again.",
    })]
    StepUpRequired {
        /// What the user confirms with.
        method: StepUpMethod,
        /// The user has a passkey too (offered beside an authenticator code).
        #[serde(default)]
        passkey: bool,
    },
}

impl AppError {
    /// A validation error for a single field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        AppError::Validation {
            message: "Please correct the highlighted field.".into(),
            fields: vec![FieldError {
                field: field.into(),
                message,
            }],
        }
    }

    /// A validation error from a list of field errors; `None` when the list is empty.
    pub fn from_fields(fields: Vec<FieldError>) -> Option<Self> {
        if fields.is_empty() {
            return None;
        }
        let message = if fields.len() == 1 {
            "Please correct the highlighted field.".to_string()
        } else {
            format!("Please correct the {} highlighted fields.", fields.len())
        };
        Some(AppError::Validation { message, fields })
    }

    /// The message for one field, if this error names it.
    pub fn field_message(&self, field: &str) -> Option<String> {
        match self {
            AppError::Validation { fields, .. } => fields
                .iter()
                .find(|f| f.field == field)
                .map(|f| f.message.clone()),
            _ => None,
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::Unauthorized | AppError::InvalidCredentials => 401,
            AppError::Forbidden(_) | AppError::StepUpRequired { .. } => 403,
            AppError::Validation { .. } | AppError::Request(_) => 400,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::TooManyRequests { .. } => 429,
            AppError::Unavailable(_) => 503,
            AppError::Internal { .. } => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        let error = match value {
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => AppError::Request(
                "The server could not be reached. Check your connection and try again.".into(),
            ),
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => AppError::Request(
                "The form data could not be read. Reload the page and try again.".into(),
            ),
            ServerFnErrorErr::Deserialization(_) => AppError::Request(
                "The server's answer could not be read. Reload the page and try again.".into(),
            ),
            other => AppError::Request(format!("The request failed: {other}")),
        };
        #[cfg(feature = "ssr")]
        crate::server::web::set_error_status(&error);
        error
    }
}

/// The message for `field` in the latest result of an action, if there is one.
pub fn field_error<T>(result: &Option<Result<T, AppError>>, field: &str) -> Option<String> {
    match result {
        Some(Err(error)) => error.field_message(field),
        _ => None,
    }
}

/// Percent-encodes a query-string value (both sides need it for shareable filter links).
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Filters of the audit page, exactly as they appear in its URL (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// From this UTC date or date-time (`YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`), inclusive.
    #[serde(default)]
    pub from: String,
    /// Until this UTC date (inclusive, whole day) or date-time (exclusive).
    #[serde(default)]
    pub to: String,
    /// Part of the actor's email, or a role (`system`, `cli`, `anonymous`, ...).
    #[serde(default)]
    pub actor: String,
    /// An action (`link.create`) or a family ending in a dot (`auth.`).
    #[serde(default)]
    pub action: String,
    /// An object type (`user`), or type and id (`user:7`).
    #[serde(default)]
    pub object: String,
    /// `success`, `failure`, `denied` or `error`.
    #[serde(default)]
    pub outcome: String,
    /// Words searched in the reason and the detail.
    #[serde(default)]
    pub q: String,
    /// Keyset cursor: only rows older than this seq.
    #[serde(default)]
    pub before: Option<i64>,
}

/// A URL query (without `?`) of the filters that are set, their values trimmed and escaped.
fn filter_query(filters: &[(&str, &String)]) -> String {
    filters
        .iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| format!("{name}={}", query_escape(value.trim())))
        .collect::<Vec<_>>()
        .join("&")
}

impl AuditFilter {
    /// The URL query (without `?`) of these filters, without the cursor.
    pub fn to_query(&self) -> String {
        filter_query(&[
            ("from", &self.from),
            ("to", &self.to),
            ("actor", &self.actor),
            ("action", &self.action),
            ("object", &self.object),
            ("outcome", &self.outcome),
            ("q", &self.q),
        ])
    }
}

/// One audit row as the auditor's page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain.
    pub seq: i64,
    /// UTC time, `YYYY-MM-DD HH:MM:SS.mmm UTC`.
    pub time: String,
    /// Staff user id, if the actor was a user.
    pub actor_id: Option<i64>,
    /// Staff email ('' for system, cli, anonymous).
    pub actor_email: String,
    /// Role at the time, or `system` / `cli` / `anonymous`.
    pub actor_role: String,
    /// Client address.
    pub ip: String,
    /// Request id (matches the server's log lines).
    pub request_id: String,
    /// Dotted action.
    pub action: String,
    /// Object type.
    pub object_type: String,
    /// Object id.
    pub object_id: String,
    /// `success` / `failure` / `denied` / `error`.
    pub outcome: String,
    /// Reason in plain words.
    pub reason: String,
    /// Detail JSON, pretty-printed.
    pub detail: String,
    /// MAC of the previous row.
    pub prev_mac: String,
    /// This row's MAC.
    pub mac: String,
}

/// One page of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Matching rows, newest first (at most 50).
    pub entries: Vec<AuditEntry>,
    /// Cursor of the next (older) page, if there is one.
    pub next_before: Option<i64>,
}

/// The result of checking the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerification {
    /// True when every row verified.
    pub intact: bool,
    /// Rows verified (before the break, if any).
    pub rows: u64,
    /// The first broken seq.
    pub broken_seq: Option<i64>,
    /// One sentence for the page.
    pub summary: String,
}

/// Where a KYC session is in its life. A customer link: `issued → opened → consented →
/// started → returned → completed`; a provider URL handed over in person: `creating → started
/// → …`. `failed`, `expired`, `cancelled`, `superseded` and `withdrawn` are the other ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KycStatus {
    /// The row is written; the provider is being asked for a URL (in-person hand-over).
    Creating,
    /// KYC Desk's customer link exists; the customer has not opened it yet.
    Issued,
    /// The customer opened the link's page.
    Opened,
    /// The customer accepted the privacy notice and consented.
    Consented,
    /// The provider's URL exists: minted when the customer pressed Start, or at once for an
    /// in-person hand-over.
    Started,
    /// The customer's browser came back from the provider's journey: a claim, awaiting a
    /// verdict from the provider's API or a named staff member.
    Returned,
    /// Verification finished successfully.
    Completed,
    /// The provider refused, or the journey failed.
    Failed,
    /// The link ran out of time.
    Expired,
    /// Staff cancelled it.
    Cancelled,
    /// Replaced by a regenerated link.
    Superseded,
    /// The customer withdrew their consent before the verification finished.
    Withdrawn,
}

impl KycStatus {
    /// Every status, in life order.
    pub const ALL: [KycStatus; 12] = [
        KycStatus::Creating,
        KycStatus::Issued,
        KycStatus::Opened,
        KycStatus::Consented,
        KycStatus::Started,
        KycStatus::Returned,
        KycStatus::Completed,
        KycStatus::Failed,
        KycStatus::Expired,
        KycStatus::Cancelled,
        KycStatus::Superseded,
        KycStatus::Withdrawn,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KycStatus::Creating => "creating",
            KycStatus::Issued => "issued",
            KycStatus::Opened => "opened",
            KycStatus::Consented => "consented",
            KycStatus::Started => "started",
            KycStatus::Returned => "returned",
            KycStatus::Completed => "completed",
            KycStatus::Failed => "failed",
            KycStatus::Expired => "expired",
            KycStatus::Cancelled => "cancelled",
            KycStatus::Superseded => "superseded",
            KycStatus::Withdrawn => "withdrawn",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A label for people.
    pub fn label(self) -> &'static str {
        match self {
            KycStatus::Creating => "Creating",
            KycStatus::Issued => "Issued",
            KycStatus::Opened => "Opened by the customer",
            KycStatus::Consented => "Consented",
            KycStatus::Started => "Started",
            KycStatus::Returned => "Returned, awaiting confirmation",
            KycStatus::Completed => "Completed",
            KycStatus::Failed => "Failed",
            KycStatus::Expired => "Expired",
            KycStatus::Cancelled => "Cancelled",
            KycStatus::Superseded => "Superseded",
            KycStatus::Withdrawn => "Withdrawn by the customer",
        }
    }

    /// Whether the session has ended (no further change).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            KycStatus::Completed
                | KycStatus::Failed
                | KycStatus::Expired
                | KycStatus::Cancelled
                | KycStatus::Superseded
                | KycStatus::Withdrawn
        )
    }

    /// Whether the link can still be used by the customer (and sent, cancelled, ...).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            KycStatus::Issued
                | KycStatus::Opened
                | KycStatus::Consented
                | KycStatus::Started
                | KycStatus::Returned
        )
    }

    /// The stored spellings of the open statuses, as an SQL list: `('issued', …)`.
    pub const OPEN_SQL: &'static str = "('issued', 'opened', 'consented', 'started', 'returned')";

    /// The one table of legal moves.
    pub fn may_become(self, next: KycStatus) -> bool {
        use KycStatus::*;
        match self {
            Creating => matches!(next, Started | Failed),
            Issued => matches!(next, Opened | Expired | Cancelled | Superseded),
            Opened => matches!(
                next,
                Consented | Expired | Cancelled | Superseded | Withdrawn
            ),
            Consented => matches!(next, Started | Expired | Cancelled | Superseded | Withdrawn),
            Started => matches!(
                next,
                Returned | Completed | Failed | Expired | Cancelled | Superseded | Withdrawn
            ),
            // A customer link's customer may start again (a new provider URL) after coming back.
            Returned => matches!(
                next,
                Started | Completed | Failed | Expired | Cancelled | Superseded | Withdrawn
            ),
            Completed | Failed | Expired | Cancelled | Superseded | Withdrawn => false,
        }
    }
}

/// One choice of the new-link form: a provider flow with an active credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkOption {
    /// `message_central:trial:basic`, `eko:uat:digilocker`, ...
    pub id: String,
    /// What the operator sees.
    pub label: String,
    /// Whose flow it is.
    pub provider: Provider,
    /// Whether it talks to the built-in sandbox.
    pub sandbox: bool,
    /// Documents that may be requested (Eko only).
    pub documents: Vec<String>,
    /// Trial links left (Message Central trial only).
    pub trial_links_left: Option<i64>,
}

/// What the new-link form needs to show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkFormOptions {
    /// Provider flows with an active credential.
    pub options: Vec<LinkOption>,
    /// Channels that can send a link: `email`, `sms`, `whatsapp`.
    pub channels: Vec<String>,
    /// The customer link's lifetime the form offers first, in hours.
    #[serde(default)]
    pub lifetime_hours_default: i64,
    /// The shortest lifetime an operator may pick, in hours.
    #[serde(default)]
    pub lifetime_hours_min: i64,
    /// The longest, in hours.
    #[serde(default)]
    pub lifetime_hours_max: i64,
}

/// How the customer gets to the provider.
pub const HANDOVER_CUSTOMER_LINK: &str = "customer_link";
/// The provider's URL made at once, for an in-person hand-over.
pub const HANDOVER_PROVIDER_URL: &str = "provider_url";

/// The new-link form, as submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLinkInput {
    /// A [`LinkOption::id`].
    #[serde(default)]
    pub option: String,
    /// Customer's full name.
    #[serde(default)]
    pub customer_name: String,
    /// Mobile number (Indian 10-digit or E.164).
    #[serde(default)]
    pub phone: String,
    /// Email (optional).
    #[serde(default)]
    pub email: String,
    /// Internal reference (optional).
    #[serde(default)]
    pub internal_ref: String,
    /// Documents requested (Eko), comma-separated or repeated.
    #[serde(default)]
    pub documents: Vec<String>,
    /// "on"/"true" when the operator confirmed the customer's consent.
    #[serde(default)]
    pub consent: String,
    /// One random key per form instance, so a resubmission never makes a second link.
    #[serde(default)]
    pub idempotency_key: String,
    /// [`HANDOVER_CUSTOMER_LINK`] (also when empty) or [`HANDOVER_PROVIDER_URL`].
    #[serde(default)]
    pub handover: String,
    /// The customer link's lifetime in hours (empty: the default).
    #[serde(default)]
    pub lifetime_hours: String,
    /// "off" to send no reminders for this link.
    #[serde(default)]
    pub reminders: String,
}

/// A KYC session as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Public id (used in addresses).
    pub public_id: String,
    /// Customer's name.
    pub customer_name: String,
    /// Masked phone.
    pub phone_masked: String,
    /// Who made the link.
    pub provider: Provider,
    /// `basic` / `premium` / `digilocker`.
    pub flow: String,
    /// Provider and flow for people.
    pub provider_label: String,
    /// Status.
    pub status: KycStatus,
    /// Staff member who created it.
    pub created_by: String,
    /// Creation time (UTC text).
    pub created_at: String,
    /// Expiry, or end time when ended (UTC text).
    pub expires_or_ended: String,
    /// Whether it ran against the sandbox.
    pub sandbox: bool,
    /// "provider not answering since …" while the polls of an open session keep failing.
    #[serde(default)]
    pub provider_alert: Option<String>,
}

/// One event on a session's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// UTC time.
    pub at: String,
    /// `created`, `sent`, `returned`, `polled`, `completed`, ...
    pub kind: String,
    /// Who: staff email, `system` or `customer`.
    pub actor: String,
    /// Plain words.
    pub detail: String,
}

/// One attempt to hand a link over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// Delivery id.
    pub id: i64,
    /// `email`, `sms`, `whatsapp`.
    pub channel: String,
    /// `j***@example.com`, `+91******1234`.
    pub destination: String,
    /// `sending`, `sent`, `failed`.
    pub outcome: String,
    /// The reason of a failure.
    pub error: Option<String>,
    /// Who tried.
    pub by: String,
    /// When (UTC).
    pub at: String,
}

/// Everything about one session, for its detail page and the new-link result card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDetail {
    /// The list fields.
    pub summary: SessionSummary,
    /// The link (while it exists and the viewer may hand it over).
    pub link_url: Option<String>,
    /// An open link exists but is withheld from this viewer (auditors review, they do not
    /// hand links over).
    #[serde(default)]
    pub link_withheld: bool,
    /// Expiry as Unix seconds, for the live countdown.
    pub expires_at_unix: Option<i64>,
    /// Customer email, masked unless the viewer may see contacts.
    pub email_masked: Option<String>,
    /// Internal reference.
    pub internal_ref: Option<String>,
    /// Documents requested.
    pub documents: Vec<String>,
    /// Consent note stored with the session.
    pub consent_note: String,
    /// Provider ids (journey id, reference id, client ref id).
    pub provider_ids: Vec<(String, String)>,
    /// Masked result fields (name, date of birth, gender, masked Aadhaar, city, state, ...).
    pub result: Vec<(String, String)>,
    /// The result holds only what the status call reported (no document could be fetched).
    #[serde(default)]
    pub result_partial: bool,
    /// Last failure in plain words.
    pub last_error: Option<String>,
    /// The session this one replaced.
    pub supersedes: Option<String>,
    /// The session that replaced this one.
    pub superseded_by: Option<String>,
    /// Timeline, oldest first.
    pub timeline: Vec<TimelineEvent>,
    /// Deliveries, newest first.
    pub deliveries: Vec<DeliveryView>,
    /// Channels configured for sending.
    pub channels: Vec<String>,
    /// Whether the customer gave an email (so the email channel can be used).
    pub has_email: bool,
    /// What the customer's browser reported on coming back, if it came back.
    pub return_claim: Option<ReturnClaim>,
    /// The outcome a staff member recorded by hand, if one did.
    pub recorded_outcome: Option<RecordedOutcome>,
    /// Whether staff may record an outcome now (a Message Central session still open after
    /// its customer came back).
    pub outcome_recordable: bool,
    /// KYC Desk's customer link, when the session has one.
    #[serde(default)]
    pub customer_link: Option<CustomerLinkView>,
}

/// A session's customer link as staff see it (its address is the detail's `link_url`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerLinkView {
    /// Until when the link works (UTC text).
    pub expires_at: String,
    /// Provider URLs minted so far.
    pub mints_used: i64,
    /// Provider URLs it may mint.
    pub mint_limit: i64,
    /// When the customer first opened it (UTC text).
    pub opened_at: Option<String>,
    /// Whether a one-time code to the mobile is asked before Start.
    pub code_required: bool,
    /// Whether reminders may go.
    #[serde(default)]
    pub reminders_on: bool,
    /// Reminders sent.
    #[serde(default)]
    pub reminders_sent: i64,
    /// When the next reminder is due (UTC text).
    #[serde(default)]
    pub next_reminder: Option<String>,
    /// The customer's recorded consent.
    pub consent: Option<ConsentView>,
}

/// The consent a customer gave on the link's page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentView {
    /// The privacy notice version shown.
    pub notice_version: i64,
    /// The language it was shown in (`en`, `hi`).
    pub language: String,
    /// When (UTC text).
    pub at: String,
    /// The start of the keyed hash of the client's address.
    pub client_hash: String,
    /// The start of the keyed hash of the browser's user agent.
    pub agent_hash: String,
}

/// Longest note a staff member may give when recording an outcome, in characters.
pub const MAX_OUTCOME_NOTE_CHARS: usize = 500;

/// What a customer's browser reported on coming back from the provider: a claim anyone can
/// edit in the address bar, shown as such and never taken as a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnClaim {
    /// The `status` it carried (sanitised), if any.
    pub reported: Option<String>,
    /// How many times it came back.
    pub count: i64,
    /// When it last came back (UTC text).
    pub last_at: String,
}

/// A verdict a named staff member recorded after checking the provider's console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedOutcome {
    /// `completed` or `failed`.
    pub outcome: KycStatus,
    /// Who recorded it (staff email).
    pub by: String,
    /// When (UTC text).
    pub at: String,
    /// Their note.
    pub note: String,
}

/// Filters of the sessions list, as they appear in its URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    /// A status.
    #[serde(default)]
    pub status: String,
    /// `message_central` / `eko`.
    #[serde(default)]
    pub provider: String,
    /// `basic` / `premium` / `digilocker`.
    #[serde(default)]
    pub flow: String,
    /// Staff member's email.
    #[serde(default)]
    pub staff: String,
    /// Created on or after this UTC date (`YYYY-MM-DD`).
    #[serde(default)]
    pub from: String,
    /// Created on or before this UTC date.
    #[serde(default)]
    pub to: String,
    /// Search: name, phone, email, internal reference, journey / reference id.
    #[serde(default)]
    pub q: String,
    /// Keyset cursor: sessions older than this one (internal id).
    #[serde(default)]
    pub before: Option<i64>,
}

impl SessionFilter {
    /// The URL query (without `?`) of these filters, without the cursor.
    pub fn to_query(&self) -> String {
        filter_query(&[
            ("status", &self.status),
            ("provider", &self.provider),
            ("flow", &self.flow),
            ("staff", &self.staff),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
        ])
    }
}

/// One page of the sessions list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPage {
    /// Sessions, newest first (at most 50).
    pub sessions: Vec<SessionSummary>,
    /// Cursor of the next (older) page.
    pub next_before: Option<i64>,
    /// Staff members, for the filter.
    pub staff: Vec<String>,
}

/// The dashboard's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardStats {
    /// (period label, counts per status in [`KycStatus::ALL`] order).
    pub periods: Vec<(String, Vec<i64>)>,
    /// Funnel over 30 days: created, sent, returned, completed.
    pub funnel: Vec<(String, i64)>,
    /// Sessions of the last 30 days whose customer came back and that still wait for a
    /// verdict (from the provider's API or a staff member): not counted as completed.
    pub awaiting_confirmation: i64,
    /// Links per day over the last 14 days: (`MM-DD`, count).
    pub per_day: Vec<(String, i64)>,
    /// Open links expiring within 10 minutes.
    pub expiring: Vec<SessionSummary>,
    /// Open sessions whose provider polls keep failing, longest failing first.
    #[serde(default)]
    pub not_answering: Vec<SessionSummary>,
}

#[cfg(test)]
mod tests {
    use super::KycStatus::{self, *};

    #[test]
    fn the_state_machine_allows_only_forward_moves() {
        let allowed: &[(KycStatus, &[KycStatus])] = &[
            (Creating, &[Started, Failed]),
            (Issued, &[Opened, Expired, Cancelled, Superseded]),
            (
                Opened,
                &[Consented, Expired, Cancelled, Superseded, Withdrawn],
            ),
            (
                Consented,
                &[Started, Expired, Cancelled, Superseded, Withdrawn],
            ),
            (
                Started,
                &[
                    Returned, Completed, Failed, Expired, Cancelled, Superseded, Withdrawn,
                ],
            ),
            (
                Returned,
                &[
                    Started, Completed, Failed, Expired, Cancelled, Superseded, Withdrawn,
                ],
            ),
            (Completed, &[]),
            (Failed, &[]),
            (Expired, &[]),
            (Cancelled, &[]),
            (Superseded, &[]),
            (Withdrawn, &[]),
        ];
        assert_eq!(
            allowed.len(),
            KycStatus::ALL.len(),
            "every status is listed"
        );
        let open: Vec<&str> = KycStatus::ALL
            .into_iter()
            .filter(|s| s.is_open())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            KycStatus::OPEN_SQL,
            format!("('{}')", open.join("', '")),
            "the SQL list of open statuses is the open statuses"
        );
        for (from, targets) in allowed {
            for to in KycStatus::ALL {
                assert_eq!(
                    from.may_become(to),
                    targets.contains(&to),
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
            }
            assert_eq!(from.is_final(), targets.is_empty());
        }
        for status in KycStatus::ALL {
            assert_eq!(KycStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(KycStatus::parse("done"), None);
    }

    #[test]
    fn filters_make_shareable_queries() {
        let filter = super::SessionFilter {
            status: "failed".into(),
            q: "Asha Rao & co".into(),
            before: Some(7),
            ..Default::default()
        };
        assert_eq!(filter.to_query(), "status=failed&q=Asha%20Rao%20%26%20co");
        assert_eq!(super::query_escape("a+b@c"), "a%2Bb%40c");
    }
}

/// The texts of the customer's privacy notice in one language (India's DPDP Act asks each).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeTexts {
    /// Why the data is processed.
    #[serde(default)]
    pub purpose: String,
    /// Which data items.
    #[serde(default)]
    pub data_items: String,
    /// How long records are kept.
    #[serde(default)]
    pub retention: String,
    /// How to withdraw consent.
    #[serde(default)]
    pub withdrawal: String,
    /// How to complain.
    #[serde(default)]
    pub complaint: String,
}

/// One version of the privacy notice: its texts in English (`en`) and Hindi (`hi`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyNotice {
    /// Version, from 1 (0 in a form that saves a new one).
    #[serde(default)]
    pub version: i64,
    /// Who wrote it.
    #[serde(default)]
    pub created_by: String,
    /// When (UTC text).
    #[serde(default)]
    pub created_at: String,
    /// English.
    #[serde(default)]
    pub en: NoticeTexts,
    /// Hindi.
    #[serde(default)]
    pub hi: NoticeTexts,
}

/// The reminder texts of one language: the SMS/WhatsApp text (which must match a DLT
/// template registered for it) and the email's subject and body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderTexts {
    /// SMS and WhatsApp.
    #[serde(default)]
    pub sms: String,
    /// Email subject (one line).
    #[serde(default)]
    pub email_subject: String,
    /// Email body (plain text; the HTML part is made from it).
    #[serde(default)]
    pub email_body: String,
}

/// The reminder templates admins edit, in English and Hindi.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderTemplates {
    /// Who saved them last ("KYC Desk" while the built-in texts are used).
    #[serde(default)]
    pub updated_by: String,
    /// When (UTC text; empty for the built-in texts).
    #[serde(default)]
    pub updated_at: String,
    /// English.
    #[serde(default)]
    pub en: ReminderTexts,
    /// Hindi.
    #[serde(default)]
    pub hi: ReminderTexts,
}
