//! The auction: every eligible agent bids its price; bids are ranked by a weighted score.
//!
//! Eligible: ready, offers every required capability, price ≤ budget. Each criterion is
//! min-max normalised over the bidders to 0..=1 (1 is best; when all bidders tie, all get 1):
//! price (cheaper is better); quality, the moving average of success; speed, the moving
//! average of duration (faster is better); reputation, the Wilson lower bound of the success
//! rate over all runs. An agent that has never run gets a neutral prior: 0.5 quality and
//! reputation, and the mean duration of the bidders that have run.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::agents::Agent;

/// Criterion weights; they sum to 1.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub price: f64,
    pub quality: f64,
    pub speed: f64,
    pub reputation: f64,
}

impl From<crate::config::AuctionSettings> for Weights {
    fn from(a: crate::config::AuctionSettings) -> Self {
        Self {
            price: a.price_weight,
            quality: a.quality_weight,
            speed: a.speed_weight,
            reputation: a.reputation_weight,
        }
    }
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            price: 0.3,
            quality: 0.3,
            speed: 0.2,
            reputation: 0.2,
        }
    }
}

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

/// Why no agent could bid.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct NoEligibleAgent(pub String);

/// Moving average of success (recent runs weigh more); 0.5 for a newcomer.
fn quality(agent: &Agent) -> f64 {
    agent.stats.ema_success.unwrap_or(0.5)
}

/// Lower bound of the 95% Wilson interval of the success rate; 0.5 for a newcomer.
fn reputation(agent: &Agent) -> f64 {
    let n = agent.stats.runs() as f64;
    if n == 0.0 {
        return 0.5;
    }
    let p = agent.stats.tasks_completed as f64 / n;
    let z = 1.96_f64;
    let z2 = z * z;
    (p + z2 / (2.0 * n) - z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt()) / (1.0 + z2 / n)
}

/// Scales `values` to 0..=1 where 1 is best. All-equal values all score 1.
fn normalise(values: &[f64], higher_is_better: bool) -> Vec<f64> {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = max - min;
    values
        .iter()
        .map(|v| {
            if span <= f64::EPSILON {
                1.0
            } else if higher_is_better {
                (v - min) / span
            } else {
                (max - v) / span
            }
        })
        .collect()
}

/// Most bids kept (and stored on the task): the winner and the runners-up failover would use.
pub const MAX_BIDS: usize = 10;

/// Ranks the eligible agents and returns the best [`MAX_BIDS`], best first. Ties go to the cheaper, then the older agent id.
pub fn run_auction(
    agents: &[Agent],
    required: &[String],
    budget: f64,
    weights: Weights,
) -> Result<Vec<Bid>, NoEligibleAgent> {
    let capable: Vec<&Agent> = agents.iter().filter(|a| a.offers_all(required)).collect();
    if capable.is_empty() {
        return Err(NoEligibleAgent(if required.is_empty() {
            "no agent is published yet".into()
        } else {
            format!(
                "no ready agent offers every requested capability: {}",
                required.join(", ")
            )
        }));
    }
    let bidders: Vec<&Agent> = capable
        .iter()
        .copied()
        .filter(|a| a.price <= budget)
        .collect();
    if bidders.is_empty() {
        let cheapest = capable
            .iter()
            .map(|a| a.price)
            .fold(f64::INFINITY, f64::min);
        return Err(NoEligibleAgent(format!(
            "{} agent(s) offer the capabilities, but all are above the budget {budget} (cheapest costs {cheapest})",
            capable.len()
        )));
    }

    let measured: Vec<f64> = bidders
        .iter()
        .filter_map(|a| a.stats.ema_duration_ms)
        .collect();
    let neutral_duration = if measured.is_empty() {
        0.0
    } else {
        measured.iter().sum::<f64>() / measured.len() as f64
    };
    let prices: Vec<f64> = bidders.iter().map(|a| a.price).collect();
    let durations: Vec<f64> = bidders
        .iter()
        .map(|a| a.stats.ema_duration_ms.unwrap_or(neutral_duration))
        .collect();
    let qualities: Vec<f64> = bidders.iter().map(|a| quality(a)).collect();
    let reputations: Vec<f64> = bidders.iter().map(|a| reputation(a)).collect();
    let (price_s, speed_s) = (normalise(&prices, false), normalise(&durations, false));
    let (quality_s, reputation_s) = (normalise(&qualities, true), normalise(&reputations, true));

    let scores = |i: usize| BidScores {
        price: price_s[i],
        quality: quality_s[i],
        speed: speed_s[i],
        reputation: reputation_s[i],
    };
    let total = |s: &BidScores| {
        weights.price * s.price
            + weights.quality * s.quality
            + weights.speed * s.speed
            + weights.reputation * s.reputation
    };
    let totals: Vec<f64> = (0..bidders.len()).map(|i| total(&scores(i))).collect();
    // Rank indices, not bids: only the best MAX_BIDS become `Bid`s (with their name copied).
    let better = |&a: &usize, &b: &usize| {
        totals[b]
            .total_cmp(&totals[a])
            .then(bidders[a].price.total_cmp(&bidders[b].price))
            .then(bidders[a].id.cmp(&bidders[b].id))
    };
    let mut ranked: Vec<usize> = (0..bidders.len()).collect();
    if ranked.len() > MAX_BIDS {
        ranked.select_nth_unstable_by(MAX_BIDS - 1, better);
        ranked.truncate(MAX_BIDS);
    }
    ranked.sort_unstable_by(better);
    // Ranked on exact values; shown rounded, so clients see 0.9 rather than 0.8999999999999999.
    let round = |v: f64| (v * 1e4).round() / 1e4;
    Ok(ranked
        .into_iter()
        .map(|i| {
            let s = scores(i);
            Bid {
                agent_id: bidders[i].id,
                agent_name: bidders[i].name.clone(),
                price: bidders[i].price,
                total: round(totals[i]),
                scores: BidScores {
                    price: round(s.price),
                    quality: round(s.quality),
                    speed: round(s.speed),
                    reputation: round(s.reputation),
                },
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::{AgentStats, AgentStatus};

    fn agent(
        name: &str,
        price: f64,
        caps: &[&str],
        completed: u64,
        failed: u64,
        avg_ms: Option<f64>,
    ) -> Agent {
        Agent {
            id: Uuid::new_v4(),
            owner_id: Uuid::nil(),
            name: name.into(),
            description: String::new(),
            version: "1.0.0".into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            price,
            binary_hash: String::new(),
            binary_size: 0,
            status: AgentStatus::Ready,
            created_at: time::OffsetDateTime::now_utc(),
            stats: AgentStats {
                tasks_completed: completed,
                tasks_failed: failed,
                success_rate: None,
                avg_duration_ms: avg_ms,
                total_duration_ms: 0,
                ema_success: (completed + failed > 0)
                    .then(|| completed as f64 / (completed + failed) as f64),
                ema_duration_ms: avg_ms,
            },
        }
    }

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_weighted_score_ranks_bidders() {
        // Same record, different prices: the cheaper wins on price alone (0.3 vs 0).
        let cheap = agent("cheap", 0.1, &["nlp"], 10, 0, Some(100.0));
        let dear = agent("dear", 0.5, &["nlp"], 10, 0, Some(100.0));
        let bids = run_auction(
            &[dear.clone(), cheap.clone()],
            &caps(&["nlp"]),
            1.0,
            Weights::default(),
        )
        .unwrap();
        assert_eq!(bids[0].agent_id, cheap.id);
        assert!((bids[0].total - 1.0).abs() < 1e-9);
        assert!((bids[1].total - 0.7).abs() < 1e-9);

        // A dearer agent that is reliable and fast beats a cheap flaky slow one.
        let flaky = agent("flaky", 0.1, &["nlp"], 1, 9, Some(900.0));
        let bids = run_auction(
            &[flaky.clone(), dear.clone()],
            &caps(&["nlp"]),
            1.0,
            Weights::default(),
        )
        .unwrap();
        assert_eq!(bids[0].agent_id, dear.id);
        assert!((bids[0].total - 0.7).abs() < 1e-9, "{}", bids[0].total);
    }

    #[test]
    fn newcomers_get_a_neutral_prior() {
        let proven = agent("proven", 0.1, &["x"], 9, 1, Some(50.0));
        let bad = agent("bad", 0.1, &["x"], 1, 9, Some(50.0));
        let new = agent("new", 0.1, &["x"], 0, 0, None);
        let bids = run_auction(
            &[bad.clone(), new.clone(), proven.clone()],
            &[],
            1.0,
            Weights::default(),
        )
        .unwrap();
        let order: Vec<Uuid> = bids.iter().map(|b| b.agent_id).collect();
        assert_eq!(order, [proven.id, new.id, bad.id]);
    }

    #[test]
    fn no_eligible_agent_says_why() {
        let a = agent("a", 0.5, &["nlp"], 0, 0, None);
        let err = run_auction(
            std::slice::from_ref(&a),
            &caps(&["vision"]),
            1.0,
            Weights::default(),
        )
        .unwrap_err();
        assert!(err.0.contains("vision"), "{}", err.0);
        let err = run_auction(
            std::slice::from_ref(&a),
            &caps(&["nlp"]),
            0.1,
            Weights::default(),
        )
        .unwrap_err();
        assert!(
            err.0.contains("budget") && err.0.contains("0.5"),
            "{}",
            err.0
        );
    }

    #[test]
    fn only_the_best_bids_are_kept_in_order() {
        let pool: Vec<Agent> = (0..50)
            .map(|i| agent(&format!("a{i}"), i as f64 / 100.0, &["x"], 5, 0, Some(10.0)))
            .collect();
        let bids = run_auction(&pool, &caps(&["x"]), 1.0, Weights::default()).unwrap();
        assert_eq!(bids.len(), MAX_BIDS);
        let names: Vec<&str> = bids.iter().map(|b| b.agent_name.as_str()).collect();
        assert_eq!(
            names,
            ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8", "a9"],
            "cheapest first"
        );
        assert!(bids.windows(2).all(|w| w[0].total >= w[1].total));
    }
}
