//! Provider credential kinds, their fields and the rules their values must follow. Shared by
//! the credentials page (hints as you type) and the server (the authority). Secret values
//! only ever travel from the browser to the server, never back.

use crate::types::FieldError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A kind of credential KYC Desk keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// Message Central e-KYC Now (redirection URL).
    MessageCentralEkyc,
    /// Eko DigiLocker.
    EkoDigilocker,
    /// Message Central SMS / WhatsApp sending.
    MessageCentralSms,
    /// SMTP server for email.
    Smtp,
    /// The company's identity provider for staff single sign-on (OpenID Connect).
    SingleSignOn,
}

/// How one field of a credential is entered and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Field name in forms, JSON and storage.
    pub name: &'static str,
    /// Label on the page.
    pub label: &'static str,
    /// Secret fields are write-only and encrypted.
    pub secret: bool,
    /// Must not be empty.
    pub required: bool,
    /// Help text.
    pub hint: &'static str,
}

const fn field(
    name: &'static str,
    label: &'static str,
    required: bool,
    hint: &'static str,
) -> FieldSpec {
    FieldSpec {
        name,
        label,
        secret: false,
        required,
        hint,
    }
}

const fn secret(name: &'static str, label: &'static str, hint: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        label,
        secret: true,
        required: true,
        hint,
    }
}

const MC_EKYC_FIELDS: &[FieldSpec] = &[
    field(
        "base_url",
        "Base URL",
        true,
        "Prefilled for the environment.",
    ),
    field(
        "company_name",
        "Company name",
        true,
        "As given when the account was created (at most 200 characters).",
    ),
    field(
        "basic_flow_id",
        "Basic flow ID",
        false,
        "Leave empty if you have no Basic flow.",
    ),
    field(
        "premium_flow_id",
        "Premium flow ID",
        false,
        "Leave empty if you have no Premium flow.",
    ),
    field(
        "body_encoding",
        "Body encoding",
        true,
        "json (default) or form.",
    ),
    secret(
        "api_key",
        "API key",
        "Paste the key without the 'Bearer ' prefix.",
    ),
];

const EKO_FIELDS: &[FieldSpec] = &[
    field(
        "base_url",
        "Base URL",
        true,
        "Prefilled for the environment.",
    ),
    field(
        "initiator_id",
        "Initiator ID",
        true,
        "The registered mobile number of the API user.",
    ),
    field("user_code", "User code", true, "The retailer/agent code."),
    field(
        "documents",
        "Documents that may be requested",
        true,
        "Comma-separated, e.g. AADHAAR, PAN, DRIVING_LICENSE.",
    ),
    secret(
        "developer_key",
        "Developer key",
        "From Eko's developer console.",
    ),
    secret(
        "access_key",
        "Access key",
        "Used only to sign requests; never sent as is.",
    ),
];

const MC_SMS_FIELDS: &[FieldSpec] = &[
    field(
        "base_url",
        "Base URL",
        true,
        "Prefilled for the environment.",
    ),
    field("customer_id", "Customer ID", true, ""),
    field("sender_id", "Sender ID", true, "DLT-registered sender ID."),
    field(
        "template",
        "Message template",
        true,
        "Must match your DLT template. Placeholders: {name}, {link}, {expires}, {company}.",
    ),
    field(
        "channels",
        "Channels allowed",
        true,
        "sms, whatsapp or both (comma-separated).",
    ),
    secret("password", "Password", "Message Central account password."),
];

const SMTP_FIELDS: &[FieldSpec] = &[
    field("host", "SMTP host", true, ""),
    field("port", "Port", true, "Usually 587 (STARTTLS) or 465 (TLS)."),
    field("tls", "TLS mode", true, "none, starttls or tls."),
    field(
        "username",
        "Username",
        false,
        "Leave empty if the server needs no sign-in.",
    ),
    field(
        "from",
        "From address",
        true,
        "e.g. KYC Desk <kyc@example.com>",
    ),
    field("reply_to", "Reply-to address", false, ""),
    secret(
        "password",
        "Password",
        "Leave the username empty if there is none.",
    ),
];

const SSO_FIELDS: &[FieldSpec] = &[
    field(
        "issuer",
        "Issuer URL",
        true,
        "The identity provider's issuer, e.g. https://login.example.com/realms/staff; KYC Desk reads /.well-known/openid-configuration under it.",
    ),
    field(
        "client_id",
        "Client ID",
        true,
        "The client registered for KYC Desk; its redirect URI is {public URL}/login/sso/callback.",
    ),
    secret(
        "client_secret",
        "Client secret",
        "Given by the identity provider for that client.",
    ),
    field(
        "email_claim",
        "Email claim",
        false,
        "The ID-token claim holding the staff member's email (default: email, which must come with email_verified).",
    ),
    field(
        "mfa_amr",
        "Second factor at the identity provider",
        false,
        "amr values that count as KYC Desk's second factor, comma-separated (e.g. mfa, otp, hwk). Empty: a sign-on never counts as one.",
    ),
    field(
        "button_label",
        "Name on the sign-in page",
        false,
        "Shown as 'Sign in with …' (default: single sign-on).",
    ),
];

impl CredentialKind {
    /// Every kind, in page order.
    pub const ALL: [CredentialKind; 5] = [
        CredentialKind::MessageCentralEkyc,
        CredentialKind::EkoDigilocker,
        CredentialKind::MessageCentralSms,
        CredentialKind::Smtp,
        CredentialKind::SingleSignOn,
    ];

    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::MessageCentralEkyc => "message_central_ekyc",
            CredentialKind::EkoDigilocker => "eko_digilocker",
            CredentialKind::MessageCentralSms => "message_central_sms",
            CredentialKind::Smtp => "smtp",
            CredentialKind::SingleSignOn => "single_sign_on",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text.trim())
    }

    /// Name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            CredentialKind::MessageCentralEkyc => "Message Central e-KYC Now",
            CredentialKind::EkoDigilocker => "Eko DigiLocker",
            CredentialKind::MessageCentralSms => "Message Central SMS / WhatsApp",
            CredentialKind::Smtp => "Email (SMTP)",
            CredentialKind::SingleSignOn => "Single sign-on (OpenID Connect)",
        }
    }

    /// Environments an admin may keep one active credential for.
    pub fn environments(self) -> &'static [&'static str] {
        match self {
            CredentialKind::MessageCentralEkyc => &["production", "trial"],
            CredentialKind::EkoDigilocker => &["uat", "production"],
            CredentialKind::MessageCentralSms => &["production", "staging"],
            CredentialKind::Smtp | CredentialKind::SingleSignOn => &["default"],
        }
    }

    /// The fields of this kind.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            CredentialKind::MessageCentralEkyc => MC_EKYC_FIELDS,
            CredentialKind::EkoDigilocker => EKO_FIELDS,
            CredentialKind::MessageCentralSms => MC_SMS_FIELDS,
            CredentialKind::Smtp => SMTP_FIELDS,
            CredentialKind::SingleSignOn => SSO_FIELDS,
        }
    }

    /// The base URL prefilled for an environment.
    pub fn default_base_url(self, environment: &str) -> &'static str {
        match (self, environment) {
            (CredentialKind::MessageCentralEkyc, "trial") => {
                "https://ekyc-staging.messagecentral.com"
            }
            (CredentialKind::MessageCentralEkyc, _) => "https://ekyc.messagecentral.com",
            (CredentialKind::EkoDigilocker, "production") => "https://api.eko.in/ekoicici/v3",
            (CredentialKind::EkoDigilocker, _) => "https://staging.eko.in/ekoapi/v3",
            (CredentialKind::MessageCentralSms, "staging") => {
                "https://cpaas-staging.messagecentral.com"
            }
            (CredentialKind::MessageCentralSms, _) => "https://cpaas.messagecentral.com",
            (CredentialKind::Smtp | CredentialKind::SingleSignOn, _) => "",
        }
    }

    /// The name a credential is addressed by on the command line, e.g. `eko_digilocker/uat`.
    pub fn name(self, environment: &str) -> String {
        format!("{}/{}", self.as_str(), environment)
    }
}

/// Documents Eko DigiLocker can be asked for.
pub const EKO_DOCUMENTS: &[&str] = &["AADHAAR", "PAN", "DRIVING_LICENSE", "VOTER_ID", "PASSPORT"];

/// One credential set as submitted (page form or `credentials import` JSON). Its `Debug` names
/// the secret fields given, never their values.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialInput {
    /// Kind (stored spelling).
    pub kind: String,
    /// Environment.
    pub environment: String,
    /// Non-secret fields.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Secret fields; empty when only settings change.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// A checked credential: normalised values, plus notices about what was changed. Its `Debug`
/// names the secret fields, never their values.
#[derive(Clone, PartialEq)]
pub struct CheckedCredential {
    /// Kind.
    pub kind: CredentialKind,
    /// Environment.
    pub environment: String,
    /// Normalised non-secret fields (only the kind's own fields).
    pub settings: BTreeMap<String, String>,
    /// Normalised secrets (only the kind's own secret fields).
    pub secrets: BTreeMap<String, String>,
    /// Corrections made on the operator's behalf (e.g. a stripped `Bearer ` prefix).
    pub notices: Vec<String>,
}

/// Secret values as `Debug` shows them: the field names only.
fn secret_names(secrets: &BTreeMap<String, String>) -> Vec<&str> {
    secrets.keys().map(String::as_str).collect()
}

impl std::fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialInput")
            .field("kind", &self.kind)
            .field("environment", &self.environment)
            .field("settings", &self.settings)
            .field("secrets (values hidden)", &secret_names(&self.secrets))
            .finish()
    }
}

impl std::fmt::Debug for CheckedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedCredential")
            .field("kind", &self.kind)
            .field("environment", &self.environment)
            .field("settings", &self.settings)
            .field("secrets (values hidden)", &secret_names(&self.secrets))
            .field("notices", &self.notices)
            .finish()
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.starts_with("127.") || host == "::1"
}

/// What is wrong with a base URL, if anything: https, or http only for loopback.
pub fn base_url_problem(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        host_port
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default().to_string()
    };
    if host.is_empty() || rest.contains(char::is_whitespace) {
        return Some("This is not a URL (expected https://host/path).".into());
    }
    match scheme {
        "https" => None,
        "http" if is_loopback_host(&host) => None,
        "http" => Some(
            "Use https:// (plain http is allowed only for this machine, e.g. the sandbox).".into(),
        ),
        _ => Some("Use an https:// URL.".into()),
    }
}

fn is_plain_email(text: &str) -> bool {
    let address = match (text.find('<'), text.rfind('>')) {
        (Some(start), Some(end)) if start < end => &text[start + 1..end],
        _ => text,
    };
    crate::validation::normalize_email(address).is_ok()
}

/// Checks a submission. `require_secrets` is true when creating or rotating; when only
/// settings change, secrets may be absent. Returns every problem, field by field.
pub fn check_credential(
    input: &CredentialInput,
    require_secrets: bool,
) -> Result<CheckedCredential, Vec<FieldError>> {
    let mut errors: Vec<FieldError> = Vec::new();
    fn push(errors: &mut Vec<FieldError>, field: &str, message: String) {
        errors.push(FieldError {
            field: field.into(),
            message,
        });
    }
    let Some(kind) = CredentialKind::parse(&input.kind) else {
        push(
            &mut errors,
            "kind",
            "Choose one of the credential kinds.".into(),
        );
        return Err(errors);
    };
    let environment = input.environment.trim().to_lowercase();
    if !kind.environments().contains(&environment.as_str()) {
        push(
            &mut errors,
            "environment",
            format!("Choose one of: {}.", kind.environments().join(", ")),
        );
    }
    let mut settings = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut notices = Vec::new();
    for spec in kind.fields() {
        let raw = if spec.secret {
            input.secrets.get(spec.name)
        } else {
            input.settings.get(spec.name)
        };
        let mut value = raw.map(|v| v.trim().to_string()).unwrap_or_default();
        if spec.secret {
            if spec.name == "api_key" {
                let lowered = value.to_lowercase();
                if lowered.starts_with("bearer ") {
                    value = value[7..].trim().to_string();
                    notices.push("The API key was pasted with its 'Bearer ' prefix; KYC Desk removed it and adds it itself when calling Message Central.".into());
                }
            }
            if value.is_empty() {
                if require_secrets
                    && !(kind == CredentialKind::Smtp
                        && spec.name == "password"
                        && settings
                            .get("username")
                            .is_none_or(|u: &String| u.is_empty()))
                {
                    push(
                        &mut errors,
                        spec.name,
                        format!("Enter the {}.", spec.label.to_lowercase()),
                    );
                }
                continue;
            }
            if value.chars().any(char::is_control) || value.chars().count() > 512 {
                push(&mut errors, spec.name, "This value has line breaks or is longer than 512 characters; paste the key alone.".into());
                continue;
            }
            secrets.insert(spec.name.to_string(), value);
            continue;
        }
        if value.is_empty() && spec.name == "base_url" {
            value = kind.default_base_url(&environment).to_string();
        }
        if value.is_empty() && spec.name == "body_encoding" {
            value = "json".into();
        }
        if value.is_empty() {
            if spec.required {
                push(
                    &mut errors,
                    spec.name,
                    format!("Enter the {}.", spec.label.to_lowercase()),
                );
            }
            continue;
        }
        if value.chars().any(char::is_control) && spec.name != "template" {
            push(
                &mut errors,
                spec.name,
                "This field cannot contain line breaks or control characters.".into(),
            );
            continue;
        }
        if value.chars().count() > 1000 {
            push(
                &mut errors,
                spec.name,
                "This value is longer than 1000 characters.".into(),
            );
            continue;
        }
        let problem = match spec.name {
            "base_url" => {
                let trimmed = value.trim_end_matches('/').to_string();
                value = trimmed;
                base_url_problem(&value)
            }
            "company_name" if value.chars().count() > 200 => {
                Some(format!("At most 200 characters ({} given).", value.chars().count()))
            }
            "basic_flow_id" | "premium_flow_id" if value.contains(char::is_whitespace) => {
                Some("A flow ID has no spaces; copy it again from the Message Central console.".into())
            }
            "body_encoding" if value != "json" && value != "form" => Some("Choose json or form.".into()),
            "initiator_id" if !value.chars().all(|c| c.is_ascii_digit()) || value.len() != 10 => {
                Some("The initiator ID is the 10-digit registered mobile number.".into())
            }
            "user_code" if value.contains(char::is_whitespace) => Some("A user code has no spaces.".into()),
            "documents" => {
                let documents: Vec<String> = value
                    .split(',')
                    .map(|d| d.trim().to_uppercase())
                    .filter(|d| !d.is_empty())
                    .collect();
                let unknown: Vec<&String> = documents.iter().filter(|d| !EKO_DOCUMENTS.contains(&d.as_str())).collect();
                if documents.is_empty() {
                    Some("Name at least one document (AADHAAR).".into())
                } else if !unknown.is_empty() {
                    Some(format!(
                        "Unknown document {}; choose from {}.",
                        unknown.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "),
                        EKO_DOCUMENTS.join(", ")
                    ))
                } else {
                    value = documents.join(",");
                    None
                }
            }
            "template" if !value.contains("{link}") => Some("The template must contain {link}, or the customer never gets the link.".into()),
            "channels" => {
                let channels: Vec<String> = value.split(',').map(|c| c.trim().to_lowercase()).filter(|c| !c.is_empty()).collect();
                if channels.is_empty() || channels.iter().any(|c| c != "sms" && c != "whatsapp") {
                    Some("Choose sms, whatsapp, or both.".into())
                } else {
                    value = channels.join(",");
                    None
                }
            }
            "issuer" => {
                let trimmed = value.trim_end_matches('/').to_string();
                value = trimmed;
                base_url_problem(&value)
            }
            "client_id" | "email_claim" if value.contains(char::is_whitespace) => {
                Some("This value has no spaces; copy it again from the identity provider.".into())
            }
            "mfa_amr" => {
                let values: Vec<String> = value.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
                if values.iter().any(|v| v.contains(char::is_whitespace) || v.len() > 40) {
                    Some("Give amr values separated by commas, e.g. mfa, otp, hwk.".into())
                } else {
                    value = values.join(",");
                    None
                }
            }
            "button_label" if value.chars().count() > 60 => {
                Some(format!("At most 60 characters ({} given).", value.chars().count()))
            }
            "port" => match value.parse::<u16>() {
                Ok(port) if port > 0 => None,
                _ => Some("A port is a number from 1 to 65535.".into()),
            },
            "tls" if !matches!(value.as_str(), "none" | "starttls" | "tls") => Some("Choose none, starttls or tls.".into()),
            "from" | "reply_to" if !is_plain_email(&value) => Some("This is not an email address (expected name@example.com or Name <name@example.com>).".into()),
            "host" if value.contains(char::is_whitespace) || value.contains('/') => Some("Enter a host name like smtp.example.com, without a scheme or path.".into()),
            _ => None,
        };
        if let Some(problem) = problem {
            push(&mut errors, spec.name, problem);
            continue;
        }
        settings.insert(spec.name.to_string(), value);
    }
    if kind == CredentialKind::MessageCentralEkyc
        && !settings.contains_key("basic_flow_id")
        && !settings.contains_key("premium_flow_id")
        && !errors.iter().any(|e| e.field.ends_with("flow_id"))
    {
        push(
            &mut errors,
            "basic_flow_id",
            "Enter at least one flow ID (Basic or Premium).".into(),
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CheckedCredential {
        kind,
        environment,
        settings,
        secrets,
        notices,
    })
}

/// The masked view of one secret field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskedSecret {
    /// Field name.
    pub field: String,
    /// Last four characters (empty for short secrets).
    pub last4: String,
    /// Short key-dependent fingerprint.
    pub fingerprint: String,
}

/// The view of one active credential: never a secret value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialView {
    /// Database id of the active version.
    pub id: i64,
    /// Kind.
    pub kind: CredentialKind,
    /// Environment.
    pub environment: String,
    /// Version number (1 for the first save; each rotation adds one).
    pub version: i64,
    /// Non-secret settings.
    pub settings: BTreeMap<String, String>,
    /// Masked secrets.
    pub secrets: Vec<MaskedSecret>,
    /// Who saved this version.
    pub saved_by: String,
    /// When, formatted in UTC.
    pub saved_at: String,
    /// Trial links used (Message Central trial only).
    pub trial_links_used: i64,
    /// Result of the last connection test, if any.
    pub last_test: Option<String>,
    /// Why this credential is not used now (a sandbox credential with the sandbox off, or a
    /// destination the rules refuse); `None` when it is in use.
    #[serde(default)]
    pub switched_off: Option<String>,
}

/// Trial links Message Central grants per account.
pub const TRIAL_LINKS: i64 = 5;

/// What staff are told once a trial account's links are all used.
pub fn trial_links_used_up() -> String {
    format!("All {TRIAL_LINKS} trial links of this Message Central account are used.")
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_shows_no_secret_value() {
        let mut input = CredentialInput {
            kind: "smtp".into(),
            environment: "default".into(),
            ..Default::default()
        };
        input
            .secrets
            .insert("password".into(), "debug-canary-pass".into());
        let checked = CheckedCredential {
            kind: CredentialKind::Smtp,
            environment: "default".into(),
            settings: BTreeMap::new(),
            secrets: input.secrets.clone(),
            notices: Vec::new(),
        };
        for shown in [format!("{input:?}"), format!("{checked:?}")] {
            assert!(!shown.contains("debug-canary-pass"), "{shown}");
            assert!(shown.contains("password"), "{shown}");
        }
    }

    use super::*;

    fn input(
        kind: &str,
        environment: &str,
        settings: &[(&str, &str)],
        secrets: &[(&str, &str)],
    ) -> CredentialInput {
        CredentialInput {
            kind: kind.into(),
            environment: environment.into(),
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn fields_of(result: Result<CheckedCredential, Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn message_central_rules() {
        let ok = check_credential(
            &input(
                "message_central_ekyc",
                "trial",
                &[("company_name", "Acme Bank"), ("basic_flow_id", "FLOW1")],
                &[("api_key", "Bearer abc123def456")],
            ),
            true,
        )
        .unwrap();
        assert_eq!(ok.secrets["api_key"], "abc123def456");
        assert_eq!(ok.notices.len(), 1, "the stripped prefix is reported");
        assert_eq!(
            ok.settings["base_url"],
            "https://ekyc-staging.messagecentral.com"
        );
        assert_eq!(ok.settings["body_encoding"], "json");

        let long = "x".repeat(201);
        let errors = fields_of(check_credential(
            &input(
                "message_central_ekyc",
                "production",
                &[
                    ("company_name", &long),
                    ("basic_flow_id", "has space"),
                    ("base_url", "http://ekyc.example.com"),
                ],
                &[],
            ),
            true,
        ));
        for field in ["company_name", "basic_flow_id", "base_url", "api_key"] {
            assert!(errors.contains(&field.to_string()), "{field} in {errors:?}");
        }
        assert!(
            check_credential(
                &input(
                    "message_central_ekyc",
                    "production",
                    &[
                        ("company_name", "A"),
                        ("basic_flow_id", "F"),
                        ("base_url", "http://127.0.0.1:3000/sandbox/message-central")
                    ],
                    &[("api_key", "k")]
                ),
                true
            )
            .is_ok(),
            "loopback http is allowed"
        );
        assert_eq!(
            fields_of(check_credential(
                &input(
                    "message_central_ekyc",
                    "production",
                    &[("company_name", "A")],
                    &[("api_key", "k")]
                ),
                true
            )),
            vec!["basic_flow_id"]
        );
    }

    #[test]
    fn eko_sms_and_smtp_rules() {
        let errors = fields_of(check_credential(
            &input(
                "eko_digilocker",
                "uat",
                &[
                    ("initiator_id", "99629"),
                    ("user_code", "2081 0200"),
                    ("documents", "AADHAAR, MAGIC"),
                ],
                &[("developer_key", "d")],
            ),
            true,
        ));
        assert_eq!(
            errors,
            vec!["initiator_id", "user_code", "documents", "access_key"]
        );
        let ok = check_credential(
            &input(
                "eko_digilocker",
                "uat",
                &[
                    ("initiator_id", "9962981729"),
                    ("user_code", "20810200"),
                    ("documents", "aadhaar, pan"),
                ],
                &[],
            ),
            false,
        )
        .unwrap();
        assert_eq!(ok.settings["documents"], "AADHAAR,PAN");
        assert!(ok.secrets.is_empty(), "settings-only edits need no secrets");

        let errors = fields_of(check_credential(
            &input(
                "message_central_sms",
                "production",
                &[
                    ("customer_id", "C-1"),
                    ("sender_id", "KYCDSK"),
                    ("template", "Hello {name}"),
                    ("channels", "sms, fax"),
                ],
                &[("password", "p")],
            ),
            true,
        ));
        assert_eq!(errors, vec!["template", "channels"]);

        let errors = fields_of(check_credential(
            &input(
                "smtp",
                "default",
                &[
                    ("host", "smtp://x"),
                    ("port", "70000"),
                    ("tls", "ssl"),
                    ("from", "nobody"),
                ],
                &[],
            ),
            true,
        ));
        assert_eq!(errors, vec!["host", "port", "tls", "from"]);
        assert!(
            check_credential(
                &input(
                    "smtp",
                    "default",
                    &[
                        ("host", "127.0.0.1"),
                        ("port", "2525"),
                        ("tls", "none"),
                        ("from", "KYC Desk <kyc@example.com>")
                    ],
                    &[]
                ),
                true
            )
            .is_ok(),
            "no username, no password needed"
        );
        assert_eq!(
            fields_of(check_credential(&input("nope", "x", &[], &[]), true)),
            vec!["kind"]
        );
        assert_eq!(
            fields_of(check_credential(
                &input(
                    "smtp",
                    "mars",
                    &[
                        ("host", "h"),
                        ("port", "25"),
                        ("tls", "none"),
                        ("from", "a@example.com")
                    ],
                    &[]
                ),
                true
            )),
            vec!["environment"]
        );
    }

    #[test]
    fn single_sign_on_rules() {
        let errors = fields_of(check_credential(
            &input(
                "single_sign_on",
                "default",
                &[
                    ("issuer", "http://login.example.com"),
                    ("client_id", "kyc desk"),
                    ("mfa_amr", "mfa, two words"),
                ],
                &[],
            ),
            true,
        ));
        assert_eq!(
            errors,
            vec!["issuer", "client_id", "client_secret", "mfa_amr"]
        );
        let ok = check_credential(
            &input(
                "single_sign_on",
                "default",
                &[
                    ("issuer", "https://login.example.com/realms/staff/"),
                    ("client_id", "kyc-desk"),
                    ("mfa_amr", " mfa,hwk , "),
                ],
                &[("client_secret", "s3cret")],
            ),
            true,
        )
        .expect("valid");
        assert_eq!(
            ok.settings["issuer"],
            "https://login.example.com/realms/staff"
        );
        assert_eq!(ok.settings["mfa_amr"], "mfa,hwk");
        assert!(
            !ok.settings.contains_key("email_claim"),
            "an empty optional stays unset"
        );
    }
}
