//! The caller's passkeys: adding (two halves: the browser's options, then its answer), listing,
//! removing, and using one for the second step of signing in or for a step-up.

use crate::types::{AppError, PasskeyRow, SignedIn};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use {
    crate::api::factors::too_many,
    crate::server::auth::{guard, passkeys, second_factor},
    crate::server::web::respond,
    secrecy::ExposeSecret,
};

/// How a half-signed-in user can give the second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondStepChoices {
    /// With a code from an authenticator app.
    pub code: bool,
    /// With a passkey.
    pub passkey: bool,
}

/// The caller's passkeys.
#[server(endpoint = "list_passkeys")]
pub async fn list_passkeys() -> Result<Vec<PasskeyRow>, AppError> {
    respond(async move {
        let (caller, user) = guard::require("list_passkeys").await?;
        passkeys::list(&caller.state, user.id).await
    })
    .await
}

/// Begins adding a passkey named `name`: the options for `navigator.credentials.create` (JSON).
#[server(endpoint = "begin_passkey_registration")]
pub async fn begin_passkey_registration(name: String) -> Result<String, AppError> {
    respond(async move {
        let (caller, user) = guard::require("begin_passkey_registration").await?;
        guard::step_up_if_enrolled(&caller.state, &user).await?;
        passkeys::begin_registration(&caller.state, &caller.session, &user, &name).await
    })
    .await
}

/// Finishes adding a passkey with the browser's answer (JSON); answers the recovery codes when
/// it is the account's first second factor (shown once), else none.
#[server(endpoint = "finish_passkey_registration")]
pub async fn finish_passkey_registration(
    credential: String,
) -> Result<crate::api::factors::RecoveryCodes, AppError> {
    respond(async move {
        let (caller, user) = guard::require("finish_passkey_registration").await?;
        let codes = passkeys::finish_registration(
            &caller.state,
            &caller.session,
            &caller.meta,
            &user,
            &credential,
        )
        .await?
        .unwrap_or_default();
        Ok(crate::api::factors::RecoveryCodes {
            codes: codes
                .iter()
                .map(|c| c.expose_secret().to_string())
                .collect(),
        })
    })
    .await
}

/// Removes one of the caller's passkeys (not the last second factor of a role that must have
/// one).
#[server(endpoint = "remove_passkey")]
pub async fn remove_passkey(id: i64) -> Result<(), AppError> {
    respond(async move {
        let (caller, user) = guard::require("remove_passkey").await?;
        passkeys::remove(&caller.state, &caller.meta, &user, id).await
    })
    .await
}

/// What the half-signed-in caller can give as the second factor.
#[server(endpoint = "second_step_options")]
pub async fn second_step_options() -> Result<SecondStepChoices, AppError> {
    respond(async move {
        let (caller, user) = guard::require("second_step_options").await?;
        let factors = second_factor::factors_of(&caller.state, user.id).await?;
        Ok(SecondStepChoices {
            code: factors.authenticator,
            passkey: factors.passkeys > 0 && caller.state.webauthn.is_some(),
        })
    })
    .await
}

/// Begins the second step with a passkey: the options for `navigator.credentials.get` (JSON).
#[server(endpoint = "begin_passkey_sign_in")]
pub async fn begin_passkey_sign_in() -> Result<String, AppError> {
    respond(async move {
        let (caller, user) = guard::require("begin_passkey_sign_in").await?;
        passkeys::begin_authentication(
            &caller.state,
            &caller.session,
            &user,
            passkeys::Purpose::SignIn,
        )
        .await
    })
    .await
}

/// Finishes the second step with the browser's passkey answer (JSON): fully signed in.
#[server(endpoint = "finish_passkey_sign_in")]
pub async fn finish_passkey_sign_in(
    credential: String,
    next: Option<String>,
) -> Result<SignedIn, AppError> {
    respond(async move {
        let (caller, user) = guard::require("finish_passkey_sign_in").await?;
        match passkeys::finish_authentication(
            &caller.state,
            &caller.session,
            &caller.meta,
            &user,
            passkeys::Purpose::SignIn,
            &credential,
        )
        .await?
        {
            Ok(true) => {
                second_factor::signed_in_with_factor(&caller.state, &caller.session, &user, false)
                    .await?;
                Ok(SignedIn {
                    redirect_to: crate::api::auth::after_second_step(&user, next.as_deref()),
                })
            }
            Ok(false) => Err(passkey_refused()),
            Err(refusal) => Err(too_many(refusal)),
        }
    })
    .await
}

/// Begins a step-up with a passkey: the options for `navigator.credentials.get` (JSON).
#[server(endpoint = "begin_passkey_step_up")]
pub async fn begin_passkey_step_up() -> Result<String, AppError> {
    respond(async move {
        let (caller, user) = guard::require("begin_passkey_step_up").await?;
        passkeys::begin_authentication(
            &caller.state,
            &caller.session,
            &user,
            passkeys::Purpose::StepUp,
        )
        .await
    })
    .await
}

/// Finishes a step-up with the browser's passkey answer (JSON).
#[server(endpoint = "finish_passkey_step_up")]
pub async fn finish_passkey_step_up(
    credential: String,
) -> Result<crate::api::factors::SteppedUp, AppError> {
    respond(async move {
        let (caller, user) = guard::require("finish_passkey_step_up").await?;
        match passkeys::finish_authentication(
            &caller.state,
            &caller.session,
            &caller.meta,
            &user,
            passkeys::Purpose::StepUp,
            &credential,
        )
        .await?
        {
            Ok(true) => Ok(crate::api::factors::SteppedUp {
                minutes: caller.state.config.step_up_window.as_secs().div_ceil(60),
            }),
            Ok(false) => Err(passkey_refused()),
            Err(refusal) => Err(too_many(refusal)),
        }
    })
    .await
}

#[cfg(feature = "ssr")]
fn passkey_refused() -> AppError {
    AppError::Forbidden(
        "The passkey was not accepted. Try again, or use another second factor.".into(),
    )
}

/// Begins signing in with a passkey alone (no email, no password): the options for
/// `navigator.credentials.get` (JSON), naming no credential.
#[server(endpoint = "begin_passkey_login")]
pub async fn begin_passkey_login() -> Result<String, AppError> {
    respond(async move {
        let caller = guard::enter("begin_passkey_login").await?;
        passkeys::begin_discovery(&caller.state, &caller.session).await
    })
    .await
}

/// Finishes signing in with a passkey alone: fully signed in (a passkey with user verification
/// is both factors), sent to `next` (a local path) or the password page.
#[server(endpoint = "finish_passkey_login")]
pub async fn finish_passkey_login(
    credential: String,
    next: Option<String>,
) -> Result<SignedIn, AppError> {
    respond(async move {
        let caller = guard::enter("finish_passkey_login").await?;
        match passkeys::finish_discovery(&caller.state, &caller.session, &caller.meta, &credential)
            .await?
        {
            Ok(user) => Ok(SignedIn {
                redirect_to: crate::api::auth::after_second_step(&user, next.as_deref()),
            }),
            Err(passkeys::DiscoveredRefusal::Refused) => Err(AppError::Forbidden(
                "This passkey was not accepted: it may belong to another site or a removed account. Sign in with your email and password.".into(),
            )),
            Err(passkeys::DiscoveredRefusal::Disabled) => Err(AppError::Forbidden(
                "This account is disabled. Ask an admin to enable it.".into(),
            )),
            Err(passkeys::DiscoveredRefusal::Throttled(refusal)) => Err(AppError::TooManyRequests {
                message: refusal.message(),
                retry_after_secs: refusal.retry_after_secs,
            }),
        }
    })
    .await
}
