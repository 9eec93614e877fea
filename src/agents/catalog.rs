//! The catalog: every ready agent in memory, indexed by capability, with the figures the
//! auction ranks by computed when they change rather than in every auction. The figures are
//! kept column by column, once for all agents and once per capability, so an auction reads
//! exactly its candidates' figures as contiguous memory.
//!
//! The store stays the source of truth: the catalog is loaded from it at start, the
//! marketplace adds what it publishes, and the orchestrator folds in run outcomes as they
//! happen (the store gets them with the task's state).
//!
//! Threading: a std RwLock. Auctions hold the read lock while ranking (about half a
//! millisecond at 100,000 agents); writers hold it for a map update and, per capability of the
//! agent, a binary search.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::ranking::{Bidder, Bidders, NoEligibleAgent, Pool, Weights, rank};
use crate::records::{Agent, AgentStatus, Bid};

#[derive(Default)]
struct Inner {
    /// Every agent's figures, in position order (`all.position[i] == i`).
    all: Bidders,
    agents: Vec<Arc<Agent>>,
    /// Each position's agent id, dense: auctions break ties on it without touching `agents`.
    ids: Vec<Uuid>,
    /// Agent id → position in `agents` (and `all`).
    positions: HashMap<Uuid, u32>,
    /// Capability → the figures of the agents offering it, by ascending position: the one
    /// list an auction for that capability reads. An agent's figures are in `all` and in one
    /// list per capability; every change writes them all.
    by_capability: HashMap<String, Bidders>,
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

    /// Adds an agent, or replaces it keeping the live statistics the catalog has (a stored
    /// record lags behind them); an agent that is not ready leaves the catalog.
    pub fn upsert(&self, mut agent: Agent) {
        let mut inner = self.inner.write().expect("catalog lock");
        if agent.status != AgentStatus::Ready {
            inner.remove(agent.id);
            return;
        }
        if let Some(&at) = inner.positions.get(&agent.id) {
            agent.stats = inner.agents[at as usize].stats.clone();
        }
        match inner.positions.get(&agent.id).copied() {
            Some(at) if inner.agents[at as usize].capabilities == agent.capabilities => {
                inner.set_figures(at, Bidder::from(&agent));
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

    /// Every ready agent, in catalog order.
    pub fn agents(&self) -> Vec<Arc<Agent>> {
        self.inner.read().expect("catalog lock").agents.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds one finished run into the agent's statistics.
    pub fn record_outcome(&self, id: Uuid, success: bool, duration_ms: u64) {
        let mut inner = self.inner.write().expect("catalog lock");
        if let Some(at) = inner.positions.get(&id).copied() {
            let mut agent = (*inner.agents[at as usize]).clone();
            agent.stats.record(success, duration_ms);
            inner.set_figures(at, Bidder::from(&agent));
            inner.agents[at as usize] = Arc::new(agent);
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
        let lists: Option<Vec<&Bidders>> = required
            .iter()
            .map(|c| inner.by_capability.get(c))
            .collect();
        let subset;
        let bidders: &Bidders = match (lists, only) {
            // Some capability nobody offers.
            (None, _) => {
                subset = Bidders::default();
                &subset
            }
            (Some(_), Some(id)) => {
                subset = match inner.positions.get(&id) {
                    Some(&at) if inner.agents[at as usize].offers_all(required) => {
                        let mut one = Bidders::default();
                        one.push(at, inner.all.get(at as usize));
                        one
                    }
                    _ => Bidders::default(),
                };
                &subset
            }
            (Some(lists), None) => match lists.as_slice() {
                [] => &inner.all,
                [list] => list,
                _ => {
                    subset = intersection(lists);
                    &subset
                }
            },
        };
        // By index in `bidders`: looking up each bidder's id would touch every agent.
        let mut excluded: Vec<usize> = exclude
            .iter()
            .filter_map(|id| inner.positions.get(id))
            .filter_map(|&at| bidders.find(at))
            .collect();
        excluded.sort_unstable();
        excluded.dedup();
        let pool = Pool {
            bidders,
            excluded: &excluded,
            ids: &inner.ids,
            name: |at: u32| inner.agents[at as usize].name.as_str(),
        };
        rank(pool, required, budget, weights)
    }
}

/// The bidders listed in every one of `lists`: walks the shortest and advances a cursor in
/// each other list, so the cost is linear in their lengths.
fn intersection(mut lists: Vec<&Bidders>) -> Bidders {
    lists.sort_by_key(|l| l.len());
    let (walk, others) = lists.split_first().expect("two lists or more");
    let mut cursors: Vec<(&[u32], usize)> =
        others.iter().map(|l| (l.position.as_slice(), 0)).collect();
    let mut subset = Bidders::default();
    'candidates: for (i, &at) in walk.position.iter().enumerate() {
        for (list, cursor) in cursors.iter_mut() {
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
        subset.push(at, walk.get(i));
    }
    subset
}

impl Inner {
    /// Writes an agent's figures everywhere they are listed.
    fn set_figures(&mut self, at: u32, b: Bidder) {
        self.all.set(at as usize, b);
        let agent = self.agents[at as usize].clone();
        for c in &agent.capabilities {
            if let Some(list) = self.by_capability.get_mut(c)
                && let Some(i) = list.find(at)
            {
                list.set(i, b);
            }
        }
    }

    fn push(&mut self, agent: Agent) {
        let at = self.agents.len() as u32;
        let b = Bidder::from(&agent);
        for c in &agent.capabilities {
            self.by_capability.entry(c.clone()).or_default().push(at, b);
        }
        self.positions.insert(agent.id, at);
        self.all.push(at, b);
        self.ids.push(agent.id);
        self.agents.push(Arc::new(agent));
    }

    /// Removes by moving the last agent into the hole; rare, so the lists are patched by
    /// shifting their tails.
    fn remove(&mut self, id: Uuid) {
        let Some(at) = self.positions.remove(&id) else {
            return;
        };
        let last = (self.agents.len() - 1) as u32;
        let removed = self.agents.swap_remove(at as usize);
        self.ids.swap_remove(at as usize);
        for c in &removed.capabilities {
            if let Some(list) = self.by_capability.get_mut(c) {
                if let Some(i) = list.find(at) {
                    list.remove(i);
                }
                if list.is_empty() {
                    self.by_capability.remove(c);
                }
            }
        }
        let moved = self.all.remove(last as usize);
        if at != last {
            self.all.set(at as usize, moved);
            let agent = self.agents[at as usize].clone();
            self.positions.insert(agent.id, at);
            for c in &agent.capabilities {
                if let Some(list) = self.by_capability.get_mut(c)
                    && let Some(i) = list.find(last)
                {
                    let b = list.remove(i);
                    let i = list.position.partition_point(|&p| p < at);
                    list.insert(i, at, b);
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
    fn ties_across_blocks_go_to_the_lowest_ids_and_exclusions_hold_in_every_block() {
        // More agents than one auction block, all alike: the bids are the lowest ids.
        let agents: Vec<Agent> = (0..1_500)
            .map(|i| Agent::fixture(&format!("a{i}"), 0.1, &["x"]))
            .collect();
        let mut ids: Vec<Uuid> = agents.iter().map(|a| a.id).collect();
        ids.sort_unstable();
        let catalog = Catalog::new(agents);
        let bids = |exclude: &[Uuid]| -> Vec<Uuid> {
            catalog
                .auction(&caps(&["x"]), 1.0, Weights::default(), None, exclude)
                .unwrap()
                .into_iter()
                .map(|b| b.agent_id)
                .collect()
        };
        assert_eq!(bids(&[]), ids[..10]);
        assert_eq!(bids(&ids[..3]), ids[3..13]);
        // One cheaper agent, late in the last block, wins.
        let cheap = Agent::fixture("cheap", 0.05, &["x"]);
        catalog.upsert(cheap.clone());
        assert_eq!(bids(&[])[0], cheap.id);
        assert_eq!(bids(&[cheap.id]), ids[..10]);
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
