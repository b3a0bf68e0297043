//! `kyc-desk pack-bundle`: merges the split browser bundle's small parts into a few files
//! (see `server::web::bundle_pack`). Run after `cargo leptos build --release --split` and
//! before starting the server; `./run.sh` and `./test.sh` do.

use kyc_desk::server::web::bundle_pack::{Optimise, Packed, as_merged, pack_bundle, wasm_opt};
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
    /// The `wasm-opt` each pack is optimised with (the release build's own: binaryen 132,
    /// which `./setup.sh` puts first on PATH). Packing stops if it cannot run.
    #[arg(long, default_value = "wasm-opt")]
    pub wasm_opt: PathBuf,
    /// Write the packs as merged, without `wasm-opt` (larger).
    #[arg(long)]
    pub no_wasm_opt: bool,
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
    let pkg_dir = args.site.join("pkg");
    let optimiser = wasm_opt(args.wasm_opt, pkg_dir.clone());
    let optimise: Optimise<'_> = if args.no_wasm_opt {
        &as_merged
    } else {
        &optimiser
    };
    match pack_bundle(&pkg_dir, &hash_file, optimise) {
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
