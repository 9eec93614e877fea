//! The real `zerostate` binary as a child process, for the crash test and the end-to-end
//! bench (which includes this file by path).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

/// A running server; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Lines the server has logged since it listened.
    log_lines: Arc<AtomicU64>,
}

impl Server {
    /// Starts `binary serve` on port 0 over `data_dir` with the extra `args` and environment
    /// (settings as `ZEROSTATE_*`), and reads the bound address from its JSON log.
    pub fn start(binary: &OsStr, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(Self::command(binary, data_dir, args, env))
    }

    /// As [`Server::start`], with the open-file limit (soft and hard) at `open_files`, as a
    /// service manager would set it.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn start_with_open_files(
        binary: &OsStr,
        data_dir: &Path,
        env: &[(&str, &str)],
        open_files: u64,
    ) -> Self {
        use std::os::unix::process::CommandExt;
        let mut command = Self::command(binary, data_dir, &[], env);
        let limit = libc::rlimit {
            rlim_cur: open_files as libc::rlim_t,
            rlim_max: open_files as libc::rlim_t,
        };
        // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::spawn(command)
    }

    fn command(binary: &OsStr, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = zerostate_command(binary);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            // Load generators and crash cycles are one client at full speed: no limits,
            // unless the caller's `env` sets them.
            .env("ZEROSTATE_RATE_LIMITS__ENABLED", "false")
            .envs(env.iter().copied())
            .env("ZEROSTATE_LOG__FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("spawn zerostate");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"] == "zerostate listening"
            {
                break event["addr"].as_str().unwrap().to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        let log_lines = Arc::new(AtomicU64::new(0));
        let counted = log_lines.clone();
        std::thread::spawn(move || {
            for _ in lines {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        Self {
            child,
            base: format!("http://{addr}"),
            log_lines,
        }
    }

    /// Lines logged since the server listened.
    #[allow(dead_code)] // not every includer of this file uses it
    pub fn log_lines(&self) -> u64 {
        self.log_lines.load(Ordering::Relaxed)
    }
}

impl Server {
    /// Registers `email` and returns its session token.
    pub async fn signup(&self, email: &str) -> String {
        let session: Value = reqwest::Client::new()
            .post(format!("{}/api/v1/users/register", self.base))
            .json(&serde_json::json!({"email": email, "password": "correct horse battery", "full_name": "Load"}))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("a JSON session");
        session["token"].as_str().expect("a token").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `binary` without the harness's own `ZEROSTATE_*` settings (ZEROSTATE_CRASH_CYCLES, say):
/// the server refuses keys it does not know.
fn zerostate_command(binary: &OsStr) -> Command {
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ZEROSTATE_") {
            command.env_remove(key);
        }
    }
    command
}

/// A `zerostate worker` node (compatibility mode: runs tasks it takes from Redis, no HTTP);
/// killed (SIGKILL) when dropped.
#[allow(dead_code)] // not every includer of this file uses it
pub struct Worker {
    pub child: Child,
    /// Every line it logged (JSON), kept for the test to read.
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

#[allow(dead_code)] // not every includer of this file uses it
impl Worker {
    /// Starts `binary worker` over `data_dir` (its compiled-code cache) with the settings in
    /// `env`; returns at once (a worker has no port to wait for: see the primary's list).
    pub fn start(binary: &OsStr, data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = zerostate_command(binary)
            .args(["worker", "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().copied())
            .env("ZEROSTATE_LOG__FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zerostate worker");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    /// The lines logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a run of the binary that was meant to fail ended.
#[allow(dead_code)] // not every includer of this file uses it
pub struct Exited {
    pub status: std::process::ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `binary args` with the settings in `env` until it exits by itself, which it must do
/// within `within` (a start-up that is refused); the harness's `ZEROSTATE_*` are not passed.
#[allow(dead_code)] // not every includer of this file uses it
pub fn run_to_exit(
    binary: &OsStr,
    args: &[&OsStr],
    env: &[(&str, &str)],
    within: std::time::Duration,
) -> Exited {
    let mut child = zerostate_command(binary)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zerostate");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still runs after {within:?}; it should have refused to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Exited {
        status,
        stderr: reader.join().unwrap(),
    }
}
