//! The web UI, embedded in the binary at compile time (no files on disk, no CDN), served with
//! the headers that keep a browser from running anything else in its pages (see `protect`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::error::{ApiError, Code};

#[derive(RustEmbed)]
#[folder = "assets/ui/"]
struct UiAssets;

/// The Content-Security-Policy of the UI: its own scripts, styles, images and API only; no
/// inline script or style attribute (the UI sets styles through the CSSOM), no plugin, no
/// other origin, and no framing (clickjacking). `connect-src 'self'` covers the same-origin
/// WebSocket (CSP level 3).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Serves an embedded asset; unknown paths without an extension get `index.html` (client-side
/// routes), `/api/...` paths get a JSON 404.
pub async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path == "api" || path.starts_with("api/") {
        return ApiError::new(Code::RouteNotFound, format!("no API route {}", uri.path()))
            .into_response();
    }
    let mut response = page(path, uri.query());
    protect(response.headers_mut());
    response
}

/// Adds the headers of every UI response, on top of the `nosniff` every response gets (see
/// `router::nosniff`). `X-Frame-Options` repeats `frame-ancestors` for browsers that predate
/// it; no referrer leaves the UI, so its paths (agent and task ids) stay here.
fn protect(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// The asset at `path` (without its leading `/`), a redirect from a seed page, or a 404.
fn page(path: &str, query: Option<&str>) -> Response {
    if let Some(target) = legacy_page(path, query) {
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(
                header::LOCATION,
                HeaderValue::from_str(&target).unwrap_or(HeaderValue::from_static("/")),
            )],
        )
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

/// Where a page of the seed's UI lives now (`/agents.html` → `/agents`), so old bookmarks
/// keep working.
fn legacy_page(path: &str, query: Option<&str>) -> Option<String> {
    let page = match path {
        "index.html" | "dashboard.html" => "/".to_owned(),
        "agents.html" => "/agents".to_owned(),
        "tasks.html" => "/tasks".to_owned(),
        "analytics.html" => "/analytics".to_owned(),
        "settings.html" => "/settings".to_owned(),
        "api-keys.html" => "/api-keys".to_owned(),
        "login.html" => "/login".to_owned(),
        "signup.html" | "register.html" => "/signup".to_owned(),
        "agent-detail.html" => {
            let id = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .find(|(k, _)| k == "id")
                .map(|(_, v)| v.into_owned())
                .filter(|id| uuid::Uuid::parse_str(id).is_ok());
            match id {
                Some(id) => format!("/agents/{id}"),
                None => "/agents".to_owned(),
            }
        }
        _ => return None,
    };
    Some(page)
}

#[cfg(test)]
mod tests {
    use super::legacy_page;

    #[test]
    fn seed_pages_redirect_to_their_routes() {
        let id = "0190a1b2-0000-7000-8000-000000000001";
        assert_eq!(legacy_page("dashboard.html", None).as_deref(), Some("/"));
        assert_eq!(legacy_page("agents.html", None).as_deref(), Some("/agents"));
        assert_eq!(
            legacy_page("agent-detail.html", Some(&format!("id={id}"))),
            Some(format!("/agents/{id}"))
        );
        assert_eq!(
            legacy_page("agent-detail.html", Some("id=../../etc")).as_deref(),
            Some("/agents")
        );
        assert_eq!(legacy_page("js/app.js", None), None);
    }
}
