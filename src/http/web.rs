//! The web faces — the resident wallet (`/`), the verifier (`/verify`) and
//! the public deletion page (`/transparency`) — served from files embedded
//! in the binary at build time (`web/dist/`, built from `web/src/` by
//! esbuild and committed), so that `serve` needs no Node and no file next
//! to the binary.
//!
//! Every answer carries one strict Content-Security-Policy: scripts, styles,
//! images, workers and requests from this origin only; no inline script or
//! style; nothing may frame the pages. Script sources allow
//! `'wasm-unsafe-eval'` and nothing else beyond `'self'`: the verifier
//! decodes camera frames with a WebAssembly QR reader (zxing-cpp built to
//! wasm), and compiling wasm is an "eval" to CSP. That keyword permits
//! compiling WebAssembly only — not JavaScript `eval`, not inline script —
//! and the module itself is one of the embedded files.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::problem::Problem;
use crate::protocol::api::{ProblemType, paths};

/// The policy on every page and asset. `blob:` images are the QR codes the
/// wallet offers for saving; `mediastream:` is the verifier's camera.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; \
     img-src 'self' blob:; \
     media-src 'self' blob: mediastream:; \
     connect-src 'self'; \
     worker-src 'self'; \
     manifest-src 'self'; \
     object-src 'none'; \
     base-uri 'none'; \
     form-action 'self'; \
     frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// The name under `/assets/` (or the page path for the pages).
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../../web/dist/", $name)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `web/dist/` (a unit test checks that this list and the
/// directory agree).
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("verify.html", HTML),
    asset!("transparency.html", HTML),
    asset!("sw.js", JS),
    asset!("wallet.js", JS),
    asset!("verify.js", JS),
    asset!("transparency.js", JS),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("zxing_reader.wasm", "application/wasm"),
    asset!("wallet.webmanifest", "application/manifest+json"),
    asset!("verify.webmanifest", "application/manifest+json"),
    asset!("icon.svg", "image/svg+xml"),
];

fn find(name: &str) -> Option<(&'static Asset, &'static str)> {
    let index = ASSETS.iter().position(|a| a.name == name)?;
    Some((&ASSETS[index], etags()[index].as_str()))
}

/// The routes of the web faces, to merge into the API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            paths::pages::WALLET,
            get(|h: HeaderMap| async move { page("index.html", &h) }),
        )
        .route(
            paths::pages::VERIFY,
            get(|h: HeaderMap| async move { page("verify.html", &h) }),
        )
        .route(
            paths::pages::TRANSPARENCY,
            get(|h: HeaderMap| async move { page("transparency.html", &h) }),
        )
        // The service worker lives at the root so that its scope covers
        // every page.
        .route(
            paths::pages::SERVICE_WORKER,
            get(|h: HeaderMap| async move { page("sw.js", &h) }),
        )
        .route(paths::pages::ASSET, get(asset))
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    // Pages and the worker have their own paths; under /assets/ only the
    // rest.
    if name.ends_with(".html") || name == "sw.js" {
        return not_found();
    }
    page(&name, &headers)
}

fn not_found() -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        ProblemType::NotFound,
        "Not found",
        "no such endpoint",
    )
    .into_response()
}

/// The strong validator of each embedded file (in `ASSETS` order): the
/// first half of its SHA-256, quoted. Computed once: the wasm is ~1 MB.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.bytes);
                format!("\"{}\"", hex::encode(&digest[..16]))
            })
            .collect()
    })
}

fn page(name: &str, request: &HeaderMap) -> Response {
    let Some((asset, etag)) = find(name) else {
        return not_found();
    };
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.bytes,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    // Revalidate every time (a 304 is cheap): a new binary must never leave
    // a phone on an old page whose scripts no longer match the API. The
    // service worker keeps its own copy for offline use.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(), geolocation=()"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_found_by_its_name_and_unknown_names_are_not() {
        for asset in ASSETS {
            assert!(find(asset.name).is_some(), "{}", asset.name);
            assert!(!asset.bytes.is_empty(), "{} is empty", asset.name);
        }
        assert!(find("../Cargo.toml").is_none());
        assert!(find("nope.js").is_none());
    }

    #[test]
    fn every_built_file_is_embedded_and_nothing_else() {
        let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/dist");
        let mut built: Vec<String> = std::fs::read_dir(dist)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        built.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        embedded.sort();
        assert_eq!(built, embedded);
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_no_other_origin() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(!CONTENT_SECURITY_POLICY.contains("'unsafe-eval'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("http"));
        assert!(!CONTENT_SECURITY_POLICY.contains('*'));
    }
}
