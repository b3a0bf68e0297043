//! Message Central e-KYC Now: `POST /ekyc/api/v1/redirection/generate-url`.
//!
//! Refusals use the real service's 401 `{"detail": ...}` texts where PROVIDERS.md records
//! them, so the app's error messages can be exercised against the sandbox.

use super::{
    Link, LinkKind, Sandbox, SandboxError, header_text, param, query_map, random_token, same_secret,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Instant;

/// Minutes a link lives, as the answer states it.
const EXPIRES_IN_MINUTES: u64 = super::LINK_LIFETIME.as_secs() / 60;

fn refuse(status: StatusCode, detail: &'static str) -> SandboxError {
    SandboxError::Mc { status, detail }
}

/// Generates a journey link after checking the headers and body the way the real service
/// does: `api_key: Bearer <key>`, `flow_id` (header or query), `company_name` (JSON, form or
/// multipart body; a header is tolerated, as the real error text suggests it looks there).
///
/// The sandbox also takes an optional `redirect_url` (body or query): the real flow's
/// redirection URL is set in Message Central's console, which the sandbox does not have.
pub(super) async fn generate_url(
    State(sandbox): State<Sandbox>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SandboxError> {
    let query = query_map(query.as_deref());
    let key = header_text(&headers, "api_key")
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or(refuse(
            StatusCode::UNAUTHORIZED,
            "API Key must be 'Bearer '",
        ))?;
    let flow_id = header_text(&headers, "flow_id")
        .or_else(|| param(&query, "flow_id"))
        .ok_or(refuse(
            StatusCode::UNAUTHORIZED,
            "Missing flow_id header/query.",
        ))?
        .to_string();
    let fields = body_fields(&headers, &body)?;
    let company_name = fields
        .get("company_name")
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .or_else(|| header_text(&headers, "company_name"))
        .ok_or(refuse(
            StatusCode::UNAUTHORIZED,
            "Missing company name in Header",
        ))?;

    let config = sandbox.config();
    if !same_secret(key, config.mc_api_key.trim()) {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Invalid API key"));
    }
    if !config
        .mc_flow_ids
        .iter()
        .any(|known| known.trim() == flow_id)
    {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Invalid flow_id."));
    }
    if company_name != config.mc_company_name.trim() {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Invalid company name"));
    }
    let redirect_url = match fields
        .get("redirect_url")
        .map(|url| url.trim())
        .filter(|url| !url.is_empty())
        .or_else(|| param(&query, "redirect_url"))
    {
        Some(url) if sandbox.is_return_url(url) => Some(url.to_string()),
        Some(_) => {
            return Err(refuse(StatusCode::BAD_REQUEST, super::RETURN_URL_RULE));
        }
        None => None,
    };

    let token = random_token(32);
    let journey_id = format!(
        "M{}{:03}",
        chrono::Utc::now().timestamp_millis(),
        rand::thread_rng().gen_range(0..1000)
    );
    {
        let now = Instant::now();
        let mut state = sandbox.lock();
        if !state.make_room(now) {
            return Err(SandboxError::TooMany);
        }
        state.links.insert(
            token.clone(),
            Link {
                created: now,
                decision: None,
                kind: LinkKind::MessageCentral {
                    flow_id: flow_id.clone(),
                    journey_id: journey_id.clone(),
                    redirect_url,
                },
            },
        );
    }
    tracing::info!(%flow_id, %journey_id, "sandbox: e-KYC Now link generated");
    Ok(Json(json!({
        "url": sandbox.journey_url(&token),
        "token": token,
        "journey_id": journey_id,
        "expires_in_minutes": EXPIRES_IN_MINUTES,
        "message": "Redirection URL generated successfully (KYC Desk sandbox)",
    }))
    .into_response())
}

/// The body's text fields, read by content type. An empty or unrecognised body has none
/// (so it ends in "Missing company name"); malformed JSON is refused the way a FastAPI
/// service refuses it, with 422.
fn body_fields(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>, SandboxError> {
    let content_type = header_text(headers, header::CONTENT_TYPE.as_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(HashMap::new());
    }
    if content_type.starts_with("application/json") {
        let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
            return Err(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The request body is not a JSON object",
            ));
        };
        return Ok(object
            .into_iter()
            .filter_map(|(name, value)| match value {
                Value::String(text) => Some((name, text)),
                Value::Number(number) => Some((name, number.to_string())),
                _ => None,
            })
            .collect());
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return Ok(url::form_urlencoded::parse(body)
            .into_owned()
            .collect::<Vec<_>>()
            .into_iter()
            .rev() // so the first of repeated names wins
            .collect());
    }
    if content_type.starts_with("multipart/form-data") {
        return Ok(multipart_fields(&content_type, headers, body));
    }
    Ok(HashMap::new())
}

/// The text fields of a `multipart/form-data` body: enough to read the guide's cURL sample
/// (`-F company_name=...`) without a multipart dependency.
fn multipart_fields(
    lowercase_content_type: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> HashMap<String, String> {
    // The boundary is case-sensitive, so it is taken from the original header value.
    let original = header_text(headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let boundary = lowercase_content_type
        .find("boundary=")
        .and_then(|at| original.get(at + "boundary=".len()..))
        .map(|rest| {
            rest.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .trim_matches('"')
        })
        .filter(|boundary| !boundary.is_empty());
    let Some(boundary) = boundary else {
        return HashMap::new();
    };
    let text = String::from_utf8_lossy(body);
    let mut fields = HashMap::new();
    for part in text.split(&format!("--{boundary}")) {
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let name = head
            .lines()
            .filter(|line| {
                line.to_ascii_lowercase()
                    .starts_with("content-disposition:")
            })
            .flat_map(|line| line.split(';'))
            .find_map(|piece| piece.trim().strip_prefix("name="))
            .map(|name| name.trim_matches('"').to_string());
        if let Some(name) = name {
            let value = value.strip_suffix("\r\n").unwrap_or(value);
            fields.entry(name).or_insert_with(|| value.to_string());
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_type(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).unwrap(),
        );
        headers
    }

    #[test]
    fn reads_company_name_in_every_encoding() {
        let json = body_fields(
            &with_type("application/json"),
            br#"{"company_name":"Acme","n":1}"#,
        )
        .unwrap();
        assert_eq!(json["company_name"], "Acme");
        let form = body_fields(
            &with_type("application/x-www-form-urlencoded"),
            b"company_name=Acme+Ltd&company_name=Other",
        )
        .unwrap();
        assert_eq!(form["company_name"], "Acme Ltd");
        let multipart = body_fields(
            &with_type("multipart/form-data; boundary=XyZ"),
            b"--XyZ\r\nContent-Disposition: form-data; name=\"company_name\"\r\n\r\nAcme Ltd\r\n--XyZ--\r\n",
        )
        .unwrap();
        assert_eq!(multipart["company_name"], "Acme Ltd");
        assert!(
            body_fields(&with_type("text/plain"), b"x")
                .unwrap()
                .is_empty()
        );
        assert!(
            body_fields(&with_type("application/json"), b"")
                .unwrap()
                .is_empty()
        );
        assert!(body_fields(&with_type("application/json"), b"{").is_err());
    }
}
