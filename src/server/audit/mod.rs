//! The one place where security-relevant staff actions are recorded: the tamper-evident,
//! append-only `audit_log` table.
//!
//! Every row carries `prev_mac` and `mac = HMAC-SHA256(key of its epoch, prev_mac ‖ canonical
//! encoding of the row)`. Audit keys come in epochs: a random key per epoch, a new epoch on
//! master-key rotation and on `rotate-audit-key`, every epoch's key sealed under the current
//! master key, so whoever can edit the database still cannot forge a chain, old rows keep
//! verifying, and a leaked old master key signs nothing after the rotation. Checkpoints of the
//! chain's head go to an append-only file outside the database (`anchor`), so deleting the
//! newest rows is found too. Appends are serialised by
//! the `audit` row of `app_locks` (a row lock on PostgreSQL, the write lock on SQLite), so
//! many tasks and several instances produce one gap-free chain.

pub mod anchor;
mod chain;
mod log;
pub mod view;

pub use chain::{Break, GENESIS_MAC, VerifyReport, canonical_encoding, row_mac};
pub use log::{AnchorError, AuditLog, AuditLogError, open_epoch_key};

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
    /// Context for actions KYC Desk takes on its own (background jobs).
    pub fn system() -> Self {
        RequestMeta {
            ip: None,
            request_id: format!("system-{}", uuid::Uuid::new_v4()),
        }
    }

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

impl Actor {
    /// (user id, email, role) as stored.
    pub fn stored(&self) -> (Option<i64>, &str, &str) {
        match self {
            Actor::User { id, email, role } => (Some(*id), email.as_str(), role.as_str()),
            Actor::Anonymous => (None, "", "anonymous"),
            Actor::System => (None, "", "system"),
            Actor::Cli => (None, "", "cli"),
        }
    }
}

/// Masks what must never sit in an audit row even if a caller passed it by mistake: any
/// run of 10 or more digits (phone numbers, Aadhaar numbers) keeps only its last four.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 10 {
            let keep = &digits[digits.len() - 4..];
            out.extend(std::iter::repeat_n('*', digits.len() - 4));
            out.push_str(keep);
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_masks_long_digit_runs_only() {
        assert_eq!(scrub("aadhaar 123456789012 ok"), "aadhaar ********9012 ok");
        assert_eq!(scrub("+919876543210"), "+********3210");
        assert_eq!(
            scrub("seq 123456789 and 2026-11-22"),
            "seq 123456789 and 2026-11-22"
        );
        assert_eq!(scrub(""), "");
    }
}
