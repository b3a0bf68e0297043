//! HTTP plumbing: the router and how the server runs (serve, graceful shutdown, housekeeping,
//! health endpoints). Its rooms: `request` (client address, request id, path classes),
//! `middleware` (concurrency limit, security headers, deadline, origin check, body size and
//! time limits, NUL refusal), `doors`
//! (the page, server-function and file doors of the one gate), `assets` and `dictionary` (the
//! bundle's names, caching and dictionary compression), `error` (the one place a failure
//! becomes a response), `files` (CSV exports, QR image), `returns` (customers' return pages), `sign_on` (single
//! sign-on's start and callback).

pub mod assets;
pub mod bundle_pack;
mod customer;
pub mod dictionary;
mod doors;
pub mod error;
mod files;
mod live;
pub mod middleware;
pub mod request;
mod returns;
mod sign_on;

pub use error::{internal_error, respond, set_error_status};
pub use middleware::{CspNonce, same_origin};
pub use request::{client_ip, request_meta};

use crate::app::{App, shell};
use crate::server::auth;
use crate::server::db;
use crate::server::state::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use request::REQUEST_ID;
use std::net::SocketAddr;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kyc_desk_session";

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
    let sessions =
        SessionManagerLayer::new(db::auth_sessions::SqlSessionStore::new(state.db.clone()))
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

    let concurrency = middleware::ConcurrencyLimit::new(&state);
    let mut router = Router::new();
    if state.config.sandbox {
        let sandbox = crate::server::sandbox::seed::sandbox_for(state.config.public_url.as_str());
        let outbox = sandbox.clone();
        router = router
            .route(
                files::SANDBOX_OUTBOX,
                get(move |state: State<AppState>, request: Request| {
                    files::sandbox_outbox(state, outbox.clone(), request)
                }),
            )
            .nest_service("/sandbox", sandbox.router());
    }
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/audit/export.csv", get(files::audit_export))
        .route("/sessions/export.csv", get(files::sessions_export))
        .route("/sessions/{public_id}/qr.svg", get(files::session_qr))
        .route(live::ROUTE, get(live::session_events))
        .route("/kyc/return", get(returns::kyc_return_by_journey))
        .route(auth::single_sign_on::START_ROUTE, get(sign_on::start))
        .route(auth::single_sign_on::CALLBACK_ROUTE, get(sign_on::callback))
        .route("/kyc/return/{public_id}", get(returns::kyc_return))
        .route(customer::PAGE_ROUTE, get(customer::open))
        .route(customer::START_ROUTE, axum::routing::post(customer::start))
        .route(
            customer::CODE_ROUTE,
            axum::routing::post(customer::send_code),
        )
        .route(
            customer::WITHDRAW_ROUTE,
            get(customer::withdraw_form).post(customer::withdraw),
        )
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
                            path = %request::loggable_path(request.uri().path()),
                            request_id = %request_id,
                        )
                    }),
                )
                .layer(page_compression())
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    middleware::security_headers,
                ))
                // Inside `security_headers`, which takes the id off the answers that are
                // content-hashed bundle files (see there); every other answer keeps it.
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(axum::middleware::from_fn_with_state(
                    concurrency,
                    middleware::concurrency_limit,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    middleware::deadline,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.bundle_dictionary.clone(),
                    dictionary::dictionary_compressed,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    middleware::origin_check,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    middleware::body_size_check,
                ))
                .layer(sessions)
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    doors::page_guard,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    doors::server_fn_guard,
                ))
                .layer(axum::middleware::from_fn(middleware::refuse_nul)),
        )
        .with_state(state)
}

/// Compression of what the server writes per request (pages, server-function answers): brotli
/// or gzip as the browser asks, at a level that costs about a millisecond per page. The
/// bundle's files are compressed at build time (`--precompress`) and pass through untouched;
/// CSV exports are left plain, so a large export costs no compression work on the runtime.
///
/// Why this is safe against BREACH-style guessing (a secret in a compressed page next to text
/// an attacker chooses): the session cookie is `SameSite=Strict`, so no other site can make a
/// signed-in browser fetch a page with chosen query text, and pages carry no CSRF token.
fn page_compression()
-> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{NotForContentType, Predicate as _};
    use tower_http::compression::{CompressionLayer, CompressionLevel, DefaultPredicate};
    CompressionLayer::new()
        .quality(CompressionLevel::Precise(5))
        .compress_when(DefaultPredicate::new().and(NotForContentType::const_new("text/csv")))
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

/// How often a checkpoint of the audit chain is written (when rows were added since).
pub const AUDIT_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Writes a checkpoint of the audit chain to the anchor file and the log; a failure is logged
/// loudly (the chain is unaffected, but deletions of the newest rows go unanchored meanwhile).
pub async fn audit_checkpoint(state: &AppState) {
    if let Err(error) = state.audit.checkpoint(&state.db).await {
        tracing::error!(%error, "could not write the audit checkpoint");
    }
}

/// Periodic clean-up of expired sessions and stale throttle counters, and checkpoints of the
/// audit chain (the first one at start).
pub fn spawn_housekeeping(state: AppState) {
    crate::server::links::jobs::spawn(state.clone());
    crate::server::links::reminders::spawn(state.clone());
    let anchoring = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(AUDIT_CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            audit_checkpoint(&anchoring).await;
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(error) = db::auth_sessions::delete_expired(&state.db.pool).await {
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

/// Binds and serves until shutdown; once the requests in flight have finished, the refusals
/// counted in memory are written out and the last checkpoint of the audit chain is written.
pub async fn serve(state: AppState) -> std::io::Result<()> {
    let addr = state.config.addr;
    let app = router(state.clone());
    dictionary::spawn_compression(state.bundle_dictionary.clone());
    spawn_housekeeping(state.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("KYC Desk listening on http://{addr}");
    let served = axum::serve(
        no_delay(listener),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;
    // Refusals still counted in memory become their summary rows first, so the last
    // checkpoint covers them.
    state.audit_noise.flush().await;
    audit_checkpoint(&state).await;
    served
}
