//! `/api/v1/agents`: upload (multipart), list and search, get.

use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{DEFAULT_LIMIT, MAX_LIMIT, parse_bounded, prefer_wait, tags};
use crate::agents::manifest::RawManifest;
use crate::agents::{Agent, AgentQuery, AgentStatus, Build, Rejection};
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::{ApiJson, AppState, AuthUser};

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

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentListResponse {
    agents: Vec<Agent>,
    total: usize,
    limit: usize,
    offset: usize,
}

/// Multipart form of an upload (documentation only; parsed by hand).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The WASI command module.
    #[schema(value_type = String, format = Binary)]
    wasm_binary: Vec<u8>,
    /// The whole manifest as JSON (`manifest.json`, see docs/agents.md): name, description,
    /// version, capabilities, price, limits, argv, env. Fields sent separately override it.
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

/// Upload an agent. It answers once the module's declarations are checked and its bytes are
/// stored (status `validating`); the bodies are validated and the module compiled in the
/// background (`compiling`, then `ready` or `rejected`). With `Prefer: wait=N` (N ≤ 60) the
/// answer waits up to N seconds for the build's end.
#[utoipa::path(post, path = "/api/v1/agents/upload", tag = tags::AGENTS, security(("bearer" = [])),
    params(("Prefer" = Option<String>, Header, description = "`wait=N`: wait up to N ≤ 60 s for the build to end")),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = UploadResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, HeaderMap, ApiJson<UploadResponse>), ApiError> {
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
    let wait = prefer_wait(&headers)?;
    let mut multipart = multipart?;
    let max = state.marketplace.max_binary_bytes();
    // Separate fields override the `manifest` part, whatever the order of the parts.
    let mut fields = RawManifest::default();
    let mut manifest: Option<RawManifest> = None;
    let mut wasm: Option<Bytes> = None;
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "wasm_binary" => {
                let mut buf = BytesMut::new();
                while let Some(chunk) = field.chunk().await? {
                    if buf.len() + chunk.len() > max {
                        return Err(ApiError::new(
                            Code::PayloadTooLarge,
                            format!("wasm_binary is larger than the limit of {max} bytes"),
                        ));
                    }
                    buf.extend_from_slice(&chunk);
                }
                wasm = Some(buf.freeze());
            }
            "manifest" => {
                let text = field.text().await?;
                let parsed = serde_json::from_str::<RawManifest>(&text).map_err(|e| {
                    ApiError::new(Code::InvalidRequest, format!("manifest is not valid: {e}"))
                })?;
                manifest = Some(parsed);
            }
            "name" | "description" | "version" | "capabilities" | "price" => {
                let text = field.text().await?;
                match name.as_str() {
                    "name" => fields.name = Some(text),
                    "description" => fields.description = Some(text),
                    "version" => fields.version = Some(text),
                    "capabilities" => fields.capabilities.push(text),
                    _ => {
                        let price = text.trim().parse::<f64>().map_err(|_| {
                            ApiError::new(
                                Code::InvalidRequest,
                                format!("price `{}` is not a number", text.trim()),
                            )
                        })?;
                        fields.price = Some(price);
                    }
                }
            }
            other => {
                return Err(ApiError::new(
                    Code::InvalidRequest,
                    format!("unknown form field `{other}`"),
                ));
            }
        }
    }
    let wasm = wasm
        .ok_or_else(|| ApiError::new(Code::InvalidRequest, "missing file field `wasm_binary`"))?;
    let mut raw = manifest.unwrap_or_default();
    raw.name = fields.name.or(raw.name);
    raw.description = fields.description.or(raw.description);
    raw.version = fields.version.or(raw.version);
    raw.price = fields.price.or(raw.price);
    if !fields.capabilities.is_empty() {
        raw.capabilities = fields.capabilities;
    }
    let mut agent = state.marketplace.publish(user.id, raw, wasm).await?;
    let mut headers = HeaderMap::new();
    let location = format!("/api/v1/agents/{}", agent.id);
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("a path is a header value"),
    );
    if let Some(secs) = wait {
        agent = state
            .marketplace
            .wait_built(agent.id, Duration::from_secs(secs))
            .await?;
        headers.insert(
            HeaderName::from_static("preference-applied"),
            HeaderValue::from_str(&format!("wait={secs}")).expect("ASCII"),
        );
    }
    Ok((
        StatusCode::CREATED,
        headers,
        ApiJson(UploadResponse {
            agent_id: agent.id,
            name: agent.name,
            version: agent.version,
            binary_hash: agent.binary_hash,
            binary_size: agent.binary_size,
            status: agent.status,
            rejection: agent.rejection,
            build: agent.build,
            created_at: agent.created_at,
        }),
    ))
}

/// List or search agents.
#[utoipa::path(get, path = "/api/v1/agents", tag = tags::AGENTS, security(("bearer" = [])),
    params(
        ("q" = Option<String>, Query, description = "Full-text query over name, description and capabilities"),
        ("capability" = Option<Vec<String>>, Query, description = "Required capability; repeat for several (all must match)"),
        ("limit" = Option<usize>, Query, description = "1..=100, default 20"),
        ("offset" = Option<usize>, Query),
    ),
    responses((status = 200, body = AgentListResponse), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<ApiJson<AgentListResponse>, ApiError> {
    let mut q = AgentQuery {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "q" => q.q = Some(value.into_owned()),
            "capability" | "capabilities" => q.capabilities.extend(
                value
                    .split(',')
                    .map(|c| c.trim().to_lowercase())
                    .filter(|c| !c.is_empty()),
            ),
            "limit" => q.limit = parse_bounded("limit", &value, 1, MAX_LIMIT)?,
            "offset" => q.offset = parse_bounded("offset", &value, 0, usize::MAX)?,
            _ => {}
        }
    }
    let (limit, offset) = (q.limit, q.offset);
    let list = state.marketplace.list(q).await?;
    Ok(ApiJson(AgentListResponse {
        agents: list.agents,
        total: list.total,
        limit,
        offset,
    }))
}

/// One agent.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = tags::AGENTS, security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    _user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<ApiJson<Agent>, ApiError> {
    // A path that is not valid UTF-8 cannot name anything: same answer as an unknown id.
    let id = path.map(|Path(id)| id).unwrap_or_default();
    let not_found = || ApiError::new(Code::AgentNotFound, format!("no agent with id `{id}`"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    match state.marketplace.get(uuid).await {
        Ok(agent) => Ok(ApiJson(agent)),
        Err(crate::agents::AgentError::NotFound) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}
