//! Abuse: every server function, enumerated from the server-function registry, answers
//! 401/403 by `api::SERVER_FN_ACCESS` before reading its arguments; cross-origin posts and GETs
//! change nothing; hostile bodies and field values get a clear 4xx or are stored exactly and
//! rendered escaped; old session cookies open nothing.

use crate::audit::all_rows;
use crate::common;

use common::{PASSWORD, TestApp};
use kyc_desk::access::{Access, SERVER_FN_ACCESS};
use kyc_desk::types::{AppError, Role};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

/// How the tests call one server function.
struct Spec {
    /// Endpoint (after `/api/`).
    endpoint: &'static str,
    /// Arguments as a JSON body (dotted keys nest) instead of a form.
    json: bool,
    /// Arguments that deserialize and run the function without changing anything that
    /// matters (unknown ids, refused values).
    probe: &'static [(&'static str, &'static str)],
    /// Valid arguments, the base the hostile values are put into (`{…}` are filled in).
    valid: &'static [(&'static str, &'static str)],
    /// The text fields (keys of `valid`) that get hostile values.
    text: &'static [&'static str],
}

const fn spec(
    endpoint: &'static str,
    probe: &'static [(&'static str, &'static str)],
    valid: &'static [(&'static str, &'static str)],
    text: &'static [&'static str],
) -> Spec {
    Spec {
        endpoint,
        json: false,
        probe,
        valid,
        text,
    }
}

const NEW_PHRASE: &str = "a fresh new phrase";

/// One entry per server function; `every_server_function_has_a_spec` keeps it complete.
const SPECS: &[Spec] = &[
    spec("whoami", &[], &[], &[]),
    spec(
        "login",
        &[
            ("email", "nobody@example.com"),
            ("password", "not the password"),
        ],
        &[
            ("email", "{login_email}"),
            ("password", PASSWORD),
            ("next", "/sessions"),
        ],
        // `next` first: the password's failures lock the account for the rest.
        &["next", "email", "password"],
    ),
    spec("logout", &[], &[], &[]),
    spec(
        "setup_state",
        &[("token", "forged")],
        &[("token", "forged")],
        &["token"],
    ),
    spec(
        "create_first_admin",
        &[
            ("token", "forged"),
            ("email", "eve@example.com"),
            ("display_name", "Eve"),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
        ],
        &[
            ("token", "forged"),
            ("email", "eve@example.com"),
            ("display_name", "Eve"),
            ("password", PASSWORD),
            ("password_confirm", PASSWORD),
        ],
        &[
            "token",
            "email",
            "display_name",
            "password",
            "password_confirm",
        ],
    ),
    spec(
        "change_password",
        &[
            ("current_password", "not my password"),
            ("new_password", NEW_PHRASE),
            ("confirm_password", NEW_PHRASE),
        ],
        &[
            ("current_password", PASSWORD),
            ("new_password", NEW_PHRASE),
            ("confirm_password", NEW_PHRASE),
        ],
        &["current_password", "new_password", "confirm_password"],
    ),
    spec("authenticator_status", &[], &[], &[]),
    spec(
        "second_step",
        &[("code", "000000"), ("next", "/")],
        &[("code", "000000"), ("next", "/")],
        &["code", "next"],
    ),
    spec("start_authenticator", &[], &[], &[]),
    spec(
        "confirm_authenticator",
        &[("code", "000000")],
        &[("code", "000000")],
        &["code"],
    ),
    // Hostile "passwords" here would be counted guesses that lock the test users out.
    spec("step_up", &[("secret", "")], &[("secret", PASSWORD)], &[]),
    spec(
        "sign_in_options",
        &[("provider_sign_out", "false")],
        &[("provider_sign_out", "true")],
        &[],
    ),
    spec("new_recovery_codes", &[], &[], &[]),
    spec("remove_authenticator", &[], &[], &[]),
    // The passkey ceremonies answer "not available" on the tests' 127.0.0.1 address; the
    // browser tests run them on localhost with Chromium's virtual authenticator.
    spec("list_passkeys", &[], &[], &[]),
    spec(
        "begin_passkey_registration",
        &[("name", "")],
        &[("name", "Work laptop")],
        &[],
    ),
    spec(
        "finish_passkey_registration",
        &[("credential", "{}")],
        &[("credential", "{}")],
        &[],
    ),
    spec(
        "remove_passkey",
        &[("id", "999999")],
        &[("id", "999999")],
        &[],
    ),
    spec("second_step_options", &[], &[], &[]),
    spec("begin_passkey_sign_in", &[], &[], &[]),
    spec(
        "finish_passkey_sign_in",
        &[("credential", "{}"), ("next", "/")],
        &[("credential", "{}"), ("next", "/")],
        &[],
    ),
    spec("begin_passkey_step_up", &[], &[], &[]),
    spec("begin_passkey_login", &[], &[], &[]),
    spec(
        "finish_passkey_login",
        &[("credential", "{}"), ("next", "/")],
        &[("credential", "{}"), ("next", "/")],
        &[],
    ),
    spec(
        "finish_passkey_step_up",
        &[("credential", "{}")],
        &[("credential", "{}")],
        &[],
    ),
    spec(
        "list_audit",
        &[],
        &[
            ("filter[from]", "2020-01-01"),
            ("filter[to]", "2099-12-31"),
            ("filter[actor]", "admin"),
            ("filter[action]", "auth."),
            ("filter[object]", "user"),
            ("filter[outcome]", "success"),
            ("filter[q]", "hello"),
        ],
        &[
            "filter[from]",
            "filter[to]",
            "filter[actor]",
            "filter[action]",
            "filter[object]",
            "filter[outcome]",
            "filter[q]",
        ],
    ),
    spec("verify_audit", &[], &[], &[]),
    spec("list_credentials", &[], &[], &[]),
    Spec {
        endpoint: "save_credential",
        json: true,
        probe: &[
            ("input.kind", "no_such_kind"),
            ("input.environment", "production"),
        ],
        valid: &[
            ("input.kind", "message_central_ekyc"),
            ("input.environment", "production"),
            ("input.settings.base_url", "{mc_base}"),
            ("input.settings.company_name", "Acme Bank"),
            ("input.settings.basic_flow_id", "FLOW-1"),
            ("input.settings.body_encoding", "json"),
            ("input.secrets.api_key", ""),
        ],
        text: &[
            "input.kind",
            "input.environment",
            "input.settings.base_url",
            "input.settings.company_name",
            "input.settings.basic_flow_id",
            "input.settings.body_encoding",
            "input.secrets.api_key",
        ],
    },
    spec(
        "test_credential",
        &[("kind", "no_such_kind"), ("environment", "uat")],
        &[("kind", "eko_digilocker"), ("environment", "uat")],
        &["kind", "environment"],
    ),
    spec("link_options", &[], &[], &[]),
    spec(
        "create_link",
        &[
            ("input[option]", "no:such:option"),
            ("input[customer_name]", "Asha Rao"),
            ("input[phone]", "9876543210"),
            ("input[consent]", "on"),
            ("input[idempotency_key]", "probe-key-0000000001"),
        ],
        &[
            ("input[option]", "eko:uat:digilocker"),
            ("input[customer_name]", "Asha Rao"),
            ("input[phone]", "9876543210"),
            ("input[email]", "asha@example.com"),
            ("input[internal_ref]", "REF-1"),
            ("input[documents][0]", "AADHAAR"),
            ("input[consent]", "on"),
            ("input[idempotency_key]", "{key}"),
        ],
        &[
            "input[option]",
            "input[customer_name]",
            "input[phone]",
            "input[email]",
            "input[internal_ref]",
            "input[documents][0]",
            "input[consent]",
            "input[idempotency_key]",
        ],
    ),
    spec(
        "session_detail",
        &[("public_id", "no-such-session")],
        &[("public_id", "{session}")],
        &["public_id"],
    ),
    spec(
        "list_sessions",
        &[],
        &[
            ("filter[status]", "started"),
            ("filter[provider]", "eko"),
            ("filter[flow]", "digilocker"),
            ("filter[staff]", "{operator_email}"),
            ("filter[from]", "2020-01-01"),
            ("filter[to]", "2099-12-31"),
            ("filter[q]", "Asha"),
        ],
        &[
            "filter[status]",
            "filter[provider]",
            "filter[flow]",
            "filter[staff]",
            "filter[from]",
            "filter[to]",
            "filter[q]",
        ],
    ),
    spec(
        "send_link",
        &[("public_id", "no-such-session"), ("channel", "sms")],
        &[("public_id", "{session}"), ("channel", "sms")],
        &["public_id", "channel"],
    ),
    spec(
        "cancel_link",
        &[("public_id", "no-such-session")],
        &[("public_id", "{session}")],
        &["public_id"],
    ),
    spec(
        "record_outcome",
        &[
            ("public_id", "no-such-session"),
            ("outcome", "completed"),
            ("note", "Checked in the console."),
        ],
        &[
            ("public_id", "{session}"),
            ("outcome", "completed"),
            ("note", "Console shows the journey verified."),
        ],
        &["public_id", "outcome", "note"],
    ),
    spec(
        "regenerate_link",
        &[
            ("public_id", "no-such-session"),
            ("idempotency_key", "probe-key-0000000002"),
        ],
        &[("public_id", "{session}"), ("idempotency_key", "{key}")],
        &["public_id", "idempotency_key"],
    ),
    spec(
        "set_link_reminders",
        &[("public_id", "no-such-session"), ("on", "false")],
        &[("public_id", "{session}"), ("on", "false")],
        &["public_id"],
    ),
    spec("dashboard_stats", &[], &[], &[]),
    spec("email_template", &[], &[], &[]),
    spec(
        "save_email_template",
        &[("subject", ""), ("body", "")],
        &[
            ("subject", "Your KYC link"),
            ("body", "Hello {name}, verify here: {link}"),
        ],
        &["subject", "body"],
    ),
    spec("reminder_templates", &[], &[], &[]),
    spec(
        "save_reminder_templates",
        &[("templates[en][sms]", "")],
        &[
            ("templates[en][sms]", "Reminder from {company}: {link}"),
            ("templates[en][email_subject]", "A reminder from {company}"),
            (
                "templates[en][email_body]",
                "Dear {name}, continue here: {link}",
            ),
            ("templates[hi][sms]", "{company} की ओर से अनुस्मारक: {link}"),
            ("templates[hi][email_subject]", "{company} की ओर से अनुस्मारक"),
            (
                "templates[hi][email_body]",
                "प्रिय {name}, यहाँ जारी रखें: {link}",
            ),
        ],
        &[
            "templates[en][email_subject]",
            "templates[en][email_body]",
            "templates[hi][sms]",
        ],
    ),
    spec("privacy_notice", &[], &[], &[]),
    spec(
        "save_privacy_notice",
        &[("notice[en][purpose]", "")],
        &[
            ("notice[en][purpose]", "Purpose"),
            ("notice[en][data_items]", "Name and mobile"),
            ("notice[en][retention]", "Five years"),
            ("notice[en][withdrawal]", "The link on the page"),
            ("notice[en][complaint]", "The grievance officer"),
            ("notice[hi][purpose]", "उद्देश्य"),
            ("notice[hi][data_items]", "नाम और मोबाइल"),
            ("notice[hi][retention]", "पाँच वर्ष"),
            ("notice[hi][withdrawal]", "पृष्ठ का लिंक"),
            ("notice[hi][complaint]", "शिकायत अधिकारी"),
        ],
        &["notice[en][purpose]", "notice[hi][complaint]"],
    ),
    spec("list_users", &[], &[], &[]),
    spec(
        "create_user",
        &[
            ("email", "not-an-email"),
            ("display_name", "X"),
            ("role", "operator"),
            ("password", PASSWORD),
        ],
        &[
            ("email", "{email}"),
            ("display_name", "New Person"),
            ("role", "operator"),
            ("password", PASSWORD),
        ],
        &["email", "display_name", "role", "password"],
    ),
    spec(
        "set_user_role",
        &[("user_id", "999999"), ("role", "operator")],
        &[("user_id", "{victim}"), ("role", "auditor")],
        &["role"],
    ),
    spec(
        "set_user_disabled",
        &[("user_id", "999999"), ("disabled", "true")],
        &[("user_id", "{victim}"), ("disabled", "false")],
        &[],
    ),
    spec(
        "reset_user_password",
        &[("user_id", "999999"), ("password", PASSWORD)],
        &[("user_id", "{victim}"), ("password", "temporary phrase 77")],
        &["password"],
    ),
    spec(
        "reset_user_factors",
        &[("user_id", "999999")],
        &[("user_id", "{victim}")],
        &[],
    ),
    spec(
        "set_user_sign_on",
        &[("user_id", "999999"), ("change", "unlink")],
        &[("user_id", "{victim}"), ("change", "unlink")],
        &["change"],
    ),
];

const XSS_SCRIPT: &str = "<script>alert(1)</script>";
const XSS_SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";
const XSS_IMG: &str = "\"><img src=x onerror=alert(1)>";
const XSS_IMG_RAW: &str = "<img src=x onerror=alert(1)>";
const XSS_IMG_ESCAPED: &str = "&lt;img src=x onerror=alert(1)&gt;";
const SQL_OR: &str = "' OR 1=1 --";
const SQL_DROP: &str = "\"; DROP TABLE users; --";

/// The hostile values every text field gets.
fn hostile_values() -> Vec<(&'static str, String)> {
    vec![
        ("10,000 characters", "xé".repeat(5_000)),
        ("SQL or", SQL_OR.into()),
        ("SQL drop", SQL_DROP.into()),
        ("script", XSS_SCRIPT.into()),
        ("img onerror", XSS_IMG.into()),
        ("NUL", "nul\u{0}byte".into()),
    ]
}

/// The registered server functions: endpoint → method.
fn registry() -> BTreeMap<String, Method> {
    let mut functions = BTreeMap::new();
    for (path, method) in leptos::server_fn::axum::server_fn_paths() {
        let endpoint = path
            .strip_prefix("/api/")
            .unwrap_or_else(|| panic!("server function outside /api/: {path}"));
        assert!(
            functions.insert(endpoint.to_string(), method).is_none(),
            "{endpoint} registered twice"
        );
    }
    functions
}

fn spec_of(endpoint: &str) -> &'static Spec {
    SPECS
        .iter()
        .find(|s| s.endpoint == endpoint)
        .unwrap_or_else(|| panic!("no spec for {endpoint}"))
}

fn access_of(endpoint: &str) -> Access {
    kyc_desk::access::access_of(endpoint).unwrap_or_else(|| panic!("{endpoint} not in the table"))
}

/// The name a field error uses for a submitted key: `input[documents][0]` → `documents`,
/// `filter[q]` → `q`, `input.settings.company_name` → `company_name`; a key nested deeper than
/// the argument names its path: `notice[hi][purpose]` → `hi.purpose`.
fn leaf(key: &str) -> String {
    if let Some(open) = key.find('[') {
        let parts: Vec<&str> = key[open..]
            .split(['[', ']'])
            .filter(|part| !part.is_empty() && !part.chars().all(|c| c.is_ascii_digit()))
            .collect();
        if !parts.is_empty() {
            return parts.join(".");
        }
        return key[..open].to_string();
    }
    key.rsplit('.').next().unwrap_or(key).to_string()
}

/// Values filled into `{…}` placeholders of spec arguments.
struct Fill {
    values: HashMap<&'static str, String>,
    counter: AtomicU64,
}

impl Fill {
    fn value(&self, raw: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut out = raw.replace(
            "{key}",
            &format!("abuse-key-{}", uuid::Uuid::new_v4().simple()),
        );
        out = out.replace("{email}", &format!("new.person.{n}@example.com"));
        for (name, value) in &self.values {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    fn args(&self, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), self.value(v)))
            .collect()
    }
}

fn no_fill() -> Fill {
    Fill {
        values: HashMap::new(),
        counter: AtomicU64::new(0),
    }
}

/// A JSON object from dotted keys.
fn json_of(pairs: &[(String, String)]) -> Value {
    let mut root = serde_json::Map::new();
    for (key, value) in pairs {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap();
        let mut node = &mut root;
        for part in parts {
            node = node
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
                .unwrap();
        }
        node.insert(last.to_string(), Value::String(value.clone()));
    }
    Value::Object(root)
}

/// Calls a server function the way its spec says (form or JSON), same-origin.
async fn invoke(
    app: &TestApp,
    client: &reqwest::Client,
    spec: &Spec,
    args: &[(String, String)],
) -> (StatusCode, Value) {
    let request = client
        .post(format!("{}/api/{}", app.base, spec.endpoint))
        .header("origin", &app.base);
    let request = if spec.json {
        request.json(&json_of(args))
    } else {
        request.form(args)
    };
    let response = request.send().await.expect("server function request");
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The error a 4xx/5xx body carries; panics (naming `what`) when it is not one.
fn app_error(body: &Value, what: &str) -> AppError {
    serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("{what}: the body is not an AppError ({e}): {body}"))
}

fn is_guard_refusal(error: &AppError) -> bool {
    match error {
        AppError::Unauthorized => true,
        AppError::Forbidden(message) => {
            message.contains("cannot do this") || message.contains("initial password first")
        }
        _ => false,
    }
}

async fn access_denied_rows(app: &TestApp) -> Vec<kyc_desk::server::db::audit::AuditRow> {
    all_rows(&app.state.db)
        .await
        .into_iter()
        .filter(|r| r.action == "access.denied")
        .collect()
}

/// A user's id, email, display name, role, disabled and must-change flags, session epoch
/// and password hash.
type UserState = (i64, String, String, String, i64, i64, i64, String);

/// Everything the functions could change, apart from the audit log and session activity.
async fn snapshot(app: &TestApp) -> Vec<String> {
    let pool = &app.state.db.pool;
    let mut out = Vec::new();
    let users: Vec<UserState> = sqlx::query_as(
        "SELECT id, email, display_name, role, disabled, must_change_password, session_epoch, \
         password_hash FROM users ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    out.extend(users.into_iter().map(|u| format!("{u:?}")));
    let sessions: Vec<(String, String)> =
        sqlx::query_as("SELECT public_id, status FROM kyc_sessions ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    out.extend(sessions.into_iter().map(|s| format!("{s:?}")));
    let credentials: Vec<(i64, i64, String, String)> =
        sqlx::query_as("SELECT id, version, status, settings FROM credentials ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    out.extend(credentials.into_iter().map(|c| format!("{c:?}")));
    let templates: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, subject, body FROM message_templates ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap();
    out.extend(templates.into_iter().map(|t| format!("{t:?}")));
    for table in [
        "kyc_events",
        "deliveries",
        "credential_secrets",
        "auth_sessions",
        "setup_tokens",
    ] {
        let (count,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(pool)
            .await
            .unwrap();
        out.push(format!("{table}: {count}"));
    }
    out
}

#[test]
fn every_server_function_has_an_access_rule_and_a_spec() {
    let registered = registry();
    assert!(
        registered.len() >= 20,
        "the registry looks empty: {registered:?}"
    );
    let registered_names: BTreeSet<&str> = registered.keys().map(String::as_str).collect();
    let mut table_names = BTreeSet::new();
    for (endpoint, _) in SERVER_FN_ACCESS {
        assert!(table_names.insert(*endpoint), "{endpoint} listed twice");
    }
    assert_eq!(
        registered_names
            .difference(&table_names)
            .collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "registered server functions missing from SERVER_FN_ACCESS"
    );
    assert_eq!(
        table_names
            .difference(&registered_names)
            .collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "SERVER_FN_ACCESS lists functions the registry lacks"
    );
    let spec_names: BTreeSet<&str> = SPECS.iter().map(|s| s.endpoint).collect();
    assert_eq!(spec_names.len(), SPECS.len(), "a spec is listed twice");
    assert_eq!(
        spec_names, registered_names,
        "SPECS must cover the registry"
    );
    for spec in SPECS {
        for field in spec.text {
            assert!(
                spec.valid.iter().any(|(k, _)| k == field),
                "{}: {field} is not in its valid arguments",
                spec.endpoint
            );
        }
    }
    // No server function is reachable by GET (a GET must never change anything).
    for (endpoint, method) in &registered {
        assert_eq!(*method, Method::POST, "{endpoint} is not POST-only");
    }
    assert_eq!(leaf("input[documents][0]"), "documents");
    assert_eq!(leaf("filter[q]"), "q");
    assert_eq!(leaf("input.settings.company_name"), "company_name");
    assert_eq!(leaf("email"), "email");
}

/// Staff of every role, signed in, plus a user who must still change an initial password.
struct Staff {
    admin: reqwest::Client,
    operator: reqwest::Client,
    auditor: reqwest::Client,
    fresh: reqwest::Client,
    /// Half signed in: password right, authenticator code still to be given.
    half: reqwest::Client,
}

const ADMIN: &str = "admin@example.com";
const OPERATOR: &str = "op@example.com";
const AUDITOR: &str = "aud@example.com";
const FRESH: &str = "fresh@example.com";
const HALF: &str = "half@example.com";

async fn staff(app: &TestApp) -> Staff {
    app.user(ADMIN, Role::Admin).await;
    app.user(OPERATOR, Role::Operator).await;
    app.user(AUDITOR, Role::Auditor).await;
    app.user_with(FRESH, Role::Operator, true).await;
    // An auditor: the role tests that take operators out of the table still let them enrol.
    app.user(HALF, Role::Auditor).await;
    let enrolled = app.signed_in(HALF).await;
    app.enrol_authenticator(&enrolled).await;
    Staff {
        admin: app.signed_in(ADMIN).await,
        operator: app.signed_in(OPERATOR).await,
        auditor: app.signed_in(AUDITOR).await,
        fresh: app.signed_in(FRESH).await,
        half: app.signed_in(HALF).await,
    }
}

both_backends!(
    every_server_function_enforces_its_access_rule_before_reading_arguments,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let staff = staff(&app).await;
        let anonymous = app.client();
        let registered = registry();
        let fill = no_fill();
        let secrets = [ADMIN, OPERATOR, AUDITOR, FRESH, "$argon2", "password_hash"];

        for endpoint in registered.keys() {
            let spec = spec_of(endpoint);
            let access = access_of(endpoint);
            let no_args: Vec<(String, String)> = Vec::new();
            let probe = fill.args(spec.probe);

            // Without a session: 401 before the (missing) arguments are even read.
            let (status, body) = invoke(&app, &anonymous, spec, &no_args).await;
            assert!(status.as_u16() < 500, "{endpoint}: {status} {body}");
            if access == Access::Public {
                let (status, body) = invoke(&app, &anonymous, spec, &probe).await;
                assert!(status.as_u16() < 500, "{endpoint}: {status} {body}");
                let error = (!status.is_success()).then(|| app_error(&body, endpoint));
                assert!(
                    !error.as_ref().is_some_and(is_guard_refusal),
                    "{endpoint} is public: {body}"
                );
                let text = body.to_string();
                for secret in secrets {
                    assert!(!text.contains(secret), "{endpoint} leaks {secret}: {text}");
                }
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{endpoint}: {body}");
                assert_eq!(app_error(&body, endpoint), AppError::Unauthorized);
            }

            // A half-signed-in user may only give the second factor (public doors see them as
            // signed out).
            if access == Access::SecondStep {
                let (status, body) = invoke(&app, &staff.half, spec, &probe).await;
                assert!(status.as_u16() < 500, "{endpoint}: {status} {body}");
                assert!(
                    status.is_success() || !is_guard_refusal(&app_error(&body, endpoint)),
                    "{endpoint} half signed in: {body}"
                );
            } else if access != Access::Public {
                let (status, body) = invoke(&app, &staff.half, spec, &no_args).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{endpoint}: {body}");
                assert!(
                    body["Forbidden"]
                        .as_str()
                        .unwrap()
                        .contains("authenticator app first"),
                    "{endpoint}: {body}"
                );
            }

            // A user who must replace an initial password may only do that.
            if access == Access::AnySignedIn {
                let (status, body) = invoke(&app, &staff.fresh, spec, &probe).await;
                assert!(status.as_u16() < 500, "{endpoint}: {status} {body}");
                assert!(
                    status.is_success() || !is_guard_refusal(&app_error(&body, endpoint)),
                    "{endpoint} as a user with an initial password: {body}"
                );
            }
            if access.roles().is_some() {
                let (status, body) = invoke(&app, &staff.fresh, spec, &no_args).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{endpoint}: {body}");
                assert!(
                    body["Forbidden"]
                        .as_str()
                        .unwrap()
                        .contains("initial password first"),
                    "{endpoint}: {body}"
                );
            }

            for (role, email, client) in [
                (Role::Operator, OPERATOR, &staff.operator),
                (Role::Admin, ADMIN, &staff.admin),
                (Role::Auditor, AUDITOR, &staff.auditor),
            ] {
                let allowed = match access {
                    Access::SecondStep => {
                        // Fully signed in already: the second step is not theirs to take.
                        let (status, body) = invoke(&app, client, spec, &no_args).await;
                        assert_eq!(status, StatusCode::UNAUTHORIZED, "{endpoint}: {body}");
                        continue;
                    }
                    Access::Public | Access::AnySignedIn => true,
                    Access::Roles(roles) | Access::StepUp(roles) => roles.contains(&role),
                };
                if allowed {
                    // Signing out is tried with a session of its own.
                    let own;
                    let client = if endpoint == "logout" {
                        own = app.signed_in(email).await;
                        &own
                    } else {
                        client
                    };
                    // The probe reaches the function body, whose own guard must agree.
                    let (status, body) = invoke(&app, client, spec, &probe).await;
                    assert!(
                        status.as_u16() < 500,
                        "{endpoint} as {role}: {status} {body}"
                    );
                    if !status.is_success() {
                        let error = app_error(&body, endpoint);
                        assert!(!is_guard_refusal(&error), "{endpoint} as {role}: {body}");
                        assert!(
                            !matches!(error, AppError::Request(_)),
                            "{endpoint}: the probe must deserialize: {body}"
                        );
                    }
                } else {
                    // Counts of earlier refusals written out, so this one gets its own row.
                    app.state.audit_noise.flush().await;
                    let before = access_denied_rows(&app).await.len();
                    let (status, body) = invoke(&app, client, spec, &no_args).await;
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{endpoint} as {role}: {body}"
                    );
                    assert!(
                        body["Forbidden"]
                            .as_str()
                            .unwrap()
                            .contains("cannot do this"),
                        "{endpoint} as {role}: {body}"
                    );
                    let rows = access_denied_rows(&app).await;
                    assert_eq!(
                        rows.len(),
                        before + 1,
                        "{endpoint} as {role}: one audit row"
                    );
                    let row = rows.last().unwrap();
                    assert_eq!(row.actor_email, email);
                    assert_eq!(row.outcome, "denied");
                    let detail: Value = serde_json::from_str(&row.detail).unwrap();
                    assert_eq!(detail["function"], endpoint.as_str(), "{row:?}");
                }
            }
        }

        // Unknown endpoints are refused before anything runs, signed in or not.
        for client in [&anonymous, &staff.admin] {
            let (status, body) = app.call(client, "no_such_function", &[]).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        }
        // Every staff session still works (nothing above signed anyone out).
        assert_eq!(app.whoami(&staff.admin).await["email"], ADMIN);
        assert_eq!(app.whoami(&staff.operator).await["email"], OPERATOR);
        assert_eq!(app.whoami(&anonymous).await, Value::Null);
    }
);

/// A sandbox server with staff, seeded credentials, a Message Central production credential
/// (pointing at the sandbox), an open session and a user to act on; and the fill-ins.
async fn world(backend: common::Backend) -> (TestApp, Staff, Fill) {
    let app = common::sandbox_app(backend, &[]).await;
    let staff = staff(&app).await;
    let victim = app.user("victim@example.com", Role::Operator).await;
    app.user("login.target@example.com", Role::Operator).await;
    let mut values = HashMap::new();
    values.insert("victim", victim.id.to_string());
    values.insert("login_email", "login.target@example.com".to_string());
    values.insert("operator_email", OPERATOR.to_string());
    values.insert("mc_base", format!("{}/sandbox/message-central", app.base));
    let fill = Fill {
        values,
        counter: AtomicU64::new(0),
    };

    let save = spec_of("save_credential");
    let mut args = fill.args(save.valid);
    args.retain(|(k, _)| k != "input.secrets.api_key");
    args.push((
        "input.secrets.api_key".into(),
        "first-production-key".into(),
    ));
    let (status, body) = invoke(&app, &staff.admin, save, &args).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let create = spec_of("create_link");
    let (status, body) = invoke(&app, &staff.operator, create, &fill.args(create.valid)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = body["summary"]["public_id"].as_str().unwrap().to_string();
    let mut fill = fill;
    fill.values.insert("session", session);
    (app, staff, fill)
}

/// The client a spec's hostile calls use: a fresh anonymous one for public functions, else
/// a session of the first role the rule allows.
fn client_for(app: &TestApp, staff: &Staff, endpoint: &str) -> reqwest::Client {
    match access_of(endpoint) {
        Access::Public => app.client(),
        Access::AnySignedIn => staff.operator.clone(),
        Access::SecondStep => staff.half.clone(),
        Access::Roles(roles) | Access::StepUp(roles) => match roles[0] {
            Role::Operator => staff.operator.clone(),
            Role::Admin => staff.admin.clone(),
            Role::Auditor => staff.auditor.clone(),
        },
    }
}

both_backends!(
    cross_origin_posts_and_gets_change_nothing,
    |backend| async move {
        let (app, staff, fill) = world(backend).await;
        let before = snapshot(&app).await;
        let registered = registry();
        for endpoint in registered.keys() {
            let spec = spec_of(endpoint);
            let args = fill.args(spec.valid);
            let url = format!("{}/api/{endpoint}", app.base);
            for (header, value) in [
                ("origin", "https://evil.example"),
                ("origin", "null"),
                ("sec-fetch-site", "cross-site"),
            ] {
                // Counts of earlier refusals written out, so this one gets its own row.
                app.state.audit_noise.flush().await;
                let denied = access_denied_rows(&app).await.len();
                let request = staff.admin.post(&url).header(header, value);
                let request = if spec.json {
                    request.json(&json_of(&args))
                } else {
                    request.form(&args)
                };
                let response = request.send().await.unwrap();
                let status = response.status();
                let text = response.text().await.unwrap();
                assert_eq!(status, StatusCode::FORBIDDEN, "{endpoint} {header}: {text}");
                assert!(text.contains("another site"), "{endpoint}: {text}");
                let rows = access_denied_rows(&app).await;
                assert_eq!(rows.len(), denied + 1, "{endpoint} {header}: one audit row");
                let row = rows.last().unwrap();
                assert_eq!(row.reason, "cross-origin request refused");
                assert!(row.detail.contains(&format!("/api/{endpoint}")), "{row:?}");
            }

            // A GET, same-origin and signed in, with the arguments in the query, runs nothing
            // (the second step asked by a half-signed-in user, the rest by an admin).
            let query: Vec<(String, String)> = if spec.json { Vec::new() } else { args };
            let getter = if access_of(endpoint) == Access::SecondStep {
                &staff.half
            } else {
                &staff.admin
            };
            let response = getter
                .get(&url)
                .header("origin", &app.base)
                .query(&query)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "GET {endpoint}"
            );
        }
        assert_eq!(snapshot(&app).await, before, "nothing changed");
        assert_eq!(
            app.whoami(&staff.admin).await["email"],
            ADMIN,
            "still signed in"
        );
    }
);

/// How a raw request's body is sent.
enum RawBody {
    /// With a Content-Length.
    Sized(Vec<u8>),
    /// Chunked, without a length.
    Chunked(Vec<u8>),
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the (de-chunked) body.
/// The body is written while the answer is read, so an early answer (413) is still seen.
async fn raw_post(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    body: RawBody,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = app.base.strip_prefix("http://").unwrap().to_string();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\norigin: {}\r\nconnection: close\r\n",
        app.base
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let payload = match body {
        RawBody::Sized(bytes) => {
            head.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
            let mut all = head.into_bytes();
            all.extend_from_slice(&bytes);
            all
        }
        RawBody::Chunked(bytes) => {
            head.push_str("transfer-encoding: chunked\r\n\r\n");
            let mut all = head.into_bytes();
            for chunk in bytes.chunks(64 * 1024) {
                all.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                all.extend_from_slice(chunk);
                all.extend_from_slice(b"\r\n");
            }
            all.extend_from_slice(b"0\r\n\r\n");
            all
        }
    };
    let write = tokio::spawn(async move {
        // The server may answer and close before reading everything; that is its right.
        let _ = writer.write_all(&payload).await;
        let _ = writer.flush().await;
        writer
    });
    let mut response = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to POST {path} within 30 s");
    drop(write);
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer to POST {path}: {text:?}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || after.len() < size {
                break;
            }
            out.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

/// A 4xx answer whose body is an AppError with a message, or a 2xx; never a 5xx.
fn assert_clear(status: u16, body: &str, what: &str) {
    assert!(status < 500, "{what}: {status} {body}");
    if status >= 400 {
        let value: Value = serde_json::from_str(body)
            .unwrap_or_else(|_| panic!("{what}: {status} with a non-JSON body: {body}"));
        let error = app_error(&value, what);
        assert!(
            !error.to_string().trim().is_empty(),
            "{what}: empty message"
        );
    }
}

both_backends!(hostile_bodies_get_clear_refusals, |backend| async move {
    let (app, staff, _) = world(backend).await;
    let two_mib = "a=".to_string() + &"x".repeat(2 * 1024 * 1024);
    let deep_form = format!("a{}=1", "[b]".repeat(1000));
    let deep_input = format!(
        "input{}=1&filter{}=1",
        "[x]".repeat(1000),
        "[y]".repeat(1000)
    );
    let deep_json = format!(
        "{{\"input\":{}1{}}}",
        "{\"a\":".repeat(1000),
        "}".repeat(1000)
    );
    let form_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("nested keys", deep_form.into_bytes()),
        ("nested input keys", deep_input.into_bytes()),
        ("%zz", b"%zz".to_vec()),
        ("lone %", b"%".to_vec()),
        ("input[", b"input[".to_vec()),
        (
            "mixed malformed",
            b"input[=1&%=%&&==&email=%zz&password=%".to_vec(),
        ),
        (
            "cut UTF-8 escape",
            b"email=%E0%A4&password=%C3%28&token=%FF".to_vec(),
        ),
        (
            "invalid UTF-8 bytes",
            b"email=\xff\xfe\xfd&password=\xc3\x28&token=\x80".to_vec(),
        ),
        (
            "arrays of arrays",
            b"input[][]=1&filter[][]=2&user_id[]=3".to_vec(),
        ),
        (
            "huge number",
            b"user_id=99999999999999999999999999&filter[before]=1e309".to_vec(),
        ),
    ];
    let json_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("nested JSON", deep_json.into_bytes()),
        ("nested arrays", "[".repeat(1000).into_bytes()),
        ("truncated JSON", b"{\"input\":".to_vec()),
        (
            "lone surrogate",
            b"{\"input\":{\"kind\":\"\\ud800\"}}".to_vec(),
        ),
        (
            "invalid UTF-8 in JSON",
            b"{\"input\":{\"kind\":\"\xff\xfe\"}}".to_vec(),
        ),
        (
            "wrong types",
            b"{\"input\":{\"kind\":1,\"settings\":[]}}".to_vec(),
        ),
    ];
    // Raw requests carry the cookie of a session allowed to call the function.
    let mut cookie_for_role = HashMap::new();
    for (role, email) in [
        (Role::Operator, OPERATOR),
        (Role::Admin, ADMIN),
        (Role::Auditor, AUDITOR),
    ] {
        cookie_for_role.insert(role, sign_in_cookie(&app, email, None).await);
    }
    let half_cookie = sign_in_cookie(&app, HALF, None).await;
    let registered = registry();
    for endpoint in registered.keys() {
        let spec = spec_of(endpoint);
        let path = format!("/api/{endpoint}");
        let cookie = match access_of(endpoint) {
            // Signing out with a raw cookie would end that session; use none.
            Access::Public => String::new(),
            Access::AnySignedIn => cookie_for_role[&Role::Operator].clone(),
            Access::SecondStep => half_cookie.clone(),
            Access::Roles(roles) | Access::StepUp(roles) => cookie_for_role[&roles[0]].clone(),
        };
        let content_type = if spec.json {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        let mut headers = vec![("content-type", content_type)];
        if !cookie.is_empty() {
            headers.push(("cookie", cookie.as_str()));
        }

        // 2 MiB, with and without a length: 413 in plain words, and the server goes on.
        for (kind, body) in [
            ("sized", RawBody::Sized(two_mib.clone().into_bytes())),
            ("chunked", RawBody::Chunked(two_mib.clone().into_bytes())),
        ] {
            let (status, text) = raw_post(&app, &path, &headers, body).await;
            assert_eq!(status, 413, "{endpoint} {kind} 2 MiB: {text}");
            assert!(text.contains("too large"), "{endpoint} {kind}: {text}");
            let (status, _, ok) = app.get(&app.client(), "/healthz").await;
            assert_eq!((status, ok.as_str()), (StatusCode::OK, "ok"));
        }

        let bodies = if spec.json {
            &json_bodies
        } else {
            &form_bodies
        };
        for (what, body) in bodies.iter() {
            let (status, text) =
                raw_post(&app, &path, &headers, RawBody::Sized(body.clone())).await;
            assert_clear(status, &text, &format!("{endpoint} {what}"));
        }
        // A body of the other encoding than the function expects.
        let other = if spec.json {
            (
                "application/x-www-form-urlencoded",
                b"input[kind]=smtp".to_vec(),
            )
        } else {
            ("application/json", b"{\"email\":\"x\"}".to_vec())
        };
        let mut headers = headers.clone();
        headers[0] = ("content-type", other.0);
        let (status, text) = raw_post(&app, &path, &headers, RawBody::Sized(other.1)).await;
        assert_clear(status, &text, &format!("{endpoint} wrong content type"));
    }
    // Every staff session still works.
    assert_eq!(app.whoami(&staff.admin).await["email"], ADMIN);
    assert_eq!(app.whoami(&staff.auditor).await["email"], AUDITOR);
});

/// A page's HTML as `client` sees it (it must open).
async fn page(app: &TestApp, client: &reqwest::Client, path: &str) -> String {
    let (status, location, html) = app.get(client, path).await;
    assert_eq!(status, StatusCode::OK, "{path} → {location:?}");
    html
}

fn assert_no_raw_markup(html: &str, path: &str) {
    for raw in [XSS_SCRIPT, XSS_IMG_RAW] {
        if let Some(at) = html.find(raw) {
            let context: String = html[at.saturating_sub(200)..].chars().take(400).collect();
            panic!("{path} renders {raw} unescaped: …{context}…");
        }
    }
}

both_backends!(
    hostile_field_values_are_refused_or_stored_exactly_and_escaped,
    |backend| async move {
        let (app, staff, fill) = world(backend).await;
        let values = hostile_values();
        for endpoint in registry().keys() {
            let spec = spec_of(endpoint);
            let form_fields: BTreeSet<String> = spec.valid.iter().map(|(k, _)| leaf(k)).collect();
            for field in spec.text {
                for (what, value) in &values {
                    let mut args = fill.args(spec.valid);
                    for (key, slot) in args.iter_mut() {
                        if key == field {
                            *slot = value.clone();
                        }
                    }
                    let client = client_for(&app, &staff, endpoint);
                    let (status, body) = invoke(&app, &client, spec, &args).await;
                    let label = format!("{endpoint} {field} = {what}");
                    assert!(status.as_u16() < 500, "{label}: {status} {body}");
                    if status.is_success() {
                        continue;
                    }
                    let error = app_error(&body, &label);
                    assert!(!is_guard_refusal(&error), "{label}: {body}");
                    if *what == "NUL" {
                        assert!(
                            matches!(error, AppError::Validation { .. }),
                            "{label}: a NUL is refused field by field: {body}"
                        );
                    }
                    assert!(
                        !matches!(error, AppError::Request(_)),
                        "{label}: any text deserializes: {body}"
                    );
                    if let AppError::Validation { fields, .. } = &error {
                        assert!(!fields.is_empty(), "{label}: {body}");
                        for named in fields {
                            assert!(
                                form_fields.contains(&named.field),
                                "{label}: names {}, which the form lacks",
                                named.field
                            );
                        }
                        // No field takes 10,000 characters or a NUL: if refused, it is named.
                        if matches!(*what, "10,000 characters" | "NUL") {
                            assert!(
                                fields.iter().any(|f| f.field == leaf(field)),
                                "{label}: {body}"
                            );
                        }
                    }
                }
            }
        }

        // Values a field accepts are stored exactly as typed ...
        let kept = [XSS_SCRIPT, XSS_IMG, SQL_OR, SQL_DROP];
        for (n, value) in kept.iter().enumerate() {
            let email = format!("shown.{n}@example.com");
            let (status, body) = app
                .call(
                    &staff.admin,
                    "create_user",
                    &[
                        ("email", &email),
                        ("display_name", value),
                        ("role", "operator"),
                        ("password", PASSWORD),
                    ],
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["display_name"], *value);
        }
        let (_, users) = app.call(&staff.admin, "list_users", &[]).await;
        for value in kept {
            assert!(
                users
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|u| u["display_name"] == value),
                "{value} kept as typed"
            );
        }
        let create = spec_of("create_link");
        let mut session_of = HashMap::new();
        for value in kept {
            let mut args = fill.args(create.valid);
            for (key, slot) in args.iter_mut() {
                if key == "input[internal_ref]" {
                    *slot = value.to_string();
                }
            }
            let (status, body) = invoke(&app, &staff.operator, create, &args).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let id = body["summary"]["public_id"].as_str().unwrap().to_string();
            let (_, detail) = app
                .call(&staff.auditor, "session_detail", &[("public_id", &id)])
                .await;
            assert_eq!(detail["internal_ref"], value, "kept as typed");
            session_of.insert(value, id);
        }
        for value in [SQL_OR, SQL_DROP] {
            let mut args = fill.args(create.valid);
            for (key, slot) in args.iter_mut() {
                if key == "input[customer_name]" {
                    *slot = value.to_string();
                }
            }
            let (status, body) = invoke(&app, &staff.operator, create, &args).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["summary"]["customer_name"], value);
        }
        let template_body = format!("{XSS_IMG} {SQL_DROP} {{link}}");
        let (status, body) = app
            .call(
                &staff.admin,
                "save_email_template",
                &[("subject", XSS_SCRIPT), ("body", &template_body)],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, template) = app.call(&staff.admin, "email_template", &[]).await;
        assert_eq!(template, serde_json::json!([XSS_SCRIPT, template_body]));
        let save = spec_of("save_credential");
        let mut args = fill.args(save.valid);
        for (key, slot) in args.iter_mut() {
            if key == "input.settings.company_name" {
                *slot = XSS_SCRIPT.into();
            }
        }
        let (status, body) = invoke(&app, &staff.admin, save, &args).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, overview) = app.call(&staff.admin, "list_credentials", &[]).await;
        let production = overview["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "message_central_ekyc" && c["environment"] == "production")
            .unwrap();
        assert_eq!(production["settings"]["company_name"], XSS_SCRIPT);

        // ... and escaped wherever another user sees them.
        app.user("admin2@example.com", Role::Admin).await;
        let other_admin = app.signed_in("admin2@example.com").await;
        let html = page(&app, &other_admin, "/users").await;
        assert_no_raw_markup(&html, "/users");
        assert!(html.contains(XSS_SCRIPT_ESCAPED) && html.contains(XSS_IMG_ESCAPED));
        let html = page(&app, &other_admin, "/credentials").await;
        assert_no_raw_markup(&html, "/credentials");
        assert!(
            html.contains(XSS_SCRIPT_ESCAPED),
            "/credentials shows the company name"
        );
        for (value, escaped) in [(XSS_SCRIPT, XSS_SCRIPT_ESCAPED), (XSS_IMG, XSS_IMG_ESCAPED)] {
            let path = format!("/sessions/{}", session_of[&value]);
            let html = page(&app, &staff.auditor, &path).await;
            assert_no_raw_markup(&html, &path);
            assert!(html.contains(escaped), "{path} shows the reference");
        }
        let script_query = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
        let img_query = "%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E";
        for (client, path) in [
            (&staff.auditor, "/sessions".to_string()),
            (&staff.auditor, "/audit".to_string()),
            (&staff.operator, "/".to_string()),
            (&staff.operator, "/links".to_string()),
            (&staff.operator, "/sessions".to_string()),
            (&other_admin, "/audit".to_string()),
            // Reflected: filters echo into the page.
            (
                &staff.auditor,
                format!("/audit?q={script_query}&actor={img_query}"),
            ),
            (
                &staff.operator,
                format!("/sessions?q={script_query}&staff={img_query}"),
            ),
            (&app.client(), format!("/login?next={script_query}")),
        ] {
            // A filter the page refuses may answer 400; it still echoes nothing raw.
            let (status, _, html) = app.get(client, &path).await;
            assert!(status.as_u16() < 500, "{path}: {status}");
            assert_no_raw_markup(&html, &path);
        }
        // A NUL in a page's or an export's query is refused, on both databases alike.
        for (client, path) in [
            (&staff.auditor, "/sessions?q=a%00b"),
            (&staff.auditor, "/audit?q=a%00b"),
            (&staff.auditor, "/audit/export.csv?q=a%00b"),
            (&staff.auditor, "/sessions/export.csv?q=a%00b"),
            (&app.client(), "/kyc/return?journey_id=a%00b"),
        ] {
            let (status, _, text) = app.get(client, path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {text}");
            assert!(text.contains("NUL"), "{path}: {text}");
        }
        let (status, _, html) = app
            .get(&app.client(), &format!("/setup/{script_query}"))
            .await;
        assert!(status.as_u16() < 500, "/setup: {status}");
        assert_no_raw_markup(&html, "/setup/<script>");

        // The SQL payloads did nothing to the schema: every table is there and works.
        for table in [
            "users",
            "auth_sessions",
            "credentials",
            "credential_secrets",
            "audit_log",
            "kyc_sessions",
            "kyc_events",
            "deliveries",
            "message_templates",
        ] {
            let (count,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"));
            // No link was sent, so only deliveries may be empty.
            assert!(count > 0 || table == "deliveries", "{table} is empty");
        }
        for (client, function) in [
            (&staff.admin, "list_users"),
            (&staff.auditor, "list_sessions"),
            (&staff.auditor, "list_audit"),
        ] {
            let (status, body) = app.call(client, function, &[]).await;
            assert_eq!(status, StatusCode::OK, "{function}: {body}");
        }
        let (status, report) = app.call(&staff.auditor, "verify_audit", &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(report["intact"], true, "{report}");
    }
);

/// Signs in with a cookie-less client, optionally presenting `planted`, and returns the
/// `name=value` pair of the new session cookie.
async fn sign_in_cookie(app: &TestApp, email: &str, planted: Option<&str>) -> String {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/login", app.base))
        .form(&[("email", email), ("password", PASSWORD)]);
    if let Some(cookie) = planted {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "sign-in of {email}");
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .find(|c| c.starts_with("kyc_desk_session="))
        .expect("a session cookie")
}

/// Calls `endpoint` (no arguments, same origin) presenting exactly `cookie`.
async fn with_cookie(app: &TestApp, endpoint: &str, cookie: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/{endpoint}", app.base))
        .header("origin", &app.base)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every guarded function answers 401 to `cookie`.
async fn cookie_opens_nothing(app: &TestApp, cookie: &str, what: &str) {
    assert_eq!(
        with_cookie(app, "whoami", cookie).await.1,
        Value::Null,
        "{what}"
    );
    for (endpoint, access) in SERVER_FN_ACCESS {
        if *access == Access::Public {
            continue;
        }
        let (status, body) = with_cookie(app, endpoint, cookie).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{what}: {endpoint} {body}"
        );
        assert_eq!(body, "Unauthorized", "{what}: {endpoint}");
    }
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/users", app.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{what}: /users");
}

both_backends!(old_and_planted_cookies_open_nothing, |backend| async move {
    let app = TestApp::start(backend).await;
    let staff = staff(&app).await;

    // The exact cookie of a signed-out session, replayed against every guarded function.
    let admin_cookie = sign_in_cookie(&app, ADMIN, None).await;
    assert_eq!(
        with_cookie(&app, "whoami", &admin_cookie).await.1["email"],
        ADMIN
    );
    let (status, _) = with_cookie(&app, "logout", &admin_cookie).await;
    assert_eq!(status, StatusCode::OK);
    cookie_opens_nothing(&app, &admin_cookie, "after sign-out").await;

    // A disabled user's cookie, captured before the disable; enabling them again does not
    // bring the old session back.
    let operator = kyc_desk::server::db::users::find_by_email(&app.state.db.pool, OPERATOR)
        .await
        .unwrap()
        .unwrap();
    let operator_cookie = sign_in_cookie(&app, OPERATOR, None).await;
    assert_eq!(
        with_cookie(&app, "whoami", &operator_cookie).await.1["email"],
        OPERATOR
    );
    for disabled in ["true", "false"] {
        let (status, body) = app
            .call(
                &staff.admin,
                "set_user_disabled",
                &[
                    ("user_id", &operator.id.to_string()),
                    ("disabled", disabled),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        cookie_opens_nothing(&app, &operator_cookie, &format!("disabled={disabled}")).await;
    }

    // Fixation: a victim signing in while presenting the attacker's own session id (or an id
    // the attacker made up) gets a new id, and the attacker's id opens nothing.
    let attacker_cookie = sign_in_cookie(&app, AUDITOR, None).await;
    let victim_cookie = sign_in_cookie(&app, ADMIN, Some(&attacker_cookie)).await;
    assert_ne!(victim_cookie, attacker_cookie);
    assert_eq!(
        with_cookie(&app, "whoami", &victim_cookie).await.1["email"],
        ADMIN
    );
    cookie_opens_nothing(&app, &attacker_cookie, "planted real id").await;
    let invented = "kyc_desk_session=attacker-chosen-session-id";
    let victim_cookie = sign_in_cookie(&app, ADMIN, Some(invented)).await;
    assert_ne!(victim_cookie, invented);
    cookie_opens_nothing(&app, invented, "planted invented id").await;
    assert_eq!(
        with_cookie(&app, "whoami", &victim_cookie).await.1["email"],
        ADMIN
    );
});

both_backends!(
    public_setup_spends_no_argon2_on_a_setup_that_cannot_happen,
    |backend| async move {
        let app = TestApp::start(backend).await;
        let token = kyc_desk::server::auth::accounts::issue_setup_token(&app.state)
            .await
            .unwrap()
            .expect("no users yet");
        let setup = |token: String, email: &'static str| {
            let app = &app;
            async move {
                app.call(
                    &app.client(),
                    "create_first_admin",
                    &[
                        ("token", token.as_str()),
                        ("email", email),
                        ("display_name", "Someone"),
                        ("password", PASSWORD),
                        ("password_confirm", PASSWORD),
                    ],
                )
                .await
            }
        };
        // A forged token, before anyone is set up: refused without hashing the password.
        let hashes = app.state.passwords.hashes();
        for _ in 0..3 {
            let (status, body) = setup("forged".into(), "eve@example.com").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        }
        assert_eq!(app.state.passwords.hashes(), hashes, "no argon2 run");
        app.state.audit_noise.flush().await;
        let denied: Vec<_> = all_rows(&app.state.db)
            .await
            .into_iter()
            .filter(|r| r.action == "setup.first_admin" && r.outcome == "denied")
            .collect();
        assert_eq!(
            crate::audit::events_counted(&denied),
            3,
            "each refusal is counted: {denied:#?}"
        );

        let (status, body) = setup(token.clone(), "asha@example.com").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(app.state.passwords.hashes(), hashes + 1);

        // Once set up, neither the spent link nor a forged one costs a hash.
        for token in [token.clone(), "forged".to_string()] {
            let (status, body) = setup(token, "eve@example.com").await;
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
        }
        assert_eq!(app.state.passwords.hashes(), hashes + 1, "no argon2 run");
        assert_eq!(
            kyc_desk::server::db::users::count(&app.state.db.pool)
                .await
                .unwrap(),
            1
        );
    }
);

/// The standard table with the first permitted role taken away from every role-guarded
/// function (a function left with no role keeps none).
fn table_without_first_roles() -> (kyc_desk::access::AccessTable, Vec<(&'static str, Role)>) {
    let mut table = kyc_desk::access::AccessTable::standard();
    let mut removed = Vec::new();
    for (endpoint, access) in SERVER_FN_ACCESS {
        if let Some(roles) = access.roles()
            && let Some((first, rest)) = roles.split_first()
        {
            let narrower = match access {
                Access::StepUp(_) => Access::StepUp(rest),
                _ => Access::Roles(rest),
            };
            table = table.with_server_fn(endpoint, narrower);
            removed.push((*endpoint, *first));
        }
    }
    (table, removed)
}

/// Calls server function `spec` the way a page render does — in-process, through the
/// server-function registry, with no router door in front — as the signed-in `user_id`.
async fn invoke_in_process(
    app: &TestApp,
    user_id: i64,
    spec: &Spec,
    args: &[(String, String)],
) -> (StatusCode, Value) {
    use kyc_desk::server::auth::SessionAuth;
    use kyc_desk::server::db::auth_sessions::{AUTH_KEY, SqlSessionStore};
    let (epoch,): (i64,) = sqlx::query_as("SELECT session_epoch FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&app.state.db.pool)
        .await
        .unwrap();
    let session = tower_sessions::Session::new(
        None,
        std::sync::Arc::new(SqlSessionStore::new(app.state.db.clone())),
        None,
    );
    let now = chrono::Utc::now().timestamp_millis();
    session
        .insert(
            AUTH_KEY,
            SessionAuth {
                user_id,
                epoch,
                signed_in_at_ms: now,
                last_seen_at_ms: now,
                second_factor_pending: false,
                stepped_up_at_ms: Some(now),
                single_sign_on: false,
                provider_mfa: false,
            },
        )
        .await
        .unwrap();
    let (content_type, body) = if spec.json {
        ("application/json", json_of(args).to_string())
    } else {
        (
            "application/x-www-form-urlencoded",
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(args)
                .finish(),
        )
    };
    let mut request = axum::http::Request::post(format!("/api/{}", spec.endpoint))
        .header("content-type", content_type)
        .header("accept", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    request.extensions_mut().insert(session);
    let state = app.state.clone();
    let response = axum::response::IntoResponse::into_response(
        leptos_axum::handle_server_fns_with_context(
            move || leptos::prelude::provide_context(state.clone()),
            request,
        )
        .await,
    );
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

both_backends!(
    removing_a_role_from_the_table_refuses_it_over_http_and_in_process,
    |backend| async move {
        let (table, removed) = table_without_first_roles();
        assert!(removed.len() >= 15, "{removed:?}");
        let app = TestApp::start_with_access(backend, table.clone()).await;
        let signed_in = staff(&app).await;
        let fill = no_fill();
        let mut ids: HashMap<Role, i64> = HashMap::new();
        for (role, email) in [
            (Role::Admin, ADMIN),
            (Role::Operator, OPERATOR),
            (Role::Auditor, AUDITOR),
        ] {
            let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                .bind(email)
                .fetch_one(&app.state.db.pool)
                .await
                .unwrap();
            ids.insert(role, id);
        }

        for (endpoint, role) in &removed {
            let spec = spec_of(endpoint);
            let probe = fill.args(spec.probe);
            let client = match role {
                Role::Admin => &signed_in.admin,
                Role::Operator => &signed_in.operator,
                Role::Auditor => &signed_in.auditor,
            };
            // Over HTTP: the router's door refuses the role the table no longer lists.
            let (status, body) = invoke(&app, client, spec, &probe).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{endpoint} as {role} over HTTP: {body}"
            );
            assert!(
                is_guard_refusal(&app_error(&body, endpoint)),
                "{endpoint}: {body}"
            );
            // In-process: the function's own pass through the gate refuses it too.
            let (status, body) = invoke_in_process(&app, ids[role], spec, &probe).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{endpoint} as {role} in-process: {body}"
            );
            assert!(
                is_guard_refusal(&app_error(&body, endpoint)),
                "{endpoint}: {body}"
            );
            // A role the table still lists passes both ways.
            let Some(rest) = table.server_fn(endpoint).and_then(Access::roles) else {
                unreachable!()
            };
            if let Some(kept) = rest.first() {
                let (status, body) = invoke_in_process(&app, ids[kept], spec, &probe).await;
                let refused = !status.is_success() && is_guard_refusal(&app_error(&body, endpoint));
                assert!(!refused, "{endpoint} as {kept} in-process: {status} {body}");
            }
        }
        // And the standard table, in-process, refuses exactly what it leaves out.
        let standard = TestApp::start(backend).await;
        let _ = staff(&standard).await;
        for (endpoint, access) in SERVER_FN_ACCESS {
            let Some(roles) = access.roles() else {
                continue;
            };
            let spec = spec_of(endpoint);
            for role in Role::ALL {
                let id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE role = $1 AND must_change_password = 0 ORDER BY id LIMIT 1")
                    .bind(role.as_str())
                    .fetch_one(&standard.state.db.pool)
                    .await
                    .unwrap();
                let (status, body) =
                    invoke_in_process(&standard, id, spec, &fill.args(spec.probe)).await;
                let refused = status == StatusCode::FORBIDDEN
                    && is_guard_refusal(&app_error(&body, endpoint));
                assert_eq!(
                    refused,
                    !roles.contains(&role),
                    "{endpoint} as {role} in-process: {status} {body}"
                );
            }
        }
    }
);

both_backends!(
    a_foreign_origin_flood_adds_a_few_audit_rows,
    |backend| async move {
        let app = common::sandbox_app(backend, &[]).await;
        app.user("olga@example.com", Role::Operator).await;
        let operator = app.signed_in("olga@example.com").await;
        let before = access_denied_rows(&app).await.len();
        const POSTS: usize = 10_000;
        let sent = std::sync::Arc::new(AtomicU64::new(0));
        // 16 senders from one address, the first post with a 5,000-character path.
        let flood = (0..16).map(|sender| {
            let base = app.base.clone();
            let sent = sent.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut refused = 0;
                loop {
                    let n = sent.fetch_add(1, Ordering::SeqCst) as usize;
                    if n >= POSTS {
                        return refused;
                    }
                    let path = if n == 0 {
                        format!("/api/{}", "x".repeat(5000))
                    } else {
                        format!("/api/logout?n={n}&s={sender}")
                    };
                    let response = client
                        .post(format!("{base}{path}"))
                        .header("origin", "https://evil.example")
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::FORBIDDEN);
                    refused += 1;
                }
            })
        });
        let flood: Vec<_> = flood.collect();
        // Link creation goes on during the flood.
        let (status, body) = app
            .call(
                &operator,
                "create_link",
                &common::forms::link_form(
                    "eko:uat:digilocker",
                    "Asha Rao",
                    None,
                    &common::forms::form_key(),
                )
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["summary"]["status"], "started", "{body}");
        let mut refused = 0;
        for sender in flood {
            refused += sender.await.unwrap();
        }
        assert_eq!(refused, POSTS);

        app.state.audit_noise.flush().await;
        let rows = access_denied_rows(&app).await;
        let added = &rows[before..];
        assert!(
            added.len() <= 24,
            "{} rows for {POSTS} refusals",
            added.len()
        );
        assert_eq!(
            crate::audit::events_counted(added),
            POSTS as u64,
            "every refusal is counted"
        );
        for row in added {
            assert!(
                row.detail.len() < 400,
                "stored detail: {} bytes",
                row.detail.len()
            );
        }
        let report = app.state.audit.verify(&app.state.db).await.unwrap();
        assert!(report.broken.is_none(), "{}", report.summary());
    }
);

both_backends!(
    an_origin_matching_only_the_host_header_is_foreign,
    |backend| async move {
        let app = TestApp::start(backend).await;
        app.user("root@example.com", Role::Admin).await;
        let admin = app.signed_in("root@example.com").await;
        // A request whose Host its sender chose (a DNS-rebound name, a proxy passing Host on)
        // is not the console's origin.
        for (origin, host) in [
            ("http://evil.example", "evil.example"),
            ("http://evil.example:8080", "evil.example:8080"),
        ] {
            let response = admin
                .post(format!("{}/api/logout", app.base))
                .header("origin", origin)
                .header("host", host)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{origin}");
        }
        // The configured origin passes, spelled with the default port or not.
        let response = admin
            .post(format!("{}/api/whoami", app.base))
            .header("origin", &app.base)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!app.whoami(&admin).await.is_null(), "still signed in");
    }
);
