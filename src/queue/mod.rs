//! The task queue: which queued task runs next. Strict priority (critical > high > normal >
//! low); within a priority, users take turns (round robin by owner), each user's tasks in
//! submit order. One user's backlog of thousands therefore delays another user's single task
//! by at most one task per user ahead of it, never by the backlog.
//!
//! A per-user cap on runs at once (`quotas.concurrent_runs`) is kept here too: a user at the
//! cap is skipped (their tasks wait, nothing is refused) until one of their runs ends
//! ([`TaskQueue::release`]), while other users' tasks, of any priority, run.
//!
//! [`TaskQueue`] is the seam. The embedded implementation, [`PriorityQueue`], lives in memory
//! and holds ids only: durability lives in the task journal (a task is journaled before it is
//! queued, and start-up re-queues every unfinished task in submit order, so users take turns
//! in the order of their oldest task). Its workers wait on a `Notify`, never poll: an idle
//! server uses no CPU. Push and pop cost O(1) amortised (one map lookup each); only
//! [`TaskQueue::remove`] scans. Compatibility mode's queue on Redis streams is
//! `cluster::RedisQueue`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::records::{Claim, Priority, QueueDepth};

/// A queued task: enough to order it and find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueuedTask {
    pub task_id: Uuid,
    /// Whose turn it takes, and whose cap on runs it counts against.
    pub owner: Uuid,
    pub priority: Priority,
    /// Submit sequence number; FIFO order within one owner's tasks of a priority.
    pub seq: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueueError {
    #[error("the queue holds {0} tasks, its capacity")]
    Full(usize),
    #[error("the queue is closed")]
    Closed,
    /// A shared queue's server cannot be reached (or its breaker is open).
    #[error("the task queue ({dependency}) is unavailable: {reason}")]
    Unavailable {
        dependency: &'static str,
        reason: String,
        retry_after: std::time::Duration,
    },
}

/// The turns of one priority.
#[derive(Default)]
struct Lane {
    /// Owners in the order they get their next turn. Every owner with tasks of this priority
    /// is in it exactly once, unless parked (see [`User::parked`]).
    turns: VecDeque<Uuid>,
    len: usize,
}

/// One owner's queued tasks and runs. No entry for an owner with nothing queued or running:
/// one map lookup finds all a push or a pop needs.
#[derive(Default)]
struct User {
    /// Queued tasks per priority (indexed as [`Lanes::lanes`]), lowest `seq` first.
    backlogs: [VecDeque<QueuedTask>; 4],
    queued: usize,
    /// Tasks popped whose run has not been released (tracked only under a cap).
    running: u64,
    /// Lanes (bit `Priority as usize`) whose turns this owner left because they were at the
    /// cap; they rejoin those turns when a run of theirs ends.
    parked: u8,
}

#[derive(Default)]
struct Lanes {
    /// Indexed by `Priority as usize`; the highest index is served first.
    lanes: [Lane; 4],
    users: HashMap<Uuid, User>,
    len: usize,
    closed: bool,
}

impl Lanes {
    fn push(&mut self, task: QueuedTask) {
        let p = task.priority as usize;
        let user = self.users.entry(task.owner).or_default();
        let backlog = &mut user.backlogs[p];
        if backlog.is_empty() {
            self.lanes[p].turns.push_back(task.owner);
        }
        // Recovery and failover may push out of order; keep each backlog sorted by seq.
        let at = backlog.partition_point(|t| t.seq < task.seq);
        backlog.insert(at, task);
        user.queued += 1;
        self.lanes[p].len += 1;
        self.len += 1;
    }

    /// The next task: the highest priority first, then the owner whose turn it is. Owners at
    /// `cap` are parked on the way.
    fn pop(&mut self, cap: Option<u64>) -> Option<QueuedTask> {
        for p in (0..self.lanes.len()).rev() {
            while let Some(owner) = self.lanes[p].turns.pop_front() {
                let user = self
                    .users
                    .get_mut(&owner)
                    .expect("an owner in turns is known");
                if cap.is_some_and(|cap| user.running >= cap) {
                    user.parked |= 1 << p;
                    continue;
                }
                let task = user.backlogs[p]
                    .pop_front()
                    .expect("an owner in turns has tasks");
                if !user.backlogs[p].is_empty() {
                    self.lanes[p].turns.push_back(owner);
                }
                user.queued -= 1;
                if cap.is_some() {
                    user.running += 1;
                }
                if user.queued == 0 && user.running == 0 {
                    self.users.remove(&owner);
                }
                self.lanes[p].len -= 1;
                self.len -= 1;
                return Some(task);
            }
        }
        None
    }

    /// Ends one run of `owner`; true if that let parked tasks of theirs back into turns.
    fn release(&mut self, owner: Uuid, cap: u64) -> bool {
        let Some(user) = self.users.get_mut(&owner) else {
            return false;
        };
        user.running = user.running.saturating_sub(1);
        let unparked = user.parked != 0 && user.running < cap;
        if unparked {
            for (p, lane) in self.lanes.iter_mut().enumerate() {
                if user.parked & (1 << p) != 0 {
                    lane.turns.push_back(owner);
                }
            }
            user.parked = 0;
        }
        if user.queued == 0 && user.running == 0 {
            self.users.remove(&owner);
        }
        unparked
    }

    /// Looks in `task`'s owner's backlog of its priority only: ending tasks that were already
    /// handed out (deadline passed, agent gone) must not cost a scan of the whole queue.
    fn remove(&mut self, task: &QueuedTask) -> bool {
        let (owner, p) = (task.owner, task.priority as usize);
        let Some(at) = self.users.get(&owner).and_then(|user| {
            user.backlogs[p]
                .iter()
                .position(|t| t.task_id == task.task_id)
        }) else {
            return false;
        };
        let user = self.users.get_mut(&owner).expect("found above");
        user.backlogs[p].remove(at);
        user.queued -= 1;
        if user.backlogs[p].is_empty() {
            // Out of this priority's turns, whether waiting in them or parked.
            user.parked &= !(1 << p);
            let turns = &mut self.lanes[p].turns;
            if let Some(turn) = turns.iter().position(|o| *o == owner) {
                turns.remove(turn);
            }
        }
        if user.queued == 0 && user.running == 0 {
            self.users.remove(&owner);
        }
        self.lanes[p].len -= 1;
        self.len -= 1;
        true
    }
}

/// A task [`TaskQueue::pop`] handed out: the task, and where a shared queue keeps it until
/// its run is [`TaskQueue::done`] (`None` in the embedded queue, which forgets it at once).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub task: QueuedTask,
    pub claim: Option<Claim>,
}

/// The order in which queued tasks run, and, for a queue shared by several nodes, who holds
/// each one while it runs.
pub trait TaskQueue: Send + Sync {
    /// Queues a task and resolves once the queue holds it (durably, for a shared queue),
    /// refusing beyond capacity unless `force` (for a task already journaled).
    fn push(&self, task: QueuedTask, force: bool) -> BoxFuture<'_, Result<(), QueueError>>;

    /// Queues a journaled task again (failover, a run cut short) without waiting: a task the
    /// queue cannot take now is retried until it can. Never dropped, unless the queue is
    /// closed (then the next start queues it).
    fn push_later(&self, task: QueuedTask);

    /// Refuses new submissions once the queue is at capacity (or unreachable).
    fn check_capacity(&self) -> Result<(), QueueError>;

    /// Waits for the next task; `None` once the queue is closed. Every task popped must be
    /// [`TaskQueue::release`]d once its run ends, and its lease [`TaskQueue::done`].
    fn pop(&self) -> BoxFuture<'_, Option<Lease>>;

    /// The task of `lease` leaves the queue for a run. False when the lease is not the task's
    /// place in the queue (a stale duplicate, or a task removed meanwhile): do not run it.
    fn taken(&self, lease: &Lease) -> bool;

    /// How often a running task's lease must be kept ([`TaskQueue::keep`]); `None` when
    /// leases never expire.
    fn keep_every(&self) -> Option<std::time::Duration>;

    /// Keeps `lease` while its run goes on; false once another node took the task over.
    fn keep(&self, lease: &Lease) -> BoxFuture<'_, Result<bool, QueueError>>;

    /// The run of `lease` ended (or will not happen): the queue forgets the task. False when
    /// the lease was lost to another node, whose run is now the one that counts.
    fn done(&self, lease: &Lease) -> BoxFuture<'_, Result<bool, QueueError>>;

    /// The run of a task of `owner` that [`TaskQueue::pop`] handed out has ended: under a
    /// cap on runs, their next task may go.
    fn release(&self, owner: Uuid);

    /// Removes a queued task (e.g. canceled). Returns whether it was queued.
    fn remove(&self, task: &QueuedTask) -> bool;

    /// Asks whichever other node runs task `id` to stop it; false when there are no other
    /// nodes (the embedded queue).
    fn stop_run(&self, id: Uuid) -> bool;

    /// At start, before any worker: the unfinished tasks the journal holds, with whether they
    /// were running. Returns those the queue does not hold, which the caller queues again; a
    /// shared queue keeps its entries across restarts of this node, and counts those it holds.
    fn adopt(
        &self,
        unfinished: Vec<(QueuedTask, bool)>,
    ) -> BoxFuture<'_, Result<Vec<(QueuedTask, bool)>, QueueError>>;

    /// Stops handing out tasks; waiting workers get `None`. Queued tasks stay journaled.
    fn close(&self);

    /// Queued tasks per priority.
    fn depth(&self) -> QueueDepth;

    /// `owner`'s queued tasks.
    fn queued_of(&self, owner: Uuid) -> usize;
}

/// Runs `run` while keeping `lease` every [`TaskQueue::keep_every`]. A lease lost to another
/// node cancels `cancel` (the run's result would be ignored anyway); a queue that cannot be
/// reached for a while changes nothing (the lease is kept again once it can be).
pub async fn hold<T>(
    queue: &dyn TaskQueue,
    lease: &Lease,
    cancel: &CancellationToken,
    run: impl std::future::Future<Output = T>,
) -> T {
    let Some(every) = queue.keep_every() else {
        return run.await;
    };
    tokio::pin!(run);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut run => return out,
            _ = ticks.tick() => match queue.keep(lease).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(task_id = %lease.task.task_id, "lost the task's lease to another node; stopping the run");
                    cancel.cancel();
                }
                Err(e) => tracing::warn!(task_id = %lease.task.task_id, error = %e, "could not keep the task's lease"),
            },
        }
    }
}

/// The embedded queue: one in-memory lane per priority, a backlog per owner in each.
pub struct PriorityQueue {
    /// A std Mutex: critical sections are a few map and pointer operations and never await.
    inner: Mutex<Lanes>,
    available: Notify,
    capacity: usize,
    /// Most tasks of one owner handed out and not released; `None`: no cap.
    run_cap: Option<u64>,
}

impl PriorityQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            available: Notify::new(),
            capacity,
            run_cap: None,
        }
    }

    /// Caps each owner's runs at once at `cap` (0: no cap).
    pub fn with_run_cap(mut self, cap: u64) -> Self {
        self.run_cap = (cap > 0).then_some(cap);
        self
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Lanes> {
        // Every critical section leaves the lanes whole between statements that can panic.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn try_pop(&self) -> Result<Option<QueuedTask>, QueueError> {
        let mut inner = self.lanes();
        if inner.closed {
            return Err(QueueError::Closed);
        }
        Ok(inner.pop(self.run_cap))
    }
}

impl PriorityQueue {
    fn push_now(&self, task: QueuedTask, force: bool) -> Result<(), QueueError> {
        {
            let mut inner = self.lanes();
            if inner.closed {
                return Err(QueueError::Closed);
            }
            if inner.len >= self.capacity && !force {
                return Err(QueueError::Full(inner.len));
            }
            inner.push(task);
        }
        self.available.notify_one();
        Ok(())
    }
}

impl TaskQueue for PriorityQueue {
    fn push(&self, task: QueuedTask, force: bool) -> BoxFuture<'_, Result<(), QueueError>> {
        std::future::ready(self.push_now(task, force)).boxed()
    }

    fn push_later(&self, task: QueuedTask) {
        if let Err(e) = self.push_now(task, true) {
            tracing::debug!(task_id = %task.task_id, error = %e, "not queued; the next start queues it");
        }
    }

    fn check_capacity(&self) -> Result<(), QueueError> {
        match self.lanes().len {
            len if len >= self.capacity => Err(QueueError::Full(len)),
            _ => Ok(()),
        }
    }

    fn pop(&self) -> BoxFuture<'_, Option<Lease>> {
        async move {
            loop {
                let notified = self.available.notified();
                tokio::pin!(notified);
                // Register before checking, so a push between the check and the await still
                // wakes us.
                notified.as_mut().enable();
                match self.try_pop() {
                    Ok(Some(task)) => return Some(Lease { task, claim: None }),
                    Ok(None) => notified.await,
                    Err(_) => return None,
                }
            }
        }
        .boxed()
    }

    fn release(&self, owner: Uuid) {
        let Some(cap) = self.run_cap else {
            return;
        };
        if self.lanes().release(owner, cap) {
            self.available.notify_one();
        }
    }

    fn taken(&self, _lease: &Lease) -> bool {
        true
    }

    fn keep_every(&self) -> Option<std::time::Duration> {
        None
    }

    fn keep(&self, _lease: &Lease) -> BoxFuture<'_, Result<bool, QueueError>> {
        std::future::ready(Ok(true)).boxed()
    }

    fn done(&self, _lease: &Lease) -> BoxFuture<'_, Result<bool, QueueError>> {
        std::future::ready(Ok(true)).boxed()
    }

    fn remove(&self, task: &QueuedTask) -> bool {
        self.lanes().remove(task)
    }

    fn stop_run(&self, _id: Uuid) -> bool {
        false
    }

    fn adopt(
        &self,
        unfinished: Vec<(QueuedTask, bool)>,
    ) -> BoxFuture<'_, Result<Vec<(QueuedTask, bool)>, QueueError>> {
        std::future::ready(Ok(unfinished)).boxed()
    }

    fn close(&self) {
        self.lanes().closed = true;
        self.available.notify_waiters();
    }

    fn depth(&self) -> QueueDepth {
        let inner = self.lanes();
        QueueDepth::from(std::array::from_fn(|i| inner.lanes[i].len))
    }

    fn queued_of(&self, owner: Uuid) -> usize {
        self.lanes().users.get(&owner).map_or(0, |u| u.queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Uuid = Uuid::from_u128(1);
    const BOB: Uuid = Uuid::from_u128(2);
    const CAROL: Uuid = Uuid::from_u128(3);

    fn task(priority: Priority, seq: u64) -> QueuedTask {
        owned(ALICE, priority, seq)
    }

    fn owned(owner: Uuid, priority: Priority, seq: u64) -> QueuedTask {
        QueuedTask {
            task_id: Uuid::new_v4(),
            owner,
            priority,
            seq,
        }
    }

    /// Pops what is ready now, without waiting.
    fn drain(q: &PriorityQueue) -> Vec<(Uuid, u64)> {
        std::iter::from_fn(|| q.try_pop().unwrap())
            .map(|t| (t.owner, t.seq))
            .collect()
    }

    #[tokio::test]
    async fn serves_by_priority_then_fifo() {
        let q = PriorityQueue::new(10);
        let order = [
            task(Priority::Low, 1),
            task(Priority::Normal, 2),
            task(Priority::Critical, 3),
            task(Priority::Normal, 4),
            task(Priority::High, 5),
        ];
        for t in order {
            q.push_now(t, false).unwrap();
        }
        let mut seqs = Vec::new();
        for _ in 0..order.len() {
            seqs.push(q.pop().await.unwrap().task.seq);
        }
        assert_eq!(seqs, [3, 5, 2, 4, 1]);
    }

    #[test]
    fn users_take_turns_within_a_priority_and_priority_stays_strict() {
        let q = PriorityQueue::new(100);
        for seq in 1..=5 {
            q.push_now(owned(ALICE, Priority::Normal, seq), false)
                .unwrap();
        }
        q.push_now(owned(BOB, Priority::Normal, 6), false).unwrap();
        q.push_now(owned(CAROL, Priority::Normal, 7), false)
            .unwrap();
        q.push_now(owned(CAROL, Priority::Normal, 8), false)
            .unwrap();
        q.push_now(owned(BOB, Priority::Low, 9), false).unwrap();
        q.push_now(owned(ALICE, Priority::High, 10), false).unwrap();
        assert_eq!(q.queued_of(ALICE), 6);
        assert_eq!(
            drain(&q),
            [
                (ALICE, 10),
                (ALICE, 1),
                (BOB, 6),
                (CAROL, 7),
                (ALICE, 2),
                (CAROL, 8),
                (ALICE, 3),
                (ALICE, 4),
                (ALICE, 5),
                (BOB, 9),
            ]
        );
        assert_eq!(q.depth().total(), 0);
        assert_eq!(q.queued_of(ALICE), 0);
    }

    #[test]
    fn a_backlog_of_ten_thousand_delays_a_late_single_task_by_one_turn() {
        let q = PriorityQueue::new(usize::MAX);
        for seq in 0..10_000 {
            q.push_now(owned(ALICE, Priority::Normal, seq), false)
                .unwrap();
        }
        q.try_pop().unwrap().unwrap();
        q.push_now(owned(BOB, Priority::Normal, 10_000), false)
            .unwrap();
        let next: Vec<_> = (0..2)
            .map(|_| q.try_pop().unwrap().unwrap().owner)
            .collect();
        assert_eq!(next, [ALICE, BOB]);
    }

    #[test]
    fn a_user_at_the_run_cap_waits_while_others_run() {
        let q = PriorityQueue::new(100).with_run_cap(1);
        for seq in 1..=3 {
            q.push_now(owned(ALICE, Priority::High, seq), false)
                .unwrap();
        }
        q.push_now(owned(BOB, Priority::Low, 4), false).unwrap();
        q.push_now(owned(BOB, Priority::Low, 5), false).unwrap();
        // Alice runs one; her other high tasks wait while Bob's low ones go.
        assert_eq!(drain(&q), [(ALICE, 1), (BOB, 4)]);
        q.release(BOB);
        assert_eq!(drain(&q), [(BOB, 5)]);
        q.release(ALICE);
        assert_eq!(drain(&q), [(ALICE, 2)]);
        q.release(ALICE);
        q.release(BOB);
        assert_eq!(drain(&q), [(ALICE, 3)]);
        assert_eq!(q.queued_of(ALICE), 0);
        q.release(ALICE);
        assert!(q.lanes().users.is_empty(), "idle owners are forgotten");
    }

    #[tokio::test]
    async fn a_release_wakes_a_worker_waiting_for_a_capped_users_task() {
        let q = std::sync::Arc::new(PriorityQueue::new(10).with_run_cap(1));
        q.push_now(owned(ALICE, Priority::Normal, 1), false)
            .unwrap();
        q.push_now(owned(ALICE, Priority::Normal, 2), false)
            .unwrap();
        assert_eq!(q.pop().await.unwrap().task.seq, 1);
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        q.release(ALICE);
        assert_eq!(waiter.await.unwrap().unwrap().task.seq, 2);
    }

    #[test]
    fn removing_tasks_keeps_turns_and_counts_right() {
        let q = PriorityQueue::new(100).with_run_cap(1);
        let a1 = owned(ALICE, Priority::Normal, 1);
        let a2 = owned(ALICE, Priority::Normal, 2);
        let b1 = owned(BOB, Priority::Normal, 3);
        for t in [a1, a2, b1] {
            q.push_now(t, false).unwrap();
        }
        assert!(q.remove(&a1));
        assert!(!q.remove(&a1));
        assert_eq!(q.try_pop().unwrap().unwrap().task_id, a2.task_id);
        // Alice is at the cap: her next task parks her; removing it unparks nothing stale.
        let a3 = owned(ALICE, Priority::Normal, 4);
        q.push_now(a3, false).unwrap();
        assert_eq!(q.try_pop().unwrap().unwrap().task_id, b1.task_id);
        assert_eq!(q.try_pop().unwrap(), None);
        assert!(q.remove(&a3));
        q.release(ALICE);
        assert_eq!(q.try_pop().unwrap(), None);
        assert_eq!(q.depth(), QueueDepth::from([0, 0, 0, 0]));
        q.release(BOB);
        assert!(q.lanes().users.is_empty());
    }

    #[test]
    fn out_of_order_pushes_keep_each_users_submit_order() {
        let q = PriorityQueue::new(100);
        // Pushed out of order, as a failover's task comes back with its old seq.
        for (owner, seq) in [(BOB, 2), (ALICE, 1), (ALICE, 3), (BOB, 4), (ALICE, 0)] {
            q.push_now(owned(owner, Priority::Normal, seq), false)
                .unwrap();
        }
        assert_eq!(
            drain(&q),
            [(BOB, 2), (ALICE, 0), (BOB, 4), (ALICE, 1), (ALICE, 3)]
        );
    }

    /// Every owner with tasks of a priority is in its turns once, or parked there; counts
    /// add up; nobody runs past the cap.
    fn check_invariants(lanes: &Lanes, cap: u64) {
        let mut total = 0;
        for (p, lane) in lanes.lanes.iter().enumerate() {
            let mut len = 0;
            for (owner, user) in &lanes.users {
                let backlog = &user.backlogs[p];
                len += backlog.len();
                let turns = lane.turns.iter().filter(|o| *o == owner).count();
                let parked = user.parked & (1 << p) != 0;
                match (backlog.is_empty(), turns, parked) {
                    (true, 0, false) | (false, 1, false) | (false, 0, true) => {}
                    other => panic!("owner {owner} in lane {p}: {other:?}"),
                }
                assert!(
                    backlog
                        .iter()
                        .zip(backlog.iter().skip(1))
                        .all(|(a, b)| a.seq < b.seq)
                );
            }
            assert_eq!(lane.len, len);
            total += len;
        }
        assert_eq!(lanes.len, total);
        for user in lanes.users.values() {
            assert_eq!(
                user.queued,
                user.backlogs.iter().map(VecDeque::len).sum::<usize>()
            );
            assert!(user.running <= cap && (user.queued > 0 || user.running > 0));
        }
    }

    #[test]
    fn random_pushes_pops_releases_and_removals_keep_the_rules() {
        let cap = 2;
        let q = PriorityQueue::new(usize::MAX).with_run_cap(cap);
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut queued, mut running): (Vec<QueuedTask>, Vec<QueuedTask>) = (vec![], vec![]);
        for seq in 0..5_000 {
            match next() % 4 {
                0 | 1 => {
                    let owner = Uuid::from_u128(u128::from(next() % 5));
                    let task = owned(owner, Priority::ALL[(next() % 4) as usize], seq);
                    q.push_now(task, false).unwrap();
                    queued.push(task);
                }
                2 => match q.try_pop().unwrap() {
                    Some(task) => {
                        // Nothing of a higher priority was runnable, and it was its owner's
                        // oldest task of its priority.
                        let runs = |o: Uuid| running.iter().filter(|t| t.owner == o).count();
                        assert!(!queued.iter().any(|t| t.priority > task.priority
                            && (runs(t.owner) as u64) < cap));
                        assert!(!queued.iter().any(|t| t.owner == task.owner
                            && t.priority == task.priority
                            && t.seq < task.seq));
                        queued.retain(|t| t.task_id != task.task_id);
                        running.push(task);
                    }
                    None => assert!(queued.iter().all(|t| {
                        running.iter().filter(|r| r.owner == t.owner).count() as u64 >= cap
                    })),
                },
                _ if next() % 2 == 0 && !running.is_empty() => {
                    let done = running.swap_remove((next() % running.len() as u64) as usize);
                    q.release(done.owner);
                }
                _ if !queued.is_empty() => {
                    let gone = queued.swap_remove((next() % queued.len() as u64) as usize);
                    assert!(q.remove(&gone));
                }
                _ => {}
            }
            check_invariants(&q.lanes(), cap);
            assert_eq!(q.depth().total(), queued.len());
        }
    }

    #[tokio::test]
    async fn capacity_is_enforced_except_for_recovery() {
        let q = PriorityQueue::new(1);
        q.push_now(task(Priority::Low, 1), false).unwrap();
        assert_eq!(
            q.push_now(task(Priority::Low, 2), false),
            Err(QueueError::Full(1))
        );
        q.push_now(task(Priority::Low, 3), true).unwrap();
        assert_eq!(q.depth(), QueueDepth::from([2, 0, 0, 0]));
    }

    #[tokio::test]
    async fn a_waiting_worker_is_woken_by_push_and_by_close() {
        let q = std::sync::Arc::new(PriorityQueue::new(10));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        let t = task(Priority::Normal, 1);
        q.push_now(t, false).unwrap();
        assert_eq!(waiter.await.unwrap().map(|l| l.task), Some(t));

        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
