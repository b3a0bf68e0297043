//! Message Central CPaaS (Verify Now): the auth-token call and the SMS / WhatsApp send
//! call. Sent messages go to an in-memory sink instead of a phone.

use super::{
    MAX_SENT_MESSAGES, MAX_SMS_TOKENS, MessageChannel, SMS_TOKEN_LIFETIME, Sandbox, SentMessage,
    header_text, param, query_map, random_token, same_secret,
};
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::json;
use std::time::Instant;

/// Longest message text accepted (a long SMS is split by the network; this only stops
/// a runaway caller).
const MAX_TEXT_CHARS: usize = 2_000;

/// `GET /auth/v1/authentication/token?customerId&key=<base64(password)>&scope&country&email`:
/// `{"status": 200, "token": ...}` for the configured customer, HTTP 401 otherwise.
pub(super) async fn token(State(sandbox): State<Sandbox>, RawQuery(query): RawQuery) -> Response {
    let query = query_map(query.as_deref());
    let (Some(customer_id), Some(key)) = (param(&query, "customerId"), param(&query, "key")) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "status": 400, "message": "customerId and key are required" })),
        )
            .into_response();
    };
    let config = sandbox.config();
    // A `+` in base64 arrives as a space when the caller forgot to percent-encode it.
    let key = key.replace(' ', "+");
    let password = STANDARD
        .decode(&key)
        .or_else(|_| STANDARD_NO_PAD.decode(&key))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default();
    // `&`, not `&&`: the password is compared whatever the customer id says.
    let valid = (customer_id == config.sms_customer_id.trim())
        & same_secret(&password, &config.sms_password);
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "status": 401, "message": "Invalid customerId or key" })),
        )
            .into_response();
    }
    let token = random_token(48);
    {
        let now = Instant::now();
        let mut state = sandbox.lock();
        state
            .sms_tokens
            .retain(|_, issued| now.duration_since(*issued) <= SMS_TOKEN_LIFETIME);
        if state.sms_tokens.len() >= MAX_SMS_TOKENS
            && let Some(oldest) = state
                .sms_tokens
                .iter()
                .min_by_key(|(_, issued)| **issued)
                .map(|(token, _)| token.clone())
        {
            state.sms_tokens.remove(&oldest);
        }
        state.sms_tokens.insert(token.clone(), now);
    }
    tracing::info!("sandbox: SMS auth token issued");
    Json(json!({ "status": 200, "token": token })).into_response()
}

fn send_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "responseCode": status.as_u16(), "message": message, "data": null })),
    )
        .into_response()
}

/// `POST /verification/v3/send?countryCode&customerId&senderId&type&flowType&mobileNumber&message`
/// with header `authToken`: records the message in the sink and answers `SUCCESS`.
pub(super) async fn send(
    State(sandbox): State<Sandbox>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query_map(query.as_deref());
    let now = Instant::now();
    let known_token = header_text(&headers, "authToken").is_some_and(|given| {
        sandbox
            .lock()
            .sms_tokens
            .get(given)
            .is_some_and(|issued| now.duration_since(*issued) <= SMS_TOKEN_LIFETIME)
    });
    let config = sandbox.config();
    if !known_token || param(&query, "customerId") != Some(config.sms_customer_id.trim()) {
        return send_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }

    let channel = match param(&query, "flowType")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("SMS") => MessageChannel::Sms,
        Some("WHATSAPP") => MessageChannel::WhatsApp,
        _ => return send_error(StatusCode::BAD_REQUEST, "flowType must be SMS or WHATSAPP"),
    };
    let digits = |text: &str, range: std::ops::RangeInclusive<usize>| {
        range.contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
    };
    let Some(country_code) = param(&query, "countryCode").filter(|c| digits(c, 1..=4)) else {
        return send_error(StatusCode::BAD_REQUEST, "countryCode must be 1 to 4 digits");
    };
    let Some(mobile) = param(&query, "mobileNumber").filter(|m| digits(m, 6..=15)) else {
        return send_error(
            StatusCode::BAD_REQUEST,
            "mobileNumber must be 6 to 15 digits",
        );
    };
    let Some(text) = param(&query, "message") else {
        return send_error(StatusCode::BAD_REQUEST, "message is required");
    };
    if text.chars().count() > MAX_TEXT_CHARS {
        return send_error(StatusCode::BAD_REQUEST, "message is too long");
    }

    let message = {
        let mut state = sandbox.lock();
        let verification_id = state.next_verification;
        state.next_verification += 1;
        let message = SentMessage {
            channel,
            country_code: country_code.to_string(),
            mobile: mobile.to_string(),
            sender_id: param(&query, "senderId").map(str::to_string),
            text: text.to_string(),
            verification_id,
            sent_at: chrono::Utc::now(),
        };
        if state.sent.len() >= MAX_SENT_MESSAGES {
            state.sent.pop_front();
        }
        state.sent.push_back(message.clone());
        message
    };
    // Only the last digits: the sink is a dev tool, but logs outlive it.
    let mobile_tail = &message.mobile[message.mobile.len() - 4..];
    tracing::info!(
        channel = message.channel.as_str(),
        mobile_tail,
        "sandbox: message accepted"
    );
    Json(json!({
        "responseCode": 200,
        "message": "SUCCESS",
        "data": {
            "verificationId": message.verification_id.to_string(),
            "mobileNumber": message.mobile,
            "responseCode": 200,
            "errorMessage": null,
            "transactionId": uuid::Uuid::new_v4().to_string(),
        },
    }))
    .into_response()
}

/// The `/sandbox/messages` page: what the SMS / WhatsApp sink received, newest first, so whoever
/// tries KYC Desk without a provider account sees what a customer would have been sent. Numbers
/// are masked; nothing here is ever delivered. The texts hold customers' names and live links,
/// so the console serves it as an admin-only file route, not from the sandbox's own router.
pub(super) fn outbox(sandbox: &Sandbox) -> Response {
    use super::journey::page;
    use crate::markup::escape_markup;
    let messages = sandbox.sent_messages();
    let body = if messages.is_empty() {
        "<p class=\"muted\">No message has been sent through the sandbox yet.</p>".to_string()
    } else {
        let rows: String = messages
            .iter()
            .rev()
            .map(|message| {
                let mobile = crate::validation::mask_phone(&format!(
                    "+{}{}",
                    message.country_code, message.mobile
                ));
                format!(
                    "<tr data-testid=\"sandbox-message\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape_markup(&message.sent_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
                    escape_markup(message.channel.as_str()),
                    escape_markup(&mobile),
                    escape_markup(&message.text),
                )
            })
            .collect();
        format!(
            "<p class=\"muted\">Messages are kept in memory (the latest {MAX_SENT_MESSAGES}) and never delivered.</p>\
             <table><thead><tr><th>Sent</th><th>Channel</th><th>To</th><th>Text</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    page(StatusCode::OK, "Sandbox SMS and WhatsApp", &body)
}
