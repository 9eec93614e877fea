//! The executor's contract through the API: background builds and their statuses, the
//! validation policy from config, manifest limits, argv and env, fuel, compile bombs, and
//! restarts that load compiled code instead of compiling it.

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{Value, json};
use zerostate::agents::Warmup;
use zerostate::records::{AgentStatus, Policy};
use zerostate::store::Store;

use crate::helpers::{
    DEADLINE, ECHO_AGENT, GROW_BOMB_AGENT, LOOP_AGENT, TestApp, assert_error, repo_file, settings,
    spawn_app, spawn_with, wasm,
};

/// Prints argv and the environment, each as the NUL-separated strings WASI hands over, on one
/// line each.
const ENV_AGENT: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 60) "\n")
  (func $out (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (drop (call $args_sizes (i32.const 16) (i32.const 20)))
    (drop (call $args (i32.const 1024) (i32.const 8192)))
    (call $out (i32.const 8192) (i32.load (i32.const 20)))
    (call $out (i32.const 60) (i32.const 1))
    (drop (call $env_sizes (i32.const 24) (i32.const 28)))
    (drop (call $env (i32.const 2048) (i32.const 16384)))
    (call $out (i32.const 16384) (i32.load (i32.const 28)))))"#;

/// A `_start` of `depth` nested blocks (flat syntax: the WAT parser does not recurse).
fn nested_blocks(depth: usize) -> Vec<u8> {
    wasm(&format!(
        r#"(module (memory (export "memory") 1) (func (export "_start") {} {}))"#,
        "block ".repeat(depth),
        "end ".repeat(depth)
    ))
}

/// A `_start` of `n` times `i32.const 1 drop` (3 bytes each).
fn long_function(n: usize) -> Vec<u8> {
    wasm(&format!(
        r#"(module (memory (export "memory") 1) (func (export "_start") {}))"#,
        "i32.const 1 drop ".repeat(n)
    ))
}

/// Uploads `module` with `manifest`; the answer must be 201 at `status`, waiting for the
/// build's end unless that is `validating`. Returns the body.
async fn upload_expecting(
    app: &TestApp,
    token: &str,
    manifest: &Value,
    module: Vec<u8>,
    status: &str,
) -> Value {
    let wait = status != "validating";
    let (code, body) = app.upload_manifest(token, manifest, module, wait).await;
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some(status)),
        "{body}"
    );
    body
}

fn manifest(name: &str, extra: Value) -> Value {
    let mut m = json!({"name": name, "capabilities": [name.to_lowercase()], "version": "1.0.0"});
    m.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    m
}

/// `agent_update` messages, read from a socket opened before the action they follow.
struct AgentUpdates {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl AgentUpdates {
    async fn open(app: &TestApp, token: &str) -> Self {
        let url = format!("{}/api/v1/ws/connect?token={token}", app.ws_base);
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        // The hello proves the subscription exists.
        socket.next().await.unwrap().unwrap();
        Self { socket }
    }

    /// The statuses announced for `agent_id`, until one ends its build.
    async fn until_built(&mut self, agent_id: &str) -> Vec<String> {
        self.until_status(agent_id, "").await
    }

    /// The statuses announced for `agent_id`, until `status` (or, for "", the build's end).
    async fn until_status(&mut self, agent_id: &str, status: &str) -> Vec<String> {
        let mut statuses = Vec::new();
        tokio::time::timeout(DEADLINE * 2, async {
            while let Some(message) = self.socket.next().await {
                let text = message.unwrap().into_text().unwrap_or_default();
                let event: Value = serde_json::from_str(&text).unwrap_or_default();
                if event["type"] != "agent_update" || event["data"]["agent_id"] != agent_id {
                    continue;
                }
                let announced = event["data"]["status"].as_str().unwrap().to_owned();
                let done = announced == status
                    || (status.is_empty() && (announced == "ready" || announced == "rejected"));
                statuses.push(announced);
                if done {
                    return;
                }
            }
        })
        .await
        .expect("the build ends in time");
        statuses
    }
}

#[tokio::test]
async fn an_upload_answers_before_its_build_and_the_build_is_announced_step_by_step() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let mut updates = AgentUpdates::open(&app, &token).await;

    let started = Instant::now();
    let body = upload_expecting(
        &app,
        &token,
        &manifest("Echo", json!({})),
        wasm(ECHO_AGENT),
        "validating",
    )
    .await;
    let id = body["agent_id"].as_str().unwrap().to_owned();
    assert_eq!(
        updates.until_built(&id).await,
        ["validating", "compiling", "ready"]
    );
    let elapsed = started.elapsed();

    let (_, agent) = app.get(&format!("/api/v1/agents/{id}"), Some(&token)).await;
    assert_eq!(agent["status"], "ready");
    assert_eq!(agent["rejection"], Value::Null);
    let build = &agent["build"];
    for field in [
        "validate_ms",
        "compile_started_at",
        "compile_ms",
        "finished_at",
    ] {
        assert!(!build[field].is_null(), "{field}: {agent}");
    }
    assert!(build["compile_ms"].as_u64().unwrap() <= elapsed.as_millis() as u64);

    let task = app.run_on(&token, &id, "hello").await;
    assert_eq!(
        (task["status"].as_str(), task["result"].as_str()),
        (Some("completed"), Some("hello"))
    );
}

#[tokio::test]
async fn invalid_code_is_rejected_after_upload_and_never_bids() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let bad_body = wasm(
        r#"(module (memory (export "memory") 1)
        (func (export "_start") (drop (i32.const 1)) (drop)))"#,
    );
    let body = upload_expecting(
        &app,
        &token,
        &manifest("Broken", json!({})),
        bad_body,
        "rejected",
    )
    .await;
    assert_eq!(body["rejection"]["code"], "invalid_wasm_module");
    let message = body["rejection"]["message"].as_str().unwrap();
    assert!(message.contains("type mismatch"), "{message}");

    let refused = app
        .post_json(
            "/api/v1/tasks/submit",
            Some(&token),
            &json!({"query": "x", "capabilities": ["broken"], "budget": 1}),
        )
        .await;
    assert_error(&refused, 422, "no_eligible_agent");

    // The fixed module takes the rejected agent's name, and the rejected one is gone.
    let rejected = body["agent_id"].as_str().unwrap().to_owned();
    upload_expecting(
        &app,
        &token,
        &manifest("Broken", json!({})),
        wasm(ECHO_AGENT),
        "ready",
    )
    .await;
    let gone = app
        .get(&format!("/api/v1/agents/{rejected}"), Some(&token))
        .await;
    assert_error(&gone, 404, "agent_not_found");
    // A ready agent's name stays taken.
    let again = app
        .upload_manifest(
            &token,
            &manifest("Broken", json!({})),
            wasm(ECHO_AGENT),
            true,
        )
        .await;
    assert_error(&again, 409, "agent_name_taken");
}

#[tokio::test]
async fn the_validation_policy_comes_from_config_and_each_rejection_names_its_rule() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(dir.path(), 1);
    s.agents.validation = Policy {
        max_functions: 2,
        allowed_imports: vec!["fd_read".into(), "fd_write".into()],
        ..Policy::default()
    };
    let app = spawn_with(s, dir).await;
    let token = app.signup("owner@example.com").await;

    let three_functions =
        wasm(r#"(module (memory (export "memory") 1) (func (export "_start")) (func) (func))"#);
    let refused = app.upload(&token, "Many", three_functions, "x", 0.0).await;
    let message = assert_error(&refused, 422, "invalid_wasm_module");
    assert!(
        message.contains("agents.validation.max_functions"),
        "{message}"
    );

    let exits = wasm(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
        (memory (export "memory") 1) (func (export "_start")))"#,
    );
    let refused = app.upload(&token, "Exits", exits, "x", 0.0).await;
    let message = assert_error(&refused, 422, "invalid_wasm_module");
    assert!(
        message.contains("proc_exit") && message.contains("agents.validation.allowed_imports"),
        "{message}"
    );

    // Within the policy: accepted.
    app.publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
}

#[tokio::test]
async fn manifest_argv_and_env_reach_the_agent_and_nothing_else_does() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let m = manifest(
        "Env-Agent",
        json!({"argv": ["--mode", "fast"], "env": {"GREETING": "hi there", "A_FLAG": "1"}}),
    );
    let body = upload_expecting(&app, &token, &m, wasm(ENV_AGENT), "ready").await;
    let agent = body["agent_id"].as_str().unwrap();
    let task = app.run_on(&token, agent, "what is set?").await;
    let id = task["task_id"]
        .as_str()
        .unwrap_or_else(|| task["id"].as_str().unwrap());
    let expected = format!(
        "Env-Agent\0--mode\0fast\0\nA_FLAG=1\0GREETING=hi there\0ZEROSTATE_TASK_ID={id}\0\
         ZEROSTATE_AGENT_ID={agent}\0ZEROSTATE_QUERY=what is set?\0"
    );
    assert_eq!(task["result"].as_str(), Some(expected.as_str()), "{task}");

    let reserved = manifest("Sneaky", json!({"env": {"ZEROSTATE_TASK_ID": "x"}}));
    let refused = app
        .upload_manifest(&token, &reserved, wasm(ENV_AGENT), true)
        .await;
    assert_error(&refused, 400, "invalid_request");
}

#[tokio::test]
async fn manifest_limits_apply_to_each_run_within_the_server_maxima() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let cases = [
        (
            "Small-Memory",
            GROW_BOMB_AGENT,
            json!({"memory_bytes": 1048576}),
            "hello",
            "failed",
            "memory_limit",
            "1 MiB",
        ),
        (
            "Quick",
            LOOP_AGENT,
            json!({"timeout_secs": 1}),
            "hello",
            "timed_out",
            "timeout",
            "1 s",
        ),
        (
            "Terse",
            ECHO_AGENT,
            json!({"stdout_bytes": 4}),
            "hello world",
            "failed",
            "output_limit",
            "4 bytes",
        ),
        (
            "Picky",
            ECHO_AGENT,
            json!({"stdin_bytes": 4}),
            "hello world",
            "failed",
            "input_limit",
            "4 bytes",
        ),
    ];
    for (name, module, limits, query, status, code, detail) in cases {
        let m = manifest(name, json!({"limits": limits}));
        let body = upload_expecting(&app, &token, &m, wasm(module), "ready").await;
        let started = Instant::now();
        let task = app
            .run_on(&token, body["agent_id"].as_str().unwrap(), query)
            .await;
        assert_eq!(
            (task["status"].as_str(), task["error_code"].as_str()),
            (Some(status), Some(code)),
            "{name}: {task}"
        );
        let error = task["error"].as_str().unwrap();
        assert!(error.contains(detail), "{name}: {error}");
        if name == "Quick" {
            // The manifest's 1 s, not the task's default 30 s.
            assert!(started.elapsed() < DEADLINE / 4, "{:?}", started.elapsed());
        }
        if name == "Terse" {
            assert_eq!(task["result"], "hell", "the first bytes are kept");
        }
    }

    // The input refused before the run is not held against the agent.
    let (_, picky) = app.get("/api/v1/agents?q=Picky", Some(&token)).await;
    assert_eq!(picky["agents"][0]["stats"]["tasks_failed"], 0, "{picky}");

    // A module whose memory starts above its own limit could never run: refused at upload.
    let big_start = wasm(r#"(module (memory (export "memory") 300) (func (export "_start")))"#);
    let small = manifest("Cramped", json!({"limits": {"memory_bytes": 16777216}}));
    let refused = app.upload_manifest(&token, &small, big_start, true).await;
    let message = assert_error(&refused, 422, "invalid_wasm_module");
    assert!(message.contains("initial memory"), "{message}");

    let greedy = manifest("Greedy", json!({"limits": {"memory_bytes": 2147483648u64}}));
    let refused = app
        .upload_manifest(&token, &greedy, wasm(ECHO_AGENT), true)
        .await;
    let message = assert_error(&refused, 400, "invalid_request");
    assert!(message.contains("limits.max_memory_bytes"), "{message}");
}

#[tokio::test]
async fn fuel_is_metered_when_configured() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(dir.path(), 1);
    s.limits.max_fuel = 5_000_000;
    let app = spawn_with(s, dir).await;
    let token = app.signup("owner@example.com").await;

    let spin = app
        .run_on_new_agent(&token, "Spinner", wasm(LOOP_AGENT))
        .await;
    assert_eq!(
        (spin["status"].as_str(), spin["error_code"].as_str()),
        (Some("failed"), Some("fuel_exhausted")),
        "{spin}"
    );
    let echo = app.run_on_new_agent(&token, "Echo", wasm(ECHO_AGENT)).await;
    assert_eq!(echo["status"], "completed", "{echo}");

    let m = manifest("Starved", json!({"limits": {"fuel": 1}}));
    let (_, body) = app
        .upload_manifest(&token, &m, wasm(ECHO_AGENT), true)
        .await;
    let starved = app
        .run_on(&token, body["agent_id"].as_str().unwrap(), "x")
        .await;
    assert_eq!(starved["error_code"], "fuel_exhausted", "{starved}");
}

#[tokio::test]
async fn compile_bombs_are_refused_or_built_while_other_tasks_keep_completing() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let mut updates = AgentUpdates::open(&app, &token).await;

    // One function over the 2 MiB body limit: refused while the upload waits.
    let refused = app
        .upload(&token, "Huge", long_function(800_000), "x", 0.0)
        .await;
    let message = assert_error(&refused, 422, "invalid_wasm_module");
    assert!(
        message.contains("agents.validation.max_function_bytes"),
        "{message}"
    );

    // Nesting deeper than the limit: accepted at upload (bodies are not read then), refused by
    // the background validation, while tasks on other agents keep completing.
    let body = upload_expecting(
        &app,
        &token,
        &manifest("Nested", json!({})),
        nested_blocks(100_000),
        "validating",
    )
    .await;
    let bomb = body["agent_id"].as_str().unwrap().to_owned();
    for i in 0..3 {
        let task = app.run_on(&token, &echo, &format!("ping {i}")).await;
        assert_eq!(task["status"], "completed", "{task}");
    }
    // Named while it builds, or once rejected: refused with the reason.
    let pinned = json!({"query": "x", "agent_id": bomb, "budget": 1});
    let early = app
        .post_json("/api/v1/tasks/submit", Some(&token), &pinned)
        .await;
    assert_error(&early, 409, "agent_not_ready");
    assert_eq!(updates.until_built(&bomb).await, ["validating", "rejected"]);
    let late = app
        .post_json("/api/v1/tasks/submit", Some(&token), &pinned)
        .await;
    let message = assert_error(&late, 409, "agent_not_ready");
    assert!(message.contains("rejected"), "{message}");
    let (_, agent) = app
        .get(&format!("/api/v1/agents/{bomb}"), Some(&token))
        .await;
    assert_eq!(agent["rejection"]["code"], "invalid_wasm_module");
    let message = agent["rejection"]["message"].as_str().unwrap();
    assert!(
        message.contains("agents.validation.max_nesting_depth"),
        "{message}"
    );

    // At the limit: compiled.
    upload_expecting(
        &app,
        &token,
        &manifest("Deep", json!({})),
        nested_blocks(2_000),
        "ready",
    )
    .await;

    // A big function within the limits compiles for seconds (in the dev profile the tests
    // build with); tasks on other agents complete meanwhile.
    let (_, body) = app
        .upload_manifest(
            &token,
            &manifest("Long", json!({})),
            long_function(600_000),
            false,
        )
        .await;
    let long = body["agent_id"].as_str().unwrap().to_owned();
    updates.until_status(&long, "compiling").await;
    for i in 0..3 {
        let task = app.run_on(&token, &echo, &format!("meanwhile {i}")).await;
        assert_eq!(task["status"], "completed", "{task}");
    }
    let (_, agent) = app
        .get(&format!("/api/v1/agents/{long}"), Some(&token))
        .await;
    assert_eq!(
        agent["status"], "compiling",
        "the tasks ran during the compile"
    );
    assert_eq!(updates.until_built(&long).await.last().unwrap(), "ready");
}

#[tokio::test]
async fn a_compile_running_past_its_timeout_rejects_the_agent() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(dir.path(), 1);
    s.agents.compile_timeout_secs = 1;
    let app = spawn_with(s, dir).await;
    let token = app.signup("owner@example.com").await;
    // 1.8 MB of code: about 4 s to compile in the dev profile the tests build with.
    let body = upload_expecting(
        &app,
        &token,
        &manifest("Slow", json!({})),
        long_function(600_000),
        "rejected",
    )
    .await;
    assert_eq!(body["rejection"]["code"], "compile_timeout", "{body}");
}

#[tokio::test]
async fn a_restart_loads_compiled_code_and_resumes_interrupted_builds() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let env = app
        .publish(&token, "Env", wasm(ENV_AGENT), "env", 0.0)
        .await;
    let dir = app.stop().await;

    // Both load from the module cache: nothing compiles.
    let app = spawn_with(settings(dir.path(), 1), dir).await;
    let all_cached = Warmup {
        loaded: 2,
        compiled: 0,
        total: 2,
        done: true,
    };
    assert_eq!(app.warmup, all_cached);
    let (status, ready) = app.get("/ready", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        ready["agents"],
        json!({"loaded": 2, "compiled": 0, "total": 2})
    );
    let task = app.run_on(&token, &echo, "back").await;
    assert_eq!(task["result"], "back");
    let dir = app.stop().await;

    // A lost cache is rebuilt from the stored modules; a build the stop interrupted resumes.
    std::fs::remove_dir_all(dir.path().join(zerostate::MODULES_DIR)).unwrap();
    let store = Store::open(&dir.path().join(zerostate::DB_FILE)).unwrap();
    store
        .update_agent(env.parse().unwrap(), |a| a.status = AgentStatus::Compiling)
        .await
        .unwrap();
    drop(store);
    let app = spawn_with(settings(dir.path(), 1), dir).await;
    assert_eq!((app.warmup.loaded, app.warmup.compiled), (1, 1));
    let mut updates = AgentUpdates::open(&app, &token).await;
    let (_, agent) = app
        .get(&format!("/api/v1/agents/{env}"), Some(&token))
        .await;
    if agent["status"] != "ready" {
        assert_eq!(updates.until_built(&env).await.last().unwrap(), "ready");
    }
    let task = app.run_on(&token, &env, "x").await;
    assert_eq!(task["status"], "completed", "{task}");
}

/// The C and Zig examples of docs/agents.md, from their committed (CI-rebuilt) modules and
/// manifests, do what the document says.
#[tokio::test]
async fn the_documented_examples_answer_as_documented() {
    let app = spawn_app().await;
    let token = app.signup("author@example.com").await;
    for example in ["word-count-c", "word-count-zig"] {
        let dir = repo_file(&format!("docs/examples/{example}"));
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let module = std::fs::read(dir.join("agent.wasm")).unwrap();
        let body = upload_expecting(&app, &token, &manifest, module, "ready").await;
        let task = app
            .run_on(
                &token,
                body["agent_id"].as_str().unwrap(),
                "the quick  brown\nfox",
            )
            .await;
        let id = task["id"].as_str().unwrap();
        assert_eq!(
            task["result"],
            json!({"words": 4, "bytes": 20, "task_id": id}),
            "{example}: {task}"
        );
        assert_eq!(task["stderr"], "counted 4 words in 20 bytes\n", "{example}");
    }
}
