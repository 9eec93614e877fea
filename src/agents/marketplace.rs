//! The marketplace component: publishing, building, lookup, listing and search over agents.
//!
//! Publishing answers once the module's declarations pass [`runtime::check`] and its bytes are
//! durable; the build (body validation, then compilation) runs in the background on the
//! [`Compiler`] thread, moving the version `validating → compiling → ready` (or `rejected`),
//! with each step stored and announced. At start, unfinished builds are resumed and
//! the ready agents' compiled code is loaded from the module cache ("warm-up").
//!
//! Edits, versions, deletion and reviews are in [`super::changes`]. Every stored change goes
//! through [`Marketplace::changed`], which refreshes the in-memory views: the [`Catalog`] the
//! auctions read, the [`Directory`] listings read, and the compiled input schemas.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::catalog::Catalog;
use super::directory::{Directory, Filter, Sort};
use super::events;
use super::indexing::{IndexHealth, Indexing};
use super::manifest::{Manifest, ManifestError, RawManifest};
use crate::blob::links::{LinkError, LinkSigner};
use crate::blob::{BlobError, BlobStore};
use crate::config::{LimitSettings, QuotaSettings};
use crate::error::{ApiError, Code};
use crate::realtime::{Event, Fanout, Topic};
use crate::records::{
    Agent, AgentStats, AgentStatus, AgentVersion, Bid, Build, Limits, Policy, Rating, Rejection,
};
use crate::runtime::{self, Compiler, Executor};
use crate::search::{SearchError, SearchIndex};
use crate::store::{Inserted, Refusal, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("input_schema is not a valid JSON Schema: {0}")]
    InvalidSchema(String),
    #[error("invalid WebAssembly module: {0}")]
    InvalidWasm(String),
    #[error("the module is {size} bytes; the limit is {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("you already have an agent named `{0}`")]
    NameTaken(String),
    /// A quota on what the owner's agents hold; the message names it and its limit.
    #[error("{0}")]
    QuotaReached(String),
    #[error("agent not found")]
    NotFound,
    #[error("only the agent's owner or an admin may change it")]
    Forbidden,
    #[error("the agent has no version `{0}`")]
    VersionNotFound(String),
    #[error("the agent already has a version `{0}`; versions are immutable, use a new one")]
    VersionTaken(String),
    #[error(
        "version `{0}` is current; roll back to another version (or add one) before deleting it"
    )]
    VersionIsCurrent(String),
    #[error(
        "version `{0}` is not ready (still building, or rejected); only a ready version can become current"
    )]
    VersionNotReady(String),
    #[error("only users who had a task completed by this agent may review it")]
    ReviewNotAllowed,
    #[error("owners may not review their own agents")]
    OwnAgentReview,
    #[error("input at `{path}` does not match the agent's input schema: {message}")]
    InvalidInput { path: String, message: String },
    #[error(transparent)]
    Link(#[from] LinkError),
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
            AgentError::InvalidSchema(_) => Code::InvalidInputSchema,
            AgentError::InvalidWasm(_) => Code::InvalidWasmModule,
            AgentError::TooLarge { .. } => Code::PayloadTooLarge,
            AgentError::NameTaken(_) => Code::AgentNameTaken,
            AgentError::QuotaReached(_) => Code::QuotaReached,
            AgentError::NotFound => Code::AgentNotFound,
            AgentError::Forbidden => Code::AgentForbidden,
            AgentError::VersionNotFound(_) => Code::VersionNotFound,
            AgentError::VersionTaken(_) => Code::VersionExists,
            AgentError::VersionIsCurrent(_) => Code::VersionIsCurrent,
            AgentError::VersionNotReady(_) => Code::VersionNotReady,
            AgentError::ReviewNotAllowed => Code::ReviewNotAllowed,
            AgentError::OwnAgentReview => Code::OwnAgentReview,
            AgentError::InvalidInput { path, .. } => {
                let path = path.clone();
                return ApiError::new(Code::InvalidInput, e.to_string()).with_path(path);
            }
            AgentError::Link(LinkError::BadSignature) => Code::InvalidSignature,
            AgentError::Link(LinkError::Expired) => Code::LinkExpired,
            AgentError::BuildStopped => return ApiError::internal(&e),
            AgentError::Search(e) => return ApiError::internal(e),
            AgentError::Blob(e) => return e.api_error(),
            AgentError::Store(e) => return ApiError::internal(e),
        };
        ApiError::new(code, e.to_string())
    }
}

impl AgentError {
    /// The module asked for is not in the blob store (no agent uses that hash, or it was
    /// collected meanwhile). For callers above this room, which may not name the blob store.
    pub fn is_missing_module(&self) -> bool {
        matches!(self, AgentError::Blob(BlobError::NotFound(_)))
    }

    /// The error for a refused store change concerning `version`.
    pub(super) fn refused(refusal: Refusal, version: &str) -> Self {
        let v = version.to_owned();
        match refusal {
            Refusal::AgentNotFound => AgentError::NotFound,
            Refusal::VersionNotFound => AgentError::VersionNotFound(v),
            Refusal::VersionTaken => AgentError::VersionTaken(v),
            Refusal::VersionIsCurrent => AgentError::VersionIsCurrent(v),
            Refusal::VersionNotReady => AgentError::VersionNotReady(v),
            Refusal::NameTaken => AgentError::NameTaken(v),
            Refusal::NotEligible => AgentError::ReviewNotAllowed,
        }
    }
}

/// Who is asking, as the marketplace needs to know it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: Uuid,
    /// Display name, recorded as an agent's owner or a review's author.
    pub name: String,
    /// Admins may change any agent, and are exempt from the quotas.
    pub admin: bool,
}

/// Listing parameters, already bounded by the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct AgentQuery {
    /// Full-text query over name, description, capabilities and owner.
    pub q: Option<String>,
    pub filter: Filter,
    pub sort: Sort,
    pub limit: usize,
    pub offset: usize,
}

pub struct AgentList {
    /// Shared with the in-memory views: a page is serialised without copying its agents.
    pub agents: Vec<Arc<Agent>>,
    pub total: usize,
    /// Matches per capability over every match.
    pub capabilities: std::collections::BTreeMap<String, usize>,
}

/// What the marketplace enforces on uploads.
#[derive(Debug, Clone)]
pub struct Rules {
    pub max_binary_bytes: usize,
    pub policy: Policy,
    pub limits: LimitSettings,
    pub compile_timeout: Duration,
    /// `quotas.agents` and `quotas.module_bytes` apply here.
    pub quotas: QuotaSettings,
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

/// One version's bytes to build.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub id: Uuid,
    pub version: String,
    pub hash: String,
}

/// How long a completion is remembered in memory, and how many before old ones are dropped;
/// the task log is applied to the store within milliseconds.
const COMPLETION_MEMORY: Duration = Duration::from_secs(600);
const COMPLETIONS_KEPT: usize = 10_000;

/// Most rendered listing pages kept (a page of 100 agents is about 100 KB).
const PAGES_KEPT: usize = 256;

/// Most search hits a listing considers.
const MAX_HITS: usize = 100_000;

/// Agent id → the input schema and its validator.
type CompiledSchemas = HashMap<Uuid, (Value, Arc<jsonschema::Validator>)>;

/// The marketplace component. Cheap to clone.
#[derive(Clone)]
pub struct Marketplace {
    pub(super) store: Store,
    pub(super) blobs: Arc<dyn BlobStore>,
    /// The search index, following the store.
    pub(super) indexing: Indexing,
    pub(super) fanout: Arc<dyn Fanout>,
    /// Ready agents in memory, for auctions.
    catalog: Catalog,
    /// Every agent in memory, for listings.
    directory: Directory,
    /// Compiled input schemas of the agents that have one, with the schema each was compiled
    /// from: most changes to an agent (build steps, reviews) leave it as it was.
    schemas: Arc<RwLock<CompiledSchemas>>,
    pub(super) links: Arc<LinkSigner>,
    /// Held from storing a blob until a version references it, and while deleting blobs no
    /// version references: so a collection never deletes bytes an upload is about to use.
    pub(super) blob_gate: Arc<tokio::sync::Mutex<()>>,
    pub(super) rules: Arc<Rules>,
    executor: Arc<Executor>,
    compiler: Arc<Compiler>,
    /// Ids of agents one of whose builds just ended.
    built: broadcast::Sender<Uuid>,
    /// One build at a time holds its module in memory: a queue of big uploads waits with its
    /// bytes in the store, not in memory (the build thread compiles one at a time anyway).
    build_turn: Arc<tokio::sync::Semaphore>,
    /// Measured compile speed, bytes of module per millisecond (a moving average).
    compile_speed: Arc<Mutex<Option<f64>>>,
    /// (user, agent) pairs of recently completed tasks: the store learns of a completion
    /// with the next apply of the task log, a moment after its owner does, and a review
    /// posted in between must not be refused.
    pub(super) completions: Arc<Mutex<HashMap<(Uuid, Uuid), Instant>>>,
    /// Bumped by every change a listing can show (an agent stored, deleted, or a run's
    /// outcome): a cached listing page is good while this has not moved.
    generation: Arc<std::sync::atomic::AtomicU64>,
    /// Rendered listing pages by query, each with the generation it was rendered at: a
    /// marketplace is browsed far more often than it changes, and rendering a page of agents
    /// as JSON is most of a listing's cost. A std Mutex, held for a map lookup or insert.
    pages: Arc<Mutex<HashMap<String, (u64, Bytes)>>>,
    warmup: Arc<watch::Sender<Warmup>>,
}

/// Largest module whose bytes wait in memory for their build; bigger ones wait in the store.
const HELD_MODULE_BYTES: usize = 4 * 1024 * 1024;

/// Weight of the newest compile in the compile-speed average.
const SPEED_ALPHA: f64 = 0.3;

/// A blob deletion's outcome: done, or left for the next start's sweep when the blob store's
/// dependency is down (the change that released the blob stands either way).
fn deleted_or_left(deleted: Result<(), BlobError>, hash: &str) -> Result<(), BlobError> {
    match deleted {
        Err(BlobError::Unavailable { dependency, .. }) => {
            tracing::warn!(%hash, dependency, "cannot delete a blob no version uses now; the next start retries");
            Ok(())
        }
        other => other,
    }
}

/// Compiles an input schema. Remote `$ref`s are not fetched (the server may be air-gapped).
pub(super) fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, AgentError> {
    jsonschema::validator_for(schema).map_err(|e| AgentError::InvalidSchema(e.to_string()))
}

impl Marketplace {
    /// Loads the agents once: they become the in-memory catalog and directory, and the search
    /// index is rebuilt from them if it does not hold exactly the stored agents. Blobs no
    /// version uses (a crash between storing and referencing them) are deleted. Then, in the
    /// background, loads every ready agent's compiled code and resumes the builds a stop
    /// interrupted (see [`Marketplace::warmup`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn new(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        search: Arc<SearchIndex>,
        fanout: Arc<dyn Fanout>,
        rules: Rules,
        executor: Arc<Executor>,
        compiler: Arc<Compiler>,
        links: LinkSigner,
    ) -> Result<Self, AgentError> {
        let agents = store.all_agents().await?;
        let indexing = Indexing::start(search, store.clone());
        indexing.reconcile(agents.clone()).await;
        let mut unbuilt = Vec::new();
        for agent in &agents {
            if !agent.status.is_built() {
                unbuilt.push(Target {
                    id: agent.id,
                    version: agent.version.clone(),
                    hash: agent.binary_hash.clone(),
                });
            }
            if let Some(next) = &agent.next_version
                && let Some(v) = store.version(agent.id, next.clone()).await?
                && !v.status.is_built()
            {
                unbuilt.push(Target {
                    id: agent.id,
                    version: v.version,
                    hash: v.sha256,
                });
            }
        }
        let with_schema: Vec<Agent> = agents
            .iter()
            .filter(|a| a.input_schema.is_some())
            .cloned()
            .collect();
        for orphan in store.unreferenced_blobs().await? {
            tracing::info!(hash = %orphan, "deleting a blob no version uses");
            deleted_or_left(blobs.delete(orphan.clone()).await, &orphan)?;
        }
        let directory = Directory::new(agents.iter().cloned());
        let catalog = Catalog::new(agents);
        let marketplace = Self {
            store,
            blobs,
            indexing,
            fanout,
            catalog,
            directory,
            schemas: Arc::default(),
            links: Arc::new(links),
            blob_gate: Arc::default(),
            rules: Arc::new(rules),
            executor,
            compiler,
            built: broadcast::channel(1024).0,
            build_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            compile_speed: Arc::default(),
            completions: Arc::default(),
            generation: Arc::default(),
            pages: Arc::default(),
            warmup: Arc::new(watch::channel(Warmup::default()).0),
        };
        for agent in &with_schema {
            marketplace.refresh_schema(agent);
        }
        marketplace.start_warmup(unbuilt);
        Ok(marketplace)
    }

    /// In the background: loads every ready agent's compiled code (from the module cache;
    /// compiled again only on a cache miss), then restarts the builds in `unbuilt`.
    fn start_warmup(&self, unbuilt: Vec<Target>) {
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
            for target in unbuilt {
                tracing::info!(agent_id = %target.id, version = %target.version, "resuming an interrupted build");
                this.start_build(target, None);
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
        let bytes = self
            .blobs
            .get(agent.binary_hash.clone())
            .await
            .map_err(|e| e.to_string())?;
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

    /// Builds a version in the background.
    /// Builds `target` in the background. A small module's bytes ride along (no store read);
    /// a big one is read back from the store when its turn comes.
    pub(super) fn start_build(&self, target: Target, wasm: Option<Bytes>) {
        let wasm = wasm.filter(|w| w.len() <= HELD_MODULE_BYTES);
        let this = self.clone();
        tokio::spawn(async move { this.build(target, wasm).await });
    }

    /// Validates the bodies of a version's module and compiles it, storing and announcing
    /// each step. Runs to the end (a store failure leaves the version unbuilt, and the next
    /// start resumes it).
    async fn build(&self, target: Target, wasm: Option<Bytes>) {
        let id = target.id;
        if let Err(e) = self.try_build(target, wasm).await {
            tracing::error!(agent_id = %id, error = %e, "agent build failed; it resumes at the next start");
        }
        let _ = self.built.send(id);
    }

    async fn try_build(&self, target: Target, wasm: Option<Bytes>) -> Result<(), AgentError> {
        let hash = target.hash.clone();
        let _turn = self
            .build_turn
            .acquire()
            .await
            .map_err(|_| AgentError::BuildStopped)?;
        let bytes = match wasm {
            Some(bytes) => bytes,
            None => self.blobs.get(hash.clone()).await?,
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
                    &target,
                    "invalid_wasm_module",
                    format!("invalid WebAssembly module: {e}"),
                )
                .await;
        }
        let validate_ms = started.elapsed().as_millis() as u64;

        // The same bytes compiled before (another agent, an earlier upload): no compile.
        if let Ok(Some(_)) = self.load_cached(&hash).await {
            return self.finish_build(&target, Some(validate_ms), Ok(0)).await;
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
        self.set_status(&target, move |v| {
            v.status = AgentStatus::Compiling;
            let build = v.build.get_or_insert_with(Build::default);
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
                        &target,
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
                self.finish_build(&target, Some(validate_ms), Ok(ms)).await
            }
            Err(message) => self.reject(&target, "compile_failed", message).await,
        }
    }

    fn record_compile_speed(&self, size: usize, ms: u64) {
        let speed = size as f64 / ms.max(1) as f64;
        let mut average = self.compile_speed.lock().expect("compile speed");
        *average = Some(average.map_or(speed, |a| SPEED_ALPHA * speed + (1.0 - SPEED_ALPHA) * a));
    }

    async fn reject(&self, target: &Target, code: &str, message: String) -> Result<(), AgentError> {
        tracing::info!(agent_id = %target.id, version = %target.version, code, %message, "agent version rejected");
        let rejection = Rejection {
            code: code.to_owned(),
            message,
        };
        self.finish_build(target, None, Err(rejection)).await
    }

    /// Ends a build: ready (after `compile_ms` of compiling) or rejected.
    async fn finish_build(
        &self,
        target: &Target,
        validate_ms: Option<u64>,
        outcome: Result<u64, Rejection>,
    ) -> Result<(), AgentError> {
        let agent = self
            .set_status(target, move |v| {
                let build = v.build.get_or_insert_with(Build::default);
                if let Some(ms) = validate_ms {
                    build.validate_ms = Some(ms);
                }
                build.finished_at = Some(OffsetDateTime::now_utc());
                match outcome {
                    Ok(ms) => {
                        build.compile_ms = Some(ms);
                        v.status = AgentStatus::Ready;
                    }
                    Err(rejection) => {
                        v.status = AgentStatus::Rejected;
                        v.rejection = Some(rejection);
                    }
                }
            })
            .await?;
        if let Some(agent) = agent
            && agent.status == AgentStatus::Ready
            && agent.version == target.version
        {
            tracing::info!(agent_id = %agent.id, name = %agent.name, version = %agent.version, "agent ready");
        }
        Ok(())
    }

    /// Stores a build step of a version and announces it.
    async fn set_status(
        &self,
        target: &Target,
        change: impl FnOnce(&mut AgentVersion) + Send + 'static,
    ) -> Result<Option<Agent>, AgentError> {
        let agent = self
            .store
            .record_build(
                target.id,
                target.version.clone(),
                target.hash.clone(),
                change,
            )
            .await?;
        if let Some(agent) = &agent {
            self.changed(agent);
            self.fanout
                .broadcast(events::agent_update(agent, "updated"));
        }
        Ok(agent)
    }

    /// Refreshes the in-memory views after a stored change to `agent`. The catalog keeps the
    /// live statistics it has (the store's lag behind them).
    pub(super) fn changed(&self, agent: &Agent) {
        self.catalog.upsert(agent.clone());
        let current = match self.catalog.get(agent.id) {
            Some(live) => (*live).clone(),
            None => agent.clone(),
        };
        self.directory.upsert(current);
        self.refresh_schema(agent);
        // After the views: a page rendered before this point carries the old generation.
        self.bump();
    }

    /// Compiles the agent's input schema if it is not the one compiled already.
    fn refresh_schema(&self, agent: &Agent) {
        let compiled = self
            .schemas
            .read()
            .expect("schemas lock")
            .get(&agent.id)
            .map(|(s, _)| s.clone());
        if compiled.as_ref() == agent.input_schema.as_ref() {
            return;
        }
        let mut schemas = self.schemas.write().expect("schemas lock");
        match agent.input_schema.as_ref().map(|s| (s, compile_schema(s))) {
            Some((schema, Ok(validator))) => {
                schemas.insert(agent.id, (schema.clone(), Arc::new(validator)));
            }
            Some((_, Err(e))) => {
                tracing::error!(agent_id = %agent.id, error = %e, "input schema does not compile; inputs go unchecked");
                schemas.remove(&agent.id);
            }
            None => {
                schemas.remove(&agent.id);
            }
        }
    }

    /// Drops a deleted agent from the in-memory views.
    pub(super) fn forget(&self, id: Uuid) {
        self.catalog.remove(id);
        self.directory.remove(id);
        self.schemas.write().expect("schemas lock").remove(&id);
        self.bump();
    }

    /// Waits up to `timeout` for the build of the agent's `version` (default: its current
    /// one) to end; returns the agent as it then is.
    pub async fn wait_built(
        &self,
        id: Uuid,
        version: Option<String>,
        timeout: Duration,
    ) -> Result<Agent, AgentError> {
        let mut built = self.built.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let agent = self.get(id).await?;
            let done = match &version {
                Some(v) if *v != agent.version => self
                    .store
                    .version(id, v.clone())
                    .await?
                    .is_none_or(|v| v.status.is_built()),
                _ => agent.status.is_built(),
            };
            if done {
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

    /// Folds one finished run into the live statistics.
    pub fn record_outcome(&self, id: Uuid, success: bool, duration_ms: u64) {
        self.catalog.record_outcome(id, success, duration_ms);
        self.directory.record_outcome(id, success);
        self.bump();
        let catalog = self.catalog.clone();
        let event = move || catalog.get(id).map(|agent| events::agent_stats(&agent));
        self.fanout.touch(Topic::Agent(id), Box::new(event));
    }

    /// The live statistics of a ready agent: the state of its topic.
    pub fn stats_event(&self, id: Uuid) -> Option<Event> {
        self.catalog
            .get(id)
            .map(|agent| events::agent_stats(&agent))
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes with everything a listing shows; see `generation`.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A listing page rendered for `key` at `generation`, if still current.
    pub fn cached_page(&self, key: &str, generation: u64) -> Option<Bytes> {
        let pages = self.pages.lock().expect("pages lock");
        pages
            .get(key)
            .filter(|(at, _)| *at == generation)
            .map(|(_, body)| body.clone())
    }

    /// Keeps a rendered listing page; the cache starts over when it holds [`PAGES_KEPT`].
    pub fn keep_page(&self, key: String, generation: u64, body: Bytes) {
        let mut pages = self.pages.lock().expect("pages lock");
        if pages.len() >= PAGES_KEPT {
            pages.clear();
        }
        pages.insert(key, (generation, body));
    }

    /// Notes that `user`'s task completed on `agent` (see `completions`).
    pub fn record_completion(&self, user: Uuid, agent: Uuid) {
        let now = Instant::now();
        let mut completions = self.completions.lock().expect("completions lock");
        if completions.len() >= COMPLETIONS_KEPT {
            // The store has long applied these.
            completions.retain(|_, at| now.duration_since(*at) < COMPLETION_MEMORY);
        }
        completions.insert((user, agent), now);
    }

    pub fn max_binary_bytes(&self) -> usize {
        self.rules.max_binary_bytes
    }

    /// Checks a module for `limits` on the blocking pool: declarations and policy, and that
    /// its initial memory fits the memory limit it will run under.
    pub(super) async fn check_module(
        &self,
        wasm: &Bytes,
        limits: &Limits,
    ) -> Result<(), AgentError> {
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
        let server = &self.rules.limits;
        let memory_limit = limits
            .memory_bytes
            .unwrap_or(server.memory_bytes)
            .min(server.max_memory_bytes);
        let initial = info.memory_pages * 65_536;
        if initial > memory_limit {
            return Err(AgentError::InvalidWasm(format!(
                "the module's initial memory is {initial} bytes, more than its memory limit of \
                 {memory_limit} bytes (raise limits.memory_bytes in the manifest)"
            )));
        }
        Ok(())
    }

    /// Refuses an upload that would take `caller` past their quotas: `new_agent` adds an
    /// agent, `added_bytes` of modules. Called with the blob gate held, which every upload
    /// holds until its version is stored, so two uploads cannot pass a quota together.
    pub(super) async fn check_quota(
        &self,
        caller: &Caller,
        new_agent: bool,
        added_bytes: u64,
    ) -> Result<(), AgentError> {
        let quotas = &self.rules.quotas;
        let agents = QuotaSettings::limit(quotas.agents).filter(|_| new_agent);
        let bytes = QuotaSettings::limit(quotas.module_bytes);
        if caller.admin || (agents.is_none() && bytes.is_none()) {
            return Ok(());
        }
        let held = self.store.holdings(caller.id).await?;
        if let Some(limit) = agents.filter(|limit| held.agents >= *limit) {
            return Err(AgentError::QuotaReached(format!(
                "quota agents reached: you own {} agents, the most allowed is {limit}; delete \
                 one first",
                held.agents
            )));
        }
        if let Some(limit) = bytes.filter(|limit| held.module_bytes + added_bytes > *limit) {
            return Err(AgentError::QuotaReached(format!(
                "quota module_bytes reached: your agents' versions hold {} bytes of modules and \
                 this one adds {added_bytes}, over the limit of {limit} bytes; delete versions \
                 or agents first",
                held.module_bytes
            )));
        }
        Ok(())
    }

    /// Checks and stores an agent owned by `owner`; it is `validating`, and builds in the
    /// background ([`Marketplace::wait_built`] waits for the end).
    pub async fn publish(
        &self,
        owner: &Caller,
        raw: RawManifest,
        wasm: Bytes,
    ) -> Result<Agent, AgentError> {
        let manifest = Manifest::parse(raw, &self.rules.limits)?;
        if let Some(schema) = &manifest.input_schema {
            compile_schema(schema)?;
        }
        self.check_module(&wasm, &manifest.limits).await?;
        let binary_size = wasm.len() as u64;
        let now = OffsetDateTime::now_utc();
        let gate = self.blob_gate.clone().lock_owned().await;
        self.check_quota(owner, true, binary_size).await?;
        let binary_hash = self.blobs.put(wasm.clone()).await?;
        let agent = Agent {
            // Time-ordered, so ids sort by age (the auction breaks ties on it).
            id: Uuid::now_v7(),
            owner_id: owner.id,
            owner_name: owner.name.clone(),
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
            input_schema: manifest.input_schema,
            metadata: manifest.metadata,
            next_version: None,
            rating: Rating::default(),
            created_at: now,
            updated_at: None,
            stats: AgentStats::default(),
        };
        let inserted = self
            .store
            .insert_agent_replacing_rejected(agent.clone())
            .await;
        drop(gate);
        match inserted? {
            Inserted::NameTaken => {
                // The bytes may be used by nothing now.
                self.collect(vec![agent.binary_hash.clone()]).await?;
                return Err(AgentError::NameTaken(agent.name));
            }
            Inserted::Replaced { old, released } => {
                tracing::info!(agent_id = %agent.id, replaced = %old, "a new upload replaces a rejected agent");
                self.forget(old);
                self.indexing.follow(&[old]).await;
                self.collect(released).await?;
            }
            Inserted::New => {}
        }
        self.changed(&agent);
        self.indexing.follow(&[agent.id]).await;
        tracing::info!(agent_id = %agent.id, name = %agent.name, hash = %agent.binary_hash, "agent published");
        self.fanout
            .broadcast(events::agent_update(&agent, "registered"));
        let target = Target {
            id: agent.id,
            version: agent.version.clone(),
            hash: agent.binary_hash.clone(),
        };
        self.start_build(target, Some(wasm));
        Ok(agent)
    }

    /// How far the search index is behind the store.
    pub fn index_health(&self) -> IndexHealth {
        self.indexing.health()
    }

    /// Deletes the blobs in `hashes` that no version uses (any more).
    pub(super) async fn collect(&self, hashes: Vec<String>) -> Result<(), AgentError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let _gate = self.blob_gate.lock().await;
        for hash in hashes {
            if self.store.blob_refs(hash.clone()).await? == 0 {
                tracing::info!(%hash, "deleting a blob no version uses");
                deleted_or_left(self.blobs.delete(hash.clone()).await, &hash)?;
            }
        }
        Ok(())
    }

    /// Publishes unless `owner` already has an agent with this name that was not rejected
    /// (idempotent seeding).
    pub async fn publish_if_absent(
        &self,
        owner: &Caller,
        raw: RawManifest,
        wasm: Bytes,
    ) -> Result<Option<Agent>, AgentError> {
        let name = raw.name.clone().unwrap_or_default();
        let existing = self
            .store
            .agent_by_owner_name(owner.id, name.trim().to_owned())
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
        if let Some(agent) = self.directory.get(id) {
            return Ok((*agent).clone());
        }
        self.store.agent(id).await?.ok_or(AgentError::NotFound)
    }

    /// Lists agents: by relevance when `q` is given, newest first otherwise (see
    /// [`Sort`]); filtered, with per-capability counts over all matches.
    pub async fn list(&self, query: AgentQuery) -> Result<AgentList, AgentError> {
        let hits = match query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            Some(q) => {
                let search = self.indexing.search().clone();
                let q = q.to_owned();
                let hits = tokio::task::spawn_blocking(move || search.search(&q, MAX_HITS))
                    .await
                    .map_err(StoreError::from)??;
                Some(hits)
            }
            None => None,
        };
        let listing = self.directory.list(
            hits.as_deref(),
            &query.filter,
            query.sort,
            query.offset,
            query.limit,
        );
        // A ready agent's catalog record carries the live statistics.
        let agents = listing
            .agents
            .into_iter()
            .map(|agent| self.catalog.get(agent.id).unwrap_or(agent))
            .collect();
        Ok(AgentList {
            agents,
            total: listing.total,
            capabilities: listing.capabilities,
        })
    }

    /// Checks a task input against the agent's input schema (none: any input passes).
    pub fn check_input(&self, agent_id: Uuid, input: Option<&Value>) -> Result<(), AgentError> {
        let validator = self
            .schemas
            .read()
            .expect("schemas lock")
            .get(&agent_id)
            .map(|(_, v)| v.clone());
        let Some(validator) = validator else {
            return Ok(());
        };
        let input = input.unwrap_or(&Value::Null);
        match validator.iter_errors(input).next() {
            None => Ok(()),
            Some(error) => {
                let path = error.instance_path().to_string();
                Err(AgentError::InvalidInput {
                    path: if path.is_empty() { "/".into() } else { path },
                    message: error.masked().to_string(),
                })
            }
        }
    }

    /// Keeps the bids whose agent accepts `input`; if none does, the best bid's reason.
    pub fn bids_accepting(
        &self,
        bids: Vec<Bid>,
        input: Option<&Value>,
    ) -> Result<Vec<Bid>, AgentError> {
        if self.schemas.read().expect("schemas lock").is_empty() {
            return Ok(bids);
        }
        let mut first_error = None;
        let mut kept = Vec::with_capacity(bids.len());
        for bid in bids {
            match self.check_input(bid.agent_id, input) {
                Ok(()) => kept.push(bid),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (kept.is_empty(), first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(kept),
        }
    }
}
