//! The customers' return pages: where a provider's journey sends the customer back. They
//! answer without a session (the customer has none), are limited per client address, and
//! record what arrived (a claim, never a verdict).

use super::error::error_response;
use super::request::{meta_from, query_pairs};
use crate::server::audit::RequestMeta;
use crate::server::auth::guard::{self, Door};
use crate::server::auth::throttle::{self, Refusal};
use crate::server::state::AppState;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A plain page of the server's own (no console frame, no script): a title and a body of
/// trusted markup.
pub(super) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    page_with_head(status, title, "", body)
}

/// [`page`] with trusted markup added to its head (a refresh, say).
pub(super) fn page_with_head(status: StatusCode, title: &str, head: &str, body: &str) -> Response {
    let css = crate::server::web::assets::stylesheet_href();
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head}<title>{title}</title><link rel=\"stylesheet\" href=\"{css}\"></head><body><main class=\"standalone\" data-testid=\"kyc-return\"><h1>{title}</h1>{body}</main></body></html>"
        ),
    )
        .into_response()
}

/// The plain page of a return refused for too many requests from one address (429).
fn too_many_page(refusal: &Refusal) -> Response {
    let mut response = page(
        StatusCode::TOO_MANY_REQUESTS,
        "Please wait",
        &format!(
            "<p>{} Your verification with the provider is not affected.</p>",
            refusal.message()
        ),
    );
    if let Ok(value) = header::HeaderValue::from_str(&refusal.retry_after_secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn return_page(recorded: bool) -> Response {
    let body = if recorded {
        "<p>Thank you. Your verification has been passed on; you may close this page.</p>"
    } else {
        "<p>We could not record your return just now, but your verification with the provider is not affected. You may close this page.</p>"
    };
    page(StatusCode::OK, "Thank you", body)
}

/// Passes the gate as the customer route `route` and the per-address limit on returns, then
/// records the return of the session named by `public_id` (or found by the
/// `journey_id`/`token` in the query) and thanks the customer. A failure to record is logged
/// and never shown as an error: the customer's verification with the provider is not
/// affected by it.
async fn record_return(
    state: &AppState,
    meta: &RequestMeta,
    route: &str,
    public_id: Option<&str>,
    uri: &axum::http::Uri,
) -> Response {
    if let Err(refusal) = guard::admit(state, None, None, meta, Door::Customer(route)).await {
        return error_response(uri.path(), refusal.into());
    }
    match throttle::count_return(&state.db.pool, meta.ip).await {
        Ok(None) => {}
        Ok(Some(refusal)) => {
            tracing::warn!(request_id = %meta.request_id, "customer returns from one address over the limit refused");
            return too_many_page(&refusal);
        }
        Err(error) => {
            tracing::error!(request_id = %meta.request_id, %error, "could not count a customer's return");
            return return_page(false);
        }
    }
    let pairs = query_pairs(uri);
    match crate::server::links::jobs::handle_return(state, meta, public_id, &pairs).await {
        Ok(()) => return_page(true),
        Err(error) => {
            tracing::error!(request_id = %meta.request_id, %error, "could not record a customer's return");
            return_page(false)
        }
    }
}

/// `GET /kyc/return/{public_id}`: where a customer lands after the provider's journey.
pub async fn kyc_return(
    State(state): State<AppState>,
    axum::extract::Path(public_id): axum::extract::Path<String>,
    request: Request,
) -> Response {
    let meta = meta_from(&state, request.extensions(), request.headers());
    let public_id: String = public_id.chars().take(64).collect();
    let route = "/kyc/return/{public_id}";
    record_return(&state, &meta, route, Some(&public_id), request.uri()).await
}

/// `GET /kyc/return`: the fixed return address for a Message Central flow's redirection URL
/// (the session is found by the `journey_id` or `token` it carries).
pub async fn kyc_return_by_journey(State(state): State<AppState>, request: Request) -> Response {
    let meta = meta_from(&state, request.extensions(), request.headers());
    record_return(&state, &meta, "/kyc/return", None, request.uri()).await
}
