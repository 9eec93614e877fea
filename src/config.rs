//! Settings, layered with figment: built-in defaults < TOML file < `ZEROSTATE_*` environment
//! (`__` separates nested keys, e.g. `ZEROSTATE_TASKS__DEFAULT_TIMEOUT_SECS=10`) < CLI flags.
//!
//! Every struct denies unknown fields, so a typo in the file or the environment stops start-up
//! with an error naming the key instead of being silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::records::{IpNet, Policy};

const MIB: u64 = 1024 * 1024;

/// The configuration file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/zerostate.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// The URL clients reach this server at (`https://zerostate.example.com`, perhaps with a
    /// path prefix), for the absolute links it hands out (signed downloads). Empty: links are
    /// relative to the server's root. Never taken from a request's `Host` or
    /// `X-Forwarded-*` headers, which any client can set.
    pub public_url: String,
    /// Directory holding the redb file, the search index and the secrets; made private
    /// (0700, files 0600) at every start.
    pub data_dir: PathBuf,
    /// Size of the worker pool that executes agents. 0 accepts tasks but runs none.
    pub workers: usize,
    /// Publish the bundled demo agents under a demo account at start-up.
    pub demo: bool,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub agents: AgentSettings,
    pub tasks: TaskSettings,
    pub limits: LimitSettings,
    pub auction: AuctionSettings,
    pub realtime: RealtimeSettings,
    pub http: HttpSettings,
    pub rate_limits: RateLimitSettings,
    pub quotas: QuotaSettings,
    pub queue: QueueSettings,
    pub redis: RedisSettings,
    pub cluster: ClusterSettings,
    pub blobs: BlobSettings,
    pub breakers: BreakerTable,
}

/// Where queued tasks wait (see docs/compat-mode.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// In memory, over the task journal: one node.
    Embedded,
    /// Redis streams (`[redis]`), shared by this node and the worker nodes.
    Redis,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub backend: QueueBackend,
    /// A task a node took is taken again by another once the node has not renewed its lease
    /// for this long (it died, or lost the network). Running nodes renew it every third of it.
    pub lease_secs: u64,
    /// Refuse to start when Redis does not persist what it acknowledges (`appendonly no`);
    /// false only warns (an acknowledged task may then be lost when Redis restarts).
    pub require_persistence: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. A secret: it may hold
    /// a password.
    pub url: Secret,
    /// Put before every key, so two installs can share one Redis.
    pub key_prefix: String,
}

/// How the nodes of a compatibility-mode install find and trust each other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// The `X-Service-Token` worker nodes present to the primary's internal routes (at least
    /// 16 characters); empty turns those routes off.
    pub service_token: Secret,
    /// For `zerostate worker`: the primary's base URL (`http://10.0.0.5:8080`).
    pub primary_url: String,
    /// This node's name in the list of workers; empty: the host name.
    pub node_name: String,
    /// Worker nodes say they are alive this often; one silent for three beats is dropped.
    pub heartbeat_secs: u64,
}

/// Where agent modules are kept: in the redb file (embedded) or in an S3 bucket
/// (compatibility mode). With `embedded` no network connection is ever opened and the other
/// fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSettings {
    pub backend: BlobBackend,
    /// The S3 endpoint, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Keys start with `<prefix>/blobs/` (no prefix: `blobs/`), so installs can share a bucket.
    pub prefix: String,
    /// `true`: `endpoint/bucket/key` (MinIO, moto, most self-hosted servers); `false`:
    /// `bucket.endpoint/key` (virtual-hosted, AWS's preference).
    pub path_style: bool,
    /// Empty: `AWS_ACCESS_KEY_ID` from the environment.
    pub access_key_id: String,
    /// Empty: `AWS_SECRET_ACCESS_KEY` from the environment. Never logged.
    pub secret_access_key: Secret,
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            backend: BlobBackend::Embedded,
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            prefix: String::new(),
            path_style: true,
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    Embedded,
    S3,
}

/// One circuit breaker per outside dependency (see `src/breaker`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerTable {
    pub redis: BreakerSettings,
    pub s3: BreakerSettings,
}

/// When a breaker opens, how long it stays open, and how long one call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive failed calls that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before letting one probe through.
    pub cooldown_ms: u64,
    /// A call still running after this fails (and counts as a failure).
    pub call_timeout_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 2000,
            call_timeout_ms: 3000,
        }
    }
}

/// What one connection may hold of the server, whoever is at the other end.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// A request's headers must arrive within this; an idle keep-alive connection is closed
    /// after it (slowloris and silent sockets).
    pub header_timeout_secs: u64,
    /// A request body gets this long, plus a second per `min_body_rate` bytes received; a body
    /// slower than that fails with 408 and its connection is closed.
    pub body_grace_secs: u64,
    /// Slowest accepted body, bytes per second, once its grace is spent.
    pub min_body_rate: u64,
    /// A response the client does not read for this long is abandoned with its connection.
    pub write_timeout_secs: u64,
    /// Most open connections; the process keeps descriptors for its storage besides (the cap is
    /// lowered to fit the open-file limit). Beyond it a connection is answered 503
    /// `too_many_connections` and closed.
    pub max_connections: usize,
    /// Most open connections from one client (an IPv6 client by its /64; 0: no cap). The
    /// `rate_limits.trusted_proxies` are exempt: each is many clients.
    pub max_connections_per_ip: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            body_grace_secs: 10,
            min_body_rate: 16 * 1024,
            write_timeout_secs: 30,
            max_connections: 10_000,
            max_connections_per_ip: 256,
        }
    }
}

/// How fast one client may knock: per address on sign-in and sign-up, per user on the
/// rest of the API and on submit, and per email on failed sign-ins.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// `false` turns every limit below off (and the sign-in lockout).
    pub enabled: bool,
    /// Proxies whose `X-Forwarded-For` names the client: addresses or networks
    /// (`10.0.0.0/8`). Empty: the TCP peer is the client, and the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Sign-ins per client address (an IPv6 client by its /64).
    pub login: RateLimit,
    /// Sign-ups per client address.
    pub signup: RateLimit,
    /// Requests per user (their sessions and API keys share one budget).
    pub api: RateLimit,
    /// Task submissions per user, on top of `api`.
    pub submit: RateLimit,
    pub lockout: LockoutSettings,
}

/// `requests` per `period_secs` on average, at most `burst` at once (a token bucket that holds
/// `burst` and refills one every `period_secs / requests`). `requests = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub period_secs: u64,
    pub burst: u32,
}

impl RateLimit {
    pub fn enabled(&self) -> bool {
        self.requests > 0
    }
}

/// Failed sign-ins per email, counted whether or not an account has that email: after
/// `failures` of them the email is locked for `base_secs`, doubling with each further failure
/// up to `max_secs`. A success clears the count; so does `max_secs` without a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutSettings {
    /// 0 turns the lockout off.
    pub failures: u32,
    pub base_secs: u64,
    pub max_secs: u64,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let limit = |requests, period_secs, burst| RateLimit {
            requests,
            period_secs,
            burst,
        };
        Self {
            enabled: true,
            trusted_proxies: Vec::new(),
            login: limit(10, 60, 5),
            signup: limit(10, 3600, 5),
            api: limit(6000, 60, 600),
            submit: limit(600, 60, 100),
            lockout: LockoutSettings {
                failures: 5,
                base_secs: 60,
                max_secs: 3600,
            },
        }
    }
}

impl RateLimitSettings {
    /// Every limit and the lockout off (for load generators and tests that need none).
    pub fn off() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The parsed `trusted_proxies`.
    pub fn proxies(&self) -> Result<Vec<IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|p| IpNet::parse(p).map_err(|e| format!("rate_limits.trusted_proxies: {e}")))
            .collect()
    }
}

/// What one user may hold and use. Signed-in admins are exempt from every quota but
/// `concurrent_runs` (it shares the worker pool, which admins share too). 0 means unlimited,
/// except for `critical_tasks_per_day`, whose 0 means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    /// Agents a user owns.
    pub agents: u64,
    /// Sum of the module sizes of every version of every agent a user owns.
    pub module_bytes: u64,
    /// A user's tasks waiting in the queue.
    pub queued_tasks: u64,
    /// A user's tasks running at once; the next one waits in the queue (it is not refused)
    /// while other users' tasks run.
    pub concurrent_runs: u64,
    /// Bytes of results (stdout kept as the result, and stderr) of a user's tasks that
    /// finished in one UTC day.
    pub result_bytes_per_day: u64,
    /// A user's live-update WebSocket connections.
    pub websocket_connections: u64,
    /// API keys a user holds.
    pub api_keys: u64,
    /// `critical` tasks a user (not an admin) may submit per UTC day.
    pub critical_tasks_per_day: u64,
}

impl QuotaSettings {
    /// `value` as a limit: `None` for 0 (unlimited).
    pub fn limit(value: u64) -> Option<u64> {
        (value > 0).then_some(value)
    }
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            agents: 100,
            module_bytes: 2 * 1024 * MIB,
            queued_tasks: 10_000,
            concurrent_runs: 0,
            result_bytes_per_day: 1024 * MIB,
            websocket_connections: 32,
            api_keys: 100,
            critical_tasks_per_day: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeSettings {
    /// Token that lets a service (not a signed-in admin) use the WebSocket admin routes,
    /// presented as `X-Service-Token`. Empty: no service token is accepted.
    pub service_token: Secret,
    /// The server pings every socket this often, and drops one that left two pings
    /// unanswered.
    pub ping_interval_secs: u64,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        Self {
            service_token: Secret::default(),
            ping_interval_secs: 30,
        }
    }
}

/// A secret setting: read from the layers like any other, never printed by `Debug`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "(unset)"
        } else {
            "(secret)"
        })
    }
}

/// A secret of this install kept in a file of the data dir (session signing, download
/// links, the compiled-code cache's key): read, or drawn at random (64 bytes) on first start
/// and written atomically (see [`create_file_atomically`]), so a crash leaves the whole secret
/// or none, never a short one that would stop every later start. Blocking (file I/O).
pub fn read_or_create_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(secret) = read_secret(path)? {
        return Ok(secret);
    }
    let mut secret = vec![0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    if create_file_atomically(path, &secret)? {
        return Ok(secret);
    }
    // Another process (`zerostate user create` beside the server) created it first: use that.
    read_secret(path)?.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
}

/// The secret in `path`; `None` if there is no such file.
fn read_secret(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(secret) if secret.len() >= 32 => Ok(Some(secret)),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "secret is shorter than 32 bytes; delete it to generate a new one",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates `path` holding `bytes`, mode 0600 from its first byte, unless it exists (then
/// `false`, and the file is untouched). Atomic: the bytes go to a fresh temporary file beside
/// it, which is synced, then linked under the final name (a link, unlike a rename, never
/// replaces a file another process created meanwhile) and the directory synced; a reader or a
/// crash sees the whole file or none. On a filesystem without hard links, a rename does it.
pub fn create_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut file| {
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()
    });
    let placed = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) if !path.exists() => std::fs::rename(&tmp, path).map(|()| true),
        Err(e) => Err(e),
    });
    let _ = std::fs::remove_file(&tmp);
    let placed = placed?;
    if placed {
        sync_dir(dir)?;
    }
    Ok(placed)
}

/// Makes a directory's entries (a file created or renamed in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// An absolute `http(s)://host[:port][/path]` URL: the base of links the server hands out.
fn is_base_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    !host.is_empty()
        && !host.contains('@')
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '\\'))
}

/// Weights of the auction's criteria; they must sum to 1.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionSettings {
    pub price_weight: f64,
    pub quality_weight: f64,
    pub speed_weight: f64,
    pub reputation_weight: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `pretty` for people, `json` for log shippers.
    pub format: LogFormat,
    /// tracing-subscriber filter used when `RUST_LOG` is unset.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Lifetime of a session token.
    pub token_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Largest accepted `.wasm` upload.
    pub max_binary_bytes: usize,
    /// A module still compiling after this long is rejected (`compile_timeout`).
    pub compile_timeout_secs: u64,
    /// What an uploaded module may contain.
    pub validation: Policy,
}

/// Limits of one agent run. A manifest may ask for any value up to the `max_*` (more is
/// refused at upload); what it leaves out gets the default. The defaults of stdin, stdout and
/// stderr are their maxima.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Linear memory of an instance.
    pub memory_bytes: u64,
    pub max_memory_bytes: u64,
    /// Wall time of a run (the task's own timeout and deadline can only shorten it).
    pub timeout_secs: u64,
    pub max_timeout_secs: u64,
    /// Largest input (stdin) an agent accepts.
    pub max_stdin_bytes: u64,
    /// stdout beyond this fails the run with `output_limit`; the first bytes are kept.
    pub max_stdout_bytes: u64,
    /// stderr beyond this is dropped (its last bytes are kept).
    pub max_stderr_bytes: u64,
    /// wasm call stack of every run. wasmtime fixes it per engine, so it is server-wide.
    pub wasm_stack_bytes: u64,
    /// Fuel metering: 0 leaves it off (no cost). Otherwise a run gets its manifest's `fuel`,
    /// at most this, and this when the manifest names none; running out fails it with
    /// `fuel_exhausted`.
    pub max_fuel: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSettings {
    /// Timeout applied when a submit names none.
    pub default_timeout_secs: u64,
    /// Largest timeout a submit may ask for.
    pub max_timeout_secs: u64,
    /// Most tasks waiting in the queue; beyond it submit answers 503 `queue_full`.
    pub queue_capacity: usize,
    /// How long shutdown waits for running tasks before re-queueing them.
    pub shutdown_grace_secs: u64,
    /// Agents tried per task: after a failed run the auction is re-run without the agents
    /// already tried, up to this many runs in all.
    pub max_attempts: u32,
    /// Finished tasks kept; the oldest beyond this are deleted in the background.
    pub retention_max_finished: u64,
    /// Finished tasks older than this many days are deleted in the background; 0 keeps them.
    pub retention_days: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Embedded,
            lease_secs: 30,
            require_persistence: true,
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            key_prefix: "zerostate".into(),
        }
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            service_token: Secret::default(),
            primary_url: String::new(),
            node_name: String::new(),
            heartbeat_secs: 2,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            data_dir: PathBuf::from("./zerostate-data"),
            workers: 4,
            demo: false,
            log: LogSettings {
                format: LogFormat::Pretty,
                filter: "info".into(),
            },
            auth: AuthSettings {
                token_ttl_secs: 86_400,
            },
            agents: AgentSettings {
                max_binary_bytes: 128 * 1024 * 1024,
                compile_timeout_secs: 300,
                validation: Policy::default(),
            },
            tasks: TaskSettings {
                default_timeout_secs: 30,
                max_timeout_secs: 300,
                queue_capacity: 100_000,
                shutdown_grace_secs: 10,
                max_attempts: 3,
                retention_max_finished: 1_000_000,
                retention_days: 30,
            },
            limits: LimitSettings {
                memory_bytes: 256 * MIB,
                max_memory_bytes: 1024 * MIB,
                timeout_secs: 30,
                max_timeout_secs: 300,
                max_stdin_bytes: 4 * MIB,
                max_stdout_bytes: MIB,
                max_stderr_bytes: 64 * 1024,
                wasm_stack_bytes: 512 * 1024,
                max_fuel: 0,
            },
            auction: AuctionSettings {
                price_weight: 0.3,
                quality_weight: 0.3,
                speed_weight: 0.2,
                reputation_weight: 0.2,
            },
            realtime: RealtimeSettings::default(),
            http: HttpSettings::default(),
            rate_limits: RateLimitSettings::default(),
            quotas: QuotaSettings::default(),
            queue: QueueSettings::default(),
            redis: RedisSettings::default(),
            cluster: ClusterSettings::default(),
            blobs: BlobSettings::default(),
            breakers: BreakerTable::default(),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers in force.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demo: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Rule(String),
}

impl Settings {
    /// Loads the layers in order. `file` is `--config`; without it the default file is read if
    /// present.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        Self::figment(file, overrides)?
            .extract::<Settings>()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))?
            .checked()
    }

    fn figment(file: Option<&Path>, overrides: Overrides) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        Ok(figment
            .merge(Env::prefixed("ZEROSTATE_").split("__"))
            .merge(Serialized::defaults(overrides)))
    }

    /// Cross-field rules serde cannot express.
    fn checked(self) -> Result<Self, ConfigError> {
        let t = &self.tasks;
        let rule = |ok: bool, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Rule(msg.into()))
            }
        };
        rule(self.workers <= 1024, "workers must be at most 1024")?;
        rule(
            self.public_url.is_empty() || is_base_url(&self.public_url),
            "public_url must be empty or an http:// or https:// URL with a host and no query, \
             fragment or spaces",
        )?;
        rule(
            (1..=t.max_timeout_secs).contains(&t.default_timeout_secs),
            "tasks.default_timeout_secs must be between 1 and tasks.max_timeout_secs",
        )?;
        let l = &self.limits;
        rule(
            (64 * 1024..=l.max_memory_bytes).contains(&l.memory_bytes)
                && l.max_memory_bytes <= 4 * 1024 * MIB,
            "limits.memory_bytes must be between 64 KiB and limits.max_memory_bytes (at most 4 GiB)",
        )?;
        rule(
            (1..=l.max_timeout_secs).contains(&l.timeout_secs),
            "limits.timeout_secs must be between 1 and limits.max_timeout_secs",
        )?;
        rule(
            (64 * 1024..=64 * MIB).contains(&l.wasm_stack_bytes),
            "limits.wasm_stack_bytes must be between 64 KiB and 64 MiB",
        )?;
        rule(
            l.max_stdin_bytes <= 4 * MIB,
            "limits.max_stdin_bytes must be at most 4 MiB (the largest task input)",
        )?;
        let v = &self.agents.validation;
        rule(
            v.max_memory_pages.saturating_mul(65_536) <= l.max_memory_bytes,
            "agents.validation.max_memory_pages must fit in limits.max_memory_bytes (64 KiB pages)",
        )?;
        if let Some(name) = v.unknown_import() {
            return Err(ConfigError::Rule(format!(
                "agents.validation.allowed_imports: `{name}` is not a WASI preview1 function"
            )));
        }
        rule(
            v.max_table_elements <= 10_000_000,
            "agents.validation.max_table_elements must be at most 10000000",
        )?;
        rule(
            self.agents.compile_timeout_secs > 0,
            "agents.compile_timeout_secs must be positive",
        )?;
        rule(
            t.queue_capacity > 0,
            "tasks.queue_capacity must be positive",
        )?;
        rule(
            (1..=10).contains(&t.max_attempts),
            "tasks.max_attempts must be between 1 and 10",
        )?;
        let a = &self.auction;
        let weights = [
            a.price_weight,
            a.quality_weight,
            a.speed_weight,
            a.reputation_weight,
        ];
        rule(
            weights.iter().all(|w| w.is_finite() && *w >= 0.0)
                && (weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "auction weights must be ≥ 0 and sum to 1",
        )?;
        rule(
            self.auth.token_ttl_secs > 0,
            "auth.token_ttl_secs must be positive",
        )?;
        rule(
            (1..=3600).contains(&self.realtime.ping_interval_secs),
            "realtime.ping_interval_secs must be between 1 and 3600",
        )?;
        let token = self.realtime.service_token.expose();
        rule(
            token.is_empty() || (token.len() >= 16 && !token.chars().any(char::is_whitespace)),
            "realtime.service_token must be empty or at least 16 characters without spaces",
        )?;
        self.rate_limits.checked()?;
        self.checked_cluster()?;
        for (name, b) in [("redis", self.breakers.redis), ("s3", self.breakers.s3)] {
            rule(
                b.failure_threshold > 0 && b.cooldown_ms > 0 && b.call_timeout_ms > 0,
                &format!(
                    "breakers.{name}: failure_threshold, cooldown_ms and call_timeout_ms must be \
                     positive"
                ),
            )?;
        }
        Ok(self)
    }

    fn checked_cluster(&self) -> Result<(), ConfigError> {
        let rule = |ok: bool, msg: &str| ok.then_some(()).ok_or(ConfigError::Rule(msg.into()));
        let token = self.cluster.service_token.expose();
        rule(
            token.is_empty() || (token.len() >= 16 && !token.chars().any(char::is_whitespace)),
            "cluster.service_token must be empty or at least 16 characters without spaces",
        )?;
        rule(
            (3..=3600).contains(&self.queue.lease_secs),
            "queue.lease_secs must be between 3 and 3600",
        )?;
        // A lease is kept every third of it: two slow calls in a row must not lose it.
        rule(
            self.queue.lease_secs * 1000 / 3 > 2 * self.breakers.redis.call_timeout_ms,
            "queue.lease_secs must exceed six times breakers.redis.call_timeout_ms (a lease is \
             renewed every third of it; two slow calls must not lose it)",
        )?;
        rule(
            (1..=60).contains(&self.cluster.heartbeat_secs),
            "cluster.heartbeat_secs must be between 1 and 60",
        )?;
        let prefix = &self.redis.key_prefix;
        rule(
            !prefix.is_empty()
                && !prefix.contains(['{', '}'])
                && !prefix.contains(char::is_whitespace),
            "redis.key_prefix must be non-empty, without spaces or braces",
        )?;
        if self.queue.backend == QueueBackend::Redis {
            rule(
                !self.redis.url.is_empty(),
                "queue.backend = \"redis\" needs redis.url (redis://host:6379 or rediss:// for TLS)",
            )?;
        }
        Ok(())
    }
}

impl RateLimitSettings {
    fn checked(&self) -> Result<(), ConfigError> {
        self.proxies().map_err(ConfigError::Rule)?;
        for (name, limit) in [
            ("login", self.login),
            ("signup", self.signup),
            ("api", self.api),
            ("submit", self.submit),
        ] {
            let sane = (1..=86_400).contains(&limit.period_secs)
                && limit.burst > 0
                && u64::from(limit.requests) <= limit.period_secs * 1_000_000;
            if limit.enabled() && !sane {
                return Err(ConfigError::Rule(format!(
                    "rate_limits.{name}: period_secs must be between 1 and 86400, burst \
                     positive and requests at most a million a second (requests = 0 turns the \
                     limit off)"
                )));
            }
        }
        let l = &self.lockout;
        if l.failures > 0 && !(l.base_secs >= 1 && (l.base_secs..=86_400).contains(&l.max_secs)) {
            return Err(ConfigError::Rule(
                "rate_limits.lockout: base_secs must be positive and max_secs between base_secs \
                 and 86400 (failures = 0 turns the lockout off)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's Jail API returns its large error type by value; nothing to gain from boxing here.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    // Every test runs in a `Jail`: it serialises environment changes and runs in a temp cwd.

    #[test]
    fn layers_apply_in_order_defaults_file_env_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "z.toml",
                "workers = 7\nlisten = \"0.0.0.0:9000\"\n[tasks]\ndefault_timeout_secs = 5\n",
            )?;
            let path = Path::new("z.toml");
            let s = Settings::load(Some(path), Overrides::default()).unwrap();
            assert_eq!((s.workers, s.tasks.default_timeout_secs), (7, 5));
            assert_eq!(
                s.tasks.max_timeout_secs, 300,
                "untouched keys keep their default"
            );

            jail.set_env("ZEROSTATE_WORKERS", "3");
            jail.set_env("ZEROSTATE_TASKS__DEFAULT_TIMEOUT_SECS", "9");
            let s = Settings::load(Some(path), Overrides::default()).unwrap();
            assert_eq!(
                (s.workers, s.tasks.default_timeout_secs),
                (3, 9),
                "env beats the file"
            );
            assert_eq!(s.listen.port(), 9000);

            let flags = Overrides {
                workers: Some(2),
                ..Default::default()
            };
            let s = Settings::load(Some(path), flags).unwrap();
            assert_eq!(s.workers, 2, "flags beat env");
            Ok(())
        });
    }

    #[test]
    fn the_default_file_is_read_from_the_working_directory() {
        Jail::expect_with(|jail| {
            jail.create_dir("config")?;
            jail.create_file(DEFAULT_CONFIG_FILE, "workers = 11\n")?;
            assert_eq!(
                Settings::load(None, Overrides::default()).unwrap().workers,
                11
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_named_in_the_error() {
        Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[tasks]\ndefault_timeout = 5\n")?;
            let err = Settings::load(Some(Path::new("a.toml")), Overrides::default());
            assert!(err.unwrap_err().to_string().contains("default_timeout"));
            jail.create_file("b.toml", "wrokers = 3\n")?;
            let err = Settings::load(Some(Path::new("b.toml")), Overrides::default());
            assert!(err.unwrap_err().to_string().contains("wrokers"));
            jail.set_env("ZEROSTATE_NOPE", "1");
            let err = Settings::load(None, Overrides::default());
            assert!(err.unwrap_err().to_string().contains("nope"));
            Ok(())
        });
    }

    #[test]
    fn a_missing_explicit_file_and_broken_rules_are_errors() {
        Jail::expect_with(|jail| {
            let err = Settings::load(Some(Path::new("missing.toml")), Overrides::default());
            assert!(matches!(err, Err(ConfigError::MissingFile(_))));
            jail.create_file("w.toml", "[auction]\nprice_weight = 0.5\n")?;
            let err = Settings::load(Some(Path::new("w.toml")), Overrides::default());
            assert!(err.unwrap_err().to_string().contains("sum to 1"));
            jail.create_file("c.toml", "[tasks]\ndefault_timeout_secs = 301\n")?;
            let err = Settings::load(Some(Path::new("c.toml")), Overrides::default());
            assert!(
                err.unwrap_err()
                    .to_string()
                    .contains("default_timeout_secs")
            );
            Ok(())
        });
    }

    #[test]
    fn a_file_is_created_atomically_once_with_mode_0600_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        assert!(create_file_atomically(&path, b"first").unwrap());
        assert!(!create_file_atomically(&path, b"second").unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"], "no temporary file is left behind");
    }

    #[test]
    fn processes_creating_a_secret_at_once_all_get_the_one_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("link_secret");
        let secrets: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| read_or_create_secret(&path).unwrap()))
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 64);
        assert!(secrets.iter().all(|s| *s == on_disk));
        // A short (damaged) secret stops start-up rather than being replaced silently.
        std::fs::write(&path, b"short").unwrap();
        let err = read_or_create_secret(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn public_url_is_an_http_base_url_or_empty() {
        for good in [
            "",
            "https://zerostate.example.com",
            "http://10.0.0.5:8080/zerostate/",
        ] {
            assert!(
                Settings {
                    public_url: good.into(),
                    ..Settings::default()
                }
                .checked()
                .is_ok(),
                "{good}"
            );
        }
        for bad in [
            "zerostate.example.com",
            "ftp://example.com",
            "https://",
            "https:///path",
            "https://example.com/?x=1",
            "https://example.com/#top",
            "https://user@evil.example",
            "https://exa mple.com",
        ] {
            let err = Settings {
                public_url: bad.into(),
                ..Settings::default()
            }
            .checked();
            assert!(err.unwrap_err().to_string().contains("public_url"), "{bad}");
        }
    }

    #[test]
    fn rate_limits_refuse_bad_proxies_and_empty_buckets() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "p.toml",
                "[rate_limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
            )?;
            let s = Settings::load(Some(Path::new("p.toml")), Overrides::default()).unwrap();
            assert_eq!(s.rate_limits.proxies().unwrap().len(), 2);
            for (file, body, named) in [
                (
                    "a.toml",
                    "[rate_limits]\ntrusted_proxies = [\"10.0.0.0/40\"]\n",
                    "trusted_proxies",
                ),
                (
                    "b.toml",
                    "[rate_limits.login]\nburst = 0\n",
                    "rate_limits.login",
                ),
                (
                    "c.toml",
                    "[rate_limits.lockout]\nbase_secs = 10\nmax_secs = 5\n",
                    "rate_limits.lockout",
                ),
            ] {
                jail.create_file(file, body)?;
                let err = Settings::load(Some(Path::new(file)), Overrides::default());
                assert!(err.unwrap_err().to_string().contains(named), "{file}");
            }
            // A limit that is off needs no bucket.
            jail.create_file("d.toml", "[rate_limits.api]\nrequests = 0\nburst = 0\n")?;
            assert!(Settings::load(Some(Path::new("d.toml")), Overrides::default()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn the_s3_secret_comes_from_the_environment_and_debug_never_prints_it() {
        Jail::expect_with(|jail| {
            jail.create_file("s.toml", "[blobs]\nbackend = \"s3\"\nbucket = \"b\"\n")?;
            jail.set_env("ZEROSTATE_BLOBS__SECRET_ACCESS_KEY", "hunter2-very-secret");
            let s = Settings::load(Some(Path::new("s.toml")), Overrides::default()).unwrap();
            assert_eq!(s.blobs.backend, BlobBackend::S3);
            assert_eq!(s.blobs.secret_access_key.expose(), "hunter2-very-secret");
            assert!(!format!("{s:?}").contains("hunter2"));
            jail.create_file("b.toml", "[breakers.s3]\nfailure_threshold = 0\n")?;
            let err = Settings::load(Some(Path::new("b.toml")), Overrides::default());
            assert!(err.unwrap_err().to_string().contains("breakers.s3"));
            jail.create_file("u.toml", "[blobs]\nbackend = \"minio\"\n")?;
            assert!(Settings::load(Some(Path::new("u.toml")), Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn the_shipped_config_file_documents_the_real_defaults() {
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/zerostate.toml"
        ))
        .unwrap();
        // Uncomment every `# key = value` line: the result must equal the built-in defaults.
        let uncommented: String = shipped
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' ')) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        Jail::expect_with(|jail| {
            jail.create_file("full.toml", &uncommented)?;
            let loaded =
                Settings::load(Some(Path::new("full.toml")), Overrides::default()).unwrap();
            let as_json = |s: &Settings| serde_json::to_value(s).unwrap();
            assert_eq!(as_json(&loaded), as_json(&Settings::default()));
            jail.create_file("shipped.toml", &shipped)?;
            let loaded =
                Settings::load(Some(Path::new("shipped.toml")), Overrides::default()).unwrap();
            assert_eq!(as_json(&loaded), as_json(&Settings::default()));
            Ok(())
        });
        // Every key was documented: uncommenting changed as many lines as there are settings.
        let documented = uncommented
            .lines()
            .zip(shipped.lines())
            .filter(|(a, b)| a != b)
            .count();
        fn leaves(v: &serde_json::Value) -> usize {
            v.as_object().map_or(1, |o| o.values().map(leaves).sum())
        }
        assert_eq!(
            documented,
            leaves(&serde_json::to_value(Settings::default()).unwrap())
        );
    }
}
