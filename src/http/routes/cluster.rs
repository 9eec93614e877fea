//! Compatibility mode's routes. Worker nodes call the internal ones (`/internal/v1/…`,
//! authenticated by `cluster.service_token` in `X-Service-Token`, kept out of the OpenAPI
//! document): begin a leased task, complete it, fetch a module by hash. Admins list the
//! live worker nodes.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cluster::NodeInfo;
use crate::error::{ApiError, Code};
use crate::http::AppState;
use crate::http::extractors::{ApiJson, Operator, token_matches};
use crate::queue::Lease;
use crate::records::{RunOrder, RunOutput};

/// A worker node: the request carries the configured `cluster.service_token`.
pub struct WorkerNode;

impl FromRequestParts<AppState> for WorkerNode {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let configured = state.cluster_token.expose();
        let presented = parts
            .headers
            .get("x-service-token")
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if !token_matches(presented, configured) {
            tracing::warn!(path = %parts.uri.path(), configured = !configured.is_empty(), "refused a worker node's X-Service-Token");
            return Err(ApiError::new(
                Code::InvalidServiceToken,
                "the X-Service-Token does not match the configured cluster.service_token",
            ));
        }
        Ok(WorkerNode)
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BeginRequest {
    pub lease: Lease,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BeginAnswer {
    /// What to run; `null` when the task must not run (the lease was given back).
    pub order: Option<RunOrder>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CompleteRequest {
    pub lease: Lease,
    pub order: RunOrder,
    pub output: RunOutput,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CompleteAnswer {
    /// False: the lease was lost to another node, and this result was ignored.
    pub applied: bool,
}

/// `GET /internal/v1/ping`: a worker node checks its token at start.
pub async fn ping(_: WorkerNode) -> axum::http::StatusCode {
    axum::http::StatusCode::NO_CONTENT
}

/// A lease as a worker node sends it back: its entry id must be a stream id.
fn checked(lease: &Lease) -> Result<(), ApiError> {
    let Some(claim) = &lease.claim else {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "a worker's lease names its claim",
        ));
    };
    let id = claim.entry.split_once('-');
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match id {
        Some((ms, seq)) if numeric(ms) && numeric(seq) => Ok(()),
        _ => Err(ApiError::new(
            Code::InvalidRequest,
            "the lease's entry is not a stream id",
        )),
    }
}

/// `POST /internal/v1/runs/begin`. A task whose begin fails inside the server is failed, as a
/// local run's would be, rather than handed out again at every lease.
pub async fn begin(
    _: WorkerNode,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<BeginRequest>,
) -> Result<Json<BeginAnswer>, ApiError> {
    checked(&request.lease)?;
    match state.orchestrator.begin(&request.lease).await {
        Ok(order) => Ok(Json(BeginAnswer { order })),
        Err(e) => {
            let id = request.lease.task.task_id;
            Err(state.orchestrator.fail_internally(id, e).await.into())
        }
    }
}

/// `POST /internal/v1/runs/complete`
pub async fn complete(
    _: WorkerNode,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CompleteRequest>,
) -> Result<Json<CompleteAnswer>, ApiError> {
    let CompleteRequest {
        lease,
        order,
        output,
    } = request;
    checked(&lease)?;
    let applied = state.orchestrator.complete(&lease, &order, &output).await?;
    Ok(Json(CompleteAnswer { applied }))
}

/// `GET /internal/v1/blobs/{sha256}`: a module's bytes, checked against their hash.
pub async fn module(
    _: WorkerNode,
    State(state): State<AppState>,
    Path(sha256): Path<String>,
) -> Result<Response, ApiError> {
    let hex = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let gone = || ApiError::new(Code::VersionNotFound, "no module with this sha256");
    if !hex {
        return Err(gone());
    }
    let bytes = match state.marketplace.module(sha256).await {
        Err(e) if e.is_missing_module() => return Err(gone()),
        other => other?,
    };
    Ok(([(header::CONTENT_TYPE, "application/wasm")], bytes).into_response())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkersAnswer {
    /// `embedded` (no worker nodes) or `redis`.
    pub queue: &'static str,
    /// The nodes that run tasks and beat, oldest first.
    pub workers: Vec<NodeInfo>,
}

/// The live worker nodes (compatibility mode); a node silent for three heartbeats is dropped.
#[utoipa::path(get, path = "/api/v1/admin/workers", tag = super::tags::OPERATIONS,
    security(("bearer" = [])),
    responses((status = 200, body = WorkersAnswer)))]
pub async fn workers(
    _: Operator,
    State(state): State<AppState>,
) -> Result<Json<WorkersAnswer>, ApiError> {
    let Some(nodes) = &state.nodes else {
        return Ok(Json(WorkersAnswer {
            queue: "embedded",
            workers: Vec::new(),
        }));
    };
    let workers = nodes
        .list()
        .await
        .map_err(crate::orchestrator::TaskError::from)?;
    Ok(Json(WorkersAnswer {
        queue: "redis",
        workers,
    }))
}

/// The workers part of `/ready`: `null` in embedded mode.
pub async fn ready_workers(state: &AppState) -> serde_json::Value {
    let Some(nodes) = &state.nodes else {
        return serde_json::Value::Null;
    };
    match nodes.list().await {
        Ok(list) => json!({"count": list.len(), "nodes": list}),
        Err(e) => json!({"error": e.to_string()}),
    }
}
