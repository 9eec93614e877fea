//! A bid of an auction: one agent's offer for a task, with the scores that ranked it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Per-criterion scores, min-max normalised over the bidders to 0..=1 (1 is best).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BidScores {
    pub price: f64,
    pub quality: f64,
    pub speed: f64,
    pub reputation: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bid {
    pub agent_id: Uuid,
    pub agent_name: String,
    pub price: f64,
    /// Normalised per-criterion scores, 0..=1.
    pub scores: BidScores,
    /// Weighted sum of `scores`.
    pub total: f64,
}
