//! The sandbox's fixed development credentials, and seeding them into the vault so a new user
//! can generate a link within a minute of starting, with no account anywhere.

use super::{Sandbox, SandboxConfig};
use crate::credential_kinds::{CredentialInput, CredentialKind};
use crate::server::audit::{Actor, RequestMeta};
use crate::server::credentials;
use crate::server::state::AppState;
use crate::types::AppError;

/// API key the sandbox's Message Central accepts. Not a secret: it opens nothing real.
pub const MC_API_KEY: &str = "sandbox-message-central-api-key";
/// Company name the sandbox's Message Central expects.
pub const MC_COMPANY: &str = "KYC Desk Sandbox";
/// Basic flow id of the sandbox.
pub const MC_BASIC_FLOW: &str = "SANDBOX-BASIC";
/// Premium flow id of the sandbox.
pub const MC_PREMIUM_FLOW: &str = "SANDBOX-PREMIUM";
/// Eko's publicly documented UAT developer key (not a secret of ours).
pub const EKO_DEVELOPER_KEY: &str = "becbbce45f79c6f5109f848acd540567";
/// Eko's publicly documented UAT access key (not a secret of ours).
pub const EKO_ACCESS_KEY: &str = "d2fe1d99-6298-4af2-8cc5-d97dcf46df30";
/// Eko's documented UAT initiator id.
pub const EKO_INITIATOR_ID: &str = "9962981729";
/// Eko's documented UAT user code.
pub const EKO_USER_CODE: &str = "20810200";
/// Customer id of the sandbox SMS API.
pub const SMS_CUSTOMER_ID: &str = "C-SANDBOX";
/// Password of the sandbox SMS API.
pub const SMS_PASSWORD: &str = "sandbox-sms-password";

/// The sandbox for this server, accepting the fixed development credentials.
pub fn sandbox_for(public_base: &str) -> Sandbox {
    Sandbox::new(SandboxConfig {
        mc_api_key: MC_API_KEY.into(),
        mc_company_name: MC_COMPANY.into(),
        mc_flow_ids: vec![MC_BASIC_FLOW.into(), MC_PREMIUM_FLOW.into()],
        eko_developer_key: EKO_DEVELOPER_KEY.into(),
        eko_access_key: EKO_ACCESS_KEY.into(),
        sms_customer_id: SMS_CUSTOMER_ID.into(),
        sms_password: SMS_PASSWORD.into(),
        public_base: public_base.trim_end_matches('/').into(),
    })
}

fn input(
    kind: CredentialKind,
    environment: &str,
    settings: &[(&str, String)],
    secrets: &[(&str, &str)],
) -> CredentialInput {
    CredentialInput {
        kind: kind.as_str().into(),
        environment: environment.into(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Saves sandbox credentials for every kind and environment that has none yet (Message
/// Central trial, Eko UAT, SMS staging). Existing credentials are never touched. Returns how
/// many were created.
pub async fn seed(state: &AppState) -> Result<usize, AppError> {
    let base = state
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let sets = [
        input(
            CredentialKind::MessageCentralEkyc,
            "trial",
            &[
                ("base_url", format!("{base}/sandbox/message-central")),
                ("company_name", MC_COMPANY.into()),
                ("basic_flow_id", MC_BASIC_FLOW.into()),
                ("premium_flow_id", MC_PREMIUM_FLOW.into()),
                ("body_encoding", "json".into()),
            ],
            &[("api_key", MC_API_KEY)],
        ),
        input(
            CredentialKind::EkoDigilocker,
            "uat",
            &[
                ("base_url", format!("{base}/sandbox/eko")),
                ("initiator_id", EKO_INITIATOR_ID.into()),
                ("user_code", EKO_USER_CODE.into()),
                ("documents", "AADHAAR,PAN,DRIVING_LICENSE".into()),
            ],
            &[
                ("developer_key", EKO_DEVELOPER_KEY),
                ("access_key", EKO_ACCESS_KEY),
            ],
        ),
        input(
            CredentialKind::MessageCentralSms,
            "staging",
            &[
                ("base_url", format!("{base}/sandbox/message-central")),
                ("customer_id", SMS_CUSTOMER_ID.into()),
                ("sender_id", "KYCDSK".into()),
                (
                    "template",
                    "Dear {name}, complete your KYC for {company}: {link} (valid until {expires})"
                        .into(),
                ),
                ("channels", "sms,whatsapp".into()),
            ],
            &[("password", SMS_PASSWORD)],
        ),
    ];
    let mut created = 0;
    let existing = credentials::list(state).await?;
    for set in sets {
        let present = existing
            .iter()
            .any(|view| view.kind.as_str() == set.kind && view.environment == set.environment);
        if present {
            continue;
        }
        credentials::save(
            state,
            &RequestMeta::cli(),
            Actor::System,
            crate::server::destination::SANDBOX_SEED,
            &set,
            false,
        )
        .await?;
        created += 1;
    }
    Ok(created)
}
