//! Hot paths of the task pipeline: ranking an auction, moving tasks through the priority queue,
//! checking a request's session token and starting an agent (none touch the disk), and the
//! synchronous work of a 30 MB upload (which writes to a temp redb). Run with
//! `cargo bench --bench engine` (`-- upload` for the upload alone).

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use uuid::Uuid;
use zerostate::agents::Catalog;
use zerostate::queue::{PriorityQueue, QueuedTask, TaskQueue};
use zerostate::ranking::Weights;
use zerostate::records::{Agent, AgentStats, Priority};

#[path = "support/synthetic.rs"]
mod synthetic;

fn agents(n: usize) -> Vec<Agent> {
    (0..n)
        .map(|i| Agent {
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            stats: AgentStats {
                tasks_completed: (i * 7 % 50) as u64,
                tasks_failed: (i % 5) as u64,
                success_rate: None,
                avg_duration_ms: (i % 3 != 0).then_some((i % 400) as f64),
                total_duration_ms: 0,
                ema_success: Some(((i * 7) % 10) as f64 / 10.0),
                ema_duration_ms: (i % 3 != 0).then_some((i % 400) as f64),
            },
            ..Agent::fixture(
                &format!("agent-{i}"),
                (i % 100) as f64 / 100.0,
                &["nlp", &format!("cap-{}", i % 10)],
            )
        })
        .collect()
}

fn auction(c: &mut Criterion) {
    let mut group = c.benchmark_group("auction");
    for n in [10, 1_000, 100_000] {
        // Every agent offers `nlp`; half are within the budget: 50,000 bidders at 100,000.
        let catalog = Catalog::new(agents(n));
        let required = vec!["nlp".to_owned()];
        group.bench_with_input(BenchmarkId::from_parameter(n), &catalog, |b, catalog| {
            b.iter(|| {
                catalog
                    .auction(&required, 0.5, Weights::default(), None, &[])
                    .unwrap()
            })
        });
        // A narrower request: one capability in ten.
        let narrow = vec!["nlp".to_owned(), "cap-3".to_owned()];
        group.bench_with_input(
            BenchmarkId::new("two capabilities", n),
            &catalog,
            |b, catalog| {
                b.iter(|| {
                    catalog
                        .auction(&narrow, 0.5, Weights::default(), None, &[])
                        .unwrap()
                })
            },
        );
    }
    group.finish();
}

/// Criterion reports means; the target is on the tail, so time single auctions at 100,000
/// agents and print their percentiles.
fn auction_tail(_: &mut Criterion) {
    let catalog = Catalog::new(agents(100_000));
    let required = vec!["nlp".to_owned()];
    let mut samples: Vec<std::time::Duration> = (0..2_000)
        .map(|_| {
            let start = std::time::Instant::now();
            std::hint::black_box(
                catalog
                    .auction(&required, 0.5, Weights::default(), None, &[])
                    .unwrap(),
            );
            start.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "auction/100000 single runs: p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        samples[samples.len() - 1]
    );
}

fn queue(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // One owner (every turn is the same user's), then 100 owners taking turns, then the same
    // under a cap of 2 runs per owner (each run released after the next pop).
    for (label, owners, cap) in [
        ("1 owner", 1u128, 0),
        ("100 owners", 100, 0),
        ("100 owners, cap 2", 100, 2),
    ] {
        c.bench_function(
            &format!("queue/push+pop 1000 mixed priorities, {label}"),
            |b| {
                let q = PriorityQueue::new(1_000_000).with_run_cap(cap);
                b.iter(|| {
                    runtime.block_on(async {
                        for seq in 0..1000u64 {
                            let priority = Priority::ALL[(seq % 4) as usize];
                            q.push(
                                QueuedTask {
                                    task_id: Uuid::nil(),
                                    owner: Uuid::from_u128(u128::from(seq) % owners),
                                    priority,
                                    seq,
                                },
                                false,
                            )
                            .await
                            .unwrap();
                        }
                        let mut previous = None;
                        for _ in 0..1000 {
                            let next = q.pop().await.unwrap();
                            if let Some(owner) = previous.replace(next.task.owner) {
                                q.release(owner);
                            }
                        }
                        if let Some(owner) = previous {
                            q.release(owner);
                        }
                    })
                })
            },
        );
    }
}

/// Every API request checks its bearer token: in full the first time, from memory after.
fn token(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys = zerostate::auth::TokenKeys::load_or_create(dir.path(), 3600).unwrap();
    // Tokens issued in the same second for the same user are identical: a new user each time.
    c.bench_function("token/verify a new token", |b| {
        b.iter_batched(
            || keys.issue(Uuid::new_v4(), 0),
            |token| keys.verify(&token).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    let token = keys.issue(Uuid::new_v4(), 0);
    c.bench_function("token/verify a remembered token", |b| {
        b.iter(|| keys.verify(&token).unwrap())
    });
}

/// Exports `_start`, does nothing.
const NOOP_AGENT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// p50 and p99 of `runs` timings of `f`.
fn percentiles(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    (at(0.5), at(0.99))
}

/// Starting an agent: instantiate + run + tear down a no-op module through a pooling
/// allocator and a pre-linked `InstancePre` (what the executor does), against a baseline that
/// builds a fresh store and links and instantiates with the default on-demand allocator; then
/// the executor's whole per-task overhead (WASI context, limits, a hop to the agent runtime
/// and back), through `Executor::run`. Prints p50/p99 of single runs, and the ratio.
fn executor(_: &mut Criterion) {
    use wasmtime::{
        Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
    };
    const RUNS: usize = 20_000;
    let wasm = wat::parse_str(NOOP_AGENT).unwrap();

    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(4)
        .total_memories(4)
        .total_tables(4)
        .total_stacks(4)
        .total_component_instances(0);
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, &wasm).unwrap();
    let pre = Linker::<()>::new(&engine).instantiate_pre(&module).unwrap();
    let pooled = percentiles(RUNS, || {
        let mut store = Store::new(&engine, ());
        store.set_epoch_deadline(1);
        let instance = pre.instantiate(&mut store).unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        start.call(&mut store, ()).unwrap();
    });

    let mut config = Config::new();
    config.epoch_interruption(true);
    let plain = Engine::new(&config).unwrap();
    let module = Module::new(&plain, &wasm).unwrap();
    let baseline = percentiles(RUNS, || {
        let mut store = Store::new(&plain, ());
        store.set_epoch_deadline(1);
        let instance = Linker::new(&plain)
            .instantiate(&mut store, &module)
            .unwrap();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .unwrap();
        start.call(&mut store, ()).unwrap();
    });
    println!(
        "executor/start a no-op agent, pooling + InstancePre: p50 {:?}, p99 {:?}",
        pooled.0, pooled.1
    );
    println!(
        "executor/start a no-op agent, fresh store + on-demand allocator: p50 {:?}, p99 {:?} \
         ({:.1}x the pooled p50)",
        baseline.0,
        baseline.1,
        baseline.0.as_secs_f64() / pooled.0.as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let executor = zerostate::runtime::Executor::new(4).unwrap();
    executor.prepare("noop", &wasm).unwrap();
    let limits = zerostate::runtime::RunLimits {
        timeout: Duration::from_secs(30),
        memory_bytes: 256 * 1024 * 1024,
        stdin_bytes: 4 * 1024 * 1024,
        stdout_bytes: 1024 * 1024,
        stderr_bytes: 64 * 1024,
        fuel: None,
    };
    let task = percentiles(RUNS, || {
        let out = runtime.block_on(executor.run(
            "noop",
            vec!["noop".into()],
            vec![("ZEROSTATE_TASK_ID".into(), Uuid::new_v4().to_string())],
            b"input".to_vec(),
            limits,
            tokio_util::sync::CancellationToken::new(),
        ));
        assert_eq!(out.outcome, zerostate::runtime::Outcome::Completed);
    });
    println!(
        "executor/whole task through Executor::run (WASI, limits, runtime hop): p50 {:?}, p99 {:?}",
        task.0, task.1
    );
}

/// An upload's synchronous work on a 30 MB module (50,000 functions): the declaration checks,
/// sha256, and the durable store into redb (chunks, one fsynced transaction). Each stored
/// module differs (a new salt per iteration), so nothing is deduplicated.
fn upload(c: &mut Criterion) {
    let module = synthetic::module(50_000, 0);
    let policy = zerostate::records::Policy::default();
    let mut group = c.benchmark_group("upload 30 MB");
    group.sample_size(10);
    group.bench_function("check declarations", |b| {
        b.iter(|| zerostate::runtime::check(&module, &policy).unwrap())
    });
    group.bench_function("sha256", |b| {
        b.iter(|| zerostate::blob::sha256_hex(&module))
    });
    let dir = tempfile::tempdir().unwrap();
    let store = zerostate::store::Store::open(&dir.path().join("bench.redb")).unwrap();
    let blobs = zerostate::blob::EmbeddedBlobs::new(store);
    let blobs: &dyn zerostate::blob::BlobStore = &blobs;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut salt = 1;
    group.bench_function("check + sha256 + store", |b| {
        b.iter_batched(
            || {
                salt += 1;
                bytes::Bytes::from(synthetic::module(50_000, salt))
            },
            |bytes| {
                zerostate::runtime::check(&bytes, &policy).unwrap();
                runtime.block_on(blobs.put(bytes)).unwrap()
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("validate bodies (background)", |b| {
        b.iter(|| zerostate::runtime::validate(&module, &policy).unwrap())
    });
    group.finish();
}

criterion_group!(
    benches,
    auction,
    auction_tail,
    queue,
    token,
    executor,
    upload
);
criterion_main!(benches);
