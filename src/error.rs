//! The one table of API error codes.
//!
//! Every error a client can see is a [`Code`] with a fixed HTTP status and a stable snake_case
//! name, rendered as `{"error":{"code":"…","message":"…"}}`. Codes are part of the public API:
//! add new ones, never rename or reuse one. Component error enums map onto this table with
//! `From` impls that live next to them; internal errors become an opaque `internal_error` and
//! their whole cause chain is logged here, once.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident => ($status:ident, $name:literal), )*) => {
        /// A stable API error code. See the module docs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The HTTP status this code is always answered with.
            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status,)* }
            }

            /// The snake_case name clients match on.
            pub fn name(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }
        }
    };
}

error_codes! {
    /// The body is not valid JSON.
    MalformedJson => (BAD_REQUEST, "malformed_json"),
    /// The body is not valid multipart/form-data.
    MalformedMultipart => (BAD_REQUEST, "malformed_multipart"),
    /// The request is well-formed but a field is missing, of the wrong type or out of range.
    InvalidRequest => (BAD_REQUEST, "invalid_request"),
    /// A task budget that is negative or not a number.
    InvalidBudget => (BAD_REQUEST, "invalid_budget"),
    /// A task timeout outside the allowed range.
    InvalidTimeout => (BAD_REQUEST, "invalid_timeout"),
    /// A priority other than low, normal (medium), high or critical.
    InvalidPriority => (BAD_REQUEST, "invalid_priority"),
    /// A pagination cursor that this server did not issue.
    InvalidCursor => (BAD_REQUEST, "invalid_cursor"),
    /// The email address is not a plausible address.
    InvalidEmail => (BAD_REQUEST, "invalid_email"),
    /// The password is too short or too long.
    InvalidPassword => (BAD_REQUEST, "invalid_password"),
    /// No `Authorization: Bearer` token was sent.
    MissingToken => (UNAUTHORIZED, "missing_token"),
    /// The token is malformed, forged or expired.
    InvalidToken => (UNAUTHORIZED, "invalid_token"),
    /// Unknown email or wrong password (deliberately indistinguishable).
    InvalidCredentials => (UNAUTHORIZED, "invalid_credentials"),
    /// The API key lacks the scope this route needs; sign in, or use a key with that scope.
    InsufficientScope => (FORBIDDEN, "insufficient_scope"),
    /// An API key scope this server does not know, or no scope at all.
    InvalidScope => (BAD_REQUEST, "invalid_scope"),
    /// No API key with this id among the caller's keys.
    ApiKeyNotFound => (NOT_FOUND, "api_key_not_found"),
    /// The caller already has the most API keys allowed; revoke one first.
    TooManyApiKeys => (CONFLICT, "too_many_api_keys"),
    /// The route is for admins (or a service presenting the configured `X-Service-Token`).
    AdminRequired => (FORBIDDEN, "admin_required"),
    /// An `X-Service-Token` that does not match the configured one, or none is configured.
    InvalidServiceToken => (UNAUTHORIZED, "invalid_service_token"),
    /// The current password given with a password change is wrong.
    WrongPassword => (FORBIDDEN, "wrong_password"),
    /// No account with this id.
    UserNotFound => (NOT_FOUND, "user_not_found"),
    /// The route exists but the method does not.
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "method_not_allowed"),
    /// No API route matches the path.
    RouteNotFound => (NOT_FOUND, "route_not_found"),
    /// No agent with this id (or not visible to the caller).
    AgentNotFound => (NOT_FOUND, "agent_not_found"),
    /// No task with this id owned by the caller (another user's task answers this too, so
    /// its existence stays hidden).
    TaskNotFound => (NOT_FOUND, "task_not_found"),
    /// Retired: no route answers it any more (another user's task is `task_not_found`). Kept
    /// so the name is never reused.
    TaskForbidden => (FORBIDDEN, "task_forbidden"),
    /// The task input does not satisfy the agent's input JSON Schema; `error.path` is the JSON
    /// pointer of the first mismatch.
    InvalidInput => (UNPROCESSABLE_ENTITY, "invalid_input"),
    /// The manifest's `input_schema` is not a valid JSON Schema.
    InvalidInputSchema => (BAD_REQUEST, "invalid_input_schema"),
    /// Only the agent's owner or an admin may change it.
    AgentForbidden => (FORBIDDEN, "agent_forbidden"),
    /// Reviews are open to users who had a task completed by the agent.
    ReviewNotAllowed => (FORBIDDEN, "review_not_allowed"),
    /// An agent's owner may not review it: reviews feed the auction's quality score.
    OwnAgentReview => (FORBIDDEN, "own_agent_review"),
    /// A download link whose signature does not match what it names.
    InvalidSignature => (FORBIDDEN, "invalid_signature"),
    /// A download link past its expiry time.
    LinkExpired => (FORBIDDEN, "link_expired"),
    /// The agent has no version with this string.
    VersionNotFound => (NOT_FOUND, "version_not_found"),
    /// The agent already has a version with this string.
    VersionExists => (CONFLICT, "version_exists"),
    /// The current version cannot be deleted; roll back or add another first.
    VersionIsCurrent => (CONFLICT, "version_is_current"),
    /// Only a ready version can become current.
    VersionNotReady => (CONFLICT, "version_not_ready"),
    /// The named agent is still validating or compiling, or was rejected.
    AgentNotReady => (CONFLICT, "agent_not_ready"),
    /// The caller already has an agent with this name.
    AgentNameTaken => (CONFLICT, "agent_name_taken"),
    /// The task already reached a terminal state (e.g. a cancel of a finished task).
    TaskFinished => (CONFLICT, "task_finished"),
    /// The task an `Idempotency-Key` first created was since deleted by retention.
    IdempotencyKeyReused => (CONFLICT, "idempotency_key_reused"),
    /// An account with this email already exists.
    EmailTaken => (CONFLICT, "email_taken"),
    /// The body or an uploaded file is over its size limit.
    PayloadTooLarge => (PAYLOAD_TOO_LARGE, "payload_too_large"),
    /// The Content-Type is not one this route accepts.
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
    /// The uploaded file is not an acceptable WASI command module; the message names the rule.
    InvalidWasmModule => (UNPROCESSABLE_ENTITY, "invalid_wasm_module"),
    /// The auction found no agent for the task; the message says why.
    NoEligibleAgent => (UNPROCESSABLE_ENTITY, "no_eligible_agent"),
    /// A quota on what the caller holds (agents, module bytes, WebSocket connections): the
    /// message names the quota and its limit; free one, then retry.
    QuotaReached => (CONFLICT, "quota_reached"),
    /// A quota that refills (queued tasks, result bytes per day): the message names the quota
    /// and its limit; `Retry-After` says when it refills, where a time applies.
    QuotaExceeded => (TOO_MANY_REQUESTS, "quota_exceeded"),
    /// `critical` priority is for admins, or within the caller's daily allowance
    /// (`quotas.critical_tasks_per_day`); `Retry-After` when an allowance refills at midnight UTC.
    PriorityNotAllowed => (FORBIDDEN, "priority_not_allowed"),
    /// The in-memory queue is at its configured capacity.
    QueueFull => (SERVICE_UNAVAILABLE, "queue_full"),
    /// The server, or the caller's address, has as many open connections as it serves.
    TooManyConnections => (SERVICE_UNAVAILABLE, "too_many_connections"),
    /// As many uploads as the server takes at once are arriving; retry in a moment.
    TooManyUploads => (SERVICE_UNAVAILABLE, "too_many_uploads"),
    /// The request body arrived slower than the configured minimum rate (`[http]`).
    RequestTimeout => (REQUEST_TIMEOUT, "request_timeout"),
    /// The server is shutting down and takes no new work.
    ShuttingDown => (SERVICE_UNAVAILABLE, "shutting_down"),
    /// Too many requests from this client address or credential; `Retry-After` says when to
    /// try again, the `RateLimit` headers which limit it was.
    RateLimited => (TOO_MANY_REQUESTS, "rate_limited"),
    /// Too many failed sign-ins with this email (whether or not it has an account): every
    /// sign-in with it is refused for `Retry-After` seconds, whatever the password.
    TooManyAttempts => (TOO_MANY_REQUESTS, "too_many_attempts"),
    /// An outside dependency (S3, Redis) is down or its circuit breaker is open; the message
    /// names it, `Retry-After` says when to try again. What does not need it keeps working.
    DependencyUnavailable => (SERVICE_UNAVAILABLE, "dependency_unavailable"),
    /// A bug or an I/O failure on our side; details are in the server log only.
    Internal => (INTERNAL_SERVER_ERROR, "internal_error"),
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// JSON pointer into the request of what is wrong, where one applies.
    pub path: Option<String>,
    /// Whole seconds for `Retry-After`, where the client should wait.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            path: None,
            retry_after: None,
        }
    }

    /// Answers with `Retry-After: secs` (at least 1).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// An internal failure: logs the whole cause chain and answers an opaque 500.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(Code::Internal, "internal error; see the server log")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `invalid_wasm_module`.
    pub code: String,
    /// Human-readable explanation of what to fix.
    pub message: String,
    /// JSON pointer of the offending value (`invalid_input`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.name().to_owned(),
                message: self.message,
                path: self.path,
            },
        };
        let retry_after = match self.code {
            Code::QueueFull => Some(1),
            _ => self.retry_after,
        };
        let mut response = (self.code.status(), Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

/// The error a request body ends with when it arrives slower than the minimum rate; the
/// connection layer raises it, the extractors answer it with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrived slower than the minimum rate")]
pub struct BodyTooSlow;

/// Whether `error` or one of its causes is [`BodyTooSlow`].
fn too_slow(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<BodyTooSlow>() {
            return true;
        }
        cause = e.source();
    }
    false
}

impl ApiError {
    fn too_slow() -> Self {
        Self::new(Code::RequestTimeout, BodyTooSlow.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as R;
        if too_slow(&rejection) {
            return Self::too_slow();
        }
        match rejection {
            R::JsonDataError(e) => Self::new(Code::InvalidRequest, e.body_text()),
            R::JsonSyntaxError(e) => Self::new(Code::MalformedJson, e.body_text()),
            R::MissingJsonContentType(_) => Self::new(
                Code::UnsupportedMediaType,
                "expected `Content-Type: application/json`",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::new(Code::PayloadTooLarge, other.body_text())
            }
            other => Self::new(Code::MalformedJson, other.body_text()),
        }
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(error: axum::extract::multipart::MultipartError) -> Self {
        if too_slow(&error) {
            Self::too_slow()
        } else if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(Code::PayloadTooLarge, error.body_text())
        } else {
            Self::new(Code::MalformedMultipart, error.body_text())
        }
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(rejection: axum::extract::multipart::MultipartRejection) -> Self {
        Self::new(Code::MalformedMultipart, rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::new(Code::InvalidRequest, rejection.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_client_or_server_errors() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let name = code.name();
            assert!(seen.insert(name), "duplicate code {name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name} is not snake_case"
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
        }
    }
}
