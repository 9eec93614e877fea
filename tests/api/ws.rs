//! The live-update socket and the hub's admin routes.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

#[tokio::test]
async fn the_owner_sees_running_then_completed() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let other = app.signup("other@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;

    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/ws/connect?token={token}",
        app.ws_base
    ))
    .await
    .unwrap();
    let hello = next_event(&mut socket).await;
    assert_eq!(
        (hello["type"].as_str(), hello["data"]["level"].as_str()),
        (Some("system"), Some("info"))
    );
    assert!(hello["timestamp"].is_string());

    // Another user's socket, authenticated by header, must not see this task.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{}/api/v1/ws/connect",
            app.ws_base
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("Authorization", format!("Bearer {other}").parse().unwrap());
    let (mut other_socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(next_event(&mut other_socket).await["type"], "system");

    let id = app
        .submit(
            &token,
            json!({"query": "hello", "agent_id": echo, "budget": 0}),
        )
        .await;
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("completed") {
        let event = next_event(&mut socket).await;
        assert_eq!(event["type"], "task_update", "{event}");
        assert_eq!(event["data"]["task_id"], id.as_str());
        assert_eq!(event["data"]["query"], "hello");
        assert_eq!(event["data"]["agent_id"], echo.as_str());
        statuses.push(event["data"]["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(statuses, ["queued", "running", "completed"]);

    // Pings are answered; the other user received nothing about the task.
    socket
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(next_event(&mut socket).await["type"], "pong");
    other_socket
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut other_socket).await["type"],
        "pong",
        "no task_update may come first"
    );

    let (_, stats) = app.get("/api/v1/ws/stats", Some(&token)).await;
    assert_eq!(stats["current_connections"], 2, "{stats}");
    assert!(stats["messages_sent"].as_u64().unwrap() >= 3);
}

/// The upload, then each step of its build, in order.
#[tokio::test]
async fn uploads_and_their_builds_are_announced_to_everyone() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "{}/api/v1/ws/connect?token={token}",
        app.ws_base
    ))
    .await
    .unwrap();
    next_event(&mut socket).await;
    let other = app.signup("other@example.com").await;
    let id = app
        .publish(&other, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    for (action, status) in [
        ("registered", "validating"),
        ("updated", "compiling"),
        ("updated", "ready"),
    ] {
        let event = next_event(&mut socket).await;
        assert_eq!(event["type"], "agent_update");
        assert_eq!(
            event["data"],
            json!({"agent_id": id, "name": "Echo", "action": action, "status": status})
        );
    }
}

#[tokio::test]
async fn connecting_needs_a_valid_token() {
    let app = spawn_app().await;
    let err = tokio_tungstenite::connect_async(format!("{}/api/v1/ws/connect", app.ws_base))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let err =
        tokio_tungstenite::connect_async(format!("{}/api/v1/ws/connect?token=forged", app.ws_base))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn admins_see_every_task_update() {
    let (app, admin) = spawn_with_admin().await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let mut watching = app.socket(&admin).await;
    let id = app
        .submit(
            &token,
            json!({"query": "mine", "agent_id": echo, "budget": 0}),
        )
        .await;
    let update = next_of_type(&mut watching, "task_update").await;
    assert_eq!(update["data"]["task_id"], id.as_str());
    assert_eq!(update["data"]["agent_name"], "Echo");
}

#[tokio::test]
async fn broadcast_and_send_need_an_admin_or_the_service_token() {
    const SERVICE: &str = "a-service-token-0123456789";
    let (app, admin) = spawn_with_admin_using(|s| {
        s.realtime.service_token = zerostate::config::Secret::new(SERVICE)
    })
    .await;
    let token = app.signup("user@example.com").await;
    let (_, me) = app.get("/api/v1/users/me", Some(&token)).await;
    let user_id = me["id"].as_str().unwrap().to_owned();
    let mut socket = app.socket(&token).await;
    let notice =
        json!({"type": "system", "data": {"message": "maintenance at 18:00", "level": "warning"}});

    assert_error(
        &app.post_json("/api/v1/ws/broadcast", Some(&token), &notice)
            .await,
        403,
        "admin_required",
    );
    assert_error(
        &app.post_json("/api/v1/ws/broadcast", None, &notice).await,
        401,
        "missing_token",
    );
    let (status, sent) = app
        .post_json("/api/v1/ws/broadcast", Some(&admin), &notice)
        .await;
    assert_eq!(
        (status, sent["recipients"].as_u64()),
        (200, Some(1)),
        "{sent}"
    );
    let event = next_event(&mut socket).await;
    assert_eq!(event["type"], "system");
    assert_eq!(
        event["data"],
        json!({"message": "maintenance at 18:00", "level": "warning"})
    );

    // A service sends with the token instead of a session; a wrong token is refused.
    let service = |path: &str, token: &str, body: &serde_json::Value| {
        app.client
            .post(app.url(path))
            .header("X-Service-Token", token)
            .json(body)
            .send()
    };
    let direct = json!({"user_id": user_id, "type": "billing", "data": {"credits": 12}});
    let (status, sent) = read(service("/api/v1/ws/send", SERVICE, &direct).await.unwrap()).await;
    assert_eq!(
        (status, sent["recipients"].as_u64()),
        (200, Some(1)),
        "{sent}"
    );
    let event = next_event(&mut socket).await;
    assert_eq!(
        (event["type"].as_str(), &event["data"]),
        (Some("billing"), &json!({"credits": 12}))
    );
    let wrong = read(
        service("/api/v1/ws/send", "a-wrong-token-0123456789", &direct)
            .await
            .unwrap(),
    )
    .await;
    assert_error(&wrong, 401, "invalid_service_token");

    // The seed's alias, with the user in the path.
    let (status, _) = app
        .post_json(&format!("/api/v1/ws/user/{user_id}"), Some(&admin), &notice)
        .await;
    assert_eq!(status, 200);
    assert_eq!(next_event(&mut socket).await["data"]["level"], "warning");

    let unknown = uuid::Uuid::new_v4();
    assert_error(
        &app.post_json(&format!("/api/v1/ws/user/{unknown}"), Some(&admin), &notice)
            .await,
        404,
        "user_not_found",
    );
    for (body, status, code) in [
        (
            json!({"type": "Bad Type", "data": {}}),
            400,
            "invalid_request",
        ),
        (json!({"type": "pong", "data": {}}), 400, "invalid_request"),
        (
            json!({"type": "system", "data": "text"}),
            400,
            "invalid_request",
        ),
        (
            json!({"type": "system", "data": {"message": ""}}),
            400,
            "invalid_request",
        ),
        (
            json!({"type": "system", "data": {"message": "x", "level": "loud"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"type": "big", "data": {"blob": "x".repeat(70_000)}}),
            413,
            "payload_too_large",
        ),
        (json!({"data": {}}), 400, "invalid_request"),
    ] {
        assert_error(
            &app.post_json("/api/v1/ws/broadcast", Some(&admin), &body)
                .await,
            status,
            code,
        );
    }
}

#[tokio::test]
async fn without_a_configured_token_no_service_token_is_accepted() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/api/v1/ws/broadcast"))
        .header("X-Service-Token", "")
        .json(&json!({"type": "system", "data": {"message": "hi"}}))
        .send()
        .await
        .unwrap();
    assert_error(&read(resp).await, 401, "invalid_service_token");
}

#[tokio::test]
async fn topics_carry_the_queue_and_an_agents_live_statistics() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let mut socket = app.socket(&token).await;
    let subscribe =
        |topic: &str| Message::text(json!({"type": "subscribe", "topic": topic}).to_string());

    socket.send(subscribe("queue")).await.unwrap();
    let queue = next_event(&mut socket).await;
    assert_eq!(queue["type"], "queue_update", "the state at once: {queue}");
    assert_eq!(queue["data"]["queued"], 0);
    assert_eq!(queue["data"]["queue_depth"]["normal"], 0);

    socket
        .send(subscribe(&format!("agent:{echo}")))
        .await
        .unwrap();
    let stats = next_event(&mut socket).await;
    assert_eq!(
        (stats["type"].as_str(), stats["data"]["action"].as_str()),
        (Some("agent_update"), Some("stats"))
    );
    let runs_before = stats["data"]["stats"]["tasks_completed"].clone();

    app.run_on(&token, &echo, "hello").await;
    // The run shows in the agent's statistics without asking.
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = next_event(&mut socket).await;
            if event["data"]["action"] == "stats"
                && event["data"]["stats"]["tasks_completed"] != runs_before
            {
                break;
            }
        }
    })
    .await
    .expect("a stats update after the run");

    for (message, code) in [
        (
            json!({"type": "subscribe", "topic": "agent:nope"}).to_string(),
            "invalid_topic",
        ),
        (json!({"type": "subscribe"}).to_string(), "invalid_topic"),
        (json!({"type": "dance"}).to_string(), "invalid_message"),
        ("not json".to_owned(), "invalid_message"),
    ] {
        socket.send(Message::text(message)).await.unwrap();
        let error = next_of_type(&mut socket, "error").await;
        assert_eq!(error["data"]["code"], code, "{error}");
    }
}

#[tokio::test]
async fn a_server_shutting_down_says_goodbye() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let mut socket = app.socket(&token).await;
    let stopping = tokio::spawn(app.stop());
    assert_eq!(close_frame(&mut socket).await.0, 1001);
    stopping.await.unwrap();
}

/// A socket that stops reading is dropped once its queue fills (close 1013), and a reading
/// socket beside it gets every message meanwhile.
#[tokio::test]
async fn a_slow_consumer_is_dropped_without_holding_up_the_others() {
    let (app, admin) = spawn_with_admin().await;
    let token = app.signup("user@example.com").await;
    let mut stalled = app.socket(&token).await;
    let healthy = app.socket(&token).await;
    let (count, mut received) = tokio::sync::watch::channel(0usize);
    let mut healthy = healthy;
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut healthy).await {
            if message.is_text() {
                count.send_modify(|n| *n += 1);
            }
        }
    });
    // 60 KB messages: the stalled socket's kernel buffers and its queue of 256 fill within a
    // few hundred.
    let chunk = "x".repeat(60_000);
    let mut sent = 0;
    loop {
        let (status, body) = app
            .post_json(
                "/api/v1/ws/broadcast",
                Some(&admin),
                &json!({"type": "bulk", "data": {"n": sent, "chunk": chunk}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
        if body["recipients"] == 1 {
            break;
        }
        assert!(sent < 2_000, "the stalled socket was never dropped");
    }
    let (_, stats) = app.get("/api/v1/ws/stats", Some(&token)).await;
    assert_eq!(
        (
            stats["dropped"].as_u64(),
            stats["current_connections"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // The healthy socket received every broadcast; the stalled one reads what was queued for
    // it, then the close.
    tokio::time::timeout(DEADLINE, received.wait_for(|n| *n >= sent))
        .await
        .expect("the healthy socket gets every message")
        .unwrap();
    let (code, reason) = close_frame(&mut stalled).await;
    assert_eq!(code, 1013, "{reason}");
    reader.abort();
}

/// An admin's API key has its scopes, not the admin's powers; the `tasks` topic is for admins.
#[tokio::test]
async fn an_admins_api_key_is_no_admin() {
    let (app, admin) = spawn_with_admin().await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let (_, key) = app
        .post_json(
            "/api/v1/users/me/api-keys",
            Some(&admin),
            &json!({"name": "ops", "scopes": ["tasks:read", "agents:write", "agents:read"]}),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    assert_error(
        &app.send(
            reqwest::Method::PATCH,
            &format!("/api/v1/agents/{echo}"),
            Some(&key),
            Some(&json!({"description": "taken over"})),
        )
        .await,
        403,
        "agent_forbidden",
    );
    assert_error(
        &app.get("/api/v1/analytics?scope=all", Some(&key)).await,
        403,
        "admin_required",
    );
    // The key's socket sees no one else's tasks and may not ask for them.
    let mut socket = app.socket(&key).await;
    socket
        .send(Message::text(r#"{"type":"subscribe","topic":"tasks"}"#))
        .await
        .unwrap();
    let refused = next_of_type(&mut socket, "error").await;
    assert_eq!(refused["data"]["code"], "topic_forbidden");
    app.run_on(&token, &echo, "private").await;
    socket
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut socket).await["type"],
        "pong",
        "no task_update may come first"
    );
    // Server-owned message types cannot be forged through the admin routes.
    assert_error(
        &app.post_json(
            "/api/v1/ws/broadcast",
            Some(&admin),
            &json!({"type": "task_update", "data": {"task_id": "x", "status": "completed"}}),
        )
        .await,
        400,
        "invalid_request",
    );
}

/// A socket closes when its session expires.
#[tokio::test]
async fn a_socket_closes_when_its_session_expires() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings(dir.path(), 1);
    settings.auth.token_ttl_secs = 2;
    let app = spawn_with(settings, dir).await;
    let token = app.signup("user@example.com").await;
    let mut socket = app.socket(&token).await;
    let (code, reason) = close_frame(&mut socket).await;
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
}

/// A peer that answers no ping is dropped (1008) after two unanswered ones.
#[tokio::test]
async fn a_peer_that_answers_no_pings_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings(dir.path(), 1);
    settings.realtime.ping_interval_secs = 1;
    let app = spawn_with(settings, dir).await;
    let token = app.signup("user@example.com").await;
    // A bare TCP client: it completes the handshake, then reads and never answers (a
    // WebSocket library would answer pings by itself).
    let host = app.base.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "GET /api/v1/ws/connect?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .unwrap();
    assert!(received.starts_with(b"HTTP/1.1 101"));
    let pings = received.windows(2).filter(|w| w == &[0x89, 0x00]).count();
    assert!(pings >= 2, "two pings before giving up, saw {pings}");
    // The close frame: opcode 8, then the code 1008 (0x03F0).
    let close = received
        .windows(4)
        .position(|w| w[0] == 0x88 && w[2..] == [0x03, 0xF0]);
    assert!(close.is_some(), "{}", String::from_utf8_lossy(&received));
}

#[tokio::test]
async fn an_oversize_message_closes_the_socket_with_1009() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    // At the limit (16 KiB): answered, the socket stays open.
    let mut socket = app.socket(&token).await;
    let at_limit = format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(16 * 1024 - 24)
    );
    assert_eq!(at_limit.len(), 16 * 1024);
    socket.send(Message::text(at_limit)).await.unwrap();
    assert_eq!(next_of_type(&mut socket, "pong").await["type"], "pong");
    // One byte over, and far over (past what the server reads at all): 1009, not a dropped
    // connection (1006).
    for size in [16 * 1024 + 1, 1024 * 1024] {
        let mut socket = app.socket(&token).await;
        // The send may fail midway once the server has closed; the close frame is what counts.
        let _ = socket.send(Message::text("x".repeat(size))).await;
        let (code, reason) = close_frame(&mut socket).await;
        assert_eq!(code, 1009, "{size} bytes: {reason}");
        assert!(reason.contains("16384"), "{reason}");
    }
}
