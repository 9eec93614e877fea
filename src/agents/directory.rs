//! The directory: every agent (any status) in memory, for listing, filtering, sorting and
//! facet counts without touching redb. Search narrows the candidates first when there is a
//! query ([`crate::search::SearchIndex`]); everything else happens here.
//!
//! Rows are kept in creation order (oldest first, ties by id), so the default listing,
//! newest first, is a slice from the end, and the unfiltered facet counts are kept as agents
//! come and go: the common page costs O(page) however many agents there are. A filtered or
//! re-sorted listing scans the compact rows (no pointer chasing unless a capability is
//! involved) and selects only the page it returns.
//!
//! Threading: a std RwLock, held for the scan and never across an await. The marketplace is
//! the only writer besides [`Directory::record_outcome`], which the orchestrator calls as runs
//! end.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, RwLock};

use uuid::Uuid;

use crate::records::{Agent, AgentStatus};
use crate::search::Hit;

/// How a listing is ordered. Ties always break on the agent id, so pages never overlap or
/// skip while the agents do not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Best search match first; without a query, newest.
    #[default]
    Relevance,
    Newest,
    Oldest,
    PriceAsc,
    PriceDesc,
    /// Bayesian review score, best first.
    Rating,
    TasksCompleted,
    Name,
}

impl Sort {
    /// Parses `relevance`, `newest`, `oldest`, `price` (= `price:asc`), `price:desc`,
    /// `rating`, `tasks_completed`, `name`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "relevance" => Sort::Relevance,
            "newest" | "created_at:desc" => Sort::Newest,
            "oldest" | "created_at:asc" => Sort::Oldest,
            "price" | "price:asc" => Sort::PriceAsc,
            "price:desc" => Sort::PriceDesc,
            "rating" | "rating:desc" => Sort::Rating,
            "tasks_completed" | "tasks_completed:desc" => Sort::TasksCompleted,
            "name" | "name:asc" => Sort::Name,
            _ => return None,
        })
    }
}

/// What a listing keeps.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Every one must be offered.
    pub capabilities: Vec<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    /// On the mean stars; agents without reviews do not pass.
    pub min_rating: Option<f64>,
    pub status: Option<AgentStatus>,
    pub owner: Option<Uuid>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.capabilities.is_empty()
            && self.min_price.is_none()
            && self.max_price.is_none()
            && self.min_rating.is_none()
            && self.status.is_none()
            && self.owner.is_none()
    }
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct Listing {
    pub agents: Vec<Arc<Agent>>,
    /// Every match, across pages.
    pub total: usize,
    /// Matches per capability, over all matches (not just this page).
    pub capabilities: BTreeMap<String, usize>,
}

/// The figures a listing filters and sorts by: 96 bytes, so a scan reads rows as contiguous
/// memory with no pointer to chase unless an agent offers more than [`INLINE_CAPABILITIES`].
#[derive(Debug, Clone)]
struct Row {
    id: Uuid,
    owner: Uuid,
    created_ms: i64,
    price: f64,
    /// Mean stars; NaN without reviews.
    rating_mean: f32,
    rating_score: f32,
    tasks_completed: u64,
    status: AgentStatus,
    /// How many of `inline` are used; with more capabilities than fit, `more` holds them all.
    inline_len: u8,
    /// Interned capability ids.
    inline: [u32; INLINE_CAPABILITIES],
    more: Option<Box<[u32]>>,
}

/// Capabilities kept inside a row; most agents have fewer.
const INLINE_CAPABILITIES: usize = 4;

impl Row {
    fn key(&self) -> (i64, Uuid) {
        (self.created_ms, self.id)
    }

    fn capabilities(&self) -> &[u32] {
        match &self.more {
            Some(all) => all,
            None => &self.inline[..self.inline_len as usize],
        }
    }
}

/// Hashes a UUID (16 bytes, mostly random) with one multiply and a fold, instead of SipHash:
/// a listing looks up every search hit, and this takes a third of SipHash's time there.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // The table indexes by the low bits; fold the well-mixed high ones into them.
        h ^ (h >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(29) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _length_prefix: usize) {}
}

type IdMap<V> = HashMap<Uuid, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Inner {
    /// Ascending by (created, id).
    rows: Vec<Row>,
    agents: Vec<Arc<Agent>>,
    /// Agent id → position in `rows`.
    positions: IdMap<usize>,
    capability_ids: HashMap<String, u32>,
    capability_names: Vec<String>,
    /// Agents offering each capability id, over all rows.
    capability_counts: Vec<usize>,
}

/// The directory of agents. Cheap to clone.
#[derive(Clone, Default)]
pub struct Directory {
    inner: Arc<RwLock<Inner>>,
}

fn created_ms(agent: &Agent) -> i64 {
    (agent.created_at.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Directory {
    pub fn new(agents: impl IntoIterator<Item = Agent>) -> Self {
        let mut all: Vec<Agent> = agents.into_iter().collect();
        all.sort_by_key(|a| (created_ms(a), a.id));
        let directory = Self::default();
        {
            let mut inner = directory.inner.write().expect("directory lock");
            for agent in all {
                let at = inner.rows.len();
                let row = inner.row(&agent);
                inner.count(&row, 1);
                inner.positions.insert(agent.id, at);
                inner.rows.push(row);
                inner.agents.push(Arc::new(agent));
            }
        }
        directory
    }

    pub fn len(&self) -> usize {
        self.inner.read().expect("directory lock").rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<Agent>> {
        let inner = self.inner.read().expect("directory lock");
        inner.positions.get(&id).map(|&at| inner.agents[at].clone())
    }

    /// Adds or replaces an agent.
    pub fn upsert(&self, agent: Agent) {
        let mut inner = self.inner.write().expect("directory lock");
        let row = inner.row(&agent);
        match inner.positions.get(&agent.id).copied() {
            Some(at) if inner.rows[at].key() == row.key() => {
                let old = std::mem::replace(&mut inner.rows[at], row.clone());
                inner.count(&old, -1);
                inner.count(&row, 1);
                inner.agents[at] = Arc::new(agent);
            }
            existing => {
                if existing.is_some() {
                    inner.remove(agent.id);
                }
                let at = inner.rows.partition_point(|r| r.key() < row.key());
                inner.count(&row, 1);
                inner.rows.insert(at, row);
                inner.agents.insert(at, Arc::new(agent));
                inner.reindex_from(at);
            }
        }
    }

    pub fn remove(&self, id: Uuid) {
        self.inner.write().expect("directory lock").remove(id);
    }

    /// Counts a finished run, for sorting by tasks completed (the agent record itself gets it
    /// from the store or the catalog).
    pub fn record_outcome(&self, id: Uuid, success: bool) {
        if !success {
            return;
        }
        let mut inner = self.inner.write().expect("directory lock");
        if let Some(&at) = inner.positions.get(&id) {
            inner.rows[at].tasks_completed += 1;
        }
    }

    /// A page of the agents in `candidates` (every agent when `None`; otherwise search hits,
    /// best first, with their scores) that pass `filter`, in `sort` order.
    pub fn list(
        &self,
        candidates: Option<&[Hit]>,
        filter: &Filter,
        sort: Sort,
        offset: usize,
        limit: usize,
    ) -> Listing {
        let inner = self.inner.read().expect("directory lock");
        let sort = match (sort, candidates) {
            (Sort::Relevance, None) => Sort::Newest,
            (sort, _) => sort,
        };
        // The common case: everything, newest first.
        if candidates.is_none() && filter.is_empty() && sort == Sort::Newest {
            let n = inner.rows.len();
            let end = n.saturating_sub(offset);
            let start = end.saturating_sub(limit);
            return Listing {
                agents: inner.agents[start..end].iter().rev().cloned().collect(),
                total: n,
                capabilities: inner.all_facets(),
            };
        }
        let required: Option<Vec<u32>> = filter
            .capabilities
            .iter()
            .map(|c| inner.capability_ids.get(c).copied())
            .collect();
        let Some(required) = required else {
            // A capability no agent offers.
            return Listing {
                agents: Vec::new(),
                total: 0,
                capabilities: BTreeMap::new(),
            };
        };
        let keep = |row: &Row| {
            filter.status.is_none_or(|s| s == row.status)
                && filter.owner.is_none_or(|o| o == row.owner)
                && filter.min_price.is_none_or(|p| row.price >= p)
                && filter.max_price.is_none_or(|p| row.price <= p)
                && filter
                    .min_rating
                    .is_none_or(|r| f64::from(row.rating_mean) >= r)
                && required.iter().all(|c| row.capabilities().contains(c))
        };
        let rows = &inner.rows;
        let mut counts = vec![0usize; inner.capability_names.len()];
        // Each match as (sort key, id, position): sorting reads this contiguous list, never
        // the rows again. A smaller key sorts first; ties break on the id.
        let key = |at: usize, relevance: f32| -> f64 {
            let row = &rows[at];
            match sort {
                Sort::Relevance => -f64::from(relevance),
                Sort::Newest => -(at as f64),
                Sort::Oldest => at as f64,
                Sort::PriceAsc => row.price,
                Sort::PriceDesc => -row.price,
                Sort::Rating => -f64::from(row.rating_score),
                Sort::TasksCompleted => -(row.tasks_completed as f64),
                Sort::Name => 0.0,
            }
        };
        // The page so far: the best `offset + limit` matches, worst on top of the heap.
        let want = offset.saturating_add(limit);
        let mut best: BinaryHeap<Ranked> = BinaryHeap::with_capacity(want.min(1024) + 1);
        let mut by_name: Vec<Ranked> = Vec::new();
        let mut total = 0usize;
        let mut take = |at: usize, relevance: f32| {
            let row = &rows[at];
            if !keep(row) {
                return;
            }
            total += 1;
            for &c in row.capabilities() {
                counts[c as usize] += 1;
            }
            let entry = Ranked {
                key: key(at, relevance),
                id: row.id.as_u128(),
                at: at as u32,
            };
            if sort == Sort::Name {
                by_name.push(entry);
            } else if best.len() < want {
                best.push(entry);
            } else if best.peek().is_some_and(|worst| entry < *worst) {
                best.pop();
                best.push(entry);
            }
        };
        match candidates {
            None => (0..rows.len()).for_each(|at| take(at, 0.0)),
            // Many hits: mark them, then walk the rows in order (memory order beats random).
            Some(hits) if hits.len() > rows.len() / 16 => {
                let mut relevance = vec![f32::NAN; rows.len()];
                for hit in hits {
                    if let Some(&at) = inner.positions.get(&hit.id) {
                        relevance[at] = hit.score;
                    }
                }
                for (at, &r) in relevance.iter().enumerate() {
                    if !r.is_nan() {
                        take(at, r);
                    }
                }
            }
            Some(hits) => {
                for hit in hits {
                    if let Some(&at) = inner.positions.get(&hit.id) {
                        take(at, hit.score);
                    }
                }
            }
        }
        let matches: Vec<Ranked> = if sort == Sort::Name {
            let name = |r: &Ranked| inner.agents[r.at as usize].name.as_str();
            by_name.sort_unstable_by(|a, b| name(a).cmp(name(b)).then(a.id.cmp(&b.id)));
            by_name.truncate(want);
            by_name
        } else {
            best.into_sorted_vec()
        };
        Listing {
            agents: matches
                .iter()
                .skip(offset)
                .map(|r| inner.agents[r.at as usize].clone())
                .collect(),
            total,
            capabilities: inner.facets(&counts),
        }
    }
}

/// A match as a listing ranks it: by `key` (smaller first), then by id.
#[derive(Debug, Clone, Copy)]
struct Ranked {
    key: f64,
    id: u128,
    at: u32,
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.total_cmp(&other.key).then(self.id.cmp(&other.id))
    }
}

impl Inner {
    fn row(&mut self, agent: &Agent) -> Row {
        let capabilities: Vec<u32> = agent.capabilities.iter().map(|c| self.intern(c)).collect();
        let mut inline = [0; INLINE_CAPABILITIES];
        let n = capabilities.len().min(INLINE_CAPABILITIES);
        inline[..n].copy_from_slice(&capabilities[..n]);
        Row {
            id: agent.id,
            owner: agent.owner_id,
            created_ms: created_ms(agent),
            price: agent.price,
            rating_mean: agent.rating.mean.map_or(f32::NAN, |m| m as f32),
            rating_score: agent.rating.score as f32,
            tasks_completed: agent.stats.tasks_completed,
            status: agent.status,
            inline_len: n as u8,
            inline,
            more: (capabilities.len() > INLINE_CAPABILITIES).then(|| capabilities.into()),
        }
    }

    fn intern(&mut self, capability: &str) -> u32 {
        if let Some(&id) = self.capability_ids.get(capability) {
            return id;
        }
        let id = self.capability_names.len() as u32;
        self.capability_names.push(capability.to_owned());
        self.capability_counts.push(0);
        self.capability_ids.insert(capability.to_owned(), id);
        id
    }

    fn count(&mut self, row: &Row, delta: isize) {
        for &c in row.capabilities() {
            let n = &mut self.capability_counts[c as usize];
            *n = n.saturating_add_signed(delta);
        }
    }

    fn remove(&mut self, id: Uuid) {
        let Some(at) = self.positions.remove(&id) else {
            return;
        };
        let row = self.rows.remove(at);
        self.agents.remove(at);
        self.count(&row, -1);
        self.reindex_from(at);
    }

    /// Refreshes the positions of the rows from `at` on, after an insert or removal moved
    /// them (rare next to reads: agents are added at the end).
    fn reindex_from(&mut self, at: usize) {
        for (i, row) in self.rows.iter().enumerate().skip(at) {
            self.positions.insert(row.id, i);
        }
    }

    fn facets(&self, counts: &[usize]) -> BTreeMap<String, usize> {
        counts
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(c, &n)| (self.capability_names[c].clone(), n))
            .collect()
    }

    fn all_facets(&self) -> BTreeMap<String, usize> {
        self.facets(&self.capability_counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, price: f64, caps: &[&str], created_ms: i64) -> Agent {
        let mut a = Agent::fixture(name, price, caps);
        a.created_at =
            time::OffsetDateTime::from_unix_timestamp_nanos(created_ms as i128 * 1_000_000)
                .unwrap();
        a
    }

    fn names(listing: &Listing) -> Vec<&str> {
        listing.agents.iter().map(|a| a.name.as_str()).collect()
    }

    fn sample() -> Directory {
        Directory::new([
            agent("a", 0.3, &["nlp", "text"], 1),
            agent("b", 0.1, &["nlp"], 2),
            agent("c", 0.2, &["vision"], 3),
            agent("d", 0.1, &["nlp", "vision"], 4),
        ])
    }

    #[test]
    fn the_default_listing_is_newest_first_with_all_facets() {
        let d = sample();
        let page = d.list(None, &Filter::default(), Sort::Relevance, 0, 3);
        assert_eq!(names(&page), ["d", "c", "b"]);
        assert_eq!(page.total, 4);
        assert_eq!(page.capabilities["nlp"], 3);
        let page = d.list(None, &Filter::default(), Sort::Newest, 3, 3);
        assert_eq!(names(&page), ["a"]);
        assert!(
            d.list(None, &Filter::default(), Sort::Newest, 9, 3)
                .agents
                .is_empty()
        );
    }

    #[test]
    fn filters_sorts_and_facets_follow_the_matches() {
        let d = sample();
        let nlp = Filter {
            capabilities: vec!["nlp".into()],
            ..Filter::default()
        };
        let page = d.list(None, &nlp, Sort::PriceAsc, 0, 10);
        // b and d tie on price: the id (creation order here) breaks it.
        assert_eq!(names(&page), ["b", "d", "a"]);
        assert_eq!(page.capabilities["vision"], 1);
        assert_eq!(page.capabilities["text"], 1);
        let cheap = Filter {
            max_price: Some(0.15),
            ..Filter::default()
        };
        assert_eq!(names(&d.list(None, &cheap, Sort::Name, 0, 10)), ["b", "d"]);
        let none = Filter {
            capabilities: vec!["audio".into()],
            ..Filter::default()
        };
        assert_eq!(d.list(None, &none, Sort::Newest, 0, 10).total, 0);
        // Pages of a sorted listing partition it.
        let mut paged = Vec::new();
        for offset in 0..4 {
            paged.extend(
                names(&d.list(None, &Filter::default(), Sort::PriceDesc, offset, 1))
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        assert_eq!(paged, ["a", "c", "b", "d"]);
    }

    #[test]
    fn search_candidates_keep_their_order_and_changes_show_at_once() {
        let d = sample();
        let ids: Vec<Uuid> = ["c", "a"]
            .iter()
            .map(|n| {
                d.list(None, &Filter::default(), Sort::Name, 0, 10)
                    .agents
                    .iter()
                    .find(|a| a.name == *n)
                    .unwrap()
                    .id
            })
            .collect();
        let hits = [
            Hit {
                id: ids[0],
                score: 2.0,
            },
            Hit {
                id: ids[1],
                score: 1.0,
            },
        ];
        let page = d.list(Some(&hits), &Filter::default(), Sort::Relevance, 0, 10);
        assert_eq!(names(&page), ["c", "a"]);
        let mut c = (*d.get(ids[0]).unwrap()).clone();
        c.capabilities = vec!["audio".into()];
        d.upsert(c);
        assert_eq!(
            d.list(None, &Filter::default(), Sort::Newest, 0, 10)
                .capabilities
                .get("vision"),
            Some(&1)
        );
        d.remove(ids[1]);
        let page = d.list(Some(&hits), &Filter::default(), Sort::Relevance, 0, 10);
        assert_eq!(names(&page), ["c"]);
        assert_eq!(d.len(), 3);
        assert_eq!(
            d.list(None, &Filter::default(), Sort::Newest, 0, 10)
                .capabilities
                .get("text"),
            None
        );
    }
}
