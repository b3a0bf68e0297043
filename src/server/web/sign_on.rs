//! Single sign-on's two routes: `/login/sso` sends the browser to the identity provider (for a
//! sign-in, or with `confirm=1` for a step-up of the signed-in user) and
//! `/login/sso/callback` takes its answer. Both pass the one gate as sign-in routes; a refusal
//! is a plain page in words with a way back, never a raw error.

use super::request::{meta_from, query_pairs};
use super::returns::{page, page_with_head};
use crate::markup::escape_markup as escape;
use crate::server::auth::guard::{self, Door};
use crate::server::auth::single_sign_on::{
    self, CALLBACK_ROUTE, CallbackQuery, START_ROUTE, SsoError,
};
use crate::server::state::AppState;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use tower_sessions::Session;

/// The page of a sign-on that did not go through: what happened and the way back.
fn refused(error: &SsoError, request_id: &str) -> Response {
    let detail = match error {
        SsoError::Internal(_) => format!(
            "Something went wrong on our side. Try again; if it keeps happening, give your admin the reference {}.",
            escape(request_id)
        ),
        other => escape(&other.to_string()),
    };
    let mut response = page(
        error.status(),
        "Single sign-on did not work",
        &format!(
            "<p data-testid=\"sso-error\">{detail}</p><p><a href=\"/login\">Back to sign-in</a></p>"
        ),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn session_of(request: &Request) -> Option<Session> {
    request.extensions().get::<Session>().cloned()
}

/// `GET /login/sso[?next=…][&confirm=1]`: to the identity provider.
pub async fn start(State(state): State<AppState>, request: Request) -> Response {
    let meta = meta_from(&state, request.extensions(), request.headers());
    let Some(session) = session_of(&request) else {
        return refused(
            &SsoError::Internal("no session layer".into()),
            &meta.request_id,
        );
    };
    let user = match guard::admit(
        &state,
        Some(&session),
        None,
        &meta,
        Door::SignIn(START_ROUTE),
    )
    .await
    {
        Ok(user) => user,
        Err(refusal) => {
            return super::error::error_response(START_ROUTE, refusal.into());
        }
    };
    let pairs = query_pairs(request.uri());
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let next = crate::api::auth::safe_next(value("next"));
    let confirm_user = if value("confirm") == Some("1") {
        match &user {
            Some(user) => Some(user.id),
            None => return Redirect::to("/login").into_response(),
        }
    } else if user.is_some() {
        // Signed in already: nothing to do.
        return Redirect::to(&next).into_response();
    } else {
        None
    };
    match single_sign_on::begin(&state, &session, &next, confirm_user).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(error) => {
            if let SsoError::Internal(text) | SsoError::Unreachable(text) = &error {
                tracing::error!(request_id = %meta.request_id, error = %text, "single sign-on could not start");
            }
            refused(&error, &meta.request_id)
        }
    }
}

/// The page a browser lands on when the provider sends it back: it goes on at once to the same
/// address, now from KYC Desk's own page.
///
/// Why: the session cookie is `SameSite=Strict`, so the browser leaves it off a navigation that
/// comes from the provider's site, and off every redirect after it. Without the cookie the
/// sign-on started in this browser cannot be found (nor, for a step-up, the user signed in).
/// The same address opened from this page is a same-site navigation and carries the cookie.
/// Nothing here reads or writes the session, so the cookie-less request cannot replace it.
fn same_site_bounce(uri: &axum::http::Uri) -> Response {
    let target = escape(
        uri.path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or(CALLBACK_ROUTE),
    );
    let mut response = page_with_head(
        StatusCode::OK,
        "Signing you in…",
        &format!("<meta http-equiv=\"refresh\" content=\"0;url={target}\">"),
        &format!(
            "<p>Signing you in to KYC Desk… <a href=\"{target}\" data-testid=\"sso-continue\">Continue</a></p>"
        ),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /login/sso/callback?code=…&state=…`: the identity provider's answer.
pub async fn callback(State(state): State<AppState>, request: Request) -> Response {
    if request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
    {
        return same_site_bounce(request.uri());
    }
    let meta = meta_from(&state, request.extensions(), request.headers());
    let Some(session) = session_of(&request) else {
        return refused(
            &SsoError::Internal("no session layer".into()),
            &meta.request_id,
        );
    };
    if let Err(refusal) = guard::admit(
        &state,
        Some(&session),
        None,
        &meta,
        Door::SignIn(CALLBACK_ROUTE),
    )
    .await
    {
        return super::error::error_response(CALLBACK_ROUTE, refusal.into());
    }
    let query: CallbackQuery = request
        .uri()
        .query()
        .and_then(callback_query)
        .unwrap_or_default();
    match single_sign_on::callback(&state, &session, &meta, query).await {
        Ok(landed) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, landed.redirect_to),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
        )
            .into_response(),
        Err(error) => refused(&error, &meta.request_id),
    }
}

/// The callback's query, each parameter once (a repeated one makes the whole answer invalid).
fn callback_query(query: &str) -> Option<CallbackQuery> {
    let mut parsed = CallbackQuery::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()).take(50) {
        let slot = match key.as_ref() {
            "code" => &mut parsed.code,
            "state" => &mut parsed.state,
            "error" => &mut parsed.error,
            "error_description" => &mut parsed.error_description,
            _ => continue,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(value.into_owned());
    }
    Some(parsed)
}
