//! The task record, its status and priority, the changes it goes through after submit,
//! per-status counts and listing filters.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::bid::Bid;

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

    /// The one parse of a priority's name, as submits and listings accept it: any case,
    /// surrounding blanks ignored, `medium` for `normal`.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        let found = Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name));
        found.or_else(|| {
            name.eq_ignore_ascii_case("medium")
                .then_some(Priority::Normal)
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

/// Tasks waiting in the queue, per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueDepth {
    pub low: usize,
    pub normal: usize,
    pub high: usize,
    pub critical: usize,
}

impl QueueDepth {
    /// Every queued task.
    pub fn total(&self) -> usize {
        self.low + self.normal + self.high + self.critical
    }

    /// The tasks queued at `priority`.
    pub fn of(&self, priority: Priority) -> usize {
        match priority {
            Priority::Low => self.low,
            Priority::Normal => self.normal,
            Priority::High => self.high,
            Priority::Critical => self.critical,
        }
    }
}

impl From<[usize; 4]> for QueueDepth {
    /// From the queue's lanes, indexed by [`Priority`] discriminant.
    fn from(depth: [usize; 4]) -> Self {
        Self {
            low: depth[Priority::Low as usize],
            normal: depth[Priority::Normal as usize],
            high: depth[Priority::High as usize],
            critical: depth[Priority::Critical as usize],
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
    /// Journaled, but the shared queue (Redis) did not take it: the submit was refused.
    QueueUnavailable,
}

impl FailureCode {
    /// In the order of their discriminants, which the binary encoding stores: append only.
    pub const ALL: [FailureCode; 14] = [
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
        FailureCode::QueueUnavailable,
    ];
}

/// A task: the API shape, stored in the binary encoding of [`super::codec`].
///
/// What the submitter asked for never changes after submit and may be large (`input` up to
/// 4 MiB): it is shared (`Arc`), so the copies the journal, workers and announcements take are
/// cheap. Everything that changes afterwards is in [`TaskState`], the part a change record
/// journals; in JSON its fields sit beside the others.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    pub id: Uuid,
    pub owner_id: Uuid,
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
    /// The submit's auction: the best bids (at most 10), best first, with per-criterion
    /// scores; the first is the winner.
    #[schema(value_type = Vec<Bid>)]
    pub bids: Arc<[Bid]>,
    /// Time by which the task must be done, if the caller set one.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// The caller named the agent (`agent_id` on submit): no failover to other agents.
    #[serde(default)]
    pub pinned: bool,
    /// Submit order: FIFO within a priority.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(flatten)]
    pub state: TaskState,
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
            query: "q".into(),
            input: None,
            capabilities: Arc::new([]),
            priority: Priority::Normal,
            budget: 1.0,
            timeout_secs: 30,
            constraints: None,
            bids: Arc::new([]),
            deadline: None,
            pinned: false,
            seq: 0,
            created_at: OffsetDateTime::now_utc(),
            state: TaskState::default(),
        }
    }
}

/// The part of a [`Task`] that changes after submit: what the task journal records for every
/// change but the submit itself, so a change record never repeats the (possibly large)
/// submission.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskState {
    /// Increments with every change; replaying the journal applies a change only over an
    /// older version.
    #[serde(default)]
    pub version: u64,
    pub status: TaskStatus,
    /// The auction winner that runs the task.
    pub agent_id: Uuid,
    pub agent_name: String,
    /// The winner's price, charged against the budget.
    pub price: f64,
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
    /// Finished runs, oldest first: one per agent tried (failover re-auctions after a failure).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Executions started, including runs cut short by a server stop.
    #[serde(default)]
    pub starts: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    pub duration_ms: Option<u64>,
}

impl Default for TaskState {
    /// Queued, with no agent chosen yet.
    fn default() -> Self {
        Self {
            version: 0,
            status: TaskStatus::Queued,
            agent_id: Uuid::nil(),
            agent_name: String::new(),
            price: 0.0,
            failover_bids: Vec::new(),
            result: None,
            error: None,
            error_code: None,
            stderr: None,
            exit_code: None,
            attempts: Vec::new(),
            starts: 0,
            started_at: None,
            completed_at: None,
            duration_ms: None,
        }
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

    /// Moves one task from `from` (`None`: new) to `to` (`None`: deleted).
    pub fn shift(&mut self, from: Option<TaskStatus>, to: Option<TaskStatus>) {
        if let Some(from) = from {
            let slot = self.slot(from);
            *slot = slot.saturating_sub(1);
        }
        if let Some(to) = to {
            *self.slot(to) += 1;
        }
    }
}

/// A change of a task after submit, as a value: what a worker, a cancel or recovery decided.
/// The journal applies it under its compare-and-set (see [`TaskChange::apply`]); a start
/// has a record of its own.
#[derive(Debug, Clone)]
pub enum TaskChange {
    /// Back to the queue: the server stopped while it ran.
    Requeued,
    /// Ends without running (again): canceled while queued, agent gone, deadline passed,
    /// interrupted too often, an internal fault; or canceled while running, after `ran_ms`.
    Ended {
        status: TaskStatus,
        code: FailureCode,
        error: String,
        ran_ms: Option<u64>,
    },
    /// The run failed and the next agent takes over: the failed attempt, and the failover
    /// auction's bids (never empty; the first is the agent that runs next).
    FailedOver { attempt: Attempt, bids: Vec<Bid> },
    /// The run ended the task: completed, failed or timed out.
    Finished(Box<Finished>),
}

/// How a run ended a task; see [`TaskChange::Finished`].
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: TaskStatus,
    pub attempt: Attempt,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub error_code: Option<FailureCode>,
    /// The tail of stderr; empty when the agent wrote none.
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
}

impl TaskChange {
    /// The task's state after this change, at `now`.
    pub fn apply(self, state: &mut TaskState, now: OffsetDateTime) {
        match self {
            TaskChange::Requeued => {
                state.status = TaskStatus::Queued;
                state.started_at = None;
            }
            TaskChange::Ended {
                status,
                code,
                error,
                ran_ms,
            } => {
                state.status = status;
                state.error = Some(error);
                state.error_code = Some(code);
                state.completed_at = Some(now);
                if ran_ms.is_some() {
                    state.duration_ms = ran_ms;
                }
            }
            TaskChange::FailedOver { attempt, bids } => {
                let next = &bids[0];
                state.status = TaskStatus::Queued;
                state.started_at = None;
                state.agent_id = next.agent_id;
                state.agent_name.clone_from(&next.agent_name);
                state.price = next.price;
                state.attempts.push(attempt);
                state.failover_bids.push(bids);
            }
            TaskChange::Finished(f) => {
                let Finished {
                    status,
                    attempt,
                    result,
                    error,
                    error_code,
                    stderr,
                    exit_code,
                    duration_ms,
                } = *f;
                state.status = status;
                state.attempts.push(attempt);
                state.stderr = (!stderr.is_empty()).then_some(stderr);
                state.duration_ms = Some(duration_ms);
                state.completed_at = Some(now);
                state.result = result;
                state.error = error;
                state.error_code = error_code;
                state.exit_code = exit_code;
            }
        }
    }
}

/// Which tasks a listing returns; `None` matches all.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub priority: Option<Priority>,
    pub agent_id: Option<Uuid>,
}

impl TaskFilter {
    pub fn matches(&self, task: &Task) -> bool {
        self.status.is_none_or(|s| s == task.state.status)
            && self.priority.is_none_or(|p| p == task.priority)
            && self.agent_id.is_none_or(|a| a == task.state.agent_id)
    }
}

/// Where a listing page starts and how long it is.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Only tasks submitted before this sequence number (the previous page's cursor).
    pub before: Option<u64>,
    pub offset: usize,
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: serde_json::Value) -> std::collections::BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn the_json_shape_is_flat() {
        // Clients see the state's fields beside the submission's, as before the split.
        let task = Task::blank(Uuid::new_v4());
        let json = keys(serde_json::to_value(&task).unwrap());
        for key in ["id", "status", "attempts", "version", "query", "seq"] {
            assert!(json.contains(key), "{key} missing from {json:?}");
        }
        assert!(!json.contains("state"));
        let back: Task = serde_json::from_value(serde_json::to_value(&task).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&task).unwrap()
        );
    }

    #[test]
    fn priorities_parse_in_one_place() {
        assert_eq!(Priority::parse(" HIGH "), Some(Priority::High));
        assert_eq!(Priority::parse("medium"), Some(Priority::Normal));
        assert_eq!(Priority::parse("normal"), Some(Priority::Normal));
        assert_eq!(Priority::parse("urgent"), None);
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
    }

    fn attempt(outcome: &str) -> Attempt {
        Attempt {
            agent_id: Uuid::now_v7(),
            agent_name: "A".into(),
            outcome: outcome.into(),
            error: None,
            error_code: None,
            duration_ms: 5,
            started_at: OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn a_failover_queues_the_next_bidder_and_keeps_the_attempt() {
        let mut state = TaskState {
            status: TaskStatus::Running,
            started_at: Some(OffsetDateTime::now_utc()),
            ..TaskState::default()
        };
        let next = Bid {
            agent_id: Uuid::now_v7(),
            agent_name: "B".into(),
            price: 0.2,
            scores: super::super::bid::BidScores {
                price: 1.0,
                quality: 1.0,
                speed: 1.0,
                reputation: 1.0,
            },
            total: 1.0,
        };
        let change = TaskChange::FailedOver {
            attempt: attempt("failed"),
            bids: vec![next.clone()],
        };
        change.apply(&mut state, OffsetDateTime::now_utc());
        assert_eq!(state.status, TaskStatus::Queued);
        assert_eq!((state.agent_id, state.price), (next.agent_id, 0.2));
        assert_eq!((state.attempts.len(), state.failover_bids.len()), (1, 1));
        assert!(state.started_at.is_none() && state.completed_at.is_none());
    }

    #[test]
    fn an_end_without_a_run_keeps_the_duration_unset() {
        let now = OffsetDateTime::now_utc();
        let mut state = TaskState::default();
        TaskChange::Ended {
            status: TaskStatus::Canceled,
            code: FailureCode::Canceled,
            error: "canceled".into(),
            ran_ms: None,
        }
        .apply(&mut state, now);
        assert_eq!(
            (state.status, state.error_code, state.completed_at),
            (TaskStatus::Canceled, Some(FailureCode::Canceled), Some(now))
        );
        assert_eq!(state.duration_ms, None);
    }
}
