//! `/api/v1/agents`: upload and register (multipart), list and search, get, edit, delete,
//! versions and downloads, reviews, input checks.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{DEFAULT_LIMIT, MAX_LIMIT, parse_bounded, path_id, prefer_wait, tags};
use crate::agents::manifest::RawManifest;
use crate::agents::{AgentQuery, Caller, Download, Edit, SignedDownload, Sort};
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::spool::{Loaded, Spool, SpoolError, SpoolFile};
use crate::http::{ApiJson, AppState, AuthUser, access};
use crate::records::{Agent, AgentStatus, AgentVersion, Build, Rejection, Review};

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadResponse {
    agent_id: Uuid,
    name: String,
    version: String,
    binary_hash: String,
    binary_size: u64,
    /// `validating` unless `Prefer: wait` waited for the build's end.
    status: AgentStatus,
    rejection: Option<Rejection>,
    build: Option<Build>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<Agent> for UploadResponse {
    fn from(agent: Agent) -> Self {
        Self {
            agent_id: agent.id,
            name: agent.name,
            version: agent.version,
            binary_hash: agent.binary_hash,
            binary_size: agent.binary_size,
            status: agent.status,
            rejection: agent.rejection,
            build: agent.build,
            created_at: agent.created_at,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Facets {
    /// Matching agents per capability, over every match.
    capabilities: BTreeMap<String, usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentListResponse {
    /// Without `argv` and `env` (see [`public_view`]): a page is shared by every caller.
    #[schema(value_type = Vec<Agent>)]
    agents: Vec<Value>,
    total: usize,
    limit: usize,
    offset: usize,
    facets: Facets,
}

/// Multipart form of an upload (documentation only; parsed by hand).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The WASI command module.
    #[schema(value_type = String, format = Binary)]
    wasm_binary: Vec<u8>,
    /// The whole manifest as JSON (`manifest.json`, see docs/agents.md): name, description,
    /// version, capabilities, price, limits, argv, env, input_schema, metadata. Fields sent
    /// separately override it.
    manifest: Option<String>,
    name: String,
    description: Option<String>,
    /// Semver; default 1.0.0.
    version: Option<String>,
    /// Repeated, or one comma-separated field.
    capabilities: Vec<String>,
    /// Price per execution, ≥ 0.
    price: Option<f64>,
}

/// Multipart form of a registration in the seed's shape (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RegisterForm {
    /// JSON `{name, description, capabilities[], pricing: {per_execution, currency},
    /// resources: {memory_limit, timeout}, input_schema?, metadata?, version?}`.
    agent: String,
    #[schema(value_type = String, format = Binary)]
    wasm_binary: Vec<u8>,
}

/// Multipart form of a new version (documentation only).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct VersionForm {
    #[schema(value_type = String, format = Binary)]
    wasm_binary: Vec<u8>,
    /// Semver, new for this agent (POST only; PUT keeps the current version's).
    version: Option<String>,
}

/// The parts of a multipart upload: the module (on disk), and every text field in order.
struct Form {
    wasm: Option<SpoolFile>,
    texts: Vec<(String, String)>,
}

/// Reads a multipart body, the module to a spool file; `fields` are the text fields this
/// route accepts.
async fn read_form(
    spool: &Spool,
    owner: Uuid,
    headers: &HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
    max: usize,
    fields: &[&str],
) -> Result<Form, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "expected `Content-Type: multipart/form-data`",
        ));
    }
    let mut multipart = multipart?;
    let mut form = Form {
        wasm: None,
        texts: Vec::new(),
    };
    let mut text_budget = MAX_TEXT_BYTES;
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "wasm_binary" {
            let mut file = spool.file(owner).await.map_err(|e| match e {
                SpoolError::Busy | SpoolError::BusyForYou => {
                    ApiError::new(Code::TooManyUploads, e.to_string()).with_retry_after(1)
                }
                SpoolError::Io(e) => spool_failed(e),
            })?;
            while let Some(chunk) = field.chunk().await? {
                if file.written() + chunk.len() as u64 > max as u64 {
                    return Err(ApiError::new(
                        Code::PayloadTooLarge,
                        format!("wasm_binary is larger than the limit of {max} bytes"),
                    ));
                }
                file.write(&chunk).await.map_err(spool_failed)?;
            }
            form.wasm = Some(file);
        } else if fields.contains(&name.as_str()) {
            let text = read_text(&mut field, &mut text_budget).await?;
            form.texts.push((name, text));
        } else {
            return Err(ApiError::new(
                Code::InvalidRequest,
                format!("unknown form field `{name}`"),
            ));
        }
    }
    Ok(form)
}

/// Most bytes of an upload's text fields together (the manifest with its schema included):
/// only the module goes to disk, so the rest must stay small.
const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// Reads a text field, taking its length from `budget`; 413 beyond it.
async fn read_text(
    field: &mut axum::extract::multipart::Field<'_>,
    budget: &mut usize,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        *budget = budget.checked_sub(chunk.len()).ok_or_else(|| {
            ApiError::new(
                Code::PayloadTooLarge,
                format!("the text fields are larger than {MAX_TEXT_BYTES} bytes together"),
            )
        })?;
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::new(Code::MalformedMultipart, "a text field is not valid UTF-8"))
}

/// Publishes an uploaded module; its place in memory is freed once it is stored.
async fn publish(
    state: &AppState,
    user: AuthUser,
    raw: RawManifest,
    wasm: Loaded,
) -> Result<Agent, ApiError> {
    let caller = caller(state, user).await?;
    let agent = state
        .marketplace
        .publish(&caller, raw, wasm.bytes.clone())
        .await;
    drop(wasm);
    Ok(agent?)
}

fn spool_failed(error: std::io::Error) -> ApiError {
    ApiError::internal(&error)
}

impl Form {
    /// The module, read into memory once a place there is free (see [`Spool`]).
    async fn wasm(&mut self) -> Result<Loaded, ApiError> {
        let file = self.wasm.take().ok_or_else(|| {
            ApiError::new(Code::InvalidRequest, "missing file field `wasm_binary`")
        })?;
        file.load().await.map_err(spool_failed)
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.texts
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The caller as the marketplace sees them: display name and role from their account.
async fn caller(state: &AppState, user: AuthUser) -> Result<Caller, ApiError> {
    let account = state
        .accounts
        .user(user.id)
        .await?
        .ok_or_else(|| ApiError::new(Code::InvalidToken, "the account no longer exists"))?;
    let name = match account.full_name.trim() {
        "" => account
            .email
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned(),
        name => name.to_owned(),
    };
    Ok(Caller {
        id: user.id,
        name,
        admin: user.admin_in(&account),
    })
}

/// The agent id of the path: a malformed one names no agent.
fn agent_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    path_id(path, Code::AgentNotFound, "agent")
}

/// `201 Created` with `Location`, after waiting for the build if `Prefer: wait` asked.
async fn created(
    state: &AppState,
    mut agent: Agent,
    version: Option<String>,
    wait: Option<u64>,
) -> Result<(StatusCode, HeaderMap, Agent), ApiError> {
    let mut headers = HeaderMap::new();
    let location = format!("/api/v1/agents/{}", agent.id);
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("a path is a header value"),
    );
    if let Some(secs) = wait {
        agent = state
            .marketplace
            .wait_built(agent.id, version, Duration::from_secs(secs))
            .await?;
        headers.insert(
            HeaderName::from_static("preference-applied"),
            HeaderValue::from_str(&format!("wait={secs}")).expect("ASCII"),
        );
    }
    Ok((StatusCode::CREATED, headers, agent))
}

/// Upload an agent. It answers once the module's declarations are checked and its bytes are
/// stored (status `validating`); the bodies are validated and the module compiled in the
/// background (`compiling`, then `ready` or `rejected`). With `Prefer: wait=N` (N ≤ 60) the
/// answer waits up to N seconds for the build's end.
#[utoipa::path(post, path = "/api/v1/agents/upload", tag = tags::AGENTS, security(("bearer" = [])),
    params(("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N ≤ 60 s for the build to end")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = UploadResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "`too_many_uploads`, or `dependency_unavailable` (modules in S3 and S3 down; `Retry-After`)", body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, HeaderMap, ApiJson<UploadResponse>), ApiError> {
    let wait = prefer_wait(&headers)?;
    let max = state.marketplace.max_binary_bytes();
    let fields = [
        "manifest",
        "name",
        "description",
        "version",
        "capabilities",
        "price",
    ];
    let mut form = read_form(&state.spool, user.id, &headers, multipart, max, &fields).await?;
    let wasm = form.wasm().await?;
    // Separate fields override the `manifest` part, whatever the order of the parts.
    let mut raw = match form.text("manifest") {
        Some(text) => serde_json::from_str::<RawManifest>(text).map_err(|e| {
            ApiError::new(Code::InvalidRequest, format!("manifest is not valid: {e}"))
        })?,
        None => RawManifest::default(),
    };
    for (name, text) in &form.texts {
        match name.as_str() {
            "name" => raw.name = Some(text.clone()),
            "description" => raw.description = Some(text.clone()),
            "version" => raw.version = Some(text.clone()),
            "price" => {
                let price = text.trim().parse::<f64>().map_err(|_| {
                    ApiError::new(
                        Code::InvalidRequest,
                        format!("price `{}` is not a number", text.trim()),
                    )
                })?;
                raw.price = Some(price);
            }
            _ => {}
        }
    }
    let capabilities: Vec<String> = form
        .texts
        .iter()
        .filter(|(n, _)| n == "capabilities")
        .map(|(_, v)| v.clone())
        .collect();
    if !capabilities.is_empty() {
        raw.capabilities = capabilities;
    }
    let agent = publish(&state, user, raw, wasm).await?;
    let (status, headers, agent) = created(&state, agent, None, wait).await?;
    Ok((status, headers, ApiJson(agent.into())))
}

/// Register an agent in the seed's shape: a multipart `agent` JSON field and `wasm_binary`.
/// Answers the agent record; otherwise as `POST /api/v1/agents/upload`.
#[utoipa::path(post, path = "/api/v1/agents/register", tag = tags::AGENTS, security(("bearer" = [])),
    params(("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N ≤ 60 s for the build to end")),
    request_body(content = RegisterForm, content_type = "multipart/form-data"),
    responses((status = 201, body = Agent), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, HeaderMap, ApiJson<Agent>), ApiError> {
    let wait = prefer_wait(&headers)?;
    let max = state.marketplace.max_binary_bytes();
    let mut form = read_form(&state.spool, user.id, &headers, multipart, max, &["agent"]).await?;
    let wasm = form.wasm().await?;
    let agent = form
        .text("agent")
        .ok_or_else(|| ApiError::new(Code::InvalidRequest, "missing form field `agent` (JSON)"))?;
    let agent: Value = serde_json::from_str(agent).map_err(|e| {
        ApiError::new(
            Code::MalformedJson,
            format!("field `agent` is not JSON: {e}"),
        )
    })?;
    let raw =
        RawManifest::from_seed(agent).map_err(|e| ApiError::new(Code::InvalidRequest, e.0))?;
    let agent = publish(&state, user, raw, wasm).await?;
    let (status, headers, agent) = created(&state, agent, None, wait).await?;
    Ok((status, headers, ApiJson(agent)))
}

/// Fields of an agent that only its owner and admins see: the manifest's `argv` and `env`,
/// where owners put tokens and endpoints for their agent.
const PRIVATE_FIELDS: [&str; 2] = ["argv", "env"];

/// An agent as everyone may see it: without [`PRIVATE_FIELDS`] (absent, not emptied, so
/// nobody takes them for empty).
fn public_view(agent: &Agent) -> Value {
    let mut value = serde_json::to_value(agent).expect("agents serialise");
    if let Value::Object(fields) = &mut value {
        for field in PRIVATE_FIELDS {
            fields.remove(field);
        }
    }
    value
}

/// Listing parameters of `GET /api/v1/agents`.
fn agent_query(query: &str, me: Uuid) -> Result<AgentQuery, ApiError> {
    let mut q = AgentQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    let number = |name: &str, value: &str| -> Result<f64, ApiError> {
        value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .ok_or_else(|| ApiError::new(Code::InvalidRequest, format!("{name} must be a number")))
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "q" | "query" => q.q = Some(value.into_owned()),
            "capability" | "capabilities" => q.filter.capabilities.extend(
                value
                    .split(',')
                    .map(|c| c.trim().to_lowercase())
                    .filter(|c| !c.is_empty()),
            ),
            "min_price" => q.filter.min_price = Some(number("min_price", &value)?),
            "max_price" => q.filter.max_price = Some(number("max_price", &value)?),
            "min_rating" => {
                let r = number("min_rating", &value)?;
                if !(0.0..=5.0).contains(&r) {
                    return Err(ApiError::new(
                        Code::InvalidRequest,
                        "min_rating must be between 0 and 5",
                    ));
                }
                q.filter.min_rating = Some(r);
            }
            "status" => {
                q.filter.status = Some(match value.trim() {
                    "validating" => AgentStatus::Validating,
                    "compiling" => AgentStatus::Compiling,
                    "ready" => AgentStatus::Ready,
                    "rejected" => AgentStatus::Rejected,
                    other => {
                        return Err(ApiError::new(
                            Code::InvalidRequest,
                            format!(
                                "status `{other}` is not one of validating, compiling, ready, rejected"
                            ),
                        ));
                    }
                })
            }
            "owner" | "owner_id" => {
                q.filter.owner = Some(match value.trim() {
                    "me" => me,
                    id => Uuid::parse_str(id).map_err(|_| {
                        ApiError::new(
                            Code::InvalidRequest,
                            "owner must be a user id or `me`",
                        )
                    })?,
                })
            }
            "sort" => {
                q.sort = Sort::parse(&value).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidRequest,
                        format!(
                            "sort `{value}` is not one of relevance, newest, oldest, price, price:desc, rating, tasks_completed, name"
                        ),
                    )
                })?
            }
            "limit" => q.limit = parse_bounded("limit", &value, 1, MAX_LIMIT)?,
            "offset" => q.offset = parse_bounded("offset", &value, 0, usize::MAX)?,
            _ => {}
        }
    }
    if let (Some(lo), Some(hi)) = (q.filter.min_price, q.filter.max_price)
        && lo > hi
    {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "min_price is above max_price",
        ));
    }
    Ok(q)
}

async fn list_agents(
    state: AppState,
    user: AuthUser,
    query: Option<String>,
) -> Result<Response, ApiError> {
    let raw = query.unwrap_or_default();
    // Parsed (and so decoded) before the cache is asked: `owner=me`, however it is spelled
    // (`owner=%6De`, `%6Fwner=me`), is another page per caller.
    let q = agent_query(&raw, user.id)?;
    let key = if q.filter.owner == Some(user.id) {
        format!("{}\n{raw}", user.id)
    } else {
        raw
    };
    // The generation is read before the listing, so a change during it leaves the page
    // stale-marked rather than cached as new.
    let generation = state.marketplace.generation();
    let body = match state.marketplace.cached_page(&key, generation) {
        Some(body) => body,
        None => {
            let (limit, offset) = (q.limit, q.offset);
            let list = state.marketplace.list(q).await?;
            let page = AgentListResponse {
                agents: list.agents.iter().map(|a| public_view(a)).collect(),
                total: list.total,
                limit,
                offset,
                facets: Facets {
                    capabilities: list.capabilities,
                },
            };
            let body = Bytes::from(serde_json::to_vec(&page).expect("pages serialise"));
            state.marketplace.keep_page(key, generation, body.clone());
            body
        }
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// List or search agents. With `q`, typo-tolerant full-text search over name, description,
/// capabilities and owner, best match first; otherwise newest first.
#[utoipa::path(get, path = "/api/v1/agents", tag = tags::AGENTS, security(("bearer" = [])),
    params(
        ("q" = Option<String>, Query, description = "Search words; the last one also matches as a prefix"),
        ("capability" = Option<Vec<String>>, Query, description = "Required capability; repeat or comma-separate (all must match)"),
        ("min_price" = Option<f64>, Query), ("max_price" = Option<f64>, Query),
        ("min_rating" = Option<f64>, Query, description = "Minimum mean stars (agents without reviews do not match)"),
        ("status" = Option<String>, Query, description = "validating, compiling, ready or rejected"),
        ("owner" = Option<String>, Query, description = "A user id, or `me`"),
        ("sort" = Option<String>, Query, description = "relevance (default with q), newest (default), oldest, price, price:desc, rating, tasks_completed, name"),
        ("limit" = Option<usize>, Query, description = "1..=100, default 20"),
        ("offset" = Option<usize>, Query),
    ),
    responses((status = 200, body = AgentListResponse), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    list_agents(state, user, query).await
}

/// Search agents: the same as `GET /api/v1/agents`.
#[utoipa::path(get, path = "/api/v1/agents/search", tag = tags::AGENTS, security(("bearer" = [])),
    params(("q" = Option<String>, Query, description = "As for GET /api/v1/agents, with the same other parameters")),
    responses((status = 200, body = AgentListResponse), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    list_agents(state, user, query).await
}

/// One agent. Its `argv` and `env` only for its owner and admins; others get it without them.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = agent_id(path)?;
    let agent = state.marketplace.get(id).await?;
    if agent.owner_id == user.id || user.acts_as_admin(&state).await? {
        return Ok(ApiJson(agent).into_response());
    }
    Ok(ApiJson(public_view(&agent)).into_response())
}

async fn edit(
    state: AppState,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    body: Value,
    mode: Edit,
) -> Result<ApiJson<Agent>, ApiError> {
    let id = agent_id(path)?;
    let caller = caller(&state, user).await?;
    Ok(ApiJson(
        state.marketplace.edit(&caller, id, body, mode).await?,
    ))
}

/// Edit an agent (owner or admin): a JSON Merge Patch of its manifest fields (name,
/// description, capabilities, price, limits, argv, env, input_schema, metadata); `null`
/// removes a field.
#[utoipa::path(patch, path = "/api/v1/agents/{id}", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = Object,
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<Value>,
) -> Result<ApiJson<Agent>, ApiError> {
    edit(state, user, path, body, Edit::Merge).await
}

/// Replace an agent's manifest fields (owner or admin); fields left out take their defaults.
#[utoipa::path(put, path = "/api/v1/agents/{id}", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = Object,
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<Value>,
) -> Result<ApiJson<Agent>, ApiError> {
    edit(state, user, path, body, Edit::Replace).await
}

/// Delete an agent (owner or admin) with its versions and reviews. Its finished tasks stay
/// readable; it no longer bids.
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = agent_id(path)?;
    let caller = caller(&state, user).await?;
    state.marketplace.delete(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionResponse {
    agent: Agent,
    version: AgentVersion,
}

/// Add a version (owner or admin): multipart `wasm_binary` and `version`. The agent keeps
/// serving its current version until the new one is ready, then switches to it.
#[utoipa::path(post, path = "/api/v1/agents/{id}/binary", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Prefer" = Option<String>, Header, description = "`wait=N`: wait for the version's build")),
    request_body(content = VersionForm, content_type = "multipart/form-data"),
    responses((status = 201, body = VersionResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 503, description = "`too_many_uploads`, or `dependency_unavailable` (modules in S3 and S3 down; `Retry-After`)", body = ErrorBody)))]
pub async fn add_version(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, HeaderMap, ApiJson<VersionResponse>), ApiError> {
    let id = agent_id(path)?;
    let wait = prefer_wait(&headers)?;
    let max = state.marketplace.max_binary_bytes();
    let mut form = read_form(
        &state.spool,
        user.id,
        &headers,
        multipart,
        max,
        &["version"],
    )
    .await?;
    let wasm = form.wasm().await?;
    let version = form.text("version").map(str::to_owned);
    let caller = caller(&state, user).await?;
    let added = state
        .marketplace
        .add_version(&caller, id, version, wasm.bytes.clone())
        .await;
    drop(wasm);
    let (agent, v) = added?;
    let (status, headers, agent) = created(&state, agent, Some(v.version.clone()), wait).await?;
    let version = state
        .marketplace
        .versions(id)
        .await?
        .into_iter()
        .find(|x| x.version == v.version)
        .unwrap_or(v);
    Ok((status, headers, ApiJson(VersionResponse { agent, version })))
}

/// Replace the current version's module in place (owner or admin): multipart `wasm_binary`.
/// The agent stops bidding until the replacement is built.
#[utoipa::path(put, path = "/api/v1/agents/{id}/binary", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Prefer" = Option<String>, Header, description = "`wait=N`: wait for the build")),
    request_body(content = VersionForm, content_type = "multipart/form-data"),
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`quota_reached`: over `quotas.module_bytes`"),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace_binary(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<ApiJson<Agent>, ApiError> {
    let id = agent_id(path)?;
    let wait = prefer_wait(&headers)?;
    let max = state.marketplace.max_binary_bytes();
    let mut form = read_form(&state.spool, user.id, &headers, multipart, max, &[]).await?;
    let wasm = form.wasm().await?;
    let caller = caller(&state, user).await?;
    let replaced = state
        .marketplace
        .replace_binary(&caller, id, wasm.bytes.clone())
        .await;
    drop(wasm);
    let mut agent = replaced?;
    if let Some(secs) = wait {
        agent = state
            .marketplace
            .wait_built(id, None, Duration::from_secs(secs))
            .await?;
    }
    Ok(ApiJson(agent))
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    version: Option<String>,
    expires: Option<u64>,
    signature: Option<String>,
}

fn download_response(d: Download) -> Response {
    let file = format!(
        "{}-{}.wasm",
        d.agent
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            })
            .collect::<String>(),
        d.version.version
    );
    let disposition = format!("attachment; filename=\"{file}\"");
    let etag = format!("\"{}\"", d.version.sha256);
    let mut response = d.bytes.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    for (name, value) in [
        (header::CONTENT_DISPOSITION, disposition),
        (header::ETAG, etag),
        (
            HeaderName::from_static("x-content-sha256"),
            d.version.sha256,
        ),
        (
            HeaderName::from_static("x-agent-version"),
            d.version.version,
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(name, value);
        }
    }
    response
}

/// 307 to a presigned URL of the module's object (blobs in S3).
fn redirect_response(url: &str, sha256: &str) -> Response {
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    let h = response.headers_mut();
    for (name, value) in [
        (header::LOCATION, url),
        (HeaderName::from_static("x-content-sha256"), sha256),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            h.insert(name, value);
        }
    }
    response
}

/// Download a version's module (default: the current one). Signed in, or with the query of
/// a signed link (`version`, `expires`, `signature`) and no session. With blobs in S3, a
/// signed link answers 307 to a presigned URL of the module's object, valid until the link
/// expires.
#[utoipa::path(get, path = "/api/v1/agents/{id}/binary", tag = tags::AGENTS, security(("bearer" = []), ()),
    params(("id" = Uuid, Path), ("version" = Option<String>, Query), ("expires" = Option<u64>, Query),
        ("signature" = Option<String>, Query)),
    responses((status = 200, content_type = "application/wasm", body = Vec<u8>),
        (status = 307, description = "Signed link, blobs in S3: `Location` is a presigned URL of the module"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<DownloadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = agent_id(path)?;
    let Query(q) = query?;
    if let Some(signature) = q.signature {
        let (Some(version), Some(expires)) = (q.version, q.expires) else {
            return Err(ApiError::new(
                Code::InvalidSignature,
                "a signed link needs version, expires and signature",
            ));
        };
        let answer = state
            .marketplace
            .download_signed(id, version, expires, &signature)
            .await?;
        return Ok(match answer {
            SignedDownload::Bytes(d) => download_response(*d),
            SignedDownload::Redirect { url, sha256 } => redirect_response(&url, &sha256),
        });
    }
    match AuthUser::bearer(&headers)? {
        Some(token) => {
            AuthUser::from_token(
                &state,
                token,
                access::needs(&Method::GET, "/api/v1/agents/{id}/binary"),
            )
            .await?
        }
        None => {
            return Err(ApiError::new(
                Code::MissingToken,
                "sign in and send `Authorization: Bearer <token>`, or use a signed link",
            ));
        }
    };
    let d = state.marketplace.download(id, q.version).await?;
    Ok(download_response(d))
}

#[derive(Deserialize)]
pub struct VersionQuery {
    version: Option<String>,
}

/// Delete a version that is not current (owner or admin): `?version=`. Its module's bytes
/// are deleted once no version of any agent uses them.
#[utoipa::path(delete, path = "/api/v1/agents/{id}/binary", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path), ("version" = String, Query)),
    responses((status = 200, body = Agent), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_version(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<ApiJson<Agent>, ApiError> {
    let id = agent_id(path)?;
    let Query(q) = query?;
    let version = q.version.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        ApiError::new(
            Code::InvalidRequest,
            "name the version to delete: ?version=",
        )
    })?;
    let caller = caller(&state, user).await?;
    Ok(ApiJson(
        state
            .marketplace
            .delete_version(&caller, id, version)
            .await?,
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SignedUrl {
    /// Downloads without a session until expiry. Absolute under the configured `public_url`;
    /// without one, relative to the server's root (resolve it against the URL you called).
    url: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

/// A signed download link for the current version, valid for an hour. Built from the
/// server's `public_url`, never from the request's `Host` or `X-Forwarded-*` headers: a
/// client forging them could otherwise have links to its own host handed to others.
#[utoipa::path(get, path = "/api/v1/agents/{id}/binary/url", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SignedUrl), (status = 404, body = ErrorBody)))]
pub async fn signed_url(
    State(state): State<AppState>,
    _user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<ApiJson<SignedUrl>, ApiError> {
    let id = agent_id(path)?;
    let link = state.marketplace.signed_link(id).await?;
    Ok(ApiJson(SignedUrl {
        url: format!("{}{}", state.public_url, link.path),
        expires_at: link.expires_at,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VersionList {
    /// Newest (by semver) first.
    versions: Vec<AgentVersion>,
    current_version: String,
    /// A version still building that becomes current when ready.
    next_version: Option<String>,
}

/// The agent's versions.
#[utoipa::path(get, path = "/api/v1/agents/{id}/versions", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)))]
pub async fn versions(
    State(state): State<AppState>,
    _user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<ApiJson<VersionList>, ApiError> {
    let id = agent_id(path)?;
    let agent = state.marketplace.get(id).await?;
    let versions = state.marketplace.versions(id).await?;
    Ok(ApiJson(VersionList {
        versions,
        current_version: agent.version,
        next_version: agent.next_version,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    version: String,
}

/// Make an older ready version current again (owner or admin).
#[utoipa::path(post, path = "/api/v1/agents/{id}/rollback", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = RollbackRequest,
    responses((status = 200, body = Agent), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<RollbackRequest>,
) -> Result<ApiJson<Agent>, ApiError> {
    let id = agent_id(path)?;
    let caller = caller(&state, user).await?;
    Ok(ApiJson(
        state
            .marketplace
            .rollback(&caller, id, body.version)
            .await?,
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// 1 to 5 stars.
    rating: Value,
    #[serde(default)]
    comment: String,
}

/// Longest review comment, in characters.
const MAX_COMMENT: usize = 2000;

/// Review an agent: only users who had a task completed by it; a second post replaces the
/// first.
#[utoipa::path(post, path = "/api/v1/agents/{id}/reviews", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ReviewRequest,
    responses((status = 201, body = Review), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn post_review(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<ReviewRequest>,
) -> Result<(StatusCode, ApiJson<Review>), ApiError> {
    let id = agent_id(path)?;
    let rating = body
        .rating
        .as_u64()
        .filter(|r| (1..=5).contains(r))
        .ok_or_else(|| {
            ApiError::new(
                Code::InvalidRequest,
                "rating must be a whole number from 1 to 5",
            )
        })?;
    let comment = body.comment.trim().to_owned();
    if comment.chars().count() > MAX_COMMENT {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!("comment must be at most {MAX_COMMENT} characters"),
        ));
    }
    let caller = caller(&state, user).await?;
    let review = state
        .marketplace
        .review(&caller, id, rating as u8, comment)
        .await?;
    Ok((StatusCode::CREATED, ApiJson(review)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReviewList {
    reviews: Vec<Review>,
    total: usize,
    limit: usize,
    offset: usize,
}

/// The agent's reviews, newest first.
#[utoipa::path(get, path = "/api/v1/agents/{id}/reviews", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path), ("limit" = Option<usize>, Query), ("offset" = Option<usize>, Query)),
    responses((status = 200, body = ReviewList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reviews(
    State(state): State<AppState>,
    _user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<ApiJson<ReviewList>, ApiError> {
    let id = agent_id(path)?;
    let (mut limit, mut offset) = (DEFAULT_LIMIT, 0);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "limit" => limit = parse_bounded("limit", &value, 1, MAX_LIMIT)?,
            "offset" => offset = parse_bounded("offset", &value, 0, usize::MAX)?,
            _ => {}
        }
    }
    let (reviews, total) = state.marketplace.reviews(id, offset, limit).await?;
    Ok(ApiJson(ReviewList {
        reviews,
        total,
        limit,
        offset,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateInputRequest {
    /// The task input to check.
    input: Option<Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ValidateInputResponse {
    valid: bool,
}

/// Check a task input against the agent's input schema without submitting: 200
/// `{valid: true}`, or 422 `invalid_input` with `error.path`.
#[utoipa::path(post, path = "/api/v1/agents/{id}/validate-input", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ValidateInputRequest,
    responses((status = 200, body = ValidateInputResponse), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn validate_input(
    State(state): State<AppState>,
    _user: AuthUser,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<ValidateInputRequest>,
) -> Result<ApiJson<ValidateInputResponse>, ApiError> {
    let id = agent_id(path)?;
    state.marketplace.get(id).await?;
    state.marketplace.check_input(id, body.input.as_ref())?;
    Ok(ApiJson(ValidateInputResponse { valid: true }))
}
