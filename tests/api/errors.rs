use serde_json::json;

use crate::helpers::{assert_error, read, spawn_app};

#[tokio::test]
async fn malformed_bodies_and_media_types() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/api/v1/users/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_error(&read(resp).await, 400, "malformed_json");

    let resp = app
        .client
        .post(app.url("/api/v1/users/login"))
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_error(&read(resp).await, 415, "unsupported_media_type");

    let token = app.signup("ada@example.com").await;
    let resp = app
        .client
        .post(app.url("/api/v1/agents/upload"))
        .bearer_auth(&token)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_error(&read(resp).await, 415, "unsupported_media_type");

    let resp = app
        .client
        .post(app.url("/api/v1/agents/upload"))
        .bearer_auth(&token)
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nunterminated")
        .send()
        .await
        .unwrap();
    assert_error(&read(resp).await, 400, "malformed_multipart");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    assert_error(&app.get("/api/v1/nope", None).await, 404, "route_not_found");
    assert_error(
        &app.get("/api/v2/users/me", None).await,
        404,
        "route_not_found",
    );
    let resp = app
        .client
        .delete(app.url("/api/v1/users/login"))
        .send()
        .await
        .unwrap();
    assert_error(&read(resp).await, 405, "method_not_allowed");
}
