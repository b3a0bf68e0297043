//! Confirming it is you (step-up) before a sensitive action: the prompt a form shows when the
//! server answers [`AppError::StepUpRequired`], and the confirmation page a sensitive download
//! (the export with contact details) sends the browser to first.

use super::{ErrorBanner, TextField, field_message, go_to, result_of};
use crate::api::factors::StepUp;
use crate::types::{AppError, StepUpMethod};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The label, input type and autocomplete hint of the step-up field for `method`.
fn secret_field(method: StepUpMethod) -> (&'static str, &'static str, &'static str) {
    match method {
        StepUpMethod::Code => ("Code from your authenticator app", "text", "one-time-code"),
        StepUpMethod::Password | StepUpMethod::Passkey | StepUpMethod::SingleSignOn => {
            ("Your password", "password", "current-password")
        }
    }
}

/// `text` as a query value (percent-encoded; `/` kept for legibility).
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A failed action's message: the step-up prompt when the action needs the user to confirm it
/// is them first, otherwise the plain-words error (as [`ErrorBanner`]).
#[component]
pub fn ActionFailure<T: Clone + Send + Sync + 'static>(
    /// The latest result of the action.
    #[prop(into)]
    result: Signal<Option<Result<T, AppError>>>,
    /// What the user does after confirming ("Press “Save” again.").
    again: &'static str,
) -> impl IntoView {
    move || {
        match result.get() {
        Some(Err(AppError::StepUpRequired { method, passkey })) => {
            view! { <LoadedStepUpPrompt method passkey again /> }.into_any()
        }
        Some(Err(error)) => view! {
            <div class="banner error" role="alert" data-testid="form-error">{error.to_string()}</div>
        }
        .into_any(),
        _ => ().into_any(),
    }
    }
}

/// [`StepUpPrompt`] as its own lazily loaded part of the browser bundle: it shows only after the
/// server asked for a step-up, so a page's first visit does not fetch its code (with the
/// passkey ceremony, a fair share of the forms' pages; issue 12). While the part arrives
/// (one round trip) the place says so.
#[component]
pub fn LoadedStepUpPrompt(
    method: StepUpMethod,
    /// The user has a passkey (offered as well).
    #[prop(optional)]
    passkey: bool,
    again: &'static str,
) -> impl IntoView {
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Confirm it is you…"</p> }>
            {Suspend::new(async move { step_up_prompt(method, passkey, again).await })}
        </Suspense>
    }
}

/// The split point of [`LoadedStepUpPrompt`].
#[lazy]
fn step_up_prompt(method: StepUpMethod, passkey: bool, again: &'static str) -> AnyView {
    view! { <StepUpPrompt method passkey again /> }.into_any()
}

/// Asks for a fresh authenticator code (or the password, or a passkey) and confirms it with
/// the server. Not a `<form>`: it sits inside the form of the action it unlocks.
#[component]
fn StepUpPrompt(
    method: StepUpMethod,
    /// The user has a passkey (offered as well).
    #[prop(optional)]
    passkey: bool,
    again: &'static str,
) -> impl IntoView {
    let confirm = ServerAction::<StepUp>::new();
    let value = result_of(confirm);
    let pending = confirm.pending();
    let secret = RwSignal::new(String::new());
    let (label, kind, autocomplete) = secret_field(method);
    let send = move || {
        confirm.dispatch(StepUp {
            secret: secret.get_untracked(),
        });
    };
    let by_passkey = RwSignal::new(None::<Result<u64, String>>);
    let use_passkey = move |_| {
        by_passkey.set(None);
        leptos::task::spawn_local(async move {
            by_passkey.set(Some(confirm_with_passkey().await));
        });
    };
    let done = move || match (value.get(), by_passkey.get()) {
        (Some(Ok(done)), _) => Some(done.minutes),
        (_, Some(Ok(minutes))) => Some(minutes),
        _ => None,
    };
    let typed = !matches!(method, StepUpMethod::Passkey | StepUpMethod::SingleSignOn);
    let location = leptos_router::hooks::use_location();
    // Signing in again at the identity provider leaves this page and comes back to it.
    let sign_on_again = move || {
        let here = format!("{}{}", location.pathname.get(), location.search.get());
        format!("/login/sso?confirm=1&next={}", url_escape(&here))
    };
    view! {
        <div class="step-up" role="group" aria-labelledby="step-up-title" data-testid="step-up">
            {move || match done() {
                Some(minutes) => view! {
                    <p role="status" data-testid="step-up-done">
                        {format!(
                            "Confirmed for {} minute{}. {again}",
                            minutes,
                            if minutes == 1 { "" } else { "s" }
                        )}
                    </p>
                }.into_any(),
                None => view! {
                    <h2 id="step-up-title">"Confirm it is you"</h2>
                    <p>
                        {match method {
                            StepUpMethod::Code => "This action needs a fresh code from your authenticator app.",
                            StepUpMethod::Password => "This action needs your password again.",
                            StepUpMethod::Passkey => "This action needs your passkey.",
                            StepUpMethod::SingleSignOn => "This action needs you to sign in again at your identity provider. You come back to this page afterwards; what you typed here is not kept.",
                        }}
                    </p>
                    {(method == StepUpMethod::SingleSignOn).then(|| view! {
                        <a class="button primary" rel="external" href=sign_on_again data-testid="step-up-sso">
                            "Sign in again at your identity provider"
                        </a>
                    })}
                    {typed.then(|| view! {
                        <label for="step-up-secret">{label}</label>
                        <input
                            id="step-up-secret"
                            type=kind
                            autocomplete=autocomplete
                            inputmode=if method == StepUpMethod::Code { "numeric" } else { "text" }
                            aria-invalid=move || crate::types::field_error(&value.get(), "secret").is_some().to_string()
                            aria-describedby="step-up-error"
                            prop:value=move || secret.get()
                            on:input=move |ev| secret.set(event_target_value(&ev))
                            on:keydown=move |ev| {
                                // Enter confirms here instead of submitting the form around it.
                                if ev.key() == "Enter" {
                                    ev.prevent_default();
                                    send();
                                }
                            }
                        />
                        <button type="button" class="primary" disabled=move || pending.get() on:click=move |_| send()>
                            {move || if pending.get() { "Checking…" } else { "Confirm" }}
                        </button>
                    })}
                    {(passkey || !typed).then(|| view! {
                        <button type="button" class=if typed { "secondary" } else { "primary" } data-testid="step-up-passkey" on:click=use_passkey>
                            "Use a passkey"
                        </button>
                    })}
                    <p class="field-error" id="step-up-error" data-testid="step-up-error">
                        {move || match (value.get(), by_passkey.get()) {
                            (_, Some(Err(error))) => error,
                            (Some(Err(error)), _) => error
                                .field_message("secret")
                                .unwrap_or_else(|| error.to_string()),
                            _ => String::new(),
                        }}
                    </p>
                }.into_any(),
            }}
        </div>
    }
}

/// A step-up with one of the user's passkeys: the minutes it lasts, or why not.
async fn confirm_with_passkey() -> Result<u64, String> {
    use crate::api::passkeys::{begin_passkey_step_up, finish_passkey_step_up};
    let options = begin_passkey_step_up().await.map_err(|e| e.to_string())?;
    let answer = super::webauthn::get(&options).await?;
    finish_passkey_step_up(answer)
        .await
        .map(|done| done.minutes)
        .map_err(|e| e.to_string())
}

/// `/account/confirm?next=…`: confirm it is you, then go on to `next` (a sensitive download).
#[component]
pub fn ConfirmPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || {
        query
            .read()
            .get("next")
            .filter(|path| {
                path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\")
            })
            .unwrap_or_else(|| "/".to_string())
    };
    let confirm = ServerAction::<StepUp>::new();
    let value = result_of(confirm);
    let pending = confirm.pending();
    let sso_only = use_context::<crate::types::CurrentUser>().is_some_and(|me| me.sso_only);
    Effect::new(move |_| {
        if let Some(Ok(_)) = value.get() {
            go_to(&next());
        }
    });
    let passkey_error = RwSignal::new(None::<String>);
    let use_passkey = move |_| {
        passkey_error.set(None);
        leptos::task::spawn_local(async move {
            match confirm_with_passkey().await {
                Ok(_) => go_to(&next()),
                Err(error) => passkey_error.set(Some(error)),
            }
        });
    };
    view! {
        <Title text="Confirm it is you" />
        <section class="panel narrow">
            <h1>"Confirm it is you"</h1>
            {sso_only.then(|| view! {
                <p>
                    "You sign in with single sign-on: "
                    <a class="button primary" rel="external" data-testid="confirm-sso" href=move || {
                        let next: String = url_escape(&next());
                        format!("/login/sso?confirm=1&next={next}")
                    }>"sign in again at your identity provider"</a>
                    " to go on, or use a second factor below."
                </p>
            })}
            <p>
                "What you asked for holds personal data. Enter the code your authenticator app shows now (or your password, if you have no second factor), or use your passkey."
            </p>
            <ActionForm action=confirm attr:data-testid="confirm-form">
                <TextField label="Code or password" name="secret" id_prefix="confirm" kind="password" autocomplete="one-time-code" error=field_message(value, "secret") />
                <ErrorBanner message=Signal::derive(move || match value.get() {
                    Some(Err(error)) if error.field_message("secret").is_none() => Some(error.to_string()),
                    _ => None,
                }) />
                {move || matches!(value.get(), Some(Ok(_))).then(|| view! {
                    <p class="banner success" role="status" data-testid="confirm-done">
                        "Confirmed. Your download starts now. "
                        <a href="/sessions">"Back to sessions"</a>
                    </p>
                })}
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Checking…" } else { "Confirm and continue" }}
                </button>
            </ActionForm>
            <p class="muted">"Or, if your second factor is a passkey:"</p>
            <button type="button" class="secondary" data-testid="confirm-passkey" on:click=use_passkey>
                "Use a passkey"
            </button>
            <ErrorBanner message=passkey_error />
        </section>
    }
}
