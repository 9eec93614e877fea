//! `GET /api/v1/ws/connect`: the live-update socket.
//!
//! Browsers cannot set headers on a WebSocket, so the token may also come as `?token=`.
//! One task per connection forwards hub messages, answers `{"type":"ping"}` with `pong`,
//! pings the peer every 30 s (dropping it after two unanswered pings) and sends a close frame
//! when the queue overflows (1013) or the server shuts down (1001).

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use uuid::Uuid;

use super::tags;
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::{ApiJson, AppState, AuthUser};
use crate::realtime::{Event, HubStats};

const PING_EVERY: Duration = Duration::from_secs(30);

/// Open the live-update WebSocket.
#[utoipa::path(get, path = "/api/v1/ws/connect", tag = tags::REALTIME,
    params(("token" = Option<String>, Query, description = "Session token, for clients that cannot send headers")),
    responses((status = 101, description = "Switching protocols"), (status = 401, body = ErrorBody)))]
pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let query_token = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let user = match (AuthUser::bearer(&headers)?, query_token) {
        (Some(token), _) => AuthUser::from_token(&state, token)?,
        (None, Some(token)) => AuthUser::from_token(&state, &token)?,
        (None, None) => {
            return Err(ApiError::new(
                Code::MissingToken,
                "send a bearer token or `?token=`",
            ));
        }
    };
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            Code::InvalidRequest,
            format!("not a WebSocket upgrade: {}", e.body_text()),
        )
    })?;
    Ok(upgrade.on_upgrade(move |socket| serve(socket, state, user.id)))
}

async fn serve(socket: WebSocket, state: AppState, user_id: Uuid) {
    let mut subscription = state.hub.subscribe(user_id);
    let (mut sink, mut stream) = socket.split();
    let hello = Event::system("connected", "info").to_text();
    if sink
        .send(Message::Text(Utf8Bytes::from(hello.as_ref())))
        .await
        .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut unanswered = 0u32;
    let close = loop {
        tokio::select! {
            queued = subscription.rx.recv() => match queued {
                Some(text) => {
                    if sink.send(Message::Text(Utf8Bytes::from(text.as_ref()))).await.is_err() {
                        break None;
                    }
                }
                None => break Some((close_code::AGAIN, "too slow: message queue overflowed")),
            },
            incoming = stream.next() => match incoming {
                Some(Ok(message)) => {
                    unanswered = 0;
                    if let Message::Text(text) = &message
                        && serde_json::from_str::<serde_json::Value>(text.as_str())
                            .is_ok_and(|v| v["type"] == "ping")
                    {
                        let pong = Event::new("pong", json!({})).to_text();
                        if sink.send(Message::Text(Utf8Bytes::from(pong.as_ref()))).await.is_err() {
                            break None;
                        }
                    }
                    if matches!(message, Message::Close(_)) {
                        break None;
                    }
                }
                Some(Err(_)) | None => break None,
            },
            _ = ping.tick() => {
                unanswered += 1;
                if unanswered > 2 {
                    break Some((close_code::POLICY, "no answer to pings"));
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            _ = state.shutdown.cancelled() => break Some((close_code::AWAY, "server shutting down")),
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
}

/// Hub statistics.
#[utoipa::path(get, path = "/api/v1/ws/stats", tag = tags::REALTIME, security(("bearer" = [])),
    responses((status = 200, body = HubStats), (status = 401, body = ErrorBody)))]
pub async fn stats(State(state): State<AppState>, _user: AuthUser) -> ApiJson<HubStats> {
    ApiJson(state.hub.stats())
}
