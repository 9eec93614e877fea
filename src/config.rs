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

use crate::records::Policy;

const MIB: u64 = 1024 * 1024;

/// The configuration file read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/zerostate.toml";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// Directory holding the redb file, the search index and the JWT secret.
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
    pub quotas: QuotaSettings,
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
/// links): read, or drawn at random (64 bytes) and written with mode 0600 on first start.
/// Blocking (file I/O).
pub fn read_or_create_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "secret is shorter than 32 bytes; delete it to generate a new one",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut secret = vec![0u8; 64];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, &secret)?;
    file.sync_all()?;
    Ok(secret)
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
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
            quotas: QuotaSettings::default(),
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
        Ok(self)
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
