use serde_json::json;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn register_login_and_me() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_json(
            "/api/v1/users/register",
            None,
            &json!({"email": "Ada@Example.com", "password": "correct horse", "full_name": "Ada Lovelace"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], 86400);
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["full_name"], "Ada Lovelace");
    assert!(body["user"]["id"].is_string() && body["user"]["created_at"].is_string());
    assert!(body["user"].get("password_hash").is_none());

    let (status, login) = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["user"]["id"], body["user"]["id"]);

    let (status, me) = app.get("/api/v1/users/me", login["token"].as_str()).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "ada@example.com");
}

#[tokio::test]
async fn registration_errors_have_exact_codes() {
    let app = spawn_app().await;
    app.signup("taken@example.com").await;
    let register = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password, "full_name": "X"});
        let app = &app;
        async move { app.post_json("/api/v1/users/register", None, &body).await }
    };
    assert_error(
        &register("TAKEN@example.com", "long enough").await,
        409,
        "email_taken",
    );
    assert_error(
        &register("not-an-email", "long enough").await,
        400,
        "invalid_email",
    );
    assert_error(
        &register("a@example.com", "short").await,
        400,
        "invalid_password",
    );
    let missing = app
        .post_json(
            "/api/v1/users/register",
            None,
            &json!({"email": "b@example.com"}),
        )
        .await;
    assert_error(&missing, 400, "invalid_request");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    app.signup("ada@example.com").await;
    let wrong = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "ada@example.com", "password": "wrong password"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    assert_error(&wrong, 401, "invalid_credentials");
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn api_routes_need_a_valid_token() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/users/me",
        "/api/v1/agents",
        "/api/v1/tasks",
        "/api/v1/tasks/stats",
        "/api/v1/ws/stats",
    ] {
        assert_error(&app.get(path, None).await, 401, "missing_token");
        assert_error(
            &app.get(path, Some("forged.token.value")).await,
            401,
            "invalid_token",
        );
    }
    let resp = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_error(&crate::helpers::read(resp).await, 401, "invalid_token");
}
