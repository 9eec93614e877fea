//! The in-memory task queue: strict priority (critical > high > normal > low), FIFO within a
//! priority. Durability lives in the store (a task is committed before it is queued, and
//! start-up re-queues every unfinished task); this structure only orders work.
//!
//! Workers wait on a `Notify`, never poll: an idle server uses no CPU.

pub mod wal;

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::orchestrator::Priority;

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

pub struct TaskQueue {
    /// A std Mutex: critical sections are a few pointer moves and never await.
    inner: Mutex<Lanes>,
    available: Notify,
    capacity: usize,
}

impl TaskQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::default(),
            available: Notify::new(),
            capacity,
        }
    }

    /// Queues a task, refusing beyond capacity unless `force` (used by recovery, which must
    /// never drop a stored task).
    pub fn push(&self, task: QueuedTask, force: bool) -> Result<(), QueueError> {
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

    /// Refuses new submissions once the queue is at capacity.
    pub fn check_capacity(&self) -> Result<(), QueueError> {
        let inner = self.inner.lock().expect("queue lock");
        let len: usize = inner.lanes.iter().map(VecDeque::len).sum();
        if len >= self.capacity {
            Err(QueueError::Full(len))
        } else {
            Ok(())
        }
    }

    fn try_pop(&self) -> Result<Option<QueuedTask>, QueueError> {
        let mut inner = self.inner.lock().expect("queue lock");
        if inner.closed {
            return Err(QueueError::Closed);
        }
        Ok(inner.lanes.iter_mut().rev().find_map(VecDeque::pop_front))
    }

    /// Waits for the next task; `None` once the queue is closed.
    pub async fn pop(&self) -> Option<QueuedTask> {
        loop {
            let notified = self.available.notified();
            tokio::pin!(notified);
            // Register before checking, so a push between the check and the await still wakes us.
            notified.as_mut().enable();
            match self.try_pop() {
                Ok(Some(task)) => return Some(task),
                Ok(None) => notified.await,
                Err(QueueError::Closed) | Err(QueueError::Full(_)) => return None,
            }
        }
    }

    /// Removes a queued task (e.g. canceled). Returns whether it was queued.
    pub fn remove(&self, task_id: Uuid) -> bool {
        let mut inner = self.inner.lock().expect("queue lock");
        for lane in inner.lanes.iter_mut() {
            if let Some(at) = lane.iter().position(|t| t.task_id == task_id) {
                lane.remove(at);
                return true;
            }
        }
        false
    }

    /// Stops handing out tasks; waiting workers get `None`. Queued tasks stay in the store.
    pub fn close(&self) {
        self.inner.lock().expect("queue lock").closed = true;
        self.available.notify_waiters();
    }

    /// Queued tasks per priority, lowest priority first.
    pub fn depth(&self) -> [usize; 4] {
        let inner = self.inner.lock().expect("queue lock");
        std::array::from_fn(|i| inner.lanes[i].len())
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
        let q = TaskQueue::new(10);
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
        let q = TaskQueue::new(1);
        q.push(task(Priority::Low, 1), false).unwrap();
        assert_eq!(
            q.push(task(Priority::Low, 2), false),
            Err(QueueError::Full(1))
        );
        q.push(task(Priority::Low, 3), true).unwrap();
        assert_eq!(q.depth(), [2, 0, 0, 0]);
    }

    #[tokio::test]
    async fn a_waiting_worker_is_woken_by_push_and_by_close() {
        let q = std::sync::Arc::new(TaskQueue::new(10));
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
