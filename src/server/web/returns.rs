//! The customers' return pages: where a provider's journey sends the customer back. They
//! answer without a session (the customer has none) and record what arrived.

use super::request::query_pairs;
use crate::server::state::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

fn return_page(recorded: bool) -> Response {
    let body = if recorded {
        "<p>Thank you. Your verification has been passed on; you may close this page.</p>"
    } else {
        "<p>We could not record your return just now, but your verification with the provider is not affected. You may close this page.</p>"
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Thank you</title><link rel=\"stylesheet\" href=\"/pkg/kyc-desk.css\"></head><body><main class=\"standalone\" data-testid=\"kyc-return\"><h1>Thank you</h1>{body}</main></body></html>"
        ),
    )
        .into_response()
}

/// `GET /kyc/return/{public_id}`: where a customer lands after the provider's journey.
pub async fn kyc_return(
    State(state): State<AppState>,
    axum::extract::Path(public_id): axum::extract::Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let pairs = query_pairs(&uri);
    let public_id: String = public_id.chars().take(64).collect();
    let recorded =
        match crate::server::links::jobs::handle_return(&state, Some(&public_id), &pairs).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(%error, "could not record a customer's return");
                false
            }
        };
    return_page(recorded)
}

/// `GET /kyc/return`: the fixed return address for a Message Central flow's redirection URL
/// (the session is found by the `journey_id` or `token` it carries).
pub async fn kyc_return_by_journey(
    State(state): State<AppState>,
    uri: axum::http::Uri,
) -> Response {
    let pairs = query_pairs(&uri);
    let recorded = match crate::server::links::jobs::handle_return(&state, None, &pairs).await {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%error, "could not record a customer's return");
            false
        }
    };
    return_page(recorded)
}
