//! `kyc-desk create-user`: a staff account, with the password from standard input or a prompt.

use super::report;
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::auth::accounts;
use kyc_desk::server::state::AppState;
use secrecy::SecretString;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

/// The account to create.
#[derive(clap::Args)]
pub struct Args {
    /// Sign-in email.
    #[arg(long)]
    email: String,
    /// operator, admin or auditor.
    #[arg(long)]
    role: String,
    /// Name shown in the console (default: the part of the email before the @).
    #[arg(long)]
    display_name: Option<String>,
    /// Make the user replace this password at first sign-in.
    #[arg(long)]
    temporary: bool,
    /// The user signs in with single sign-on only: no password is read or set.
    #[arg(long, conflicts_with = "temporary")]
    sso_only: bool,
}

/// Creates the account as the command line (audited as such); prints its id.
pub async fn run(state: &AppState, args: Args) -> ExitCode {
    let Args {
        email,
        role,
        display_name,
        temporary,
        sso_only,
    } = args;
    let password = if sso_only {
        SecretString::from(String::new())
    } else {
        match read_password() {
            Ok(password) => password,
            Err(error) => {
                eprintln!("kyc-desk: {error}");
                return ExitCode::from(2);
            }
        }
    };
    let display_name =
        display_name.unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
    let input = accounts::NewAccount {
        email,
        display_name,
        role,
        password,
        password_confirm: None,
    };
    match accounts::create_user(
        state,
        &RequestMeta::cli(),
        Actor::Cli,
        input,
        temporary,
        sso_only,
    )
    .await
    {
        Ok(user) => {
            out!(
                "Created {} ({}) with id {}.",
                user.email,
                user.role,
                user.id
            );
            ExitCode::SUCCESS
        }
        Err(error) => report(&error),
    }
}

/// On a terminal, a prompt asked twice; otherwise one line of standard input. Never an
/// argument, which other users of the machine could read.
fn read_password() -> Result<SecretString, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let second = rpassword::prompt_password("Repeat password: ").map_err(|e| e.to_string())?;
        if first != second {
            return Err("the two passwords do not match".into());
        }
        Ok(SecretString::from(first))
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            return Err("no password on standard input".into());
        }
        Ok(SecretString::from(password))
    }
}
