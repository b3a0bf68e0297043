//! The caller's authenticator (TOTP) set-up: scan the QR code (or type the key), confirm with
//! a first code. The key is shown only while the set-up is unconfirmed.

use super::{ErrorBanner, TextField, failure_message, field_message, result_of};
use crate::api::auth::SecondStep;
use crate::api::factors::{ConfirmAuthenticator, StartAuthenticator, authenticator_status};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// `/login/code`: the second step of signing in, after a right password.
#[component]
pub fn SecondStepPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let step = ServerAction::<SecondStep>::new();
    let value = result_of(step);
    // A full page load: the session changed, and the console must be rendered for it.
    Effect::new(move |_| {
        if let Some(Ok(signed_in)) = value.get() {
            super::go_to(&signed_in.redirect_to);
        }
    });
    let pending = step.pending();
    view! {
        <Title text="Enter your code" />
        <main class="auth-page">
            <section class="auth-card">
                <h1 class="brand-title">"KYC Desk"</h1>
                <p class="muted">"Enter the six-digit code from your authenticator app."</p>
                <ActionForm action=step attr:data-testid="second-step-form">
                    <input type="hidden" name="next" prop:value=next />
                    <TextField label="Code" name="code" id_prefix="second" autocomplete="one-time-code" error=field_message(value, "code") />
                    <ErrorBanner message=failure_message(value) />
                    <button type="submit" class="primary" disabled=move || pending.get()>
                        {move || if pending.get() { "Checking…" } else { "Continue" }}
                    </button>
                </ActionForm>
                <p><a href="/login" rel="external">"Sign in as someone else"</a></p>
            </section>
        </main>
    }
}

/// `/account/authenticator`.
#[component]
pub fn AuthenticatorPage() -> impl IntoView {
    let status = Resource::new(|| (), |_| authenticator_status());
    view! {
        <Title text="Authenticator app" />
        <section class="panel narrow">
            <h1>"Authenticator app"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(status) if status.enrolled => view! {
                            <p class="banner success" data-testid="authenticator-enrolled">
                                "An authenticator app is set up for your account."
                            </p>
                        }.into_any(),
                        Ok(_) => view! { <Enrol /> }.into_any(),
                        Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn Enrol() -> impl IntoView {
    let start = ServerAction::<StartAuthenticator>::new();
    let confirm = ServerAction::<ConfirmAuthenticator>::new();
    let started = result_of(start);
    let confirmed = result_of(confirm);
    let confirm_pending = confirm.pending();
    view! {
        <p>
            "Use an authenticator app (on your phone or computer) for a six-digit code that changes every 30 seconds."
        </p>
        {move || match started.get() {
            Some(Ok(enrolment)) if !matches!(confirmed.get(), Some(Ok(()))) => view! {
                <div data-testid="authenticator-setup">
                    <p>"1. Scan this code with the app:"</p>
                    <div class="qr" data-testid="authenticator-qr" inner_html=enrolment.qr_svg.clone()></div>
                    <p>"Or type this key into the app:"</p>
                    <p><code data-testid="authenticator-key">{enrolment.manual_key.clone()}</code></p>
                    <p>"2. Enter the code the app shows now:"</p>
                    <ActionForm action=confirm attr:data-testid="authenticator-confirm-form">
                        <TextField label="Code" name="code" id_prefix="totp" autocomplete="one-time-code" error=field_message(confirmed, "code") />
                        <ErrorBanner message=failure_message(confirmed) />
                        <button type="submit" class="primary" disabled=move || confirm_pending.get()>
                            {move || if confirm_pending.get() { "Checking…" } else { "Confirm" }}
                        </button>
                    </ActionForm>
                </div>
            }.into_any(),
            _ if matches!(confirmed.get(), Some(Ok(()))) => view! {
                <p class="banner success" role="status" data-testid="authenticator-confirmed">
                    "Your authenticator app is set up."
                </p>
            }.into_any(),
            other => view! {
                <ActionForm action=start attr:data-testid="authenticator-start-form">
                    <ErrorBanner message=Signal::derive(move || match other.clone() {
                        Some(Err(error)) => Some(error.to_string()),
                        _ => None,
                    }) />
                    <button type="submit" class="primary" data-testid="authenticator-start">
                        "Set up an authenticator app"
                    </button>
                </ActionForm>
            }.into_any(),
        }}
    }
}
