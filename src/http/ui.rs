//! The web UI, embedded in the binary at compile time (no files on disk, no CDN).

use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::{ApiError, Code};

#[derive(RustEmbed)]
#[folder = "assets/ui/"]
struct UiAssets;

/// Serves an embedded asset; unknown paths without an extension get `index.html` (client-side
/// routes), `/api/...` paths get a JSON 404.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path == "api" || path.starts_with("api/") {
        return ApiError::new(Code::RouteNotFound, format!("no API route {}", uri.path()))
            .into_response();
    }
    let path = if path.is_empty() { "index.html" } else { path };
    let asset = UiAssets::get(path).map(|a| (path, a)).or_else(|| {
        let last = path.rsplit('/').next().unwrap_or(path);
        (!last.contains('.'))
            .then(|| UiAssets::get("index.html").map(|a| ("index.html", a)))
            .flatten()
    });
    match asset {
        Some((name, file)) => {
            let cache = if name == "index.html" {
                "no-cache"
            } else {
                "public, max-age=300"
            };
            (
                [
                    (header::CONTENT_TYPE, file.metadata.mimetype().to_owned()),
                    (header::CACHE_CONTROL, cache.to_owned()),
                ],
                file.data,
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
