//! The orchestrator's live messages: `task_update` and `queue_update`.

use serde_json::json;

use crate::realtime::Event;
use crate::records::{QueueDepth, Task, TaskStatus};

/// A task changed: to its owner and to admins watching every task.
pub fn task_update(task: &Task) -> Event {
    let state = &task.state;
    Event::new(
        "task_update",
        json!({
            "task_id": task.id,
            "owner_id": task.owner_id,
            "status": state.status,
            "query": task.query,
            "agent_id": state.agent_id,
            "agent_name": state.agent_name,
            // 1-based number of the run this update is about.
            "attempt": state.attempts.len() + usize::from(state.status == TaskStatus::Running),
            "error": state.error,
            "error_code": state.error_code,
            "price": state.price,
            "duration_ms": state.duration_ms,
            "created_at": task.created_at.format(&time::format_description::well_known::Rfc3339).ok(),
        }),
    )
}

/// The queue's depth per priority and the runs in progress, for the `queue` topic.
pub fn queue_update(depth: QueueDepth, running: usize) -> Event {
    Event::new(
        "queue_update",
        json!({
            "queue_depth": depth,
            "queued": depth.total(),
            "running": running,
        }),
    )
}
