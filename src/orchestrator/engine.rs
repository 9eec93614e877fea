//! The orchestrator: submit (parse, auction, journal, queue), the reads of tasks, cancel, and
//! the worker pool's lifecycle. A worker's run of one task is in [`super::run`], recovery and
//! retention in [`super::recovery`].
//!
//! Threading: workers are tokio tasks that wait on the queue; module compilation runs on the
//! blocking pool, and guests run on the executor's own runtime. Every status change is a
//! compare-and-set in the [`TaskJournal`], so a task reaches a terminal state once and a late
//! result of a stale run is ignored. Terminal states are announced (fan-out, `Prefer: wait`)
//! only once they are durable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::detached::Detached;
use super::events;
use super::quota::{Admission, DailyCounters, Submitter};
use super::run::ended;
use super::runs::{RecentRuns, RecentStats};
use super::submission::{IdempotencyKey, Request, Submission, checked_requirements};
use crate::agents::{AgentError, Marketplace};
use crate::config::{LimitSettings, QuotaSettings, Settings, TaskSettings};
use crate::error::{ApiError, Code};
use crate::journal::{JournalError, Submitted, TaskJournal, TaskPage};
use crate::queue::{QueueError, QueuedTask, TaskQueue};
use crate::ranking::{NoEligibleAgent, Weights};
use crate::realtime::{Event, Fanout, Topic};
use crate::records::{
    Bid, FailureCode, Page, Priority, QueueDepth, Report, Task, TaskChange, TaskCounts, TaskFilter,
    TaskState, TaskStatus, Window, report,
};
use crate::runtime::Executor;

/// How long a cancel waits for a running task to stop before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

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
    /// No such task, or another user's: the two answer alike, so ids of others' tasks
    /// reveal nothing.
    #[error("task not found")]
    NotFound,
    #[error(
        "the task this Idempotency-Key created has been deleted by retention; send a new key to submit again"
    )]
    KeyReused,
    #[error("the task is already {0}")]
    Finished(&'static str),
    #[error("the queue is full ({0} tasks); retry later")]
    QueueFull(usize),
    /// A quota that refills; `retry_after` seconds when a time applies.
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        retry_after: Option<u64>,
    },
    #[error("{message}")]
    PriorityNotAllowed {
        message: String,
        retry_after: Option<u64>,
    },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The shared queue (Redis) cannot be reached: nothing was accepted.
    #[error("{message}")]
    QueueUnavailable {
        message: String,
        retry_after: Duration,
    },
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> Self {
        let code = match e {
            TaskError::QuotaExceeded {
                message,
                retry_after,
            } => return refusal(Code::QuotaExceeded, message, retry_after),
            TaskError::PriorityNotAllowed {
                message,
                retry_after,
            } => return refusal(Code::PriorityNotAllowed, message, retry_after),
            TaskError::QueueUnavailable {
                message,
                retry_after,
            } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                return refusal(Code::DependencyUnavailable, message, Some(secs));
            }
            TaskError::Agent(e) => return e.into(),
            TaskError::Journal(e) => return ApiError::internal(&e),
            TaskError::Invalid(_) => Code::InvalidRequest,
            TaskError::InvalidBudget(_) => Code::InvalidBudget,
            TaskError::InvalidTimeout(_) => Code::InvalidTimeout,
            TaskError::InvalidPriority(_) => Code::InvalidPriority,
            TaskError::NoEligibleAgent(_) => Code::NoEligibleAgent,
            TaskError::AgentNotFound => Code::AgentNotFound,
            TaskError::AgentNotReady(_) => Code::AgentNotReady,
            TaskError::NotFound => Code::TaskNotFound,
            TaskError::KeyReused => Code::IdempotencyKeyReused,
            TaskError::Finished(_) => Code::TaskFinished,
            TaskError::QueueFull(_) => Code::QueueFull,
            TaskError::ShuttingDown => Code::ShuttingDown,
        };
        ApiError::new(code, e.to_string())
    }
}

/// A quota's refusal, with `Retry-After` when it refills at a known time.
fn refusal(code: Code, message: String, retry_after: Option<u64>) -> ApiError {
    let error = ApiError::new(code, message);
    match retry_after {
        Some(secs) => error.with_retry_after(secs),
        None => error,
    }
}

impl From<QueueError> for TaskError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full(n) => TaskError::QueueFull(n),
            QueueError::Closed => TaskError::ShuttingDown,
            e @ QueueError::Unavailable { retry_after, .. } => TaskError::QueueUnavailable {
                message: e.to_string(),
                retry_after,
            },
        }
    }
}

/// The orchestrator. Cheap to clone.
#[derive(Clone)]
pub struct Orchestrator {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) journal: Arc<dyn TaskJournal>,
    pub(super) queue: Arc<dyn TaskQueue>,
    pub(super) marketplace: Marketplace,
    pub(super) executor: Arc<Executor>,
    pub(super) fanout: Arc<dyn Fanout>,
    pub(super) settings: TaskSettings,
    pub(super) limits: LimitSettings,
    pub(super) quotas: QuotaSettings,
    /// Today's use of the daily quotas, per user.
    pub(super) daily: DailyCounters,
    /// Submits per user between their quota check and their push onto the queue: counted
    /// with the user's queued tasks. A std Mutex: held for a map operation.
    pub(super) pending: Mutex<HashMap<Uuid, usize>>,
    pub(super) weights: Weights,
    /// Cleared at shutdown: submits answer 503 and workers stop taking tasks.
    pub(super) accepting: AtomicBool,
    /// Ids of tasks as they reach a terminal state, for submitters waiting on a result.
    finished: broadcast::Sender<Uuid>,
    /// Cancel handles of the runs in progress. A std Mutex: held for a map operation only.
    pub(super) running: Mutex<HashMap<Uuid, CancellationToken>>,
    /// Live per-user run statistics (in memory: they restart empty).
    pub(super) recent: RecentRuns,
    pub(super) metrics: TaskMetrics,
}

/// The engine's metric series, registered once: a labelled lookup in the recorder on every
/// submit and run costs more than the increment.
pub(super) struct TaskMetrics {
    /// By [`Priority`] discriminant.
    submitted: [metrics::Counter; 4],
    /// By [`TaskStatus`] discriminant ([`TaskStatus::ALL`] order).
    finished: [metrics::Counter; 6],
    pub(super) duration: metrics::Histogram,
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

    pub(super) fn finished(&self, status: TaskStatus) -> &metrics::Counter {
        &self.finished[status as usize]
    }
}

impl Orchestrator {
    pub fn new(
        journal: Arc<dyn TaskJournal>,
        queue: Arc<dyn TaskQueue>,
        marketplace: Marketplace,
        executor: Arc<Executor>,
        fanout: Arc<dyn Fanout>,
        config: &Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                journal,
                queue,
                marketplace,
                executor,
                fanout,
                settings: config.tasks.clone(),
                limits: config.limits,
                quotas: config.quotas,
                daily: DailyCounters::default(),
                pending: Mutex::default(),
                weights: Weights::from(config.auction),
                accepting: AtomicBool::new(true),
                finished: broadcast::channel(1024).0,
                running: Mutex::default(),
                recent: RecentRuns::default(),
                metrics: TaskMetrics::register(),
            }),
        }
    }

    /// Parses, checks the submitter's quotas, auctions, journals and queues a task. Returns it
    /// once it is durable.
    pub async fn submit(
        &self,
        submitter: Submitter,
        submission: Submission,
        idempotency_key: Option<String>,
    ) -> Result<Task, TaskError> {
        let owner = submitter.id;
        if !self.inner.accepting.load(Ordering::Relaxed) {
            return Err(TaskError::ShuttingDown);
        }
        let key = idempotency_key.map(IdempotencyKey::parse).transpose()?;
        // A retry of a submit that went through gets the first task, whatever changed since
        // (the agent's price, the queue's length).
        if let Some(key) = &key
            && let Some(id) = self
                .inner
                .journal
                .claimed(owner, key.as_str().into())
                .await?
        {
            return self.claimed_task(owner, id).await;
        }
        let request = submission.parse(&self.inner.settings, OffsetDateTime::now_utc())?;
        self.inner.queue.check_capacity()?;
        let admission = self.admit(submitter, &request)?;
        let task = self.auction(owner, request).await?;
        // From here the work runs to its end even if the client hangs up: a task journaled
        // but left out of the queue would show as queued until a restart.
        let this = self.clone();
        Detached::new(async move { this.journal_and_queue(task, key, admission).await }).await
    }

    /// The task a request becomes: the auction's bids, its winner, the request's fields.
    async fn auction(&self, owner: Uuid, request: Request) -> Result<Task, TaskError> {
        let marketplace = &self.inner.marketplace;
        let catalog = marketplace.catalog();
        if let Some(id) = request.agent_id
            && catalog.get(id).is_none()
        {
            // Not in the catalog: unknown, or still building (or rejected).
            return Err(match marketplace.get(id).await {
                Ok(agent) => TaskError::AgentNotReady(agent.status.as_str()),
                Err(_) => TaskError::AgentNotFound,
            });
        }
        let bids = catalog.auction(
            &request.capabilities,
            request.budget,
            self.inner.weights,
            request.agent_id,
            &[],
        )?;
        // Agents whose input schema refuses the input do not bid.
        let bids = marketplace.bids_accepting(bids, request.input.as_ref())?;
        let winner = &bids[0];
        let state = TaskState {
            agent_id: winner.agent_id,
            agent_name: winner.agent_name.clone(),
            price: winner.price,
            ..TaskState::default()
        };
        Ok(Task {
            query: request.query.into(),
            input: request.input.map(Arc::new),
            capabilities: request.capabilities.into(),
            priority: request.priority,
            budget: request.budget,
            timeout_secs: request.timeout_secs,
            constraints: request.constraints.map(Arc::new),
            bids: bids.into(),
            pinned: request.agent_id.is_some(),
            deadline: request.deadline,
            state,
            ..Task::blank(owner)
        })
    }

    /// Journals the task, announces it and queues it once it is durable.
    async fn journal_and_queue(
        &self,
        task: Task,
        key: Option<IdempotencyKey>,
        admission: Admission,
    ) -> Result<Task, TaskError> {
        let owner = task.owner_id;
        let key = key.map(IdempotencyKey::into_string);
        let mut admission = admission;
        let task = match self.inner.journal.submit(task, key).await? {
            Submitted::New(task) => {
                admission.commit();
                *task
            }
            // A concurrent submit with the same key won the race: answer with its task.
            Submitted::Existing(id) => return self.claimed_task(owner, id).await,
        };
        self.inner.metrics.submitted[task.priority as usize].increment(1);
        // Announced before it is queued, so `queued` always reaches the owner before `running`.
        self.announce(&task);
        // Durable: from here the task survives a crash even if queueing fails (recovery
        // re-queues it). Forced because a journaled task must not be dropped; concurrent
        // submits may overshoot the capacity checked before by a few tasks.
        let pushed = self.inner.queue.push(queued(&task), true).await;
        // Counted as pending until now, when the queue counts it.
        drop(admission);
        match pushed {
            Ok(()) => {}
            Err(e @ QueueError::Unavailable { .. }) => return Err(self.unqueued(&task, e).await),
            Err(e) => {
                tracing::warn!(task_id = %task.id, error = %e, "task journaled but not queued; it runs after restart")
            }
        }
        self.queue_changed();
        Ok(task)
    }

    /// A journaled task the shared queue did not take: the submit is refused, so the task
    /// ends (failed, `queue_unavailable`) rather than run behind its submitter's back.
    async fn unqueued(&self, task: &Task, e: QueueError) -> TaskError {
        tracing::warn!(task_id = %task.id, error = %e, "the queue did not take a journaled task; refusing the submit");
        let reason = format!("not accepted: {e}");
        let change = ended(TaskStatus::Failed, FailureCode::QueueUnavailable, &reason);
        if let Err(end) = self.end(task.id, TaskStatus::Queued, change).await {
            tracing::error!(task_id = %task.id, error = %end, "could not end the unqueued task");
        }
        e.into()
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
            matches!(self.inner.journal.task(id).await, Ok(Some(t)) if t.state.status.is_terminal())
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
        // A few rounds: a task can start running, or go back to the queue for failover,
        // between reading it and canceling it.
        for _ in 0..3 {
            let task = self.task(owner, id).await?;
            let canceled = match task.state.status {
                TaskStatus::Queued => self.cancel_queued(&task).await?,
                TaskStatus::Running => self.cancel_running(owner, id).await?,
                status => return Err(TaskError::Finished(status.as_str())),
            };
            if let Some(task) = canceled {
                return Ok(task);
            }
        }
        self.task(owner, id).await
    }

    /// Cancels a queued task; `None` if it left the queue meanwhile.
    async fn cancel_queued(&self, task: &Task) -> Result<Option<Task>, TaskError> {
        let reason = "canceled by its owner before it ran";
        let change = ended(TaskStatus::Canceled, FailureCode::Canceled, reason);
        self.end(task.id, TaskStatus::Queued, change).await
    }

    /// Stops a running task and waits for its worker to mark it canceled; `None` if it did not
    /// end in time (or was not running any more). The run may be on another node (one this
    /// node began before a restart has no handle here): it is told over the queue.
    async fn cancel_running(&self, owner: Uuid, id: Uuid) -> Result<Option<Task>, TaskError> {
        let token = self.running_runs().get(&id).cloned();
        let events = self.finished_events();
        let here = token.map(|t| t.cancel()).is_some();
        let elsewhere = self.inner.queue.stop_run(id);
        if !here && !elsewhere {
            return Ok(None);
        }
        self.wait_finished(events, owner, id, CANCEL_WAIT).await
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

    /// A task, if `owner` owns it; another user's task is [`TaskError::NotFound`] too.
    pub async fn task(&self, owner: Uuid, id: Uuid) -> Result<Task, TaskError> {
        match self.inner.journal.task(id).await? {
            Some(task) if task.owner_id == owner => Ok(task),
            Some(_) | None => Err(TaskError::NotFound),
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
    ) -> Result<TaskPage, TaskError> {
        Ok(self.inner.journal.list(owner, filter, page).await?)
    }

    /// Task counts per status of `owner`, or of everyone with `None`: the one source of the
    /// stats route and the `zerostate_tasks` gauge.
    pub async fn counts(&self, owner: Option<Uuid>) -> Result<TaskCounts, TaskError> {
        Ok(self.inner.journal.counts(owner).await?)
    }

    /// Analytics of `owner`'s tasks (everyone's with `None`) over `window`, up to now.
    pub async fn analytics(
        &self,
        owner: Option<Uuid>,
        window: Window,
    ) -> Result<Report, TaskError> {
        let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
        let (from, to) = window.span(now);
        let cells = self
            .inner
            .journal
            .analytics(owner, window.cell_width(), from, to)
            .await?;
        let scope = if owner.is_some() { "me" } else { "all" };
        Ok(report(window, scope, now, &cells))
    }

    /// Queued tasks per priority.
    pub fn queue_depth(&self) -> QueueDepth {
        self.inner.queue.depth()
    }

    /// The `queue_update` message: the queue's depth per priority and the runs in progress.
    pub fn queue_event(&self) -> Event {
        let running = self.inner.running.lock().expect("running map").len();
        events::queue_update(self.queue_depth(), running)
    }

    /// Tells the watchers of the `queue` topic (coalesced by the fan-out).
    pub(super) fn queue_changed(&self) {
        let this = self.clone();
        self.inner
            .fanout
            .touch(Topic::Queue, Box::new(move || Some(this.queue_event())));
    }

    /// Starts `n` workers; they run until [`Orchestrator::shutdown`].
    pub fn spawn_workers(&self, n: usize) -> JoinSet<()> {
        let mut set = JoinSet::new();
        for worker in 0..n {
            let this = self.clone();
            set.spawn(async move {
                while let Some(lease) = this.inner.queue.pop().await {
                    this.queue_changed();
                    let released = Released(&*this.inner.queue, lease.task.owner);
                    this.run_leased(lease).await;
                    drop(released);
                    this.queue_changed();
                }
                tracing::debug!(worker, "worker stopped");
            });
        }
        set
    }

    /// Refuses new submissions and stops workers from starting queued tasks. Queued tasks stay
    /// journaled and run after the next start.
    pub fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::Relaxed);
        self.inner.queue.close();
    }

    /// Lets running tasks finish within `grace`, then interrupts the rest (they go back to
    /// `queued` and run after the next start), and makes the journal durable. Calls
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
        if let Err(e) = self.inner.journal.close().await {
            tracing::error!(error = %e, "final checkpoint failed; the next start replays the WAL");
        }
    }

    /// Completions in the last minute and duration percentiles of `owner`'s recent runs.
    pub fn recent_stats(&self, owner: Uuid) -> RecentStats {
        self.inner.recent.stats(owner, std::time::Instant::now())
    }

    /// Cancel handles of the runs in progress, by task.
    pub(super) fn running_runs(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Uuid, CancellationToken>> {
        self.inner.running.lock().expect("running map")
    }

    /// Tells the task's owner (and admins watching) of its new state.
    pub(super) fn announce(&self, task: &Task) {
        self.inner
            .fanout
            .send_task_update(task.owner_id, &|| events::task_update(task));
    }

    /// Tells waiters and the owner that a task reached a terminal state (once it is durable).
    pub(super) fn announce_finished(&self, task: &Task) {
        let _ = self.inner.finished.send(task.id);
        self.queue_changed();
        self.announce(task);
    }

    /// Ends a task that is in status `from` with `change` (taking it out of the queue if it
    /// was queued) and announces it once durable. `None` if the task was not in `from`.
    pub(super) async fn end(
        &self,
        id: Uuid,
        from: TaskStatus,
        change: TaskChange,
    ) -> Result<Option<Task>, TaskError> {
        let Some((task, durable)) = self.inner.journal.transition(id, from, None, change)? else {
            return Ok(None);
        };
        match from {
            TaskStatus::Queued => drop(self.inner.queue.remove(&queued(&task))),
            _ => drop(self.running_runs().remove(&id)),
        }
        // Told even if the caller goes away meanwhile: waiters and the owner must hear of it.
        let this = self.clone();
        let announced = Detached::new(async move {
            durable.wait().await?;
            this.announce_finished(&task);
            Ok::<_, TaskError>(task)
        });
        Ok(Some(announced.await?))
    }
}

/// Tells the queue a popped task's run ended, whatever way the worker leaves it.
struct Released<'a>(&'a dyn TaskQueue, Uuid);

impl Drop for Released<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

pub(super) fn queued(task: &Task) -> QueuedTask {
    QueuedTask {
        task_id: task.id,
        owner: task.owner_id,
        priority: task.priority,
        seq: task.seq,
    }
}
