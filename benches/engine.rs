//! Hot paths of the task pipeline that do not touch the disk: ranking an auction and moving
//! tasks through the priority queue. Run with `cargo bench`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use uuid::Uuid;
use zerostate::agents::{Agent, AgentStats, AgentStatus};
use zerostate::orchestrator::{Priority, Weights, run_auction};
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
        let pool = agents(n);
        let required = vec!["nlp".to_owned()];
        group.bench_with_input(BenchmarkId::from_parameter(n), &pool, |b, pool| {
            b.iter(|| run_auction(pool, &required, 0.5, Weights::default()).unwrap())
        });
    }
    group.finish();
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

criterion_group!(benches, auction, queue);
criterion_main!(benches);
