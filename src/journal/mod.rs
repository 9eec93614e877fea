//! The task journal: where tasks live from submit to retention. Every change is journaled
//! before anyone is told of it, and listings, counters and analytics read what the journal
//! made durable.
//!
//! [`TaskJournal`] is the seam: the orchestrator speaks only to it. The embedded
//! implementation is the [`Ledger`]: a write-ahead log ([`wal`]) under a live in-memory state,
//! applied to the store (redb) in batches. Compatibility mode keeps it: the primary's journal
//! stays the truth, and Redis only orders and leases (`cluster::RedisQueue`).

mod ledger;
pub mod wal;

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use uuid::Uuid;

pub use ledger::{APPLY_DELAY, CHECKPOINT_EVERY, Ledger};

use crate::records::{
    AgentOutcome, DailyUsage, Page, PlacedCell, Task, TaskChange, TaskCounts, TaskFilter,
    TaskStatus,
};
use crate::store::StoreError;
use wal::WalError;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("undecodable WAL record: {0}")]
    BadRecord(String),
}

/// What [`TaskJournal::submit`] did.
#[derive(Debug)]
pub enum Submitted {
    /// Journaled and durable.
    New(Box<Task>),
    /// The owner used this idempotency key for this task within the last 24 h.
    Existing(Uuid),
}

/// Resolves once a change is durable.
pub struct Durable(BoxFuture<'static, Result<(), JournalError>>);

impl Durable {
    pub fn new(wait: BoxFuture<'static, Result<(), JournalError>>) -> Self {
        Self(wait)
    }

    pub async fn wait(self) -> Result<(), JournalError> {
        self.0.await
    }
}

/// A page of one owner's tasks, newest first.
#[derive(Debug)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Every task of the owner that matches the filter.
    pub total: u64,
    /// The submit sequence to continue below (`None` on the last page).
    pub next: Option<u64>,
}

/// What retention may delete.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Most finished tasks kept.
    pub max_finished: u64,
    /// Finished tasks that ended before this go.
    pub cutoff: OffsetDateTime,
}

/// Where tasks live. Every change is a compare-and-set on the task's status, so a task
/// reaches a terminal state once and a late result of a stale run is ignored.
pub trait TaskJournal: Send + Sync {
    /// Journals a new task (assigning its submit sequence and version 1) and resolves once it
    /// is durable. With an idempotency key the owner used within 24 h, nothing is written and
    /// the first task's id comes back.
    fn submit(
        &self,
        task: Task,
        key: Option<String>,
    ) -> BoxFuture<'_, Result<Submitted, JournalError>>;

    /// The task `owner` created with `key` in the last 24 h, if any.
    fn claimed(
        &self,
        owner: Uuid,
        key: String,
    ) -> BoxFuture<'_, Result<Option<Uuid>, JournalError>>;

    /// Marks a queued task running (a worker took it), without waiting for durability: a
    /// crash re-queues running tasks anyway. `None` if the task is not queued.
    fn start(&self, id: Uuid) -> Result<Option<Task>, JournalError>;

    /// Applies `change` if the task is in status `from`, journals it (with the run's
    /// `outcome` for the agent's statistics), and returns the new task with a handle that
    /// resolves once it is durable. `None` if the task is not in `from`: someone else moved
    /// it, and nothing is written.
    fn transition(
        &self,
        id: Uuid,
        from: TaskStatus,
        outcome: Option<AgentOutcome>,
        change: TaskChange,
    ) -> Result<Option<(Task, Durable)>, JournalError>;

    /// The task's latest state if it is live here, durable or not: for the workers that move
    /// it on.
    fn live_task(&self, id: Uuid) -> Option<Task>;

    /// The task as it is durably: nothing a reader sees can be undone by a crash.
    fn task(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Task>, JournalError>>;

    /// A page of `owner`'s tasks matching `filter`, agreeing with every change made before
    /// the call.
    fn list(
        &self,
        owner: Uuid,
        filter: TaskFilter,
        page: Page,
    ) -> BoxFuture<'_, Result<TaskPage, JournalError>>;

    /// Task counts per status of one owner, or of everyone with `None`, agreeing with every
    /// change made before the call.
    fn counts(&self, owner: Option<Uuid>) -> BoxFuture<'_, Result<TaskCounts, JournalError>>;

    /// The analytics cells of one owner (everyone with `None`) of `width` seconds starting in
    /// `from..to`: `(cell start, agent, cell)`.
    fn analytics(
        &self,
        owner: Option<Uuid>,
        width: u32,
        from: u64,
        to: u64,
    ) -> BoxFuture<'_, Result<Vec<PlacedCell>, JournalError>>;

    /// Each owner's use of their daily quotas from the tasks that finished at or after
    /// `midnight`, agreeing with every change made before the call: what start-up rebuilds
    /// the daily counters from (with the unfinished tasks it loads).
    fn usage_since(
        &self,
        midnight: OffsetDateTime,
    ) -> BoxFuture<'_, Result<HashMap<Uuid, DailyUsage>, JournalError>>;

    /// Deletes finished tasks past `retention` (never one a recovery could bring back),
    /// expired idempotency keys and analytics cells; returns how many tasks went.
    fn prune(&self, retention: Retention) -> BoxFuture<'_, Result<usize, JournalError>>;

    /// Makes everything durable and stops background work.
    fn close(&self) -> BoxFuture<'_, Result<(), JournalError>>;
}
