//! `/api/v1/analytics`: counts, throughput, durations and spend of finished tasks over a
//! window.

use axum::extract::{RawQuery, State};

use super::tags;
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::{ApiJson, AppState, AuthUser};
use crate::records::{Report, Window};

/// Analytics of the caller's tasks (`scope=me`, the default) or, for admins, of everyone's
/// (`scope=all`), over the last hour (`window=1h`, per minute), day (`24h`, the default, per
/// 15 minutes), week (`7d`, per hour) or month (`30d`, per 6 hours).
#[utoipa::path(get, path = "/api/v1/analytics", tag = tags::TASKS, security(("bearer" = [])),
    params(("window" = Option<String>, Query, description = "1h, 24h (default), 7d or 30d"),
        ("scope" = Option<String>, Query, description = "me (default) or all (admins)")),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<ApiJson<Report>, ApiError> {
    let (mut window, mut everyone) = (Window::Day, false);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "window" => {
                window = Window::parse(&value).ok_or_else(|| {
                    ApiError::new(
                        Code::InvalidRequest,
                        format!("window `{value}` must be 1h, 24h, 7d or 30d"),
                    )
                })?
            }
            "scope" => {
                everyone = match value.as_ref() {
                    "me" => false,
                    "all" => true,
                    _ => {
                        return Err(ApiError::new(
                            Code::InvalidRequest,
                            format!("scope `{value}` must be me or all"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if everyone && !user.acts_as_admin(&state).await? {
        return Err(ApiError::new(
            Code::AdminRequired,
            "only admins may see everyone's analytics (scope=all)",
        ));
    }
    let owner = (!everyone).then_some(user.id);
    Ok(ApiJson(state.orchestrator.analytics(owner, window).await?))
}
