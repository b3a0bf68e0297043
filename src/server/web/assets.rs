//! The browser bundle's file names and how long a browser may keep each static file.
//!
//! cargo-leptos (`hash-files = true`) puts a content hash into the names of the bundle's
//! script, WebAssembly and stylesheet and lists the hashes in a small file beside the server
//! binary (`hash.txt`). A hashed name never changes content, so a browser may keep it for a
//! year without asking again; every other static file is kept briefly or revalidated, and
//! pages are never stored (`security_headers` sets `no-store` on them). Compression is made at
//! build time (`cargo leptos build --release --precompress` writes `.br` and `.gz` beside each
//! file) and chosen per request by the static file service from `Accept-Encoding`; the parts of
//! a split bundle may instead be sent compressed against the frame (`super::dictionary`).

use axum::http::HeaderValue;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The folder every bundle file is served under.
pub const PKG_PREFIX: &str = "/pkg/";
/// The bundle's base name (`output-name` in `Cargo.toml`).
pub const OUTPUT_NAME: &str = "kyc-desk";

/// `Cache-Control` of a content-hashed bundle file: a year, never revalidated.
pub const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");
/// `Cache-Control` of a bundle file without a hash (a build without `hash-files`): the browser
/// may not use its copy without asking, and the file is sent again (the static file handler
/// answers no conditional request with `304`), so a new release never meets a stale bundle.
pub const REVALIDATE: HeaderValue = HeaderValue::from_static("no-cache");
/// `Cache-Control` of the other static files (the favicon): an hour.
pub const SHORT: HeaderValue = HeaderValue::from_static("public, max-age=3600");

/// The names of this build's bundle files, read from the hash file cargo-leptos wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssetNames {
    /// Where the hashes were read from; `None` when the build has no hash file.
    pub hash_file: Option<PathBuf>,
    /// File names (no folder) of the hashed bundle files, e.g. `kyc-desk.Ab3….wasm`.
    hashed: BTreeSet<String>,
    /// The stylesheet's address.
    stylesheet: String,
    /// The split manifest's file name, when the bundle is split into lazily loaded parts.
    split_manifest: Option<String>,
    /// The frame's file name (`kyc-desk.HASH.wasm`: the WebAssembly every page loads first).
    frame: Option<String>,
    /// File names of the lazily loaded parts the split manifest lists (`chunk_1.HASH.wasm`, …).
    parts: BTreeSet<String>,
}

impl AssetNames {
    /// The default place of the hash file: `hash.txt` beside the running binary, where
    /// cargo-leptos writes it and where Leptos' own `HydrationScripts` looks for it.
    pub fn default_hash_file() -> Option<PathBuf> {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("hash.txt")))
    }

    /// Reads the hash file at `path`, and the split manifest it names from `pkg_dir` (the
    /// lazily loaded parts of the bundle, each with a content hash in its name). A missing hash
    /// file means an unhashed build (plain names); a file that exists but cannot be read or
    /// holds no hash, or a manifest it names that cannot be read, is an error, since the pages
    /// would then point at files that do not exist.
    pub fn load(path: &Path, pkg_dir: &Path) -> Result<Self, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut names = Self::parse(&text).ok_or_else(|| {
                    format!(
                        "the bundle's hash file {} names no hashed file; rebuild with `cargo leptos build`",
                        path.display()
                    )
                })?;
                names.hash_file = Some(path.to_path_buf());
                if let Some(manifest) = names.split_manifest.clone() {
                    let file = pkg_dir.join(&manifest);
                    let json = std::fs::read_to_string(&file).map_err(|error| {
                        format!(
                            "the bundle's split manifest {} cannot be read: {error}",
                            file.display()
                        )
                    })?;
                    names.add_split_parts(&json).map_err(|error| {
                        format!(
                            "the bundle's split manifest {} is not valid: {error}",
                            file.display()
                        )
                    })?;
                }
                Ok(names)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::unhashed()),
            Err(error) => Err(format!(
                "the bundle's hash file {} cannot be read: {error}",
                path.display()
            )),
        }
    }

    /// A build without hashed names.
    pub fn unhashed() -> Self {
        AssetNames {
            hash_file: None,
            hashed: BTreeSet::new(),
            stylesheet: format!("{PKG_PREFIX}{OUTPUT_NAME}.css"),
            split_manifest: None,
            frame: None,
            parts: BTreeSet::new(),
        }
    }

    /// Parses `js: HASH`, `wasm: HASH`, `css: HASH`, and for a split bundle `manifest: HASH`
    /// and `split: HASH` lines (cargo-leptos' names). `None` when no line names a hash.
    pub fn parse(text: &str) -> Option<Self> {
        let mut names = Self::unhashed();
        for (kind, hash) in hash_entries(text) {
            let file = match kind {
                "js" => format!("{OUTPUT_NAME}.{hash}.js"),
                "wasm" => {
                    let file = format!("{OUTPUT_NAME}.{hash}.wasm");
                    names.frame = Some(file.clone());
                    file
                }
                "css" => {
                    let file = format!("{OUTPUT_NAME}.{hash}.css");
                    names.stylesheet = format!("{PKG_PREFIX}{file}");
                    file
                }
                "manifest" => {
                    let file = format!("__wasm_split_manifest.{hash}.json");
                    names.split_manifest = Some(file.clone());
                    file
                }
                "split" => format!("__wasm_split.{hash}.js"),
                _ => continue,
            };
            names.hashed.insert(file);
        }
        (!names.hashed.is_empty()).then_some(names)
    }

    /// Adds the lazily loaded parts the split manifest lists (`{"split": ["chunk_1.HASH", …]}`,
    /// each a `.wasm` file named with its content hash).
    fn add_split_parts(&mut self, manifest: &str) -> Result<(), String> {
        let parts: std::collections::BTreeMap<String, Vec<String>> =
            serde_json::from_str(manifest).map_err(|e| e.to_string())?;
        for name in parts.into_values().flatten() {
            if name.contains('/') || name.contains("..") {
                return Err(format!("{name:?} is not a file name"));
            }
            self.hashed.insert(format!("{name}.wasm"));
            self.parts.insert(format!("{name}.wasm"));
        }
        Ok(())
    }

    /// The frame of a split bundle and its lazily loaded parts (file names, no folder): what
    /// [`super::dictionary`] compresses against the frame. `None` for a bundle that is not split
    /// or not hashed.
    pub fn frame_and_parts(&self) -> Option<(&str, &BTreeSet<String>)> {
        match (&self.frame, self.parts.is_empty()) {
            (Some(frame), false) => Some((frame.as_str(), &self.parts)),
            _ => None,
        }
    }

    /// Whether this build hashes its bundle's names.
    pub fn is_hashed(&self) -> bool {
        !self.hashed.is_empty()
    }

    /// The stylesheet's address, for pages written by hand (the Leptos shell finds it itself).
    pub fn stylesheet(&self) -> &str {
        &self.stylesheet
    }

    /// How long a browser may keep the static file at `path`.
    pub fn cache_control(&self, path: &str) -> HeaderValue {
        match path.strip_prefix(PKG_PREFIX) {
            Some(file) if self.hashed.contains(file) => IMMUTABLE,
            Some(_) => REVALIDATE,
            None => SHORT,
        }
    }
}

/// The stylesheet of this process's build, for the pages written by hand outside the Leptos
/// shell (the failure page, the customer's return page, the sandbox's provider pages).
///
/// Why process-wide: the hashed names belong to the binary's build, as Leptos' own reading of
/// the hash file does (beside the running binary); every state of one process serves one
/// build. The first state opened in the process sets it.
pub fn stylesheet_href() -> &'static str {
    STYLESHEET
        .get()
        .map(String::as_str)
        .unwrap_or("/pkg/kyc-desk.css")
}

static STYLESHEET: OnceLock<String> = OnceLock::new();

/// Records the stylesheet of this process's build (first call wins).
pub fn remember_stylesheet(names: &AssetNames) {
    let _ = STYLESHEET.set(names.stylesheet().to_string());
}

/// The `kind: HASH` lines of a hash file (`js`, `wasm`, `css`, `manifest`, `split`), each hash
/// checked to be a file-name-safe content hash; other lines are skipped.
pub fn hash_entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| {
        let (kind, hash) = line.split_once(':')?;
        let (kind, hash) = (kind.trim(), hash.trim());
        let valid = !hash.is_empty()
            && hash
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        valid.then_some((kind, hash))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASHES: &str = "js: AbC123\nwasm: Xy_Z-9\ncss: Q1w2e3\nmanifest: Mf1\nsplit: Sp1\n";

    #[test]
    fn hashed_bundle_files_are_immutable_and_nothing_else_is() {
        let names = AssetNames::parse(HASHES).expect("three hashes");
        assert_eq!(names.cache_control("/pkg/kyc-desk.AbC123.js"), IMMUTABLE);
        assert_eq!(names.cache_control("/pkg/kyc-desk.Xy_Z-9.wasm"), IMMUTABLE);
        assert_eq!(names.cache_control("/pkg/kyc-desk.Q1w2e3.css"), IMMUTABLE);
        // An old release's name, or an unhashed one, is revalidated.
        assert_eq!(names.cache_control("/pkg/kyc-desk.000000.wasm"), REVALIDATE);
        assert_eq!(names.cache_control("/pkg/kyc-desk.css"), REVALIDATE);
        assert_eq!(names.cache_control("/favicon.svg"), SHORT);
        assert_eq!(names.stylesheet(), "/pkg/kyc-desk.Q1w2e3.css");
    }

    #[test]
    fn an_unhashed_build_revalidates_its_bundle() {
        let names = AssetNames::unhashed();
        assert!(!names.is_hashed());
        assert_eq!(names.cache_control("/pkg/kyc-desk.wasm"), REVALIDATE);
        assert_eq!(names.stylesheet(), "/pkg/kyc-desk.css");
    }

    #[test]
    fn a_hash_file_without_hashes_is_refused_and_a_missing_one_is_unhashed() {
        assert_eq!(AssetNames::parse("js: \nwasm: ../x\n"), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hash.txt");
        let pkg = dir.path();
        assert_eq!(AssetNames::load(&path, pkg), Ok(AssetNames::unhashed()));
        std::fs::write(&path, "nothing here\n").unwrap();
        let refused = AssetNames::load(&path, pkg).unwrap_err();
        assert!(refused.contains("names no hashed file"), "{refused}");
        std::fs::write(&path, "js: AbC123\nwasm: Xy_Z-9\ncss: Q1w2e3\n").unwrap();
        let loaded = AssetNames::load(&path, pkg).unwrap();
        assert!(loaded.is_hashed());
        assert_eq!(loaded.hash_file.as_deref(), Some(path.as_path()));
    }

    #[test]
    fn the_lazily_loaded_parts_of_a_split_bundle_are_immutable_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hash.txt");
        std::fs::write(&path, HASHES).unwrap();
        // The manifest the hash file names is missing: the start is refused.
        let missing = AssetNames::load(&path, dir.path()).unwrap_err();
        assert!(
            missing.contains("__wasm_split_manifest.Mf1.json"),
            "{missing}"
        );
        std::fs::write(
            dir.path().join("__wasm_split_manifest.Mf1.json"),
            r#"{"__login_view_1":["chunk_1.Hh1","split___login_view_1.Hh2"],"__users_view_1":["chunk_1.Hh1"]}"#,
        )
        .unwrap();
        let names = AssetNames::load(&path, dir.path()).unwrap();
        for file in [
            "/pkg/chunk_1.Hh1.wasm",
            "/pkg/split___login_view_1.Hh2.wasm",
            "/pkg/__wasm_split_manifest.Mf1.json",
            "/pkg/__wasm_split.Sp1.js",
            "/pkg/kyc-desk.AbC123.js",
        ] {
            assert_eq!(names.cache_control(file), IMMUTABLE, "{file}");
        }
        assert_eq!(names.cache_control("/pkg/chunk_2.Hh1.wasm"), REVALIDATE);
        std::fs::write(
            dir.path().join("__wasm_split_manifest.Mf1.json"),
            r#"{"x":["../../etc/passwd"]}"#,
        )
        .unwrap();
        assert!(AssetNames::load(&path, dir.path()).is_err());
    }
}
