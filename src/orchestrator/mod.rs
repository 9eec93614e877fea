//! The meta-agent: auctions, task lifecycle and the worker pool.
//!
//! Lifecycle: `submit` runs the auction over the in-memory catalog, journals the task in the
//! [`ledger::Ledger`] (its WAL record is on disk before the 202), then queues it. A worker pops
//! it, marks it `running`, executes the winning agent and journals the outcome: failover to
//! the next bidder, or a terminal state with the agent's updated statistics. The ledger applies
//! the journal to the store in batches. Status changes are announced on the hub to the owner.

pub mod analytics;
mod auction;
pub mod codec;
mod engine;
pub mod ledger;
mod runs;
mod task;

pub use auction::{Bid, BidScores, MAX_BIDS, NoEligibleAgent, Pool, Weights, rank, run_auction};
pub use engine::{Orchestrator, Submission, TaskError};
pub use runs::RecentStats;
pub use task::{Attempt, FailureCode, Priority, Task, TaskCounts, TaskStatus};
