//! `zerostate user …`: account administration on the server's machine, straight on the data
//! directory.
//!
//! It opens the database itself, so it runs only while no server holds the directory (redb
//! locks the file, and the lock error is reported as "stop the server first"). The password is
//! read from stdin, never taken as an argument, where `ps` and shell history would see it. The
//! prompt's terminal settings are restored on every way out but SIGKILL.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::auth::{Accounts, TokenKeys};
use crate::config::{Overrides, Settings};
use crate::realtime::Hub;
use crate::store::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account, or promote an existing one with --admin. Stop the server first.
    Create(UserCreateArgs),
}

#[derive(Debug, Args)]
pub struct UserCreateArgs {
    /// Email address of the account.
    #[arg(long, value_name = "E")]
    pub email: String,
    /// Display name of a new account (an existing one keeps its name).
    #[arg(long, value_name = "N", default_value = "")]
    pub full_name: String,
    /// Give the account the admin role.
    #[arg(long)]
    pub admin: bool,
    /// Read the password as one line from stdin, even from a terminal. Without it a terminal is
    /// prompted (twice, without echo); other stdin is read as one line. An empty password keeps
    /// an existing account's password.
    #[arg(long)]
    pub password_stdin: bool,
    /// Configuration file (default: config/zerostate.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory of the server [default: ./zerostate-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// `zerostate user create`.
pub async fn user_create_command(args: UserCreateArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        ..Overrides::default()
    };
    let settings =
        Settings::load(args.config.as_deref(), overrides).context("loading configuration")?;
    let password = read_password(args.password_stdin)
        .await
        .context("reading the password")?;
    let new_password = password.is_some();
    let accounts = open_accounts(&settings).await?;
    let (user, created) = accounts
        .create_or_promote(&args.email, password, &args.full_name, args.admin)
        .await
        .with_context(|| format!("creating or updating {}", args.email.trim()))?;
    let verb = match (created, args.admin, new_password) {
        (true, _, _) => "created",
        (false, true, _) => "promoted",
        (false, false, true) => "changed the password of",
        (false, false, false) => "left unchanged",
    };
    println!("{verb} {} {} (id {})", user.role, user.email, user.id);
    Ok(())
}

/// Opens the store and signing keys the way [`crate::Application`] does, on the blocking pool.
async fn open_accounts(settings: &Settings) -> anyhow::Result<Accounts> {
    let data_dir = settings.data_dir.clone();
    let ttl = settings.auth.token_ttl_secs;
    let (store, keys) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        crate::create_private_dir(&data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let store = match Store::open(&data_dir.join(crate::DB_FILE)) {
            Err(e @ StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => {
                return Err(e).context(format!(
                    "the data directory {} is in use by a running server; stop it first",
                    data_dir.display()
                ));
            }
            opened => {
                opened.with_context(|| format!("opening the database in {}", data_dir.display()))?
            }
        };
        let keys = TokenKeys::load_or_create(&data_dir, ttl).context("loading the signing key")?;
        Ok((store, keys))
    })
    .await
    .context("opening the data directory")??;
    // No server runs here, so there are no live connections to close.
    Accounts::open(store, Arc::new(keys), Arc::new(Hub::default()))
        .await
        .context("loading the accounts")
}

/// The password as the user gave it; `None` if empty.
async fn read_password(from_stdin: bool) -> anyhow::Result<Option<String>> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        read_line().await?
    } else {
        let first = prompt_hidden("Password: ").await?;
        if !first.is_empty() && prompt_hidden("Confirm password: ").await? != first {
            bail!("the passwords do not match");
        }
        first
    };
    Ok(Some(password).filter(|p| !p.is_empty()))
}

/// Prompts on stderr and reads one line from the terminal on stdin with echo off.
async fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let echo_off = EchoOff::on_stdin().context("turning off the terminal's echo")?;
    // Ctrl-C would kill the process with echo still off, so it is caught here instead and the
    // guard restores the terminal as this returns.
    let line = tokio::select! {
        line = read_line() => line,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    drop(echo_off);
    if line.is_err() {
        // The user's Enter was not echoed either.
        writeln!(stderr)?;
    }
    line
}

/// Reads one line from stdin without its line ending. On a thread of its own, not the blocking
/// pool: an interrupted prompt leaves it blocked, and the runtime waits for its pool at exit.
async fn read_line() -> anyhow::Result<String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map(|_| line);
        let _ = tx.send(read);
    });
    let mut line = rx.await.context("the stdin reader stopped")??;
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// Terminal echo turned off on stdin until dropped (on success, error or panic alike). The
/// newline is still echoed (`ECHONL`), so the next output starts on a line of its own.
#[cfg(unix)]
struct EchoOff {
    saved: libc::termios,
}

#[cfg(unix)]
impl EchoOff {
    fn on_stdin() -> std::io::Result<Self> {
        // SAFETY: `termios` is plain integers, so zeroed is a valid value to be overwritten;
        // tcgetattr and tcsetattr only read and write the struct passed by reference.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut hidden = saved;
        hidden.c_lflag &= !libc::ECHO;
        hidden.c_lflag |= libc::ECHONL;
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &hidden) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { saved })
    }
}

#[cfg(unix)]
impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `on_stdin`. Nothing is left to do if it fails.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
}

/// No termios here: refuse rather than echo the password.
#[cfg(not(unix))]
struct EchoOff;

#[cfg(not(unix))]
impl EchoOff {
    fn on_stdin() -> std::io::Result<Self> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "hidden input needs a Unix terminal; pipe the password in with --password-stdin",
        ))
    }
}
