use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;
use zerostate::auth::AccountError;
use zerostate::records::Role;

use crate::helpers::{
    LOCALHOST, accounts_in, assert_error, close_frame, settings, spawn_app, spawn_with,
};

#[tokio::test]
async fn register_login_and_me() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_json(
            "/api/v1/users/register",
            None,
            &json!({"email": "Ada@Example.com", "password": "correct horse", "full_name": "Ada Lovelace"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], 86400);
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["full_name"], "Ada Lovelace");
    assert!(body["user"]["id"].is_string() && body["user"]["created_at"].is_string());
    assert!(body["user"].get("password_hash").is_none());
    assert_eq!(body["user"]["role"], "user");

    let (status, login) = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["user"]["id"], body["user"]["id"]);

    let (status, me) = app.get("/api/v1/users/me", login["token"].as_str()).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["role"], "user");
}

#[tokio::test]
async fn registration_errors_have_exact_codes() {
    let app = spawn_app().await;
    app.signup("taken@example.com").await;
    let register = |email: &str, password: &str| {
        let body = json!({"email": email, "password": password, "full_name": "X"});
        let app = &app;
        async move { app.post_json("/api/v1/users/register", None, &body).await }
    };
    assert_error(
        &register("TAKEN@example.com", "long enough").await,
        409,
        "email_taken",
    );
    assert_error(
        &register("not-an-email", "long enough").await,
        400,
        "invalid_email",
    );
    assert_error(
        &register("a@example.com", "short").await,
        400,
        "invalid_password",
    );
    let missing = app
        .post_json(
            "/api/v1/users/register",
            None,
            &json!({"email": "b@example.com"}),
        )
        .await;
    assert_error(&missing, 400, "invalid_request");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    app.signup("ada@example.com").await;
    let wrong = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "ada@example.com", "password": "wrong password"}),
        )
        .await;
    let unknown = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    assert_error(&wrong, 401, "invalid_credentials");
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn api_routes_need_a_valid_token() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/users/me",
        "/api/v1/agents",
        "/api/v1/tasks",
        "/api/v1/tasks/stats",
        "/api/v1/ws/stats",
    ] {
        assert_error(&app.get(path, None).await, 401, "missing_token");
        assert_error(
            &app.get(path, Some("forged.token.value")).await,
            401,
            "invalid_token",
        );
    }
    let resp = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_error(&crate::helpers::read(resp).await, 401, "invalid_token");
}

#[tokio::test]
async fn create_or_promote_creates_then_promotes_keeping_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = accounts_in(dir.path()).await;

    let (user, created) = accounts
        .create_or_promote(
            " Ada@Example.com",
            Some("correct horse".into()),
            "Ada",
            false,
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (user.email.as_str(), user.role),
        ("ada@example.com", Role::User)
    );
    assert!(!accounts.is_admin(user.id).await.unwrap());

    let (promoted, created) = accounts
        .create_or_promote("ada@example.com", None, "Someone Else", true)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        (promoted.id, promoted.role, promoted.full_name.as_str()),
        (user.id, Role::Admin, "Ada")
    );
    assert!(accounts.is_admin(user.id).await.unwrap());
    accounts
        .login("ada@example.com", "correct horse".into(), LOCALHOST)
        .await
        .expect("promotion without a password keeps the old one");

    let (changed, created) = accounts
        .create_or_promote("ada@example.com", Some("battery staple".into()), "", false)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(
        changed.role,
        Role::Admin,
        "without --admin nobody is demoted"
    );
    assert!(matches!(
        accounts
            .login("ada@example.com", "correct horse".into(), LOCALHOST)
            .await,
        Err(AccountError::InvalidCredentials)
    ));
    accounts
        .login("ada@example.com", "battery staple".into(), LOCALHOST)
        .await
        .expect("the new password works");

    assert!(!accounts.is_admin(Uuid::new_v4()).await.unwrap());
}

#[tokio::test]
async fn create_or_promote_checks_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = accounts_in(dir.path()).await;
    let missing = accounts
        .create_or_promote("ada@example.com", None, "Ada", true)
        .await;
    assert!(
        matches!(&missing, Err(AccountError::InvalidPassword(m)) if m.contains("required")),
        "{missing:?}"
    );
    accounts
        .create_or_promote("ada@example.com", Some("correct horse".into()), "Ada", true)
        .await
        .unwrap();
    let short = accounts
        .create_or_promote("ada@example.com", Some("short".into()), "Ada", true)
        .await;
    assert!(
        matches!(short, Err(AccountError::InvalidPassword(_))),
        "{short:?}"
    );
}

/// Runs `zerostate user create --password-stdin --data-dir DIR ARGS` with `stdin` piped in.
async fn user_create(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let data_dir: PathBuf = data_dir.to_owned();
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    let stdin = stdin.to_owned();
    // On the blocking pool: the server under test may be running on this runtime.
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zerostate"))
            .args(["user", "create", "--password-stdin", "--data-dir"])
            .arg(&data_dir)
            .args(&args)
            // Away from the repository's config/zerostate.toml.
            .current_dir(&data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn zerostate");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn cli_creates_an_account_then_promotes_it() {
    let dir = Arc::new(tempfile::tempdir().unwrap());

    let created = user_create(
        dir.path(),
        &["--email", "Ada@Example.com", "--full-name", "Ada Lovelace"],
        "correct horse\n",
    )
    .await;
    assert!(created.status.success(), "{}", stderr(&created));
    let line = stdout(&created);
    let id = line
        .strip_prefix("created user ada@example.com (id ")
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("unexpected output {line:?}"));
    let id: Uuid = id.parse().expect("a user id");

    // An empty password keeps the one set above.
    let promoted = user_create(dir.path(), &["--email", "ada@example.com", "--admin"], "").await;
    assert!(promoted.status.success(), "{}", stderr(&promoted));
    assert_eq!(
        stdout(&promoted),
        format!("promoted admin ada@example.com (id {id})\n")
    );

    let no_password = user_create(dir.path(), &["--email", "bob@example.com"], "\n").await;
    assert!(!no_password.status.success());
    assert!(
        stderr(&no_password).contains("a password is required to create an account"),
        "{}",
        stderr(&no_password)
    );

    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    let (status, session) = app
        .post_json(
            "/api/v1/users/login",
            None,
            &json!({"email": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["user"]["id"], id.to_string());
    assert_eq!(session["user"]["role"], "admin");
    assert_eq!(session["user"]["full_name"], "Ada Lovelace");

    let in_use = user_create(dir.path(), &["--email", "ada@example.com", "--admin"], "").await;
    assert!(!in_use.status.success());
    assert!(
        stderr(&in_use).contains("is in use by a running server; stop it first"),
        "{}",
        stderr(&in_use)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_signed_up_user_promoted_by_the_cli_is_admin_after_a_restart() {
    let app = spawn_app().await;
    let token = app.signup("grace@example.com").await;
    let (_, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me["role"], "user");
    let dir = app.stop().await;

    let promoted = user_create(dir.path(), &["--email", "grace@example.com", "--admin"], "").await;
    assert!(promoted.status.success(), "{}", stderr(&promoted));
    assert!(
        stdout(&promoted).starts_with("promoted admin grace@example.com (id "),
        "{}",
        stdout(&promoted)
    );

    let app = spawn_with(settings(dir.path(), 1), dir.clone()).await;
    let (status, me) = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "admin");
    app.stop().await;
}

#[tokio::test]
async fn a_user_renames_themselves_and_a_password_change_ends_other_sessions() {
    let app = spawn_app().await;
    let token = app.signup("ada@example.com").await;
    let (status, me) = app
        .send(
            reqwest::Method::PATCH,
            "/api/v1/users/me",
            Some(&token),
            Some(&json!({"full_name": "  Ada Lovelace "})),
        )
        .await;
    assert_eq!(
        (status, me["full_name"].as_str()),
        (200, Some("Ada Lovelace"))
    );
    assert_error(
        &app.send(
            reqwest::Method::PATCH,
            "/api/v1/users/me",
            Some(&token),
            Some(&json!({"full_name": "x".repeat(201)})),
        )
        .await,
        400,
        "invalid_request",
    );

    let (_, key) = app
        .post_json(
            "/api/v1/users/me/api-keys",
            Some(&token),
            &json!({"name": "k", "scopes": ["agents:read"]}),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let mut socket = app.socket(&token).await;
    let path = "/api/v1/users/me/password";
    assert_error(
        &app.post_json(
            path,
            Some(&token),
            &json!({"current_password": "wrong password", "new_password": "a new secret"}),
        )
        .await,
        403,
        "wrong_password",
    );
    assert_error(
        &app.post_json(
            path,
            Some(&token),
            &json!({"current_password": "correct horse battery", "new_password": "short"}),
        )
        .await,
        400,
        "invalid_password",
    );
    let (status, session) = app
        .post_json(
            path,
            Some(&token),
            &json!({"current_password": "correct horse battery", "new_password": "a new secret"}),
        )
        .await;
    assert_eq!(status, 200, "{session}");
    let fresh = session["token"].as_str().unwrap().to_owned();
    // The old session ends, its socket too; the new one and the API key work.
    let ended = app.get("/api/v1/users/me", Some(&token)).await;
    let message = assert_error(&ended, 401, "invalid_token");
    assert!(message.contains("password"), "{message}");
    assert_eq!(close_frame(&mut socket).await.0, 1008);
    assert_eq!(app.get("/api/v1/users/me", Some(&fresh)).await.0, 200);
    assert_eq!(app.get("/api/v1/agents", Some(&key)).await.0, 200);
    let login = |password: &str| json!({"email": "ada@example.com", "password": password});
    assert_error(
        &app.post_json("/api/v1/users/login", None, &login("correct horse battery"))
            .await,
        401,
        "invalid_credentials",
    );
    assert_eq!(
        app.post_json("/api/v1/users/login", None, &login("a new secret"))
            .await
            .0,
        200
    );
    // Still ended after a restart.
    let dir = app.stop().await;
    let app = spawn_with(settings(dir.path(), 1), dir).await;
    assert_error(
        &app.get("/api/v1/users/me", Some(&token)).await,
        401,
        "invalid_token",
    );
    assert_eq!(app.get("/api/v1/users/me", Some(&fresh)).await.0, 200);
}
