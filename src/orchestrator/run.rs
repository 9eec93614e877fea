//! A task's run, in two halves that may sit on two nodes. The deciding half is here, on the
//! node that holds the journal: [`Orchestrator::begin`] takes a leased task, stages it (agent,
//! limits, deadline), marks it running and hands out a [`RunOrder`]; [`Orchestrator::complete`]
//! takes the run's output back, checks that the lease still holds, judges the output
//! ([`outcome::judge`]) and journals what it means (requeued, canceled, failed over, finished).
//! The running half is [`Orchestrator::run_here`] for this node's workers, and `crate::worker`
//! on worker nodes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::engine::{Orchestrator, TaskError, queued};
use super::outcome::{self, Invocation, RunReport, Verdict};
use crate::agents::AgentError;
use crate::queue::{Lease, hold};
use crate::records::{
    Agent, AgentOutcome, Attempt, Bid, FailureCode, Finished, RunLimits, RunOrder, RunOutput, Task,
    TaskChange, TaskStatus,
};

/// A queued task ready to start: its agent found, its limits set.
struct Staged {
    agent: Arc<Agent>,
    limits: RunLimits,
    /// The deadline cut the run's timeout short.
    cut_by_deadline: bool,
}

impl Orchestrator {
    /// One leased task, from start to end, on this node.
    pub(super) async fn run_leased(&self, lease: Lease) {
        let id = lease.task.task_id;
        let run = async {
            let Some(mut order) = self.begin(&lease).await? else {
                return Ok(());
            };
            let output = self.run_here(&mut order, &lease).await;
            self.complete_retrying(&lease, &order, output).await
        };
        if let Err(e) = run.await {
            drop(self.fail_internally(id, e).await);
        }
    }

    /// [`Orchestrator::complete`], retried while the shared queue cannot be reached, until it
    /// answers or this server stops. Giving up sooner could strand the task: Redis may have
    /// applied the report and died before answering, and then no lease is left to expire. A
    /// late retry is safe: the fence ignores the result if another node took the task over.
    /// On a stop the task stays running in the journal, and the next start queues it again if
    /// Redis lacks it.
    async fn complete_retrying(
        &self,
        lease: &Lease,
        order: &RunOrder,
        output: RunOutput,
    ) -> Result<(), TaskError> {
        let mut wait = Duration::from_millis(100);
        loop {
            match self.complete(lease, order, &output).await {
                Err(TaskError::QueueUnavailable { .. })
                    if self.inner.accepting.load(Ordering::Relaxed) =>
                {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                other => return other.map(drop),
            }
        }
    }

    /// Fails a task whose run went wrong inside the server rather than strand it: it has left
    /// the queue and would otherwise sit in `queued` or `running` until the next restart.
    /// Returns `e`, for a caller that answers with it.
    pub async fn fail_internally(&self, id: Uuid, e: TaskError) -> TaskError {
        tracing::error!(task_id = %id, error = %e, "task execution failed internally");
        if matches!(e, TaskError::QueueUnavailable { .. }) {
            // The shared queue still holds the task: it runs again once its lease expires.
            return e;
        }
        let failed = async {
            match self.inner.journal.live_task(id) {
                Some(task) if !task.state.status.is_terminal() => {
                    let reason = "internal error while running the task; see the server log";
                    let change = ended(TaskStatus::Failed, FailureCode::Internal, reason);
                    self.end(task.id, task.state.status, change).await.map(drop)
                }
                _ => Ok(()),
            }
        };
        if let Err(e) = failed.await {
            tracing::error!(task_id = %id, error = %e, "could not mark the task failed; it runs again after restart");
        }
        e
    }

    /// Starts the leased task: what to run and under which limits, or `None` when it must not
    /// run (canceled or finished meanwhile, agent gone, deadline passed: those end here), in
    /// which case the lease is given back.
    pub async fn begin(&self, lease: &Lease) -> Result<Option<RunOrder>, TaskError> {
        let queue = &self.inner.queue;
        let order = match queue.taken(lease) {
            true => self.stage_and_start(lease).await?,
            false => None,
        };
        if order.is_none() {
            queue.done(lease).await?;
        }
        self.queue_changed();
        Ok(order)
    }

    async fn stage_and_start(&self, lease: &Lease) -> Result<Option<RunOrder>, TaskError> {
        let id = lease.task.task_id;
        let Some(staged) = self.stage(id, lease.claim.is_some()).await? else {
            return Ok(None);
        };
        // Registered before the task shows as running, so a cancel always finds it.
        let cancel = CancellationToken::new();
        self.running_runs().insert(id, cancel);
        let started = self.inner.journal.start(id);
        let Ok(Some(task)) = started else {
            self.running_runs().remove(&id);
            return started.map(|_| None).map_err(TaskError::from);
        };
        self.announce(&task);
        let Invocation { args, env, stdin } = Invocation::of(&task, &staged.agent);
        Ok(Some(RunOrder {
            task_id: id,
            owner_id: task.owner_id,
            agent_id: staged.agent.id,
            module: staged.agent.binary_hash.clone(),
            args,
            env,
            stdin,
            limits: staged.limits,
            cut_by_deadline: staged.cut_by_deadline,
            start: task.state.starts,
            started_at: task
                .state
                .started_at
                .unwrap_or_else(OffsetDateTime::now_utc),
        }))
    }

    /// The task if it can start now, with its agent and limits. A task that cannot run (agent
    /// gone, deadline passed) ends here: `None`. With `takeover` (a shared queue handed the
    /// task to this node after the node running it stopped holding it), a running task goes
    /// back to `queued` first, unless stops have cut its runs short too often.
    async fn stage(&self, id: Uuid, takeover: bool) -> Result<Option<Staged>, TaskError> {
        // Gone from memory or no longer queued: canceled (or finished) while it waited.
        let Some(task) = self.inner.journal.live_task(id) else {
            return Ok(None);
        };
        match task.state.status {
            TaskStatus::Queued => {}
            TaskStatus::Running if takeover => {
                tracing::info!(task_id = %id, "taking over a task whose node stopped holding it");
                if !self.requeue_stopped(&task).await? {
                    return Ok(None);
                }
            }
            _ => return Ok(None),
        }
        let agent = match self.agent_of(&task).await? {
            Some(agent) => agent,
            None => {
                let reason = "the agent no longer exists";
                let change = ended(TaskStatus::Failed, FailureCode::AgentUnavailable, reason);
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
            agent,
        }))
    }

    /// The task's agent, or `None` if it no longer exists.
    async fn agent_of(&self, task: &Task) -> Result<Option<Arc<Agent>>, TaskError> {
        let marketplace = &self.inner.marketplace;
        let agent_id = task.state.agent_id;
        if let Some(agent) = marketplace.catalog().get(agent_id) {
            return Ok(Some(agent));
        }
        match marketplace.get(agent_id).await {
            Ok(agent) => Ok(Some(Arc::new(agent))),
            Err(AgentError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs an order on this node's executor, keeping its lease while it runs.
    /// What the guest gets moves out of `order` into the run; the rest stays for
    /// [`Orchestrator::complete`].
    pub(super) async fn run_here(&self, order: &mut RunOrder, lease: &Lease) -> RunOutput {
        let cancel = self
            .running_runs()
            .get(&order.task_id)
            .cloned()
            .unwrap_or_default();
        // The lease is kept while the module compiles too.
        let load = self.load_module(order);
        if let Err(reason) = hold(&*self.inner.queue, lease, &cancel, load).await {
            return RunOutput::unloadable(reason);
        }
        let run = self.inner.executor.run_order(order, cancel.clone());
        hold(&*self.inner.queue, lease, &cancel, run).await
    }

    /// Makes the order's module runnable here: from memory, the compiled cache, else compiled
    /// on the build thread.
    async fn load_module(&self, order: &RunOrder) -> Result<(), String> {
        let executor = &self.inner.executor;
        if executor.has_module(&order.module) {
            return Ok(());
        }
        let marketplace = &self.inner.marketplace;
        let agent = match marketplace.catalog().get(order.agent_id) {
            Some(agent) => agent,
            None => Arc::new(
                marketplace
                    .get(order.agent_id)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        };
        marketplace.load(&agent).await.map(drop)
    }

    /// Takes a run's output back: checks the lease still holds (a late result of a lost lease
    /// changes nothing: false), judges it and journals what it means.
    pub async fn complete(
        &self,
        lease: &Lease,
        order: &RunOrder,
        output: &RunOutput,
    ) -> Result<bool, TaskError> {
        if lease.task.task_id != order.task_id {
            return Err(TaskError::Invalid(
                "the lease and the order name two tasks".into(),
            ));
        }
        if !self.inner.queue.done(lease).await? {
            tracing::info!(task_id = %order.task_id, "ignored the result of a run whose lease another node took over");
            return Ok(false);
        }
        // The journal's fence: the task is still at the start this run is.
        let live = self.inner.journal.live_task(order.task_id);
        let Some(task) =
            live.filter(|t| t.state.status == TaskStatus::Running && t.state.starts == order.start)
        else {
            return Ok(false);
        };
        let token = self.running_runs().get(&order.task_id).cloned();
        let verdict = outcome::judge(RunReport {
            agent_id: task.state.agent_id,
            agent_name: &task.state.agent_name,
            output,
            limits: &order.limits,
            cut_by_deadline: order.cut_by_deadline,
            canceled: token.is_some_and(|t| t.is_cancelled()),
            started_at: order.started_at,
        });
        let settled = self.settle(&task, output, verdict).await;
        // Only now: a cancel arriving meanwhile still finds the run and waits for its end.
        self.running_runs().remove(&order.task_id);
        settled.map(|()| true)
    }

    /// Journals what the verdict means for the task.
    async fn settle(
        &self,
        task: &Task,
        output: &RunOutput,
        verdict: Verdict,
    ) -> Result<(), TaskError> {
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
                self.finish(task, output, finished, outcome)
            }
        }
    }

    /// The run was cut short (this node or the worker node is stopping): back to the queue.
    /// A closed queue (this server stopping) leaves it for the next start.
    fn requeue_interrupted(&self, task: &Task) -> Result<(), TaskError> {
        let change = TaskChange::Requeued;
        if let Some((task, _)) =
            self.inner
                .journal
                .transition(task.id, TaskStatus::Running, None, change)?
        {
            self.announce(&task);
            self.inner.queue.push_later(queued(&task));
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
            self.inner.queue.push_later(queued(&task));
        }
        Ok(())
    }

    /// Ends the task with its run's result. The worker moves on; the announcement waits for
    /// the change to be durable.
    fn finish(
        &self,
        task: &Task,
        output: &RunOutput,
        finished: Box<Finished>,
        outcome: Option<AgentOutcome>,
    ) -> Result<(), TaskError> {
        let (id, success) = (task.id, finished.status == TaskStatus::Completed);
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
        metrics.duration.record(output.duration.as_secs_f64());
        crate::telemetry::histogram_recorded();
        tracing::debug!(task_id = %task.id, agent = %task.state.agent_name, status = task.state.status.as_str(), duration_ms, "task finished");
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
