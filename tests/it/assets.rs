//! The browser bundle on the wire: content-hashed files are answered compressed as asked
//! (`br`, `gzip`, or plain), with their real type, `Vary: Accept-Encoding` and a year of
//! immutable caching; other static files briefly; pages and the file routes never stored.

use crate::common::{self, TestApp};
use kyc_desk::types::Role;
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, VARY};

const HASH: &str = "Tq3vX9_b-1";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A built site as `cargo leptos build --release --precompress` leaves it: hashed names, a
/// `.br` and a `.gz` beside each file (distinct bytes, so the test sees which was sent).
fn built_site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("site/pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    for (ext, body) in [
        ("wasm", &b"\0asm plain"[..]),
        ("js", b"export default 1;"),
        ("css", b"body{}"),
    ] {
        let file = pkg.join(format!("kyc-desk.{HASH}.{ext}"));
        std::fs::write(&file, body).unwrap();
        std::fs::write(format!("{}.br", file.display()), format!("br of {ext}")).unwrap();
        std::fs::write(format!("{}.gz", file.display()), format!("gzip of {ext}")).unwrap();
    }
    std::fs::write(pkg.join("kyc-desk.css"), "body{}").unwrap();
    std::fs::write(
        dir.path().join("site/favicon.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hash.txt"),
        format!("js: {HASH}\nwasm: {HASH}\ncss: {HASH}\n"),
    )
    .unwrap();
    dir
}

async fn app_on(site: &tempfile::TempDir) -> TestApp {
    let root = site.path().join("site").display().to_string();
    let hash_file = site.path().join("hash.txt").display().to_string();
    TestApp::start_with(
        common::Backend::Sqlite,
        &[
            ("KYC_DESK_SITE_ROOT", root.as_str()),
            ("KYC_DESK_BUNDLE_HASH_FILE", hash_file.as_str()),
        ],
    )
    .await
}

fn header(response: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_is_sent_compressed_and_kept_for_a_year() {
    let site = built_site();
    let app = app_on(&site).await;
    let client = app.client();
    let wasm = format!("{}/pkg/kyc-desk.{HASH}.wasm", app.base);

    for (asked, sent, body) in [
        ("br, gzip", Some("br"), "br of wasm"),
        ("gzip, deflate", Some("gzip"), "gzip of wasm"),
        ("identity", None, "\0asm plain"),
    ] {
        let response = client
            .get(&wasm)
            .header("accept-encoding", asked)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asked}");
        assert_eq!(
            response
                .headers()
                .get(CONTENT_ENCODING)
                .map(|v| v.to_str().unwrap()),
            sent,
            "{asked}"
        );
        assert_eq!(
            header(&response, CONTENT_TYPE),
            "application/wasm",
            "{asked}"
        );
        assert!(
            header(&response, VARY)
                .to_ascii_lowercase()
                .contains("accept-encoding"),
            "{asked}"
        );
        assert_eq!(header(&response, CACHE_CONTROL), IMMUTABLE, "{asked}");
        // A part of the bundle is no document: it carries no page headers (a first visit
        // fetches dozens of parts), only what a script or WebAssembly file needs.
        assert_eq!(
            header(&response, "x-content-type-options".parse().unwrap()),
            "nosniff"
        );
        assert_eq!(
            header(&response, "content-security-policy".parse().unwrap()),
            ""
        );
        // Nor what a file that never changes cannot use: a validator for a revalidation that
        // never comes, ranges the file handler does not serve, a request id nobody looks up.
        for useless in ["last-modified", "accept-ranges", "x-request-id"] {
            assert_eq!(header(&response, useless.parse().unwrap()), "", "{useless}");
        }
        assert_eq!(response.text().await.unwrap(), body, "{asked}");
    }

    for (path, kind) in [
        (format!("/pkg/kyc-desk.{HASH}.js"), "javascript"),
        (format!("/pkg/kyc-desk.{HASH}.css"), "text/css"),
    ] {
        let response = client
            .get(format!("{}{path}", app.base))
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(header(&response, CONTENT_ENCODING), "br", "{path}");
        assert!(header(&response, CONTENT_TYPE).contains(kind), "{path}");
        assert_eq!(header(&response, CACHE_CONTROL), IMMUTABLE, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_name_the_hashed_files_and_are_never_stored() {
    let site = built_site();
    let app = app_on(&site).await;
    let client = app.client();

    let login = client
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    assert_eq!(header(&login, CACHE_CONTROL), "no-store");
    assert!(
        header(&login, "content-security-policy".parse().unwrap()).contains("default-src 'self'")
    );
    let html = login.text().await.unwrap();
    for file in [
        format!("/pkg/kyc-desk.{HASH}.js"),
        format!("/pkg/kyc-desk.{HASH}.wasm"),
        format!("/pkg/kyc-desk.{HASH}.css"),
    ] {
        assert!(
            html.contains(&file),
            "the sign-in page does not name {file}"
        );
    }

    // Pages are compressed per request when the browser asks, and still never stored.
    let compressed = client
        .get(format!("{}/login", app.base))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.status(), StatusCode::OK);
    assert_eq!(header(&compressed, CONTENT_ENCODING), "br");
    assert!(
        header(&compressed, VARY)
            .to_ascii_lowercase()
            .contains("accept-encoding")
    );
    assert_eq!(header(&compressed, CACHE_CONTROL), "no-store");
    let squeezed = compressed.bytes().await.unwrap().len();
    assert!(
        squeezed * 2 < html.len(),
        "{squeezed} compressed bytes of {}",
        html.len()
    );

    // Unhashed files: the favicon for an hour; an unhashed bundle name is revalidated.
    let favicon = client
        .get(format!("{}/favicon.svg", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(favicon.status(), StatusCode::OK);
    assert_eq!(header(&favicon, CACHE_CONTROL), "public, max-age=3600");
    assert_ne!(header(&favicon, "last-modified".parse().unwrap()), "");
    let plain = client
        .get(format!("{}/pkg/kyc-desk.css", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(header(&plain, CACHE_CONTROL), "no-cache");

    // A file of another release is not found, and that answer is not kept.
    let gone = client
        .get(format!("{}/pkg/kyc-desk.0ld.wasm", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&gone, CACHE_CONTROL), "no-store");
    // A missing file still names its request, for whoever looks into it.
    assert_ne!(header(&gone, "x-request-id".parse().unwrap()), "");

    // File routes below the top level carry personal data: never stored either.
    app.user("olga@example.com", Role::Operator).await;
    let operator = app.signed_in("olga@example.com").await;
    let export = operator
        .get(format!("{}/sessions/export.csv", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    assert_eq!(header(&export, CACHE_CONTROL), "no-store");
    // Exports stream plain: a large one costs no compression work on the server's runtime.
    let plain_export = operator
        .get(format!("{}/sessions/export.csv", app.base))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(plain_export.status(), StatusCode::OK);
    assert_eq!(header(&plain_export, CONTENT_ENCODING), "");
}

/// A split bundle as `cargo leptos build --release --precompress --split` leaves it: the frame
/// (WebAssembly-like bytes the parts share much with), a split manifest and two parts with
/// their `.br` copies. Returns the frame's and the first part's plain bytes.
fn split_site(site: &tempfile::TempDir) -> (Vec<u8>, Vec<u8>) {
    let pkg = site.path().join("site/pkg");
    let frame: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("(func $view_{} (call $render {}))\n", i % 733, i % 17).into_bytes())
        .collect();
    let part = frame[100_000..130_000].to_vec();
    std::fs::write(pkg.join(format!("kyc-desk.{HASH}.wasm")), &frame).unwrap();
    std::fs::write(pkg.join("chunk_7.Pa1.wasm"), &part).unwrap();
    // Its `.br` is made as large as a real one would be (a tenth of the part): a part is sent
    // against the frame only where that is smaller than what was built for it.
    let brotli = format!("br of part{}", " ".repeat(3_000));
    std::fs::write(pkg.join("chunk_7.Pa1.wasm.br"), brotli).unwrap();
    std::fs::write(pkg.join("chunk_8.Pa2.wasm"), &part[..5_000]).unwrap();
    std::fs::write(
        pkg.join("__wasm_split_manifest.Mf1.json"),
        r#"{"__sessions_view_1":["chunk_7.Pa1","chunk_8.Pa2"]}"#,
    )
    .unwrap();
    std::fs::write(
        site.path().join("hash.txt"),
        format!("js: {HASH}\nwasm: {HASH}\ncss: {HASH}\nmanifest: Mf1\nsplit: Sp1\n"),
    )
    .unwrap();
    (frame, part)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_is_sent_compressed_against_the_frame_the_browser_holds() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let site = built_site();
    let (frame, part) = split_site(&site);
    let app = app_on(&site).await;
    let client = app.client();
    let frame_url = format!("{}/pkg/kyc-desk.{HASH}.wasm", app.base);
    let part_url = format!("{}/pkg/chunk_7.Pa1.wasm", app.base);

    // The parts are compressed in the background after the start; until then the frame is
    // not offered as a dictionary. Once they are, it is, for the bundle's WebAssembly.
    let mut offered = String::new();
    for _ in 0..300 {
        let response = client
            .get(&frame_url)
            .header("accept-encoding", "identity")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        offered = header(&response, "use-as-dictionary".parse().unwrap());
        if !offered.is_empty() {
            assert_eq!(response.bytes().await.unwrap(), frame);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(offered, r#"match="/pkg/*.wasm""#);

    let hash = sha2::Sha256::digest(&frame);
    let available = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(hash)
    );
    let asking = |available: &str, encodings: &str| {
        client
            .get(&part_url)
            .header("accept-encoding", encodings)
            .header("available-dictionary", available)
            .send()
    };

    // A browser that holds this frame and accepts `dcz` gets the part compressed against it.
    let response = asking(&available, "gzip, deflate, br, zstd, dcb, dcz")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_ENCODING), "dcz");
    assert_eq!(header(&response, CONTENT_TYPE), "application/wasm");
    assert_eq!(header(&response, CACHE_CONTROL), IMMUTABLE);
    let vary = header(&response, VARY).to_ascii_lowercase();
    assert!(
        vary.contains("accept-encoding") && vary.contains("available-dictionary"),
        "{vary}"
    );
    let length = header(&response, reqwest::header::CONTENT_LENGTH);
    assert_eq!(header(&response, reqwest::header::TRANSFER_ENCODING), "");
    let body = response.bytes().await.unwrap();
    assert_eq!(
        length,
        body.len().to_string(),
        "sent with its length, not chunked"
    );
    assert_eq!(
        &body[..8],
        &[0x5e, 0x2a, 0x4d, 0x18, 0x20, 0x00, 0x00, 0x00],
        "RFC 9842's header"
    );
    assert_eq!(&body[8..40], &hash[..], "the dictionary's hash");
    assert!(body.len() < 1_000, "{} bytes for a 30 KB part", body.len());
    let mut decoder = zstd::bulk::Decompressor::with_dictionary(&frame).unwrap();
    assert_eq!(decoder.decompress(&body[40..], part.len()).unwrap(), part);

    // Another dictionary (an older release's frame), or no `dcz`: the file built for it,
    // still marked as varying with the dictionary.
    for (available, encodings) in [
        (":bm90IHRoaXMgZnJhbWU=:", "br, dcz"),
        (available.as_str(), "gzip, br"),
        (available.as_str(), "br, dcz;q=0"),
    ] {
        let response = asking(available, encodings).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, CONTENT_ENCODING), "br", "{encodings}");
        assert!(
            header(&response, VARY)
                .to_ascii_lowercase()
                .contains("available-dictionary")
        );
        assert!(response.text().await.unwrap().starts_with("br of part"));
    }

    // The JavaScript and the stylesheet are no WebAssembly parts: sent as built.
    let script = client
        .get(format!("{}/pkg/kyc-desk.{HASH}.js", app.base))
        .header("accept-encoding", "br, dcz")
        .header("available-dictionary", &available)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&script, CONTENT_ENCODING), "br");
}
