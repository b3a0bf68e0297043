//! The admins' users page.

use crate::types::{AppError, UserRow};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {
    crate::server::auth::{accounts, guard},
    crate::server::web::respond,
    secrecy::SecretString,
};

/// Every user (admins only).
#[server(endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    respond(async move {
        let (caller, _) = guard::require("list_users").await?;
        accounts::list(&caller.state).await
    })
    .await
}

/// Creates a user whose initial password must be changed at first sign-in, or (`sso_only`) one
/// who signs in with single sign-on only and has no password (admins only).
#[server(endpoint = "create_user")]
pub async fn create_user(
    email: String,
    display_name: String,
    role: String,
    #[server(default)] password: String,
    #[server(default)] sso_only: Option<String>,
) -> Result<UserRow, AppError> {
    respond(async move {
        let (caller, admin) = guard::require("create_user").await?;
        let sso_only = matches!(sso_only.as_deref(), Some("true" | "on" | "1"));
        accounts::create_user(
            &caller.state,
            &caller.meta,
            admin.actor(),
            accounts::NewAccount {
                email,
                display_name,
                role,
                password: SecretString::from(password),
                password_confirm: None,
            },
            true,
            sso_only,
        )
        .await
    })
    .await
}

/// Changes a user's role (admins only; never the last active admin's).
#[server(endpoint = "set_user_role")]
pub async fn set_user_role(user_id: i64, role: String) -> Result<UserRow, AppError> {
    respond(async move {
        let (caller, admin) = guard::require("set_user_role").await?;
        accounts::set_role(&caller.state, &caller.meta, &admin, user_id, &role).await
    })
    .await
}

/// Disables (ending all their sessions) or enables a user (admins only).
#[server(endpoint = "set_user_disabled")]
pub async fn set_user_disabled(user_id: i64, disabled: bool) -> Result<UserRow, AppError> {
    respond(async move {
        let (caller, admin) = guard::require("set_user_disabled").await?;
        accounts::set_disabled(&caller.state, &caller.meta, &admin, user_id, disabled).await
    })
    .await
}

/// Sets a temporary password that must be changed at next sign-in, ending all the user's
/// sessions (admins only).
#[server(endpoint = "reset_user_password")]
pub async fn reset_user_password(user_id: i64, password: String) -> Result<UserRow, AppError> {
    respond(async move {
        let (caller, admin) = guard::require("reset_user_password").await?;
        accounts::reset_password(
            &caller.state,
            &caller.meta,
            &admin,
            user_id,
            SecretString::from(password),
        )
        .await
    })
    .await
}

/// Resets a user's second factor (lost phone): their authenticator and recovery codes go, all
/// their sessions end, and a role that must have one sets up a new one at the next sign-in
/// (admins, after a step-up).
#[server(endpoint = "reset_user_factors")]
pub async fn reset_user_factors(user_id: i64) -> Result<UserRow, AppError> {
    respond(async move {
        let (caller, admin) = guard::require("reset_user_factors").await?;
        accounts::reset_factors(&caller.state, &caller.meta, &admin, user_id).await
    })
    .await
}

/// Changes how a user signs in: `sso_only` (no password), `allow_password` (the admin then
/// sets a temporary one) or `unlink` (forget the linked single-sign-on identity); ends that
/// user's sessions (admins, after a step-up).
#[server(endpoint = "set_user_sign_on")]
pub async fn set_user_sign_on(user_id: i64, change: String) -> Result<UserRow, AppError> {
    respond(async move {
        let (caller, admin) = guard::require("set_user_sign_on").await?;
        let change = accounts::SignOnChange::parse(&change).ok_or_else(|| {
            AppError::field("change", "Choose sso_only, allow_password or unlink.")
        })?;
        accounts::set_sign_on(&caller.state, &caller.meta, &admin, user_id, change).await
    })
    .await
}
