//! `kyc-desk credentials import`: one credential set as JSON on standard input, saved with the
//! same validation, encryption and audit as the credentials page.

use crate::cli::report;
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::credentials;
use kyc_desk::server::state::AppState;
use std::process::ExitCode;

/// Saves the set read from standard input; prints what changed (2: the input is unreadable).
pub async fn run(state: &AppState) -> ExitCode {
    let mut text = String::new();
    if let Err(error) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
        eprintln!("kyc-desk: cannot read standard input: {error}");
        return ExitCode::from(2);
    }
    let input: kyc_desk::credential_kinds::CredentialInput = match serde_json::from_str(&text) {
        Ok(input) => input,
        Err(error) => {
            eprintln!(
                "kyc-desk: the input is not a credential set in JSON ({error}); see the README for the shape"
            );
            return ExitCode::from(2);
        }
    };
    match credentials::save(state, &RequestMeta::cli(), Actor::Cli, "cli", &input, true).await {
        Ok(outcome) => {
            for notice in &outcome.notices {
                out!("note: {notice}");
            }
            out!(
                "{} {} version {}",
                outcome.change,
                outcome.view.kind.name(&outcome.view.environment),
                outcome.view.version
            );
            ExitCode::SUCCESS
        }
        Err(error) => report(&error),
    }
}
