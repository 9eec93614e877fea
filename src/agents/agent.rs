//! The agent record and its measured statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::manifest::Limits;

/// A published agent. Stored as JSON in `agents`; also the API shape.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: Uuid,
    pub owner_id: Uuid,
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
    /// Arguments after argv[0], from the manifest.
    #[serde(default)]
    pub argv: Vec<String>,
    /// Environment from the manifest (the runtime adds `ZEROSTATE_*`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Measured outcomes, updated in the same transaction that finishes each task.
    pub stats: AgentStats,
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
            created_at: OffsetDateTime::now_utc(),
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
