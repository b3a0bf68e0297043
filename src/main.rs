//! The `kyc-desk` binary: the web console (`serve`, the default) and admin commands. Parses
//! the command line, opens the state the one way (see `server::startup`) and hands over to
//! the command's module in `cli/`.

mod cli;

use clap::Parser;
use cli::{Cli, Command, CredentialsAction};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A build step: it reads and writes the site folder only, so it opens no state.
    if let Some(Command::PackBundle(args)) = cli.command {
        return cli::pack_bundle::run(args);
    }
    let state = match cli::start().await {
        Ok(state) => state,
        Err(code) => return code,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => cli::serve::run(state).await,
        Command::CreateUser(args) => cli::create_user::run(&state, args).await,
        Command::Credentials { action } => match action {
            CredentialsAction::Import => cli::credentials::import::run(&state).await,
            CredentialsAction::List => cli::credentials::list::run(&state).await,
            CredentialsAction::Test(args) => cli::credentials::test::run(&state, args).await,
        },
        Command::RotateMasterKey(args) => cli::rotate_master_key::run(&state, args).await,
        Command::RotateAuditKey => cli::rotate_audit_key::run(&state).await,
        Command::VerifyAudit(args) => cli::verify_audit::run(&state, args).await,
        Command::PackBundle(_) => unreachable!("handled before the state is opened"),
    }
}
