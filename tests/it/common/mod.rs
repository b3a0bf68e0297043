//! Test harness: a real KYC Desk server on a free port over an isolated database (a fresh
//! SQLite file, or a fresh PostgreSQL database on the server named by TEST_POSTGRES_URL).

pub mod fakes;
pub mod forms;
pub mod process;

use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::auth::accounts;
use kyc_desk::server::startup;
use kyc_desk::server::state::AppState;
use kyc_desk::types::{Role, UserRow};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use std::collections::HashMap;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
}

/// Password used for users the tests create.
pub const PASSWORD: &str = "correct horse battery 42";

/// The master key every test server uses unless a test passes its own (one per test
/// process, so a second instance on the same database opens it too).
pub fn test_master_key() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        kyc_desk::server::vault::MasterKey::generate()
            .to_base64()
            .to_string()
    })
    .clone()
}

/// A fresh, empty database URL for `backend`.
pub async fn fresh_database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}/kyc-desk.db", dir.path().display());
            (url, Some(dir))
        }
        Backend::Postgres => {
            let admin_url = std::env::var("TEST_POSTGRES_URL").expect(
                "TEST_POSTGRES_URL is not set: the PostgreSQL variant of this test cannot run. \
                 Use the README's test command (it sets it), or filter with `--skip postgres`.",
            );
            let url = kyc_desk::server::fresh_database::create_postgres(&admin_url, "t")
                .await
                .expect("create test database on TEST_POSTGRES_URL");
            (url, None)
        }
    }
}

impl TestApp {
    /// Starts a server on `backend` with default settings.
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, &[]).await
    }

    /// Starts a server on `backend` with extra configuration variables.
    pub async fn start_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
        let (database_url, dir) = fresh_database(backend).await;
        Self::start_on(&database_url, dir, extra).await
    }

    /// Starts a server on `backend` whose gate reads `access` instead of the standard table.
    pub async fn start_with_access(
        backend: Backend,
        access: kyc_desk::access::AccessTable,
    ) -> TestApp {
        let (database_url, dir) = fresh_database(backend).await;
        Self::start_gated(&database_url, dir, &[], access).await
    }

    /// Starts a server on an existing database (a second instance, for instance).
    pub async fn start_on(
        database_url: &str,
        dir: Option<tempfile::TempDir>,
        extra: &[(&str, &str)],
    ) -> TestApp {
        Self::start_gated(database_url, dir, extra, Default::default()).await
    }

    async fn start_gated(
        database_url: &str,
        dir: Option<tempfile::TempDir>,
        extra: &[(&str, &str)],
        access: kyc_desk::access::AccessTable,
    ) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert("DATABASE_URL".into(), database_url.into());
        vars.insert("KYC_DESK_ADDR".into(), addr.to_string());
        vars.insert("KYC_DESK_SITE_ROOT".into(), "target/site".into());
        if let Some(anchor) = kyc_desk::server::fresh_database::anchor_file_for(database_url) {
            vars.insert("KYC_DESK_AUDIT_ANCHOR_FILE".into(), anchor);
        }
        for (k, v) in extra {
            vars.insert(k.to_string(), v.to_string());
        }
        // The fake providers of the tests listen on this machine: allowed through the
        // allow-list, as a company proxy would be. A test of the host rules sets it itself
        // (an empty value allows no extra host).
        vars.entry("KYC_DESK_EXTRA_PROVIDER_HOSTS".into())
            .or_insert_with(|| "127.0.0.1,localhost".into());
        // No role must have a second factor unless a test says so (the policy's own tests set
        // KYC_DESK_SECOND_FACTOR_ROLES): most tests are about something else, and an
        // authenticator code is accepted once per 30 seconds.
        vars.entry("KYC_DESK_SECOND_FACTOR_ROLES".into())
            .or_insert_with(|| "none".into());
        if !vars.contains_key("KYC_DESK_MASTER_KEY")
            && !vars.contains_key("KYC_DESK_MASTER_KEY_FILE")
        {
            vars.insert("KYC_DESK_MASTER_KEY".into(), test_master_key());
        }
        // "http://localhost" stands for this server's own port on localhost: the address
        // passkeys need (browsers refuse them for an IP address).
        // The tests then reach it by that name too; any other public URL (an https one that
        // only tests the cookie flags, say) is not where this server listens.
        let mut base = format!("http://{addr}");
        if vars.get("KYC_DESK_PUBLIC_URL").map(String::as_str) == Some("http://localhost") {
            base = format!("http://localhost:{}", addr.port());
            vars.insert("KYC_DESK_PUBLIC_URL".into(), base.clone());
        }
        let config = startup::config_from(vars).expect("test config");
        let mut state = startup::open(config).await.expect("open app state");
        state.access = std::sync::Arc::new(access);
        startup::serve_in_background(listener, state.clone());
        TestApp {
            base,
            state,
            database_url: database_url.to_string(),
            _dir: dir,
        }
    }

    /// A browser-like client: keeps cookies, does not follow redirects.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            // A request that hangs fails the test instead of stalling the whole suite.
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// Calls a server function with form-encoded arguments; returns status and JSON body.
    pub async fn call(
        &self,
        client: &reqwest::Client,
        function: &str,
        args: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let response = client
            .post(format!("{}/api/{function}", self.base))
            .header("origin", &self.base)
            .form(args)
            .send()
            .await
            .expect("server function request");
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// GET a page; returns status, Location header and body.
    pub async fn get(
        &self,
        client: &reqwest::Client,
        path: &str,
    ) -> (StatusCode, Option<String>, String) {
        let response = client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("page request");
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        let body = response
            .text()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: the body did not arrive: {error}"));
        (status, location, body)
    }

    /// Creates a user directly (as the command line would), with [`PASSWORD`].
    pub async fn user(&self, email: &str, role: Role) -> UserRow {
        self.user_with(email, role, false).await
    }

    /// Creates a user, optionally with a password that must be changed.
    pub async fn user_with(&self, email: &str, role: Role, temporary: bool) -> UserRow {
        accounts::create_user(
            &self.state,
            &RequestMeta::cli(),
            Actor::Cli,
            accounts::NewAccount {
                email: email.into(),
                display_name: email.split('@').next().unwrap().into(),
                role: role.as_str().into(),
                password: SecretString::from(PASSWORD),
                password_confirm: None,
            },
            temporary,
            false,
        )
        .await
        .expect("create test user")
    }

    /// A client signed in as `email` with [`PASSWORD`], and confirmed (step-up) with it, so
    /// the sensitive doors open for the next five minutes as after a user's confirmation.
    /// A user who is not fully signed in yet (an initial password to replace, a second factor
    /// to give or to set up) is left as the sign-in left them.
    pub async fn signed_in(&self, email: &str) -> reqwest::Client {
        let (client, redirect_to) = self.sign_in(email).await;
        if redirect_to == "/" {
            let (status, body) = self.call(&client, "step_up", &[("secret", PASSWORD)]).await;
            // A test's own access table may refuse the role the step-up itself (the abuse
            // suite takes roles away from every entry): then the client stays unconfirmed.
            let refused_by_table = status == StatusCode::FORBIDDEN
                && body["Forbidden"]
                    .as_str()
                    .is_some_and(|m| m.contains("cannot do this"));
            assert!(
                status == StatusCode::OK || refused_by_table,
                "step-up of {email} failed: {status} {body}"
            );
        }
        client
    }

    /// A client signed in as `email` with [`PASSWORD`], without a step-up.
    pub async fn signed_in_only(&self, email: &str) -> reqwest::Client {
        self.sign_in(email).await.0
    }

    async fn sign_in(&self, email: &str) -> (reqwest::Client, String) {
        let (client, body) = self.password_given(email).await;
        let redirect_to = body["redirect_to"].as_str().unwrap_or_default().to_string();
        (client, redirect_to)
    }

    /// A new client that gave `email`'s [`PASSWORD`] at sign-in, and the sign-in's answer
    /// (where to go next: the console, the second step, enrolment, the password page).
    pub async fn password_given(&self, email: &str) -> (reqwest::Client, Value) {
        let client = self.client();
        let (status, body) = self
            .call(
                &client,
                "login",
                &[("email", email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "sign-in of {email} failed: {body}");
        (client, body)
    }

    /// Every audit row as `(action, outcome, reason, detail)`, in order, as one text to search.
    pub async fn audit_text(&self) -> String {
        let rows: Vec<(String, String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT action, outcome, reason, detail FROM audit_log ORDER BY seq")
                .fetch_all(&self.state.db.pool)
                .await
                .unwrap();
        format!("{rows:?}")
    }

    /// Enrols an authenticator for the user signed in on `client` (set-up and first code);
    /// returns its key, from which [`totp_code`] computes codes.
    pub async fn enrol_authenticator(&self, client: &reqwest::Client) -> String {
        self.enrol_authenticator_with_codes(client).await.0
    }

    /// As [`TestApp::enrol_authenticator`], with the ten recovery codes shown at enrolment.
    pub async fn enrol_authenticator_with_codes(
        &self,
        client: &reqwest::Client,
    ) -> (String, Vec<String>) {
        let (status, body) = self.call(client, "start_authenticator", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let key = body["manual_key"].as_str().unwrap().to_string();
        let (status, body) = self
            .call(
                client,
                "confirm_authenticator",
                &[("code", &totp_code(&key, 0))],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let codes = body["codes"]
            .as_array()
            .expect("recovery codes")
            .iter()
            .map(|code| code.as_str().unwrap().to_string())
            .collect();
        (key, codes)
    }

    /// The signed-in user according to the server, or `Value::Null`.
    pub async fn whoami(&self, client: &reqwest::Client) -> Value {
        let (status, body) = self.call(client, "whoami", &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

/// The code an authenticator app with base32 `key` shows `offset_steps` steps from now.
pub fn totp_code(key: &str, offset_steps: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(key.to_string())
        .to_bytes()
        .expect("base32 key");
    let totp = totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        0,
        30,
        bytes,
        Some("KYC Desk".into()),
        "x".into(),
    );
    let now = chrono::Utc::now().timestamp() + offset_steps * 30;
    totp.generate(now as u64)
}

/// A server with the provider sandbox on (and `extra` settings) whose sandbox credentials
/// are seeded, as `kyc-desk serve` seeds them at first run.
pub async fn sandbox_app(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![("KYC_DESK_SANDBOX", "true")];
    vars.extend_from_slice(extra);
    let app = TestApp::start_with(backend, &vars).await;
    assert_eq!(
        kyc_desk::server::sandbox::seed::seed(&app.state)
            .await
            .unwrap(),
        3
    );
    app
}

/// Runs one async test body against SQLite and against PostgreSQL, as two tests named
/// `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::common::Backend::Postgres).await;
            }
        }
    };
}
