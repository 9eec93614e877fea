use serde_json::json;

use crate::helpers::{ECHO_AGENT, spawn_app, wasm};

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let app = spawn_app().await;
    let (status, health) = app.get("/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["checks"]["store"], "ok");
    assert!(health["uptime_s"].is_u64());

    let (status, ready) = app.get("/ready", None).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));

    // One request and one task first, so the HTTP, WAL and view series exist (listing waits
    // for the view).
    app.get("/api/v1/agents", None).await;
    let token = app.signup("ops@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let id = app
        .submit(&token, json!({"query": "q", "agent_id": echo, "budget": 0}))
        .await;
    app.wait_for_task(&token, &id).await;
    app.get("/api/v1/tasks", Some(&token)).await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for series in [
        "zerostate_http_requests_total{",
        "zerostate_http_request_duration_seconds_bucket{",
        "zerostate_queue_depth{priority=\"critical\"}",
        "zerostate_tasks{status=\"completed\"}",
        "zerostate_wal_sync_seconds_bucket{",
        "zerostate_wal_batch_records{",
        "zerostate_task_apply_seconds_bucket{",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    assert!(
        text.contains("route=\"/api/v1/agents\""),
        "routes are labelled by template"
    );

    let (status, spec) = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/users/register",
        "/api/v1/agents/upload",
        "/api/v1/tasks/submit",
        "/api/v1/tasks/{id}",
        "/api/v1/ws/connect",
    ] {
        assert!(spec["paths"].get(path).is_some(), "openapi lacks {path}");
    }
}

#[tokio::test]
async fn the_web_ui_is_served_from_the_binary() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("ZeroState"));
    assert!(
        !html.contains("cdn.") && !html.contains("https://"),
        "the UI must work air-gapped"
    );
    let js = app.client.get(app.url("/js/app.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
}

#[tokio::test]
async fn demo_agents_are_published_once_and_run() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = crate::helpers::settings(dir.path(), 1);
    settings.demo = true;
    let app = crate::helpers::spawn_with(settings.clone(), dir.clone()).await;
    let dir = app.stop().await;
    // A second start with --demo publishes nothing new.
    let app = crate::helpers::spawn_with(settings, dir).await;
    let token = app.signup("user@example.com").await;
    let (_, list) = app.get("/api/v1/agents", Some(&token)).await;
    let mut names: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Anomaly-Detector",
            "Data-Analyzer",
            "Document-Parser",
            "Image-Processor",
            "Recommendation-Engine",
            "Sentiment-Analyzer",
            "Text-Statistics",
            "Text-Summarizer"
        ]
    );

    let body = serde_json::json!({"query": "This is not good. The food was awful!", "capabilities": ["sentiment-analysis"], "budget": 1});
    let task = app.run_task(&token, body).await;
    assert_eq!(task["result"]["label"], "negative", "{task}");
    assert_eq!(
        task["result"]["negative"],
        serde_json::json!(["not good", "awful"])
    );
}
