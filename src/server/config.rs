//! Typed configuration, read once at start from the environment (and an optional `.env`).
//! Every problem names the variable and says what is wrong, so a bad deployment stops loudly.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything the server needs to know about its environment. Its `Debug` hides the database
/// password and the master key.
#[derive(Clone)]
pub struct Config {
    /// sqlx URL: `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// PostgreSQL only: the URL migrations run through (the tables' owner), when the app's
    /// own role (`database_url`) may not change the schema. `None`: migrate through
    /// `database_url`.
    pub migrate_database_url: Option<String>,
    /// The append-only file checkpoints of the audit chain are written to and checked
    /// against. Beside the database file on SQLite; required on PostgreSQL.
    pub audit_anchor_file: PathBuf,
    /// Address the HTTP server binds to.
    pub addr: SocketAddr,
    /// The address users reach the console at (links, cookies, origin checks).
    pub public_url: Url,
    /// A session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in, whatever the activity.
    pub session_absolute_timeout: Duration,
    /// Whether the session cookie carries `Secure`.
    pub cookie_secure: bool,
    /// Log line format.
    pub log_format: LogFormat,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Folder with the built site (`pkg/`, static files).
    pub site_root: PathBuf,
    /// The hash file naming the bundle's content-hashed files (`KYC_DESK_BUNDLE_HASH_FILE`;
    /// default `hash.txt` beside the binary, where cargo-leptos writes it).
    pub bundle_hash_file: Option<PathBuf>,
    /// Where the master key of the credential vault comes from.
    pub master_key: crate::server::vault::KeySource,
    /// Serve the built-in provider sandbox under `/sandbox/` and seed its credentials. Only
    /// ever true with a loopback public URL: the sandbox can never face the internet.
    pub sandbox: bool,
    /// Hosts (names or IP addresses) a provider credential may send its secrets to besides
    /// the kind's documented domains: a company proxy, or a test's fake provider.
    pub extra_provider_hosts: Vec<url::Host>,
    /// Longest wait for a provider connection.
    pub provider_connect_timeout: Duration,
    /// Longest wait for a whole provider request.
    pub provider_request_timeout: Duration,
    /// How long an Eko DigiLocker link is treated as valid (Eko does not state it).
    pub eko_link_lifetime: Duration,
    /// Last line of defence: a request whose answer has not begun after this long is answered
    /// 503 (and logged with its request id), and an answer whose body stalls this long is cut
    /// off, so nothing waits forever on a request that stopped.
    pub request_deadline: Duration,
    /// A request body must have arrived whole this long after the request's head, or the
    /// request is answered 408: a client sending its body slowly holds a place for no longer.
    pub request_body_timeout: Duration,
    /// Requests served at once; one more is answered 503 with `Retry-After` at once.
    pub max_concurrent_requests: usize,
    /// Of those, the requests one client address (an IPv6 address by its /64) may have served
    /// at once; one more is answered 429 with `Retry-After`, so one client cannot take every
    /// place and lock everybody else out.
    pub max_concurrent_requests_per_client: usize,
    /// Longest wait for a free argon2 run; a password check that cannot get one is answered
    /// 429 with `Retry-After`.
    pub password_check_wait: Duration,
    /// Roles whose users must have a second factor (`KYC_DESK_SECOND_FACTOR_ROLES`; default
    /// admin and auditor). Such a user without one is sent to enrolment after the password.
    pub second_factor_roles: Vec<crate::types::Role>,
    /// How long a step-up (a fresh second factor, or the password for a user without one)
    /// opens the sensitive doors (`KYC_DESK_STEP_UP_WINDOW`; default 5 minutes).
    pub step_up_window: Duration,
    /// Customer links: lifetimes, the mint budget, the flows that ask a one-time code.
    pub customer_links: CustomerLinkSettings,
}

/// How KYC Desk's customer links (`/v/{code}`) behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerLinkSettings {
    /// The lifetime the new-link form offers first (`KYC_DESK_LINK_LIFETIME`, 72h).
    pub default_lifetime: Duration,
    /// The shortest lifetime an operator may pick (`KYC_DESK_LINK_LIFETIME_MIN`, 1h).
    pub min_lifetime: Duration,
    /// The longest (`KYC_DESK_LINK_LIFETIME_MAX`, 7 days).
    pub max_lifetime: Duration,
    /// Provider URLs one customer link may mint (`KYC_DESK_LINK_MINTS`, 3).
    pub mint_limit: i64,
    /// Flows whose customer page asks a one-time code sent to the session's mobile before
    /// Start (`KYC_DESK_CUSTOMER_CODE_FLOWS`: `basic`, `premium`, `digilocker`; none by default).
    pub code_flows: Vec<String>,
    /// How long after a link was sent, not started, the customer is reminded
    /// (`KYC_DESK_REMINDER_AFTER`, 24h; again as long after each reminder).
    pub reminder_after: Duration,
    /// Reminders per link at most (`KYC_DESK_REMINDERS`, 2; 0 turns them off).
    pub max_reminders: i64,
    /// Quiet hours, India time, as minutes after midnight: no reminder starts from the first
    /// to the second (`KYC_DESK_QUIET_HOURS`, `21:00-09:00`; `none` for none).
    pub quiet_hours: Option<(u32, u32)>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redacted_url(&self.database_url))
            .field("addr", &self.addr)
            .field("public_url", &self.public_url.as_str())
            .field("session_idle_timeout", &self.session_idle_timeout)
            .field("session_absolute_timeout", &self.session_absolute_timeout)
            .field("cookie_secure", &self.cookie_secure)
            .field("log_format", &self.log_format)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("site_root", &self.site_root)
            .field("bundle_hash_file", &self.bundle_hash_file)
            .field("master_key", &self.master_key)
            .field("sandbox", &self.sandbox)
            .field("extra_provider_hosts", &self.extra_provider_hosts)
            .field("provider_connect_timeout", &self.provider_connect_timeout)
            .field("provider_request_timeout", &self.provider_request_timeout)
            .field("eko_link_lifetime", &self.eko_link_lifetime)
            .field("request_deadline", &self.request_deadline)
            .field("second_factor_roles", &self.second_factor_roles)
            .field("step_up_window", &self.step_up_window)
            .field("customer_links", &self.customer_links)
            .finish()
    }
}

/// A database URL with any password replaced, fit for a log line.
fn redacted_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("[redacted]"));
            url.to_string()
        }
        Ok(_) => text.to_string(),
        // Not parseable: it could hold anything, so only its scheme is shown.
        Err(_) => format!("{}:[unparsed]", text.split(':').next().unwrap_or_default()),
    }
}

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it, and what would be right.
    pub problem: String,
}

fn problem(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// Room the default request deadline leaves beyond one provider call (60 s with the default
/// provider time limits).
const DEADLINE_MARGIN: Duration = Duration::from_secs(35);

/// Requests served at once unless `KYC_DESK_MAX_CONCURRENT_REQUESTS` says otherwise.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 256;
/// Default share of one client address in the requests served at once (capped by the total).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CLIENT: usize = 32;

/// Default database: an SQLite file under `data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/kyc-desk.db";
const DEFAULT_ADDR: &str = "127.0.0.1:3000";

impl Config {
    /// Reads the configuration from the process environment, after loading `.env` if present.
    pub fn from_env() -> Result<Self, ConfigError> {
        load_dotenv(std::path::Path::new("."))?;
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(problem(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql:// (for example sqlite://data/kyc-desk.db)",
            ));
        }

        let migrate_database_url = get("KYC_DESK_MIGRATE_DATABASE_URL");
        if let Some(url) = &migrate_database_url
            && !(database_url.starts_with("postgres")
                && (url.starts_with("postgres://") || url.starts_with("postgresql://")))
        {
            return Err(problem(
                "KYC_DESK_MIGRATE_DATABASE_URL",
                "is for PostgreSQL only: a postgres:// URL of the role that owns the tables, with DATABASE_URL a postgres:// URL of the role KYC Desk runs as",
            ));
        }

        let audit_anchor_file = match get("KYC_DESK_AUDIT_ANCHOR_FILE") {
            Some(path) => PathBuf::from(path),
            None if database_url.starts_with("sqlite:") => {
                let file = crate::server::db::sqlite_path(&database_url);
                if file.is_empty() || file.contains(":memory:") {
                    return Err(problem(
                        "KYC_DESK_AUDIT_ANCHOR_FILE",
                        "must be set when the SQLite database is not a file",
                    ));
                }
                PathBuf::from(format!("{file}-audit-anchors.jsonl"))
            }
            None => {
                return Err(problem(
                    "KYC_DESK_AUDIT_ANCHOR_FILE",
                    "must be set on PostgreSQL: the file (on this machine, shipped off it) that checkpoints of the audit chain are appended to, for example /var/lib/kyc-desk/audit-anchors.jsonl",
                ));
            }
        };

        // cargo-leptos passes the address it was configured with as LEPTOS_SITE_ADDR.
        let addr_text = get("KYC_DESK_ADDR")
            .or_else(|| get("LEPTOS_SITE_ADDR"))
            .unwrap_or_else(|| DEFAULT_ADDR.into());
        let addr: SocketAddr = addr_text.parse().map_err(|_| {
            problem(
                "KYC_DESK_ADDR",
                format!("'{addr_text}' is not an address:port (for example 127.0.0.1:3000)"),
            )
        })?;

        let public_text = get("KYC_DESK_PUBLIC_URL").unwrap_or_else(|| {
            let host = if addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                match addr.ip() {
                    IpAddr::V6(ip) => format!("[{ip}]"),
                    IpAddr::V4(ip) => ip.to_string(),
                }
            };
            format!("http://{host}:{}", addr.port())
        });
        let public_url = Url::parse(&public_text).map_err(|e| {
            problem(
                "KYC_DESK_PUBLIC_URL",
                format!("'{public_text}' is not a URL ({e}); for example https://kyc.example.com"),
            )
        })?;
        if !matches!(public_url.scheme(), "http" | "https") || public_url.host().is_none() {
            return Err(problem(
                "KYC_DESK_PUBLIC_URL",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if public_url.path() != "/" || public_url.query().is_some() {
            return Err(problem(
                "KYC_DESK_PUBLIC_URL",
                "must be the site's origin without a path or query (serving under a sub-path is not supported)",
            ));
        }

        let session_idle_timeout = duration(&get, "KYC_DESK_SESSION_IDLE_TIMEOUT", "30m")?;
        let session_absolute_timeout = duration(&get, "KYC_DESK_SESSION_ABSOLUTE_TIMEOUT", "12h")?;
        if session_idle_timeout > session_absolute_timeout {
            return Err(problem(
                "KYC_DESK_SESSION_IDLE_TIMEOUT",
                "must not be longer than KYC_DESK_SESSION_ABSOLUTE_TIMEOUT",
            ));
        }

        let cookie_secure = match get("KYC_DESK_COOKIE_SECURE").as_deref() {
            None | Some("auto") => !is_plain_http_localhost(&public_url),
            Some("true") => true,
            Some("false") => {
                if public_url.scheme() == "https" {
                    return Err(problem(
                        "KYC_DESK_COOKIE_SECURE",
                        "cannot be false when KYC_DESK_PUBLIC_URL is https",
                    ));
                }
                false
            }
            Some(other) => {
                return Err(problem(
                    "KYC_DESK_COOKIE_SECURE",
                    format!("'{other}' is not one of auto, true, false"),
                ));
            }
        };

        let log_format = match get("KYC_DESK_LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(problem(
                    "KYC_DESK_LOG_FORMAT",
                    format!("'{other}' is not one of pretty, json"),
                ));
            }
        };

        let trusted_proxies = match get("KYC_DESK_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|item| {
                    item.parse::<IpNet>()
                        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| {
                            problem(
                                "KYC_DESK_TRUSTED_PROXIES",
                                format!("'{item}' is not an IP address or CIDR range (for example 10.0.0.0/8)"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };

        let site_root = PathBuf::from(
            get("KYC_DESK_SITE_ROOT")
                .or_else(|| get("LEPTOS_SITE_ROOT"))
                .unwrap_or_else(|| "target/site".into()),
        );
        let bundle_hash_file = get("KYC_DESK_BUNDLE_HASH_FILE")
            .map(PathBuf::from)
            .or_else(crate::server::web::assets::AssetNames::default_hash_file);

        let master_key = match (get("KYC_DESK_MASTER_KEY"), get("KYC_DESK_MASTER_KEY_FILE")) {
            (Some(_), Some(_)) => {
                return Err(problem(
                    "KYC_DESK_MASTER_KEY",
                    "set either KYC_DESK_MASTER_KEY or KYC_DESK_MASTER_KEY_FILE, not both",
                ));
            }
            (Some(inline), None) => {
                crate::server::vault::KeySource::Inline(secrecy::SecretString::from(inline))
            }
            (None, Some(path)) => crate::server::vault::KeySource::File {
                path: PathBuf::from(path),
                generate: match get("KYC_DESK_DEV_GENERATE_MASTER_KEY").as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(other) => {
                        return Err(problem(
                            "KYC_DESK_DEV_GENERATE_MASTER_KEY",
                            format!("'{other}' is not one of true, false"),
                        ));
                    }
                },
            },
            (None, None) => crate::server::vault::KeySource::None,
        };

        let sandbox = match get("KYC_DESK_SANDBOX").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(problem(
                    "KYC_DESK_SANDBOX",
                    format!("'{other}' is not one of true, false"),
                ));
            }
        };
        // The sandbox answers without credentials of its own: its outbox, its journeys and its
        // seeded keys must never be reachable from outside this machine.
        if sandbox && !is_loopback(public_url.host()) {
            return Err(problem(
                "KYC_DESK_SANDBOX",
                format!(
                    "the sandbox runs only on this machine, but KYC_DESK_PUBLIC_URL is {public_text}; \
                     set KYC_DESK_SANDBOX=false, or use a loopback KYC_DESK_PUBLIC_URL such as http://127.0.0.1:3000"
                ),
            ));
        }

        let extra_provider_hosts = match get("KYC_DESK_EXTRA_PROVIDER_HOSTS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|item| {
                    let bare = item.trim_start_matches('[').trim_end_matches(']');
                    match bare.parse::<IpAddr>() {
                        Ok(IpAddr::V4(ip)) => Ok(url::Host::Ipv4(ip)),
                        Ok(IpAddr::V6(ip)) => Ok(url::Host::Ipv6(ip)),
                        Err(_) => match url::Host::parse(bare) {
                            Ok(url::Host::Domain(name))
                                if !name.contains(['/', ':', '@', '*']) =>
                            {
                                Ok(url::Host::Domain(name))
                            }
                            _ => Err(problem(
                                "KYC_DESK_EXTRA_PROVIDER_HOSTS",
                                format!("'{item}' is not a host name or IP address (for example proxy.example.com, 10.0.0.5)"),
                            )),
                        },
                    }
                })
                .collect::<Result<_, _>>()?,
        };

        let provider_connect_timeout = duration(&get, "KYC_DESK_PROVIDER_CONNECT_TIMEOUT", "5s")?;
        let provider_request_timeout = duration(&get, "KYC_DESK_PROVIDER_TIMEOUT", "20s")?;
        let eko_link_lifetime = duration(&get, "KYC_DESK_EKO_LINK_LIFETIME", "24h")?;
        // A link creation waits for one provider connection and answer; the deadline must
        // leave it room, or a slow but honest provider would be cut off as a stall.
        let provider_call = provider_connect_timeout + provider_request_timeout;
        let request_deadline = match get("KYC_DESK_REQUEST_DEADLINE") {
            None => provider_call + DEADLINE_MARGIN,
            Some(_) => {
                let deadline = duration(&get, "KYC_DESK_REQUEST_DEADLINE", "60s")?;
                if deadline <= provider_call {
                    return Err(problem(
                        "KYC_DESK_REQUEST_DEADLINE",
                        format!(
                            "{}s is not longer than KYC_DESK_PROVIDER_CONNECT_TIMEOUT + KYC_DESK_PROVIDER_TIMEOUT ({}s), so a provider call could not finish within it",
                            deadline.as_secs(),
                            provider_call.as_secs()
                        ),
                    ));
                }
                deadline
            }
        };

        // A wait inside a request: it must end before the request's deadline. Unset, it stays
        // inside a short configured deadline too (half of it at most).
        let wait_inside_deadline = |variable: &'static str, default_secs: u64| {
            let wait = match get(variable) {
                None => Duration::from_secs(default_secs)
                    .min(request_deadline / 2)
                    .max(Duration::from_secs(1)),
                Some(_) => duration(&get, variable, &format!("{default_secs}s"))?,
            };
            if wait >= request_deadline {
                return Err(problem(
                    variable,
                    format!(
                        "{}s is not shorter than the request deadline ({}s, KYC_DESK_REQUEST_DEADLINE)",
                        wait.as_secs(),
                        request_deadline.as_secs()
                    ),
                ));
            }
            Ok(wait)
        };
        let request_body_timeout = wait_inside_deadline("KYC_DESK_REQUEST_BODY_TIMEOUT", 10)?;
        let max_concurrent_requests = match get("KYC_DESK_MAX_CONCURRENT_REQUESTS") {
            None => DEFAULT_MAX_CONCURRENT_REQUESTS,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=100_000).contains(&n) => n,
                _ => {
                    return Err(problem(
                        "KYC_DESK_MAX_CONCURRENT_REQUESTS",
                        format!(
                            "'{text}' is not a whole number from 1 to 100000 (for example 256)"
                        ),
                    ));
                }
            },
        };
        let max_concurrent_requests_per_client = match get(
            "KYC_DESK_MAX_CONCURRENT_REQUESTS_PER_CLIENT",
        ) {
            None => DEFAULT_MAX_CONCURRENT_REQUESTS_PER_CLIENT.min(max_concurrent_requests),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=max_concurrent_requests).contains(&n) => n,
                _ => {
                    return Err(problem(
                        "KYC_DESK_MAX_CONCURRENT_REQUESTS_PER_CLIENT",
                        format!(
                            "'{text}' is not a whole number from 1 to {max_concurrent_requests} (KYC_DESK_MAX_CONCURRENT_REQUESTS); for example 32"
                        ),
                    ));
                }
            },
        };
        let password_check_wait = wait_inside_deadline("KYC_DESK_PASSWORD_CHECK_WAIT", 5)?;
        let second_factor_roles = roles_setting(
            "KYC_DESK_SECOND_FACTOR_ROLES",
            get("KYC_DESK_SECOND_FACTOR_ROLES").as_deref(),
        )?;
        let step_up_window = duration(&get, "KYC_DESK_STEP_UP_WINDOW", "5m")?;
        if step_up_window > Duration::from_secs(3600) {
            return Err(problem(
                "KYC_DESK_STEP_UP_WINDOW",
                "must not be longer than 1h: a confirmation is meant to be fresh",
            ));
        }

        let customer_links = customer_link_settings(&get)?;

        Ok(Config {
            database_url,
            migrate_database_url,
            audit_anchor_file,
            addr,
            public_url,
            session_idle_timeout,
            session_absolute_timeout,
            cookie_secure,
            log_format,
            trusted_proxies,
            site_root,
            bundle_hash_file,
            master_key,
            sandbox,
            extra_provider_hosts,
            provider_connect_timeout,
            provider_request_timeout,
            eko_link_lifetime,
            request_deadline,
            request_body_timeout,
            max_concurrent_requests,
            max_concurrent_requests_per_client,
            password_check_wait,
            second_factor_roles,
            step_up_window,
            customer_links,
        })
    }

    /// The public origin (`scheme://host[:port]`), as browsers send it in `Origin`.
    pub fn public_origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    /// Whether the console is served over HTTPS (enables HSTS).
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

/// A comma-separated list of roles; `none` (or an empty value) for no role; unset: admin and
/// auditor.
fn roles_setting(
    variable: &'static str,
    text: Option<&str>,
) -> Result<Vec<crate::types::Role>, ConfigError> {
    use crate::types::Role;
    let Some(text) = text else {
        return Ok(vec![Role::Admin, Role::Auditor]);
    };
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut roles = Vec::new();
    for name in text.split(',').map(str::trim) {
        let role = Role::parse(&name.to_lowercase()).ok_or_else(|| {
            problem(
                variable,
                format!("'{name}' is not a role (admin, operator, auditor; or none)"),
            )
        })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

/// The customer-link settings, each checked against the others.
fn customer_link_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<CustomerLinkSettings, ConfigError> {
    let min_lifetime = duration(get, "KYC_DESK_LINK_LIFETIME_MIN", "1h")?;
    let max_lifetime = duration(get, "KYC_DESK_LINK_LIFETIME_MAX", "7d")?;
    let default_lifetime = duration(get, "KYC_DESK_LINK_LIFETIME", "72h")?;
    if min_lifetime < Duration::from_secs(15 * 60) {
        return Err(problem(
            "KYC_DESK_LINK_LIFETIME_MIN",
            "must be at least 15m: a customer needs time to open the link",
        ));
    }
    if max_lifetime > Duration::from_secs(30 * 86_400) || max_lifetime < min_lifetime {
        return Err(problem(
            "KYC_DESK_LINK_LIFETIME_MAX",
            "must lie between KYC_DESK_LINK_LIFETIME_MIN and 30 days",
        ));
    }
    if default_lifetime < min_lifetime || default_lifetime > max_lifetime {
        return Err(problem(
            "KYC_DESK_LINK_LIFETIME",
            "must lie between KYC_DESK_LINK_LIFETIME_MIN and KYC_DESK_LINK_LIFETIME_MAX",
        ));
    }
    let mints_text = get("KYC_DESK_LINK_MINTS").unwrap_or_else(|| "3".into());
    let mint_limit = match mints_text.trim().parse::<i64>() {
        Ok(n) if (1..=20).contains(&n) => n,
        _ => {
            return Err(problem(
                "KYC_DESK_LINK_MINTS",
                format!("'{mints_text}' is not a whole number from 1 to 20"),
            ));
        }
    };
    let mut code_flows = Vec::new();
    let flows_text = get("KYC_DESK_CUSTOMER_CODE_FLOWS").unwrap_or_default();
    for flow in flows_text
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        let flow = flow.to_lowercase();
        if flow == "none" {
            continue;
        }
        if !matches!(flow.as_str(), "basic" | "premium" | "digilocker") {
            return Err(problem(
                "KYC_DESK_CUSTOMER_CODE_FLOWS",
                format!("'{flow}' is not a flow (basic, premium, digilocker; or none)"),
            ));
        }
        if !code_flows.contains(&flow) {
            code_flows.push(flow);
        }
    }
    let reminder_after = duration(get, "KYC_DESK_REMINDER_AFTER", "24h")?;
    if reminder_after < Duration::from_secs(15 * 60) {
        return Err(problem(
            "KYC_DESK_REMINDER_AFTER",
            "must be at least 15m: a customer is not reminded minutes after the message",
        ));
    }
    let reminders_text = get("KYC_DESK_REMINDERS").unwrap_or_else(|| "2".into());
    let max_reminders = match reminders_text.trim().parse::<i64>() {
        Ok(n) if (0..=5).contains(&n) => n,
        _ => {
            return Err(problem(
                "KYC_DESK_REMINDERS",
                format!("'{reminders_text}' is not a whole number from 0 to 5"),
            ));
        }
    };
    let quiet_text = get("KYC_DESK_QUIET_HOURS").unwrap_or_else(|| "21:00-09:00".into());
    let quiet_hours = parse_quiet_hours(&quiet_text).ok_or_else(|| {
        problem(
            "KYC_DESK_QUIET_HOURS",
            format!("'{quiet_text}' is not a range of India times such as 21:00-09:00 (or none)"),
        )
    })?;
    Ok(CustomerLinkSettings {
        default_lifetime,
        min_lifetime,
        max_lifetime,
        mint_limit,
        code_flows,
        reminder_after,
        max_reminders,
        quiet_hours,
    })
}

/// `HH:MM-HH:MM` as minutes after midnight (`Some(None)` for `none`; `None` when malformed or
/// empty).
fn parse_quiet_hours(text: &str) -> Option<Option<(u32, u32)>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Some(None);
    }
    let minutes = |part: &str| {
        let (h, m) = part.trim().split_once(':')?;
        let (h, m) = (h.parse::<u32>().ok()?, m.parse::<u32>().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let (from, to) = text.split_once('-')?;
    let (from, to) = (minutes(from)?, minutes(to)?);
    (from != to).then_some(Some((from, to)))
}

fn duration(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = get(variable).unwrap_or_else(|| default.into());
    let value = humantime::parse_duration(&text).map_err(|_| {
        problem(
            variable,
            format!("'{text}' is not a duration (examples: 45s, 30m, 12h)"),
        )
    })?;
    if value < Duration::from_secs(1) {
        return Err(problem(variable, "must be at least one second"));
    }
    Ok(value)
}

/// Loads `dir/.env` if it exists. Only the working directory counts: a `.env` in a parent
/// directory (another project's, say) is never read.
pub fn load_dotenv(dir: &std::path::Path) -> Result<(), ConfigError> {
    match dotenvy::from_path(dir.join(".env")) {
        Err(error) if !error.not_found() => {
            Err(problem(".env", format!("could not be read: {error}")))
        }
        _ => Ok(()),
    }
}

/// Whether `host` is this machine: `localhost` or a loopback address (IPv4-mapped included).
pub fn is_loopback<S: AsRef<str>>(host: Option<url::Host<S>>) -> bool {
    match host {
        Some(url::Host::Domain(d)) => {
            let d = d.as_ref().trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

fn is_plain_http_localhost(url: &Url) -> bool {
    url.scheme() == "http" && is_loopback(url.host())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_no_configuration() {
        let config = load(&[]).unwrap();
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(config.public_origin(), "http://127.0.0.1:3000");
        assert_eq!(config.session_idle_timeout, Duration::from_secs(30 * 60));
        assert_eq!(
            config.session_absolute_timeout,
            Duration::from_secs(12 * 3600)
        );
        assert!(
            !config.cookie_secure,
            "plain-HTTP localhost gets no Secure flag"
        );
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert!(!config.sandbox, "the sandbox is off unless asked for");
        assert_eq!(config.provider_connect_timeout, Duration::from_secs(5));
        assert_eq!(config.provider_request_timeout, Duration::from_secs(20));
        assert_eq!(config.request_deadline, Duration::from_secs(60));
        assert_eq!(config.request_body_timeout, Duration::from_secs(10));
        assert_eq!(config.max_concurrent_requests, 256);
        assert_eq!(config.max_concurrent_requests_per_client, 32);
        assert_eq!(config.password_check_wait, Duration::from_secs(5));
    }

    #[test]
    fn customer_link_settings_have_bounds() {
        let links = load(&[]).unwrap().customer_links;
        assert_eq!(links.default_lifetime, Duration::from_secs(72 * 3600));
        assert_eq!(links.min_lifetime, Duration::from_secs(3600));
        assert_eq!(links.max_lifetime, Duration::from_secs(7 * 86_400));
        assert_eq!(links.mint_limit, 3);
        assert!(links.code_flows.is_empty());
        assert_eq!(links.reminder_after, Duration::from_secs(86_400));
        assert_eq!(links.max_reminders, 2);
        assert_eq!(links.quiet_hours, Some((21 * 60, 9 * 60)));
        let links = load(&[
            ("KYC_DESK_CUSTOMER_CODE_FLOWS", "DigiLocker, basic"),
            ("KYC_DESK_QUIET_HOURS", "none"),
        ])
        .unwrap()
        .customer_links;
        assert_eq!(links.code_flows, ["digilocker", "basic"]);
        assert_eq!(links.quiet_hours, None);
        for (variable, value) in [
            ("KYC_DESK_LINK_LIFETIME", "8d"),
            ("KYC_DESK_LINK_LIFETIME_MIN", "5m"),
            ("KYC_DESK_LINK_MINTS", "0"),
            ("KYC_DESK_CUSTOMER_CODE_FLOWS", "video"),
            ("KYC_DESK_REMINDERS", "9"),
            ("KYC_DESK_QUIET_HOURS", "21-9"),
            ("KYC_DESK_REMINDER_AFTER", "1m"),
        ] {
            let error = load(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable, "{value}: {error}");
        }
    }

    #[test]
    fn second_factor_roles_default_to_admin_and_auditor() {
        use crate::types::Role;
        let config = load(&[]).unwrap();
        assert_eq!(config.second_factor_roles, vec![Role::Admin, Role::Auditor]);
        assert_eq!(config.step_up_window, Duration::from_secs(300));
        let config = load(&[("KYC_DESK_SECOND_FACTOR_ROLES", "none")]).unwrap();
        assert!(config.second_factor_roles.is_empty());
        let config = load(&[("KYC_DESK_SECOND_FACTOR_ROLES", " Operator ,admin")]).unwrap();
        assert_eq!(
            config.second_factor_roles,
            vec![Role::Operator, Role::Admin]
        );
        let error = load(&[("KYC_DESK_SECOND_FACTOR_ROLES", "admin,boss")]).unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_SECOND_FACTOR_ROLES");
        assert!(error.problem.contains("'boss'"), "{}", error.problem);
        let error = load(&[("KYC_DESK_STEP_UP_WINDOW", "2h")]).unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_STEP_UP_WINDOW");
    }

    #[test]
    fn request_limits_are_checked_against_the_deadline() {
        let error = load(&[("KYC_DESK_REQUEST_BODY_TIMEOUT", "2m")]).unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_REQUEST_BODY_TIMEOUT");
        assert!(error.problem.contains("(60s"), "{}", error.problem);
        let error = load(&[("KYC_DESK_PASSWORD_CHECK_WAIT", "60s")]).unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_PASSWORD_CHECK_WAIT");
        for bad in ["0", "-3", "many", "1000001"] {
            let error = load(&[("KYC_DESK_MAX_CONCURRENT_REQUESTS", bad)]).unwrap_err();
            assert_eq!(error.variable, "KYC_DESK_MAX_CONCURRENT_REQUESTS", "{bad}");
        }
        let config = load(&[("KYC_DESK_MAX_CONCURRENT_REQUESTS", "8")]).unwrap();
        assert_eq!(config.max_concurrent_requests, 8);
        assert_eq!(
            config.max_concurrent_requests_per_client, 8,
            "a client's default share never exceeds the total"
        );
        for bad in ["0", "9", "some"] {
            let error = load(&[
                ("KYC_DESK_MAX_CONCURRENT_REQUESTS", "8"),
                ("KYC_DESK_MAX_CONCURRENT_REQUESTS_PER_CLIENT", bad),
            ])
            .unwrap_err();
            assert_eq!(
                error.variable, "KYC_DESK_MAX_CONCURRENT_REQUESTS_PER_CLIENT",
                "{bad}"
            );
        }
        // Unset, they fit inside a short deadline.
        let config = load(&[
            ("KYC_DESK_PROVIDER_CONNECT_TIMEOUT", "1s"),
            ("KYC_DESK_PROVIDER_TIMEOUT", "1s"),
            ("KYC_DESK_REQUEST_DEADLINE", "3s"),
        ])
        .unwrap();
        assert_eq!(config.request_body_timeout, Duration::from_millis(1500));
        assert_eq!(config.password_check_wait, Duration::from_millis(1500));
    }

    #[test]
    fn the_request_deadline_leaves_room_for_a_provider_call() {
        let config = load(&[("KYC_DESK_PROVIDER_TIMEOUT", "60s")]).unwrap();
        assert_eq!(config.request_deadline, Duration::from_secs(100));
        let config = load(&[("KYC_DESK_REQUEST_DEADLINE", "2m")]).unwrap();
        assert_eq!(config.request_deadline, Duration::from_secs(120));
        let error = load(&[("KYC_DESK_REQUEST_DEADLINE", "25s")]).unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_REQUEST_DEADLINE");
        assert!(error.problem.contains("(25s)"), "{}", error.problem);
    }

    #[test]
    fn the_anchor_file_sits_beside_sqlite_and_is_required_on_postgres() {
        let config = load(&[]).unwrap();
        assert_eq!(
            config.audit_anchor_file,
            PathBuf::from("data/kyc-desk.db-audit-anchors.jsonl")
        );
        assert_eq!(config.migrate_database_url, None);
        let error = load(&[("DATABASE_URL", "postgres://app@db/kyc")]).unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_AUDIT_ANCHOR_FILE");
        let config = load(&[
            ("DATABASE_URL", "postgres://app@db/kyc"),
            (
                "KYC_DESK_AUDIT_ANCHOR_FILE",
                "/var/lib/kyc-desk/anchors.jsonl",
            ),
            ("KYC_DESK_MIGRATE_DATABASE_URL", "postgres://owner@db/kyc"),
        ])
        .unwrap();
        assert_eq!(
            config.audit_anchor_file,
            PathBuf::from("/var/lib/kyc-desk/anchors.jsonl")
        );
        assert_eq!(
            config.migrate_database_url.as_deref(),
            Some("postgres://owner@db/kyc")
        );
        let error =
            load(&[("KYC_DESK_MIGRATE_DATABASE_URL", "postgres://owner@db/kyc")]).unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_MIGRATE_DATABASE_URL");
        let error = load(&[("DATABASE_URL", "sqlite::memory:")]).unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_AUDIT_ANCHOR_FILE");
    }

    #[test]
    fn https_public_url_makes_cookies_secure() {
        let config = load(&[("KYC_DESK_PUBLIC_URL", "https://kyc.example.com")]).unwrap();
        assert!(config.cookie_secure);
        assert!(config.is_https());
        let config = load(&[("KYC_DESK_PUBLIC_URL", "http://kyc.internal:8080")]).unwrap();
        assert!(
            config.cookie_secure,
            "plain HTTP off localhost still gets Secure"
        );
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("DATABASE_URL", "mysql://x"),
            ("KYC_DESK_ADDR", "localhost"),
            ("KYC_DESK_PUBLIC_URL", "not a url"),
            ("KYC_DESK_PUBLIC_URL", "ftp://x.example"),
            ("KYC_DESK_PUBLIC_URL", "https://x.example/sub"),
            ("KYC_DESK_SESSION_IDLE_TIMEOUT", "30x"),
            ("KYC_DESK_SESSION_ABSOLUTE_TIMEOUT", "0s"),
            ("KYC_DESK_COOKIE_SECURE", "maybe"),
            ("KYC_DESK_LOG_FORMAT", "xml"),
            ("KYC_DESK_TRUSTED_PROXIES", "10.0.0.0/8, nonsense"),
            ("KYC_DESK_DEV_GENERATE_MASTER_KEY", "yes"),
            ("KYC_DESK_SANDBOX", "on"),
            (
                "KYC_DESK_EXTRA_PROVIDER_HOSTS",
                "proxy.example.com, http://x/",
            ),
            ("KYC_DESK_PROVIDER_TIMEOUT", "soon"),
            ("KYC_DESK_PROVIDER_CONNECT_TIMEOUT", "0s"),
            ("KYC_DESK_REQUEST_DEADLINE", "never"),
            ("KYC_DESK_REQUEST_BODY_TIMEOUT", "slowly"),
            ("KYC_DESK_MAX_CONCURRENT_REQUESTS", "lots"),
            ("KYC_DESK_PASSWORD_CHECK_WAIT", "0s"),
        ];
        for (variable, value) in cases {
            let error = load(&[(variable, value), ("KYC_DESK_MASTER_KEY_FILE", "k")]).unwrap_err();
            assert_eq!(error.variable, variable, "value {value:?}");
            assert!(error.to_string().contains(variable));
        }
    }

    #[test]
    fn idle_longer_than_absolute_is_refused() {
        let error = load(&[
            ("KYC_DESK_SESSION_IDLE_TIMEOUT", "2h"),
            ("KYC_DESK_SESSION_ABSOLUTE_TIMEOUT", "1h"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_SESSION_IDLE_TIMEOUT");
    }

    #[test]
    fn secure_false_is_refused_for_https() {
        let error = load(&[
            ("KYC_DESK_PUBLIC_URL", "https://kyc.example.com"),
            ("KYC_DESK_COOKIE_SECURE", "false"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_COOKIE_SECURE");
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_ranges() {
        let config = load(&[("KYC_DESK_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]).unwrap();
        assert_eq!(config.trusted_proxies.len(), 2);
        assert!(config.trusted_proxies[1].contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn the_sandbox_is_refused_off_loopback() {
        for public in [
            "https://kyc.example.com",
            "http://10.0.0.5:3000",
            "http://0.0.0.0:3000",
            "http://localhost.example.com",
        ] {
            let error = load(&[
                ("KYC_DESK_SANDBOX", "true"),
                ("KYC_DESK_PUBLIC_URL", public),
            ])
            .unwrap_err();
            assert_eq!(error.variable, "KYC_DESK_SANDBOX", "{public}");
            assert!(
                error.problem.contains("KYC_DESK_PUBLIC_URL") && error.problem.contains(public),
                "{}",
                error.problem
            );
        }
        for public in [
            "http://127.0.0.1:3000",
            "http://localhost:3000",
            "http://[::1]:3000",
        ] {
            let config = load(&[
                ("KYC_DESK_SANDBOX", "true"),
                ("KYC_DESK_PUBLIC_URL", public),
            ])
            .unwrap();
            assert!(config.sandbox, "{public}");
        }
        let error = load(&[
            ("KYC_DESK_SANDBOX", "true"),
            ("KYC_DESK_ADDR", "0.0.0.0:3000"),
            ("KYC_DESK_PUBLIC_URL", "https://kyc.example.com"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, "KYC_DESK_SANDBOX");
    }

    #[test]
    fn extra_provider_hosts_are_names_or_addresses() {
        let config = load(&[(
            "KYC_DESK_EXTRA_PROVIDER_HOSTS",
            "Proxy.Example.com, 10.0.0.5, [::1]",
        )])
        .unwrap();
        assert_eq!(
            config.extra_provider_hosts,
            vec![
                url::Host::Domain("proxy.example.com".to_string()),
                url::Host::Ipv4("10.0.0.5".parse().unwrap()),
                url::Host::Ipv6("::1".parse().unwrap()),
            ]
        );
    }

    #[test]
    fn debug_of_the_configuration_shows_no_secret() {
        let key = "c2VjcmV0LW1hc3Rlci1rZXktdGhhdC1tdXN0LW5vdC1sZWFr";
        let config = load(&[
            ("KYC_DESK_MASTER_KEY", key),
            (
                "DATABASE_URL",
                "postgres://kyc:db-pass-never-shown@db.internal/kyc",
            ),
            (
                "KYC_DESK_MIGRATE_DATABASE_URL",
                "postgres://owner:owner-pass-never-shown@db.internal/kyc",
            ),
            (
                "KYC_DESK_AUDIT_ANCHOR_FILE",
                "/var/lib/kyc-desk/anchors.jsonl",
            ),
        ])
        .unwrap();
        let shown = format!("{config:?} {:?}", config.master_key);
        assert!(!shown.contains(key), "{shown}");
        assert!(!shown.contains("db-pass-never-shown"), "{shown}");
        assert!(!shown.contains("owner-pass-never-shown"), "{shown}");
        assert!(shown.contains("db.internal"), "{shown}");
    }

    #[test]
    fn dotenv_is_read_from_the_given_directory_only() {
        let parent = tempfile::tempdir().unwrap();
        let child = parent.path().join("child");
        std::fs::create_dir(&child).unwrap();
        std::fs::write(
            parent.path().join(".env"),
            "KYC_DESK_TEST_PARENT_DOTENV_ONLY=loaded\n",
        )
        .unwrap();
        load_dotenv(&child).unwrap();
        assert!(std::env::var("KYC_DESK_TEST_PARENT_DOTENV_ONLY").is_err());
        std::fs::write(child.join(".env"), "KYC_DESK_TEST_CHILD_DOTENV=here\n").unwrap();
        load_dotenv(&child).unwrap();
        assert_eq!(
            std::env::var("KYC_DESK_TEST_CHILD_DOTENV").as_deref(),
            Ok("here")
        );
    }
}
