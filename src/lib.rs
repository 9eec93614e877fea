//! ZeroState: a self-hosted AI-agent marketplace and orchestrator in one binary.
//!
//! [`Application`] wires the components together; `main` only parses the command line.

pub mod agents;
pub mod auth;
pub mod blob;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod journal;
pub mod orchestrator;
pub mod queue;
pub mod ranking;
pub mod realtime;
pub mod records;
pub mod runtime;
pub mod search;
pub mod store;
pub mod telemetry;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agents::Marketplace;
use crate::auth::{Accounts, TokenKeys};
use crate::blob::EmbeddedBlobs;
use crate::config::Settings;
use crate::http::AppState;
use crate::journal::Ledger;
use crate::orchestrator::Orchestrator;
use crate::queue::PriorityQueue;
use crate::realtime::{Fanout, Hub};
use crate::runtime::{Compiler, Executor, ExecutorConfig};
use crate::search::SearchIndex;
use crate::store::Store;

/// Name of the database file inside the data dir.
pub const DB_FILE: &str = "zerostate.redb";
/// Name of the search index directory inside the data dir.
pub const INDEX_DIR: &str = "search";
/// Name of the task write-ahead log directory inside the data dir.
pub const WAL_DIR: &str = "wal";
/// Name of the compiled-module cache directory inside the data dir.
pub const MODULES_DIR: &str = "modules";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot open the search index: {0}")]
    Search(#[from] search::SearchError),
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    #[error("cannot start the WebAssembly runtime: {0}")]
    Runtime(String),
    #[error("start-up step failed: {0}")]
    Component(String),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// A built, not yet running server.
pub struct Application {
    listener: TcpListener,
    settings: Settings,
    state: AppState,
    router: axum::Router,
    shutdown: CancellationToken,
}

impl Application {
    /// Binds `settings.listen` and builds every component.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        Self::build_with_listener(settings, listener).await
    }

    /// Builds on an already bound listener (tests bind port 0).
    pub async fn build_with_listener(
        settings: Settings,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        let opened = Opened::open(&settings).await?;
        let services = Services::start(&settings, opened).await?;
        let shutdown = CancellationToken::new();
        let (routes, openapi) = http::router::routes(settings.agents.max_binary_bytes);
        let openapi = openapi
            .to_pretty_json()
            .map_err(|e| StartError::Component(e.to_string()))?;
        let state = AppState::new(http::Components {
            accounts: services.accounts,
            marketplace: services.marketplace,
            orchestrator: services.orchestrator,
            hub: services.hub,
            fanout: services.fanout,
            metrics: telemetry::metrics_handle(),
            started_at: Instant::now(),
            shutdown: shutdown.clone(),
            openapi: Arc::new(openapi),
            service_token: settings.realtime.service_token.clone(),
            ping_every: Duration::from_secs(settings.realtime.ping_interval_secs),
            quotas: settings.quotas,
        });
        if settings.demo {
            demo::publish(&state.accounts, &state.marketplace)
                .await
                .map_err(|e| StartError::Component(format!("demo agents: {e}")))?;
        }
        let router = http::router(routes, state.clone());
        Ok(Self {
            listener,
            settings,
            state,
            router,
            shutdown,
        })
    }

    /// The bound address (the real port when built with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The start-up warm-up's progress: it ends when every ready agent's module is loaded.
    pub fn warmup(&self) -> tokio::sync::watch::Receiver<agents::Warmup> {
        self.state.marketplace.warmup()
    }

    /// Cancel to begin a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting connections, lets
    /// running tasks finish within the grace period (re-queueing the rest) and returns.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        let Self {
            listener,
            settings,
            state,
            router,
            shutdown,
        } = self;
        let workers = state.orchestrator.spawn_workers(settings.workers);
        let retention = {
            let (orchestrator, stop) = (state.orchestrator.clone(), shutdown.clone());
            tokio::spawn(async move { orchestrator.run_retention(stop).await })
        };
        tracing::info!(
            addr = %listener.local_addr().map_err(StartError::Serve)?,
            workers = settings.workers,
            data_dir = %settings.data_dir.display(),
            "zerostate listening"
        );
        let grace = Duration::from_secs(settings.tasks.shutdown_grace_secs);
        let orchestrator = state.orchestrator.clone();
        let signal = shutdown.clone();
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            signal.cancelled().await;
            // No new task starts while open requests drain.
            orchestrator.stop_accepting();
        })
        .into_future();
        // Open requests (a slow upload, say) get the grace period, not forever.
        let drain_limit = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let served = tokio::select! {
            served = serve => served,
            () = drain_limit => {
                tracing::warn!("requests still open after the grace period; closing them");
                Ok(())
            }
        };
        tracing::info!("shutting down: draining running tasks");
        state.orchestrator.shutdown(workers, grace).await;
        let _ = retention.await;
        tracing::info!("shutdown complete");
        served.map_err(StartError::Serve)
    }
}

/// Components opened together on the blocking pool.
struct Opened {
    store: Store,
    search: SearchIndex,
    keys: TokenKeys,
    links: blob::links::LinkSigner,
    executor: Executor,
    compiler: Compiler,
}

impl Opened {
    /// Creates the data dir if need be and opens what lives in it.
    async fn open(settings: &Settings) -> Result<Self, StartError> {
        let data_dir = settings.data_dir.clone();
        let ttl = settings.auth.token_ttl_secs;
        let executor_config = ExecutorConfig {
            runs: settings.workers,
            wasm_stack_bytes: settings.limits.wasm_stack_bytes as usize,
            max_memory_bytes: settings.limits.max_memory_bytes as usize,
            max_table_elements: settings.agents.validation.max_table_elements as usize,
            fuel: settings.limits.max_fuel > 0,
        };
        let open = move || -> Result<Opened, StartError> {
            create_private_dir(&data_dir).map_err(|source| StartError::DataDir {
                path: data_dir.display().to_string(),
                source,
            })?;
            Ok(Opened {
                store: Store::open(&data_dir.join(DB_FILE))?,
                search: SearchIndex::open(&data_dir.join(INDEX_DIR))?,
                keys: TokenKeys::load_or_create(&data_dir, ttl)?,
                links: blob::links::LinkSigner::load_or_create(&data_dir)
                    .map_err(|e| StartError::Component(format!("download link secret: {e}")))?,
                compiler: Compiler::start()
                    .map_err(|e| StartError::Runtime(format!("build thread: {e}")))?,
                executor: Executor::with_config(executor_config)
                    .map_err(|e| StartError::Runtime(e.to_string()))?
                    .with_module_cache(&data_dir.join(MODULES_DIR))
                    .map_err(|e| StartError::Runtime(format!("module cache: {e}")))?,
            })
        };
        tokio::task::spawn_blocking(open)
            .await
            .map_err(|e| StartError::Component(e.to_string()))?
    }
}

/// The services the HTTP layer serves (accounts, marketplace, orchestrator, live updates),
/// wired to their seams' embedded implementations.
struct Services {
    accounts: Accounts,
    marketplace: Marketplace,
    orchestrator: Orchestrator,
    hub: Hub,
    fanout: Arc<dyn Fanout>,
}

impl Services {
    /// Builds the components over what was opened, then queues the unfinished tasks and
    /// applies retention once.
    async fn start(settings: &Settings, opened: Opened) -> Result<Self, StartError> {
        // The WAL replay first: it folds the outcomes of runs the store had not seen into the
        // agents' statistics, which the catalog then loads.
        let (ledger, unfinished) =
            Ledger::open(opened.store.clone(), &settings.data_dir.join(WAL_DIR))
                .await
                .map_err(|e| failed("task WAL", e))?;
        let hub = Hub::default();
        let fanout: Arc<dyn Fanout> = Arc::new(hub.clone());
        let keys = Arc::new(opened.keys);
        let accounts = Accounts::open(opened.store.clone(), keys, fanout.clone())
            .await
            .map_err(|e| failed("accounts", e))?
            .with_api_key_quota(settings.quotas.api_keys);
        let executor = Arc::new(opened.executor);
        let rules = agents::Rules {
            max_binary_bytes: settings.agents.max_binary_bytes,
            policy: settings.agents.validation.clone(),
            limits: settings.limits,
            compile_timeout: Duration::from_secs(settings.agents.compile_timeout_secs),
            quotas: settings.quotas,
        };
        let marketplace = Marketplace::new(
            opened.store.clone(),
            Arc::new(EmbeddedBlobs::new(opened.store.clone())),
            Arc::new(opened.search),
            fanout.clone(),
            rules,
            executor.clone(),
            Arc::new(opened.compiler),
            opened.links,
        )
        .await
        .map_err(|e| failed("agent catalog and search index", e))?;
        let orchestrator = Orchestrator::new(
            Arc::new(ledger),
            Arc::new(
                PriorityQueue::new(settings.tasks.queue_capacity)
                    .with_run_cap(settings.quotas.concurrent_runs),
            ),
            marketplace.clone(),
            executor,
            fanout.clone(),
            settings,
        );
        orchestrator
            .recover(unfinished)
            .await
            .map_err(|e| failed("task recovery", e))?;
        let pruned = orchestrator
            .prune()
            .await
            .map_err(|e| failed("task retention", e))?;
        if pruned > 0 {
            tracing::info!(deleted = pruned, "retention deleted finished tasks");
        }
        Ok(Self {
            accounts,
            marketplace,
            orchestrator,
            hub,
            fanout,
        })
    }
}

/// A start-up step that failed, named.
fn failed(step: &str, error: impl std::fmt::Display) -> StartError {
    StartError::Component(format!("{step}: {error}"))
}

/// Creates the data dir readable by the service user only (it holds password hashes and the
/// signing secret). An existing directory keeps its permissions.
pub(crate) fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}
