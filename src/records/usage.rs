//! What a user used of their daily quotas (`quotas.critical_tasks_per_day`,
//! `quotas.result_bytes_per_day`): counted from tasks, per UTC day.

use time::OffsetDateTime;

use super::task::{Priority, Task, TaskState};

/// Seconds in a (UTC) day.
pub const DAY_SECS: i64 = 86_400;

/// One user's use of their daily quotas over one UTC day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DailyUsage {
    /// `critical` tasks submitted that day.
    pub critical_tasks: u64,
    /// [`result_bytes`] of the tasks that finished that day.
    pub result_bytes: u64,
}

impl DailyUsage {
    /// Counts `task` into the day that starts at `midnight`: its submit if it was submitted
    /// that day at `critical`, its result if it finished that day.
    pub fn count(&mut self, task: &Task, midnight: OffsetDateTime) {
        if task.priority == Priority::Critical && task.created_at >= midnight {
            self.critical_tasks += 1;
        }
        if task.state.completed_at.is_some_and(|at| at >= midnight) {
            self.result_bytes += result_bytes(&task.state);
        }
    }
}

/// The UTC day of `at`, as days since 1970-01-01.
pub fn utc_day(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(DAY_SECS)
}

/// The midnight (UTC) that began the day of `at`.
pub fn utc_midnight(at: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(utc_day(at) * DAY_SECS).unwrap_or(at)
}

/// Whole seconds from `at` to the next midnight UTC (at least 1): when daily quotas refill.
pub fn secs_to_midnight(at: OffsetDateTime) -> u64 {
    (DAY_SECS - at.unix_timestamp().rem_euclid(DAY_SECS)) as u64
}

/// Bytes a task's result takes as stored: the result as JSON text, and stderr.
pub fn result_bytes(state: &TaskState) -> u64 {
    let result = state.result.as_ref().map_or(0, |value| {
        let mut counter = ByteCounter(0);
        // Writing into a counter cannot fail.
        let _ = serde_json::to_writer(&mut counter, value);
        counter.0
    });
    result + state.stderr.as_ref().map_or(0, |s| s.len() as u64)
}

/// An `io::Write` that only counts what it is given: a value's JSON size without building it.
struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::records::TaskStatus;

    #[test]
    fn a_day_runs_from_midnight_utc_and_counts_what_happened_in_it() {
        let noon = OffsetDateTime::from_unix_timestamp(20_000 * DAY_SECS + 43_200).unwrap();
        let midnight = utc_midnight(noon);
        assert_eq!(midnight.unix_timestamp(), 20_000 * DAY_SECS);
        assert_eq!(secs_to_midnight(noon), 43_200);
        assert_eq!(secs_to_midnight(midnight), DAY_SECS as u64);
        assert_eq!(utc_day(noon), 20_000);

        let mut task = Task::blank(Uuid::nil());
        task.priority = Priority::Critical;
        task.created_at = midnight - time::Duration::seconds(1);
        task.state.status = TaskStatus::Completed;
        task.state.result = Some(json!({"a": "é"}));
        task.state.stderr = Some("warn".into());
        task.state.completed_at = Some(noon);
        let mut usage = DailyUsage::default();
        usage.count(&task, midnight);
        // Submitted yesterday, finished today: its result counts, its priority does not.
        let json_len = r#"{"a":"é"}"#.len() as u64;
        assert_eq!(
            usage,
            DailyUsage {
                critical_tasks: 0,
                result_bytes: json_len + 4
            }
        );
        task.created_at = noon;
        usage.count(&task, midnight);
        assert_eq!(usage.critical_tasks, 1);
    }
}
