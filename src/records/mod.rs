//! Records: the plain data every room shares, with their pure methods and encodings (tasks,
//! bids, agents, versions, reviews, users, API keys, analytics cells).
//!
//! The bottom layer: it imports nothing of the project's, so the store, the journal, the
//! domain and the HTTP layer can all speak in these types without importing each other. No
//! I/O and no locks.

mod agent;
mod analytics;
mod api_key;
mod bid;
pub mod codec;
mod hex;
mod net;
mod policy;
mod run;
mod task;
mod usage;
mod user;
mod version;

pub use agent::{
    Agent, AgentOutcome, AgentStats, AgentStatus, Build, Limits, PRIOR_REVIEWS, Rating, Rejection,
};
pub use analytics::{
    AgentSummary, Cell, DURATION_BOUNDS_MS, Durations, HOUR, HOUR_CELLS_KEPT, MINUTE,
    MINUTE_CELLS_KEPT, PlacedCell, Report, Throughput, Totals, Window, finished_at, report,
};
pub use api_key::{ApiKey, KeyHash, Scope, Scopes, hash_key};
pub use bid::{Bid, BidScores};
pub use hex::hex;
pub use net::{IpNet, client_bucket};
pub use policy::{Policy, WASI_FUNCTIONS, WASI_MODULE};
pub use run::{Claim, Outcome, RunLimits, RunOrder, RunOutput};
pub use task::{
    Attempt, FailureCode, Finished, Page, Priority, QueueDepth, Task, TaskChange, TaskCounts,
    TaskFilter, TaskState, TaskStatus,
};
pub use usage::{DAY_SECS, DailyUsage, result_bytes, secs_to_midnight, utc_day, utc_midnight};
pub use user::{Email, Role, User, UserView};
pub use version::{AgentVersion, Review, semver_cmp};
