//! The `kyc_sessions`, `kyc_events`, `deliveries` and `message_templates` tables.

use super::Bind;
use crate::channel::Channel;
use crate::provider::Provider;
use sqlx::{AnyConnection, AnyPool};

/// A KYC session as stored (holds the full phone and email: never serialised as is).
#[derive(sqlx::FromRow, Clone, Debug)]
pub struct SessionRow {
    /// Internal id (keyset cursor).
    pub id: i64,
    /// Public id (addresses, return URL).
    pub public_id: String,
    /// Form-instance key.
    pub idempotency_key: String,
    /// Who made the link (stored as its text spelling).
    #[sqlx(try_from = "String")]
    pub provider: Provider,
    /// `basic` / `premium` / `digilocker`.
    pub flow: String,
    /// Credential environment.
    pub environment: String,
    /// Credential version row used.
    pub credential_id: i64,
    /// 1 when the credential points at the built-in sandbox.
    pub sandbox: i64,
    /// Customer's name.
    pub customer_name: String,
    /// E.164 phone.
    pub phone: String,
    /// Customer email.
    pub email: Option<String>,
    /// Internal reference.
    pub internal_ref: Option<String>,
    /// Comma-separated documents.
    pub documents: String,
    /// Consent note.
    pub consent_note: String,
    /// Status spelling.
    pub status: String,
    /// The link.
    pub link_url: Option<String>,
    /// Expiry (Unix seconds).
    pub expires_at: Option<i64>,
    /// Message Central's link token (matches a return; never shown).
    pub provider_token: Option<String>,
    /// Message Central journey id.
    pub journey_id: Option<String>,
    /// Eko reference id.
    pub reference_id: Option<String>,
    /// Eko client_ref_id.
    pub client_ref_id: Option<String>,
    /// Eko verification id (from the return).
    pub verification_id: Option<String>,
    /// Masked result JSON (`[[label, value], ...]`).
    pub result: Option<String>,
    /// Last failure in plain words.
    pub last_error: Option<String>,
    /// Creator's user id.
    pub created_by: i64,
    /// Created (Unix seconds).
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// The session this one replaced.
    pub supersedes: Option<i64>,
    /// The session that replaced this one.
    pub superseded_by: Option<i64>,
    /// Next Eko status poll.
    pub next_poll_at: Option<i64>,
    /// Polls so far.
    pub poll_count: i64,
    /// What the customer's browser last reported on coming back (sanitised `status`), if
    /// anything: a claim, never a verdict.
    pub return_claim: Option<String>,
    /// How often the customer's browser came back.
    pub return_count: i64,
    /// When it last came back.
    pub last_return_at: Option<i64>,
    /// The staff member (email) who recorded a Message Central outcome by hand.
    pub outcome_by: Option<String>,
    /// When they recorded it.
    pub outcome_at: Option<i64>,
    /// Their note (scrubbed).
    pub outcome_note: Option<String>,
    /// When the current run of failed Eko polls began (`None` while polls work).
    pub poll_failing_since: Option<i64>,
    /// Failed Eko polls in a row.
    pub poll_failures: i64,
    /// 1 when `result` holds only the status call's details (no document fetched).
    pub result_partial: i64,
    /// KYC Desk's customer link code (`/v/{code}`); `None` for an in-person hand-over.
    pub customer_code: Option<String>,
    /// Until when the customer link works.
    pub link_expires_at: Option<i64>,
    /// Until when the current provider URL works.
    pub provider_url_expires_at: Option<i64>,
    /// When the current provider URL was minted.
    pub minted_at: Option<i64>,
    /// Provider URLs minted so far.
    pub mint_count: i64,
    /// Provider URLs the customer link may mint.
    pub mint_limit: i64,
    /// When the customer first opened the link's page.
    pub opened_at: Option<i64>,
    /// The privacy notice version the customer consented to.
    pub consent_notice_version: Option<i64>,
    /// The language the notice was shown in.
    pub consent_language: Option<String>,
    /// The language the customer last chose on the link's page (`en`, `hi`).
    pub customer_language: Option<String>,
    /// When the customer consented.
    pub consent_at: Option<i64>,
    /// Keyed hash of the consenting client's address.
    pub consent_client_hash: Option<String>,
    /// Keyed hash of the consenting browser's user agent.
    pub consent_agent_hash: Option<String>,
    /// 1 when a one-time code to the session's mobile must be given before Start.
    pub otp_required: i64,
    /// Hash of the one-time code last sent.
    pub otp_hash: Option<String>,
    /// Until when that code works.
    pub otp_expires_at: Option<i64>,
    /// Wrong codes since the last lock.
    pub otp_failures: i64,
    /// The link refuses codes until then (too many wrong ones).
    pub otp_locked_until: Option<i64>,
    /// Codes sent.
    pub otp_sends: i64,
    /// When a right code was given.
    pub otp_passed_at: Option<i64>,
    /// 1 when reminders may be sent.
    pub reminders_on: i64,
    /// Reminders sent.
    pub reminders_sent: i64,
    /// When the next reminder is due.
    pub next_reminder_at: Option<i64>,
    /// The channel the link was last sent by.
    pub sent_channel: Option<String>,
    /// Creator's email (joined).
    pub creator_email: String,
}

/// The open statuses, as an SQL list.
const OPEN: &str = crate::types::KycStatus::OPEN_SQL;

/// The select list of [`SessionRow`].
pub const SESSION_SELECT: &str = "SELECT s.id, s.public_id, s.idempotency_key, s.provider, s.flow, s.environment, \
     s.credential_id, s.sandbox, s.customer_name, s.phone, s.email, s.internal_ref, s.documents, s.consent_note, \
     s.status, s.link_url, s.expires_at, s.provider_token, s.journey_id, s.reference_id, s.client_ref_id, \
     s.verification_id, s.result, s.last_error, s.created_by, s.created_at, s.updated_at, s.ended_at, \
     s.supersedes, s.superseded_by, s.next_poll_at, s.poll_count, s.poll_failing_since, s.poll_failures, \
     s.result_partial, s.return_claim, s.return_count, s.last_return_at, s.outcome_by, s.outcome_at, \
     s.outcome_note, s.customer_code, s.link_expires_at, s.provider_url_expires_at, s.minted_at, \
     s.mint_count, s.mint_limit, s.opened_at, s.consent_notice_version, s.consent_language, s.consent_at, \
     s.consent_client_hash, s.consent_agent_hash, s.otp_required, s.otp_hash, s.otp_expires_at, \
     s.otp_failures, s.otp_locked_until, s.otp_sends, s.otp_passed_at, s.reminders_on, s.reminders_sent, \
     s.next_reminder_at, s.sent_channel, s.customer_language, u.email AS creator_email \
     FROM kyc_sessions s JOIN users u ON u.id = s.created_by";

impl SessionRow {
    /// The row [`insert`] wrote for `new` under `id` (in `creating`, nothing from the provider
    /// yet), without reading it back. `provider` is `new.provider` as the caller chose it.
    pub fn as_inserted(
        id: i64,
        new: &NewSession<'_>,
        provider: Provider,
        creator_email: &str,
    ) -> SessionRow {
        debug_assert_eq!(new.provider, provider.as_str());
        SessionRow {
            id,
            public_id: new.public_id.to_string(),
            idempotency_key: new.idempotency_key.to_string(),
            provider,
            flow: new.flow.to_string(),
            environment: new.environment.to_string(),
            credential_id: new.credential_id,
            sandbox: i64::from(new.sandbox),
            customer_name: new.customer_name.to_string(),
            phone: new.phone.to_string(),
            email: new.email.map(str::to_string),
            internal_ref: new.internal_ref.map(str::to_string),
            documents: new.documents.to_string(),
            consent_note: new.consent_note.to_string(),
            status: if new.customer_link.is_some() {
                "issued"
            } else {
                "creating"
            }
            .to_string(),
            link_url: None,
            expires_at: new.customer_link.as_ref().map(|c| c.expires_at),
            provider_token: None,
            journey_id: None,
            reference_id: None,
            client_ref_id: new.client_ref_id.map(str::to_string),
            verification_id: None,
            result: None,
            last_error: None,
            created_by: new.created_by,
            created_at: new.now,
            updated_at: new.now,
            ended_at: None,
            supersedes: new.supersedes,
            superseded_by: None,
            next_poll_at: None,
            poll_count: 0,
            return_claim: None,
            return_count: 0,
            last_return_at: None,
            outcome_by: None,
            outcome_at: None,
            outcome_note: None,
            poll_failing_since: None,
            poll_failures: 0,
            result_partial: 0,
            customer_code: new.customer_link.as_ref().map(|c| c.code.to_string()),
            link_expires_at: new.customer_link.as_ref().map(|c| c.expires_at),
            provider_url_expires_at: None,
            minted_at: None,
            mint_count: 0,
            mint_limit: new.customer_link.as_ref().map_or(0, |c| c.mint_limit),
            opened_at: None,
            consent_notice_version: None,
            consent_language: None,
            customer_language: None,
            consent_at: None,
            consent_client_hash: None,
            consent_agent_hash: None,
            otp_required: new
                .customer_link
                .as_ref()
                .map_or(0, |c| i64::from(c.otp_required)),
            otp_hash: None,
            otp_expires_at: None,
            otp_failures: 0,
            otp_locked_until: None,
            otp_sends: 0,
            otp_passed_at: None,
            reminders_on: new
                .customer_link
                .as_ref()
                .map_or(0, |c| i64::from(c.reminders_on)),
            reminders_sent: 0,
            next_reminder_at: None,
            sent_channel: None,
            creator_email: creator_email.to_string(),
        }
    }

    /// This row after [`mark_created`] stored `link` at `now`.
    pub fn with_created_link(self, link: &CreatedLink<'_>, now: i64) -> SessionRow {
        SessionRow {
            status: "started".to_string(),
            link_url: Some(link.url.to_string()),
            expires_at: Some(link.expires_at),
            provider_url_expires_at: Some(link.expires_at),
            minted_at: Some(now),
            mint_count: 1,
            provider_token: link.token.map(str::to_string),
            journey_id: link.journey_id.map(str::to_string),
            reference_id: link.reference_id.map(str::to_string),
            next_poll_at: link.next_poll_at,
            updated_at: now,
            ..self
        }
    }
}

/// A new session, as written before the provider is called.
pub struct NewSession<'a> {
    /// Public id.
    pub public_id: &'a str,
    /// Form-instance key.
    pub idempotency_key: &'a str,
    /// Provider, as stored ([`Provider::as_str`]): text, so tools and tests can write rows
    /// directly.
    pub provider: &'a str,
    /// Flow.
    pub flow: &'a str,
    /// Environment.
    pub environment: &'a str,
    /// Credential row.
    pub credential_id: i64,
    /// Sandbox flag.
    pub sandbox: bool,
    /// Name.
    pub customer_name: &'a str,
    /// E.164 phone.
    pub phone: &'a str,
    /// Email.
    pub email: Option<&'a str>,
    /// Internal reference.
    pub internal_ref: Option<&'a str>,
    /// Documents (comma-separated).
    pub documents: &'a str,
    /// Consent note.
    pub consent_note: &'a str,
    /// Creator.
    pub created_by: i64,
    /// Eko client_ref_id (chosen before the call).
    pub client_ref_id: Option<&'a str>,
    /// The session this one replaces.
    pub supersedes: Option<i64>,
    /// Lower-case text searched by the list.
    pub search_text: &'a str,
    /// Now.
    pub now: i64,
    /// KYC Desk's customer link, when the session hands one out (it starts `issued`, no
    /// provider call yet); `None` for an in-person hand-over of the provider's URL.
    pub customer_link: Option<NewCustomerLink<'a>>,
}

/// A new session's customer link.
pub struct NewCustomerLink<'a> {
    /// The code of `/v/{code}`.
    pub code: &'a str,
    /// Until when it works.
    pub expires_at: i64,
    /// Provider URLs it may mint.
    pub mint_limit: i64,
    /// Whether a one-time code to the mobile is asked before Start.
    pub otp_required: bool,
    /// Whether reminders may go.
    pub reminders_on: bool,
}

/// Writes a session in `creating` (or `issued`, with a customer link); returns its id. A duplicate idempotency key is a unique
/// violation (the caller then reads the existing row).
pub async fn insert(conn: &mut AnyConnection, new: &NewSession<'_>) -> Result<i64, sqlx::Error> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO kyc_sessions (public_id, idempotency_key, provider, flow, environment, credential_id, sandbox, \
         customer_name, phone, email, internal_ref, documents, consent_note, status, client_ref_id, supersedes, \
         search_text, created_by, created_at, updated_at, customer_code, link_expires_at, expires_at, \
         mint_limit, otp_required, reminders_on) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $19, \
         $20, $21, $21, $22, $23, $24) \
         RETURNING id",
    )
    .bind(new.public_id)
    .bind(new.idempotency_key)
    .bind(new.provider)
    .bind(new.flow)
    .bind(new.environment)
    .bind(new.credential_id)
    .bind(i64::from(new.sandbox))
    .bind(new.customer_name)
    .bind(new.phone)
    .bind(new.email)
    .bind(new.internal_ref)
    .bind(new.documents)
    .bind(new.consent_note)
    .bind(if new.customer_link.is_some() {
        "issued"
    } else {
        "creating"
    })
    .bind(new.client_ref_id)
    .bind(new.supersedes)
    .bind(new.search_text)
    .bind(new.created_by)
    .bind(new.now)
    .bind(new.customer_link.as_ref().map(|c| c.code))
    .bind(new.customer_link.as_ref().map(|c| c.expires_at))
    .bind(new.customer_link.as_ref().map_or(0, |c| c.mint_limit))
    .bind(new.customer_link.as_ref().map_or(0, |c| i64::from(c.otp_required)))
    .bind(new.customer_link.as_ref().map_or(0, |c| i64::from(c.reminders_on)))
    .fetch_one(&mut *conn)
    .await?;
    add_terms(conn, id, search_terms(new.search_text)).await?;
    Ok(id)
}

/// One session by internal id.
pub async fn find(conn: &mut AnyConnection, id: i64) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SESSION_SELECT} WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The columns of [`SESSION_SELECT`] as an `UPDATE … RETURNING` on `kyc_sessions` names
/// them (unqualified; the creator's email by a subquery, as `RETURNING` cannot join).
const SESSION_RETURNING: &str = "id, public_id, idempotency_key, provider, flow, environment, \
     credential_id, sandbox, customer_name, phone, email, internal_ref, documents, consent_note, \
     status, link_url, expires_at, provider_token, journey_id, reference_id, client_ref_id, \
     verification_id, result, last_error, created_by, created_at, updated_at, ended_at, \
     supersedes, superseded_by, next_poll_at, poll_count, poll_failing_since, poll_failures, \
     result_partial, return_claim, return_count, last_return_at, outcome_by, outcome_at, \
     outcome_note, customer_code, link_expires_at, provider_url_expires_at, minted_at, \
     mint_count, mint_limit, opened_at, consent_notice_version, consent_language, consent_at, \
     consent_client_hash, consent_agent_hash, otp_required, otp_hash, otp_expires_at, \
     otp_failures, otp_locked_until, otp_sends, otp_passed_at, reminders_on, reminders_sent, \
     next_reminder_at, sent_channel, customer_language, \
     (SELECT email FROM users WHERE users.id = kyc_sessions.created_by) AS creator_email";

/// Takes a session's write lock and reads the row as it is once the lock is held, in one
/// statement: a transaction that writes a session reads it this way first. Writing first
/// matters on SQLite (a transaction that reads first and writes later can fail with "database
/// is locked" when another writer committed in between) and on PostgreSQL (concurrent writers
/// of one session queue on its row lock, and `RETURNING` gives the newest version of a row
/// that was waited for). `None` when there is no such session.
pub async fn lock_and_find(
    conn: &mut AnyConnection,
    id: i64,
    now: i64,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE kyc_sessions SET updated_at = $1 WHERE id = $2 RETURNING {SESSION_RETURNING}"
    ))
    .bind(now)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// One session by public id.
pub async fn find_public(
    pool: &AnyPool,
    public_id: &str,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SESSION_SELECT} WHERE s.public_id = $1"))
        .bind(public_id)
        .fetch_optional(pool)
        .await
}

/// One session by idempotency key.
pub async fn find_by_key(pool: &AnyPool, key: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SESSION_SELECT} WHERE s.idempotency_key = $1"))
        .bind(key)
        .fetch_optional(pool)
        .await
}

/// The session a Message Central return belongs to, by journey id or else by token: the
/// session of the newest mint that carried it (`link_mints` holds every minted URL's ids, so a
/// return from an older mint of a customer link is found too; the session follows the newest).
pub async fn find_by_journey(
    pool: &AnyPool,
    journey_id: Option<&str>,
    token: Option<&str>,
) -> Result<Option<SessionRow>, sqlx::Error> {
    for (column, value) in [("journey_id", journey_id), ("token", token)] {
        let Some(value) = value else { continue };
        let found: Option<SessionRow> = sqlx::query_as(&format!(
            "{SESSION_SELECT} WHERE s.id = (SELECT m.session_id FROM link_mints m \
             WHERE m.{column} = $1 ORDER BY m.id DESC LIMIT 1)"
        ))
        .bind(value)
        .fetch_optional(pool)
        .await?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// What a successful provider call stores.
pub struct CreatedLink<'a> {
    /// The link.
    pub url: &'a str,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// Message Central token.
    pub token: Option<&'a str>,
    /// Message Central journey id.
    pub journey_id: Option<&'a str>,
    /// Eko reference id.
    pub reference_id: Option<&'a str>,
    /// First Eko poll.
    pub next_poll_at: Option<i64>,
    /// Search text with the provider ids added.
    pub search_text: &'a str,
}

/// `creating → started` with the provider's URL (its first mint); false when the row was no
/// longer `creating`.
pub async fn mark_created(
    conn: &mut AnyConnection,
    id: i64,
    link: &CreatedLink<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE kyc_sessions SET status = 'started', link_url = $1, expires_at = $2, provider_token = $3, \
         journey_id = $4, reference_id = $5, next_poll_at = $6, search_text = $7, updated_at = $8, \
         provider_url_expires_at = $2, minted_at = $8, mint_count = 1 \
         WHERE id = $9 AND status = 'creating'",
    )
    .bind(link.url)
    .bind(link.expires_at)
    .bind(link.token)
    .bind(link.journey_id)
    .bind(link.reference_id)
    .bind(link.next_poll_at)
    .bind(link.search_text)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    insert_mint(&mut *conn, id, link, now).await?;
    // The search text gained the provider's ids; so do the terms.
    let ids = [link.journey_id, link.reference_id]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    add_terms(conn, id, search_terms(&ids)).await?;
    Ok(true)
}

/// Longest whole part kept as a search term (longer ones are found by their words).
const MAX_TERM_CHARS: usize = 64;

/// The terms a session is found by, from its search text (lower-case parts separated by
/// spaces): each part whole, its runs of letters and digits, the domain of an email, and the
/// ten national digits of an Indian number. A search word matches a term it is a prefix of.
pub fn search_terms(text: &str) -> std::collections::BTreeSet<String> {
    let mut terms = std::collections::BTreeSet::new();
    for part in text.split_whitespace() {
        let part = part.to_lowercase();
        if part.chars().count() <= MAX_TERM_CHARS {
            terms.insert(part.clone());
        }
        if let Some((_, domain)) = part.split_once('@')
            && !domain.is_empty()
            && domain.chars().count() <= MAX_TERM_CHARS
        {
            terms.insert(domain.to_string());
        }
        if let Some(national) = part.strip_prefix("+91")
            && national.len() == 10
            && national.bytes().all(|b| b.is_ascii_digit())
        {
            terms.insert(national.to_string());
        }
        for word in part.split(|c: char| !c.is_alphanumeric()) {
            if !word.is_empty() && word.chars().count() <= MAX_TERM_CHARS {
                terms.insert(word.to_string());
            }
        }
    }
    terms
}

/// Adds search terms to one session (terms it already has are skipped). Terms only ever
/// grow: a session's searchable text never loses a part.
async fn add_terms(
    conn: &mut AnyConnection,
    id: i64,
    terms: std::collections::BTreeSet<String>,
) -> Result<(), sqlx::Error> {
    if terms.is_empty() {
        return Ok(());
    }
    let placeholders = (0..terms.len())
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO kyc_search_terms (term, session_id) VALUES {placeholders} ON CONFLICT DO NOTHING"
    );
    let mut statement = sqlx::query(&sql);
    for term in terms {
        statement = statement.bind(term).bind(id);
    }
    statement.execute(conn).await?;
    Ok(())
}

/// Indexes the search terms of sessions written before the terms table existed (once, after
/// the upgrade: nothing to do when any term exists or there are no sessions).
pub async fn backfill_search_terms(db: &super::Db) -> Result<u64, sqlx::Error> {
    let indexed: Option<i64> =
        sqlx::query_scalar("SELECT session_id FROM kyc_search_terms LIMIT 1")
            .fetch_optional(&db.pool)
            .await?;
    if indexed.is_some() {
        return Ok(0);
    }
    let mut after = 0i64;
    let mut done = 0u64;
    loop {
        let batch: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, search_text FROM kyc_sessions WHERE id > $1 ORDER BY id LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&db.pool)
        .await?;
        let Some((last, _)) = batch.last() else {
            return Ok(done);
        };
        after = *last;
        let mut tx = db.begin().await?;
        for (id, text) in &batch {
            add_terms(&mut tx, *id, search_terms(text)).await?;
        }
        tx.commit().await?;
        done += batch.len() as u64;
    }
}

/// Moves a session from `from` to `to` (only if it is still in `from`); an end state sets
/// `ended_at` and stops polling. `error` replaces the last error when given.
pub async fn set_status(
    conn: &mut AnyConnection,
    id: i64,
    from: &str,
    to: &str,
    ended: bool,
    error: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE kyc_sessions SET status = $1, updated_at = $2, \
         ended_at = CASE WHEN $3 = 1 THEN $2 ELSE ended_at END, \
         next_poll_at = CASE WHEN $3 = 1 THEN NULL ELSE next_poll_at END, \
         last_error = COALESCE($4, last_error) \
         WHERE id = $5 AND status = $6",
    )
    .bind(to)
    .bind(now)
    .bind(i64::from(ended))
    .bind(error)
    .bind(id)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Links a regenerated session to the one it replaced.
pub async fn set_superseded_by(
    conn: &mut AnyConnection,
    id: i64,
    by: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE kyc_sessions SET superseded_by = $1 WHERE id = $2")
        .bind(by)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps the channel a link was last sent by (a reminder goes the same way).
pub async fn set_sent_channel(
    conn: &mut AnyConnection,
    id: i64,
    channel: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE kyc_sessions SET sent_channel = $1 WHERE id = $2")
        .bind(channel)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records one minted provider URL in `link_mints` (returns with an older mint's ids still
/// find the session).
async fn insert_mint(
    conn: &mut AnyConnection,
    session_id: i64,
    link: &CreatedLink<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO link_mints (session_id, minted_at, expires_at, token, journey_id, reference_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(session_id)
    .bind(now)
    .bind(link.expires_at)
    .bind(link.token)
    .bind(link.journey_id)
    .bind(link.reference_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The session of customer link `code`.
pub async fn find_by_code(pool: &AnyPool, code: &str) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SESSION_SELECT} WHERE s.customer_code = $1"))
        .bind(code)
        .fetch_optional(pool)
        .await
}

/// Notes the first time the customer opened the link's page.
pub async fn mark_opened(
    conn: &mut AnyConnection,
    id: i64,
    now: i64,
    language: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET opened_at = COALESCE(opened_at, $1), \
         customer_language = COALESCE(customer_language, $2) WHERE id = $3",
    )
    .bind(now)
    .bind(language)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps the language the customer chose on the link's page (reminders use it).
pub async fn set_customer_language(
    conn: &mut AnyConnection,
    id: i64,
    language: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE kyc_sessions SET customer_language = $1 WHERE id = $2")
        .bind(language)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The customer's consent, as recorded on the session.
pub struct Consent<'a> {
    /// The notice version shown.
    pub notice_version: i64,
    /// The language it was shown in.
    pub language: &'a str,
    /// Keyed hash of the client address.
    pub client_hash: &'a str,
    /// Keyed hash of the user agent.
    pub agent_hash: &'a str,
    /// When.
    pub at: i64,
}

/// Stores the customer's consent and moves the session from `from` to `consented`, if it is
/// still in `from`, has no consent yet, and the notice version they were shown is still the
/// current one (the newest of `privacy_notices`, checked in the same statement). With
/// `reserve_mint` it also takes one of the link's provider-URL mints, and only if one is left.
/// Returns the session as it now stands (the statement holds its write lock); `None`, and
/// nothing written, when a condition does not hold.
pub async fn record_consent(
    conn: &mut AnyConnection,
    id: i64,
    from: &str,
    consent: &Consent<'_>,
    reserve_mint: bool,
) -> Result<Option<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE kyc_sessions SET consent_notice_version = $1, consent_language = $2, consent_at = $3, \
         consent_client_hash = $4, consent_agent_hash = $5, customer_language = $2, \
         status = 'consented', updated_at = $3, mint_count = mint_count + $8 \
         WHERE id = $6 AND status = $7 AND consent_at IS NULL AND ($8 = 0 OR mint_count < mint_limit) \
         AND $1 = (SELECT MAX(version) FROM privacy_notices) \
         RETURNING {SESSION_RETURNING}"
    ))
    .bind(consent.notice_version)
    .bind(consent.language)
    .bind(consent.at)
    .bind(consent.client_hash)
    .bind(consent.agent_hash)
    .bind(id)
    .bind(from)
    .bind(i64::from(reserve_mint))
    .fetch_optional(conn)
    .await
}

/// Takes one of a customer link's provider-URL mints, in one statement so parallel Starts
/// cannot outrun the budget; false when none is left.
pub async fn reserve_mint(conn: &mut AnyConnection, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE kyc_sessions SET mint_count = mint_count + 1 WHERE id = $1 AND mint_count < mint_limit",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives back a mint whose provider call provably never left.
pub async fn give_back_mint(conn: &mut AnyConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET mint_count = mint_count - 1 WHERE id = $1 AND mint_count > 0",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a provider URL minted for a customer link (the mint was reserved; `link.search_text`
/// holds the new provider ids, added to the session's search text) and moves the session from
/// `from` to `to` (the same status for a further mint) in the same statement: the session
/// follows the newest URL and ids (the Eko poller the newest reference), its expiry is the
/// later of the customer link's and the URL's. False, and nothing written, when the session is
/// no longer in `from`.
pub async fn store_mint(
    conn: &mut AnyConnection,
    id: i64,
    from: &str,
    to: &str,
    link: &CreatedLink<'_>,
    client_ref_id: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE kyc_sessions SET link_url = $1, provider_url_expires_at = $2, \
         expires_at = CASE WHEN expires_at IS NULL OR expires_at < $2 THEN $2 ELSE expires_at END, \
         provider_token = $3, journey_id = $4, reference_id = $5, \
         next_poll_at = COALESCE($6, next_poll_at), search_text = search_text || ' ' || $7, minted_at = $8, updated_at = $8, \
         client_ref_id = COALESCE($10, client_ref_id), status = $11 \
         WHERE id = $9 AND status = $12",
    )
    .bind(link.url)
    .bind(link.expires_at)
    .bind(link.token)
    .bind(link.journey_id)
    .bind(link.reference_id)
    .bind(link.next_poll_at)
    .bind(link.search_text)
    .bind(now)
    .bind(id)
    .bind(client_ref_id)
    .bind(to)
    .bind(from)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    insert_mint(&mut *conn, id, link, now).await?;
    let ids = [link.journey_id, link.reference_id]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    add_terms(conn, id, search_terms(&ids)).await?;
    Ok(true)
}

/// Stores a new one-time code's hash and expiry and counts the send, unless the link sent
/// `max_sends` already or refuses codes until later; false then.
pub async fn store_code(
    conn: &mut AnyConnection,
    id: i64,
    hash: &str,
    expires_at: i64,
    max_sends: i64,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE kyc_sessions SET otp_hash = $1, otp_expires_at = $2, otp_sends = otp_sends + 1 \
         WHERE id = $3 AND otp_sends < $4 AND (otp_locked_until IS NULL OR otp_locked_until <= $5)",
    )
    .bind(hash)
    .bind(expires_at)
    .bind(id)
    .bind(max_sends)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts one try of a one-time code before it is compared, in one statement, so parallel
/// guesses cannot outrun the limit: the try's number, or `None` when the link refuses codes
/// (locked, or `max_tries` counted already).
pub async fn count_code_try(
    conn: &mut AnyConnection,
    id: i64,
    max_tries: i64,
    now: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE kyc_sessions SET otp_failures = otp_failures + 1 \
         WHERE id = $1 AND otp_failures < $2 AND (otp_locked_until IS NULL OR otp_locked_until <= $3) \
         RETURNING otp_failures",
    )
    .bind(id)
    .bind(max_tries)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// A right code: passed now; the code is spent and the tries start again.
pub async fn code_passed(conn: &mut AnyConnection, id: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET otp_passed_at = $1, otp_hash = NULL, otp_failures = 0 WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Too many wrong codes: the link refuses codes until `until`; the code is spent, and the
/// tries start again after the lock.
pub async fn lock_codes(conn: &mut AnyConnection, id: i64, until: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET otp_locked_until = $1, otp_hash = NULL, otp_failures = 0 WHERE id = $2",
    )
    .bind(until)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The newest timeline event's id (0 when there is none).
pub async fn last_event_id(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM kyc_events")
        .fetch_one(pool)
        .await
}

/// One move of a session, as the live view reports it.
#[derive(sqlx::FromRow, Debug, Clone, serde::Serialize)]
pub struct SessionMove {
    /// The event's id (the stream's position).
    pub id: i64,
    /// The session.
    pub public_id: String,
    /// Its status now.
    pub status: String,
    /// What happened (`opened`, `consented`, `started`, `sent`, …).
    pub kind: String,
}

/// Timeline events after `after`, oldest first, at most `limit`, with their session's public
/// id and current status (read by the primary key's order).
pub async fn moves_after(
    pool: &AnyPool,
    after: i64,
    limit: i64,
) -> Result<Vec<SessionMove>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.id, s.public_id, s.status, e.kind FROM kyc_events e \
         JOIN kyc_sessions s ON s.id = e.session_id WHERE e.id > $1 ORDER BY e.id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Schedules a session's first reminder at `at` (kept when one is scheduled already): only a
/// customer link with reminders on, not started yet, that has reminders left.
pub async fn schedule_reminder(
    conn: &mut AnyConnection,
    id: i64,
    at: i64,
    max_reminders: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET next_reminder_at = COALESCE(next_reminder_at, $1) \
         WHERE id = $2 AND reminders_on = 1 AND customer_code IS NOT NULL \
         AND status IN ('issued', 'opened', 'consented') AND reminders_sent < $3",
    )
    .bind(at)
    .bind(id)
    .bind(max_reminders)
    .execute(conn)
    .await?;
    Ok(())
}

/// Turns a link's reminders on or off (off also drops the scheduled one).
pub async fn set_reminders(conn: &mut AnyConnection, id: i64, on: bool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET reminders_on = $1, \
         next_reminder_at = CASE WHEN $1 = 1 THEN next_reminder_at ELSE NULL END WHERE id = $2",
    )
    .bind(i64::from(on))
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sessions whose reminder is due at `now` and not being sent by another instance.
pub async fn due_reminders(pool: &AnyPool, now: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM kyc_sessions WHERE next_reminder_at <= $1 \
         AND (reminder_lease_until IS NULL OR reminder_lease_until < $1) \
         ORDER BY next_reminder_at LIMIT 20",
    )
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Takes a due reminder's lease for `owner` until `until`, in one statement; false when another
/// instance holds it or it is no longer due.
pub async fn claim_reminder(
    pool: &AnyPool,
    id: i64,
    owner: &str,
    now: i64,
    until: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE kyc_sessions SET reminder_lease_owner = $1, reminder_lease_until = $2 \
         WHERE id = $3 AND next_reminder_at <= $4 \
         AND (reminder_lease_until IS NULL OR reminder_lease_until < $4)",
    )
    .bind(owner)
    .bind(until)
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends `owner`'s turn at a reminder: counts it when one was `sent`, sets the next one (or
/// none) and gives the lease back.
pub async fn finish_reminder(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    sent: bool,
    next: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET reminders_sent = reminders_sent + $1, next_reminder_at = $2, \
         reminder_lease_owner = NULL, reminder_lease_until = NULL \
         WHERE id = $3 AND reminder_lease_owner = $4",
    )
    .bind(i64::from(sent))
    .bind(next)
    .bind(id)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the masked result and the Eko verification id.
pub async fn set_result(
    conn: &mut AnyConnection,
    id: i64,
    result: Option<&str>,
    verification_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET result = COALESCE($1, result), verification_id = COALESCE($2, verification_id) WHERE id = $3",
    )
    .bind(result)
    .bind(verification_id)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes a session that is being polled due for its next poll at `now` (a session not polled
/// stays so).
pub async fn poll_now(conn: &mut AnyConnection, id: i64, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET next_poll_at = $1 WHERE id = $2 AND next_poll_at IS NOT NULL",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends a timeline event.
pub async fn add_event(
    conn: &mut AnyConnection,
    session_id: i64,
    kind: &str,
    actor: &str,
    detail: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO kyc_events (session_id, at, kind, actor, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session_id)
    .bind(now)
    .bind(kind)
    .bind(actor)
    .bind(detail)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts one return of the customer's browser on the session and keeps what it reported
/// (`claim`, already sanitised); returns how many times it has come back now.
pub async fn count_return(
    conn: &mut AnyConnection,
    id: i64,
    claim: Option<&str>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE kyc_sessions SET return_claim = $1, return_count = return_count + 1, last_return_at = $2 \
         WHERE id = $3 RETURNING return_count",
    )
    .bind(claim)
    .bind(now)
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Rewrites the customer's latest event of `kind` on a session's timeline with `detail` (one
/// event counts every repeated return); false when there is no such event yet.
pub async fn rewrite_customer_event(
    conn: &mut AnyConnection,
    session_id: i64,
    kind: &str,
    detail: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE kyc_events SET detail = $1 WHERE id = (SELECT MAX(id) FROM kyc_events \
         WHERE session_id = $2 AND kind = $3 AND actor = 'customer')",
    )
    .bind(detail)
    .bind(session_id)
    .bind(kind)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores who recorded a session's outcome by hand, when, and their (scrubbed) note.
pub async fn set_recorded_outcome(
    conn: &mut AnyConnection,
    id: i64,
    by: &str,
    note: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET outcome_by = $1, outcome_note = $2, outcome_at = $3 WHERE id = $4",
    )
    .bind(by)
    .bind(note)
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A timeline event as stored.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct EventRow {
    /// Unix seconds.
    pub at: i64,
    /// Kind.
    pub kind: String,
    /// Actor.
    pub actor: String,
    /// Detail.
    pub detail: String,
}

/// A session's timeline, oldest first.
pub async fn events(pool: &AnyPool, session_id: i64) -> Result<Vec<EventRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT at, kind, actor, detail FROM kyc_events WHERE session_id = $1 ORDER BY id",
    )
    .bind(session_id)
    .fetch_all(pool)
    .await
}

/// A delivery as stored.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct DeliveryRow {
    /// Id.
    pub id: i64,
    /// Channel (stored as its text spelling).
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    /// Masked destination.
    pub destination_masked: String,
    /// Outcome.
    pub outcome: String,
    /// Error.
    pub error: Option<String>,
    /// Who.
    pub by_email: Option<String>,
    /// When.
    pub attempted_at: i64,
}

/// A session's deliveries, newest first.
pub async fn deliveries(pool: &AnyPool, session_id: i64) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.id, d.channel, d.destination_masked, d.outcome, d.error, u.email AS by_email, d.attempted_at \
         FROM deliveries d LEFT JOIN users u ON u.id = d.attempted_by WHERE d.session_id = $1 ORDER BY d.id DESC",
    )
    .bind(session_id)
    .fetch_all(pool)
    .await
}

/// Records a delivery attempt in `sending`; returns its id.
pub async fn insert_delivery(
    conn: &mut AnyConnection,
    session_id: i64,
    channel: Channel,
    destination_masked: &str,
    by: Option<i64>,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO deliveries (session_id, channel, destination_masked, outcome, attempted_by, attempted_at) \
         VALUES ($1, $2, $3, 'sending', $4, $5) RETURNING id",
    )
    .bind(session_id)
    .bind(channel.as_str())
    .bind(destination_masked)
    .bind(by)
    .bind(now)
    .fetch_one(conn)
    .await
}

/// Finishes a delivery attempt.
pub async fn finish_delivery(
    conn: &mut AnyConnection,
    id: i64,
    outcome: &str,
    provider_message_id: Option<&str>,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET outcome = $1, provider_message_id = $2, error = $3 WHERE id = $4",
    )
    .bind(outcome)
    .bind(provider_message_id)
    .bind(error)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// An email template: (subject, body).
pub async fn template(pool: &AnyPool, name: &str) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT subject, body FROM message_templates WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// A template with who saved it and when: (subject, body, updated_by, updated_at).
pub async fn template_with_author(
    pool: &AnyPool,
    name: &str,
) -> Result<Option<(String, String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT subject, body, updated_by, updated_at FROM message_templates WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// Saves an email template.
pub async fn save_template(
    conn: &mut AnyConnection,
    name: &str,
    subject: &str,
    body: &str,
    by: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO message_templates (name, subject, body, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET subject = excluded.subject, body = excluded.body, \
         updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(subject)
    .bind(body)
    .bind(by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Filters of the sessions list, parsed.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Status.
    pub status: Option<String>,
    /// Provider.
    pub provider: Option<Provider>,
    /// Flow.
    pub flow: Option<String>,
    /// Creator's user id.
    pub created_by: Option<i64>,
    /// Created at or after (Unix seconds).
    pub from: Option<i64>,
    /// Created before (Unix seconds).
    pub to: Option<i64>,
    /// Exact phone (E.164) when the search looks like a phone number.
    pub phone: Option<String>,
    /// Words, each matched as a prefix of one of a session's search terms.
    pub text: Option<String>,
    /// Keyset cursor.
    pub before_id: Option<i64>,
}

/// One search word, as an index range of terms, and whether it drives the query.
struct PlannedWord {
    low: String,
    high: String,
    leads: bool,
}

/// At most this many sessions for a word to drive the query from the terms index.
const RARE_WORD_SESSIONS: i64 = 2_000;

/// A word matching at most this many sessions leads without counting the other words.
const RARE_ENOUGH_TO_STOP: i64 = 100;

/// The words of `text` as term ranges; the rarest leads if it is rare enough.
async fn plan_words(pool: &AnyPool, text: &str) -> Result<Vec<PlannedWord>, sqlx::Error> {
    let mut words: Vec<PlannedWord> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for word in text.split_whitespace().map(str::to_lowercase) {
        let word: String = word.chars().take(MAX_TERM_CHARS).collect();
        if !seen.insert(word.clone()) {
            continue;
        }
        words.push(PlannedWord {
            high: format!("{word}\u{10FFFF}"),
            low: word,
            leads: false,
        });
    }
    // Longer words tend to be rarer: count them first, each only up to the fewest seen so far,
    // and stop at a word rare enough that no other could make the query much cheaper.
    let mut order: Vec<usize> = (0..words.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(words[index].low.chars().count()));
    let mut rarest: Option<(usize, i64)> = None;
    for index in order {
        let cap = rarest.map_or(RARE_WORD_SESSIONS + 1, |(_, fewest)| fewest);
        let word = &words[index];
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM kyc_search_terms WHERE term >= $1 AND term < $2 LIMIT $3) AS x",
        )
        .bind(&word.low)
        .bind(&word.high)
        .bind(cap)
        .fetch_one(pool)
        .await?;
        if rarest.is_none_or(|(_, fewest)| count < fewest) {
            rarest = Some((index, count));
        }
        if count <= RARE_ENOUGH_TO_STOP {
            break;
        }
    }
    if let Some((index, count)) = rarest
        && count <= RARE_WORD_SESSIONS
    {
        words[index].leads = true;
    }
    Ok(words)
}

/// The `WHERE` clause for `query`; `cursor_created_at` is the cursor session's creation time
/// when the page is ordered by creation time (see [`orders_by_creation`]).
fn where_clause(
    query: &SessionQuery,
    words: &[PlannedWord],
    cursor_created_at: Option<i64>,
) -> (String, Vec<Bind>) {
    let mut conditions = Vec::new();
    let mut binds = Vec::new();
    let mut add = |sql: &str, bind: Bind| {
        binds.push(bind);
        conditions.push(sql.replace('?', &format!("${}", binds.len())));
    };
    if let Some(status) = &query.status {
        add("s.status = ?", Bind::Text(status.clone()));
    }
    if let Some(provider) = query.provider {
        add("s.provider = ?", Bind::Text(provider.as_str().into()));
    }
    if let Some(flow) = &query.flow {
        add("s.flow = ?", Bind::Text(flow.clone()));
    }
    if let Some(created_by) = query.created_by {
        add("s.created_by = ?", Bind::Int(created_by));
    }
    if let Some(from) = query.from {
        add("s.created_at >= ?", Bind::Int(from));
    }
    if let Some(to) = query.to {
        add("s.created_at < ?", Bind::Int(to));
    }
    if let Some(phone) = &query.phone {
        add("s.phone = ?", Bind::Text(phone.clone()));
    }
    match (query.before_id, cursor_created_at) {
        (Some(before), Some(created_at)) => {
            binds.push(Bind::Int(created_at));
            binds.push(Bind::Int(before));
            let (a, b) = (binds.len() - 1, binds.len());
            conditions.push(format!("(s.created_at, s.id) < (${a}, ${b})"));
        }
        (Some(before), None) => add("s.id < ?", Bind::Int(before)),
        (None, _) => {}
    }
    for word in words {
        // A rare word leads (its few sessions are read from the terms index, then sorted);
        // a common one filters sessions walked newest first, which finds a page quickly.
        let sql = if word.leads {
            "s.id IN (SELECT session_id FROM kyc_search_terms WHERE term >= ? AND term < ?)"
        } else {
            "EXISTS (SELECT 1 FROM kyc_search_terms t WHERE t.session_id = s.id AND t.term >= ? AND t.term < ?)"
        };
        binds.push(Bind::Text(word.low.clone()));
        binds.push(Bind::Text(word.high.clone()));
        let (a, b) = (binds.len() - 1, binds.len());
        conditions.push(
            sql.replacen('?', &format!("${a}"), 1)
                .replacen('?', &format!("${b}"), 1),
        );
    }
    (super::where_clause(&conditions), binds)
}

/// Up to `limit` sessions matching `query`, newest first (keyset on id).
pub async fn search(
    pool: &AnyPool,
    query: &SessionQuery,
    limit: i64,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    let (sql, binds) = search_sql(pool, query, limit).await?;
    sqlx::query_as_with::<_, SessionRow, _>(&sql, super::arguments(binds)?)
        .fetch_all(pool)
        .await
}

async fn search_sql(
    pool: &AnyPool,
    query: &SessionQuery,
    limit: i64,
) -> Result<(String, Vec<Bind>), sqlx::Error> {
    let words = match &query.text {
        Some(text) => plan_words(pool, text).await?,
        None => Vec::new(),
    };
    let by_creation = orders_by_creation(query);
    let cursor_created_at = match query.before_id {
        Some(before) if by_creation => {
            sqlx::query_scalar::<_, i64>("SELECT created_at FROM kyc_sessions WHERE id = $1")
                .bind(before)
                .fetch_optional(pool)
                .await?
        }
        _ => None,
    };
    let (clause, binds) = where_clause(query, &words, cursor_created_at);
    let order = if by_creation {
        "s.created_at DESC, s.id DESC"
    } else {
        "s.id DESC"
    };
    let sql = format!(
        "{SESSION_SELECT} {clause} ORDER BY {order} LIMIT {}",
        limit.clamp(1, 1000)
    );
    Ok((sql, binds))
}

/// Whether a page of `query` is ordered by creation time (then id) rather than by id alone.
///
/// Ids and creation times rise together, but only the `(created_at, id)` index can serve a
/// date range newest first without sorting every session of the range; the cursor then
/// continues from its session's `(created_at, id)`.
fn orders_by_creation(query: &SessionQuery) -> bool {
    query.from.is_some() || query.to.is_some()
}

/// The database's plan for [`search`] (benchmark reports), one line per plan row.
#[cfg(feature = "bench")]
pub async fn explain_search(
    db: &super::Db,
    query: &SessionQuery,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::Row;
    let (sql, binds) = search_sql(&db.pool, query, limit).await?;
    let sql = match db.backend {
        super::Backend::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
        super::Backend::Postgres => format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}"),
    };
    let rows = sqlx::query_with(&sql, super::arguments(binds)?)
        .fetch_all(&db.pool)
        .await?;
    Ok(rows
        .iter()
        .map(|row| match db.backend {
            super::Backend::Sqlite => row.try_get::<String, _>(3).unwrap_or_default(),
            super::Backend::Postgres => row.try_get::<String, _>(0).unwrap_or_default(),
        })
        .collect())
}

/// Open sessions whose expiry has passed.
pub async fn expired_open(pool: &AnyPool, now: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT id, status FROM kyc_sessions WHERE status IN {OPEN} \
         AND expires_at < $1 ORDER BY expires_at LIMIT 500"
    ))
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Sessions still `creating` since before `before`.
pub async fn stale_creating(pool: &AnyPool, before: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM kyc_sessions WHERE status = 'creating' AND created_at < $1 LIMIT 500",
    )
    .bind(before)
    .fetch_all(pool)
    .await
}

/// Eko sessions due for a status poll.
pub async fn due_polls(pool: &AnyPool, now: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM kyc_sessions WHERE next_poll_at <= $1 AND status IN {OPEN} \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY next_poll_at LIMIT 20"
    ))
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Takes the poll lease of a session; false when another poller holds it.
pub async fn claim_poll(
    pool: &AnyPool,
    id: i64,
    owner: &str,
    now: i64,
    lease_seconds: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE kyc_sessions SET lease_owner = $1, lease_until = $2 \
         WHERE id = $3 AND (lease_until IS NULL OR lease_until < $4) AND next_poll_at <= $4",
    )
    .bind(owner)
    .bind(now + lease_seconds)
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the lease back and schedules the next poll (`None`: no more polls).
pub async fn release_poll(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    next_poll_at: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET lease_owner = NULL, lease_until = NULL, next_poll_at = $1, poll_count = poll_count + 1 \
         WHERE id = $2 AND lease_owner = $3",
    )
    .bind(next_poll_at)
    .bind(id)
    .bind(owner)
    .execute(conn)
    .await?;
    Ok(())
}

/// Notes a failed Eko poll: one more in a row, and when the run began (kept if it had).
pub async fn note_poll_failure(
    conn: &mut AnyConnection,
    id: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET poll_failures = poll_failures + 1, \
         poll_failing_since = COALESCE(poll_failing_since, $1) WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a run of failed Eko polls (the provider answered).
pub async fn clear_poll_failures(conn: &mut AnyConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE kyc_sessions SET poll_failures = 0, poll_failing_since = NULL \
         WHERE id = $1 AND (poll_failures <> 0 OR poll_failing_since IS NOT NULL)",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores a masked result; `partial` when it holds only the status call's details.
pub async fn store_result(
    conn: &mut AnyConnection,
    id: i64,
    result: &str,
    partial: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE kyc_sessions SET result = $1, result_partial = $2 WHERE id = $3")
        .bind(result)
        .bind(i64::from(partial))
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Open sessions whose last `at_least` Eko polls or more all failed, longest failing first.
pub async fn failing_polls(pool: &AnyPool, at_least: i64) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SESSION_SELECT} WHERE s.poll_failing_since IS NOT NULL AND s.poll_failures >= $1 \
         AND s.status IN {OPEN} ORDER BY s.poll_failing_since LIMIT 20"
    ))
    .bind(at_least)
    .fetch_all(pool)
    .await
}

/// Sessions per status created since `since`.
pub async fn count_by_status(
    pool: &AnyPool,
    since: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, COUNT(*) FROM kyc_sessions WHERE created_at >= $1 GROUP BY status",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

/// Creation times since `since` (for the per-day chart), as day numbers.
pub async fn count_per_day(pool: &AnyPool, since: i64) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT created_at / 86400 AS day, COUNT(*) FROM kyc_sessions WHERE created_at >= $1 GROUP BY created_at / 86400",
    )
    .bind(since)
    .fetch_all(pool)
    .await
}

/// Sessions created since `since` that ever reached an event kind.
pub async fn count_reached(pool: &AnyPool, since: i64, kind: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(DISTINCT e.session_id) FROM kyc_events e JOIN kyc_sessions s ON s.id = e.session_id \
         WHERE s.created_at >= $1 AND e.kind = $2",
    )
    .bind(since)
    .bind(kind)
    .fetch_one(pool)
    .await
}

/// Open sessions expiring between now and `until`.
pub async fn expiring(
    pool: &AnyPool,
    now: i64,
    until: i64,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SESSION_SELECT} WHERE s.status IN {OPEN} AND s.expires_at >= $1 \
         AND s.expires_at < $2 ORDER BY s.expires_at LIMIT 20"
    ))
    .bind(now)
    .bind(until)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::{SESSION_RETURNING, SESSION_SELECT, search_terms};

    /// The columns a locked read returns are the ones a plain read selects, in the same order.
    #[test]
    fn locked_read_returns_the_columns_of_a_read() {
        let selected: Vec<String> = SESSION_SELECT
            .trim_start_matches("SELECT ")
            .split(" FROM ")
            .next()
            .unwrap()
            .split(',')
            .map(|column| column.trim().trim_start_matches("s.").to_string())
            .collect();
        let returned: Vec<String> = SESSION_RETURNING
            .split(',')
            .map(|column| column.trim().to_string())
            .collect();
        assert_eq!(selected.len(), returned.len());
        for (selected, returned) in selected.iter().zip(&returned) {
            if selected == "u.email AS creator_email" {
                assert!(returned.ends_with(") AS creator_email"), "{returned}");
            } else {
                assert_eq!(selected, returned);
            }
        }
    }

    fn terms(text: &str) -> Vec<String> {
        search_terms(text).into_iter().collect()
    }

    #[test]
    fn search_terms_cover_words_emails_and_indian_numbers() {
        assert_eq!(
            terms("meera o'brien +919876543210 jane.doe@example.com ref-42"),
            [
                "+919876543210",
                "42",
                "919876543210",
                "9876543210",
                "brien",
                "com",
                "doe",
                "example",
                "example.com",
                "jane",
                "jane.doe@example.com",
                "meera",
                "o",
                "o'brien",
                "ref",
                "ref-42",
            ]
        );
    }

    #[test]
    fn search_terms_lower_case_and_skip_overlong_parts() {
        let long = "x".repeat(65);
        let found = terms(&format!("ÅSA {long}-1"));
        assert!(found.contains(&"åsa".to_string()));
        assert!(!found.iter().any(|t| t.chars().count() > 64), "{found:?}");
        assert!(found.contains(&"1".to_string()));
        assert!(terms("   ").is_empty());
        // A number that is not Indian keeps its digits but gains no national form.
        assert_eq!(terms("+4915112345678"), ["+4915112345678", "4915112345678"]);
    }
}
