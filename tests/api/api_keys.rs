//! Scoped API keys: created once, usable wherever a session is within their scopes, revoked at
//! once (their sockets too).

use serde_json::{Value, json};

use crate::helpers::*;

/// `DELETE /api/v1/users/me/api-keys/{id}`.
async fn revoke(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    app.send(
        reqwest::Method::DELETE,
        &format!("/api/v1/users/me/api-keys/{id}"),
        Some(token),
        None,
    )
    .await
}

async fn create_key(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, key) = app
        .post_json("/api/v1/users/me/api-keys", Some(token), &body)
        .await;
    assert_eq!(status, 201, "{key}");
    key
}

#[tokio::test]
async fn a_key_works_within_its_scopes_and_stops_at_once_when_revoked() {
    let app = spawn_app().await;
    let token = app.signup("script@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let created = create_key(
        &app,
        &token,
        json!({"name": " nightly report ", "scopes": ["tasks:read", "agents:read", "tasks:read"]}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("zs_") && key.len() == 43, "{key}");
    assert_eq!(created["prefix"], key[..11]);
    assert_eq!(created["name"], "nightly report");
    assert_eq!(created["scopes"], json!(["agents:read", "tasks:read"]));
    assert_eq!(created["last_used_at"], Value::Null);
    assert_eq!(created["expires_at"], Value::Null);

    // Reads pass; writes and account routes do not.
    assert_eq!(app.get("/api/v1/agents", Some(&key)).await.0, 200);
    assert_eq!(app.get("/api/v1/tasks", Some(&key)).await.0, 200);
    assert_eq!(
        app.get(&format!("/api/v1/agents/{echo}"), Some(&key))
            .await
            .0,
        200
    );
    let (_, me) = app.get("/api/v1/users/me", Some(&key)).await;
    assert_eq!(me["email"], "script@example.com");
    let submit = json!({"query": "hi", "agent_id": echo, "budget": 0});
    let refused = app
        .post_json("/api/v1/tasks/submit", Some(&key), &submit)
        .await;
    let message = assert_error(&refused, 403, "insufficient_scope");
    assert!(message.contains("tasks:write"), "{message}");
    assert_error(
        &app.get("/api/v1/users/me/api-keys", Some(&key)).await,
        403,
        "insufficient_scope",
    );
    assert_error(
        &app.post_json(
            "/api/v1/users/me/api-keys",
            Some(&key),
            &json!({"name": "escalate", "scopes": ["tasks:write"]}),
        )
        .await,
        403,
        "insufficient_scope",
    );

    // A key with tasks:write submits; the task is the key owner's.
    let writer = create_key(
        &app,
        &token,
        json!({"name": "writer", "scopes": ["tasks:write"]}),
    )
    .await;
    let writer = writer["key"].as_str().unwrap();
    let task = app.submit(writer, submit.clone()).await;
    let (status, _) = app
        .get(&format!("/api/v1/tasks/{task}"), Some(&token))
        .await;
    assert_eq!(status, 200);

    // The listing shows prefixes and use times, never keys.
    let (_, list) = app.get("/api/v1/users/me/api-keys", Some(&token)).await;
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        !list.to_string().contains(&key),
        "a listing must not reveal a key"
    );
    assert!(keys.iter().all(|k| k.get("key").is_none()));
    assert_eq!(keys[0]["id"], created["id"]);
    assert!(keys[0]["last_used_at"].is_string(), "{}", keys[0]);

    // A socket opened with the key closes when the key is revoked.
    let mut socket = app.socket(&key).await;
    let key_id = created["id"].as_str().unwrap();
    let (status, body) = revoke(&app, &token, key_id).await;
    assert_eq!(status, 204, "{body}");
    let (code, _) = close_frame(&mut socket).await;
    assert_eq!(code, 1008, "policy violation: credentials revoked");
    assert_error(
        &app.get("/api/v1/agents", Some(&key)).await,
        401,
        "invalid_token",
    );
    assert_error(
        &revoke(&app, &token, key_id).await,
        404,
        "api_key_not_found",
    );
    // The session was never affected.
    assert_eq!(app.get("/api/v1/agents", Some(&token)).await.0, 200);
}

#[tokio::test]
async fn key_requests_are_checked_and_keys_are_private() {
    let app = spawn_app().await;
    let token = app.signup("ada@example.com").await;
    let other = app.signup("bob@example.com").await;
    let path = "/api/v1/users/me/api-keys";
    for (body, code) in [
        (
            json!({"name": "k", "scopes": ["tasks:admin"]}),
            "invalid_scope",
        ),
        (json!({"name": "k", "scopes": []}), "invalid_scope"),
        (
            json!({"name": "  ", "scopes": ["tasks:read"]}),
            "invalid_request",
        ),
        (
            json!({"name": "x".repeat(101), "scopes": ["tasks:read"]}),
            "invalid_request",
        ),
        (
            json!({"name": "k", "scopes": ["tasks:read"], "expires_in_days": 0}),
            "invalid_request",
        ),
        (
            json!({"name": "k", "scopes": ["tasks:read"], "expires_in_days": 3651}),
            "invalid_request",
        ),
        (
            json!({"name": "k", "scopes": "tasks:read"}),
            "invalid_request",
        ),
        (json!({"scopes": ["tasks:read"]}), "invalid_request"),
    ] {
        assert_error(&app.post_json(path, Some(&token), &body).await, 400, code);
    }
    let expiring = create_key(
        &app,
        &token,
        json!({"name": "temp", "scopes": ["agents:read"], "expires_in_days": 30}),
    )
    .await;
    assert!(expiring["expires_at"].is_string());
    // Another user can neither see nor revoke it.
    let (_, theirs) = app.get(path, Some(&other)).await;
    assert_eq!(theirs["keys"], json!([]));
    let id = expiring["id"].as_str().unwrap();
    assert_error(&revoke(&app, &other, id).await, 404, "api_key_not_found");
    assert_error(
        &revoke(&app, &token, "not-a-key").await,
        404,
        "api_key_not_found",
    );
    assert_error(
        &app.get(
            "/api/v1/agents",
            Some("zs_notakeyatallnotakeyatallnotakeyatall1234"),
        )
        .await,
        401,
        "invalid_token",
    );
}

#[tokio::test]
async fn keys_survive_a_restart() {
    let app = spawn_app().await;
    let token = app.signup("ada@example.com").await;
    let key = create_key(
        &app,
        &token,
        json!({"name": "k", "scopes": ["agents:read"]}),
    )
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/agents", Some(&key)).await.0, 200);
    let dir = app.stop().await;
    let app = spawn_with(settings(dir.path(), 1), dir).await;
    assert_eq!(app.get("/api/v1/agents", Some(&key)).await.0, 200);
    let (_, list) = app.get("/api/v1/users/me/api-keys", Some(&token)).await;
    assert!(list["keys"][0]["last_used_at"].is_string(), "{list}");
}
