//! The real `zerostate` binary as a child process, for the crash test and the end-to-end
//! bench (which includes this file by path).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running server; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// Starts `binary serve` on port 0 over `data_dir` with the extra `args` and environment
    /// (settings as `ZEROSTATE_*`), and reads the bound address from its JSON log.
    pub fn start(binary: &OsStr, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(binary);
        // The harness's own settings (ZEROSTATE_CRASH_CYCLES, say) are not the server's: it
        // refuses keys it does not know.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ZEROSTATE_") {
                command.env_remove(key);
            }
        }
        let mut child = command
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
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zerostate");
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
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            base: format!("http://{addr}"),
        }
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
