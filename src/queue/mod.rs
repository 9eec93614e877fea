//! The task queue: which queued task runs next. Strict priority (critical > high > normal >
//! low), FIFO within a priority.
//!
//! [`TaskQueue`] is the seam. The embedded implementation, [`PriorityQueue`], lives in memory
//! and holds ids only: durability lives in the task journal (a task is journaled before it is
//! queued, and start-up re-queues every unfinished task). Its workers wait on a `Notify`,
//! never poll: an idle server uses no CPU. Compatibility mode will add one on Redis.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::records::{Priority, QueueDepth};

/// A queued task: enough to order it and find it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedTask {
    pub task_id: Uuid,
    pub priority: Priority,
    /// Submit sequence number; FIFO order within a priority.
    pub seq: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueueError {
    #[error("the queue holds {0} tasks, its capacity")]
    Full(usize),
    #[error("the queue is closed")]
    Closed,
}

#[derive(Default)]
struct Lanes {
    /// Indexed by `Priority as usize`; the highest index is served first.
    lanes: [VecDeque<QueuedTask>; 4],
    closed: bool,
}

/// The order in which queued tasks run.
pub trait TaskQueue: Send + Sync {
    /// Queues a task, refusing beyond capacity unless `force` (for a task already journaled,
    /// which must never be dropped).
    fn push(&self, task: QueuedTask, force: bool) -> Result<(), QueueError>;

    /// Refuses new submissions once the queue is at capacity.
    fn check_capacity(&self) -> Result<(), QueueError>;

    /// Waits for the next task; `None` once the queue is closed.
    fn pop(&self) -> BoxFuture<'_, Option<QueuedTask>>;

    /// Removes a queued task (e.g. canceled). Returns whether it was queued.
    fn remove(&self, task_id: Uuid) -> bool;

    /// Stops handing out tasks; waiting workers get `None`. Queued tasks stay journaled.
    fn close(&self);

    /// Queued tasks per priority.
    fn depth(&self) -> QueueDepth;
}

/// The embedded queue: one in-memory lane per priority.
pub struct PriorityQueue {
    /// A std Mutex: critical sections are a few pointer moves and never await.
    inner: Mutex<Lanes>,
    available: Notify,
    capacity: usize,
}

impl PriorityQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            available: Notify::new(),
            capacity,
        }
    }

    fn try_pop(&self) -> Result<Option<QueuedTask>, QueueError> {
        let mut inner = self.inner.lock().expect("queue lock");
        if inner.closed {
            return Err(QueueError::Closed);
        }
        Ok(inner.lanes.iter_mut().rev().find_map(VecDeque::pop_front))
    }

    fn len(&self) -> usize {
        let inner = self.inner.lock().expect("queue lock");
        inner.lanes.iter().map(VecDeque::len).sum()
    }
}

impl TaskQueue for PriorityQueue {
    fn push(&self, task: QueuedTask, force: bool) -> Result<(), QueueError> {
        {
            let mut inner = self.inner.lock().expect("queue lock");
            if inner.closed {
                return Err(QueueError::Closed);
            }
            let len: usize = inner.lanes.iter().map(VecDeque::len).sum();
            if len >= self.capacity && !force {
                return Err(QueueError::Full(len));
            }
            let lane = &mut inner.lanes[task.priority as usize];
            // Recovery may push out of order; keep each lane sorted by seq.
            let at = lane.partition_point(|t| t.seq < task.seq);
            lane.insert(at, task);
        }
        self.available.notify_one();
        Ok(())
    }

    fn check_capacity(&self) -> Result<(), QueueError> {
        match self.len() {
            len if len >= self.capacity => Err(QueueError::Full(len)),
            _ => Ok(()),
        }
    }

    fn pop(&self) -> BoxFuture<'_, Option<QueuedTask>> {
        async move {
            loop {
                let notified = self.available.notified();
                tokio::pin!(notified);
                // Register before checking, so a push between the check and the await still
                // wakes us.
                notified.as_mut().enable();
                match self.try_pop() {
                    Ok(Some(task)) => return Some(task),
                    Ok(None) => notified.await,
                    Err(QueueError::Closed) | Err(QueueError::Full(_)) => return None,
                }
            }
        }
        .boxed()
    }

    fn remove(&self, task_id: Uuid) -> bool {
        let mut inner = self.inner.lock().expect("queue lock");
        for lane in inner.lanes.iter_mut() {
            if let Some(at) = lane.iter().position(|t| t.task_id == task_id) {
                lane.remove(at);
                return true;
            }
        }
        false
    }

    fn close(&self) {
        self.inner.lock().expect("queue lock").closed = true;
        self.available.notify_waiters();
    }

    fn depth(&self) -> QueueDepth {
        let inner = self.inner.lock().expect("queue lock");
        QueueDepth::from(std::array::from_fn(|i| inner.lanes[i].len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(priority: Priority, seq: u64) -> QueuedTask {
        QueuedTask {
            task_id: Uuid::new_v4(),
            priority,
            seq,
        }
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
            q.push(t, false).unwrap();
        }
        let mut seqs = Vec::new();
        for _ in 0..order.len() {
            seqs.push(q.pop().await.unwrap().seq);
        }
        assert_eq!(seqs, [3, 5, 2, 4, 1]);
    }

    #[tokio::test]
    async fn capacity_is_enforced_except_for_recovery() {
        let q = PriorityQueue::new(1);
        q.push(task(Priority::Low, 1), false).unwrap();
        assert_eq!(
            q.push(task(Priority::Low, 2), false),
            Err(QueueError::Full(1))
        );
        q.push(task(Priority::Low, 3), true).unwrap();
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
        q.push(t, false).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(t));

        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        q.close();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
