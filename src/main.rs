//! The `zerostate` binary: parses the command line and dispatches; see [`zerostate::cli`].

use std::process::ExitCode;

use clap::Parser;
use zerostate::cli::{Cli, Command, serve_command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve_command(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
