//! The task queue on Redis streams, shared by the primary and the worker nodes: Sidekiq's
//! reliable fetch and BullMQ's leases, on a stream per priority with one consumer group.
//!
//! - **Order.** `{p}:q:<priority>`; a node takes the oldest entry of the highest priority
//!   first (one script, so the choice is atomic across the cluster): FIFO within a priority.
//! - **Leases.** A taken entry stays in the group's pending list under the taker's name until
//!   its run is done. The taker renews it (`XCLAIM … JUSTID`, only while it still owns it)
//!   every third of `queue.lease_secs`; an entry idle longer is taken over by the next node
//!   that looks (`XPENDING … IDLE`, then `XCLAIM`): a node that died loses its tasks to the
//!   living.
//! - **Fence.** A run reports once; the primary acknowledges and deletes the entry only if
//!   the reporter still owns it (one script), so a late result of a lost lease changes
//!   nothing, and the journal's compare-and-set makes the terminal state happen once.
//! - **Truth.** The primary journals every task before pushing it; on start it adopts what
//!   the streams hold and pushes what they lack. It alone pushes, so it counts the queue's
//!   depth in memory ([`Book`]) rather than asking Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::{Script, Value};
use tokio::sync::Notify;
use uuid::Uuid;

use super::Redis;
use crate::breaker::Tripped;
use crate::queue::{Lease, QueueError, QueuedTask, TaskQueue};
use crate::records::{Claim, Priority, QueueDepth};

/// The consumer group every node reads through.
const GROUP: &str = "runners";

/// Takes the next task: the oldest expired lease of the highest priority first (`XPENDING …
/// IDLE` finds it wherever it sits in the pending list), else its oldest new entry, then the
/// next priority. KEYS: the streams, highest priority first. ARGV: group, consumer, lease in
/// ms. Returns {stream index, entry id, fields, deliveries} or nil. A pending entry deleted
/// meanwhile is dropped from the pending list by `XCLAIM`.
const TAKE: &str = r"
for i = 1, #KEYS do
  local idle = redis.call('XPENDING', KEYS[i], ARGV[1], 'IDLE', ARGV[3], '-', '+', 1)
  if idle[1] then
    local claimed = redis.call('XCLAIM', KEYS[i], ARGV[1], ARGV[2], ARGV[3], idle[1][1])
    if claimed[1] then return {i - 1, claimed[1][1], claimed[1][2], idle[1][4] + 1} end
  end
  local fresh = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[i], '>')
  if fresh then
    local entry = fresh[1][2][1]
    return {i - 1, entry[1], entry[2], 1}
  end
end
return nil
";

/// Renews a lease if it still holds: consumer ARGV[2] owns entry ARGV[3] at delivery ARGV[4]
/// (a takeover delivers it again, even to the same consumer). 1, else 0.
const KEEP: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if p[1] == nil or p[1][2] ~= ARGV[2] or p[1][4] ~= tonumber(ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
";

/// Acknowledges and deletes entry ARGV[3] if the lease holds (as in [`KEEP`]): 1. 2 when the
/// entry is gone altogether (a report already removed it: perhaps this one, whose answer was
/// lost); else 0.
const DONE: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if p[1] == nil and #redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3]) == 0 then return 2 end
if p[1] == nil or p[1][2] ~= ARGV[2] or p[1][4] ~= tonumber(ARGV[4]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
";

/// Entries read at once when the primary adopts what the streams hold.
const PAGE: usize = 1000;

/// Where a task sits in the streams, as the primary knows it.
#[derive(Debug, Clone)]
struct Slot {
    task: QueuedTask,
    /// `None` while its `XADD` awaits its answer: a node may take the entry before the answer
    /// arrives, and the first entry taken for the task is then where it sits.
    entry: Option<String>,
    /// Not begun yet: counted in the depth.
    waiting: bool,
}

/// The primary's account of the streams: every task it pushed and has not seen done.
#[derive(Default)]
struct Book {
    slots: HashMap<Uuid, Slot>,
    depth: [usize; 4],
    per_owner: HashMap<Uuid, usize>,
    waiting: usize,
}

impl Book {
    fn insert(&mut self, slot: Slot) {
        if slot.waiting {
            self.count(&slot.task, true);
        }
        if let Some(old) = self.slots.insert(slot.task.task_id, slot)
            && old.waiting
        {
            self.count(&old.task, false);
        }
    }

    fn count(&mut self, task: &QueuedTask, up: bool) {
        let owner = self.per_owner.entry(task.owner).or_default();
        let p = task.priority as usize;
        if up {
            *owner += 1;
            self.depth[p] += 1;
            self.waiting += 1;
        } else {
            *owner = owner.saturating_sub(1);
            if *owner == 0 {
                self.per_owner.remove(&task.owner);
            }
            self.depth[p] = self.depth[p].saturating_sub(1);
            self.waiting = self.waiting.saturating_sub(1);
        }
    }

    /// The task of `entry` begins: true if `entry` is where the task sits (or its push has
    /// not been answered yet: then it sits there from now on).
    fn begin(&mut self, task: Uuid, entry: &str) -> bool {
        let Some(slot) = self.slots.get_mut(&task) else {
            return false;
        };
        match &slot.entry {
            Some(at) if at != entry => return false,
            Some(_) => {}
            None => slot.entry = Some(entry.to_owned()),
        }
        if slot.waiting {
            slot.waiting = false;
            let task = slot.task;
            self.count(&task, false);
        }
        true
    }

    /// The push of `task` was answered: it sits at `entry`, unless a node took it first.
    fn placed(&mut self, task: Uuid, entry: String) {
        if let Some(slot) = self.slots.get_mut(&task)
            && slot.entry.is_none()
        {
            slot.entry = Some(entry);
        }
    }

    /// Whether the book has `task` at `entry`.
    fn sits_at(&self, task: Uuid, entry: &str) -> bool {
        self.slots
            .get(&task)
            .is_some_and(|s| s.entry.as_deref() == Some(entry))
    }

    fn forget(&mut self, task: Uuid, entry: Option<&str>) -> Option<Slot> {
        let slot = self.slots.get(&task)?;
        if entry.is_some_and(|e| slot.entry.as_deref() != Some(e)) {
            return None;
        }
        let slot = self.slots.remove(&task)?;
        if slot.waiting {
            self.count(&slot.task, false);
        }
        Some(slot)
    }
}

/// The queue on Redis streams. One per process; cheap to share behind an `Arc`.
pub struct RedisQueue {
    redis: Redis,
    /// This process's name in the consumer group: the node's name and a random suffix, so a
    /// restarted node never mistakes its predecessor's leases for its own.
    consumer: String,
    lease: Duration,
    capacity: usize,
    book: Mutex<Book>,
    /// Woken by the bus when any node pushes.
    pushed: Arc<Notify>,
    closed: AtomicBool,
    bus: super::Bus,
    take: Script,
    keep: Script,
    done: Script,
}

impl RedisQueue {
    /// Creates the consumer group on each stream if need be.
    pub async fn open(
        redis: Redis,
        bus: super::Bus,
        consumer: &str,
        lease: Duration,
        capacity: usize,
    ) -> Result<Self, QueueError> {
        let queue = Self {
            consumer: consumer.to_owned(),
            lease,
            capacity,
            book: Mutex::default(),
            pushed: bus.pushed(),
            closed: AtomicBool::new(false),
            bus,
            take: Script::new(TAKE),
            keep: Script::new(KEEP),
            done: Script::new(DONE),
            redis,
        };
        queue.create_groups().await?;
        Ok(queue)
    }

    /// Creates each stream and its consumer group unless they exist.
    async fn create_groups(&self) -> Result<(), QueueError> {
        for p in Priority::ALL {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.stream(p))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut self.redis.conn())
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(queue_error(e)),
            }
        }
        Ok(())
    }

    fn stream(&self, priority: Priority) -> String {
        self.redis.key(&format!("q:{}", priority.as_str()))
    }

    /// The streams, highest priority first.
    fn streams(&self) -> Vec<String> {
        Priority::ALL
            .iter()
            .rev()
            .map(|p| self.stream(*p))
            .collect()
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn push_now(&self, task: QueuedTask) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XADD")
            .arg(self.stream(task.priority))
            .arg("*")
            .arg("t")
            .arg(task.task_id.to_string())
            .arg("o")
            .arg(task.owner.to_string())
            .arg("s")
            .arg(task.seq)
            .cmd("PUBLISH")
            .arg(self.bus.wake_channel())
            .arg("")
            .ignore();
        // In the book before Redis has it: a node woken by the push may take the entry, and
        // ask this node to begin it, before the answer to the XADD arrives here.
        self.book().insert(Slot {
            task,
            entry: None,
            waiting: true,
        });
        let mut conn = self.redis.conn();
        match self.redis.call(pipe.query_async(&mut conn)).await {
            Ok((entry,)) => {
                self.book().placed(task.task_id, entry);
                Ok(())
            }
            Err(e) => {
                let mut book = self.book();
                if book
                    .slots
                    .get(&task.task_id)
                    .is_some_and(|s| s.entry.is_none())
                {
                    book.forget(task.task_id, None);
                }
                Err(e)
            }
        }
    }

    /// One try at the next task.
    async fn try_take(&self) -> Result<Option<Lease>, QueueError> {
        let mut invocation = self.take.prepare_invoke();
        for stream in self.streams() {
            invocation.key(stream);
        }
        invocation
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.lease.as_millis() as u64);
        let mut conn = self.redis.conn();
        match self.redis.raw(invocation.invoke_async(&mut conn)).await {
            Ok(taken) => Ok(self.lease_of(taken)),
            Err(Tripped::Failed(e)) if e.code() == Some("NOGROUP") => {
                // The streams were lost (a Redis restarted without its data, or evicted keys):
                // the next look finds the group again.
                tracing::warn!("the queue's consumer group is gone; creating it again");
                self.create_groups().await?;
                Ok(None)
            }
            Err(e) => Err(super::unavailable(e)),
        }
    }

    /// The lease a [`TAKE`] reply describes; `None` for nil or an entry that is not a task
    /// (logged and left for the group: it never runs).
    fn lease_of(&self, taken: Value) -> Option<Lease> {
        let Value::Array(parts) = taken else {
            return None;
        };
        let [Value::Int(index), id, Value::Array(fields), rest @ ..] = parts.as_slice() else {
            return None;
        };
        let deliveries = match rest {
            [Value::Int(n)] => *n as u64,
            _ => 0,
        };
        let priority = *Priority::ALL.iter().rev().nth(*index as usize)?;
        let entry: String = redis::from_redis_value_ref(id).ok()?;
        let field = |name: &str| {
            fields
                .chunks(2)
                .find(|kv| {
                    redis::from_redis_value_ref::<String>(&kv[0])
                        .ok()
                        .as_deref()
                        == Some(name)
                })
                .and_then(|kv| redis::from_redis_value_ref::<String>(kv.get(1)?).ok())
        };
        let task = (|| {
            Some(QueuedTask {
                task_id: field("t")?.parse().ok()?,
                owner: field("o")?.parse().ok()?,
                priority,
                seq: field("s")?.parse().ok()?,
            })
        })();
        let Some(task) = task else {
            tracing::warn!(%entry, "a queue entry that is not a task; skipped");
            return None;
        };
        Some(Lease {
            task,
            claim: Some(Claim {
                priority,
                entry,
                consumer: self.consumer.clone(),
                deliveries,
            }),
        })
    }

    /// Runs [`KEEP`] or [`DONE`] for the lease; its answer (0 for a lease without a claim).
    async fn fenced(&self, script: &Script, lease: &Lease) -> Result<i64, QueueError> {
        let Some(claim) = &lease.claim else {
            return Ok(0);
        };
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.stream(claim.priority))
            .arg(GROUP)
            .arg(&claim.consumer)
            .arg(&claim.entry)
            .arg(claim.deliveries);
        let mut conn = self.redis.conn();
        self.redis.call(invocation.invoke_async(&mut conn)).await
    }

    /// Gives a lease back at once (its run did not begin): the entry becomes as idle as an
    /// expired lease, so the next node that looks takes it.
    pub async fn give_back(&self, lease: &Lease) {
        let Some(claim) = &lease.claim else {
            return;
        };
        let mut conn = self.redis.conn();
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(self.stream(claim.priority))
            .arg(GROUP)
            .arg(&claim.consumer)
            .arg(0)
            .arg(&claim.entry)
            .arg("IDLE")
            .arg(self.lease.as_millis() as u64)
            .arg("JUSTID");
        if let Err(e) = self.redis.call(cmd.query_async::<Value>(&mut conn)).await {
            tracing::debug!(error = %e, "could not give a lease back; it expires instead");
        }
    }

    /// Every entry the streams hold, by task: (priority, entry id), the oldest entry of a
    /// task when it has several. Read a page at a time.
    async fn entries(&self) -> Result<HashMap<Uuid, (QueuedTask, String)>, QueueError> {
        let mut found = HashMap::new();
        for priority in Priority::ALL {
            let mut from = "-".to_owned();
            loop {
                let page = self.page(priority, &from).await?;
                let full = page.len() == PAGE;
                for entry in page {
                    if let Some((task, id)) = self.entry_of(priority, entry) {
                        from = format!("({id}");
                        found.entry(task.task_id).or_insert((task, id));
                    }
                }
                if !full {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Up to [`PAGE`] entries of one stream from `from` on.
    async fn page(&self, priority: Priority, from: &str) -> Result<Vec<Value>, QueueError> {
        let mut conn = self.redis.conn();
        let mut range = redis::cmd("XRANGE");
        range
            .arg(self.stream(priority))
            .arg(from)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE);
        match self
            .redis
            .call(range.query_async::<Value>(&mut conn))
            .await?
        {
            Value::Array(entries) => Ok(entries),
            _ => Ok(Vec::new()),
        }
    }

    fn entry_of(&self, priority: Priority, entry: Value) -> Option<(QueuedTask, String)> {
        let Value::Array(parts) = entry else {
            return None;
        };
        let [id, fields] = parts.as_slice() else {
            return None;
        };
        let index = Value::Int(Priority::ALL.iter().rev().position(|p| *p == priority)? as i64);
        let lease = self.lease_of(Value::Array(vec![index, id.clone(), fields.clone()]))?;
        let claim = lease.claim?;
        Some((lease.task, claim.entry))
    }

    /// Pushes a journaled task until it lands (backing off while Redis is down).
    async fn push_until_queued(self: Arc<Self>, task: QueuedTask) {
        let mut wait = Duration::from_millis(100);
        while let Err(e) = self.push_now(task).await {
            tracing::warn!(task_id = %task.task_id, error = %e, "could not queue a journaled task; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    /// Deletes the entry of a task removed before it ran (best effort: a worker that takes it
    /// meanwhile finds it gone from the book and gives it back).
    fn delete_entry(&self, slot: Slot) {
        let (redis, stream) = (self.redis.clone(), self.stream(slot.task.priority));
        tokio::spawn(async move {
            let mut conn = redis.conn();
            let mut del = redis::cmd("XDEL");
            let Some(entry) = &slot.entry else {
                // Its push is unanswered: whoever takes the entry finds it gone and gives it
                // back.
                return;
            };
            del.arg(stream).arg(entry);
            if let Err(e) = redis.call(del.query_async::<i64>(&mut conn)).await {
                tracing::debug!(task_id = %slot.task.task_id, error = %e, "could not delete a removed task's entry");
            }
        });
    }
}

/// `self: Arc<Self>` methods need the queue behind an `Arc`: [`TaskQueue::push_later`] goes
/// through [`SharedQueue`].
pub struct SharedQueue(pub Arc<RedisQueue>);

impl TaskQueue for SharedQueue {
    fn push(&self, task: QueuedTask, force: bool) -> BoxFuture<'_, Result<(), QueueError>> {
        async move {
            let waiting = self.0.book().waiting;
            if waiting >= self.0.capacity && !force {
                return Err(QueueError::Full(waiting));
            }
            self.0.push_now(task).await
        }
        .boxed()
    }

    fn push_later(&self, task: QueuedTask) {
        tokio::spawn(self.0.clone().push_until_queued(task));
    }

    fn check_capacity(&self) -> Result<(), QueueError> {
        let breaker = self.0.redis.breaker();
        if let Some(retry_after) = breaker.retry_after() {
            return Err(QueueError::Unavailable {
                dependency: "redis",
                reason: "its circuit breaker is open".into(),
                retry_after,
            });
        }
        match self.0.book().waiting {
            n if n >= self.0.capacity => Err(QueueError::Full(n)),
            _ => Ok(()),
        }
    }

    fn pop(&self) -> BoxFuture<'_, Option<Lease>> {
        self.0.pop().boxed()
    }

    fn taken(&self, lease: &Lease) -> bool {
        let Some(claim) = &lease.claim else {
            return false;
        };
        self.0.book().begin(lease.task.task_id, &claim.entry)
    }

    fn keep_every(&self) -> Option<Duration> {
        Some(self.0.lease / 3)
    }

    fn keep(&self, lease: &Lease) -> BoxFuture<'_, Result<bool, QueueError>> {
        let lease = lease.clone();
        async move { Ok(self.0.fenced(&self.0.keep, &lease).await? == 1) }.boxed()
    }

    fn done(&self, lease: &Lease) -> BoxFuture<'_, Result<bool, QueueError>> {
        let lease = lease.clone();
        async move {
            let answer = self.0.fenced(&self.0.done, &lease).await?;
            let entry = lease.claim.as_ref().map(|c| c.entry.as_str());
            let mut book = self.0.book();
            // Gone while the book still has the task there: no report of another node removed
            // it (that one would have forgotten the slot), so this report's earlier try did, and
            // its answer was lost (Redis died between applying and answering).
            let done = answer == 1
                || (answer == 2 && entry.is_some_and(|e| book.sits_at(lease.task.task_id, e)));
            if done {
                book.forget(lease.task.task_id, entry);
            }
            Ok(done)
        }
        .boxed()
    }

    fn release(&self, _owner: Uuid) {}

    fn remove(&self, task: &QueuedTask) -> bool {
        let removed = {
            let mut book = self.0.book();
            match book.slots.get(&task.task_id) {
                Some(slot) if slot.waiting => book.forget(task.task_id, None),
                _ => None,
            }
        };
        match removed {
            Some(slot) => {
                self.0.delete_entry(slot);
                true
            }
            None => false,
        }
    }

    fn stop_run(&self, id: Uuid) -> bool {
        self.0.bus.cancel(id);
        true
    }

    fn adopt(
        &self,
        unfinished: Vec<(QueuedTask, bool)>,
    ) -> BoxFuture<'_, Result<Vec<(QueuedTask, bool)>, QueueError>> {
        async move {
            let entries = self.0.entries().await?;
            let mut missing = Vec::new();
            let mut book = self.0.book();
            for (task, running) in unfinished {
                match entries.get(&task.task_id) {
                    Some((_, entry)) => book.insert(Slot {
                        task,
                        entry: Some(entry.clone()),
                        waiting: !running,
                    }),
                    None => missing.push((task, running)),
                }
            }
            tracing::info!(
                held = book.slots.len(),
                missing = missing.len(),
                "adopted the tasks Redis holds"
            );
            Ok(missing)
        }
        .boxed()
    }

    fn close(&self) {
        self.0.closed.store(true, Ordering::Relaxed);
        self.0.pushed.notify_waiters();
    }

    fn depth(&self) -> QueueDepth {
        QueueDepth::from(self.0.book().depth)
    }

    fn queued_of(&self, owner: Uuid) -> usize {
        self.0.book().per_owner.get(&owner).copied().unwrap_or(0)
    }
}

impl RedisQueue {
    /// Waits for the next task: woken by pushes anywhere in the cluster, and looking at least
    /// every third of a lease for leases that expired. `None` once closed.
    pub async fn pop(&self) -> Option<Lease> {
        let look_every = (self.lease / 3).min(Duration::from_secs(1));
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            let pushed = self.pushed.notified();
            tokio::pin!(pushed);
            pushed.as_mut().enable();
            match self.try_take().await {
                Ok(Some(lease)) => return Some(lease),
                Ok(None) => {
                    let _ = tokio::time::timeout(look_every, pushed).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "could not take a task; retrying");
                    tokio::time::sleep(look_every).await;
                }
            }
        }
    }
}

fn queue_error(e: redis::RedisError) -> QueueError {
    QueueError::Unavailable {
        dependency: "redis",
        reason: e.category().to_owned(),
        retry_after: Duration::from_secs(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(owner: u128, priority: Priority, seq: u64, entry: &str) -> Slot {
        Slot {
            task: QueuedTask {
                task_id: Uuid::from_u128(1000 + u128::from(seq)),
                owner: Uuid::from_u128(owner),
                priority,
                seq,
            },
            entry: Some(entry.into()),
            waiting: true,
        }
    }

    #[test]
    fn the_book_counts_waiting_tasks_until_they_begin_or_go() {
        let mut book = Book::default();
        let a = slot(1, Priority::High, 1, "1-0");
        let b = slot(1, Priority::Low, 2, "2-0");
        let c = slot(2, Priority::Low, 3, "3-0");
        for s in [&a, &b, &c] {
            book.insert(s.clone());
        }
        assert_eq!((book.waiting, book.depth), (3, [2, 0, 1, 0]));
        assert_eq!(book.per_owner[&Uuid::from_u128(1)], 2);
        // Only the entry the task sits at begins it: a stale duplicate does not.
        assert!(!book.begin(a.task.task_id, "9-9"));
        assert!(book.begin(a.task.task_id, "1-0"));
        assert!(
            book.begin(a.task.task_id, "1-0"),
            "a takeover begins it again"
        );
        assert_eq!((book.waiting, book.depth), (2, [2, 0, 0, 0]));
        // Forgetting a begun task changes no count; a waiting one leaves the depth.
        assert!(book.forget(a.task.task_id, Some("1-0")).is_some());
        assert!(book.forget(b.task.task_id, Some("7-7")).is_none());
        assert!(book.forget(b.task.task_id, None).is_some());
        assert_eq!((book.waiting, book.depth), (1, [1, 0, 0, 0]));
        assert!(!book.per_owner.contains_key(&Uuid::from_u128(1)));
        // A task pushed again (failover) replaces its old slot without counting twice.
        book.insert(slot(2, Priority::Low, 3, "4-0"));
        assert_eq!((book.waiting, book.per_owner[&Uuid::from_u128(2)]), (1, 1));
    }

    /// Regression: a node took a fresh entry before the primary had the answer to its XADD;
    /// the task was not in the book yet, so the take gave it back and deleted it, and the
    /// acknowledged task stayed queued for ever.
    #[test]
    fn a_task_taken_before_its_push_is_answered_begins() {
        let mut book = Book::default();
        let mut a = slot(1, Priority::Normal, 1, "1-0");
        a.entry = None;
        book.insert(a.clone());
        assert!(
            book.begin(a.task.task_id, "5-0"),
            "the first entry taken is the one"
        );
        book.placed(a.task.task_id, "5-0".into());
        assert!(book.sits_at(a.task.task_id, "5-0"));
        assert!(
            !book.begin(a.task.task_id, "6-0"),
            "a duplicate does not begin it"
        );
        // The answer arriving after the take changes nothing.
        book.placed(a.task.task_id, "7-0".into());
        assert!(book.sits_at(a.task.task_id, "5-0"));
        assert_eq!(book.waiting, 0);
    }
}
