//! Queue throughput: enqueue + dequeue + ack of N tasks with 1 KB payloads, every step durable.
//!
//! - **ZeroState engine** (the headline figure): the path a task takes in the server minus HTTP
//!   and wasm. Submit = the ledger journals the whole task (binary record; WAL group commit,
//!   fdatasync) and pushes it onto the priority queue; a worker pops it, marks it running and
//!   acks by journaling its completed state, waiting for that record's sync. The ledger's
//!   applier writes the redb view and checkpoints meanwhile, as in the server.
//! - **ZeroState WAL + queue**: the same with raw 1 KB WAL records and no redb view: the
//!   log's own ceiling.
//! - **Seed design**: Redis sorted set + hash (`ZADD` + `HSET` to enqueue, `ZPOPMAX` + `HGET` to
//!   dequeue, `HDEL` to ack) against a real `redis-server` this bench starts itself with
//!   `appendonly yes` and `appendfsync always`, then `everysec` for reference.
//!
//! Both sides get the same number of concurrent producers and consumers.
//! Run: `cargo bench --bench queue_throughput -- [TASKS]` (default 1,000,000; needs
//! `redis-server` on PATH for the comparison: `apt-get install redis-server`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;
use zerostate::journal::wal::{Wal, WalOptions};
use zerostate::journal::{Ledger, Submitted, TaskJournal};
use zerostate::queue::{PriorityQueue, QueuedTask, TaskQueue};
use zerostate::records::{Attempt, Finished, Priority, Task, TaskChange, TaskStatus};
use zerostate::store::Store;

/// The same allocator as the `zerostate` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Concurrent producers and consumers on every side; `QUEUE_PRODUCERS` / `QUEUE_CONSUMERS`
/// override them.
fn clients(var: &str) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}
const PAYLOAD: usize = 1024;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let tasks: u64 = args
        .next()
        .map(|a| a.parse().expect("TASKS must be a number"))
        .unwrap_or(1_000_000);
    // Optional: which runs, e.g. `engine` alone when profiling.
    let only: Vec<String> = args.collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "queue throughput: {tasks} tasks, {PAYLOAD}-byte payloads, {} producers, {} consumers",
        clients("QUEUE_PRODUCERS"),
        clients("QUEUE_CONSUMERS")
    );

    let ours = wanted("engine").then(|| {
        let run = measured(|| runtime.block_on(zerostate_engine(tasks)));
        report("zerostate engine (ledger + redb)", tasks, run)
    });
    let raw = wanted("wal").then(|| {
        let run = measured(|| runtime.block_on(zerostate_queue(tasks)));
        report("zerostate WAL + queue only", tasks, run)
    });
    if !wanted("redis") {
        return;
    }
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("redis-server not found: install it to compare with the seed design");
        return;
    }
    let run = measured(|| runtime.block_on(redis_queue(tasks, "always")));
    let always = report("redis appendfsync=always", tasks, run);
    let run = measured(|| runtime.block_on(redis_queue(tasks, "everysec")));
    let everysec = report("redis appendfsync=everysec", tasks, run);
    for (label, ours) in [("zerostate engine", ours), ("zerostate WAL + queue", raw)] {
        if let Some(ours) = ours {
            println!(
                "ratio: {label} / redis-always = {:.1}x, / redis-everysec = {:.1}x",
                always.as_secs_f64() / ours.as_secs_f64(),
                everysec.as_secs_f64() / ours.as_secs_f64()
            );
        }
    }
}

/// Wall time of `run` and the CPU time this process spent meanwhile (redis-server's own CPU
/// is not included).
fn measured(run: impl FnOnce() -> Duration) -> (Duration, Duration) {
    let before = cpu_time();
    let wall = run();
    (wall, cpu_time().saturating_sub(before))
}

/// User + system CPU time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn report(label: &str, tasks: u64, (wall, cpu): (Duration, Duration)) -> Duration {
    println!(
        "{label:<34} {:>9.0} tasks/s  ({:.2} s, {:.1} µs CPU per task in this process)",
        tasks as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / tasks as f64
    );
    wall
}

/// Splits `total` into `parts` nearly equal shares.
fn share(total: u64, parts: usize, i: usize) -> u64 {
    total / parts as u64 + u64::from((i as u64) < total % parts as u64)
}

async fn zerostate_engine(tasks: u64) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("zerostate.redb")).unwrap();
    let (ledger, _) = Ledger::open(store, &dir.path().join("wal")).await.unwrap();
    let queue = Arc::new(PriorityQueue::new(usize::MAX));
    let acked = Arc::new(AtomicU64::new(0));
    let owner = Uuid::new_v4();
    let query = "x".repeat(PAYLOAD);
    let started = Instant::now();
    let mut handles = Vec::new();
    let producers = clients("QUEUE_PRODUCERS");
    for p in 0..producers {
        let (ledger, queue, query) = (ledger.clone(), queue.clone(), query.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..share(tasks, producers, p) {
                let task = Task {
                    query: query.as_str().into(),
                    ..Task::blank(owner)
                };
                let Submitted::New(task) = ledger.submit(task, None).await.unwrap() else {
                    unreachable!("no idempotency key")
                };
                let queued = QueuedTask {
                    task_id: task.id,
                    owner: task.owner_id,
                    priority: task.priority,
                    seq: task.seq,
                };
                queue.push(queued, false).await.unwrap();
            }
        }));
    }
    for _ in 0..clients("QUEUE_CONSUMERS") {
        let (ledger, queue, acked) = (ledger.clone(), queue.clone(), acked.clone());
        handles.push(tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < tasks {
                let Some(next) = queue.pop().await else {
                    return;
                };
                ledger.start(next.task.task_id).unwrap().expect("queued");
                let (_, durable) = ledger
                    .transition(next.task.task_id, TaskStatus::Running, None, completed())
                    .unwrap()
                    .expect("running");
                durable.wait().await.unwrap();
                if acked.fetch_add(1, Ordering::Relaxed) + 1 == tasks {
                    queue.close();
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed();
    ledger.close().await.unwrap();
    elapsed
}

/// A run's end with a small result, as the engine journals it.
fn completed() -> TaskChange {
    TaskChange::Finished(Box::new(Finished {
        status: TaskStatus::Completed,
        attempt: Attempt {
            agent_id: Uuid::nil(),
            agent_name: "bench".into(),
            outcome: "completed".into(),
            error: None,
            error_code: None,
            duration_ms: 1,
            started_at: time::OffsetDateTime::now_utc(),
        },
        result: Some(serde_json::json!("done")),
        error: None,
        error_code: None,
        stderr: String::new(),
        exit_code: None,
        duration_ms: 1,
    }))
}

async fn zerostate_queue(tasks: u64) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let wal = Arc::new(wal);
    let queue = Arc::new(PriorityQueue::new(usize::MAX));
    let seq = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    let producers = clients("QUEUE_PRODUCERS");
    for p in 0..producers {
        let (wal, queue, seq) = (wal.clone(), queue.clone(), seq.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..share(tasks, producers, p) {
                let task_id = Uuid::new_v4();
                let mut record = Vec::with_capacity(PAYLOAD + 17);
                record.push(1); // submitted
                record.extend_from_slice(task_id.as_bytes());
                record.resize(PAYLOAD + 17, b'x');
                wal.append(record).await.unwrap();
                let seq = seq.fetch_add(1, Ordering::Relaxed);
                queue
                    .push(
                        QueuedTask {
                            task_id,
                            owner: Uuid::nil(),
                            priority: Priority::Normal,
                            seq,
                        },
                        false,
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for _ in 0..clients("QUEUE_CONSUMERS") {
        let (wal, queue, acked) = (wal.clone(), queue.clone(), acked.clone());
        handles.push(tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < tasks {
                let Some(task) = queue.pop().await else {
                    return;
                };
                let mut record = Vec::with_capacity(17);
                record.push(2); // completed
                record.extend_from_slice(task.task.task_id.as_bytes());
                wal.append(record).await.unwrap();
                if acked.fetch_add(1, Ordering::Relaxed) + 1 == tasks {
                    queue.close();
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    started.elapsed()
}

struct RedisServer {
    child: Child,
    /// Holds the append-only file; removed when the server is dropped.
    _data_dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_redis(fsync: &str) -> (RedisServer, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
        ])
        .args(["--appendfsync", fsync, "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    (
        RedisServer {
            child,
            _data_dir: dir,
        },
        port,
    )
}

async fn redis_queue(tasks: u64, fsync: &str) -> Duration {
    let (_server, port) = start_redis(fsync);
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let connection = loop {
        // No response timeout: an AOF fsync or rewrite may stall redis for a while, and the
        // measurement must include that, not fail on it.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("redis did not start: {e}"),
        }
    };
    let payload = vec![b'x'; PAYLOAD];
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    let producers = clients("QUEUE_PRODUCERS");
    for p in 0..producers {
        let mut con = connection.clone();
        let payload = payload.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..share(tasks, producers, p) {
                let id = Uuid::new_v4().to_string();
                // The seed's score: priority, newest first within it.
                let score = 2_000_000_000_000i64 + i as i64;
                redis::cmd("ZADD")
                    .arg("zs:queue")
                    .arg(score)
                    .arg(&id)
                    .query_async::<()>(&mut con)
                    .await
                    .unwrap();
                redis::cmd("HSET")
                    .arg("zs:tasks")
                    .arg(&id)
                    .arg(&payload)
                    .query_async::<()>(&mut con)
                    .await
                    .unwrap();
            }
        }));
    }
    for _ in 0..clients("QUEUE_CONSUMERS") {
        let mut con = connection.clone();
        let acked = acked.clone();
        handles.push(tokio::spawn(async move {
            while acked.load(Ordering::Relaxed) < tasks {
                let popped: Vec<(String, f64)> = redis::cmd("ZPOPMAX")
                    .arg("zs:queue")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                let Some((id, _)) = popped.into_iter().next() else {
                    // Empty for now: back off instead of spinning on a CPU redis needs.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let _: Option<Vec<u8>> = redis::cmd("HGET")
                    .arg("zs:tasks")
                    .arg(&id)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                redis::cmd("HDEL")
                    .arg("zs:tasks")
                    .arg(&id)
                    .query_async::<()>(&mut con)
                    .await
                    .unwrap();
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    started.elapsed()
}
