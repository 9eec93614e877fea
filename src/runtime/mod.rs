//! The agent runtime: validation of uploaded modules (wasmparser) and execution (wasmtime).
//!
//! Both are CPU-bound and blocking; callers run them on the blocking pool.

mod cache;
mod compiler;
mod executor;
mod pipes;
mod validate;

pub use compiler::Compiler;
pub use executor::{Executor, ExecutorConfig, Outcome, Prepared, RunLimits, RunOutput};
pub use validate::{ModuleInfo, Policy, ValidationError, check, validate};
