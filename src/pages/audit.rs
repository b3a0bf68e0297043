//! The auditor's workspace: the tamper-evident audit log with filters in the URL, keyset
//! pages, row details, CSV export and chain verification.

use super::{ErrorBanner, Guarded, page_resource, result_of};
use crate::api::audit::{VerifyAudit, list_audit};
use crate::types::{AppError, AuditEntry, AuditFilter};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// Actions offered in the action filter's suggestions (families end with a dot).
const KNOWN_ACTIONS: &[&str] = &[
    "auth.",
    "auth.sign_in",
    "auth.sign_out",
    "auth.session_timeout",
    "auth.password_change",
    "setup.first_admin",
    "user.",
    "user.create",
    "user.role_change",
    "user.disable",
    "user.enable",
    "user.password_reset",
    "credential.",
    "credential.create",
    "credential.update",
    "credential.rotate",
    "credential.test",
    "vault.master_key_rotate",
    "link.",
    "link.create",
    "link.send",
    "link.resend",
    "link.regenerate",
    "link.cancel",
    "link.status",
    "session.view",
    "session.export",
    "audit.",
    "audit.view",
    "audit.export",
    "audit.verify",
    "access.denied",
];

/// The audit log page (auditors and admins).
#[component]
pub fn AuditLogPage() -> impl IntoView {
    view! {
        <Title text="Audit log" />
        <Guarded path="/audit">
            <AuditWorkspace />
        </Guarded>
    }
}

fn filter_from_query(query: &leptos_router::params::ParamsMap) -> AuditFilter {
    let text = |name: &str| query.get(name).unwrap_or_default();
    AuditFilter {
        from: text("from"),
        to: text("to"),
        actor: text("actor"),
        action: text("action"),
        object: text("object"),
        outcome: text("outcome"),
        q: text("q"),
        before: query.get("before").and_then(|v| v.parse().ok()),
    }
}

#[component]
fn AuditWorkspace() -> impl IntoView {
    let query = use_query_map();
    let filter = Memo::new(move |_| filter_from_query(&query.get()));
    let rows = page_resource(move || filter.get(), |filter| list_audit(Some(filter)));
    let verify = ServerAction::<VerifyAudit>::new();
    let verify_value = result_of(verify);
    let export_href = move || {
        let query = filter.get().to_query();
        if query.is_empty() {
            "/audit/export.csv".to_string()
        } else {
            format!("/audit/export.csv?{query}")
        }
    };
    view! {
        <section class="panel">
            <h1>"Audit log"</h1>
            <p class="muted">
                "Every staff and system action, append-only and chained with an HMAC under audit keys sealed by the master key, and anchored by signed checkpoints outside the database: a changed, removed or reordered row, and rows deleted from the end, are found by verification. Times are UTC."
            </p>
            <div class="toolbar">
                <a class="button" href=export_href data-testid="audit-export" rel="external">
                    "Export CSV (filtered)"
                </a>
                <ActionForm action=verify>
                    <button type="submit" data-testid="audit-verify" disabled=move || verify.pending().get()>
                        {move || if verify.pending().get() { "Verifying…" } else { "Verify chain" }}
                    </button>
                </ActionForm>
            </div>
            {move || {
                verify_value
                    .get()
                    .map(|result| match result {
                        Ok(v) if v.intact => {
                            view! { <div class="banner ok" role="status" data-testid="audit-verify-result">{v.summary}</div> }.into_any()
                        }
                        Ok(v) => {
                            view! { <div class="banner error" role="alert" data-testid="audit-verify-result">{v.summary}</div> }.into_any()
                        }
                        Err(error) => {
                            view! { <div class="banner error" role="alert" data-testid="audit-verify-result">{error.to_string()}</div> }.into_any()
                        }
                    })
            }}
            // Everything that reads the rows is inside the Transition, so server rendering
            // waits for them (a read outside it can leave the response hanging).
            <Transition fallback=|| view! { <p class="muted">"Loading the audit log…"</p> }>
                {move || Suspend::new(async move {
                    let result = rows.await;
                    let current = filter.get_untracked();
                    let error = result.as_ref().err().cloned();
                    let field = |name: &str| {
                        Signal::stored(error.as_ref().and_then(|e| e.field_message(name)))
                    };
                    let banner = match &error {
                        Some(AppError::Validation { .. }) | None => None,
                        Some(other) => Some(other.to_string()),
                    };
                    let action_error = error.as_ref().and_then(|e| e.field_message("action"));
                    let action_invalid = action_error.is_some();
                    let outcome_error = error.as_ref().and_then(|e| e.field_message("outcome"));
                    let outcome_invalid = outcome_error.is_some();
                    let listing = result.ok().map(|page| {
                        let query = current.to_query();
                        let sep = if query.is_empty() { "" } else { "&" };
                        let next = page
                            .next_before
                            .map(|before| format!("/audit?{query}{sep}before={before}"));
                        let newest = current.before.map(|_| format!("/audit?{query}"));
                        let empty = page.entries.is_empty();
                        view! {
                            <p class="muted" data-testid="audit-count">
                                {if empty {
                                    "No audit rows match these filters.".to_string()
                                } else {
                                    format!("Showing {} rows, newest first.", page.entries.len())
                                }}
                            </p>
                            <div class="audit-rows" data-testid="audit-rows">
                                {page.entries.into_iter().map(|entry| view! { <AuditRowView entry /> }).collect_view()}
                            </div>
                            <nav class="pager">
                                {newest.map(|href| view! { <a href=href data-testid="audit-newest">"← Newest"</a> })}
                                {next.map(|href| view! { <a href=href data-testid="audit-older">"Older entries →"</a> })}
                            </nav>
                        }
                    });
                    view! {
                        <form method="get" action="/audit" class="filters" data-testid="audit-filters">
                            <FilterField label="From (UTC)" name="from" value=current.from.clone() placeholder="2026-11-22 or 2026-11-22T09:00" error=field("from") />
                            <FilterField label="To (UTC)" name="to" value=current.to.clone() placeholder="2026-11-22" error=field("to") />
                            <FilterField label="Actor" name="actor" value=current.actor.clone() placeholder="email, or system / cli / anonymous" error=field("actor") />
                            <div class="field" class:invalid=action_invalid>
                                <label for="af-action">"Action"</label>
                                <input id="af-action" name="action" list="af-actions" value=current.action.clone() placeholder="link.create or auth." aria-describedby="af-action-error" />
                                <datalist id="af-actions">
                                    {KNOWN_ACTIONS.iter().map(|a| view! { <option value=*a></option> }).collect_view()}
                                </datalist>
                                {action_error.map(|m| view! { <p class="field-error" id="af-action-error">{m}</p> })}
                            </div>
                            <FilterField label="Object" name="object" value=current.object.clone() placeholder="user, or user:7" error=field("object") />
                            <div class="field" class:invalid=outcome_invalid>
                                <label for="af-outcome">"Outcome"</label>
                                <select id="af-outcome" name="outcome">
                                    {["", "success", "failure", "denied", "error"]
                                        .into_iter()
                                        .map(|o| {
                                            let selected = current.outcome == o;
                                            view! {
                                                <option value=o selected=selected>
                                                    {if o.is_empty() { "Any" } else { o }}
                                                </option>
                                            }
                                        })
                                        .collect_view()}
                                </select>
                                {outcome_error.map(|m| view! { <p class="field-error">{m}</p> })}
                            </div>
                            <FilterField label="Search reason and detail" name="q" value=current.q.clone() placeholder="words" error=field("q") />
                            <div class="filter-actions">
                                <button type="submit" class="primary" data-testid="audit-apply">"Apply filters"</button>
                                <a href="/audit" class="button">"Clear"</a>
                            </div>
                        </form>
                        <ErrorBanner message=Signal::stored(banner) />
                        {listing}
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn FilterField(
    label: &'static str,
    name: &'static str,
    value: String,
    placeholder: &'static str,
    error: Signal<Option<String>>,
) -> impl IntoView {
    let id = format!("af-{name}");
    let error_id = format!("{id}-error");
    view! {
        <div class="field" class:invalid=move || error.get().is_some()>
            <label for=id.clone()>{label}</label>
            <input id=id name=name value=value placeholder=placeholder maxlength="200" aria-describedby=error_id.clone() />
            {move || error.get().map(|m| view! { <p class="field-error" id=error_id.clone()>{m}</p> })}
        </div>
    }
}

#[component]
fn AuditRowView(entry: AuditEntry) -> impl IntoView {
    let actor = if entry.actor_email.is_empty() {
        entry.actor_role.clone()
    } else {
        format!("{} ({})", entry.actor_email, entry.actor_role)
    };
    let object = if entry.object_type.is_empty() {
        "—".to_string()
    } else {
        format!("{}:{}", entry.object_type, entry.object_id)
    };
    let outcome_class = format!("badge outcome-{}", entry.outcome);
    let data_action = entry.action.clone();
    view! {
        <details class="audit-row" data-testid="audit-row" data-seq=entry.seq data-action=data_action>
            <summary>
                <span class="seq">"#" {entry.seq}</span>
                <span class="time">{entry.time.clone()}</span>
                <span class="actor">{actor}</span>
                <span class="action"><code>{entry.action.clone()}</code></span>
                <span class="object">{object}</span>
                <span class=outcome_class>{entry.outcome.clone()}</span>
                <span class="reason">{entry.reason.clone()}</span>
            </summary>
            <dl class="audit-detail" data-testid="audit-detail">
                <dt>"Sequence"</dt><dd>{entry.seq}</dd>
                <dt>"Time"</dt><dd>{entry.time}</dd>
                <dt>"Actor"</dt>
                <dd>
                    {entry.actor_email.clone()} " " <span class="muted">{entry.actor_role}</span>
                    {entry.actor_id.map(|id| format!(" (user {id})"))}
                </dd>
                <dt>"Client address"</dt><dd>{if entry.ip.is_empty() { "—".to_string() } else { entry.ip }}</dd>
                <dt>"Request id"</dt><dd><code>{entry.request_id}</code></dd>
                <dt>"Action"</dt><dd><code>{entry.action}</code></dd>
                <dt>"Object"</dt><dd>{entry.object_type} " " {entry.object_id}</dd>
                <dt>"Outcome"</dt><dd>{entry.outcome}</dd>
                <dt>"Reason"</dt><dd>{if entry.reason.is_empty() { "—".to_string() } else { entry.reason }}</dd>
                <dt>"Detail"</dt><dd><pre>{entry.detail}</pre></dd>
                <dt>"Previous MAC"</dt><dd><code class="mac">{entry.prev_mac}</code></dd>
                <dt>"MAC"</dt><dd><code class="mac">{entry.mac}</code></dd>
            </dl>
        </details>
    }
}
