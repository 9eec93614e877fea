//! End to end: many concurrent HTTP clients submit tasks to a no-op agent on the real
//! `zerostate` binary, started by this bench as a separate process (loopback, real HTTP, real
//! disk, default settings); measures completed tasks per second, submit latency and the
//! server's CPU per task. The load generator shares the machine (a 2-thread runtime), so it
//! is lean the way `wrk` is: each client is one keep-alive HTTP/1.1 connection that writes a
//! prebuilt request and reads the response's status and body length (reqwest cost ≈36 µs of
//! CPU per submit here, a third of the second core at 10,000/s).
//! Run: `cargo bench --bench e2e_load -- [TASKS] [CLIENTS] [RATE]` (defaults 5,000, 64, 0);
//! `E2E_BINARY=path` loads another build (a release artifact, a profiling build).
//!
//! `E2E_MODE` picks the queue: `embedded` (default), `redis` (compatibility mode: the bench
//! starts a `redis-server` with `appendfsync always`, or `everysec` with
//! `E2E_REDIS_FSYNC=everysec`, and the server queues through it, running tasks itself with the
//! same worker count), or `both`, one after the other on the same machine. In Redis mode it
//! also counts the commands Redis ran per task (`INFO commandstats`, split into those the
//! server sent and those its scripts ran) and redis-server's CPU per task. `E2E_WORKERS=N` sets
//! the server's worker count (default 4) in every mode.
//!
//! RATE 0 is a closed loop: each client sends its next submit when the last one answers, so
//! the server runs flat out. A RATE (submits/s) is an open loop, as `wrk2` does it: submit `i`
//! is due at `i / RATE` s, clients take them in turn, and latency counts from when a submit
//! was due, so a stall shows in every submit it delays (no coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{Cpu, machine_cpu};

#[path = "../tests/api/child.rs"]
mod child;
use child::Server;

#[path = "../tests/api/redis_server.rs"]
mod redis_server;
use redis_server::{Durability, RedisServer};

/// A submit slower than this counts as slow in the timeline the bench prints.
const SLOW: Duration = Duration::from_millis(10);

/// Reads nothing, writes nothing, exits 0.
const NOOP_AGENT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// Where the server queues its tasks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Embedded,
    Redis,
}

/// Commands Redis runs inside the server's queue scripts (`src/cluster/queue.rs`): counted by
/// `INFO commandstats`, but no round trip of their own. (`XDEL` is also sent alone for a task
/// canceled while queued, `XRANGE` when the primary adopts the streams at start: none here.)
const SCRIPTED: &[&str] = &["xpending", "xclaim", "xreadgroup", "xack", "xdel", "xrange"];

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let tasks: usize = args.next().map_or(5_000, |a| a.parse().expect("TASKS"));
    let clients: usize = args.next().map_or(64, |a| a.parse().expect("CLIENTS"));
    let rate: f64 = args.next().map_or(0.0, |a| a.parse().expect("RATE"));
    let modes = match std::env::var("E2E_MODE").as_deref() {
        Ok("redis") => vec![Mode::Redis],
        Ok("both") => vec![Mode::Embedded, Mode::Redis],
        Ok("embedded") | Err(_) => vec![Mode::Embedded],
        Ok(other) => panic!("E2E_MODE={other}: embedded, redis or both"),
    };
    let fsync = match std::env::var("E2E_REDIS_FSYNC").as_deref() {
        Ok("everysec") => Durability::EverySecond,
        Ok("always") | Err(_) => Durability::Fsynced,
        Ok(other) => panic!("E2E_REDIS_FSYNC={other}: always or everysec"),
    };
    let workers = std::env::var("E2E_WORKERS").ok();
    let binary =
        std::env::var_os("E2E_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_zerostate").into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for mode in modes {
        let dir = tempfile::tempdir().unwrap();
        // One user submits every task, faster than they run: their backlog passes the default
        // queued_tasks quota (meant for a server shared by strangers) within a second.
        let mut env = vec![("ZEROSTATE_QUOTAS__QUEUED_TASKS", "0")];
        if let Some(workers) = &workers {
            env.push(("ZEROSTATE_WORKERS", workers.as_str()));
        }
        let redis = (mode == Mode::Redis).then(|| RedisServer::start_with(fsync));
        let url = redis.as_ref().map(RedisServer::url).unwrap_or_default();
        if redis.is_some() {
            env.extend([
                ("ZEROSTATE_QUEUE__BACKEND", "redis"),
                ("ZEROSTATE_REDIS__URL", url.as_str()),
            ]);
        }
        match (&redis, fsync) {
            (None, _) => println!("\n== embedded queue (the task journal)"),
            (Some(_), Durability::EverySecond) => {
                println!("\n== compatibility mode: Redis queue, appendfsync everysec")
            }
            (Some(_), _) => println!("\n== compatibility mode: Redis queue, appendfsync always"),
        }
        let server = Server::start(&binary, dir.path(), &[], &env);
        runtime.block_on(run(&server, redis.as_ref(), tasks, clients, rate));
    }
}

/// redis-server's user + system CPU time so far.
fn redis_cpu(redis: &RedisServer) -> Duration {
    Cpu::of(&redis.pid().expect("redis-server runs").to_string()).total()
}

impl Server {
    /// The process's user + system CPU time so far.
    fn cpu(&self) -> Duration {
        Cpu::of(&self.child.id().to_string()).total()
    }
}

async fn run(
    server: &Server,
    redis: Option<&RedisServer>,
    tasks: usize,
    clients: usize,
    rate: f64,
) {
    let base = server.base.clone();
    let client = reqwest::Client::new();

    let token = server.signup("load@example.com").await;
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
        .header("prefer", "wait=60")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);

    let cpu_before = (server.cpu(), Cpu::of("self").total(), machine_cpu().1);
    let redis_before = redis.map(|r| (r.command_calls(), redis_cpu(r)));
    if rate > 0.0 {
        println!(
            "end to end: {tasks} tasks offered at {rate:.0}/s by {clients} clients, no-op agent"
        );
    } else {
        println!("end to end: {tasks} tasks, {clients} concurrent clients, no-op agent");
    }
    let host = base.strip_prefix("http://").expect("an http:// base URL");
    let body = json!({"query": "noop", "capabilities": ["noop"], "budget": 0}).to_string();
    let request: Arc<[u8]> = format!(
        "POST /api/v1/tasks/submit HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
    .into();
    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(Connection::open(host).await);
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let start = tokio::time::Instant::from_std(started);
    let mut handles = Vec::new();
    for mut connection in connections {
        let (request, next) = (request.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= tasks {
                    break;
                }
                let sent = if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    due.into_std()
                } else {
                    Instant::now()
                };
                assert_eq!(connection.exchange(&request).await, 202);
                latencies.push((sent - started, sent.elapsed()));
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
    let cpu = |now: Duration, before: Duration| (now - before).as_secs_f64() * 1e6 / tasks as f64;
    let (server_cpu, load_cpu) = (
        cpu(server.cpu(), cpu_before.0),
        cpu(Cpu::of("self").total(), cpu_before.1),
    );
    let redis_after = redis.map(|r| (r.command_calls(), redis_cpu(r)));

    // When the slow submits were sent: a stall shows as one busy slot, a steady overload as
    // many.
    let slot = Duration::from_millis(250);
    let slots = (submitted.as_nanos() / slot.as_nanos()) as usize + 1;
    let mut slow = vec![0usize; slots];
    for (at, latency) in &latencies {
        if *latency > SLOW {
            slow[(at.as_nanos() / slot.as_nanos()) as usize] += 1;
        }
    }
    let mut latencies: Vec<Duration> = latencies.into_iter().map(|(_, l)| l).collect();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "submits:   {:>8.0} /s   p50 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms",
        tasks as f64 / submitted.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!(
        "completed: {:>8.0} tasks/s ({:.2} s for all)",
        tasks as f64 / completed.as_secs_f64(),
        completed.as_secs_f64()
    );
    let stolen = machine_cpu().1 - cpu_before.2;
    println!(
        "CPU per task: server {server_cpu:.1} µs, load generator {load_cpu:.1} µs; \
         {:.2} s of CPU stolen by the hypervisor during the run",
        stolen.as_secs_f64()
    );
    if let (Some((calls_before, cpu_before)), Some((calls_after, cpu_after))) =
        (redis_before, redis_after)
    {
        let per_task = |n: u64| n as f64 / tasks as f64;
        let mut sent = Vec::new();
        let mut scripted = Vec::new();
        let (mut sent_total, mut scripted_total) = (0, 0);
        for (name, after) in &calls_after {
            let n = after - calls_before.get(name).copied().unwrap_or(0);
            if n == 0 || name == "info" {
                continue;
            }
            let line = format!("{name} {:.2}", per_task(n));
            if SCRIPTED.contains(&name.as_str()) {
                scripted.push(line);
                scripted_total += n;
            } else {
                sent.push(line);
                sent_total += n;
            }
        }
        println!(
            "Redis commands per task: {:.2} sent by the server ({}); {:.2} run inside its \
             scripts ({})",
            per_task(sent_total),
            sent.join(", "),
            per_task(scripted_total),
            scripted.join(", ")
        );
        println!(
            "CPU per task: redis-server {:.1} µs",
            cpu(cpu_after, cpu_before)
        );
    }
    let slow: Vec<String> = slow.iter().map(usize::to_string).collect();
    println!(
        "submits over {} ms, per {} ms of the run: {}",
        SLOW.as_millis(),
        slot.as_millis(),
        slow.join(" ")
    );

    // The server's own view, from its Prometheus histograms.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let submit = Histogram::read(
        &metrics,
        "zerostate_http_request_duration_seconds",
        "route=\"/api/v1/tasks/submit\"",
    );
    println!(
        "server-side submit: p50 ≤ {} s, p99 ≤ {} s",
        submit.bucket_at(0.5),
        submit.bucket_at(0.99)
    );
    let sync = Histogram::read(&metrics, "zerostate_wal_sync_seconds", "");
    println!(
        "WAL: {} group commits ({:.1} records each), write + fdatasync mean {:.2} ms, p99 ≤ {} s",
        sync.count,
        Histogram::read(&metrics, "zerostate_wal_batch_records", "").sum / sync.count as f64,
        sync.sum / sync.count as f64 * 1e3,
        sync.bucket_at(0.99)
    );
    let apply = Histogram::read(&metrics, "zerostate_task_apply_seconds", "");
    println!(
        "redb view: {} batches, {:.1} µs per task, p99 batch ≤ {} s",
        apply.count,
        apply.sum * 1e6 / tasks as f64,
        apply.bucket_at(0.99)
    );
}

/// A keep-alive HTTP/1.1 connection that sends one request at a time.
struct Connection {
    stream: tokio::net::TcpStream,
    /// The response being read.
    buf: Vec<u8>,
}

impl Connection {
    async fn open(host: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Sends `request` and reads the whole response; returns its status code. The server
    /// answers with a `content-length` body, never chunked.
    async fn exchange(&mut self, request: &[u8]) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await.unwrap();
        self.buf.clear();
        let mut head_end = None;
        loop {
            if head_end.is_none() {
                head_end = self.buf.windows(4).position(|w| w == b"\r\n\r\n");
            }
            if let Some(end) = head_end {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .expect("a content-length header");
                let total = end + 4 + length;
                if self.buf.len() >= total {
                    assert_eq!(self.buf.len(), total, "one response per request");
                    return head[9..12].parse().unwrap();
                }
            }
            let read = self.stream.read_buf(&mut self.buf).await.unwrap();
            assert!(read > 0, "the server closed the connection");
        }
    }
}

/// One Prometheus histogram (or summary) from a `/metrics` page.
struct Histogram<'a> {
    /// `(le, cumulative count)`, ascending.
    buckets: Vec<(&'a str, u64)>,
    sum: f64,
    count: u64,
}

impl<'a> Histogram<'a> {
    /// The series `name` whose labels contain `labels`.
    fn read(metrics: &'a str, name: &str, labels: &str) -> Self {
        let mut h = Histogram {
            buckets: Vec::new(),
            sum: 0.0,
            count: 0,
        };
        for line in metrics.lines().filter(|l| l.contains(labels)) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            if series.starts_with(&format!("{name}_bucket{{")) {
                let le = series
                    .split("le=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next());
                if let (Some(le), Ok(n)) = (le, value.parse()) {
                    h.buckets.push((le, n));
                }
            } else if series.split('{').next() == Some(&format!("{name}_sum")) {
                h.sum = value.parse().unwrap_or(0.0);
            } else if series.split('{').next() == Some(&format!("{name}_count")) {
                h.count = value.parse().unwrap_or(0);
            }
        }
        h
    }

    /// The upper bound of the bucket holding quantile `q`.
    fn bucket_at(&self, q: f64) -> &str {
        self.buckets
            .iter()
            .find(|b| b.1 as f64 >= q * self.count as f64)
            .map_or("-", |b| b.0)
    }
}
