//! `kyc-desk rotate-audit-key`: a new audit key epoch with a fresh random key, so rows from
//! now on are signed with a key no earlier backup or master key ever held.

use kyc_desk::server::audit::RequestMeta;
use kyc_desk::server::state::AppState;
use std::process::ExitCode;

/// Starts the new epoch (recorded in its first row); 1 when that failed (nothing changed).
pub async fn run(state: &AppState) -> ExitCode {
    match state.audit.rotate_key(&state.db, &RequestMeta::cli()).await {
        Ok(epoch) => {
            out!(
                "Started audit key epoch {epoch}: new rows are signed with a fresh key; older \
                 epochs stay sealed under the master key, so earlier rows keep verifying. \
                 Running instances pick the new epoch up at their next row."
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kyc-desk: audit key rotation failed, nothing was changed: {error}");
            ExitCode::from(1)
        }
    }
}
