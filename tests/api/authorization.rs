//! The authorization matrix: every operation of the server's OpenAPI document, sent by every
//! kind of caller, against real fixtures (user A's agent and task, user B's agent), compared
//! with one table of expected statuses. An operation added to the document without a row, or
//! a row whose operation left the document, fails the test; so does a page or asset the
//! router serves outside the document (the web UI) that is missing from [`UI`].
//!
//! Bodies are minimal and valid, so an authorised caller gets its 2xx (or, where noted, the
//! 4xx that only a caller past authorization can reach) and an unauthorised one 401, 403 or
//! 404. API keys are user A's, one per scope.

use std::collections::BTreeSet;
use std::path::Path;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::*;

/// Who sends a request; the order of [`CALLERS`] and of every row's `want`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    UserA,
    UserB,
    Admin,
    /// User A's API key with only `agents:read`; the other keys likewise.
    KeyAgentsRead,
    KeyAgentsWrite,
    KeyTasksRead,
    KeyTasksWrite,
    /// User A's key with every scope, revoked.
    RevokedKey,
}

const CALLERS: [Caller; 9] = [
    Caller::Anonymous,
    Caller::UserA,
    Caller::UserB,
    Caller::Admin,
    Caller::KeyAgentsRead,
    Caller::KeyAgentsWrite,
    Caller::KeyTasksRead,
    Caller::KeyTasksWrite,
    Caller::RevokedKey,
];

/// What fills the path parameter (`{id}` or `{user_id}`).
#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    /// User A's agent.
    OwnAgent,
    /// A new agent of user A's for this one request, with versions 1.0.0 and 2.0.0 (current),
    /// for requests that delete or roll back.
    FreshAgent,
    /// User B's agent, which completed user A's task (so A may review it).
    UsedAgent,
    /// User A's completed task.
    OwnTask,
    /// A new API key of user A's for this one request.
    FreshKey,
    /// User A's id.
    UserA,
    /// No id: the request goes with a new session of the calling user, made for it (sign-out
    /// ends the session it is sent with).
    OwnSession,
}

/// The request body. Multipart bodies send `Prefer: wait=60`, so a build ends before the
/// next request.
#[derive(Clone, Copy)]
enum Body {
    Empty,
    Json(fn(&World, usize) -> Value),
    /// `POST /agents/upload`'s form, a new name each time.
    Upload,
    /// `POST /agents/register`'s seed-shaped form.
    Register,
    /// A module and a new version.
    NewVersion,
    /// A module alone.
    Module,
    /// The headers of a WebSocket handshake.
    Upgrade,
}

/// One operation, sent by each caller in [`CALLERS`] order; `want` holds the statuses.
struct Row {
    method: &'static str,
    /// The documented path, optionally with a query.
    path: &'static str,
    target: Target,
    body: Body,
    want: [u16; 9],
}

const fn row(
    method: &'static str,
    path: &'static str,
    target: Target,
    body: Body,
    want: [u16; 9],
) -> Row {
    Row {
        method,
        path,
        target,
        body,
        want,
    }
}

use Body::{Empty, Json, Module, NewVersion, Register, Upgrade, Upload};
use Target::{FreshAgent, FreshKey, OwnAgent, OwnSession, OwnTask, UsedAgent};

/// Every operation of the OpenAPI document. Another user's task answers 404 (its existence is
/// not revealed), another user's agent 403 on changes (agents are public). Keys act as user A
/// within their scopes and never reach account or admin routes.
#[rustfmt::skip]
const TABLE: &[Row] = &[
    //                                                                                              anon A    B    admin a:r  a:w  t:r  t:w  revoked
    row("POST",   "/api/v1/users/register",                   Target::None,  Json(registration),   [201, 201, 201, 201, 201, 201, 201, 201, 201]),
    row("POST",   "/api/v1/users/login",                      Target::None,  Json(login_a),        [200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/api/v1/users/me",                         Target::None,  Empty,                [401, 200, 200, 200, 200, 200, 200, 200, 401]),
    row("POST",   "/api/v1/users/logout",                     OwnSession,    Empty,                [401, 204, 204, 204, 403, 403, 403, 403, 401]),
    row("PATCH",  "/api/v1/users/me",                         Target::None,  Json(profile),        [401, 200, 200, 200, 403, 403, 403, 403, 401]),
    // A too-short new password: the account's owner gets past authorization to 400.
    row("POST",   "/api/v1/users/me/password",                Target::None,  Json(short_password), [401, 400, 400, 400, 403, 403, 403, 403, 401]),
    row("GET",    "/api/v1/users/me/api-keys",                Target::None,  Empty,                [401, 200, 200, 200, 403, 403, 403, 403, 401]),
    row("POST",   "/api/v1/users/me/api-keys",                Target::None,  Json(key_request),    [401, 201, 201, 201, 403, 403, 403, 403, 401]),
    row("DELETE", "/api/v1/users/me/api-keys/{id}",           FreshKey,      Empty,                [401, 204, 404, 404, 403, 403, 403, 403, 401]),

    row("GET",    "/api/v1/agents",                           Target::None,  Empty,                [401, 200, 200, 200, 200, 403, 403, 403, 401]),
    row("GET",    "/api/v1/agents/search",                    Target::None,  Empty,                [401, 200, 200, 200, 200, 403, 403, 403, 401]),
    row("POST",   "/api/v1/agents/upload",                    Target::None,  Upload,               [401, 201, 201, 201, 403, 201, 403, 403, 401]),
    row("POST",   "/api/v1/agents/register",                  Target::None,  Register,             [401, 201, 201, 201, 403, 201, 403, 403, 401]),
    row("GET",    "/api/v1/agents/{id}",                      OwnAgent,      Empty,                [401, 200, 200, 200, 200, 403, 403, 403, 401]),
    row("PATCH",  "/api/v1/agents/{id}",                      OwnAgent,      Json(description),    [401, 200, 403, 200, 403, 200, 403, 403, 401]),
    row("PUT",    "/api/v1/agents/{id}",                      OwnAgent,      Json(own_manifest),   [401, 200, 403, 200, 403, 200, 403, 403, 401]),
    row("DELETE", "/api/v1/agents/{id}",                      FreshAgent,    Empty,                [401, 204, 403, 204, 403, 204, 403, 403, 401]),
    row("GET",    "/api/v1/agents/{id}/binary",               OwnAgent,      Empty,                [401, 200, 200, 200, 200, 403, 403, 403, 401]),
    row("POST",   "/api/v1/agents/{id}/binary",               OwnAgent,      NewVersion,           [401, 201, 403, 201, 403, 201, 403, 403, 401]),
    row("PUT",    "/api/v1/agents/{id}/binary",               OwnAgent,      Module,               [401, 200, 403, 200, 403, 200, 403, 403, 401]),
    row("DELETE", "/api/v1/agents/{id}/binary?version=1.0.0", FreshAgent,    Empty,                [401, 200, 403, 200, 403, 200, 403, 403, 401]),
    row("GET",    "/api/v1/agents/{id}/binary/url",           OwnAgent,      Empty,                [401, 200, 200, 200, 200, 403, 403, 403, 401]),
    row("GET",    "/api/v1/agents/{id}/versions",             OwnAgent,      Empty,                [401, 200, 200, 200, 200, 403, 403, 403, 401]),
    row("POST",   "/api/v1/agents/{id}/rollback",             FreshAgent,    Json(rollback),       [401, 200, 403, 200, 403, 200, 403, 403, 401]),
    row("GET",    "/api/v1/agents/{id}/reviews",              UsedAgent,     Empty,                [401, 200, 200, 200, 200, 403, 403, 403, 401]),
    // Only a user whose task the agent completed may review it: A (and A's key), not its owner B.
    row("POST",   "/api/v1/agents/{id}/reviews",              UsedAgent,     Json(review),         [401, 201, 403, 403, 403, 201, 403, 403, 401]),
    row("POST",   "/api/v1/agents/{id}/validate-input",       OwnAgent,      Json(input),          [401, 200, 200, 200, 200, 403, 403, 403, 401]),

    row("GET",    "/api/v1/tasks",                            Target::None,  Empty,                [401, 200, 200, 200, 403, 403, 200, 403, 401]),
    row("GET",    "/api/v1/tasks/stats",                      Target::None,  Empty,                [401, 200, 200, 200, 403, 403, 200, 403, 401]),
    row("POST",   "/api/v1/tasks/submit",                     Target::None,  Json(submission),     [401, 202, 202, 202, 403, 403, 403, 202, 401]),
    row("GET",    "/api/v1/tasks/{id}",                       OwnTask,       Empty,                [401, 200, 404, 404, 403, 403, 200, 403, 401]),
    // The task has finished: its owner gets past authorization to 409 task_finished.
    row("POST",   "/api/v1/tasks/{id}/cancel",                OwnTask,       Empty,                [401, 409, 404, 404, 403, 403, 403, 409, 401]),
    row("GET",    "/api/v1/analytics",                        Target::None,  Empty,                [401, 200, 200, 200, 403, 403, 200, 403, 401]),
    row("GET",    "/api/v1/analytics?scope=all",              Target::None,  Empty,                [401, 403, 403, 200, 403, 403, 403, 403, 401]),
    row("POST",   "/api/v1/auctions/preview",                 Target::None,  Json(preview),        [401, 200, 200, 200, 403, 403, 200, 403, 401]),

    row("GET",    "/api/v1/ws/connect",                       Target::None,  Upgrade,              [401, 101, 101, 101, 403, 403, 101, 403, 401]),
    row("GET",    "/api/v1/ws/stats",                         Target::None,  Empty,                [401, 200, 200, 200, 200, 200, 200, 200, 401]),
    row("POST",   "/api/v1/ws/broadcast",                     Target::None,  Json(message),        [401, 403, 403, 200, 403, 403, 403, 403, 401]),
    row("POST",   "/api/v1/ws/send",                          Target::None,  Json(message_to_a),   [401, 403, 403, 200, 403, 403, 403, 403, 401]),
    row("POST",   "/api/v1/ws/user/{user_id}",                Target::UserA, Json(message),        [401, 403, 403, 200, 403, 403, 403, 403, 401]),

    row("GET",    "/api/v1/admin/workers",                    Target::None,  Empty,                [401, 403, 403, 200, 403, 403, 403, 403, 401]),
    row("GET",    "/health",                                  Target::None,  Empty,                [200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/ready",                                   Target::None,  Empty,                [200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/metrics",                                 Target::None,  Empty,                [200, 200, 200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/api/v1/openapi.json",                     Target::None,  Empty,                [200, 200, 200, 200, 200, 200, 200, 200, 200]),
];

/// What the router serves outside the OpenAPI document: the web UI (its client-side page
/// routes, seed-era pages that redirect, and every file under assets/ui, checked by
/// [`ui_files_have_rows`]) and the JSON 404 of unknown API paths. The same for every caller.
#[rustfmt::skip]
const UI: &[(&str, u16)] = &[
    ("/",                       200),
    ("/agents",                 200),
    ("/agents/anything",        200),
    ("/tasks",                  200),
    ("/analytics",              200),
    ("/settings",               200),
    ("/api-keys",               200),
    ("/login",                  200),
    ("/signup",                 200),
    ("/index.html",             301),
    ("/dashboard.html",         301),
    ("/agents.html",            301),
    ("/tasks.html",             301),
    ("/analytics.html",         301),
    ("/settings.html",          301),
    ("/api-keys.html",          301),
    ("/login.html",             301),
    ("/signup.html",            301),
    ("/register.html",          301),
    ("/agent-detail.html",      301),
    ("/favicon.svg",            200),
    ("/style.css",              200),
    ("/js/api.js",              200),
    ("/js/app.js",              200),
    ("/js/charts.js",           200),
    ("/js/live.js",             200),
    ("/js/router.js",           200),
    ("/js/schema-form.js",      200),
    ("/js/session.js",          200),
    ("/js/task-list.js",        200),
    ("/js/ui.js",               200),
    ("/js/upload.js",           200),
    ("/js/ws.js",               200),
    ("/js/pages/agent.js",      200),
    ("/js/pages/agents.js",     200),
    ("/js/pages/analytics.js",  200),
    ("/js/pages/api-keys.js",   200),
    ("/js/pages/dashboard.js",  200),
    ("/js/pages/login.js",      200),
    ("/js/pages/not-found.js",  200),
    ("/js/pages/settings.js",   200),
    ("/js/pages/task.js",       200),
    ("/js/pages/tasks.js",      200),
    ("/js/missing.js",          404),
    ("/api/v1/missing",         404),
];

/// The fixtures every request may need.
struct World {
    app: TestApp,
    /// A client that shows redirects instead of following them.
    client: reqwest::Client,
    /// Bearer per caller, in [`CALLERS`] order.
    tokens: Vec<Option<String>>,
    user_a: String,
    own_agent: String,
    used_agent: String,
    own_task: String,
}

/// Name of user A's agent (`PUT` sends it back unchanged).
const OWN_AGENT: &str = "Matrix Own";

#[tokio::test]
async fn every_documented_route_answers_every_caller_as_the_table_says() {
    let world = World::build().await;
    let (_, document) = world.app.get("/api/v1/openapi.json", None).await;
    assert_eq!(
        documented(&document),
        tabled(),
        "routes of the OpenAPI document (left) and rows of TABLE (right) differ"
    );
    ui_files_have_rows();

    let mut wrong = table_answers(&world).await;
    wrong.extend(ui_answers(&world).await);
    let sent = (TABLE.len() + UI.len()) * CALLERS.len();
    assert!(
        wrong.is_empty(),
        "{} of {sent} answers differ from the tables:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Sends every row of [`TABLE`] as every caller; returns the answers that differ.
async fn table_answers(world: &World) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut n = 0;
    for row in TABLE {
        for (caller, want) in CALLERS.into_iter().zip(row.want) {
            n += 1;
            let (status, body) = world.send(row, caller, n).await;
            let what = format!("{} {} as {caller:?}", row.method, row.path);
            if status != want {
                wrong.push(format!("{what}: want {want}, got {status} {body}"));
                continue;
            }
            // A revoked key is told apart from no key at all.
            let code = match caller {
                Caller::Anonymous => "missing_token",
                _ => "invalid_token",
            };
            if status == 401 && !body.contains(code) {
                wrong.push(format!("{what}: 401 without {code}: {body}"));
            }
        }
    }
    wrong
}

/// Sends every row of [`UI`] as every caller; returns the answers that differ.
async fn ui_answers(world: &World) -> Vec<String> {
    let mut wrong = Vec::new();
    for (path, want) in UI {
        let get = row("GET", path, Target::None, Empty, [*want; 9]);
        for caller in CALLERS {
            let (status, body) = world.send(&get, caller, 0).await;
            if status != *want {
                wrong.push(format!(
                    "GET {path} (outside the document) as {caller:?}: want {want}, got {status} {body}"
                ));
            }
        }
    }
    wrong
}

/// `METHOD path` of every operation in the document.
fn documented(document: &Value) -> BTreeSet<String> {
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, operations)| {
            let operations = operations.as_object().expect("a path item is an object");
            operations
                .keys()
                .filter(|m| {
                    [
                        "get", "put", "post", "delete", "options", "head", "patch", "trace",
                    ]
                    .contains(&m.as_str())
                })
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect()
}

/// `METHOD path` of every row, without its query.
fn tabled() -> BTreeSet<String> {
    TABLE
        .iter()
        .map(|row| {
            format!(
                "{} {}",
                row.method,
                row.path.split('?').next().unwrap_or_default()
            )
        })
        .collect()
}

/// Every file under assets/ui has a row in [`UI`] (`index.html` as its redirect).
fn ui_files_have_rows() {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("assets/ui is readable") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(format!("/{relative}"));
            }
        }
    }
    let root = repo_file("assets/ui");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !UI.iter().any(|(path, _)| path == f))
        .collect();
    assert!(
        missing.is_empty(),
        "files served by the UI without a row in UI: {missing:?}"
    );
}

impl World {
    async fn build() -> Self {
        let (app, admin) = spawn_with_admin().await;
        let a = app.signup("a@example.com").await;
        let b = app.signup("b@example.com").await;
        let user_a = app.get("/api/v1/users/me", Some(&a)).await.1["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = |scopes: &[&str]| {
            let body = json!({"name": "matrix", "scopes": scopes});
            let (app, a) = (&app, &a);
            async move {
                let (status, key) = app
                    .post_json("/api/v1/users/me/api-keys", Some(a), &body)
                    .await;
                assert_eq!(status, 201, "{key}");
                (
                    key["key"].as_str().unwrap().to_owned(),
                    key["id"].as_str().unwrap().to_owned(),
                )
            }
        };
        let agents_read = key(&["agents:read"]).await.0;
        let agents_write = key(&["agents:write"]).await.0;
        let tasks_read = key(&["tasks:read"]).await.0;
        let tasks_write = key(&["tasks:write"]).await.0;
        let (revoked, revoked_id) =
            key(&["agents:read", "agents:write", "tasks:read", "tasks:write"]).await;
        let path = format!("/api/v1/users/me/api-keys/{revoked_id}");
        assert_eq!(app.send(Method::DELETE, &path, Some(&a), None).await.0, 204);

        let own_agent = app
            .publish(&a, OWN_AGENT, wasm(ECHO_AGENT), "own", 0.0)
            .await;
        let used_agent = app
            .publish(&b, "Matrix Used", wasm(ECHO_AGENT), "used", 0.0)
            .await;
        let task = app.run_on(&a, &used_agent, "matrix").await;
        assert_eq!(task["status"], "completed", "{task}");
        let own_task = task["id"].as_str().unwrap().to_owned();
        let tokens = vec![
            None,
            Some(a),
            Some(b),
            Some(admin),
            Some(agents_read),
            Some(agents_write),
            Some(tasks_read),
            Some(tasks_write),
            Some(revoked),
        ];
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            app,
            client,
            tokens,
            user_a,
            own_agent,
            used_agent,
            own_task,
        }
    }

    /// A new session of `caller`'s account, when the caller is a signed-in user.
    async fn fresh_session(&self, caller: Caller) -> Option<String> {
        let email = match caller {
            Caller::UserA => "a@example.com",
            Caller::UserB => "b@example.com",
            Caller::Admin => "admin@example.com",
            _ => return None,
        };
        let (status, body) = self
            .app
            .post_json(
                "/api/v1/users/login",
                None,
                &json!({"email": email, "password": ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        Some(body["token"].as_str().unwrap().to_owned())
    }

    fn token(&self, caller: Caller) -> Option<&str> {
        let i = CALLERS.iter().position(|c| *c == caller).unwrap();
        self.tokens[i].as_deref()
    }

    /// Sends `row` as `caller`; the `n`th request of the run. Returns the status and the body.
    async fn send(&self, row: &Row, caller: Caller, n: usize) -> (u16, String) {
        let id = match row.target {
            Target::None => String::new(),
            OwnAgent => self.own_agent.clone(),
            FreshAgent => self.fresh_agent(n).await,
            UsedAgent => self.used_agent.clone(),
            OwnTask => self.own_task.clone(),
            FreshKey => self.fresh_key().await,
            Target::UserA => self.user_a.clone(),
            OwnSession => String::new(),
        };
        let path = row.path.replace("{id}", &id).replace("{user_id}", &id);
        let method = Method::from_bytes(row.method.as_bytes()).unwrap();
        let mut request = self.client.request(method, self.app.url(&path));
        let session = match row.target {
            OwnSession => self.fresh_session(caller).await,
            _ => None,
        };
        if let Some(token) = session.as_deref().or(self.token(caller)) {
            request = request.bearer_auth(token);
        }
        request = match row.body {
            Empty => request,
            Json(body) => request.json(&body(self, n)),
            Upload => request
                .multipart(upload_form(n))
                .header("prefer", "wait=60"),
            Register => request
                .multipart(register_form(n))
                .header("prefer", "wait=60"),
            NewVersion => request
                .multipart(module_form().text("version", format!("3.{n}.0")))
                .header("prefer", "wait=60"),
            Module => request.multipart(module_form()).header("prefer", "wait=60"),
            Upgrade => request
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        };
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        // A switched protocol has no body to read: the socket is simply dropped.
        if status == 101 {
            return (status, String::new());
        }
        let mut body = response.text().await.unwrap_or_default();
        body.truncate(body.floor_char_boundary(300));
        (status, body)
    }

    /// A new agent of user A's whose current version is 2.0.0, with 1.0.0 still kept.
    async fn fresh_agent(&self, n: usize) -> String {
        let a = self.token(Caller::UserA).unwrap();
        let id = self
            .app
            .publish(
                a,
                &format!("Matrix Fresh {n}"),
                wasm(ECHO_AGENT),
                "fresh",
                0.0,
            )
            .await;
        let form = module_form().text("version", "2.0.0");
        let path = format!("/api/v1/agents/{id}/binary");
        let (status, body) = self
            .app
            .send_form(Method::POST, &path, Some(a), form, true)
            .await;
        assert_eq!(
            (status, &body["agent"]["version"]),
            (201, &json!("2.0.0")),
            "{body}"
        );
        id
    }

    /// A new API key of user A's; returns its id.
    async fn fresh_key(&self) -> String {
        let a = self.token(Caller::UserA);
        let (status, key) = self
            .app
            .post_json("/api/v1/users/me/api-keys", a, &key_request(self, 0))
            .await;
        assert_eq!(status, 201, "{key}");
        key["id"].as_str().unwrap().to_owned()
    }
}

fn module_form() -> Form {
    Form::new().part(
        "wasm_binary",
        Part::bytes(wasm(ECHO_AGENT)).file_name("agent.wasm"),
    )
}

fn upload_form(n: usize) -> Form {
    module_form()
        .text("name", format!("Matrix Upload {n}"))
        .text("capabilities", "upload")
        .text("price", "0")
}

fn register_form(n: usize) -> Form {
    let agent = json!({
        "name": format!("Matrix Register {n}"),
        "description": "registered in the seed's shape",
        "capabilities": ["register"],
        "pricing": {"per_execution": 0, "currency": "credits"},
    });
    module_form().text("agent", agent.to_string())
}

fn registration(_: &World, n: usize) -> Value {
    json!({"email": format!("new{n}@example.com"), "password": ADMIN_PASSWORD, "full_name": "New"})
}

fn login_a(_: &World, _: usize) -> Value {
    json!({"email": "a@example.com", "password": ADMIN_PASSWORD})
}

fn profile(_: &World, _: usize) -> Value {
    json!({"full_name": "Test User"})
}

fn short_password(_: &World, _: usize) -> Value {
    json!({"current_password": ADMIN_PASSWORD, "new_password": "short"})
}

fn key_request(_: &World, _: usize) -> Value {
    json!({"name": "matrix", "scopes": ["tasks:read"]})
}

fn description(_: &World, n: usize) -> Value {
    json!({"description": format!("edited by request {n}")})
}

fn own_manifest(_: &World, _: usize) -> Value {
    json!({"name": OWN_AGENT, "description": "replaced", "capabilities": ["own"], "price": 0})
}

fn rollback(_: &World, _: usize) -> Value {
    json!({"version": "1.0.0"})
}

fn review(_: &World, _: usize) -> Value {
    json!({"rating": 5, "comment": "did the job"})
}

fn input(_: &World, _: usize) -> Value {
    json!({"input": "any text"})
}

fn submission(w: &World, _: usize) -> Value {
    json!({"query": "matrix", "agent_id": w.used_agent, "budget": 0})
}

fn preview(_: &World, _: usize) -> Value {
    json!({"capabilities": ["used"], "budget": 1})
}

fn message(_: &World, _: usize) -> Value {
    json!({"type": "system", "data": {"message": "matrix", "level": "info"}})
}

fn message_to_a(w: &World, _: usize) -> Value {
    json!({"user_id": w.user_a, "type": "system", "data": {"message": "matrix", "level": "info"}})
}
