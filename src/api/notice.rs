//! The customer's privacy notice: reading the current version and saving a new one (admins;
//! saving after a step-up). Versions are never changed once written.

use crate::types::{AppError, PrivacyNotice};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {crate::server::auth::guard, crate::server::customer::notice, crate::server::web::respond};

/// The current privacy notice (admins).
#[server(endpoint = "privacy_notice")]
pub async fn get_privacy_notice() -> Result<PrivacyNotice, AppError> {
    respond(async move {
        let (caller, _) = guard::require("privacy_notice").await?;
        notice::current(&caller.state).await
    })
    .await
}

/// Saves the notice as a new version (admins, after a step-up); every part of both languages
/// is required.
#[server(endpoint = "save_privacy_notice")]
pub async fn save_privacy_notice(notice: PrivacyNotice) -> Result<PrivacyNotice, AppError> {
    respond(async move {
        let (caller, user) = guard::require("save_privacy_notice").await?;
        notice::save(&caller.state, &caller.meta, &user, notice).await
    })
    .await
}
