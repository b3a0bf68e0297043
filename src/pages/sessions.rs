//! The sessions list (filters in the URL, keyset pages, CSV export) and one session's page
//! (everything about it, its timeline and deliveries, and the staff actions).

use super::links::{HandOver, channel_label};
use super::{Guarded, StatusBadge, may_act, new_idempotency_key, page_resource, split_when};
use crate::api::links::{
    CancelLink, RecordOutcome, RegenerateLink, SetLinkReminders, cancel_link, get_session_detail,
    list_sessions, record_outcome, regenerate_link, set_link_reminders,
};
use crate::provider::Provider;
use crate::types::{
    AppError, CurrentUser, KycStatus, SessionDetail, SessionFilter, SessionSummary, field_error,
};
use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

/// The sessions list (everyone; auditors read only).
#[component]
pub fn SessionsPage() -> impl IntoView {
    view! {
        <Title text="Sessions" />
        <Guarded path="/sessions">
            <SessionsList />
        </Guarded>
    }
}

fn filter_from_query(query: &leptos_router::params::ParamsMap) -> SessionFilter {
    let text = |name: &str| query.get(name).unwrap_or_default();
    SessionFilter {
        status: text("status"),
        provider: text("provider"),
        flow: text("flow"),
        staff: text("staff"),
        from: text("from"),
        to: text("to"),
        q: text("q"),
        before: query.get("before").and_then(|v| v.parse().ok()),
    }
}

/// `path?query`, or `path` alone when the query is empty.
fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

#[component]
fn SessionsList() -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let may_export_contacts = crate::access::CONTACTS_EXPORT.admits(me.role);
    let query = use_query_map();
    let filter = Memo::new(move |_| filter_from_query(&query.get()));
    let page = page_resource(move || filter.get(), |filter| list_sessions(Some(filter)));
    // A session that moves (or appears) shows without a reload.
    super::live::on_session_moves(move |_| page.refetch());
    view! {
        <section class="panel">
            <h1>"Sessions"</h1>
            <p class="muted">"Every KYC link and where it stands, newest first. Times are UTC."</p>
            <Transition fallback=|| view! { <p class="muted">"Loading sessions…"</p> }>
                {move || Suspend::new(async move {
                    let result = page.await;
                    let current = filter.get_untracked();
                    let error = result.as_ref().err().cloned();
                    let staff = result.as_ref().map(|p| p.staff.clone()).unwrap_or_default();
                    let query = current.to_query();
                    let export = with_query("/sessions/export.csv", &query);
                    let export_contacts = format!(
                        "/sessions/export.csv?{query}{}contacts=1",
                        if query.is_empty() { "" } else { "&" }
                    );
                    let body = match result {
                        Ok(page) => {
                            let next = page.next_before.map(|before| {
                                format!("/sessions?{query}{}before={before}", if query.is_empty() { "" } else { "&" })
                            });
                            let newest = current.before.map(|_| with_query("/sessions", &query));
                            view! {
                                <SessionsTable sessions=page.sessions />
                                <nav class="pager" aria-label="Pages">
                                    {newest.map(|href| view! { <a href=href data-testid="sessions-newest">"← Newest"</a> })}
                                    {next.map(|href| view! { <a href=href data-testid="sessions-older">"Older →"</a> })}
                                </nav>
                            }
                            .into_any()
                        }
                        Err(AppError::Validation { message, .. }) => view! {
                            <div class="banner error" role="alert" data-testid="form-error">{message}</div>
                        }
                        .into_any(),
                        Err(error) => view! {
                            <div class="banner error" role="alert" data-testid="form-error">{error.to_string()}</div>
                        }
                        .into_any(),
                    };
                    view! {
                        <SessionFilters current=current error=error staff=staff />
                        <div class="toolbar">
                            <a class="button" href=export rel="external" data-testid="sessions-export">
                                "Export CSV"
                            </a>
                            {may_export_contacts.then(|| view! {
                                <a class="button" href=export_contacts rel="external" data-testid="sessions-export-contacts">
                                    "Export with contact details"
                                </a>
                            })}
                        </div>
                        {body}
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn SessionFilters(
    current: SessionFilter,
    error: Option<AppError>,
    staff: Vec<String>,
) -> impl IntoView {
    let error = StoredValue::new(error);
    let message = move |name: &str| {
        error.with_value(|e| field_error(&e.clone().map(Err::<(), AppError>), name))
    };
    let statuses = std::iter::once(("", "Any status"))
        .chain(KycStatus::ALL.iter().map(|s| (s.as_str(), s.label())))
        .map(|(value, label)| (value.to_string(), label.to_string()))
        .collect::<Vec<_>>();
    let providers = std::iter::once(("", "Any provider"))
        .chain(Provider::ALL.iter().map(|p| (p.as_str(), p.label())))
        .map(|(value, label)| (value.to_string(), label.to_string()))
        .collect::<Vec<_>>();
    let flows = [
        ("", "Any flow"),
        ("basic", "Basic"),
        ("premium", "Premium"),
        ("digilocker", "DigiLocker"),
    ]
    .map(|(v, l)| (v.to_string(), l.to_string()))
    .to_vec();
    let mut staff_options = vec![(String::new(), "Anyone".to_string())];
    let chosen_staff = current.staff.trim().to_lowercase();
    if !chosen_staff.is_empty() && !staff.contains(&chosen_staff) {
        staff_options.push((chosen_staff.clone(), chosen_staff.clone()));
    }
    staff_options.extend(staff.into_iter().map(|s| (s.clone(), s)));
    view! {
        <form method="get" action="/sessions" class="filters" data-testid="sessions-filters">
            <SelectFilter label="Status" name="status" options=statuses value=current.status.clone() error=message("status") />
            <SelectFilter label="Provider" name="provider" options=providers value=current.provider.clone() error=message("provider") />
            <SelectFilter label="Flow" name="flow" options=flows value=current.flow.clone() error=message("flow") />
            <SelectFilter label="Created by" name="staff" options=staff_options value=chosen_staff error=message("staff") />
            <InputFilter label="Created from (UTC)" name="from" kind="date" value=current.from.clone() placeholder="2026-11-22" error=message("from") />
            <InputFilter label="Created to (UTC)" name="to" kind="date" value=current.to.clone() placeholder="2026-11-22" error=message("to") />
            <InputFilter label="Search" name="q" kind="search" value=current.q.clone() placeholder="name, phone, email, reference" error=message("q") />
            <div class="filter-actions">
                <button type="submit" class="primary" data-testid="sessions-apply">"Apply filters"</button>
                <a href="/sessions" class="button">"Clear"</a>
            </div>
        </form>
    }
}

#[component]
fn SelectFilter(
    label: &'static str,
    name: &'static str,
    options: Vec<(String, String)>,
    value: String,
    error: Option<String>,
) -> impl IntoView {
    let id = format!("sf-{name}");
    let error_id = format!("{id}-error");
    let invalid = error.is_some();
    view! {
        <div class="field" class:invalid=invalid>
            <label for=id.clone()>{label}</label>
            <select id=id name=name aria-describedby=error_id.clone() aria-invalid=if invalid { "true" } else { "false" }>
                {options
                    .into_iter()
                    .map(|(v, l)| {
                        let selected = v == value;
                        view! { <option value=v selected=selected>{l}</option> }
                    })
                    .collect_view()}
            </select>
            {error.map(|m| view! { <p class="field-error" id=error_id>{m}</p> })}
        </div>
    }
}

#[component]
fn InputFilter(
    label: &'static str,
    name: &'static str,
    kind: &'static str,
    value: String,
    placeholder: &'static str,
    error: Option<String>,
) -> impl IntoView {
    let id = format!("sf-{name}");
    let error_id = format!("{id}-error");
    let invalid = error.is_some();
    view! {
        <div class="field" class:invalid=invalid>
            <label for=id.clone()>{label}</label>
            <input
                id=id
                name=name
                type=kind
                value=value
                placeholder=placeholder
                maxlength="100"
                aria-describedby=error_id.clone()
                aria-invalid=if invalid { "true" } else { "false" }
            />
            {error.map(|m| view! { <p class="field-error" id=error_id>{m}</p> })}
        </div>
    }
}

#[component]
fn SessionsTable(sessions: Vec<SessionSummary>) -> impl IntoView {
    if sessions.is_empty() {
        return view! {
            <p class="muted" data-testid="sessions-empty">"No sessions match these filters."</p>
        }
        .into_any();
    }
    let count = sessions.len();
    let rows = sessions
        .into_iter()
        .map(|s| {
            view! {
                <tr data-testid="session-row" data-status=s.status.as_str()>
                    <td data-label="Customer">
                        <a href=format!("/sessions/{}", s.public_id)>{s.customer_name.clone()}</a>
                    </td>
                    <td data-label="Mobile" class="nowrap">{s.phone_masked.clone()}</td>
                    <td data-label="Provider">
                        <span>
                            {s.provider_label.clone()}
                            {s.sandbox.then(|| view! { " " <span class="tag sandbox">"sandbox"</span> })}
                        </span>
                    </td>
                    <td data-label="Status">
                        <StatusBadge status=s.status />
                        {s.provider_alert.clone().map(|text| view! {
                            " " <span class="tag" data-testid="session-provider-alert">{text}</span>
                        })}
                    </td>
                    <td data-label="Created by">{s.created_by.clone()}</td>
                    <td data-label="Created" class="nowrap">{s.created_at.clone()}</td>
                    <td data-label=split_when(&s.expires_or_ended).0 class="nowrap">
                        {s.expires_or_ended.clone()}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="muted" data-testid="sessions-count">{format!("Showing {count} sessions.")}</p>
        <div class="table-wrap">
            <table class="data sessions" data-testid="sessions-table">
                <thead>
                    <tr>
                        <th scope="col">"Customer"</th>
                        <th scope="col">"Mobile"</th>
                        <th scope="col">"Provider and flow"</th>
                        <th scope="col">"Status"</th>
                        <th scope="col">"Created by"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Expires / ended"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

/// One session's page (everyone; actions for operators and admins only).
#[component]
pub fn SessionDetailPage() -> impl IntoView {
    view! {
        <Title text="Session" />
        <Guarded path="/sessions">
            <SessionDetailLoader />
        </Guarded>
    }
}

#[component]
fn SessionDetailLoader() -> impl IntoView {
    let params = use_params_map();
    let public_id = Memo::new(move |_| params.with(|p| p.get("public_id").unwrap_or_default()));
    let detail = page_resource(move || public_id.get(), get_session_detail);
    view! {
        <p class="breadcrumb"><a href="/sessions">"← All sessions"</a></p>
        <Suspense fallback=|| view! { <p class="loading">"Loading the session…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! { <SessionView initial=detail /> }.into_any(),
                    Err(error) => view! {
                        <section class="panel">
                            <h1>"Session"</h1>
                            <div class="banner error" role="alert" data-testid="form-error">{error.to_string()}</div>
                        </section>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SessionView(initial: SessionDetail) -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let acts = may_act(me.role);
    let detail = RwSignal::new(initial);
    let status = Memo::new(move |_| detail.with(|d| d.summary.status));
    let notice = RwSignal::new(None::<String>);
    // The customer opening, consenting, starting, coming back… shows without a reload.
    let public_id = detail.with_untracked(|d| d.summary.public_id.clone());
    super::live::on_session_moves(move |moved| {
        if moved.is_empty() || moved.contains(&public_id) {
            let public_id = public_id.clone();
            leptos::task::spawn_local(async move {
                if let Ok(fresh) = get_session_detail(public_id).await {
                    detail.set(fresh);
                }
            });
        }
    });
    let moves = SessionMoves::new(detail.with_untracked(|d| d.summary.public_id.clone()));
    let navigate = use_navigate();
    Effect::new(move |_| {
        let Some((kind, Ok(changed))) = moves.action.value().get() else {
            return;
        };
        match kind {
            MoveKind::Regenerate => navigate(
                &format!("/sessions/{}", changed.summary.public_id),
                Default::default(),
            ),
            MoveKind::Cancel => {
                detail.set(changed);
                notice.set(Some(
                    "The link was cancelled; the customer can no longer use it.".into(),
                ));
            }
            MoveKind::RecordOutcome => {
                let outcome = changed.summary.status.label().to_lowercase();
                detail.set(changed);
                notice.set(Some(format!("The outcome was recorded: {outcome}.")));
            }
            MoveKind::Reminders => detail.set(changed),
        }
    });
    view! {
        <Title text=detail.with_untracked(|d| format!("Session of {}", d.summary.customer_name)) />
        <section class="panel session" data-testid="session-detail">
            <div class="result-head">
                <h1>{detail.with_untracked(|d| d.summary.customer_name.clone())}</h1>
                {move || view! { <StatusBadge status=status.get() /> }}
            </div>
            {move || notice.get().map(|text| view! {
                <p class="banner success" role="status" data-testid="session-notice">{text}</p>
            })}
            {move || detail.with(|d| d.last_error.clone()).map(|text| view! {
                <p class="banner error" data-testid="session-error">{text}</p>
            })}
            {move || detail.with(|d| d.summary.provider_alert.clone()).map(|text| view! {
                <p class="banner error" data-testid="session-provider-alert">{text}</p>
            })}
            {move || {
                let d = detail.get();
                view! { <ReturnClaimView detail=d /> }
            }}
            {move || {
                let d = detail.get();
                view! { <SessionFacts detail=d /> }
            }}
        </section>
        {move || (acts && detail.with(|d| d.outcome_recordable)).then(|| view! {
            <RecordOutcomeForm moves=moves />
        })}
        {acts.then(|| view! { <SessionActions detail=detail status=status moves=moves /> })}
        {move || {
            let d = detail.get();
            view! { <SessionRecords detail=d /> }
        }}
    }
}

/// What the customer's browser reported on coming back (a claim, shown as one) and the
/// outcome a staff member recorded, with who and when: everyone who reads the session,
/// auditors included, sees both.
#[component]
fn ReturnClaimView(detail: SessionDetail) -> impl IntoView {
    let claim = detail.return_claim.map(|claim| {
        let reported = match claim.reported {
            Some(reported) => format!("Customer's browser reported: {reported} — not confirmed"),
            None => "Customer's browser came back without a status — not confirmed".into(),
        };
        let times = if claim.count == 1 {
            format!("Came back once, at {}.", claim.last_at)
        } else {
            format!(
                "Came back {} times, last at {}.",
                claim.count, claim.last_at
            )
        };
        view! {
            <div class="banner claim" data-testid="return-claim">
                <strong>{reported}</strong>
                " "
                <span class="muted">{times}</span>
            </div>
        }
    });
    let recorded = detail.recorded_outcome.map(|recorded| {
        view! {
            <div class="banner info" data-testid="recorded-outcome">
                <strong>{format!("Outcome recorded: {}", recorded.outcome.label().to_lowercase())}</strong>
                {format!(" by {} at {}, after checking the provider's console.", recorded.by, recorded.at)}
                <p class="note">{format!("Note: {}", recorded.note)}</p>
            </div>
        }
    });
    view! { {claim} {recorded} }
}

/// The form that records a Message Central outcome by hand (operators and admins, while the
/// session is open after its customer came back): the outcome and a required note, each
/// with its error under the field.
#[component]
fn RecordOutcomeForm(moves: SessionMoves) -> impl IntoView {
    let value = moves.result_of(&[MoveKind::RecordOutcome]);
    let outcome_error = Signal::derive(move || field_error(&value.get(), "outcome"));
    let note_error = Signal::derive(move || field_error(&value.get(), "note"));
    let form_error = Signal::derive(move || match value.get() {
        Some(Err(AppError::Validation { .. })) | None | Some(Ok(_)) => None,
        Some(Err(error)) => Some(error.to_string()),
    });
    let choice = NodeRef::<leptos::html::Select>::new();
    let note = NodeRef::<leptos::html::Textarea>::new();
    let pending = moves.pending(MoveKind::RecordOutcome);
    let max = crate::types::MAX_OUTCOME_NOTE_CHARS;
    view! {
        <section class="panel" data-testid="record-outcome">
            <h2>"Record the outcome"</h2>
            <p class="muted">
                "Message Central reports no result to KYC Desk. Check the verification in Message Central's console, then record what it shows."
            </p>
            {move || form_error.get().map(|text| view! {
                <div class="banner error" role="alert" data-testid="record-outcome-error">{text}</div>
            })}
            <form
                method="post"
                action=RecordOutcome::url()
                novalidate=true
                data-testid="record-outcome-form"
                on:submit=move |ev| {
                    ev.prevent_default();
                    let outcome = choice.get_untracked().map(|e| e.value()).unwrap_or_default();
                    let note = note.get_untracked().map(|e| e.value()).unwrap_or_default();
                    moves.dispatch(SessionMove::RecordOutcome { outcome, note });
                }
            >
                <input type="hidden" name="public_id" value=moves.public_id() />
                <div class="field" class:invalid=move || outcome_error.get().is_some()>
                    <label for="ro-outcome">"Outcome in Message Central's console"</label>
                    <select
                        id="ro-outcome"
                        name="outcome"
                        node_ref=choice
                        data-testid="record-outcome-choice"
                        aria-describedby="ro-outcome-error"
                        aria-invalid=move || if outcome_error.get().is_some() { "true" } else { "false" }
                    >
                        <option value="">"Choose…"</option>
                        <option value="completed">"Completed (verified)"</option>
                        <option value="failed">"Failed (not verified)"</option>
                    </select>
                    {move || outcome_error.get().map(|m| view! { <p class="field-error" id="ro-outcome-error">{m}</p> })}
                </div>
                <div class="field" class:invalid=move || note_error.get().is_some()>
                    <label for="ro-note">"Note"</label>
                    <p class="hint" id="ro-note-hint">
                        {format!("What you checked, for example the console's reference (at most {max} characters).")}
                    </p>
                    <textarea
                        id="ro-note"
                        name="note"
                        node_ref=note
                        rows="3"
                        maxlength=max.to_string()
                        data-testid="record-outcome-note"
                        aria-describedby="ro-note-hint ro-note-error"
                        aria-invalid=move || if note_error.get().is_some() { "true" } else { "false" }
                    ></textarea>
                    {move || note_error.get().map(|m| view! { <p class="field-error" id="ro-note-error">{m}</p> })}
                </div>
                <button type="submit" class="primary" data-testid="record-outcome-submit" disabled=move || pending.get()>
                    {move || if pending.get() { "Recording…" } else { "Record outcome" }}
                </button>
            </form>
        </section>
    }
}

#[component]
fn SessionFacts(detail: SessionDetail) -> impl IntoView {
    let s = &detail.summary;
    let (when_label, when) = split_when(&s.expires_or_ended);
    let or_dash = |v: Option<String>| {
        v.filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| "—".into())
    };
    let link = |id: &str, testid: &'static str| {
        let href = format!("/sessions/{id}");
        view! { <a href=href data-testid=testid>{id.to_string()}</a> }
    };
    view! {
        <dl class="facts" data-testid="session-facts">
            <dt>"Session id"</dt>
            <dd><code>{s.public_id.clone()}</code></dd>
            <dt>"Provider and flow"</dt>
            <dd>
                {s.provider_label.clone()}
                {s.sandbox.then(|| view! { " " <span class="tag sandbox">"sandbox"</span> })}
            </dd>
            <dt>"Mobile"</dt>
            <dd>{s.phone_masked.clone()}</dd>
            <dt>"Email"</dt>
            <dd>{or_dash(detail.email_masked.clone())}</dd>
            <dt>"Internal reference"</dt>
            <dd>{or_dash(detail.internal_ref.clone())}</dd>
            {(!detail.documents.is_empty()).then(|| view! {
                <dt>"Documents requested"</dt>
                <dd>{detail.documents.join(", ")}</dd>
            })}
            <dt>"Created by"</dt>
            <dd>{s.created_by.clone()}</dd>
            <dt>"Created"</dt>
            <dd>{s.created_at.clone()}</dd>
            <dt>{when_label}</dt>
            <dd>{when}</dd>
            <dt>"Consent"</dt>
            <dd>{or_dash(Some(detail.consent_note.clone()))}</dd>
            {detail.customer_link.clone().map(|c| {
                let consent = match &c.consent {
                    Some(given) => format!(
                        "Given on the link's page {} (privacy notice version {}, {}; client {}…, browser {}…)",
                        given.at,
                        given.notice_version,
                        if given.language == "hi" { "Hindi" } else { "English" },
                        given.client_hash,
                        given.agent_hash
                    ),
                    None => "Not yet given on the link's page".into(),
                };
                view! {
                    <dt>"Customer's consent"</dt>
                    <dd data-testid="customer-consent">{consent}</dd>
                    <dt>"Customer link"</dt>
                    <dd data-testid="customer-link-facts">
                        {format!(
                            "Valid until {}; provider URLs made {} of {}{}{}; {}",
                            c.expires_at,
                            c.mints_used,
                            c.mint_limit,
                            c.opened_at.map(|at| format!("; first opened {at}")).unwrap_or_default(),
                            if c.code_required { "; asks a one-time code" } else { "" },
                            match (c.reminders_on, &c.next_reminder) {
                                (false, _) => "reminders off".to_string(),
                                (true, Some(at)) => format!("{} reminder(s) sent, next {at}", c.reminders_sent),
                                (true, None) => format!("{} reminder(s) sent", c.reminders_sent),
                            }
                        )}
                    </dd>
                }
            })}
            {detail.supersedes.clone().map(|id| view! {
                <dt>"Replaces"</dt>
                <dd>{link(&id, "supersedes-link")}</dd>
            })}
            {detail.superseded_by.clone().map(|id| view! {
                <dt>"Replaced by"</dt>
                <dd>{link(&id, "superseded-by-link")}</dd>
            })}
            {detail.provider_ids.iter().map(|(name, value)| view! {
                <dt>{name.clone()}</dt>
                <dd><code data-testid="provider-id">{value.clone()}</code></dd>
            }).collect_view()}
        </dl>
    }
}

#[component]
fn SessionRecords(detail: SessionDetail) -> impl IntoView {
    let result = if detail.result.is_empty() {
        view! {
            <p class="muted" data-testid="session-no-result">
                {if detail.summary.status == KycStatus::Completed {
                    "The provider reported completion without result fields."
                } else {
                    "No verification result yet."
                }}
            </p>
        }
        .into_any()
    } else {
        let partial = detail.result_partial.then(|| {
            view! {
                <p class="muted" data-testid="session-result-partial">
                    "Partial result: what the provider's status call reported. The document could not be fetched yet."
                </p>
            }
        });
        view! {
            {partial}
            <div class="table-wrap">
                <table class="data result" data-testid="session-result">
                    <tbody>
                        {detail.result.into_iter().map(|(name, value)| view! {
                            <tr><th scope="row">{name}</th><td>{value}</td></tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
        .into_any()
    };
    let deliveries = if detail.deliveries.is_empty() {
        view! { <p class="muted" data-testid="deliveries-empty">"The link was not sent by KYC Desk yet."</p> }.into_any()
    } else {
        view! {
            <div class="table-wrap">
                <table class="data" data-testid="deliveries-table">
                    <thead>
                        <tr>
                            <th scope="col">"When"</th>
                            <th scope="col">"Channel"</th>
                            <th scope="col">"To"</th>
                            <th scope="col">"Outcome"</th>
                            <th scope="col">"By"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {detail.deliveries.into_iter().map(|d| view! {
                            <tr data-testid="delivery-row">
                                <td class="nowrap">{d.at}</td>
                                <td>{channel_label(&d.channel)}</td>
                                <td>{d.destination}</td>
                                <td>
                                    <span class=format!("badge delivery-{}", d.outcome)>{d.outcome.clone()}</span>
                                    {d.error.map(|e| view! { <span class="delivery-error">" " {e}</span> })}
                                </td>
                                <td>{d.by}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        }
        .into_any()
    };
    view! {
        <section class="panel">
            <h2>"Result"</h2>
            <p class="muted">"Personal data is masked; KYC Desk keeps only what is shown here."</p>
            {result}
        </section>
        <section class="panel">
            <h2>"Timeline"</h2>
            <ol class="timeline" data-testid="timeline">
                {detail.timeline.into_iter().map(|e| {
                    let kind = e.kind.clone();
                    view! {
                    <li data-testid="timeline-event" data-kind=kind>
                        <time class="when">{e.at}</time>
                        <span class="kind">{e.kind}</span>
                        <span class="actor">{e.actor}</span>
                        <span class="detail">{e.detail}</span>
                    </li>
                }}).collect_view()}
            </ol>
        </section>
        <section class="panel">
            <h2>"Deliveries"</h2>
            {deliveries}
        </section>
    }
}

/// Which staff move on a session a result belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MoveKind {
    Cancel,
    Regenerate,
    Reminders,
    RecordOutcome,
}

/// One staff move on a session. Each goes to its own server function, with its own row in
/// the access table; the page carries them all in one action, so the browser bundle holds one
/// action and no form decoder instead of four of each (issue 12: a session's page was the one
/// page over 400 KB on a first visit).
#[derive(Clone)]
enum SessionMove {
    Cancel,
    Regenerate { idempotency_key: String },
    Reminders { on: bool },
    RecordOutcome { outcome: String, note: String },
}

impl SessionMove {
    /// Which move this is, without its fields.
    fn kind(&self) -> MoveKind {
        match self {
            Self::Cancel => MoveKind::Cancel,
            Self::Regenerate { .. } => MoveKind::Regenerate,
            Self::Reminders { .. } => MoveKind::Reminders,
            Self::RecordOutcome { .. } => MoveKind::RecordOutcome,
        }
    }
}

/// What a move came back with, and which move it was: moves may overlap (a cancel confirmed
/// while reminders are being switched), so a result names its own move rather than the one
/// pressed last.
type MoveOutcome = (MoveKind, Result<SessionDetail, AppError>);

/// The session page's one action for the staff moves.
#[derive(Clone, Copy)]
struct SessionMoves {
    /// Runs a move; its value is the latest move's outcome.
    action: Action<SessionMove, MoveOutcome>,
    /// The session the moves are made on.
    public_id: StoredValue<String>,
}

impl SessionMoves {
    /// The moves on the session `public_id`, showing the failure of a move posted before the
    /// page's script ran, if the address carries one.
    fn new(public_id: String) -> Self {
        let session = public_id.clone();
        let action = Action::new_with_value(
            failure_posted_without_script().map(|(kind, error)| (kind, Err(error))),
            move |requested: &SessionMove| {
                let public_id = session.clone();
                let requested = requested.clone();
                async move {
                    let kind = requested.kind();
                    let outcome = match requested {
                        SessionMove::Cancel => cancel_link(public_id).await,
                        SessionMove::Regenerate { idempotency_key } => {
                            regenerate_link(public_id, idempotency_key).await
                        }
                        SessionMove::Reminders { on } => set_link_reminders(public_id, on).await,
                        SessionMove::RecordOutcome { outcome, note } => {
                            record_outcome(public_id, outcome, note).await
                        }
                    };
                    (kind, outcome)
                }
            },
        );
        Self {
            action,
            public_id: StoredValue::new(public_id),
        }
    }

    /// Sends a move to its server function.
    fn dispatch(self, requested: SessionMove) {
        self.action.dispatch(requested);
    }

    /// The session's public id, for the forms' hidden fields.
    fn public_id(self) -> String {
        self.public_id.get_value()
    }

    /// The latest outcome, when it came from a move of one of these kinds.
    fn result_of(
        self,
        kinds: &'static [MoveKind],
    ) -> Signal<Option<Result<SessionDetail, AppError>>> {
        Signal::derive(move || {
            self.action
                .value()
                .get()
                .filter(|(kind, _)| kinds.contains(kind))
                .map(|(_, outcome)| outcome)
        })
    }

    /// Whether a move of this kind is the one under way (the latest sent, not yet answered).
    fn pending(self, kind: MoveKind) -> Signal<bool> {
        Signal::derive(move || {
            self.action
                .input()
                .with(|sent| sent.as_ref().map(SessionMove::kind) == Some(kind))
        })
    }
}

/// A move posted by a plain form (before the page's script ran) that failed comes back with
/// its error in the address, as Leptos does for its action forms: which move, and why.
fn failure_posted_without_script() -> Option<(MoveKind, AppError)> {
    let posted = use_context::<leptos::server::ServerActionError>()?;
    let kind = [
        (CancelLink::PATH, MoveKind::Cancel),
        (RegenerateLink::PATH, MoveKind::Regenerate),
        (SetLinkReminders::PATH, MoveKind::Reminders),
        (RecordOutcome::PATH, MoveKind::RecordOutcome),
    ]
    .into_iter()
    .find_map(|(path, kind)| (path == posted.path()).then_some(kind))?;
    let error = leptos::server_fn::error::ServerFnUrlError::<AppError>::decode_err(posted.err());
    Some((kind, error))
}

/// Copy, send, cancel and regenerate: shown to operators and admins only.
#[component]
fn SessionActions(
    detail: RwSignal<SessionDetail>,
    status: Memo<KycStatus>,
    moves: SessionMoves,
) -> impl IntoView {
    let result = moves.result_of(&[MoveKind::Cancel, MoveKind::Regenerate, MoveKind::Reminders]);
    let error = Signal::derive(move || {
        result
            .get()
            .and_then(Result::err)
            .map(|error| error.to_string())
    });
    let cancelling = moves.pending(MoveKind::Cancel);
    let regenerating = moves.pending(MoveKind::Regenerate);
    let switching = moves.pending(MoveKind::Reminders);
    let idempotency_key = StoredValue::new(new_idempotency_key());
    let key_field = NodeRef::<leptos::html::Input>::new();
    let open = Memo::new(move |_| status.get().is_open());
    let may_regenerate = Memo::new(move |_| {
        open.get() || matches!(status.get(), KycStatus::Expired | KycStatus::Failed)
    });
    view! {
        <Show when=move || may_regenerate.get()>
            <section class="panel" data-testid="session-actions">
                <h2>"Hand over and manage"</h2>
                {move || {
                    open.get().then(|| {
                        let d = detail.get_untracked();
                        view! {
                            <HandOver detail=d on_sent=Callback::new(move |d| detail.set(d)) />
                        }
                    })
                }}
                {move || error.get().map(|text| view! {
                    <div class="banner error" role="alert" data-testid="action-error">{text}</div>
                })}
                <div class="manage">
                    {move || open.get().then(|| {
                            view! {
                                <details class="confirm" data-testid="cancel-step">
                                    <summary data-testid="cancel-link">"Cancel link…"</summary>
                                    <p>"The customer will no longer be able to use this link. This cannot be undone."</p>
                                    <form
                                        method="post"
                                        action=CancelLink::url()
                                        on:submit=move |ev| {
                                            ev.prevent_default();
                                            moves.dispatch(SessionMove::Cancel);
                                        }
                                    >
                                        <input type="hidden" name="public_id" value=moves.public_id() />
                                        <button type="submit" class="danger" data-testid="cancel-confirm" disabled=move || cancelling.get()>
                                            {move || if cancelling.get() { "Cancelling…" } else { "Yes, cancel the link" }}
                                        </button>
                                    </form>
                                </details>
                            }
                        })}
                    {move || {
                        let waiting = matches!(
                            status.get(),
                            KycStatus::Issued | KycStatus::Opened | KycStatus::Consented
                        );
                        detail
                            .with(|d| d.customer_link.as_ref().map(|c| c.reminders_on))
                            .filter(|_| waiting)
                            .map(|on| view! {
                                <form
                                    method="post"
                                    action=SetLinkReminders::url()
                                    on:submit=move |ev| {
                                        ev.prevent_default();
                                        moves.dispatch(SessionMove::Reminders { on: !on });
                                    }
                                >
                                    <input type="hidden" name="public_id" value=moves.public_id() />
                                    <input type="hidden" name="on" value=if on { "false" } else { "true" } />
                                    <button type="submit" class="secondary" data-testid="reminders-toggle" disabled=move || switching.get()>
                                        {if on { "Turn reminders off" } else { "Turn reminders on" }}
                                    </button>
                                </form>
                            })
                    }}
                    <details class="confirm" data-testid="regenerate-step">
                        <summary data-testid="regenerate-link">"Regenerate link…"</summary>
                        <p>
                            {move || if open.get() {
                                "A new link is made for the same customer; this one stops working."
                            } else {
                                "A new link is made for the same customer and flow."
                            }}
                        </p>
                        <form
                            method="post"
                            action=RegenerateLink::url()
                            on:submit=move |ev| {
                                ev.prevent_default();
                                // The key the page was served with: a press before the script
                                // ran posted that one, so a second press after it makes no
                                // second link.
                                let idempotency_key = key_field
                                    .get_untracked()
                                    .map(|field| field.value())
                                    .unwrap_or_else(|| idempotency_key.get_value());
                                moves.dispatch(SessionMove::Regenerate { idempotency_key });
                            }
                        >
                            <input type="hidden" name="public_id" value=moves.public_id() />
                            <input type="hidden" name="idempotency_key" node_ref=key_field value=idempotency_key.get_value() />
                            <button type="submit" class="primary" data-testid="regenerate-confirm" disabled=move || regenerating.get()>
                                {move || if regenerating.get() {
                                    view! { <span class="spinner" aria-hidden="true"></span> "Making a new link…" }.into_any()
                                } else {
                                    "Make a new link".into_any()
                                }}
                            </button>
                        </form>
                    </details>
                </div>
            </section>
        </Show>
    }
}
