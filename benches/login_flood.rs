//! A real sign-in's latency during a wrong-password flood, on the real `zerostate` binary
//! started by this bench as a separate process (loopback, default limits, 127.0.0.1 a trusted
//! proxy so each flood client can be an address of its own through `X-Forwarded-For`).
//! Run: `cargo bench --bench login_flood -- [SECONDS]` (default 10); `E2E_BINARY=path` loads
//! another build (a release artifact).
//!
//! Three floods of 64 clients, each sending wrong passwords for ever new emails as fast as
//! they are answered: from 64 addresses, from one address, and from 64 addresses with the
//! limits off (what issue 18 found: 1.77 s). Every 250 ms a person signs in from an address
//! of their own; the bench prints the latencies of those sign-ins.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "../tests/api/child.rs"]
mod child;
use child::Server;

const PASSWORD: &str = "correct horse battery";

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or(10, |a| a.parse().expect("SECONDS"));
    let binary =
        std::env::var_os("E2E_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_zerostate").into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (name, addresses, limits) in [
        ("64 addresses, limits on", 64, "true"),
        ("1 address, limits on", 1, "true"),
        ("64 addresses, limits off", 64, "false"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(
            &binary,
            dir.path(),
            &[],
            &[
                ("ZEROSTATE_RATE_LIMITS__ENABLED", limits),
                ("ZEROSTATE_RATE_LIMITS__TRUSTED_PROXIES", "[\"127.0.0.1\"]"),
            ],
        );
        let report = runtime.block_on(run(&server, addresses, Duration::from_secs(secs)));
        println!("{name}: {report}");
    }
}

async fn run(server: &Server, addresses: u32, length: Duration) -> String {
    server.signup("ada@example.com").await;
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (checked, refused) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let flood: Vec<_> = (0..64u32)
        .map(|n| {
            let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
            let (checked, refused) = (checked.clone(), refused.clone());
            let address = format!("10.0.0.{}", n % addresses + 1);
            tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let status = login(
                        &client,
                        &base,
                        &format!("x{n}.{i}@example.com"),
                        "wrong",
                        &address,
                    )
                    .await;
                    match status {
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        _ => checked.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(250)).await;
        n += 1;
        let address = format!("192.0.{}.{}", n / 250, n % 250 + 1);
        let at = Instant::now();
        let status = login(&client, &base, "ada@example.com", PASSWORD, &address).await;
        assert_eq!(status, 200, "the real sign-in");
        latencies.push(at.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.abort();
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    format!(
        "{} real sign-ins: p50 {:?}, p90 {:?}, max {:?}, first {:?}; flood: {} passwords checked, \
         {} refused (429)",
        sorted.len(),
        pick(0.5),
        pick(0.9),
        pick(1.0),
        latencies[0],
        checked.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
    address: &str,
) -> u16 {
    client
        .post(format!("{base}/api/v1/users/login"))
        .header("x-forwarded-for", address)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}
