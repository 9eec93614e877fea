//! The orchestrator: submit (validate, auction, journal, queue), the worker pool and shutdown.
//!
//! Threading: workers are tokio tasks that wait on the queue; module compilation runs on the
//! blocking pool, and guests run on the executor's own runtime. Every status change is a
//! compare-and-set on the task's live status in the [`Ledger`], so a task reaches a terminal
//! state once and a late result of a stale run is ignored. Terminal states are announced
//! (hub, `Prefer: wait`) only once their WAL record is on disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::analytics::{self, Report, Window};
use super::auction::{Bid, NoEligibleAgent, Weights};
use super::ledger::{Ledger, LedgerError, Submitted};
use super::runs::{RecentRuns, RecentStats};
use super::task::{Attempt, FailureCode, Priority, Task, TaskCounts, TaskStatus};
use crate::agents::{AgentError, Limits, Marketplace, parse_capabilities};
use crate::config::{LimitSettings, Settings, TaskSettings};
use crate::error::{ApiError, Code};
use crate::queue::{QueueError, QueuedTask, TaskQueue};
use crate::realtime::{Event, Hub, Topic};
use crate::runtime::{Executor, Outcome, RunLimits};
use crate::store::tables::ALL_USERS;
use crate::store::{AgentOutcome, Page, Store, StoreError, TaskFilter};

/// Longest accepted `query`, in bytes.
const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Longest accepted serialised `input`: it becomes the agent's stdin.
const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;
/// Retention runs this often.
pub const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Finished tasks deleted per transaction.
const PRUNE_BATCH: usize = 10_000;
/// How long a cancel waits for a running task to stop before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(5);
/// A task interrupted by a server stop this many times fails instead of running again.
const MAX_STARTS: u32 = 3;
/// How much of stderr is kept on the task and quoted in its error.
const STDERR_TAIL_CHARS: usize = 2000;

/// A task submission as received.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// What to do, in words. The agent's stdin when there is no `input`.
    pub query: String,
    /// Structured input; serialised as JSON onto the agent's stdin.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// Capabilities the agent must all offer.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Most the caller will pay; agents priced above it do not bid.
    pub budget: f64,
    /// Whole seconds; default from config (30), at most the configured maximum (300).
    #[schema(value_type = Option<u64>)]
    pub timeout: Option<serde_json::Number>,
    /// low, normal (or medium), high, critical; default normal.
    #[schema(value_type = Option<Priority>)]
    pub priority: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub constraints: Option<Value>,
    /// Run this agent instead of the auction winner (it must still be eligible).
    pub agent_id: Option<Uuid>,
    /// RFC 3339 time by which the task must be done: a run never goes past it, and a task
    /// still queued then fails without running.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deadline: Option<OffsetDateTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidBudget(String),
    #[error("{0}")]
    InvalidTimeout(String),
    #[error("priority `{0}` is not one of low, normal (medium), high, critical")]
    InvalidPriority(String),
    #[error(transparent)]
    NoEligibleAgent(#[from] NoEligibleAgent),
    #[error("agent not found")]
    AgentNotFound,
    #[error("the agent is {0}; it takes tasks once its build is ready")]
    AgentNotReady(&'static str),
    #[error("task not found")]
    NotFound,
    #[error("this task belongs to another user")]
    Forbidden,
    #[error(
        "the task this Idempotency-Key created has been deleted by retention; send a new key to submit again"
    )]
    KeyReused,
    #[error("the task is already {0}")]
    Finished(&'static str),
    #[error("the queue is full ({0} tasks); retry later")]
    QueueFull(usize),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        let code = match e {
            TaskError::Agent(e) => return e.into(),
            TaskError::Store(e) => return ApiError::internal(&e),
            TaskError::Ledger(e) => return ApiError::internal(&e),
            TaskError::Invalid(_) => Code::InvalidRequest,
            TaskError::InvalidBudget(_) => Code::InvalidBudget,
            TaskError::InvalidTimeout(_) => Code::InvalidTimeout,
            TaskError::InvalidPriority(_) => Code::InvalidPriority,
            TaskError::NoEligibleAgent(_) => Code::NoEligibleAgent,
            TaskError::AgentNotFound => Code::AgentNotFound,
            TaskError::AgentNotReady(_) => Code::AgentNotReady,
            TaskError::NotFound => Code::TaskNotFound,
            TaskError::Forbidden => Code::TaskForbidden,
            TaskError::KeyReused => Code::IdempotencyKeyReused,
            TaskError::Finished(_) => Code::TaskFinished,
            TaskError::QueueFull(_) => Code::QueueFull,
            TaskError::ShuttingDown => Code::ShuttingDown,
        };
        ApiError::new(code, e.to_string())
    }
}

/// The orchestrator. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ledger: Ledger,
    marketplace: Marketplace,
    queue: TaskQueue,
    executor: Arc<Executor>,
    hub: Hub,
    settings: TaskSettings,
    limits: LimitSettings,
    weights: Weights,
    /// Cleared at shutdown: submits answer 503 and workers stop taking tasks.
    accepting: AtomicBool,
    /// Ids of tasks as they reach a terminal state, for submitters waiting on a result.
    finished: broadcast::Sender<Uuid>,
    /// Cancel handles of the runs in progress. A std Mutex: held for a map operation only.
    running: Mutex<HashMap<Uuid, CancellationToken>>,
    /// Live per-user run statistics (in memory: they restart empty).
    recent: RecentRuns,
    metrics: TaskMetrics,
}

/// The engine's metric series, registered once: a labelled lookup in the recorder on every
/// submit and run costs more than the increment.
struct TaskMetrics {
    /// By [`Priority`] discriminant.
    submitted: [metrics::Counter; 4],
    /// By [`TaskStatus`] discriminant ([`TaskStatus::ALL`] order).
    finished: [metrics::Counter; 6],
    duration: metrics::Histogram,
}

impl TaskMetrics {
    fn register() -> Self {
        crate::telemetry::metrics_handle();
        Self {
            submitted: Priority::ALL.map(
                |p| metrics::counter!("zerostate_tasks_submitted_total", "priority" => p.as_str()),
            ),
            finished: TaskStatus::ALL.map(
                |s| metrics::counter!("zerostate_tasks_finished_total", "status" => s.as_str()),
            ),
            duration: metrics::histogram!("zerostate_task_duration_seconds"),
        }
    }

    fn finished(&self, status: TaskStatus) -> &metrics::Counter {
        &self.finished[status as usize]
    }
}

impl Orchestrator {
    pub fn new(
        store: Store,
        ledger: Ledger,
        marketplace: Marketplace,
        executor: Arc<Executor>,
        hub: Hub,
        config: &Settings,
    ) -> Self {
        let settings = config.tasks.clone();
        Self {
            inner: Arc::new(Inner {
                store,
                ledger,
                marketplace,
                queue: TaskQueue::new(settings.queue_capacity),
                executor,
                hub,
                settings,
                limits: config.limits,
                weights: Weights::from(config.auction),
                accepting: AtomicBool::new(true),
                finished: broadcast::channel(1024).0,
                running: Mutex::default(),
                recent: RecentRuns::default(),
                metrics: TaskMetrics::register(),
            }),
        }
    }

    /// Validates, auctions, journals and queues a task. Returns it once it is durable.
    pub async fn submit(
        &self,
        owner: Uuid,
        sub: Submission,
        idempotency_key: Option<String>,
    ) -> Result<Task, TaskError> {
        let inner = &self.inner;
        if !inner.accepting.load(Ordering::Relaxed) {
            return Err(TaskError::ShuttingDown);
        }
        if let Some(key) = &idempotency_key {
            if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(TaskError::Invalid(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
                ));
            }
            // A retry of a submit that went through gets the first task, whatever changed since
            // (the agent's price, the queue's length).
            if let Some(id) = inner.ledger.claimed(owner, key).await? {
                return self.claimed_task(owner, id).await;
            }
        }
        let query = sub.query.trim().to_owned();
        if query.is_empty() {
            return Err(TaskError::Invalid("query must not be empty".into()));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(TaskError::Invalid(format!(
                "query must be at most {MAX_QUERY_BYTES} bytes"
            )));
        }
        if let Some(input) = &sub.input
            && serde_json::to_vec(input)
                .map(|v| v.len())
                .unwrap_or(usize::MAX)
                > MAX_INPUT_BYTES
        {
            return Err(TaskError::Invalid(format!(
                "input must serialise to at most {MAX_INPUT_BYTES} bytes"
            )));
        }
        let capabilities = checked_requirements(&sub.capabilities, sub.budget)?;
        let max = inner.settings.max_timeout_secs;
        let timeout_secs = match &sub.timeout {
            None => inner.settings.default_timeout_secs,
            // Negative and fractional numbers are out of range too.
            Some(n) => n.as_u64().unwrap_or(0),
        };
        if !(1..=max).contains(&timeout_secs) {
            return Err(TaskError::InvalidTimeout(format!(
                "timeout must be a whole number of seconds between 1 and {max}"
            )));
        }
        let priority = match sub
            .priority
            .as_deref()
            .map(|p| p.trim().to_ascii_lowercase())
        {
            None => Priority::Normal,
            Some(p) => match p.as_str() {
                "low" => Priority::Low,
                "normal" | "medium" => Priority::Normal,
                "high" => Priority::High,
                "critical" => Priority::Critical,
                _ => return Err(TaskError::InvalidPriority(p)),
            },
        };
        // Kept in UTC, as every other time: a deadline is an instant, and one whose UTC year
        // passes 9999 cannot be represented (nor stored).
        let deadline = match sub.deadline {
            None => None,
            Some(d) => Some(
                d.checked_to_offset(time::UtcOffset::UTC)
                    .ok_or_else(|| TaskError::Invalid("deadline is beyond the year 9999".into()))?,
            ),
        };
        if deadline.is_some_and(|d| d <= OffsetDateTime::now_utc()) {
            return Err(TaskError::Invalid("deadline is in the past".into()));
        }
        inner.queue.check_capacity().map_err(queue_error)?;

        let catalog = inner.marketplace.catalog();
        if let Some(id) = sub.agent_id
            && catalog.get(id).is_none()
        {
            // Not in the catalog: unknown, or still building (or rejected).
            return Err(match inner.marketplace.get(id).await {
                Ok(agent) => TaskError::AgentNotReady(agent.status.as_str()),
                Err(_) => TaskError::AgentNotFound,
            });
        }
        let bids = catalog.auction(&capabilities, sub.budget, inner.weights, sub.agent_id, &[])?;
        // Agents whose input schema refuses the input do not bid.
        let bids = inner.marketplace.bids_accepting(bids, sub.input.as_ref())?;
        let winner = &bids[0];
        let task = Task {
            query: query.into(),
            input: sub.input.map(Arc::new),
            capabilities: capabilities.into(),
            priority,
            budget: sub.budget,
            timeout_secs,
            constraints: sub.constraints.map(Arc::new),
            agent_id: winner.agent_id,
            agent_name: winner.agent_name.clone(),
            price: winner.price,
            bids: bids.into(),
            pinned: sub.agent_id.is_some(),
            deadline,
            ..Task::blank(owner)
        };
        let task = match inner.ledger.submit(task, idempotency_key).await? {
            Submitted::New(task) => *task,
            // A concurrent submit with the same key won the race: answer with its task.
            Submitted::Existing(id) => return self.claimed_task(owner, id).await,
        };
        inner.metrics.submitted[task.priority as usize].increment(1);
        // Announced before it is queued, so `queued` always reaches the owner before `running`.
        inner
            .hub
            .send_task_update(owner, || Event::task_update(&task));
        // Durable: from here the task survives a crash even if queueing fails (recovery
        // re-queues it). Forced because a journaled task must not be dropped; concurrent
        // submits may overshoot the capacity checked above by a few tasks.
        if let Err(e) = inner.queue.push(queued(&task), true) {
            tracing::warn!(task_id = %task.id, error = %e, "task journaled but not queued; it runs after restart");
        }
        self.queue_changed();
        Ok(task)
    }

    /// Subscribe before submitting to learn when tasks finish (see [`Orchestrator::wait_finished`]).
    pub fn finished_events(&self) -> broadcast::Receiver<Uuid> {
        self.inner.finished.subscribe()
    }

    /// Waits up to `limit` for task `id` to reach a terminal state; returns it if it did.
    pub async fn wait_finished(
        &self,
        mut events: broadcast::Receiver<Uuid>,
        owner: Uuid,
        id: Uuid,
        limit: Duration,
    ) -> Result<Option<Task>, TaskError> {
        let is_finished = || async {
            matches!(self.inner.ledger.task(id).await, Ok(Some(t)) if t.status.is_terminal())
        };
        // Already finished (e.g. an idempotent replay of a finished task): no event will come.
        if is_finished().await {
            return self.task(owner, id).await.map(Some);
        }
        let finished = tokio::time::timeout(limit, async {
            loop {
                match events.recv().await {
                    Ok(done) if done == id => return true,
                    Ok(_) => {}
                    // Missed events: look at the task itself.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if is_finished().await {
                            return true;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        if !finished {
            return Ok(None);
        }
        self.task(owner, id).await.map(Some)
    }

    /// Cancels a task of `owner`: a queued task at once; a running one is stopped and then
    /// marked canceled (this waits up to a few seconds for that). A finished task cannot be.
    pub async fn cancel(&self, owner: Uuid, id: Uuid) -> Result<Task, TaskError> {
        let inner = &self.inner;
        // A few rounds: a task can start running, or go back to the queue for failover,
        // between reading it and canceling it.
        for _ in 0..3 {
            let task = self.task(owner, id).await?;
            match task.status {
                TaskStatus::Queued => {
                    let canceled = inner.ledger.transition(id, TaskStatus::Queued, None, |t| {
                        t.status = TaskStatus::Canceled;
                        t.completed_at = Some(OffsetDateTime::now_utc());
                        t.error = Some("canceled by its owner before it ran".into());
                        t.error_code = Some(FailureCode::Canceled);
                    })?;
                    if let Some((canceled, durable)) = canceled {
                        inner.queue.remove(id);
                        durable.wait().await?;
                        self.announce_finished(&canceled);
                        return Ok(canceled);
                    }
                }
                TaskStatus::Running => {
                    let token = inner.running.lock().expect("running map").get(&id).cloned();
                    if let Some(token) = token {
                        let events = self.finished_events();
                        token.cancel();
                        if let Some(task) =
                            self.wait_finished(events, owner, id, CANCEL_WAIT).await?
                        {
                            return Ok(task);
                        }
                    }
                }
                _ => return Err(TaskError::Finished(task.status.as_str())),
            }
        }
        self.task(owner, id).await
    }

    /// The ranking a submit with these requirements would get now, without submitting.
    pub fn preview(&self, capabilities: &[String], budget: f64) -> Result<Vec<Bid>, TaskError> {
        let capabilities = checked_requirements(capabilities, budget)?;
        Ok(self.inner.marketplace.catalog().auction(
            &capabilities,
            budget,
            self.inner.weights,
            None,
            &[],
        )?)
    }

    /// A task, if `owner` owns it.
    pub async fn task(&self, owner: Uuid, id: Uuid) -> Result<Task, TaskError> {
        match self.inner.ledger.task(id).await? {
            Some(task) if task.owner_id == owner => Ok(task),
            Some(_) => Err(TaskError::Forbidden),
            None => Err(TaskError::NotFound),
        }
    }

    /// The task an idempotency key of `owner` points at.
    async fn claimed_task(&self, owner: Uuid, id: Uuid) -> Result<Task, TaskError> {
        match self.task(owner, id).await {
            Err(TaskError::NotFound) => Err(TaskError::KeyReused),
            other => other,
        }
    }

    /// A page of `owner`'s tasks matching `filter`, newest first, the number of all matches,
    /// and the cursor of the next page (`None` on the last page).
    pub async fn list(
        &self,
        owner: Uuid,
        filter: TaskFilter,
        page: Page,
    ) -> Result<(Vec<Task>, u64, Option<u64>), TaskError> {
        self.inner.ledger.settled().await?;
        let store = &self.inner.store;
        // Counted per status in the counts table: no scan needed.
        let counted = filter.priority.is_none() && filter.agent_id.is_none();
        let found = store.tasks_for_owner(owner, filter, page, !counted).await?;
        let total = match found.matched {
            Some(n) => n,
            None => {
                let counts = store.task_counts(Some(owner)).await?;
                filter.status.map_or(counts.total(), |s| counts.get(s))
            }
        };
        let next = found
            .more
            .then(|| found.tasks.last().map(|t| t.seq))
            .flatten();
        Ok((found.tasks, total, next))
    }

    pub async fn counts(&self, owner: Option<Uuid>) -> Result<TaskCounts, TaskError> {
        self.inner.ledger.settled().await?;
        Ok(self.inner.store.task_counts(owner).await?)
    }

    /// Analytics of `owner`'s tasks (everyone's with `None`) over `window`, up to now.
    pub async fn analytics(
        &self,
        owner: Option<Uuid>,
        window: Window,
    ) -> Result<Report, TaskError> {
        // Tasks journaled as finished are in the store before they are counted here.
        self.inner.ledger.settled().await?;
        let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let (from, to) = window.span(now);
        let key = owner.map_or_else(|| ALL_USERS.to_owned(), |o| o.to_string());
        let cells = self
            .inner
            .store
            .analytics_cells(key, window.cell_width(), from, to)
            .await?;
        let scope = if owner.is_some() { "me" } else { "all" };
        Ok(analytics::report(window, scope, now, &cells))
    }

    /// Queued tasks per priority, lowest priority first.
    pub fn queue_depth(&self) -> [usize; 4] {
        self.inner.queue.depth()
    }

    /// The `queue_update` message: the queue's depth per priority and the runs in progress.
    pub fn queue_event(&self) -> Event {
        let depth = self.queue_depth();
        let running = self.inner.running.lock().expect("running map").len();
        Event::new(
            "queue_update",
            json!({
                "queue_depth": {
                    "low": depth[Priority::Low as usize],
                    "normal": depth[Priority::Normal as usize],
                    "high": depth[Priority::High as usize],
                    "critical": depth[Priority::Critical as usize],
                },
                "queued": depth.iter().sum::<usize>(),
                "running": running,
            }),
        )
    }

    /// Tells the watchers of the `queue` topic (coalesced by the hub).
    fn queue_changed(&self) {
        let this = self.clone();
        self.inner
            .hub
            .touch(Topic::Queue, move || Some(this.queue_event()));
    }

    /// Queues the unfinished tasks the ledger loaded at start. Tasks that were running when
    /// the server stopped go back to `queued`, unless stops have cut their runs short
    /// [`MAX_STARTS`] times: those fail, so a task that keeps taking the server down cannot do
    /// so forever. Called once, before workers start.
    pub async fn recover(&self, unfinished: Vec<Task>) -> Result<usize, TaskError> {
        let ledger = &self.inner.ledger;
        let (mut requeued, mut were_running) = (0, 0);
        for task in unfinished {
            if task.status == TaskStatus::Running {
                were_running += 1;
                // Runs cut short by a stop: starts that never produced an attempt.
                let interrupted = task.starts.saturating_sub(task.attempts.len() as u32);
                if interrupted >= MAX_STARTS {
                    let error = format!(
                        "the server stopped while this task ran, {} times; not retried again",
                        task.starts
                    );
                    if let Some((failed, durable)) =
                        ledger.transition(task.id, TaskStatus::Running, None, |t| {
                            t.status = TaskStatus::Failed;
                            t.error = Some(error);
                            t.error_code = Some(FailureCode::Interrupted);
                            t.completed_at = Some(OffsetDateTime::now_utc());
                        })?
                    {
                        durable.wait().await?;
                        self.announce_finished(&failed);
                    }
                    continue;
                }
                ledger.transition(task.id, TaskStatus::Running, None, |t| {
                    t.status = TaskStatus::Queued;
                    t.started_at = None;
                })?;
            }
            self.inner
                .queue
                .push(queued(&task), true)
                .map_err(queue_error)?;
            requeued += 1;
        }
        if requeued > 0 || were_running > 0 {
            tracing::info!(
                queued = requeued,
                were_running,
                "recovered unfinished tasks"
            );
        }
        Ok(requeued)
    }

    /// Starts `n` workers; they run until [`Orchestrator::shutdown`].
    pub fn spawn_workers(&self, n: usize) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for worker in 0..n {
            let this = self.clone();
            set.spawn(async move {
                while let Some(next) = this.inner.queue.pop().await {
                    this.queue_changed();
                    this.run_task(next).await;
                    this.queue_changed();
                }
                tracing::debug!(worker, "worker stopped");
            });
        }
        set
    }

    /// Applies the retention rules once; returns how many finished tasks were deleted.
    pub async fn prune(&self) -> Result<usize, TaskError> {
        // Everything before the checkpoint is in the store and will not be replayed. A task
        // whose end was journaled after it could come back from the WAL: those stay for now.
        self.inner.ledger.checkpoint().await?;
        let keep_ids = self.inner.ledger.uncheckpointed_ends();
        let settings = &self.inner.settings;
        let cutoff = match settings.retention_days {
            0 => OffsetDateTime::UNIX_EPOCH,
            days => OffsetDateTime::now_utc() - time::Duration::days(days as i64),
        };
        let mut total = 0;
        loop {
            let pruned = self
                .inner
                .store
                .prune_finished(
                    settings.retention_max_finished,
                    cutoff,
                    keep_ids.clone(),
                    PRUNE_BATCH,
                )
                .await?;
            total += pruned;
            if pruned < PRUNE_BATCH {
                break;
            }
        }
        let keys = self.inner.store.prune_idempotency_keys().await?;
        if keys > 0 {
            tracing::debug!(keys, "expired idempotency keys deleted");
        }
        let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let cells = self.inner.store.prune_analytics(now).await?;
        if cells > 0 {
            tracing::debug!(cells, "expired analytics cells deleted");
        }
        Ok(total)
    }

    /// Runs [`Orchestrator::prune`] every [`PRUNE_EVERY`] until `stop` is cancelled (start-up
    /// runs it once before serving).
    pub async fn run_retention(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(PRUNE_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            match self.prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "retention deleted finished tasks"),
                Err(e) => tracing::error!(error = %e, "retention failed; retrying later"),
            }
        }
    }

    /// Refuses new submissions and stops workers from starting queued tasks. Queued tasks stay
    /// journaled and run after the next start.
    pub fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::Relaxed);
        self.inner.queue.close();
    }

    /// Lets running tasks finish within `grace`, then interrupts the rest (they go back to
    /// `queued` and run after the next start), and makes the store durable. Calls
    /// [`Orchestrator::stop_accepting`] first.
    pub async fn shutdown(&self, mut workers: JoinSet<()>, grace: Duration) {
        self.stop_accepting();
        let drained = tokio::time::timeout(grace, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("grace period over; interrupting running tasks, they will be re-queued");
            self.inner.executor.interrupt_all();
            while workers.join_next().await.is_some() {}
        }
        if let Err(e) = self.inner.ledger.close().await {
            tracing::error!(error = %e, "final checkpoint failed; the next start replays the WAL");
        }
    }

    /// Tells waiters and the owner that a task reached a terminal state (once it is durable).
    fn announce_finished(&self, task: &Task) {
        let _ = self.inner.finished.send(task.id);
        self.queue_changed();
        self.inner
            .hub
            .send_task_update(task.owner_id, || Event::task_update(task));
    }

    async fn run_task(&self, next: QueuedTask) {
        let Err(e) = self.try_run_task(next).await else {
            return;
        };
        tracing::error!(task_id = %next.task_id, error = %e, "task execution failed internally");
        // Fail it rather than strand it: it has left the queue and would otherwise sit in
        // `queued` or `running` until the next restart, and fail the same way again.
        let failed = async {
            match self.inner.ledger.live_task(next.task_id) {
                Some(task) if !task.status.is_terminal() => {
                    self.finish_without_run(
                        &task,
                        TaskStatus::Failed,
                        FailureCode::Internal,
                        "internal error while running the task; see the server log",
                    )
                    .await
                }
                _ => Ok(()),
            }
        };
        if let Err(e) = failed.await {
            tracing::error!(task_id = %next.task_id, error = %e, "could not mark the task failed; it runs again after restart");
        }
    }

    async fn try_run_task(&self, next: QueuedTask) -> Result<(), TaskError> {
        let inner = &self.inner;
        // Gone from memory or no longer queued: canceled (or finished) while it waited.
        let Some(task) = inner.ledger.live_task(next.task_id) else {
            return Ok(());
        };
        if task.status != TaskStatus::Queued {
            return Ok(());
        }
        let agent = match inner.marketplace.catalog().get(task.agent_id) {
            Some(agent) => agent,
            None => match inner.marketplace.get(task.agent_id).await {
                Ok(agent) => Arc::new(agent),
                Err(AgentError::NotFound) => {
                    return self
                        .finish_without_run(
                            &task,
                            TaskStatus::Failed,
                            FailureCode::AgentUnavailable,
                            "the agent no longer exists",
                        )
                        .await;
                }
                Err(e) => return Err(e.into()),
            },
        };
        if !inner.executor.has_module(&agent.binary_hash) {
            // Not loaded yet (the start-up warm-up is still running): from the cache, else
            // compiled on the build thread.
            if let Err(reason) = inner.marketplace.load(&agent).await {
                return self
                    .finish_without_run(
                        &task,
                        TaskStatus::Failed,
                        FailureCode::AgentUnavailable,
                        &reason,
                    )
                    .await;
            }
        }

        // The run may use the task's timeout and the agent's, but never go past the deadline.
        let limits = run_limits(
            &inner.limits,
            &agent.limits,
            Duration::from_secs(task.timeout_secs),
        );
        let timeout_cap = limits.timeout;
        let mut timeout = timeout_cap;
        if let Some(deadline) = task.deadline {
            let left = deadline - OffsetDateTime::now_utc();
            if left <= time::Duration::ZERO {
                return self
                    .finish_without_run(
                        &task,
                        TaskStatus::TimedOut,
                        FailureCode::DeadlinePassed,
                        "the deadline passed before the task could run",
                    )
                    .await;
            }
            timeout = timeout.min(left.unsigned_abs());
        }

        // Registered before the task shows as running, so a cancel always finds it.
        let cancel = CancellationToken::new();
        let _registered = RunningGuard::register(&inner.running, task.id, cancel.clone());
        let Some(task) = inner.ledger.start(task.id)? else {
            return Ok(());
        };
        let started_at = task.started_at.unwrap_or_else(OffsetDateTime::now_utc);
        inner
            .hub
            .send_task_update(task.owner_id, || Event::task_update(&task));

        let stdin = match &task.input {
            Some(input) => serde_json::to_vec(input).expect("JSON values serialise"),
            None => task.query.as_bytes().to_vec(),
        };
        let mut env: Vec<(String, String)> = agent
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.extend([
            ("ZEROSTATE_TASK_ID".to_owned(), task.id.to_string()),
            ("ZEROSTATE_AGENT_ID".to_owned(), agent.id.to_string()),
            ("ZEROSTATE_QUERY".to_owned(), task.query.to_string()),
        ]);
        let mut args = Vec::with_capacity(1 + agent.argv.len());
        args.push(agent.name.clone());
        args.extend(agent.argv.iter().cloned());
        // A deadline shorter than the timeouts cuts the run.
        let limits = RunLimits { timeout, ..limits };
        let output = inner
            .executor
            .run(&agent.binary_hash, args, env, stdin, limits, cancel.clone())
            .await;

        if output.outcome == Outcome::Interrupted {
            // The server is stopping: back to the queue for the next start.
            if let Some((task, _)) =
                inner
                    .ledger
                    .transition(task.id, TaskStatus::Running, None, |t| {
                        t.status = TaskStatus::Queued;
                        t.started_at = None;
                    })?
            {
                inner
                    .hub
                    .send_task_update(task.owner_id, || Event::task_update(&task));
            }
            return Ok(());
        }

        // A cancel that lands after the guest ended still wins: no failover, no re-run.
        if output.outcome == Outcome::Canceled || cancel.is_cancelled() {
            let duration_ms = output.duration.as_millis() as u64;
            // Not the agent's fault: its statistics are left alone.
            if let Some((task, durable)) =
                inner
                    .ledger
                    .transition(task.id, TaskStatus::Running, None, |t| {
                        t.status = TaskStatus::Canceled;
                        t.completed_at = Some(OffsetDateTime::now_utc());
                        t.duration_ms = Some(duration_ms);
                        t.error = Some("canceled by its owner while running".into());
                        t.error_code = Some(FailureCode::Canceled);
                    })?
            {
                durable.wait().await?;
                self.announce_finished(&task);
            }
            return Ok(());
        }

        let duration_ms = output.duration.as_millis() as u64;
        let stderr = tail(&String::from_utf8_lossy(&output.stderr), STDERR_TAIL_CHARS);
        let success = output.outcome == Outcome::Completed;
        let timed_out = output.outcome == Outcome::TimedOut;
        let error = (!success).then(|| describe_failure(&output.outcome, &limits, &stderr));
        let attempt = Attempt {
            agent_id: agent.id,
            agent_name: agent.name.clone(),
            outcome: match output.outcome {
                Outcome::Completed => "completed",
                Outcome::TimedOut => "timed_out",
                _ => "failed",
            }
            .to_owned(),
            error: error.clone(),
            error_code: failure_code(&output.outcome),
            duration_ms,
            started_at,
        };
        // A timeout forced by the caller's deadline is not the agent's fault, and another
        // agent would meet the same deadline.
        let deadline_cut = timed_out && timeout < timeout_cap;
        // Nor is input larger than the agent declares it accepts: it never started.
        let blameless = deadline_cut || output.outcome == Outcome::InputLimit;
        let outcome = (!blameless).then_some(AgentOutcome {
            agent_id: agent.id,
            success,
            duration_ms,
        });

        if !success && !deadline_cut {
            let mut tried: Vec<Uuid> = task.attempts.iter().map(|a| a.agent_id).collect();
            tried.push(agent.id);
            if let Some(bids) = self.failover_auction(&task, &tried) {
                let next = bids[0].clone();
                tracing::info!(task_id = %task.id, failed = %agent.name, next = %next.agent_name, "failing over to the next bidder");
                let moved =
                    inner
                        .ledger
                        .transition(task.id, TaskStatus::Running, outcome, |t| {
                            t.attempts.push(attempt);
                            t.status = TaskStatus::Queued;
                            t.started_at = None;
                            t.agent_id = next.agent_id;
                            t.agent_name = next.agent_name;
                            t.price = next.price;
                            t.failover_bids.push(bids);
                        })?;
                if let Some((task, _)) = moved {
                    self.record_outcome(outcome);
                    inner
                        .hub
                        .send_task_update(task.owner_id, || Event::task_update(&task));
                    if let Err(e) = inner.queue.push(queued(&task), true) {
                        tracing::warn!(task_id = %task.id, error = %e, "failover not queued; it runs after restart");
                    }
                }
                return Ok(());
            }
        }

        let status = if success {
            TaskStatus::Completed
        } else if timed_out {
            TaskStatus::TimedOut
        } else {
            TaskStatus::Failed
        };
        let finished = inner
            .ledger
            .transition(task.id, TaskStatus::Running, outcome, |t| {
                t.attempts.push(attempt);
                t.stderr = (!stderr.is_empty()).then_some(stderr);
                t.duration_ms = Some(duration_ms);
                t.completed_at = Some(OffsetDateTime::now_utc());
                t.result = parse_result(&output.stdout);
                t.error = error;
                t.error_code = failure_code(&output.outcome);
                t.status = status;
                t.exit_code = match output.outcome {
                    Outcome::Exited(code) => Some(code),
                    _ => None,
                };
            })?;
        if let Some((task, durable)) = finished {
            self.record_outcome(outcome);
            if task.status == TaskStatus::Completed {
                inner
                    .marketplace
                    .record_completion(task.owner_id, task.agent_id);
            }
            inner.metrics.finished(task.status).increment(1);
            inner.metrics.duration.record(output.duration.as_secs_f64());
            crate::telemetry::histogram_recorded();
            tracing::debug!(task_id = %task.id, agent = %agent.name, status = task.status.as_str(), duration_ms, "task finished");
            self.inner.recent.record(
                task.owner_id,
                success,
                duration_ms,
                std::time::Instant::now(),
            );
            // The worker moves on; the announcement waits for the record's group commit.
            let this = self.clone();
            tokio::spawn(async move {
                match durable.wait().await {
                    Ok(()) => this.announce_finished(&task),
                    Err(e) => {
                        tracing::error!(task_id = %task.id, error = %e, "could not journal the task's end; it runs again after restart")
                    }
                }
            });
        }
        Ok(())
    }

    /// Folds a run's outcome into the agent's live statistics (the store gets it with the
    /// task's state).
    fn record_outcome(&self, outcome: Option<AgentOutcome>) {
        if let Some(o) = outcome {
            self.inner
                .marketplace
                .record_outcome(o.agent_id, o.success, o.duration_ms);
        }
    }

    /// Completions in the last minute and duration percentiles of `owner`'s recent runs.
    pub fn recent_stats(&self, owner: Uuid) -> RecentStats {
        self.inner.recent.stats(owner, std::time::Instant::now())
    }

    /// After a failed run: the bids of a new auction among the agents not `tried` yet, best
    /// first (never empty), unless the caller pinned the agent or the task has used its
    /// attempts.
    fn failover_auction(&self, task: &Task, tried: &[Uuid]) -> Option<Vec<Bid>> {
        if task.pinned || tried.len() >= self.inner.settings.max_attempts as usize {
            return None;
        }
        self.inner
            .marketplace
            .catalog()
            .auction(
                &task.capabilities,
                task.budget,
                self.inner.weights,
                None,
                tried,
            )
            .ok()
            .and_then(|bids| {
                let input = task.input.as_deref();
                self.inner.marketplace.bids_accepting(bids, input).ok()
            })
            .filter(|bids| !bids.is_empty())
    }

    /// Ends a task that could not run to an outcome (agent gone, module does not compile,
    /// deadline passed, internal error), from whatever non-terminal status it is in.
    async fn finish_without_run(
        &self,
        task: &Task,
        status: TaskStatus,
        code: FailureCode,
        reason: &str,
    ) -> Result<(), TaskError> {
        let ended = self
            .inner
            .ledger
            .transition(task.id, task.status, None, |t| {
                t.status = status;
                t.error = Some(reason.to_owned());
                t.error_code = Some(code);
                t.completed_at = Some(OffsetDateTime::now_utc());
            })?;
        if let Some((task, durable)) = ended {
            self.inner.queue.remove(task.id);
            durable.wait().await?;
            self.announce_finished(&task);
        }
        Ok(())
    }
}

/// Keeps a run's cancel handle in the running map for as long as the run lasts.
struct RunningGuard<'a> {
    map: &'a Mutex<HashMap<Uuid, CancellationToken>>,
    id: Uuid,
}

impl<'a> RunningGuard<'a> {
    fn register(
        map: &'a Mutex<HashMap<Uuid, CancellationToken>>,
        id: Uuid,
        token: CancellationToken,
    ) -> Self {
        map.lock().expect("running map").insert(id, token);
        Self { map, id }
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.map.lock().expect("running map").remove(&self.id);
    }
}

fn queued(task: &Task) -> QueuedTask {
    QueuedTask {
        task_id: task.id,
        priority: task.priority,
        seq: task.seq,
    }
}

/// The auction inputs shared by submit and preview: normalised capabilities, a sane budget.
fn checked_requirements(capabilities: &[String], budget: f64) -> Result<Vec<String>, TaskError> {
    if !budget.is_finite() || budget < 0.0 {
        return Err(TaskError::InvalidBudget(
            "budget must be a number ≥ 0".into(),
        ));
    }
    parse_capabilities(capabilities.iter().map(String::as_str))
        .map_err(|e| TaskError::Invalid(e.to_string()))
}

fn queue_error(e: QueueError) -> TaskError {
    match e {
        QueueError::Full(n) => TaskError::QueueFull(n),
        QueueError::Closed => TaskError::ShuttingDown,
    }
}

/// stdout as JSON when it parses, else as text; `None` when empty.
fn parse_result(stdout: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(serde_json::from_str(trimmed).unwrap_or_else(|_| Value::String(text.into_owned())))
}

fn tail(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(max_chars)).collect()
}

/// The stable code of a run that did not complete.
/// An agent's limits for one run: what its manifest asked for (else the server's default),
/// capped by the server's maxima in force now; the wall time also by the task's `timeout`.
fn run_limits(server: &LimitSettings, agent: &Limits, task_timeout: Duration) -> RunLimits {
    let pick = |asked: Option<u64>, default: u64, max: u64| asked.unwrap_or(default).min(max);
    let l = server;
    let timeout_cap = pick(agent.timeout_secs, l.timeout_secs, l.max_timeout_secs);
    RunLimits {
        timeout: task_timeout.min(Duration::from_secs(timeout_cap)),
        memory_bytes: pick(agent.memory_bytes, l.memory_bytes, l.max_memory_bytes) as usize,
        stdin_bytes: pick(agent.stdin_bytes, l.max_stdin_bytes, l.max_stdin_bytes) as usize,
        stdout_bytes: pick(agent.stdout_bytes, l.max_stdout_bytes, l.max_stdout_bytes) as usize,
        stderr_bytes: pick(agent.stderr_bytes, l.max_stderr_bytes, l.max_stderr_bytes) as usize,
        fuel: (l.max_fuel > 0).then(|| pick(agent.fuel, l.max_fuel, l.max_fuel)),
    }
}

fn failure_code(outcome: &Outcome) -> Option<FailureCode> {
    Some(match outcome {
        Outcome::Completed | Outcome::Interrupted => return None,
        Outcome::Exited(_) => FailureCode::ExitCode,
        Outcome::TimedOut => FailureCode::Timeout,
        Outcome::MemoryLimit => FailureCode::MemoryLimit,
        Outcome::OutputLimit => FailureCode::OutputLimit,
        Outcome::StackOverflow => FailureCode::StackOverflow,
        Outcome::FuelExhausted => FailureCode::FuelExhausted,
        Outcome::InputLimit => FailureCode::InputLimit,
        Outcome::Trapped(_) => FailureCode::Trap,
        Outcome::Canceled => FailureCode::Canceled,
    })
}

fn describe_failure(outcome: &Outcome, limits: &RunLimits, stderr: &str) -> String {
    let base = match outcome {
        Outcome::Exited(code) => format!("agent exited with code {code}"),
        Outcome::TimedOut => match limits.timeout.subsec_millis() {
            0 => format!("timed out after {} s", limits.timeout.as_secs()),
            _ => format!("timed out after {:.1} s", limits.timeout.as_secs_f64()),
        },
        Outcome::MemoryLimit => format!(
            "memory limit of {} MiB exceeded",
            limits.memory_bytes / (1024 * 1024)
        ),
        Outcome::OutputLimit => format!("output limit of {} bytes exceeded", limits.stdout_bytes),
        Outcome::StackOverflow => "agent trapped: call stack exhausted".to_owned(),
        Outcome::FuelExhausted => "agent ran out of fuel".to_owned(),
        Outcome::InputLimit => format!(
            "the input is larger than the agent accepts ({} bytes)",
            limits.stdin_bytes
        ),
        Outcome::Trapped(message) => format!("agent trapped: {message}"),
        Outcome::Completed | Outcome::Interrupted | Outcome::Canceled => {
            unreachable!("not a failure")
        }
    };
    let last_line = stderr.lines().rev().find(|l| !l.trim().is_empty());
    match last_line {
        Some(line) => format!("{base}; stderr: {}", line.trim()),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_limits_take_the_manifest_capped_by_the_server() {
        let mut server = Settings::default().limits;
        let defaults = run_limits(&server, &Limits::default(), Duration::from_secs(60));
        assert_eq!(
            (
                defaults.timeout,
                defaults.memory_bytes,
                defaults.stdout_bytes,
                defaults.fuel
            ),
            (Duration::from_secs(30), 256 << 20, 1 << 20, None)
        );
        let asked = Limits {
            memory_bytes: Some(900 << 20),
            timeout_secs: Some(100),
            stdout_bytes: Some(10),
            fuel: Some(5),
            ..Limits::default()
        };
        // The task's own timeout is shorter; the server lowered its memory maximum since.
        server.max_memory_bytes = 512 << 20;
        server.max_fuel = 1000;
        let run = run_limits(&server, &asked, Duration::from_secs(20));
        assert_eq!(
            (run.timeout, run.memory_bytes, run.stdout_bytes, run.fuel),
            (Duration::from_secs(20), 512 << 20, 10, Some(5))
        );
    }

    #[test]
    fn results_are_json_when_they_parse() {
        assert_eq!(
            parse_result(b" {\"a\": 1}\n"),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            parse_result(b"plain text\n"),
            Some(Value::String("plain text\n".into()))
        );
        assert_eq!(parse_result(b"  \n"), None);
    }

    #[test]
    fn failures_quote_the_last_stderr_line() {
        let limits = RunLimits {
            timeout: Duration::from_secs(2),
            memory_bytes: 256 << 20,
            stdin_bytes: 4 << 20,
            stdout_bytes: 1 << 20,
            stderr_bytes: 1 << 16,
            fuel: None,
        };
        assert_eq!(
            describe_failure(
                &Outcome::Exited(3),
                &limits,
                "warming up\nbad input: line 4\n"
            ),
            "agent exited with code 3; stderr: bad input: line 4"
        );
        assert_eq!(
            describe_failure(&Outcome::TimedOut, &limits, ""),
            "timed out after 2 s"
        );
        assert_eq!(
            describe_failure(&Outcome::MemoryLimit, &limits, ""),
            "memory limit of 256 MiB exceeded"
        );
    }
}
