//! `/api/v1/analytics`: what the charts show, from the tasks that really ran.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_report_counts_the_callers_finished_tasks_by_agent_and_bucket() {
    let (app, admin) = spawn_with_admin().await;
    let token = app.signup("ada@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.25)
        .await;
    let recurse = app
        .publish(&token, "Recurse", wasm(RECURSE_AGENT), "recurse", 0.5)
        .await;
    for n in 0..3 {
        let task = app.run_on(&token, &echo, &format!("hello {n}")).await;
        assert_eq!(task["status"], "completed", "{task}");
    }
    let failed = app.run_on(&token, &recurse, "x").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // Someone else's task: not in Ada's report, in the admin's `all`.
    let other = app.signup("bob@example.com").await;
    assert_eq!(
        app.run_on(&other, &echo, "bob").await["status"],
        "completed"
    );

    let (status, r) = app.get("/api/v1/analytics?window=1h", Some(&token)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["window"].as_str(), r["scope"].as_str()),
        (Some("1h"), Some("me"))
    );
    assert_eq!(r["bucket_secs"], 60);
    let buckets = r["throughput"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    let sum = |field: &str| {
        buckets
            .iter()
            .map(|b| b[field].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!((sum("completed"), sum("failed")), (3, 1));
    let t = &r["totals"];
    assert_eq!(t["finished"], 4);
    assert_eq!(t["success_rate"], 0.75);
    assert_eq!(
        t["spend"], 0.75,
        "three completed runs at 0.25; the failure is free"
    );
    let durations: u64 = r["durations"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(durations, 3, "one duration per completed task");
    let agents = r["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(
        (
            &agents[0]["agent_name"],
            &agents[0]["completed"],
            &agents[0]["success_rate"]
        ),
        (&json!("Echo"), &json!(3), &json!(1.0))
    );
    assert_eq!(
        (&agents[1]["agent_name"], &agents[1]["failed"]),
        (&json!("Recurse"), &json!(1))
    );
    assert_eq!(agents[1]["success_rate"], 0.0);

    // The same tasks over longer windows, from the hourly cells.
    for window in ["24h", "7d", "30d"] {
        let (_, r) = app
            .get(&format!("/api/v1/analytics?window={window}"), Some(&token))
            .await;
        assert_eq!(r["totals"]["finished"], 4, "{window}: {r}");
    }

    // Everyone's: admins only.
    assert_error(
        &app.get("/api/v1/analytics?scope=all", Some(&token)).await,
        403,
        "admin_required",
    );
    let (_, all) = app
        .get("/api/v1/analytics?scope=all&window=1h", Some(&admin))
        .await;
    assert_eq!(all["scope"], "all");
    assert_eq!(all["totals"]["finished"], 5);
    assert_error(
        &app.get("/api/v1/analytics?window=2h", Some(&token)).await,
        400,
        "invalid_request",
    );
    assert_error(
        &app.get("/api/v1/analytics?scope=everyone", Some(&token))
            .await,
        400,
        "invalid_request",
    );
    // A new user has an empty report, every bucket present.
    let (_, empty) = app.get("/api/v1/analytics", Some(&other)).await;
    assert_eq!(empty["totals"]["finished"], 1);
    let newcomer = app.signup("new@example.com").await;
    let (_, empty) = app.get("/api/v1/analytics", Some(&newcomer)).await;
    assert_eq!(empty["totals"]["finished"], 0);
    assert_eq!(empty["totals"]["success_rate"], serde_json::Value::Null);
    assert_eq!(empty["throughput"].as_array().unwrap().len(), 96);
}
