//! The marketplace component: publishing, lookup, listing and search over agents.

use std::sync::Arc;

use bytes::Bytes;
use time::OffsetDateTime;
use uuid::Uuid;

use super::agent::{Agent, AgentStats, AgentStatus};
use super::catalog::Catalog;
use super::manifest::{Manifest, ManifestError, RawManifest};
use crate::blob::{BlobError, BlobStore};
use crate::error::{ApiError, Code};
use crate::realtime::{Event, Hub};
use crate::runtime;
use crate::search::{SearchError, SearchIndex};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("invalid WebAssembly module: {0}")]
    InvalidWasm(String),
    #[error("the module is {size} bytes; the limit is {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("you already have an agent named `{0}`")]
    NameTaken(String),
    #[error("agent not found")]
    NotFound,
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> Self {
        let code = match &e {
            AgentError::Manifest(_) => Code::InvalidRequest,
            AgentError::InvalidWasm(_) => Code::InvalidWasmModule,
            AgentError::TooLarge { .. } => Code::PayloadTooLarge,
            AgentError::NameTaken(_) => Code::AgentNameTaken,
            AgentError::NotFound => Code::AgentNotFound,
            AgentError::Search(e) => return ApiError::internal(e),
            AgentError::Blob(e) => return ApiError::internal(e),
            AgentError::Store(e) => return ApiError::internal(e),
        };
        ApiError::new(code, e.to_string())
    }
}

/// Listing parameters, already bounded by the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct AgentQuery {
    /// Full-text query over name, description and capabilities.
    pub q: Option<String>,
    /// Every listed capability must be offered.
    pub capabilities: Vec<String>,
    pub limit: usize,
    pub offset: usize,
}

pub struct AgentList {
    pub agents: Vec<Agent>,
    pub total: usize,
}

/// The marketplace component. Cheap to clone.
#[derive(Clone)]
pub struct Marketplace {
    store: Store,
    blobs: BlobStore,
    search: Arc<SearchIndex>,
    hub: Hub,
    /// Ready agents in memory, for auctions.
    catalog: Catalog,
    max_binary_bytes: usize,
}

impl Marketplace {
    /// Loads the agents once: they become the in-memory catalog, and the search index is
    /// rebuilt from them if it does not hold exactly the stored agents.
    pub async fn new(
        store: Store,
        blobs: BlobStore,
        search: Arc<SearchIndex>,
        hub: Hub,
        max_binary_bytes: usize,
    ) -> Result<Self, AgentError> {
        let agents = store.all_agents().await?;
        let agents = {
            let search = search.clone();
            tokio::task::spawn_blocking(move || search.reconcile(&agents).map(|()| agents))
                .await
                .map_err(StoreError::from)??
        };
        let catalog = Catalog::new(agents);
        Ok(Self {
            store,
            blobs,
            search,
            hub,
            catalog,
            max_binary_bytes,
        })
    }

    /// The ready agents, in memory.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn max_binary_bytes(&self) -> usize {
        self.max_binary_bytes
    }

    /// Validates and publishes an agent owned by `owner`.
    pub async fn publish(
        &self,
        owner: Uuid,
        raw: RawManifest,
        wasm: Bytes,
    ) -> Result<Agent, AgentError> {
        let manifest = Manifest::parse(raw)?;
        if wasm.len() > self.max_binary_bytes {
            return Err(AgentError::TooLarge {
                size: wasm.len(),
                max: self.max_binary_bytes,
            });
        }
        let module = wasm.clone();
        tokio::task::spawn_blocking(move || runtime::validate(&module))
            .await
            .map_err(StoreError::from)?
            .map_err(|e| AgentError::InvalidWasm(e.to_string()))?;

        let binary_size = wasm.len() as u64;
        let binary_hash = self.blobs.put(wasm).await?;
        let now = OffsetDateTime::now_utc();
        let agent = Agent {
            // Time-ordered, so ids sort by age (the auction breaks ties on it).
            id: Uuid::now_v7(),
            owner_id: owner,
            name: manifest.name,
            description: manifest.description,
            version: manifest.version,
            capabilities: manifest.capabilities,
            price: manifest.price,
            binary_hash,
            binary_size,
            status: AgentStatus::Ready,
            created_at: now,
            stats: AgentStats::default(),
        };
        if !self.store.insert_agent(agent.clone()).await? {
            return Err(AgentError::NameTaken(agent.name));
        }
        self.catalog.upsert(agent.clone());
        let search = self.search.clone();
        let indexed = agent.clone();
        tokio::task::spawn_blocking(move || search.upsert(&indexed))
            .await
            .map_err(StoreError::from)??;
        tracing::info!(agent_id = %agent.id, name = %agent.name, hash = %agent.binary_hash, "agent published");
        self.hub
            .broadcast(Event::agent_update(&agent, "registered"));
        Ok(agent)
    }

    /// Publishes unless `owner` already has an agent with this name (idempotent seeding).
    pub async fn publish_if_absent(
        &self,
        owner: Uuid,
        raw: RawManifest,
        wasm: Bytes,
    ) -> Result<Option<Agent>, AgentError> {
        let name = raw.name.clone().unwrap_or_default();
        if self
            .store
            .agent_by_owner_name(owner, name.trim().to_owned())
            .await?
            .is_some()
        {
            return Ok(None);
        }
        self.publish(owner, raw, wasm).await.map(Some)
    }

    /// The agent, with live statistics: the catalog folds in each run as it ends, the store
    /// only with the next apply of the task log.
    pub async fn get(&self, id: Uuid) -> Result<Agent, AgentError> {
        if let Some(agent) = self.catalog.get(id) {
            return Ok((*agent).clone());
        }
        self.store.agent(id).await?.ok_or(AgentError::NotFound)
    }

    /// Lists agents: by relevance when `q` is given, newest first otherwise.
    pub async fn list(&self, query: AgentQuery) -> Result<AgentList, AgentError> {
        let candidates = match query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => {
                let search = self.search.clone();
                let q = q.to_owned();
                let ids = tokio::task::spawn_blocking(move || search.search(&q))
                    .await
                    .map_err(StoreError::from)??;
                self.store.agents_by_ids(ids).await?
            }
            None => self.store.all_agents().await?,
        };
        let matching: Vec<Agent> = candidates
            .into_iter()
            .filter(|a| a.offers_all(&query.capabilities))
            .collect();
        let total = matching.len();
        let agents = matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .map(|mut agent| {
                if let Some(live) = self.catalog.get(agent.id) {
                    agent.stats = live.stats.clone();
                }
                agent
            })
            .collect();
        Ok(AgentList { agents, total })
    }

    /// The agent's module bytes, hash-verified.
    pub async fn module_bytes(&self, agent: &Agent) -> Result<Bytes, AgentError> {
        Ok(self.blobs.get(&agent.binary_hash).await?)
    }
}
