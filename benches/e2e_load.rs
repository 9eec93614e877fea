//! End to end: many concurrent HTTP clients submit tasks to a no-op agent on a server running
//! in this process (loopback, real HTTP, real disk); measures completed tasks per second and
//! submit latency. Run: `cargo bench --bench e2e_load -- [TASKS] [CLIENTS]` (defaults 5,000
//! and 64).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zerostate::Application;
use zerostate::config::Settings;

/// The same allocator as the `zerostate` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reads nothing, writes nothing, exits 0.
const NOOP_AGENT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let tasks: usize = args.next().map_or(5_000, |a| a.parse().expect("TASKS"));
    let clients: usize = args.next().map_or(64, |a| a.parse().expect("CLIENTS"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(tasks, clients));
}

async fn run(tasks: usize, clients: usize) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();

    let session: Value = client
        .post(format!("{base}/api/v1/users/register"))
        .json(&json!({"email": "load@example.com", "password": "correct horse battery", "full_name": "Load"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    let form = reqwest::multipart::Form::new()
        .part(
            "wasm_binary",
            reqwest::multipart::Part::bytes(wat::parse_str(NOOP_AGENT).unwrap())
                .file_name("noop.wasm"),
        )
        .text("name", "Noop")
        .text("capabilities", "noop");
    let upload = client
        .post(format!("{base}/api/v1/agents/upload"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);

    println!("end to end: {tasks} tasks, {clients} concurrent clients, no-op agent");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (client, base, token, next) =
            (client.clone(), base.clone(), token.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < tasks {
                let sent = Instant::now();
                let resp = client
                    .post(format!("{base}/api/v1/tasks/submit"))
                    .bearer_auth(&token)
                    .json(&json!({"query": "noop", "capabilities": ["noop"], "budget": 0}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let submitted = started.elapsed();
    loop {
        let stats: Value = client
            .get(format!("{base}/api/v1/tasks/stats"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["completed"].as_u64() == Some(tasks as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let completed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "submits:   {:>8.0} /s   p50 {:.2} ms   p99 {:.2} ms",
        tasks as f64 / submitted.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    println!(
        "completed: {:>8.0} tasks/s ({:.2} s for all)",
        tasks as f64 / completed.as_secs_f64(),
        completed.as_secs_f64()
    );
    stop.cancel();
    server.await.unwrap().unwrap();
}
