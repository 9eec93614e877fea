//! The marketplace component: publishing, building, lookup, listing and search over agents.
//!
//! Publishing answers once the module's declarations pass [`runtime::check`] and its bytes are
//! durable; the build (body validation, then compilation) runs in the background on the
//! [`Compiler`] thread, moving the agent `validating → compiling → ready` (or `rejected`), with
//! each step stored and announced on the hub. At start, unfinished builds are resumed and the
//! ready agents' compiled code is loaded from the module cache ("warm-up").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::agent::{Agent, AgentStats, AgentStatus, Build, Rejection};
use super::catalog::Catalog;
use super::manifest::{Manifest, ManifestError, RawManifest};
use crate::blob::{BlobError, BlobStore};
use crate::config::LimitSettings;
use crate::error::{ApiError, Code};
use crate::realtime::{Event, Hub};
use crate::runtime::{self, Compiler, Executor, Policy};
use crate::search::{SearchError, SearchIndex};
use crate::store::{Inserted, Store, StoreError};

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
    #[error("the build thread stopped")]
    BuildStopped,
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
            AgentError::BuildStopped => return ApiError::internal(&e),
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

/// What the marketplace enforces on uploads.
#[derive(Debug, Clone)]
pub struct Rules {
    pub max_binary_bytes: usize,
    pub policy: Policy,
    pub limits: LimitSettings,
    pub compile_timeout: Duration,
}

/// Progress of the start-up warm-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Warmup {
    /// Ready agents whose code is loaded (or known not to load).
    pub loaded: usize,
    /// Of those, how many had to be compiled (their cached code was missing or stale).
    pub compiled: usize,
    pub total: usize,
    pub done: bool,
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
    rules: Arc<Rules>,
    executor: Arc<Executor>,
    compiler: Arc<Compiler>,
    /// Ids of agents whose build just ended.
    built: broadcast::Sender<Uuid>,
    /// Measured compile speed, bytes of module per millisecond (a moving average).
    compile_speed: Arc<Mutex<Option<f64>>>,
    warmup: Arc<watch::Sender<Warmup>>,
}

/// Weight of the newest compile in the compile-speed average.
const SPEED_ALPHA: f64 = 0.3;

impl Marketplace {
    /// Loads the agents once: they become the in-memory catalog, and the search index is
    /// rebuilt from them if it does not hold exactly the stored agents. Then, in the
    /// background, loads every ready agent's compiled code and resumes the builds a stop
    /// interrupted (see [`Marketplace::warmup`]).
    pub async fn new(
        store: Store,
        blobs: BlobStore,
        search: Arc<SearchIndex>,
        hub: Hub,
        rules: Rules,
        executor: Arc<Executor>,
        compiler: Arc<Compiler>,
    ) -> Result<Self, AgentError> {
        let agents = store.all_agents().await?;
        let agents = {
            let search = search.clone();
            tokio::task::spawn_blocking(move || search.reconcile(&agents).map(|()| agents))
                .await
                .map_err(StoreError::from)??
        };
        let unbuilt: Vec<Agent> = agents
            .iter()
            .filter(|a| !a.status.is_built())
            .cloned()
            .collect();
        let catalog = Catalog::new(agents);
        let marketplace = Self {
            store,
            blobs,
            search,
            hub,
            catalog,
            rules: Arc::new(rules),
            executor,
            compiler,
            built: broadcast::channel(1024).0,
            compile_speed: Arc::default(),
            warmup: Arc::new(watch::channel(Warmup::default()).0),
        };
        marketplace.start_warmup(unbuilt);
        Ok(marketplace)
    }

    /// In the background: loads every ready agent's compiled code (from the module cache;
    /// compiled again only on a cache miss), then restarts the builds in `unbuilt`.
    fn start_warmup(&self, unbuilt: Vec<Agent>) {
        let ready = self.catalog.agents();
        self.warmup.send_modify(|w| {
            w.total = ready.len();
            w.done = ready.is_empty();
        });
        let this = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            for agent in &ready {
                let compiled = match this.load(agent).await {
                    Ok(prepared) => prepared == runtime::Prepared::Compiled,
                    Err(e) => {
                        tracing::error!(agent_id = %agent.id, error = %e, "cannot load a ready agent's module; its tasks will fail");
                        false
                    }
                };
                this.warmup.send_modify(|w| {
                    w.loaded += 1;
                    w.compiled += usize::from(compiled);
                });
            }
            this.warmup.send_modify(|w| w.done = true);
            // Interrupted builds after the warm-up, so a slow one cannot hold up readiness.
            for agent in unbuilt {
                tracing::info!(agent_id = %agent.id, "resuming an interrupted build");
                let builder = this.clone();
                tokio::spawn(async move { builder.build(agent, None).await });
            }
            let w = *this.warmup.borrow();
            tracing::info!(
                agents = w.total,
                compiled = w.compiled,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "agent modules loaded"
            );
        });
    }

    /// Makes a ready agent's module runnable: from memory or the cache, else compiled on the
    /// build thread (after the builds queued before it).
    pub async fn load(&self, agent: &Agent) -> Result<runtime::Prepared, String> {
        if let Some(prepared) = self.load_cached(&agent.binary_hash).await? {
            return Ok(prepared);
        }
        tracing::info!(agent_id = %agent.id, "compiled code not cached; compiling again");
        let bytes = self.module_bytes(agent).await.map_err(|e| e.to_string())?;
        let (executor, hash) = (self.executor.clone(), agent.binary_hash.clone());
        self.compiler
            .run(move || executor.compile(&hash, &bytes))
            .await
            .map_err(|_| "the build thread stopped".to_owned())?
    }

    /// [`Executor::prepare_cached`] on the blocking pool.
    async fn load_cached(&self, hash: &str) -> Result<Option<runtime::Prepared>, String> {
        let (executor, hash) = (self.executor.clone(), hash.to_owned());
        tokio::task::spawn_blocking(move || executor.prepare_cached(&hash))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Progress of the start-up warm-up, now and as it changes.
    pub fn warmup(&self) -> watch::Receiver<Warmup> {
        self.warmup.subscribe()
    }

    /// Validates the bodies of a published agent's module and compiles it, storing and
    /// announcing each step. Runs to the end (a store failure leaves the agent unbuilt, and the
    /// next start resumes it).
    async fn build(&self, agent: Agent, wasm: Option<Bytes>) {
        let id = agent.id;
        if let Err(e) = self.try_build(agent, wasm).await {
            tracing::error!(agent_id = %id, error = %e, "agent build failed; it resumes at the next start");
        }
        let _ = self.built.send(id);
    }

    async fn try_build(&self, agent: Agent, wasm: Option<Bytes>) -> Result<(), AgentError> {
        let id = agent.id;
        let hash = agent.binary_hash.clone();
        let bytes = match wasm {
            Some(bytes) => bytes,
            None => self.module_bytes(&agent).await?,
        };

        // Validation runs even for bytes compiled before: the policy may have changed since.
        let started = Instant::now();
        let (module, rules, executor) = (bytes.clone(), self.rules.clone(), self.executor.clone());
        let validated = self
            .compiler
            .run(move || {
                runtime::validate(&module, &rules.policy).map_err(|e| e.to_string())?;
                executor
                    .validate(&module)
                    .map_err(|e| format!("the runtime does not support it: {e}"))
            })
            .await
            .map_err(|_| AgentError::BuildStopped)?;
        if let Err(e) = validated {
            return self
                .reject(
                    id,
                    "invalid_wasm_module",
                    format!("invalid WebAssembly module: {e}"),
                )
                .await;
        }
        let validate_ms = started.elapsed().as_millis() as u64;

        // The same bytes compiled before (another agent, an earlier upload): no compile.
        if let Ok(Some(_)) = self.load_cached(&hash).await {
            return self.finish_build(id, Some(validate_ms), Ok(0)).await;
        }

        let size = bytes.len();
        let (executor, abandoned) = (self.executor.clone(), Arc::new(AtomicBool::new(false)));
        let gave_up = abandoned.clone();
        let (job_started, compiled) = self
            .compiler
            .run_timed(move || executor.compile_unless(&hash, &bytes, &abandoned));
        // The timeout counts from the compile's start, not its wait behind other builds.
        job_started.await.map_err(|_| AgentError::BuildStopped)?;
        let started = Instant::now();
        let estimate = self
            .compile_speed
            .lock()
            .expect("compile speed")
            .map(|bytes_per_ms| (size as f64 / bytes_per_ms) as u64);
        self.set_status(id, move |a| {
            a.status = AgentStatus::Compiling;
            let build = a.build.get_or_insert_with(Build::default);
            build.validate_ms = Some(validate_ms);
            build.compile_started_at = Some(OffsetDateTime::now_utc());
            build.estimated_compile_ms = estimate;
        })
        .await?;
        let timeout = self.rules.compile_timeout;
        let result = match tokio::time::timeout_at((started + timeout).into(), compiled).await {
            Err(_) => {
                // The compile cannot be stopped; its code is dropped when it ends.
                gave_up.store(true, Ordering::Release);
                return self
                    .reject(
                        id,
                        "compile_timeout",
                        format!(
                            "compilation did not finish within {} s (agents.compile_timeout_secs)",
                            timeout.as_secs()
                        ),
                    )
                    .await;
            }
            Ok(Err(_)) => return Err(AgentError::BuildStopped),
            Ok(Ok(result)) => result,
        };
        match result {
            Ok(_) => {
                let ms = started.elapsed().as_millis() as u64;
                self.record_compile_speed(size, ms);
                self.finish_build(id, Some(validate_ms), Ok(ms)).await
            }
            Err(message) => self.reject(id, "compile_failed", message).await,
        }
    }

    fn record_compile_speed(&self, size: usize, ms: u64) {
        let speed = size as f64 / ms.max(1) as f64;
        let mut average = self.compile_speed.lock().expect("compile speed");
        *average = Some(average.map_or(speed, |a| SPEED_ALPHA * speed + (1.0 - SPEED_ALPHA) * a));
    }

    async fn reject(&self, id: Uuid, code: &str, message: String) -> Result<(), AgentError> {
        tracing::info!(agent_id = %id, code, %message, "agent rejected");
        let rejection = Rejection {
            code: code.to_owned(),
            message,
        };
        self.finish_build(id, None, Err(rejection)).await
    }

    /// Ends a build: ready (after `compile_ms` of compiling) or rejected.
    async fn finish_build(
        &self,
        id: Uuid,
        validate_ms: Option<u64>,
        outcome: Result<u64, Rejection>,
    ) -> Result<(), AgentError> {
        let agent = self
            .set_status(id, move |a| {
                let build = a.build.get_or_insert_with(Build::default);
                if let Some(ms) = validate_ms {
                    build.validate_ms = Some(ms);
                }
                build.finished_at = Some(OffsetDateTime::now_utc());
                match outcome {
                    Ok(ms) => {
                        build.compile_ms = Some(ms);
                        a.status = AgentStatus::Ready;
                    }
                    Err(rejection) => {
                        a.status = AgentStatus::Rejected;
                        a.rejection = Some(rejection);
                    }
                }
            })
            .await?;
        if let Some(agent) = agent
            && agent.status == AgentStatus::Ready
        {
            tracing::info!(agent_id = %agent.id, name = %agent.name, "agent ready");
            self.catalog.upsert(agent);
        }
        Ok(())
    }

    /// Stores a build step and announces it.
    async fn set_status(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Agent) + Send + 'static,
    ) -> Result<Option<Agent>, AgentError> {
        let agent = self.store.update_agent(id, change).await?;
        if let Some(agent) = &agent {
            self.hub.broadcast(Event::agent_update(agent, "updated"));
        }
        Ok(agent)
    }

    /// Waits up to `timeout` for the agent's build to end; returns the agent as it then is.
    pub async fn wait_built(&self, id: Uuid, timeout: Duration) -> Result<Agent, AgentError> {
        let mut built = self.built.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let agent = self.get(id).await?;
            if agent.status.is_built() {
                return Ok(agent);
            }
            loop {
                match tokio::time::timeout_at(deadline, built.recv()).await {
                    Err(_) => return self.get(id).await,
                    Ok(Ok(done)) if done != id => continue,
                    // This agent, or missed messages: look again.
                    Ok(_) => break,
                }
            }
        }
    }

    /// The ready agents, in memory.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn max_binary_bytes(&self) -> usize {
        self.rules.max_binary_bytes
    }

    /// Checks and stores an agent owned by `owner`; it is `validating`, and builds in the
    /// background ([`Marketplace::wait_built`] waits for the end).
    pub async fn publish(
        &self,
        owner: Uuid,
        raw: RawManifest,
        wasm: Bytes,
    ) -> Result<Agent, AgentError> {
        let manifest = Manifest::parse(raw, &self.rules.limits)?;
        let max = self.rules.max_binary_bytes;
        if wasm.len() > max {
            return Err(AgentError::TooLarge {
                size: wasm.len(),
                max,
            });
        }
        let (module, rules) = (wasm.clone(), self.rules.clone());
        let info = tokio::task::spawn_blocking(move || runtime::check(&module, &rules.policy))
            .await
            .map_err(StoreError::from)?
            .map_err(|e| AgentError::InvalidWasm(e.to_string()))?;
        // A module whose memory starts above its limit could never run.
        let limits = &self.rules.limits;
        let memory_limit = manifest
            .limits
            .memory_bytes
            .unwrap_or(limits.memory_bytes)
            .min(limits.max_memory_bytes);
        let initial = info.memory_pages * 65_536;
        if initial > memory_limit {
            return Err(AgentError::InvalidWasm(format!(
                "the module's initial memory is {initial} bytes, more than its memory limit of \
                 {memory_limit} bytes (raise limits.memory_bytes in the manifest)"
            )));
        }

        let binary_size = wasm.len() as u64;
        let binary_hash = self.blobs.put(wasm.clone()).await?;
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
            status: AgentStatus::Validating,
            rejection: None,
            build: None,
            limits: manifest.limits,
            argv: manifest.argv,
            env: manifest.env,
            created_at: now,
            stats: AgentStats::default(),
        };
        match self
            .store
            .insert_agent_replacing_rejected(agent.clone())
            .await?
        {
            Inserted::NameTaken => return Err(AgentError::NameTaken(agent.name)),
            Inserted::Replaced(old) => {
                tracing::info!(agent_id = %agent.id, replaced = %old, "a new upload replaces a rejected agent");
                let search = self.search.clone();
                tokio::task::spawn_blocking(move || search.remove(old))
                    .await
                    .map_err(StoreError::from)??;
            }
            Inserted::New => {}
        }
        let search = self.search.clone();
        let indexed = agent.clone();
        tokio::task::spawn_blocking(move || search.upsert(&indexed))
            .await
            .map_err(StoreError::from)??;
        tracing::info!(agent_id = %agent.id, name = %agent.name, hash = %agent.binary_hash, "agent published");
        self.hub
            .broadcast(Event::agent_update(&agent, "registered"));
        let (this, building) = (self.clone(), agent.clone());
        tokio::spawn(async move { this.build(building, Some(wasm)).await });
        Ok(agent)
    }

    /// Publishes unless `owner` already has an agent with this name that was not rejected
    /// (idempotent seeding).
    pub async fn publish_if_absent(
        &self,
        owner: Uuid,
        raw: RawManifest,
        wasm: Bytes,
    ) -> Result<Option<Agent>, AgentError> {
        let name = raw.name.clone().unwrap_or_default();
        let existing = self
            .store
            .agent_by_owner_name(owner, name.trim().to_owned())
            .await?;
        if existing.is_some_and(|a| a.status != AgentStatus::Rejected) {
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
