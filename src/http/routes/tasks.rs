//! `/api/v1/tasks`: submit, list, get, stats. Callers only ever see their own tasks.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

use super::{DEFAULT_LIMIT, MAX_LIMIT, parse_bounded, prefer_wait, tags};
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::{ApiJson, AppState, AuthUser};
use crate::orchestrator::{RecentStats, Submission, Submitter, TaskError};
use crate::records::{Page, Priority, QueueDepth, Task, TaskFilter, TaskStatus};

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
    /// All matching tasks, on every page.
    total: u64,
    limit: usize,
    offset: usize,
    /// Pass as `cursor` for the next page; `null` on the last page.
    next_cursor: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskStatsResponse {
    queued: u64,
    running: u64,
    completed: u64,
    failed: u64,
    canceled: u64,
    timed_out: u64,
    total: u64,
    /// Tasks waiting in the server's queue, per priority (all users).
    queue_depth: QueueDepth,
    /// From the caller's runs since the server started.
    recent: RecentStats,
}

/// Submit a task: the auction picks an agent and the task is queued. With `Prefer: wait=N`
/// (N ≤ 60) the answer is the finished task (200) if it ends within N seconds.
#[utoipa::path(post, path = "/api/v1/tasks/submit", tag = tags::TASKS, security(("bearer" = [])), request_body = Submission,
    params(("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N ≤ 60 s for the result"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retries with the same key within 24 h return the first task")),
    responses((status = 200, body = Task, description = "Finished within the `Prefer: wait` time"),
        (status = 202, body = SubmitResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`priority_not_allowed`: critical is for admins or a daily allowance"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "`quota_exceeded`: queued tasks or result bytes per day"),
        (status = 503, body = ErrorBody)))]
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
    let submitter = Submitter {
        id: user.id,
        admin: user.acts_as_admin(&state).await?,
    };
    let task = state
        .orchestrator
        .submit(submitter, sub, idempotency_key)
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
        status: task.state.status,
        agent_id: task.state.agent_id,
        agent_name: task.state.agent_name,
        price: task.state.price,
    };
    Ok((StatusCode::ACCEPTED, ApiJson(accepted)).into_response())
}

/// The caller's tasks, newest first, optionally filtered.
#[utoipa::path(get, path = "/api/v1/tasks", tag = tags::TASKS, security(("bearer" = [])),
    params(
        ("status" = Option<TaskStatus>, Query), ("priority" = Option<Priority>, Query), ("agent_id" = Option<Uuid>, Query),
        ("limit" = Option<usize>, Query, description = "1..=100, default 20"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("offset" = Option<usize>, Query, description = "Matches to skip (prefer `cursor`)"),
    ),
    responses((status = 200, body = TaskListResponse), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<ApiJson<TaskListResponse>, ApiError> {
    let mut filter = TaskFilter::default();
    let mut page = Page {
        before: None,
        offset: 0,
        limit: DEFAULT_LIMIT,
    };
    let invalid = |name: &str, value: &str| {
        ApiError::new(
            Code::InvalidRequest,
            format!("`{value}` is not a valid {name}"),
        )
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => page.limit = parse_bounded("limit", &value, 1, MAX_LIMIT)?,
            "offset" => page.offset = parse_bounded("offset", &value, 0, usize::MAX)?,
            "cursor" => page.before = Some(decode_cursor(&value)?),
            "status" => {
                filter.status = Some(parse_enum(&value).ok_or_else(|| invalid("status", &value))?)
            }
            "priority" => {
                filter.priority =
                    Some(Priority::parse(&value).ok_or_else(|| invalid("priority", &value))?)
            }
            "agent_id" => {
                filter.agent_id =
                    Some(Uuid::parse_str(&value).map_err(|_| invalid("agent id", &value))?)
            }
            _ => {}
        }
    }
    let found = state.orchestrator.list(user.id, filter, page).await?;
    Ok(ApiJson(TaskListResponse {
        tasks: found.tasks,
        total: found.total,
        limit: page.limit,
        offset: page.offset,
        next_cursor: found.next.map(encode_cursor),
    }))
}

/// Parses a lowercase enum value the way the JSON body would.
fn parse_enum<T: serde::de::DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
}

/// Cursors are opaque to clients: `t` and the submit sequence in hex.
fn encode_cursor(seq: u64) -> String {
    format!("t{seq:x}")
}

fn decode_cursor(cursor: &str) -> Result<u64, ApiError> {
    cursor
        .strip_prefix('t')
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidCursor,
                "the cursor is not one this server issued; start again without it",
            )
        })
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
    with_task_id(path, |id| state.orchestrator.task(user.id, id)).await
}

/// Cancel one of the caller's tasks: a queued one at once, a running one after it stops.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = tags::TASKS, security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<ApiJson<Task>, ApiError> {
    with_task_id(path, |id| state.orchestrator.cancel(user.id, id)).await
}

/// Parses the `{id}` of a task route and runs `op`; an unparsable id (even one that is not
/// UTF-8) and an unknown or foreign task get the same 404.
async fn with_task_id<F>(
    path: Result<Path<String>, PathRejection>,
    op: impl FnOnce(Uuid) -> F,
) -> Result<ApiJson<Task>, ApiError>
where
    F: std::future::Future<Output = Result<Task, TaskError>>,
{
    let id = path.map(|Path(id)| id).unwrap_or_default();
    let not_found = || ApiError::new(Code::TaskNotFound, format!("no task with id `{id}`"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    match op(uuid).await {
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
        canceled: c.canceled,
        timed_out: c.timed_out,
        total: c.total(),
        queue_depth: state.orchestrator.queue_depth(),
        recent: state.orchestrator.recent_stats(user.id),
    }))
}
