//! `/api/v1/ws/…`: the live-update socket, the hub's counters, and the admin routes that send
//! messages through it.
//!
//! Browsers cannot set headers on a WebSocket, so the token may also come as `?token=`. One
//! task per connection (the socket unsplit: one task owns both directions, no lock between
//! them) forwards hub messages, answers the client's messages (`ping`, `subscribe`,
//! `unsubscribe`), pings the peer every `realtime.ping_interval_secs` (30 s; dropping it after
//! two unanswered pings) and sends a close frame when the queue overflows (1013), its
//! credential stops working (1008), the client sends a message over [`MAX_CLIENT_MESSAGE`]
//! (1009) or the server shuts down (1001). A connection the hub dropped skips its backlog; a
//! peer that takes no frame for 30 s is cut off.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{path_id, tags};
use crate::auth::Principal;
use crate::config::QuotaSettings;
use crate::error::{ApiError, Code, ErrorBody};
use crate::http::access;
use crate::http::{ApiJson, AppState, AuthUser, Operator};
use crate::realtime::{CloseReason, Event, HubStats, MAX_TOPICS, Peer, Slot, Topic, WatchError};

/// Longest wait for the peer to take one frame.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Socket read buffer. Clients send pings and subscriptions, a few dozen bytes each; the
/// WebSocket library's default (128 KiB, zero-filled at the first read) would be most of a
/// connection's memory.
const READ_BUFFER: usize = 1024;
/// Largest client message; a larger one closes the connection with 1009 (message too big).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Largest message or frame the WebSocket library reads at all. Above [`MAX_CLIENT_MESSAGE`],
/// so that a message a little too big is read whole and answered with a clean 1009 close;
/// one over this is refused from its frame header, unread (also 1009, but its unread rest may
/// make the peer's kernel drop the close frame).
const MAX_WIRE_MESSAGE: usize = 4 * MAX_CLIENT_MESSAGE;
/// The close of a connection whose client sent a message over [`MAX_CLIENT_MESSAGE`].
const TOO_BIG: (u16, &str) = (close_code::SIZE, "message too big: at most 16384 bytes");
const _: () = assert!(MAX_CLIENT_MESSAGE == 16384, "TOO_BIG names the limit");
/// Message types only the server sends.
const RESERVED_TYPES: [&str; 5] = [
    "pong",
    "error",
    "task_update",
    "agent_update",
    "queue_update",
];
/// Largest `data` an admin may send through the hub: it is copied to every recipient's
/// socket.
const MAX_SENT_DATA: usize = 64 * 1024;

/// Open the live-update WebSocket (session token or an API key with `tasks:read`).
#[utoipa::path(get, path = "/api/v1/ws/connect", tag = tags::REALTIME,
    params(("token" = Option<String>, Query, description = "Session token or API key, for clients that cannot send headers")),
    responses((status = 101, description = "Switching protocols"),
        (status = 400, body = ErrorBody, description = "Not a WebSocket upgrade request"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`quota_reached`: the user holds `quotas.websocket_connections` already")))]
pub async fn connect(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let query_token = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let needs = access::needs(&Method::GET, "/api/v1/ws/connect");
    let user = match (AuthUser::bearer(&headers)?, query_token) {
        (Some(token), _) => AuthUser::from_token(&state, token, needs).await?,
        (None, Some(token)) => AuthUser::from_token(&state, &token, needs).await?,
        (None, None) => {
            return Err(ApiError::new(
                Code::MissingToken,
                "send a bearer token or `?token=`",
            ));
        }
    };
    let account = state
        .accounts
        .user(user.id)
        .await?
        .ok_or_else(|| ApiError::new(Code::InvalidToken, "the account no longer exists"))?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            Code::InvalidRequest,
            format!("not a WebSocket upgrade: {}", e.body_text()),
        )
    })?;
    let peer = Peer {
        user_id: user.id,
        admin: user.admin_in(&account),
        key_id: user.key_id(),
        session_id: user.session_id(),
    };
    let slot = claim_slot(&state, &peer)?;
    let principal = user.principal;
    Ok(upgrade
        .read_buffer_size(READ_BUFFER)
        // Every message is written as it comes: the forwarder flushes each one anyway.
        .write_buffer_size(0)
        .max_message_size(MAX_WIRE_MESSAGE)
        .max_frame_size(MAX_WIRE_MESSAGE)
        .on_upgrade(move |socket| serve(socket, state, peer, principal, slot)))
}

/// A place for the connection among the user's (`quotas.websocket_connections`; admins are
/// exempt), claimed before the upgrade and held until the socket ends.
fn claim_slot(state: &AppState, peer: &Peer) -> Result<Slot, ApiError> {
    let limit = QuotaSettings::limit(state.quotas.websocket_connections).filter(|_| !peer.admin);
    state.hub.claim_slot(peer.user_id, limit).map_err(|held| {
        ApiError::new(
            Code::QuotaReached,
            format!(
                "quota websocket_connections reached: you have {held} live-update connections \
                 open, the most allowed; close one first"
            ),
        )
    })
}

/// A message from the client.
#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    topic: Option<String>,
}

/// Serves one socket; `_slot` keeps its place among the user's connections until it ends.
async fn serve(
    mut socket: WebSocket,
    state: AppState,
    peer: Peer,
    principal: Principal,
    _slot: Slot,
) {
    let mut subscription = state.hub.subscribe(peer);
    // Checked again now that the hub knows the connection: a revocation between the request's
    // check and here found nothing to close.
    if !state.accounts.still_valid(&principal) {
        let frame = CloseFrame {
            code: close_code::POLICY,
            reason: Utf8Bytes::from_static("credentials revoked; sign in again"),
        };
        send_frame(&mut socket, Message::Close(Some(frame))).await;
        return;
    }
    // A session or key that expires closes the connection then.
    let expiry = principal.expires_at.map(|at| {
        let left = (at - time::OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        tokio::time::Instant::now() + left.unsigned_abs()
    });
    let expired = async {
        match expiry {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    // Made once: a fresh `cancelled()` per turn of the loop would register with the token, which
    // every connection shares, and unregister again, for every message.
    let shutdown = state.shutdown.cancelled();
    tokio::pin!(shutdown);
    let every = state.ping_every;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut unanswered = 0u32;
    let mut outbox = vec![Event::system("connected", "info")];
    let close = 'serve: loop {
        for event in outbox.drain(..) {
            if !send_frame(&mut socket, Message::Text(event.to_text())).await {
                break 'serve None;
            }
        }
        tokio::select! {
            queued = subscription.rx.recv() => match queued {
                // Dropped by the hub: the backlog is not sent, only the close.
                Some(_) | None if subscription.rx.is_closed() => {
                    break Some(match state.hub.close_reason(subscription.id) {
                        CloseReason::Slow => (close_code::AGAIN, "too slow: message queue overflowed"),
                        CloseReason::SignedOut => (close_code::POLICY, "credentials revoked; sign in again"),
                    });
                }
                Some(text) => {
                    if !send_frame(&mut socket, Message::Text(text)).await {
                        break None;
                    }
                }
                None => break None,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(message)) if message_len(&message) > MAX_CLIENT_MESSAGE => break Some(TOO_BIG),
                Some(Err(e)) if is_over_wire_limit(&e) => break Some(TOO_BIG),
                Some(Ok(Message::Text(text))) => {
                    unanswered = 0;
                    outbox.extend(answer(&state, subscription.id, text.as_str()));
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                Some(Ok(_)) => unanswered = 0,
            },
            _ = ping.tick() => {
                unanswered += 1;
                if unanswered > 2 {
                    break Some((close_code::POLICY, "no answer to pings"));
                }
                if !send_frame(&mut socket, Message::Ping(Default::default())).await {
                    break None;
                }
            }
            () = &mut shutdown => break Some((close_code::AWAY, "server shutting down")),
            () = &mut expired => break Some((close_code::POLICY, "credentials expired; sign in again")),
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        send_frame(&mut socket, Message::Close(Some(frame))).await;
    }
}

/// Bytes of a data message's payload (0 for control frames, which are at most 125).
fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        _ => 0,
    }
}

/// Whether a read failed because the client's message or frame is over [`MAX_WIRE_MESSAGE`].
fn is_over_wire_limit(error: &axum::Error) -> bool {
    use std::error::Error as _;
    matches!(
        error
            .source()
            .and_then(|e| e.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// Sends one frame; false if the peer is gone or has not taken it within [`SEND_TIMEOUT`] (a
/// peer that stopped reading would otherwise hold its task, and its queue, forever).
async fn send_frame(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// What the server answers a client message with.
fn answer(state: &AppState, connection: u64, text: &str) -> Option<Event> {
    let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
        return Some(Event::error(
            "invalid_message",
            r#"send JSON such as {"type":"ping"} or {"type":"subscribe","topic":"queue"}"#,
        ));
    };
    let topic = || {
        let name = message.topic.as_deref().unwrap_or_default();
        Topic::parse(name).ok_or_else(|| {
            Event::error(
                "invalid_topic",
                &format!(
                    "unknown topic `{name}`; topics are `queue`, `agent:<agent id>` and (admins) `tasks`"
                ),
            )
        })
    };
    match message.kind.as_str() {
        "ping" => Some(Event::new("pong", json!({}))),
        "subscribe" => {
            let topic = match topic() {
                Ok(topic) => topic,
                Err(e) => return Some(e),
            };
            match state.hub.watch(connection, topic) {
                Ok(()) => {}
                Err(WatchError::TooMany) => {
                    return Some(Event::error(
                        "too_many_topics",
                        &format!("a connection may watch at most {MAX_TOPICS} topics"),
                    ));
                }
                Err(WatchError::Forbidden) => {
                    return Some(Event::error(
                        "topic_forbidden",
                        "only admins (signed in, not with an API key) may watch `tasks`",
                    ));
                }
                Err(WatchError::Gone) => return None,
            }
            // The current state at once, so a client never waits for the next change.
            match topic {
                Topic::Tasks => None,
                Topic::Queue => Some(state.orchestrator.queue_event()),
                Topic::Agent(id) => state.marketplace.stats_event(id),
            }
        }
        "unsubscribe" => match topic() {
            Ok(topic) => {
                state.hub.unwatch(connection, topic);
                None
            }
            Err(e) => Some(e),
        },
        other => Some(Event::error(
            "invalid_message",
            &format!("unknown message type `{other}`; send ping, subscribe or unsubscribe"),
        )),
    }
}

/// Hub statistics.
#[utoipa::path(get, path = "/api/v1/ws/stats", tag = tags::REALTIME, security(("bearer" = [])),
    responses((status = 200, body = HubStats), (status = 401, body = ErrorBody)))]
pub async fn stats(State(state): State<AppState>, _user: AuthUser) -> ApiJson<HubStats> {
    ApiJson(state.hub.stats())
}

/// A message for the hub to send, as `{type, timestamp, data}`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Outgoing {
    /// Message type: lowercase letters, digits and `_`, e.g. `system`.
    #[serde(rename = "type")]
    kind: String,
    /// A JSON object. For `system`: `{message, level}` with level info, success, warning or
    /// error.
    #[schema(value_type = Object)]
    data: Value,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct UserOutgoing {
    user_id: Uuid,
    #[serde(flatten)]
    message: Outgoing,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// Connections the message was queued on.
    recipients: usize,
}

impl Outgoing {
    /// Checks the message and makes it an event.
    fn event(self) -> Result<Event, ApiError> {
        let invalid = |message: String| ApiError::new(Code::InvalidRequest, message);
        let valid_type = !self.kind.is_empty()
            && self.kind.len() <= 32
            && self.kind.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .kind
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_type {
            return Err(invalid(format!(
                "type `{}` must be 1 to 32 lowercase letters, digits or `_`, starting with a letter",
                self.kind
            )));
        }
        // The server's own messages: a client must be able to trust them.
        if RESERVED_TYPES.contains(&self.kind.as_str()) {
            return Err(invalid(format!("type `{}` is the server's own", self.kind)));
        }
        let Value::Object(data) = &self.data else {
            return Err(invalid("data must be a JSON object".into()));
        };
        if serde_json::to_vec(&self.data).map_or(usize::MAX, |v| v.len()) > MAX_SENT_DATA {
            return Err(ApiError::new(
                Code::PayloadTooLarge,
                format!("data must serialise to at most {MAX_SENT_DATA} bytes"),
            ));
        }
        if self.kind == "system" {
            let message = data.get("message").and_then(Value::as_str).unwrap_or("");
            if message.trim().is_empty() {
                return Err(invalid("a system message needs data.message (text)".into()));
            }
            let level = data.get("level").and_then(Value::as_str).unwrap_or("info");
            if !["info", "success", "warning", "error"].contains(&level) {
                return Err(invalid(format!(
                    "level `{level}` must be info, success, warning or error"
                )));
            }
            return Ok(Event::system(message, level));
        }
        Ok(Event::new(self.kind, self.data))
    }
}

/// Send a message to every connection (admins, or a service with `X-Service-Token`).
#[utoipa::path(post, path = "/api/v1/ws/broadcast", tag = tags::REALTIME, security(("bearer" = [])),
    request_body = Outgoing,
    params(("X-Service-Token" = Option<String>, Header, description = "Instead of an admin session")),
    responses((status = 200, body = Delivery), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn broadcast(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(message): ApiJson<Outgoing>,
) -> Result<ApiJson<Delivery>, ApiError> {
    let event = message.event()?;
    let recipients = state.fanout.broadcast(event);
    tracing::info!(?operator, recipients, "message broadcast");
    Ok(ApiJson(Delivery { recipients }))
}

/// Send a message to one user's connections (admins, or a service with `X-Service-Token`).
#[utoipa::path(post, path = "/api/v1/ws/send", tag = tags::REALTIME, security(("bearer" = [])),
    request_body = UserOutgoing,
    params(("X-Service-Token" = Option<String>, Header, description = "Instead of an admin session")),
    responses((status = 200, body = Delivery), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(message): ApiJson<UserOutgoing>,
) -> Result<ApiJson<Delivery>, ApiError> {
    send_to(&state, operator, message.user_id, message.message).await
}

/// The seed API's form of `/ws/send`: the user in the path.
#[utoipa::path(post, path = "/api/v1/ws/user/{user_id}", tag = tags::REALTIME, security(("bearer" = [])),
    request_body = Outgoing, params(("user_id" = Uuid, Path)),
    responses((status = 200, body = Delivery), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn send_to_path(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
    ApiJson(message): ApiJson<Outgoing>,
) -> Result<ApiJson<Delivery>, ApiError> {
    let user_id = path_id(path, Code::UserNotFound, "user")?;
    send_to(&state, operator, user_id, message).await
}

async fn send_to(
    state: &AppState,
    operator: Operator,
    user_id: Uuid,
    message: Outgoing,
) -> Result<ApiJson<Delivery>, ApiError> {
    let event = message.event()?;
    if state.accounts.user(user_id).await?.is_none() {
        return Err(ApiError::new(
            Code::UserNotFound,
            format!("no user with id `{user_id}`"),
        ));
    }
    let recipients = state.fanout.send_to_user(user_id, &|| event.clone());
    tracing::info!(?operator, %user_id, recipients, "message sent to a user");
    Ok(ApiJson(Delivery { recipients }))
}
