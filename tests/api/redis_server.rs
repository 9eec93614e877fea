//! A real `redis-server` (Debian's package) as a child process, for the compatibility-mode
//! tests and the end-to-end bench (which includes this file by path). The harness only waits
//! for `PONG` and reads `INFO` over a plain socket; the product talks to it through the
//! `redis` crate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a starting server may take to answer `PING` (an AOF replay included).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// What the server promises about the writes it acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // not every includer of this file uses every variant
pub enum Durability {
    /// `appendonly yes`, `appendfsync always`: survives a power loss.
    Fsynced,
    /// `appendonly yes`, `appendfsync everysec`: survives Redis dying, not a power loss.
    EverySecond,
    /// `appendonly no`, no snapshots: the product refuses it unless told to accept the risk.
    None,
}

/// A running `redis-server` on 127.0.0.1; killed (SIGKILL) when dropped.
pub struct RedisServer {
    /// `None` while stopped.
    child: Option<Child>,
    pub port: u16,
    durability: Durability,
    /// The append-only file lives here, so a restart on the same dir replays it.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A server that fsyncs every write before it answers.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn start() -> Self {
        Self::start_with(Durability::Fsynced)
    }

    /// A server that keeps nothing on disk.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn start_without_persistence() -> Self {
        Self::start_with(Durability::None)
    }

    /// A server with the given durability.
    pub fn start_with(durability: Durability) -> Self {
        // A port another process takes between our probe and redis's bind makes redis exit at
        // once; try a few.
        let mut failures = Vec::new();
        for _ in 0..5 {
            let mut server = Self {
                child: None,
                port: free_port(),
                durability,
                dir: tempfile::tempdir().unwrap(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => failures.push(e),
            }
        }
        panic!("redis-server did not start on any of five free ports: {failures:#?}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients, no final fsync) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory: it replays its append-only
    /// file, so whatever it acknowledged before [`RedisServer::stop`] is back.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn restart(&mut self) {
        self.stop();
        self.spawn()
            .unwrap_or_else(|e| panic!("redis-server did not restart on port {}: {e}", self.port));
    }

    /// The `INFO commandstats` counters: command name (lower case) → calls.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn command_calls(&self) -> std::collections::BTreeMap<String, u64> {
        let info = self.query("INFO commandstats").expect("INFO commandstats");
        info.lines()
            .filter_map(|line| {
                // cmdstat_xadd:calls=12,usec=80,usec_per_call=6.67,...
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = stats.split(',').next()?.strip_prefix("calls=")?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .collect()
    }

    /// Starts `redis-server` on `self.port` and waits until it answers `PONG`.
    fn spawn(&mut self) -> Result<(), String> {
        let persistence: &[&str] = match self.durability {
            Durability::Fsynced => &["--appendonly", "yes", "--appendfsync", "always"],
            Durability::EverySecond => &["--appendonly", "yes", "--appendfsync", "everysec"],
            Durability::None => &["--appendonly", "no"],
        };
        let mut child = Command::new(redis_server_binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--dir"])
            .arg(self.dir.path())
            .args(persistence)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}); install it (`apt-get install redis-server`, \
                     as .ci/run does) or set REDIS_SERVER to its path"
                )
            });
        // Its log, kept for the failure message and drained so it never blocks.
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                if log.len() < 64 * 1024 {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited ({status}): {}", log.lock().unwrap()));
            }
            // `-LOADING` while it replays the AOF; `+PONG` once it serves. The answer must
            // come from our child, not from another server that took the port first.
            if self.query("PING").as_deref() == Some("PONG") {
                let ours = format!("process_id:{}\r\n", child.id());
                if self
                    .query("INFO server")
                    .is_some_and(|info| info.contains(&ours))
                {
                    self.child = Some(child);
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no PONG within {READY_WITHIN:?}: {}",
                    log.lock().unwrap()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one inline command (`XLEN {zerostate}:q:normal`) and reads a simple-string,
    /// integer or bulk-string reply, as text; `None` for anything else (an error reply, a nil,
    /// a closed socket).
    pub fn query(&self, command: &str) -> Option<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        (&stream)
            .write_all(format!("{command}\r\n").as_bytes())
            .ok()?;
        let mut reader = BufReader::new(&stream);
        let mut head = String::new();
        reader.read_line(&mut head).ok()?;
        let head = head.trim_end();
        if let Some(simple) = head.strip_prefix('+').or_else(|| head.strip_prefix(':')) {
            return Some(simple.to_owned());
        }
        let length: usize = head.strip_prefix('$')?.parse().ok()?;
        let mut body = vec![0; length + 2];
        reader.read_exact(&mut body).ok()?;
        body.truncate(length);
        String::from_utf8(body).ok()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nothing listens on right now (the S3 server's tests use it too).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server` from `PATH`, or `$REDIS_SERVER`.
fn redis_server_binary() -> std::ffi::OsString {
    std::env::var_os("REDIS_SERVER").unwrap_or_else(|| "redis-server".into())
}
