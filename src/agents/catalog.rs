//! The catalog: every ready agent in memory, indexed by capability, with the figures the
//! auction ranks by computed when they change rather than in every auction.
//!
//! The store stays the source of truth: the catalog is loaded from it at start, the
//! marketplace adds what it publishes, and the orchestrator folds in run outcomes as they
//! happen (the store gets them with the task's state).
//!
//! Threading: a std RwLock. Auctions hold the read lock while ranking (under a millisecond at
//! 100,000 agents); writers hold it for a map update.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use super::agent::{Agent, AgentStatus};
use crate::orchestrator::{Bid, NoEligibleAgent, Weights, rank};

/// What the auction ranks one agent by: 32 bytes, so an auction over 100,000 agents scans
/// 3.2 MB. Identity (id, name) is looked up only for the best bids.
#[derive(Debug, Clone, Copy)]
pub struct Bidder {
    pub price: f64,
    /// Moving average of success (recent runs weigh more).
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
            quality: agent.stats.ema_success.unwrap_or(f64::NAN),
            reputation: match agent.stats.runs() {
                0 => f64::NAN,
                runs => wilson_lower_bound(agent.stats.tasks_completed, runs),
            },
            duration_ms: agent.stats.ema_duration_ms.unwrap_or(f64::NAN),
        }
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

#[derive(Default)]
struct Inner {
    /// Dense, so an auction scans contiguous memory.
    bidders: Vec<Bidder>,
    agents: Vec<Arc<Agent>>,
    /// Agent id → position in `bidders` and `agents`.
    positions: HashMap<Uuid, u32>,
    /// Capability → positions of the agents offering it, ascending.
    by_capability: HashMap<String, Vec<u32>>,
}

/// The catalog of ready agents. Cheap to clone.
#[derive(Clone, Default)]
pub struct Catalog {
    inner: Arc<RwLock<Inner>>,
}

impl Catalog {
    pub fn new(agents: impl IntoIterator<Item = Agent>) -> Self {
        let catalog = Self::default();
        for agent in agents {
            catalog.upsert(agent);
        }
        catalog
    }

    /// Adds an agent, or replaces it; an agent that is not ready leaves the catalog.
    pub fn upsert(&self, agent: Agent) {
        let mut inner = self.inner.write().expect("catalog lock");
        if agent.status != AgentStatus::Ready {
            inner.remove(agent.id);
            return;
        }
        match inner.positions.get(&agent.id).copied() {
            Some(at) if inner.agents[at as usize].capabilities == agent.capabilities => {
                inner.bidders[at as usize] = Bidder::from(&agent);
                inner.agents[at as usize] = Arc::new(agent);
            }
            Some(_) => {
                inner.remove(agent.id);
                inner.push(agent);
            }
            None => inner.push(agent),
        }
    }

    /// Removes an agent (deleted or no longer ready).
    pub fn remove(&self, id: Uuid) {
        self.inner.write().expect("catalog lock").remove(id);
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<Agent>> {
        let inner = self.inner.read().expect("catalog lock");
        inner
            .positions
            .get(&id)
            .map(|&at| inner.agents[at as usize].clone())
    }

    pub fn len(&self) -> usize {
        self.inner.read().expect("catalog lock").agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds one finished run into the agent's statistics.
    pub fn record_outcome(&self, id: Uuid, success: bool, duration_ms: u64) {
        let mut inner = self.inner.write().expect("catalog lock");
        if let Some(at) = inner.positions.get(&id).map(|&at| at as usize) {
            let mut agent = (*inner.agents[at]).clone();
            agent.stats.record(success, duration_ms);
            inner.bidders[at] = Bidder::from(&agent);
            inner.agents[at] = Arc::new(agent);
        }
    }

    /// Runs an auction among the ready agents that offer every `required` capability, minus
    /// `exclude`; with `only`, among that one agent.
    pub fn auction(
        &self,
        required: &[String],
        budget: f64,
        weights: Weights,
        only: Option<Uuid>,
        exclude: &[Uuid],
    ) -> Result<Vec<Bid>, NoEligibleAgent> {
        let inner = self.inner.read().expect("catalog lock");
        let lists: Option<Vec<&[u32]>> = required
            .iter()
            .map(|c| inner.by_capability.get(c).map(Vec::as_slice))
            .collect();
        let ranked = |capable| inner.rank(capable, required, budget, weights, exclude);
        let pinned: Option<u32> = only.and_then(|id| inner.positions.get(&id).copied());
        // Each arm passes its own iterator type, so the ranking loop stays monomorphic.
        match (lists, only) {
            // Some capability nobody offers.
            (None, _) => ranked(Intersection::new(&[], Vec::new())),
            (Some(lists), Some(_)) => ranked(Intersection::new(pinned.as_slice(), lists)),
            (Some(lists), None) => match lists.len() {
                0 => inner.rank(
                    0..inner.agents.len() as u32,
                    required,
                    budget,
                    weights,
                    exclude,
                ),
                1 => inner.rank(lists[0].iter().copied(), required, budget, weights, exclude),
                _ => ranked(Intersection::shortest_first(lists)),
            },
        }
    }
}

/// The positions of one ascending list that are in every one of the other lists: walks the
/// first and advances a cursor in each other list, so the cost is linear in their lengths.
struct Intersection<'a> {
    walk: std::slice::Iter<'a, u32>,
    others: Vec<(&'a [u32], usize)>,
}

impl<'a> Intersection<'a> {
    fn new(walk: &'a [u32], others: Vec<&'a [u32]>) -> Self {
        Self {
            walk: walk.iter(),
            others: others.into_iter().map(|l| (l, 0)).collect(),
        }
    }

    /// Walks the shortest list.
    fn shortest_first(mut lists: Vec<&'a [u32]>) -> Self {
        lists.sort_by_key(|l| l.len());
        let walk = lists.remove(0);
        Self::new(walk, lists)
    }
}

impl Iterator for Intersection<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        'candidates: for &at in self.walk.by_ref() {
            for (list, cursor) in self.others.iter_mut() {
                // Gallop: the next match is usually close.
                let mut step = 1;
                while *cursor + step < list.len() && list[*cursor + step] < at {
                    step *= 2;
                }
                let end = (*cursor + step + 1).min(list.len());
                *cursor += list[*cursor..end].partition_point(|&p| p < at);
                if list.get(*cursor) != Some(&at) {
                    continue 'candidates;
                }
            }
            return Some(at);
        }
        None
    }
}

impl Inner {
    /// Ranks the agents at `capable` positions, minus `exclude`.
    fn rank(
        &self,
        capable: impl Iterator<Item = u32>,
        required: &[String],
        budget: f64,
        weights: Weights,
        exclude: &[Uuid],
    ) -> Result<Vec<Bid>, NoEligibleAgent> {
        let identity = |at: u32| {
            let agent = &self.agents[at as usize];
            (agent.id, agent.name.as_str())
        };
        let allowed =
            |at: &u32| exclude.is_empty() || !exclude.contains(&self.agents[*at as usize].id);
        rank(
            capable.filter(allowed),
            &self.bidders,
            identity,
            required,
            budget,
            weights,
        )
    }

    fn push(&mut self, agent: Agent) {
        let at = self.agents.len() as u32;
        for c in &agent.capabilities {
            self.by_capability.entry(c.clone()).or_default().push(at);
        }
        self.positions.insert(agent.id, at);
        self.bidders.push(Bidder::from(&agent));
        self.agents.push(Arc::new(agent));
    }

    /// Removes by swapping the last agent into the hole; rare, so the capability lists of the
    /// moved agent are patched by a scan.
    fn remove(&mut self, id: Uuid) {
        let Some(at) = self.positions.remove(&id) else {
            return;
        };
        let last = (self.agents.len() - 1) as u32;
        let removed = self.agents.swap_remove(at as usize);
        self.bidders.swap_remove(at as usize);
        for c in &removed.capabilities {
            if let Some(list) = self.by_capability.get_mut(c) {
                list.retain(|&p| p != at);
                if list.is_empty() {
                    self.by_capability.remove(c);
                }
            }
        }
        if at != last {
            let moved = self.agents[at as usize].clone();
            self.positions.insert(moved.id, at);
            for c in &moved.capabilities {
                if let Some(list) = self.by_capability.get_mut(c) {
                    list.retain(|&p| p != last);
                    let i = list.partition_point(|&p| p < at);
                    list.insert(i, at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    fn winners(catalog: &Catalog, required: &[&str], exclude: &[Uuid]) -> Vec<String> {
        catalog
            .auction(&caps(required), 1.0, Weights::default(), None, exclude)
            .map(|bids| bids.into_iter().map(|b| b.agent_name).collect())
            .unwrap_or_default()
    }

    #[test]
    fn auctions_see_only_agents_offering_every_capability() {
        let a = Agent::fixture("a", 0.1, &["nlp", "text"]);
        let b = Agent::fixture("b", 0.2, &["nlp"]);
        let c = Agent::fixture("c", 0.3, &["text", "nlp", "vision"]);
        let catalog = Catalog::new([a.clone(), b.clone(), c.clone()]);
        assert_eq!(winners(&catalog, &["nlp"], &[]), ["a", "b", "c"]);
        assert_eq!(winners(&catalog, &["text", "nlp"], &[]), ["a", "c"]);
        assert_eq!(winners(&catalog, &["vision"], &[]), ["c"]);
        assert_eq!(winners(&catalog, &["nlp"], &[a.id]), ["b", "c"]);
        assert!(winners(&catalog, &["audio"], &[]).is_empty());
        let pinned = catalog
            .auction(&caps(&["text"]), 1.0, Weights::default(), Some(b.id), &[])
            .unwrap_err();
        assert!(pinned.0.contains("text"), "{}", pinned.0);
    }

    #[test]
    fn removal_keeps_the_capability_index_right() {
        let agents: Vec<Agent> = (0..6)
            .map(|i| {
                Agent::fixture(
                    &format!("a{i}"),
                    i as f64 / 10.0,
                    &["x", if i % 2 == 0 { "even" } else { "odd" }],
                )
            })
            .collect();
        let catalog = Catalog::new(agents.clone());
        catalog.remove(agents[1].id);
        catalog.remove(agents[0].id);
        assert_eq!(catalog.len(), 4);
        assert_eq!(winners(&catalog, &["even"], &[]), ["a2", "a4"]);
        assert_eq!(winners(&catalog, &["odd"], &[]), ["a3", "a5"]);
        assert_eq!(winners(&catalog, &["x"], &[]), ["a2", "a3", "a4", "a5"]);
        // Changing an agent's capabilities moves it between lists.
        let mut moved = agents[2].clone();
        moved.capabilities = caps(&["x", "odd"]);
        catalog.upsert(moved);
        assert_eq!(winners(&catalog, &["even"], &[]), ["a4"]);
        assert_eq!(winners(&catalog, &["odd"], &[]), ["a2", "a3", "a5"]);
    }

    #[test]
    fn outcomes_move_an_agent_in_the_ranking() {
        let steady = Agent::fixture("steady", 0.1, &["x"]);
        let flaky = Agent::fixture("flaky", 0.1, &["x"]);
        let catalog = Catalog::new([steady.clone(), flaky.clone()]);
        for _ in 0..5 {
            catalog.record_outcome(steady.id, true, 10);
            catalog.record_outcome(flaky.id, false, 10);
        }
        assert_eq!(winners(&catalog, &["x"], &[]), ["steady", "flaky"]);
        assert_eq!(catalog.get(flaky.id).unwrap().stats.tasks_failed, 5);
    }
}
