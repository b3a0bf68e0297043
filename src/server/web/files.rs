//! File routes: the CSV exports (audit log, sessions) and the QR image of a session's link.
//! Each is a door of the access table: its caller passes the gate as the file route it is.

use super::doors::file_caller;
use super::error::{database_failure, error_response};
use super::request::query_pairs;
use crate::server::audit::{AuditEvent, Outcome, RequestMeta};
use crate::server::auth::guard::{self, Door, Refusal};
use crate::server::db;
use crate::server::state::AppState;
use crate::types::AppError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// `GET /audit/export.csv?<filters>`: the filtered audit rows as CSV, newest first, streamed
/// page by page (keyset), with the chain head at the time of the export as the last line.
/// Auditors and admins only; the export itself is recorded before the first byte.
pub async fn audit_export(
    State(state): State<AppState>,
    axum::extract::Query(filter): axum::extract::Query<crate::types::AuditFilter>,
    request: Request,
) -> Response {
    use crate::server::audit::view;
    use crate::server::db::audit as repo;
    use futures::StreamExt as _;

    const PATH: &str = "/audit/export.csv";
    let (meta, user) = match file_caller(&state, &request, PATH).await {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let mut query = match view::parse_filter(&filter) {
        Ok(query) => query,
        Err(error) => return error_response(PATH, error),
    };
    let head = match repo::head_of(&state.db.pool).await {
        Ok(head) => head,
        Err(error) => return database_failure(PATH, &meta.request_id, &error),
    };
    // Pin the export to the rows that existed when it started.
    let head_seq = head.as_ref().map(|(seq, _)| *seq).unwrap_or(0);
    query.before_seq = Some(
        query
            .before_seq
            .map_or(head_seq + 1, |b| b.min(head_seq + 1)),
    );
    let event = AuditEvent::new(user.actor(), "audit.export", Outcome::Success).detail(
        serde_json::json!({ "filter": view::recorded_filter(&filter), "head_seq": head_seq }),
    );
    if let Err(refused) = record_export(&state, &meta, &event, PATH).await {
        return refused;
    }
    let header_line = crate::server::csv::line(view::CSV_HEADER);
    let trailer = view::csv_trailer(head);
    let rows = csv_pages(
        query,
        1000,
        meta.request_id.clone(),
        {
            let pool = state.db.pool.clone();
            move |query| {
                let pool = pool.clone();
                async move { repo::search(&pool, &query, 1000).await }
            }
        },
        view::csv_line,
        |query, last| crate::server::db::audit::AuditQuery {
            before_seq: Some(last.seq),
            ..query.clone()
        },
    );
    let body = futures::stream::once(async move { Ok(header_line) })
        .chain(rows)
        .chain(futures::stream::once(async move { Ok(trailer) }));
    csv_download("audit", body)
}

/// The sandbox outbox's route.
pub const SANDBOX_OUTBOX: &str = "/sandbox/messages";

/// `GET /sandbox/messages` (only with the sandbox on): the sandbox's SMS / WhatsApp outbox, for
/// signed-in admins; the texts carry customers' names and live links.
pub async fn sandbox_outbox(
    State(state): State<AppState>,
    sandbox: crate::server::sandbox::Sandbox,
    request: Request,
) -> Response {
    match file_caller(&state, &request, SANDBOX_OUTBOX).await {
        Ok(_) => sandbox.outbox_page(),
        Err(refused) => refused,
    }
}

/// `GET /sessions/{public_id}/qr.svg`: the QR code of an open session's link, for operators and
/// admins (it is the link itself; auditors see only that a link exists). Drawn
/// on the server on request rather than inside the call that creates the link, so creating a
/// link never waits for it. Like every page, it is not stored by the browser (`no-store`).
pub async fn session_qr(
    State(state): State<AppState>,
    axum::extract::Path(public_id): axum::extract::Path<String>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_string();
    let (meta, _user) = match file_caller(&state, &request, "/sessions/{public_id}/qr.svg").await {
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
            return database_failure(&path, &meta.request_id, &error);
        }
    };
    let open = crate::types::KycStatus::parse(&row.status).is_some_and(|s| s.is_open());
    // The link staff hand over: KYC Desk's customer link, or the provider's URL in person.
    let url = crate::server::links::customer_link_url(&state, &row).or(row.link_url);
    let (Some(url), true) = (url, open) else {
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
pub async fn sessions_export(
    State(state): State<AppState>,
    axum::extract::Query(filter): axum::extract::Query<crate::types::SessionFilter>,
    request: Request,
) -> Response {
    use crate::server::db::links as repo;
    use futures::StreamExt as _;

    const PATH: &str = "/sessions/export.csv";
    let (meta, user) = match file_caller(&state, &request, PATH).await {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let contacts = query_pairs(request.uri())
        .iter()
        .any(|(k, v)| k == "contacts" && (v == "1" || v == "on" || v == "true"));
    if contacts {
        // The unmasked export is its own door: admins only, after a step-up.
        match guard::admit(
            &state,
            None,
            Some(user.clone()),
            &meta,
            Door::File(crate::access::CONTACTS_EXPORT_ROUTE),
        )
        .await
        {
            Ok(_) => {}
            Err(Refusal::StepUp(_)) => {
                return super::doors::step_up_redirect(
                    request
                        .uri()
                        .path_and_query()
                        .map_or(PATH, |pq| pq.as_str()),
                );
            }
            Err(refusal) => return error_response(PATH, refusal.into()),
        }
    }
    let staff: Vec<(i64, String)> = match db::users::list(&state.db.pool).await {
        Ok(users) => users.into_iter().map(|u| (u.id, u.email)).collect(),
        Err(error) => return database_failure(PATH, &meta.request_id, &error),
    };
    let query = match crate::server::links::parse_filter(&filter, &staff) {
        Ok(query) => query,
        Err(error) => return error_response(PATH, error),
    };
    let event = AuditEvent::new(user.actor(), "session.export", Outcome::Success).detail(
        serde_json::json!({
            "filter": crate::server::links::view::recorded_filter(&filter),
            "contacts": contacts,
        }),
    );
    if let Err(refused) = record_export(&state, &meta, &event, PATH).await {
        return refused;
    }
    let header_line = crate::server::csv::line(crate::server::links::view::CSV_HEADER);
    let rows = csv_pages(
        query,
        500,
        meta.request_id.clone(),
        {
            let pool = state.db.pool.clone();
            move |query| {
                let pool = pool.clone();
                async move { repo::search(&pool, &query, 500).await }
            }
        },
        move |row: &crate::server::db::links::SessionRow| {
            crate::server::links::view::csv_line(row, contacts)
        },
        |query, last| repo::SessionQuery {
            before_id: Some(last.id),
            ..query.clone()
        },
    );
    let body = futures::stream::once(async move { Ok(header_line) }).chain(rows);
    csv_download("sessions", body)
}

/// The CSV lines of rows read page by page (keyset): `fetch` reads the page of a cursor, `line`
/// formats a row, `after` is the cursor past a full page's last row. A database error ends the
/// stream with an error (logged with the request id), so the download breaks off visibly
/// instead of ending as if complete.
fn csv_pages<Q, R, Fut>(
    first: Q,
    page_size: usize,
    request_id: String,
    fetch: impl Fn(Q) -> Fut + Send + 'static,
    line: impl Fn(&R) -> String + Send + 'static,
    after: impl Fn(&Q, &R) -> Q + Send + 'static,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> + Send + 'static
where
    Q: Clone + Send + 'static,
    R: Send + 'static,
    Fut: Future<Output = Result<Vec<R>, sqlx::Error>> + Send + 'static,
{
    futures::stream::unfold(
        (Some(first), fetch, line, after, request_id),
        move |(cursor, fetch, line, after, request_id)| async move {
            let query = cursor?;
            match fetch(query.clone()).await {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let chunk: String = rows.iter().map(&line).collect();
                    let next = (rows.len() == page_size)
                        .then(|| rows.last().map(|last| after(&query, last)))
                        .flatten();
                    Some((Ok(chunk), (next, fetch, line, after, request_id)))
                }
                Err(error) => {
                    tracing::error!(%request_id, %error, "export stopped by a database error");
                    Some((
                        Err(std::io::Error::other("database error")),
                        (None, fetch, line, after, request_id),
                    ))
                }
            }
        },
    )
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
