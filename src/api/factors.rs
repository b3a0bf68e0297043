//! The caller's own second factor: authenticator (TOTP) enrolment and its confirmation.

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
            enrolled: second_factor::has_factor(&caller.state, user.id).await?,
        })
    })
    .await
}

/// Begins (or restarts) authenticator enrolment: a fresh key, shown this once.
#[server(endpoint = "start_authenticator")]
pub async fn start_authenticator() -> Result<AuthenticatorEnrolment, AppError> {
    respond(async move {
        let (caller, user) = guard::require("start_authenticator").await?;
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

/// Confirms enrolment with the first code the authenticator shows.
#[server(endpoint = "confirm_authenticator")]
pub async fn confirm_authenticator(code: String) -> Result<(), AppError> {
    respond(async move {
        let (caller, user) = guard::require("confirm_authenticator").await?;
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
            second_factor::CodeCheck::Accepted => Ok(()),
            second_factor::CodeCheck::Wrong => Err(wrong_code()),
            second_factor::CodeCheck::NoFactor => Err(AppError::Conflict(
                "Start the set-up first (or it is already confirmed).".into(),
            )),
            second_factor::CodeCheck::Throttled(refusal) => Err(too_many(refusal)),
        }
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
