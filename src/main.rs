//! The `zerostate` binary: parses the command line and dispatches; see [`zerostate::cli`].

use std::process::ExitCode;

use clap::Parser;
use zerostate::cli::{
    Cli, Command, UserCommand, serve_command, user_create_command, worker_command,
};

/// mimalloc: the task pipeline allocates many small, short-lived buffers across threads,
/// where glibc's malloc spent a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve_command(args).await,
        Command::Worker(args) => worker_command(args).await,
        Command::User(UserCommand::Create(args)) => user_create_command(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Opts the process out of transparent huge pages. mimalloc asks for them, and the kernel then
/// zeroes a whole 2 MiB page on the first touch of any part of it; as the allocator returns and
/// reuses memory under load, that zeroing took a tenth of the server's CPU (perf: kernel
/// `clear_page_erms`, 0.1 % without). End-to-end p99 submit latency was lower without THP in
/// each of four alternating runs (`cargo bench --bench e2e_load -- 30000 64 8000`). Redis and
/// MongoDB advise the same.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain system call with integer arguments only; it sets a flag on this
        // process and cannot touch memory. Failure (an old kernel) leaves THP as it was.
        let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if result != 0 {
            eprintln!(
                "note: could not opt out of transparent huge pages: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
