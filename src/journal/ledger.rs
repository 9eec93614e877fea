//! The ledger, the embedded [`TaskJournal`]: the live state of every task that is unfinished
//! or not yet applied to the store, journaled to the write-ahead log and applied to redb in
//! batches.
//!
//! Writes: every change is a compare-and-set on the task's in-memory status under one std
//! Mutex (held for a map operation and a channel send, never across an await). The change's
//! WAL record is queued while the lock is held, so the log's order is the order of the
//! changes. A submit returns only once its record is on disk; the WAL's group commit makes one
//! `fdatasync` cover every record that queued meanwhile.
//!
//! The store is a materialised view: the applier (one tokio task; redb work on the blocking
//! pool) writes the latest state of every changed task in one transaction, not synced itself,
//! [`APPLY_DELAY`] after a change (or at once when a reader asks). Every [`CHECKPOINT_EVERY`]
//! it commits a synced transaction and checkpoints the WAL there, deleting old segments, so
//! the log stays bounded.
//!
//! Reads never see a change before it is durable: a task still in memory is answered from
//! memory once its latest record is on disk (at most one group commit away). Listings and
//! counters read the store after [`Ledger::settled`], which waits until the store holds every
//! change made before the call.
//!
//! Recovery: the records after the WAL's checkpoint are replayed over the stored rows; each is
//! applied only if its task version is newer than the row's, so replaying twice (a crash
//! between the store's sync and the WAL checkpoint) changes nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::wal::{Synced, Wal, WalOptions};
use super::{Durable, JournalError, Retention, Submitted, TaskJournal, TaskPage};
use crate::records::{
    AgentOutcome, DailyUsage, Page, PlacedCell, Task, TaskChange, TaskCounts, TaskFilter,
    TaskState, TaskStatus, codec,
};
use crate::store::{IdempotencyClaim, Store, StoreError, TaskBatch};

/// How often the applier makes the store durable and checkpoints the WAL. The store's sync
/// writes out everything applied since the last one, and while that burst is on the disk a
/// WAL group commit waits behind it: every 2 s, a burst held submits up to 20-40 ms at 8,000
/// tasks/s; every 0.5 s the bursts are a quarter as large (p99 submit 12-25 ms instead of
/// 37-300 ms, `cargo bench --bench e2e_load -- 30000 64 8000`). Shorter was erratic.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// How long the applier lets changes gather before writing them to the store, so a task that
/// is submitted, run and finished meanwhile is written once. A reader that needs the store
/// current ([`Ledger::settled`]) cuts the wait short.
pub const APPLY_DELAY: Duration = Duration::from_millis(20);

/// Finished tasks deleted per transaction by retention.
const PRUNE_BATCH: usize = 10_000;

// WAL record payloads (the log frames them; see [`super::wal`]). The first byte is the kind;
// `task` and `uuid id · state` are the binary encodings of [`codec`], `x?` is a 0/1 flag then
// `x`, integers are little-endian.
//
// kind 4, snapshot: the whole task, as submitted, and the idempotency claim riding on it.
//   task · claim?    claim = uuid owner · u32 len · key bytes · uuid task_id
//                            · u64 claimed_at (unix s)
//
// kind 5, changed: any later change but a start; the submission is not repeated.
//   uuid id · state · outcome?    outcome = uuid agent_id · u8 success · u64 duration_ms
//
// kind 2, started: a worker took the task (the hot path, so the fewest bytes).
//   uuid id · u64 version after the change · u32 starts · i64 started_at (unix ns)
//   (37 bytes in all)
//
// Logs written before the binary encoding hold kinds 1 and 3, read still: the snapshot and
// the change as JSON, `{"task": Task, "claim": IdempotencyClaim | null, "outcome":
// AgentOutcome | null}` and `{"state": {"id": …, TaskState}, "outcome": AgentOutcome | null}`.

const SNAPSHOT_JSON: u8 = 1;
const STARTED: u8 = 2;
const CHANGED_JSON: u8 = 3;
const SNAPSHOT: u8 = 4;
const CHANGED: u8 = 5;
const STARTED_LEN: usize = 37;

#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    task: Task,
    claim: Option<IdempotencyClaim>,
    /// Only in kind 1 records of older logs.
    outcome: Option<AgentOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Started {
    id: Uuid,
    version: u64,
    starts: u32,
    started_at: OffsetDateTime,
}

struct Changed {
    id: Uuid,
    state: TaskState,
    outcome: Option<AgentOutcome>,
}

/// A kind 3 record: [`Changed`] as JSON, the id inside the state.
#[derive(serde::Deserialize)]
struct ChangedJson {
    state: IdentifiedState,
    outcome: Option<AgentOutcome>,
}

#[derive(serde::Deserialize)]
struct IdentifiedState {
    id: Uuid,
    #[serde(flatten)]
    state: TaskState,
}

impl From<ChangedJson> for Changed {
    fn from(c: ChangedJson) -> Self {
        Self {
            id: c.state.id,
            state: c.state.state,
            outcome: c.outcome,
        }
    }
}

enum Change {
    Snapshot(Box<Snapshot>),
    Started(Started),
    Changed(Box<Changed>),
}

impl Change {
    fn task_id(&self) -> Uuid {
        match self {
            Change::Snapshot(s) => s.task.id,
            Change::Started(s) => s.id,
            Change::Changed(c) => c.id,
        }
    }
}

fn encode_snapshot(task: &Task, claim: Option<&IdempotencyClaim>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + task.query.len());
    out.push(SNAPSHOT);
    codec::put_task(&mut out, task);
    codec::Writer(&mut out).opt(claim, |w, c| {
        w.uuid(c.owner);
        w.str(&c.key);
        w.uuid(c.task_id);
        w.u64(c.claimed_at);
    });
    out
}

/// A change of task `id` to `state`, with the run's outcome if it ended one.
fn encode_changed(id: Uuid, state: &TaskState, outcome: Option<&AgentOutcome>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(CHANGED);
    codec::put_state(&mut out, id, state);
    codec::Writer(&mut out).opt(outcome, |w, o| {
        w.uuid(o.agent_id);
        w.u8(o.success as u8);
        w.u64(o.duration_ms);
    });
    out
}

fn encode_started(s: &Started) -> Vec<u8> {
    let mut out = Vec::with_capacity(STARTED_LEN);
    out.push(STARTED);
    out.extend_from_slice(s.id.as_bytes());
    out.extend_from_slice(&s.version.to_le_bytes());
    out.extend_from_slice(&s.starts.to_le_bytes());
    let nanos = s.started_at.unix_timestamp_nanos() as i64;
    out.extend_from_slice(&nanos.to_le_bytes());
    out
}

fn decode(payload: &[u8]) -> Result<Change, JournalError> {
    let bad = |e: codec::CodecError| JournalError::BadRecord(e.to_string());
    let json = |e: serde_json::Error| JournalError::BadRecord(e.to_string());
    let mut r = codec::Reader::new(payload.get(1..).unwrap_or_default());
    let change = match payload.first() {
        Some(&SNAPSHOT) => {
            let task = codec::read_task(&mut r).map_err(bad)?;
            let claim = r
                .opt(|r| {
                    let owner = r.uuid()?;
                    let key = r.str()?;
                    Ok(IdempotencyClaim {
                        owner,
                        key,
                        task_id: r.uuid()?,
                        claimed_at: r.u64()?,
                    })
                })
                .map_err(bad)?;
            Change::Snapshot(Box::new(Snapshot {
                task,
                claim,
                outcome: None,
            }))
        }
        Some(&CHANGED) => {
            let (id, state) = codec::read_state(&mut r).map_err(bad)?;
            let outcome = r
                .opt(|r| {
                    Ok(AgentOutcome {
                        agent_id: r.uuid()?,
                        success: r.bool()?,
                        duration_ms: r.u64()?,
                    })
                })
                .map_err(bad)?;
            Change::Changed(Box::new(Changed { id, state, outcome }))
        }
        Some(&STARTED) if payload.len() == STARTED_LEN => {
            let field = |range: std::ops::Range<usize>| &payload[range];
            let nanos = i64::from_le_bytes(field(29..37).try_into().expect("8 bytes"));
            return Ok(Change::Started(Started {
                id: Uuid::from_slice(field(1..17)).expect("16 bytes"),
                version: u64::from_le_bytes(field(17..25).try_into().expect("8 bytes")),
                starts: u32::from_le_bytes(field(25..29).try_into().expect("4 bytes")),
                started_at: OffsetDateTime::from_unix_timestamp_nanos(nanos as i128)
                    .map_err(|e| JournalError::BadRecord(e.to_string()))?,
            }));
        }
        Some(&SNAPSHOT_JSON) => {
            return serde_json::from_slice(&payload[1..])
                .map(|s| Change::Snapshot(Box::new(s)))
                .map_err(json);
        }
        Some(&CHANGED_JSON) => {
            return serde_json::from_slice::<ChangedJson>(&payload[1..])
                .map(|c| Change::Changed(Box::new(c.into())))
                .map_err(json);
        }
        other => {
            return Err(JournalError::BadRecord(format!(
                "unknown kind {other:?} ({} bytes)",
                payload.len()
            )));
        }
    };
    r.finish().map_err(bad)?;
    Ok(change)
}

/// A task in memory.
struct Entry {
    task: Task,
    /// Changed since the last apply; its id is in [`Live::dirty`].
    dirty: bool,
    /// The WAL number of the record of its latest change (0: loaded at start, so durable).
    record: u64,
}

#[derive(Default)]
struct Live {
    /// Boxed: a task is a few hundred bytes, and the map rehashes as it grows.
    tasks: HashMap<Uuid, Box<Entry>>,
    dirty: Vec<Uuid>,
    /// Claims not yet in the store, by (owner, key).
    claims: HashMap<(Uuid, String), IdempotencyClaim>,
    outcomes: Vec<AgentOutcome>,
    next_seq: u64,
    /// Bumped whenever claims move from memory to the store: a submit that looked in the store
    /// before such a move must look again (see [`TaskJournal::submit`]).
    claim_epoch: u64,
    /// Tasks that ended in this process, with the WAL number of their end record, until a
    /// checkpoint covers it: retention must not delete them, or a replay would bring them back.
    uncheckpointed_ends: HashMap<Uuid, u64>,
}

impl Live {
    fn mark(&mut self, id: Uuid) {
        if let Some(entry) = self.tasks.get_mut(&id)
            && !entry.dirty
        {
            entry.dirty = true;
            self.dirty.push(id);
        }
    }
}

/// One apply step's batch, taken from the live state.
struct ApplyStep {
    batch: TaskBatch,
    /// Each task written, with the version and status written.
    written: Vec<(Uuid, u64, TaskStatus)>,
    /// The WAL record number the batch brings the store up to.
    target: u64,
    /// Nothing was deferred: after the write the store holds every change up to `target`.
    complete: bool,
}

/// What the apply steps know of the store's durability.
#[derive(Default)]
struct Applying {
    last_sync: Option<Instant>,
    /// An unsynced transaction wrote changes since the last synced one.
    unsynced: bool,
}

/// The ledger. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    wal: Wal,
    /// A std Mutex: held for map operations and WAL channel sends only.
    live: Mutex<Live>,
    /// The WAL record number up to which the store holds every change.
    applied: watch::Sender<u64>,
    /// One apply step at a time, so batches reach the store in order.
    applying: tokio::sync::Mutex<Applying>,
    /// Asks the applier to apply now rather than after [`APPLY_DELAY`].
    apply_now: tokio::sync::Notify,
    /// A reader waits for the store to hold every change, unfinished tasks included: the next
    /// step must be full.
    full_requested: AtomicBool,
    stop: CancellationToken,
}

impl Ledger {
    /// Opens the WAL in `dir`, replays it into the store and loads every unfinished task.
    /// Returns the ledger and those tasks in submit order.
    pub async fn open(store: Store, dir: &Path) -> Result<(Self, Vec<Task>), JournalError> {
        let dir = dir.to_owned();
        let (wal, records) =
            tokio::task::spawn_blocking(move || Wal::open(&dir, WalOptions::default()))
                .await
                .map_err(StoreError::from)??;
        let replayed = records.len();
        let changes = records
            .iter()
            .map(|r| decode(&r.payload))
            .collect::<Result<Vec<_>, _>>()?;
        let next_seq = replay(&store, changes).await?;
        let tail = *wal.durable().borrow();

        let unfinished = store.unfinished_tasks().await?;
        let mut live = Live {
            next_seq,
            ..Live::default()
        };
        for task in &unfinished {
            live.tasks.insert(
                task.id,
                Box::new(Entry {
                    task: task.clone(),
                    dirty: false,
                    record: 0,
                }),
            );
        }
        let ledger = Self {
            shared: Arc::new(Shared {
                store,
                wal,
                live: Mutex::new(live),
                applied: watch::channel(0).0,
                applying: tokio::sync::Mutex::default(),
                apply_now: tokio::sync::Notify::new(),
                full_requested: AtomicBool::new(false),
                stop: CancellationToken::new(),
            }),
        };
        if replayed > 0 {
            ledger.checkpoint_wal(tail).await?;
            tracing::info!(records = replayed, "replayed the task WAL");
        }
        let applier = ledger.clone();
        tokio::spawn(async move { applier.run_applier().await });
        Ok((ledger, unfinished))
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.shared.live.lock().expect("ledger lock")
    }

    /// Looks in memory, then in the store; also returns the claim epoch seen before the store
    /// lookup.
    async fn claim_lookup(
        &self,
        owner: Uuid,
        key: &str,
    ) -> Result<(Option<Uuid>, u64), JournalError> {
        let epoch = {
            let live = self.live();
            if let Some(claim) = live.claims.get(&(owner, key.to_owned())) {
                return Ok((Some(claim.task_id), live.claim_epoch));
            }
            live.claim_epoch
        };
        let stored = self
            .shared
            .store
            .idempotency_claim(owner, key.to_owned())
            .await?;
        Ok((stored, epoch))
    }

    /// Waits until the store holds every change made before the call: listings and counters
    /// read after this agree with every task read before it.
    pub async fn settled(&self) -> Result<(), JournalError> {
        let target = self.shared.wal.appended();
        if *self.shared.applied.borrow() >= target {
            return Ok(());
        }
        self.shared.full_requested.store(true, Ordering::Release);
        self.shared.apply_now.notify_one();
        self.shared.wal.synced_through(target).await?;
        let mut applied = self.shared.applied.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = applied.wait_for(|a| *a >= target).await;
        Ok(())
    }

    /// Applies everything, syncs the store and checkpoints the WAL (retention runs after this,
    /// so it never deletes a task whose records a replay would bring back).
    pub async fn checkpoint(&self) -> Result<(), JournalError> {
        self.apply_step(true).await
    }

    async fn run_applier(self) {
        let mut durable = self.shared.wal.durable();
        let shared = &self.shared;
        loop {
            // Idle until a change reaches the disk or a reader asks.
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                () = shared.apply_now.notified() => {}
                () = shared.stop.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep(APPLY_DELAY) => {}
                () = shared.apply_now.notified() => {}
                () = shared.stop.cancelled() => return,
            }
            // Changes during the step are picked up by the next one.
            durable.mark_unchanged();
            while let Err(e) = self.apply_step(false).await {
                // Readers in `settled` wait for this step: retry, without waiting for a change.
                tracing::error!(error = %e, "applying tasks to the store failed; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = self.shared.stop.cancelled() => return,
                }
            }
        }
    }

    /// One apply: the latest state of changed tasks, pending claims and outcomes, in one
    /// store transaction, written once their records are on disk (the store never holds a
    /// change the WAL could lose). The transaction is synced and the WAL checkpointed when
    /// `force_sync` or when the last sync is [`CHECKPOINT_EVERY`] old.
    ///
    /// A full step writes every changed task: everything appended to the WAL when it starts
    /// is in the store when it returns. Other steps write only the tasks that finished and
    /// leave unfinished ones in memory (where readers find them) until they finish or a full
    /// step comes: most tasks then reach the store once, in their final state. A step is full
    /// when it syncs or a reader waits in [`Ledger::settled`].
    async fn apply_step(&self, force_sync: bool) -> Result<(), JournalError> {
        let mut state = self.shared.applying.lock().await;
        let sync = force_sync
            || state
                .last_sync
                .is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY);
        let full = self.shared.full_requested.swap(false, Ordering::AcqRel) || sync;
        // The checkpoint position is read before the batch is taken: every record before it
        // was queued (and its task marked) before this point, so the batch covers it.
        let checkpoint_at = *self.shared.wal.durable().borrow();
        let step = self.take_batch(full, sync);
        let empty = step.batch.writes.is_empty()
            && step.batch.outcomes.is_empty()
            && step.batch.claims.is_empty();
        // Earlier steps wrote everything appended so far (but what this one deferred), and
        // nothing needs syncing: an idle server's checkpoint does no I/O.
        if !empty || (sync && state.unsynced) {
            self.write_batch(step.batch, step.target, step.written)
                .await?;
            state.unsynced = !sync;
        }
        if step.complete {
            self.mark_applied(step.target);
        }
        if sync {
            state.last_sync = Some(Instant::now());
            self.checkpoint_wal(checkpoint_at).await?;
        }
        Ok(())
    }

    /// Takes the batch of an apply step out of the live state: every changed task (a full
    /// step) or the finished ones, with the pending claims and outcomes.
    fn take_batch(&self, full: bool, sync: bool) -> ApplyStep {
        let mut live = self.live();
        // Every change appended so far marked its task under this lock: the batch holds them
        // all, and nothing later.
        let target = self.shared.wal.appended();
        let ids = std::mem::take(&mut live.dirty);
        let mut writes = Vec::with_capacity(ids.len());
        let mut written = Vec::with_capacity(ids.len());
        let mut deferred = Vec::new();
        for id in ids {
            if let Some(entry) = live.tasks.get_mut(&id) {
                if !full && !entry.task.state.status.is_terminal() {
                    deferred.push(id);
                    continue;
                }
                entry.dirty = false;
                written.push((id, entry.task.state.version, entry.task.state.status));
                writes.push(entry.task.clone());
            }
        }
        // Still marked dirty: they stay in the list for a later step.
        let complete = deferred.is_empty();
        live.dirty = deferred;
        let batch = TaskBatch {
            writes,
            claims: live.claims.values().cloned().collect(),
            outcomes: std::mem::take(&mut live.outcomes),
            next_seq: live.next_seq,
            durable: sync,
        };
        ApplyStep {
            batch,
            written,
            target,
            complete,
        }
    }

    /// Writes a batch once its records are on disk (the store never holds a change the WAL
    /// could lose), then forgets the finished tasks it wrote and the claims it moved. On an
    /// error nothing was written, and everything is marked for the next step again.
    async fn write_batch(
        &self,
        batch: TaskBatch,
        target: u64,
        written: Vec<(Uuid, u64, TaskStatus)>,
    ) -> Result<(), JournalError> {
        let claims: Vec<(Uuid, String)> = batch
            .claims
            .iter()
            .map(|c| (c.owner, c.key.clone()))
            .collect();
        let outcomes = batch.outcomes.clone();
        let written_down = async {
            self.shared.wal.synced_through(target).await?;
            let started = Instant::now();
            self.shared.store.apply_tasks(batch).await?;
            metrics::histogram!("zerostate_task_apply_seconds").record(started.elapsed());
            crate::telemetry::histogram_recorded();
            Ok::<_, JournalError>(())
        };
        let result = written_down.await;
        let mut live = self.live();
        if result.is_err() {
            for (id, _, _) in written {
                live.mark(id);
            }
            live.outcomes.extend(outcomes);
            return result;
        }
        for (id, version, status) in written {
            let applied = live.tasks.get(&id).is_some_and(|entry| {
                entry.task.state.version == version && status.is_terminal() && !entry.dirty
            });
            if applied {
                live.tasks.remove(&id);
            }
        }
        if !claims.is_empty() {
            for claim in &claims {
                live.claims.remove(claim);
            }
            live.claim_epoch += 1;
        }
        Ok(())
    }

    /// Records that the store holds every change up to WAL record number `records`.
    fn mark_applied(&self, records: u64) {
        self.shared.applied.send_if_modified(|a| {
            let moved = *a < records;
            *a = (*a).max(records);
            moved
        });
    }

    /// Checkpoints the WAL at `at` (file writes and syncs, on the blocking pool).
    async fn checkpoint_wal(&self, at: Synced) -> Result<(), JournalError> {
        let ledger = self.clone();
        tokio::task::spawn_blocking(move || ledger.shared.wal.checkpoint(at.lsn))
            .await
            .map_err(StoreError::from)??;
        self.live()
            .uncheckpointed_ends
            .retain(|_, record| *record > at.records);
        Ok(())
    }

    /// Tasks that ended after the last checkpoint: not to be deleted yet (see
    /// [`Live::uncheckpointed_ends`]).
    fn uncheckpointed_ends(&self) -> HashSet<Uuid> {
        self.live().uncheckpointed_ends.keys().copied().collect()
    }
}

impl TaskJournal for Ledger {
    /// The record is queued under the lock, so the log's order is the order of submits; one
    /// group-commit fsync covers every record queued meanwhile.
    fn submit(
        &self,
        mut task: Task,
        key: Option<String>,
    ) -> BoxFuture<'_, Result<Submitted, JournalError>> {
        async move {
            let durable = loop {
                let epoch = match &key {
                    Some(key) => match self.claim_lookup(task.owner_id, key).await? {
                        (Some(id), _) => return Ok(Submitted::Existing(id)),
                        (None, epoch) => Some(epoch),
                    },
                    None => None,
                };
                let mut live = self.live();
                let claim = match &key {
                    Some(key) => {
                        if let Some(claim) = live.claims.get(&(task.owner_id, key.clone())) {
                            return Ok(Submitted::Existing(claim.task_id));
                        }
                        if epoch != Some(live.claim_epoch) {
                            // Claims moved to the store while we looked there: look again.
                            continue;
                        }
                        let claim = IdempotencyClaim {
                            owner: task.owner_id,
                            key: key.clone(),
                            task_id: task.id,
                            claimed_at: task.created_at.unix_timestamp().max(0) as u64,
                        };
                        live.claims
                            .insert((task.owner_id, key.clone()), claim.clone());
                        Some(claim)
                    }
                    None => None,
                };
                task.seq = live.next_seq;
                live.next_seq += 1;
                task.state.status = TaskStatus::Queued;
                task.state.version = 1;
                let record = encode_snapshot(&task, claim.as_ref());
                let durable = self.shared.wal.append_nowait(record)?;
                live.tasks.insert(
                    task.id,
                    Box::new(Entry {
                        task: task.clone(),
                        dirty: false,
                        record: durable.number,
                    }),
                );
                live.mark(task.id);
                break durable;
            };
            durable.wait().await?;
            Ok(Submitted::New(Box::new(task)))
        }
        .boxed()
    }

    fn claimed(
        &self,
        owner: Uuid,
        key: String,
    ) -> BoxFuture<'_, Result<Option<Uuid>, JournalError>> {
        async move { Ok(self.claim_lookup(owner, &key).await?.0) }.boxed()
    }

    /// The hot path: a 37-byte record, not waited for.
    fn start(&self, id: Uuid) -> Result<Option<Task>, JournalError> {
        let mut live = self.live();
        let Some(entry) = live.tasks.get_mut(&id) else {
            return Ok(None);
        };
        if entry.task.state.status != TaskStatus::Queued {
            return Ok(None);
        }
        let now = OffsetDateTime::now_utc();
        let state = &mut entry.task.state;
        state.status = TaskStatus::Running;
        state.starts += 1;
        state.version += 1;
        state.started_at = Some(now);
        let record = encode_started(&Started {
            id,
            version: state.version,
            starts: state.starts,
            started_at: now,
        });
        let task = entry.task.clone();
        entry.record = self.shared.wal.append_nowait(record)?.number;
        live.mark(id);
        Ok(Some(task))
    }

    fn transition(
        &self,
        id: Uuid,
        from: TaskStatus,
        outcome: Option<AgentOutcome>,
        change: TaskChange,
    ) -> Result<Option<(Task, Durable)>, JournalError> {
        let mut live = self.live();
        let Some(entry) = live.tasks.get_mut(&id) else {
            return Ok(None);
        };
        if entry.task.state.status != from {
            return Ok(None);
        }
        let mut state = entry.task.state.clone();
        change.apply(&mut state, OffsetDateTime::now_utc());
        state.version += 1;
        let record = encode_changed(id, &state, outcome.as_ref());
        let pending = self.shared.wal.append_nowait(record)?;
        entry.task.state = state;
        entry.record = pending.number;
        let task = entry.task.clone();
        if task.state.status.is_terminal() {
            live.uncheckpointed_ends.insert(id, pending.number);
        }
        if let Some(outcome) = outcome {
            live.outcomes.push(outcome);
        }
        live.mark(id);
        let durable = async move {
            pending.wait().await?;
            Ok(())
        };
        Ok(Some((task, Durable::new(durable.boxed()))))
    }

    /// In memory while unfinished or not yet applied to the store.
    fn live_task(&self, id: Uuid) -> Option<Task> {
        self.live().tasks.get(&id).map(|e| e.task.clone())
    }

    /// From memory once its latest record is synced (at most one group commit away), else
    /// from the store.
    fn task(&self, id: Uuid) -> BoxFuture<'_, Result<Option<Task>, JournalError>> {
        async move {
            let live = self
                .live()
                .tasks
                .get(&id)
                .map(|e| (e.task.clone(), e.record));
            if let Some((task, record)) = live {
                self.shared.wal.synced_through(record).await?;
                return Ok(Some(task));
            }
            // Not in memory: either stored, or evicted after being applied (so stored now).
            Ok(self.shared.store.task(id).await?)
        }
        .boxed()
    }

    /// Reads the store once it holds every change made before the call ([`Ledger::settled`]).
    fn list(
        &self,
        owner: Uuid,
        filter: TaskFilter,
        page: Page,
    ) -> BoxFuture<'_, Result<TaskPage, JournalError>> {
        async move {
            self.settled().await?;
            let store = &self.shared.store;
            // Counted per status in the counts table: no scan needed.
            let counted = filter.priority.is_none() && filter.agent_id.is_none();
            let found = store.tasks_for_owner(owner, filter, page, !counted).await?;
            let total = match found.matched {
                Some(n) => n,
                None => {
                    let counts = store.task_counts(Some(owner)).await?;
                    filter.status.map_or(counts.total(), |s| counts.get(s))
                }
            };
            let next = found
                .more
                .then(|| found.tasks.last().map(|t| t.seq))
                .flatten();
            Ok(TaskPage {
                tasks: found.tasks,
                total,
                next,
            })
        }
        .boxed()
    }

    fn counts(&self, owner: Option<Uuid>) -> BoxFuture<'_, Result<TaskCounts, JournalError>> {
        async move {
            self.settled().await?;
            Ok(self.shared.store.task_counts(owner).await?)
        }
        .boxed()
    }

    fn usage_since(
        &self,
        midnight: OffsetDateTime,
    ) -> BoxFuture<'_, Result<HashMap<Uuid, DailyUsage>, JournalError>> {
        async move {
            self.settled().await?;
            Ok(self.shared.store.usage_since(midnight).await?)
        }
        .boxed()
    }

    fn analytics(
        &self,
        owner: Option<Uuid>,
        width: u32,
        from: u64,
        to: u64,
    ) -> BoxFuture<'_, Result<Vec<PlacedCell>, JournalError>> {
        async move {
            // Tasks journaled as finished are in the store before they are counted here.
            self.settled().await?;
            let store = &self.shared.store;
            Ok(store.analytics_cells(owner, width, from, to).await?)
        }
        .boxed()
    }

    /// Checkpoints first; tasks that ended after the checkpoint stay, so a replay cannot
    /// bring back what retention deleted.
    fn prune(&self, retention: Retention) -> BoxFuture<'_, Result<usize, JournalError>> {
        async move {
            // Everything before the checkpoint is in the store and will not be replayed. A task
            // whose end was journaled after it could come back from the WAL: those stay for now.
            self.checkpoint().await?;
            let keep_ids = self.uncheckpointed_ends();
            let store = &self.shared.store;
            let mut total = 0;
            loop {
                let pruned = store
                    .prune_finished(
                        retention.max_finished,
                        retention.cutoff,
                        keep_ids.clone(),
                        PRUNE_BATCH,
                    )
                    .await?;
                total += pruned;
                if pruned < PRUNE_BATCH {
                    break;
                }
            }
            let keys = store.prune_idempotency_keys().await?;
            if keys > 0 {
                tracing::debug!(keys, "expired idempotency keys deleted");
            }
            let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
            let cells = store.prune_analytics(now).await?;
            if cells > 0 {
                tracing::debug!(cells, "expired analytics cells deleted");
            }
            Ok(total)
        }
        .boxed()
    }

    /// Stops the applier after a final synced apply and checkpoint.
    fn close(&self) -> BoxFuture<'_, Result<(), JournalError>> {
        async move {
            self.shared.stop.cancel();
            self.apply_step(true).await
        }
        .boxed()
    }
}

/// Replays WAL changes over the stored rows and writes the result in one synced batch.
/// Returns the next submit sequence number.
async fn replay(store: &Store, changes: Vec<Change>) -> Result<u64, JournalError> {
    let mut ids: Vec<Uuid> = changes.iter().map(Change::task_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let stored = store
        .tasks_by_id(ids)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let mut replay = Replay {
        stored,
        states: HashMap::new(),
        batch: TaskBatch {
            next_seq: store.next_task_seq().await?,
            durable: true,
            ..TaskBatch::default()
        },
    };
    for change in changes {
        replay.apply(change);
    }
    let Replay {
        states, mut batch, ..
    } = replay;
    batch.writes = states.into_values().collect();
    let next_seq = batch.next_seq;
    store.apply_tasks(batch).await?;
    Ok(next_seq)
}

/// The state of a replay: each change applies only over an older version of its task.
struct Replay {
    /// The rows of the replayed tasks as the store holds them.
    stored: HashMap<Uuid, Task>,
    /// The replayed tasks' latest states.
    states: HashMap<Uuid, Task>,
    batch: TaskBatch,
}

impl Replay {
    fn stored_version(&self, id: Uuid) -> u64 {
        self.stored.get(&id).map_or(0, |t| t.state.version)
    }

    /// The task as replayed so far, or as stored.
    fn current(&self, id: Uuid) -> Option<Task> {
        self.states
            .get(&id)
            .or_else(|| self.stored.get(&id))
            .cloned()
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Snapshot(snapshot) => self.snapshot(*snapshot),
            Change::Started(started) => self.started(started),
            Change::Changed(changed) => self.changed(*changed),
        }
    }

    fn snapshot(&mut self, snapshot: Snapshot) {
        let Snapshot {
            task,
            claim,
            outcome,
        } = snapshot;
        self.batch.next_seq = self.batch.next_seq.max(task.seq + 1);
        let stored = self.stored_version(task.id);
        if task.state.version <= stored {
            return;
        }
        self.batch.claims.extend(claim);
        self.batch.outcomes.extend(outcome);
        let current = self
            .states
            .get(&task.id)
            .map_or(stored, |t| t.state.version);
        if task.state.version > current {
            self.states.insert(task.id, task);
        }
    }

    fn started(&mut self, s: Started) {
        match self.current(s.id) {
            Some(mut task) if s.version > task.state.version => {
                let state = &mut task.state;
                state.status = TaskStatus::Running;
                state.version = s.version;
                state.starts = s.starts;
                state.started_at = Some(s.started_at);
                self.states.insert(s.id, task);
            }
            Some(_) => {}
            None => tracing::warn!(task_id = %s.id, "WAL start of an unknown task; skipped"),
        }
    }

    fn changed(&mut self, changed: Changed) {
        let Changed { id, state, outcome } = changed;
        if state.version <= self.stored_version(id) {
            return;
        }
        match self.current(id) {
            Some(mut task) if state.version > task.state.version => {
                self.batch.outcomes.extend(outcome);
                task.state = state;
                self.states.insert(id, task);
            }
            Some(_) => {}
            None => tracing::warn!(task_id = %id, "WAL change of an unknown task; skipped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Agent, Finished};

    fn task(owner: Uuid, agent_id: Uuid) -> Task {
        let mut task = Task::blank(owner);
        task.state.agent_id = agent_id;
        task
    }

    /// A run's end with `status`.
    fn finished(status: TaskStatus) -> TaskChange {
        TaskChange::Finished(Box::new(Finished {
            status,
            attempt: crate::records::Attempt {
                agent_id: Uuid::nil(),
                agent_name: String::new(),
                outcome: status.as_str().into(),
                error: None,
                error_code: None,
                duration_ms: 1,
                started_at: OffsetDateTime::now_utc(),
            },
            result: None,
            error: None,
            error_code: None,
            stderr: String::new(),
            exit_code: None,
            duration_ms: 1,
        }))
    }

    /// A store and a ledger over an empty data dir.
    async fn open_fresh(dir: &Path) -> (Store, Ledger) {
        let store = Store::open(&dir.join("t.redb")).unwrap();
        let (ledger, _) = Ledger::open(store.clone(), &dir.join("wal")).await.unwrap();
        (store, ledger)
    }

    /// Submits a new task (no idempotency key) and returns it.
    async fn submit_new(ledger: &Ledger) -> Task {
        match ledger
            .submit(task(Uuid::new_v4(), Uuid::nil()), None)
            .await
            .unwrap()
        {
            Submitted::New(t) => *t,
            Submitted::Existing(_) => panic!("new task expected"),
        }
    }

    /// A kind 1 record, as logs written before the binary encoding hold them.
    fn json_snapshot(task: &Task, claim: Option<IdempotencyClaim>) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_JSON];
        let snapshot = Snapshot {
            task: task.clone(),
            claim,
            outcome: None,
        };
        serde_json::to_writer(&mut out, &snapshot).unwrap();
        out
    }

    /// Writes what a server that crashed right after its WAL syncs would leave: three submits
    /// (the first in the JSON form of older logs), one start, one finish with an outcome; the
    /// store never saw any of it.
    fn crashed_log(dir: &Path, owner: Uuid, agent: Uuid) -> Vec<Task> {
        let (wal, _) = Wal::open(dir, WalOptions::default()).unwrap();
        let mut tasks = Vec::new();
        for seq in 1..=3 {
            let mut t = task(owner, agent);
            t.seq = seq;
            t.state.version = 1;
            let claim = (seq == 1).then(|| IdempotencyClaim {
                owner,
                key: "k".into(),
                task_id: t.id,
                claimed_at: t.created_at.unix_timestamp() as u64,
            });
            let record = if seq == 1 {
                json_snapshot(&t, claim)
            } else {
                encode_snapshot(&t, claim.as_ref())
            };
            wal.append_blocking(record).unwrap();
            tasks.push(t);
        }
        let started = Started {
            id: tasks[0].id,
            version: 2,
            starts: 1,
            started_at: OffsetDateTime::now_utc(),
        };
        wal.append_blocking(encode_started(&started)).unwrap();
        let mut done = tasks[1].state.clone();
        done.status = TaskStatus::Completed;
        done.version = 3;
        done.completed_at = Some(OffsetDateTime::now_utc());
        let outcome = AgentOutcome {
            agent_id: agent,
            success: true,
            duration_ms: 5,
        };
        wal.append_blocking(encode_changed(tasks[1].id, &done, Some(&outcome)))
            .unwrap();
        tasks
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }

    #[tokio::test]
    async fn replay_restores_synced_changes_the_store_never_saw_and_twice_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.redb")).unwrap();
        let a = Agent::fixture("a", 0.0, &[]);
        assert!(store.insert_agent(a.clone()).await.unwrap());
        let owner = Uuid::new_v4();
        let wal_dir = dir.path().join("wal");
        let tasks = {
            let (wal_dir, agent_id) = (wal_dir.clone(), a.id);
            tokio::task::spawn_blocking(move || crashed_log(&wal_dir, owner, agent_id))
                .await
                .unwrap()
        };
        // Kept to replay again later: a crash after the store synced, before the checkpoint.
        copy_dir(&wal_dir, &dir.path().join("wal-copy"));

        let (ledger, unfinished) = Ledger::open(store.clone(), &wal_dir).await.unwrap();
        let statuses: Vec<(Uuid, TaskStatus, u32)> = unfinished
            .iter()
            .map(|t| (t.id, t.state.status, t.state.starts))
            .collect();
        assert_eq!(
            statuses,
            [
                (tasks[0].id, TaskStatus::Running, 1),
                (tasks[2].id, TaskStatus::Queued, 0)
            ]
        );
        ledger.settled().await.unwrap();
        let counts = store.task_counts(Some(owner)).await.unwrap();
        assert_eq!((counts.queued, counts.running, counts.completed), (1, 1, 1));
        let stats = store.agent(a.id).await.unwrap().unwrap().stats;
        assert_eq!(stats.tasks_completed, 1, "the outcome counts once");
        assert_eq!(
            store.idempotency_claim(owner, "k".into()).await.unwrap(),
            Some(tasks[0].id)
        );
        // New submits continue the sequence.
        let next = ledger.submit(task(owner, a.id), None).await.unwrap();
        assert!(matches!(next, Submitted::New(t) if t.seq == 4));
        ledger.close().await.unwrap();
        drop(ledger);

        // Replay the same records over the applied store: versions make it a no-op (the
        // fourth task, submitted after, keeps its place too).
        std::fs::remove_dir_all(&wal_dir).unwrap();
        copy_dir(&dir.path().join("wal-copy"), &wal_dir);
        let (ledger, unfinished) = Ledger::open(store.clone(), &wal_dir).await.unwrap();
        assert_eq!(unfinished.len(), 3, "two recovered and the fourth submit");
        ledger.settled().await.unwrap();
        let counts = store.task_counts(Some(owner)).await.unwrap();
        assert_eq!((counts.queued, counts.running, counts.completed), (2, 1, 1));
        assert_eq!(
            store
                .agent(a.id)
                .await
                .unwrap()
                .unwrap()
                .stats
                .tasks_completed,
            1
        );
        ledger.close().await.unwrap();
    }

    #[tokio::test]
    async fn unfinished_tasks_reach_the_store_once_finished_or_when_a_reader_settles() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ledger) = open_fresh(dir.path()).await;
        // A synced step now, so the steps below are not checkpoints (those write everything).
        ledger.checkpoint().await.unwrap();
        let (waiting, done) = (submit_new(&ledger).await, submit_new(&ledger).await);
        ledger.start(done.id).unwrap().unwrap();
        let (_, durable) = ledger
            .transition(
                done.id,
                TaskStatus::Running,
                None,
                finished(TaskStatus::Completed),
            )
            .unwrap()
            .unwrap();
        durable.wait().await.unwrap();
        ledger.apply_step(false).await.unwrap();
        let stored = |id| {
            let store = store.clone();
            async move { store.task(id).await.unwrap().map(|t| t.state.status) }
        };
        assert_eq!(stored(done.id).await, Some(TaskStatus::Completed));
        assert_eq!(stored(waiting.id).await, None, "left in memory");
        assert_eq!(
            ledger.task(waiting.id).await.unwrap().unwrap().state.status,
            TaskStatus::Queued,
            "readers see it"
        );
        ledger.settled().await.unwrap();
        assert_eq!(stored(waiting.id).await, Some(TaskStatus::Queued));
    }

    #[tokio::test]
    async fn a_change_from_the_wrong_status_is_refused_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, ledger) = open_fresh(dir.path()).await;
        let t = submit_new(&ledger).await;
        let finish = |status| ledger.transition(t.id, TaskStatus::Running, None, finished(status));
        assert!(
            finish(TaskStatus::Completed).unwrap().is_none(),
            "not running yet"
        );
        assert_eq!(
            ledger.start(t.id).unwrap().unwrap().state.status,
            TaskStatus::Running
        );
        assert!(ledger.start(t.id).unwrap().is_none(), "started once");
        let (done, durable) = finish(TaskStatus::Completed).unwrap().unwrap();
        durable.wait().await.unwrap();
        assert_eq!(done.state.version, 3);
        // A late result of a stale run.
        assert!(finish(TaskStatus::Failed).unwrap().is_none());
        ledger.close().await.unwrap();
        drop(ledger);
        let (_ledger, unfinished) = Ledger::open(store.clone(), &dir.path().join("wal"))
            .await
            .unwrap();
        assert!(unfinished.is_empty());
        assert_eq!(
            store.task(t.id).await.unwrap().unwrap().state.status,
            TaskStatus::Completed
        );
    }

    #[test]
    fn started_records_round_trip() {
        let s = Started {
            id: Uuid::new_v4(),
            version: 7,
            starts: 2,
            started_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
                .unwrap(),
        };
        let bytes = encode_started(&s);
        assert_eq!(bytes.len(), STARTED_LEN);
        match decode(&bytes).unwrap() {
            Change::Started(back) => assert_eq!(back, s),
            _ => panic!("decoded the wrong kind"),
        }
        assert!(matches!(
            decode(&[9, 1, 2]),
            Err(JournalError::BadRecord(_))
        ));
    }

    #[test]
    fn snapshot_and_change_records_round_trip_with_their_claim_and_outcome() {
        let owner = Uuid::new_v4();
        let t = task(owner, Uuid::new_v4());
        let claim = IdempotencyClaim {
            owner,
            key: "order-17 ✓".into(),
            task_id: t.id,
            claimed_at: 1_700_000_000,
        };
        match decode(&encode_snapshot(&t, Some(&claim))).unwrap() {
            Change::Snapshot(s) => {
                assert_eq!((s.task.id, s.task.seq), (t.id, t.seq));
                assert_eq!(s.claim, Some(claim));
            }
            _ => panic!("decoded the wrong kind"),
        }
        let outcome = AgentOutcome {
            agent_id: t.state.agent_id,
            success: false,
            duration_ms: 9,
        };
        match decode(&encode_changed(t.id, &t.state, Some(&outcome))).unwrap() {
            Change::Changed(c) => {
                assert_eq!((c.id, c.state.version), (t.id, t.state.version));
                assert_eq!(c.outcome, Some(outcome));
            }
            _ => panic!("decoded the wrong kind"),
        }
        let mut longer = encode_changed(t.id, &t.state, None);
        longer.push(0);
        assert!(matches!(decode(&longer), Err(JournalError::BadRecord(_))));
    }

    #[test]
    fn json_changes_of_older_logs_still_decode() {
        // Kind 3: `{"state": {"id": …, the state's fields}, "outcome": …}`.
        let t = task(Uuid::new_v4(), Uuid::new_v4());
        let mut state = serde_json::to_value(&t.state).unwrap();
        state["id"] = serde_json::json!(t.id);
        let mut record = vec![CHANGED_JSON];
        serde_json::to_writer(
            &mut record,
            &serde_json::json!({"state": state, "outcome": null}),
        )
        .unwrap();
        match decode(&record).unwrap() {
            Change::Changed(c) => {
                assert_eq!((c.id, c.state.status), (t.id, TaskStatus::Queued));
                assert_eq!(c.outcome, None);
            }
            _ => panic!("decoded the wrong kind"),
        }
    }
}
