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
