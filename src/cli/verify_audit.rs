//! `kyc-desk verify-audit`: the audit log's MAC chain checked, from the start or from an
//! archive checkpoint.

use kyc_desk::server::audit::GENESIS_MAC;
use kyc_desk::server::state::AppState;
use std::process::ExitCode;

/// Where to start.
#[derive(clap::Args)]
pub struct Args {
    /// Start at an archive checkpoint: the first seq still in the database after older
    /// rows were archived, as SEQ:MAC where MAC is the last line's MAC of the archive.
    #[arg(long)]
    from_checkpoint: Option<String>,
}

/// Prints the summary; 0 when the chain holds, 1 when it is broken or unreadable, 2 for a
/// malformed checkpoint.
pub async fn run(state: &AppState, args: Args) -> ExitCode {
    let (first_seq, prev_mac) = match args.from_checkpoint.as_deref().map(parse_checkpoint) {
        None => (1, GENESIS_MAC.to_string()),
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
