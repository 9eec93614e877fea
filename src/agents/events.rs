//! The marketplace's live messages: `agent_update` in its forms.

use serde_json::json;

use crate::realtime::Event;
use crate::records::Agent;

/// The agent was registered, updated or deleted (`action`), or its build moved on.
pub fn agent_update(agent: &Agent, action: &str) -> Event {
    Event::new(
        "agent_update",
        json!({"agent_id": agent.id, "name": agent.name, "action": action, "status": agent.status}),
    )
}

/// A version of the agent was added, replaced, deleted, or made current again
/// (`change`: added | replaced | deleted | rollback).
pub fn agent_version(agent: &Agent, version: &str, change: &str) -> Event {
    Event::new(
        "agent_update",
        json!({"agent_id": agent.id, "name": agent.name, "action": "version",
            "version": version, "change": change, "current_version": agent.version,
            "status": agent.status}),
    )
}

/// The agent's live statistics, for the watchers of its topic.
pub fn agent_stats(agent: &Agent) -> Event {
    Event::new(
        "agent_update",
        json!({"agent_id": agent.id, "name": agent.name, "action": "stats",
            "stats": agent.stats, "rating": agent.rating}),
    )
}
