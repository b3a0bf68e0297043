//! The second step of signing in, and the caller's authenticator (TOTP) set-up: scan the QR
//! code (or type the key), confirm with a first code, keep the recovery codes shown once; later,
//! removal; new recovery codes for any second factor (authenticator or passkeys). The key is
//! shown only while the set-up is unconfirmed.

use super::step_up::ActionFailure;
use super::{
    ErrorBanner, TextField, failure_message, field_message, go_to, page_resource, result_of,
};
use crate::api::auth::SecondStep;
use crate::api::factors::{
    AuthenticatorState, ConfirmAuthenticator, NewRecoveryCodes, RemoveAuthenticator,
    StartAuthenticator, authenticator_status,
};
use crate::api::passkeys::{
    BeginPasskeyRegistration, RemovePasskey, SecondStepChoices, begin_passkey_sign_in,
    finish_passkey_registration, finish_passkey_sign_in, list_passkeys, second_step_options,
};
use crate::types::{AppError, CurrentUser};

/// Recovery codes made at a time (as the server makes them).
const RECOVERY_CODES: usize = 10;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// `/login/code`: the second step of signing in, after a right password: a code from the
/// authenticator app (or a recovery code), or a passkey.
#[component]
pub fn SecondStepPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let step = ServerAction::<SecondStep>::new();
    let value = result_of(step);
    let choices = page_resource(|| (), |_| second_step_options());
    // A full page load: the session changed, and the console must be rendered for it.
    Effect::new(move |_| {
        if let Some(Ok(signed_in)) = value.get() {
            super::go_to(&signed_in.redirect_to);
        }
    });
    let passkey_error = RwSignal::new(None::<String>);
    let use_passkey = move |_| {
        passkey_error.set(None);
        let next = next();
        leptos::task::spawn_local(async move {
            match sign_in_with_passkey(next).await {
                Ok(to) => super::go_to(&to),
                Err(error) => passkey_error.set(Some(error)),
            }
        });
    };
    let pending = step.pending();
    view! {
        <Title text="Second step" />
        <main class="auth-page">
            <section class="auth-card">
                <h1 class="brand-title">"KYC Desk"</h1>
                <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        let choices = choices.await.unwrap_or(SecondStepChoices { code: true, passkey: false });
                        view! {
                            {choices.passkey.then(|| view! {
                                <p class="muted">"Use your passkey to finish signing in."</p>
                                <button type="button" class="primary" data-testid="second-step-passkey" on:click=use_passkey>
                                    "Use a passkey"
                                </button>
                                <ErrorBanner message=passkey_error />
                                <p class="muted">{if choices.code { "Or enter a code:" } else { "Lost it? Enter one of your recovery codes:" }}</p>
                            })}
                            {(!choices.passkey).then(|| view! {
                                <p class="muted">"Enter the six-digit code from your authenticator app, or one of your recovery codes."</p>
                            })}
                        }
                    })}
                </Suspense>
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

/// The second step with a passkey: where to go next, or why not.
async fn sign_in_with_passkey(next: String) -> Result<String, String> {
    let options = begin_passkey_sign_in().await.map_err(|e| e.to_string())?;
    let answer = super::webauthn::get(&options).await?;
    finish_passkey_sign_in(answer, Some(next))
        .await
        .map(|signed_in| signed_in.redirect_to)
        .map_err(|e| e.to_string())
}

/// `/account/authenticator`.
#[component]
pub fn AuthenticatorPage() -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let status = page_resource(|| (), |_| authenticator_status());
    view! {
        <Title text="Second factors" />
        <section class="panel narrow">
            <h1>"Second factors"</h1>
            {me.must_enrol.then(|| view! {
                <p class="banner info" data-testid="must-enrol">
                    "Your role must use a second factor. Set up an authenticator app to continue."
                </p>
            })}
            <Passkeys />
            <h2>"Authenticator app"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(status) => {
                            let left = status.recovery_codes_left;
                            let codes = status.any_factor.then(|| view! { <RecoveryCodesPanel left /> });
                            let app = if status.enrolled {
                                view! { <Enrolled status /> }.into_any()
                            } else {
                                view! { <Enrol /> }.into_any()
                            };
                            view! { {app} {codes} }.into_any()
                        }
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

/// The recovery codes left, and new ones (for any second factor: authenticator or passkeys).
#[component]
fn RecoveryCodesPanel(left: i64) -> impl IntoView {
    let renew = ServerAction::<NewRecoveryCodes>::new();
    let renewed = result_of(renew);
    view! {
        <h2>"Recovery codes"</h2>
        <p data-testid="recovery-codes-left">
            {format!("Recovery codes left: {left} of {RECOVERY_CODES}.")}
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
    }
}

/// A confirmed authenticator: removal (unless the role must keep it).
#[component]
fn Enrolled(status: AuthenticatorState) -> impl IntoView {
    let remove = ServerAction::<RemoveAuthenticator>::new();
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
                {(!codes.codes.is_empty()).then(|| view! { <RecoveryCodeList codes=codes.codes.clone() /> })}
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

/// The caller's passkeys: the list, adding one (named), removing one.
#[component]
fn Passkeys() -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let forced = me.must_enrol;
    let begin = ServerAction::<BeginPasskeyRegistration>::new();
    let remove = ServerAction::<RemovePasskey>::new();
    let begun = result_of(begin);
    let removed = result_of(remove);
    // The browser's half and the server's verification, after the options arrived.
    let added = RwSignal::new(None::<Result<Vec<String>, String>>);
    let adding = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(Ok(options)) = begun.get() {
            adding.set(true);
            leptos::task::spawn_local(async move {
                let outcome = async {
                    let answer = super::webauthn::create(&options).await?;
                    finish_passkey_registration(answer)
                        .await
                        .map(|codes| codes.codes)
                        .map_err(|e| e.to_string())
                }
                .await;
                added.set(Some(outcome));
                adding.set(false);
            });
        }
    });
    let list = page_resource(
        move || {
            (
                added.get().is_some_and(|r| r.is_ok()),
                remove.version().get(),
            )
        },
        |_| list_passkeys(),
    );
    view! {
        <h2>"Passkeys"</h2>
        <p>
            "A passkey is kept by your device (phone, laptop, security key) and unlocked with your fingerprint, face or PIN; it cannot be phished or typed into a fake site. Add one for each device you use."
        </p>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Ok(rows) if rows.is_empty() => view! { <p class="muted" data-testid="no-passkeys">"No passkey yet."</p> }.into_any(),
                    Ok(rows) => view! {
                        <ul class="passkeys" data-testid="passkey-list">
                            {rows.into_iter().map(|row| {
                                let id = row.id;
                                view! {
                                    <li data-testid="passkey">
                                        <strong>{row.name.clone()}</strong>
                                        <span class="muted">{format!(" — added {}, last used {}", row.created, row.last_used.clone().unwrap_or_else(|| "never".into()))}</span>
                                        " "
                                        <button type="button" class="danger" on:click=move |_| { remove.dispatch(RemovePasskey { id }); }>
                                            {format!("Remove {}", row.name)}
                                        </button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                    Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
        <ActionFailure result=removed again="Press “Remove” again." />
        <ActionForm action=begin attr:data-testid="add-passkey-form">
            <TextField label="Name of the new passkey" name="name" id_prefix="passkey" maxlength=60 hint="For example “Work laptop” or “Phone”." error=field_message(begun, "name") />
            {move || match begun.get() {
                Some(Err(AppError::Validation { .. })) => ().into_any(),
                other => view! { <ActionFailure result=Signal::derive(move || other.clone()) again="Press “Add a passkey” again." /> }.into_any(),
            }}
            {move || match added.get() {
                Some(Err(error)) => view! { <p class="banner error" role="alert" data-testid="passkey-error">{error}</p> }.into_any(),
                Some(Ok(codes)) => view! {
                    <p class="banner success" role="status" data-testid="passkey-added">"The passkey was added."</p>
                    {(!codes.is_empty()).then(|| view! { <RecoveryCodeList codes /> })}
                    {forced.then(|| view! {
                        <button type="button" class="primary" data-testid="enrol-continue" on:click=move |_| go_to("/")>
                            "Continue"
                        </button>
                    })}
                }.into_any(),
                None => ().into_any(),
            }}
            <button type="submit" class="primary" disabled=move || adding.get() data-testid="add-passkey">
                {move || if adding.get() { "Waiting for your device…" } else { "Add a passkey" }}
            </button>
        </ActionForm>
    }
}
