//! The customer's side of a sandbox link: one page with Approve, Deny and Abandon, standing
//! in for the provider's own pages.
//!
//! The page must work under the app's CSP (`script-src` with a nonce only, `style-src
//! 'self'`, `form-action 'self'`): no scripts, no inline styles, the stylesheet the app
//! already serves, and a plain form that posts back to its own (same-origin) address.

use super::{Decision, LinkKind, Sandbox, SandboxPerson, random_token};
use crate::markup::escape_markup;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::time::Instant;

/// The page title (and heading) of the journey page.
pub const TITLE: &str = "KYC Desk sandbox — customer journey";

/// `GET /journey/{token}`: the decision page, or why the link cannot be used.
pub(super) async fn show(State(sandbox): State<Sandbox>, Path(token): Path<String>) -> Response {
    let now = Instant::now();
    let state = sandbox.lock();
    let Some(link) = state.links.get(&token) else {
        return unknown_link();
    };
    if link.decision.is_some() {
        return used_link();
    }
    if link.expired(now) {
        return expired_link();
    }
    let details = match &link.kind {
        LinkKind::MessageCentral {
            flow_id,
            journey_id,
            ..
        } => format!(
            "<dt>Provider</dt><dd>Message Central e-KYC Now</dd>\
             <dt>Flow</dt><dd>{}</dd>\
             <dt>Journey</dt><dd>{}</dd>",
            escape_markup(flow_id),
            escape_markup(journey_id)
        ),
        LinkKind::Eko {
            reference_id,
            documents,
            ..
        } => format!(
            "<dt>Provider</dt><dd>Eko DigiLocker</dd>\
             <dt>Flow</dt><dd>DigiLocker consent</dd>\
             <dt>Documents requested</dt><dd>{}</dd>\
             <dt>Reference</dt><dd>{reference_id}</dd>",
            escape_markup(&documents.join(", "))
        ),
    };
    drop(state);
    let body = format!(
        "<p class=\"banner info\">This page stands in for the provider's verification pages. \
         Nothing is checked and no real identity is shared: approving hands over a made-up \
         person.</p>\
         <dl>{details}</dl>\
         <p>Approving shares: {name}, born {dob}, Aadhaar {aadhaar}.</p>\
         <form method=\"post\">\
         <button type=\"submit\" name=\"decision\" value=\"approve\" class=\"primary\">Approve</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"danger\">Deny</button> \
         <button type=\"submit\" name=\"decision\" value=\"abandon\" class=\"secondary\">Abandon</button>\
         </form>",
        name = escape_markup(SandboxPerson::NAME),
        dob = escape_markup(SandboxPerson::DOB),
        aadhaar = escape_markup(SandboxPerson::MASKED_AADHAAR),
    );
    page(StatusCode::OK, TITLE, &body)
}

/// `POST /journey/{token}` with `decision=approve|deny|abandon`. A link takes one decision;
/// approving or denying sends the customer back the way the real flow would.
pub(super) async fn decide(
    State(sandbox): State<Sandbox>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let decision = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "decision")
        .and_then(|(_, value)| match value.as_ref() {
            "approve" => Some(Decision::Approve),
            "deny" => Some(Decision::Deny),
            "abandon" => Some(Decision::Abandon),
            _ => None,
        });
    let Some(decision) = decision else {
        return page(
            StatusCode::BAD_REQUEST,
            "Choose an answer",
            "<p>Choose Approve, Deny or Abandon on the journey page.</p>",
        );
    };

    let now = Instant::now();
    let mut state = sandbox.lock();
    let Some(link) = state.links.get_mut(&token) else {
        return unknown_link();
    };
    if link.decision.is_some() {
        return used_link();
    }
    if link.expired(now) {
        return expired_link();
    }
    link.decision = Some(decision);
    let target = match &mut link.kind {
        LinkKind::MessageCentral {
            journey_id,
            redirect_url,
            ..
        } => {
            tracing::info!(%journey_id, ?decision, "sandbox: e-KYC Now journey decided");
            let status = match decision {
                Decision::Approve => "approved",
                Decision::Deny => "denied",
                Decision::Abandon => return left_page(),
            };
            redirect_url.as_deref().map(|url| {
                with_query(
                    url,
                    &[("journey_id", journey_id.as_str()), ("status", status)],
                )
            })
        }
        LinkKind::Eko {
            reference_id,
            redirect_url,
            verification_id,
            ..
        } => {
            tracing::info!(%reference_id, ?decision, "sandbox: DigiLocker journey decided");
            if decision == Decision::Abandon {
                return left_page();
            }
            let id = verification_id.insert(format!("SBV{}", random_token(17)));
            Some(with_query(
                redirect_url,
                &[("verification_id", id.as_str())],
            ))
        }
    };
    drop(state);
    match target.flatten() {
        Some(url) => Redirect::to(&url).into_response(),
        None if decision == Decision::Approve => page(
            StatusCode::OK,
            "Verification finished",
            "<p>Thank you, the verification is finished. You may close this window.</p>",
        ),
        None => page(
            StatusCode::OK,
            "Verification declined",
            "<p>You declined the verification. You may close this window.</p>",
        ),
    }
}

/// `url` with the pairs appended to its query; `None` if it no longer parses.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
    }
    Some(url.into())
}

fn left_page() -> Response {
    page(
        StatusCode::OK,
        "You left the verification",
        "<p>You left the verification. Nothing was shared. You may close this window.</p>",
    )
}

fn unknown_link() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Link not found",
        "<p>This verification link is not known. Check that it was copied whole.</p>",
    )
}

fn used_link() -> Response {
    page(
        StatusCode::CONFLICT,
        "Link already used",
        "<p>This verification link has already been used. Ask for a new one.</p>",
    )
}

fn expired_link() -> Response {
    page(
        StatusCode::GONE,
        "Link expired",
        "<p>This verification link has expired. Ask for a new one.</p>",
    )
}

/// A whole HTML page. `body` is trusted markup; callers escape what they put in it.
pub(super) fn page(status: StatusCode, heading: &str, body: &str) -> Response {
    let heading = escape_markup(heading);
    let title = if heading == escape_markup(TITLE) {
        heading.clone()
    } else {
        format!("{heading} — KYC Desk sandbox")
    };
    let css = crate::server::web::assets::stylesheet_href();
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{title}</title>\
         <link rel=\"stylesheet\" href=\"{css}\"></head>\
         <body><main class=\"standalone\"><section class=\"panel\">\
         <h1>{heading}</h1>{body}</section></main></body></html>\n"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The token is in the address: keep the page out of caches and out of Referer headers.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_markup("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn appends_to_an_existing_query() {
        assert_eq!(
            with_query("https://app.example/r?x=1", &[("status", "denied")]).as_deref(),
            Some("https://app.example/r?x=1&status=denied")
        );
    }
}
