//! The auditor's workspace: the audit log, filtered and paged, and chain verification.

use crate::types::{AppError, AuditFilter, AuditPage, AuditVerification};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {
    crate::server::audit::{AuditEvent, Outcome, view},
    crate::server::auth::guard,
    crate::server::web::respond,
};

/// One page of audit rows matching `filter`, newest first (auditors and admins). Opening
/// the log is itself recorded.
#[server(endpoint = "list_audit")]
pub async fn list_audit(filter: Option<AuditFilter>) -> Result<AuditPage, AppError> {
    respond(async move {
        let (caller, user) = guard::require("list_audit").await?;
        let filter = filter.unwrap_or_default();
        view::page(&caller.state, &caller.meta, user.actor(), &filter).await
    })
    .await
}

/// Walks the whole MAC chain (auditors and admins).
#[server(endpoint = "verify_audit")]
pub async fn verify_audit() -> Result<AuditVerification, AppError> {
    respond(async move {
        let (caller, user) = guard::require("verify_audit").await?;
        let state = &caller.state;
        let report = state.audit.verify(&state.db).await?;
        let outcome = if report.broken.is_none() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        state
            .audit
            .record(
                &state.db,
                &caller.meta,
                &AuditEvent::new(user.actor(), "audit.verify", outcome)
                    .reason(report.summary())
                    .detail(serde_json::json!({ "rows": report.rows })),
            )
            .await;
        Ok(AuditVerification {
            intact: report.broken.is_none(),
            rows: report.rows,
            broken_seq: report.broken.as_ref().map(|(seq, _)| *seq),
            summary: report.summary(),
        })
    })
    .await
}
