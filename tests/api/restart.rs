use serde_json::json;

use crate::helpers::{ECHO_AGENT, settings, spawn_with, wasm};

#[tokio::test]
async fn a_restart_keeps_users_agents_and_tasks_and_runs_what_was_queued() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    // No workers: submitted tasks stay queued until the restart.
    let app = spawn_with(settings(dir.path(), 0), dir.clone()).await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let queued = app
        .submit(
            &token,
            json!({"query": "survive a restart", "agent_id": echo, "budget": 0}),
        )
        .await;
    let (_, before) = app
        .get(&format!("/api/v1/tasks/{queued}"), Some(&token))
        .await;
    assert_eq!(before["status"], "queued");
    let dir = app.stop().await;

    let app = spawn_with(settings(dir.path(), 2), dir.clone()).await;
    // The old token still verifies: the signing secret persisted.
    let (status, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("user@example.com"))
    );
    let (status, _) = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "user@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, found) = app.get("/api/v1/agents?q=echo", Some(&token)).await;
    assert_eq!(
        found["agents"][0]["id"],
        echo.as_str(),
        "search index survives: {found}"
    );

    let task = app.wait_for_task(&token, &queued).await;
    assert_eq!(
        (task["status"].as_str(), task["result"].as_str()),
        (Some("completed"), Some("survive a restart"))
    );
    assert_eq!(task["created_at"], before["created_at"]);
    app.stop().await;
}

#[tokio::test]
async fn a_task_running_at_shutdown_is_requeued_and_finishes_after_restart() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(dir.path(), 1);
    s.tasks.shutdown_grace_secs = 0;
    let app = spawn_with(s, dir.clone()).await;
    let token = app.signup("user@example.com").await;
    // Spins for 1.5 s of wall time through a busy loop on the clock, then echoes.
    let slow = wasm(
        r#"(module
      (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "done")
      (func (export "_start") (local $end i64)
        (drop (call $now (i32.const 1) (i64.const 1) (i32.const 0)))
        (local.set $end (i64.add (i64.load (i32.const 0)) (i64.const 1500000000)))
        (loop
          (drop (call $now (i32.const 1) (i64.const 1) (i32.const 0)))
          (br_if 0 (i64.lt_u (i64.load (i32.const 0)) (local.get $end))))
        (i32.store (i32.const 8) (i32.const 100))
        (i32.store (i32.const 12) (i32.const 4))
        (drop (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 16)))))"#,
    );
    let agent = app.publish(&token, "Slow", slow, "slow", 0.0).await;

    let mut updates = app.task_updates(&token).await;
    let id = app
        .submit(
            &token,
            json!({"query": "x", "agent_id": agent, "budget": 0}),
        )
        .await;
    // Wait until it runs, then shut down with no grace period.
    updates.until_running(&id).await;
    let dir = app.stop().await;

    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    let task = app.wait_for_task(&token, &id).await;
    assert_eq!(
        (task["status"].as_str(), task["result"].as_str()),
        (Some("completed"), Some("done"))
    );
    assert_eq!(task["starts"], 2, "{task}");
    app.stop().await;
}

#[tokio::test]
async fn retention_deletes_the_oldest_finished_tasks() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(dir.path(), 1);
    s.tasks.retention_max_finished = 1;
    let app = spawn_with(s.clone(), dir.clone()).await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let task = app
            .run_task(
                &token,
                json!({"query": format!("t{i}"), "agent_id": echo, "budget": 0}),
            )
            .await;
        ids.push(task["id"].as_str().unwrap().to_owned());
    }
    let dir = app.stop().await;
    // Retention runs at start (then every 10 minutes).
    let app = spawn_with(s, dir).await;
    let (_, list) = app.get("/api/v1/tasks", Some(&token)).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(
        list["tasks"][0]["id"],
        ids[2].as_str(),
        "the newest is kept"
    );
    let (status, _) = app
        .get(&format!("/api/v1/tasks/{}", ids[0]), Some(&token))
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// Every file and directory under `dir` (itself included) with its mode, not following links.
#[cfg(unix)]
fn modes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir).unwrap();
    let mut found = vec![(dir.to_owned(), meta.permissions().mode() & 0o7777)];
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            found.extend(modes(&entry.unwrap().path()));
        }
    }
    found
}

#[cfg(unix)]
#[tokio::test]
async fn a_data_dir_left_with_loose_modes_is_private_again_after_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    let token = app.signup("user@example.com").await;
    let echo = app
        .publish(&token, "Echo", wasm(ECHO_AGENT), "echo", 0.0)
        .await;
    app.run_on(&token, &echo, "hello").await;
    let dir = app.stop().await;
    // What an operator's copy or an older build could leave: world-readable everything.
    for (path, _) in modes(dir.path()) {
        let loose = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
    }

    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    assert_eq!(
        app.run_on(&token, &echo, "again").await["status"],
        "completed"
    );
    let dir = app.stop().await;
    let found = modes(dir.path());
    for name in [
        zerostate::DB_FILE,
        "jwt_secret",
        "link_secret",
        "module_cache_key",
    ] {
        assert!(
            found.iter().any(|(p, _)| p.ends_with(name)),
            "{name} in {found:?}"
        );
    }
    for sub in [
        zerostate::WAL_DIR,
        zerostate::MODULES_DIR,
        zerostate::INDEX_DIR,
    ] {
        assert!(
            found
                .iter()
                .any(|(p, _)| p.starts_with(dir.path().join(sub)) && p.is_file()),
            "files in {sub}: {found:?}"
        );
    }
    for (path, mode) in &found {
        let private = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, private, "{}", path.display());
    }
}
