//! `/api/v1/users`: register, login, logout, the caller's profile and password, and their API
//! keys.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{path_id, tags};
use crate::auth::Registration;
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::{ApiJson, AppState, AuthUser, ClientIp};
use crate::records::{ApiKey, User, UserView};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    email: String,
    password: String,
    #[serde(default)]
    full_name: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionResponse {
    /// Bearer token for `Authorization: Bearer <token>`.
    token: String,
    user: UserView,
    /// Token lifetime in seconds.
    expires_in: u64,
}

fn session(state: &AppState, token: String, user: &User) -> SessionResponse {
    SessionResponse {
        token,
        user: user.into(),
        expires_in: state.accounts.keys().ttl_secs(),
    }
}

/// Create an account and sign in.
#[utoipa::path(post, path = "/api/v1/users/register", tag = tags::USERS, request_body = RegisterRequest,
    responses((status = 201, body = SessionResponse), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, ApiJson<SessionResponse>), ApiError> {
    let (token, user) = state
        .accounts
        .register(Registration {
            email: req.email,
            password: req.password,
            full_name: req.full_name,
        })
        .await?;
    Ok((StatusCode::CREATED, ApiJson(session(&state, token, &user))))
}

/// Sign in with email and password. After repeated failures the email is locked for a while
/// (429 `too_many_attempts`, whatever the password and whether or not it has an account).
#[utoipa::path(post, path = "/api/v1/users/login", tag = tags::USERS, request_body = LoginRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<ApiJson<SessionResponse>, ApiError> {
    let (token, user) = state
        .accounts
        .login(&req.email, req.password, client)
        .await?;
    Ok(ApiJson(session(&state, token, &user)))
}

/// Sign out: the session token stops working at once, here and after a restart, and the
/// live connections opened with it close. Other sessions and API keys keep working.
#[utoipa::path(post, path = "/api/v1/users/logout", tag = tags::USERS, security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    user: AuthUser,
) -> Result<StatusCode, ApiError> {
    state.accounts.logout(user.principal, client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/users/me", tag = tags::USERS, security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<ApiJson<UserView>, ApiError> {
    match state.accounts.user(user.id).await? {
        Some(u) => Ok(ApiJson((&u).into())),
        // A valid signature for an account that no longer exists.
        None => Err(ApiError::new(
            Code::InvalidToken,
            "the account for this token no longer exists",
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ProfileChange {
    /// Display name, at most 200 characters.
    full_name: String,
}

/// Change the signed-in user's display name.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = tags::USERS, security(("bearer" = [])),
    request_body = ProfileChange,
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(change): ApiJson<ProfileChange>,
) -> Result<ApiJson<UserView>, ApiError> {
    let updated = state
        .accounts
        .update_profile(user.id, &change.full_name)
        .await?;
    Ok(ApiJson((&updated).into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Change the password. Answers a new session token: every older session of the account
/// ends (API keys keep working).
#[utoipa::path(post, path = "/api/v1/users/me/password", tag = tags::USERS, security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 200, body = SessionResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    user: AuthUser,
    ApiJson(change): ApiJson<PasswordChange>,
) -> Result<ApiJson<SessionResponse>, ApiError> {
    let (token, account) = state
        .accounts
        .change_password(
            user.id,
            change.current_password,
            change.new_password,
            client,
        )
        .await?;
    Ok(ApiJson(session(&state, token, &account)))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct KeyRequest {
    /// What the key is for, 1 to 100 characters.
    name: String,
    /// At least one of `agents:read`, `agents:write`, `tasks:read`, `tasks:write`.
    scopes: Vec<String>,
    /// Lifetime in days (1 to 3650); without it the key never expires.
    #[serde(default)]
    expires_in_days: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    record: ApiKey,
    /// The key itself (`zs_…`). Shown only in this answer: store it now.
    key: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    keys: Vec<ApiKey>,
}

/// Create an API key for scripts. Its secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/users/me/api-keys", tag = tags::USERS, security(("bearer" = [])),
    request_body = KeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(req): ApiJson<KeyRequest>,
) -> Result<(StatusCode, ApiJson<CreatedKey>), ApiError> {
    let new = state
        .accounts
        .create_api_key(user.id, &req.name, &req.scopes, req.expires_in_days)
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedKey {
            record: new.key,
            key: new.secret,
        }),
    ))
}

/// The signed-in user's API keys, oldest first (never the keys themselves).
#[utoipa::path(get, path = "/api/v1/users/me/api-keys", tag = tags::USERS, security(("bearer" = [])),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn api_keys(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<ApiJson<KeyList>, ApiError> {
    Ok(ApiJson(KeyList {
        keys: state.accounts.api_keys(user.id).await?,
    }))
}

/// Revoke an API key: it stops working at once, and WebSockets opened with it close.
#[utoipa::path(delete, path = "/api/v1/users/me/api-keys/{id}", tag = tags::USERS, security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    user: AuthUser,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let key = path_id(path, Code::ApiKeyNotFound, "API key")?;
    state.accounts.revoke_api_key(user.id, key).await?;
    Ok(StatusCode::NO_CONTENT)
}
