//! Rate limits, the sign-in lockout and sign-out, through the real HTTP API. Every test client
//! is 127.0.0.1; other client addresses come through `X-Forwarded-For` from 127.0.0.1 set as a
//! trusted proxy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zerostate::config::{RateLimit, Settings};

use crate::helpers::{
    ADMIN_PASSWORD, DEADLINE, TestApp, assert_error, close_frame, read, settings, spawn_with,
};

/// An app whose settings `configure` changed from the tests' generous ones.
async fn spawn_limited(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings(dir.path(), 1);
    configure(&mut settings);
    spawn_with(settings, dir).await
}

fn limit(requests: u32, period_secs: u64, burst: u32) -> RateLimit {
    RateLimit {
        requests,
        period_secs,
        burst,
    }
}

/// A response's status, named headers and JSON body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    /// `Retry-After` as whole seconds, which it must be.
    fn retry_after(&self) -> u64 {
        let secs: u64 = self.header("retry-after").parse().expect("whole seconds");
        assert!(secs >= 1);
        secs
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let headers = response.headers().clone();
    let (status, body) = read(response).await;
    Answer {
        status,
        headers,
        body,
    }
}

/// A sign-in, from `client` if given (through the trusted proxy).
async fn login(app: &TestApp, email: &str, password: &str, client: Option<&str>) -> Answer {
    let mut request = app
        .client
        .post(app.url("/api/v1/users/login"))
        .json(&json!({"email": email, "password": password}));
    if let Some(client) = client {
        request = request.header("x-forwarded-for", client);
    }
    answer(request).await
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    answer(request).await
}

async fn metric(app: &TestApp, series: &str) -> Option<f64> {
    let text = app.text("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_login_flood_from_one_address_gets_429_with_retry_after_and_ratelimit_headers() {
    // 3 sign-ins at once, then one an hour; the lockout off so only the address counts.
    let app = spawn_limited(|s| {
        s.rate_limits.login = limit(1, 3600, 3);
        s.rate_limits.lockout.failures = 0;
        s.rate_limits.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let attacker = Some("198.51.100.7");
    for left in (0..3).rev() {
        let wrong = login(
            &app,
            &format!("u{left}@example.com"),
            "wrong password",
            attacker,
        )
        .await;
        assert_eq!(
            (wrong.status, wrong.code()),
            (401, "invalid_credentials"),
            "{}",
            wrong.body
        );
        assert_eq!(wrong.header("ratelimit-policy"), "\"login\";q=3;w=10800");
        assert!(
            wrong
                .header("ratelimit")
                .starts_with(&format!("\"login\";r={left};t=")),
            "{}",
            wrong.header("ratelimit")
        );
    }
    let refused = login(&app, "u9@example.com", "wrong password", attacker).await;
    assert_eq!((refused.status, refused.code()), (429, "rate_limited"));
    let wait = refused.retry_after();
    assert!((3000..=3600).contains(&wait), "{wait}");
    assert_eq!(refused.header("ratelimit-policy"), "\"login\";q=3;w=10800");
    assert_eq!(
        refused.header("ratelimit"),
        format!("\"login\";r=0;t={wait}")
    );
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sign-ins from this address")
    );
    // Another address is counted apart; an IPv6 client by its /64.
    let other = login(
        &app,
        "u9@example.com",
        "wrong password",
        Some("203.0.113.9"),
    )
    .await;
    assert_eq!(other.status, 401);
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3"] {
        assert_eq!(
            login(&app, "v@example.com", "wrong pw", Some(host))
                .await
                .status,
            401
        );
    }
    let same_64 = login(&app, "v@example.com", "wrong pw", Some("2001:db8:1:2::99")).await;
    assert_eq!(same_64.status, 429);
    // Expected rejections are counted, not logged.
    let refusals = metric(&app, "zerostate_rate_limited_total{limit=\"login\"}").await;
    assert!(refusals.is_some_and(|n| n >= 2.0), "{refusals:?}");
    app.stop().await;
}

#[tokio::test]
async fn x_forwarded_for_counts_only_when_the_peer_is_a_trusted_proxy() {
    let app = spawn_limited(|s| {
        s.rate_limits.login = limit(1, 3600, 1);
        s.rate_limits.lockout.failures = 0;
    })
    .await;
    assert_eq!(
        login(&app, "a@example.com", "wrong pw", Some("10.0.0.1"))
            .await
            .status,
        401
    );
    // No trusted proxies: the header is the client's word and ignored; 127.0.0.1 is counted.
    let forged = login(&app, "a@example.com", "wrong pw", Some("10.0.0.2")).await;
    assert_eq!((forged.status, forged.code()), (429, "rate_limited"));
    app.stop().await;

    let app = spawn_limited(|s| {
        s.rate_limits.login = limit(1, 3600, 1);
        s.rate_limits.lockout.failures = 0;
        s.rate_limits.trusted_proxies = vec!["127.0.0.0/8".into(), "10.9.0.0/16".into()];
    })
    .await;
    // The right-most hop that is not a trusted proxy is the client, whatever it claims to its
    // left.
    let via_two = "192.0.2.1, 198.51.100.1, 10.9.0.5";
    assert_eq!(
        login(&app, "a@example.com", "wrong pw", Some(via_two))
            .await
            .status,
        401
    );
    let same = login(
        &app,
        "a@example.com",
        "wrong pw",
        Some("6.6.6.6, 198.51.100.1"),
    )
    .await;
    assert_eq!(same.status, 429, "the same client behind the same proxies");
    app.stop().await;
}

#[tokio::test]
async fn a_locked_email_answers_the_same_whether_or_not_it_has_an_account() {
    let app = spawn_limited(|s| {
        s.rate_limits.lockout.failures = 3;
        s.rate_limits.lockout.base_secs = 1;
        s.rate_limits.lockout.max_secs = 2;
    })
    .await;
    app.signup("ada@example.com").await;
    let mut locked = Vec::new();
    for email in ["ada@example.com", "nobody@example.com"] {
        for _ in 0..3 {
            let wrong = login(&app, email, "wrong password", None).await;
            assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"));
        }
        // Locked now: a wrong password and the right one get the same answer.
        let wrong = login(&app, email, "wrong password", None).await;
        let right = login(&app, email, ADMIN_PASSWORD, None).await;
        for refused in [&wrong, &right] {
            assert_eq!(
                (refused.status, refused.code()),
                (429, "too_many_attempts"),
                "{email}: {}",
                refused.body
            );
            assert_eq!(refused.retry_after(), 1);
        }
        assert_eq!(wrong.body, right.body);
        locked.push(right.body);
    }
    assert_eq!(
        locked[0], locked[1],
        "an account's lock reads as an unknown email's"
    );
    // The lock ends on its own (no password was checked while it held), and the right
    // password works again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let again = login(&app, "ada@example.com", ADMIN_PASSWORD, None).await;
        if again.status == 200 {
            break;
        }
        assert_eq!(again.code(), "too_many_attempts");
        assert!(Instant::now() < deadline, "the lock never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The success cleared the count: the next wrong password is an ordinary 401.
    let wrong = login(&app, "ada@example.com", "wrong password", None).await;
    assert_eq!(wrong.status, 401);
    let lockouts = metric(&app, "zerostate_rate_limited_total{limit=\"lockout\"}").await;
    assert!(lockouts.is_some_and(|n| n >= 4.0), "{lockouts:?}");
    app.stop().await;
}

#[tokio::test]
async fn signups_from_one_address_stop_at_the_burst() {
    let app = spawn_limited(|s| s.rate_limits.signup = limit(1, 3600, 2)).await;
    app.signup("one@example.com").await;
    app.signup("two@example.com").await;
    let refused = answer(app.client.post(app.url("/api/v1/users/register")).json(
        &json!({"email": "three@example.com", "password": ADMIN_PASSWORD, "full_name": "Three"}),
    ))
    .await;
    assert_eq!((refused.status, refused.code()), (429, "rate_limited"));
    let wait = refused.retry_after();
    assert!((3000..=3600).contains(&wait), "one sign-up an hour: {wait}");
    assert_eq!(refused.header("ratelimit-policy"), "\"signup\";q=2;w=7200");
    app.stop().await;
}

#[tokio::test]
async fn the_api_limit_is_per_user_and_submit_has_a_tighter_one() {
    let app = spawn_limited(|s| {
        s.rate_limits.api = limit(1, 60, 8);
        s.rate_limits.submit = limit(1, 60, 2);
    })
    .await;
    let ada = app.signup("ada@example.com").await;
    let grace = app.signup("grace@example.com").await;
    let submit = || json!({"query": "x", "budget": 1});
    for left in [1, 0] {
        let sent = call(
            &app,
            reqwest::Method::POST,
            "/api/v1/tasks/submit",
            &ada,
            Some(submit()),
        )
        .await;
        assert_ne!(sent.status, 429, "{}", sent.body);
        assert_eq!(
            sent.header("ratelimit-policy"),
            "\"api\";q=8;w=480, \"submit\";q=2;w=120"
        );
        assert!(
            sent.header("ratelimit")
                .contains(&format!("\"submit\";r={left};"))
        );
    }
    let refused = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/tasks/submit",
        &ada,
        Some(submit()),
    )
    .await;
    assert_eq!((refused.status, refused.code()), (429, "rate_limited"));
    assert!(refused.header("ratelimit").contains("\"submit\";r=0;t="));
    assert!(refused.retry_after() <= 60);
    // The api budget: 3 used by the submits, 1 by the key, 4 by these.
    let (status, key) = app
        .post_json(
            "/api/v1/users/me/api-keys",
            Some(&ada),
            &json!({"name": "script", "scopes": ["tasks:read"]}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    for _ in 0..4 {
        let me = call(&app, reqwest::Method::GET, "/api/v1/users/me", &ada, None).await;
        assert_eq!(me.status, 200);
    }
    let over = call(&app, reqwest::Method::GET, "/api/v1/users/me", &ada, None).await;
    assert_eq!((over.status, over.code()), (429, "rate_limited"));
    assert_eq!(over.header("ratelimit-policy"), "\"api\";q=8;w=480");
    assert!(over.retry_after() <= 60);
    // The user's API key shares their budget (a hundred keys are not a hundred budgets);
    // another user has one of their own.
    let scripted = call(&app, reqwest::Method::GET, "/api/v1/users/me", &key, None).await;
    assert_eq!((scripted.status, scripted.code()), (429, "rate_limited"));
    let other = call(&app, reqwest::Method::GET, "/api/v1/users/me", &grace, None).await;
    assert_eq!(other.status, 200);
    // A request without a valid credential is not counted against anyone: it fails as before.
    let anonymous = app.get("/api/v1/users/me", Some("not-a-token")).await;
    assert_error(&anonymous, 401, "invalid_token");
    app.stop().await;
}

#[tokio::test]
async fn logout_ends_the_session_here_and_after_a_restart_and_closes_its_sockets() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    let first = app.signup("ada@example.com").await;
    let (status, body) = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "ada@example.com", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, 200);
    let second = body["token"].as_str().unwrap().to_owned();
    let mut socket = app.socket(&first).await;
    let mut other_socket = app.socket(&second).await;

    let (status, _) = app
        .post_json("/api/v1/users/logout", Some(&first), &json!({}))
        .await;
    assert_eq!(status, 204);
    let ended = app.get("/api/v1/users/me", Some(&first)).await;
    assert!(assert_error(&ended, 401, "invalid_token").contains("signed out"));
    assert_eq!(close_frame(&mut socket).await.0, 1008);
    assert_eq!(app.get("/api/v1/users/me", Some(&second)).await.0, 200);
    // The other session's socket is still served.
    let (status, _) = app
        .post_json("/api/v1/users/logout", Some(&first), &json!({}))
        .await;
    assert_eq!(status, 401, "a signed-out token cannot sign out again");
    drop(other_socket.close(None).await);
    // API keys do not sign out.
    let (_, key) = app
        .post_json(
            "/api/v1/users/me/api-keys",
            Some(&second),
            &json!({"name": "k", "scopes": ["tasks:read"]}),
        )
        .await;
    let key = key["key"].as_str().unwrap();
    let refused = app
        .post_json("/api/v1/users/logout", Some(key), &json!({}))
        .await;
    assert_error(&refused, 403, "insufficient_scope");
    let (_, spec) = app.get("/api/v1/openapi.json", None).await;
    let logout = &spec["paths"]["/api/v1/users/logout"]["post"];
    assert!(logout["responses"]["204"].is_object(), "{logout}");
    assert!(
        logout["responses"]["429"]["headers"]["Retry-After"].is_object(),
        "{logout}"
    );
    let dir = app.stop().await;

    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    let ended = app.get("/api/v1/users/me", Some(&first)).await;
    assert_error(&ended, 401, "invalid_token");
    assert_eq!(app.get("/api/v1/users/me", Some(&second)).await.0, 200);
    app.stop().await;
}

/// Real sign-ins while 64 clients at 64 other addresses send wrong passwords as fast as they
/// are answered, with the default limits: each succeeds. Prints the latencies (`--nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_login_succeeds_during_a_wrong_password_flood_from_other_addresses() {
    let app = Arc::new(
        spawn_limited(|s| {
            s.rate_limits = Default::default();
            s.rate_limits.trusted_proxies = vec!["127.0.0.1".into()];
        })
        .await,
    );
    app.signup("ada@example.com").await;
    // One sign-in alone: what hashing costs on this build and machine.
    let started = Instant::now();
    let alone = login(&app, "ada@example.com", ADMIN_PASSWORD, Some("192.0.2.1")).await;
    assert_eq!(alone.status, 200);
    let alone = started.elapsed();

    // The flood runs on a thread and runtime of its own, as another process would: its
    // answered-at-once 429s must not starve the server's runtime of turns in this one.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let (base, stop) = (app.base.clone(), stop.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(flood_logins(base, stop))
        })
    };
    let mut latencies = Vec::new();
    // Sign-ins while the flood's first wave (a new address each, nothing tells them from a
    // person's first sign-in) is queued, then through its next seconds, each from an address
    // of its own (as many people would).
    for (n, pause) in [100, 400, 500, 500, 500].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let started = Instant::now();
        let address = format!("192.0.2.{}", n + 10);
        let real = login(&app, "ada@example.com", ADMIN_PASSWORD, Some(&address)).await;
        assert_eq!(real.status, 200, "{}", real.body);
        latencies.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (hashed, refused) = flood.join().unwrap();
    let mut sorted = latencies.clone();
    sorted.sort();
    let (median, worst) = (sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
    eprintln!(
        "login alone {alone:?}; during a 64-address flood ({hashed} wrong passwords checked, \
         {refused} refused with 429): {latencies:?}, median {median:?}, worst {worst:?}"
    );
    // Every real sign-in succeeded (none refused by the flood's limits, none timed out). How
    // long they took is a figure, not a test: `cargo bench --bench login_flood` measures it on
    // the binary with the flood in another process.
    assert!(
        hashed > 0 && refused > 0,
        "the flood ran: {hashed} checked, {refused} refused"
    );
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
}

/// 64 clients, each at its own address (`10.0.0.N` through the trusted proxy), sending wrong
/// passwords for ever new emails as fast as they are answered, until `stop` (60 s at most). Returns
/// how many were checked and how many refused with 429.
async fn flood_logins(base: String, stop: Arc<std::sync::atomic::AtomicBool>) -> (u32, u32) {
    let client = reqwest::Client::new();
    let clients: Vec<_> = (0..64)
        .map(|n| {
            let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut hashed, mut refused) = (0u32, 0u32);
                let address = format!("10.0.0.{}", n + 1);
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    // A new email each time: no lockout helps, only the address limit.
                    let email = format!("victim{n}.{}@example.com", hashed + refused);
                    let response = client
                        .post(format!("{base}/api/v1/users/login"))
                        .header("x-forwarded-for", &address)
                        .json(&json!({"email": email, "password": "wrong password"}))
                        .send()
                        .await
                        .unwrap();
                    match response.status().as_u16() {
                        429 => refused += 1,
                        _ => hashed += 1,
                    }
                }
                (hashed, refused)
            })
        })
        .collect();
    let (mut hashed, mut refused) = (0, 0);
    for client in clients {
        let (h, r) = client.await.unwrap();
        hashed += h;
        refused += r;
    }
    (hashed, refused)
}
