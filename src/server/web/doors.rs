//! The doors: console pages, server functions over HTTP and file routes each admit their caller
//! through the one gate (`auth::guard::admit`, reading the access table) and differ only in how
//! they present a refusal — a page redirects to sign-in or renders its "no access" panel with
//! 403, a server function answers its JSON error before its arguments are read, a file route
//! answers plain text.

use super::error::{error_response, failure_page};
use super::request::{is_public, meta_from};
use crate::access::{CONFIRM_PAGE, ENROL_PAGE, PASSWORD_PAGE, SECOND_STEP_PAGE};
use crate::server::audit::RequestMeta;
use crate::server::auth::AuthUser;
use crate::server::auth::guard::{self, Authenticated, Door, Refusal};
use crate::server::state::AppState;
use crate::types::AppError;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;
use tracing::Instrument as _;

fn login_redirect(path_and_query: &str) -> Response {
    let next: String = url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    let location = if path_and_query == "/" {
        "/login".to_string()
    } else {
        format!("/login?next={next}")
    };
    Redirect::to(&location).into_response()
}

/// Sends the browser to confirm it is the user (step-up), then on to `path_and_query`.
pub fn step_up_redirect(path_and_query: &str) -> Response {
    let next: String = url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    Redirect::to(&format!("{CONFIRM_PAGE}?next={next}")).into_response()
}

/// The page door. Pages (not server functions, not static files) need a signed-in user:
/// without one they redirect to the sign-in page; a user who must change their password is
/// sent there; a page the role may not open is answered 403 (and renders the "no access"
/// panel). The sign-in page sends a signed-in user to the dashboard.
pub async fn page_guard(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    // Nested services (the sandbox) see their path with the prefix stripped; judge the
    // address the client actually asked for.
    let original = request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|uri| uri.0.clone())
        .unwrap_or_else(|| request.uri().clone());
    let path = original.path().to_string();
    if !matches!(*request.method(), Method::GET | Method::HEAD)
        || is_public(&path) && path != "/login"
    {
        return next.run(request).await;
    }
    let Some(session) = request.extensions().get::<Session>().cloned() else {
        return next.run(request).await;
    };
    let meta = meta_from(&state, request.extensions(), request.headers());
    let admitted = guard::admit(&state, Some(&session), None, &meta, Door::Page(&path)).await;
    tracing::debug!(request_id = %meta.request_id, %path, admitted = admitted.is_ok(), "page door passed; rendering");
    match (path.as_str(), admitted) {
        ("/login", Ok(Some(_))) => Redirect::to("/").into_response(),
        (_, Ok(user)) => {
            // The console renders for this user without asking the session again.
            if let Some(mut user) = user {
                // A one-time message (a recovery code was used, say) shows on this page.
                match crate::server::auth::take_notice(&session).await {
                    Ok(notice) => user.notice = notice,
                    Err(error) => {
                        tracing::warn!(request_id = %meta.request_id, %error, "the session's notice could not be read")
                    }
                }
                request.extensions_mut().insert(Authenticated(user));
            }
            next.run(request).await
        }
        (_, Err(Refusal::SignIn)) => login_redirect(
            original
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/"),
        ),
        (_, Err(Refusal::ChangePassword(_))) => Redirect::to(PASSWORD_PAGE).into_response(),
        (_, Err(Refusal::SecondStep(_))) => Redirect::to(SECOND_STEP_PAGE).into_response(),
        (_, Err(Refusal::Enrol(_))) => Redirect::to(ENROL_PAGE).into_response(),
        (_, Err(Refusal::StepUp(_))) => step_up_redirect(
            original
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/"),
        ),
        (_, Err(Refusal::Forbidden(_, user))) => {
            // The page renders its own "no access" panel; the status says so too.
            request.extensions_mut().insert(Authenticated(*user));
            let mut response = next.run(request).await;
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        }
        (_, Err(Refusal::NoSuchDoor(error) | Refusal::Failure(error))) => {
            failure_page(&meta.request_id, &error)
        }
    }
}

/// The server-function door: answers 401/403 from the access table before a function's
/// arguments are read (a caller who may not call a function learns nothing from it, not even
/// which arguments it takes), and 404 for an endpoint the table lacks. The user it admitted
/// travels on to the function in the request, which passes the gate again by its own name.
pub async fn server_fn_guard(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let Some(endpoint) = path.strip_prefix("/api/") else {
        return next.run(request).await;
    };
    let meta = meta_from(&state, request.extensions(), request.headers());
    let session = request.extensions().get::<Session>().cloned();
    let admitted = guard::admit(
        &state,
        session.as_ref(),
        None,
        &meta,
        Door::ServerFn(endpoint),
    )
    .instrument(crate::server::timing::phase_span(
        "1 door: session and user",
    ))
    .await;
    match admitted {
        Ok(user) => {
            if let Some(user) = user {
                request.extensions_mut().insert(Authenticated(user));
            }
            next.run(request).await
        }
        Err(refusal) => error_response(&path, refusal.into()),
    }
}

/// The file-route door: the caller of an export or an image (the page door leaves files to
/// their handlers), admitted as `route` (the route as the router spells it): 401 without a
/// session, 403 (recorded as denied) for a role the table leaves out or an initial password
/// still to replace.
pub fn file_caller<'a>(
    state: &'a AppState,
    request: &Request,
    route: &'a str,
) -> impl Future<Output = Result<(RequestMeta, AuthUser), Response>> + Send + 'a {
    // Taken out of the request here: a request body is not `Sync`, so a future that held on
    // to the request could not be sent between threads.
    let meta = meta_from(state, request.extensions(), request.headers());
    let session = request.extensions().get::<Session>().cloned();
    let path = request.uri().path().to_string();
    async move {
        match guard::admit(state, session.as_ref(), None, &meta, Door::File(route)).await {
            Ok(Some(user)) => Ok((meta, user)),
            Ok(None) => Err(error_response(&path, AppError::Unauthorized)),
            Err(refusal) => Err(error_response(&path, refusal.into())),
        }
    }
}
