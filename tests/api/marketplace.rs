//! The marketplace API: who may change an agent, versions and rollback, shared and collected
//! blobs, signed links, search, reviews, input schemas and the `agent_update` messages.

use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::*;

/// A module that writes `text` to stdout: distinct bytes per text.
fn says(text: &str) -> Vec<u8> {
    wasm(&format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{text}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = text.len()
    ))
}

/// Passes the upload's declaration check, then is rejected in the background (nesting).
fn too_deep() -> Vec<u8> {
    wasm(&format!(
        r#"(module (memory (export "memory") 1) (func (export "_start") {} {}))"#,
        "block ".repeat(3_000),
        "end ".repeat(3_000)
    ))
}

fn module_part(module: Vec<u8>) -> Part {
    Part::bytes(module).file_name("agent.wasm")
}

async fn new_version(
    app: &TestApp,
    token: &str,
    id: &str,
    version: &str,
    module: Vec<u8>,
) -> (u16, Value) {
    let form = Form::new()
        .part("wasm_binary", module_part(module))
        .text("version", version.to_owned());
    app.send_form(
        Method::POST,
        &format!("/api/v1/agents/{id}/binary"),
        Some(token),
        form,
        true,
    )
    .await
}

async fn download(app: &TestApp, url: &str, token: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = app.client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

fn versions_of(body: &Value) -> Vec<(String, String)> {
    body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_owned(),
                v["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn only_the_owner_or_an_admin_changes_an_agent_and_everyone_signed_in_reads_it() {
    let (app, admin) = spawn_with_admin().await;
    let owner = app.signup("owner@example.com").await;
    let other = app.signup("other@example.com").await;
    let id = app
        .publish(&owner, "Owned", says("one"), "owned", 0.1)
        .await;
    let agent = format!("/api/v1/agents/{id}");

    // Reads: anonymous 401, every signed-in user 200.
    for path in [
        agent.clone(),
        format!("{agent}/versions"),
        format!("{agent}/reviews"),
        format!("{agent}/binary/url"),
        "/api/v1/agents?q=owned".to_owned(),
        "/api/v1/agents/search?q=owned".to_owned(),
    ] {
        assert_error(&app.get(&path, None).await, 401, "missing_token");
        for token in [&owner, &other, &admin] {
            let (status, body) = app.get(&path, Some(token)).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
    let (status, _) = download(&app, &app.url(&format!("{agent}/binary")), Some(&other)).await;
    assert_eq!(status, 200);
    let (status, _) = download(&app, &app.url(&format!("{agent}/binary")), None).await;
    assert_eq!(status, 401);
    let (status, body) = app
        .post_json(
            &format!("{agent}/validate-input"),
            Some(&other),
            &json!({"input": {}}),
        )
        .await;
    assert_eq!((status, &body["valid"]), (200, &json!(true)), "{body}");

    // Changes: anonymous 401, another user 403; the owner and an admin may.
    let patch = |name: &str| json!({"description": format!("edited by {name}")});
    assert_error(
        &app.send(Method::PATCH, &agent, None, Some(&patch("nobody")))
            .await,
        401,
        "missing_token",
    );
    assert_error(
        &app.send(Method::PATCH, &agent, Some(&other), Some(&patch("other")))
            .await,
        403,
        "agent_forbidden",
    );
    let (status, body) = app
        .send(Method::PATCH, &agent, Some(&owner), Some(&patch("owner")))
        .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (200, Some("edited by owner"))
    );
    let (status, body) = app
        .send(Method::PATCH, &agent, Some(&admin), Some(&patch("admin")))
        .await;
    assert_eq!(
        (status, body["description"].as_str()),
        (200, Some("edited by admin"))
    );

    let put = json!({"name": "Owned", "capabilities": ["owned"], "price": 0.2});
    assert_error(
        &app.send(Method::PUT, &agent, Some(&other), Some(&put))
            .await,
        403,
        "agent_forbidden",
    );
    let (status, body) = app
        .send(Method::PUT, &agent, Some(&owner), Some(&put))
        .await;
    // PUT replaces: the description left out is empty again.
    assert_eq!(
        (status, body["price"].as_f64(), body["description"].as_str()),
        (200, Some(0.2), Some(""))
    );

    assert_error(
        &new_version(&app, &other, &id, "1.1.0", says("two")).await,
        403,
        "agent_forbidden",
    );
    let (status, body) = new_version(&app, &admin, &id, "1.1.0", says("two")).await;
    assert_eq!(
        (status, body["agent"]["version"].as_str()),
        (201, Some("1.1.0")),
        "{body}"
    );
    let replace = async |token: &str| {
        let form = Form::new().part("wasm_binary", module_part(says("three")));
        app.send_form(
            Method::PUT,
            &format!("{agent}/binary"),
            Some(token),
            form,
            true,
        )
        .await
    };
    assert_error(&replace(&other).await, 403, "agent_forbidden");
    let (status, body) = replace(&owner).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    for (token, status) in [(&other, 403), (&owner, 200)] {
        let (s, body) = app
            .post_json(
                &format!("{agent}/rollback"),
                Some(token),
                &json!({"version": "1.0.0"}),
            )
            .await;
        assert_eq!(s, status, "{body}");
    }
    for (token, status) in [(&other, 403), (&admin, 200)] {
        let (s, body) = app
            .send(
                Method::DELETE,
                &format!("{agent}/binary?version=1.1.0"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(s, status, "{body}");
    }
    assert_error(
        &app.send(Method::DELETE, &agent, Some(&other), None).await,
        403,
        "agent_forbidden",
    );
    assert_error(
        &app.send(Method::DELETE, &agent, None, None).await,
        401,
        "missing_token",
    );
    let (status, _) = app.send(Method::DELETE, &agent, Some(&admin), None).await;
    assert_eq!(status, 204);
    assert_error(&app.get(&agent, Some(&owner)).await, 404, "agent_not_found");
    assert_error(
        &app.send(Method::DELETE, &agent, Some(&owner), None).await,
        404,
        "agent_not_found",
    );
}

#[tokio::test]
async fn versions_build_beside_the_current_one_roll_back_and_delete_by_the_rules() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let id = app
        .publish(&token, "Versioned", says("v1"), "versioned", 0.0)
        .await;
    let agent = format!("/api/v1/agents/{id}");
    let run = |query: &'static str| app.run_on(&token, &id, query);

    let (status, body) = new_version(&app, &token, &id, "1.1.0", says("v1.1")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (
            body["version"]["status"].as_str(),
            body["agent"]["version"].as_str()
        ),
        (Some("ready"), Some("1.1.0"))
    );
    assert_eq!(run("x").await["result"], "v1.1");
    assert_error(
        &new_version(&app, &token, &id, "1.1.0", says("again")).await,
        409,
        "version_exists",
    );
    assert_error(
        &new_version(&app, &token, &id, "1.2", says("bad")).await,
        400,
        "invalid_request",
    );

    // A version rejected in its build never becomes current; the agent keeps serving.
    let (status, body) = new_version(&app, &token, &id, "2.0.0", too_deep()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"]["status"], "rejected", "{body}");
    assert_eq!(
        (
            body["agent"]["version"].as_str(),
            body["agent"]["status"].as_str()
        ),
        (Some("1.1.0"), Some("ready"))
    );
    assert_eq!(run("x").await["result"], "v1.1");

    let (_, list) = app.get(&format!("{agent}/versions"), Some(&token)).await;
    assert_eq!(
        versions_of(&list),
        [
            ("2.0.0".into(), "rejected".into()),
            ("1.1.0".into(), "ready".into()),
            ("1.0.0".into(), "ready".into())
        ]
    );
    assert_eq!(list["current_version"], "1.1.0");
    for v in list["versions"].as_array().unwrap() {
        assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
        assert!(
            v["size"].as_u64().unwrap() > 0 && v["created_at"].is_string(),
            "{v}"
        );
    }

    let rollback = async |version: &str| {
        app.post_json(
            &format!("{agent}/rollback"),
            Some(&token),
            &json!({"version": version}),
        )
        .await
    };
    assert_error(&rollback("2.0.0").await, 409, "version_not_ready");
    assert_error(&rollback("9.9.9").await, 404, "version_not_found");
    let (status, body) = rollback("1.0.0").await;
    assert_eq!(
        (status, body["version"].as_str()),
        (200, Some("1.0.0")),
        "{body}"
    );
    assert_eq!(run("x").await["result"], "v1");

    // Downloads: the current version, or any by ?version=, byte for byte.
    let (status, bytes) = download(&app, &app.url(&format!("{agent}/binary")), Some(&token)).await;
    assert_eq!((status, bytes), (200, says("v1")));
    let (_, bytes) = download(
        &app,
        &app.url(&format!("{agent}/binary?version=1.1.0")),
        Some(&token),
    )
    .await;
    assert_eq!(bytes, says("v1.1"));
    let (status, _) = download(
        &app,
        &app.url(&format!("{agent}/binary?version=3.0.0")),
        Some(&token),
    )
    .await;
    assert_eq!(status, 404);

    let delete = async |version: &str| {
        app.send(
            Method::DELETE,
            &format!("{agent}/binary?version={version}"),
            Some(&token),
            None,
        )
        .await
    };
    assert_error(&delete("1.0.0").await, 409, "version_is_current");
    assert_error(&delete("4.0.0").await, 404, "version_not_found");
    assert_error(
        &app.send(
            Method::DELETE,
            &format!("{agent}/binary"),
            Some(&token),
            None,
        )
        .await,
        400,
        "invalid_request",
    );
    for v in ["1.1.0", "2.0.0"] {
        let (status, body) = delete(v).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, list) = app.get(&format!("{agent}/versions"), Some(&token)).await;
    assert_eq!(versions_of(&list), [("1.0.0".into(), "ready".into())]);

    // PUT replaces the current version's bytes in place.
    let form = Form::new().part("wasm_binary", module_part(says("v1 fixed")));
    let (status, body) = app
        .send_form(
            Method::PUT,
            &format!("{agent}/binary"),
            Some(&token),
            form,
            true,
        )
        .await;
    assert_eq!(
        (status, body["version"].as_str(), body["status"].as_str()),
        (200, Some("1.0.0"), Some("ready")),
        "{body}"
    );
    assert_eq!(run("x").await["result"], "v1 fixed");
}

#[tokio::test]
async fn identical_bytes_share_one_blob_which_goes_with_the_last_version_using_it() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let module = says("shared");
    let a = app
        .publish(&token, "Twin-A", module.clone(), "twin", 0.0)
        .await;
    let b = app
        .publish(&token, "Twin-B", module.clone(), "twin", 0.0)
        .await;
    let (_, agent_a) = app.get(&format!("/api/v1/agents/{a}"), Some(&token)).await;
    let (_, agent_b) = app.get(&format!("/api/v1/agents/{b}"), Some(&token)).await;
    let hash = agent_a["binary_hash"].as_str().unwrap().to_owned();
    assert_eq!(agent_b["binary_hash"], hash.as_str());
    // A second version of A, kept, with bytes of its own.
    let (status, body) = new_version(&app, &token, &a, "2.0.0", says("only A")).await;
    assert_eq!(status, 201, "{body}");
    let own = body["version"]["sha256"].as_str().unwrap().to_owned();

    let (status, _) = app
        .send(
            Method::DELETE,
            &format!("/api/v1/agents/{a}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    // B still downloads and runs the shared bytes.
    let (status, bytes) = download(
        &app,
        &app.url(&format!("/api/v1/agents/{b}/binary")),
        Some(&token),
    )
    .await;
    assert_eq!((status, bytes), (200, module));
    assert_eq!(app.run_on(&token, &b, "x").await["result"], "shared");
    let (status, _) = app
        .send(
            Method::DELETE,
            &format!("/api/v1/agents/{b}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);

    let dir = app.stop().await;
    let store = zerostate::store::Store::open(&dir.path().join(zerostate::DB_FILE)).unwrap();
    let blobs = zerostate::blob::EmbeddedBlobs::new(store.clone());
    let blobs: &dyn zerostate::blob::BlobStore = &blobs;
    for gone in [&hash, &own] {
        assert_eq!(store.blob_refs(gone.clone()).await.unwrap(), 0);
        assert!(
            !blobs.exists(gone.clone()).await.unwrap(),
            "blob {gone} was not collected"
        );
    }
}

/// `GET /agents/{id}/binary/url` with a `Host` and `X-Forwarded-*` headers naming another
/// site, as a client poisoning links handed to others would send.
async fn link_asked_with_forged_headers(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/agents/{id}/binary/url")))
        .bearer_auth(token)
        .header("host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .send()
        .await
        .unwrap();
    read(resp).await
}

#[tokio::test]
async fn signed_links_are_built_on_the_configured_public_url_never_on_request_headers() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings = settings(dir.path(), 1);
    settings.public_url = "https://zerostate.example.com/market/".into();
    let app = spawn_with(settings, dir).await;
    let token = app.signup("owner@example.com").await;
    let id = app
        .publish(&token, "Linked", says("bytes"), "linked", 0.0)
        .await;
    let (status, link) = link_asked_with_forged_headers(&app, &token, &id).await;
    assert_eq!(status, 200, "{link}");
    let url = link["url"].as_str().unwrap();
    let prefix = format!("https://zerostate.example.com/market/api/v1/agents/{id}/binary?");
    assert!(url.starts_with(&prefix), "{url}");
    assert!(!url.contains("evil"), "{url}");
    // The same link, reached directly (as the proxy at public_url would forward it), works.
    let path = &url["https://zerostate.example.com/market".len()..];
    let (status, bytes) = download(&app, &app.url(path), None).await;
    assert_eq!((status, bytes), (200, says("bytes")));
}

#[tokio::test]
async fn signed_links_download_without_a_session_until_they_expire_or_are_changed() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let id = app
        .publish(&token, "Linked", says("bytes"), "linked", 0.0)
        .await;
    let (status, link) = link_asked_with_forged_headers(&app, &token, &id).await;
    assert_eq!(status, 200, "{link}");
    // Without `public_url` the link is relative: the forged headers are not in it.
    let path = link["url"].as_str().unwrap();
    assert!(
        path.starts_with(&format!(
            "/api/v1/agents/{id}/binary?version=1.0.0&expires="
        )),
        "{path}"
    );
    let url = app.url(path);
    let expires_at = time::OffsetDateTime::parse(
        link["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ttl = expires_at - time::OffsetDateTime::now_utc();
    assert!(
        ttl > time::Duration::minutes(59) && ttl <= time::Duration::hours(1),
        "{ttl}"
    );

    let (status, bytes) = download(&app, &url, None).await;
    assert_eq!((status, bytes), (200, says("bytes")));

    let (status, bytes) =
        download(&app, &url.replace("version=1.0.0", "version=1.0.1"), None).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&bytes));
    let sig_at = url.find("signature=").unwrap() + "signature=".len();
    let mut tampered = url.clone().into_bytes();
    tampered[sig_at] = if tampered[sig_at] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let resp = app.client.get(&tampered).send().await.unwrap();
    let body = read(resp).await;
    assert_error(&body, 403, "invalid_signature");
    let later = url.replace("expires=", "expires=9");
    assert_error(
        &read(app.client.get(&later).send().await.unwrap()).await,
        403,
        "invalid_signature",
    );

    // A correctly signed link whose time has passed.
    let signer = zerostate::blob::links::LinkSigner::load_or_create(app.data_dir.path()).unwrap();
    let past = time::OffsetDateTime::now_utc().unix_timestamp() as u64 - 1;
    let agent: uuid::Uuid = id.parse().unwrap();
    let sig = signer.sign(agent, "1.0.0", past);
    let expired = app.url(&format!(
        "/api/v1/agents/{id}/binary?version=1.0.0&expires={past}&signature={sig}"
    ));
    assert_error(
        &read(app.client.get(&expired).send().await.unwrap()).await,
        403,
        "link_expired",
    );
}

#[tokio::test]
async fn search_forgives_typos_and_prefixes_and_listings_filter_sort_facet_and_page() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let sentiment = app
        .publish(
            &token,
            "Sentiment-Analyzer",
            says("s"),
            "nlp,sentiment",
            0.3,
        )
        .await;
    let summary = app
        .publish(&token, "Summarizer", says("u"), "nlp,text", 0.1)
        .await;
    let vision = app
        .publish(&token, "Image-Tagger", says("i"), "vision", 0.2)
        .await;
    let ids = |body: &Value| -> Vec<String> {
        body["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = async |query: &str| {
        app.get(&format!("/api/v1/agents?{query}"), Some(&token))
            .await
    };

    for q in [
        "sentimnt",
        "senti",
        "Sentiment-An",
        "analyzer",
        "sentiment%20nlp",
    ] {
        let (status, body) = list(&format!("q={q}")).await;
        assert_eq!(
            (status, ids(&body)),
            (200, vec![sentiment.clone()]),
            "q={q}: {body}"
        );
    }
    let (_, body) = app
        .get("/api/v1/agents/search?q=sentimnt", Some(&token))
        .await;
    assert_eq!(ids(&body), [sentiment.as_str()]);
    // The owner's name is searchable too ("Test User" from sign-up).
    let (_, body) = list("q=test%20user").await;
    assert_eq!(body["total"], 3, "{body}");
    let (_, body) = list("q=nothing-like-it").await;
    assert_eq!((body["total"].as_u64(), ids(&body).len()), (Some(0), 0));

    let (_, body) = list("capability=nlp&sort=price").await;
    assert_eq!(ids(&body), [summary.clone(), sentiment.clone()]);
    assert_eq!(
        body["facets"]["capabilities"],
        json!({"nlp": 2, "sentiment": 1, "text": 1})
    );
    let (_, body) = list("sort=price:desc").await;
    assert_eq!(
        ids(&body),
        [sentiment.clone(), vision.clone(), summary.clone()]
    );
    let (_, body) = list("min_price=0.15&max_price=0.25").await;
    assert_eq!(ids(&body), [vision.as_str()]);
    let (_, body) = list("").await;
    assert_eq!(
        ids(&body),
        [vision.clone(), summary.clone(), sentiment.clone()],
        "newest first"
    );
    assert_eq!(body["facets"]["capabilities"]["nlp"], 2);
    let (_, body) = list("status=ready&owner=me&sort=name").await;
    assert_eq!(
        ids(&body),
        [vision.clone(), sentiment.clone(), summary.clone()]
    );
    let (_, body) = list("min_rating=1").await;
    assert_eq!(body["total"], 0, "no agent has reviews");

    // Pages of one sort partition the listing.
    let mut paged = Vec::new();
    for offset in 0..3 {
        let (_, body) = list(&format!("sort=price&limit=1&offset={offset}")).await;
        assert_eq!(body["total"], 3);
        paged.extend(ids(&body));
    }
    assert_eq!(paged, [summary.clone(), vision.clone(), sentiment.clone()]);

    // An edit is searchable at once; a deleted agent is gone from search.
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/api/v1/agents/{vision}"),
            Some(&token),
            Some(&json!({"description": "finds zebras"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = list("q=zebra").await;
    assert_eq!(ids(&body), [vision.as_str()]);
    app.send(
        Method::DELETE,
        &format!("/api/v1/agents/{vision}"),
        Some(&token),
        None,
    )
    .await;
    let (_, body) = list("q=zebras").await;
    assert_eq!(body["total"], 0);

    for (query, code) in [
        ("sort=popularity", "invalid_request"),
        ("status=sleeping", "invalid_request"),
        ("min_price=cheap", "invalid_request"),
        ("min_price=2&max_price=1", "invalid_request"),
        ("min_rating=6", "invalid_request"),
        ("owner=someone", "invalid_request"),
        ("limit=0", "invalid_request"),
    ] {
        assert_error(&list(query).await, 400, code);
    }
}

#[tokio::test]
async fn reviews_come_from_users_who_ran_the_agent_and_rate_it_by_a_bayesian_score() {
    let app = spawn_app().await;
    let owner = app.signup("owner@example.com").await;
    let user = app.signup("user@example.com").await;
    let id = app
        .publish(&owner, "Reviewed", says("ok"), "reviewed", 0.0)
        .await;
    let reviews = format!("/api/v1/agents/{id}/reviews");

    let review = async |token: &str, body: Value| app.post_json(&reviews, Some(token), &body).await;
    assert_error(
        &review(&user, json!({"rating": 5, "comment": "great"})).await,
        403,
        "review_not_allowed",
    );
    assert_eq!(app.run_on(&user, &id, "x").await["status"], "completed");
    for bad in [
        json!({"rating": 0}),
        json!({"rating": 6}),
        json!({"rating": 4.5}),
        json!({"rating": "5"}),
    ] {
        assert_error(&review(&user, bad).await, 400, "invalid_request");
    }
    let (status, body) = review(&user, json!({"rating": 5, "comment": "great"})).await;
    assert_eq!((status, body["rating"].as_u64()), (201, Some(5)), "{body}");
    // The owner may not review their own agent, even after a task of theirs completed on
    // it: reviews move the agent's auction score.
    assert_eq!(app.run_on(&owner, &id, "x").await["status"], "completed");
    assert_error(
        &review(&owner, json!({"rating": 5, "comment": "mine is the best"})).await,
        403,
        "own_agent_review",
    );
    let (_, agent) = app.get(&format!("/api/v1/agents/{id}"), Some(&owner)).await;
    assert_eq!(
        (
            agent["rating"]["count"].as_u64(),
            agent["rating"]["mean"].as_f64()
        ),
        (Some(1), Some(5.0))
    );
    let one_five = agent["rating"]["score"].as_f64().unwrap();
    assert!((one_five - 10.0 / 3.0).abs() < 1e-9, "{one_five}");

    // A second post replaces the first.
    let (status, _) = review(&user, json!({"rating": 2, "comment": "changed my mind"})).await;
    assert_eq!(status, 201);
    let (_, list) = app.get(&format!("{reviews}?limit=10"), Some(&owner)).await;
    assert_eq!(list["total"], 1);
    assert_eq!(
        (
            list["reviews"][0]["rating"].as_u64(),
            list["reviews"][0]["comment"].as_str()
        ),
        (Some(2), Some("changed my mind"))
    );
    let (_, agent) = app.get(&format!("/api/v1/agents/{id}"), Some(&owner)).await;
    assert_eq!(
        (
            agent["rating"]["count"].as_u64(),
            agent["rating"]["mean"].as_f64()
        ),
        (Some(1), Some(2.0))
    );
    // Listings show it and filter on it.
    let (_, body) = app.get("/api/v1/agents?min_rating=2", Some(&owner)).await;
    assert_eq!(body["total"], 1);
    assert_eq!(body["agents"][0]["rating"]["mean"], 2.0);
    let (_, body) = app.get("/api/v1/agents?min_rating=3", Some(&owner)).await;
    assert_eq!(body["total"], 0);
    assert_error(
        &app.get(&format!("{reviews}?limit=500"), Some(&owner)).await,
        400,
        "invalid_request",
    );
    assert_error(
        &app.post_json(
            "/api/v1/agents/00000000-0000-0000-0000-000000000000/reviews",
            Some(&user),
            &json!({"rating": 5}),
        )
        .await,
        404,
        "agent_not_found",
    );
}

#[tokio::test]
async fn an_input_schema_checks_submits_and_dry_runs_with_the_path_of_the_first_error() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let schema = json!({
        "type": "object", "required": ["text"],
        "properties": {"text": {"type": "string"}, "options": {"type": "object", "properties": {"depth": {"type": "integer"}}}}
    });
    let manifest = json!({"name": "Typed", "capabilities": ["typed"], "input_schema": schema});
    let (status, body) = app
        .upload_manifest(&token, &manifest, wasm(ECHO_AGENT), true)
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (201, Some("ready")),
        "{body}"
    );
    let id = body["agent_id"].as_str().unwrap().to_owned();

    let submit = async |input: Value| {
        app.post_json(
            "/api/v1/tasks/submit",
            Some(&token),
            &json!({"query": "q", "agent_id": id, "budget": 1, "input": input}),
        )
        .await
    };
    let response = submit(json!({"text": 5})).await;
    assert_error(&response, 422, "invalid_input");
    assert_eq!(response.1["error"]["path"], "/text", "{}", response.1);
    let response = submit(json!({"text": "hi", "options": {"depth": "deep"}})).await;
    assert_eq!(
        response.1["error"]["path"], "/options/depth",
        "{}",
        response.1
    );
    let response = submit(json!({"options": {}})).await;
    assert_error(&response, 422, "invalid_input");
    assert_eq!(response.1["error"]["path"], "/");
    // By capability too: the only bidder refuses the input.
    let response = app
        .post_json(
            "/api/v1/tasks/submit",
            Some(&token),
            &json!({"query": "q", "capabilities": ["typed"], "budget": 1, "input": {"text": 1}}),
        )
        .await;
    assert_error(&response, 422, "invalid_input");
    let task = app
        .run_task(
            &token,
            json!({"query": "q", "agent_id": id, "budget": 1, "input": {"text": "hi"}}),
        )
        .await;
    assert_eq!(task["status"], "completed", "{task}");

    let dry = async |input: Value| {
        app.post_json(
            &format!("/api/v1/agents/{id}/validate-input"),
            Some(&token),
            &json!({"input": input}),
        )
        .await
    };
    let (status, body) = dry(json!({"text": "fine"})).await;
    assert_eq!((status, body), (200, json!({"valid": true})));
    let response = dry(json!({"text": []})).await;
    assert_error(&response, 422, "invalid_input");
    assert_eq!(response.1["error"]["path"], "/text");

    // A schema that is not one, at upload and in an edit.
    let bad =
        json!({"name": "Bad-Schema", "capabilities": ["x"], "input_schema": {"type": "nonsense"}});
    assert_error(
        &app.upload_manifest(&token, &bad, wasm(ECHO_AGENT), false)
            .await,
        400,
        "invalid_input_schema",
    );
    assert_error(
        &app.send(
            Method::PATCH,
            &format!("/api/v1/agents/{id}"),
            Some(&token),
            Some(&json!({"input_schema": {"minimum": "x"}})),
        )
        .await,
        400,
        "invalid_input_schema",
    );
    // Removing the schema (merge patch null) accepts any input again.
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/api/v1/agents/{id}"),
            Some(&token),
            Some(&json!({"input_schema": null})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(dry(json!(42)).await.0, 200);
}

#[tokio::test]
async fn the_seed_registration_shape_registers_and_bad_edits_are_refused_with_codes() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let seed = json!({
        "name": "Seeded", "description": "from the seed's shape", "capabilities": ["seed"],
        "pricing": {"per_execution": 0.25, "currency": "credits"},
        "resources": {"memory_limit": "32Mi", "timeout": "10s"},
        "metadata": {"homepage": "https://example.com"}
    });
    let form = Form::new()
        .text("agent", seed.to_string())
        .part("wasm_binary", module_part(says("seeded")));
    let (status, agent) = app
        .send_form(
            Method::POST,
            "/api/v1/agents/register",
            Some(&token),
            form,
            true,
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(
        (
            agent["price"].as_f64(),
            agent["limits"]["memory_bytes"].as_u64(),
            agent["limits"]["timeout_secs"].as_u64(),
            agent["status"].as_str()
        ),
        (Some(0.25), Some(32 << 20), Some(10), Some("ready"))
    );
    assert_eq!(agent["metadata"]["homepage"], "https://example.com");
    let id = agent["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/agents/{id}");

    for (body, code) in [
        (json!({"version": "2.0.0"}), "invalid_request"),
        (json!({"price": -1}), "invalid_request"),
        (json!({"capabilities": []}), "invalid_request"),
        (json!({"colour": "red"}), "invalid_request"),
        (json!([1, 2]), "invalid_request"),
        (json!({"metadata": "text"}), "invalid_request"),
    ] {
        assert_error(
            &app.send(Method::PATCH, &path, Some(&token), Some(&body))
                .await,
            400,
            code,
        );
    }
    // Renaming onto another of the owner's agents is a conflict; a free name is taken.
    app.publish(&token, "Other", says("o"), "other", 0.0).await;
    assert_error(
        &app.send(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"name": "Other"})),
        )
        .await,
        409,
        "agent_name_taken",
    );
    let (status, body) = app
        .send(
            Method::PATCH,
            &path,
            Some(&token),
            Some(&json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Renamed")));
    let (_, body) = app.get("/api/v1/agents?q=renamed", Some(&token)).await;
    assert_eq!(body["total"], 1);

    let form = Form::new()
        .text("agent", "{not json")
        .part("wasm_binary", module_part(says("x")));
    assert_error(
        &app.send_form(
            Method::POST,
            "/api/v1/agents/register",
            Some(&token),
            form,
            false,
        )
        .await,
        400,
        "malformed_json",
    );
    let form = Form::new()
        .text("agent", json!({"name": "Usd", "capabilities": ["x"], "pricing": {"per_execution": 1, "currency": "USD"}}).to_string())
        .part("wasm_binary", module_part(says("x")));
    assert_error(
        &app.send_form(
            Method::POST,
            "/api/v1/agents/register",
            Some(&token),
            form,
            false,
        )
        .await,
        400,
        "invalid_request",
    );
    let form = Form::new().text("agent", seed.to_string());
    assert_error(
        &app.send_form(
            Method::POST,
            "/api/v1/agents/register",
            Some(&token),
            form,
            false,
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        &app.post_json(
            &format!("{path}/rollback"),
            Some(&token),
            &json!({"version": 1}),
        )
        .await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn a_deleted_agent_keeps_its_finished_tasks_readable_and_stops_bidding() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let id = app
        .publish(&token, "Short-Lived", says("bye"), "short-lived", 0.0)
        .await;
    // The same listing before and after each change: a cached page never outlives one.
    let (_, list) = app.get("/api/v1/agents", Some(&token)).await;
    assert_eq!(list["agents"][0]["stats"]["tasks_completed"], 0);
    let task = app.run_on(&token, &id, "x").await;
    assert_eq!(task["status"], "completed");
    let (_, list) = app.get("/api/v1/agents", Some(&token)).await;
    assert_eq!(list["agents"][0]["stats"]["tasks_completed"], 1, "{list}");
    let (status, _) = app
        .send(
            Method::DELETE,
            &format!("/api/v1/agents/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, again) = app
        .get(
            &format!("/api/v1/tasks/{}", task["id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!((status, &again["result"]), (200, &json!("bye")), "{again}");
    let response = app
        .post_json(
            "/api/v1/tasks/submit",
            Some(&token),
            &json!({"query": "q", "capabilities": ["short-lived"], "budget": 1}),
        )
        .await;
    assert_error(&response, 422, "no_eligible_agent");
    assert_error(
        &app.post_json(
            "/api/v1/tasks/submit",
            Some(&token),
            &json!({"query": "q", "agent_id": id, "budget": 1}),
        )
        .await,
        404,
        "agent_not_found",
    );
    let (_, list) = app.get("/api/v1/agents", Some(&token)).await;
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn every_agent_change_is_announced_as_agent_update() {
    let app = spawn_app().await;
    let token = app.signup("owner@example.com").await;
    let url = format!("{}/api/v1/ws/connect?token={token}", app.ws_base);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.next().await.unwrap().unwrap();

    let id = app
        .publish(&token, "Announced", says("a"), "announced", 0.0)
        .await;
    app.send(
        Method::PATCH,
        &format!("/api/v1/agents/{id}"),
        Some(&token),
        Some(&json!({"price": 0.5})),
    )
    .await;
    new_version(&app, &token, &id, "1.1.0", says("b")).await;
    app.post_json(
        &format!("/api/v1/agents/{id}/rollback"),
        Some(&token),
        &json!({"version": "1.0.0"}),
    )
    .await;
    app.send(
        Method::DELETE,
        &format!("/api/v1/agents/{id}"),
        Some(&token),
        None,
    )
    .await;

    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while let Some(message) = socket.next().await {
            let text = message.unwrap().into_text().unwrap_or_default();
            let event: Value = serde_json::from_str(&text).unwrap_or_default();
            if event["type"] != "agent_update" || event["data"]["agent_id"] != id.as_str() {
                continue;
            }
            let data = &event["data"];
            let action = data["action"].as_str().unwrap().to_owned();
            let label = match action.as_str() {
                "version" => format!("version:{}", data["change"].as_str().unwrap()),
                _ => action.clone(),
            };
            if seen.last() != Some(&label) {
                seen.push(label);
            }
            if action == "deleted" {
                return;
            }
        }
    })
    .await
    .expect("the deletion is announced");
    assert_eq!(
        seen,
        [
            "registered",
            "updated",
            "version:added",
            "updated",
            "version:rollback",
            "deleted"
        ]
    );
}

#[tokio::test]
async fn the_search_index_is_rebuilt_from_the_store_when_missing_or_damaged() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    let token = app.signup("owner@example.com").await;
    let id = app
        .publish(&token, "Sentiment-Analyzer", says("s"), "nlp", 0.0)
        .await;
    let (status, _) = new_version(&app, &token, &id, "1.1.0", says("t")).await;
    assert_eq!(status, 201);
    let dir = app.stop().await;

    let index = dir.path().join(zerostate::INDEX_DIR);
    for damage in ["delete", "garble"] {
        match damage {
            "delete" => std::fs::remove_dir_all(&index).unwrap(),
            _ => std::fs::write(index.join("meta.json"), b"{ not json").unwrap(),
        }
        let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
        let (_, found) = app.get("/api/v1/agents?q=sentimnt", Some(&token)).await;
        assert_eq!(
            found["agents"][0]["id"],
            id.as_str(),
            "after {damage}: {found}"
        );
        // The versions live in redb, untouched by the index.
        let (_, versions) = app
            .get(&format!("/api/v1/agents/{id}/versions"), Some(&token))
            .await;
        assert_eq!(versions_of(&versions).len(), 2, "{versions}");
        assert_eq!(app.run_on(&token, &id, "x").await["result"], "t");
        app.stop().await;
    }
}

#[tokio::test]
async fn argv_and_env_are_shown_to_the_owner_and_admins_only() {
    let (app, admin) = spawn_with_admin().await;
    let owner = app.signup("owner@example.com").await;
    let other = app.signup("other@example.com").await;
    let manifest = json!({"name": "Private", "capabilities": ["private"],
        "argv": ["--endpoint", "https://internal.example"], "env": {"API_TOKEN": "s3cret"}});
    let (status, body) = app
        .upload_manifest(&owner, &manifest, wasm(ECHO_AGENT), true)
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["agent_id"].as_str().unwrap().to_owned();
    let agent = format!("/api/v1/agents/{id}");
    let (_, key) = app
        .post_json(
            "/api/v1/users/me/api-keys",
            Some(&owner),
            &json!({"name": "ci", "scopes": ["agents:read"]}),
        )
        .await;
    let owners_key = key["key"].as_str().unwrap().to_owned();

    for who in [&owner, &owners_key, &admin] {
        let (status, body) = app.get(&agent, Some(who)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["env"], json!({"API_TOKEN": "s3cret"}), "{body}");
        assert_eq!(body["argv"][1], "https://internal.example", "{body}");
    }
    // Another user gets the agent, without the two fields (absent, not emptied).
    let (status, body) = app.get(&agent, Some(&other)).await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Private")));
    let fields = body.as_object().unwrap();
    assert!(
        !fields.contains_key("env") && !fields.contains_key("argv"),
        "{body}"
    );
    assert!(!body.to_string().contains("s3cret"), "{body}");
    // Listings are shared pages: nobody sees them there, the owner included.
    for (who, path) in [
        (&owner, "/api/v1/agents?owner=me"),
        (&other, "/api/v1/agents"),
        (&admin, "/api/v1/agents/search?q=private"),
    ] {
        let (status, body) = app.get(path, Some(who)).await;
        assert_eq!(
            (status, body["total"].as_u64()),
            (200, Some(1)),
            "{path}: {body}"
        );
        let listed = body["agents"][0].as_object().unwrap();
        assert!(
            !listed.contains_key("env") && !listed.contains_key("argv"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_listing_of_owner_me_is_never_served_to_another_caller_however_it_is_spelled() {
    let app = spawn_app().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    app.publish(&alice, "Alices", says("a"), "alice", 0.0).await;
    // Each spelling decodes to `owner=me`: Alice's page first (now cached), then Bob's, which
    // must be his own (empty), not Alice's cached one.
    for query in [
        "owner=me",
        "owner=%6De",
        "%6Fwner=%6d%65",
        "owner=+me",
        "owner_id=m%65",
    ] {
        let path = format!("/api/v1/agents?{query}");
        let (_, mine) = app.get(&path, Some(&alice)).await;
        assert_eq!(mine["total"], 1, "{query}: {mine}");
        let (status, his) = app.get(&path, Some(&bob)).await;
        assert_eq!(
            (status, his["total"].as_u64()),
            (200, Some(0)),
            "{query}: {his}"
        );
    }
}
