//! The customer's side of a KYC Desk link (`/v/{code}`): opening the page, consenting to the
//! privacy notice, the optional one-time code, Start (the provider's URL made then), and
//! withdrawing. Every step is a move of the one state machine, a timeline event and an audit
//! row; nothing the customer's browser sends is taken as a verdict. The HTTP side (the gate,
//! limits, cookies) is `server::web::customer`; the texts are in [`texts`], the markup in
//! [`page`].

pub mod notice;
pub mod one_time_code;
pub mod page;
pub mod texts;

use crate::server::audit::{Actor, AuditEvent, Outcome, RequestMeta};
use crate::server::db::links::{self as repo, SessionRow};
use crate::server::db::{self};
use crate::server::links::mint::{self, MintRefusal, Prepared};
use crate::server::links::{consent_to, move_to};
use crate::server::state::AppState;
use crate::server::timing;
use crate::types::{AppError, KycStatus};
use axum::http::StatusCode;
use one_time_code::{Checked, Sent};
use page::{CodeStep, StartPage};
use texts::Language;
use tracing::Instrument as _;

/// Where customer links live: `{public_url}/v/{code}`.
pub const LINK_PREFIX: &str = "/v/";

/// The longest code looked up (a real one has 22 characters).
pub const MAX_CODE_CHARS: usize = 64;

/// What the customer's request comes to.
pub enum Answer {
    /// A page of ours, with its status.
    Page(StatusCode, String),
    /// On to the provider's URL (303).
    Provider(String),
}

/// What the customer's browser sent with Start or a request for a code.
#[derive(Debug, Default)]
pub struct StartForm {
    /// The language the page was shown in.
    pub lang: String,
    /// "on" when the consent box was ticked.
    pub consent: String,
    /// The notice version the page showed.
    pub notice_version: String,
    /// The one-time code typed.
    pub code: String,
}

/// Who the customer's browser is, kept only as keyed hashes with the consent.
pub struct Client<'a> {
    /// The client address (after trusted proxies), as text.
    pub address: &'a str,
    /// The browser's user agent.
    pub user_agent: &'a str,
}

/// The page address of a customer link.
pub fn here(code: &str) -> String {
    format!("{LINK_PREFIX}{code}")
}

/// The last four digits of a phone number.
fn last_digits(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(4)..].iter().collect()
}

fn status_of(row: &SessionRow) -> KycStatus {
    KycStatus::parse(&row.status).unwrap_or(KycStatus::Failed)
}

/// The page of an unknown code.
pub fn unknown_page(language: Language, here: &str) -> Answer {
    let t = language.texts();
    Answer::Page(
        StatusCode::NOT_FOUND,
        page::message_page(
            language,
            here,
            t.unknown_heading,
            &page::fill(t.unknown_text, &[]),
            None,
        ),
    )
}

/// The page of a session that can no longer start, or `None` while it can: expired (also a
/// link past its time the sweeper has not reached yet), finished, withdrawn, cancelled.
async fn ended_page(state: &AppState, row: &SessionRow, language: Language) -> Option<Answer> {
    let status = status_of(row);
    let now = db::now();
    let past_time = row.link_expires_at.is_some_and(|until| until <= now)
        && !(status == KycStatus::Started && mint::reusable(row, now));
    let t = language.texts();
    let (code, heading, text) = match status {
        KycStatus::Expired => (StatusCode::GONE, t.expired_heading, t.expired_text),
        _ if status.is_open() && past_time => (StatusCode::GONE, t.expired_heading, t.expired_text),
        KycStatus::Completed | KycStatus::Failed => {
            (StatusCode::OK, t.finished_heading, t.finished_text)
        }
        KycStatus::Withdrawn => (StatusCode::OK, t.withdrawn_heading, t.withdrawn_text),
        KycStatus::Cancelled | KycStatus::Superseded | KycStatus::Creating => {
            (StatusCode::GONE, t.cancelled_heading, t.cancelled_text)
        }
        _ => return None,
    };
    let company = crate::server::links::send::company_name(state).await;
    let here = here(row.customer_code.as_deref().unwrap_or_default());
    Some(Answer::Page(
        code,
        page::message_page(
            language,
            &here,
            heading,
            &page::fill(text, &[("company", &company)]),
            None,
        ),
    ))
}

/// What the main page says beyond the session's own state.
#[derive(Default)]
struct Notes {
    /// The last attempt's error.
    error: Option<String>,
    /// A confirmation (a code was sent).
    info: Option<String>,
    /// A code was just sent.
    code_sent: bool,
    /// The consent box was ticked on the form that led here.
    consent_ticked: bool,
}

/// The main page, with the notes to show and the code step as it stands.
async fn main_page(
    state: &AppState,
    row: &SessionRow,
    language: Language,
    status: StatusCode,
    notes: Notes,
) -> Result<Answer, AppError> {
    let Notes {
        error,
        info,
        code_sent,
        consent_ticked,
    } = notes;
    let company = crate::server::links::send::company_name(state).await;
    let notice = notice::current(state).await?;
    let texts = match language {
        Language::En => &notice.en,
        Language::Hi => &notice.hi,
    };
    let now = db::now();
    let code_step = (row.otp_required != 0 && row.otp_passed_at.is_none()).then(|| {
        if code_sent
            || row.otp_expires_at.is_some_and(|until| until > now) && row.otp_hash.is_some()
        {
            CodeStep::Sent
        } else {
            CodeStep::NotSent
        }
    });
    let consented_at = row.consent_at.map(db::format_time);
    let here = here(row.customer_code.as_deref().unwrap_or_default());
    let html = page::start_page(&StartPage {
        language,
        here: &here,
        company: &company,
        digits: &last_digits(&row.phone),
        digilocker: row.provider == crate::provider::Provider::Eko,
        documents: &row.documents.replace(',', ", "),
        expires: &row.link_expires_at.map(db::format_time).unwrap_or_default(),
        notice_version: notice.version,
        notice: texts,
        consented_at: consented_at.as_deref(),
        code_step,
        error,
        info,
        consent_ticked,
    });
    Ok(Answer::Page(status, html))
}

/// `GET /v/{code}`: the page; the first visit moves the session to `opened`. The language
/// shown first, and any the customer `chose` later with the switch, is kept for reminders.
pub async fn open(
    state: &AppState,
    meta: &RequestMeta,
    row: SessionRow,
    language: Language,
    chose: bool,
) -> Result<Answer, AppError> {
    if let Some(ended) = ended_page(state, &row, language).await {
        return Ok(ended);
    }
    let row = if status_of(&row) == KycStatus::Issued {
        let now = db::now();
        let mut tx = state.db.begin().await?;
        repo::mark_opened(&mut tx, row.id, now, language.code()).await?;
        match move_to(
            &mut tx,
            &row,
            KycStatus::Opened,
            "customer",
            "The customer opened the link's page.",
            None,
        )
        .await
        {
            Ok(()) => {
                state
                    .audit
                    .append(
                        &mut tx,
                        meta,
                        &AuditEvent::new(Actor::Anonymous, "link.open", Outcome::Success)
                            .object("kyc_session", &row.public_id)
                            .detail(serde_json::json!({ "language": language.code() })),
                    )
                    .await?;
                tx.commit().await?;
            }
            // Another request opened it at the same moment.
            Err(AppError::Conflict(_)) => drop(tx),
            Err(error) => return Err(error),
        }
        reload(state, &row).await?
    } else {
        if chose && row.customer_language.as_deref() != Some(language.code()) {
            let mut tx = state.db.begin().await?;
            repo::set_customer_language(&mut tx, row.id, language.code()).await?;
            tx.commit().await?;
        }
        row
    };
    main_page(state, &row, language, StatusCode::OK, Notes::default()).await
}

async fn reload(state: &AppState, row: &SessionRow) -> Result<SessionRow, AppError> {
    let mut conn = state.db.pool.acquire().await?;
    repo::find(&mut conn, row.id)
        .await?
        .ok_or_else(|| AppError::NotFound("The session vanished.".into()))
}

/// `POST /v/{code}/code`: sends a one-time code (for a link that asks one).
pub async fn request_code(
    state: &AppState,
    meta: &RequestMeta,
    row: SessionRow,
    language: Language,
    ticked: bool,
) -> Result<Answer, AppError> {
    if let Some(ended) = ended_page(state, &row, language).await {
        return Ok(ended);
    }
    if row.otp_required == 0 || row.otp_passed_at.is_some() {
        return main_page(state, &row, language, StatusCode::OK, Notes::default()).await;
    }
    let t = language.texts();
    let company = crate::server::links::send::company_name(state).await;
    let (status, error, info, sent) = match one_time_code::send_code(state, meta, &row).await? {
        Sent::Sent => (
            StatusCode::OK,
            None,
            Some(page::fill_plain(
                t.code_sent,
                &[(
                    "minutes",
                    &(one_time_code::CODE_LIFETIME_SECS / 60).to_string(),
                )],
            )),
            true,
        ),
        Sent::LimitReached => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(page::fill_plain(
                t.code_send_limit,
                &[("company", &company)],
            )),
            None,
            false,
        ),
        Sent::Locked(until) => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(locked_words(language, until)),
            None,
            false,
        ),
        Sent::Failed(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(t.code_send_failed.to_string()),
            None,
            false,
        ),
    };
    let row = reload(state, &row).await?;
    main_page(
        state,
        &row,
        language,
        status,
        Notes {
            error,
            info,
            code_sent: sent,
            consent_ticked: ticked,
        },
    )
    .await
}

fn locked_words(language: Language, until: i64) -> String {
    let wait = crate::server::auth::throttle::human_wait((until - db::now()).max(1) as u64);
    page::fill_plain(language.texts().code_locked, &[("wait", &wait)])
}

/// `POST /v/{code}/start`: consent (recorded once, with the notice version, language, time
/// and keyed hashes of the client), the one-time code when asked, then on to the provider's
/// URL — the valid unused one, or a new one within the link's budget.
pub async fn start(
    state: &AppState,
    meta: &RequestMeta,
    row: SessionRow,
    language: Language,
    form: &StartForm,
    client: &Client<'_>,
) -> Result<Answer, AppError> {
    if let Some(ended) = ended_page(state, &row, language).await {
        return Ok(ended);
    }
    let t = language.texts();
    let mut row = row;
    if status_of(&row) == KycStatus::Issued {
        // Start without the page having been opened first (a bookmarked form): open it now.
        open(state, meta, row.clone(), language, false).await?;
        row = reload(state, &row).await?;
    }
    let consent_missing = || Notes {
        error: Some(t.consent_missing.to_string()),
        ..Notes::default()
    };
    // The version of the notice the page showed; whether it is still the current one is
    // checked where the consent is recorded.
    let notice_version = if row.consent_at.is_some() {
        None
    } else {
        match form.notice_version.trim().parse::<i64>() {
            Ok(shown) if form.consent == "on" => Some(shown),
            _ => {
                let notes = consent_missing();
                return main_page(state, &row, language, StatusCode::BAD_REQUEST, notes).await;
            }
        }
    };
    if row.otp_required != 0 && row.otp_passed_at.is_none() {
        let problem = match one_time_code::check_code(state, meta, &row, &form.code).await? {
            Checked::Passed => None,
            Checked::Malformed => Some(t.code_malformed.to_string()),
            Checked::Wrong(left) => Some(page::fill_plain(
                t.code_wrong,
                &[("left", &left.to_string())],
            )),
            Checked::Expired => Some(t.code_expired.to_string()),
            Checked::Locked(until) => Some(locked_words(language, until)),
        };
        if let Some(problem) = problem {
            let row = reload(state, &row).await?;
            return main_page(
                state,
                &row,
                language,
                StatusCode::BAD_REQUEST,
                Notes {
                    error: Some(problem),
                    consent_ticked: form.consent == "on",
                    ..Notes::default()
                },
            )
            .await;
        }
    }
    // Back while the provider URL is good: no write at all.
    if notice_version.is_none()
        && status_of(&row) == KycStatus::Started
        && mint::reusable(&row, db::now())
    {
        return Ok(Answer::Provider(row.link_url.clone().unwrap_or_default()));
    }
    // The consent and the mint's reservation in one transaction: one commit before the call.
    // The credential reads the mint needs run at the same time (on other connections).
    let decide = async {
        let mut tx = state.db.begin_unflushed().await?;
        // The usual first Start: the consent, the move and the mint's reservation in one
        // statement, which also takes the row's lock. When that does not fit (the session
        // changed since it was read, the notice is stale, no mint is left), nothing was
        // written and the row is read under its lock and decided step by step.
        if let Some(version) = notice_version
            && row.consent_at.is_none()
            && let Some(reserved) =
                record_consent(&mut tx, state, meta, &row, version, language, client, true).await?
        {
            tx.commit_unflushed().await?;
            let number = reserved.mint_count;
            return Ok(Some((reserved, Prepared::Reserved { number })));
        }
        let mut current = repo::lock_and_find(&mut tx, row.id, db::now())
            .await?
            .ok_or_else(|| AppError::NotFound("The session vanished.".into()))?;
        if let Some(version) = notice_version
            && current.consent_at.is_none()
        {
            let consented = record_consent(
                &mut tx, state, meta, &current, version, language, client, false,
            );
            match consented.await? {
                Some(consented) => current = consented,
                // A newer notice was saved since the page was shown: nothing is written.
                None => return Ok(None),
            }
        }
        let prepared = mint::prepare(&mut tx, state, meta, &current).await?;
        if matches!(prepared, Prepared::Reserved { .. }) {
            // The mint's record (or its failure's) is committed with a flush before the
            // customer is sent on, which makes this commit durable too; only a database
            // failure in between answers the customer with an error page without one.
            tx.commit_unflushed().await?;
        } else {
            tx.commit().await?;
        }
        Ok::<_, AppError>(Some((current, prepared)))
    }
    .instrument(timing::phase_span("start 4 consent and reservation"));
    let (decided, credentials_read) = tokio::join!(decide, mint::read_credentials(state, &row));
    let Some((current, prepared)) = decided? else {
        let notes = consent_missing();
        return main_page(state, &row, language, StatusCode::BAD_REQUEST, notes).await;
    };
    let refusal = match prepared {
        Prepared::Reuse(url) => return Ok(Answer::Provider(url)),
        Prepared::Reserved { number } => {
            match mint::mint_reserved(state, meta, &current, number, credentials_read).await {
                Ok(url) => return Ok(Answer::Provider(url)),
                Err(refusal) => refusal,
            }
        }
        Prepared::UsedUp => MintRefusal::UsedUp,
        Prepared::NotStartable(status) => MintRefusal::NotStartable(status),
    };
    refused(state, &current, language, refusal).await
}

/// The page for a Start that got no provider URL.
async fn refused(
    state: &AppState,
    row: &SessionRow,
    language: Language,
    refusal: MintRefusal,
) -> Result<Answer, AppError> {
    let t = language.texts();
    let here = here(row.customer_code.as_deref().unwrap_or_default());
    let company = crate::server::links::send::company_name(state).await;
    match refusal {
        MintRefusal::UsedUp => Ok(Answer::Page(
            StatusCode::CONFLICT,
            page::message_page(
                language,
                &here,
                t.used_up_heading,
                &page::fill(
                    t.used_up_text,
                    &[
                        ("count", &row.mint_limit.to_string()),
                        ("company", &company),
                    ],
                ),
                None,
            ),
        )),
        MintRefusal::ProviderFailed(_) => Ok(Answer::Page(
            StatusCode::SERVICE_UNAVAILABLE,
            page::message_page(
                language,
                &here,
                t.provider_down_heading,
                &page::fill(t.provider_down_text, &[]),
                Some(&format!("{here}/start")),
            ),
        )),
        MintRefusal::NotStartable(_) => {
            let row = reload(state, row).await?;
            Ok(match ended_page(state, &row, language).await {
                Some(ended) => ended,
                None => {
                    main_page(
                        state,
                        &row,
                        language,
                        StatusCode::CONFLICT,
                        Notes::default(),
                    )
                    .await?
                }
            })
        }
        MintRefusal::Internal(error) => Err(error),
    }
}

/// `opened → consented` in the caller's transaction `conn`: the consent's record (notice
/// `version`, language, time, keyed hashes of the client), a timeline event and an audit row;
/// with `reserve_mint`, one of the link's provider-URL mints taken by the same statement.
/// Returns the session as it now stands; `None`, with nothing written, when the session is no
/// longer as `row` has it, the notice shown (`version`) is no longer the current one, or (with
/// `reserve_mint`) no mint is left.
#[allow(clippy::too_many_arguments)]
async fn record_consent(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    meta: &RequestMeta,
    row: &SessionRow,
    version: i64,
    language: Language,
    client: &Client<'_>,
    reserve_mint: bool,
) -> Result<Option<SessionRow>, AppError> {
    let client_hash = state.vault.keyed_hash("customer_client", client.address);
    let agent_hash = state.vault.keyed_hash("customer_agent", client.user_agent);
    let consent = repo::Consent {
        notice_version: version,
        language: language.code(),
        client_hash: &client_hash,
        agent_hash: &agent_hash,
        at: db::now(),
    };
    let detail = format!(
        "The customer consented on the link's page (privacy notice version {version}, {}).",
        language.texts().name
    );
    let Some(consented) = consent_to(&mut *conn, row, &consent, reserve_mint, &detail).await?
    else {
        return Ok(None);
    };
    state
        .audit
        .append(
            conn,
            meta,
            &AuditEvent::new(Actor::Anonymous, "link.consent", Outcome::Success)
                .object("kyc_session", &row.public_id)
                .detail(serde_json::json!({
                    "notice_version": version,
                    "language": language.code(),
                })),
        )
        .await?;
    Ok(Some(consented))
}

/// `GET /v/{code}/withdraw`: the confirmation.
pub async fn withdraw_form(
    state: &AppState,
    row: SessionRow,
    language: Language,
) -> Result<Answer, AppError> {
    if let Some(ended) = ended_page(state, &row, language).await {
        return Ok(ended);
    }
    let company = crate::server::links::send::company_name(state).await;
    let here = here(row.customer_code.as_deref().unwrap_or_default());
    Ok(Answer::Page(
        StatusCode::OK,
        page::withdraw_page(language, &here, &company),
    ))
}

/// `POST /v/{code}/withdraw`: ends the unfinished session as withdrawn by the customer.
pub async fn withdraw(
    state: &AppState,
    meta: &RequestMeta,
    row: SessionRow,
    language: Language,
) -> Result<Answer, AppError> {
    if let Some(ended) = ended_page(state, &row, language).await {
        return Ok(ended);
    }
    let mut row = row;
    if status_of(&row) == KycStatus::Issued {
        open(state, meta, row.clone(), language, false).await?;
        row = reload(state, &row).await?;
    }
    let mut tx = state.db.begin().await?;
    move_to(
        &mut tx,
        &row,
        KycStatus::Withdrawn,
        "customer",
        "The customer withdrew their consent on the link's page; the verification stopped.",
        None,
    )
    .await?;
    state
        .audit
        .append(
            &mut tx,
            meta,
            &AuditEvent::new(Actor::Anonymous, "link.withdraw", Outcome::Success)
                .object("kyc_session", &row.public_id),
        )
        .await?;
    tx.commit().await?;
    let row = reload(state, &row).await?;
    Ok(ended_page(state, &row, language)
        .await
        .unwrap_or_else(|| unknown_page(language, &here(""))))
}
