//! The layers every request passes before any door: the limit on requests served at once,
//! security headers (CSP with a nonce), the request deadline, the origin (CSRF) check, the
//! body-size and body-time limits and the refusal of NUL characters in arguments.

use super::MAX_BODY_BYTES;
use super::error::{body_timeout_response, error_response, overloaded_response};
use super::request::{REQUEST_ID, client_ip, is_static, meta_from};
use crate::server::audit::{Actor, AuditEvent, Outcome, short_path};
use crate::server::auth::throttle::{InFlight, InFlightPlace, client_key};
use crate::server::state::AppState;
use crate::types::AppError;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use rand::RngCore as _;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The per-request CSP nonce, shared between the header and the hydration scripts.
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn security_headers(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = random_nonce();
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let status = response.status();
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if is_static(&path) && (status.is_success() || status == StatusCode::NOT_MODIFIED) {
        // A file of the site itself: how long it may be kept, and that its address answers
        // brotli, gzip or plain bytes by `Accept-Encoding` (a cache in between must keep them
        // apart). The document headers below mean nothing on a script, a stylesheet or a
        // WebAssembly part, and a first visit fetches dozens of parts: left off, they would
        // add about 450 bytes to each.
        let cache_control = state.assets.cache_control(&path);
        if cache_control == super::assets::IMMUTABLE {
            strip_immutable_file_headers(headers);
        }
        headers.insert(header::CACHE_CONTROL, cache_control);
        // (A part of a split bundle already says it varies with the browser's dictionary too.)
        if !headers.contains_key(header::VARY) {
            headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
    } else {
        // Pages, file routes, server functions, and any refusal or missing file: never kept.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        document_headers(
            headers,
            &nonce,
            path.starts_with(crate::server::customer::LINK_PREFIX),
        );
    }
    if state.config.is_https() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// Takes off an answer that is a content-hashed bundle file the headers that do nothing for it.
///
/// Why: a first visit fetches the frame and every part of the page it opens (a session's page
/// about a hundred files); over HTTP/1.1 each header costs its bytes on every one of them, and
/// these three cost about 120 bytes a file. None does anything for a file that never changes
/// and is kept a year without asking (`immutable`):
/// - `Last-Modified`: a validator, for a revalidation that never happens (and the static file
///   handler answers every request in full anyway: it passes on only `Accept-Encoding`).
/// - `Accept-Ranges`: the same handler does not pass on `Range` either, so it promised ranges
///   it never served; a part of the bundle is fetched whole.
/// - the request id: it names one request in the log, which a file that was found needs
///   nobody to look up (a missing file, a refusal or a failure still carries it).
fn strip_immutable_file_headers(headers: &mut HeaderMap) {
    headers.remove(header::LAST_MODIFIED);
    headers.remove(header::ACCEPT_RANGES);
    headers.remove(REQUEST_ID);
}

/// The headers of a document (a page, an error page, an export): its content security policy,
/// no framing, no referrer, its own browsing context group, no powerful features.
///
/// A customer's page (`customer`) differs in two ways, both for its plain HTML forms: Start
/// posts to KYC Desk and is redirected to the provider's https page, which `form-action` must
/// allow (browsers check it on the redirect too); and its referrer policy is `same-origin`,
/// because under `no-referrer` a browser sends `Origin: null` with a form's POST, which the
/// origin check refuses. The provider still gets no referrer (it is another origin).
fn document_headers(headers: &mut HeaderMap, nonce: &str, customer: bool) {
    let form_action = if customer { "'self' https:" } else { "'self'" };
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static(if customer {
            "same-origin"
        } else {
            "no-referrer"
        }),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
}

/// How long a client refused by [`concurrency_limit`] is asked to wait.
const OVERLOADED_RETRY_SECS: u64 = 1;

/// The requests served at once (`KYC_DESK_MAX_CONCURRENT_REQUESTS`), and each client
/// address's share of them (`KYC_DESK_MAX_CONCURRENT_REQUESTS_PER_CLIENT`).
#[derive(Clone)]
pub struct ConcurrencyLimit {
    places: Arc<Semaphore>,
    per_client: Arc<InFlight>,
    per_client_cap: usize,
    app: AppState,
}

impl ConcurrencyLimit {
    /// The limits `app`'s configuration sets.
    pub fn new(app: &AppState) -> Self {
        ConcurrencyLimit {
            places: Arc::new(Semaphore::new(app.config.max_concurrent_requests)),
            per_client: InFlight::new(),
            per_client_cap: app.config.max_concurrent_requests_per_client,
            app: app.clone(),
        }
    }
}

impl ConcurrencyLimit {
    /// A place in the share of the request's client address (none needed when no address is
    /// known), or that client's key when it already has its share in progress.
    fn client_place(&self, request: &Request) -> Result<Option<InFlightPlace>, String> {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let Some(client) = client_ip(&self.app, peer, request.headers()).map(client_key) else {
            return Ok(None);
        };
        match self.per_client.take(&client, self.per_client_cap) {
            Some(place) => Ok(Some(place)),
            None => Err(client),
        }
    }
}

/// Serves at most the configured number of requests at once; one more is answered 503 with
/// `Retry-After` at once rather than queued (a queue would only add to every wait). One client
/// address (an IPv6 address by its /64, as the sign-in limits key it) may hold only its share
/// of the places; one more of its requests is answered 429 at once, before any session, body
/// or database work, so a client sending hundreds of requests at a time neither takes every
/// place nor costs more than a refusal each. A place is held until the answer's head is
/// ready; the deadline and the body-time limit below make sure that is bounded. The liveness
/// probe is always answered.
pub async fn concurrency_limit(
    State(limit): State<ConcurrencyLimit>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let Ok(_place) = limit.places.clone().try_acquire_owned() else {
        tracing::warn!(path = %short_path(&super::request::loggable_path(request.uri().path())), "too many requests at once; answered 503");
        return overloaded_response(request.uri().path(), OVERLOADED_RETRY_SECS);
    };
    let _client_place = match limit.client_place(&request) {
        Ok(place) => place,
        Err(client) => {
            let path = request.uri().path();
            tracing::warn!(%client, path = %short_path(&super::request::loggable_path(path)), "too many requests at once from one client; answered 429");
            return error_response(
                path,
                AppError::TooManyRequests {
                    message:
                        "Too many requests from your network at once. Please try again in a moment."
                            .into(),
                    retry_after_secs: OVERLOADED_RETRY_SECS,
                },
            );
        }
    };
    next.run(request).await
}

/// The last line of defence against a request that stops: no answer head within the
/// configured deadline is answered 503 with the request id (and logged as an error), and an
/// answer whose body sends nothing for that long is cut off (logged by the trace layer as a
/// failed response). Every wait inside a request is bounded on its own (pool acquisition, the
/// SQLite write turn, provider calls); this catches what a bug would leave unbounded.
pub async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.config.request_deadline;
    // One-time tokens in the path (setup link, sandbox journey) never reach the log.
    let path = short_path(&super::request::loggable_path(request.uri().path()));
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => {
            response.map(|body| Body::new(tower_http::timeout::TimeoutBody::new(limit, body)))
        }
        Err(_) => {
            tracing::error!(%request_id, %path, deadline_secs = limit.as_secs(), "no answer within the request deadline; answered 503");
            error_response(
                &path,
                AppError::Unavailable(format!(
                    "KYC Desk did not finish this request in time. Please reload or try again; if it keeps happening, give an admin the reference {request_id}."
                )),
            )
        }
    }
}

fn is_state_changing(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether a state-changing request comes from our own pages. Browsers always send
/// `Origin` on such requests; older ones send at least `Sec-Fetch-Site`. Requests with
/// neither come from non-browser clients, which carry no ambient cookies to abuse. `Origin`
/// is compared with the configured public origin only (scheme, host and port): never with the
/// request's own `Host`, which whoever sends the request chooses.
pub fn same_origin(public_origin: &str, headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let parsed = |text: &str| {
            url::Url::parse(text)
                .ok()
                .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
                .map(|url| url.origin())
        };
        return match (origin.to_str().ok().and_then(parsed), parsed(public_origin)) {
            (Some(given), Some(ours)) => given == ours,
            _ => false,
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

pub async fn origin_check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The sandbox stands in for the providers' own sites, which a customer's browser posts to
    // from pages that send `Origin: null` (no-referrer); it changes nothing of KYC Desk's.
    let sandbox = state.config.sandbox && request.uri().path().starts_with("/sandbox/");
    if !sandbox
        && is_state_changing(request.method())
        && !same_origin(&state.config.public_origin(), request.headers())
    {
        let meta = meta_from(&state, request.extensions(), request.headers());
        let path = request.uri().path().to_string();
        // Anyone can send these: one row per client and minute, with a count.
        state
            .audit_noise
            .record(
                &meta,
                &AuditEvent::new(Actor::Anonymous, "access.denied", Outcome::Denied)
                    .reason("cross-origin request refused")
                    .detail(serde_json::json!({
                        "path": short_path(&super::request::loggable_path(&path))
                    })),
            )
            .await;
        return error_response(
            &path,
            AppError::Forbidden("This request came from another site and was refused.".into()),
        );
    }
    next.run(request).await
}

fn too_large(path: &str) -> Response {
    let mut response = error_response(
        path,
        AppError::Request("The request is too large (the limit is 1 MiB).".into()),
    );
    *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    response
}

/// Reads the request body whole, up to the size limit (413 beyond it) and within the body
/// time limit (408 after it), before any door runs: a declared length is checked first, a
/// chunked body is counted as it comes, and a client trickling its body holds its place only
/// for `KYC_DESK_REQUEST_BODY_TIMEOUT`, not for the whole request deadline.
pub async fn body_size_check(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
        return too_large(request.uri().path());
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    let read = tokio::time::timeout(
        state.config.request_body_timeout,
        http_body_util::BodyExt::collect(limited),
    )
    .await;
    match read {
        Ok(Ok(collected)) => {
            let body = Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            too_large(parts.uri.path())
        }
        Ok(Err(error)) => {
            tracing::debug!(%error, "request body could not be read");
            error_response(
                parts.uri.path(),
                AppError::Request("The request body could not be read.".into()),
            )
        }
        Err(_) => {
            tracing::info!(
                path = %short_path(&super::request::loggable_path(parts.uri.path())),
                limit_secs = state.config.request_body_timeout.as_secs(),
                "request body did not arrive in time; answered 408"
            );
            body_timeout_response(parts.uri.path())
        }
    }
}

/// No field anywhere takes a NUL character (no person types one, and PostgreSQL cannot store
/// one): a query or server-function argument that carries one is refused here, naming the
/// field, the same way on both databases. Runs after the session and role checks.
pub async fn refuse_nul(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if let Some(field) = request
        .uri()
        .query()
        .and_then(|q| form_nul_field(q.as_bytes()))
    {
        let error = if path.starts_with("/api/") {
            nul_error(&field)
        } else {
            AppError::Request(format!(
                "The address carries a NUL character (in “{field}”), which KYC Desk does not accept."
            ))
        };
        return error_response(&path, error);
    }
    if !path.starts_with("/api/") || request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let error = error.into_inner();
            if error.is::<http_body_util::LengthLimitError>() {
                return too_large(&path);
            }
            tracing::debug!(%error, "request body could not be read");
            return error_response(
                &path,
                AppError::Request("The request body could not be read.".into()),
            );
        }
    };
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let field = if json {
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|value| json_nul_field(&value, ""))
    } else {
        form_nul_field(&bytes)
    };
    if let Some(field) = field {
        return error_response(&path, nul_error(&field));
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn nul_error(field: &str) -> AppError {
    AppError::field(field, "This field cannot contain a NUL character.")
}

/// The form field name of a submitted key: `input[documents][0]` → `documents`; a key nested
/// deeper than the argument names its path, as the field errors of such a form do:
/// `notice[hi][purpose]` → `hi.purpose`.
fn field_name(key: &str) -> String {
    let key = key.replace('\0', "");
    if let Some(open) = key.find('[') {
        let parts: Vec<&str> = key[open..]
            .split(['[', ']'])
            .filter(|part| !part.is_empty() && !part.chars().all(|c| c.is_ascii_digit()))
            .collect();
        if !parts.is_empty() {
            return parts.join(".");
        }
        return key[..open].to_string();
    }
    key
}

/// The first form (or query) field whose name or value holds a NUL character.
fn form_nul_field(form: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(form)
        .find(|(key, value)| key.contains('\0') || value.contains('\0'))
        .map(|(key, _)| field_name(&key))
}

/// The first JSON member whose name or text holds a NUL character.
fn json_nul_field(value: &serde_json::Value, name: &str) -> Option<String> {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => Some(field_name(name)),
        serde_json::Value::Array(items) => items.iter().find_map(|item| json_nul_field(item, name)),
        serde_json::Value::Object(members) => members.iter().find_map(|(key, member)| {
            if key.contains('\0') {
                Some(field_name(key))
            } else {
                json_nul_field(member, key)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn origin_rules() {
        let public = "https://kyc.example.com";
        assert!(same_origin(
            public,
            &headers(&[("origin", "https://kyc.example.com")])
        ));
        // The request's own Host is whatever its sender chose: matching it proves nothing.
        assert!(!same_origin(
            public,
            &headers(&[
                ("origin", "http://127.0.0.1:3000"),
                ("host", "127.0.0.1:3000")
            ])
        ));
        // The default port may be spelled out.
        assert!(same_origin(
            public,
            &headers(&[("origin", "https://kyc.example.com:443")])
        ));
        assert!(!same_origin(
            public,
            &headers(&[("origin", "http://kyc.example.com")])
        ));
        assert!(!same_origin(
            public,
            &headers(&[
                ("origin", "https://evil.example"),
                ("host", "kyc.example.com")
            ])
        ));
        assert!(!same_origin(public, &headers(&[("origin", "null")])));
        assert!(!same_origin(
            public,
            &headers(&[("sec-fetch-site", "cross-site")])
        ));
        assert!(!same_origin(
            public,
            &headers(&[("sec-fetch-site", "same-site")])
        ));
        assert!(same_origin(
            public,
            &headers(&[("sec-fetch-site", "same-origin")])
        ));
        assert!(
            same_origin(public, &headers(&[])),
            "non-browser clients carry no ambient cookies"
        );
    }

    #[test]
    fn nul_characters_are_found_and_their_field_named() {
        assert_eq!(
            form_nul_field(b"a=1&input%5Bcustomer_name%5D=x%00y"),
            Some("customer_name".into())
        );
        assert_eq!(
            form_nul_field(b"input[documents][0]=\0"),
            Some("documents".into())
        );
        assert_eq!(form_nul_field(b"q=%2500&r=%%30"), None, "escaped, not NUL");
        let json = serde_json::json!({"input": {"settings": {"company_name": "a\u{0}b"}}});
        assert_eq!(json_nul_field(&json, ""), Some("company_name".into()));
        let json = serde_json::json!({"input": {"documents": ["ok", "\u{0}"]}});
        assert_eq!(json_nul_field(&json, ""), Some("documents".into()));
        assert_eq!(
            json_nul_field(&serde_json::json!({"q": "\\u0000"}), ""),
            None
        );
    }
}
