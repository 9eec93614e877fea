//! The executor under load, on the real `zerostate` binary started as a child process
//! (loopback HTTP, real disk, default settings). Three scenarios:
//!
//! - `upload`: 30 MB modules (50,000 functions): how long the upload takes to answer
//!   (declaration checks + sha256 + durable store), the first idle and the next ones while a
//!   build runs, and how long the background build takes.
//! - `restart`: 10 compiled agents of 3 MB; the time from process start until `/ready` (every
//!   module loaded), with the module cache and after deleting it, and how many compiled.
//! - `hostile`: ordinary tasks' latency (submit → finished) alone, then while clients keep
//!   spinning, memory-bombing, output-flooding and stack-overflowing agents busy and upload
//!   compile bombs.
//!
//! Run: `cargo bench --bench executor_load -- [upload|restart|hostile] [SECONDS]` (all three by
//! default; SECONDS is each hostile phase, default 20). `E2E_BINARY=path` loads another build;
//! `HOSTILE_AGENTS=Spinner,Grower` keeps only those attackers, `COMPILE_BOMBS=0` uploads none.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

#[path = "../tests/api/child.rs"]
mod child;
#[path = "../tests/api/modules.rs"]
#[allow(dead_code)]
mod modules;
#[path = "support/synthetic.rs"]
mod synthetic;
use child::Server;
use modules::{ECHO_AGENT, GROW_BOMB_AGENT, LOOP_AGENT, RECURSE_AGENT};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let scenario = args.first().map_or("all", String::as_str).to_owned();
    let seconds: u64 = args.get(1).map_or(20, |a| a.parse().expect("SECONDS"));
    let binary: OsString =
        std::env::var_os("E2E_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_zerostate").into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if matches!(scenario.as_str(), "all" | "upload") {
            upload(&binary).await;
        }
        if matches!(scenario.as_str(), "all" | "restart") {
            restart(&binary).await;
        }
        if matches!(scenario.as_str(), "all" | "hostile") {
            hostile(&binary, Duration::from_secs(seconds)).await;
        }
    });
}

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn signup(server: &Server) -> Self {
        Self {
            base: server.base.clone(),
            token: server.signup("bench@example.com").await,
            client: reqwest::Client::new(),
        }
    }

    /// Uploads; `wait` asks the answer to wait for the build's end. Returns the body.
    async fn upload(&self, manifest: Value, module: Vec<u8>, wait: bool) -> Value {
        let form = Form::new()
            .part("wasm_binary", Part::bytes(module).file_name("agent.wasm"))
            .text("manifest", manifest.to_string());
        let mut request = self
            .client
            .post(format!("{}/api/v1/agents/upload", self.base))
            .bearer_auth(&self.token)
            .multipart(form);
        if wait {
            request = request.header("prefer", "wait=60");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls the agent (benchmarks may) until its build ends.
    async fn until_built(&self, id: &str) -> Value {
        loop {
            let (_, agent) = self.get(&format!("/api/v1/agents/{id}")).await;
            if agent["status"] == "ready" || agent["status"] == "rejected" {
                return agent;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits a task pinned to `agent` and waits for its end; returns the finished task.
    async fn run(&self, agent: &str, query: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/api/v1/tasks/submit", self.base))
            .bearer_auth(&self.token)
            .header("prefer", "wait=60")
            .json(&json!({"query": query, "agent_id": agent, "budget": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the task finishes within 60 s");
        response.json().await.unwrap()
    }
}

fn manifest(name: &str) -> Value {
    json!({"name": name, "capabilities": [name.to_lowercase()], "version": "1.0.0"})
}

async fn upload(binary: &OsString) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(binary, dir.path(), &[], &[]);
    let api = Api::signup(&server).await;
    println!("upload: 30 MB modules (50,000 functions), answered at `validating`");
    let mut first = None;
    for i in 0..4u32 {
        let module = synthetic::module(50_000, i);
        let size = module.len();
        let started = Instant::now();
        let body = api
            .upload(manifest(&format!("Big-{i}")), module, false)
            .await;
        let took = started.elapsed();
        let when = if i == 0 {
            "idle server"
        } else {
            "a build running"
        };
        println!(
            "  upload {i}: {:.1} MB answered in {:>6.1} ms ({when}), status {}",
            size as f64 / 1e6,
            took.as_secs_f64() * 1e3,
            body["status"]
        );
        first.get_or_insert(body["agent_id"].as_str().unwrap().to_owned());
    }
    let agent = api.until_built(&first.unwrap()).await;
    let build = &agent["build"];
    println!(
        "  first build: {}, validation {} ms, compile {} ms",
        agent["status"], build["validate_ms"], build["compile_ms"]
    );
    let (_, list) = api.get("/api/v1/agents?limit=100").await;
    for agent in list["agents"].as_array().unwrap() {
        println!(
            "  then {}: {}, estimated compile {} ms",
            agent["name"], agent["status"], agent["build"]["estimated_compile_ms"]
        );
    }
}

/// Starts the server and polls `/ready` until 200; returns the time taken and the body.
async fn start_until_ready(binary: &OsString, dir: &Path) -> (Server, Duration, Value) {
    let started = Instant::now();
    let server = Server::start(binary, dir, &[], &[]);
    let client = reqwest::Client::new();
    loop {
        let response = client
            .get(format!("{}/ready", server.base))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            let body = response.json().await.unwrap();
            return (server, started.elapsed(), body);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn compiled_counter(server: &Server) -> String {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("zerostate_modules_compiled_total"))
        .map_or("0 (never incremented)".into(), |l| {
            l.rsplit(' ').next().unwrap().to_owned()
        })
}

async fn restart(binary: &OsString) {
    let dir = tempfile::tempdir().unwrap();
    let (server, took, _) = start_until_ready(binary, dir.path()).await;
    println!(
        "restart: a fresh data dir is ready after {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    let api = Api::signup(&server).await;
    let mut bytes = 0;
    for i in 0..10u32 {
        let module = synthetic::module(5_000, 100 + i);
        bytes += module.len();
        let body = api
            .upload(manifest(&format!("Agent-{i}")), module, true)
            .await;
        assert_eq!(body["status"], "ready", "{body}");
    }
    drop(server);
    println!(
        "  then 10 compiled agents, {:.1} MB of modules:",
        bytes as f64 / 1e6
    );
    let path = dir.path();
    let restart = |label: String| async move {
        let (server, took, ready) = start_until_ready(binary, path).await;
        println!(
            "  {label:<26} /ready after {:>7.1} ms, agents {}, compiled counter {}",
            took.as_secs_f64() * 1e3,
            ready["agents"],
            compiled_counter(&server).await
        );
    };
    for round in 0..3 {
        restart(format!("with the module cache ({round}):")).await;
    }
    std::fs::remove_dir_all(path.join("modules")).unwrap();
    restart("cache deleted:".into()).await;
}

/// Agents that misbehave, each pinned by its own clients.
const HOSTILE: [(&str, &str, &str); 4] = [
    ("Spinner", LOOP_AGENT, r#"{"timeout_secs": 2}"#),
    ("Grower", GROW_BOMB_AGENT, "{}"),
    (
        "Flooder",
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 2)
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 65536))
            (loop (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0))))"#,
        "{}",
    ),
    ("Recurser", RECURSE_AGENT, "{}"),
];

/// Ordinary clients, each running one echo task after another.
const ORDINARY_CLIENTS: usize = 4;
/// Hostile clients, each keeping one hostile task running.
const ATTACKERS: usize = 3;

async fn hostile(binary: &OsString, phase: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(binary, dir.path(), &[], &[]);
    let api = Arc::new(Api::signup(&server).await);
    let echo = api
        .upload(manifest("Echo"), wat::parse_str(ECHO_AGENT).unwrap(), true)
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let only = std::env::var("HOSTILE_AGENTS").ok();
    let mut hostile = Vec::new();
    for (name, wat, limits) in HOSTILE {
        if only
            .as_ref()
            .is_some_and(|only| !only.split(',').any(|n| n == name))
        {
            continue;
        }
        let mut m = manifest(name);
        m["limits"] = serde_json::from_str(limits).unwrap();
        let body = api.upload(m, wat::parse_str(wat).unwrap(), true).await;
        hostile.push(body["agent_id"].as_str().unwrap().to_owned());
    }
    println!(
        "hostile: {ORDINARY_CLIENTS} clients run echo tasks one after another; then {ATTACKERS} more keep \
         hostile tasks running and one uploads compile bombs (4 workers, 2 cores)"
    );
    let alone = ordinary_phase(&api, &echo, phase, None).await;
    report("alone", &alone, phase);

    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    // Each attacker cycles through the hostile agents, one task at a time: three of the four
    // workers are always busy with them.
    for first in 0..ATTACKERS {
        let (api, hostile, stop) = (api.clone(), hostile.clone(), stop.clone());
        attackers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for agent in hostile.iter().cycle().skip(first) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let task = api.run(agent, "x").await;
                outcomes.push((
                    task["error_code"].as_str().unwrap_or("none").to_owned(),
                    task["duration_ms"].as_u64().unwrap_or(0),
                ));
            }
            outcomes
        }));
    }
    // And one client uploading compile bombs: 200 functions nested 2,000 deep (the limit).
    let bombs = {
        let (api, stop) = (api.clone(), stop.clone());
        let enabled = std::env::var("COMPILE_BOMBS").map_or(true, |v| v != "0");
        tokio::spawn(async move {
            let mut built = Vec::new();
            let mut i = 0;
            while enabled && !stop.load(Ordering::Relaxed) {
                let module = nesting_bomb(200, 2_000, i);
                let started = Instant::now();
                let body = api
                    .upload(manifest(&format!("Bomb-{i}")), module, true)
                    .await;
                built.push((
                    body["status"].as_str().unwrap().to_owned(),
                    started.elapsed(),
                ));
                i += 1;
            }
            built
        })
    };
    let attacked = ordinary_phase(&api, &echo, phase, Some(&stop)).await;
    report("under attack", &attacked, phase);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut timeouts = Vec::new();
    for attacker in attackers {
        for (code, duration_ms) in attacker.await.unwrap() {
            if code == "timeout" {
                timeouts.push(duration_ms);
            }
            *counts.entry(code).or_default() += 1;
        }
    }
    println!("  hostile tasks by error code: {counts:?}");
    timeouts.sort();
    if let (Some(first), Some(last)) = (timeouts.first(), timeouts.last()) {
        println!("  spinners (2 s timeout) ran {first}..{last} ms");
    }
    for (status, took) in bombs.await.unwrap() {
        println!("  compile bomb: {status} after {:.1} s", took.as_secs_f64());
    }
}

/// `functions` functions of `depth` nested blocks each.
fn nesting_bomb(functions: usize, depth: usize, salt: usize) -> Vec<u8> {
    let body = format!("{} {}", "block ".repeat(depth), "end ".repeat(depth));
    let funcs: String = (0..functions).map(|_| format!("(func {body})")).collect();
    wat::parse_str(format!(
        r#"(module (memory (export "memory") 1) (func (export "_start")) {funcs} (@custom "salt" "{salt}"))"#
    ))
    .unwrap()
}

/// Runs the ordinary clients for `phase`; returns every task's latency. When `stop` is
/// given, it is set at the end (the attackers stop too).
async fn ordinary_phase(
    api: &Arc<Api>,
    echo: &str,
    phase: Duration,
    stop: Option<&Arc<AtomicBool>>,
) -> Vec<Duration> {
    let end = Instant::now() + phase;
    let mut clients = Vec::new();
    for c in 0..ORDINARY_CLIENTS {
        let (api, echo) = (api.clone(), echo.to_owned());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let started = Instant::now();
                let task = api.run(&echo, &format!("client {c}")).await;
                assert_eq!(task["status"], "completed", "{task}");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.await.unwrap());
    }
    if let Some(stop) = stop {
        stop.store(true, Ordering::Relaxed);
    }
    all
}

fn report(label: &str, latencies: &[Duration], phase: Duration) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    println!(
        "  {label:<13} {} tasks ({:.0}/s): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        sorted.len() as f64 / phase.as_secs_f64(),
        at(0.5),
        at(0.99),
        sorted.last().unwrap().as_secs_f64() * 1e3
    );
}
