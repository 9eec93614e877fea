//! Ranking: the auction's arithmetic. Every eligible agent bids its price; bids are ranked by
//! a weighted score. A leaf: the catalog hands it the bidders' figures, it hands back bids.
//!
//! Eligible: ready, offers every required capability, price ≤ budget. Each criterion is
//! min-max normalised over the bidders to 0..=1 (1 is best; when all bidders tie, all get 1):
//! price (cheaper is better); quality, the mean of the moving average of success and the
//! Bayesian review score (see [`crate::records::Rating`]); speed, the moving
//! average of duration (faster is better); reputation, the Wilson lower bound of the success
//! rate over all runs. An agent that has never run gets a neutral prior: 0.5 quality and
//! reputation, and the mean duration of the bidders that have run.

use uuid::Uuid;

use crate::config::AuctionSettings;
use crate::records::{Agent, Bid, BidScores};

/// Criterion weights; they sum to 1.
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    pub price: f64,
    pub quality: f64,
    pub speed: f64,
    pub reputation: f64,
}

impl From<AuctionSettings> for Weights {
    fn from(a: AuctionSettings) -> Self {
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

/// What the auction ranks one agent by. Identity (id, name) is looked up only for the best
/// bids.
#[derive(Debug, Clone, Copy)]
pub struct Bidder {
    pub price: f64,
    /// Mean of the moving average of success (recent runs weigh more) and the Bayesian
    /// review score as a fraction.
    pub quality: f64,
    /// Lower bound of the 95% Wilson interval of the success rate over all runs.
    pub reputation: f64,
    /// Moving average of run durations.
    pub duration_ms: f64,
    // Each is NaN until the agent has run: the auction gives a newcomer the bidders' mean.
}

impl From<&Agent> for Bidder {
    fn from(agent: &Agent) -> Self {
        Self {
            price: agent.price,
            // Half measured success, half the users' verdict: the Bayesian review score, so
            // a single 5-star review barely moves it.
            quality: agent.stats.ema_success.map_or(f64::NAN, |success| {
                0.5 * success + 0.5 * agent.rating.quality()
            }),
            reputation: match agent.stats.runs() {
                0 => f64::NAN,
                runs => wilson_lower_bound(agent.stats.tasks_completed, runs),
            },
            duration_ms: agent.stats.ema_duration_ms.unwrap_or(f64::NAN),
        }
    }
}

/// The bidders of one list of agents, figure by figure (a structure of arrays): an auction
/// passes over each figure as contiguous memory, which the compiler vectorises across
/// bidders. 32 bytes per agent and 4 for its position, so 100,000 agents are 3.6 MB.
#[derive(Debug, Clone, Default)]
pub struct Bidders {
    /// Catalog positions, ascending.
    pub position: Vec<u32>,
    pub price: Vec<f64>,
    pub quality: Vec<f64>,
    pub reputation: Vec<f64>,
    pub duration_ms: Vec<f64>,
}

impl Bidders {
    pub fn len(&self) -> usize {
        self.position.len()
    }

    pub fn is_empty(&self) -> bool {
        self.position.is_empty()
    }

    pub fn get(&self, i: usize) -> Bidder {
        Bidder {
            price: self.price[i],
            quality: self.quality[i],
            reputation: self.reputation[i],
            duration_ms: self.duration_ms[i],
        }
    }

    /// Appends; `position` must be above every position listed.
    pub fn push(&mut self, position: u32, b: Bidder) {
        self.insert(self.len(), position, b);
    }

    /// Inserts at index `i`, which keeps `position` ascending.
    pub fn insert(&mut self, i: usize, position: u32, b: Bidder) {
        self.position.insert(i, position);
        self.price.insert(i, b.price);
        self.quality.insert(i, b.quality);
        self.reputation.insert(i, b.reputation);
        self.duration_ms.insert(i, b.duration_ms);
    }

    pub fn set(&mut self, i: usize, b: Bidder) {
        self.price[i] = b.price;
        self.quality[i] = b.quality;
        self.reputation[i] = b.reputation;
        self.duration_ms[i] = b.duration_ms;
    }

    pub fn remove(&mut self, i: usize) -> Bidder {
        let b = self.get(i);
        self.position.remove(i);
        self.price.remove(i);
        self.quality.remove(i);
        self.reputation.remove(i);
        self.duration_ms.remove(i);
        b
    }

    /// Where the agent at catalog `position` is listed.
    pub fn find(&self, position: u32) -> Option<usize> {
        self.position.binary_search(&position).ok()
    }
}

/// Lower bound of the 95% Wilson score interval of `successes` out of `runs`: the success rate
/// we are 97.5 % sure the agent beats. 0 for no runs.
pub fn wilson_lower_bound(successes: u64, runs: u64) -> f64 {
    if runs == 0 {
        return 0.0;
    }
    let n = runs as f64;
    let p = successes as f64 / n;
    let z = 1.96_f64;
    let z2 = z * z;
    (p + z2 / (2.0 * n) - z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt()) / (1.0 + z2 / n)
}

/// Why no agent could bid.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct NoEligibleAgent(pub String);

/// One figure of every bidder summed up: the range of the measured values, their sum and
/// count.
#[derive(Clone, Copy)]
struct Figure {
    range: Range,
    sum: f64,
    measured: f64,
}

impl Figure {
    /// The criterion over this figure; `fallback` is the neutral value when no bidder is
    /// measured on it (then every bidder scores the same).
    fn criterion(&self, fallback: f64) -> Criterion {
        let neutral = if self.measured > 0.0 {
            self.sum / self.measured
        } else {
            fallback
        };
        let mut range = self.range;
        range.add(neutral);
        Criterion { range, neutral }
    }
}

/// Values summed at once: two vector registers' worth with AVX2, so each running figure is
/// two dependency chains.
const LANES: usize = 8;

/// [`Figure`] in [`LANES`] lanes, so summing is `LANES` short dependency chains the
/// compiler turns into vector instructions.
#[derive(Clone, Copy)]
struct Lanes {
    min: [f64; LANES],
    max: [f64; LANES],
    sum: [f64; LANES],
    measured: [f64; LANES],
}

impl Lanes {
    const EMPTY: Lanes = Lanes {
        min: [f64::INFINITY; LANES],
        max: [f64::NEG_INFINITY; LANES],
        sum: [0.0; LANES],
        measured: [0.0; LANES],
    };

    /// Branch-free (see [`lower`]).
    #[inline(always)]
    fn add(&mut self, l: usize, v: f64) {
        let is_measured = !v.is_nan();
        self.min[l] = lower(v, self.min[l]);
        self.max[l] = higher(v, self.max[l]);
        self.sum[l] += if is_measured { v } else { 0.0 };
        self.measured[l] += if is_measured { 1.0 } else { 0.0 };
    }

    /// Adds `values`, each gated: `gate` is 0 for a bidder and NaN for anyone else, so
    /// `value + gate` is the value or nothing.
    #[inline(always)]
    fn add_gated(&mut self, values: &[f64], gate: &[f64]) {
        let mut vs = values.chunks_exact(LANES);
        let mut gs = gate.chunks_exact(LANES);
        for (v, g) in (&mut vs).zip(&mut gs) {
            for l in 0..LANES {
                self.add(l, v[l] + g[l]);
            }
        }
        for (v, g) in vs.remainder().iter().zip(gs.remainder()) {
            self.add(0, v + g);
        }
    }

    fn reduce(&self) -> Figure {
        let mut f = Figure {
            range: Range::EMPTY,
            sum: 0.0,
            measured: 0.0,
        };
        for l in 0..LANES {
            f.range.merge(Range {
                min: self.min[l],
                max: self.max[l],
            });
            f.sum += self.sum[l];
            f.measured += self.measured[l];
        }
        f
    }
}

/// One criterion over the bidders: the range of its values and the neutral value that
/// newcomers (NaN: not measured yet) bid, the mean of the measured ones, so a newcomer is
/// neither rewarded nor punished on it. The neutral value lies inside the range.
#[derive(Clone, Copy)]
struct Criterion {
    range: Range,
    neutral: f64,
}

impl Criterion {
    fn value(&self, v: f64) -> f64 {
        if v.is_nan() { self.neutral } else { v }
    }

    fn score(&self, v: f64, higher_is_better: bool) -> f64 {
        self.range.score(self.value(v), higher_is_better)
    }

    /// The weighted score as `slope · value + intercept`.
    fn affine(&self, higher_is_better: bool, weight: f64) -> (f64, f64) {
        let Range { min, max } = self.range;
        let span = max - min;
        if span <= f64::EPSILON {
            (0.0, weight)
        } else if higher_is_better {
            (weight / span, -weight * min / span)
        } else {
            (-weight / span, weight * max / span)
        }
    }
}

/// The smaller of `v` and `m`, or `m` if `v` is NaN (a comparison with NaN is false): one
/// select, where `f64::min`'s NaN handling costs several instructions on the auction's hot
/// loops.
#[inline(always)]
fn lower(v: f64, m: f64) -> f64 {
    if v < m { v } else { m }
}

/// The larger of `v` and `m`, or `m` if `v` is NaN (see [`lower`]).
#[inline(always)]
fn higher(v: f64, m: f64) -> f64 {
    if v > m { v } else { m }
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

    /// NaN leaves the range as it is.
    fn add(&mut self, v: f64) {
        self.min = lower(v, self.min);
        self.max = higher(v, self.max);
    }

    /// Both ranges' values (an empty one changes nothing).
    fn merge(&mut self, other: Range) {
        self.min = lower(other.min, self.min);
        self.max = higher(other.max, self.max);
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
    let mut bidders = Bidders::default();
    for (at, agent) in agents.iter().enumerate() {
        if agent.offers_all(required) {
            bidders.push(at as u32, Bidder::from(agent));
        }
    }
    let ids: Vec<Uuid> = agents.iter().map(|a| a.id).collect();
    let pool = Pool {
        bidders: &bidders,
        excluded: &[],
        ids: &ids,
        name: |at: u32| agents[at as usize].name.as_str(),
    };
    rank(pool, required, budget, weights)
}

/// Bidders handled at once: their gates and totals stay in the L1 cache between the passes
/// over a block's columns.
const BLOCK: usize = 512;

/// The largest of `values`, ignoring NaN (-inf if all are NaN, so never NaN).
#[inline(always)]
fn max_of(values: &[f64]) -> f64 {
    let mut lanes = [f64::NEG_INFINITY; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for l in 0..LANES {
            lanes[l] = higher(chunk[l], lanes[l]);
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f64::NEG_INFINITY, |m, &v| higher(v, m))
}

/// Gates the bidders `first..first + price.len()`: 0 within budget and not excluded, else
/// NaN (see [`Lanes::add_gated`]).
#[inline(always)]
fn gate(price: &[f64], budget: f64, first: usize, excluded: &[usize], out: &mut [f64]) {
    for (g, &p) in out.iter_mut().zip(price) {
        *g = if p <= budget { 0.0 } else { f64::NAN };
    }
    for &e in excluded {
        if let Some(g) = e.checked_sub(first).and_then(|i| out.get_mut(i)) {
            *g = f64::NAN;
        }
    }
}

/// The agents an auction ranks.
pub struct Pool<'a, F> {
    /// The agents that offer every required capability.
    pub bidders: &'a Bidders,
    /// Indices in `bidders` of agents that may not bid (tried already), ascending.
    pub excluded: &'a [usize],
    /// The agent id of each catalog position: read on ties.
    pub ids: &'a [Uuid],
    /// Names the agent at a catalog position: read for the bids kept.
    pub name: F,
}

/// Ranks the pool's bidders by the weighted score over those within `budget`.
///
/// Two passes over the columns, block by block, without data-dependent branches: the first
/// sums up the figures of the bidders within budget (ranges, means), the second computes
/// their totals into a buffer and keeps the best [`MAX_BIDS`].
pub fn rank<'a>(
    pool: Pool<'a, impl Fn(u32) -> &'a str>,
    required: &[String],
    budget: f64,
    weights: Weights,
) -> Result<Vec<Bid>, NoEligibleAgent> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the one feature `rank_avx2` is compiled for.
        return unsafe { rank_avx2(pool, required, budget, weights) };
    }
    rank_columns(pool, required, budget, weights)
}

/// [`rank_columns`] compiled for AVX2: four figures per vector instruction rather than two.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rank_avx2<'a>(
    pool: Pool<'a, impl Fn(u32) -> &'a str>,
    required: &[String],
    budget: f64,
    weights: Weights,
) -> Result<Vec<Bid>, NoEligibleAgent> {
    rank_columns(pool, required, budget, weights)
}

#[inline(always)]
fn rank_columns<'a>(
    pool: Pool<'a, impl Fn(u32) -> &'a str>,
    required: &[String],
    budget: f64,
    weights: Weights,
) -> Result<Vec<Bid>, NoEligibleAgent> {
    let Pool {
        bidders,
        excluded,
        ids,
        name,
    } = pool;
    let n = bidders.len();
    let columns = [
        &bidders.price,
        &bidders.quality,
        &bidders.reputation,
        &bidders.duration_ms,
    ];
    let mut gates = [0.0f64; BLOCK];
    let mut lanes = [Lanes::EMPTY; 4];
    for first in (0..n).step_by(BLOCK) {
        let end = (first + BLOCK).min(n);
        let gates = &mut gates[..end - first];
        gate(&bidders.price[first..end], budget, first, excluded, gates);
        // One column at a time: four accumulators, all in registers.
        for (lanes, column) in lanes.iter_mut().zip(columns) {
            lanes.add_gated(&column[first..end], gates);
        }
    }
    let [price, quality, reputation, duration] = lanes.map(|l| l.reduce());
    let n_capable = n - excluded.len();
    // Prices are never NaN, so every bidder counts on price.
    let n_bidders = price.measured as usize;
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
        let cheapest = (0..n)
            .filter(|i| excluded.binary_search(i).is_err())
            .map(|i| bidders.price[i])
            .fold(f64::INFINITY, f64::min);
        return Err(NoEligibleAgent(format!(
            "{n_capable} agent(s) offer the capabilities, but all are above the budget {budget} (cheapest costs {cheapest})"
        )));
    }
    let price = price.criterion(0.0);
    let quality = quality.criterion(0.5);
    let reputation = reputation.criterion(0.5);
    let duration = duration.criterion(0.0);

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
    let (p_slope, p_icpt) = price.affine(false, weights.price);
    let (q_slope, q_icpt) = quality.affine(true, weights.quality);
    let (r_slope, r_icpt) = reputation.affine(true, weights.reputation);
    let (d_slope, d_icpt) = duration.affine(false, weights.speed);
    let intercept = p_icpt + q_icpt + r_icpt + d_icpt;
    // Best first: higher total, then cheaper, then older id (looked up only on a tie).
    let better = |a: &(f64, usize), b: &(f64, usize)| {
        b.0.total_cmp(&a.0)
            .then(bidders.price[a.1].total_cmp(&bidders.price[b.1]))
            .then_with(|| {
                ids[bidders.position[a.1] as usize].cmp(&ids[bidders.position[b.1] as usize])
            })
    };
    let mut top: Vec<(f64, usize)> = Vec::with_capacity(MAX_BIDS + 1);
    // The total of the last bid kept once the list is full: below it, a bidder is out.
    let mut floor = f64::NEG_INFINITY;
    let mut totals = [0.0f64; BLOCK];
    // Last block first: the blocks the first pass read last are still in the cache. The
    // order changes nothing else, as `better` is a total order.
    for first in (0..n).step_by(BLOCK).rev() {
        let end = (first + BLOCK).min(n);
        let totals = &mut totals[..end - first];
        gate(&bidders.price[first..end], budget, first, excluded, totals);
        let figures = bidders.price[first..end]
            .iter()
            .zip(&bidders.quality[first..end])
            .zip(&bidders.reputation[first..end])
            .zip(&bidders.duration_ms[first..end]);
        // NaN (gated out) stays NaN, and NaN is never at or above the floor.
        for (t, (((&p, &q), &r), &d)) in totals.iter_mut().zip(figures) {
            *t += intercept
                + p_slope * p
                + q_slope * quality.value(q)
                + r_slope * reputation.value(r)
                + d_slope * duration.value(d);
        }
        // Most blocks hold no total at or above the floor once the list is full: one
        // vectorised maximum rules a block out.
        if max_of(totals) < floor {
            continue;
        }
        for (i, &t) in totals.iter().enumerate() {
            if t.is_nan() || t < floor {
                continue;
            }
            let entry = (t, first + i);
            if top.len() == MAX_BIDS && better(&entry, &top[MAX_BIDS - 1]).is_ge() {
                continue;
            }
            let at = top.partition_point(|t| better(t, &entry).is_lt());
            top.insert(at, entry);
            top.truncate(MAX_BIDS);
            if top.len() == MAX_BIDS {
                floor = top[MAX_BIDS - 1].0;
            }
        }
    }
    // Ranked on exact values; shown rounded, so clients see 0.9 rather than 0.8999999999999999.
    let round = |v: f64| (v * 1e4).round() / 1e4;
    Ok(top
        .into_iter()
        .map(|(_, i)| {
            let b = bidders.get(i);
            let s = scores(&b);
            let at = bidders.position[i];
            Bid {
                agent_id: ids[at as usize],
                agent_name: name(at).to_owned(),
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
    use crate::records::AgentStats;

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
