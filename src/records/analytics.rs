//! Task analytics: finished tasks counted into time buckets, and the reports built from them.
//!
//! Every task that reaches a terminal state is counted once, in the same store transaction
//! that records its state (see `Store::apply_tasks`), into one [`Cell`] per (owner, bucket,
//! agent) and per (everyone, bucket, agent), at two widths: minutes (kept
//! [`MINUTE_CELLS_KEPT`]) and hours (kept [`HOUR_CELLS_KEPT`]). A report reads the cells of its
//! window, so its cost is bounded by the window's buckets and agents, never by the number of
//! tasks, and it outlives task retention.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::task::{Task, TaskStatus};

/// Upper bounds (inclusive, ms) of the duration histogram's buckets; a last bucket holds the
/// longer runs.
pub const DURATION_BOUNDS_MS: [u64; 15] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000,
];

/// Cell widths, in seconds.
pub const MINUTE: u32 = 60;
pub const HOUR: u32 = 3600;
/// How long cells are kept, in seconds, before retention deletes them.
pub const MINUTE_CELLS_KEPT: u64 = 2 * 86_400;
pub const HOUR_CELLS_KEPT: u64 = 90 * 86_400;

/// The finished tasks of one owner (or everyone), one agent and one time bucket. Stored as
/// JSON in `tables::ANALYTICS`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The agent's name when its last task here finished (it survives the agent).
    pub agent_name: String,
    pub completed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub canceled: u64,
    /// Sum of the prices of the completed tasks.
    pub spend: f64,
    /// Sum of the completed tasks' durations.
    pub duration_ms: u64,
    /// Completed tasks per [`DURATION_BOUNDS_MS`] bucket (one more than the bounds).
    pub durations: Vec<u64>,
}

impl Cell {
    /// Counts a task in a terminal state.
    pub fn count(&mut self, task: &Task) {
        self.agent_name.clone_from(&task.state.agent_name);
        match task.state.status {
            TaskStatus::Completed => {
                self.completed += 1;
                self.spend += task.state.price;
                let ms = task.state.duration_ms.unwrap_or(0);
                self.duration_ms += ms;
                self.durations.resize(DURATION_BOUNDS_MS.len() + 1, 0);
                self.durations[duration_bucket(ms)] += 1;
            }
            TaskStatus::Failed => self.failed += 1,
            TaskStatus::TimedOut => self.timed_out += 1,
            TaskStatus::Canceled => self.canceled += 1,
            TaskStatus::Queued | TaskStatus::Running => {}
        }
    }

    /// Adds another cell's counts to this one.
    pub fn merge(&mut self, other: &Cell) {
        if !other.agent_name.is_empty() {
            self.agent_name.clone_from(&other.agent_name);
        }
        self.completed += other.completed;
        self.failed += other.failed;
        self.timed_out += other.timed_out;
        self.canceled += other.canceled;
        self.spend += other.spend;
        self.duration_ms += other.duration_ms;
        self.durations.resize(DURATION_BOUNDS_MS.len() + 1, 0);
        for (mine, theirs) in self.durations.iter_mut().zip(&other.durations) {
            *mine += theirs;
        }
    }

    fn finished(&self) -> u64 {
        self.completed + self.failed + self.timed_out + self.canceled
    }

    /// Completed over runs that ended on their own (cancels excluded); `None` without any.
    fn success_rate(&self) -> Option<f64> {
        let ended = self.completed + self.failed + self.timed_out;
        (ended > 0).then(|| self.completed as f64 / ended as f64)
    }
}

fn duration_bucket(ms: u64) -> usize {
    DURATION_BOUNDS_MS.partition_point(|&bound| bound < ms)
}

/// A stored cell with its place: (cell start in unix seconds, agent, cell).
pub type PlacedCell = (u64, Uuid, Cell);

/// Where a finished task is counted: its finish time, in unix seconds.
pub fn finished_at(task: &Task) -> u64 {
    task.state
        .completed_at
        .unwrap_or_else(OffsetDateTime::now_utc)
        .unix_timestamp()
        .max(0) as u64
}

/// The span a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Window {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Window {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "1h" => Some(Window::Hour),
            "24h" | "1d" => Some(Window::Day),
            "7d" => Some(Window::Week),
            "30d" => Some(Window::Month),
            _ => None,
        }
    }

    /// Width of the stored cells read.
    pub fn cell_width(self) -> u32 {
        match self {
            Window::Hour | Window::Day => MINUTE,
            Window::Week | Window::Month => HOUR,
        }
    }

    /// Width of the report's buckets, and how many.
    fn buckets(self) -> (u64, u64) {
        match self {
            Window::Hour => (60, 60),
            Window::Day => (900, 96),
            Window::Week => (3_600, 168),
            Window::Month => (21_600, 120),
        }
    }

    /// The first bucket's start and the end (exclusive) of the last, for a report at `now`.
    pub fn span(self, now: u64) -> (u64, u64) {
        let (width, count) = self.buckets();
        let end = (now / width + 1) * width;
        (end - width * count, end)
    }
}

/// One bucket of the throughput series.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Throughput {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    pub completed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub canceled: u64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub finished: u64,
    pub completed: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub canceled: u64,
    /// Completed over completed + failed + timed out; `null` without any.
    pub success_rate: Option<f64>,
    /// Prices of the completed tasks, in credits.
    pub spend: f64,
    /// Mean duration of the completed tasks.
    pub mean_duration_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Durations {
    /// Upper bounds (inclusive) of the buckets, in ms.
    pub bounds_ms: Vec<u64>,
    /// Completed tasks per bucket; the last counts those longer than the last bound.
    pub counts: Vec<u64>,
}

impl From<&Cell> for Totals {
    fn from(c: &Cell) -> Self {
        Self {
            finished: c.finished(),
            completed: c.completed,
            failed: c.failed,
            timed_out: c.timed_out,
            canceled: c.canceled,
            success_rate: c.success_rate(),
            spend: c.spend,
            mean_duration_ms: mean(c.duration_ms, c.completed),
        }
    }
}

/// One agent's figures: [`Totals`] of its tasks, beside its id and name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentSummary {
    pub agent_id: Uuid,
    pub agent_name: String,
    #[serde(flatten)]
    pub totals: Totals,
}

/// Analytics of one owner (or everyone) over a window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub window: Window,
    /// `me` or `all`.
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub bucket_secs: u64,
    /// One entry per bucket, oldest first; empty buckets included.
    pub throughput: Vec<Throughput>,
    pub totals: Totals,
    pub durations: Durations,
    /// Every agent with a finished task in the window, most finished first.
    pub agents: Vec<AgentSummary>,
}

fn time_of(secs: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn mean(sum: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum as f64 / n as f64)
}

/// Builds the report of `window` ending now (`now`, unix seconds) from the stored cells of
/// the window: `(cell start, agent, cell)`.
pub fn report(window: Window, scope: &str, now: u64, cells: &[PlacedCell]) -> Report {
    let (width, _) = window.buckets();
    let (from, to) = window.span(now);
    let mut throughput: Vec<Throughput> = (from..to)
        .step_by(width as usize)
        .map(|start| Throughput {
            start: time_of(start),
            completed: 0,
            failed: 0,
            timed_out: 0,
            canceled: 0,
        })
        .collect();
    let mut total = Cell::default();
    let mut agents: HashMap<Uuid, Cell> = HashMap::new();
    for (start, agent, cell) in cells {
        if !(from..to).contains(start) {
            continue;
        }
        let bucket = &mut throughput[((start - from) / width) as usize];
        bucket.completed += cell.completed;
        bucket.failed += cell.failed;
        bucket.timed_out += cell.timed_out;
        bucket.canceled += cell.canceled;
        total.merge(cell);
        agents.entry(*agent).or_default().merge(cell);
    }
    let mut agents: Vec<AgentSummary> = agents
        .into_iter()
        .map(|(agent_id, c)| AgentSummary {
            agent_id,
            agent_name: c.agent_name.clone(),
            totals: Totals::from(&c),
        })
        .collect();
    agents.sort_by(|a, b| {
        b.totals
            .finished
            .cmp(&a.totals.finished)
            .then_with(|| a.agent_name.cmp(&b.agent_name))
            .then_with(|| a.agent_id.cmp(&b.agent_id))
    });
    total.durations.resize(DURATION_BOUNDS_MS.len() + 1, 0);
    Report {
        window,
        scope: scope.to_owned(),
        from: time_of(from),
        to: time_of(to),
        bucket_secs: width,
        throughput,
        totals: Totals::from(&total),
        durations: Durations {
            bounds_ms: DURATION_BOUNDS_MS.to_vec(),
            counts: total.durations,
        },
        agents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(status: TaskStatus, agent: &str, price: f64, ms: u64) -> Task {
        let mut task = Task::blank(Uuid::new_v4());
        task.state = super::super::task::TaskState {
            status,
            agent_name: agent.into(),
            price,
            duration_ms: Some(ms),
            ..task.state
        };
        task
    }

    #[test]
    fn durations_fall_in_inclusive_buckets() {
        assert_eq!(duration_bucket(0), 0);
        assert_eq!(duration_bucket(1), 0);
        assert_eq!(duration_bucket(2), 1);
        assert_eq!(duration_bucket(3), 2);
        assert_eq!(duration_bucket(60_000), 14);
        assert_eq!(duration_bucket(60_001), 15);
    }

    #[test]
    fn a_report_sums_cells_into_buckets_totals_and_agents() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let now = 1_700_000_000 / 60 * 60 + 30;
        let mut ca = Cell::default();
        ca.count(&finished(TaskStatus::Completed, "A", 0.5, 40));
        ca.count(&finished(TaskStatus::Completed, "A", 0.5, 60));
        ca.count(&finished(TaskStatus::Failed, "A", 0.5, 10));
        let mut cb = Cell::default();
        cb.count(&finished(TaskStatus::Canceled, "B", 1.0, 0));
        cb.count(&finished(TaskStatus::TimedOut, "B", 1.0, 0));
        let this_minute = now / 60 * 60;
        let cells = [
            (this_minute, a, ca.clone()),
            (this_minute - 600, a, ca),
            (this_minute - 60, b, cb),
            // Outside the hour: left out.
            (this_minute - 3_600, b, Cell::default()),
        ];
        let r = report(Window::Hour, "me", now, &cells);
        assert_eq!(r.throughput.len(), 60);
        assert_eq!(r.bucket_secs, 60);
        assert_eq!(r.throughput[59].completed, 2);
        assert_eq!(r.throughput[59].failed, 1);
        assert_eq!(r.throughput[49].completed, 2);
        assert_eq!(
            (r.throughput[58].canceled, r.throughput[58].timed_out),
            (1, 1)
        );
        assert_eq!(r.to.unix_timestamp() as u64, this_minute + 60);
        let t = &r.totals;
        assert_eq!(
            (t.finished, t.completed, t.failed, t.timed_out, t.canceled),
            (8, 4, 2, 1, 1)
        );
        assert_eq!(t.success_rate, Some(4.0 / 7.0));
        assert_eq!(t.spend, 2.0);
        assert_eq!(t.mean_duration_ms, Some(50.0));
        // 40 ms → the ≤ 50 bucket, 60 ms → the ≤ 100 bucket.
        assert_eq!(r.durations.counts[5], 2);
        assert_eq!(r.durations.counts[6], 2);
        assert_eq!(r.durations.counts.len(), r.durations.bounds_ms.len() + 1);
        assert_eq!(r.agents.len(), 2);
        let (a, b) = (&r.agents[0], &r.agents[1]);
        assert_eq!((a.agent_name.as_str(), a.totals.finished), ("A", 6));
        assert_eq!(a.totals.success_rate, Some(4.0 / 6.0));
        assert_eq!(
            b.totals.success_rate,
            Some(0.0),
            "the cancel does not count"
        );
        assert_eq!(b.totals.spend, 0.0);
    }

    #[test]
    fn windows_cover_their_span_in_whole_buckets() {
        let now = 1_700_000_123;
        for (w, width, n) in [
            (Window::Hour, 60, 60),
            (Window::Day, 900, 96),
            (Window::Week, 3_600, 168),
            (Window::Month, 21_600, 120),
        ] {
            let (from, to) = w.span(now);
            assert_eq!(to - from, width * n);
            assert!(to > now && to - now <= width);
            assert_eq!(from % width, 0);
            assert_eq!(report(w, "me", now, &[]).throughput.len() as u64, n);
        }
        assert_eq!(Window::parse("24h"), Some(Window::Day));
        assert_eq!(Window::parse("2h"), None);
    }
}
