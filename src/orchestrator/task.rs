//! The task record, its status and priority, and per-status counts.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::auction::Bid;

/// Scheduling priority; the discriminant indexes the queue's lanes (higher runs first).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low = 0,
    /// `medium` is the seed API's name for it.
    #[default]
    #[serde(alias = "medium")]
    Normal = 1,
    High = 2,
    Critical = 3,
}

impl Priority {
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
    /// Canceled by its owner before it finished.
    Canceled,
    /// Its last run used up its timeout, or its deadline passed.
    #[serde(rename = "timed_out")]
    TimedOut,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Canceled,
        TaskStatus::TimedOut,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Canceled
                | TaskStatus::TimedOut
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Canceled => "canceled",
            TaskStatus::TimedOut => "timed_out",
        }
    }
}

/// Why a task (or one attempt) did not complete: a stable code beside the error text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The run used up its timeout, or the deadline passed while it ran.
    Timeout,
    /// The guest grew its memory past the limit.
    MemoryLimit,
    /// The guest wrote more than the stdout limit (the first bytes are kept).
    OutputLimit,
    /// The guest's call stack overflowed (unbounded recursion).
    StackOverflow,
    /// Any other trap (`unreachable`, an out-of-bounds access, a failed instantiation).
    Trap,
    /// `proc_exit` with a non-zero code (see `exit_code`).
    ExitCode,
    /// Canceled by its owner.
    Canceled,
    /// The deadline passed before the task could run.
    DeadlinePassed,
    /// The agent was deleted, or its module could not be compiled.
    AgentUnavailable,
    /// The server stopped while it ran too many times.
    Interrupted,
    /// A fault of the server; see its log.
    Internal,
    /// The run used up its fuel (only where the server meters fuel).
    FuelExhausted,
    /// The input is larger than the agent accepts (its `limits.stdin_bytes`).
    InputLimit,
}

impl FailureCode {
    /// In the order of their discriminants, which the binary encoding stores: append only.
    pub const ALL: [FailureCode; 13] = [
        FailureCode::Timeout,
        FailureCode::MemoryLimit,
        FailureCode::OutputLimit,
        FailureCode::StackOverflow,
        FailureCode::Trap,
        FailureCode::ExitCode,
        FailureCode::Canceled,
        FailureCode::DeadlinePassed,
        FailureCode::AgentUnavailable,
        FailureCode::Interrupted,
        FailureCode::Internal,
        FailureCode::FuelExhausted,
        FailureCode::InputLimit,
    ];
}

/// A task: stored as JSON in `tasks`; also the API shape.
///
/// The submission's fields never change after submit and may be large (`input` up to 4 MiB):
/// they are shared (`Arc`), so the copies the ledger, workers and announcements take are cheap.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub status: TaskStatus,
    #[schema(value_type = String)]
    pub query: Arc<str>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Arc<Value>>,
    #[schema(value_type = Vec<String>)]
    pub capabilities: Arc<[String]>,
    pub priority: Priority,
    pub budget: f64,
    pub timeout_secs: u64,
    /// Accepted and kept for clients of the seed API; not enforced yet.
    #[schema(value_type = Option<Object>)]
    pub constraints: Option<Arc<Value>>,
    /// The auction winner that runs the task.
    pub agent_id: Uuid,
    pub agent_name: String,
    /// The winner's price, charged against the budget.
    pub price: f64,
    /// The submit's auction: the best bids (at most 10), best first, with per-criterion
    /// scores; the first is the winner.
    #[schema(value_type = Vec<Bid>)]
    pub bids: Arc<[Bid]>,
    /// The auction re-run after each failed attempt among the agents not tried yet, in order;
    /// the first bid of each is the agent that ran next.
    #[serde(default)]
    pub failover_bids: Vec<Vec<Bid>>,
    /// stdout parsed as JSON, or as text when it is not JSON.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<String>,
    /// Why it did not complete, when it failed, timed out or was canceled.
    #[serde(default)]
    pub error_code: Option<FailureCode>,
    /// The last bytes the agent wrote to stderr, if any.
    pub stderr: Option<String>,
    pub exit_code: Option<i32>,
    /// Time by which the task must be done, if the caller set one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// The caller named the agent (`agent_id` on submit): no failover to other agents.
    #[serde(default)]
    pub pinned: bool,
    /// Finished runs, oldest first: one per agent tried (failover re-auctions after a failure).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Executions started, including runs cut short by a server stop.
    #[serde(default)]
    pub starts: u32,
    /// Submit order: FIFO within a priority.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    pub duration_ms: Option<u64>,
    /// Increments with every change; replaying the WAL applies a change only over an older
    /// version.
    #[serde(default)]
    pub version: u64,
}

impl Task {
    /// A queued, unsubmitted task of `owner` with every optional field empty: the base that
    /// submit, tests and benchmarks fill in.
    pub fn blank(owner: Uuid) -> Self {
        Self {
            // Time-ordered (v7), so the tasks table grows at its end instead of rewriting
            // random pages; 74 random bits keep ids unguessable.
            id: Uuid::now_v7(),
            owner_id: owner,
            status: TaskStatus::Queued,
            query: "q".into(),
            input: None,
            capabilities: Arc::new([]),
            priority: Priority::Normal,
            budget: 1.0,
            timeout_secs: 30,
            constraints: None,
            agent_id: Uuid::nil(),
            agent_name: String::new(),
            price: 0.0,
            bids: Arc::new([]),
            failover_bids: Vec::new(),
            result: None,
            error: None,
            error_code: None,
            stderr: None,
            exit_code: None,
            pinned: false,
            deadline: None,
            attempts: Vec::new(),
            starts: 0,
            seq: 0,
            created_at: OffsetDateTime::now_utc(),
            started_at: None,
            completed_at: None,
            duration_ms: None,
            version: 0,
        }
    }
}

/// The part of a [`Task`] that changes after submit: what the task WAL journals for every
/// change but the submit itself, so a change record never repeats the (possibly large)
/// submission. Every `Task` field is either here or in the submission (see the test
/// `every_field_is_part_of_the_submission_or_of_the_state`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskState {
    pub id: Uuid,
    pub version: u64,
    pub status: TaskStatus,
    pub agent_id: Uuid,
    pub agent_name: String,
    pub price: f64,
    pub failover_bids: Vec<Vec<Bid>>,
    pub result: Option<Value>,
    pub error: Option<String>,
    #[serde(default)]
    pub error_code: Option<FailureCode>,
    pub stderr: Option<String>,
    pub exit_code: Option<i32>,
    pub attempts: Vec<Attempt>,
    pub starts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    pub duration_ms: Option<u64>,
}

impl TaskState {
    pub fn of(task: &Task) -> Self {
        Self {
            id: task.id,
            version: task.version,
            status: task.status,
            agent_id: task.agent_id,
            agent_name: task.agent_name.clone(),
            price: task.price,
            failover_bids: task.failover_bids.clone(),
            result: task.result.clone(),
            error: task.error.clone(),
            error_code: task.error_code,
            stderr: task.stderr.clone(),
            exit_code: task.exit_code,
            attempts: task.attempts.clone(),
            starts: task.starts,
            started_at: task.started_at,
            completed_at: task.completed_at,
            duration_ms: task.duration_ms,
        }
    }

    /// Sets `task`'s changing fields to this state.
    pub fn apply(self, task: &mut Task) {
        let Self {
            id: _,
            version,
            status,
            agent_id,
            agent_name,
            price,
            failover_bids,
            result,
            error,
            error_code,
            stderr,
            exit_code,
            attempts,
            starts,
            started_at,
            completed_at,
            duration_ms,
        } = self;
        task.version = version;
        task.status = status;
        task.agent_id = agent_id;
        task.agent_name = agent_name;
        task.price = price;
        task.failover_bids = failover_bids;
        task.result = result;
        task.error = error;
        task.error_code = error_code;
        task.stderr = stderr;
        task.exit_code = exit_code;
        task.attempts = attempts;
        task.starts = starts;
        task.started_at = started_at;
        task.completed_at = completed_at;
        task.duration_ms = duration_ms;
    }
}

/// One run of one agent for a task.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub agent_id: Uuid,
    pub agent_name: String,
    /// `completed`, `failed` or `timed_out`.
    pub outcome: String,
    pub error: Option<String>,
    #[serde(default)]
    pub error_code: Option<FailureCode>,
    pub duration_ms: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// Tasks per status for one user, or for the whole server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct TaskCounts {
    pub queued: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub canceled: u64,
    pub timed_out: u64,
}

impl TaskCounts {
    pub fn total(&self) -> u64 {
        self.queued + self.running + self.completed + self.failed + self.canceled + self.timed_out
    }

    pub fn get(&self, status: TaskStatus) -> u64 {
        match status {
            TaskStatus::Queued => self.queued,
            TaskStatus::Running => self.running,
            TaskStatus::Completed => self.completed,
            TaskStatus::Failed => self.failed,
            TaskStatus::Canceled => self.canceled,
            TaskStatus::TimedOut => self.timed_out,
        }
    }

    fn slot(&mut self, status: TaskStatus) -> &mut u64 {
        match status {
            TaskStatus::Queued => &mut self.queued,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Completed => &mut self.completed,
            TaskStatus::Failed => &mut self.failed,
            TaskStatus::Canceled => &mut self.canceled,
            TaskStatus::TimedOut => &mut self.timed_out,
        }
    }

    /// Forgets one task in `status` (it was deleted).
    pub fn remove(&mut self, status: TaskStatus) {
        let slot = self.slot(status);
        *slot = slot.saturating_sub(1);
    }

    /// Moves one task from `from` (if any) to `to`.
    pub fn shift(&mut self, from: Option<TaskStatus>, to: TaskStatus) {
        if let Some(from) = from {
            let slot = self.slot(from);
            *slot = slot.saturating_sub(1);
        }
        *self.slot(to) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields fixed at submit; a change record leaves them out.
    const SUBMISSION: &[&str] = &[
        "id",
        "owner_id",
        "query",
        "input",
        "capabilities",
        "priority",
        "budget",
        "timeout_secs",
        "constraints",
        "bids",
        "deadline",
        "pinned",
        "seq",
        "created_at",
    ];

    fn keys(value: serde_json::Value) -> std::collections::BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn every_field_is_part_of_the_submission_or_of_the_state() {
        // A field added to `Task` but to neither list would be lost by every change record.
        let task = Task::blank(Uuid::new_v4());
        let mut covered = keys(serde_json::to_value(TaskState::of(&task)).unwrap());
        covered.extend(SUBMISSION.iter().map(|k| k.to_string()));
        assert_eq!(covered, keys(serde_json::to_value(&task).unwrap()));
    }

    #[test]
    fn a_state_carries_every_change_over_to_another_copy() {
        let mut changed = Task::blank(Uuid::new_v4());
        let mut copy = changed.clone();
        changed.version = 4;
        changed.status = TaskStatus::Failed;
        changed.agent_name = "B".into();
        changed.result = Some(serde_json::json!({"n": 1}));
        changed.error = Some("boom".into());
        changed.exit_code = Some(3);
        changed.starts = 2;
        changed.duration_ms = Some(7);
        changed.completed_at = Some(OffsetDateTime::now_utc());
        TaskState::of(&changed).apply(&mut copy);
        assert_eq!(
            serde_json::to_value(&copy).unwrap(),
            serde_json::to_value(&changed).unwrap()
        );
    }
}
