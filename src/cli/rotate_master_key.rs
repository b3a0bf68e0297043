//! `kyc-desk rotate-master-key`: every stored secret and audit key epoch re-encrypted under a
//! new master key, and a new audit key epoch begun, in one transaction.

use kyc_desk::server::credentials;
use kyc_desk::server::state::AppState;
use kyc_desk::server::vault::{self, KeySource};
use std::process::ExitCode;

/// Where the new key is.
#[derive(clap::Args)]
pub struct Args {
    /// File with the new key (base64 of 32 bytes).
    #[arg(long)]
    new_key_file: std::path::PathBuf,
}

/// Rotates to the key in the file (made with a fresh key if missing); 2 when the file is
/// unusable, 1 when the rotation failed (then nothing changed).
pub async fn run(state: &AppState, args: Args) -> ExitCode {
    let new_key_file = args.new_key_file;
    let source = KeySource::File {
        path: new_key_file.clone(),
        generate: true,
    };
    let new_key = match vault::load_key(&source) {
        Ok(Some(key)) => key,
        Ok(None) => unreachable!("a file source always yields a key"),
        Err(error) => {
            eprintln!("kyc-desk: {error}");
            return ExitCode::from(2);
        }
    };
    match credentials::rotate_master_key(state, new_key).await {
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
