//! The agent record and its measured statistics.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

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
    pub status: AgentStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Measured outcomes, updated in the same transaction that finishes each task.
    pub stats: AgentStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Validated and eligible for auctions.
    Ready,
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
    }

    pub fn runs(&self) -> u64 {
        self.tasks_completed + self.tasks_failed
    }
}

impl Agent {
    /// True if the agent offers every capability in `required`.
    pub fn offers_all(&self, required: &[String]) -> bool {
        required.iter().all(|c| self.capabilities.contains(c))
    }
}
