use std::time::Instant;

use serde_json::json;

use crate::helpers::{
    ECHO_AGENT, GROW_BOMB_AGENT, LOOP_AGENT, RECURSE_AGENT, SLEEP_AGENT, assert_error, repo_file,
    spawn_app, wasm,
};

#[tokio::test]
async fn a_task_runs_the_auction_winner_and_returns_its_real_output() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let stats = std::fs::read(repo_file("assets/agents/text-stats/agent.wasm")).unwrap();
    let agent_id = app
        .publish(
            &token,
            "Text-Statistics",
            stats,
            "nlp,text-statistics",
            0.01,
        )
        .await;

    let (status, accepted) = app
        .post_json(
            "/api/v1/tasks/submit",
            Some(&token),
            &json!({"query": "count these", "input": {"text": "Good day.\n\nBad night!"},
                    "capabilities": ["text-statistics"], "budget": 0.5, "priority": "high"}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["agent_id"], agent_id.as_str());
    assert_eq!(accepted["price"], 0.01);

    let task = app
        .wait_for_task(&token, accepted["task_id"].as_str().unwrap())
        .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(
        task["result"],
        json!({"characters": 21, "bytes": 21, "words": 4, "sentences": 2, "lines": 3, "paragraphs": 2,
               "avg_word_length": 3.75, "reading_time_s": 2,
               "top_words": [{"word": "bad", "count": 1}, {"word": "day", "count": 1},
                             {"word": "good", "count": 1}, {"word": "night", "count": 1}]})
    );
    assert_eq!(task["priority"], "high");
    assert_eq!(task["budget"], 0.5);
    assert!(task["error"].is_null());
    for field in ["created_at", "started_at", "completed_at"] {
        assert!(task[field].is_string(), "{field} missing: {task}");
    }
    assert!(task["duration_ms"].is_u64());
    assert_eq!(task["bids"][0]["agent_id"], agent_id.as_str());

    // Outcomes feed the agent's live statistics.
    let (_, agent) = app
        .get(&format!("/api/v1/agents/{agent_id}"), Some(&token))
        .await;
    assert_eq!(agent["stats"]["tasks_completed"], 1, "{agent}");
    assert_eq!(agent["stats"]["success_rate"], 1.0);

    let (_, stats) = app.get("/api/v1/tasks/stats", Some(&token)).await;
    let counts: Vec<u64> = [
        "queued",
        "running",
        "completed",
        "failed",
        "canceled",
        "total",
    ]
    .iter()
    .map(|k| stats[*k].as_u64().unwrap())
    .collect();
    assert_eq!(counts, [0, 0, 1, 0, 0, 1], "{stats}");
    assert_eq!(
        stats["queue_depth"],
        json!({"low": 0, "normal": 0, "high": 0, "critical": 0})
    );
    assert_eq!(stats["recent"]["completed_last_minute"], 1);
    assert_eq!(stats["recent"]["p50_ms"], task["duration_ms"]);
}

#[tokio::test]
async fn the_query_is_stdin_when_there_is_no_input() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let sentiment = std::fs::read(repo_file("assets/agents/sentiment/agent.wasm")).unwrap();
    app.publish(
        &token,
        "Sentiment-Analyzer",
        sentiment,
        "sentiment-analysis",
        0.02,
    )
    .await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;

    let task = app
        .run_task(
            &token,
            json!({"query": "I am not happy", "capabilities": ["sentiment-analysis"], "budget": 1}),
        )
        .await;
    assert_eq!(task["result"]["label"], "negative", "{task}");
    assert_eq!(task["result"]["score"], -3.0);
    assert_eq!(task["result"]["negative"], json!(["not happy"]));

    // Non-JSON stdout is kept as text.
    let task = app
        .run_task(
            &token,
            json!({"query": "plain words", "agent_id": echo, "budget": 0}),
        )
        .await;
    assert_eq!(
        (task["status"].as_str(), task["result"].as_str()),
        (Some("completed"), Some("plain words"))
    );
}

#[tokio::test]
async fn agents_that_spin_or_sleep_forever_time_out_within_their_timeout() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    // One burns CPU in wasm; the other sleeps an hour inside the host (`poll_oneoff`), where
    // epoch interruption cannot reach it.
    for (name, module) in [("Spinner", LOOP_AGENT), ("Sleeper", SLEEP_AGENT)] {
        let agent = app.publish(&token, name, wasm(module), "stall", 0.0).await;
        let submitted = Instant::now();
        let body = json!({"query": "stall", "agent_id": agent, "budget": 0, "timeout": 1});
        let task = app.run_task(&token, body).await;
        let waited = submitted.elapsed();
        assert_eq!(task["status"], "timed_out", "{name}: {task}");
        assert_eq!(task["error_code"], "timeout", "{name}: {task}");
        assert!(
            task["error"]
                .as_str()
                .unwrap()
                .contains("timed out after 1 s"),
            "{name}: {task}"
        );
        let ran_ms = task["duration_ms"].as_u64().unwrap();
        assert!((1000..2000).contains(&ran_ms), "{name} ran {ran_ms} ms");
        // Submit to timed_out, including compilation and queueing, within timeout + 1 s.
        assert!(waited.as_millis() < 2000, "{name} took {waited:?}");
    }
}

#[tokio::test]
async fn a_memory_bomb_fails_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let bomb = app
        .publish(&token, "Bomb", wasm(GROW_BOMB_AGENT), "bomb", 0.0)
        .await;
    let task = app
        .run_task(
            &token,
            json!({"query": "boom", "agent_id": bomb, "budget": 0}),
        )
        .await;
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .contains("memory limit of 256 MiB exceeded"),
        "{task}"
    );
    assert_eq!(task["error_code"], "memory_limit");
    assert_eq!(task["attempts"][0]["error_code"], "memory_limit");

    let (_, agent) = app
        .get(&format!("/api/v1/agents/{bomb}"), Some(&token))
        .await;
    assert_eq!(
        (
            agent["stats"]["tasks_failed"].as_u64(),
            agent["stats"]["success_rate"].as_f64()
        ),
        (Some(1), Some(0.0))
    );
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, 200);
}

/// A module that writes `text` to file descriptor `fd`, then calls `proc_exit(code)` (and traps
/// should that return).
fn write_then_exit(fd: u32, text: &str, code: i32) -> Vec<u8> {
    let data: String = text.bytes().map(|b| format!("\\{b:02x}")).collect();
    wasm(&format!(
        r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 100) "{data}")
        (func (export "_start")
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const {len}))
          (drop (call $write (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))
          (call $exit (i32.const {code}))
          unreachable))"#,
        len = text.len()
    ))
}

#[tokio::test]
async fn non_zero_exits_and_traps_fail_with_readable_errors() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let exit3 = write_then_exit(2, "bad input\n", 3);
    let task = app.run_on_new_agent(&token, "Exit3", exit3).await;
    assert_eq!(task["status"], "failed");
    assert_eq!(task["exit_code"], 3);
    assert_eq!(task["error"], "agent exited with code 3; stderr: bad input");
    assert_eq!(task["error_code"], "exit_code");

    // proc_exit(0) is success, with what was written before it.
    let exit0 = write_then_exit(1, r#"{"ok": true}"#, 0);
    let task = app.run_on_new_agent(&token, "Exit0", exit0).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"], json!({"ok": true}));
    assert!(
        task["error_code"].is_null() && task["exit_code"].is_null(),
        "{task}"
    );

    let trap =
        wasm(r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#);
    let task = app.run_on_new_agent(&token, "Trap", trap).await;
    assert_eq!(task["status"], "failed");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .starts_with("agent trapped: "),
        "{task}"
    );
    assert!(
        task["error"].as_str().unwrap().contains("unreachable"),
        "{task}"
    );
    assert_eq!(task["error_code"], "trap");

    // Unbounded recursion overflows the guest's stack, not the server's.
    let recurse = wasm(RECURSE_AGENT);
    let task = app.run_on_new_agent(&token, "Recurse", recurse).await;
    assert_eq!(
        (&task["status"], &task["error_code"]),
        (&json!("failed"), &json!("stack_overflow")),
        "{task}"
    );

    // An output flood fails with the first bytes kept as the result.
    let flood = wasm(
        r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (data (i32.const 100) "yyyyyyyyyyyyyyyy")
        (func (export "_start")
          (i32.store (i32.const 0) (i32.const 100))
          (i32.store (i32.const 4) (i32.const 16))
          (loop (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0))))"#,
    );
    let task = app.run_on_new_agent(&token, "Flood", flood).await;
    assert_eq!(
        (&task["status"], &task["error_code"]),
        (&json!("failed"), &json!("output_limit")),
        "{task}"
    );
    let kept = task["result"].as_str().unwrap();
    assert_eq!(kept.len(), 1024 * 1024, "the first MiB is kept");
    assert!(kept.bytes().all(|b| b == b'y'));
    let (status, _) = app.get("/health", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn submissions_are_validated_and_auctions_explain_refusals() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    app.publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.5)
        .await;
    let submit = |body: serde_json::Value| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post_json("/api/v1/tasks/submit", Some(&token), &body)
                .await
        }
    };

    let none = submit(json!({"query": "x", "capabilities": ["vision"], "budget": 1})).await;
    assert_error(&none, 422, "no_eligible_agent");
    assert!(
        none.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vision")
    );
    let poor = submit(json!({"query": "x", "capabilities": ["echo"], "budget": 0.1})).await;
    assert_error(&poor, 422, "no_eligible_agent");
    assert!(
        poor.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("budget")
    );

    assert_error(
        &submit(json!({"query": "x", "budget": 1, "timeout": 301})).await,
        400,
        "invalid_timeout",
    );
    for timeout in [json!(0), json!(-5), json!(2.5)] {
        assert_error(
            &submit(json!({"query": "x", "budget": 1, "timeout": timeout})).await,
            400,
            "invalid_timeout",
        );
    }
    assert_error(
        &submit(json!({"query": "x", "budget": 1, "priority": "urgent"})).await,
        400,
        "invalid_priority",
    );
    assert_error(
        &submit(json!({"query": "x", "budget": -1})).await,
        400,
        "invalid_budget",
    );
    assert_error(
        &submit(json!({"query": "  ", "budget": 1})).await,
        400,
        "invalid_request",
    );
    assert_error(&submit(json!({"query": "x"})).await, 400, "invalid_request");
    let unknown = uuid::Uuid::new_v4();
    assert_error(
        &submit(json!({"query": "x", "budget": 1, "agent_id": unknown})).await,
        404,
        "agent_not_found",
    );

    // `medium` is accepted as `normal`.
    let (status, body) = submit(json!({"query": "x", "budget": 1, "priority": "medium"})).await;
    assert_eq!(status, 202, "{body}");
    let (_, task) = app
        .get(
            &format!("/api/v1/tasks/{}", body["task_id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!(task["priority"], "normal");
}

#[tokio::test]
async fn users_see_only_their_own_tasks() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let echo = app
        .publish(&alice, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let first = app
        .submit(
            &alice,
            json!({"query": "one", "agent_id": echo, "budget": 0}),
        )
        .await;
    let second = app
        .submit(
            &alice,
            json!({"query": "two", "agent_id": echo, "budget": 0}),
        )
        .await;

    // Another user's task answers exactly as an id that never existed: 404, so task ids
    // reveal nothing to others, on every task route.
    let unknown = uuid::Uuid::now_v7().to_string();
    for id in [first.as_str(), unknown.as_str()] {
        let message = assert_error(
            &app.get(&format!("/api/v1/tasks/{id}"), Some(&bob)).await,
            404,
            "task_not_found",
        )
        .to_owned();
        assert_eq!(message, format!("no task with id `{id}`"));
        assert_error(
            &app.post_json(
                &format!("/api/v1/tasks/{id}/cancel"),
                Some(&bob),
                &json!({}),
            )
            .await,
            404,
            "task_not_found",
        );
    }
    assert_error(
        &app.get("/api/v1/tasks/not-a-uuid", Some(&bob)).await,
        404,
        "task_not_found",
    );
    let (status, task) = app
        .get(&format!("/api/v1/tasks/{first}"), Some(&alice))
        .await;
    assert_eq!((status, task["id"].as_str()), (200, Some(first.as_str())));
    let (_, bobs) = app.get("/api/v1/tasks", Some(&bob)).await;
    assert_eq!(
        (
            bobs["total"].as_u64(),
            bobs["tasks"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );

    let (_, mine) = app.get("/api/v1/tasks?limit=1", Some(&alice)).await;
    assert_eq!(mine["total"], 2);
    assert_eq!(mine["tasks"][0]["id"], second.as_str(), "newest first");
    let (_, next) = app
        .get("/api/v1/tasks?limit=1&offset=1", Some(&alice))
        .await;
    assert_eq!(next["tasks"][0]["id"], first.as_str());
}

const TRAP_AGENT: &str =
    r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;

#[tokio::test]
async fn a_failed_run_fails_over_to_the_next_bidder() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    // The cheap agent wins the first auction and traps; the task must move on to the other.
    let trap = app
        .publish(&token, "Cheap-Trap", wasm(TRAP_AGENT), "x", 0.0)
        .await;
    let echo = app
        .publish(&token, "Dear-Echo", wasm(ECHO_AGENT), "x", 0.5)
        .await;
    let task = app
        .run_task(
            &token,
            json!({"query": "second time lucky", "capabilities": ["x"], "budget": 1}),
        )
        .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"], "second time lucky");
    assert_eq!(
        (task["agent_id"].as_str(), task["price"].as_f64()),
        (Some(echo.as_str()), Some(0.5))
    );
    assert_eq!(
        task["bids"][0]["agent_id"],
        trap.as_str(),
        "the first auction's ranking is kept"
    );
    // The re-auction ran without the failed agent, and its winner ran next.
    let rerun = task["failover_bids"][0].as_array().unwrap();
    assert_eq!(
        rerun
            .iter()
            .map(|b| b["agent_id"].as_str())
            .collect::<Vec<_>>(),
        [Some(echo.as_str())],
        "{task}"
    );
    assert!(rerun[0]["total"].is_number() && rerun[0]["scores"]["reputation"].is_number());
    let attempts = task["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{task}");
    assert_eq!(
        (
            attempts[0]["agent_id"].as_str(),
            attempts[0]["outcome"].as_str()
        ),
        (Some(trap.as_str()), Some("failed"))
    );
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable")
    );
    assert_eq!(
        (
            attempts[1]["agent_id"].as_str(),
            attempts[1]["outcome"].as_str()
        ),
        (Some(echo.as_str()), Some("completed"))
    );
    // The failure counts against the agent that failed.
    let (_, trap_agent) = app
        .get(&format!("/api/v1/agents/{trap}"), Some(&token))
        .await;
    assert_eq!(trap_agent["stats"]["tasks_failed"], 1);
}

#[tokio::test]
async fn failover_stops_after_three_attempts_and_never_for_a_pinned_agent() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let mut traps = Vec::new();
    for (i, price) in [0.0, 0.1, 0.2].into_iter().enumerate() {
        traps.push(
            app.publish(&token, &format!("Trap-{i}"), wasm(TRAP_AGENT), "x", price)
                .await,
        );
    }
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "x", 0.9)
        .await;
    let task = app
        .run_task(
            &token,
            json!({"query": "q", "capabilities": ["x"], "budget": 1}),
        )
        .await;
    assert_eq!(task["status"], "failed", "{task}");
    let tried: Vec<&str> = task["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        tried,
        traps.iter().map(String::as_str).collect::<Vec<_>>(),
        "three attempts, cheapest first; Echo never ran"
    );
    assert!(task["error"].as_str().unwrap().contains("unreachable"));

    let pinned = app
        .run_task(
            &token,
            json!({"query": "q", "agent_id": traps[0], "budget": 1}),
        )
        .await;
    assert_eq!(
        (
            pinned["status"].as_str(),
            pinned["attempts"].as_array().map(Vec::len)
        ),
        (Some("failed"), Some(1))
    );
    let (_, echo_agent) = app
        .get(&format!("/api/v1/agents/{echo}"), Some(&token))
        .await;
    assert_eq!(echo_agent["stats"]["tasks_completed"], 0);
}

#[tokio::test]
async fn auction_preview_ranks_without_submitting() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let cheap = app
        .publish(&token, "Cheap", wasm(ECHO_AGENT), "x", 0.1)
        .await;
    let dear = app
        .publish(&token, "Dear", wasm(ECHO_AGENT), "x", 0.3)
        .await;
    app.publish(&token, "Other", wasm(ECHO_AGENT), "y", 0.0)
        .await;
    let (status, preview) = app
        .post_json(
            "/api/v1/auctions/preview",
            Some(&token),
            &json!({"capabilities": ["x"], "budget": 1}),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    let ids: Vec<&str> = preview["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["agent_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [cheap.as_str(), dear.as_str()]);
    assert_eq!(preview["bids"][0]["scores"]["price"], 1.0);
    assert_eq!(preview["bids"][1]["total"], 0.7);
    let (_, stats) = app.get("/api/v1/tasks/stats", Some(&token)).await;
    assert_eq!(stats["total"], 0, "nothing was submitted");

    let none = app
        .post_json(
            "/api/v1/auctions/preview",
            Some(&token),
            &json!({"capabilities": ["x"], "budget": 0.05}),
        )
        .await;
    assert_error(&none, 422, "no_eligible_agent");
    let bad = app
        .post_json(
            "/api/v1/auctions/preview",
            Some(&token),
            &json!({"budget": -1}),
        )
        .await;
    assert_error(&bad, 400, "invalid_budget");
}

#[tokio::test]
async fn prefer_wait_returns_the_finished_task_or_falls_back_to_202() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let spin = app
        .publish(&token, "Spinner", wasm(LOOP_AGENT), "spin", 0.0)
        .await;
    let submit = |body: serde_json::Value, prefer: &'static str| {
        let req = app
            .client
            .post(app.url("/api/v1/tasks/submit"))
            .bearer_auth(&token)
            .header("Prefer", prefer)
            .json(&body);
        async move { req.send().await.unwrap() }
    };

    let resp = submit(
        json!({"query": "right away", "agent_id": echo, "budget": 0}),
        "wait=10",
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["preference-applied"], "wait=10");
    let task: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (task["status"].as_str(), task["result"].as_str()),
        (Some("completed"), Some("right away"))
    );

    let started = Instant::now();
    let resp = submit(
        json!({"query": "slow", "agent_id": spin, "budget": 0, "timeout": 5}),
        "respond-async, wait=1",
    )
    .await;
    assert_eq!(resp.status(), 202);
    assert!(started.elapsed().as_millis() >= 1000);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "queued");

    let resp = submit(
        json!({"query": "x", "agent_id": echo, "budget": 0}),
        "wait=61",
    )
    .await;
    assert_error(&crate::helpers::read(resp).await, 400, "invalid_request");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_task() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let echo = app
        .publish(&alice, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let submit = |token: &str, key: &str| {
        let req = app
            .client
            .post(app.url("/api/v1/tasks/submit"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&json!({"query": "once", "agent_id": echo, "budget": 0}));
        async move { crate::helpers::read(req.send().await.unwrap()).await }
    };
    let (status, first) = submit(&alice, "order-42").await;
    assert_eq!(status, 202, "{first}");
    let (status, retry) = submit(&alice, "order-42").await;
    assert_eq!(status, 202, "{retry}");
    assert_eq!(retry["task_id"], first["task_id"]);
    let (_, other_key) = submit(&alice, "order-43").await;
    assert_ne!(other_key["task_id"], first["task_id"]);
    let (_, other_user) = submit(&bob, "order-42").await;
    assert_ne!(other_user["task_id"], first["task_id"], "keys are per user");
    let (_, stats) = app.get("/api/v1/tasks/stats", Some(&alice)).await;
    assert_eq!(stats["total"], 2);
    assert_error(&submit(&alice, "").await, 400, "invalid_request");
}

#[tokio::test]
async fn task_lists_filter_and_page_with_cursors() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let trap = app
        .publish(&token, "Trap", wasm(TRAP_AGENT), "trap", 0.0)
        .await;
    let mut ids = Vec::new();
    for (i, (agent, priority)) in [
        (&echo, "low"),
        (&trap, "high"),
        (&echo, "high"),
        (&echo, "low"),
        (&trap, "low"),
    ]
    .into_iter()
    .enumerate()
    {
        let body =
            json!({"query": format!("t{i}"), "agent_id": agent, "budget": 0, "priority": priority});
        let task = app.run_task(&token, body).await;
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let list = |query: &str| {
        let path = format!("/api/v1/tasks?{query}");
        let (app, token) = (&app, token.clone());
        async move { app.get(&path, Some(&token)).await }
    };
    let ids_of = |v: &serde_json::Value| -> Vec<String> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let (_, failed) = list("status=failed").await;
    assert_eq!(
        (ids_of(&failed), failed["total"].as_u64()),
        (vec![ids[4].clone(), ids[1].clone()], Some(2))
    );
    let (_, high) = list("priority=high").await;
    assert_eq!(ids_of(&high), [ids[2].clone(), ids[1].clone()]);
    let (_, echo_low) = list(&format!("agent_id={echo}&priority=low")).await;
    assert_eq!(ids_of(&echo_low), [ids[3].clone(), ids[0].clone()]);

    // Walk everything two at a time, newest first.
    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    loop {
        let (status, page) = list(&query).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ids.iter().rev().cloned().collect::<Vec<_>>());

    assert_error(&list("cursor=garbage").await, 400, "invalid_cursor");
    assert_error(&list("status=sleeping").await, 400, "invalid_request");
    assert_error(&list("agent_id=nope").await, 400, "invalid_request");
}

#[tokio::test]
async fn cancel_stops_queued_and_running_tasks_and_refuses_finished_ones() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let other = app.signup("other@example.com").await;
    let sleeper = app
        .publish(&token, "Sleeper", wasm(SLEEP_AGENT), "sleep", 0.0)
        .await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let cancel = |token: &str, id: &str| {
        let path = format!("/api/v1/tasks/{id}/cancel");
        let (app, token) = (&app, token.to_owned());
        async move { app.post_json(&path, Some(&token), &json!({})).await }
    };

    // Two workers: two sleepers occupy them, so the third task stays queued.
    let mut updates = app.task_updates(&token).await;
    let running = updates.occupy_worker(&app, &token, &sleeper).await;
    let busy = updates.occupy_worker(&app, &token, &sleeper).await;
    let queued = app
        .submit(&token, json!({"query": "c", "agent_id": echo, "budget": 0}))
        .await;

    assert_error(&cancel(&other, &queued).await, 404, "task_not_found");
    let (status, task) = cancel(&token, &queued).await;
    assert_eq!(
        (status, task["status"].as_str()),
        (200, Some("canceled")),
        "{task}"
    );
    let (status, task) = cancel(&token, &running).await;
    assert_eq!(
        (status, task["status"].as_str()),
        (200, Some("canceled")),
        "{task}"
    );
    assert!(task["duration_ms"].as_u64().unwrap() < 5000);
    let (_, task) = cancel(&token, &busy).await;
    assert_eq!(task["status"], "canceled");
    assert_eq!(task["error_code"], "canceled");

    assert_error(&cancel(&token, &queued).await, 409, "task_finished");
    let (_, stats) = app.get("/api/v1/tasks/stats", Some(&token)).await;
    assert_eq!(
        (
            stats["canceled"].as_u64(),
            stats["queued"].as_u64(),
            stats["running"].as_u64()
        ),
        (Some(3), Some(0), Some(0))
    );
    // Canceling is not the agent's failure.
    let (_, agent) = app
        .get(&format!("/api/v1/agents/{sleeper}"), Some(&token))
        .await;
    assert_eq!(agent["stats"]["tasks_failed"], 0);
}

#[tokio::test]
async fn a_deadline_bounds_the_run_and_must_be_in_the_future() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    let spin = app
        .publish(&token, "Spinner", wasm(LOOP_AGENT), "spin", 0.0)
        .await;
    let format = &time::format_description::well_known::Rfc3339;
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500))
        .format(format)
        .unwrap();
    let started = Instant::now();
    let task = app
        .run_task(
            &token,
            json!({"query": "q", "agent_id": spin, "budget": 0, "timeout": 30, "deadline": soon}),
        )
        .await;
    assert_eq!(task["status"], "timed_out", "{task}");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 1."),
        "{task}"
    );
    assert!(
        started.elapsed().as_millis() < 2500,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(task["deadline"], soon.as_str());

    let past = (time::OffsetDateTime::now_utc() - time::Duration::seconds(1))
        .format(format)
        .unwrap();
    // In the past; not RFC 3339; valid RFC 3339 but past the year 9999 in UTC.
    for deadline in [past.as_str(), "tomorrow", "9999-12-31T23:30:00-01:00"] {
        let resp = app
            .post_json(
                "/api/v1/tasks/submit",
                Some(&token),
                &json!({"query": "q", "budget": 0, "deadline": deadline}),
            )
            .await;
        assert_error(&resp, 400, "invalid_request");
    }
}

#[tokio::test]
async fn a_deadline_with_an_offset_is_kept_as_the_same_instant_in_utc() {
    let app = spawn_app().await;
    let token = app.signup("user@example.com").await;
    app.publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let task = app
        .run_task(
            &token,
            json!({"query": "q", "capabilities": ["echo"], "budget": 0, "deadline": "2999-01-01T02:00:00+02:00"}),
        )
        .await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["deadline"], "2999-01-01T00:00:00Z");
}

#[tokio::test]
async fn a_full_queue_refuses_submits_with_503_and_retry_after() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = crate::helpers::settings(dir.path(), 1);
    s.tasks.queue_capacity = 1;
    let app = crate::helpers::spawn_with(s, dir).await;
    let token = app.signup("user@example.com").await;
    let sleeper = app
        .publish(&token, "Sleeper", wasm(SLEEP_AGENT), "sleep", 0.0)
        .await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    // The one worker is busy, so the next task stays queued and fills the queue.
    let mut updates = app.task_updates(&token).await;
    let busy = updates.occupy_worker(&app, &token, &sleeper).await;
    let queued = app
        .submit(&token, json!({"query": "b", "agent_id": echo, "budget": 0}))
        .await;

    let resp = app
        .client
        .post(app.url("/api/v1/tasks/submit"))
        .bearer_auth(&token)
        .json(&json!({"query": "c", "agent_id": echo, "budget": 0}))
        .send()
        .await
        .unwrap();
    let retry_after = resp.headers().get("retry-after").cloned();
    assert_error(&crate::helpers::read(resp).await, 503, "queue_full");
    assert!(retry_after.is_some_and(|v| v.to_str().unwrap().parse::<u64>().is_ok()));
    let (_, stats) = app.get("/api/v1/tasks/stats", Some(&token)).await;
    assert_eq!(stats["queue_depth"]["normal"], 1, "{stats}");

    // Room again once the queue drains.
    let path = format!("/api/v1/tasks/{busy}/cancel");
    app.post_json(&path, Some(&token), &json!({})).await;
    let done = app.wait_for_task(&token, &queued).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (status, body) = app
        .post_json(
            "/api/v1/tasks/submit",
            Some(&token),
            &json!({"query": "d", "agent_id": echo, "budget": 0}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

/// Regression: after a closed-loop overload, `/tasks/stats` and the `zerostate_tasks` gauge
/// kept showing tasks queued that no queue held. The path: a client that hung up while its
/// submit waited for the journal's fsync dropped the handler after the task was journaled
/// and before it was queued, stranding it `queued` until a restart. Work after journaling
/// now runs to its end whoever waits for it, and every count comes from the store.
#[tokio::test]
async fn counts_agree_with_the_queue_after_an_overload_where_clients_hang_up() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = crate::helpers::settings(dir.path(), 1);
    s.tasks.queue_capacity = 64;
    let app = crate::helpers::spawn_with(s, dir).await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let mut socket = app.socket(&token).await;
    let subscribe = json!({"type": "subscribe", "topic": "queue"}).to_string();
    socket.send(Message::text(subscribe)).await.unwrap();

    // 600 submits, 48 at a time, against a queue of 64 and one worker; a client in two gives
    // up after 0.5 to 40 ms, some while its submit waits for the journal's fsync.
    let url = app.url("/api/v1/tasks/submit");
    let body = json!({"query": "q", "agent_id": echo, "budget": 0});
    let outcomes: Vec<Result<u16, ()>> = futures_util::stream::iter(0..600u64)
        .map(|i| {
            let (url, body, token) = (url.clone(), body.clone(), token.clone());
            async move {
                let mut client = reqwest::Client::builder();
                if i % 2 == 0 {
                    let patience = std::time::Duration::from_micros(500 + i * 997 % 40_000);
                    client = client.timeout(patience);
                }
                let sent = client
                    .build()
                    .unwrap()
                    .post(url)
                    .bearer_auth(token)
                    .json(&body);
                match sent.send().await {
                    Ok(resp) => Ok(resp.status().as_u16()),
                    Err(_) => Err(()),
                }
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;
    let accepted = outcomes.iter().filter(|o| **o == Ok(202)).count() as u64;
    let refused = outcomes.iter().filter(|o| **o == Ok(503)).count();
    let hung_up = outcomes.iter().filter(|o| o.is_err()).count() as u64;
    assert!(accepted > 0 && refused > 0 && hung_up > 0, "{outcomes:?}");
    assert_eq!(
        accepted as usize + refused + hung_up as usize,
        600,
        "{outcomes:?}"
    );

    // The queue topic speaks at most once a second while the queue changes, and not at all
    // while it is idle. Once it has been quiet for 2 s (every submit, hung up or not, has
    // reached its end), its last word must be "empty, nothing running", and so must the counts.
    let deadline = Instant::now() + crate::helpers::DEADLINE;
    let quiet = std::time::Duration::from_secs(2);
    let mut last = json!(null);
    while let Ok(event) = tokio::time::timeout(
        quiet,
        crate::helpers::next_of_type(&mut socket, "queue_update"),
    )
    .await
    {
        last = event;
        assert!(Instant::now() < deadline, "the queue never settled: {last}");
    }
    assert_eq!(last["data"]["queued"], 0, "{last}");
    assert_eq!(last["data"]["running"], 0, "{last}");
    let (_, stats) = app.get("/api/v1/tasks/stats", Some(&token)).await;
    assert!(
        stats["queued"] == 0 && stats["running"] == 0,
        "the queue has been empty and idle for {quiet:?}, yet the counts say {stats}"
    );
    let total = stats["total"].as_u64().unwrap();
    assert_eq!(stats["completed"].as_u64(), Some(total), "{stats}");
    assert!(
        (accepted..=accepted + hung_up).contains(&total),
        "{accepted} accepted and {hung_up} hung up, {total} tasks: {stats}"
    );
    let (_, listed) = app.get("/api/v1/tasks?status=queued", Some(&token)).await;
    assert_eq!(listed["total"], 0, "{listed}");
    let metrics = app.text("/metrics").await;
    for line in [
        "zerostate_tasks{status=\"queued\"} 0",
        "zerostate_tasks{status=\"running\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }
    assert!(
        metrics.contains(&format!("zerostate_tasks{{status=\"completed\"}} {total}")),
        "the gauge counts {total} completed"
    );
}
