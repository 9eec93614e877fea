//! The agent runtime: validation of uploaded modules (wasmparser) and execution (wasmtime).
//!
//! Both are CPU-bound and blocking; callers run them on the blocking pool.

mod cache;
mod executor;
mod pipes;
mod validate;

pub use executor::{Executor, Outcome, Prepared, RunLimits, RunOutput};
pub use validate::{ValidationError, validate};
