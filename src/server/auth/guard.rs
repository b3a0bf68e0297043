//! The checks at the top of every server function: a valid session, then the role.
//!
//! Who may call what is [`crate::api::SERVER_FN_ACCESS`]. Over HTTP the router's
//! server-function door ([`crate::server::web`]) applies it before the arguments are read;
//! the functions check again here because pages also call them in-process while rendering.
//! When a function is reached over HTTP, its own roles must be the table's, or the call is
//! refused as an internal error: the table and the code cannot silently disagree.

use super::{AuthUser, authenticate};
use crate::api::{self, Access};
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

/// The user the server-function door already authenticated for this request (a request
/// extension), so the function does not authenticate a second time.
#[derive(Debug, Clone)]
pub struct Authenticated(pub AuthUser);

/// The caller, signed in or not.
pub async fn caller() -> Result<Caller, AppError> {
    let state = use_context::<AppState>()
        .ok_or_else(|| internal_error(&"AppState missing from context", false))?;
    let session: Session = leptos_axum::extract()
        .await
        .map_err(|e| internal_error(&e, false))?;
    let meta = request_meta(&state);
    let door = use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Authenticated>().cloned());
    let user = match door {
        Some(Authenticated(user)) => Some(user),
        None => authenticate(&state, &session, &meta).await?,
    };
    Ok(Caller {
        state,
        session,
        meta,
        user,
    })
}

/// Whether `user` may call a server function whose rule is `access`: 401 without a user;
/// 403 for a user who must first replace an initial password (unless any signed-in user may
/// call it); 403, recorded as `access.denied`, for a role the rule leaves out.
pub async fn permit(
    state: &AppState,
    meta: &RequestMeta,
    access: Access,
    user: Option<&AuthUser>,
    endpoint: Option<&str>,
) -> Result<(), AppError> {
    match access {
        Access::Public => Ok(()),
        Access::AnySignedIn => user.map(|_| ()).ok_or(AppError::Unauthorized),
        Access::Roles(roles) => {
            let user = user.ok_or(AppError::Unauthorized)?;
            permit_role(state, meta, roles, user, endpoint).await
        }
    }
}

async fn permit_role(
    state: &AppState,
    meta: &RequestMeta,
    roles: &[Role],
    user: &AuthUser,
    endpoint: Option<&str>,
) -> Result<(), AppError> {
    if user.must_change_password {
        return Err(AppError::Forbidden(
            "Change your initial password first (My account → Change password).".into(),
        ));
    }
    if !roles.contains(&user.role) {
        let mut event = AuditEvent::new(user.actor(), "access.denied", Outcome::Denied)
            .reason("role may not call this server function");
        if let Some(endpoint) = endpoint {
            event = event.detail(serde_json::json!({ "function": endpoint }));
        }
        state.audit.record(&state.db, meta, &event).await;
        return Err(AppError::Forbidden(format!(
            "Your role ({}) cannot do this. Ask an admin if you need access.",
            user.role.label()
        )));
    }
    Ok(())
}

/// The endpoint of the server function this request calls over HTTP, if it is one.
fn http_endpoint() -> Option<String> {
    use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.uri.path().strip_prefix("/api/").map(str::to_string))
}

/// Refuses a function reached over HTTP whose own guard is not its rule in the table.
fn check_rule(agrees: impl Fn(Access) -> bool) -> Result<(), AppError> {
    if let Some(endpoint) = http_endpoint()
        && !api::access_of(&endpoint).is_some_and(agrees)
    {
        return Err(internal_error(
            &format!("the guard of server function {endpoint} disagrees with SERVER_FN_ACCESS"),
            false,
        ));
    }
    Ok(())
}

/// A signed-in caller whose role is one of `roles`; 401 without a session, 403 otherwise.
/// A user who still has to replace an initial password may do nothing else.
pub async fn require(roles: &[Role]) -> Result<(Caller, AuthUser), AppError> {
    check_rule(|access| access.is_roles(roles))?;
    let (caller, user) = signed_in().await?;
    permit_role(&caller.state, &caller.meta, roles, &user, None).await?;
    Ok((caller, user))
}

/// A signed-in caller of any role, even one who must still change their password.
pub async fn require_signed_in() -> Result<(Caller, AuthUser), AppError> {
    check_rule(|access| access == Access::AnySignedIn)?;
    signed_in().await
}

async fn signed_in() -> Result<(Caller, AuthUser), AppError> {
    let caller = caller().await?;
    let user = caller.user.clone().ok_or(AppError::Unauthorized)?;
    Ok((caller, user))
}
