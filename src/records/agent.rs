//! The agent record and its measured statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// A published agent. Stored as JSON in `agents`; also the API shape.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: Uuid,
    pub owner_id: Uuid,
    /// The owner's display name (full name, else the email's local part), for listings and
    /// search; refreshed when the agent changes.
    #[serde(default)]
    pub owner_name: String,
    pub name: String,
    pub description: String,
    pub version: String,
    pub capabilities: Vec<String>,
    /// Price per execution, in credits; the auction compares it with the task's budget.
    pub price: f64,
    /// sha256 of the module; the key of its blob.
    pub binary_hash: String,
    pub binary_size: u64,
    /// `validating → compiling → ready`, or `rejected` (see `rejection`). Only ready agents
    /// bid in auctions.
    pub status: AgentStatus,
    /// Why the agent was rejected; `null` otherwise.
    #[serde(default)]
    pub rejection: Option<Rejection>,
    /// Progress and timings of the module's validation and compilation.
    #[serde(default)]
    pub build: Option<Build>,
    /// Run limits the manifest asked for; `null` fields take the server's defaults.
    #[serde(default)]
    pub limits: Limits,
    /// Arguments after argv[0], from the manifest. In the API, only the owner and admins
    /// see it (`GET /api/v1/agents/{id}`); listings and other users get the agent without it.
    #[serde(default)]
    pub argv: Vec<String>,
    /// Environment from the manifest (the runtime adds `ZEROSTATE_*`). Seen by the owner and
    /// admins only, like `argv`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// JSON Schema the task input must satisfy; `null` accepts any input.
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// Free-form JSON object from the owner (links, tags, notes); not interpreted.
    #[serde(default)]
    pub metadata: Option<Value>,
    /// A newer version still building: it becomes current when it is ready, and the agent
    /// keeps serving `version` until then.
    #[serde(default)]
    pub next_version: Option<String>,
    /// Reviews by users who ran it.
    #[serde(default)]
    pub rating: Rating,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    /// Measured outcomes, updated in the same transaction that finishes each task.
    pub stats: AgentStats,
}

/// The run limits an agent asks for; `None` takes the server's default. Each is at most the
/// server's maximum when uploaded, and is capped by the maximum in force when it runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub stdin_bytes: Option<u64>,
    pub stdout_bytes: Option<u64>,
    pub stderr_bytes: Option<u64>,
    /// Used only where the server meters fuel (`limits.max_fuel` set).
    pub fuel: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Stored; its function bodies are being validated (or wait for the build thread).
    Validating,
    /// Valid; being compiled to native code.
    Compiling,
    /// Compiled and eligible for auctions.
    Ready,
    /// Failed validation or compilation; `rejection` says why.
    Rejected,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Validating => "validating",
            AgentStatus::Compiling => "compiling",
            AgentStatus::Ready => "ready",
            AgentStatus::Rejected => "rejected",
        }
    }

    /// Ready or rejected: the build is over.
    pub fn is_built(self) -> bool {
        matches!(self, AgentStatus::Ready | AgentStatus::Rejected)
    }
}

/// Why a module was rejected after upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rejection {
    /// `invalid_wasm_module`, `compile_failed` or `compile_timeout`.
    pub code: String,
    pub message: String,
}

/// Timings of an agent's build. Progress while compiling: compare the time since
/// `compile_started_at` with `estimated_compile_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Build {
    /// Time spent validating the function bodies.
    pub validate_ms: Option<u64>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub compile_started_at: Option<OffsetDateTime>,
    /// The compile's expected length, from this server's measured compile speed; `null` until
    /// the server has measured one.
    pub estimated_compile_ms: Option<u64>,
    pub compile_ms: Option<u64>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

/// The agent's reviews, summarised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rating {
    /// Number of reviews (one per user).
    pub count: u64,
    /// Sum of the stars, kept so the mean stays exact as reviews change.
    pub sum: u64,
    /// Mean stars, 1 to 5; `null` without reviews.
    pub mean: Option<f64>,
    /// Bayesian average: the mean shrunk towards 3 stars by [`PRIOR_REVIEWS`] imaginary
    /// reviews, so a few reviews move it little and many move it to their mean. What the
    /// marketplace sorts by and the auction's quality criterion uses.
    pub score: f64,
}

/// Weight of the 3-star prior in [`Rating::score`], in reviews. With 5, one 5-star review
/// scores 3.33 and a hundred 4.5-star reviews 4.43.
pub const PRIOR_REVIEWS: f64 = 5.0;
const PRIOR_STARS: f64 = 3.0;

impl Default for Rating {
    fn default() -> Self {
        Self {
            count: 0,
            sum: 0,
            mean: None,
            score: PRIOR_STARS,
        }
    }
}

impl Rating {
    /// Adds a review of `stars`, or replaces an earlier one of `previous` stars.
    pub fn apply(&mut self, stars: u8, previous: Option<u8>) {
        match previous {
            Some(old) => self.sum = self.sum - u64::from(old) + u64::from(stars),
            None => {
                self.count += 1;
                self.sum += u64::from(stars);
            }
        }
        self.refresh();
    }

    fn refresh(&mut self) {
        let (n, sum) = (self.count as f64, self.sum as f64);
        self.mean = (self.count > 0).then(|| sum / n);
        self.score = (PRIOR_REVIEWS * PRIOR_STARS + sum) / (PRIOR_REVIEWS + n);
    }

    /// The score as a fraction: 1 star is 0, 5 stars 1.
    pub fn quality(&self) -> f64 {
        (self.score - 1.0) / 4.0
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentStats {
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    /// completed / (completed + failed); `null` until the agent has run.
    pub success_rate: Option<f64>,
    /// Mean wall time of finished runs; `null` until the agent has run.
    pub avg_duration_ms: Option<f64>,
    /// Sum of run durations, kept so the mean stays exact.
    #[serde(default)]
    pub total_duration_ms: u64,
    /// Exponential moving average of success (1) and failure (0): recent behaviour weighs
    /// more. The auction's quality criterion until reviews exist.
    #[serde(default)]
    pub ema_success: Option<f64>,
    /// Exponential moving average of run durations; the auction's speed criterion.
    #[serde(default)]
    pub ema_duration_ms: Option<f64>,
}

/// The outcome of one run, folded into the agent's statistics (in the same store transaction
/// as the task's state).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AgentOutcome {
    pub agent_id: Uuid,
    pub success: bool,
    pub duration_ms: u64,
}

/// Weight of the newest run in the moving averages.
const EMA_ALPHA: f64 = 0.2;

fn ema(previous: Option<f64>, sample: f64) -> f64 {
    previous.map_or(sample, |p| EMA_ALPHA * sample + (1.0 - EMA_ALPHA) * p)
}

impl AgentStats {
    /// Records one finished run.
    pub fn record(&mut self, success: bool, duration_ms: u64) {
        if success {
            self.tasks_completed += 1;
        } else {
            self.tasks_failed += 1;
        }
        self.total_duration_ms += duration_ms;
        let runs = self.runs() as f64;
        self.success_rate = Some(self.tasks_completed as f64 / runs);
        self.avg_duration_ms = Some(self.total_duration_ms as f64 / runs);
        self.ema_success = Some(ema(self.ema_success, if success { 1.0 } else { 0.0 }));
        self.ema_duration_ms = Some(ema(self.ema_duration_ms, duration_ms as f64));
    }

    pub fn runs(&self) -> u64 {
        self.tasks_completed + self.tasks_failed
    }
}

impl Agent {
    /// A ready agent that has never run and has no module, for tests and benchmarks.
    pub fn fixture(name: &str, price: f64, capabilities: &[&str]) -> Self {
        Self {
            id: Uuid::now_v7(),
            owner_id: Uuid::nil(),
            owner_name: String::new(),
            name: name.into(),
            description: String::new(),
            version: "1.0.0".into(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
            price,
            binary_hash: String::new(),
            binary_size: 0,
            status: AgentStatus::Ready,
            rejection: None,
            build: None,
            limits: Limits::default(),
            argv: Vec::new(),
            env: BTreeMap::new(),
            input_schema: None,
            metadata: None,
            next_version: None,
            rating: Rating::default(),
            created_at: OffsetDateTime::now_utc(),
            updated_at: None,
            stats: AgentStats::default(),
        }
    }

    /// True if the agent offers every capability in `required`.
    pub fn offers_all(&self, required: &[String]) -> bool {
        required.iter().all(|c| self.capabilities.contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_five_star_review_does_not_beat_a_hundred_four_and_a_halfs() {
        let mut one = Rating::default();
        one.apply(5, None);
        let mut many = Rating::default();
        for i in 0..100 {
            many.apply(if i % 2 == 0 { 4 } else { 5 }, None);
        }
        assert_eq!(one.mean, Some(5.0));
        assert_eq!(many.mean, Some(4.5));
        assert!(many.score > one.score, "{} vs {}", many.score, one.score);
        assert!((one.score - 10.0 / 3.0).abs() < 1e-9);
        // Replacing a review moves the sum, not the count.
        one.apply(1, Some(5));
        assert_eq!((one.count, one.sum, one.mean), (1, 1, Some(1.0)));
        assert_eq!(Rating::default().quality(), 0.5);
    }

    #[test]
    fn moving_averages_follow_recent_runs() {
        let mut stats = AgentStats::default();
        stats.record(true, 100);
        assert_eq!(
            (stats.ema_success, stats.ema_duration_ms),
            (Some(1.0), Some(100.0))
        );
        stats.record(false, 200);
        assert!((stats.ema_success.unwrap() - 0.8).abs() < 1e-9);
        assert!((stats.ema_duration_ms.unwrap() - 120.0).abs() < 1e-9);
        assert_eq!(
            (stats.success_rate, stats.avg_duration_ms),
            (Some(0.5), Some(150.0))
        );
    }
}
