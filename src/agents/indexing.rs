//! The search index follows the store. redb is the truth; the index is derived from it, so a
//! failed index write never fails the change that caused it: the agent is marked pending and a
//! background healer brings its entry in line with the store, with backoff, until it succeeds
//! (a whole rebuild when the start-up check could not run). [`IndexHealth`] says how far
//! behind the index is, for `/health` and `/ready`.
//!
//! Threading: index writes run on the blocking pool; the healer is one tokio task, woken by a
//! `Notify` and otherwise asleep (an idle server does nothing here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use crate::search::{SearchError, SearchIndex};
use crate::store::Store;

/// First wait before a retry; doubled after every failed round, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How far the index is behind the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexHealth {
    /// Agents whose index entry waits for a retry.
    pub pending: usize,
    /// A whole rebuild waits for a retry.
    pub rebuild: bool,
    /// The last write's error, while anything is pending.
    pub error: Option<String>,
}

impl IndexHealth {
    pub fn in_step(&self) -> bool {
        self.pending == 0 && !self.rebuild
    }
}

/// Index writes that follow store changes, and their healer. Cheap to clone.
#[derive(Clone)]
pub(super) struct Indexing(Arc<Shared>);

/// What the clones share. The healer holds it weakly: once the marketplace is gone, the store
/// closes and the healer ends.
pub(super) struct Shared {
    search: Arc<SearchIndex>,
    store: Store,
    /// What waits for a retry. A std Mutex: held for set updates only.
    behind: Mutex<Behind>,
    wake: Arc<Notify>,
    /// Held from reading the store to writing the index, so that writes land in the order of
    /// the reads: an older read written last would leave the index stale with no failure to
    /// heal. A tokio Mutex: held across the blocking write.
    writes: tokio::sync::Mutex<()>,
}

impl std::ops::Deref for Indexing {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the healer see that it is alone, and end.
        self.wake.notify_one();
    }
}

/// What waits for a retry. An item stays here while the healer retries it, so that health
/// never reports in step early; each mark has a number, so that a retry that succeeds removes
/// only the mark it retried, never one a newer failure left meanwhile.
#[derive(Default)]
struct Behind {
    agents: HashMap<Uuid, u64>,
    rebuild: Option<u64>,
    error: Option<String>,
    marks: u64,
}

impl Behind {
    fn mark(&mut self) -> u64 {
        self.marks += 1;
        self.marks
    }
}

impl Indexing {
    /// Starts the healer; it lives as long as a clone of this does.
    pub(super) fn start(search: Arc<SearchIndex>, store: Store) -> Self {
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            search,
            store,
            behind: Mutex::default(),
            wake: wake.clone(),
            writes: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(heal(Arc::downgrade(&shared), wake));
        Self(shared)
    }

    pub(super) fn search(&self) -> &Arc<SearchIndex> {
        &self.search
    }

    /// Brings the index entries of `ids` in line with the store; what fails is left to the
    /// healer, never to the caller.
    pub(super) async fn follow(&self, ids: &[Uuid]) {
        for &id in ids {
            if let Err(e) = self.sync(id).await {
                self.fell_behind(
                    |b| {
                        let mark = b.mark();
                        b.agents.insert(id, mark);
                    },
                    e,
                );
            }
        }
    }

    /// Makes the index hold exactly the stored agents (at start-up); a failure is healed later.
    pub(super) async fn reconcile(&self, agents: Vec<crate::records::Agent>) {
        let search = self.search.clone();
        let done = tokio::task::spawn_blocking(move || search.reconcile(&agents)).await;
        if let Err(e) = flatten(done) {
            self.fell_behind(|b| b.rebuild = Some(b.mark()), e);
        }
    }

    pub(super) fn health(&self) -> IndexHealth {
        let behind = self.lock();
        IndexHealth {
            pending: behind.agents.len(),
            rebuild: behind.rebuild.is_some(),
            error: behind.error.clone(),
        }
    }
}

impl Shared {
    /// The stored agent's entry, or none when it is not stored.
    async fn sync(&self, id: Uuid) -> Result<(), String> {
        let _in_order = self.writes.lock().await;
        let agent = self.store.agent(id).await.map_err(|e| e.to_string())?;
        let search = self.search.clone();
        let done = tokio::task::spawn_blocking(move || match agent {
            Some(agent) => search.upsert(&agent),
            None => search.remove(id),
        })
        .await;
        flatten(done)
    }

    fn fell_behind(&self, mark: impl FnOnce(&mut Behind), error: String) {
        metrics::counter!("zerostate_search_index_write_failures_total").increment(1);
        tracing::warn!(%error, "search index write failed; it will be retried");
        let mut behind = self.lock();
        mark(&mut behind);
        behind.error = Some(error);
        drop(behind);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Behind> {
        self.behind.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One retry of everything behind. `Err` when anything is still behind after it.
    async fn heal_round(&self) -> Result<(), ()> {
        let (agents, rebuild) = {
            let behind = self.lock();
            let agents: Vec<(Uuid, u64)> = behind.agents.iter().map(|(&id, &m)| (id, m)).collect();
            (agents, behind.rebuild)
        };
        if let Some(mark) = rebuild {
            let done = self.rebuild().await;
            self.settle(done, |b| {
                if b.rebuild == Some(mark) {
                    b.rebuild = None;
                }
            });
        }
        for (id, mark) in agents {
            let done = self.sync(id).await;
            self.settle(done, |b| {
                if b.agents.get(&id) == Some(&mark) {
                    b.agents.remove(&id);
                }
            });
        }
        let mut behind = self.lock();
        if behind.agents.is_empty() && behind.rebuild.is_none() {
            if behind.error.take().is_some() {
                tracing::info!("search index back in step with the store");
            }
            return Ok(());
        }
        Err(())
    }

    /// Clears a retried mark when the retry succeeded; records its error otherwise.
    fn settle(&self, done: Result<(), String>, clear: impl FnOnce(&mut Behind)) {
        let mut behind = self.lock();
        match done {
            Ok(()) => clear(&mut behind),
            Err(e) => behind.error = Some(e),
        }
    }

    async fn rebuild(&self) -> Result<(), String> {
        let _in_order = self.writes.lock().await;
        let agents = self.store.all_agents().await.map_err(|e| e.to_string())?;
        let search = self.search.clone();
        flatten(tokio::task::spawn_blocking(move || search.rebuild(&agents)).await)
    }
}

/// Retries what fell behind, with backoff, until nothing is; ends once the marketplace is gone.
async fn heal(shared: Weak<Shared>, wake: Arc<Notify>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        wake.notified().await;
        loop {
            if shared.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(backoff).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match shared.heal_round().await {
                Ok(()) => break,
                Err(()) => backoff = (backoff * 2).min(MAX_BACKOFF),
            }
        }
        backoff = FIRST_BACKOFF;
    }
}

fn flatten(done: Result<Result<(), SearchError>, tokio::task::JoinError>) -> Result<(), String> {
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("search index task: {e}")),
    }
}
