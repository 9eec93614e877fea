//! The meta-agent: submissions, auctions, the task lifecycle and the worker pool.
//!
//! Lifecycle: `submit` parses the [`Submission`], runs the auction over the in-memory catalog,
//! journals the task (durable before the 202), then queues it. A worker pops it, stages it
//! (agent, limits), marks it `running`, runs the winning agent and settles the verdict: back
//! to the queue, canceled, failover to the next bidder, or a terminal state with the agent's
//! updated statistics. Status changes are announced to the owner through the fan-out.

mod detached;
mod engine;
mod events;
mod outcome;
mod quota;
mod recovery;
mod run;
mod runs;
mod submission;

pub use engine::{Orchestrator, TaskError};
pub use quota::Submitter;
pub use runs::RecentStats;
pub use submission::Submission;
