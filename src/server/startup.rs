//! The one start-up path, shared by `kyc-desk serve`, the admin commands, the tests' `TestApp`
//! and the bench and soak tools: configuration → [`AppState`] → first-run work → serving.
//! Each caller takes the steps it needs, so none of them re-creates one.

use crate::server::auth::accounts;
use crate::server::config::{Config, ConfigError};
use crate::server::db::DbError;
use crate::server::sandbox;
use crate::server::state::{AppState, StartError};
use crate::server::web;
use std::collections::HashMap;
use std::net::SocketAddr;

/// The configuration of an in-process server or tool, from name/value pairs instead of the
/// environment (tests, bench, soak); the same validation as [`Config::from_env`].
pub fn config_from<K: AsRef<str>, V: AsRef<str>>(
    vars: impl IntoIterator<Item = (K, V)>,
) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .into_iter()
        .map(|(name, value)| (name.as_ref().to_string(), value.as_ref().to_string()))
        .collect();
    Config::from_lookup(|name| vars.get(name).cloned())
}

/// Why the state could not be opened, with advice when the operator can fix it on the machine.
#[derive(Debug)]
pub struct OpenFailure {
    /// What failed.
    pub error: StartError,
    /// What to do about it, when the database's error code says (see [`start_hint`]).
    pub hint: Option<&'static str>,
}

impl std::fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for OpenFailure {}

/// Opens (and migrates) the database and prepares the services: the state every command,
/// server, test and tool works on.
pub async fn open(config: Config) -> Result<AppState, OpenFailure> {
    let sqlite = config.database_url.starts_with("sqlite:");
    AppState::open(config).await.map_err(|error| {
        let hint = start_hint(&error, sqlite);
        OpenFailure { error, hint }
    })
}

/// Why the first-run work failed.
#[derive(Debug, thiserror::Error)]
pub enum FirstRunError {
    /// The one-time setup link could not be stored.
    #[error("cannot prepare the setup link: {0}")]
    SetupLink(#[from] sqlx::Error),
}

/// What a serving process does once before it answers: with no user yet, logs the one-time
/// link that creates the first admin; with the sandbox on, stores its credentials (labelled as
/// sandbox) unless they are there. A failed sandbox seeding is logged, not fatal.
pub async fn first_run(state: &AppState) -> Result<(), FirstRunError> {
    if let Some(token) = accounts::issue_setup_token(state).await? {
        let link = state
            .config
            .public_url
            .join(&format!("setup/{token}"))
            .map(|u| u.to_string())
            .unwrap_or_default();
        tracing::warn!(
            "No user exists yet. Open this one-time link to create the first admin: {link}"
        );
    }
    if state.config.sandbox {
        match sandbox::seed::seed(state).await {
            Ok(0) => {}
            Ok(created) => {
                tracing::info!(created, "stored sandbox credentials (labelled as sandbox)")
            }
            Err(error) => tracing::warn!(%error, "could not store the sandbox credentials"),
        }
    }
    // In the background: an unreachable identity provider is logged, and does not hold up
    // the start for its timeouts.
    let discovering = state.clone();
    tokio::spawn(async move {
        crate::server::auth::single_sign_on::discover_at_start(&discovering).await;
    });
    Ok(())
}

/// Serves `state` in the background on a listener the caller bound (tests and the bench pick
/// a free port first): the same router and client addresses as [`web::serve`], without its
/// background jobs, so a test drives the poller and the sweep itself.
pub fn serve_in_background(listener: tokio::net::TcpListener, state: AppState) {
    web::dictionary::spawn_compression(state.bundle_dictionary.clone());
    let router = web::router(state);
    tokio::spawn(async move {
        axum::serve(
            web::no_delay(listener),
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
}

/// Advice for a SQLite database the server may not write.
const SQLITE_READ_ONLY: &str = "The SQLite database is read-only for the user KYC Desk runs as: \
     give that user write access to the file and to its folder (SQLite writes -wal and -shm files \
     next to it).";

/// Advice for a start failure the operator fixes on the machine (permissions, disk space, a
/// read-only database), recognised from the database's error code anywhere in the chain; the
/// driver's own words ("disk I/O error") rarely say what to do.
pub fn start_hint(error: &(dyn std::error::Error + 'static), sqlite: bool) -> Option<&'static str> {
    if let Some(StartError::Db(DbError::ReadOnly { .. })) = error.downcast_ref::<StartError>() {
        return Some(SQLITE_READ_ONLY);
    }
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(sqlx::Error::Database(database)) = current.downcast_ref::<sqlx::Error>() {
            let code = database.code().unwrap_or_default();
            return if sqlite {
                // SQLite reports extended codes; the low byte is the primary one.
                match code.parse::<i64>().map(|c| c & 0xff) {
                    Ok(8) => Some(SQLITE_READ_ONLY),
                    Ok(13) => Some(
                        "The disk holding the SQLite database is full: free some space, then start \
                         KYC Desk again.",
                    ),
                    Ok(10) => Some(
                        "SQLite could not write the database file: check that its disk is not full \
                         (nor the file over a size limit) and that the disk is healthy.",
                    ),
                    Ok(14) => Some(
                        "SQLite could not open the database file: check that its folder exists and \
                         that the user KYC Desk runs as may read and write there.",
                    ),
                    _ => None,
                }
            } else {
                match code.as_ref() {
                    "25006" => Some(
                        "The PostgreSQL database only allows reads (default_transaction_read_only, \
                         or a standby server): point DATABASE_URL at a writable primary.",
                    ),
                    "53100" => Some(
                        "The disk of the PostgreSQL server is full: free space there, then start \
                         KYC Desk again.",
                    ),
                    "42501" => Some(
                        "The PostgreSQL user lacks a privilege KYC Desk needs: it must be able to \
                         create and change tables in the database, or KYC_DESK_MIGRATE_DATABASE_URL \
                         must name the role that owns them (it migrates and grants the app role \
                         what it needs).",
                    ),
                    _ => None,
                }
            };
        }
        cause = current.source();
    }
    None
}
