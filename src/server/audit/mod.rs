//! The one place where security-relevant staff actions are recorded: the tamper-evident,
//! append-only `audit_log` table.
//!
//! Every row carries `prev_mac` and `mac = HMAC-SHA256(key of its epoch, prev_mac ‖ canonical
//! encoding of the row)`. Audit keys come in epochs: a random key per epoch, a new epoch on
//! master-key rotation and on `rotate-audit-key`, every epoch's key sealed under the current
//! master key, so whoever can edit the database still cannot forge a chain, old rows keep
//! verifying, and a leaked old master key signs nothing after the rotation. Checkpoints of the
//! chain's head go to an append-only file outside the database (`anchor`), so deleting the
//! newest rows is found too. Appends are serialised by the one row of `audit_chain_head` (a
//! row lock on PostgreSQL, the write lock on SQLite), which also tells where the chain goes
//! on, so many tasks and several instances produce one gap-free chain.

pub mod anchor;
mod chain;
mod log;
mod noise;
pub mod view;

pub use chain::{Break, GENESIS_MAC, VerifyReport, canonical_encoding, row_mac};
pub use log::{AnchorError, AuditLog, AuditLogError, open_epoch_key};
pub use noise::{MAX_STORED_PATH_CHARS, Noise, short_path};

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
/// number of 10 or more digits (phone numbers, Aadhaar numbers) keeps only its last four.
///
/// A number may be written in groups joined by single spaces, dashes, dots or `+` signs
/// (`98765 43210`, `1234-5678-9012`, `987.654.3210`), or by those separators
/// percent-encoded (`98765%2043210`): the digits of the whole number count, and every digit
/// but its last four becomes `*` (separators are kept). Percent escapes never lend their
/// hex digits to a number. Dates (`2026-11-22`, `22-11-2026`) and IPv4 addresses stand
/// alone, so `2026-11-22 14:30` and `192.168.100.200` are left as they are.
pub fn scrub(text: &str) -> String {
    let tokens = scrub_tokens(text);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            Token::Digits(_) => {
                let chain = number_chain(&tokens, i);
                let mut pieces = Vec::new();
                for part in split_atoms(&tokens[i..chain]) {
                    pieces.push(mask_chain(part));
                }
                out.push_str(&pieces.concat());
                i = chain;
            }
            Token::Separator(t) | Token::Other(t) => {
                out.push_str(t);
                i += 1;
            }
        }
    }
    out
}

/// Free text fit for an audit row, a delivery or a timeline when it may hold a customer's
/// contact details (a server's refusal, a search typed by staff): e-mail addresses are
/// masked like destinations (`m***@example.com`), then [`scrub`] masks long numbers.
pub fn mask_contacts(text: &str) -> String {
    let is_break = |c: char| c.is_whitespace() || "<>()[],;:\"'".contains(c);
    let mut masked = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let address = word
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
        if address {
            out.push_str(&crate::validation::mask_email(word));
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_break(c) {
            flush(&mut word, &mut masked);
            masked.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut masked);
    scrub(&masked)
}

/// A piece of text as [`scrub`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    /// A run of ASCII digits.
    Digits(&'a str),
    /// One character (or percent escape) that may join digit groups: ` `, `-`, `.`, `+`.
    Separator(&'a str),
    /// Anything else (a character, or a percent escape of anything else).
    Other(&'a str),
}

fn scrub_tokens(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let c = rest.chars().next().expect("i is on a character boundary");
        if c.is_ascii_digit() {
            let len = rest.bytes().take_while(u8::is_ascii_digit).count();
            tokens.push(Token::Digits(&rest[..len]));
            i += len;
        } else if c == '%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            let escape = &rest[..3];
            let joins = ["%20", "%2D", "%2E", "%2B"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(escape));
            tokens.push(if joins {
                Token::Separator(escape)
            } else {
                Token::Other(escape)
            });
            i += 3;
        } else {
            let piece = &rest[..c.len_utf8()];
            tokens.push(if matches!(c, ' ' | '-' | '.' | '+') {
                Token::Separator(piece)
            } else {
                Token::Other(piece)
            });
            i += c.len_utf8();
        }
    }
    tokens
}

/// The end of the number starting at `start` (a digit run): digit runs joined by single
/// separators.
fn number_chain(tokens: &[Token<'_>], start: usize) -> usize {
    let mut end = start + 1;
    while let (Some(Token::Separator(_)), Some(Token::Digits(_))) =
        (tokens.get(end), tokens.get(end + 1))
    {
        end += 2;
    }
    end
}

/// The digit runs of a chain (`Digits, Separator, Digits, ...`).
fn runs<'a>(chain: &[Token<'a>]) -> Vec<&'a str> {
    chain
        .iter()
        .filter_map(|t| match t {
            Token::Digits(d) => Some(*d),
            _ => None,
        })
        .collect()
}

/// Splits a chain so dates stand alone (a date next to a time or another number is not
/// one long number); the separators between pieces become pieces of their own.
fn split_atoms<'t, 'a>(chain: &'t [Token<'a>]) -> Vec<&'t [Token<'a>]> {
    let is_date = |at: usize| -> bool {
        let (Some(Token::Digits(a)), Some(Token::Separator(s1)), Some(Token::Digits(b))) =
            (chain.get(at), chain.get(at + 1), chain.get(at + 2))
        else {
            return false;
        };
        let (Some(Token::Separator(s2)), Some(Token::Digits(c))) =
            (chain.get(at + 3), chain.get(at + 4))
        else {
            return false;
        };
        let lens = (a.len(), b.len(), c.len());
        s1 == s2 && matches!(*s1, "-" | ".") && matches!(lens, (4, 2, 2) | (2, 2, 4))
    };
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chain.len() {
        if is_date(i) {
            if i > start {
                // The numbers before, then the separator that joined them to the date.
                pieces.push(&chain[start..i - 1]);
                pieces.push(&chain[i - 1..i]);
            }
            pieces.push(&chain[i..i + 5]);
            if i + 5 < chain.len() {
                pieces.push(&chain[i + 5..i + 6]);
            }
            i += 6;
            start = i;
        } else {
            i += 2;
        }
    }
    if start < chain.len() {
        pieces.push(&chain[start..]);
    }
    pieces
}

/// A chain as it may be stored: unchanged when short, a date or an IPv4 address; otherwise
/// every digit but the last four masked.
fn mask_chain(chain: &[Token<'_>]) -> String {
    let runs = runs(chain);
    let total: usize = runs.iter().map(|r| r.len()).sum();
    let ipv4 = runs.len() == 4
        && runs.iter().all(|r| r.len() <= 3)
        && chain
            .iter()
            .all(|t| !matches!(t, Token::Separator(s) if *s != "."));
    let mut out = String::new();
    if total < 10 || ipv4 {
        for token in chain {
            match token {
                Token::Digits(t) | Token::Separator(t) | Token::Other(t) => out.push_str(t),
            }
        }
        return out;
    }
    let mut seen = 0;
    for token in chain {
        match token {
            Token::Digits(d) => {
                for c in d.chars() {
                    seen += 1;
                    out.push(if seen > total - 4 { c } else { '*' });
                }
            }
            Token::Separator(t) | Token::Other(t) => out.push_str(t),
        }
    }
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

    #[test]
    fn scrub_masks_numbers_written_in_groups() {
        // Phone numbers with spaces, dashes and dots.
        assert_eq!(scrub("call 98765 43210 now"), "call ***** *3210 now");
        assert_eq!(scrub("98765-43210"), "*****-*3210");
        assert_eq!(scrub("987.654.3210"), "***.***.3210");
        assert_eq!(scrub("+91 98765 43210"), "+** ***** *3210");
        assert_eq!(scrub("+91-987-654-3210"), "+**-***-***-3210");
        // Aadhaar numbers in groups.
        assert_eq!(scrub("1234 5678 9012"), "**** **** 9012");
        assert_eq!(scrub("1234-5678-9012"), "****-****-9012");
        assert_eq!(scrub("uid 1234.5678.9012."), "uid ****.****.9012.");
        // Percent-encoded separators (a URL query recorded as text).
        assert_eq!(scrub("q=98765%2043210"), "q=*****%20*3210");
        assert_eq!(
            scrub("q=1234%205678%209012&x=1"),
            "q=****%20****%209012&x=1"
        );
        assert_eq!(scrub("q=1234%2d5678%2D9012"), "q=****%2d****%2D9012");
        assert_eq!(scrub("q=98765+43210"), "q=*****+*3210");
        // In JSON text, as detail columns hold it.
        assert_eq!(
            scrub(r#"{"filter":{"q":"1234 5678 9012"}}"#),
            r#"{"filter":{"q":"**** **** 9012"}}"#
        );
    }

    #[test]
    fn mask_contacts_masks_addresses_and_numbers() {
        assert_eq!(
            mask_contacts("rejected (550 <meera@example.com>: unknown)"),
            "rejected (550 <m***@example.com>: unknown)"
        );
        assert_eq!(
            mask_contacts("number 98765 43210 is not on the DLT list"),
            "number ***** *3210 is not on the DLT list"
        );
        assert_eq!(mask_contacts("meera@example.com"), "m***@example.com");
        assert_eq!(mask_contacts("@ and a@ and @b"), "@ and a@ and @b");
    }

    #[test]
    fn scrub_leaves_dates_times_addresses_and_short_numbers() {
        for text in [
            "2026-11-22 14:30:00.123 UTC",
            "from=2026-11-22T14%3A30",
            "2026-11-22%2014:30",
            "born 01-02-1990 12:00",
            "22.11.2026 1430",
            "from 192.168.100.200",
            "seq 123456789 and 2026-11-22",
            "1.5 and 2",
            "a%201234", // a percent escape never lends its digits
            "rows 12345 678",
            "1234  5678 9012 is two numbers",
        ] {
            assert_eq!(scrub(text), text, "{text}");
        }
        // A date next to a phone number: the phone number is still masked.
        assert_eq!(scrub("2026-11-22 98765 43210"), "2026-11-22 ***** *3210");
    }
}
