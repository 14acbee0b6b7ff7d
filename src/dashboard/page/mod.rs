//! The dashboard's web page: one HTML file, its script (JavaScript modules: `app.js` imports
//! the others), style sheet and icon, embedded in the binary (no CDN, nothing fetched from
//! elsewhere, so it works offline).
//!
//! The page itself holds no data: it reads `/api/dashboard/status`, `/history/{name}`, `/logs`,
//! `/clusters/{name}/spec` and `/pins` and the `/events` stream like any other client, and sends
//! restarts and spec changes with the token typed into it. So
//! `/` and `/assets/*` are served without the token even when reads need one.
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles and requests only from
//! this origin; no inline script or style), `X-Content-Type-Options: nosniff`, and
//! `Cache-Control: no-cache` with an `ETag`, so a browser revalidates cheaply and never keeps a
//! page older than the binary.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What the page may load and where it may connect: only this origin, nothing inline.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: u64,
}

impl Asset {
    const fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            etag: fnv1a(body),
        }
    }
}

const INDEX: Asset = Asset::new(include_bytes!("index.html"), "text/html; charset=utf-8");
const APP_JS: Asset = Asset::new(include_bytes!("app.js"), "text/javascript; charset=utf-8");
const LIB_JS: Asset = Asset::new(include_bytes!("lib.js"), "text/javascript; charset=utf-8");
const CHARTS_JS: Asset = Asset::new(
    include_bytes!("charts.js"),
    "text/javascript; charset=utf-8",
);
const CLUSTER_JS: Asset = Asset::new(
    include_bytes!("cluster.js"),
    "text/javascript; charset=utf-8",
);
const CONFIG_JS: Asset = Asset::new(
    include_bytes!("config.js"),
    "text/javascript; charset=utf-8",
);
const LOGS_JS: Asset = Asset::new(include_bytes!("logs.js"), "text/javascript; charset=utf-8");
const APP_CSS: Asset = Asset::new(include_bytes!("app.css"), "text/css; charset=utf-8");
const ICON: Asset = Asset::new(include_bytes!("icon.svg"), "image/svg+xml");

/// Every embedded file.
#[cfg(test)]
const ALL: [&Asset; 9] = [
    &INDEX,
    &APP_JS,
    &LIB_JS,
    &CHARTS_JS,
    &CLUSTER_JS,
    &CONFIG_JS,
    &LOGS_JS,
    &APP_CSS,
    &ICON,
];

/// FNV-1a over the file, computed at compile time: the file's `ETag`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `GET /` and `GET /assets/{file}`, to merge into the dashboard's router.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve(&INDEX, &headers) }),
        )
        .route("/assets/{file}", get(asset))
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let asset = match file.as_str() {
        "app.js" => &APP_JS,
        "lib.js" => &LIB_JS,
        "charts.js" => &CHARTS_JS,
        "cluster.js" => &CLUSTER_JS,
        "config.js" => &CONFIG_JS,
        "logs.js" => &LOGS_JS,
        "app.css" => &APP_CSS,
        "icon.svg" => &ICON,
        _ => {
            let mut resp = (
                StatusCode::NOT_FOUND,
                "no such asset; the page uses /assets/app.js (and the modules it imports: \
                 lib.js, charts.js, cluster.js, config.js, logs.js), /assets/app.css and \
                 /assets/icon.svg",
            )
                .into_response();
            security_headers(resp.headers_mut());
            return resp;
        }
    };
    serve(asset, &headers)
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == etag || tag.trim() == "*")
        });
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = resp.headers_mut();
    security_headers(headers);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    resp
}

fn security_headers(headers: &mut HeaderMap) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_differ_per_file_and_follow_the_content() {
        assert_ne!(INDEX.etag, APP_JS.etag);
        assert_ne!(APP_JS.etag, APP_CSS.etag);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_names_no_other_host() {
        let html = std::str::from_utf8(INDEX.body).expect("utf-8 page");
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').expect("closed tag")];
            assert!(tag.contains(" src=\"/assets/"), "inline script: {tag}");
        }
        assert!(
            !html.contains(" style="),
            "inline style attribute in the page"
        );
        assert!(!html.contains("<style"), "inline style element in the page");
        for asset in ALL {
            let text = std::str::from_utf8(asset.body).expect("utf-8 asset");
            let without_svg_ns = text.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !without_svg_ns.contains("http://") && !without_svg_ns.contains("https://"),
                "an embedded file ({}) names another host",
                asset.content_type
            );
        }
    }
}
