//! The one place where security-relevant staff actions are recorded.
//!
//! Today every event is written as a structured `audit` log line. The tamper-evident,
//! hash-chained table replaces the body of [`record`] without changing its callers.

use crate::types::Role;
use serde_json::Value;
use std::net::IpAddr;

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in staff member, with their role at the time.
    User {
        /// User id.
        id: i64,
        /// Email (staff emails are not customer PII, and identify the actor).
        email: String,
        /// Role at the time of the action.
        role: Role,
    },
    /// Someone not signed in (a failed sign-in, an unauthenticated request).
    Anonymous,
    /// KYC Desk itself (timeouts, background jobs).
    System,
    /// The command line on the server.
    Cli,
}

/// How the action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused for a reason of the input (wrong password, validation).
    Failure,
    /// Refused by a role, origin or throttle check.
    Denied,
    /// Failed on our side.
    Error,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// Request context of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// Client address (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
    /// The request id the log lines carry.
    pub request_id: String,
}

impl RequestMeta {
    /// Context for actions started from the command line.
    pub fn cli() -> Self {
        RequestMeta {
            ip: None,
            request_id: format!("cli-{}", uuid::Uuid::new_v4()),
        }
    }
}

/// One recorded action.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// Who.
    pub actor: Actor,
    /// What, as a dotted verb (`auth.sign_in`, `user.create`, ...).
    pub action: &'static str,
    /// The object's type and id, if the action has one.
    pub object: Option<(&'static str, String)>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why, in plain words (never a secret, never full PII).
    pub reason: String,
    /// Small structured detail (never a secret, never full PII).
    pub detail: Value,
}

impl AuditEvent {
    /// An event with no object, reason or detail yet.
    pub fn new(actor: Actor, action: &'static str, outcome: Outcome) -> Self {
        AuditEvent {
            actor,
            action,
            object: None,
            outcome,
            reason: String::new(),
            detail: Value::Null,
        }
    }

    /// Sets the object.
    pub fn object(mut self, kind: &'static str, id: impl ToString) -> Self {
        self.object = Some((kind, id.to_string()));
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Records one event.
pub fn record(meta: &RequestMeta, event: &AuditEvent) {
    let (actor_id, actor_email, actor_role) = match &event.actor {
        Actor::User { id, email, role } => (Some(*id), email.as_str(), role.as_str()),
        Actor::Anonymous => (None, "", "anonymous"),
        Actor::System => (None, "", "system"),
        Actor::Cli => (None, "", "cli"),
    };
    let (object_type, object_id) = event
        .object
        .as_ref()
        .map(|(kind, id)| (*kind, id.as_str()))
        .unwrap_or(("", ""));
    tracing::info!(
        target: "audit",
        request_id = %meta.request_id,
        ip = ?meta.ip,
        actor_id,
        actor_email,
        actor_role,
        action = event.action,
        object_type,
        object_id,
        outcome = event.outcome.as_str(),
        reason = %event.reason,
        detail = %event.detail,
        "audit"
    );
}
