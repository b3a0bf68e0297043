//! The second step of signing in, and the caller's authenticator (TOTP) set-up: scan the QR
//! code (or type the key), confirm with a first code, keep the recovery codes shown once; later,
//! new recovery codes or removal. The key is shown only while the set-up is unconfirmed.

use super::step_up::ActionFailure;
use super::{ErrorBanner, TextField, failure_message, field_message, go_to, result_of};
use crate::api::auth::SecondStep;
use crate::api::factors::{
    AuthenticatorState, ConfirmAuthenticator, NewRecoveryCodes, RemoveAuthenticator,
    StartAuthenticator, authenticator_status,
};
use crate::types::CurrentUser;

/// Recovery codes made at a time (as the server makes them).
const RECOVERY_CODES: usize = 10;
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
                <p class="muted">"Enter the six-digit code from your authenticator app, or one of your recovery codes."</p>
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
    let me = expect_context::<CurrentUser>();
    let status = Resource::new(|| (), |_| authenticator_status());
    view! {
        <Title text="Authenticator app" />
        <section class="panel narrow">
            <h1>"Authenticator app"</h1>
            {me.must_enrol.then(|| view! {
                <p class="banner info" data-testid="must-enrol">
                    "Your role must use a second factor. Set up an authenticator app to continue."
                </p>
            })}
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(status) if status.enrolled => view! { <Enrolled status /> }.into_any(),
                        Ok(_) => view! { <Enrol /> }.into_any(),
                        Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The ten recovery codes, shown once.
#[component]
fn RecoveryCodeList(codes: Vec<String>) -> impl IntoView {
    let text = codes.join("\n");
    view! {
        <div data-testid="recovery-codes">
            <h2>"Recovery codes"</h2>
            <p>
                "If you lose your phone, each of these codes signs you in once instead of an authenticator code. "
                <strong>"They are shown only now:"</strong>
                " keep them somewhere safe (a password manager, or printed and locked away)."
            </p>
            <ol class="recovery-codes">
                {codes.into_iter().map(|code| view! { <li><code>{code}</code></li> }).collect_view()}
            </ol>
            <textarea class="visually-hidden" aria-label="Recovery codes, for copying" readonly rows="10">{text}</textarea>
        </div>
    }
}

/// A confirmed authenticator: recovery codes left, new codes, removal.
#[component]
fn Enrolled(status: AuthenticatorState) -> impl IntoView {
    let renew = ServerAction::<NewRecoveryCodes>::new();
    let remove = ServerAction::<RemoveAuthenticator>::new();
    let renewed = result_of(renew);
    let removed = result_of(remove);
    Effect::new(move |_| {
        if let Some(Ok(())) = removed.get() {
            go_to(crate::access::ENROL_PAGE);
        }
    });
    view! {
        <p class="banner success" data-testid="authenticator-enrolled">
            "An authenticator app is set up for your account."
        </p>
        <p data-testid="recovery-codes-left">
            {format!("Recovery codes left: {} of {RECOVERY_CODES}.", status.recovery_codes_left)}
        </p>
        {move || match renewed.get() {
            Some(Ok(codes)) => view! { <RecoveryCodeList codes=codes.codes /> }.into_any(),
            _ => ().into_any(),
        }}
        <ActionForm action=renew attr:data-testid="recovery-codes-form">
            <p class="muted">"New codes replace all the old ones."</p>
            <ActionFailure result=renewed again="Press “Make new recovery codes” again." />
            <button type="submit">"Make new recovery codes"</button>
        </ActionForm>
        {if status.required {
            view! {
                <p class="muted" data-testid="authenticator-required">
                    "Your role must have a second factor, so this one cannot be removed. Changing phones? Ask an admin to reset it; you then set up the new one when you next sign in."
                </p>
            }.into_any()
        } else {
            view! {
                <ActionForm action=remove attr:data-testid="remove-authenticator-form">
                    <ActionFailure result=removed again="Press “Remove authenticator” again." />
                    <button type="submit" class="danger">"Remove authenticator"</button>
                </ActionForm>
            }.into_any()
        }}
    }
}

#[component]
fn Enrol() -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let start = ServerAction::<StartAuthenticator>::new();
    let confirm = ServerAction::<ConfirmAuthenticator>::new();
    let started = result_of(start);
    let confirmed = result_of(confirm);
    let confirm_pending = confirm.pending();
    let forced = me.must_enrol;
    view! {
        <p>
            "Use an authenticator app (on your phone or computer) for a six-digit code that changes every 30 seconds."
        </p>
        {move || match (started.get(), confirmed.get()) {
            (_, Some(Ok(codes))) => view! {
                <p class="banner success" role="status" data-testid="authenticator-confirmed">
                    "Your authenticator app is set up."
                </p>
                <RecoveryCodeList codes=codes.codes />
                {forced.then(|| view! {
                    <button type="button" class="primary" data-testid="enrol-continue" on:click=move |_| go_to("/")>
                        "I have saved them: continue"
                    </button>
                })}
            }.into_any(),
            (Some(Ok(enrolment)), _) => view! {
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
            (other, _) => view! {
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
