//! The caller's own second factor: authenticator (TOTP) enrolment and its confirmation,
//! recovery codes, removal, and the step-up (confirming it is them) before sensitive actions.

use crate::types::AppError;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use {
    crate::server::auth::guard,
    crate::server::auth::{second_factor, throttle},
    crate::server::web::respond,
    secrecy::ExposeSecret,
};

/// Whether the caller has a confirmed authenticator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatorState {
    /// A confirmed authenticator is set up.
    pub enrolled: bool,
    /// The caller's role must have a second factor (so it cannot be removed).
    pub required: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: i64,
    /// The caller has a second factor of any kind (an authenticator or a passkey), so recovery
    /// codes can be made anew.
    #[serde(default)]
    pub any_factor: bool,
}

/// The recovery codes, shown once. Deliberately no `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryCodes {
    /// Ten single-use codes (none when the account had them already from another factor).
    pub codes: Vec<String>,
}

/// A confirmed step-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteppedUp {
    /// Minutes the confirmation lasts.
    pub minutes: u64,
}

/// What the enrolment page shows once, before the first code confirms it. Deliberately no
/// `Debug`: the key is the seed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatorEnrolment {
    /// The base32 key for typing in by hand.
    pub manual_key: String,
    /// The `otpauth://` URI as an SVG QR code (server-rendered).
    pub qr_svg: String,
}

/// Whether the caller has an authenticator.
#[server(endpoint = "authenticator_status")]
pub async fn authenticator_status() -> Result<AuthenticatorState, AppError> {
    respond(async move {
        let (caller, user) = guard::require("authenticator_status").await?;
        Ok(AuthenticatorState {
            enrolled: second_factor::has_authenticator(&caller.state, user.id).await?,
            required: crate::server::auth::must_have_factor(&caller.state, user.role),
            recovery_codes_left: second_factor::recovery_codes_left(&caller.state, user.id).await?,
            any_factor: second_factor::has_factor(&caller.state, user.id).await?,
        })
    })
    .await
}

/// Begins (or restarts) authenticator enrolment: a fresh key, shown this once.
#[server(endpoint = "start_authenticator")]
pub async fn start_authenticator() -> Result<AuthenticatorEnrolment, AppError> {
    respond(async move {
        let (caller, user) = guard::require("start_authenticator").await?;
        guard::step_up_if_enrolled(&caller.state, &user).await?;
        let enrolment = second_factor::begin_enrolment(&caller.state, &user)
            .await?
            .ok_or_else(|| {
                AppError::Conflict("An authenticator is already set up for your account.".into())
            })?;
        Ok(AuthenticatorEnrolment {
            manual_key: enrolment.manual_key.expose_secret().to_string(),
            qr_svg: enrolment.qr_svg.expose_secret().to_string(),
        })
    })
    .await
}

/// Confirms enrolment with the first code the authenticator shows; answers the ten recovery
/// codes, shown this once.
#[server(endpoint = "confirm_authenticator")]
pub async fn confirm_authenticator(code: String) -> Result<RecoveryCodes, AppError> {
    respond(async move {
        let (caller, user) = guard::require("confirm_authenticator").await?;
        // Recovery codes come with the first second factor (a passkey's come with it).
        let first_factor = !second_factor::has_factor(&caller.state, user.id).await?;
        match second_factor::check_code(
            &caller.state,
            &caller.meta,
            &user,
            &code,
            true,
            "auth.second_factor_enrol",
        )
        .await?
        {
            second_factor::CodeCheck::Accepted => {
                // Enrolling is giving the second factor: the session counts as confirmed.
                crate::server::auth::mark_stepped_up(&caller.session).await?;
                if !first_factor {
                    return Ok(RecoveryCodes { codes: Vec::new() });
                }
                let codes =
                    second_factor::issue_recovery_codes(&caller.state, &caller.meta, &user).await?;
                Ok(RecoveryCodes {
                    codes: codes
                        .iter()
                        .map(|c| c.expose_secret().to_string())
                        .collect(),
                })
            }
            second_factor::CodeCheck::Wrong => Err(wrong_code()),
            second_factor::CodeCheck::NoFactor => Err(AppError::Conflict(
                "Start the set-up first (or it is already confirmed).".into(),
            )),
            second_factor::CodeCheck::Throttled(refusal) => Err(too_many(refusal)),
        }
    })
    .await
}

/// Confirms it is the caller (step-up) with a fresh authenticator code, or their password when
/// they have no second factor: the sensitive actions open for the step-up window.
#[server(endpoint = "step_up")]
pub async fn step_up(secret: String) -> Result<SteppedUp, AppError> {
    respond(async move {
        let (caller, user) = guard::require("step_up").await?;
        if secret.trim().is_empty() {
            return Err(AppError::field(
                "secret",
                "Enter the code from your authenticator app (or your password).",
            ));
        }
        match second_factor::step_up(
            &caller.state,
            &caller.session,
            &caller.meta,
            &user,
            secrecy::SecretString::from(secret),
        )
        .await?
        {
            second_factor::StepUp::Confirmed => Ok(SteppedUp {
                minutes: caller.state.config.step_up_window.as_secs().div_ceil(60),
            }),
            second_factor::StepUp::Wrong => Err(AppError::field(
                "secret",
                "That is not right (a code is accepted once). Try again.",
            )),
            second_factor::StepUp::Throttled(refusal) => Err(too_many(refusal)),
            second_factor::StepUp::UsePasskey => Err(AppError::field(
                "secret",
                "Your second factor is a passkey: confirm with it (the “Use a passkey” button).",
            )),
            second_factor::StepUp::UseSingleSignOn => Err(AppError::field(
                "secret",
                "You sign in with single sign-on and have no password: confirm by signing in again at your identity provider.",
            )),
        }
    })
    .await
}

/// Makes ten new recovery codes (the old ones stop working); shown this once.
#[server(endpoint = "new_recovery_codes")]
pub async fn new_recovery_codes() -> Result<RecoveryCodes, AppError> {
    respond(async move {
        let (caller, user) = guard::require("new_recovery_codes").await?;
        if !second_factor::has_factor(&caller.state, user.id).await? {
            return Err(AppError::Conflict(
                "Set up an authenticator app first; recovery codes belong to it.".into(),
            ));
        }
        let codes = second_factor::issue_recovery_codes(&caller.state, &caller.meta, &user).await?;
        Ok(RecoveryCodes {
            codes: codes
                .iter()
                .map(|c| c.expose_secret().to_string())
                .collect(),
        })
    })
    .await
}

/// Removes the caller's authenticator and recovery codes (not when their role must have one).
#[server(endpoint = "remove_authenticator")]
pub async fn remove_authenticator() -> Result<(), AppError> {
    respond(async move {
        let (caller, user) = guard::require("remove_authenticator").await?;
        second_factor::remove_own(&caller.state, &caller.meta, &user)
            .await?
            .map_err(AppError::Conflict)
    })
    .await
}

/// A wrong (or already used) code, as the form shows it.
#[cfg(feature = "ssr")]
pub(crate) fn wrong_code() -> AppError {
    AppError::Validation {
        message: "That code is not right.".into(),
        fields: vec![crate::types::FieldError {
            field: "code".into(),
            message: "That code is not right (or was used already). Enter the six digits your app shows now."
                .into(),
        }],
    }
}

/// Too many wrong codes.
#[cfg(feature = "ssr")]
pub(crate) fn too_many(refusal: throttle::Refusal) -> AppError {
    let message = match refusal.scope {
        throttle::Scope::InFlight => refusal.message(),
        _ => format!(
            "Too many wrong codes. Try again in {}.",
            throttle::human_wait(refusal.retry_after_secs)
        ),
    };
    AppError::TooManyRequests {
        message,
        retry_after_secs: refusal.retry_after_secs,
    }
}
