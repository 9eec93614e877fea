//! `zerostate worker`: a node that runs agents and nothing else (no API, no UI, no accounts).
//! It takes tasks from the Redis queue, asks the primary to begin each one (the primary holds
//! the journal: it stages the task and hands back a [`RunOrder`]), gets the module (from S3,
//! else from the primary's internal route), runs it under the order's limits while keeping
//! the lease, and reports the output to the primary, which judges and journals it. It beats in
//! the node registry; a cancel published on the bus stops its run.

mod primary;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::blob::s3::S3Blobs;
use crate::blob::{BlobStore, sha256_hex};
use crate::breaker::Breakers;
use crate::cluster::{Bus, Misconfigured, Shared, SharedQueue};
use crate::config::{BlobBackend, QueueBackend, Settings};
use crate::queue::{Lease, TaskQueue, hold};
use crate::records::{RunOrder, RunOutput};
use crate::runtime::{Compiler, Executor};
use primary::Primary;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Misconfigured(#[from] Misconfigured),
    #[error(transparent)]
    Blobs(#[from] crate::blob::s3::S3ConfigError),
    #[error("cannot start the worker: {0}")]
    Start(String),
}

/// One worker node's parts.
struct Node {
    /// This process's name in the node registry.
    node: String,
    queue: SharedQueue,
    bus: Bus,
    primary: Primary,
    /// The modules' store when it is S3; `None`: fetched from the primary.
    blobs: Option<Arc<dyn BlobStore>>,
    executor: Arc<Executor>,
    compiler: Compiler,
}

/// Runs a worker node until `stop`, then lets runs finish within the grace period
/// (interrupting the rest: the primary queues them again).
pub async fn run(settings: Settings, stop: CancellationToken) -> Result<(), WorkerError> {
    check(&settings)?;
    let breakers = Breakers::default();
    let bus_stop = CancellationToken::new();
    let redis = breakers.add("redis", settings.breakers.redis);
    let shared = Shared::connect(&settings, redis, None, bus_stop.clone()).await?;
    let blobs: Option<Arc<dyn BlobStore>> = match settings.blobs.backend {
        BlobBackend::Embedded => None,
        BlobBackend::S3 => {
            let breaker = breakers.add("s3", settings.breakers.s3);
            Some(Arc::new(S3Blobs::reader(&settings.blobs, breaker).await?))
        }
    };
    let node = Arc::new(Node {
        node: shared.process.clone(),
        queue: SharedQueue(shared.queue.clone()),
        bus: shared.bus.clone(),
        primary: Primary::new(&settings.cluster).map_err(WorkerError::Start)?,
        blobs,
        executor: Arc::new(executor(&settings).await?),
        compiler: Compiler::start()
            .map_err(|e| WorkerError::Start(format!("build thread: {e}")))?,
    });
    node.primary.check().await?;
    let info = shared.node_info("worker", settings.workers);
    tracing::info!(node = %info.id, runs = settings.workers, primary = %settings.cluster.primary_url, "worker node started");
    tokio::spawn({
        let (nodes, stop) = (shared.nodes.clone(), bus_stop.clone());
        async move { nodes.beat(info, stop).await }
    });
    let mut slots = JoinSet::new();
    for _ in 0..settings.workers.max(1) {
        let node = node.clone();
        slots.spawn(async move {
            let mut pause = Duration::ZERO;
            while let Some(lease) = node.queue.pop().await {
                pause = match node.run_one(lease).await {
                    true => Duration::ZERO,
                    false => (pause * 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
                };
                tokio::time::sleep(pause).await;
            }
        });
    }
    stop.cancelled().await;
    tracing::info!("stopping: no new tasks; letting runs finish");
    node.queue.close();
    let grace = Duration::from_secs(settings.tasks.shutdown_grace_secs);
    if tokio::time::timeout(grace, async { while slots.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("grace period over; interrupting runs (the primary queues them again)");
        node.executor.interrupt_all();
        while slots.join_next().await.is_some() {}
    }
    bus_stop.cancel();
    Ok(())
}

/// The settings a worker needs, named when missing.
fn check(settings: &Settings) -> Result<(), Misconfigured> {
    let missing = |setting: &'static str, problem: &str| {
        Err(Misconfigured {
            setting,
            problem: problem.into(),
        })
    };
    if settings.queue.backend != QueueBackend::Redis {
        return missing(
            "queue.backend",
            "a worker takes its tasks from Redis: set queue.backend = \"redis\" and redis.url, as on the primary",
        );
    }
    if settings.cluster.primary_url.is_empty() {
        return missing(
            "cluster.primary_url",
            "a worker needs the primary's URL (http://host:port) to begin and report its runs",
        );
    }
    if settings.cluster.service_token.is_empty() {
        return missing(
            "cluster.service_token",
            "a worker authenticates to the primary with it: set the same token on both",
        );
    }
    Ok(())
}

/// The executor with the compiled-module cache in the worker's data dir, opened as the
/// primary opens its own (on the blocking pool: it creates files).
async fn executor(settings: &Settings) -> Result<Executor, WorkerError> {
    let settings = settings.clone();
    let open = move || {
        let data_dir = &settings.data_dir;
        crate::create_private_dir(data_dir)
            .map_err(|e| format!("data dir {}: {e}", data_dir.display()))?;
        crate::open_executor(&settings, settings.workers.max(1))
    };
    tokio::task::spawn_blocking(open)
        .await
        .map_err(|e| WorkerError::Start(e.to_string()))?
        .map_err(WorkerError::Start)
}

/// Why a module is not runnable here.
enum Unready {
    /// Its store cannot be reached now: try the task again later.
    Unreachable(String),
    /// It cannot run (compilation failed, or its bytes are not the validated ones).
    Broken(String),
}

impl Node {
    /// One leased task: begin, run, report; the lease is kept from the take to the report.
    /// False when this node could not get on with it (the primary did not answer, or the
    /// module's store is unreachable): the slot then waits before taking another.
    async fn run_one(&self, lease: Lease) -> bool {
        // Watched before the begin: a cancel that arrives meanwhile is not lost.
        let cancel = CancellationToken::new();
        let _watch = self.bus.watch_cancel(lease.task.task_id, cancel.clone());
        let begun = hold(&self.queue, &lease, &cancel, self.primary.begin(&lease)).await;
        let mut order = match begun {
            Ok(Some(order)) => order,
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(task_id = %lease.task.task_id, error = %e, "the primary did not begin the task; giving it back");
                self.queue.0.give_back(&lease).await;
                return false;
            }
        };
        let (output, got_on) = match hold(&self.queue, &lease, &cancel, self.load(&order)).await {
            Ok(()) => (self.run(&mut order, &lease, &cancel).await, true),
            Err(Unready::Broken(reason)) => (RunOutput::unloadable(reason), true),
            Err(Unready::Unreachable(reason)) => {
                tracing::warn!(task_id = %order.task_id, %reason, "module unavailable; the task goes back to the queue");
                (RunOutput::interrupted(), false)
            }
        };
        self.report(&lease, &order, &output).await;
        got_on
    }

    /// Runs a loaded order; what the guest gets moves out of it.
    async fn run(
        &self,
        order: &mut RunOrder,
        lease: &Lease,
        cancel: &CancellationToken,
    ) -> RunOutput {
        self.announce_start(order);
        let run = self.executor.run_order(order, cancel.clone());
        hold(&self.queue, lease, cancel, run).await
    }

    /// Tells the owner's sockets (on whichever node holds them) that the run started here.
    fn announce_start(&self, order: &RunOrder) {
        let data = serde_json::json!({
            "task_id": order.task_id,
            "node": self.node,
            "stage": "running",
        });
        let event = crate::realtime::Event::new("task_progress", data);
        self.bus.task_event(order.owner_id, event);
    }

    /// Makes the order's module runnable: from memory, the compiled cache, else fetched and
    /// compiled on the build thread.
    async fn load(&self, order: &RunOrder) -> Result<(), Unready> {
        let (executor, hash) = (self.executor.clone(), order.module.clone());
        let cached = tokio::task::spawn_blocking(move || executor.prepare_cached(&hash))
            .await
            .map_err(|e| Unready::Broken(e.to_string()))?
            .map_err(Unready::Broken)?;
        if cached.is_some() {
            return Ok(());
        }
        let bytes = match &self.blobs {
            Some(blobs) => blobs.get(order.module.clone()).await.map_err(|e| match e {
                crate::blob::BlobError::Corrupt { .. } => Unready::Broken(e.to_string()),
                e => Unready::Unreachable(e.to_string()),
            })?,
            None => self
                .primary
                .module(&order.module)
                .await
                .map_err(|e| Unready::Unreachable(e.message))?,
        };
        if sha256_hex(&bytes) != order.module {
            return Err(Unready::Broken(
                "the module's bytes do not match its hash".into(),
            ));
        }
        let (executor, hash) = (self.executor.clone(), order.module.clone());
        self.compiler
            .run(move || executor.compile(&hash, &bytes))
            .await
            .map_err(|_| Unready::Broken("the build thread stopped".into()))?
            .map(drop)
            .map_err(Unready::Broken)
    }

    /// Reports the output, retrying until the primary answers it. Giving up sooner could
    /// strand the task (the primary may have applied the report and lost its answer); a late
    /// report is safe: the fences ignore it if another node took the task over.
    async fn report(&self, lease: &Lease, order: &RunOrder, output: &RunOutput) {
        let mut wait = Duration::from_millis(200);
        loop {
            match self.primary.complete(lease, order, output).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::info!(task_id = %order.task_id, "another node took the task over; this run's result was ignored");
                    return;
                }
                Err(e) if !e.refused => {
                    tracing::warn!(task_id = %order.task_id, error = %e, "could not report to the primary; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(task_id = %order.task_id, error = %e, "the primary refused the report; the task runs again elsewhere");
                    return;
                }
            }
        }
    }
}
