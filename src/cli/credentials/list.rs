//! `kyc-desk credentials list`: every active credential, secrets masked.

use crate::cli::report;
use kyc_desk::server::credentials;
use kyc_desk::server::state::AppState;
use std::process::ExitCode;

/// Prints each credential with its settings and masked secrets.
pub async fn run(state: &AppState) -> ExitCode {
    match credentials::list(state).await {
        Ok(views) => {
            if views.is_empty() {
                out!("No credentials are stored.");
            }
            for view in views {
                out!(
                    "{}  version {}  saved by {} at {}",
                    view.kind.name(&view.environment),
                    view.version,
                    view.saved_by,
                    view.saved_at
                );
                for (name, value) in &view.settings {
                    out!("    {name}: {value}");
                }
                for secret in &view.secrets {
                    out!(
                        "    {}: •••• {}  (fingerprint {})",
                        secret.field,
                        secret.last4,
                        secret.fingerprint
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => report(&error),
    }
}
