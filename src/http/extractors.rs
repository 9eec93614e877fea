//! Request extractors: authentication and JSON bodies that fail with our error shape.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use super::AppState;
use crate::error::{ApiError, Code};

/// The authenticated caller, from `Authorization: Bearer <jwt>`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
}

impl AuthUser {
    /// Verifies a raw token.
    pub fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state
            .accounts
            .keys()
            .verify(token)
            .map_err(|e| ApiError::new(Code::InvalidToken, e.to_string()))?;
        Ok(Self { id: claims.sub })
    }

    /// The bearer token in the headers, if any.
    pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::new(Code::InvalidToken, "Authorization header is not ASCII"))?;
        match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                Ok(Some(token.trim()))
            }
            _ => Err(ApiError::new(
                Code::InvalidToken,
                "expected `Authorization: Bearer <token>`",
            )),
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Self::bearer(&parts.headers)? {
            Some(token) => Self::from_token(state, token),
            None => Err(ApiError::new(
                Code::MissingToken,
                "sign in and send `Authorization: Bearer <token>`",
            )),
        }
    }
}

/// `axum::Json` whose rejections use the API error table.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for ApiJson<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}
