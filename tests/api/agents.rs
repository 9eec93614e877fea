use reqwest::multipart::{Form, Part};

use crate::helpers::{ECHO_AGENT, assert_error, read, repo_file, spawn_app, wasm};

#[tokio::test]
async fn a_valid_agent_is_published_and_listed() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let module = std::fs::read(repo_file("assets/agents/sentiment/agent.wasm")).unwrap();
    let (status, body) = app
        .upload(
            &token,
            "Sentiment-Analyzer",
            module.clone(),
            "nlp, sentiment-analysis",
            0.02,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "Sentiment-Analyzer");
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["binary_size"], module.len());
    let hash = sha256_hex(&module);
    assert_eq!(body["binary_hash"], hash);

    let id = body["agent_id"].as_str().unwrap();
    let (status, agent) = app.get(&format!("/api/v1/agents/{id}"), Some(&token)).await;
    assert_eq!(status, 200, "{agent}");
    assert_eq!(
        agent["capabilities"],
        serde_json::json!(["nlp", "sentiment-analysis"])
    );
    assert_eq!(agent["price"], 0.02);
    assert_eq!(agent["stats"]["tasks_completed"], 0);
    assert!(agent["owner_id"].is_string());

    // The same name again from the same owner is a conflict.
    let again = app
        .upload(&token, "Sentiment-Analyzer", module, "nlp", 0.0)
        .await;
    assert_error(&again, 409, "agent_name_taken");
}

#[tokio::test]
async fn invalid_modules_are_rejected_with_the_reason() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;

    let not_wasm = app
        .upload(&token, "Text", b"#!/bin/sh\necho hi\n".to_vec(), "x", 0.0)
        .await;
    assert_error(&not_wasm, 422, "invalid_wasm_module");

    let env_import = wasm(
        r#"(module (import "env" "launch_missiles" (func))
        (memory (export "memory") 1) (func (export "_start")))"#,
    );
    let rejected = app.upload(&token, "Importer", env_import, "x", 0.0).await;
    assert_error(&rejected, 422, "invalid_wasm_module");
    assert!(
        rejected.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("env::launch_missiles"),
        "{}",
        rejected.1
    );

    let no_start = wasm(r#"(module (memory (export "memory") 1) (func (export "main")))"#);
    let rejected = app.upload(&token, "Library", no_start, "x", 0.0).await;
    assert_error(&rejected, 422, "invalid_wasm_module");
    assert!(
        rejected.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("_start")
    );

    let bad_price = app
        .upload(&token, "Echo", wasm(ECHO_AGENT), "x", -1.0)
        .await;
    assert_error(&bad_price, 400, "invalid_request");
    let no_caps = app.upload(&token, "Echo", wasm(ECHO_AGENT), "", 0.0).await;
    assert_error(&no_caps, 400, "invalid_request");

    let form = Form::new().text("name", "NoFile").text("capabilities", "x");
    let resp = app
        .client
        .post(app.url("/api/v1/agents/upload"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(&read(resp).await, 400, "invalid_request");

    // Nothing was stored by the rejected uploads.
    let (_, list) = app.get("/api/v1/agents", Some(&token)).await;
    assert_eq!(list["total"], 0, "{list}");
}

#[tokio::test]
async fn modules_over_the_size_limit_get_413() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let huge = vec![0u8; 128 * 1024 * 1024 + 1];
    let form = Form::new()
        .part("wasm_binary", Part::bytes(huge).file_name("big.wasm"))
        .text("name", "Big")
        .text("capabilities", "x");
    let resp = app
        .client
        .post(app.url("/api/v1/agents/upload"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_error(&read(resp).await, 413, "payload_too_large");
}

#[tokio::test]
async fn list_search_filter_and_paginate() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let sentiment = std::fs::read(repo_file("assets/agents/sentiment/agent.wasm")).unwrap();
    let stats = std::fs::read(repo_file("assets/agents/text-stats/agent.wasm")).unwrap();
    let s_id = app
        .publish(
            &token,
            "Sentiment-Analyzer",
            sentiment,
            "nlp,sentiment-analysis",
            0.02,
        )
        .await;
    let t_id = app
        .publish(
            &token,
            "Text-Statistics",
            stats,
            "nlp,text-statistics",
            0.01,
        )
        .await;
    let e_id = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;

    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = app.get("/api/v1/agents", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            all["total"].as_u64(),
            all["limit"].as_u64(),
            all["offset"].as_u64()
        ),
        (Some(3), Some(20), Some(0))
    );
    assert_eq!(
        ids(&all),
        [e_id.clone(), t_id.clone(), s_id.clone()],
        "newest first"
    );

    let (_, found) = app.get("/api/v1/agents?q=sentiment", Some(&token)).await;
    assert_eq!(ids(&found), std::slice::from_ref(&s_id));
    let (_, found) = app
        .get("/api/v1/agents?q=test%20agent&capability=nlp", Some(&token))
        .await;
    assert_eq!(found["total"], 2, "{found}");
    let (_, found) = app
        .get(
            "/api/v1/agents?capability=nlp&capability=text-statistics",
            Some(&token),
        )
        .await;
    assert_eq!(ids(&found), std::slice::from_ref(&t_id));
    let (_, page) = app
        .get("/api/v1/agents?limit=1&offset=1", Some(&token))
        .await;
    assert_eq!(
        (ids(&page), page["total"].as_u64()),
        (vec![t_id.clone()], Some(3))
    );

    assert_error(
        &app.get("/api/v1/agents?limit=0", Some(&token)).await,
        400,
        "invalid_request",
    );
    assert_error(
        &app.get("/api/v1/agents?limit=abc", Some(&token)).await,
        400,
        "invalid_request",
    );
    let missing = uuid::Uuid::new_v4();
    assert_error(
        &app.get(&format!("/api/v1/agents/{missing}"), Some(&token))
            .await,
        404,
        "agent_not_found",
    );
    assert_error(
        &app.get("/api/v1/agents/not-a-uuid", Some(&token)).await,
        404,
        "agent_not_found",
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
