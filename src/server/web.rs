//! HTTP plumbing: the router, security headers, the origin (CSRF) check, body limits, the
//! sign-in redirect for pages, health endpoints, request ids and error statuses.

use crate::app::{App, shell};
use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::auth;
use crate::server::db;
use crate::server::state::AppState;
use crate::types::{AppError, may_open};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine as _;
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes, ResponseOptions, generate_route_list};
use rand::RngCore as _;
use std::net::{IpAddr, SocketAddr};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kyc_desk_session";
const REQUEST_ID: &str = "x-request-id";

/// The per-request CSP nonce, shared between the header and the hydration scripts.
#[derive(Clone, Debug)]
pub struct CspNonce(pub String);

/// The page routes of the app, generated once per process.
///
/// Why once: leptos lists the routes by rendering the app with resource loading switched off,
/// and that switch (`leptos_server::SuppressResourceLoad`) is one flag for the whole process,
/// not for the render that set it. A resource of any other page render in the process that is
/// first polled while the flag is up waits forever on a future that is never woken, so that
/// page never answers (its head, or the tail of its body when the resource was not awaited
/// before the HTML was complete). Every router built after the first (a second instance in one
/// process, every test server, the bench) used to run the generation again while other
/// routers rendered pages. Generated once, before any router exists, it can overlap no render.
fn page_routes() -> Vec<AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<AxumRouteListing>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// Builds the whole application router.
pub fn router(state: AppState) -> Router {
    let routes = page_routes();
    let context_state = state.clone();
    let shell_options = state.leptos_options.clone();
    let sessions = SessionManagerLayer::new(db::sessions::SqlSessionStore::new(state.db.clone()))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(state.config.cookie_secure)
        .with_path("/")
        // The store keeps a session up to the absolute timeout; the idle timeout is
        // enforced (and its end recorded in the audit log) by `auth::authenticate`.
        .with_expiry(Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::seconds(
                state.config.session_absolute_timeout.as_secs() as i64,
            ),
        ));

    let mut router = Router::new();
    if state.config.sandbox {
        let sandbox = crate::server::sandbox::seed::sandbox_for(state.config.public_url.as_str());
        router = router.nest_service("/sandbox", sandbox.router());
    }
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/audit/export.csv", get(audit_export))
        .route("/sessions/export.csv", get(sessions_export))
        .route("/sessions/{public_id}/qr.svg", get(session_qr))
        .route("/kyc/return", get(kyc_return_by_journey))
        .route("/kyc/return/{public_id}", get(kyc_return))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_state.clone()),
            move || shell(shell_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!(
                            "request",
                            method = %request.method(),
                            path = %request.uri().path(),
                            request_id = %request_id,
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    security_headers,
                ))
                .layer(middleware::from_fn_with_state(state.clone(), deadline))
                .layer(middleware::from_fn_with_state(state.clone(), origin_check))
                .layer(middleware::from_fn(body_size_check))
                .layer(sessions)
                .layer(middleware::from_fn_with_state(state.clone(), page_guard))
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    server_fn_guard,
                ))
                .layer(middleware::from_fn(refuse_nul)),
        )
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// Paths that answer without a session: sign-in, setup, health, static files, server
/// functions (which check the session themselves and answer 401).
fn is_public(path: &str) -> bool {
    path == "/login"
        || path.starts_with("/setup/")
        || path == "/healthz"
        || path == "/readyz"
        || path.starts_with("/api/")
        || path.starts_with("/pkg/")
        || path.starts_with("/sandbox/")
        || path == "/kyc/return"
        || path.starts_with("/kyc/return/")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.'))
}

fn is_static(path: &str) -> bool {
    path.starts_with("/pkg/")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.'))
}

/// Client address, honouring `X-Forwarded-For` only when the peer is a trusted proxy.
pub fn client_ip(state: &AppState, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?;
    let trusted = |ip: &IpAddr| {
        state
            .config
            .trusted_proxies
            .iter()
            .any(|net| net.contains(ip))
    };
    if !trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    // Walk from the nearest hop outwards; the first untrusted address is the client.
    Some(
        forwarded
            .iter()
            .rev()
            .find(|ip| !trusted(ip))
            .copied()
            .unwrap_or(peer),
    )
}

fn meta_from(
    state: &AppState,
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
) -> RequestMeta {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    RequestMeta {
        ip: client_ip(state, peer, headers),
        request_id: headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string(),
    }
}

/// The request context of the server function or page being run.
pub fn request_meta(state: &AppState) -> RequestMeta {
    match use_context::<axum::http::request::Parts>() {
        Some(parts) => meta_from(state, &parts.extensions, &parts.headers),
        None => RequestMeta::default(),
    }
}

fn current_request_id() -> String {
    use_context::<axum::http::request::Parts>()
        .and_then(|parts| {
            parts
                .headers
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "-".into())
}

/// Logs an internal failure with the request id and returns the error users see (which
/// carries only the id). `unavailable` marks a dependency outage (answered with 503).
pub fn internal_error(error: &dyn std::fmt::Display, unavailable: bool) -> AppError {
    let request_id = current_request_id();
    tracing::error!(%request_id, %error, "request failed");
    let app_error = if unavailable {
        AppError::Unavailable(format!(
            "The database is not reachable right now. Please try again in a moment (reference {request_id})."
        ))
    } else {
        AppError::Internal { request_id }
    };
    set_error_status(&app_error);
    app_error
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

fn error_response(path: &str, error: AppError) -> Response {
    let status =
        StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if path.starts_with("/api/") {
        // Server-function clients decode this body as the function's error.
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

fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn security_headers(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let nonce = random_nonce();
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    if !is_static(&path) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config.is_https() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// The last line of defence against a request that stops: no answer head within the
/// configured deadline is answered 503 with the request id (and logged as an error), and an
/// answer whose body sends nothing for that long is cut off (logged by the trace layer as a
/// failed response). Every wait inside a request is bounded on its own (pool acquisition, the
/// SQLite write turn, provider calls); this catches what a bug would leave unbounded.
async fn deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = state.config.request_deadline;
    let path = request.uri().path().to_string();
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
/// neither come from non-browser clients, which carry no ambient cookies to abuse.
pub fn same_origin(public_origin: &str, headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        if origin == public_origin {
            return true;
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        return matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h));
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) => site == "same-origin" || site == "none",
        None => true,
    }
}

async fn origin_check(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The sandbox stands in for the providers' own sites, which a customer's browser posts to
    // from pages that send `Origin: null` (no-referrer); it changes nothing of KYC Desk's.
    let sandbox = state.config.sandbox && request.uri().path().starts_with("/sandbox/");
    if !sandbox
        && is_state_changing(request.method())
        && !same_origin(&state.config.public_origin(), request.headers())
    {
        let meta = meta_from(&state, request.extensions(), request.headers());
        let path = request.uri().path().to_string();
        state
            .audit
            .record(
                &state.db,
                &meta,
                &AuditEvent::new(Actor::Anonymous, "access.denied", Outcome::Denied)
                    .reason("cross-origin request refused")
                    .detail(serde_json::json!({ "path": path })),
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

async fn body_size_check(request: Request, next: Next) -> Response {
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
    if declared.is_some() {
        // The length is checked; the limit stays as a backstop while the body is read.
        return next
            .run(Request::from_parts(parts, Body::new(limited)))
            .await;
    }
    // A body without a length (chunked) is read here, up to the limit, so that too much of
    // it is answered 413 like a declared length is (not as unreadable arguments later).
    match http_body_util::BodyExt::collect(limited).await {
        Ok(collected) => {
            let body = Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Err(error) if error.is::<http_body_util::LengthLimitError>() => too_large(parts.uri.path()),
        Err(error) => {
            tracing::debug!(%error, "request body could not be read");
            error_response(
                parts.uri.path(),
                AppError::Request("The request body could not be read.".into()),
            )
        }
    }
}

/// No field anywhere takes a NUL character (no person types one, and PostgreSQL cannot store
/// one): a query or server-function argument that carries one is refused here, naming the
/// field, the same way on both databases. Runs after the session and role checks.
async fn refuse_nul(request: Request, next: Next) -> Response {
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

/// The form field name of a submitted key: `input[documents][0]` → `documents`.
fn field_name(key: &str) -> String {
    let mut key = key.replace('\0', "");
    while key.ends_with(']') {
        let Some(open) = key.rfind('[') else {
            break;
        };
        let inner = key[open + 1..key.len() - 1].to_string();
        if inner.is_empty() || inner.chars().all(|c| c.is_ascii_digit()) {
            key.truncate(open);
        } else {
            return inner;
        }
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

fn login_redirect(path_and_query: &str) -> Response {
    let next: String = url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    let location = if path_and_query == "/" {
        "/login".to_string()
    } else {
        format!("/login?next={next}")
    };
    Redirect::to(&location).into_response()
}

/// Pages (not server functions, not static files) need a signed-in user: without one they
/// redirect to the sign-in page; a user who must change their password is sent there; a
/// page the role may not open is answered 403 (and renders the "no access" panel).
async fn page_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
    let user = match auth::authenticate(&state, &session, &meta).await {
        Ok(user) => user,
        Err(error) => {
            let unavailable = error.is_unavailable();
            tracing::error!(request_id = %meta.request_id, %error, "page authentication failed");
            let status = if unavailable {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            return (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                unavailable_page(&meta.request_id, unavailable),
            )
                .into_response();
        }
    };
    if path == "/login" {
        return match user {
            Some(_) => Redirect::to("/").into_response(),
            None => next.run(request).await,
        };
    }
    tracing::debug!(request_id = %meta.request_id, %path, role = ?user.as_ref().map(|u| u.role), "page admitted; rendering");
    let Some(user) = user else {
        let target = original
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        return login_redirect(&target);
    };
    if user.must_change_password && path != "/account/password" {
        return Redirect::to("/account/password").into_response();
    }
    let allowed = may_open(user.role, &path);
    if !allowed {
        state
            .audit
            .record(
                &state.db,
                &meta,
                &AuditEvent::new(user.actor(), "access.denied", Outcome::Denied)
                    .reason("role may not open this page")
                    .detail(serde_json::json!({ "path": path })),
            )
            .await;
    }
    let mut response = next.run(request).await;
    if !allowed {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

/// The door of the server functions: answers 401/403 from [`crate::api::SERVER_FN_ACCESS`]
/// before a function's arguments are read (a caller who may not call a function learns
/// nothing from it, not even which arguments it takes), and 404 for an endpoint the table
/// lacks. The user it authenticated travels on to the function in the request.
async fn server_fn_guard(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let Some(endpoint) = path.strip_prefix("/api/") else {
        return next.run(request).await;
    };
    let Some(access) = crate::api::access_of(endpoint) else {
        return error_response(
            &path,
            AppError::NotFound("There is no such server function.".into()),
        );
    };
    if access == crate::api::Access::Public {
        return next.run(request).await;
    }
    let Some(session) = request.extensions().get::<Session>().cloned() else {
        return error_response(&path, AppError::Unauthorized);
    };
    let meta = meta_from(&state, request.extensions(), request.headers());
    let started = std::time::Instant::now();
    let authenticated = auth::authenticate(&state, &session, &meta).await;
    if endpoint == "create_link" {
        crate::server::timing::record("1 door: session and user", started);
    }
    let user = match authenticated {
        Ok(user) => user,
        Err(error) => {
            let unavailable = error.is_unavailable();
            tracing::error!(request_id = %meta.request_id, %error, "server function authentication failed");
            let error = if unavailable {
                AppError::Unavailable(format!(
                    "The database is not reachable right now. Please try again in a moment (reference {}).",
                    meta.request_id
                ))
            } else {
                AppError::Internal {
                    request_id: meta.request_id.clone(),
                }
            };
            return error_response(&path, error);
        }
    };
    if let Err(error) =
        auth::guard::permit(&state, &meta, access, user.as_ref(), Some(endpoint)).await
    {
        return error_response(&path, error);
    }
    if let Some(user) = user {
        request
            .extensions_mut()
            .insert(auth::guard::Authenticated(user));
    }
    next.run(request).await
}

fn unavailable_page(request_id: &str, unavailable: bool) -> String {
    let message = if unavailable {
        "KYC Desk cannot reach its database right now. Nothing was lost; please reload this page in a moment."
    } else {
        "Something went wrong on our side. Please reload the page; if it keeps happening, give an admin the reference below."
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>KYC Desk — temporarily unavailable</title>\
         <link rel=\"stylesheet\" href=\"/pkg/kyc-desk.css\"></head><body><main class=\"standalone\"><h1>Temporarily unavailable</h1>\
         <p>{message}</p><p class=\"muted\">Reference: {request_id}</p></main></body></html>"
    )
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Periodic clean-up of expired sessions and stale throttle counters.
pub fn spawn_housekeeping(state: AppState) {
    crate::server::links::jobs::spawn(state.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(error) = db::sessions::delete_expired(&state.db.pool).await {
                tracing::warn!(%error, "could not delete expired sessions");
            }
            if let Err(error) = auth::throttle::prune(&state.db.pool).await {
                tracing::warn!(%error, "could not prune sign-in counters");
            }
        }
    });
}

/// Sends each response as soon as it is written: without `TCP_NODELAY`, a response written in
/// two parts can wait 40 ms for the client's delayed acknowledgement (Nagle's algorithm).
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    fn set_no_delay(stream: &mut tokio::net::TcpStream) {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    }
    listener.tap_io(set_no_delay as fn(&mut tokio::net::TcpStream))
}

/// Binds and serves until shutdown.
pub async fn serve(state: AppState) -> std::io::Result<()> {
    let addr = state.config.addr;
    let app = router(state.clone());
    spawn_housekeeping(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("KYC Desk listening on http://{addr}");
    axum::serve(
        no_delay(listener),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
}

/// `GET /audit/export.csv?<filters>`: the filtered audit rows as CSV, newest first, streamed
/// page by page (keyset), with the chain head at the time of the export as the last line.
/// Auditors and admins only; the export itself is recorded before the first byte.
async fn audit_export(
    State(state): State<AppState>,
    axum::extract::Query(filter): axum::extract::Query<crate::types::AuditFilter>,
    request: Request,
) -> Response {
    use crate::server::audit::view;
    use crate::server::db::audit as repo;
    use crate::types::Role;
    use futures::StreamExt as _;

    const PATH: &str = "/audit/export.csv";
    let (meta, user) =
        match download_caller(&state, &request, PATH, &[Role::Auditor, Role::Admin]).await {
            Ok(caller) => caller,
            Err(refused) => return refused,
        };
    let mut query = match view::parse_filter(&filter) {
        Ok(query) => query,
        Err(error) => return error_response(PATH, error),
    };
    let head = match repo::head_of(&state.db.pool).await {
        Ok(head) => head,
        Err(error) => return database_failure(PATH, &meta, "export failed", &error),
    };
    // Pin the export to the rows that existed when it started.
    let head_seq = head.as_ref().map(|(seq, _)| *seq).unwrap_or(0);
    query.before_seq = Some(
        query
            .before_seq
            .map_or(head_seq + 1, |b| b.min(head_seq + 1)),
    );
    let event = AuditEvent::new(user.actor(), "audit.export", Outcome::Success)
        .detail(serde_json::json!({ "filter": filter.to_query(), "head_seq": head_seq }));
    if let Err(refused) = record_export(&state, &meta, &event, PATH).await {
        return refused;
    }
    let header_line = crate::server::csv::line(view::CSV_HEADER);
    let trailer = view::csv_trailer(head);
    let pool = state.db.pool.clone();
    let request_id = meta.request_id.clone();
    let rows = futures::stream::unfold(Some(query), move |cursor| {
        let pool = pool.clone();
        let request_id = request_id.clone();
        async move {
            let query = cursor?;
            match repo::search(&pool, &query, 1000).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let mut chunk = String::new();
                    for row in &rows {
                        chunk.push_str(&view::csv_line(row));
                    }
                    let next = (rows.len() == 1000).then(|| crate::server::db::audit::AuditQuery {
                        before_seq: rows.last().map(|r| r.seq),
                        ..query
                    });
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(error) => {
                    tracing::error!(%request_id, %error, "export stopped by a database error");
                    // The file ends without its trailer line, so it is visibly incomplete.
                    Some((Err(std::io::Error::other("database error")), None))
                }
            }
        }
    });
    let body = futures::stream::once(async move { Ok(header_line) })
        .chain(rows)
        .chain(futures::stream::once(async move { Ok(trailer) }));
    csv_download("audit", body)
}

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

fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .take(200)
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /kyc/return/{public_id}`: where a customer lands after the provider's journey.
async fn kyc_return(
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
async fn kyc_return_by_journey(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
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

/// `GET /sessions/{public_id}/qr.svg`: the QR code of an open session's link, for any signed-in
/// staff member (it is the link itself, which everyone who may open the session sees). Drawn
/// on the server on request rather than inside the call that creates the link, so creating a
/// link never waits for it. Like every page, it is not stored by the browser (`no-store`).
async fn session_qr(
    State(state): State<AppState>,
    axum::extract::Path(public_id): axum::extract::Path<String>,
    request: Request,
) -> Response {
    use crate::types::Role;
    let path = request.uri().path().to_string();
    let (meta, _user) = match download_caller(
        &state,
        &request,
        &path,
        &[Role::Operator, Role::Admin, Role::Auditor],
    )
    .await
    {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let no_link = || {
        error_response(
            &path,
            AppError::NotFound("This session has no open link, so it has no QR code.".into()),
        )
    };
    // Public ids are lower-case letters (hex digits too, in sessions made by early versions);
    // anything else names no session (and a NUL, say, must not reach the database as a query
    // error).
    if public_id.is_empty()
        || !public_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return no_link();
    }
    let row = match db::links::find_public(&state.db.pool, &public_id).await {
        Ok(Some(row)) => row,
        Ok(None) => return no_link(),
        Err(error) => {
            return database_failure(&path, &meta, "QR code: session lookup failed", &error);
        }
    };
    let open = crate::types::KycStatus::parse(&row.status).is_some_and(|s| s.is_open());
    let (Some(url), true) = (row.link_url, open) else {
        return no_link();
    };
    match tokio::task::spawn_blocking(move || crate::server::links::qr_svg(&url)).await {
        Ok(Some(svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Ok(None) | Err(_) => {
            tracing::error!(request_id = %meta.request_id, session = %public_id, "QR code could not be drawn");
            error_response(
                &path,
                AppError::Internal {
                    request_id: meta.request_id.clone(),
                },
            )
        }
    }
}

/// `GET /sessions/export.csv?<filters>[&contacts=1]`: the filtered sessions as CSV, streamed
/// page by page. Phone and email are masked unless an admin asks for contact details.
async fn sessions_export(
    State(state): State<AppState>,
    axum::extract::Query(filter): axum::extract::Query<crate::types::SessionFilter>,
    request: Request,
) -> Response {
    use crate::server::db::links as repo;
    use crate::types::Role;
    use futures::StreamExt as _;

    const PATH: &str = "/sessions/export.csv";
    let (meta, user) = match download_caller(
        &state,
        &request,
        PATH,
        &[Role::Operator, Role::Admin, Role::Auditor],
    )
    .await
    {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let contacts = query_pairs(request.uri())
        .iter()
        .any(|(k, v)| k == "contacts" && (v == "1" || v == "on" || v == "true"));
    if contacts && user.role != Role::Admin {
        state
            .audit
            .record(
                &state.db,
                &meta,
                &AuditEvent::new(user.actor(), "access.denied", Outcome::Denied)
                    .reason("only admins may export contact details"),
            )
            .await;
        return error_response(
            PATH,
            AppError::Forbidden("Only admins may export contact details.".into()),
        );
    }
    let staff: Vec<(i64, String)> = match db::users::list(&state.db.pool).await {
        Ok(users) => users.into_iter().map(|u| (u.id, u.email)).collect(),
        Err(error) => return database_failure(PATH, &meta, "export failed", &error),
    };
    let query = match crate::server::links::parse_filter(&filter, &staff) {
        Ok(query) => query,
        Err(error) => return error_response(PATH, error),
    };
    let event = AuditEvent::new(user.actor(), "session.export", Outcome::Success)
        .detail(serde_json::json!({ "filter": filter.to_query(), "contacts": contacts }));
    if let Err(refused) = record_export(&state, &meta, &event, PATH).await {
        return refused;
    }
    let header_line = crate::server::csv::line([
        "session",
        "customer",
        "phone",
        "email",
        "internal_reference",
        "provider",
        "flow",
        "status",
        "created_by",
        "created_at_utc",
        "expires_at_utc",
        "ended_at_utc",
        "journey_id",
        "reference_id",
        "sandbox",
    ]);
    let pool = state.db.pool.clone();
    let request_id = meta.request_id.clone();
    let rows = futures::stream::unfold(Some(query), move |cursor| {
        let pool = pool.clone();
        let request_id = request_id.clone();
        async move {
            let query = cursor?;
            match repo::search(&pool, &query, 500).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let mut chunk = String::new();
                    for row in &rows {
                        let phone = if contacts {
                            row.phone.clone()
                        } else {
                            crate::validation::mask_phone(&row.phone)
                        };
                        let email = row
                            .email
                            .as_deref()
                            .map(|e| {
                                if contacts {
                                    e.to_string()
                                } else {
                                    crate::validation::mask_email(e)
                                }
                            })
                            .unwrap_or_default();
                        let time = |t: Option<i64>| t.map(db::format_time).unwrap_or_default();
                        chunk.push_str(&crate::server::csv::line([
                            row.public_id.clone(),
                            row.customer_name.clone(),
                            phone,
                            email,
                            row.internal_ref.clone().unwrap_or_default(),
                            row.provider.clone(),
                            row.flow.clone(),
                            row.status.clone(),
                            row.creator_email.clone(),
                            db::format_time(row.created_at),
                            time(row.expires_at),
                            time(row.ended_at),
                            row.journey_id.clone().unwrap_or_default(),
                            row.reference_id.clone().unwrap_or_default(),
                            (row.sandbox != 0).to_string(),
                        ]));
                    }
                    let next = (rows.len() == 500).then(|| repo::SessionQuery {
                        before_id: rows.last().map(|r| r.id),
                        ..query
                    });
                    Some((Ok::<_, std::io::Error>(chunk), next))
                }
                Err(error) => {
                    tracing::error!(%request_id, %error, "session export stopped by a database error");
                    Some((Err(std::io::Error::other("database error")), None))
                }
            }
        }
    });
    let body = futures::stream::once(async move { Ok(header_line) }).chain(rows);
    csv_download("sessions", body)
}

/// A streamed CSV file download named after `what` and the time.
fn csv_download(
    what: &str,
    body: impl futures::Stream<Item = Result<String, std::io::Error>> + Send + 'static,
) -> Response {
    let file_name = format!(
        "kyc-desk-{what}-{}.csv",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    );
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The signed-in caller of an export or an image (the page guard leaves files to their handlers): 401
/// without a session, 403 (recorded as denied) when their role is not in `roles` or they must
/// still change their password.
fn download_caller<'a>(
    state: &'a AppState,
    request: &Request,
    path: &'a str,
    roles: &'a [crate::types::Role],
) -> impl Future<Output = Result<(RequestMeta, auth::AuthUser), Response>> + Send + 'a {
    let meta = meta_from(state, request.extensions(), request.headers());
    let session = request.extensions().get::<Session>().cloned();
    authorised_downloader(state, meta, session, path, roles)
}

async fn authorised_downloader(
    state: &AppState,
    meta: RequestMeta,
    session: Option<Session>,
    path: &str,
    roles: &[crate::types::Role],
) -> Result<(RequestMeta, auth::AuthUser), Response> {
    let Some(session) = session else {
        return Err(error_response(path, AppError::Unauthorized));
    };
    let user = match auth::authenticate(state, &session, &meta).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(error_response(path, AppError::Unauthorized)),
        Err(error) => {
            tracing::error!(request_id = %meta.request_id, %error, "download authentication failed");
            let refusal = if error.is_unavailable() {
                AppError::Unavailable(
                    "The database is not reachable right now. Try again in a moment.".into(),
                )
            } else {
                AppError::Internal {
                    request_id: meta.request_id.clone(),
                }
            };
            return Err(error_response(path, refusal));
        }
    };
    if user.must_change_password {
        return Err(error_response(
            path,
            AppError::Forbidden("Change your initial password first.".into()),
        ));
    }
    if !roles.contains(&user.role) {
        state
            .audit
            .record(
                &state.db,
                &meta,
                &AuditEvent::new(user.actor(), "access.denied", Outcome::Denied)
                    .reason(format!("role may not export {path}")),
            )
            .await;
        return Err(error_response(
            path,
            AppError::Forbidden(format!(
                "Your role ({}) cannot make this export.",
                user.role.label()
            )),
        ));
    }
    Ok((meta, user))
}

/// The answer of a file handler whose query failed: logged with the request id; 503 "try
/// again" when the database is unreachable, otherwise a 500 carrying the request id.
fn database_failure(path: &str, meta: &RequestMeta, what: &str, error: &sqlx::Error) -> Response {
    tracing::error!(request_id = %meta.request_id, %error, "{what}");
    let refusal = if db::is_unavailable(error) {
        AppError::Unavailable(
            "The database is not reachable right now. Try again in a moment.".into(),
        )
    } else {
        AppError::Internal {
            request_id: meta.request_id.clone(),
        }
    };
    error_response(path, refusal)
}

/// Records an export before its first byte; without the record there is no export.
async fn record_export(
    state: &AppState,
    meta: &RequestMeta,
    event: &AuditEvent,
    path: &str,
) -> Result<(), Response> {
    if let Err(error) = state.audit.try_record(&state.db, meta, event).await {
        tracing::error!(request_id = %meta.request_id, %error, "export not recorded; refused");
        return Err(error_response(
            path,
            AppError::Unavailable(
                "The export could not be recorded, so it was not made. Try again in a moment."
                    .into(),
            ),
        ));
    }
    Ok(())
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
        assert!(same_origin(
            public,
            &headers(&[
                ("origin", "http://127.0.0.1:3000"),
                ("host", "127.0.0.1:3000")
            ])
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

    #[test]
    fn public_paths() {
        for path in [
            "/login",
            "/setup/abc",
            "/healthz",
            "/readyz",
            "/api/login",
            "/pkg/kyc-desk.js",
            "/favicon.ico",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/", "/users", "/sessions", "/account/password"] {
            assert!(!is_public(path), "{path}");
        }
    }
}
