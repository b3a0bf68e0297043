//! What a request says about itself: the client address (trusting `X-Forwarded-For` only
//! from configured proxies), the request id, the audit metadata built from both, query pairs,
//! and which paths are public or static files.

use crate::server::audit::RequestMeta;
use crate::server::state::AppState;
use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use leptos::prelude::*;
use std::net::{IpAddr, SocketAddr};

/// The header carrying each request's id (set by the router, echoed in every answer).
pub const REQUEST_ID: &str = "x-request-id";

/// Paths that answer without a session: sign-in, setup, health, static files, server
/// functions (which check the session themselves and answer 401).
pub fn is_public(path: &str) -> bool {
    path == "/login"
        || path == "/login/sso"
        || path == "/login/sso/callback"
        || path.starts_with("/setup/")
        || path == "/healthz"
        || path == "/readyz"
        || path.starts_with("/api/")
        || path.starts_with("/pkg/")
        || path.starts_with("/sandbox/")
        || path.starts_with(crate::server::customer::LINK_PREFIX)
        || path == "/kyc/return"
        || path.starts_with("/kyc/return/")
        || path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains('.'))
}

/// `path` fit for a log line or an audit row: the one-time token of a setup link, a sandbox
/// journey or a customer link is replaced, since whoever reads the logs could otherwise use it.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in [
        "/setup/",
        "/sandbox/journey/",
        crate::server::customer::LINK_PREFIX,
    ] {
        if let Some(rest) = path.strip_prefix(prefix)
            && !rest.is_empty()
        {
            let tail = rest.find('/').map_or("", |at| &rest[at..]);
            return format!("{prefix}[redacted]{tail}").into();
        }
    }
    path.into()
}

/// Static files of the built site: the bundle under `/pkg/` and the top-level files of
/// `public/` (`/favicon.svg`). Not the file routes further down (`/sessions/export.csv`, a
/// session's `qr.svg`): they carry personal data and are never stored, like pages.
pub fn is_static(path: &str) -> bool {
    path.starts_with(super::assets::PKG_PREFIX)
        || path
            .strip_prefix('/')
            .is_some_and(|name| !name.contains('/') && name.contains('.'))
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

/// The audit metadata (client address, request id) of a request.
pub fn meta_from(
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

/// The id of the request being served (from the leptos context), or `-` outside one.
pub fn current_request_id() -> String {
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

/// The decoded query pairs of `uri` (at most 200).
pub fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .take(200)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn only_the_sites_own_files_are_static() {
        for path in [
            "/pkg/kyc-desk.Ab1.wasm",
            "/pkg/kyc-desk.css",
            "/favicon.svg",
        ] {
            assert!(is_static(path), "{path}");
        }
        for path in [
            "/sessions/export.csv",
            "/audit/export.csv",
            "/sessions/AbC/qr.svg",
            "/sessions",
            "/",
        ] {
            assert!(!is_static(path), "{path}");
        }
    }

    #[test]
    fn one_time_tokens_never_reach_a_log_line() {
        assert_eq!(loggable_path("/setup/s3cr3t-token"), "/setup/[redacted]");
        assert_eq!(
            loggable_path("/sandbox/journey/AbC123/x"),
            "/sandbox/journey/[redacted]/x"
        );
        assert_eq!(loggable_path("/sessions/abc"), "/sessions/abc");
        assert_eq!(loggable_path("/setup/"), "/setup/");
    }
}
