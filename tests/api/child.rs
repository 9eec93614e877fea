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
        let mut command = Command::new(binary);
        // The harness's own settings (ZEROSTATE_CRASH_CYCLES, say) are not the server's: it
        // refuses keys it does not know.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ZEROSTATE_") {
                command.env_remove(key);
            }
        }
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
