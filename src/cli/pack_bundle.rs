//! `kyc-desk pack-bundle`: merges the split browser bundle's small parts into a few files
//! (see `server::web::bundle_pack`). Run after `cargo leptos build --release --split` and
//! before starting the server; `./run.sh` and `./test.sh` do.

use kyc_desk::server::web::bundle_pack::{Packed, pack_bundle};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the built site and its hash file are.
#[derive(clap::Args)]
pub struct Args {
    /// The site folder cargo-leptos wrote (its `pkg/` holds the bundle).
    #[arg(long, default_value = "target/site")]
    pub site: PathBuf,
    /// The hash file naming the bundle's files; by default the one the server reads
    /// (`KYC_DESK_BUNDLE_HASH_FILE`, or `hash.txt` beside this binary).
    #[arg(long, env = "KYC_DESK_BUNDLE_HASH_FILE")]
    pub hash_file: Option<PathBuf>,
}

/// Packs the bundle; exit code 1 with the reason when it cannot.
pub fn run(args: Args) -> ExitCode {
    let Some(hash_file) = args
        .hash_file
        .or_else(kyc_desk::server::web::assets::AssetNames::default_hash_file)
    else {
        eprintln!("kyc-desk: no hash file: pass --hash-file");
        return ExitCode::from(1);
    };
    match pack_bundle(&args.site.join("pkg"), &hash_file) {
        Ok(Packed::Done { chunks, packs }) => {
            out!("packed {chunks} parts of the browser bundle into {packs} file(s)");
            ExitCode::SUCCESS
        }
        Ok(Packed::Unchanged(why)) => {
            out!("bundle left as it is: {why}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("kyc-desk: cannot pack the browser bundle: {error}");
            ExitCode::from(1)
        }
    }
}
