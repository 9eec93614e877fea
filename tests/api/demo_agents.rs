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
        let task = app
            .run_task(
                &token,
                json!({"query": input, "agent_id": agent, "budget": 1}),
            )
            .await;
        assert_eq!(task["status"], "completed", "{name}: {task}");
        assert_eq!(task["result"], expected, "{name}");
        checked.push(name);
    }
    assert!(
        checked.iter().any(|n| n == "Anomaly-Detector"),
        "{checked:?}"
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
    let run = |query: &str| {
        app.run_task(
            &token,
            json!({"query": query, "agent_id": agent, "budget": 1}),
        )
    };

    let task = run("1 2 3, 2; 1\n2 50").await;
    assert_eq!(task["result"]["method"], "modified_z_mad", "{task}");
    assert_eq!(
        task["result"]["anomalies"],
        json!([{"index": 6, "value": 50, "score": 32.376}])
    );

    // More than half the points equal: the mean absolute deviation stands in for the MAD.
    let task = run("[5, 5, 5, 5, 9]").await;
    assert_eq!(task["result"]["method"], "modified_z_meanad", "{task}");
    assert_eq!(
        task["result"]["anomalies"],
        json!([{"index": 4, "value": 9, "score": 3.98942}])
    );

    let task = run("[7, 7, 7]").await;
    assert_eq!(task["result"]["anomalies"], json!([]), "a constant series");

    let task = run("1 2 three").await;
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
