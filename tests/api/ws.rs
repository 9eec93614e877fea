use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{DEADLINE, ECHO_AGENT, spawn_app, wasm};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_event(socket: &mut Socket) -> Value {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match socket.next().await.expect("socket open").expect("frame") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                _ => continue,
            }
        }
    })
    .await
    .expect("an event within the deadline")
}

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
