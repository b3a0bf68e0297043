//! Sign-in, sign-out, first-run setup and the caller's own account.

use crate::types::{AppError, CurrentUser, SetupLinkState, SignInChoices, SignedIn};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use {
    crate::server::auth::{self, accounts, guard},
    crate::server::web::respond,
    secrecy::SecretString,
};

/// The signed-in user, or `None`. Never fails for a missing session.
#[server(endpoint = "whoami")]
pub async fn whoami() -> Result<Option<CurrentUser>, AppError> {
    respond(async move {
        let caller = guard::enter("whoami").await?;
        Ok(caller.user.map(|u| u.current_user()))
    })
    .await
}

/// What the sign-in page offers besides a password: single sign-on's button, and (after an
/// SSO sign-out, `provider_sign_out`) where to sign out at the identity provider too.
#[server(endpoint = "sign_in_options")]
pub async fn sign_in_options(provider_sign_out: bool) -> Result<SignInChoices, AppError> {
    use crate::server::auth::single_sign_on;
    respond(async move {
        let caller = guard::enter("sign_in_options").await?;
        let single_sign_on = single_sign_on::sign_in_label(&caller.state).await;
        let provider_sign_out = if provider_sign_out && single_sign_on.is_some() {
            single_sign_on::provider_sign_out_url(&caller.state).await
        } else {
            None
        };
        Ok(SignInChoices {
            single_sign_on,
            provider_sign_out,
        })
    })
    .await
}

/// Signs in with email and password. `next` is where to go afterwards (a local path).
#[server(endpoint = "login")]
pub async fn login(
    email: String,
    password: String,
    next: Option<String>,
) -> Result<SignedIn, AppError> {
    respond(async move {
        let caller = guard::enter("login").await?;
        let user = auth::sign_in(
            &caller.state,
            &caller.session,
            &caller.meta,
            &email,
            SecretString::from(password),
        )
        .await
        .map_err(|error| match error {
            auth::SignInError::Invalid => AppError::InvalidCredentials,
            auth::SignInError::Throttled {
                retry_after_secs,
                message,
            } => AppError::TooManyRequests {
                message,
                retry_after_secs,
            },
            auth::SignInError::Disabled => {
                AppError::Forbidden("This account is disabled. Ask an admin to enable it.".into())
            }
            auth::SignInError::Internal(error) => error.into(),
        })?;
        let redirect_to = if user.second_factor_pending {
            let next: String =
                url::form_urlencoded::byte_serialize(safe_next(next.as_deref()).as_bytes())
                    .collect();
            format!("{}?next={next}", crate::access::SECOND_STEP_PAGE)
        } else if user.must_enrol {
            crate::access::ENROL_PAGE.to_string()
        } else if user.must_change_password {
            "/account/password".to_string()
        } else {
            safe_next(next.as_deref())
        };
        Ok(SignedIn { redirect_to })
    })
    .await
}

/// The second step of signing in: the code from the authenticator app.
#[server(endpoint = "second_step")]
pub async fn second_step(code: String, next: Option<String>) -> Result<SignedIn, AppError> {
    use crate::server::auth::second_factor::{self, CodeCheck};
    respond(async move {
        let (caller, user) = guard::require("second_step").await?;
        match second_factor::complete_sign_in(
            &caller.state,
            &caller.session,
            &caller.meta,
            &user,
            &code,
        )
        .await?
        {
            CodeCheck::Accepted => Ok(SignedIn {
                redirect_to: after_second_step(&user, next.as_deref()),
            }),
            CodeCheck::Wrong => Err(crate::api::factors::wrong_code()),
            CodeCheck::NoFactor => Err(AppError::Unauthorized),
            CodeCheck::Throttled(refusal) => Err(crate::api::factors::too_many(refusal)),
        }
    })
    .await
}

/// Where a user goes once the second step is done: the password page when an initial password
/// is still to be replaced, else `next` (a local path).
#[cfg(feature = "ssr")]
pub(crate) fn after_second_step(
    user: &crate::server::auth::AuthUser,
    next: Option<&str>,
) -> String {
    if user.must_change_password {
        crate::access::PASSWORD_PAGE.to_string()
    } else {
        safe_next(next)
    }
}

/// Only local paths are followed after sign-in (no open redirect).
#[cfg(feature = "ssr")]
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.starts_with("/login")
                && !path.chars().any(char::is_control) =>
        {
            path.to_string()
        }
        _ => "/".into(),
    }
}

/// Ends the caller's session.
#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    respond(async move {
        let caller = guard::enter("logout").await?;
        auth::sign_out(
            &caller.state,
            &caller.session,
            caller.user.as_ref(),
            &caller.meta,
        )
        .await?;
        Ok(())
    })
    .await
}

/// Changes the caller's own password; other sessions of the caller end.
#[server(endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
    confirm_password: String,
) -> Result<(), AppError> {
    respond(async move {
        let (caller, user) = guard::require("change_password").await?;
        accounts::change_own_password(
            &caller.state,
            &caller.session,
            &caller.meta,
            &user,
            SecretString::from(current_password),
            SecretString::from(new_password),
            SecretString::from(confirm_password),
        )
        .await
    })
    .await
}

/// Whether a setup link still works.
#[server(endpoint = "setup_state")]
pub async fn setup_state(token: String) -> Result<SetupLinkState, AppError> {
    respond(async move {
        let caller = guard::enter("setup_state").await?;
        Ok(accounts::setup_link_state(&caller.state, &token).await?)
    })
    .await
}

/// Creates the first admin through the one-time setup link and signs them in.
#[server(endpoint = "create_first_admin")]
pub async fn create_first_admin(
    token: String,
    email: String,
    display_name: String,
    password: String,
    password_confirm: String,
) -> Result<SignedIn, AppError> {
    respond(async move {
        let caller = guard::enter("create_first_admin").await?;
        accounts::create_first_admin(
            &caller.state,
            &caller.session,
            &caller.meta,
            &token,
            accounts::NewAccount {
                email,
                display_name,
                role: String::new(),
                password: SecretString::from(password),
                password_confirm: Some(SecretString::from(password_confirm)),
            },
        )
        .await?;
        Ok(SignedIn {
            redirect_to: "/".into(),
        })
    })
    .await
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/users?x=1")), "/users?x=1");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/login",
            "users",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
