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
    let is_page_route = !path.rsplit('/').next().unwrap_or(path).contains('.');
    let asset = UiAssets::get(path)
        .or_else(|| is_page_route.then(|| UiAssets::get("index.html")).flatten());
    match asset {
        Some(file) => (
            [
                (header::CONTENT_TYPE, file.metadata.mimetype().to_owned()),
                // Asset names carry no version, so browsers revalidate every time.
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            file.data,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
