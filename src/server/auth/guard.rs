//! The one gate: every door — console page, server function (over HTTP and in-process), file
//! route — admits its caller through [`admit`], which reads the door's rule from the access
//! table ([`crate::access`], held in [`AppState::access`]), authenticates the session, holds
//! back a user who must still replace an initial password, checks the role and records a
//! refusal as `access.denied`. The doors in `server::web` only decide how a refusal looks
//! (a redirect, a JSON error, a plain-text 403).

use super::{AuthUser, authenticate};
use crate::access::{Access, page_access};
use crate::server::audit::{AuditEvent, Outcome, RequestMeta, short_path};
use crate::server::state::AppState;
use crate::server::web::{internal_error, request_meta};
use crate::types::{AppError, StepUpMethod};
use leptos::prelude::*;
use tower_sessions::Session;

/// A door a request comes through, named as the access table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door<'a> {
    /// A console page, by its path.
    Page(&'a str),
    /// A server function, by its endpoint (the part after `/api/`).
    ServerFn(&'a str),
    /// A file route, by the route as the router spells it (`/sessions/{public_id}/qr.svg`).
    File(&'a str),
    /// A customer-facing route (no staff account), by the route as the router spells it.
    Customer(&'a str),
    /// A route of signing in (single sign-on's start and callback).
    SignIn(&'a str),
}

/// Why the gate did not let a request through.
#[derive(Debug)]
pub enum Refusal {
    /// No signed-in user (401, or the sign-in page).
    SignIn,
    /// The user must first replace an initial password (403, or the password page).
    ChangePassword(AppError),
    /// The user is half signed in: the second factor is still to be given (403, or the
    /// second-step page).
    SecondStep(AppError),
    /// The user's role must have a second factor and they have none yet (403, or the
    /// enrolment page).
    Enrol(AppError),
    /// A sensitive door, and the user has not confirmed it is them within the step-up window
    /// (403 with [`AppError::StepUpRequired`], or the confirmation page).
    StepUp(AppError),
    /// The role may not pass this door; recorded as `access.denied` (403). Carries the
    /// signed-in user, whom a page door still shows the console to (with its "no access" panel).
    Forbidden(AppError, Box<AuthUser>),
    /// The door is not in the access table (404 for a server function).
    NoSuchDoor(AppError),
    /// The check itself failed (the database, most often): 503 or 500 with the request id.
    Failure(AppError),
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::SignIn => AppError::Unauthorized,
            Refusal::ChangePassword(error)
            | Refusal::SecondStep(error)
            | Refusal::Enrol(error)
            | Refusal::StepUp(error)
            | Refusal::Forbidden(error, _)
            | Refusal::NoSuchDoor(error)
            | Refusal::Failure(error) => error,
        }
    }
}

/// A route the router serves that the access table does not list: refused, as a bug.
fn unlisted(route: &str) -> Refusal {
    Refusal::Failure(internal_error(
        &format!("route {route} is not in the access table"),
        false,
    ))
}

impl Door<'_> {
    /// The door's rule in `state`'s access table.
    fn rule(self, state: &AppState) -> Result<Access, Refusal> {
        match self {
            Door::Page(path) => Ok(page_access(path)),
            Door::ServerFn(endpoint) => state.access.server_fn(endpoint).ok_or_else(|| {
                Refusal::NoSuchDoor(AppError::NotFound(
                    "There is no such server function.".into(),
                ))
            }),
            Door::File(route) => state.access.file(route).ok_or_else(|| unlisted(route)),
            Door::Customer(route) => state.access.customer(route).ok_or_else(|| unlisted(route)),
            Door::SignIn(route) => state.access.sign_in(route).ok_or_else(|| unlisted(route)),
        }
    }

    /// How a refusal for a must-change-password user reads at this door.
    fn change_password_first(self) -> AppError {
        AppError::Forbidden(match self {
            Door::File(_) | Door::Customer(_) | Door::SignIn(_) => {
                "Change your initial password first.".into()
            }
            _ => "Change your initial password first (My account → Change password).".into(),
        })
    }

    /// The audit row of a refused role, and what the caller is told.
    fn forbidden(self, user: &AuthUser) -> (AuditEvent, AppError) {
        let event = AuditEvent::new(user.actor(), "access.denied", Outcome::Denied);
        let role = user.role.label();
        match self {
            Door::Page(path) => (
                event
                    .reason("role may not open this page")
                    .detail(serde_json::json!({ "path": short_path(path) })),
                AppError::Forbidden(format!("Your role ({role}) cannot open this page.")),
            ),
            Door::ServerFn(endpoint) => (
                event
                    .reason("role may not call this server function")
                    .detail(serde_json::json!({ "function": endpoint })),
                AppError::Forbidden(format!(
                    "Your role ({role}) cannot do this. Ask an admin if you need access."
                )),
            ),
            Door::File(route) | Door::Customer(route) | Door::SignIn(route) => (
                event.reason(format!("role may not export {route}")),
                AppError::Forbidden(format!("Your role ({role}) cannot make this export.")),
            ),
        }
    }
}

/// Admits a request through `door`: the signed-in user it may act as (`None` only at a
/// public door), or why not. `known` is a user the request already authenticated (the router's
/// door passes it on to the server function), so no session is read twice.
pub async fn admit(
    state: &AppState,
    session: Option<&Session>,
    known: Option<AuthUser>,
    meta: &RequestMeta,
    door: Door<'_>,
) -> Result<Option<AuthUser>, Refusal> {
    let rule = door.rule(state)?;
    let user = match known {
        Some(user) => Some(user),
        None => match session {
            Some(session) => authenticate(state, session, meta).await.map_err(|error| {
                let unavailable = error.is_unavailable();
                tracing::error!(request_id = %meta.request_id, %error, ?door, "authentication failed");
                Refusal::Failure(if unavailable {
                    AppError::Unavailable(format!(
                        "The database is not reachable right now. Please try again in a moment (reference {}).",
                        meta.request_id
                    ))
                } else {
                    AppError::Internal {
                        request_id: meta.request_id.clone(),
                    }
                })
            })?,
            None => None,
        },
    };
    // A half-signed-in user passes the second-step door only; public doors see them as signed
    // out, every other door sends them to the second step.
    let pending = user.as_ref().is_some_and(|u| u.second_factor_pending);
    match rule {
        Access::SecondStep if pending => return Ok(user),
        Access::SecondStep => return Err(Refusal::SignIn),
        Access::Public if pending => return Ok(None),
        Access::AnySignedIn | Access::Roles(_) | Access::StepUp(_) if pending => {
            return Err(Refusal::SecondStep(AppError::Forbidden(
                "Enter the code from your authenticator app first.".into(),
            )));
        }
        _ => {}
    }
    match rule {
        Access::SecondStep => unreachable!("decided above"),
        Access::Public => Ok(user),
        Access::AnySignedIn => user.map(Some).ok_or(Refusal::SignIn),
        Access::Roles(roles) | Access::StepUp(roles) => {
            let user = user.ok_or(Refusal::SignIn)?;
            if user.must_enrol {
                return Err(Refusal::Enrol(AppError::Forbidden(
                    "Your role must use a second factor: set up an authenticator app first (My account → Authenticator app).".into(),
                )));
            }
            if user.must_change_password {
                return Err(Refusal::ChangePassword(door.change_password_first()));
            }
            if !roles.contains(&user.role) {
                let (event, error) = door.forbidden(&user);
                // A signed-in user can repeat this as fast as they like: one row per client,
                // kind and minute, with a count.
                state.audit_noise.record(meta, &event).await;
                return Err(Refusal::Forbidden(error, Box::new(user)));
            }
            if matches!(rule, Access::StepUp(_))
                && !user.stepped_up_within(state.config.step_up_window)
            {
                let factors = match super::second_factor::factors_of(state, user.id).await {
                    Ok(factors) => factors,
                    Err(error) => {
                        return Err(Refusal::Failure(internal_error(
                            &error,
                            crate::server::db::is_unavailable(&error),
                        )));
                    }
                };
                let method = if factors.authenticator {
                    StepUpMethod::Code
                } else if factors.passkeys > 0 {
                    StepUpMethod::Passkey
                } else if user.sso_only {
                    StepUpMethod::SingleSignOn
                } else {
                    StepUpMethod::Password
                };
                return Err(Refusal::StepUp(AppError::StepUpRequired {
                    method,
                    passkey: factors.passkeys > 0,
                }));
            }
            Ok(Some(user))
        }
    }
}

/// Adding a second factor to an account that has one is a sensitive action (a stolen session
/// could otherwise plant its own): it needs a fresh step-up then, as the `StepUp` doors do. A
/// user's first factor (their enrolment, forced or not) needs none.
pub async fn step_up_if_enrolled(state: &AppState, user: &AuthUser) -> Result<(), AppError> {
    let factors = super::second_factor::factors_of(state, user.id).await?;
    if factors.any() && !user.stepped_up_within(state.config.step_up_window) {
        return Err(AppError::StepUpRequired {
            method: if factors.authenticator {
                StepUpMethod::Code
            } else {
                StepUpMethod::Passkey
            },
            passkey: factors.passkeys > 0,
        });
    }
    Ok(())
}

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

/// The user the server-function door already admitted for this request (a request
/// extension), so the function does not authenticate a second time.
#[derive(Debug, Clone)]
pub struct Authenticated(pub AuthUser);

/// Passes the gate as server function `endpoint` (its rule read from the access table by that
/// name): the caller, signed in or not as the rule allows. Over HTTP the endpoint the request
/// names must be `endpoint`, so a function cannot borrow another one's rule.
pub async fn enter(endpoint: &'static str) -> Result<Caller, AppError> {
    let state = use_context::<AppState>()
        .ok_or_else(|| internal_error(&"AppState missing from context", false))?;
    if let Some(requested) = http_endpoint()
        && requested != endpoint
    {
        return Err(internal_error(
            &format!("server function {requested} passed the gate as {endpoint}"),
            false,
        ));
    }
    let session: Session = leptos_axum::extract()
        .await
        .map_err(|e| internal_error(&e, false))?;
    let meta = request_meta(&state);
    let user = admit(
        &state,
        Some(&session),
        admitted_user(),
        &meta,
        Door::ServerFn(endpoint),
    )
    .await
    .map_err(AppError::from)?;
    Ok(Caller {
        state,
        session,
        meta,
        user,
    })
}

/// Passes the gate as server function `endpoint`, which needs a signed-in user: 401 without a
/// session, 403 for a role its rule leaves out (or an initial password still to replace).
pub async fn require(endpoint: &'static str) -> Result<(Caller, AuthUser), AppError> {
    let caller = enter(endpoint).await?;
    let user = caller.user.clone().ok_or(AppError::Unauthorized)?;
    Ok((caller, user))
}

/// The user a door already admitted for the request being served (the page door for a page
/// render, the server-function door for a call over HTTP), if any.
pub fn admitted_user() -> Option<AuthUser> {
    use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Authenticated>().cloned())
        .map(|Authenticated(user)| user)
}

/// The endpoint of the server function this request calls over HTTP, if it is one.
fn http_endpoint() -> Option<String> {
    use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.uri.path().strip_prefix("/api/").map(str::to_string))
}
