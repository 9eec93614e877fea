//! Runs agents in wasmtime under strict limits.
//!
//! stdin is the task input, stdout the result, stderr a diagnostic tail. The guest gets no
//! filesystem, no sockets and no host environment: only the argv/env given here, clocks and
//! randomness. Wall time is enforced with epoch interruption: a ticker thread advances the
//! engine's epoch every [`TICK`] while at least one guest runs (and sleeps otherwise, so an
//! idle server burns no CPU), and each store checks its own deadline on every tick.
//!
//! All methods block; call them from the blocking pool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, InstancePre, Linker, Module, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::pipes::{CappedPipe, Overflow};

/// Epoch tick: the resolution of timeouts and of shutdown interruption.
pub const TICK: Duration = Duration::from_millis(10);

/// Per-run limits.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub stdout_bytes: usize,
    pub stderr_bytes: usize,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `_start` returned or called `proc_exit(0)`.
    Completed,
    /// `proc_exit(code)` with a non-zero code.
    Exited(i32),
    TimedOut,
    /// The guest tried to grow its memory past the limit.
    MemoryLimit,
    /// The guest wrote more than the stdout limit.
    OutputLimit,
    /// A trap (`unreachable`, stack overflow, out-of-bounds access…) or a failed instantiation.
    Trapped(String),
    /// Stopped because the server is shutting down; the task should run again later.
    Interrupted,
}

#[derive(Debug)]
pub struct RunOutput {
    pub outcome: Outcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("wall-clock timeout")]
struct TimedOut;

#[derive(Debug, thiserror::Error)]
#[error("interrupted by server shutdown")]
struct Interrupted;

#[derive(Debug, thiserror::Error)]
#[error("memory limit of {0} bytes exceeded")]
struct MemoryLimitExceeded(usize);

struct AgentState {
    wasi: WasiP1Ctx,
    memory: MemoryCap,
}

/// Caps linear memory. Growth past the cap traps (instead of `memory.grow` returning -1) so the
/// outcome is a clear `memory_limit`, not whatever the guest does on allocation failure.
struct MemoryCap {
    limit: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::Error::new(MemoryLimitExceeded(self.limit)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

pub struct Executor {
    engine: Engine,
    linker: Linker<AgentState>,
    /// Compiled modules by sha256, pre-linked. A std Mutex: held only on blocking threads,
    /// and never across a compile.
    modules: Mutex<HashMap<String, InstancePre<AgentState>>>,
    ticker: Arc<Ticker>,
    /// Set at shutdown; running guests stop at their next tick.
    stopping: Arc<AtomicBool>,
}

impl Executor {
    pub fn new() -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut AgentState| &mut s.wasi)?;
        let ticker = Ticker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            modules: Mutex::default(),
            ticker,
            stopping: Arc::default(),
        })
    }

    pub fn has_module(&self, hash: &str) -> bool {
        self.modules
            .lock()
            .expect("module cache")
            .contains_key(hash)
    }

    /// Compiles and links a module once; later runs reuse it.
    pub fn prepare(&self, hash: &str, bytes: &[u8]) -> Result<(), String> {
        if self.has_module(hash) {
            return Ok(());
        }
        let module =
            Module::new(&self.engine, bytes).map_err(|e| format!("compile failed: {e}"))?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| format!("link failed: {e}"))?;
        self.modules
            .lock()
            .expect("module cache")
            .insert(hash.to_owned(), pre);
        Ok(())
    }

    /// Runs a prepared module to completion or until a limit stops it.
    pub fn run(
        &self,
        hash: &str,
        args: &[String],
        env: &[(String, String)],
        stdin: Vec<u8>,
        limits: RunLimits,
    ) -> RunOutput {
        let started = Instant::now();
        let stdout = CappedPipe::new(limits.stdout_bytes, Overflow::Trap);
        let stderr = CappedPipe::new(limits.stderr_bytes, Overflow::KeepTail);
        let Some(pre) = self
            .modules
            .lock()
            .expect("module cache")
            .get(hash)
            .cloned()
        else {
            return RunOutput {
                outcome: Outcome::Trapped(format!("module {hash} is not prepared")),
                stdout: Vec::new(),
                stderr: Vec::new(),
                duration: started.elapsed(),
            };
        };

        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(stdin))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(args)
            .envs(env)
            .build_p1();
        let mut store = Store::new(
            &self.engine,
            AgentState {
                wasi,
                memory: MemoryCap {
                    limit: limits.memory_bytes,
                    exceeded: false,
                },
            },
        );
        store.limiter(|s| &mut s.memory);
        let deadline = started + limits.timeout;
        let stopping = self.stopping.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if stopping.load(Ordering::Relaxed) {
                return Err(wasmtime::Error::new(Interrupted));
            }
            if Instant::now() >= deadline {
                return Err(wasmtime::Error::new(TimedOut));
            }
            Ok(UpdateDeadline::Continue(1))
        });

        let result = {
            let _ticking = self.ticker.activate();
            pre.instantiate(&mut store).and_then(|instance| {
                instance
                    .get_typed_func::<(), ()>(&mut store, "_start")?
                    .call(&mut store, ())
            })
        };
        let outcome = classify(result, store.data().memory.exceeded, stdout.overflowed());
        RunOutput {
            outcome,
            stdout: stdout.contents(),
            stderr: stderr.contents(),
            duration: started.elapsed(),
        }
    }

    /// Interrupts every running guest at its next tick and refuses nothing else: callers
    /// stop submitting runs themselves.
    pub fn interrupt_all(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.ticker.close();
    }
}

fn classify(
    result: wasmtime::Result<()>,
    memory_exceeded: bool,
    stdout_overflowed: bool,
) -> Outcome {
    let Err(error) = result else {
        return Outcome::Completed;
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return if exit.0 == 0 {
            Outcome::Completed
        } else {
            Outcome::Exited(exit.0)
        };
    }
    if error.is::<TimedOut>() {
        return Outcome::TimedOut;
    }
    if error.is::<Interrupted>() {
        return Outcome::Interrupted;
    }
    if memory_exceeded {
        return Outcome::MemoryLimit;
    }
    if stdout_overflowed {
        return Outcome::OutputLimit;
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return Outcome::Trapped(trap.to_string());
    }
    Outcome::Trapped(
        error
            .chain()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(": "),
    )
}

/// Advances the engine epoch every [`TICK`] while any guest runs.
struct Ticker {
    state: Mutex<TickerState>,
    wake: Condvar,
}

#[derive(Default)]
struct TickerState {
    active: usize,
    closed: bool,
}

/// Keeps the ticker running while alive.
struct Ticking<'a>(&'a Ticker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.state.lock().expect("ticker").active -= 1;
    }
}

impl Ticker {
    fn start(engine: Engine) -> Arc<Self> {
        let ticker = Arc::new(Self {
            state: Mutex::default(),
            wake: Condvar::new(),
        });
        let t = ticker.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                loop {
                    {
                        let mut state = t.state.lock().expect("ticker");
                        while state.active == 0 && !state.closed {
                            state = t.wake.wait(state).expect("ticker");
                        }
                        if state.closed {
                            return;
                        }
                    }
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch ticker");
        ticker
    }

    fn activate(&self) -> Ticking<'_> {
        self.state.lock().expect("ticker").active += 1;
        self.wake.notify_one();
        Ticking(self)
    }

    fn close(&self) {
        self.state.lock().expect("ticker").closed = true;
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RunLimits = RunLimits {
        timeout: Duration::from_secs(5),
        memory_bytes: 16 * 1024 * 1024,
        stdout_bytes: 1024,
        stderr_bytes: 64,
    };

    fn run(wat: &str, stdin: &[u8], limits: RunLimits) -> RunOutput {
        let executor = Executor::new().unwrap();
        let bytes = wat::parse_str(wat).unwrap();
        executor.prepare("m", &bytes).unwrap();
        executor.run("m", &["agent".into()], &[], stdin.to_vec(), limits)
    }

    /// Echoes stdin to stdout (up to 64 KiB), then exits with the code in its name.
    fn echo_then_exit(code: i32) -> String {
        format!(
            r#"(module
              (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
              (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (memory (export "memory") 2)
              (func (export "_start")
                (i32.store (i32.const 0) (i32.const 1024))
                (i32.store (i32.const 4) (i32.const 65536))
                (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
                (i32.store (i32.const 4) (i32.load (i32.const 8)))
                (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))
                (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 12)))
                (call $exit (i32.const {code}))))"#
        )
    }

    #[test]
    fn stdin_reaches_stdout_and_exit_codes_are_reported() {
        let out = run(&echo_then_exit(0), b"hello", LIMITS);
        assert_eq!(
            (out.outcome, out.stdout.as_slice()),
            (Outcome::Completed, b"hello".as_slice())
        );
        let out = run(&echo_then_exit(3), b"oops", LIMITS);
        assert_eq!(
            (out.outcome, out.stderr.as_slice()),
            (Outcome::Exited(3), b"oops".as_slice())
        );
    }

    #[test]
    fn limits_stop_hostile_guests() {
        let out = run(&echo_then_exit(0), &[b'x'; 2000], LIMITS);
        assert_eq!(out.outcome, Outcome::OutputLimit);
        assert_eq!(out.stdout.len(), 1024, "the first bytes are kept");

        let spin =
            r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#;
        let out = run(
            spin,
            b"",
            RunLimits {
                timeout: Duration::from_millis(200),
                ..LIMITS
            },
        );
        assert_eq!(out.outcome, Outcome::TimedOut);

        let grow = r#"(module (memory (export "memory") 1)
            (func (export "_start") (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))"#;
        assert_eq!(run(grow, b"", LIMITS).outcome, Outcome::MemoryLimit);

        let recurse =
            r#"(module (memory (export "memory") 1) (func $f (export "_start") (call $f)))"#;
        assert!(
            matches!(run(recurse, b"", LIMITS).outcome, Outcome::Trapped(m) if m.contains("stack"))
        );

        let unreachable =
            r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;
        assert!(
            matches!(run(unreachable, b"", LIMITS).outcome, Outcome::Trapped(m) if m.contains("unreachable"))
        );
    }

    #[test]
    fn interrupt_all_stops_running_guests() {
        let executor = Arc::new(Executor::new().unwrap());
        let spin = wat::parse_str(
            r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#,
        )
        .unwrap();
        executor.prepare("spin", &spin).unwrap();
        let e = executor.clone();
        let handle = std::thread::spawn(move || e.run("spin", &[], &[], Vec::new(), LIMITS));
        executor.interrupt_all();
        assert_eq!(handle.join().unwrap().outcome, Outcome::Interrupted);
    }
}
