//! `/api/v1/auctions`: what an auction would decide, without submitting a task.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::tags;
use crate::error::{ApiError, ErrorBody};
use crate::http::{ApiJson, AppState, AuthUser};
use crate::records::Bid;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    #[serde(default)]
    capabilities: Vec<String>,
    budget: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PreviewResponse {
    /// Best first; the first would win. At most 10.
    bids: Vec<Bid>,
}

/// Rank the agents a task with these requirements would get.
#[utoipa::path(post, path = "/api/v1/auctions/preview", tag = tags::TASKS, security(("bearer" = [])), request_body = PreviewRequest,
    responses((status = 200, body = PreviewResponse), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiJson(req): ApiJson<PreviewRequest>,
) -> Result<ApiJson<PreviewResponse>, ApiError> {
    let bids = state.orchestrator.preview(&req.capabilities, req.budget)?;
    Ok(ApiJson(PreviewResponse { bids }))
}
