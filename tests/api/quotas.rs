//! Per-user quotas (`[quotas]`) and fair scheduling: every quota refuses at its limit with its
//! code and a message naming it, accepts below it, and spares signed-in admins; within a
//! priority users take turns; a user at the cap on runs waits while others run; `critical`
//! is for admins or a daily allowance.

use std::sync::Arc;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zerostate::config::{QuotaSettings, Settings};

use crate::helpers::*;

/// An app with an admin account (see [`spawn_with_admin`]), `workers` workers and the quotas
/// `configure` sets.
async fn app_with(workers: usize, configure: impl FnOnce(&mut QuotaSettings)) -> (TestApp, String) {
    spawn_with_admin_using(|s: &mut Settings| {
        s.workers = workers;
        configure(&mut s.quotas);
    })
    .await
}

/// Restarts `app` on its data dir with the same quotas; returns it with a fresh admin token.
async fn restart(app: TestApp, workers: usize, quotas: QuotaSettings) -> (TestApp, String) {
    let dir = app.stop().await;
    let mut s = settings(dir.path(), workers);
    s.quotas = quotas;
    let app = spawn_with(s, dir).await;
    let token = app.admin_session().await;
    (app, token)
}

/// Asserts a refusal with `code` whose message names `quota` and its `limit`.
#[track_caller]
fn assert_quota(response: &(u16, Value), status: u16, code: &str, quota: &str, limit: u64) {
    let message = assert_error(response, status, code);
    assert!(message.contains(quota), "{message}");
    assert!(message.contains(&limit.to_string()), "{message}");
}

async fn submit_raw(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/tasks/submit"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

async fn new_version(app: &TestApp, token: &str, id: &str, version: &str) -> (u16, Value) {
    let form = Form::new()
        .part(
            "wasm_binary",
            Part::bytes(wasm(ECHO_AGENT)).file_name("agent.wasm"),
        )
        .text("version", version.to_owned());
    let path = format!("/api/v1/agents/{id}/binary");
    app.send_form(reqwest::Method::POST, &path, Some(token), form, true)
        .await
}

#[tokio::test]
async fn agents_and_module_bytes_are_refused_with_409_at_their_limit() {
    let echo_bytes = wasm(ECHO_AGENT).len() as u64;
    let module_bytes = 3 * echo_bytes;
    let (app, admin) = app_with(1, |q| {
        q.agents = 2;
        q.module_bytes = module_bytes;
    })
    .await;
    let token = app.signup("maker@example.com").await;
    let first = app
        .publish(&token, "One", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    app.publish(&token, "Two", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let third = app
        .upload(&token, "Three", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    assert_quota(&third, 409, "quota_reached", "agents", 2);
    // Two agents hold two modules: room for one more version, not two.
    let (status, body) = new_version(&app, &token, &first, "1.1.0").await;
    assert_eq!(status, 201, "{body}");
    let refused = new_version(&app, &token, &first, "1.2.0").await;
    assert_quota(&refused, 409, "quota_reached", "module_bytes", module_bytes);
    // Nothing of the refused uploads was kept; deleting frees the quota.
    let (_, mine) = app.get("/api/v1/agents?owner=me", Some(&token)).await;
    assert_eq!(mine["total"], 2, "{mine}");
    let (status, _) = app.delete_agent(&token, &first).await;
    assert_eq!(status, 204);
    app.publish(&token, "Three", wasm(ECHO_AGENT), "echo", 0.0)
        .await;

    // Admins are exempt, and another user has their own quota.
    for name in ["A1", "A2", "A3", "A4"] {
        app.publish(&admin, name, wasm(ECHO_AGENT), "echo", 0.0)
            .await;
    }
    let other = app.signup("other@example.com").await;
    app.publish(&other, "Mine", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
}

#[tokio::test]
async fn api_keys_are_refused_with_too_many_api_keys_at_the_configured_limit() {
    let (app, admin) = app_with(1, |q| q.api_keys = 2).await;
    let token = app.signup("script@example.com").await;
    let create = |token: String| {
        let app = &app;
        async move {
            let body = json!({"name": "k", "scopes": ["tasks:read"]});
            app.post_json("/api/v1/users/me/api-keys", Some(&token), &body)
                .await
        }
    };
    for _ in 0..2 {
        assert_eq!(create(token.clone()).await.0, 201);
    }
    assert_quota(
        &create(token.clone()).await,
        409,
        "too_many_api_keys",
        "api_keys",
        2,
    );
    for _ in 0..3 {
        assert_eq!(create(admin.clone()).await.0, 201);
    }
}

#[tokio::test]
async fn a_websocket_beyond_the_quota_is_refused_before_the_upgrade_and_a_closed_one_frees_its_place()
 {
    let (app, admin) = app_with(1, |q| q.websocket_connections = 2).await;
    let token = app.signup("watcher@example.com").await;
    let first = app.socket(&token).await;
    let _second = app.socket(&token).await;
    let url = format!("{}/api/v1/ws/connect?token={token}", app.ws_base);
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("the third socket was not refused with an HTTP answer");
    };
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_quota(
        &(response.status().as_u16(), body),
        409,
        "quota_reached",
        "websocket_connections",
        2,
    );
    // Admins are exempt.
    let _admin_sockets = [
        app.socket(&admin).await,
        app.socket(&admin).await,
        app.socket(&admin).await,
    ];
    // Once the server has seen a socket close, its place is free again.
    drop(first);
    tokio::time::timeout(DEADLINE, async {
        loop {
            if tokio_tungstenite::connect_async(url.as_str()).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a closed socket frees its place");
}

#[tokio::test]
async fn queued_tasks_are_refused_with_429_at_the_limit_and_accepted_below() {
    // No workers: submitted tasks stay queued.
    let (app, admin) = app_with(0, |q| q.queued_tasks = 2).await;
    let token = app.signup("busy@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let body = json!({"query": "q", "agent_id": echo, "budget": 0});
    let first = app.submit(&token, body.clone()).await;
    app.submit(&token, body.clone()).await;
    let resp = submit_raw(&app, &token, &body).await;
    assert_eq!(retry_after(&resp), None, "no time applies");
    assert_quota(&read(resp).await, 429, "quota_exceeded", "queued_tasks", 2);

    // Others are not held back by it: another user, and an admin.
    let other = app.signup("other@example.com").await;
    app.submit(&other, body.clone()).await;
    for _ in 0..3 {
        app.submit(&admin, body.clone()).await;
    }
    // A canceled task makes room.
    let path = format!("/api/v1/tasks/{first}/cancel");
    assert_eq!(app.post_json(&path, Some(&token), &json!({})).await.0, 200);
    app.submit(&token, body).await;
}

#[tokio::test]
async fn result_bytes_per_day_refuse_with_429_until_midnight_utc_even_after_a_restart() {
    let quotas = QuotaSettings {
        result_bytes_per_day: 20,
        ..QuotaSettings::default()
    };
    let (app, admin) = app_with(1, |q| *q = quotas).await;
    let token = app.signup("chatty@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let body =
        json!({"query": "an answer longer than twenty bytes", "agent_id": echo, "budget": 0});
    let done = app.run_task(&token, body.clone()).await;
    assert_eq!(done["status"], "completed", "{done}");

    let assert_refused = |resp: reqwest::Response| async move {
        let secs = retry_after(&resp).expect("Retry-After until midnight UTC");
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let to_midnight = 86_400 - now.rem_euclid(86_400) as u64;
        assert!(secs.abs_diff(to_midnight) <= 5, "{secs} vs {to_midnight}");
        assert_quota(
            &read(resp).await,
            429,
            "quota_exceeded",
            "result_bytes_per_day",
            20,
        );
    };
    assert_refused(submit_raw(&app, &token, &body).await).await;
    assert_eq!(
        app.run_task(&admin, body.clone()).await["status"],
        "completed"
    );

    // Counted again at start from the tasks that finished today.
    let (app, _) = restart(app, 1, quotas).await;
    assert_refused(submit_raw(&app, &token, &body).await).await;
    let other = app.signup("quiet@example.com").await;
    app.submit(&other, body).await;
}

#[tokio::test]
async fn critical_is_for_admins_or_within_a_daily_allowance() {
    let (app, admin) = app_with(1, |_| {}).await;
    let token = app.signup("eager@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let critical = json!({"query": "now", "agent_id": echo, "budget": 0, "priority": "critical"});
    let resp = submit_raw(&app, &token, &critical).await;
    assert_eq!(retry_after(&resp), None);
    let refused = read(resp).await;
    let message = assert_error(&refused, 403, "priority_not_allowed");
    assert!(message.contains("admins"), "{message}");
    app.submit(&admin, critical.clone()).await;
    let high = json!({"query": "soon", "agent_id": echo, "budget": 0, "priority": "high"});
    app.submit(&token, high).await;
    app.stop().await;

    let quotas = QuotaSettings {
        critical_tasks_per_day: 1,
        ..QuotaSettings::default()
    };
    let (app, _) = app_with(0, |q| *q = quotas).await;
    let token = app.signup("eager@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let critical = json!({"query": "now", "agent_id": echo, "budget": 0, "priority": "critical"});
    app.submit(&token, critical.clone()).await;
    let resp = submit_raw(&app, &token, &critical).await;
    assert!(retry_after(&resp).is_some_and(|s| (1..=86_400).contains(&s)));
    assert_quota(
        &read(resp).await,
        403,
        "priority_not_allowed",
        "critical_tasks_per_day",
        1,
    );
    // The allowance used today is still used after a restart.
    let (app, _) = restart(app, 0, quotas).await;
    let resp = submit_raw(&app, &token, &critical).await;
    assert_error(&read(resp).await, 403, "priority_not_allowed");
}

/// `started_at` of a finished task.
fn started(task: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(task["started_at"].as_str().unwrap(), &Rfc3339).unwrap()
}

fn completed(task: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(task["completed_at"].as_str().unwrap(), &Rfc3339).unwrap()
}

/// Waits for every task in `ids` to finish; returns them.
async fn finished(app: &TestApp, token: &str, ids: &[String]) -> Vec<Value> {
    let mut tasks = Vec::new();
    for id in ids {
        tasks.push(app.wait_for_task(token, id).await);
    }
    tasks
}

#[tokio::test]
async fn a_users_backlog_does_not_starve_another_users_later_task() {
    // One worker; each of Ada's tasks spins until its 1 s timeout.
    let (app, _) = app_with(1, |_| {}).await;
    let ada = app.signup("ada@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let spinner = app
        .publish(&ada, "Spinner", wasm(LOOP_AGENT), "spin", 0.0)
        .await;
    let echo = app
        .publish(&bob, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let mut backlog = Vec::new();
    for i in 0..4 {
        let body =
            json!({"query": format!("a{i}"), "agent_id": spinner, "budget": 0, "timeout": 1});
        backlog.push(app.submit(&ada, body).await);
    }
    let late = app
        .submit(&bob, json!({"query": "b", "agent_id": echo, "budget": 0}))
        .await;

    let bob_task = app.wait_for_task(&bob, &late).await;
    let ada_tasks = finished(&app, &ada, &backlog).await;
    assert_eq!(bob_task["status"], "completed", "{bob_task}");
    // Submit order would run all of Ada's first; taking turns, at most two of hers (the one
    // running, and the one whose turn came first) start before Bob's.
    let before_bob = ada_tasks
        .iter()
        .filter(|t| started(t) < started(&bob_task))
        .count();
    assert!(
        before_bob <= 2,
        "{before_bob} of Ada's tasks ran before Bob's"
    );
}

#[tokio::test]
async fn the_cap_on_runs_holds_while_other_users_run() {
    // Three workers, one run at a time per user: Ada's tasks wait for each other, Bob's run
    // beside hers, and the third worker stays idle rather than break the cap.
    let (app, _) = app_with(3, |q| q.concurrent_runs = 1).await;
    let ada = app.signup("ada@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let spinner = app
        .publish(&ada, "Spinner", wasm(LOOP_AGENT), "spin", 0.0)
        .await;
    let body =
        json!({"query": "x", "agent_id": spinner, "budget": 0, "timeout": 1, "priority": "high"});
    let mut ada_ids = Vec::new();
    for _ in 0..3 {
        ada_ids.push(app.submit(&ada, body.clone()).await);
    }
    let low =
        json!({"query": "y", "agent_id": spinner, "budget": 0, "timeout": 1, "priority": "low"});
    let mut bob_ids = Vec::new();
    for _ in 0..2 {
        bob_ids.push(app.submit(&bob, low.clone()).await);
    }
    let ada_tasks = finished(&app, &ada, &ada_ids).await;
    let bob_tasks = finished(&app, &bob, &bob_ids).await;

    for tasks in [&ada_tasks, &bob_tasks] {
        let mut runs: Vec<_> = tasks.iter().map(|t| (started(t), completed(t))).collect();
        runs.sort();
        for pair in runs.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "two runs of one user overlapped: {runs:?}"
            );
        }
    }
    // Bob's low tasks did not wait for Ada's high ones to drain.
    let ada_last = ada_tasks.iter().map(started).max().unwrap();
    let bob_first = bob_tasks.iter().map(started).min().unwrap();
    assert!(bob_first < ada_last, "Bob waited for Ada's backlog");
}

#[tokio::test]
async fn after_a_restart_users_take_turns_in_the_order_of_their_oldest_task() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_with(settings(dir.path(), 0), dir).await;
    let ada = app.signup("ada@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let echo = app
        .publish(&ada, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let body = json!({"query": "q", "agent_id": echo, "budget": 0});
    let mut ada_ids = Vec::new();
    for _ in 0..3 {
        ada_ids.push(app.submit(&ada, body.clone()).await);
    }
    let bob_id = app.submit(&bob, body).await;
    let dir = app.stop().await;

    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    let ada_tasks = finished(&app, &ada, &ada_ids).await;
    let bob_task = app.wait_for_task(&bob, &bob_id).await;
    let mut order: Vec<(OffsetDateTime, &str)> = ada_tasks
        .iter()
        .map(|t| (started(t), "ada"))
        .chain([(started(&bob_task), "bob")])
        .collect();
    order.sort();
    let order: Vec<_> = order.into_iter().map(|(_, who)| who).collect();
    assert_eq!(order, ["ada", "bob", "ada", "ada"]);
}
