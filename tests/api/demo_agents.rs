//! The bundled agents in `assets/agents/`, run through the API on their real modules.

use serde_json::{Value, json};

use crate::helpers::{repo_file, spawn_app};

/// Every bundled agent that ships an `expected-output.json` answers its `sample-input.txt`
/// with exactly that (the expected figures are computed independently of the agent).
#[tokio::test]
async fn bundled_agents_answer_their_samples_exactly() {
    let app = spawn_app().await;
    let token = app.signup("demo@example.com").await;
    let mut dirs: Vec<_> = std::fs::read_dir(repo_file("assets/agents"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected-output.json").exists())
        .collect();
    dirs.sort();
    let mut checked = Vec::new();
    for dir in dirs {
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let manifest: Value = serde_json::from_slice(&read("manifest.json")).unwrap();
        let expected: Value = serde_json::from_slice(&read("expected-output.json")).unwrap();
        let name = manifest["name"].as_str().unwrap().to_owned();
        let capabilities: Vec<&str> = manifest["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let agent = app
            .publish(
                &token,
                &name,
                read("agent.wasm"),
                &capabilities.join(","),
                manifest["price"].as_f64().unwrap(),
            )
            .await;
        let input = String::from_utf8(read("sample-input.txt")).unwrap();
        let task = app.run_on(&token, &agent, &input).await;
        assert_eq!(task["status"], "completed", "{name}: {task}");
        assert_eq!(task["result"], expected, "{name}");
        checked.push(name);
    }
    // text-stats and sentiment have exact-output tests of their own (tasks.rs, operations.rs).
    assert_eq!(
        checked,
        [
            "Anomaly-Detector",
            "Data-Analyzer",
            "Document-Parser",
            "Image-Processor",
            "Recommendation-Engine",
            "Text-Summarizer"
        ]
    );
}

#[tokio::test]
async fn the_anomaly_detector_reads_plain_text_copes_with_a_zero_mad_and_refuses_words() {
    let app = spawn_app().await;
    let token = app.signup("demo@example.com").await;
    let module = std::fs::read(repo_file("assets/agents/anomaly-detector/agent.wasm")).unwrap();
    let agent = app
        .publish(
            &token,
            "Anomaly-Detector",
            module,
            "anomaly-detection",
            0.03,
        )
        .await;

    let task = app.run_on(&token, &agent, "1 2 3, 2; 1\n2 50").await;
    assert_eq!(task["result"]["method"], "modified_z_mad", "{task}");
    assert_eq!(
        task["result"]["anomalies"],
        json!([{"index": 6, "value": 50, "score": 32.376}])
    );

    // More than half the points equal: the mean absolute deviation stands in for the MAD.
    let task = app.run_on(&token, &agent, "[5, 5, 5, 5, 9]").await;
    assert_eq!(task["result"]["method"], "modified_z_meanad", "{task}");
    assert_eq!(
        task["result"]["anomalies"],
        json!([{"index": 4, "value": 9, "score": 3.98942}])
    );

    let task = app.run_on(&token, &agent, "[7, 7, 7]").await;
    assert_eq!(task["result"]["anomalies"], json!([]), "a constant series");

    let task = app.run_on(&token, &agent, "1 2 three").await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["exit_code"], 1);
    assert!(
        task["stderr"]
            .as_str()
            .unwrap()
            .contains("expected a number"),
        "{task}"
    );
}

#[tokio::test]
async fn the_csv_agents_keep_quoted_newlines_and_name_the_line_of_a_ragged_row() {
    let app = spawn_app().await;
    let token = app.signup("demo@example.com").await;
    let mut agents = Vec::new();
    for (dir, name) in [
        ("document-parser", "Document-Parser"),
        ("data-analyzer", "Data-Analyzer"),
    ] {
        let module = std::fs::read(repo_file(&format!("assets/agents/{dir}/agent.wasm"))).unwrap();
        agents.push(app.publish(&token, name, module, "csv", 0.01).await);
    }

    let csv = "id,text\r\n1,\"two\nlines\"\r\n\r\n-2.5e3,plain\r\n";
    let task = app.run_on(&token, &agents[0], csv).await;
    assert_eq!(
        task["result"],
        json!({"columns": ["id", "text"], "rows": [{"id": 1, "text": "two\nlines"}, {"id": -2.5e3, "text": "plain"}], "row_count": 2}),
        "{task}"
    );
    let task = app.run_on(&token, &agents[1], csv).await;
    assert_eq!(task["result"]["columns"][0]["type"], "number", "{task}");
    assert_eq!(task["result"]["columns"][0]["min"], -2500);
    assert_eq!(task["result"]["columns"][1]["distinct"], 2);

    for agent in &agents {
        let task = app.run_on(&token, agent, "a,b\n1,2\n3\n").await;
        assert_eq!(task["status"], "failed", "{task}");
        assert!(
            task["stderr"]
                .as_str()
                .unwrap()
                .contains("line 3 has 1 field"),
            "{task}"
        );
    }
}

#[tokio::test]
async fn the_recommendation_engine_ranks_by_a_vector_and_refuses_ragged_vectors() {
    let app = spawn_app().await;
    let token = app.signup("demo@example.com").await;
    let module =
        std::fs::read(repo_file("assets/agents/recommendation-engine/agent.wasm")).unwrap();
    let agent = app
        .publish(
            &token,
            "Recommendation-Engine",
            module,
            "recommendation",
            0.03,
        )
        .await;
    let run = |input: Value| {
        app.run_task(
            &token,
            json!({"query": "recommend", "input": input, "agent_id": agent, "budget": 1}),
        )
    };

    // [1, 1] is 45° from both axes; "b" points the same way; ties go by name.
    let items = json!({"x": [1, 0], "y": [0, 1], "b": [2, 2], "a": [3, 0]});
    let task = run(json!({"items": items, "vector": [1, 1], "k": 10})).await;
    // The agent's figures have 6 significant digits (written as text: clippy would take
    // 0.707107 for an approximation of 1/√2).
    let expected: Value = serde_json::from_str(
        r#"{"like": null, "dimensions": 2, "recommendations": [
            {"item": "b", "similarity": 1},
            {"item": "a", "similarity": 0.707107},
            {"item": "x", "similarity": 0.707107},
            {"item": "y", "similarity": 0.707107}]}"#,
    )
    .unwrap();
    assert_eq!(task["result"], expected, "{task}");

    for (input, reason) in [
        (
            json!({"items": {"x": [1, 0], "y": [1]}, "like": "x"}),
            "same length",
        ),
        (
            json!({"items": {"x": [1, 0]}, "like": "nobody"}),
            "names no item",
        ),
        (json!({"items": {"x": [1, 0]}}), "either \"like\""),
    ] {
        let task = run(input).await;
        assert_eq!(task["status"], "failed", "{task}");
        assert!(
            task["stderr"].as_str().unwrap().contains(reason),
            "{reason}: {task}"
        );
    }
}

#[tokio::test]
async fn the_image_processor_reports_inverts_resizes_and_names_malformed_images() {
    let app = spawn_app().await;
    let token = app.signup("demo@example.com").await;
    let module = std::fs::read(repo_file("assets/agents/image-processor/agent.wasm")).unwrap();
    let agent = app
        .publish(&token, "Image-Processor", module, "image-processing", 0.05)
        .await;
    let image = "P2\n2 2\n10\n1 2\n3 4\n";

    let task = app.run_on(&token, &agent, image).await;
    assert_eq!(
        task["result"],
        json!({"operation": "stats", "width": 2, "height": 2, "maxval": 10, "min": 1, "max": 4, "mean": 2.5}),
        "{task}"
    );
    let request = |op: Value| {
        let mut r = json!({"pgm": image});
        r.as_object_mut()
            .unwrap()
            .extend(op.as_object().unwrap().clone());
        r.to_string()
    };
    let task = app
        .run_on(&token, &agent, &request(json!({"operation": "invert"})))
        .await;
    assert_eq!(task["result"]["pgm"], "P2\n2 2\n10\n9 8\n7 6\n", "{task}");
    let resize = request(json!({"operation": "resize", "width": 4, "height": 1}));
    let task = app.run_on(&token, &agent, &resize).await;
    assert_eq!(task["result"]["pgm"], "P2\n4 1\n10\n3 3 4 4\n", "{task}");

    for (query, reason) in [
        ("P2\n2 2\n10\n1 2 3\n".to_owned(), "expected a sample"),
        ("P2\n1 1\n10\n11\n".to_owned(), "a sample is over 10"),
        ("P5\n1 1\n10\n1\n".to_owned(), "expected \"P2\""),
        (
            request(json!({"operation": "resize"})),
            "resize needs \"width\"",
        ),
        (
            request(json!({"operation": "sharpen"})),
            "unknown operation",
        ),
    ] {
        let task = app.run_on(&token, &agent, &query).await;
        assert_eq!(task["status"], "failed", "{task}");
        assert!(
            task["stderr"].as_str().unwrap().contains(reason),
            "{reason}: {task}"
        );
    }
}
