//! Task records, the per-owner index, the active set and the status counters.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use super::{Store, StoreError, decode, encode, read_json, tables};
use crate::agents::Agent;
use crate::orchestrator::{Priority, Task, TaskCounts, TaskStatus};

/// An unfinished task found at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Recovered {
    pub task_id: Uuid,
    pub priority: Priority,
    pub seq: u64,
    /// It was running when the server stopped; it has been put back to `queued`.
    pub was_running: bool,
}

/// Which tasks a listing returns; `None` matches all.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub priority: Option<Priority>,
    pub agent_id: Option<Uuid>,
}

impl TaskFilter {
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.priority.is_none() && self.agent_id.is_none()
    }

    fn matches(&self, task: &Task) -> bool {
        self.status.is_none_or(|s| s == task.status)
            && self.priority.is_none_or(|p| p == task.priority)
            && self.agent_id.is_none_or(|a| a == task.agent_id)
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

/// How long an idempotency key binds to its first task.
const IDEMPOTENCY_WINDOW_SECS: u64 = 24 * 60 * 60;

/// What [`Store::insert_task`] did.
#[derive(Debug)]
pub enum Inserted {
    New(Box<Task>),
    /// The idempotency key was already used for this task.
    Existing(Uuid),
}

/// The outcome of a run, folded into the agent's statistics with the task's final state.
#[derive(Debug, Clone, Copy)]
pub struct AgentOutcome {
    pub agent_id: Uuid,
    pub success: bool,
    pub duration_ms: u64,
}

/// Adds a task that just reached a terminal state to the retention index.
fn index_finished(txn: &WriteTransaction, task: &Task) -> Result<(), StoreError> {
    let at = task
        .completed_at
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let ms = (at.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    txn.open_table(tables::FINISHED_TASKS)?
        .insert((ms, task.seq), task.id.to_string().as_str())?;
    Ok(())
}

fn shift_counts(
    txn: &WriteTransaction,
    owner: Uuid,
    from: Option<TaskStatus>,
    to: TaskStatus,
) -> Result<(), StoreError> {
    let mut counts = txn.open_table(tables::TASK_COUNTS)?;
    for key in [owner.to_string().as_str(), tables::ALL_USERS] {
        let mut c: TaskCounts = read_json(&counts, "task_counts", key)?.unwrap_or_default();
        c.shift(from, to);
        counts.insert(key, encode(&c).as_slice())?;
    }
    Ok(())
}

impl Store {
    /// Commits a new task as `queued`, assigning its submit sequence. Durable on return.
    /// With an idempotency key that the owner claimed less than 24 h ago, nothing is written
    /// and the first task's id is returned instead.
    pub async fn insert_task(
        &self,
        mut task: Task,
        idempotency_key: Option<String>,
    ) -> Result<Inserted, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let owner = task.owner_id.to_string();
                if let Some(key) = &idempotency_key {
                    let mut keys = txn.open_table(tables::IDEMPOTENCY_KEYS)?;
                    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
                    if let Some(claim) = keys
                        .get((owner.as_str(), key.as_str()))?
                        .map(|v| v.value().to_vec())
                        && claim.len() == 24
                    {
                        let claimed =
                            u64::from_le_bytes(claim[16..24].try_into().expect("8 bytes"));
                        if now.saturating_sub(claimed) < IDEMPOTENCY_WINDOW_SECS {
                            let id = Uuid::from_slice(&claim[0..16]).expect("16 bytes");
                            return Ok(Inserted::Existing(id));
                        }
                    }
                    let mut claim = task.id.as_bytes().to_vec();
                    claim.extend_from_slice(&now.to_le_bytes());
                    keys.insert((owner.as_str(), key.as_str()), claim.as_slice())?;
                }
                let mut meta = txn.open_table(tables::META)?;
                let seq = meta
                    .get(tables::NEXT_TASK_SEQ)?
                    .map(|v| v.value())
                    .unwrap_or(1);
                meta.insert(tables::NEXT_TASK_SEQ, seq + 1)?;
                task.seq = seq;
                task.status = TaskStatus::Queued;
                let id = task.id.to_string();
                txn.open_table(tables::TASKS)?
                    .insert(id.as_str(), encode(&task).as_slice())?;
                txn.open_table(tables::TASKS_BY_OWNER)?
                    .insert((owner.as_str(), seq), id.as_str())?;
                txn.open_table(tables::ACTIVE_TASKS)?
                    .insert(seq, id.as_str())?;
            }
            shift_counts(&txn, task.owner_id, None, TaskStatus::Queued)?;
            txn.commit()?;
            Ok(Inserted::New(Box::new(task)))
        })
        .await
    }

    pub async fn task(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        self.get_json(tables::TASKS, id.to_string()).await
    }

    /// Writes `task` if the stored copy is still in status `from`; otherwise writes nothing
    /// and returns `false` (someone else moved it). A terminal status leaves the active set;
    /// `outcome` updates the agent's statistics in the same transaction.
    pub async fn transition_task(
        &self,
        task: Task,
        from: TaskStatus,
        outcome: Option<AgentOutcome>,
    ) -> Result<bool, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            {
                let id = task.id.to_string();
                let mut tasks = txn.open_table(tables::TASKS)?;
                let stored: Option<Task> = read_json(&tasks, "tasks", &id)?;
                if stored.map(|t| t.status) != Some(from) {
                    return Ok(false);
                }
                tasks.insert(id.as_str(), encode(&task).as_slice())?;
                if task.status.is_terminal() {
                    txn.open_table(tables::ACTIVE_TASKS)?.remove(task.seq)?;
                    index_finished(&txn, &task)?;
                }
                if let Some(outcome) = outcome {
                    let mut agents = txn.open_table(tables::AGENTS)?;
                    let key = outcome.agent_id.to_string();
                    if let Some(mut agent) = read_json::<Agent>(&agents, "agents", &key)? {
                        agent.stats.record(outcome.success, outcome.duration_ms);
                        agents.insert(key.as_str(), encode(&agent).as_slice())?;
                    }
                }
            }
            if task.status != from {
                shift_counts(&txn, task.owner_id, Some(from), task.status)?;
            }
            txn.commit()?;
            Ok(true)
        })
        .await
    }

    /// A page of one owner's tasks matching `filter`, newest first, starting below the submit
    /// sequence `before` (a cursor) and skipping `offset` matches. Also returns the number of
    /// matches in all when `count_all` (a full scan of the owner's tasks).
    pub async fn tasks_for_owner(
        &self,
        owner: Uuid,
        filter: TaskFilter,
        page: Page,
        count_all: bool,
    ) -> Result<(Vec<Task>, Option<u64>), StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let owner = owner.to_string();
            let index = txn.open_table(tables::TASKS_BY_OWNER)?;
            let tasks = txn.open_table(tables::TASKS)?;
            let upper = page.before.unwrap_or(u64::MAX);
            let mut found = Vec::with_capacity(page.limit);
            let (mut matched, mut skipped) = (0u64, 0usize);
            for entry in index
                .range((owner.as_str(), 0)..(owner.as_str(), upper))?
                .rev()
            {
                let (_, id) = entry?;
                let Some(task) = read_json::<Task>(&tasks, "tasks", id.value())? else {
                    continue;
                };
                if !filter.matches(&task) {
                    continue;
                }
                matched += 1;
                if skipped < page.offset {
                    skipped += 1;
                } else if found.len() < page.limit {
                    found.push(task);
                } else if !count_all {
                    break;
                }
            }
            Ok((found, count_all.then_some(matched)))
        })
        .await
    }

    /// Deletes finished tasks, oldest first, while more than `keep` are finished or they
    /// finished before `cutoff`. At most `batch` per call (one transaction); returns how many.
    pub async fn prune_finished(
        &self,
        keep: u64,
        cutoff: time::OffsetDateTime,
        batch: usize,
    ) -> Result<usize, StoreError> {
        let cutoff_ms = (cutoff.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        self.run(move |db| {
            let txn = db.begin_write()?;
            let mut pruned = Vec::new();
            {
                let mut finished = txn.open_table(tables::FINISHED_TASKS)?;
                let mut excess = finished.len()?.saturating_sub(keep);
                let mut doomed = Vec::new();
                for entry in finished.iter()? {
                    let (key, id) = entry?;
                    let (ms, seq) = key.value();
                    if excess == 0 && ms >= cutoff_ms || doomed.len() == batch {
                        break;
                    }
                    excess = excess.saturating_sub(1);
                    doomed.push(((ms, seq), id.value().to_owned()));
                }
                let mut tasks = txn.open_table(tables::TASKS)?;
                let mut by_owner = txn.open_table(tables::TASKS_BY_OWNER)?;
                for (key, id) in doomed {
                    finished.remove(key)?;
                    let Some(bytes) = tasks.remove(id.as_str())?.map(|v| v.value().to_vec()) else {
                        continue;
                    };
                    let task: Task = decode("tasks", &bytes)?;
                    by_owner.remove((task.owner_id.to_string().as_str(), task.seq))?;
                    pruned.push((task.owner_id, task.status));
                }
            }
            {
                let mut counts = txn.open_table(tables::TASK_COUNTS)?;
                for (owner, status) in &pruned {
                    for key in [owner.to_string().as_str(), tables::ALL_USERS] {
                        let mut c: TaskCounts =
                            read_json(&counts, "task_counts", key)?.unwrap_or_default();
                        c.remove(*status);
                        counts.insert(key, encode(&c).as_slice())?;
                    }
                }
            }
            txn.commit()?;
            Ok(pruned.len())
        })
        .await
    }

    /// Task counts for one user, or for everyone with `None`.
    pub async fn task_counts(&self, owner: Option<Uuid>) -> Result<TaskCounts, StoreError> {
        self.run(move |db| {
            let key = owner
                .map(|o| o.to_string())
                .unwrap_or_else(|| tables::ALL_USERS.to_owned());
            let txn = db.begin_read()?;
            Ok(
                read_json(&txn.open_table(tables::TASK_COUNTS)?, "task_counts", &key)?
                    .unwrap_or_default(),
            )
        })
        .await
    }

    /// Start-up recovery: every unfinished task in submit order. Tasks left `running` by a
    /// crash or an interrupted shutdown go back to `queued` in the same transaction, unless they
    /// have already started `max_starts` times: those fail, so a task that keeps taking the
    /// server down cannot do so forever.
    pub async fn recover_tasks(&self, max_starts: u32) -> Result<Vec<Recovered>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_write()?;
            let mut recovered = Vec::new();
            let mut moved = Vec::new();
            {
                let mut active = txn.open_table(tables::ACTIVE_TASKS)?;
                let mut tasks = txn.open_table(tables::TASKS)?;
                let entries: Vec<(u64, String)> = active
                    .iter()?
                    .map(|e| e.map(|(seq, id)| (seq.value(), id.value().to_owned())))
                    .collect::<Result<_, _>>()?;
                for (seq, id) in entries {
                    let Some(bytes) = tasks.get(id.as_str())?.map(|v| v.value().to_vec()) else {
                        active.remove(seq)?;
                        continue;
                    };
                    let mut task: Task = decode("tasks", &bytes)?;
                    let was_running = task.status == TaskStatus::Running;
                    // Runs cut short by a stop: starts that never produced an attempt (failover
                    // runs that ended normally do not count).
                    let interrupted = task.starts.saturating_sub(task.attempts.len() as u32);
                    if was_running && interrupted >= max_starts {
                        task.status = TaskStatus::Failed;
                        task.error = Some(format!(
                            "the server stopped while this task ran, {} times; not retried again",
                            task.starts
                        ));
                        task.completed_at = Some(time::OffsetDateTime::now_utc());
                        tasks.insert(id.as_str(), encode(&task).as_slice())?;
                        active.remove(seq)?;
                        index_finished(&txn, &task)?;
                        moved.push((task.owner_id, TaskStatus::Failed));
                        continue;
                    }
                    if was_running {
                        task.status = TaskStatus::Queued;
                        task.started_at = None;
                        tasks.insert(id.as_str(), encode(&task).as_slice())?;
                        moved.push((task.owner_id, TaskStatus::Queued));
                    }
                    recovered.push(Recovered {
                        task_id: task.id,
                        priority: task.priority,
                        seq: task.seq,
                        was_running,
                    });
                }
            }
            for (owner, to) in moved {
                shift_counts(&txn, owner, Some(TaskStatus::Running), to)?;
            }
            txn.commit()?;
            Ok(recovered)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::Priority;

    fn task(owner: Uuid) -> Task {
        Task {
            id: Uuid::new_v4(),
            owner_id: owner,
            status: TaskStatus::Queued,
            query: "q".into(),
            input: None,
            capabilities: Vec::new(),
            priority: Priority::Normal,
            budget: 1.0,
            timeout_secs: 30,
            constraints: None,
            agent_id: Uuid::nil(),
            agent_name: String::new(),
            price: 0.0,
            bids: Vec::new(),
            result: None,
            error: None,
            stderr: None,
            exit_code: None,
            pinned: false,
            deadline: None,
            attempts: Vec::new(),
            starts: 0,
            seq: 0,
            created_at: time::OffsetDateTime::now_utc(),
            started_at: None,
            completed_at: None,
            duration_ms: None,
        }
    }

    fn new(inserted: Inserted) -> Task {
        match inserted {
            Inserted::New(task) => *task,
            Inserted::Existing(id) => panic!("unexpected existing task {id}"),
        }
    }

    async fn start(store: &Store, mut t: Task, starts: u32) -> Task {
        t.status = TaskStatus::Running;
        t.starts = starts;
        assert!(
            store
                .transition_task(t.clone(), TaskStatus::Queued, None)
                .await
                .unwrap()
        );
        t
    }

    #[tokio::test]
    async fn recovery_requeues_running_tasks_until_they_used_their_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let owner = Uuid::new_v4();
        let queued = new(store.insert_task(task(owner), None).await.unwrap());
        let once = start(
            &store,
            new(store.insert_task(task(owner), None).await.unwrap()),
            1,
        )
        .await;
        let spent = start(
            &store,
            new(store.insert_task(task(owner), None).await.unwrap()),
            3,
        )
        .await;

        let recovered = store.recover_tasks(3).await.unwrap();
        let ids: Vec<(Uuid, bool)> = recovered
            .iter()
            .map(|r| (r.task_id, r.was_running))
            .collect();
        assert_eq!(
            ids,
            [(queued.id, false), (once.id, true)],
            "submit order, spent task left out"
        );
        assert_eq!(
            store.task(once.id).await.unwrap().unwrap().status,
            TaskStatus::Queued
        );
        let spent = store.task(spent.id).await.unwrap().unwrap();
        assert_eq!(spent.status, TaskStatus::Failed);
        assert!(spent.error.unwrap().contains("3 times"));
        let counts = store.task_counts(Some(owner)).await.unwrap();
        assert_eq!((counts.queued, counts.running, counts.failed), (2, 0, 1));
        assert_eq!(store.task_counts(None).await.unwrap(), counts);
        // Idempotent: a second recovery finds the same queued tasks and changes nothing.
        assert_eq!(store.recover_tasks(3).await.unwrap().len(), 2);
        assert_eq!(store.task_counts(Some(owner)).await.unwrap(), counts);
    }

    #[tokio::test]
    async fn transitions_apply_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let t = start(
            &store,
            new(store.insert_task(task(Uuid::new_v4()), None).await.unwrap()),
            1,
        )
        .await;
        let mut done = t.clone();
        done.status = TaskStatus::Completed;
        assert!(
            store
                .transition_task(done.clone(), TaskStatus::Running, None)
                .await
                .unwrap()
        );
        // A late, stale transition from `running` is refused.
        let mut late = t;
        late.status = TaskStatus::Failed;
        assert!(
            !store
                .transition_task(late, TaskStatus::Running, None)
                .await
                .unwrap()
        );
        assert_eq!(
            store.task(done.id).await.unwrap().unwrap().status,
            TaskStatus::Completed
        );
    }

    #[tokio::test]
    async fn retention_prunes_the_oldest_finished_tasks_and_their_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let owner = Uuid::new_v4();
        let mut finished = Vec::new();
        for _ in 0..4 {
            let t = start(
                &store,
                new(store.insert_task(task(owner), None).await.unwrap()),
                1,
            )
            .await;
            let mut done = t.clone();
            done.status = TaskStatus::Completed;
            done.completed_at = Some(time::OffsetDateTime::now_utc());
            assert!(
                store
                    .transition_task(done, TaskStatus::Running, None)
                    .await
                    .unwrap()
            );
            finished.push(t.id);
        }
        let queued = new(store.insert_task(task(owner), None).await.unwrap());
        let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(365);

        // Keep two: the two oldest go; unfinished tasks are never touched.
        assert_eq!(store.prune_finished(2, long_ago, 100).await.unwrap(), 2);
        assert!(store.task(finished[0]).await.unwrap().is_none());
        assert!(store.task(finished[1]).await.unwrap().is_none());
        assert!(store.task(finished[2]).await.unwrap().is_some());
        assert!(store.task(queued.id).await.unwrap().is_some());
        let page = Page {
            before: None,
            offset: 0,
            limit: 10,
        };
        let (listed, _) = store
            .tasks_for_owner(owner, TaskFilter::default(), page, false)
            .await
            .unwrap();
        assert_eq!(listed.len(), 3);
        let counts = store.task_counts(Some(owner)).await.unwrap();
        assert_eq!((counts.completed, counts.queued, counts.total()), (2, 1, 3));

        // An age cutoff in the future prunes every finished task.
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);
        assert_eq!(store.prune_finished(1_000, later, 100).await.unwrap(), 2);
        assert_eq!(store.task_counts(None).await.unwrap().total(), 1);
    }
}
