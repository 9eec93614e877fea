//! A worker's run of one task, phase by phase: [`Orchestrator::stage`] finds the agent and
//! its limits, [`Orchestrator::invoke`] marks the task running and runs the guest,
//! [`outcome::judge`] turns the output into a [`Verdict`], and [`Orchestrator::settle`]
//! journals what it means (requeued, canceled, failed over, finished).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::engine::{Orchestrator, TaskError, queued};
use super::outcome::{self, Invocation, RunReport, Verdict};
use crate::agents::AgentError;
use crate::queue::QueuedTask;
use crate::records::{
    Agent, AgentOutcome, Attempt, Bid, FailureCode, Finished, Task, TaskChange, TaskStatus,
};
use crate::runtime::{RunLimits, RunOutput};

/// A queued task ready to run: its agent's module loaded, its limits set.
struct Staged {
    task: Task,
    agent: Arc<Agent>,
    limits: RunLimits,
    /// The deadline cut the run's timeout short.
    cut_by_deadline: bool,
}

/// A task's run that ended: the task as its start left it, and what the verdict needs.
struct Run {
    task: Task,
    agent: Arc<Agent>,
    limits: RunLimits,
    cut_by_deadline: bool,
    output: RunOutput,
    started_at: OffsetDateTime,
}

impl Orchestrator {
    pub(super) async fn run_task(&self, next: QueuedTask) {
        let Err(e) = self.try_run_task(next).await else {
            return;
        };
        tracing::error!(task_id = %next.task_id, error = %e, "task execution failed internally");
        // Fail it rather than strand it: it has left the queue and would otherwise sit in
        // `queued` or `running` until the next restart, and fail the same way again.
        let failed = async {
            match self.inner.journal.live_task(next.task_id) {
                Some(task) if !task.state.status.is_terminal() => {
                    let reason = "internal error while running the task; see the server log";
                    let change = ended(TaskStatus::Failed, FailureCode::Internal, reason);
                    self.end(task.id, task.state.status, change).await.map(drop)
                }
                _ => Ok(()),
            }
        };
        if let Err(e) = failed.await {
            tracing::error!(task_id = %next.task_id, error = %e, "could not mark the task failed; it runs again after restart");
        }
    }

    async fn try_run_task(&self, next: QueuedTask) -> Result<(), TaskError> {
        let Some(staged) = self.stage(next.task_id).await? else {
            return Ok(());
        };
        // Registered before the task shows as running, so a cancel always finds it.
        let cancel = CancellationToken::new();
        let _registered = RunningGuard::register(&self.inner.running, staged.task.id, &cancel);
        let Some(run) = self.invoke(staged, &cancel).await? else {
            return Ok(());
        };
        let verdict = outcome::judge(RunReport {
            agent: &run.agent,
            output: &run.output,
            limits: &run.limits,
            cut_by_deadline: run.cut_by_deadline,
            canceled: cancel.is_cancelled(),
            started_at: run.started_at,
        });
        self.settle(&run, verdict).await
    }

    /// The task if it is still queued, with its agent loaded and its limits set. A task that
    /// cannot run (agent gone, module broken, deadline passed) ends here: `None`.
    async fn stage(&self, id: Uuid) -> Result<Option<Staged>, TaskError> {
        // Gone from memory or no longer queued: canceled (or finished) while it waited.
        let Some(task) = self.inner.journal.live_task(id) else {
            return Ok(None);
        };
        if task.state.status != TaskStatus::Queued {
            return Ok(None);
        }
        let agent = match self.runnable_agent(&task).await? {
            Ok(agent) => agent,
            Err(reason) => {
                let change = ended(TaskStatus::Failed, FailureCode::AgentUnavailable, &reason);
                self.end(id, TaskStatus::Queued, change).await?;
                return Ok(None);
            }
        };
        // The run may use the task's timeout and the agent's, but never go past the deadline.
        let task_timeout = Duration::from_secs(task.timeout_secs);
        let limits = outcome::run_limits(&self.inner.limits, &agent.limits, task_timeout);
        let now = OffsetDateTime::now_utc();
        let Some(timeout) = outcome::within_deadline(limits.timeout, task.deadline, now) else {
            let reason = "the deadline passed before the task could run";
            let change = ended(TaskStatus::TimedOut, FailureCode::DeadlinePassed, reason);
            self.end(id, TaskStatus::Queued, change).await?;
            return Ok(None);
        };
        Ok(Some(Staged {
            cut_by_deadline: timeout < limits.timeout,
            limits: RunLimits { timeout, ..limits },
            task,
            agent,
        }))
    }

    /// The task's agent with its module loaded, or why it cannot run.
    async fn runnable_agent(&self, task: &Task) -> Result<Result<Arc<Agent>, String>, TaskError> {
        let marketplace = &self.inner.marketplace;
        let agent_id = task.state.agent_id;
        let agent = match marketplace.catalog().get(agent_id) {
            Some(agent) => agent,
            None => match marketplace.get(agent_id).await {
                Ok(agent) => Arc::new(agent),
                Err(AgentError::NotFound) => return Ok(Err("the agent no longer exists".into())),
                Err(e) => return Err(e.into()),
            },
        };
        if !self.inner.executor.has_module(&agent.binary_hash) {
            // Not loaded yet (the start-up warm-up is still running): from the cache, else
            // compiled on the build thread.
            if let Err(reason) = marketplace.load(&agent).await {
                return Ok(Err(reason));
            }
        }
        Ok(Ok(agent))
    }

    /// Marks the task running, announces it and runs the guest to its end. `None` if the task
    /// left the queue meanwhile.
    async fn invoke(
        &self,
        staged: Staged,
        cancel: &CancellationToken,
    ) -> Result<Option<Run>, TaskError> {
        let Staged {
            task,
            agent,
            limits,
            cut_by_deadline,
        } = staged;
        let Some(task) = self.inner.journal.start(task.id)? else {
            return Ok(None);
        };
        let started_at = task
            .state
            .started_at
            .unwrap_or_else(OffsetDateTime::now_utc);
        self.announce(&task);
        let Invocation { args, env, stdin } = Invocation::of(&task, &agent);
        let executor = &self.inner.executor;
        let output = executor
            .run(&agent.binary_hash, args, env, stdin, limits, cancel.clone())
            .await;
        Ok(Some(Run {
            task,
            agent,
            limits,
            cut_by_deadline,
            output,
            started_at,
        }))
    }

    /// Journals what the verdict means for the task.
    async fn settle(&self, run: &Run, verdict: Verdict) -> Result<(), TaskError> {
        let task = &run.task;
        match verdict {
            Verdict::Interrupted => self.requeue_interrupted(task),
            Verdict::Canceled { ran_ms } => {
                // Not the agent's fault: its statistics are left alone.
                let change = TaskChange::Ended {
                    status: TaskStatus::Canceled,
                    code: FailureCode::Canceled,
                    error: "canceled by its owner while running".into(),
                    ran_ms: Some(ran_ms),
                };
                self.end(task.id, TaskStatus::Running, change)
                    .await
                    .map(drop)
            }
            Verdict::Finished {
                finished,
                outcome,
                may_fail_over,
            } => {
                if may_fail_over && let Some(bids) = self.failover_auction(task, &finished) {
                    return self.fail_over(task, finished.attempt, bids, outcome);
                }
                self.finish(run, finished, outcome)
            }
        }
    }

    /// The server is stopping: back to the queue for the next start (not queued here: the
    /// queue is closed).
    fn requeue_interrupted(&self, task: &Task) -> Result<(), TaskError> {
        let change = TaskChange::Requeued;
        if let Some((task, _)) =
            self.inner
                .journal
                .transition(task.id, TaskStatus::Running, None, change)?
        {
            self.announce(&task);
        }
        Ok(())
    }

    /// After a failed run: the bids of a new auction among the agents not tried yet, best
    /// first (never empty), unless the caller pinned the agent or the task has used its
    /// attempts.
    fn failover_auction(&self, task: &Task, failed: &Finished) -> Option<Vec<Bid>> {
        let mut tried: Vec<Uuid> = task.state.attempts.iter().map(|a| a.agent_id).collect();
        tried.push(failed.attempt.agent_id);
        if task.pinned || tried.len() >= self.inner.settings.max_attempts as usize {
            return None;
        }
        let marketplace = &self.inner.marketplace;
        let bids = marketplace
            .catalog()
            .auction(
                &task.capabilities,
                task.budget,
                self.inner.weights,
                None,
                &tried,
            )
            .ok()?;
        marketplace
            .bids_accepting(bids, task.input.as_deref())
            .ok()
            .filter(|bids| !bids.is_empty())
    }

    /// Queues the task again for the next bidder.
    fn fail_over(
        &self,
        task: &Task,
        attempt: Attempt,
        bids: Vec<Bid>,
        outcome: Option<AgentOutcome>,
    ) -> Result<(), TaskError> {
        tracing::info!(task_id = %task.id, failed = %attempt.agent_name, next = %bids[0].agent_name, "failing over to the next bidder");
        let change = TaskChange::FailedOver { attempt, bids };
        let journal = &self.inner.journal;
        if let Some((task, _)) =
            journal.transition(task.id, TaskStatus::Running, outcome, change)?
        {
            self.record_outcome(outcome);
            self.announce(&task);
            if let Err(e) = self.inner.queue.push(queued(&task), true) {
                tracing::warn!(task_id = %task.id, error = %e, "failover not queued; it runs after restart");
            }
        }
        Ok(())
    }

    /// Ends the task with its run's result. The worker moves on; the announcement waits for
    /// the change to be durable.
    fn finish(
        &self,
        run: &Run,
        finished: Box<Finished>,
        outcome: Option<AgentOutcome>,
    ) -> Result<(), TaskError> {
        let (id, success) = (run.task.id, finished.status == TaskStatus::Completed);
        let duration_ms = finished.duration_ms;
        let change = TaskChange::Finished(finished);
        let journal = &self.inner.journal;
        let Some((task, durable)) = journal.transition(id, TaskStatus::Running, outcome, change)?
        else {
            return Ok(());
        };
        self.record_outcome(outcome);
        self.count_result(&task);
        if success {
            let marketplace = &self.inner.marketplace;
            marketplace.record_completion(task.owner_id, task.state.agent_id);
        }
        let metrics = &self.inner.metrics;
        metrics.finished(task.state.status).increment(1);
        metrics.duration.record(run.output.duration.as_secs_f64());
        crate::telemetry::histogram_recorded();
        tracing::debug!(task_id = %task.id, agent = %run.agent.name, status = task.state.status.as_str(), duration_ms, "task finished");
        let now = std::time::Instant::now();
        self.inner
            .recent
            .record(task.owner_id, success, duration_ms, now);
        let this = self.clone();
        tokio::spawn(async move {
            match durable.wait().await {
                Ok(()) => this.announce_finished(&task),
                Err(e) => {
                    tracing::error!(task_id = %task.id, error = %e, "could not journal the task's end; it runs again after restart")
                }
            }
        });
        Ok(())
    }

    /// Folds a run's outcome into the agent's live statistics (the journal records it with the
    /// task's state).
    fn record_outcome(&self, outcome: Option<AgentOutcome>) {
        if let Some(o) = outcome {
            self.inner
                .marketplace
                .record_outcome(o.agent_id, o.success, o.duration_ms);
        }
    }
}

/// Ends a task that did not run (any more): `status`, with `code` and `error`.
pub(super) fn ended(status: TaskStatus, code: FailureCode, error: &str) -> TaskChange {
    TaskChange::Ended {
        status,
        code,
        error: error.to_owned(),
        ran_ms: None,
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
        token: &CancellationToken,
    ) -> Self {
        map.lock().expect("running map").insert(id, token.clone());
        Self { map, id }
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.map.lock().expect("running map").remove(&self.id);
    }
}
