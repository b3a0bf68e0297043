//! `kyc-desk serve`: the first-run work, then the web console until shutdown.

use kyc_desk::server::startup;
use kyc_desk::server::state::AppState;
use kyc_desk::server::web;
use std::process::ExitCode;

/// Serves until a shutdown signal; 1 when the first-run work or the server fails.
pub async fn run(state: AppState) -> ExitCode {
    if let Err(error) = startup::first_run(&state).await {
        eprintln!("kyc-desk: {error}");
        return ExitCode::from(1);
    }
    if let Err(error) = web::serve(state).await {
        eprintln!("kyc-desk: server stopped: {error}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
