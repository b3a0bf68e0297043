//! The `kyc-desk` binary: the web console (`serve`, the default) and admin commands.

use clap::{Parser, Subcommand};
use kyc_desk::server::audit::{Actor, RequestMeta};
use kyc_desk::server::auth::accounts;
use kyc_desk::server::config::{Config, LogFormat};
use kyc_desk::server::credentials;
use kyc_desk::server::state::AppState;
use kyc_desk::server::web;
use secrecy::SecretString;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

/// KYC Desk: issue identity-verification links and follow each verification to its end.
///
/// Configuration comes from environment variables (and `.env`); see `.env.example`.
#[derive(Parser)]
#[command(name = "kyc-desk", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web console (the default when no command is given).
    Serve,
    /// Create a staff account. The password is read from standard input (one line) or, on a
    /// terminal, from a prompt; never from an argument.
    CreateUser {
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
    },
    /// Provider credentials: import from a secret manager, list (masked).
    Credentials {
        #[command(subcommand)]
        action: CredentialsAction,
    },
    /// Re-encrypt every stored secret under a new master key, in one transaction. The new key
    /// is read from the file (created with a fresh random key, mode 0600, if it does not exist).
    /// Afterwards restart KYC Desk with the new key.
    RotateMasterKey {
        /// File with the new key (base64 of 32 bytes).
        #[arg(long)]
        new_key_file: std::path::PathBuf,
    },
    /// Check the audit log's MAC chain; prints "N rows verified" or the first broken seq and
    /// why, and exits 1 when the chain is broken.
    VerifyAudit {
        /// Start at an archive checkpoint: the first seq still in the database after older
        /// rows were archived, as SEQ:MAC where MAC is the last line's MAC of the archive.
        #[arg(long)]
        from_checkpoint: Option<String>,
    },
}

#[derive(Subcommand)]
enum CredentialsAction {
    /// Read one credential set as JSON on standard input and save it, with the same
    /// validation, encryption and audit as the credentials page (see the README for the shape).
    Import,
    /// Print every active credential, secrets masked.
    List,
    /// Run the connection test of one credential, named kind/environment (for example
    /// eko_digilocker/uat); exits non-zero with the reason when it fails.
    Test {
        /// kind/environment, as `credentials list` prints it.
        name: String,
        /// Message Central e-KYC only: agree that the test generates one real link.
        #[arg(long)]
        confirm_generation: bool,
    },
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

fn report(error: &kyc_desk::types::AppError) -> ExitCode {
    eprintln!("kyc-desk: {error}");
    if let kyc_desk::types::AppError::Validation { fields, .. } = error {
        for field in fields {
            eprintln!("  {}: {}", field.field, field.message);
        }
    }
    ExitCode::from(1)
}

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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("kyc-desk: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let public_url = config.public_url.clone();
    let sqlite = config.database_url.starts_with("sqlite:");
    let state = match AppState::open(config).await {
        Ok(state) => state,
        Err(error) => {
            eprintln!("kyc-desk: cannot start: {error}");
            if let Some(hint) = start_hint(&error, sqlite) {
                eprintln!("kyc-desk: {hint}");
            }
            return ExitCode::from(1);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            match accounts::issue_setup_token(&state).await {
                Ok(Some(token)) => {
                    let link = public_url
                        .join(&format!("setup/{token}"))
                        .map(|u| u.to_string())
                        .unwrap_or_default();
                    tracing::warn!(
                        "No user exists yet. Open this one-time link to create the first admin: {link}"
                    );
                }
                Ok(None) => {}
                Err(error) => {
                    eprintln!("kyc-desk: cannot prepare the setup link: {error}");
                    return ExitCode::from(1);
                }
            }
            if state.config.sandbox {
                if state.vault.is_none() {
                    tracing::warn!(
                        "the provider sandbox is on, but no master key is configured, so its credentials cannot be stored"
                    );
                } else {
                    match kyc_desk::server::sandbox::seed::seed(&state).await {
                        Ok(0) => {}
                        Ok(created) => tracing::info!(
                            created,
                            "stored sandbox credentials (labelled as sandbox)"
                        ),
                        Err(error) => {
                            tracing::warn!(%error, "could not store the sandbox credentials")
                        }
                    }
                }
            }
            if let Err(error) = web::serve(state).await {
                eprintln!("kyc-desk: server stopped: {error}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Command::Credentials {
            action: CredentialsAction::Import,
        } => {
            let mut text = String::new();
            if let Err(error) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                eprintln!("kyc-desk: cannot read standard input: {error}");
                return ExitCode::from(2);
            }
            let input: kyc_desk::credential_kinds::CredentialInput = match serde_json::from_str(
                &text,
            ) {
                Ok(input) => input,
                Err(error) => {
                    eprintln!(
                        "kyc-desk: the input is not a credential set in JSON ({error}); see the README for the shape"
                    );
                    return ExitCode::from(2);
                }
            };
            match credentials::save(&state, &RequestMeta::cli(), Actor::Cli, "cli", &input, true)
                .await
            {
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
        Command::Credentials {
            action: CredentialsAction::List,
        } => match credentials::list(&state).await {
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
        },
        Command::Credentials {
            action:
                CredentialsAction::Test {
                    name,
                    confirm_generation,
                },
        } => {
            let Some((kind, environment)) = name.split_once('/').and_then(|(kind, environment)| {
                Some((
                    kyc_desk::credential_kinds::CredentialKind::parse(kind)?,
                    environment,
                ))
            }) else {
                eprintln!(
                    "kyc-desk: '{name}' is not a credential name; use kind/environment as `credentials list` prints it"
                );
                return ExitCode::from(2);
            };
            match credentials::test_and_record(
                &state,
                &RequestMeta::cli(),
                Actor::Cli,
                kind,
                environment,
                confirm_generation,
            )
            .await
            {
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
        Command::VerifyAudit { from_checkpoint } => {
            let (first_seq, prev_mac) = match from_checkpoint.as_deref().map(parse_checkpoint) {
                None => (1, kyc_desk::server::audit::GENESIS_MAC.to_string()),
                Some(Ok(start)) => start,
                Some(Err(problem)) => {
                    eprintln!("kyc-desk: --from-checkpoint: {problem}");
                    return ExitCode::from(2);
                }
            };
            match state
                .audit
                .verify_from(&state.db, first_seq, &prev_mac)
                .await
            {
                Ok(report) => {
                    out!("{}", report.summary());
                    if report.broken.is_none() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(error) => {
                    eprintln!("kyc-desk: could not read the audit log: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Command::RotateMasterKey { new_key_file } => {
            let source = kyc_desk::server::vault::KeySource::File {
                path: new_key_file.clone(),
                generate: true,
            };
            let new_key = match kyc_desk::server::vault::load_key(&source) {
                Ok(Some(key)) => key,
                Ok(None) => unreachable!("a file source always yields a key"),
                Err(error) => {
                    eprintln!("kyc-desk: {error}");
                    return ExitCode::from(2);
                }
            };
            match credentials::rotate_master_key(&state, new_key).await {
                Ok(count) => {
                    out!(
                        "Re-encrypted {count} secrets under the key in {}. Restart KYC Desk with \
                         KYC_DESK_MASTER_KEY_FILE={} (or its content in KYC_DESK_MASTER_KEY); the old key no longer opens anything.",
                        new_key_file.display(),
                        new_key_file.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("kyc-desk: master-key rotation failed, nothing was changed: {error}");
                    ExitCode::from(1)
                }
            }
        }
        Command::CreateUser {
            email,
            role,
            display_name,
            temporary,
        } => {
            let password = match read_password() {
                Ok(password) => password,
                Err(error) => {
                    eprintln!("kyc-desk: {error}");
                    return ExitCode::from(2);
                }
            };
            let display_name = display_name
                .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
            let input = accounts::NewAccount {
                email,
                display_name,
                role,
                password,
                password_confirm: None,
            };
            match accounts::create_user(&state, &RequestMeta::cli(), Actor::Cli, input, temporary)
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
    }
}

/// Advice for a start failure the operator fixes on the machine (permissions, disk space, a
/// read-only database), recognised from the database's error code anywhere in the chain; the
/// driver's own words ("disk I/O error") rarely say what to do.
fn start_hint(error: &(dyn std::error::Error + 'static), sqlite: bool) -> Option<&'static str> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(sqlx::Error::Database(database)) = current.downcast_ref::<sqlx::Error>() {
            let code = database.code().unwrap_or_default();
            return if sqlite {
                // SQLite reports extended codes; the low byte is the primary one.
                match code.parse::<i64>().map(|c| c & 0xff) {
                    Ok(8) => Some(
                        "The SQLite database is read-only for the user KYC Desk runs as: give that \
                         user write access to the file and to its folder (SQLite writes -wal and \
                         -shm files next to it).",
                    ),
                    Ok(13) => Some(
                        "The disk holding the SQLite database is full: free some space, then start \
                         KYC Desk again.",
                    ),
                    Ok(10) => Some(
                        "SQLite could not write the database file: check that its disk is not full \
                         (nor the file over a size limit) and that the disk is healthy.",
                    ),
                    Ok(14) => Some(
                        "SQLite could not open the database file: check that its folder exists and \
                         that the user KYC Desk runs as may read and write there.",
                    ),
                    _ => None,
                }
            } else {
                match code.as_ref() {
                    "25006" => Some(
                        "The PostgreSQL database only allows reads (default_transaction_read_only, \
                         or a standby server): point DATABASE_URL at a writable primary.",
                    ),
                    "53100" => Some(
                        "The disk of the PostgreSQL server is full: free space there, then start \
                         KYC Desk again.",
                    ),
                    "42501" => Some(
                        "The PostgreSQL user lacks a privilege KYC Desk needs: it must be able to \
                         create and change tables in the database.",
                    ),
                    _ => None,
                }
            };
        }
        cause = current.source();
    }
    None
}

/// `SEQ:MAC` of an archive checkpoint: the first seq kept in the database, and the MAC of
/// the row before it (the last row of the archive).
fn parse_checkpoint(text: &str) -> Result<(i64, String), String> {
    let (seq, mac) = text
        .split_once(':')
        .ok_or_else(|| "expected SEQ:MAC".to_string())?;
    let seq: i64 = seq
        .trim()
        .parse()
        .map_err(|_| format!("'{seq}' is not a sequence number"))?;
    let mac = mac.trim().to_ascii_lowercase();
    if seq < 1 || mac.len() != 64 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected a seq of at least 1 and a 64-digit hex MAC".into());
    }
    Ok((seq, mac))
}
