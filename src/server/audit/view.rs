//! What the auditor's page and the CSV export read: filter parsing, row views, the export.

use super::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::csv;
use crate::server::db::audit::{self as repo, AuditQuery, AuditRow};
use crate::server::state::AppState;
use crate::types::{AppError, AuditEntry, AuditFilter, AuditPage, FieldError};
use chrono::{NaiveDate, NaiveDateTime};

/// Rows per page.
pub const PAGE_SIZE: i64 = 50;

const OUTCOMES: [&str; 4] = ["success", "failure", "denied", "error"];

/// Parses a UTC date (`YYYY-MM-DD`) or date-time (`YYYY-MM-DDTHH:MM[:SS]`) into Unix ms.
/// `end_of_day` moves a bare date to the start of the next day (an inclusive "to" date).
fn parse_time(text: &str, end_of_day: bool) -> Option<i64> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
        return Some(if end_of_day {
            start + 86_400_000
        } else {
            start
        });
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|t| t.and_utc().timestamp_millis())
}

/// Checks the filters (field-level messages) and turns them into a query.
pub fn parse_filter(filter: &AuditFilter) -> Result<AuditQuery, AppError> {
    let mut fields = Vec::new();
    let mut problem = |field: &str, message: &str| {
        fields.push(FieldError {
            field: field.into(),
            message: message.into(),
        })
    };
    let optional = |text: &str| {
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    };
    let mut query = AuditQuery::default();
    for (field, text) in [("from", &filter.from), ("to", &filter.to)] {
        if text.trim().is_empty() {
            continue;
        }
        match parse_time(text, field == "to") {
            Some(ms) if field == "from" => query.from_ms = Some(ms),
            Some(ms) => query.to_ms = Some(ms),
            None => problem(
                field,
                "Use a date like 2026-11-22, or a date and time like 2026-11-22T14:30 (UTC).",
            ),
        }
    }
    if let (Some(from), Some(to)) = (query.from_ms, query.to_ms)
        && from >= to
    {
        problem("to", "“To” must be after “From”.");
    }
    for (field, text) in [
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("object", &filter.object),
        ("q", &filter.q),
    ] {
        if text.chars().count() > 200 {
            problem(field, "Use at most 200 characters.");
        }
    }
    query.actor = optional(&filter.actor);
    query.action = optional(&filter.action);
    if let Some(action) = &query.action
        && !action
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    {
        problem(
            "action",
            "Actions look like link.create or auth. (letters, digits, dots and underscores).",
        );
    }
    if let Some(object) = optional(&filter.object) {
        match object.split_once(':') {
            Some((kind, id)) => {
                query.object_type = Some(kind.trim().to_string());
                query.object_id = Some(id.trim().to_string());
            }
            None => query.object_type = Some(object),
        }
    }
    if let Some(outcome) = optional(&filter.outcome) {
        if OUTCOMES.contains(&outcome.as_str()) {
            query.outcome = Some(outcome);
        } else {
            problem("outcome", "Choose success, failure, denied or error.");
        }
    }
    query.text = optional(&filter.q);
    query.before_seq = filter.before.filter(|seq| *seq > 0);
    match AppError::from_fields(fields) {
        Some(error) => Err(error),
        None => Ok(query),
    }
}

/// A stored time for display, to the millisecond.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// The page's view of a row.
pub fn entry(row: &AuditRow) -> AuditEntry {
    let detail = serde_json::from_str::<serde_json::Value>(&row.detail)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| row.detail.clone());
    AuditEntry {
        seq: row.seq,
        time: format_ms(row.at_ms),
        actor_id: row.actor_id,
        actor_email: row.actor_email.clone(),
        actor_role: row.actor_role.clone(),
        ip: row.ip.clone(),
        request_id: row.request_id.clone(),
        action: row.action.clone(),
        object_type: row.object_type.clone(),
        object_id: row.object_id.clone(),
        outcome: row.outcome.clone(),
        reason: row.reason.clone(),
        detail,
        prev_mac: row.prev_mac.clone(),
        mac: row.mac.clone(),
    }
}

/// The filters that are set, as typed (not URL-encoded), for an audit row: the row is
/// scrubbed on the text a person reads, so a number searched for is masked however it was
/// written; an address searched for is masked too.
pub fn recorded_filter(filter: &AuditFilter) -> serde_json::Map<String, serde_json::Value> {
    [
        ("from", &filter.from),
        ("to", &filter.to),
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("object", &filter.object),
        ("outcome", &filter.outcome),
        ("q", &filter.q),
    ]
    .into_iter()
    .filter(|(_, value)| !value.trim().is_empty())
    .map(|(name, value)| {
        let value = if name == "q" {
            super::mask_contacts(value.trim())
        } else {
            value.trim().to_string()
        };
        (name.to_string(), serde_json::json!(value))
    })
    .collect()
}

/// One page of rows matching `filter`; opening it is itself recorded.
pub async fn page(
    state: &AppState,
    meta: &RequestMeta,
    actor: Actor,
    filter: &AuditFilter,
) -> Result<AuditPage, AppError> {
    let query = parse_filter(filter)?;
    // Reading the log is recorded first: no read without its row.
    state
        .audit
        .try_record(
            &state.db,
            meta,
            &AuditEvent::new(actor, "audit.view", Outcome::Success).detail(
                serde_json::json!({ "filter": recorded_filter(filter), "before": filter.before }),
            ),
        )
        .await?;
    let mut rows = repo::search(&state.db.pool, &query, PAGE_SIZE + 1).await?;
    let next_before = if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(AuditPage {
        entries: rows.iter().map(entry).collect(),
        next_before,
    })
}

/// The CSV header line (with each row's key epoch, so an archive can be verified on its own).
pub const CSV_HEADER: [&str; 16] = [
    "seq",
    "time_utc",
    "actor_id",
    "actor_email",
    "actor_role",
    "ip",
    "request_id",
    "action",
    "object_type",
    "object_id",
    "outcome",
    "reason",
    "detail",
    "prev_mac",
    "mac",
    "key_epoch",
];

/// One CSV line of a row.
pub fn csv_line(row: &AuditRow) -> String {
    csv::line([
        row.seq.to_string(),
        format_ms(row.at_ms),
        row.actor_id.map(|id| id.to_string()).unwrap_or_default(),
        row.actor_email.clone(),
        row.actor_role.clone(),
        row.ip.clone(),
        row.request_id.clone(),
        row.action.clone(),
        row.object_type.clone(),
        row.object_id.clone(),
        row.outcome.clone(),
        row.reason.clone(),
        row.detail.clone(),
        row.prev_mac.clone(),
        row.mac.clone(),
        row.key_epoch.to_string(),
    ])
}

/// The export's last line: the chain head when the export was made, so the file can later
/// be checked against the database (`verify-audit`, or the row with that seq and MAC).
pub fn csv_trailer(head: Option<(i64, String)>) -> String {
    let (seq, mac) = head.unwrap_or((0, super::GENESIS_MAC.to_string()));
    csv::line([
        "# chain head".to_string(),
        format!("seq={seq}"),
        format!("mac={mac}"),
    ])
}
