//! Operations routes: `/health`, `/ready`, `/metrics`, `/api/v1/openapi.json`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::json;

use super::tags;
use crate::agents::IndexHealth;
use crate::breaker::Breakers;
use crate::http::{ApiJson, AppState};
use crate::records::{Priority, TaskStatus};

#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthResponse {
    /// `ok`, or `degraded` when a check fails (a dependency's breaker open included).
    status: &'static str,
    version: &'static str,
    uptime_s: u64,
    #[schema(value_type = Object)]
    checks: serde_json::Value,
}

/// Liveness and component checks.
#[utoipa::path(get, path = "/health", tag = tags::OPERATIONS,
    responses((status = 200, body = HealthResponse), (status = 503, body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> (StatusCode, ApiJson<HealthResponse>) {
    let store = match state.orchestrator.counts(None).await {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("error: {e}"),
    };
    let depth = state.orchestrator.queue_depth().total();
    let index = state.marketplace.index_health();
    let ok = store == "ok" && index.in_step() && !state.breakers.any_open();
    let body = HealthResponse {
        status: if ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: state.started_at.elapsed().as_secs(),
        checks: json!({
            "store": store,
            "search_index": search_check(&index),
            "queue": {"status": "ok", "depth": depth},
            "websocket": {"status": "ok", "connections": state.hub.stats().current_connections},
            "dependencies": dependencies(&state.breakers),
        }),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, ApiJson(body))
}

/// The search index's state: `ok`, or `behind` with what waits for the healer.
fn search_check(index: &IndexHealth) -> serde_json::Value {
    if index.in_step() {
        json!({"status": "ok"})
    } else {
        // The error itself (paths of the data dir) is in the server log, not here.
        json!({"status": "behind", "pending": index.pending, "rebuild": index.rebuild})
    }
}

/// Each outside dependency's breaker: `{"s3": {"status": "open", "retry_after_ms": 812}}`
/// (`closed`, `open` or `half_open`); empty when everything is embedded.
fn dependencies(breakers: &Breakers) -> serde_json::Value {
    let mut checks = serde_json::Map::new();
    for breaker in breakers.all() {
        let mut check = json!({"status": breaker.state().as_str()});
        if let Some(wait) = breaker.retry_after() {
            check["retry_after_ms"] = json!(wait.as_millis() as u64);
        }
        checks.insert(breaker.dependency().to_owned(), check);
    }
    serde_json::Value::Object(checks)
}

/// Readiness: 200 once every ready agent's compiled code is loaded (the start-up warm-up) and
/// while the server accepts work; 503 before, and once it is shutting down. The search index's
/// state is reported beside: an index behind the store heals itself, and serves meanwhile.
/// So are the dependencies' breakers: with one open the node still serves reads and runs the
/// modules it holds, so it stays ready.
#[utoipa::path(get, path = "/ready", tag = tags::OPERATIONS, responses((status = 200), (status = 503)))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let warmup = *state.marketplace.warmup().borrow();
    let agents =
        json!({"loaded": warmup.loaded, "compiled": warmup.compiled, "total": warmup.total});
    let (status, word) = if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    } else if !warmup.done {
        (StatusCode::SERVICE_UNAVAILABLE, "warming_up")
    } else {
        (StatusCode::OK, "ready")
    };
    let search = search_check(&state.marketplace.index_health());
    let workers = super::cluster::ready_workers(&state).await;
    (
        status,
        ApiJson(json!({
            "status": word,
            "agents": agents,
            "search_index": search,
            "dependencies": dependencies(&state.breakers),
            "workers": workers,
        })),
    )
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = tags::OPERATIONS, responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let depth = state.orchestrator.queue_depth();
    for priority in Priority::ALL {
        metrics::gauge!("zerostate_queue_depth", "priority" => priority.as_str())
            .set(depth.of(priority) as f64);
    }
    if let Ok(counts) = state.orchestrator.counts(None).await {
        for status in TaskStatus::ALL {
            metrics::gauge!("zerostate_tasks", "status" => status.as_str())
                .set(counts.get(status) as f64);
        }
    }
    if let Some(nodes) = &state.nodes
        && let Ok(live) = nodes.list().await
    {
        metrics::gauge!("zerostate_worker_nodes").set(live.len() as f64);
    }
    // Reading a breaker's state moves an open one past its cool-down, and its gauge with it.
    for breaker in state.breakers.all() {
        breaker.state();
    }
    metrics::gauge!("zerostate_websocket_connections")
        .set(state.hub.stats().current_connections as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = tags::OPERATIONS, responses((status = 200, content_type = "application/json")))]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}
