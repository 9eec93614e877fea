//! The command line: a clap `Command` enum, one `*_command` function per subcommand.

mod user;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::Application;
use crate::config::{Overrides, Settings};

pub use user::{UserCommand, UserCreateArgs, user_create_command};

#[derive(Debug, Parser)]
#[command(
    name = "zerostate",
    version,
    about = "Self-hosted AI-agent marketplace and orchestrator"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: API, web UI, queue and workers.
    Serve(ServeArgs),
    /// Run a worker node (compatibility mode): take tasks from Redis and run them, reporting
    /// to the primary (`[cluster] primary_url`). No API, no UI.
    Worker(WorkerArgs),
    /// Manage accounts directly in the data directory (the server must be stopped).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (default: config/zerostate.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the database, search index and secrets [default: ./zerostate-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Number of agent workers [default: 4].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Publish the bundled demo agents at start-up.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Configuration file (default: config/zerostate.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the compiled-module cache [default: ./zerostate-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Runs at once on this node [default: 4].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

/// `zerostate worker`.
pub async fn worker_command(args: WorkerArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        workers: args.workers,
        ..Overrides::default()
    };
    let settings =
        Settings::load(args.config.as_deref(), overrides).context("loading configuration")?;
    crate::telemetry::init_logging(&settings.log);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("signal received; stopping the worker gracefully");
            stop.cancel();
        }
    });
    crate::worker::run(settings, stop)
        .await
        .context("running the worker")?;
    Ok(())
}

/// `zerostate serve`.
pub async fn serve_command(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        workers: args.workers,
        demo: args.demo.then_some(true),
    };
    let settings =
        Settings::load(args.config.as_deref(), overrides).context("loading configuration")?;
    crate::telemetry::init_logging(&settings.log);
    let app = Application::build(settings)
        .await
        .context("starting the server")?;
    let token = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down gracefully");
        token.cancel();
    });
    app.run_until_stopped().await.context("serving")?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
