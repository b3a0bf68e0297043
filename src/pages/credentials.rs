//! The admins' credentials page: one card per kind and environment with the masked active
//! version, an editor that saves settings or rotates secrets (with re-authentication), the
//! connection test, the link email and the customer's privacy notice.

use super::step_up::{ActionFailure, StepUpPrompt};
use super::{Guarded, described_by, field_message, page_resource, result_of};
use crate::api::credentials::{SaveCredential, TestCredential, list_credentials};
use crate::api::links::{
    SaveEmailTemplate, SaveReminderTemplates, email_template, get_reminder_templates,
};
use crate::api::notice::{SavePrivacyNotice, get_privacy_notice};
use crate::credential_kinds::{
    CredentialInput, CredentialKind, CredentialView, FieldSpec, TRIAL_LINKS,
};
use crate::types::{AppError, NoticeTexts, PrivacyNotice, ReminderTemplates, ReminderTexts};
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
        <EmailTemplateEditor />
        <ReminderTemplateEditor />
        <PrivacyNoticeEditor />
    }
}

/// The email that carries links to customers: subject and body with placeholders.
#[component]
fn EmailTemplateEditor() -> impl IntoView {
    let save = ServerAction::<SaveEmailTemplate>::new();
    let value = result_of(save);
    let pending = save.pending();
    let template = page_resource(|| (), |_| email_template());
    let body_error = field_message(value, "body");
    view! {
        <section class="panel" data-testid="email-template">
            <h2>"Link email"</h2>
            <p class="muted">
                "The message a customer receives when a link is sent by email (sent as plain text and as HTML). "
                "Placeholders: {name} (customer), {link} (required), {expires} (link expiry), {company} (the company name of the Message Central eKYC credential)."
            </p>
            <Suspense fallback=|| view! { <p class="loading">"Loading the template…"</p> }>
                {move || Suspend::new(async move {
                    match template.await {
                        Ok((subject, body)) => view! {
                            <ActionForm action=save attr:data-testid="email-template-form">
                                <div class="field" class:invalid=move || field_message(value, "subject").get().is_some()>
                                    <label for="template-subject">"Subject"</label>
                                    <input id="template-subject" name="subject" type="text" maxlength=200 required value=subject />
                                    {move || field_message(value, "subject").get().map(|m| view! { <p class="field-error">{m}</p> })}
                                </div>
                                <div class="field" class:invalid=move || body_error.get().is_some()>
                                    <label for="template-body">"Message"</label>
                                    <textarea id="template-body" name="body" rows=12 maxlength=5000 required>{textarea_text(body)}</textarea>
                                    {move || body_error.get().map(|m| view! { <p class="field-error">{m}</p> })}
                                </div>
                                <ActionFailure result=value again="Press “Save template” again." />
                                {move || matches!(value.get(), Some(Ok(_))).then(|| view! {
                                    <p class="banner success" role="status" data-testid="template-saved">"Template saved. New emails use it from now on."</p>
                                })}
                                <button type="submit" class="primary" disabled=move || pending.get()>
                                    {move || if pending.get() { "Saving…" } else { "Save template" }}
                                </button>
                            </ActionForm>
                        }.into_any(),
                        Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The longest reminder SMS the browser lets through: the server's own limit
/// (`reminder_templates::SMS_MAX_CHARS`, in server-only code; a test keeps the two equal).
const REMINDER_SMS_MAX: usize = 500;

/// The reminders sent to customers who have not started (SMS/WhatsApp and email), in English
/// and Hindi; the customer gets the language they consented in, else English.
#[component]
fn ReminderTemplateEditor() -> impl IntoView {
    let save = ServerAction::<SaveReminderTemplates>::new();
    let value = result_of(save);
    let pending = save.pending();
    let templates = page_resource(|| (), |_| get_reminder_templates());
    view! {
        <section class="panel reminder-editor" data-testid="reminder-templates">
            <h2>"Reminders"</h2>
            <p class="muted">
                "What a customer receives when their link was sent and they have not started: by the channel the link went by, in the language they chose on the link's page (English until they chose). "
                "Placeholders: {name}, {link} (required), {expires}, {company}. "
                "In India an SMS is delivered only if its text matches a DLT template registered for your sender ID: register each SMS text below as it stands, every placeholder as a variable."
            </p>
            <Suspense fallback=|| view! { <p class="loading">"Loading the reminders…"</p> }>
                {move || Suspend::new(async move {
                    match templates.await {
                        Ok(loaded) => {
                            let first = format!("Saved by {} {}", loaded.updated_by, loaded.updated_at);
                            view! {
                                <p data-testid="reminder-templates-saved-by">
                                    {move || match value.get() {
                                        Some(Ok(saved)) => format!("Saved by {} {}", saved.updated_by, saved.updated_at),
                                        _ => first.clone(),
                                    }}
                                </p>
                                <ActionForm action=save attr:data-testid="reminder-templates-form">
                                    <ReminderLanguage value language="en" legend="English" texts=loaded.en />
                                    <ReminderLanguage value language="hi" legend="हिन्दी" texts=loaded.hi />
                                    <ActionFailure result=value again="Press “Save reminders” again." />
                                    {move || matches!(value.get(), Some(Ok(_))).then(|| view! {
                                        <p class="banner success" role="status" data-testid="reminder-templates-ok">"Reminders saved. The next reminders use them."</p>
                                    })}
                                    <button type="submit" class="primary" data-testid="reminder-templates-save" disabled=move || pending.get()>
                                        {move || if pending.get() { "Saving…" } else { "Save reminders" }}
                                    </button>
                                </ActionForm>
                            }.into_any()
                        }
                        Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// One language's reminder texts (`templates[hi][sms]` in, `hi.sms` back).
#[component]
fn ReminderLanguage(
    value: Signal<Option<Result<ReminderTemplates, AppError>>>,
    language: &'static str,
    legend: &'static str,
    texts: ReminderTexts,
) -> impl IntoView {
    let parts = vec![
        TextPart::area(
            "sms",
            "SMS and WhatsApp text",
            texts.sms,
            4,
            REMINDER_SMS_MAX,
        ),
        TextPart::line("email_subject", "Email subject", texts.email_subject, 200),
        TextPart::area("email_body", "Email message", texts.email_body, 8, 5000),
    ];
    view! { <LanguageFields value form="templates" ids="reminder" language legend parts /> }
}

/// One text box of a per-language form: its name in the form, label, text, and size.
struct TextPart {
    part: &'static str,
    label: &'static str,
    text: String,
    /// 1 for a one-line input, else a textarea of so many rows.
    rows: u32,
    max: usize,
}

impl TextPart {
    fn line(part: &'static str, label: &'static str, text: String, max: usize) -> Self {
        TextPart {
            part,
            label,
            text,
            rows: 1,
            max,
        }
    }

    fn area(part: &'static str, label: &'static str, text: String, rows: u32, max: usize) -> Self {
        TextPart {
            part,
            label,
            text,
            rows,
            max,
        }
    }
}

/// The text boxes of one language in a form that the server reads as `{form}[{language}][part]`
/// and answers with field errors named `{language}.{part}`, each shown under its box (ids
/// `{ids}-{language}-{part}`).
#[component]
fn LanguageFields<T: Clone + Send + Sync + 'static>(
    value: Signal<Option<Result<T, AppError>>>,
    form: &'static str,
    ids: &'static str,
    language: &'static str,
    legend: &'static str,
    parts: Vec<TextPart>,
) -> impl IntoView {
    let fields = parts
        .into_iter()
        .map(|TextPart { part, label, text, rows, max }| {
            let id = format!("{ids}-{language}-{part}");
            let error_id = format!("{id}-error");
            let field = format!("{language}.{part}");
            let error = Signal::derive(move || crate::types::field_error(&value.get(), &field));
            let name = format!("{form}[{language}][{part}]");
            let described = described_by(None, error_id.clone(), error);
            let invalid = move || error.get().is_some().to_string();
            let control = if rows == 1 {
                view! {
                    <input id=id.clone() name=name data-testid=id.clone() lang=language type="text"
                        maxlength=max required value=text aria-invalid=invalid aria-describedby=described />
                }
                .into_any()
            } else {
                view! {
                    <textarea id=id.clone() name=name data-testid=id.clone() lang=language rows=rows
                        maxlength=max required aria-invalid=invalid aria-describedby=described
                    >{textarea_text(text)}</textarea>
                }
                .into_any()
            };
            view! {
                <div class="field" class:invalid=move || error.get().is_some()>
                    <label for=id>{label}</label>
                    {control}
                    {move || error.get().map(|m| view! { <p class="field-error" id=error_id.clone()>{m}</p> })}
                </div>
            }
        })
        .collect_view();
    view! {
        <fieldset>
            <legend lang=language>{legend}</legend>
            {fields}
        </fieldset>
    }
}

/// The longest part of the notice the browser lets through: the server's own limit
/// (`MAX_SECTION_CHARS`, in server-only code; a test keeps the two equal).
const NOTICE_PART_MAX: usize = 2000;

/// The customer's privacy notice (India's DPDP Act) in English and Hindi. Saving publishes
/// the next version; a version is never changed, so a consent keeps naming what was read.
#[component]
fn PrivacyNoticeEditor() -> impl IntoView {
    let save = ServerAction::<SavePrivacyNotice>::new();
    let value = result_of(save);
    let pending = save.pending();
    let notice = page_resource(|| (), |_| get_privacy_notice());
    // The version saved here last (number, by, when). The page's copy is not fetched again
    // after a save, so what the admin typed stays in the form; only this line moves on.
    let saved = RwSignal::new(None::<(i64, String, String)>);
    Effect::new(move |_| {
        if let Some(Ok(notice)) = value.get() {
            saved.set(Some((notice.version, notice.created_by, notice.created_at)));
        }
    });
    view! {
        <section class="panel notice-editor" data-testid="notice-editor">
            <h2>"Customer privacy notice"</h2>
            <p class="muted">
                "What a customer reads on their link's page before consenting, in English and Hindi; the law asks for every part. "
                "Write {company} where your company's name belongs: it is filled with the company name of the Message Central eKYC credential (“our team” while none is set)."
            </p>
            <Suspense fallback=|| view! { <p class="loading">"Loading the notice…"</p> }>
                {move || Suspend::new(async move {
                    match notice.await {
                        Ok(loaded) => {
                            let first = (loaded.version, loaded.created_by, loaded.created_at);
                            let current = Signal::derive(move || saved.get().unwrap_or_else(|| first.clone()));
                            view! {
                                <p data-testid="notice-version">
                                    {move || current.with(|(version, by, at)| format!("Version {version} · saved by {by} · {at}"))}
                                </p>
                                <p class="hint">
                                    {move || format!(
                                        "Saving publishes version {}; customers who consented keep the version they saw. It asks you to confirm it is you if you have not in the last few minutes.",
                                        current.with(|(version, _, _)| version + 1)
                                    )}
                                </p>
                                <ActionForm action=save attr:data-testid="notice-form">
                                    <NoticeLanguage value language="en" legend="English" texts=loaded.en />
                                    <NoticeLanguage value language="hi" legend="हिन्दी" texts=loaded.hi />
                                    <ActionFailure result=value again="Press “Save notice” again." />
                                    {move || match value.get() {
                                        Some(Ok(saved)) => Some(view! {
                                            <p class="banner success" role="status" data-testid="notice-saved">
                                                {format!("Version {} published. Customers opening a link see it from now on.", saved.version)}
                                            </p>
                                        }),
                                        _ => None,
                                    }}
                                    <button type="submit" class="primary" data-testid="notice-save" disabled=move || pending.get()>
                                        {move || if pending.get() { "Saving…" } else { "Save notice" }}
                                    </button>
                                </ActionForm>
                            }.into_any()
                        }
                        Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The five parts of the notice in one language (`notice[en][purpose]` in, `en.purpose` back).
#[component]
fn NoticeLanguage(
    value: Signal<Option<Result<PrivacyNotice, AppError>>>,
    language: &'static str,
    legend: &'static str,
    texts: NoticeTexts,
) -> impl IntoView {
    let part = |part, label, text| TextPart::area(part, label, text, 4, NOTICE_PART_MAX);
    let parts = vec![
        part("purpose", "Why we ask", texts.purpose),
        part("data_items", "What is collected", texts.data_items),
        part("retention", "How long it is kept", texts.retention),
        part("withdrawal", "Withdrawing consent", texts.withdrawal),
        part("complaint", "Concerns and complaints", texts.complaint),
    ];
    view! { <LanguageFields value form="notice" ids="notice" language legend parts /> }
}

/// The text inside a `<textarea>`. Leptos writes a textarea's children into server-rendered
/// HTML without escaping them (as it does for `<script>`), so a stored `</textarea>` would end
/// the element there: escape it on the server. In the browser the text becomes a DOM text
/// node as it is.
fn textarea_text(text: String) -> String {
    if cfg!(feature = "ssr") {
        crate::markup::escape_markup(&text)
    } else {
        text
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
                Err(AppError::StepUpRequired { method, passkey }) => view! { <StepUpPrompt method passkey again="Press the test button again." /> }.into_any(),
                Err(error) => view! { <p class="banner error" role="alert" data-testid="test-result">{error.to_string()}</p> }.into_any(),
            })}
        </div>
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    #[test]
    fn the_notice_form_lets_through_what_the_server_takes() {
        assert_eq!(
            super::NOTICE_PART_MAX,
            crate::server::customer::notice::MAX_SECTION_CHARS
        );
        assert_eq!(
            super::REMINDER_SMS_MAX,
            crate::server::links::reminder_templates::SMS_MAX_CHARS
        );
    }

    /// The names are the server's contract (`notice[hi][retention]` in, `hi.retention` back).
    #[test]
    fn a_part_is_named_as_the_server_reads_it_and_shows_its_error() {
        use super::*;
        let texts = NoticeTexts {
            retention: "</textarea><b>".into(),
            ..NoticeTexts::default()
        };
        let result = Some(Err(AppError::field("hi.retention", "Write this part.")));
        // Signals live in an owner's arena, as on a rendered page.
        let html = Owner::new().with(|| {
            view! { <NoticeLanguage value=Signal::stored(result) language="hi" legend="हिन्दी" texts /> }
            .to_html()
        });
        assert!(html.contains(r#"name="notice[hi][retention]""#), "{html}");
        assert!(
            html.contains(r#"<label for="notice-hi-retention">How long it is kept</label>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"aria-invalid="true" aria-describedby="notice-hi-retention-error""#),
            "{html}"
        );
        assert!(
            html.contains(
                r#"id="notice-hi-retention-error" class="field-error">Write this part.</p>"#
            ),
            "{html}"
        );
        assert!(
            html.contains("&lt;/textarea&gt;&lt;b&gt;</textarea>"),
            "{html}"
        );
        assert_eq!(html.matches(r#"aria-invalid="false""#).count(), 4, "{html}");
    }
}
