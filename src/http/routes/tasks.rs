//! `/api/v1/tasks`: submit, list, get, stats. Callers only ever see their own tasks.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::agents::parse_bounded;
use super::{DEFAULT_LIMIT, MAX_LIMIT, tags};
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::{ApiJson, AppState, AuthUser};
use crate::orchestrator::{Submission, Task, TaskError, TaskStatus};

#[derive(Serialize, utoipa::ToSchema)]
pub struct SubmitResponse {
    task_id: Uuid,
    status: TaskStatus,
    /// The auction winner.
    agent_id: Uuid,
    agent_name: String,
    price: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskListResponse {
    tasks: Vec<Task>,
    total: u64,
    limit: usize,
    offset: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskStatsResponse {
    queued: u64,
    running: u64,
    completed: u64,
    failed: u64,
    total: u64,
}

/// Longest `Prefer: wait=N` honoured.
const MAX_WAIT_SECS: u64 = 60;

/// Submit a task: the auction picks an agent and the task is queued. With `Prefer: wait=N`
/// (N ≤ 60) the answer is the finished task (200) if it ends within N seconds.
#[utoipa::path(post, path = "/api/v1/tasks/submit", tag = tags::TASKS, security(("bearer" = [])), request_body = Submission,
    params(("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N ≤ 60 s for the result"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key within 24 h return the first task")),
    responses((status = 200, body = Task, description = "Finished within the `Prefer: wait` time"),
        (status = 202, body = SubmitResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ApiJson(sub): ApiJson<Submission>,
) -> Result<Response, ApiError> {
    let wait = prefer_wait(&headers)?;
    let events = wait.map(|_| state.orchestrator.finished_events());
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::new(
                        Code::InvalidRequest,
                        "Idempotency-Key must be visible ASCII",
                    )
                })?
                .to_owned(),
        ),
        None => None,
    };
    let task = state
        .orchestrator
        .submit(user.id, sub, idempotency_key)
        .await?;
    if let (Some(secs), Some(events)) = (wait, events)
        && let Some(done) = state
            .orchestrator
            .wait_finished(events, user.id, task.id, Duration::from_secs(secs))
            .await?
    {
        let applied = [(
            HeaderName::from_static("preference-applied"),
            format!("wait={secs}"),
        )];
        return Ok((StatusCode::OK, applied, ApiJson(done)).into_response());
    }
    let accepted = SubmitResponse {
        task_id: task.id,
        status: task.status,
        agent_id: task.agent_id,
        agent_name: task.agent_name,
        price: task.price,
    };
    Ok((StatusCode::ACCEPTED, ApiJson(accepted)).into_response())
}

/// The `wait=N` preference of a `Prefer` header (RFC 7240), if any. Other preferences are
/// ignored, as the RFC asks.
fn prefer_wait(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    for value in headers.get_all("prefer") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::new(Code::InvalidRequest, "Prefer header is not ASCII"))?;
        for preference in value.split([',', ';']) {
            if let Some((name, secs)) = preference.split_once('=')
                && name.trim().eq_ignore_ascii_case("wait")
            {
                return match secs.trim().parse::<u64>() {
                    Ok(n) if n <= MAX_WAIT_SECS => Ok(Some(n)),
                    _ => Err(ApiError::new(
                        Code::InvalidRequest,
                        format!(
                            "Prefer: wait must be a whole number of seconds between 0 and {MAX_WAIT_SECS}"
                        ),
                    )),
                };
            }
        }
    }
    Ok(None)
}

/// The caller's tasks, newest first.
#[utoipa::path(get, path = "/api/v1/tasks", tag = tags::TASKS, security(("bearer" = [])),
    params(("limit" = Option<usize>, Query, description = "1..=100, default 20"), ("offset" = Option<usize>, Query)),
    responses((status = 200, body = TaskListResponse), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<ApiJson<TaskListResponse>, ApiError> {
    let (mut limit, mut offset) = (DEFAULT_LIMIT, 0);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => limit = parse_bounded("limit", &value, 1, MAX_LIMIT)?,
            "offset" => offset = parse_bounded("offset", &value, 0, usize::MAX)?,
            _ => {}
        }
    }
    let (tasks, total) = state.orchestrator.list(user.id, limit, offset).await?;
    Ok(ApiJson(TaskListResponse {
        tasks,
        total,
        limit,
        offset,
    }))
}

/// One of the caller's tasks.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = tags::TASKS, security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<ApiJson<Task>, ApiError> {
    // A path that is not valid UTF-8 cannot name anything: same answer as an unknown id.
    let id = path.map(|Path(id)| id).unwrap_or_default();
    let not_found = || ApiError::new(Code::TaskNotFound, format!("no task with id `{id}`"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    match state.orchestrator.task(user.id, uuid).await {
        Ok(task) => Ok(ApiJson(task)),
        Err(TaskError::NotFound) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// Counts of the caller's tasks by status.
#[utoipa::path(get, path = "/api/v1/tasks/stats", tag = tags::TASKS, security(("bearer" = [])),
    responses((status = 200, body = TaskStatsResponse)))]
pub async fn stats(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<ApiJson<TaskStatsResponse>, ApiError> {
    let c = state.orchestrator.counts(Some(user.id)).await?;
    Ok(ApiJson(TaskStatsResponse {
        queued: c.queued,
        running: c.running,
        completed: c.completed,
        failed: c.failed,
        total: c.total(),
    }))
}
