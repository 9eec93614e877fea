//! What happens around a restart: the unfinished tasks a start finds go back to the queue,
//! and retention keeps the journal bounded.

use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::engine::{Orchestrator, TaskError, queued};
use super::run::ended;
use crate::journal::Retention;
use crate::queue::QueuedTask;
use crate::records::{FailureCode, Task, TaskChange, TaskStatus};

/// Retention runs this often.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// A task interrupted by a server stop this many times fails instead of running again.
const MAX_STARTS: u32 = 3;

impl Orchestrator {
    /// Queues the unfinished tasks the journal loaded at start, in submit order (so users take
    /// their turns in the order of their oldest task), and rebuilds today's quota figures.
    /// Tasks that were running when the server stopped go back to `queued`, unless stops have
    /// cut their runs short [`MAX_STARTS`] times: those fail, so a task that keeps taking the
    /// server down cannot do so forever. Called once, before workers start.
    ///
    /// A shared queue keeps its tasks across restarts of this node: what it still holds stays
    /// as it is (a task running on a worker node goes on running there).
    pub async fn recover(&self, unfinished: Vec<Task>) -> Result<usize, TaskError> {
        self.recount_daily(&unfinished).await?;
        let tasks: std::collections::HashMap<_, _> =
            unfinished.into_iter().map(|t| (t.id, t)).collect();
        let mut listed: Vec<(QueuedTask, bool)> = tasks
            .values()
            .map(|t| (queued(t), t.state.status == TaskStatus::Running))
            .collect();
        listed.sort_by_key(|(q, _)| q.seq);
        let missing = self.inner.queue.adopt(listed).await?;
        let (mut requeued, mut were_running) = (0, 0);
        for (entry, running) in missing {
            if running {
                were_running += 1;
                if !self.requeue_stopped(&tasks[&entry.task_id]).await? {
                    continue;
                }
            }
            self.inner.queue.push(entry, true).await?;
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

    /// A task whose run a stop cut short goes back to `queued` (true), or fails if stops cut
    /// it short [`MAX_STARTS`] times (false).
    pub(super) async fn requeue_stopped(&self, task: &Task) -> Result<bool, TaskError> {
        // Runs cut short by a stop: starts that never produced an attempt.
        let state = &task.state;
        let interrupted = state.starts.saturating_sub(state.attempts.len() as u32);
        if interrupted >= MAX_STARTS {
            let error = format!(
                "the server stopped while this task ran, {} times; not retried again",
                state.starts
            );
            let change = ended(TaskStatus::Failed, FailureCode::Interrupted, &error);
            self.end(task.id, TaskStatus::Running, change).await?;
            return Ok(false);
        }
        let journal = &self.inner.journal;
        journal.transition(task.id, TaskStatus::Running, None, TaskChange::Requeued)?;
        Ok(true)
    }

    /// Applies the retention rules once; returns how many finished tasks were deleted.
    pub async fn prune(&self) -> Result<usize, TaskError> {
        let settings = &self.inner.settings;
        let cutoff = match settings.retention_days {
            0 => OffsetDateTime::UNIX_EPOCH,
            days => OffsetDateTime::now_utc() - time::Duration::days(days as i64),
        };
        let retention = Retention {
            max_finished: settings.retention_max_finished,
            cutoff,
        };
        Ok(self.inner.journal.prune(retention).await?)
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
}
