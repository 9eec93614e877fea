//! A submitter's quotas (`[quotas]`): queued tasks, result bytes per UTC day and the daily
//! allowance of `critical` tasks are checked before the auction; a submit over one is refused
//! with a message that names the quota and its limit. Signed-in admins are exempt. (The cap on
//! runs at once is the queue's: a capped user's tasks wait, they are not refused.)
//!
//! Daily figures live in memory, per user, for the current UTC day, and are rebuilt at start
//! from the journal: the tasks finished since midnight and the unfinished ones. Checks that
//! take something (a place in the queue, a critical task) reserve it at once through an
//! [`Admission`], so concurrent submits cannot pass a quota together; a submit that fails
//! after the check gives it back.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;
use uuid::Uuid;

use super::engine::{Orchestrator, TaskError};
use super::submission::Request;
use crate::config::QuotaSettings;
use crate::records::{
    DailyUsage, Priority, Task, result_bytes, secs_to_midnight, utc_day, utc_midnight,
};

/// Who submits, as the quotas need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitter {
    pub id: Uuid,
    /// A signed-in admin: exempt from the quotas, and may submit `critical` tasks.
    pub admin: bool,
}

/// Every user's use of their daily quotas on one UTC day. A std Mutex: held for a map
/// operation.
#[derive(Default)]
pub(super) struct DailyCounters(Mutex<Today>);

#[derive(Default)]
struct Today {
    /// Days since 1970-01-01 (UTC) the figures are of.
    day: i64,
    users: HashMap<Uuid, DailyUsage>,
}

impl DailyCounters {
    /// `change` on `owner`'s figures of the day of `at` (a new day starts from zero; figures
    /// of a day already gone are dropped).
    fn with<T>(
        &self,
        owner: Uuid,
        at: OffsetDateTime,
        change: impl FnOnce(&mut DailyUsage) -> T,
    ) -> Option<T> {
        let day = utc_day(at);
        let mut today = self.0.lock().expect("daily counters");
        if day > today.day {
            *today = Today {
                day,
                users: HashMap::new(),
            };
        }
        (day == today.day).then(|| change(today.users.entry(owner).or_default()))
    }

    /// Replaces the figures with those of the day of `at`, as rebuilt at start.
    pub(super) fn seed(&self, at: OffsetDateTime, users: HashMap<Uuid, DailyUsage>) {
        *self.0.lock().expect("daily counters") = Today {
            day: utc_day(at),
            users,
        };
    }

    /// Counts the result of `owner`'s task that finished at `at`.
    pub(super) fn add_result(&self, owner: Uuid, bytes: u64, at: OffsetDateTime) {
        self.with(owner, at, |u| u.result_bytes += bytes);
    }

    fn used(&self, owner: Uuid, now: OffsetDateTime) -> DailyUsage {
        self.with(owner, now, |u| *u).unwrap_or_default()
    }

    /// Takes one critical task of `owner`'s `allowance` for the day of `now`; `Err` with
    /// how many were used if none is left.
    fn take_critical(&self, owner: Uuid, allowance: u64, now: OffsetDateTime) -> Result<(), u64> {
        self.with(owner, now, |u| {
            if u.critical_tasks >= allowance {
                return Err(u.critical_tasks);
            }
            u.critical_tasks += 1;
            Ok(())
        })
        .unwrap_or(Ok(()))
    }

    fn give_back_critical(&self, owner: Uuid, taken: OffsetDateTime) {
        self.with(owner, taken, |u| {
            u.critical_tasks = u.critical_tasks.saturating_sub(1)
        });
    }
}

/// What a submit reserved of its quotas; dropped without [`Admission::commit`] (the submit
/// failed), it gives the critical task back. Its place among the owner's queued tasks is
/// held until it is dropped: by then a committed task is in the queue and counts there.
pub(super) struct Admission {
    orchestrator: Orchestrator,
    owner: Uuid,
    /// Counted in the orchestrator's pending submits.
    pending: bool,
    /// When a critical task of the allowance was taken.
    critical: Option<OffsetDateTime>,
    committed: bool,
}

impl Admission {
    /// The task is journaled: what it took stays taken. Keep the admission until the task is
    /// queued, so that it is counted as pending until the queue counts it.
    pub(super) fn commit(&mut self) {
        self.committed = true;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let inner = &self.orchestrator.inner;
        if self.pending {
            let mut pending = inner.pending.lock().expect("pending submits");
            if let Some(n) = pending.get_mut(&self.owner) {
                *n -= 1;
                if *n == 0 {
                    pending.remove(&self.owner);
                }
            }
        }
        if let (Some(at), false) = (self.critical, self.committed) {
            inner.daily.give_back_critical(self.owner, at);
        }
    }
}

impl Orchestrator {
    fn quotas(&self) -> &QuotaSettings {
        &self.inner.quotas
    }

    /// Checks `submitter`'s quotas for `request` and reserves what it takes.
    pub(super) fn admit(
        &self,
        submitter: Submitter,
        request: &Request,
    ) -> Result<Admission, TaskError> {
        let mut admission = Admission {
            orchestrator: self.clone(),
            owner: submitter.id,
            pending: false,
            critical: None,
            committed: false,
        };
        if submitter.admin {
            return Ok(admission);
        }
        let now = OffsetDateTime::now_utc();
        self.check_result_bytes(submitter.id, now)?;
        admission.pending = self.reserve_queued(submitter.id)?;
        if request.priority == Priority::Critical {
            self.take_critical(submitter.id, now)?;
            admission.critical = Some(now);
        }
        Ok(admission)
    }

    fn check_result_bytes(&self, owner: Uuid, now: OffsetDateTime) -> Result<(), TaskError> {
        let Some(limit) = QuotaSettings::limit(self.quotas().result_bytes_per_day) else {
            return Ok(());
        };
        let used = self.inner.daily.used(owner, now).result_bytes;
        if used < limit {
            return Ok(());
        }
        Err(TaskError::QuotaExceeded {
            message: format!(
                "quota result_bytes_per_day exceeded: your tasks' results today total {used} \
                 bytes, the limit is {limit} bytes per UTC day; it refills at midnight UTC"
            ),
            retry_after: Some(secs_to_midnight(now)),
        })
    }

    /// Holds a place among `owner`'s queued tasks; false if no quota applies.
    fn reserve_queued(&self, owner: Uuid) -> Result<bool, TaskError> {
        let Some(limit) = QuotaSettings::limit(self.quotas().queued_tasks) else {
            return Ok(false);
        };
        let mut pending = self.inner.pending.lock().expect("pending submits");
        let submitting = pending.get(&owner).copied().unwrap_or(0);
        let queued = (self.inner.queue.queued_of(owner) + submitting) as u64;
        if queued >= limit {
            return Err(TaskError::QuotaExceeded {
                message: format!(
                    "quota queued_tasks reached: you have {queued} tasks waiting, the most \
                     allowed is {limit}; submit more once some have run (or cancel some)"
                ),
                retry_after: None,
            });
        }
        *pending.entry(owner).or_default() += 1;
        Ok(true)
    }

    fn take_critical(&self, owner: Uuid, now: OffsetDateTime) -> Result<(), TaskError> {
        let allowance = self.quotas().critical_tasks_per_day;
        if allowance == 0 {
            return Err(TaskError::PriorityNotAllowed {
                message: "priority `critical` is for admins; use high or lower".into(),
                retry_after: None,
            });
        }
        self.inner
            .daily
            .take_critical(owner, allowance, now)
            .map_err(|used| TaskError::PriorityNotAllowed {
                message: format!(
                    "priority `critical` is for admins and, for other users, {allowance} tasks \
                     per UTC day (quota critical_tasks_per_day); you used {used} today: use \
                     high or lower until midnight UTC"
                ),
                retry_after: Some(secs_to_midnight(now)),
            })
    }

    /// Counts a finished task's result into its owner's day (only while that quota is on:
    /// measuring a result costs a pass over it).
    pub(super) fn count_result(&self, task: &Task) {
        if self.quotas().result_bytes_per_day == 0 {
            return;
        }
        let at = task
            .state
            .completed_at
            .unwrap_or_else(OffsetDateTime::now_utc);
        self.inner
            .daily
            .add_result(task.owner_id, result_bytes(&task.state), at);
    }

    /// Rebuilds today's figures from the journal at start: the tasks finished since midnight
    /// (UTC) and the `unfinished` ones. Skipped when no daily quota is on.
    pub(super) async fn recount_daily(&self, unfinished: &[Task]) -> Result<(), TaskError> {
        let q = self.quotas();
        if q.result_bytes_per_day == 0 && q.critical_tasks_per_day == 0 {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let midnight = utc_midnight(now);
        let mut users = self.inner.journal.usage_since(midnight).await?;
        for task in unfinished {
            users
                .entry(task.owner_id)
                .or_default()
                .count(task, midnight);
        }
        self.inner.daily.seed(now, users);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::DAY_SECS;

    #[test]
    fn daily_figures_start_again_at_midnight_utc_and_a_late_count_of_yesterday_is_dropped() {
        let counters = DailyCounters::default();
        let owner = Uuid::from_u128(7);
        let day =
            |d: i64, secs: i64| OffsetDateTime::from_unix_timestamp(d * DAY_SECS + secs).unwrap();
        counters.add_result(owner, 10, day(100, 5));
        assert_eq!(counters.take_critical(owner, 1, day(100, 6)), Ok(()));
        assert_eq!(counters.take_critical(owner, 1, day(100, 7)), Err(1));
        assert_eq!(counters.used(owner, day(100, 8)).result_bytes, 10);

        let next = day(101, 0);
        assert_eq!(counters.used(owner, next), DailyUsage::default());
        counters.add_result(owner, 99, day(100, 86_399));
        counters.give_back_critical(owner, day(100, 6));
        assert_eq!(counters.used(owner, next), DailyUsage::default());
        assert_eq!(counters.take_critical(owner, 1, next), Ok(()));
        counters.give_back_critical(owner, next);
        assert_eq!(counters.used(owner, next).critical_tasks, 0);
    }
}
