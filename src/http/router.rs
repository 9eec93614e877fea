//! Route table, OpenAPI generation and the middleware stack (metrics, tracing, panics).

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::routes::{agents, auctions, health, tasks, users, ws};
use super::ui;
use crate::error::{ApiError, Code};

/// Largest JSON body: a task input of 4 MiB plus its envelope.
const JSON_BODY_LIMIT: usize = 5 * 1024 * 1024;

/// The API routes and the OpenAPI document generated from them.
pub fn routes(max_binary_bytes: usize) -> (Router<AppState>, OpenApi) {
    let upload = OpenApiRouter::new()
        .routes(routes!(agents::upload))
        // The module plus room for the other form fields.
        .layer(DefaultBodyLimit::max(max_binary_bytes + 1024 * 1024));
    let (router, mut openapi) = OpenApiRouter::new()
        .routes(routes!(users::register))
        .routes(routes!(users::login))
        .routes(routes!(users::me))
        .routes(routes!(agents::list))
        .routes(routes!(agents::get))
        .routes(routes!(tasks::submit))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::stats))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::cancel))
        .routes(routes!(auctions::preview))
        .routes(routes!(ws::connect))
        .routes(routes!(ws::stats))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .merge(upload)
        .split_for_parts();
    openapi.info.title = "ZeroState".into();
    openapi.info.version = env!("CARGO_PKG_VERSION").into();
    openapi.info.description = Some("Self-hosted AI-agent marketplace and orchestrator".into());
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    (router, openapi)
}

/// The complete application router.
pub fn router(routes: Router<AppState>, state: AppState) -> Router {
    routes
        // A route layer runs after routing, so it sees the matched route template.
        .route_layer(middleware::from_fn(record_metrics))
        .fallback(ui::serve)
        .method_not_allowed_fallback(method_not_allowed)
        // Spans carry the path only: a WebSocket URL's query holds a session token.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
        }))
        .layer(CatchPanicLayer::custom(|_panic| {
            tracing::error!("handler panicked");
            ApiError::new(Code::Internal, "internal error; see the server log").into_response()
        }))
        .with_state(state)
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Counts requests and records latency per route template (never per raw path, which would
/// give every id its own time series).
async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("zerostate_http_requests_total", &labels).increment(1);
    metrics::histogram!("zerostate_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    crate::telemetry::histogram_recorded();
    response
}
