//! Task records, the per-owner index, the active set and the status counters.

use std::collections::HashMap;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};
use uuid::Uuid;

use super::{Store, StoreError, encode, read_json, tables};
use crate::records::{
    Agent, AgentOutcome, DailyUsage, Page, Task, TaskCounts, TaskFilter, TaskStatus, codec,
};

/// What [`Store::tasks_for_owner`] found.
#[derive(Debug)]
pub struct OwnerPage {
    pub tasks: Vec<Task>,
    /// More matches follow this page.
    pub more: bool,
    /// All matches, when counted.
    pub matched: Option<u64>,
}

/// How long an idempotency key binds to its first task.
const IDEMPOTENCY_WINDOW_SECS: u64 = 24 * 60 * 60;

fn unix_now() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

/// The task id of a stored claim (see [`tables::IDEMPOTENCY_KEYS`]) that still binds at `now`.
fn live_claim(claim: &[u8], now: u64) -> Option<Uuid> {
    let (id, claimed) = (claim.get(0..16)?, claim.get(16..24)?);
    let claimed = u64::from_le_bytes(claimed.try_into().ok()?);
    (now.saturating_sub(claimed) < IDEMPOTENCY_WINDOW_SECS).then(|| Uuid::from_slice(id).ok())?
}

/// An `Idempotency-Key` bound to the task it created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdempotencyClaim {
    pub owner: Uuid,
    pub key: String,
    pub task_id: Uuid,
    /// Unix seconds.
    pub claimed_at: u64,
}

/// Everything one apply step writes, in one transaction.
#[derive(Debug, Default)]
pub struct TaskBatch {
    /// The latest state of each changed task.
    pub writes: Vec<Task>,
    pub claims: Vec<IdempotencyClaim>,
    pub outcomes: Vec<AgentOutcome>,
    /// The next submit sequence number to hand out.
    pub next_seq: u64,
    /// Sync to disk on commit (a checkpoint); otherwise the commit is only visible, and a
    /// crash rolls it back to the last synced one (the WAL still holds it).
    pub durable: bool,
}

/// The task stored under `id` (binary rows, or JSON ones of older files).
pub(super) fn read_task(
    tasks: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Task>, StoreError> {
    Ok(tasks
        .get(id)?
        .map(|row| codec::decode_row(row.value()))
        .transpose()?)
}

/// The retention index key of a task that just reached a terminal state: (finished at, in
/// Unix ms; seq).
fn finished_key(task: &Task) -> (u64, u64) {
    let at = task
        .state
        .completed_at
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    let ms = (at.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    (ms, task.seq)
}

/// A status move of one task: from (`None`: new) to (`None`: deleted).
type Shift = (Option<TaskStatus>, Option<TaskStatus>);
/// A status move of one owner's task.
type Move = (Uuid, Option<TaskStatus>, Option<TaskStatus>);

/// Applies status moves to the per-owner and server-wide counters: one read and write per
/// owner, however many moves. The one place the counters change, always in the transaction
/// that writes or deletes the rows they count.
fn count_moves(txn: &WriteTransaction, moves: &[Move]) -> Result<(), StoreError> {
    let mut by_key: HashMap<String, Vec<Shift>> = HashMap::new();
    for &(owner, from, to) in moves {
        if from == to {
            continue;
        }
        for key in [Some(owner), None].map(tables::owner_key) {
            by_key.entry(key).or_default().push((from, to));
        }
    }
    if by_key.is_empty() {
        return Ok(());
    }
    let mut counts = txn.open_table(tables::TASK_COUNTS)?;
    for (key, moves) in by_key {
        let mut c: TaskCounts = read_json(&counts, "task_counts", &key)?.unwrap_or_default();
        for (from, to) in moves {
            c.shift(from, to);
        }
        counts.insert(key.as_str(), encode(&c).as_slice())?;
    }
    Ok(())
}

/// Counts a completed task in [`tables::COMPLETED_RUNS`]: its owner may now review its agent.
pub(super) fn count_completed_run(
    completed: &mut redb::Table<(&'static str, &'static str), u64>,
    task: &Task,
) -> Result<(), StoreError> {
    let (owner, agent) = (task.owner_id.to_string(), task.state.agent_id.to_string());
    let key = (owner.as_str(), agent.as_str());
    let runs = completed.get(key)?.map_or(0, |v| v.value());
    completed.insert(key, runs + 1)?;
    Ok(())
}

/// The task tables one apply step writes, open in its transaction.
struct TaskTables<'t> {
    tasks: redb::Table<'t, &'static str, &'static [u8]>,
    by_owner: redb::Table<'t, (&'static str, u64), &'static str>,
    active: redb::Table<'t, u64, &'static str>,
    finished: redb::Table<'t, (u64, u64), &'static str>,
    completed: redb::Table<'t, (&'static str, &'static str), u64>,
}

impl<'t> TaskTables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            tasks: txn.open_table(tables::TASKS)?,
            by_owner: txn.open_table(tables::TASKS_BY_OWNER)?,
            active: txn.open_table(tables::ACTIVE_TASKS)?,
            finished: txn.open_table(tables::FINISHED_TASKS)?,
            completed: txn.open_table(tables::COMPLETED_RUNS)?,
        })
    }

    /// Writes a task's row and indexes; returns the status the replaced row had (`None`: the
    /// task is new to the store). The indexes follow from that status, never from what a
    /// caller believes the store holds.
    fn write(&mut self, task: &Task) -> Result<Option<TaskStatus>, StoreError> {
        let id = task.id.to_string();
        let replaced = match self
            .tasks
            .insert(id.as_str(), codec::encode_row(task).as_slice())?
            .map(|row| codec::row_status(row.value()))
        {
            Some(Ok(status)) => Some(status),
            None => None,
            // A damaged row is replaced, not allowed to stop every later batch; the task's
            // old status is unknown, so its counters may be one off.
            Some(Err(e)) => {
                tracing::error!(task_id = %task.id, error = %e, "replaced an undecodable task row; its status counts may be off by one");
                None
            }
        };
        let status = task.state.status;
        if replaced.is_none() {
            self.by_owner
                .insert((task.owner_id.to_string().as_str(), task.seq), id.as_str())?;
        }
        let was_terminal = replaced.is_some_and(TaskStatus::is_terminal);
        if status == TaskStatus::Completed && !was_terminal {
            count_completed_run(&mut self.completed, task)?;
        }
        if status.is_terminal() && !was_terminal {
            // A task new to the store was never in the active set.
            if replaced.is_some() {
                self.active.remove(task.seq)?;
            }
            self.finished.insert(finished_key(task), id.as_str())?;
        } else if replaced.is_none() && !status.is_terminal() {
            self.active.insert(task.seq, id.as_str())?;
        }
        Ok(replaced)
    }
}

/// Folds run outcomes into their agents' statistics.
fn record_outcomes(txn: &WriteTransaction, outcomes: &[AgentOutcome]) -> Result<(), StoreError> {
    let mut agents = txn.open_table(tables::AGENTS)?;
    let mut by_agent: HashMap<Uuid, Vec<&AgentOutcome>> = HashMap::new();
    for outcome in outcomes {
        by_agent.entry(outcome.agent_id).or_default().push(outcome);
    }
    for (agent_id, outcomes) in by_agent {
        let key = agent_id.to_string();
        if let Some(mut agent) = read_json::<Agent>(&agents, "agents", &key)? {
            for o in outcomes {
                agent.stats.record(o.success, o.duration_ms);
            }
            agents.insert(key.as_str(), encode(&agent).as_slice())?;
        }
    }
    Ok(())
}

/// Binds idempotency keys to their tasks.
fn write_claims(txn: &WriteTransaction, claims: &[IdempotencyClaim]) -> Result<(), StoreError> {
    let mut keys = txn.open_table(tables::IDEMPOTENCY_KEYS)?;
    for claim in claims {
        let mut value = claim.task_id.as_bytes().to_vec();
        value.extend_from_slice(&claim.claimed_at.to_le_bytes());
        keys.insert(
            (claim.owner.to_string().as_str(), claim.key.as_str()),
            value.as_slice(),
        )?;
    }
    Ok(())
}

/// Raises the stored next submit sequence to `next_seq`.
fn raise_next_seq(txn: &WriteTransaction, next_seq: u64) -> Result<(), StoreError> {
    let mut meta = txn.open_table(tables::META)?;
    let stored = meta
        .get(tables::NEXT_TASK_SEQ)?
        .map(|v| v.value())
        .unwrap_or(1);
    if next_seq > stored {
        meta.insert(tables::NEXT_TASK_SEQ, next_seq)?;
    }
    Ok(())
}

impl Store {
    /// Writes a batch of task states (the WAL's materialised view) with their indexes,
    /// counters, idempotency claims and agent statistics, in one transaction.
    pub async fn apply_tasks(&self, batch: TaskBatch) -> Result<(), StoreError> {
        self.run(move |db| {
            let mut txn = db.begin_write()?;
            if !batch.durable {
                txn.set_durability(redb::Durability::None)
                    .map_err(|e| StoreError::Db(redb::Error::from(e)))?;
            }
            let mut moves = Vec::with_capacity(batch.writes.len());
            let mut newly_finished = Vec::new();
            {
                let mut tables = TaskTables::open(&txn)?;
                for task in &batch.writes {
                    let replaced = tables.write(task)?;
                    let status = task.state.status;
                    if status.is_terminal() && !replaced.is_some_and(TaskStatus::is_terminal) {
                        newly_finished.push(task);
                    }
                    moves.push((task.owner_id, replaced, Some(status)));
                }
            }
            write_claims(&txn, &batch.claims)?;
            record_outcomes(&txn, &batch.outcomes)?;
            raise_next_seq(&txn, batch.next_seq)?;
            count_moves(&txn, &moves)?;
            super::analytics::count_finished(&txn, &newly_finished)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn task(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            read_task(&txn.open_table(tables::TASKS)?, &id.to_string())
        })
        .await
    }

    /// The stored tasks among `ids`.
    pub async fn tasks_by_id(&self, ids: Vec<Uuid>) -> Result<Vec<Task>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let tasks = txn.open_table(tables::TASKS)?;
            let mut found = Vec::new();
            for id in ids {
                if let Some(task) = read_task(&tasks, &id.to_string())? {
                    found.push(task);
                }
            }
            Ok(found)
        })
        .await
    }

    /// Every task not in a terminal state, in submit order. Start-up loads these.
    pub async fn unfinished_tasks(&self) -> Result<Vec<Task>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let active = txn.open_table(tables::ACTIVE_TASKS)?;
            let tasks = txn.open_table(tables::TASKS)?;
            let mut found = Vec::new();
            for entry in active.iter()? {
                let (_, id) = entry?;
                if let Some(task) = read_task(&tasks, id.value())?
                    && !task.state.status.is_terminal()
                {
                    found.push(task);
                }
            }
            Ok(found)
        })
        .await
    }

    /// Each owner's use of their daily quotas from the tasks that finished at or after
    /// `midnight` (see [`DailyUsage::count`]): a range of the retention index, so it costs the
    /// tasks finished since then. Unfinished tasks are not in it (start-up has them).
    pub async fn usage_since(
        &self,
        midnight: time::OffsetDateTime,
    ) -> Result<HashMap<Uuid, DailyUsage>, StoreError> {
        let from_ms = (midnight.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        self.run(move |db| {
            let txn = db.begin_read()?;
            let finished = txn.open_table(tables::FINISHED_TASKS)?;
            let tasks = txn.open_table(tables::TASKS)?;
            let mut usage: HashMap<Uuid, DailyUsage> = HashMap::new();
            for entry in finished.range((from_ms, 0)..)? {
                let (_, id) = entry?;
                if let Some(task) = read_task(&tasks, id.value())? {
                    usage
                        .entry(task.owner_id)
                        .or_default()
                        .count(&task, midnight);
                }
            }
            Ok(usage)
        })
        .await
    }

    /// The next submit sequence number recorded by the last applied batch.
    pub async fn next_task_seq(&self) -> Result<u64, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(tables::META)?;
            Ok(meta
                .get(tables::NEXT_TASK_SEQ)?
                .map(|v| v.value())
                .unwrap_or(1))
        })
        .await
    }

    /// The task `owner` created with `key`, if that was less than 24 h ago.
    pub async fn idempotency_claim(
        &self,
        owner: Uuid,
        key: String,
    ) -> Result<Option<Uuid>, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let keys = txn.open_table(tables::IDEMPOTENCY_KEYS)?;
            let claim = keys.get((owner.to_string().as_str(), key.as_str()))?;
            Ok(claim.and_then(|v| live_claim(v.value(), unix_now())))
        })
        .await
    }

    /// Deletes idempotency claims older than 24 h; returns how many.
    pub async fn prune_idempotency_keys(&self) -> Result<u64, StoreError> {
        self.run(move |db| {
            let now = unix_now();
            let txn = db.begin_write()?;
            let pruned;
            {
                let mut keys = txn.open_table(tables::IDEMPOTENCY_KEYS)?;
                let before = keys.len()?;
                keys.retain(|_, claim| live_claim(claim, now).is_some())?;
                pruned = before - keys.len()?;
            }
            if pruned == 0 {
                // Nothing to commit: an idle server does no disk I/O here.
                txn.abort()?;
            } else {
                txn.commit()?;
            }
            Ok(pruned)
        })
        .await
    }

    /// A page of one owner's tasks matching `filter`, newest first, starting below the submit
    /// sequence `before` (a cursor) and skipping `offset` matches. Also returns whether more
    /// matches follow the page, and the number of all matches when `count_all` (a scan of
    /// all the owner's tasks).
    pub async fn tasks_for_owner(
        &self,
        owner: Uuid,
        filter: TaskFilter,
        page: Page,
        count_all: bool,
    ) -> Result<OwnerPage, StoreError> {
        self.run(move |db| {
            let txn = db.begin_read()?;
            let owner = owner.to_string();
            let index = txn.open_table(tables::TASKS_BY_OWNER)?;
            let tasks = txn.open_table(tables::TASKS)?;
            let before = page.before.unwrap_or(u64::MAX);
            // Counting looks at newer tasks than the cursor too.
            let upper = if count_all { u64::MAX } else { before };
            let mut found = Vec::with_capacity(page.limit);
            let (mut matched, mut skipped, mut more) = (0u64, 0usize, false);
            for entry in index
                .range((owner.as_str(), 0)..(owner.as_str(), upper))?
                .rev()
            {
                let (key, id) = entry?;
                let Some(task) = read_task(&tasks, id.value())? else {
                    continue;
                };
                if !filter.matches(&task) {
                    continue;
                }
                matched += 1;
                if key.value().1 >= before {
                    continue;
                }
                if skipped < page.offset {
                    skipped += 1;
                } else if found.len() < page.limit {
                    found.push(task);
                } else {
                    more = true;
                    if !count_all {
                        break;
                    }
                }
            }
            Ok(OwnerPage {
                tasks: found,
                more,
                matched: count_all.then_some(matched),
            })
        })
        .await
    }

    /// Deletes finished tasks, oldest first, while more than `keep` are finished or they
    /// finished before `cutoff`; never one in `keep_ids` (tasks whose end the WAL has not
    /// checkpointed yet: a replay would bring them back). At most `batch` per call (one
    /// transaction); returns how many.
    pub async fn prune_finished(
        &self,
        keep: u64,
        cutoff: time::OffsetDateTime,
        keep_ids: std::collections::HashSet<Uuid>,
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
                    let id = id.value().to_owned();
                    if Uuid::parse_str(&id).is_ok_and(|id| keep_ids.contains(&id)) {
                        continue;
                    }
                    excess = excess.saturating_sub(1);
                    doomed.push(((ms, seq), id));
                }
                let mut tasks = txn.open_table(tables::TASKS)?;
                let mut by_owner = txn.open_table(tables::TASKS_BY_OWNER)?;
                for (key, id) in doomed {
                    finished.remove(key)?;
                    let Some(bytes) = tasks.remove(id.as_str())?.map(|v| v.value().to_vec()) else {
                        continue;
                    };
                    let task = codec::decode_row(&bytes)?;
                    by_owner.remove((task.owner_id.to_string().as_str(), task.seq))?;
                    pruned.push((task.owner_id, Some(task.state.status), None));
                }
            }
            count_moves(&txn, &pruned)?;
            if pruned.is_empty() {
                txn.abort()?;
            } else {
                txn.commit()?;
            }
            Ok(pruned.len())
        })
        .await
    }

    /// Task counts for one user, or for everyone with `None`.
    pub async fn task_counts(&self, owner: Option<Uuid>) -> Result<TaskCounts, StoreError> {
        self.run(move |db| {
            let key = tables::owner_key(owner);
            let txn = db.begin_read()?;
            Ok(
                read_json(&txn.open_table(tables::TASK_COUNTS)?, "task_counts", &key)?
                    .unwrap_or_default(),
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(owner: Uuid, seq: u64) -> Task {
        let mut task = Task {
            seq,
            ..Task::blank(owner)
        };
        task.state.version = 1;
        task
    }

    /// Writes the latest states of `tasks` in one batch.
    async fn apply(store: &Store, tasks: &[&Task]) {
        let batch = TaskBatch {
            writes: tasks.iter().map(|t| (*t).clone()).collect(),
            next_seq: tasks.iter().map(|t| t.seq + 1).max().unwrap_or(1),
            ..TaskBatch::default()
        };
        store.apply_tasks(batch).await.unwrap();
    }

    fn moved(t: &Task, status: TaskStatus) -> Task {
        let mut t = t.clone();
        t.state.status = status;
        t.state.version += 1;
        if status.is_terminal() {
            t.state.completed_at = Some(time::OffsetDateTime::now_utc());
        }
        t
    }

    #[tokio::test]
    async fn batches_keep_indexes_and_counters_in_step_with_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let owner = Uuid::new_v4();
        let (a, b) = (task(owner, 1), task(owner, 2));
        apply(&store, &[&a, &b]).await;
        let a_run = moved(&a, TaskStatus::Running);
        let b_done = moved(&moved(&b, TaskStatus::Running), TaskStatus::Completed);
        // One batch may carry a task straight from queued to completed.
        apply(&store, &[&a_run, &b_done]).await;
        let counts = store.task_counts(Some(owner)).await.unwrap();
        assert_eq!((counts.queued, counts.running, counts.completed), (0, 1, 1));
        assert_eq!(store.task_counts(None).await.unwrap(), counts);
        let unfinished: Vec<Uuid> = store
            .unfinished_tasks()
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(unfinished, [a.id]);
        assert_eq!(store.next_task_seq().await.unwrap(), 3);
        assert_eq!(
            store.task(b.id).await.unwrap().unwrap().state.status,
            TaskStatus::Completed
        );
        // Counts move from the row each write replaces: writing again a state the store holds
        // leaves them right.
        apply(&store, &[&b_done, &a_run, &a_run]).await;
        assert_eq!(store.task_counts(Some(owner)).await.unwrap(), counts);
        let deleted = store
            .prune_finished(0, time::OffsetDateTime::now_utc(), Default::default(), 10)
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        let counts = store.task_counts(None).await.unwrap();
        assert_eq!((counts.queued, counts.running, counts.completed), (0, 1, 0));
    }

    #[tokio::test]
    async fn a_finished_task_is_counted_once_in_its_analytics_cells() {
        use crate::records::{HOUR, MINUTE, finished_at};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let store = Store::open(&path).unwrap();
        let owner = Uuid::new_v4();
        let mut t = task(owner, 1);
        t.state.agent_id = Uuid::new_v4();
        t.state.agent_name = "Echo".into();
        t.state.price = 0.25;
        apply(&store, &[&t]).await;
        let mut done = moved(&moved(&t, TaskStatus::Running), TaskStatus::Completed);
        done.state.duration_ms = Some(40);
        apply(&store, &[&done]).await;
        // A replayed write of a state the store already holds changes no count.
        apply(&store, &[&done]).await;
        let at = finished_at(&done);
        for owner in [Some(owner), None] {
            for width in [MINUTE, HOUR] {
                let cells = store
                    .analytics_cells(owner, width, 0, u64::MAX)
                    .await
                    .unwrap();
                assert_eq!(cells.len(), 1, "{owner:?} {width}");
                let (start, agent, cell) = &cells[0];
                assert_eq!(*start, at / u64::from(width) * u64::from(width));
                assert_eq!(*agent, t.state.agent_id);
                assert_eq!(
                    (cell.completed, cell.spend, cell.duration_ms),
                    (1, 0.25, 40)
                );
                assert_eq!(cell.agent_name, "Echo");
            }
        }
        // A file from before analytics (schema 3) gets its finished tasks counted at open.
        {
            let txn = store.db.begin_write().unwrap();
            txn.delete_table(tables::ANALYTICS).unwrap();
            txn.open_table(tables::META)
                .unwrap()
                .insert(tables::SCHEMA_VERSION, 3)
                .unwrap();
            txn.commit().unwrap();
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        let cells = store
            .analytics_cells(Some(owner), MINUTE, 0, u64::MAX)
            .await
            .unwrap();
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].2.completed, 1);
        // Retention keeps hour cells longer than minute cells.
        let pruned = store
            .prune_analytics(at + crate::records::MINUTE_CELLS_KEPT + 3_600)
            .await
            .unwrap();
        assert_eq!(pruned, 2, "both owners' minute cells");
        let hours = store
            .analytics_cells(Some(owner), HOUR, 0, u64::MAX)
            .await
            .unwrap();
        assert_eq!(hours.len(), 1);
    }

    #[tokio::test]
    async fn a_schema_1_file_opens_and_its_json_task_rows_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.redb");
        let old = task(Uuid::new_v4(), 1);
        {
            let store = Store::open(&path).unwrap();
            let txn = store.db.begin_write().unwrap();
            {
                let mut meta = txn.open_table(tables::META).unwrap();
                meta.insert(tables::SCHEMA_VERSION, 1).unwrap();
                let mut tasks = txn.open_table(tables::TASKS).unwrap();
                let row = serde_json::to_vec(&old).unwrap();
                tasks
                    .insert(old.id.to_string().as_str(), row.as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.task(old.id).await.unwrap().unwrap().seq, 1);
        let txn = store.db.begin_read().unwrap();
        let meta = txn.open_table(tables::META).unwrap();
        let version = meta.get(tables::SCHEMA_VERSION).unwrap().unwrap().value();
        assert_eq!(
            version,
            crate::store::CURRENT_SCHEMA,
            "marked so older builds refuse it"
        );
    }

    #[tokio::test]
    async fn idempotency_claims_bind_for_a_day_then_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let owner = Uuid::new_v4();
        let (fresh, stale) = (Uuid::new_v4(), Uuid::new_v4());
        let claim = |key: &str, task_id, age: u64| IdempotencyClaim {
            owner,
            key: key.into(),
            task_id,
            claimed_at: unix_now() - age,
        };
        let batch = TaskBatch {
            claims: vec![
                claim("fresh", fresh, 60),
                claim("stale", stale, IDEMPOTENCY_WINDOW_SECS + 1),
            ],
            ..TaskBatch::default()
        };
        store.apply_tasks(batch).await.unwrap();
        let lookup = |key: &str| store.idempotency_claim(owner, key.to_owned());
        assert_eq!(lookup("fresh").await.unwrap(), Some(fresh));
        assert_eq!(lookup("stale").await.unwrap(), None);
        assert_eq!(
            store
                .idempotency_claim(Uuid::new_v4(), "fresh".into())
                .await
                .unwrap(),
            None,
            "keys are per user"
        );
        assert_eq!(store.prune_idempotency_keys().await.unwrap(), 1);
        assert_eq!(lookup("fresh").await.unwrap(), Some(fresh));
    }

    #[tokio::test]
    async fn retention_prunes_the_oldest_finished_tasks_and_their_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let owner = Uuid::new_v4();
        let mut finished = Vec::new();
        for seq in 1..=4 {
            let t = task(owner, seq);
            apply(&store, &[&t]).await;
            let done = moved(&t, TaskStatus::Completed);
            apply(&store, &[&done]).await;
            finished.push(t.id);
        }
        let queued = task(owner, 5);
        apply(&store, &[&queued]).await;
        let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(365);
        let later = time::OffsetDateTime::now_utc() + time::Duration::seconds(1);

        // Keep two: the two oldest go, but not one the WAL could bring back; unfinished tasks
        // are never touched.
        let keep = std::collections::HashSet::from([finished[0]]);
        assert_eq!(
            store.prune_finished(2, long_ago, keep, 100).await.unwrap(),
            2
        );
        assert!(store.task(finished[0]).await.unwrap().is_some());
        assert_eq!(
            store
                .prune_finished(1, long_ago, Default::default(), 100)
                .await
                .unwrap(),
            1,
            "once it may go, the oldest goes first"
        );
        assert!(store.task(finished[0]).await.unwrap().is_none());
        assert!(store.task(finished[1]).await.unwrap().is_none());
        assert!(store.task(finished[2]).await.unwrap().is_none());
        assert!(store.task(finished[3]).await.unwrap().is_some());
        assert!(store.task(queued.id).await.unwrap().is_some());
        let page = Page {
            before: None,
            offset: 0,
            limit: 10,
        };
        let listed = store
            .tasks_for_owner(owner, TaskFilter::default(), page, false)
            .await
            .unwrap();
        assert_eq!((listed.tasks.len(), listed.more), (2, false));
        let counts = store.task_counts(Some(owner)).await.unwrap();
        assert_eq!((counts.completed, counts.queued, counts.total()), (1, 1, 2));

        // An age cutoff in the future prunes every finished task.
        assert_eq!(
            store
                .prune_finished(1_000, later, Default::default(), 100)
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.task_counts(None).await.unwrap().total(), 1);
    }
}
