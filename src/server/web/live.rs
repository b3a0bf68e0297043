//! `GET /sessions/events`: the server-sent events that keep the sessions list, a session's page
//! and the dashboard current while a session moves (opened, consented, started, returned,
//! completed…). Each connection reads the timeline's new rows from the database every
//! [`POLL_EVERY`], so a move made by any instance reaches every instance's viewers. An event
//! names the session and its status only; the page then reads what its viewer may see through
//! its own door. The stream ends after [`STREAM_FOR`] and the browser reconnects, through the
//! gate again (a signed-out or disabled user gets no more).

use super::doors::file_caller;
use crate::server::db::links as repo;
use crate::server::state::AppState;
use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// The route, as the router and the access table spell it.
pub const ROUTE: &str = crate::access::SESSION_EVENTS_ROUTE;

/// How often a connection looks for new moves.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// How long one stream lasts before the browser reconnects through the gate.
pub const STREAM_FOR: Duration = Duration::from_secs(300);

/// Moves sent per look at most (a burst beyond it follows on the next look).
const BATCH: i64 = 200;

/// The stream of session moves from now on.
pub async fn session_events(State(state): State<AppState>, request: Request) -> Response {
    let (meta, _user) = match file_caller(&state, &request, ROUTE).await {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    let start = match repo::last_event_id(&state.db.pool).await {
        Ok(id) => id,
        Err(error) => {
            tracing::error!(request_id = %meta.request_id, %error, "could not start the live session stream");
            return super::error::error_response(ROUTE, error.into());
        }
    };
    let until = tokio::time::Instant::now() + STREAM_FOR;
    // Comments often enough that neither the request deadline's idle cut-off nor a proxy
    // closes a quiet stream.
    let keep_alive = KeepAlive::new()
        .interval((state.config.request_deadline / 2).min(Duration::from_secs(10)))
        .text("keep-alive");
    let stream = futures::stream::unfold((state, start), move |(state, mut after)| async move {
        loop {
            if tokio::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(POLL_EVERY).await;
            match repo::moves_after(&state.db.pool, after, BATCH).await {
                Ok(moves) if !moves.is_empty() => {
                    after = moves.last().map_or(after, |m| m.id);
                    let event = Event::default()
                        .event("sessions")
                        .id(after.to_string())
                        .json_data(&moves)
                        .unwrap_or_default();
                    return Some((Ok::<_, std::convert::Infallible>(event), (state, after)));
                }
                Ok(_) => {}
                // The database is away: the stream waits for it (the page keeps what it shows).
                Err(error) => tracing::warn!(%error, "live session stream could not read moves"),
            }
        }
    });
    Sse::new(stream).keep_alive(keep_alive).into_response()
}
