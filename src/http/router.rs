//! Route table, OpenAPI generation and the middleware stack (metrics, request logs, panics).

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::access::{self, Needs};
use super::limits;
use super::routes::{agents, analytics, auctions, cluster, health, tasks, users, ws};
use super::ui;
use crate::error::{ApiError, Code};
use crate::telemetry::LogBudget;

/// Largest JSON body: a task input of 4 MiB plus its envelope.
const JSON_BODY_LIMIT: usize = 5 * 1024 * 1024;
/// Room for an upload's form fields and multipart framing beside its module.
pub const FORM_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// The API routes and the OpenAPI document generated from them.
pub fn routes(max_binary_bytes: usize) -> (Router<AppState>, OpenApi) {
    let upload = OpenApiRouter::new()
        .routes(routes!(agents::upload))
        .routes(routes!(agents::register))
        .routes(routes!(
            agents::add_version,
            agents::replace_binary,
            agents::download,
            agents::delete_version
        ))
        // The module plus room for the other form fields.
        .layer(DefaultBodyLimit::max(
            max_binary_bytes + FORM_OVERHEAD_BYTES as usize,
        ));
    let (router, mut openapi) = OpenApiRouter::new()
        .routes(routes!(users::register))
        .routes(routes!(users::login))
        .routes(routes!(users::logout))
        .routes(routes!(users::me, users::update_me))
        .routes(routes!(users::change_password))
        .routes(routes!(users::create_api_key, users::api_keys))
        .routes(routes!(users::revoke_api_key))
        .routes(routes!(agents::list))
        .routes(routes!(agents::search))
        .routes(routes!(
            agents::get,
            agents::patch,
            agents::put,
            agents::delete
        ))
        .routes(routes!(agents::signed_url))
        .routes(routes!(agents::versions))
        .routes(routes!(agents::rollback))
        .routes(routes!(agents::post_review, agents::reviews))
        .routes(routes!(agents::validate_input))
        .routes(routes!(tasks::submit))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::stats))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::cancel))
        .routes(routes!(auctions::preview))
        .routes(routes!(ws::connect))
        .routes(routes!(ws::stats))
        .routes(routes!(ws::broadcast))
        .routes(routes!(ws::send))
        .routes(routes!(ws::send_to_path))
        .routes(routes!(analytics::report))
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi))
        .routes(routes!(cluster::workers))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .merge(upload)
        .split_for_parts();
    let router = router.merge(internal_routes());
    document_rate_limits(&mut openapi);
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
                    .bearer_format("JWT session token, or an API key (zs_…)")
                    .build(),
            ),
        );
    document_common_answers(&mut openapi);
    (router, openapi)
}

/// Largest body of an internal route: a run's output (stdout and stderr up to their limits,
/// in base64) with its order.
const INTERNAL_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The routes worker nodes call (not in the OpenAPI document: they are not the public API).
fn internal_routes() -> Router<AppState> {
    use axum::routing::{get, post};
    Router::new()
        .route("/internal/v1/ping", get(cluster::ping))
        .route("/internal/v1/runs/begin", post(cluster::begin))
        .route("/internal/v1/runs/complete", post(cluster::complete))
        .route("/internal/v1/blobs/{sha256}", get(cluster::module))
        .layer(DefaultBodyLimit::max(INTERNAL_BODY_LIMIT))
}

/// Adds the 429 of the rate limits to every operation: sign-in and sign-up count per address,
/// and any request that carries a credential counts per user, whatever its route.
fn document_rate_limits(openapi: &mut OpenApi) {
    let integer = || ObjectBuilder::new().schema_type(Type::Integer).build();
    let text = || ObjectBuilder::new().schema_type(Type::String).build();
    let too_many = ResponseBuilder::new()
        .description(
            "Too many requests (`rate_limited`), or a locked email on sign-in \
             (`too_many_attempts`)",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(integer()))
                .description(Some("Whole seconds to wait"))
                .build(),
        )
        .header(
            "RateLimit-Policy",
            HeaderBuilder::new()
                .schema(Some(text()))
                .description(Some("draft-ietf-httpapi-ratelimit-headers-11"))
                .build(),
        )
        .header(
            "RateLimit",
            HeaderBuilder::new()
                .schema(Some(text()))
                .description(Some("draft-ietf-httpapi-ratelimit-headers-11"))
                .build(),
        )
        .build();
    // Every operation: a request that carries a credential counts against that credential's
    // limit whatever the route (`/metrics` and the WebSocket upgrade included), and sign-in
    // and sign-up count per address.
    for (_, item) in openapi.paths.paths.iter_mut() {
        for (_, operation) in operations(item) {
            operation
                .responses
                .responses
                .insert("429".into(), too_many.clone().into());
        }
    }
}

/// Adds the error answers that come from the shared extractors rather than from a handler, so
/// no route's annotation can leave them out: 401 and 403 where a credential is asked for (403
/// unless every credential passes, see [`access`]), and 400, 408, 413 and 415 where a body is
/// read.
/// An answer a route documents itself keeps its own description.
fn document_common_answers(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            let mut answers = Vec::new();
            if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                answers.push((
                    "401",
                    "No credential, or one that is invalid, expired or revoked",
                ));
                if access::needs(&method, path) != Needs::AnyCredential {
                    answers.push(("403", "The credential may not do this"));
                }
            }
            if is_multipart(operation) {
                answers.push((
                    "503",
                    "Too many uploads are arriving at once (`too_many_uploads`); retry",
                ));
            }
            if operation.request_body.is_some() {
                answers.extend([
                    ("400", "The body is not valid"),
                    (
                        "408",
                        "The body arrived slower than the minimum rate ([http])",
                    ),
                    ("413", "The body is too large"),
                    ("415", "The body is not of the documented content type"),
                ]);
            }
            for (status, description) in answers {
                let error = Content::new(Some(Ref::from_schema_name("ErrorBody")));
                let response = ResponseBuilder::new()
                    .description(description)
                    .content("application/json", error)
                    .build();
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| response.into());
            }
        }
    }
}

/// Whether `operation` takes a multipart body: an upload, spooled to disk.
fn is_multipart(operation: &Operation) -> bool {
    operation
        .request_body
        .as_ref()
        .is_some_and(|body| match body {
            utoipa::openapi::RefOr::T(body) => body.content.contains_key("multipart/form-data"),
            utoipa::openapi::RefOr::Ref(_) => false,
        })
}

/// The operations of a path item with their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::PUT, &mut item.put),
        (Method::POST, &mut item.post),
        (Method::DELETE, &mut item.delete),
        (Method::PATCH, &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

/// The complete application router.
pub fn router(routes: Router<AppState>, state: AppState) -> Router {
    routes
        // A route layer runs after routing, so it sees the matched route template. The
        // limits run inside the metrics, which count their 429s.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ))
        .route_layer(middleware::from_fn(record_metrics))
        .fallback(ui::serve)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_panic| {
            tracing::error!("handler panicked");
            ApiError::new(Code::Internal, "internal error; see the server log").into_response()
        }))
        // Outside the panic catcher, so a panic is logged with its request.
        .layer(middleware::from_fn(log_request))
        .layer(middleware::map_response(nosniff))
        .with_state(state)
}

/// `X-Content-Type-Options: nosniff` on every response: a browser renders each one as its
/// declared type only, never a JSON body, an error or an agent's output sniffed as HTML.
async fn nosniff(mut response: Response) -> Response {
    response.headers_mut().insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    response
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
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    ROUTE_METRICS.record(method, route, response.status().as_u16(), started.elapsed());
    response
}

/// The method as a metric label: the standard ones by name, any other token as `other`, so
/// a client inventing methods cannot mint time series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

static ROUTE_METRICS: LazyLock<RouteMetrics> = LazyLock::new(|| {
    // Series registered before the recorder is installed would stay disabled.
    crate::telemetry::metrics_handle();
    RouteMetrics::default()
});

/// The request counter and latency histogram of every (method, route, status) seen, each
/// registered with the recorder once: looking a labelled series up in the recorder costs
/// string allocations and hashing on every request, a lookup here neither.
#[derive(Default)]
struct RouteMetrics {
    /// Route template → its series. Bounded: templates and methods are fixed sets, statuses
    /// three digits.
    routes: RwLock<HashMap<String, Vec<RouteSeries>>>,
}

struct RouteSeries {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    latency: metrics::Histogram,
}

impl RouteSeries {
    fn record(&self, elapsed: Duration) {
        self.requests.increment(1);
        self.latency.record(elapsed.as_secs_f64());
        crate::telemetry::histogram_recorded();
    }
}

impl RouteMetrics {
    fn record(&self, method: &'static str, route: &str, status: u16, elapsed: Duration) {
        let find = |series: &[RouteSeries]| {
            series
                .iter()
                .position(|s| s.method == method && s.status == status)
        };
        {
            let routes = self.routes.read().expect("route metrics");
            if let Some(series) = routes.get(route)
                && let Some(i) = find(series)
            {
                return series[i].record(elapsed);
            }
        }
        let mut routes = self.routes.write().expect("route metrics");
        let series = routes.entry(route.to_owned()).or_default();
        let i = find(series).unwrap_or_else(|| {
            let labels = [
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ];
            series.push(RouteSeries {
                method,
                status,
                requests: metrics::counter!("zerostate_http_requests_total", &labels),
                latency: metrics::histogram!("zerostate_http_request_duration_seconds", &labels),
            });
            series.len() - 1
        });
        series[i].record(elapsed);
    }
}

/// Budget of the refusal log lines.
static REFUSALS_LOGGED: LogBudget = LogBudget::every(Duration::from_secs(10));

/// Logs every request at `debug`, an internal error (500, a panic included) at `error`, and
/// expected refusals (other 5xx: `queue_full`, `shutting_down`) at `warn` at most once per
/// 10 s, with method, path (never the query: a WebSocket URL's query holds a session token),
/// status and latency. No span per request: at 10,000 requests/s opening and closing one cost
/// 3 % of the server's CPU, for context that only a failing request needs, and gets here.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(%method, path = uri.path(), status, latency_ms, "request failed");
    } else if response.status().is_server_error() {
        // Expected refusals (queue_full, shutting_down): counted by route and status in
        // /metrics, logged at most once per interval.
        if let Some(suppressed) = REFUSALS_LOGGED.allow() {
            tracing::warn!(%method, path = uri.path(), status, suppressed, "request refused (logged once per 10 s)");
        }
    } else {
        tracing::debug!(%method, path = uri.path(), status, latency_ms, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_metric_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"FROBNICATE").unwrap();
        assert_eq!(method_label(&invented), "other");
    }

    #[test]
    fn every_operation_documents_the_answers_of_the_shared_extractors() {
        let (_, mut openapi) = routes(1024);
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                let documented = |status: &str| operation.responses.responses.contains_key(status);
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                assert!(!secured || documented("401"), "{method} {path} lacks 401");
                if operation.request_body.is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(documented(status), "{method} {path} lacks {status}");
                    }
                }
            }
        }
        // Every credential may read its own account: no 403 to document.
        let me = openapi.paths.paths["/api/v1/users/me"]
            .get
            .as_ref()
            .unwrap();
        assert!(!me.responses.responses.contains_key("403"));
    }
}
