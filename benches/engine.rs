//! Hot paths of the task pipeline that do not touch the disk: ranking an auction, moving tasks
//! through the priority queue and checking a request's session token. Run with `cargo bench`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use uuid::Uuid;
use zerostate::agents::{Agent, AgentStats, AgentStatus, Catalog};
use zerostate::orchestrator::{Priority, Weights};
use zerostate::queue::{QueuedTask, TaskQueue};

fn agents(n: usize) -> Vec<Agent> {
    (0..n)
        .map(|i| Agent {
            id: Uuid::new_v4(),
            owner_id: Uuid::nil(),
            name: format!("agent-{i}"),
            description: String::new(),
            version: "1.0.0".into(),
            capabilities: vec!["nlp".into(), format!("cap-{}", i % 10)],
            price: (i % 100) as f64 / 100.0,
            binary_hash: String::new(),
            binary_size: 0,
            status: AgentStatus::Ready,
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
    c.bench_function("queue/push+pop 1000 mixed priorities", |b| {
        let q = TaskQueue::new(1_000_000);
        b.iter(|| {
            runtime.block_on(async {
                for seq in 0..1000u64 {
                    let priority = Priority::ALL[(seq % 4) as usize];
                    q.push(
                        QueuedTask {
                            task_id: Uuid::nil(),
                            priority,
                            seq,
                        },
                        false,
                    )
                    .unwrap();
                }
                for _ in 0..1000 {
                    q.pop().await.unwrap();
                }
            })
        })
    });
}

/// Every API request checks its bearer token: in full the first time, from memory after.
fn token(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let keys = zerostate::auth::TokenKeys::load_or_create(dir.path(), 3600).unwrap();
    // Tokens issued in the same second for the same user are identical: a new user each time.
    c.bench_function("token/verify a new token", |b| {
        b.iter_batched(
            || keys.issue(Uuid::new_v4()),
            |token| keys.verify(&token).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    let token = keys.issue(Uuid::new_v4());
    c.bench_function("token/verify a remembered token", |b| {
        b.iter(|| keys.verify(&token).unwrap())
    });
}

criterion_group!(benches, auction, auction_tail, queue, token);
criterion_main!(benches);
