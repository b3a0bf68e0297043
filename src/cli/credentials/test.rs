//! `kyc-desk credentials test`: the connection test of one stored credential.

use crate::cli::report;
use kyc_desk::credential_kinds::CredentialKind;
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::credentials;
use kyc_desk::server::state::AppState;
use std::process::ExitCode;

/// The credential to test.
#[derive(clap::Args)]
pub struct Args {
    /// kind/environment, as `credentials list` prints it.
    name: String,
    /// Message Central e-KYC only: agree that the test generates one real link.
    #[arg(long)]
    confirm_generation: bool,
}

/// Runs the test; 0 when it passed, 1 with the reason when it failed, 2 for a bad name.
pub async fn run(state: &AppState, args: Args) -> ExitCode {
    let Args {
        name,
        confirm_generation,
    } = args;
    let Some((kind, environment)) = name
        .split_once('/')
        .and_then(|(kind, environment)| Some((CredentialKind::parse(kind)?, environment)))
    else {
        eprintln!(
            "kyc-desk: '{name}' is not a credential name; use kind/environment as `credentials list` prints it"
        );
        return ExitCode::from(2);
    };
    let tested = credentials::test_and_record(
        state,
        &RequestMeta::cli(),
        Actor::Cli,
        kind,
        environment,
        confirm_generation,
    )
    .await;
    match tested {
        Ok((true, message)) => {
            out!("passed: {message}");
            ExitCode::SUCCESS
        }
        Ok((false, message)) => {
            eprintln!("failed: {message}");
            ExitCode::from(1)
        }
        Err(error) => report(&error),
    }
}
