//! The bundle's lazily loaded parts compressed against its frame (Compression Dictionary
//! Transport, RFC 9842, content encoding `dcz`).
//!
//! Why: a split bundle is the frame (`kyc-desk.HASH.wasm`, the router, the reactive runtime
//! and the signed-in layout; every page loads it first) and dozens to a hundred small parts per
//! page. Each part compressed on its own (`.br`) starts from nothing: it repeats the type and
//! import declarations, names and code shapes the frame has just delivered. The frame is sent
//! with `Use-As-Dictionary`, so the browser keeps it as a dictionary for the other `/pkg/*.wasm`
//! addresses and names it in `Available-Dictionary` when it asks for them; a part is then sent
//! as zstd compressed with the frame's bytes as its raw dictionary: 13 % fewer bytes for the
//! parts, 1–32 KB less on a page's first visit (BENCHMARKS.md, "The parts compressed against
//! the frame").
//!
//! The parts are compressed once, in the background, when the server starts serving (off the
//! async runtime; a few seconds of one core for a release bundle: 2.6 s for the per-page
//! packs of session 23, measured with the other core busy); until then, and for a
//! browser without the frame as its dictionary (an older release's frame, no support for
//! `dcz`), every part is answered as before: the `.br`/`.gz` made at build time.

use super::assets::{AssetNames, PKG_PREFIX};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The content encoding's name.
pub const DCZ: &str = "dcz";
/// The first bytes of a `dcz` body: a zstd skippable frame holding the 32 bytes that follow
/// (the dictionary's SHA-256), so the browser checks it has the right dictionary (RFC 9842).
pub const DCZ_MAGIC: [u8; 8] = [0x5e, 0x2a, 0x4d, 0x18, 0x20, 0x00, 0x00, 0x00];
/// The request header naming the dictionary the browser holds for the address it asks for.
pub const AVAILABLE_DICTIONARY: &str = "available-dictionary";
/// The response header that makes the frame the dictionary of the bundle's WebAssembly files.
pub const USE_AS_DICTIONARY: &str = "use-as-dictionary";
/// What the frame is the dictionary of: every WebAssembly file of the bundle (the parts; a
/// later release's frame is asked with it too, and answered as `.br`, its hash not matching).
pub const DICTIONARY_MATCH: HeaderValue = HeaderValue::from_static("match=\"/pkg/*.wasm\"");
/// `Vary` of a part: its address answers by `Accept-Encoding` and by the dictionary the browser
/// holds (one header line: a first visit fetches about a hundred parts).
const VARY_PART: HeaderValue = HeaderValue::from_static("accept-encoding, available-dictionary");
/// zstd's level for the parts: its strongest before the "ultra" levels, whose larger windows a
/// browser need not accept. Compression happens once per start; decompression speed does not
/// depend on it.
const LEVEL: i32 = 19;

/// The frame of this build's split bundle and, once made, its parts compressed against it.
pub struct BundleDictionary {
    pkg_dir: PathBuf,
    /// `/pkg/kyc-desk.HASH.wasm`.
    frame_path: String,
    /// The parts' addresses (`/pkg/chunk_1.HASH.wasm`, …).
    part_paths: BTreeSet<String>,
    ready: OnceLock<Compressed>,
}

/// The parts compressed against the frame.
struct Compressed {
    /// `:base64(SHA-256 of the frame):`, as a browser holding it writes `Available-Dictionary`.
    available: String,
    /// Address → `dcz` body; a part whose `dcz` is no smaller than its `.br` is left out.
    parts: HashMap<String, Bytes>,
}

/// What compressing the parts found, for the start-up log line and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionSummary {
    /// Parts answered as `dcz` from now on.
    pub parts: usize,
    /// Their `.br` bytes (or plain bytes where no `.br` was built) in all.
    pub brotli_bytes: usize,
    /// Their `dcz` bytes in all.
    pub dcz_bytes: usize,
}

impl BundleDictionary {
    /// The dictionary of a split, hashed bundle served from `pkg_dir`; `None` for any other
    /// build (nothing to compress against). Reads nothing yet.
    pub fn for_bundle(assets: &AssetNames, pkg_dir: &Path) -> Option<Self> {
        let (frame, parts) = assets.frame_and_parts()?;
        Some(BundleDictionary {
            pkg_dir: pkg_dir.to_path_buf(),
            frame_path: format!("{PKG_PREFIX}{frame}"),
            part_paths: parts
                .iter()
                .map(|part| format!("{PKG_PREFIX}{part}"))
                .collect(),
            ready: OnceLock::new(),
        })
    }

    /// Reads the frame and compresses every part against it (CPU-bound: call it off the async
    /// runtime). From then on [`Self::answer`] serves `dcz`. A second call compresses again and
    /// keeps the first result (the files of one build do not change).
    pub fn compress_parts(&self) -> std::io::Result<CompressionSummary> {
        let frame = std::fs::read(self.file(&self.frame_path))?;
        let hash: [u8; 32] = Sha256::digest(&frame).into();
        let prepared = zstd::dict::EncoderDictionary::copy(&frame, LEVEL);
        let mut compressor = zstd::bulk::Compressor::with_prepared_dictionary(&prepared)?;
        let mut parts = HashMap::new();
        let mut summary = CompressionSummary {
            parts: 0,
            brotli_bytes: 0,
            dcz_bytes: 0,
        };
        for path in &self.part_paths {
            let file = self.file(path);
            let plain = std::fs::read(&file)?;
            let brotli = std::fs::metadata(brotli_beside(&file))
                .map(|m| m.len() as usize)
                .unwrap_or(plain.len());
            let mut body = Vec::with_capacity(DCZ_MAGIC.len() + hash.len() + plain.len() / 3);
            body.extend_from_slice(&DCZ_MAGIC);
            body.extend_from_slice(&hash);
            body.extend_from_slice(&compressor.compress(&plain)?);
            if body.len() < brotli {
                summary.parts += 1;
                summary.brotli_bytes += brotli;
                summary.dcz_bytes += body.len();
                parts.insert(path.clone(), Bytes::from(body));
            }
        }
        let available = format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(hash)
        );
        let _ = self.ready.set(Compressed { available, parts });
        Ok(summary)
    }

    /// Whether the parts have been compressed (the frame is then offered as a dictionary).
    pub fn is_ready(&self) -> bool {
        self.ready.get().is_some()
    }

    /// The `dcz` body of the part at `path`, when the request asks for it: the browser accepts
    /// `dcz` and holds this build's frame as its dictionary.
    fn answer(&self, path: &str, headers: &HeaderMap) -> Option<Bytes> {
        let compressed = self.ready.get()?;
        let body = compressed.parts.get(path)?;
        let holds_frame = headers
            .get(AVAILABLE_DICTIONARY)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == compressed.available);
        (holds_frame && accepts(headers, DCZ)).then(|| body.clone())
    }

    fn file(&self, path: &str) -> PathBuf {
        self.pkg_dir
            .join(path.strip_prefix(PKG_PREFIX).unwrap_or(path))
    }
}

/// Where `--precompress` put the brotli copy of `file`.
fn brotli_beside(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".br");
    PathBuf::from(name)
}

/// Whether `Accept-Encoding` accepts `coding` (named, and not with `q=0`).
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut fields = item.split(';').map(str::trim);
            let named = fields
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case(coding));
            let refused = fields.any(|param| {
                param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            named && !refused
        })
}

/// Compresses the parts in the background (a blocking thread), logging what it did; a failure
/// is logged and the parts keep being answered from the files built for them.
pub fn spawn_compression(dictionary: Option<Arc<BundleDictionary>>) {
    let Some(dictionary) = dictionary else {
        return;
    };
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        match dictionary.compress_parts() {
            Ok(summary) => tracing::info!(
                parts = summary.parts,
                brotli_bytes = summary.brotli_bytes,
                dcz_bytes = summary.dcz_bytes,
                millis = started.elapsed().as_millis() as u64,
                "bundle parts compressed against the frame (dcz)"
            ),
            Err(error) => tracing::warn!(
                %error,
                "could not compress the bundle's parts against its frame; they are sent as built"
            ),
        }
    });
}

/// The layer that answers a part as `dcz` when it can, and marks the frame as the parts'
/// dictionary. Only `GET /pkg/*.wasm` of a split bundle is looked at.
pub async fn dictionary_compressed(
    State(dictionary): State<Option<Arc<BundleDictionary>>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let Some(dictionary) = dictionary.filter(|_| {
        request.method() == Method::GET && path.starts_with(PKG_PREFIX) && path.ends_with(".wasm")
    }) else {
        return next.run(request).await;
    };
    if let Some(body) = dictionary.answer(path, request.headers()) {
        let length = HeaderValue::from(body.len());
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        // Said outright: the layers around this one hide the body's size from the server, which
        // would then send it chunked (about 18 bytes more a part, a hundred parts a page).
        headers.insert(header::CONTENT_LENGTH, length);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/wasm"),
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(DCZ));
        headers.insert(header::VARY, VARY_PART);
        return response;
    }
    let is_frame = path == dictionary.frame_path;
    let is_part = dictionary.part_paths.contains(path);
    let mut response = next.run(request).await;
    if response.status() == StatusCode::OK {
        if is_frame && dictionary.is_ready() {
            response
                .headers_mut()
                .insert(USE_AS_DICTIONARY, DICTIONARY_MATCH);
        }
        if is_part {
            // The same address answers `dcz` to a browser holding the frame: a cache in
            // between must keep the two apart.
            response.headers_mut().insert(header::VARY, VARY_PART);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
        headers
    }

    #[test]
    fn accept_encoding_names_dcz_unless_it_is_refused() {
        assert!(accepts(
            &with_encoding("gzip, deflate, br, zstd, dcb, dcz"),
            DCZ
        ));
        assert!(accepts(&with_encoding("br;q=1.0, DCZ;q=0.5"), DCZ));
        assert!(!accepts(&with_encoding("gzip, br, zstd"), DCZ));
        assert!(!accepts(&with_encoding("dcz;q=0, br"), DCZ));
        assert!(!accepts(&with_encoding("dczz, xdcz"), DCZ));
        assert!(!accepts(&HeaderMap::new(), DCZ));
    }

    /// A split bundle on disk: a frame, two parts (one much like the frame, one tiny) with
    /// `.br` copies of the given sizes.
    fn bundle(dir: &Path) -> (AssetNames, Vec<u8>, Vec<u8>) {
        let frame: Vec<u8> = (0..40_000u32)
            .flat_map(|i| {
                format!("fn handler_{}() {{ render(view_{}); }}\n", i % 997, i % 13).into_bytes()
            })
            .take(200_000)
            .collect();
        let part: Vec<u8> = frame[50_000..70_000].to_vec();
        std::fs::write(dir.join("kyc-desk.F1.wasm"), &frame).unwrap();
        std::fs::write(dir.join("chunk_1.P1.wasm"), &part).unwrap();
        std::fs::write(dir.join("chunk_1.P1.wasm.br"), vec![0u8; 3_000]).unwrap();
        std::fs::write(dir.join("chunk_2.P2.wasm"), b"\0asm").unwrap();
        std::fs::write(
            dir.join("__wasm_split_manifest.M1.json"),
            r#"{"a":["chunk_1.P1","chunk_2.P2"]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("hash.txt"),
            "js: J1\nwasm: F1\ncss: C1\nmanifest: M1\nsplit: S1\n",
        )
        .unwrap();
        let assets = AssetNames::load(&dir.join("hash.txt"), dir).unwrap();
        (assets, frame, part)
    }

    #[test]
    fn a_part_is_answered_as_zstd_against_the_frame_it_names_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let (assets, frame, part) = bundle(dir.path());
        let dictionary = BundleDictionary::for_bundle(&assets, dir.path()).expect("a split bundle");
        let mut asks = with_encoding("gzip, br, zstd, dcb, dcz");
        let hash: [u8; 32] = Sha256::digest(&frame).into();
        let available = format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(hash)
        );
        asks.insert(AVAILABLE_DICTIONARY, available.parse().unwrap());
        assert_eq!(
            dictionary.answer("/pkg/chunk_1.P1.wasm", &asks),
            None,
            "not yet made"
        );

        let summary = dictionary.compress_parts().unwrap();
        // The tiny part compresses to more than itself: it keeps its built form.
        assert_eq!(summary.parts, 1, "{summary:?}");
        assert_eq!(summary.brotli_bytes, 3_000);
        assert!(summary.dcz_bytes < 200, "{summary:?}");
        assert_eq!(dictionary.answer("/pkg/chunk_2.P2.wasm", &asks), None);

        let body = dictionary
            .answer("/pkg/chunk_1.P1.wasm", &asks)
            .expect("dcz");
        assert_eq!(&body[..8], &DCZ_MAGIC);
        assert_eq!(&body[8..40], &hash);
        let mut decoder = zstd::bulk::Decompressor::with_dictionary(&frame).unwrap();
        assert_eq!(decoder.decompress(&body[40..], part.len()).unwrap(), part);

        // Another dictionary (an older release's frame), or no `dcz`: the built file.
        let mut other = asks.clone();
        other.insert(AVAILABLE_DICTIONARY, ":AAAA:".parse().unwrap());
        assert_eq!(dictionary.answer("/pkg/chunk_1.P1.wasm", &other), None);
        let mut no_dcz = asks.clone();
        no_dcz.insert(header::ACCEPT_ENCODING, "gzip, br".parse().unwrap());
        assert_eq!(dictionary.answer("/pkg/chunk_1.P1.wasm", &no_dcz), None);
    }

    #[test]
    fn only_a_split_hashed_bundle_has_a_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        assert!(BundleDictionary::for_bundle(&AssetNames::unhashed(), dir.path()).is_none());
        let unsplit = AssetNames::parse("js: J1\nwasm: F1\ncss: C1\n").unwrap();
        assert!(BundleDictionary::for_bundle(&unsplit, dir.path()).is_none());
    }
}
