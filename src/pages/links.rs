//! The new-link page (operators and admins) and the hand-over pieces it shares with the
//! session page: copy button, QR code, live countdown and the send buttons.

use super::{
    Countdown, Guarded, StatusBadge, field_message, new_idempotency_key, page_resource, result_of,
    split_when,
};
use crate::api::links::{CreateLink, SendLink, link_options};
use crate::channel::Channel;
use crate::provider::Provider;
use crate::types::{AppError, CurrentUser, KycStatus, LinkFormOptions, LinkOption, SessionDetail};
use crate::validation;
use leptos::html;
use leptos::prelude::*;
use leptos::server_fn::ServerFn as _;
use leptos_meta::Title;

/// The new-link page.
#[component]
pub fn LinksPage() -> impl IntoView {
    view! {
        <Title text="New KYC link" />
        <Guarded path="/links">
            <NewLink />
        </Guarded>
    }
}

#[component]
fn NewLink() -> impl IntoView {
    let options = page_resource(|| (), |_| link_options());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading the providers…"</p> }>
            {move || Suspend::new(async move {
                match options.await {
                    Ok(options) => view! { <NewLinkWorkspace form_options=options /> }.into_any(),
                    Err(error) => view! {
                        <section class="panel">
                            <h1>"New KYC link"</h1>
                            <div class="banner error" role="alert">{error.to_string()}</div>
                        </section>
                    }
                    .into_any(),
                }
            })}
        </Suspense>
    }
}

/// How a channel is written in sentences and on buttons.
pub fn channel_label(channel: &str) -> &'static str {
    Channel::parse(channel).map_or("another channel", Channel::label)
}

fn option_text(option: &LinkOption) -> String {
    match option.trial_links_left {
        Some(0) => format!("{} — no trial links left", option.label),
        Some(1) => format!("{} — 1 trial link left", option.label),
        Some(n) => format!("{} — {n} trial links left", option.label),
        None => option.label.clone(),
    }
}

fn document_label(document: &str) -> String {
    match document {
        "AADHAAR" => "Aadhaar".into(),
        "PAN" => "PAN card".into(),
        "DRIVING_LICENSE" | "DRIVING_LICENCE" => "Driving licence".into(),
        "VOTER_ID" => "Voter ID".into(),
        other => other.replace('_', " "),
    }
}

#[component]
fn NewLinkWorkspace(form_options: LinkFormOptions) -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    if form_options.options.is_empty() {
        let next_step = if crate::access::may_open(me.role, "/credentials") {
            view! {
                <p>
                    "Add a Message Central or Eko DigiLocker credential on the "
                    <a href="/credentials">"Credentials page"</a>
                    ", then come back here."
                </p>
            }
            .into_any()
        } else {
            view! {
                <p>
                    "An admin must add a Message Central or Eko DigiLocker credential on the Credentials page first."
                </p>
            }
            .into_any()
        };
        return view! {
            <section class="panel narrow" data-testid="no-link-options">
                <h1>"New KYC link"</h1>
                <p class="banner info">
                    "No identity-verification provider is set up yet, so links cannot be issued."
                </p>
                {next_step}
            </section>
        }
        .into_any();
    }

    let create = ServerAction::<CreateLink>::new();
    let creating = create.pending();
    // The session the page shows: the latest creation, updated by later sends.
    let current = RwSignal::new(None::<SessionDetail>);
    Effect::new(move |_| {
        if let Some(Ok(detail)) = create.value().get() {
            current.set(Some(detail));
        }
    });
    // (public id, failed?) of what is shown; the cards are rebuilt only when it changes.
    let shown = Memo::new(move |_| {
        current.with(|c| {
            c.as_ref().map(|d| {
                (
                    d.summary.public_id.clone(),
                    d.summary.status == KycStatus::Failed,
                )
            })
        })
    });
    let form_round = RwSignal::new(0u32);
    let form_ref = NodeRef::<html::Form>::new();
    let key_ref = NodeRef::<html::Input>::new();
    let first_ref = NodeRef::<html::Select>::new();
    let lifetime = (
        form_options.lifetime_hours_default,
        form_options.lifetime_hours_min,
        form_options.lifetime_hours_max,
    );
    let options = StoredValue::new(form_options.options);

    // A failed creation is tried again with the same entries and a new key (the old key
    // belongs to the failed session).
    let retry = move |_| {
        if let Some(input) = key_ref.get_untracked() {
            input.set_value(&new_idempotency_key());
        }
        current.set(None);
        if let Some(form) = form_ref.get_untracked() {
            let _ = form.request_submit();
        }
    };
    let new_link = Callback::new(move |_: ()| {
        // The re-render below keeps the form's elements, so their values are reset here.
        if let Some(form) = form_ref.get_untracked() {
            form.reset();
        }
        current.set(None);
        form_round.update(|n| *n += 1);
        request_animation_frame(move || {
            if let Some(select) = first_ref.get_untracked() {
                let _ = select.focus();
            }
        });
    });

    view! {
        <section class="panel new-link">
            <h1>"New KYC link"</h1>
            {move || {
                shown
                    .get()
                    .filter(|(_, failed)| *failed)
                    .map(|(public_id, _)| {
                        let reason = current
                            .get_untracked()
                            .and_then(|d| d.last_error)
                            .unwrap_or_else(|| "The provider did not create a link.".into());
                        view! {
                            <div class="banner error link-failed" role="alert" data-testid="link-failed">
                                <p>
                                    <strong>"The link could not be created. "</strong>
                                    {reason}
                                </p>
                                <p>"Nothing was sent to the customer. Your entries are kept below; try again, or change them first."</p>
                                <div class="card-actions">
                                    <button
                                        type="button"
                                        class="primary"
                                        data-testid="link-retry"
                                        disabled=move || creating.get()
                                        on:click=retry
                                    >
                                        "Try again"
                                    </button>
                                    <a href=format!("/sessions/{public_id}") data-testid="session-link">
                                        "Open the failed session"
                                    </a>
                                </div>
                            </div>
                        }
                    })
            }}
            {move || {
                shown
                    .get()
                    .filter(|(_, failed)| !*failed)
                    .and_then(|_| current.get_untracked())
                    .map(|initial| view! {
                        <Suspense fallback=|| view! { <p class="loading">"Preparing the link…"</p> }>
                            {Suspend::new(async move { link_result_card(initial, new_link).await })}
                        </Suspense>
                    })
            }}
            <div class="new-link-form" hidden=move || matches!(shown.get(), Some((_, false)))>
                {move || {
                    form_round.track();
                    view! {
                        <LinkForm
                            create=create
                            options=options.get_value()
                            lifetime=lifetime
                            form_ref=form_ref
                            key_ref=key_ref
                            first_ref=first_ref
                            on_submit=Callback::new(move |_: ()| {
                                current.set(None);
                                preload_link_result_card();
                            })
                        />
                    }
                }}
            </div>
        </section>
    }
    .into_any()
}

#[component]
fn LinkForm(
    create: ServerAction<CreateLink>,
    options: Vec<LinkOption>,
    /// The customer link's lifetime in hours: (default, shortest, longest).
    lifetime: (i64, i64, i64),
    form_ref: NodeRef<html::Form>,
    key_ref: NodeRef<html::Input>,
    first_ref: NodeRef<html::Select>,
    on_submit: Callback<()>,
) -> impl IntoView {
    let value = result_of(create);
    let creating = create.pending();
    // Submissions of this form instance: client-side checks show for every field after one.
    let rounds = RwSignal::new(0u32);
    let initial = options
        .iter()
        .find(|o| o.trial_links_left != Some(0))
        .or(options.first())
        .map(|o| o.id.clone())
        .unwrap_or_default();
    let selected = RwSignal::new(initial.clone());
    let options = StoredValue::new(options);
    let chosen = Memo::new(move |_| {
        options.with_value(|all| all.iter().find(|o| o.id == selected.get()).cloned())
    });
    let key = new_idempotency_key();
    let option_error = field_message(value, "option");
    let documents_error = field_message(value, "documents");
    let consent_error = field_message(value, "consent");
    let lifetime_error = field_message(value, "lifetime_hours");
    let customer_link = RwSignal::new(true);
    let remind = RwSignal::new(true);
    let (default_hours, min_hours, max_hours) = lifetime;
    let banner = Signal::derive(move || match value.get() {
        Some(Err(AppError::Validation { message, fields })) => Some(
            fields
                .iter()
                .find(|f| f.field == "idempotency_key")
                .map(|f| f.message.clone())
                .unwrap_or(message),
        ),
        Some(Err(error)) => Some(error.to_string()),
        _ => None,
    });
    let option_hint = move || {
        chosen.get().map(|o| {
            let mut parts = Vec::new();
            if o.sandbox {
                parts.push("Sandbox: a test journey; no real identity is checked.".to_string());
            }
            match o.trial_links_left {
                Some(0) => parts
                    .push("All trial links of this Message Central account are used.".to_string()),
                Some(n) => parts.push(format!(
                    "{n} trial link{} left on this Message Central account.",
                    if n == 1 { "" } else { "s" }
                )),
                None => {}
            }
            if o.provider == Provider::Eko {
                parts.push(
                    "The customer signs in to DigiLocker and shares the documents below.".into(),
                );
            }
            parts.join(" ")
        })
    };
    let option_list = options.with_value(|all| {
        all.iter()
            .map(|o| {
                view! {
                    <option
                        value=o.id.clone()
                        selected=o.id == initial
                        disabled=o.trial_links_left == Some(0)
                    >
                        {option_text(o)}
                    </option>
                }
            })
            .collect_view()
    });
    view! {
        <div on:submit=move |_| {
            rounds.update(|n| *n += 1);
            on_submit.run(());
        }>
            <ActionForm
                action=create
                node_ref=form_ref
                attr:novalidate=true
                attr:class="link-form"
                attr:data-testid="link-form"
            >
                <div class="field" class:invalid=move || option_error.get().is_some()>
                    <label for="nl-option">"Provider and flow"</label>
                    <select
                        id="nl-option"
                        name="input[option]"
                        data-testid="link-option"
                        node_ref=first_ref
                        aria-describedby="nl-option-hint nl-option-error"
                        aria-invalid=move || if option_error.get().is_some() { "true" } else { "false" }
                        on:change=move |ev| selected.set(event_target_value(&ev))
                    >
                        {option_list}
                    </select>
                    <p class="hint" id="nl-option-hint" data-testid="link-option-hint">
                        {option_hint}
                    </p>
                    {move || option_error.get().map(|m| view! { <p class="field-error" id="nl-option-error">{m}</p> })}
                </div>
                <CheckedField
                    label="Customer's full name"
                    field="customer_name"
                    autocomplete="off"
                    maxlength=100
                    required=true
                    hint="As on the customer's identity documents."
                    check=validation::customer_name_problem
                    server_error=field_message(value, "customer_name")
                    rounds=rounds.into()
                />
                <CheckedField
                    label="Mobile number"
                    field="phone"
                    kind="tel"
                    inputmode="tel"
                    maxlength=20
                    required=true
                    hint="A 10-digit Indian mobile number, or + and the country code for another country."
                    check=|text| validation::normalize_phone(text).err()
                    server_error=field_message(value, "phone")
                    rounds=rounds.into()
                />
                <CheckedField
                    label="Email (optional)"
                    field="email"
                    kind="email"
                    maxlength=254
                    hint="Needed only to send the link by email."
                    check=|text| validation::optional_email(text).err()
                    server_error=field_message(value, "email")
                    rounds=rounds.into()
                />
                <CheckedField
                    label="Internal reference (optional)"
                    field="internal_ref"
                    maxlength=64
                    hint="Your case, account or application number; up to 64 characters."
                    check=validation::internal_reference_problem
                    server_error=field_message(value, "internal_ref")
                    rounds=rounds.into()
                />
                {move || {
                    chosen
                        .get()
                        .filter(|o| o.provider == Provider::Eko)
                        .map(|o| {
                            let boxes = o
                                .documents
                                .iter()
                                .enumerate()
                                .map(|(index, document)| {
                                    view! {
                                        <label class="checkbox">
                                            <input
                                                type="checkbox"
                                                name=format!("input[documents][{index}]")
                                                value=document.clone()
                                                checked=document == "AADHAAR"
                                                data-testid=format!("link-document-{}", document.to_lowercase())
                                            />
                                            {document_label(document)}
                                        </label>
                                    }
                                })
                                .collect_view();
                            view! {
                                <fieldset class="field documents" class:invalid=move || documents_error.get().is_some()>
                                    <legend>"Documents to request"</legend>
                                    <p class="hint">"Aadhaar is requested when nothing is ticked."</p>
                                    {boxes}
                                    {move || documents_error.get().map(|m| view! { <p class="field-error">{m}</p> })}
                                </fieldset>
                            }
                        })
                }}
                <fieldset class="field handover">
                    <legend>"How the customer gets the link"</legend>
                    <label class="checkbox">
                        <input
                            type="radio"
                            name="input[handover]"
                            value="customer_link"
                            checked=true
                            data-testid="handover-customer-link"
                            on:change=move |_| customer_link.set(true)
                        />
                        "KYC Desk's link (works for days; the provider's page is made when the customer starts)"
                    </label>
                    <label class="checkbox">
                        <input
                            type="radio"
                            name="input[handover]"
                            value="provider_url"
                            data-testid="handover-provider-url"
                            on:change=move |_| customer_link.set(false)
                        />
                        "The provider's URL now, for an in-person hand-over (works once, expires soon)"
                    </label>
                </fieldset>
                <div
                    class="field"
                    class:invalid=move || lifetime_error.get().is_some()
                    hidden=move || !customer_link.get()
                >
                    <label for="nl-lifetime">"Link valid for (hours)"</label>
                    <input
                        type="number"
                        id="nl-lifetime"
                        name="input[lifetime_hours]"
                        min=min_hours
                        max=max_hours
                        value=default_hours
                        data-testid="link-lifetime"
                        aria-describedby="nl-lifetime-hint nl-lifetime-error"
                    />
                    <p class="hint" id="nl-lifetime-hint">
                        {format!("From {min_hours} to {max_hours} hours.")}
                    </p>
                    {move || lifetime_error.get().map(|m| view! { <p class="field-error" id="nl-lifetime-error">{m}</p> })}
                    <input type="hidden" name="input[reminders]" value=move || if remind.get() { "on" } else { "off" } />
                    <label class="checkbox">
                        <input
                            type="checkbox"
                            checked=true
                            data-testid="link-reminders"
                            on:change=move |ev| remind.set(event_target_checked(&ev))
                        />
                        "Remind the customer if they have not started (outside quiet hours)"
                    </label>
                </div>
                <div class="field consent" class:invalid=move || consent_error.get().is_some()>
                    <label class="checkbox" for="nl-consent">
                        <input
                            type="checkbox"
                            id="nl-consent"
                            name="input[consent]"
                            value="on"
                            required=true
                            data-testid="link-consent"
                            aria-describedby="nl-consent-error"
                        />
                        "The customer has consented to this identity verification"
                    </label>
                    {move || consent_error.get().map(|m| view! { <p class="field-error" id="nl-consent-error">{m}</p> })}
                </div>
                <input type="hidden" name="input[idempotency_key]" value=key node_ref=key_ref />
                {move || banner.get().map(|text| view! {
                    <div class="banner error" role="alert" data-testid="form-error">{text}</div>
                })}
                <button
                    type="submit"
                    class="primary"
                    data-testid="link-submit"
                    disabled=move || creating.get()
                    aria-busy=move || if creating.get() { "true" } else { "false" }
                >
                    {move || {
                        if creating.get() {
                            view! { <span class="spinner" aria-hidden="true"></span> "Creating…" }.into_any()
                        } else {
                            "Create link".into_any()
                        }
                    }}
                </button>
            </ActionForm>
        </div>
    }
}

/// A labelled input of the new-link form with the server's message under it, and the same
/// rules checked in the browser once the field was left (then live while typing).
#[component]
fn CheckedField(
    label: &'static str,
    field: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(default = "off")] autocomplete: &'static str,
    #[prop(optional)] inputmode: Option<&'static str>,
    #[prop(optional)] hint: Option<&'static str>,
    #[prop(optional)] maxlength: Option<usize>,
    #[prop(default = false)] required: bool,
    check: fn(&str) -> Option<String>,
    server_error: Signal<Option<String>>,
    rounds: Signal<u32>,
) -> impl IntoView {
    let id = format!("nl-{field}");
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let text = RwSignal::new(String::new());
    let touched = RwSignal::new(false);
    // The submission round in which the field was last edited.
    let edited_in = RwSignal::new(None::<u32>);
    let local = move || {
        if touched.get() || rounds.get() > 0 {
            check(&text.get())
        } else {
            None
        }
    };
    let error = Signal::derive(move || {
        if edited_in.get() == Some(rounds.get()) {
            local()
        } else {
            server_error.get().or_else(local)
        }
    });
    let described = super::described_by(hint.map(|_| hint_id.clone()), error_id.clone(), error);
    view! {
        <div class="field" class:invalid=move || error.get().is_some()>
            <label for=id.clone()>{label}</label>
            {hint.map(|text| view! { <p class="hint" id=hint_id.clone()>{text}</p> })}
            <input
                id=id.clone()
                name=format!("input[{field}]")
                type=kind
                inputmode=inputmode
                autocomplete=autocomplete
                required=required
                maxlength=maxlength
                aria-invalid=move || if error.get().is_some() { "true" } else { "false" }
                aria-describedby=described
                on:input=move |ev| {
                    text.set(event_target_value(&ev));
                    edited_in.set(Some(rounds.get_untracked()));
                }
                on:blur=move |ev| {
                    text.set(event_target_value(&ev));
                    touched.set(true);
                }
            />
            {move || error.get().map(|message| view! { <p class="field-error" id=error_id.clone()>{message}</p> })}
        </div>
    }
}

/// The card shown after a link was created, as its own lazily loaded part of the browser
/// bundle: a first visit of the page fetches the form's code only (issue 12: the hand-over's
/// code is most of what the page would otherwise add), and the card's code is fetched while
/// the provider makes the link (see [`preload_link_result_card`]).
#[lazy]
fn link_result_card(initial: SessionDetail, on_new: Callback<()>) -> AnyView {
    view! { <LinkResultCard initial=initial on_new=on_new /> }.into_any()
}

/// Starts fetching the result card's code when a link is asked for, so the card shows as soon
/// as the link is made; the server renders no card, so there it does nothing.
fn preload_link_result_card() {
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(__preload_link_result_card());
}

/// The card shown after a link was created.
#[component]
fn LinkResultCard(initial: SessionDetail, on_new: Callback<()>) -> impl IntoView {
    let detail = RwSignal::new(initial.clone());
    let status = Memo::new(move |_| detail.with(|d| d.summary.status));
    let summary = initial.summary.clone();
    let public_id = summary.public_id.clone();
    view! {
        <div class="result-card" data-testid="link-result">
            <div class="result-head">
                <h2>{format!("Link ready for {}", summary.customer_name)}</h2>
                {move || view! { <StatusBadge status=status.get() /> }}
            </div>
            <p class="muted">
                {summary.provider_label.clone()}
                {summary.sandbox.then(|| view! { " " <span class="tag sandbox">"sandbox"</span> })}
                " · " {summary.phone_masked.clone()}
            </p>
            <HandOver detail=initial on_sent=Callback::new(move |d| detail.set(d)) />
            <div class="card-actions">
                <a href=format!("/sessions/{public_id}") data-testid="session-link">
                    "Open the session page"
                </a>
                <button
                    type="button"
                    class="secondary"
                    data-testid="new-link"
                    on:click=move |_| on_new.run(())
                >
                    "New link"
                </button>
            </div>
        </div>
    }
}

/// Everything needed to hand an open link over: the link with a copy button, the QR code,
/// the expiry with a countdown, and the send buttons.
#[component]
pub fn HandOver(detail: SessionDetail, on_sent: Callback<SessionDetail>) -> impl IntoView {
    // Drawn by the server on its own request, so the link shows without waiting for it.
    let qr = detail.link_url.as_ref().map(|_| {
        let src = format!("/sessions/{}/qr.svg", detail.summary.public_id);
        view! {
            <div class="qr">
                <img data-testid="link-qr" src=src width="206" height="206" alt="QR code of the link" />
            </div>
        }
    });
    let expiry = detail.expires_at_unix.map(|at| {
        let (_, until) = split_when(&detail.summary.expires_or_ended);
        view! {
            <p class="expiry">
                <span class="muted">"Valid until "</span>
                <strong>{until}</strong>
                " · "
                <Countdown expires_at=at />
            </p>
        }
    });
    view! {
        <div class="hand-over">
            {detail.link_withheld.then(|| view! {
                <p class="muted" data-testid="link-withheld">"A link exists and is open; only operators and admins see it."</p>
            })}
            {detail.link_url.clone().map(|url| view! { <CopyLink url=url /> })}
            <div class="hand-over-grid">
                {qr}
                <div class="hand-over-side">
                    {expiry}
                    <SendLinkButtons
                        public_id=detail.summary.public_id.clone()
                        channels=detail.channels.clone()
                        has_email=detail.has_email
                        on_sent=on_sent
                    />
                </div>
            </div>
        </div>
    }
}

/// The link in a read-only input with a Copy button (clipboard, or select-and-Ctrl+C).
#[component]
pub fn CopyLink(url: String) -> impl IntoView {
    let input = NodeRef::<html::Input>::new();
    let message = RwSignal::new(None::<String>);
    let copy = {
        let url = url.clone();
        move |_| copy_to_clipboard(url.clone(), input, message)
    };
    view! {
        <div class="field copy-link">
            <label for="link-url-input">"Link for the customer"</label>
            <div class="copy-row">
                <input
                    id="link-url-input"
                    type="text"
                    readonly=true
                    value=url
                    data-testid="link-url"
                    node_ref=input
                    on:focus=move |_| {
                        if let Some(el) = input.get_untracked() {
                            el.select();
                        }
                    }
                />
                <button type="button" class="secondary" data-testid="copy-link" on:click=copy>
                    "Copy"
                </button>
            </div>
            <p class="copy-status" role="status" data-testid="copy-status">
                {move || message.get()}
            </p>
        </div>
    }
}

/// Copies `text` with the asynchronous clipboard API; when the browser refuses (or has no
/// clipboard, as on plain-HTTP addresses) the link is selected for Ctrl+C instead.
fn copy_to_clipboard(text: String, input: NodeRef<html::Input>, message: RwSignal<Option<String>>) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::{JsCast, JsValue, closure::Closure};
        let fallback = move || {
            if let Some(el) = input.get_untracked() {
                let _ = el.focus();
                el.select();
            }
            let document = document();
            let copied = js_sys::Reflect::get(&document, &JsValue::from_str("execCommand"))
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
                .and_then(|f| f.call1(&document, &JsValue::from_str("copy")).ok())
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            message.set(Some(if copied {
                "Copied".to_string()
            } else {
                "Your browser did not let KYC Desk copy. The link is selected: press Ctrl+C (⌘C on a Mac) to copy it.".to_string()
            }));
        };
        let promise = js_sys::Reflect::get(&window(), &JsValue::from_str("navigator"))
            .ok()
            .and_then(|navigator| {
                js_sys::Reflect::get(&navigator, &JsValue::from_str("clipboard")).ok()
            })
            .filter(|clipboard| clipboard.is_object())
            .and_then(|clipboard| {
                let write = js_sys::Reflect::get(&clipboard, &JsValue::from_str("writeText"))
                    .ok()?
                    .dyn_into::<js_sys::Function>()
                    .ok()?;
                write.call1(&clipboard, &JsValue::from_str(&text)).ok()
            })
            .filter(|promise| promise.is_object());
        let then = promise.as_ref().and_then(|promise| {
            js_sys::Reflect::get(promise, &JsValue::from_str("then"))
                .ok()?
                .dyn_into::<js_sys::Function>()
                .ok()
        });
        match (promise, then) {
            (Some(promise), Some(then)) => {
                let done = Closure::once_into_js(move |_: JsValue| {
                    message.set(Some("Copied".to_string()));
                });
                let failed = Closure::once_into_js(move |_: JsValue| fallback());
                if then.call2(&promise, &done, &failed).is_err() {
                    fallback();
                }
            }
            _ => fallback(),
        }
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (text, input, message);
    }
}

/// Buttons that send (or resend) a session's link by each configured channel, with the
/// outcome in plain words and a "Try again" after a failure. Works as a plain form before
/// the page's script has loaded.
#[component]
pub fn SendLinkButtons(
    public_id: String,
    channels: Vec<String>,
    has_email: bool,
    on_sent: Callback<SessionDetail>,
    /// Test-id prefix and verb: `send` (Send by …) or `resend` (Resend by …).
    #[prop(default = "send")]
    prefix: &'static str,
) -> impl IntoView {
    let usable: Vec<Channel> = Channel::ALL
        .into_iter()
        .filter(|c| channels.iter().any(|x| x == c.as_str()) && (*c != Channel::Email || has_email))
        .collect();
    if usable.is_empty() {
        let text = if channels.is_empty() {
            "No email or SMS sending is set up: copy the link or show the QR code. An admin can add sending on the Credentials page."
        } else {
            "This customer gave no email address and no SMS sending is set up: copy the link or show the QR code."
        };
        return view! { <p class="muted" data-testid=format!("{prefix}-none")>{text}</p> }
            .into_any();
    }
    let send = ServerAction::<SendLink>::new();
    let pending = send.pending();
    let last = RwSignal::new(String::new());
    Effect::new(move |_| {
        if let Some(Ok(detail)) = send.value().get() {
            on_sent.run(detail);
        }
    });
    let verb = if prefix == "resend" { "Resend" } else { "Send" };
    let buttons = usable
        .into_iter()
        .map(|channel| {
            view! {
                <button
                    type="submit"
                    name="channel"
                    value=channel.as_str()
                    class="secondary"
                    data-testid=format!("{prefix}-{channel}")
                    disabled=move || pending.get()
                    on:click=move |_| last.set(channel.to_string())
                >
                    {move || {
                        if pending.get() && last.get() == channel.as_str() {
                            view! { <span class="spinner" aria-hidden="true"></span> "Sending…" }.into_any()
                        } else {
                            format!("{verb} by {}", channel.label()).into_any()
                        }
                    }}
                </button>
            }
        })
        .collect_view();
    let session = StoredValue::new(public_id.clone());
    // Sends by the channel pressed last: the buttons' own press, or "Try again".
    let send_by_last_channel = move || {
        send.dispatch(SendLink {
            public_id: session.get_value(),
            channel: last.get_untracked(),
        });
    };
    let outcome = move || {
        if pending.get() {
            return Some(
                view! {
                    <p class="muted">{format!("Sending by {}…", channel_label(&last.get()))}</p>
                }
                .into_any(),
            );
        }
        match send.value().get() {
            Some(Ok(detail)) => {
                let text = detail
                    .deliveries
                    .first()
                    .filter(|d| d.outcome == "sent")
                    .map(|d| {
                        format!(
                            "Sent by {} to {}.",
                            channel_label(&d.channel),
                            d.destination
                        )
                    })
                    .unwrap_or_else(|| "Sent.".to_string());
                Some(view! { <p class="banner success">{text}</p> }.into_any())
            }
            Some(Err(error)) => Some(
                view! {
                    <div class="banner error send-failed" role="alert">
                        <p>{format!("Sending failed: {error}")}</p>
                        <button
                            type="button"
                            class="secondary"
                            data-testid=format!("{prefix}-retry")
                            on:click=move |_| send_by_last_channel()
                        >
                            "Try again"
                        </button>
                    </div>
                }
                .into_any(),
            ),
            None => None,
        }
    };
    view! {
        <div class="send-link">
            // A plain form, so sending works before the page's script has loaded; once it
            // has, the pressed button's channel is sent without a form decoder in the bundle.
            <form
                method="post"
                action=SendLink::url()
                class="send-buttons"
                on:submit=move |ev| {
                    ev.prevent_default();
                    send_by_last_channel();
                }
            >
                <input type="hidden" name="public_id" value=public_id.clone() />
                {buttons}
            </form>
            <div class="send-result" role="status" data-testid=format!("{prefix}-result")>
                {outcome}
            </div>
        </div>
    }
    .into_any()
}
