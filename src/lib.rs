//! ZeroState: a self-hosted AI-agent marketplace and orchestrator in one binary.
//!
//! [`Application`] wires the components together; `main` only parses the command line.

pub mod agents;
pub mod auth;
pub mod blob;
pub mod breaker;
pub mod cli;
pub mod cluster;
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
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agents::Marketplace;
use crate::auth::{Accounts, TokenKeys};
use crate::blob::s3::{S3Blobs, S3ConfigError};
use crate::blob::{BlobStore, EmbeddedBlobs};
use crate::breaker::Breakers;
use crate::config::{BlobBackend, QueueBackend, Settings};
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
/// Name of the directory inside the data dir where upload bodies wait.
pub const UPLOADS_DIR: &str = "uploads";

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
    /// `[queue]`/`[redis]` name a Redis this server cannot use; the message says what to change.
    #[error(transparent)]
    Cluster(#[from] cluster::Misconfigured),
    /// `[blobs]` names an S3 store this server cannot use; the message says what to change.
    /// (Not a `source`: its text is already in this message, and `main` prints the chain.)
    #[error("agent module storage (S3): {0}")]
    Blobs(S3ConfigError),
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
    /// Arms injected search index write failures (fault tests).
    search_faults: search::Faults,
    /// Compatibility mode: this node's place in the node registry (when it runs tasks).
    beat: Option<(cluster::Nodes, cluster::NodeInfo)>,
    /// Ends the Redis bus and the heartbeat once the server has stopped.
    cluster_stop: CancellationToken,
}

impl Application {
    /// Binds `settings.listen` and builds every component.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = bind(settings.listen).map_err(|source| StartError::Bind {
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
        let open_files = http::server::raise_open_file_limit();
        tracing::debug!(open_files, "open-file limit");
        let search_faults = search::Faults::default();
        let opened = Opened::open(&settings, search_faults.clone()).await?;
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
            spool: services.spool,
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
            limits: http::RateLimits::new(&settings.rate_limits).map_err(StartError::Component)?,
            quotas: settings.quotas,
            breakers: services.breakers,
            cluster_token: settings.cluster.service_token.clone(),
            nodes: services.shared.as_ref().map(|s| s.nodes.clone()),
        });
        let beat = services
            .shared
            .as_ref()
            .filter(|_| settings.workers > 0)
            .map(|s| (s.nodes.clone(), s.node_info("primary", settings.workers)));
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
            search_faults,
            beat,
            cluster_stop: services.cluster_stop,
        })
    }

    /// Makes the search index's next writes fail, as a full disk would: for fault tests.
    pub fn search_faults(&self) -> search::Faults {
        self.search_faults.clone()
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

    /// The circuit breakers of the outside dependencies in use (none when all is embedded).
    pub fn breakers(&self) -> Breakers {
        self.state.breakers.clone()
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
            beat,
            cluster_stop,
            ..
        } = self;
        let workers = state.orchestrator.spawn_workers(settings.workers);
        if let Some((nodes, info)) = beat {
            let stop = cluster_stop.clone();
            tokio::spawn(async move { nodes.beat(info, stop).await });
        }
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
        // No new task starts while open requests drain.
        tokio::spawn(async move {
            signal.cancelled().await;
            orchestrator.stop_accepting();
        });
        // Checked when the settings were loaded.
        let proxies = settings.rate_limits.proxies().unwrap_or_default();
        let rules =
            http::server::ConnectionRules::new(&settings.http, proxies, max_body_bytes(&settings));
        // Open requests (a slow upload, say) get the grace period, not forever.
        if !http::server::serve(listener, router, rules, shutdown.clone(), grace).await {
            tracing::warn!("requests still open after the grace period; closing them");
        }
        tracing::info!("shutting down: draining running tasks");
        state.orchestrator.shutdown(workers, grace).await;
        cluster_stop.cancel();
        let _ = retention.await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// The longest request body any route accepts: an upload's module and its form fields.
fn max_body_bytes(settings: &Settings) -> u64 {
    settings.agents.max_binary_bytes as u64 + http::router::FORM_OVERHEAD_BYTES
}

/// Components opened together on the blocking pool.
struct Opened {
    store: Store,
    search: SearchIndex,
    keys: TokenKeys,
    links: blob::links::LinkSigner,
    executor: Executor,
    compiler: Compiler,
    spool: http::spool::Spool,
}

impl Opened {
    /// Creates the data dir if need be and opens what lives in it.
    async fn open(settings: &Settings, faults: search::Faults) -> Result<Self, StartError> {
        let data_dir = settings.data_dir.clone();
        let ttl = settings.auth.token_ttl_secs;
        let engine_settings = settings.clone();
        let open = move || -> Result<Opened, StartError> {
            create_private_dir(&data_dir).map_err(|source| StartError::DataDir {
                path: data_dir.display().to_string(),
                source,
            })?;
            let uploads = data_dir.join(UPLOADS_DIR);
            create_private_dir(&uploads).map_err(|source| StartError::DataDir {
                path: uploads.display().to_string(),
                source,
            })?;
            Ok(Opened {
                spool: http::spool::Spool::open(&uploads)
                    .map_err(|e| StartError::Component(format!("upload spool: {e}")))?,
                store: Store::open(&data_dir.join(DB_FILE))?,
                search: SearchIndex::open(&data_dir.join(INDEX_DIR), faults)?,
                keys: TokenKeys::load_or_create(&data_dir, ttl)?,
                links: blob::links::LinkSigner::load_or_create(&data_dir)
                    .map_err(|e| StartError::Component(format!("download link secret: {e}")))?,
                compiler: Compiler::start()
                    .map_err(|e| StartError::Runtime(format!("build thread: {e}")))?,
                executor: open_executor(&engine_settings, engine_settings.workers)
                    .map_err(StartError::Runtime)?,
            })
        };
        tokio::task::spawn_blocking(open)
            .await
            .map_err(|e| StartError::Component(e.to_string()))?
    }
}

/// The agent runtime of a node: `runs` guests at once under `[limits]` and the validation
/// policy's table limit, with the compiled-module cache in the data dir (which must exist).
/// The primary and worker nodes open theirs alike. Blocking (file I/O).
pub(crate) fn open_executor(settings: &Settings, runs: usize) -> Result<Executor, String> {
    let data_dir = &settings.data_dir;
    let key = config::read_or_create_secret(&data_dir.join(runtime::MODULE_CACHE_KEY_FILE))
        .map_err(|e| format!("module cache key: {e}"))?;
    let engine = ExecutorConfig {
        runs,
        wasm_stack_bytes: settings.limits.wasm_stack_bytes as usize,
        max_memory_bytes: settings.limits.max_memory_bytes as usize,
        max_table_elements: settings.agents.validation.max_table_elements as usize,
        fuel: settings.limits.max_fuel > 0,
    };
    Executor::with_config(engine)
        .map_err(|e| e.to_string())?
        .with_module_cache(&data_dir.join(MODULES_DIR), &key)
        .map_err(|e| format!("module cache: {e}"))
}

/// The services the HTTP layer serves (accounts, marketplace, orchestrator, live updates),
/// wired to their seams' embedded implementations.
struct Services {
    accounts: Accounts,
    marketplace: Marketplace,
    orchestrator: Orchestrator,
    hub: Hub,
    fanout: Arc<dyn Fanout>,
    spool: http::spool::Spool,
    breakers: Breakers,
    /// Compatibility mode's Redis parts, when `[queue]` names Redis.
    shared: Option<cluster::Shared>,
    /// Ends the Redis bus and this node's heartbeat at shutdown.
    cluster_stop: CancellationToken,
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
        let breakers = Breakers::default();
        let cluster_stop = CancellationToken::new();
        let shared = match settings.queue.backend {
            QueueBackend::Embedded => None,
            QueueBackend::Redis => {
                let breaker = breakers.add("redis", settings.breakers.redis);
                let hub = Some(hub.clone());
                Some(cluster::Shared::connect(settings, breaker, hub, cluster_stop.clone()).await?)
            }
        };
        // The hub is the fan-out in both modes: in compatibility mode, the bus brings the
        // worker nodes' task events to it.
        let fanout: Arc<dyn Fanout> = Arc::new(hub.clone());
        let queue = task_queue(settings, shared.as_ref());
        let keys = Arc::new(opened.keys);
        let limits = &settings.rate_limits;
        let accounts = Accounts::open(opened.store.clone(), keys, fanout.clone())
            .await
            .map_err(|e| failed("accounts", e))?
            .with_lockout(limits.enabled.then_some(limits.lockout))
            .with_api_key_quota(settings.quotas.api_keys);
        let executor = Arc::new(opened.executor);
        let blobs = blob_store(settings, &opened.store, &breakers).await?;
        let rules = agents::Rules {
            max_binary_bytes: settings.agents.max_binary_bytes,
            policy: settings.agents.validation.clone(),
            limits: settings.limits,
            compile_timeout: Duration::from_secs(settings.agents.compile_timeout_secs),
            quotas: settings.quotas,
        };
        let marketplace = Marketplace::new(
            opened.store.clone(),
            blobs,
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
            queue,
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
            spool: opened.spool,
            breakers,
            shared,
            cluster_stop,
        })
    }
}

/// The queue `[queue]` names: embedded, or Redis's.
fn task_queue(settings: &Settings, shared: Option<&cluster::Shared>) -> Arc<dyn queue::TaskQueue> {
    match shared {
        None => Arc::new(
            PriorityQueue::new(settings.tasks.queue_capacity)
                .with_run_cap(settings.quotas.concurrent_runs),
        ),
        Some(shared) => Arc::new(cluster::SharedQueue(shared.queue.clone())),
    }
}

/// The blob store `[blobs]` names: embedded (no network), or S3 behind its breaker, checked
/// before anything is served.
async fn blob_store(
    settings: &Settings,
    store: &Store,
    breakers: &Breakers,
) -> Result<Arc<dyn BlobStore>, StartError> {
    Ok(match settings.blobs.backend {
        BlobBackend::Embedded => Arc::new(EmbeddedBlobs::new(store.clone())),
        BlobBackend::S3 => {
            let breaker = breakers.add("s3", settings.breakers.s3);
            Arc::new(
                S3Blobs::connect(&settings.blobs, breaker, store.clone())
                    .await
                    .map_err(StartError::Blobs)?,
            )
        }
    })
}

/// Connections the kernel completes before the server accepts them. The standard 128
/// overflows when thousands of clients connect at once (their handshakes are then dropped);
/// the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with address reuse (a restart does not wait for old connections' TIME_WAIT)
/// and [`LISTEN_BACKLOG`].
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A start-up step that failed, named.
fn failed(step: &str, error: impl std::fmt::Display) -> StartError {
    StartError::Component(format!("{step}: {error}"))
}

/// Makes the data dir private to the service user, whatever existed before (it holds password
/// hashes, session and link secrets, and compiled code the server maps as executable): the
/// directory 0700, and what the server keeps in it ([`OWNED_NAMES`]) 0700 for directories and
/// 0600 for files, all the way down; created if need be. It also sets
/// the process umask to 077, so what the server and its libraries create later (redb, the WAL,
/// tantivy's segment files) is private from the start; nothing this process writes is meant
/// for other users. Symbolic links inside are left alone (never followed). Blocking.
pub(crate) fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    // SAFETY: umask takes and returns a plain integer and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)?;
    #[cfg(unix)]
    make_owned_private(path)?;
    Ok(())
}

/// What the server keeps in its data dir. Only these are made private at start: a data dir
/// pointed at a shared place (`/srv`, a home directory) keeps everything else as it was.
const OWNED_NAMES: &[&str] = &[
    DB_FILE,
    INDEX_DIR,
    WAL_DIR,
    MODULES_DIR,
    UPLOADS_DIR,
    auth::TOKEN_SECRET_FILE,
    blob::links::SECRET_FILE,
    runtime::MODULE_CACHE_KEY_FILE,
];

/// Sets `dir` to 0700, and what of [`OWNED_NAMES`] it holds private, all the way down.
#[cfg(unix)]
fn make_owned_private(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for name in OWNED_NAMES {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => make_private(&path, meta)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets `path` (whose metadata, not following a link, is `meta`) to 0700 if a directory, its
/// contents too, or 0600 if a file; other kinds (links, sockets) are left as they are.
#[cfg(unix)]
fn make_private(path: &std::path::Path, meta: std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match meta.file_type() {
        t if t.is_dir() => 0o700,
        t if t.is_file() => 0o600,
        _ => return Ok(()),
    };
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if meta.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(named)?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(named)? {
            let entry = entry.map_err(named)?;
            make_private(&entry.path(), entry.metadata().map_err(named)?)?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn an_existing_data_dir_with_loose_modes_is_made_private() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let search = data.join(INDEX_DIR);
        std::fs::create_dir_all(&search).unwrap();
        let loose = |p: &std::path::Path, m| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        std::fs::write(data.join(DB_FILE), b"db").unwrap();
        std::fs::write(search.join("meta.json"), b"{}").unwrap();
        loose(&data.join(DB_FILE), 0o644);
        loose(&search.join("meta.json"), 0o664);
        loose(&search, 0o2775);
        loose(&data, 0o755);
        // A link to something outside is not followed: its target keeps its mode.
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        loose(&outside, 0o644);
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        create_private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&search), 0o700);
        assert_eq!(mode(&data.join(DB_FILE)), 0o600);
        assert_eq!(mode(&search.join("meta.json")), 0o600);
        assert_eq!(mode(&outside), 0o644);
        // What is created from now on is private too (the umask).
        std::fs::write(data.join("later"), b"x").unwrap();
        std::fs::create_dir(data.join("later-dir")).unwrap();
        assert_eq!(mode(&data.join("later")), 0o600);
        assert_eq!(mode(&data.join("later-dir")), 0o700);
        // A fresh one is created private, parents included.
        let fresh = root.path().join("a/b");
        create_private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
    }
}
