//! The checks at the top of every server function: a valid session, then the role.

use super::{AuthUser, authenticate};
use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::state::AppState;
use crate::server::web::{internal_error, request_meta};
use crate::types::{AppError, Role};
use leptos::prelude::*;
use tower_sessions::Session;

/// Everything a server function needs about its caller.
pub struct Caller {
    /// Shared state.
    pub state: AppState,
    /// The session (for sign-in/out and password changes).
    pub session: Session,
    /// Client address and request id.
    pub meta: RequestMeta,
    /// The signed-in user, if any.
    pub user: Option<AuthUser>,
}

/// The caller, signed in or not.
pub async fn caller() -> Result<Caller, AppError> {
    let state = use_context::<AppState>()
        .ok_or_else(|| internal_error(&"AppState missing from context", false))?;
    let session: Session = leptos_axum::extract()
        .await
        .map_err(|e| internal_error(&e, false))?;
    let meta = request_meta(&state);
    let user = authenticate(&state, &session, &meta).await?;
    Ok(Caller {
        state,
        session,
        meta,
        user,
    })
}

/// A signed-in caller whose role is one of `roles`; 401 without a session, 403 otherwise.
/// A user who still has to replace an initial password may do nothing else.
pub async fn require(roles: &[Role]) -> Result<(Caller, AuthUser), AppError> {
    let (caller, user) = require_signed_in().await?;
    if user.must_change_password {
        return Err(AppError::Forbidden(
            "Change your initial password first (My account → Change password).".into(),
        ));
    }
    if !roles.contains(&user.role) {
        caller
            .state
            .audit
            .record(
                &caller.state.db,
                &caller.meta,
                &AuditEvent::new(user.actor(), "access.denied", Outcome::Denied)
                    .reason("role may not call this server function"),
            )
            .await;
        return Err(AppError::Forbidden(format!(
            "Your role ({}) cannot do this. Ask an admin if you need access.",
            user.role.label()
        )));
    }
    Ok((caller, user))
}

/// A signed-in caller of any role, even one who must still change their password.
pub async fn require_signed_in() -> Result<(Caller, AuthUser), AppError> {
    let caller = caller().await?;
    let user = caller.user.clone().ok_or(AppError::Unauthorized)?;
    Ok((caller, user))
}
