//! The one place a failure becomes a response: internals are logged with the request id and
//! never shown raw; an outage is answered 503 "try again in a moment", anything else 500 with
//! the reference; a limit that a retry will pass (throttling, a full argon2 queue, too many
//! requests at once) carries `Retry-After`; server functions get their error as JSON, other
//! routes as plain text.

use super::request::current_request_id;
use crate::server::auth::AuthError;
use crate::server::db;
use crate::types::AppError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leptos::prelude::*;
use leptos_axum::ResponseOptions;

/// Logs an internal failure with `request_id` and returns the error users see, which carries
/// only the reference. `unavailable` marks a dependency outage (503, "try again").
pub fn failure(request_id: &str, error: &dyn std::fmt::Display, unavailable: bool) -> AppError {
    tracing::error!(%request_id, %error, "request failed");
    if unavailable {
        AppError::Unavailable(format!(
            "The database is not reachable right now. Please try again in a moment (reference {request_id})."
        ))
    } else {
        AppError::Internal {
            request_id: request_id.to_string(),
        }
    }
}

/// [`failure`] for the server function or page being run, with its HTTP status set.
pub fn internal_error(error: &dyn std::fmt::Display, unavailable: bool) -> AppError {
    let app_error = failure(&current_request_id(), error, unavailable);
    set_error_status(&app_error);
    app_error
}

/// What a caller is told when every password check is taken and the queue for one is full.
fn passwords_busy(retry_after_secs: u64) -> AppError {
    AppError::TooManyRequests {
        message: format!(
            "KYC Desk is checking many passwords right now. Try again in {}.",
            crate::server::auth::throttle::human_wait(retry_after_secs)
        ),
        retry_after_secs,
    }
}

impl From<crate::server::auth::second_factor::FactorError> for AppError {
    fn from(error: crate::server::auth::second_factor::FactorError) -> Self {
        match error {
            crate::server::auth::second_factor::FactorError::Auth(error) => error.into(),
            other => internal_error(&other, false),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(error: AuthError) -> Self {
        if let AuthError::Hash(crate::server::auth::password::HashError::Busy {
            retry_after_secs,
        }) = error
        {
            tracing::warn!(request_id = %current_request_id(), "no argon2 run free in time; answered 429");
            let app_error = passwords_busy(retry_after_secs);
            set_error_status(&app_error);
            return app_error;
        }
        let unavailable = error.is_unavailable();
        internal_error(&error, unavailable)
    }
}

impl From<sqlx::Error> for AppError {
    fn from(error: sqlx::Error) -> Self {
        let unavailable = db::is_unavailable(&error);
        internal_error(&error, unavailable)
    }
}

/// Sets the HTTP status (and `Retry-After`) of the current server-function response.
pub fn set_error_status(error: &AppError) {
    if let Some(response) = use_context::<ResponseOptions>() {
        response.set_status(
            StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        );
        if let AppError::TooManyRequests {
            retry_after_secs, ..
        } = error
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            response.insert_header(header::RETRY_AFTER, value);
        }
    }
}

/// Runs a server function's body and gives any error its HTTP status.
pub async fn respond<T>(
    body: impl std::future::Future<Output = Result<T, AppError>>,
) -> Result<T, AppError> {
    let result = body.await;
    if let Err(error) = &result {
        set_error_status(error);
    }
    result
}

/// `error` as the answer to a request for `path`: JSON for server functions (their clients
/// decode it as the function's error), plain text otherwise; a 429 carries `Retry-After`.
pub fn error_response(path: &str, error: AppError) -> Response {
    let retry_after = match &error {
        AppError::TooManyRequests {
            retry_after_secs, ..
        } => Some(*retry_after_secs),
        _ => None,
    };
    let mut response = plain_error_response(path, error);
    if let Some(secs) = retry_after {
        set_retry_after(&mut response, secs);
    }
    response
}

fn plain_error_response(path: &str, error: AppError) -> Response {
    let status =
        StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if path.starts_with("/api/") {
        let body = serde_json::to_string(&error).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            error.to_string(),
        )
            .into_response()
    }
}

fn set_retry_after(response: &mut Response, secs: u64) {
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// The answer when the server is serving as many requests as it may: 503 with `Retry-After`.
pub fn overloaded_response(path: &str, retry_after_secs: u64) -> Response {
    let mut response = error_response(
        path,
        AppError::Unavailable(
            "KYC Desk is busy with many requests right now. Please try again in a moment.".into(),
        ),
    );
    set_retry_after(&mut response, retry_after_secs);
    response
}

/// The answer when a request body did not arrive in time: 408.
pub fn body_timeout_response(path: &str) -> Response {
    let mut response = error_response(
        path,
        AppError::Request(
            "The request body did not arrive in time. Please check your connection and try again."
                .into(),
        ),
    );
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response
}

/// The answer of a file handler whose query failed (see [`failure`]).
pub fn database_failure(path: &str, request_id: &str, error: &sqlx::Error) -> Response {
    error_response(path, failure(request_id, error, db::is_unavailable(error)))
}

/// The HTML page of a console page whose sign-in check failed (the page itself could not be
/// rendered without knowing who asks).
pub fn failure_page(request_id: &str, error: &AppError) -> Response {
    let message = if matches!(error, AppError::Unavailable(_)) {
        "KYC Desk cannot reach its database right now. Nothing was lost; please reload this page in a moment."
    } else {
        "Something went wrong on our side. Please reload the page; if it keeps happening, give an admin the reference below."
    };
    let status =
        StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let css = crate::server::web::assets::stylesheet_href();
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>KYC Desk — temporarily unavailable</title>\
             <link rel=\"stylesheet\" href=\"{css}\"></head><body><main class=\"standalone\"><h1>Temporarily unavailable</h1>\
             <p>{message}</p><p class=\"muted\">Reference: {request_id}</p></main></body></html>"
        ),
    )
        .into_response()
}
