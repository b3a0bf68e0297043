//! The admins' credentials page: one card per kind and environment with the masked active
//! version, an editor that saves settings or rotates secrets (with re-authentication), and the
//! connection test. What customers read (emails, reminders, the privacy notice) is on the
//! customer texts page (`texts.rs`).

use super::step_up::{ActionFailure, LoadedStepUpPrompt};
use super::{Guarded, page_resource};
use crate::api::credentials::{SaveCredential, TestCredential, list_credentials};
use crate::credential_kinds::{
    CredentialInput, CredentialKind, CredentialView, FieldSpec, TRIAL_LINKS,
};
use crate::types::AppError;
use leptos::prelude::*;
use leptos_meta::Title;
use std::collections::BTreeMap;

/// The credentials page (admins only).
#[component]
pub fn CredentialsPage() -> impl IntoView {
    view! {
        <Title text="Credentials" />
        <Guarded path="/credentials">
            <CredentialsAdmin />
        </Guarded>
    }
}

#[component]
fn CredentialsAdmin() -> impl IntoView {
    let save = ServerAction::<SaveCredential>::new();
    let test = ServerAction::<TestCredential>::new();
    // Reload the cards only after a successful save: a refused save keeps what was typed.
    let refresh = RwSignal::new(0u32);
    let notice = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        if let Some(Ok(saved)) = save.value().get() {
            let mut text = format!(
                "{} {}: {} (version {}).",
                saved.view.kind.label(),
                saved.view.environment,
                saved.change,
                saved.view.version
            );
            for note in &saved.notices {
                text.push(' ');
                text.push_str(note);
            }
            notice.set(Some(text));
            refresh.update(|n| *n += 1);
        }
    });
    let overview = page_resource(move || refresh.get(), |_| list_credentials());
    view! {
        <section class="panel">
            <h1>"Credentials"</h1>
            <p class="muted">
                "Secrets are write-only: after saving you see only their last four characters and a fingerprint. "
                "Entering a new secret rotates it: a new version becomes active and the old one is wiped."
            </p>
            <p class="muted">
                "What customers read from KYC Desk (the link email, reminders and the privacy notice) is on the "
                <a href="/texts">"Customer texts"</a>
                " page; the Message Central eKYC credential's company name fills its {company} placeholders."
            </p>
            {move || notice.get().map(|text| view! {
                <p class="banner success" role="status" data-testid="credential-saved">{text}</p>
            })}
        </section>
        <Suspense fallback=|| view! { <p class="loading">"Loading credentials…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => {
                        let sandbox = overview.sandbox_prefix.clone();
                        view! {
                            {(!overview.vault_ready).then(|| view! {
                                <p class="banner error" data-testid="no-master-key">
                                    "No master key is configured, so credentials cannot be stored. Set KYC_DESK_MASTER_KEY or KYC_DESK_MASTER_KEY_FILE and restart KYC Desk."
                                </p>
                            })}
                            {CredentialKind::ALL.into_iter().map(|kind| {
                                let cards = kind.environments().iter().map(|environment| {
                                    let existing = overview.credentials.iter().find(|c| c.kind == kind && c.environment == *environment).cloned();
                                    view! { <CredentialCard kind=kind environment=environment existing=existing save=save test=test sandbox_prefix=sandbox.clone() /> }
                                }).collect_view();
                                view! {
                                    <section class="panel" data-testid=format!("kind-{}", kind.as_str())>
                                        <h2>{kind.label()}</h2>
                                        <div class="credential-grid">{cards}</div>
                                    </section>
                                }
                            }).collect_view()}
                        }.into_any()
                    }
                    Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn CredentialCard(
    kind: CredentialKind,
    environment: &'static str,
    existing: Option<CredentialView>,
    save: ServerAction<SaveCredential>,
    test: ServerAction<TestCredential>,
    sandbox_prefix: Option<String>,
) -> impl IntoView {
    let testid = format!("credential-{}-{}", kind.as_str(), environment);
    let is_sandbox = match (&existing, &sandbox_prefix) {
        (Some(view), Some(prefix)) => view
            .settings
            .get("base_url")
            .is_some_and(|url| url.starts_with(prefix.as_str())),
        _ => false,
    };
    let summary = existing.clone().map(|view| {
        let trial = (kind == CredentialKind::MessageCentralEkyc && environment == "trial").then(|| {
            let left = TRIAL_LINKS - view.trial_links_used;
            view! {
                <p class=if left <= 1 { "banner error" } else { "banner info" } data-testid="trial-count">
                    {format!("{} of {TRIAL_LINKS} trial links used; {left} left.", view.trial_links_used)}
                </p>
            }
        });
        view! {
            <p class="muted" data-testid="credential-meta">
                {format!("Version {} · saved by {} · {}", view.version, view.saved_by, view.saved_at)}
            </p>
            {trial}
            <dl class="settings">
                {view.settings.iter().map(|(name, value)| view! { <dt>{name.clone()}</dt><dd>{value.clone()}</dd> }).collect_view()}
                {view.secrets.iter().map(|secret| view! {
                    <dt>{secret.field.clone()}</dt>
                    <dd data-testid=format!("masked-{}", secret.field)>
                        {if secret.last4.is_empty() { "••••".to_string() } else { format!("•••• {}", secret.last4) }}
                        <span class="muted">{format!("  fingerprint {}", secret.fingerprint)}</span>
                    </dd>
                }).collect_view()}
            </dl>
            {view.last_test.clone().map(|text| view! { <p class="muted">{format!("Last test: {text}")}</p> })}
            {view.switched_off.clone().map(|text| view! { <p class="banner error" data-testid="credential-switched-off">{text}</p> })}
        }
    });
    let switched_off = existing
        .as_ref()
        .is_some_and(|view| view.switched_off.is_some());
    let has_existing = existing.is_some();
    view! {
        <article class="card credential" data-testid=testid>
            <h3>
                {environment}
                {is_sandbox.then(|| view! { <span class="badge status-pending">"Sandbox"</span> })}
                {if switched_off {
                    view! { <span class="badge status-disabled">"Switched off"</span> }.into_any()
                } else if has_existing {
                    view! { <span class="badge status-active">"Active"</span> }.into_any()
                } else {
                    view! { <span class="badge status-disabled">"Not set"</span> }.into_any()
                }}
            </h3>
            {summary}
            <details class="inline-form">
                <summary>{if has_existing { "Edit or rotate" } else { "Add" }}</summary>
                <CredentialEditor kind=kind environment=environment existing=existing.clone() save=save />
            </details>
            {has_existing.then(|| view! { <TestButton kind=kind environment=environment test=test /> })}
        </article>
    }
}

#[component]
fn CredentialEditor(
    kind: CredentialKind,
    environment: &'static str,
    existing: Option<CredentialView>,
    save: ServerAction<SaveCredential>,
) -> impl IntoView {
    let prefix = format!("{}-{}", kind.as_str(), environment);
    let values: BTreeMap<&'static str, RwSignal<String>> = kind
        .fields()
        .iter()
        .map(|spec| {
            let initial = if spec.secret {
                String::new()
            } else {
                existing
                    .as_ref()
                    .and_then(|view| view.settings.get(spec.name).cloned())
                    .unwrap_or_else(|| match spec.name {
                        "base_url" => kind.default_base_url(environment).to_string(),
                        "body_encoding" => "json".into(),
                        "tls" => "starttls".into(),
                        "port" => "587".into(),
                        "documents" => "AADHAAR".into(),
                        "channels" => "sms".into(),
                        _ => String::new(),
                    })
            };
            (spec.name, RwSignal::new(initial))
        })
        .collect();
    // Which card submitted last, so results show only under it.
    let submitted_here = RwSignal::new(false);
    let result = Signal::derive(move || {
        if submitted_here.get() {
            save.value().get()
        } else {
            None
        }
    });
    let field_error = move |name: &'static str| {
        Signal::derive(move || crate::types::field_error(&result.get(), name))
    };
    let has_existing = existing.is_some();
    let masked: BTreeMap<String, String> = existing
        .map(|view| {
            view.secrets
                .into_iter()
                .map(|s| (s.field, s.last4))
                .collect()
        })
        .unwrap_or_default();
    let fields = kind
        .fields()
        .iter()
        .map(|spec: &FieldSpec| {
            let value = values[spec.name];
            let id = format!("{prefix}-{}", spec.name);
            let error = field_error(spec.name);
            let placeholder = if spec.secret && has_existing {
                format!(
                    "Leave empty to keep •••• {}",
                    masked.get(spec.name).cloned().unwrap_or_default()
                )
            } else {
                String::new()
            };
            view! {
                <div class="field" class:invalid=move || error.get().is_some()>
                    <label for=id.clone()>{spec.label}</label>
                    {(!spec.hint.is_empty()).then(|| view! { <p class="hint">{spec.hint}</p> })}
                    <input
                        id=id
                        name=spec.name
                        type=if spec.secret { "password" } else { "text" }
                        autocomplete="off"
                        placeholder=placeholder
                        prop:value=move || value.get()
                        on:input=move |ev| value.set(event_target_value(&ev))
                    />
                    {move || error.get().map(|m| view! { <p class="field-error">{m}</p> })}
                </div>
            }
        })
        .collect_view();
    let values_for_submit = values.clone();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        submitted_here.set(true);
        let mut input = CredentialInput {
            kind: kind.as_str().into(),
            environment: environment.into(),
            ..Default::default()
        };
        for spec in kind.fields() {
            let value = values_for_submit[spec.name].get_untracked();
            if spec.secret {
                if !value.trim().is_empty() {
                    input.secrets.insert(spec.name.into(), value);
                }
            } else {
                input.settings.insert(spec.name.into(), value);
            }
        }
        save.dispatch(SaveCredential { input });
    };
    let pending = save.pending();
    view! {
        <form on:submit=submit data-testid=format!("editor-{prefix}")>
            {fields}
            {has_existing.then(|| view! {
                <p class="hint">"Saving asks you to confirm it is you (a code from your authenticator app, or your password) if you have not in the last few minutes."</p>
            })}
            <ActionFailure result=result again="Press “Save” again." />
            <button type="submit" class="primary" disabled=move || pending.get()>
                {move || if pending.get() { "Saving…" } else { "Save" }}
            </button>
        </form>
    }
}

#[component]
fn TestButton(
    kind: CredentialKind,
    environment: &'static str,
    test: ServerAction<TestCredential>,
) -> impl IntoView {
    let submitted_here = RwSignal::new(false);
    let confirm = RwSignal::new(false);
    let needs_confirmation = kind == CredentialKind::MessageCentralEkyc;
    let result = Signal::derive(move || {
        if submitted_here.get() {
            test.value().get()
        } else {
            None
        }
    });
    let pending = test.pending();
    let run = move |_| {
        submitted_here.set(true);
        test.dispatch(TestCredential {
            kind: kind.as_str().into(),
            environment: environment.into(),
            confirm_generation: Some(confirm.get_untracked()),
        });
    };
    view! {
        <div class="test-connection">
            {needs_confirmation.then(|| view! {
                <label class="checkbox">
                    <input type="checkbox" prop:checked=move || confirm.get() on:change=move |ev| confirm.set(event_target_checked(&ev)) />
                    " I understand a test generates one real link (and uses a trial link on trial accounts)."
                </label>
            })}
            <button type="button" class="secondary" on:click=run disabled=move || pending.get()>
                {move || if pending.get() { "Testing…" } else if needs_confirmation { "Test by generating one link" } else { "Test connection" }}
            </button>
            {move || result.get().map(|outcome| match outcome {
                Ok(message) => view! { <p class="banner success" role="status" data-testid="test-result">{message}</p> }.into_any(),
                Err(AppError::StepUpRequired { method, passkey }) => view! { <LoadedStepUpPrompt method passkey again="Press the test button again." /> }.into_any(),
                Err(error) => view! { <p class="banner error" role="alert" data-testid="test-result">{error.to_string()}</p> }.into_any(),
            })}
        </div>
    }
}
