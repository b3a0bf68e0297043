//! The admins' credentials page: masked views, saving and rotating, connection tests.

use crate::credential_kinds::{CredentialInput, CredentialView};
use crate::types::AppError;
use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
use {
    crate::credential_kinds::CredentialKind, crate::server::auth::guard,
    crate::server::credentials, crate::server::web::respond,
};

/// What the credentials page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialsOverview {
    /// Active credentials, masked.
    pub credentials: Vec<CredentialView>,
    /// False when no master key is configured (nothing can be saved).
    pub vault_ready: bool,
    /// The console's own address, to label sandbox credentials.
    pub sandbox_prefix: Option<String>,
}

/// The result of a save.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCredential {
    /// The active version afterwards (masked).
    pub view: CredentialView,
    /// `created`, `rotated` or `updated`.
    pub change: String,
    /// Corrections made on the admin's behalf.
    pub notices: Vec<String>,
}

/// Active credentials (admins only).
#[server(endpoint = "list_credentials")]
pub async fn list_credentials() -> Result<CredentialsOverview, AppError> {
    respond(async move {
        let (caller, _) = guard::require("list_credentials").await?;
        let state = &caller.state;
        Ok(CredentialsOverview {
            credentials: credentials::list(state).await?,
            vault_ready: true,
            sandbox_prefix: state.config.sandbox.then(|| {
                format!(
                    "{}/sandbox/",
                    state.config.public_url.as_str().trim_end_matches('/')
                )
            }),
        })
    })
    .await
}

/// Saves a credential set (admins, after a step-up: the gate asks for it). Entering any secret
/// value, or changing where the secrets are sent, is a rotation.
#[server(endpoint = "save_credential", input = Json)]
pub async fn save_credential(input: CredentialInput) -> Result<SavedCredential, AppError> {
    respond(async move {
        let (caller, admin) = guard::require("save_credential").await?;
        let outcome = credentials::save(
            &caller.state,
            &caller.meta,
            admin.actor(),
            &admin.email,
            &input,
            true,
        )
        .await?;
        Ok(SavedCredential {
            view: outcome.view,
            change: outcome.change.to_string(),
            notices: outcome.notices,
        })
    })
    .await
}

/// Runs the connection test of one credential (admins only). Message Central e-KYC has no
/// harmless call: its test generates one real link and needs `confirm_generation`.
#[server(endpoint = "test_credential")]
pub async fn test_credential(
    kind: String,
    environment: String,
    confirm_generation: Option<bool>,
) -> Result<String, AppError> {
    respond(async move {
        let (caller, admin) = guard::require("test_credential").await?;
        let kind = CredentialKind::parse(&kind)
            .ok_or_else(|| AppError::field("kind", "Unknown credential kind."))?;
        let result = credentials::test_and_record(
            &caller.state,
            &caller.meta,
            admin.actor(),
            kind,
            &environment,
            confirm_generation.unwrap_or(false),
        )
        .await?;
        if result.0 {
            Ok(result.1)
        } else {
            Err(AppError::Conflict(result.1))
        }
    })
    .await
}
