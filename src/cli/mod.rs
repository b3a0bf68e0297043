//! The command line of `kyc-desk`: what it accepts, how it starts, and how a command reports.
//! One module per command.

use clap::{Parser, Subcommand};
use kyc_desk::server::config::{Config, LogFormat};
use kyc_desk::server::startup;
use kyc_desk::server::state::AppState;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Prints a line on standard output. A reader that went away (`kyc-desk … | head`) ends the
/// program quietly instead of with a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = writeln!(std::io::stdout(), $($arg)*) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("kyc-desk: cannot write to standard output: {error}");
            std::process::exit(1);
        }
    }};
}

pub mod create_user;
pub mod credentials;
pub mod pack_bundle;
pub mod rotate_audit_key;
pub mod rotate_master_key;
pub mod serve;
pub mod verify_audit;

/// KYC Desk: issue identity-verification links and follow each verification to its end.
///
/// Configuration comes from environment variables (and `.env`); see `.env.example`.
#[derive(Parser)]
#[command(name = "kyc-desk", version, about, long_about = None)]
pub struct Cli {
    /// The command; `serve` when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the web console (the default when no command is given).
    Serve,
    /// Create a staff account. The password is read from standard input (one line) or, on a
    /// terminal, from a prompt; never from an argument.
    CreateUser(create_user::Args),
    /// Provider credentials: import from a secret manager, list (masked).
    Credentials {
        /// What to do with them.
        #[command(subcommand)]
        action: CredentialsAction,
    },
    /// Re-encrypt every stored secret under a new master key, in one transaction. The new key
    /// is read from the file (created with a fresh random key, mode 0600, if it does not exist).
    /// Afterwards restart KYC Desk with the new key.
    RotateMasterKey(rotate_master_key::Args),
    /// Start a new audit key epoch: rows from now on are signed with a fresh random key (older
    /// epochs stay sealed under the master key, so earlier rows keep verifying).
    RotateAuditKey,
    /// Check the audit log's MAC chain and that it reaches the newest checkpoint of the anchor
    /// file; prints "N rows verified" or the first break and why ("rows after seq N are
    /// missing" when the newest rows were deleted), and exits 1 when the chain is broken.
    VerifyAudit(verify_audit::Args),
    /// Merge the split browser bundle's small parts into a few files (after `cargo leptos
    /// build --release --split`, before serving): fewer requests on a first visit. Needs no
    /// database or key.
    PackBundle(pack_bundle::Args),
}

/// The `credentials` commands.
#[derive(Subcommand)]
pub enum CredentialsAction {
    /// Read one credential set as JSON on standard input and save it, with the same
    /// validation, encryption and audit as the credentials page (see the README for the shape).
    Import,
    /// Print every active credential, secrets masked.
    List,
    /// Run the connection test of one credential, named kind/environment (for example
    /// eko_digilocker/uat); exits non-zero with the reason when it fails.
    Test(credentials::test::Args),
}

/// Reads the configuration, starts logging and opens the state every command works on; on
/// failure says why and returns the exit code (2: configuration, 1: the database or key).
pub async fn start() -> Result<AppState, ExitCode> {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kyc-desk: {error}");
            return Err(ExitCode::from(2));
        }
    };
    init_logging(config.log_format);
    startup::open(config).await.map_err(|failure| {
        eprintln!("kyc-desk: cannot start: {}", failure.error);
        if let Some(hint) = failure.hint {
            eprintln!("kyc-desk: {hint}");
        }
        ExitCode::from(1)
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,sqlx=warn,tower_sessions=warn,tower_sessions_core=warn",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Pretty => builder.init(),
    }
}

/// Says why a command was refused (each invalid field on its own line); exit code 1.
fn report(error: &kyc_desk::types::AppError) -> ExitCode {
    eprintln!("kyc-desk: {error}");
    if let kyc_desk::types::AppError::Validation { fields, .. } = error {
        for field in fields {
            eprintln!("  {}: {}", field.field, field.message);
        }
    }
    ExitCode::from(1)
}
