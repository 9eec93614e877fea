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

use crate::agents::{Agent, Bidder};

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

/// One criterion over the bidders: the range of its values and the neutral value that
/// newcomers (NaN: not measured yet) bid, the mean of the measured ones, so a newcomer is
/// neither rewarded nor punished on it. The neutral value lies inside the range.
#[derive(Clone, Copy)]
struct Criterion {
    range: Range,
    sum: f64,
    measured: usize,
    neutral: f64,
}

impl Criterion {
    const EMPTY: Criterion = Criterion {
        range: Range::EMPTY,
        sum: 0.0,
        measured: 0,
        neutral: f64::NAN,
    };

    /// Branch-free: an unmeasured (NaN) value moves neither bound and adds nothing.
    fn add(&mut self, v: f64) {
        let measured = !v.is_nan();
        self.range.add(v);
        self.sum += if measured { v } else { 0.0 };
        self.measured += measured as usize;
    }

    fn merge(&mut self, other: &Criterion) {
        self.range.merge(other.range);
        self.sum += other.sum;
        self.measured += other.measured;
    }

    /// Fixes the neutral value once every bidder is added; `fallback` when none is measured
    /// (then every bidder scores the same).
    fn finish(&mut self, fallback: f64) {
        self.neutral = match self.measured {
            0 => fallback,
            n => self.sum / n as f64,
        };
        self.range.add(self.neutral);
    }

    fn value(&self, v: f64) -> f64 {
        if v.is_nan() { self.neutral } else { v }
    }

    fn score(&self, v: f64, higher_is_better: bool) -> f64 {
        self.range.score(self.value(v), higher_is_better)
    }
}

/// Running minimum and maximum of one criterion.
#[derive(Clone, Copy)]
struct Range {
    min: f64,
    max: f64,
}

impl Range {
    const EMPTY: Range = Range {
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// Comparisons with NaN are false, so NaN leaves the range as it is; selects, not
    /// `f64::min`, whose NaN handling costs several instructions on the auction's hot loop.
    fn add(&mut self, v: f64) {
        self.min = if v < self.min { v } else { self.min };
        self.max = if v > self.max { v } else { self.max };
    }

    /// Both ranges' values (an empty one has min +inf and max -inf, and changes nothing).
    fn merge(&mut self, other: Range) {
        self.min = if other.min < self.min {
            other.min
        } else {
            self.min
        };
        self.max = if other.max > self.max {
            other.max
        } else {
            self.max
        };
    }

    /// Scales `v` to 0..=1 where 1 is best. When all values are equal, all score 1.
    fn score(&self, v: f64, higher_is_better: bool) -> f64 {
        let span = self.max - self.min;
        if span <= f64::EPSILON {
            1.0
        } else if higher_is_better {
            (v - self.min) / span
        } else {
            (self.max - v) / span
        }
    }
}

/// Most bids kept (and stored on the task): the winner and the runners-up failover would use.
pub const MAX_BIDS: usize = 10;

/// Ranks the eligible agents and returns the best [`MAX_BIDS`], best first. Ties go to the
/// cheaper, then the older agent id.
pub fn run_auction(
    agents: &[Agent],
    required: &[String],
    budget: f64,
    weights: Weights,
) -> Result<Vec<Bid>, NoEligibleAgent> {
    let figures: Vec<Bidder> = agents.iter().map(Bidder::from).collect();
    let capable = (0..agents.len() as u32).filter(|&i| agents[i as usize].offers_all(required));
    rank(
        capable,
        &figures,
        |i| (agents[i as usize].id, agents[i as usize].name.as_str()),
        required,
        budget,
        weights,
    )
}

/// Price, quality, reputation and duration over the bidders at `eligible`: four interleaved
/// lanes, so the loop is four short dependency chains rather than one long one.
fn criteria(eligible: &[u32], figures: &[Bidder]) -> [Criterion; 4] {
    const LANES: usize = 4;
    let add = |c: &mut [Criterion; 4], b: &Bidder| {
        c[0].add(b.price);
        c[1].add(b.quality);
        c[2].add(b.reputation);
        c[3].add(b.duration_ms);
    };
    let mut lanes = [[Criterion::EMPTY; 4]; LANES];
    let mut chunks = eligible.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &at) in lanes.iter_mut().zip(chunk) {
            add(lane, &figures[at as usize]);
        }
    }
    for &at in chunks.remainder() {
        add(&mut lanes[0], &figures[at as usize]);
    }
    let [mut all, rest @ ..] = lanes;
    for lane in &rest {
        for (c, other) in all.iter_mut().zip(lane) {
            c.merge(other);
        }
    }
    all
}

/// Ranks `capable` (positions in `figures` of agents that offer every required capability)
/// by the weighted score over those within `budget`; `identity` names a position's agent.
/// Three passes over the compact figures: who is within budget (one list of positions), the
/// criteria's ranges, and the totals into a fixed top-[`MAX_BIDS`] list.
pub fn rank<'a, I, F>(
    capable: I,
    figures: &[Bidder],
    identity: F,
    required: &[String],
    budget: f64,
    weights: Weights,
) -> Result<Vec<Bid>, NoEligibleAgent>
where
    I: Iterator<Item = u32>,
    F: Fn(u32) -> (Uuid, &'a str),
{
    let mut n_capable = 0usize;
    let mut cheapest = f64::INFINITY;
    let mut eligible: Vec<u32> = Vec::with_capacity(capable.size_hint().1.unwrap_or(0));
    for at in capable {
        let price = figures[at as usize].price;
        n_capable += 1;
        cheapest = cheapest.min(price);
        if price <= budget {
            eligible.push(at);
        }
    }
    let n_bidders = eligible.len();
    if n_capable == 0 {
        return Err(NoEligibleAgent(if required.is_empty() {
            "no agent is published yet".into()
        } else {
            format!(
                "no ready agent offers every requested capability: {}",
                required.join(", ")
            )
        }));
    }
    if n_bidders == 0 {
        return Err(NoEligibleAgent(format!(
            "{n_capable} agent(s) offer the capabilities, but all are above the budget {budget} (cheapest costs {cheapest})"
        )));
    }
    let [mut price, mut quality, mut reputation, mut duration] = criteria(&eligible, figures);
    price.finish(0.0);
    quality.finish(0.5);
    reputation.finish(0.5);
    duration.finish(0.0);

    let scores = |b: &Bidder| BidScores {
        price: price.score(b.price, false),
        quality: quality.score(b.quality, true),
        speed: duration.score(b.duration_ms, false),
        reputation: reputation.score(b.reputation, true),
    };
    let total = |s: &BidScores| {
        weights.price * s.price
            + weights.quality * s.quality
            + weights.speed * s.speed
            + weights.reputation * s.reputation
    };
    // The weighted total is affine in each figure, so ranking needs one multiply-add per
    // criterion: total = Σ slope·value + Σ intercept. Scores are computed only for the bids
    // kept.
    let affine = |criterion: &Criterion, higher_is_better: bool, weight: f64| {
        let range = criterion.range;
        let span = range.max - range.min;
        if span <= f64::EPSILON {
            (0.0, weight)
        } else if higher_is_better {
            (weight / span, -weight * range.min / span)
        } else {
            (-weight / span, weight * range.max / span)
        }
    };
    let (p_slope, p_icpt) = affine(&price, false, weights.price);
    let (q_slope, q_icpt) = affine(&quality, true, weights.quality);
    let (r_slope, r_icpt) = affine(&reputation, true, weights.reputation);
    let (d_slope, d_icpt) = affine(&duration, false, weights.speed);
    let intercept = p_icpt + q_icpt + r_icpt + d_icpt;
    let rank_total = |b: &Bidder| {
        intercept
            + p_slope * b.price
            + q_slope * quality.value(b.quality)
            + r_slope * reputation.value(b.reputation)
            + d_slope * duration.value(b.duration_ms)
    };
    // Best first: higher total, then cheaper, then older id (looked up only on a tie).
    let better = |a: &(f64, u32), b: &(f64, u32)| {
        b.0.total_cmp(&a.0)
            .then(
                figures[a.1 as usize]
                    .price
                    .total_cmp(&figures[b.1 as usize].price),
            )
            .then_with(|| identity(a.1).0.cmp(&identity(b.1).0))
    };
    let mut top: Vec<(f64, u32)> = Vec::with_capacity(MAX_BIDS + 1);
    for &at in &eligible {
        let entry = (rank_total(&figures[at as usize]), at);
        if top.len() == MAX_BIDS
            && (entry.0 < top[MAX_BIDS - 1].0 || better(&entry, &top[MAX_BIDS - 1]).is_ge())
        {
            continue;
        }
        let at = top.partition_point(|t| better(t, &entry).is_lt());
        top.insert(at, entry);
        top.truncate(MAX_BIDS);
    }
    // Ranked on exact values; shown rounded, so clients see 0.9 rather than 0.8999999999999999.
    let round = |v: f64| (v * 1e4).round() / 1e4;
    Ok(top
        .into_iter()
        .map(|(_, at)| {
            let b = &figures[at as usize];
            let s = scores(b);
            let (agent_id, name) = identity(at);
            Bid {
                agent_id,
                agent_name: name.to_owned(),
                price: b.price,
                total: round(total(&s)),
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
    use crate::agents::AgentStats;

    fn agent(
        name: &str,
        price: f64,
        caps: &[&str],
        completed: u64,
        failed: u64,
        avg_ms: Option<f64>,
    ) -> Agent {
        Agent {
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
            ..Agent::fixture(name, price, caps)
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
    fn a_newcomer_ranks_below_a_short_perfect_record_and_above_a_poor_one() {
        // Regression: a fixed 0.5 prior outranked three successes out of three (Wilson ≈ 0.44).
        let short = agent("short", 0.1, &["x"], 3, 0, Some(50.0));
        let poor = agent("poor", 0.1, &["x"], 2, 8, Some(50.0));
        let new = agent("new", 0.1, &["x"], 0, 0, None);
        let bids = run_auction(
            &[new.clone(), poor.clone(), short.clone()],
            &[],
            1.0,
            Weights::default(),
        )
        .unwrap();
        let order: Vec<Uuid> = bids.iter().map(|b| b.agent_id).collect();
        assert_eq!(order, [short.id, new.id, poor.id]);
        let newcomer = &bids[1].scores;
        assert!(newcomer.reputation > 0.0 && newcomer.reputation < 1.0);
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
