//! `spawn_app` and typed request helpers. Every app gets port 0 and its own temp data dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zerostate::Application;
use zerostate::agents::Warmup;
use zerostate::config::Settings;

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct TestApp {
    pub base: String,
    pub ws_base: String,
    pub client: reqwest::Client,
    pub data_dir: Arc<tempfile::TempDir>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<()>>,
    /// How the start-up warm-up ended.
    pub warmup: Warmup,
    /// Arms injected search index write failures.
    pub search_faults: zerostate::search::Faults,
}

/// The address every test client connects from.
pub const LOCALHOST: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

pub fn settings(data_dir: &Path, workers: usize) -> Settings {
    let mut s = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        workers,
        ..Settings::default()
    };
    s.tasks.shutdown_grace_secs = 5;
    // Every test client is 127.0.0.1 and many share a user: the limits stay on (their headers
    // and code run everywhere) but out of reach. tests/api/ratelimits.rs sets real ones.
    let generous = zerostate::config::RateLimit {
        requests: 1_000_000,
        period_secs: 1,
        burst: 1_000_000,
    };
    let limits = &mut s.rate_limits;
    (limits.login, limits.signup, limits.api, limits.submit) =
        (generous, generous, generous, generous);
    // Generous: only the quota tests (tests/api/quotas.rs) set quotas that bite.
    s.quotas = zerostate::config::QuotaSettings {
        agents: 0,
        module_bytes: 0,
        queued_tasks: 0,
        concurrent_runs: 0,
        result_bytes_per_day: 0,
        websocket_connections: 0,
        ..s.quotas
    };
    s
}

pub async fn spawn_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    spawn_with(settings(dir.path(), 2), dir).await
}

pub async fn spawn_with(settings: Settings, data_dir: Arc<tempfile::TempDir>) -> TestApp {
    let app = Application::build(settings).await.expect("app builds");
    // Serving starts at once; the test starts once every ready agent's module is loaded.
    let mut warming = app.warmup();
    let addr = app.local_addr();
    let shutdown = app.shutdown_token();
    let search_faults = app.search_faults();
    let server = tokio::spawn(async move { app.run_until_stopped().await.expect("server runs") });
    let warmup = *tokio::time::timeout(DEADLINE, warming.wait_for(|w| w.done))
        .await
        .expect("warm-up ends")
        .expect("the server keeps its marketplace");
    TestApp {
        warmup,
        search_faults,
        base: format!("http://{addr}"),
        ws_base: format!("ws://{addr}"),
        client: reqwest::Client::new(),
        data_dir,
        shutdown,
        server: Some(server),
    }
}

/// Accounts over the store in `dir`, as the server builds them (for what an operator does on
/// the server's machine, such as `zerostate user create --admin`).
pub async fn accounts_in(dir: &Path) -> zerostate::auth::Accounts {
    let store = zerostate::store::Store::open(&dir.join(zerostate::DB_FILE)).expect("store opens");
    let keys = zerostate::auth::TokenKeys::load_or_create(dir, 3600).expect("signing key");
    zerostate::auth::Accounts::open(
        store,
        Arc::new(keys),
        Arc::new(zerostate::realtime::Hub::default()),
    )
    .await
    .expect("accounts load")
}

/// The password of the accounts [`spawn_with_admin`] and [`TestApp::signup`] create.
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// An app whose data dir got an admin account before start, through the library (what
/// `zerostate user create --admin` does); returns the admin's token too.
pub async fn spawn_with_admin() -> (TestApp, String) {
    spawn_with_admin_using(|_| {}).await
}

/// Creates the admin account (admin@example.com, [`ADMIN_PASSWORD`]) in the data dir `dir`,
/// as `zerostate user create --admin` does (no server runs there yet).
pub async fn create_admin(dir: &Path) {
    accounts_in(dir)
        .await
        .create_or_promote(
            "admin@example.com",
            Some(ADMIN_PASSWORD.into()),
            "Admin",
            true,
        )
        .await
        .unwrap();
}

/// [`spawn_with_admin`] with settings changed by `configure`.
pub async fn spawn_with_admin_using(configure: impl FnOnce(&mut Settings)) -> (TestApp, String) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    create_admin(dir.path()).await;
    let mut settings = settings(dir.path(), 2);
    configure(&mut settings);
    let app = spawn_with(settings, dir).await;
    let token = app.admin_session().await;
    (app, token)
}

/// Path of a file in the repository.
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub use crate::modules::{ECHO_AGENT, GROW_BOMB_AGENT, LOOP_AGENT, RECURSE_AGENT, SLEEP_AGENT};

pub fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("valid WAT")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        self.shutdown.cancel();
        self.server.take().unwrap().await.unwrap();
        self.data_dir.clone()
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.unwrap()).await
    }

    /// Any method with an optional JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        read(req.send().await.unwrap()).await
    }

    /// Any method with a multipart body; `wait` sends `Prefer: wait=60`.
    /// `DELETE /api/v1/agents/{agent}` as the holder of `token`.
    pub async fn delete_agent(&self, token: &str, agent: &str) -> (u16, Value) {
        let path = format!("/api/v1/agents/{agent}");
        self.send(reqwest::Method::DELETE, &path, Some(token), None)
            .await
    }

    pub async fn send_form(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        form: Form,
        wait: bool,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path)).multipart(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if wait {
            req = req.header("prefer", "wait=60");
        }
        read(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        read(req.send().await.unwrap()).await
    }

    /// Registers a fresh user and returns the token.
    /// Signs in the admin [`spawn_with_admin`] created; returns the session token.
    pub async fn admin_session(&self) -> String {
        let (status, body) = self
            .post_json(
                "/api/v1/users/login",
                None,
                &json!({"email": "admin@example.com", "password": ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// The body of `GET path`, as text (the UI's pages, `/metrics`).
    pub async fn text(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.text().await.unwrap()
    }

    pub async fn signup(&self, email: &str) -> String {
        let (status, body) = self
            .post_json(
                "/api/v1/users/register",
                None,
                &json!({"email": email, "password": ADMIN_PASSWORD, "full_name": "Test User"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Uploads an agent and waits for its build to end; returns (status, body).
    pub async fn upload(
        &self,
        token: &str,
        name: &str,
        module: Vec<u8>,
        capabilities: &str,
        price: f64,
    ) -> (u16, Value) {
        let form = Form::new()
            .part("wasm_binary", Part::bytes(module).file_name("agent.wasm"))
            .text("name", name.to_owned())
            .text("description", format!("{name} test agent"))
            .text("version", "1.0.0")
            .text("capabilities", capabilities.to_owned())
            .text("price", price.to_string());
        let resp = self
            .client
            .post(self.url("/api/v1/agents/upload"))
            .bearer_auth(token)
            .header("prefer", "wait=60")
            .multipart(form)
            .send()
            .await
            .unwrap();
        read(resp).await
    }

    /// Uploads `module` with a `manifest` part; `wait` sends `Prefer: wait=60`.
    pub async fn upload_manifest(
        &self,
        token: &str,
        manifest: &Value,
        module: Vec<u8>,
        wait: bool,
    ) -> (u16, Value) {
        let form = Form::new()
            .part("wasm_binary", Part::bytes(module).file_name("agent.wasm"))
            .part(
                "manifest",
                Part::text(manifest.to_string()).file_name("manifest.json"),
            );
        let mut request = self
            .client
            .post(self.url("/api/v1/agents/upload"))
            .bearer_auth(token)
            .multipart(form);
        if wait {
            request = request.header("prefer", "wait=60");
        }
        read(request.send().await.unwrap()).await
    }

    /// Uploads an agent that must be accepted; returns its id.
    pub async fn publish(
        &self,
        token: &str,
        name: &str,
        module: Vec<u8>,
        capabilities: &str,
        price: f64,
    ) -> String {
        let (status, body) = self.upload(token, name, module, capabilities, price).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (201, Some("ready")),
            "{body}"
        );
        body["agent_id"].as_str().unwrap().to_owned()
    }

    /// Submits a task that must be accepted; returns its id.
    pub async fn submit(&self, token: &str, body: Value) -> String {
        let (status, resp) = self
            .post_json("/api/v1/tasks/submit", Some(token), &body)
            .await;
        assert_eq!(status, 202, "{resp}");
        resp["task_id"].as_str().unwrap().to_owned()
    }

    /// Submits a task and waits for it to finish.
    pub async fn run_task(&self, token: &str, body: Value) -> Value {
        let id = self.submit(token, body).await;
        self.wait_for_task(token, &id).await
    }

    /// Runs a task with `query` on the agent `agent_id` to its end.
    pub async fn run_on(&self, token: &str, agent_id: &str, query: &str) -> Value {
        self.run_task(
            token,
            serde_json::json!({"query": query, "agent_id": agent_id, "budget": 1}),
        )
        .await
    }

    /// Publishes `module` as a free agent named `name` and runs one task on it to its end.
    pub async fn run_on_new_agent(&self, token: &str, name: &str, module: Vec<u8>) -> Value {
        let agent = self
            .publish(token, name, module, &name.to_lowercase(), 0.0)
            .await;
        self.run_on(token, &agent, "x").await
    }

    /// Waits, over the WebSocket (no polling), until the task is completed or failed.
    pub async fn wait_for_task(&self, token: &str, task_id: &str) -> Value {
        // Subscribed before the GET, so a finish between the two cannot be missed.
        let mut updates = self.task_updates(token).await;
        let (_, task) = self
            .get(&format!("/api/v1/tasks/{task_id}"), Some(token))
            .await;
        if is_terminal(&task) {
            return task;
        }
        updates.until(task_id, is_terminal).await;
        self.get(&format!("/api/v1/tasks/{task_id}"), Some(token))
            .await
            .1
    }

    /// Subscribes to `token`'s task updates; returns once the server's hello proves the
    /// subscription exists.
    pub async fn task_updates(&self, token: &str) -> TaskUpdates {
        let url = format!("{}/api/v1/ws/connect?token={token}", self.ws_base);
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connects");
        let hello = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("hello in time");
        assert!(
            hello
                .expect("socket open")
                .expect("frame")
                .into_text()
                .unwrap()
                .contains("\"system\"")
        );
        TaskUpdates {
            socket,
            seen: Vec::new(),
        }
    }
}

/// A user's `task_update` messages, from [`TestApp::task_updates`]. Every update read is kept,
/// so waiting for one task never loses another's update.
pub struct TaskUpdates {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    seen: Vec<Value>,
}

impl TaskUpdates {
    /// Waits for an update of `task_id` (already read or still to come) whose data matches `done`.
    pub async fn until(&mut self, task_id: &str, done: impl Fn(&Value) -> bool) {
        let matches = |data: &Value| data["task_id"] == task_id && done(data);
        if self.seen.iter().any(matches) {
            return;
        }
        tokio::time::timeout(DEADLINE, async {
            while let Some(message) = self.socket.next().await {
                let text = message.expect("ws message").into_text().unwrap_or_default();
                let Ok(mut event) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if event["type"] != "task_update" {
                    continue;
                }
                let data = event["data"].take();
                let found = matches(&data);
                self.seen.push(data);
                if found {
                    return;
                }
            }
            panic!("socket closed before the awaited update of task {task_id}");
        })
        .await
        .unwrap_or_else(|_| panic!("no awaited update of task {task_id} within {DEADLINE:?}"))
    }

    /// Submits a 60 s task to `agent_id` and waits until a worker runs it; returns its id.
    pub async fn occupy_worker(&mut self, app: &TestApp, token: &str, agent_id: &str) -> String {
        let id = app
            .submit(
                token,
                serde_json::json!({"query": "occupy", "agent_id": agent_id, "budget": 0, "timeout": 60}),
            )
            .await;
        self.until_running(&id).await;
        id
    }

    /// Waits until `task_id` is running.
    pub async fn until_running(&mut self, task_id: &str) {
        self.until(task_id, |t| t["status"] == "running").await
    }
}

fn is_terminal(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("completed" | "failed" | "canceled" | "timed_out")
    )
}

pub async fn read(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Asserts an error response: exact status and code, and a non-empty message, which it returns.
#[track_caller]
pub fn assert_error<'a>(response: &'a (u16, Value), status: u16, code: &str) -> &'a str {
    let (actual, body) = response;
    assert_eq!(*actual, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "{body}");
    message
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl TestApp {
    /// A live-update socket opened with `token` (`?token=`), past the server's hello.
    pub async fn socket(&self, token: &str) -> Socket {
        let url = format!("{}/api/v1/ws/connect?token={token}", self.ws_base);
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connects");
        let hello = next_event(&mut socket).await;
        assert_eq!(hello["type"], "system", "{hello}");
        socket
    }
}

/// The next JSON message on the socket (other frames are skipped).
pub async fn next_event(socket: &mut Socket) -> Value {
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(DEADLINE, async {
        loop {
            match socket.next().await.expect("socket open").expect("frame") {
                Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
                Message::Close(frame) => panic!("socket closed: {frame:?}"),
                _ => continue,
            }
        }
    })
    .await
    .expect("an event within the deadline")
}

/// The next message of type `kind`, skipping others.
pub async fn next_of_type(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let event = next_event(socket).await;
        if event["type"] == kind {
            return event;
        }
    }
}

/// Reads until the server's close frame; returns its code and reason.
pub async fn close_frame(socket: &mut Socket) -> (u16, String) {
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(DEADLINE, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    panic!("the socket ended without a close frame")
                }
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .expect("a close frame within the deadline")
}
