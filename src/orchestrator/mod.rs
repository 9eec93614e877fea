//! The meta-agent: auctions, task lifecycle and the worker pool.
//!
//! Lifecycle: `submit` runs the auction, commits the task (durable before the 202), then
//! queues it. A worker pops it, marks it `running`, executes the winning agent on the blocking
//! pool and commits the terminal state together with the agent's updated statistics. Status
//! changes are announced on the hub to the task's owner.

mod auction;
mod engine;
mod task;

pub use auction::{Bid, BidScores, NoEligibleAgent, Weights, run_auction};
pub use engine::{Orchestrator, RecentStats, Submission, TaskError};
pub use task::{Attempt, Priority, Task, TaskCounts, TaskStatus};
