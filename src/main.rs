//! The `zerostate` binary: parses the command line and dispatches; see [`zerostate::cli`].

use std::process::ExitCode;

use clap::Parser;
use zerostate::cli::{Cli, Command, serve_command};

/// mimalloc: the task pipeline allocates many small, short-lived buffers across threads,
/// where glibc's malloc spent a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
