//! The agent runtime: validation of uploaded modules against the configured policy
//! (wasmparser), the low-priority build thread, the compiled-module cache, and execution
//! (wasmtime) under per-run limits.
//!
//! Validation and compilation are CPU-bound and blocking: callers run them on the blocking pool
//! or the [`Compiler`]'s thread, never on async threads.

mod cache;
mod compiler;
mod executor;
mod pipes;
mod validate;

pub use cache::KEY_FILE as MODULE_CACHE_KEY_FILE;
pub use compiler::Compiler;
pub use executor::{Executor, ExecutorConfig, Outcome, Prepared, RunLimits, RunOutput};
pub use validate::{ModuleInfo, ValidationError, check, validate};
