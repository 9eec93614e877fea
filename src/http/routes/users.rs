//! `/api/v1/users`: register, login, me.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::tags;
use crate::auth::{Registration, UserView};
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::{ApiJson, AppState, AuthUser};

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

fn session(state: &AppState, token: String, user: &crate::auth::User) -> SessionResponse {
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

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/v1/users/login", tag = tags::USERS, request_body = LoginRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<ApiJson<SessionResponse>, ApiError> {
    let (token, user) = state.accounts.login(&req.email, req.password).await?;
    Ok(ApiJson(session(&state, token, &user)))
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
