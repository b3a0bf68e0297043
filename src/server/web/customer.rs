//! The customer link's routes (`/v/{code}` and its forms): each passes the one gate as a
//! customer route of the access table and the limits per client address and per link, reads
//! the customer's language (`?lang=`, then the cookie, then `Accept-Language`), and hands the
//! rest to `server::customer`. Answers are plain HTML of the server's own; a failure on our side
//! is logged with the request id and shown in plain words.

use super::error::error_response;
use super::request::meta_from;
use crate::server::audit::RequestMeta;
use crate::server::auth::guard::{self, Door};
use crate::server::auth::throttle;
use crate::server::customer::texts::Language;
use crate::server::customer::{self, Answer, Client, StartForm, page};
use crate::server::db::links as repo;
use crate::server::state::AppState;
use crate::server::web::CspNonce;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

/// The routes, as the router and the access table spell them.
pub const PAGE_ROUTE: &str = "/v/{code}";
/// Start (consent, code, on to the provider).
pub const START_ROUTE: &str = "/v/{code}/start";
/// A one-time code to the mobile.
pub const CODE_ROUTE: &str = "/v/{code}/code";
/// Withdrawing consent (the confirmation, and the withdrawal).
pub const WITHDRAW_ROUTE: &str = "/v/{code}/withdraw";

/// The cookie that keeps the customer's language.
const LANGUAGE_COOKIE: &str = "kyc_lang";

/// Largest form a customer page posts.
const MAX_FORM_BYTES: usize = 4 * 1024;

/// The purpose the per-link limit's key is derived under (a keyed hash of the code).
const LINK_LIMIT_KEY: &str = "customer_link_limit";

/// What each route does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Open,
    Start,
    Code,
    WithdrawForm,
    Withdraw,
}

impl Step {
    fn route(self) -> &'static str {
        match self {
            Step::Open => PAGE_ROUTE,
            Step::Start => START_ROUTE,
            Step::Code => CODE_ROUTE,
            Step::WithdrawForm | Step::Withdraw => WITHDRAW_ROUTE,
        }
    }
}

/// The language: the address's `?lang=`, else the cookie, else the browser's first choice
/// among ours, else English. Returns whether it came from the address (then it is kept).
fn language_of(uri: &axum::http::Uri, headers: &HeaderMap) -> (Language, bool) {
    let asked = super::request::query_pairs(uri)
        .into_iter()
        .find(|(name, _)| name == "lang")
        .and_then(|(_, value)| Language::parse(&value));
    if let Some(language) = asked {
        return (language, true);
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == LANGUAGE_COOKIE)
        .and_then(|(_, value)| Language::parse(value));
    if let Some(language) = cookie {
        return (language, false);
    }
    let browser = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|first| first.split(['-', ';']).next())
        .and_then(Language::parse);
    (browser.unwrap_or(Language::En), false)
}

fn plain(language: Language, here: &str, status: StatusCode, words: &str) -> Response {
    let t = language.texts();
    let heading = if status == StatusCode::TOO_MANY_REQUESTS {
        t.too_many.split('.').next().unwrap_or(t.too_many)
    } else {
        t.internal
    };
    html(
        status,
        &page::message_page(language, here, heading, &page::fill(words, &[]), None),
        None,
        "",
    )
}

/// An HTML answer with the CSP nonce in the style element and, when the customer chose a
/// language in the address, the cookie that keeps it.
fn html(status: StatusCode, body: &str, keep: Option<Language>, nonce: &str) -> Response {
    let body = body.replacen(page::NONCE_MARKER, nonce, 1);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    if let Some(language) = keep
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{LANGUAGE_COOKIE}={}; Path=/v/; Max-Age=31536000; SameSite=Lax; HttpOnly",
            language.code()
        ))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn handle(state: AppState, code: String, step: Step, request: Request) -> Response {
    let meta = meta_from(&state, request.extensions(), request.headers());
    let nonce = request
        .extensions()
        .get::<CspNonce>()
        .map(|n| n.0.clone())
        .unwrap_or_default();
    let (language, chosen) = language_of(request.uri(), request.headers());
    let keep = chosen.then_some(language);
    let code: String = code.chars().take(customer::MAX_CODE_CHARS).collect();
    let here = customer::here(&code);
    if let Err(refusal) =
        guard::admit(&state, None, None, &meta, Door::Customer(step.route())).await
    {
        return error_response(request.uri().path(), refusal.into());
    }
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let form: StartForm = if matches!(step, Step::Start | Step::Code | Step::Withdraw) {
        match axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES).await {
            Ok(bytes) => form_of(&bytes),
            Err(_) => StartForm::default(),
        }
    } else {
        StartForm::default()
    };
    // A posted form says which language its page was in.
    let language = if keep.is_none() {
        Language::parse(&form.lang).unwrap_or(language)
    } else {
        language
    };
    let asked = Asked {
        step,
        language,
        chose: chosen,
        form: &form,
        user_agent: &user_agent,
    };
    match answer(&state, &meta, &code, asked)
        .instrument(phase_span(step, "start 0 whole answer"))
        .await
    {
        Ok(Answer::Page(status, body)) => html(status, &body, keep, &nonce),
        Ok(Answer::Provider(url)) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&url) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(Refused::TooMany(refusal)) => {
            let wait = throttle::human_wait(refusal.retry_after_secs);
            let mut response = plain(
                language,
                &here,
                StatusCode::TOO_MANY_REQUESTS,
                &page::fill_plain(language.texts().too_many, &[("wait", &wait)]),
            );
            if let Ok(value) = HeaderValue::from_str(&refusal.retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(Refused::Failed(error)) => {
            tracing::error!(request_id = %meta.request_id, %error, "a customer link request failed");
            let mut response = plain(
                language,
                &here,
                StatusCode::SERVICE_UNAVAILABLE,
                language.texts().internal,
            );
            if let Ok(value) = HeaderValue::from_str(&meta.request_id) {
                response
                    .headers_mut()
                    .insert(super::request::REQUEST_ID, value);
            }
            response
        }
    }
}

/// The fields of a posted customer form (unknown fields are ignored, the first of a repeated
/// one counts).
fn form_of(bytes: &[u8]) -> StartForm {
    let mut form = StartForm::default();
    for (name, value) in url::form_urlencoded::parse(bytes) {
        let slot = match name.as_ref() {
            "lang" => &mut form.lang,
            "consent" => &mut form.consent,
            "notice_version" => &mut form.notice_version,
            "code" => &mut form.code,
            _ => continue,
        };
        if slot.is_empty() {
            *slot = value.chars().take(64).collect();
        }
    }
    form
}

enum Refused {
    TooMany(throttle::Refusal),
    Failed(crate::types::AppError),
}

impl<E: Into<crate::types::AppError>> From<E> for Refused {
    fn from(error: E) -> Self {
        Refused::Failed(error.into())
    }
}

/// What the customer's browser asked, read off the request.
struct Asked<'a> {
    step: Step,
    language: Language,
    /// The language was chosen in the address (the switch).
    chose: bool,
    form: &'a StartForm,
    user_agent: &'a str,
}

async fn answer(
    state: &AppState,
    meta: &RequestMeta,
    code: &str,
    asked: Asked<'_>,
) -> Result<Answer, Refused> {
    let Asked {
        step,
        language,
        chose,
        form,
        user_agent,
    } = asked;
    let well_formed = !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let lookup = async {
        if well_formed {
            repo::find_by_code(&state.db.pool, code).await
        } else {
            Ok(None)
        }
    }
    .instrument(phase_span(step, "start 1 link lookup"));
    // Counted before anything is answered: the address always, the link by its code's keyed
    // hash, at the same time as the link is looked up.
    let link_key = well_formed.then(|| state.vault.keyed_hash(LINK_LIMIT_KEY, code));
    let counting = throttle::count_customer(&state.db, meta.ip, link_key.as_deref())
        .instrument(phase_span(step, "start 2 limits"));
    let (row, refusal) = tokio::join!(lookup, counting);
    if let Some(refusal) = refusal? {
        return Err(Refused::TooMany(refusal));
    }
    let row = row?;
    let Some(row) = row else {
        return Ok(customer::unknown_page(language, &customer::here(code)));
    };
    let address = meta.ip.map(|ip| ip.to_string()).unwrap_or_default();
    let client = Client {
        address: &address,
        user_agent,
    };
    Ok(match step {
        Step::Open => customer::open(state, meta, row, language, chose).await?,
        Step::Start => customer::start(state, meta, row, language, form, &client).await?,
        Step::Code => {
            customer::request_code(state, meta, row, language, form.consent == "on").await?
        }
        Step::WithdrawForm => customer::withdraw_form(state, row, language).await?,
        Step::Withdraw => customer::withdraw(state, meta, row, language).await?,
    })
}

/// The span a phase of a Start runs in (the bench times them); other steps are not timed.
fn phase_span(step: Step, phase: &'static str) -> tracing::Span {
    if step == Step::Start {
        crate::server::timing::phase_span(phase)
    } else {
        tracing::Span::none()
    }
}

/// `GET /v/{code}`.
pub async fn open(
    State(state): State<AppState>,
    Path(code): Path<String>,
    request: Request,
) -> Response {
    handle(state, code, Step::Open, request).await
}

/// `POST /v/{code}/start`.
pub async fn start(
    State(state): State<AppState>,
    Path(code): Path<String>,
    request: Request,
) -> Response {
    handle(state, code, Step::Start, request).await
}

/// `POST /v/{code}/code`.
pub async fn send_code(
    State(state): State<AppState>,
    Path(code): Path<String>,
    request: Request,
) -> Response {
    handle(state, code, Step::Code, request).await
}

/// `GET /v/{code}/withdraw`.
pub async fn withdraw_form(
    State(state): State<AppState>,
    Path(code): Path<String>,
    request: Request,
) -> Response {
    handle(state, code, Step::WithdrawForm, request).await
}

/// `POST /v/{code}/withdraw`.
pub async fn withdraw(
    State(state): State<AppState>,
    Path(code): Path<String>,
    request: Request,
) -> Response {
    handle(state, code, Step::Withdraw, request).await
}
