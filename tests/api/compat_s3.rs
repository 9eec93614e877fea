//! Compatibility mode, blobs in S3: the whole loop against a real S3 server (moto, see
//! `s3_server.rs`), big modules in parts, corruption, an S3 outage behind the breaker, bad
//! settings at start-up and a restart that recompiles nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use zerostate::Application;
use zerostate::config::{BreakerSettings, Settings};

use crate::helpers::{
    ADMIN_PASSWORD, DEADLINE, ECHO_AGENT, TestApp, assert_error, settings, spawn_with, wasm,
};
use crate::redis_server::free_port;
use crate::s3_server::{Relay, S3Server};

const BUCKET: &str = "modules";
const PREFIX: &str = "site-a";

/// Settings of an app keeping its modules in `bucket` of `s3`, under [`PREFIX`]; its breaker
/// opens after 2 failures for 3 s.
fn s3_settings(s3: &S3Server, dir: &std::path::Path) -> Settings {
    let mut s = settings(dir, 2);
    s.blobs = s3.settings(BUCKET, PREFIX);
    s.breakers.s3 = BreakerSettings {
        failure_threshold: 2,
        cooldown_ms: 3000,
        call_timeout_ms: 2000,
    };
    s
}

/// A moto server with the bucket, and an app over it.
async fn s3_app() -> (S3Server, TestApp) {
    let mut s3 = S3Server::start().await;
    s3.create_bucket(BUCKET).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_with(s3_settings(&s3, dir.path()), dir).await;
    (s3, app)
}

fn key(hash: &str) -> String {
    format!("{PREFIX}/blobs/{hash}")
}

fn sha256(bytes: &[u8]) -> String {
    zerostate::blob::sha256_hex(bytes)
}

/// `module` with a custom section of `padding` bytes appended: still the same program.
fn padded(module: Vec<u8>, padding: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"padding";
    let mut out = module;
    out.push(0); // custom section
    leb128(1 + name.len() + padding, &mut out);
    leb128(name.len(), &mut out);
    out.extend_from_slice(name);
    out.extend((0..padding).map(|i| (i % 251) as u8));
    out
}

async fn get_bytes(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Follows a signed link without following its redirect: the presigned URL it answers.
async fn presigned_url(app: &TestApp, token: &str, agent: &str) -> String {
    let (status, link) = app
        .get(&format!("/api/v1/agents/{agent}/binary/url"), Some(token))
        .await;
    assert_eq!(status, 200, "{link}");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects
        .get(app.url(link["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(location.contains("X-Amz-Expires="), "{location}");
    location
}

#[tokio::test]
async fn the_whole_loop_keeps_modules_in_s3_and_collection_deletes_them() {
    let (s3, app) = s3_app().await;
    let token = app.signup("owner@example.com").await;
    let module = wasm(ECHO_AGENT);
    let agent = app
        .publish(&token, "Echo", module.clone(), "echo", 0.0)
        .await;
    assert_eq!(
        s3.keys(BUCKET, PREFIX).await,
        [key(&sha256(&module))],
        "the module is one object under <prefix>/blobs/"
    );

    let task = app.run_on(&token, &agent, "hello s3").await;
    assert_eq!(task["status"], "completed", "{task}");

    let (status, bytes) = get_bytes(
        &app,
        &format!("/api/v1/agents/{agent}/binary"),
        Some(&token),
    )
    .await;
    assert_eq!((status, bytes == module), (200, true));
    let url = presigned_url(&app, &token, &agent).await;
    let presigned = reqwest::get(&url).await.unwrap();
    assert_eq!(presigned.status(), 200);
    assert_eq!(presigned.bytes().await.unwrap().to_vec(), module);

    let (status, body) = app.delete_agent(&token, &agent).await;
    assert_eq!(status, 204, "{body}");
    assert!(
        s3.keys(BUCKET, PREFIX).await.is_empty(),
        "the collected blob's object is deleted"
    );
}

#[tokio::test]
async fn a_module_over_8_mib_goes_up_in_parts_and_downloads_identical() {
    let (s3, app) = s3_app().await;
    let token = app.signup("owner@example.com").await;
    let module = padded(wasm(ECHO_AGENT), 9 * 1024 * 1024);
    let agent = app.publish(&token, "Big", module.clone(), "big", 0.0).await;
    let hash = sha256(&module);
    let meta = s3
        .client(BUCKET)
        .head(&Path::from(key(&hash)))
        .await
        .unwrap();
    assert_eq!(meta.size, module.len() as u64);
    // S3 (and moto) give a multipart object the ETag `"<md5 of part md5s>-<parts>"`.
    let etag = meta.e_tag.unwrap_or_default();
    assert!(etag.trim_matches('"').ends_with("-2"), "{etag}");

    let (status, bytes) = get_bytes(
        &app,
        &format!("/api/v1/agents/{agent}/binary"),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&bytes), hash);
    let task = app.run_on(&token, &agent, "big").await;
    assert_eq!(task["status"], "completed", "{task}");
}

#[tokio::test]
async fn a_corrupted_object_is_refused_on_read_and_never_run() {
    let (s3, app) = s3_app().await;
    let token = app.signup("owner@example.com").await;
    let module = wasm(ECHO_AGENT);
    let agent = app
        .publish(&token, "Echo", module.clone(), "echo", 0.0)
        .await;
    // Someone with write access to the bucket swaps the object for another program.
    let swapped = wasm(r#"(module (memory (export "memory") 1) (func (export "_start")))"#);
    s3.client(BUCKET)
        .put(
            &Path::from(key(&sha256(&module))),
            PutPayload::from(swapped),
        )
        .await
        .unwrap();

    let download = app
        .get(&format!("/api/v1/agents/{agent}/binary"), Some(&token))
        .await;
    assert_error(&download, 500, "internal_error");

    // Restarted without its compiled code, the server must read the module from S3 again:
    // the swapped bytes are refused, and the agent's task fails instead of running them.
    let dir = app.stop().await;
    std::fs::remove_dir_all(dir.path().join(zerostate::MODULES_DIR)).unwrap();
    let app = spawn_with(s3_settings(&s3, dir.path()), dir).await;
    let (status, login) = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "owner@example.com", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();
    let task = app.run_on(&token, &agent, "x").await;
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error_code"], "agent_unavailable", "{task}");
}

#[tokio::test]
async fn while_s3_is_down_uploads_fail_fast_loaded_agents_run_and_it_heals_by_itself() {
    let (mut s3, app) = s3_app().await;
    let token = app.signup("owner@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    s3.stop();

    // Two failed calls open the breaker; from then on an upload fails without calling S3.
    let other = |n: usize| padded(wasm(ECHO_AGENT), n);
    for n in 1..=2 {
        let refused = app
            .upload(&token, &format!("A{n}"), other(n), "a", 0.0)
            .await;
        assert_error(&refused, 503, "dependency_unavailable");
    }
    let (mut fastest, mut slowest) = (Duration::MAX, Duration::ZERO);
    for n in 3..=12 {
        let started = Instant::now();
        let response = app
            .client
            .post(app.url("/api/v1/agents/upload"))
            .bearer_auth(&token)
            .multipart(
                reqwest::multipart::Form::new()
                    .part(
                        "wasm_binary",
                        reqwest::multipart::Part::bytes(other(n)).file_name("a.wasm"),
                    )
                    .text("name", format!("A{n}"))
                    .text("version", "1.0.0")
                    .text("capabilities", "a"),
            )
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        (fastest, slowest) = (fastest.min(elapsed), slowest.max(elapsed));
        assert_eq!(response.status(), 503);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3).contains(&retry_after), "{retry_after}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "dependency_unavailable", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("s3"));
        assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
    }
    eprintln!("uploads refused by the open s3 breaker: round trip {fastest:?} to {slowest:?}");

    let (status, health) = app.get("/health", None).await;
    assert_eq!((status, &health["status"]), (503, &json!("degraded")));
    assert_eq!(health["checks"]["dependencies"]["s3"]["status"], "open");
    let (status, ready) = app.get("/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["dependencies"]["s3"]["status"], "open");
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("zerostate_breaker_state{dependency=\"s3\"} 2"),
        "{metrics}"
    );

    // A module the executor holds runs without S3.
    let task = app.run_on(&token, &echo, "still here").await;
    assert_eq!(task["status"], "completed", "{task}");

    // S3 comes back (moto forgets its buckets; the fixture re-creates ours): after the
    // cool-down a probe closes the breaker, and uploads work again with no step on our side.
    s3.restart().await;
    let healed = async {
        loop {
            let response = app.upload(&token, "Back", other(99), "back", 0.0).await;
            if response.0 == 201 {
                return response;
            }
            assert_error(&response, 503, "dependency_unavailable");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (_, body) = tokio::time::timeout(DEADLINE, healed).await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    let (status, health) = app.get("/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["checks"]["dependencies"]["s3"]["status"], "closed");
}

/// `Application::build`'s error with `blobs` changed by `configure`, as text.
async fn start_up_error(s3: &S3Server, configure: impl FnOnce(&mut Settings)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = s3_settings(s3, dir.path());
    configure(&mut settings);
    match Application::build(settings).await {
        Ok(_) => panic!("start-up should fail"),
        Err(e) => {
            eprintln!("start-up error: {e}");
            e.to_string()
        }
    }
}

#[tokio::test]
async fn bad_s3_settings_stop_start_up_with_an_error_naming_the_setting() {
    let mut s3 = S3Server::start().await;
    s3.create_bucket(BUCKET).await;

    let nobody = format!("http://127.0.0.1:{}", free_port());
    let error = start_up_error(&s3, |s| s.blobs.endpoint = nobody.clone()).await;
    assert!(
        error.contains("blobs.endpoint") && error.contains("unreachable"),
        "{error}"
    );

    let error = start_up_error(&s3, |s| s.blobs.bucket = "no-such-bucket".into()).await;
    assert!(
        error.contains("blobs.bucket") && error.contains("no-such-bucket"),
        "{error}"
    );

    let error = start_up_error(&s3, |s| s.blobs.bucket.clear()).await;
    assert!(error.contains("blobs.bucket is not set"), "{error}");

    let error = start_up_error(&s3, |s| s.blobs.endpoint = "not a url".into()).await;
    assert!(error.contains("blobs.endpoint"), "{error}");

    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        let error = start_up_error(&s3, |s| s.blobs.access_key_id.clear()).await;
        assert!(error.contains("blobs.access_key_id"), "{error}");
    }

    // moto checks credentials only when told to; then it knows no key but its IAM users'
    // (none here), so every key is refused, before the bucket is even looked up.
    let strict = S3Server::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]).await;
    let error = start_up_error(&strict, |_| {}).await;
    assert!(error.contains("blobs.access_key_id"), "{error}");
    assert!(
        !error.contains(crate::s3_server::SECRET_ACCESS_KEY),
        "{error}"
    );
}

#[tokio::test]
async fn a_restart_with_s3_blobs_recompiles_nothing() {
    let (s3, app) = s3_app().await;
    let token = app.signup("owner@example.com").await;
    for n in 0..3 {
        app.publish(
            &token,
            &format!("Echo{n}"),
            padded(wasm(ECHO_AGENT), n),
            "echo",
            0.0,
        )
        .await;
    }
    let dir = app.stop().await;
    let app = spawn_with(s3_settings(&s3, dir.path()), dir).await;
    assert_eq!((app.warmup.loaded, app.warmup.compiled), (3, 0));
    let (_, ready) = app.get("/ready", None).await;
    assert_eq!(ready["agents"]["compiled"], 0, "{ready}");
}

#[tokio::test]
async fn an_object_a_deletion_left_during_an_outage_is_deleted_at_the_next_start() {
    let mut s3 = S3Server::start().await;
    s3.create_bucket(BUCKET).await;
    let relay = Relay::to(s3.port).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let relayed = |dir: &std::path::Path| {
        let mut settings = s3_settings(&s3, dir);
        settings.blobs.endpoint = relay.endpoint();
        settings
    };
    let app = spawn_with(relayed(dir.path()), dir).await;
    let token = app.signup("owner@example.com").await;
    let agent = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;

    // S3 unreachable: the agent is deleted all the same; its object stays behind for now.
    relay.cut();
    let (status, body) = app.delete_agent(&token, &agent).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(s3.keys(BUCKET, PREFIX).await.len(), 1);

    relay.mend();
    let dir = app.stop().await;
    let _app = spawn_with(relayed(dir.path()), dir).await;
    assert!(
        s3.keys(BUCKET, PREFIX).await.is_empty(),
        "the start-up sweep deleted the object"
    );
}
