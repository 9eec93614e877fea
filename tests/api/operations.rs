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
async fn ui_responses_carry_a_strict_csp_and_every_response_nosniff() {
    let app = spawn_app().await;
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
        connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
        frame-ancestors 'none'";
    // Pages, client-side routes, assets, a seed page's redirect and a missing asset.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, status) in [
        ("/", 200),
        ("/agents/0190a1b2-0000-7000-8000-000000000001", 200),
        ("/js/app.js", 200),
        ("/style.css", 200),
        ("/favicon.svg", 200),
        ("/agents.html", 301),
        ("/nope.png", 404),
    ] {
        let resp = client.get(app.url(path)).send().await.unwrap();
        let h = resp.headers();
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(h["content-security-policy"], csp, "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
    }
    // The HTML has no inline script or style for the policy to refuse.
    let html = app.text("/").await;
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains("style="));
    // API answers, errors included, are never sniffed into another type.
    for path in [
        "/health",
        "/api/v1/users/me",
        "/api/v1/nope",
        "/api/v1/openapi.json",
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
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
