//! Request extractors: authentication and JSON bodies that fail with our error shape.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::AppState;
use super::access::{self, Needs};
use crate::auth::{Credential, Principal};
use crate::error::{ApiError, Code};
use crate::records::{Role, User};

/// The authenticated caller, from `Authorization: Bearer <token>`: a session token, or an API
/// key whose scopes allow the route (see [`access`]).
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
    pub principal: Principal,
}

impl AuthUser {
    /// Checks a raw token for a route that `needs` something of API keys.
    pub async fn from_token(state: &AppState, token: &str, needs: Needs) -> Result<Self, ApiError> {
        let principal = state.accounts.authenticate(token).await?;
        access::authorize(principal.credential, needs)?;
        Ok(Self {
            id: principal.user_id,
            principal,
        })
    }

    /// The session's id, if the caller signed in with a token that has one.
    pub fn session_id(&self) -> Option<Uuid> {
        match self.principal.credential {
            Credential::Session { session, .. } => session,
            Credential::ApiKey { .. } => None,
        }
    }

    /// The API key's id, if the caller used one.
    pub fn key_id(&self) -> Option<Uuid> {
        match self.principal.credential {
            Credential::ApiKey { id, .. } => Some(id),
            Credential::Session { .. } => None,
        }
    }

    /// Whether the caller, whose account is `account`, acts with the admin role: a signed-in
    /// admin. An admin's API key carries only its scopes, never the role's powers.
    pub fn admin_in(&self, account: &User) -> bool {
        account.role == Role::Admin && self.key_id().is_none()
    }

    /// [`AuthUser::admin_in`], asking the accounts (which remember roles).
    pub async fn acts_as_admin(&self, state: &AppState) -> Result<bool, ApiError> {
        if self.key_id().is_some() {
            return Ok(false);
        }
        Ok(state.accounts.is_admin(self.id).await?)
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
        let needs = route_needs(parts);
        // Checked already by the rate limits, for this request's bearer token.
        if let Some(principal) = parts.extensions.get::<Principal>().copied() {
            access::authorize(principal.credential, needs)?;
            return Ok(Self {
                id: principal.user_id,
                principal,
            });
        }
        match Self::bearer(&parts.headers)? {
            Some(token) => Self::from_token(state, token, needs).await,
            None => Err(ApiError::new(
                Code::MissingToken,
                "sign in and send `Authorization: Bearer <token>`",
            )),
        }
    }
}

/// What the matched route asks of API keys.
pub fn route_needs(parts: &Parts) -> Needs {
    match parts.extensions.get::<MatchedPath>() {
        Some(route) => access::needs(&parts.method, route.as_str()),
        None => Needs::Session,
    }
}

/// The caller of an admin route: a signed-in admin, or a service presenting the configured
/// `X-Service-Token`. Refusals are logged with the peer's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Admin(Uuid),
    Service,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string())
            .unwrap_or_default();
        let path = parts.uri.path().to_owned();
        if let Some(presented) = parts.headers.get("x-service-token") {
            let configured = state.service_token.expose();
            if token_matches(presented.as_bytes(), configured) {
                return Ok(Operator::Service);
            }
            tracing::warn!(%peer, %path, configured = !configured.is_empty(), "refused an X-Service-Token");
            return Err(ApiError::new(
                Code::InvalidServiceToken,
                "the X-Service-Token does not match the configured realtime.service_token",
            ));
        }
        let user = AuthUser::from_request_parts(parts, state).await?;
        if !user.acts_as_admin(state).await? {
            tracing::warn!(%peer, %path, user_id = %user.id, "refused a non-admin on an admin route");
            return Err(ApiError::new(
                Code::AdminRequired,
                "only admins (or a service with the X-Service-Token) may do this",
            ));
        }
        Ok(Operator::Admin(user.id))
    }
}

/// Whether `presented` is the `configured` service token (never when none is configured).
/// Digests are compared, in constant time: equal lengths, so the time says nothing of either.
pub(crate) fn token_matches(presented: &[u8], configured: &str) -> bool {
    let equal: bool = Sha256::digest(presented)
        .ct_eq(&Sha256::digest(configured.as_bytes()))
        .into();
    !configured.is_empty() && equal
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
