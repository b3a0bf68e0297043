//! Sign-in, first-run setup and the caller's own password.

use super::{
    ErrorBanner, TextField, failure_message, field_message, go_to, page_resource, result_of,
};
use crate::api::auth::{ChangePassword, CreateFirstAdmin, Login, setup_state, sign_in_options};
use crate::types::{CurrentUser, SetupLinkState};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

/// Rules shown under every new-password field (kept in step with `validation`).
pub const NEW_PASSWORD_HINT: &str =
    "At least 12 characters (at most 128), not your email, not a common password.";

/// The sign-in page.
#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_default();
    let login = ServerAction::<Login>::new();
    Effect::new(move |_| {
        if let Some(Ok(signed_in)) = login.value().get() {
            go_to(&signed_in.redirect_to);
        }
    });
    let pending = login.pending();
    let signed_out_sso = move || query.read().get("signed_out").as_deref() == Some("sso");
    let options = page_resource(signed_out_sso, sign_in_options);
    let passkey_error = RwSignal::new(None::<String>);
    let use_passkey = move |_| {
        passkey_error.set(None);
        let next = next();
        leptos::task::spawn_local(async move {
            match passkey_sign_in(next).await {
                Ok(to) => go_to(&to),
                Err(error) => passkey_error.set(Some(error)),
            }
        });
    };
    view! {
        <Title text="Sign in" />
        <main class="auth-page">
            <section class="auth-card">
                <h1 class="brand-title">"KYC Desk"</h1>
                <p class="muted">"Sign in with your staff account."</p>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let options = options.await.unwrap_or_default();
                        let sign_out = options.provider_sign_out.map(|url| view! {
                            <p class="banner info" role="status" data-testid="signed-out-sso">
                                "You are signed out of KYC Desk. Your identity provider may still have you signed in there. "
                                <a href=url rel="external" data-testid="provider-sign-out">"Sign out at the identity provider too"</a>
                            </p>
                        });
                        let sign_on = options.single_sign_on.map(|label| {
                            let href = move || {
                                let next: String = next()
                                    .bytes()
                                    .map(|b| if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
                                        (b as char).to_string()
                                    } else {
                                        format!("%{b:02X}")
                                    })
                                    .collect();
                                if next.is_empty() { "/login/sso".to_string() } else { format!("/login/sso?next={next}") }
                            };
                            view! {
                                <a class="button primary sso" rel="external" href=href data-testid="sso-login">
                                    {format!("Sign in with {label}")}
                                </a>
                                <p class="muted">"Or with your email and password:"</p>
                            }
                        });
                        view! { {sign_out} {sign_on} }
                    })}
                </Suspense>
                <ActionForm action=login attr:data-testid="login-form">
                    <input type="hidden" name="next" prop:value=next />
                    <TextField
                        label="Email"
                        name="email"
                        id_prefix="login"
                        kind="email"
                        autocomplete="username"
                    />
                    <TextField
                        label="Password"
                        name="password"
                        id_prefix="login"
                        kind="password"
                        autocomplete="current-password"
                    />
                    <ErrorBanner message=failure_message(result_of(login)) />
                    <button type="submit" class="primary" disabled=move || pending.get()>
                        {move || if pending.get() { "Signing in…" } else { "Sign in" }}
                    </button>
                </ActionForm>
                <p class="muted">"Or, if you added a passkey on this device:"</p>
                <button type="button" class="secondary" data-testid="passkey-login" on:click=use_passkey>
                    "Use a passkey instead"
                </button>
                <ErrorBanner message=passkey_error />
            </section>
        </main>
    }
}

/// The one-time "create the first admin" page reached through the link in the server log.
#[component]
pub fn SetupPage() -> impl IntoView {
    let params = use_params_map();
    let token = move || params.read().get("token").unwrap_or_default();
    let link_state = page_resource(token, setup_state);
    view! {
        <Title text="Set up KYC Desk" />
        <main class="auth-page">
            <section class="auth-card wide">
                <h1 class="brand-title">"Set up KYC Desk"</h1>
                <Suspense fallback=|| view! { <p class="muted">"Checking the setup link…"</p> }>
                    {move || Suspend::new(async move {
                        match link_state.await {
                            Ok(SetupLinkState::Usable) => view! { <FirstAdminForm token=token() /> }.into_any(),
                            Ok(SetupLinkState::AlreadySetUp) => view! {
                                <p class="banner info" data-testid="setup-done">
                                    "KYC Desk is already set up, so this link no longer works. "
                                    <a href="/login">"Sign in"</a>
                                </p>
                            }.into_any(),
                            Ok(SetupLinkState::Unknown) => view! {
                                <p class="banner error" data-testid="setup-invalid">
                                    "This setup link is not valid. Copy the whole link printed in the server log when KYC Desk started."
                                </p>
                            }.into_any(),
                            Err(error) => view! { <p class="banner error">{error.to_string()}</p> }.into_any(),
                        }
                    })}
                </Suspense>
            </section>
        </main>
    }
}

#[component]
fn FirstAdminForm(token: String) -> impl IntoView {
    let create = ServerAction::<CreateFirstAdmin>::new();
    Effect::new(move |_| {
        if let Some(Ok(done)) = create.value().get() {
            go_to(&done.redirect_to);
        }
    });
    let value = result_of(create);
    let pending = create.pending();
    view! {
        <p>
            "No account exists yet. Create the first admin; they can then add the rest of the team."
        </p>
        <ActionForm action=create attr:data-testid="setup-form">
            <input type="hidden" name="token" value=token />
            <TextField label="Email" name="email" id_prefix="setup" kind="email" autocomplete="username" error=field_message(value, "email") />
            <TextField label="Display name" name="display_name" id_prefix="setup" autocomplete="name" maxlength=100 error=field_message(value, "display_name") />
            <TextField
                label="Password"
                name="password"
                id_prefix="setup"
                kind="password"
                autocomplete="new-password"
                hint=NEW_PASSWORD_HINT
                error=field_message(value, "password")
            />
            <TextField label="Repeat password" name="password_confirm" id_prefix="setup" kind="password" autocomplete="new-password" error=field_message(value, "password_confirm") />
            <ErrorBanner message=failure_message(value) />
            <button type="submit" class="primary" disabled=move || pending.get()>
                {move || if pending.get() { "Creating…" } else { "Create admin and sign in" }}
            </button>
        </ActionForm>
    }
}

/// Signing in with a passkey alone: where to go next, or why not.
async fn passkey_sign_in(next: String) -> Result<String, String> {
    use crate::api::passkeys::{begin_passkey_login, finish_passkey_login};
    let options = begin_passkey_login().await.map_err(|e| e.to_string())?;
    let answer = super::webauthn::get(&options).await?;
    finish_passkey_login(answer, Some(next))
        .await
        .map(|signed_in| signed_in.redirect_to)
        .map_err(|e| e.to_string())
}

/// Change one's own password (forced after an admin set an initial or reset password).
#[component]
pub fn ChangePasswordPage() -> impl IntoView {
    let me = expect_context::<CurrentUser>();
    let forced = me.must_change_password;
    let change = ServerAction::<ChangePassword>::new();
    let value = result_of(change);
    let pending = change.pending();
    Effect::new(move |_| {
        if forced && matches!(value.get(), Some(Ok(()))) {
            go_to("/");
        }
    });
    view! {
        <Title text="Change password" />
        <section class="panel narrow">
            <h1>"Change password"</h1>
            {forced.then(|| view! {
                <p class="banner info" data-testid="must-change">
                    "An admin set your current password. Choose your own before you continue."
                </p>
            })}
            <ActionForm action=change attr:data-testid="change-password-form">
                <TextField label="Current password" name="current_password" id_prefix="pw" kind="password" autocomplete="current-password" error=field_message(value, "current_password") />
                <TextField label="New password" name="new_password" id_prefix="pw" kind="password" autocomplete="new-password" hint=NEW_PASSWORD_HINT error=field_message(value, "new_password") />
                <TextField label="Repeat new password" name="confirm_password" id_prefix="pw" kind="password" autocomplete="new-password" error=field_message(value, "confirm_password") />
                <ErrorBanner message=failure_message(value) />
                {move || matches!(value.get(), Some(Ok(()))).then(|| view! {
                    <p class="banner success" role="status" data-testid="password-changed">
                        "Your password was changed. Your other sessions were signed out."
                    </p>
                })}
                <button type="submit" class="primary" disabled=move || pending.get()>
                    {move || if pending.get() { "Saving…" } else { "Change password" }}
                </button>
            </ActionForm>
        </section>
    }
}
