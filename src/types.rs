//! Types shared by the browser and the server: roles, view rows, form results and the
//! error every server function returns. Nothing in here may carry a secret.

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

/// One area of the console, as the navigation and the route guards know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    /// Path prefix of the area's pages.
    pub path: &'static str,
    /// Navigation label.
    pub label: &'static str,
    /// Roles that may open it.
    pub roles: &'static [Role],
    /// Whether the navigation lists it.
    pub in_nav: bool,
}

const EVERYONE: &[Role] = &[Role::Operator, Role::Admin, Role::Auditor];

/// The areas of the console. Navigation, page guards and the server-side page check all read
/// this one table, so they cannot disagree.
pub const AREAS: &[Area] = &[
    Area {
        path: "/links",
        label: "New link",
        roles: &[Role::Operator, Role::Admin],
        in_nav: true,
    },
    Area {
        path: "/sessions",
        label: "Sessions",
        roles: EVERYONE,
        in_nav: true,
    },
    Area {
        path: "/users",
        label: "Users",
        roles: &[Role::Admin],
        in_nav: true,
    },
    Area {
        path: "/credentials",
        label: "Credentials",
        roles: &[Role::Admin],
        in_nav: true,
    },
    Area {
        path: "/audit",
        label: "Audit log",
        roles: &[Role::Auditor, Role::Admin],
        in_nav: true,
    },
    Area {
        path: "/account",
        label: "My account",
        roles: EVERYONE,
        in_nav: false,
    },
];

/// The area a path belongs to, if any (the dashboard `/` belongs to none and is open to all
/// signed-in users).
pub fn area_for_path(path: &str) -> Option<&'static Area> {
    AREAS.iter().find(|area| {
        path == area.path
            || path
                .strip_prefix(area.path)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Whether `role` may open the page at `path`.
pub fn may_open(role: Role, path: &str) -> bool {
    area_for_path(path).is_none_or(|area| area.roles.contains(&role))
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
            AppError::Forbidden(_) => 403,
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

impl AuditFilter {
    /// The URL query (without `?`) of these filters, without the cursor.
    pub fn to_query(&self) -> String {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("actor", &self.actor),
            ("action", &self.action),
            ("object", &self.object),
            ("outcome", &self.outcome),
            ("q", &self.q),
        ]
        .iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .map(|(name, value)| format!("{name}={}", query_escape(value.trim())))
        .collect::<Vec<_>>()
        .join("&")
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
