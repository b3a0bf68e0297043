//! Database access: one pool over SQLite or PostgreSQL (chosen by the URL scheme at run
//! time), the embedded migrations of each backend, and one repository module per table group.
//!
//! All SQL is written once, in the dialect both backends accept (`$n` placeholders, integer
//! timestamps in seconds, 0/1 flags), so no business logic is duplicated per backend.

pub mod app_role;
pub mod audit;
pub mod auth_sessions;
pub mod credentials;
pub mod identities;
pub mod links;
pub mod notices;
pub mod passkeys;
pub mod second_factors;
pub mod setup;
pub mod throttle;
pub mod users;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database server is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Database failures, with enough context for the log. Never shown to users raw.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be opened or reached.
    #[error("cannot open the database at {target}: {source}")]
    Connect {
        /// The URL without credentials.
        target: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The data folder for SQLite could not be created.
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        /// The folder.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The SQLite database file, or the folder SQLite keeps its `-wal` and `-shm` files in, may
    /// not be written by the user KYC Desk runs as.
    #[error("the SQLite database at {path} is read-only for the user KYC Desk runs as: {source}")]
    ReadOnly {
        /// The file or folder that may not be written.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Applying migrations failed; the failing migration was rolled back.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

impl DbError {
    /// Whether the failure means the database is unreachable (as opposed to a bad query).
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Connect { .. } => true,
            DbError::Query(error) => is_unavailable(error),
            _ => false,
        }
    }
}

/// Whether a driver error means "the database is not reachable right now".
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        // PostgreSQL's `lock_timeout` ran out: another transaction held a lock this one needs
        // for longer than `WRITE_TURN_WAIT` (busy, not broken: try again in a moment); the
        // server is shutting down, starting up or restarting (57P01–57P03), or the connection
        // broke (class 08): all pass once the server is back.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code == "55P03"
                || matches!(&*code, "57P01" | "57P02" | "57P03")
                || code.starts_with("08")
        }),
        _ => false,
    }
}

/// The connection pool and which backend it talks to.
#[derive(Clone, Debug)]
pub struct Db {
    /// The pool; repositories take `&AnyPool` or a transaction.
    pub pool: AnyPool,
    /// The backend behind it.
    pub backend: Backend,
    /// SQLite only: writers of this process take turns here (first come, first served)
    /// rather than in SQLite's busy handler, which sleeps in growing steps and turns a short
    /// queue of writers into long waits.
    write_turn: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Held by every clone; background tasks of this `Db` stop once no clone is left.
    alive: Arc<()>,
}

/// Longest wait for the SQLite write turn (as long as SQLite's own busy timeout, so a writer
/// waits no longer here than it would have in SQLite's busy handler), and PostgreSQL's
/// `lock_timeout` for row locks.
pub const WRITE_TURN_WAIT: Duration = Duration::from_secs(10);

/// A pooled connection idle this long is pinged before it is used again.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// SQLite checkpoints on its own only once the log holds this many pages (about 40 MB).
const WAL_SAFETY_NET_PAGES: u32 = 10_000;

/// From this many pages (about 4 MB) the background checkpoint finishes under the write turn,
/// so that the log starts over.
const WAL_RESTART_PAGES: i64 = 1_000;

/// One passive checkpoint (copies what it can, waits for nobody); the pages in the log.
async fn passive_checkpoint(pool: &AnyPool) -> Result<i64, sqlx::Error> {
    let (_busy, log_pages, _copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(pool)
            .await?;
    Ok(log_pages)
}

/// A write transaction (rolled back if dropped uncommitted). On SQLite it also holds this
/// process's write turn until it ends.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    /// Begun by [`Db::begin_unflushed`]: on PostgreSQL, `synchronous_commit` is already off.
    unflushed: bool,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commits, then gives up the write turn. The commit waits for the disk, also in a
    /// transaction begun by [`Db::begin_unflushed`] (which then pays one statement more).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        if self.unflushed && self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = on")
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await
    }

    /// Commits without waiting for PostgreSQL to flush its write-ahead log to disk
    /// (`synchronous_commit = off` for this transaction only; SQLite commits as usual: with
    /// `synchronous = NORMAL` its commits never wait for the disk). The commit is visible to
    /// every other transaction at once; only a crash in the next fraction of a second could
    /// lose it. So it is for writes whose loss is acceptable (request limits), and for a
    /// transaction after which the same request makes a flushed commit before it answers
    /// anyone: the log is flushed in order, so that later flush makes this commit durable too.
    /// In a transaction begun by [`Db::begin_unflushed`] the setting is already made, and this
    /// is a bare `COMMIT`.
    pub async fn commit_unflushed(mut self) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Postgres && !self.unflushed {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

/// Strips the password from a database URL so it can be logged.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

impl Db {
    /// Opens the pool (creating the SQLite file and its folder if needed). Does not migrate.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            let path = sqlite_path(&url);
            if let Some(parent) = std::path::Path::new(&path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|source| DbError::Folder {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
            check_sqlite_writable(std::path::Path::new(&path))?;
            if !url.contains("mode=") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("mode=rwc");
            }
        }
        let options = AnyConnectOptions::from_str(&url).map_err(|source| DbError::Connect {
            target: redact_url(&url),
            source,
        })?;
        let mut pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            // sqlx already pings every connection as it goes back to the pool (and closes a
            // broken one), so pinging again as it comes out only doubles the round trips of a
            // short query. Only a connection that sat idle for a while, long enough for the
            // server to have gone away meanwhile, is pinged before use.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        if backend == Backend::Postgres {
            // No statement waits forever for a row lock another transaction holds (the audit
            // lock, the named application locks): it fails as "busy, try again" instead.
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        format!("SET lock_timeout = '{}s'", WRITE_TURN_WAIT.as_secs()).as_str(),
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        if backend == Backend::Sqlite {
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    // Checkpoints run in the background (see `checkpoint_in_background`); this
                    // is only the safety net should that task stop.
                    conn.execute(
                        format!("PRAGMA wal_autocheckpoint = {WAL_SAFETY_NET_PAGES}").as_str(),
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(|source| DbError::Connect {
                target: redact_url(&url),
                source,
            })?;
        let db = Db::from_pool(pool, backend);
        if backend == Backend::Sqlite {
            db.checkpoint_in_background();
        }
        Ok(db)
    }

    /// Keeps SQLite's write-ahead log short without making requests wait for it. Left to
    /// SQLite, the commit that fills the log to its limit copies it into the database file
    /// itself while it still holds the write turn, and every writer queued behind it waits
    /// tens of milliseconds. Here a task copies the log every quarter second with a passive
    /// checkpoint, which never blocks writers or readers. Under steady writes such a
    /// checkpoint never quite finishes (each commit adds frames), and only a finished one lets
    /// the next writer start the log over; so once the log passes `WAL_RESTART_PAGES`, the task
    /// takes the write turn for one more passive checkpoint, which has only the last few frames
    /// left to copy. The task ends when every handle on this `Db` is gone.
    fn checkpoint_in_background(&self) {
        let alive = Arc::downgrade(&self.alive);
        let pool = self.pool.clone();
        let write_turn = self.write_turn.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if alive.strong_count() == 0 || pool.is_closed() {
                    break;
                }
                let log_pages = match passive_checkpoint(&pool).await {
                    Ok(pages) => pages,
                    Err(error) => {
                        tracing::debug!(%error, "background checkpoint skipped");
                        continue;
                    }
                };
                if log_pages >= WAL_RESTART_PAGES
                    && let Some(turn) = &write_turn
                {
                    let _turn = turn.lock().await;
                    if let Err(error) = passive_checkpoint(&pool).await {
                        tracing::debug!(%error, "background checkpoint skipped");
                    }
                }
            }
        });
    }

    /// Wraps an open pool.
    pub fn from_pool(pool: AnyPool, backend: Backend) -> Db {
        let write_turn =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Db {
            pool,
            backend,
            write_turn,
            alive: Arc::new(()),
        }
    }

    /// Begins a write transaction. The turn is taken before a connection, so writers that
    /// wait hold no pooled connection.
    pub async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        self.begin_as(false).await
    }

    /// Begins a write transaction that is meant to end in [`WriteTx::commit_unflushed`]: on
    /// PostgreSQL `synchronous_commit` is switched off by the `BEGIN` itself (one round trip
    /// for both, sent as one simple query), where switching it off at the end costs a round
    /// trip of its own. A [`WriteTx::commit`] still waits for the disk.
    pub async fn begin_unflushed(&self) -> Result<WriteTx, sqlx::Error> {
        self.begin_as(true).await
    }

    /// [`Db::begin`] or, with `unflushed`, [`Db::begin_unflushed`].
    async fn begin_as(&self, unflushed: bool) -> Result<WriteTx, sqlx::Error> {
        let turn = self.write_turn().await?;
        let tx = if unflushed && self.backend == Backend::Postgres {
            self.pool
                .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
                .await?
        } else {
            self.pool.begin().await?
        };
        Ok(WriteTx {
            tx,
            backend: self.backend,
            unflushed,
            _turn: turn,
        })
    }

    /// This process's SQLite write turn (`None` on PostgreSQL), to hold while a single
    /// statement writes through the pool outside [`Db::begin`]. Without it such a write that
    /// meets a transaction in progress sleeps in SQLite's busy handler (1 ms, then 2, 5, 10…)
    /// instead of queueing behind it.
    ///
    /// The wait is bounded like a pool acquisition: a turn not granted within
    /// [`WRITE_TURN_WAIT`] ends in [`sqlx::Error::PoolTimedOut`] (answered 503, "try again in a
    /// moment"), so no request waits forever behind a writer that stopped.
    pub async fn write_turn(
        &self,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>, sqlx::Error> {
        match &self.write_turn {
            Some(turn) => tokio::time::timeout(WRITE_TURN_WAIT, Arc::clone(turn).lock_owned())
                .await
                .map(Some)
                .map_err(|_| {
                    tracing::warn!(
                        wait_secs = WRITE_TURN_WAIT.as_secs(),
                        "the SQLite write turn was not granted in time"
                    );
                    sqlx::Error::PoolTimedOut
                }),
            None => Ok(None),
        }
    }

    /// Applies the embedded migrations of this backend. Each migration runs in its own
    /// transaction, so a failure leaves no half-applied migration behind.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Applies the embedded migrations up to `version` only: the schema an older release left,
    /// for rehearsing an upgrade (data written under it, then [`Db::migrate`] for the rest).
    pub async fn migrate_up_to(&self, version: i64) -> Result<(), DbError> {
        let all = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let older = Migrator {
            migrations: all
                .migrations
                .iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            ignore_missing: all.ignore_missing,
            locking: all.locking,
            no_tx: all.no_tx,
        };
        older.run(&self.pool).await?;
        Ok(())
    }

    /// Cheap liveness query for `/readyz`.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A value for a `$n` placeholder of a query assembled at run time (search filters).
pub(crate) enum Bind {
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
}

/// `WHERE c1 AND c2 …` of the conditions of a query assembled at run time ('' for none).
pub(crate) fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    }
}

/// The arguments of a query assembled at run time, in placeholder order.
pub(crate) fn arguments(binds: Vec<Bind>) -> Result<sqlx::any::AnyArguments<'static>, sqlx::Error> {
    use sqlx::Arguments as _;
    let mut arguments = sqlx::any::AnyArguments::default();
    for bind in binds {
        match bind {
            Bind::Int(value) => arguments.add(value),
            Bind::Text(value) => arguments.add(value),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(arguments)
}

/// Takes the named application lock for the rest of the transaction. Writing the row makes
/// PostgreSQL hold a row lock and SQLite take its write lock up front, so check-then-write
/// sequences (the last admin, first-run setup) cannot interleave.
///
/// A name with no lock row is an error, not a lock that silently locks nothing.
pub async fn lock(conn: &mut sqlx::AnyConnection, name: &str) -> Result<(), sqlx::Error> {
    let done = sqlx::query("UPDATE app_locks SET counter = counter + 1 WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "there is no application lock named {name:?}"
        )))
    }
}

/// Fails at once, naming the file or folder, when this process may not write the SQLite
/// database or the folder where SQLite creates its `-wal` and `-shm` files. Left to SQLite, a
/// read-only database in write-ahead-log mode can keep the first connection retrying until the
/// pool's wait runs out, and the error then says only "timed out".
fn check_sqlite_writable(database: &std::path::Path) -> Result<(), DbError> {
    let read_only = |path: &std::path::Path, source: std::io::Error| DbError::ReadOnly {
        path: path.display().to_string(),
        source,
    };
    let refused = |error: &std::io::Error| {
        matches!(
            error.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
        )
    };
    if database.exists()
        && let Err(error) = std::fs::OpenOptions::new().write(true).open(database)
        && refused(&error)
    {
        return Err(read_only(database, error));
    }
    let folder = match database.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = folder.join(format!(".kyc-desk-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(error) if refused(&error) => Err(read_only(&folder, error)),
        // Anything else (a missing folder, say) is for SQLite to report as it opens the file.
        Err(_) => Ok(()),
    }
}

/// The file path of an `sqlite:` URL (without its query).
pub(crate) fn sqlite_path(url: &str) -> String {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    rest.split('?').next().unwrap_or_default().to_string()
}

/// Current time as Unix seconds, the one time unit stored in the database.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Formats stored Unix seconds for display, in UTC.
pub fn format_time(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_found_in_urls() {
        assert_eq!(sqlite_path("sqlite://data/kyc-desk.db"), "data/kyc-desk.db");
        assert_eq!(sqlite_path("sqlite:/tmp/x.db?mode=rwc"), "/tmp/x.db");
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/kyc"),
            "postgres://app:****@db:5432/kyc"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
