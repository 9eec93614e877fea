//! Runs agents in wasmtime under strict limits.
//!
//! stdin is the task input, stdout the result, stderr a diagnostic tail. The guest gets no
//! filesystem, no sockets and no host environment: only the argv/env given here, clocks and
//! randomness.
//!
//! Threading: guests run as futures on the executor's own tokio runtime (`agent-runtime`
//! threads), never on the API runtime's threads. Async execution is what makes the wall-clock
//! limit hold everywhere: a guest burning CPU is interrupted by epoch deadlines (a ticker thread
//! advances the epoch every [`TICK`] while any guest runs, and sleeps otherwise, so an idle
//! server burns no CPU; the guest yields at every tick), and a guest parked in a host call
//! (e.g. `poll_oneoff` sleeping) is dropped by the timeout around the whole run. Shutdown
//! cancels runs the same way. A guest still running after two ticks gives way to new guests
//! (see [`Lanes`]), so spinning agents cannot make short tasks wait for a thread.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::cache::ModuleCache;
use super::pipes::{CappedPipe, Overflow};
use crate::records::RunOrder;
pub use crate::records::{Outcome, RunLimits, RunOutput};
use crate::telemetry::GuestDiagnostics;

/// Nice value of the threads guests run on. Below the server's own threads (0), so agents
/// burning CPU never delay accepting, journaling and answering requests; above the build
/// thread's.
pub(super) const AGENT_NICE: i32 = 5;

/// Epoch tick: the resolution of timeouts and how often a running guest yields.
pub const TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings of an [`Executor`].
#[derive(Debug, Clone, Copy)]
pub struct ExecutorConfig {
    /// Most guests running at once; also the number of pooled instance slots.
    pub runs: usize,
    /// wasm call stack of every guest.
    pub wasm_stack_bytes: usize,
    /// Largest linear memory any run may have; each pooled slot reserves (virtual) address
    /// space for it.
    pub max_memory_bytes: usize,
    /// Table elements each pooled slot holds; modules declaring more fail to instantiate, so
    /// validation must refuse them first.
    pub max_table_elements: usize,
    /// Meter fuel (wasmtime instruments every function; 10-20 % slower guests).
    pub fuel: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            runs: 1,
            wasm_stack_bytes: 512 * 1024,
            max_memory_bytes: 1 << 30,
            max_table_elements: 100_000,
            fuel: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("wall-clock timeout")]
struct TimedOut;

#[derive(Debug, thiserror::Error)]
#[error("interrupted by server shutdown")]
struct Interrupted;

#[derive(Debug, thiserror::Error)]
#[error("canceled")]
struct Canceled;

#[derive(Debug, thiserror::Error)]
#[error("memory limit of {0} bytes exceeded")]
struct MemoryLimitExceeded(usize);

struct AgentState {
    wasi: WasiP1Ctx,
    memory: MemoryCap,
}

/// Caps linear memory. Growth past the cap traps (instead of `memory.grow` returning -1) so the
/// outcome is a clear `memory_limit`, not whatever the guest does on allocation failure.
/// Modules have one memory (multi-memory is off), so a per-memory cap is a per-instance cap.
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

    fn memories(&self) -> usize {
        1
    }
}

pub struct Executor {
    engine: Engine,
    linker: Linker<AgentState>,
    /// Compiled modules by sha256, pre-linked. A std Mutex: held only to look up or insert,
    /// never across a compile or an await.
    modules: Mutex<HashMap<String, InstancePre<AgentState>>>,
    ticker: Arc<Ticker>,
    /// Where guests run. `Option` only so `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
    /// Cancelled at shutdown; running guests stop at once.
    stopping: CancellationToken,
    /// One permit per pooled instance slot: a run waits for a free slot instead of failing.
    slots: Arc<tokio::sync::Semaphore>,
    lanes: Arc<Lanes>,
    /// Compiled modules kept across restarts, if configured.
    cache: Option<ModuleCache>,
    /// Whether the engine meters fuel.
    fuel: bool,
}

/// Where [`Executor::prepare`] got a module's compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Already in memory.
    Loaded,
    /// From the on-disk cache: no compile.
    Cached,
    Compiled,
}

impl Executor {
    /// An executor with the default [`ExecutorConfig`] that runs at most `runs` guests at once.
    pub fn new(runs: usize) -> wasmtime::Result<Self> {
        Self::with_config(ExecutorConfig {
            runs,
            ..ExecutorConfig::default()
        })
    }

    /// An executor that runs at most `config.runs` guests at once, on dedicated threads (no
    /// more than there are cores). Instances come from a pool of pre-reserved slots (memory,
    /// table, stack), so starting a guest maps no memory: its linear memory is a copy-on-write
    /// image.
    pub fn with_config(options: ExecutorConfig) -> wasmtime::Result<Self> {
        let runs = options.runs;
        let slots = runs.max(1) as u32;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .total_component_instances(0)
            .max_memory_size(options.max_memory_bytes)
            .table_elements(options.max_table_elements);
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(options.fuel);
        config.wasm_multi_memory(false);
        config.max_wasm_stack(options.wasm_stack_bytes);
        // Host calls run on the guest's fiber stack too: room for them above the wasm stack.
        config.async_stack_size(options.wasm_stack_bytes + 2 * 1024 * 1024);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut AgentState| &mut s.wasi)?;
        // Guests yield at every epoch tick, so more runs than threads share them fairly; a
        // thread per core is all the parallelism there is, and each extra one only adds
        // wake-ups and context switches (2 threads instead of 4 on 2 cores: server CPU per
        // task 1-6 % lower in each of three alternating e2e runs at 10,000 tasks/s).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = runs.clamp(1, cores);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("agent-runtime")
            .on_thread_start(|| super::compiler::lower_this_thread(AGENT_NICE))
            .enable_all()
            .build()
            .map_err(wasmtime::Error::new)?;
        let ticker = Ticker::start(engine.clone());
        Ok(Self {
            fuel: options.fuel,
            engine,
            linker,
            modules: Mutex::default(),
            ticker,
            runtime: Some(runtime),
            stopping: CancellationToken::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(slots as usize)),
            lanes: Arc::new(Lanes {
                fresh: Mutex::default(),
                next_id: AtomicU64::new(0),
                long_turns: Arc::new(tokio::sync::Semaphore::new(
                    threads.saturating_sub(1).max(1),
                )),
            }),
            cache: None,
        })
    }

    /// Keeps compiled modules in `dir` (see [`ModuleCache`]), so that after a restart a
    /// module is loaded instead of compiled again. Entries are authenticated under `key`, a
    /// secret of this install: a file it did not write is never loaded. Blocking.
    pub fn with_module_cache(mut self, dir: &Path, key: &[u8]) -> std::io::Result<Self> {
        self.cache = Some(ModuleCache::open(dir, &self.engine, key)?);
        Ok(self)
    }

    pub fn has_module(&self, hash: &str) -> bool {
        self.modules
            .lock()
            .expect("module cache")
            .contains_key(hash)
    }

    /// Makes a module runnable from memory or the on-disk cache, without its bytes; `None`
    /// if it must be compiled ([`Executor::prepare`]). Blocking.
    pub fn prepare_cached(&self, hash: &str) -> Result<Option<Prepared>, String> {
        if self.has_module(hash) {
            return Ok(Some(Prepared::Loaded));
        }
        let Some(module) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, hash))
        else {
            return Ok(None);
        };
        self.link(hash, &module)?;
        metrics::counter!("zerostate_modules_loaded_total").increment(1);
        Ok(Some(Prepared::Cached))
    }

    /// Compiles (unless it is in memory or the cache) and links a module once; later runs
    /// reuse it. CPU-heavy and blocking: call from the blocking pool.
    pub fn prepare(&self, hash: &str, bytes: &[u8]) -> Result<Prepared, String> {
        match self.prepare_cached(hash)? {
            Some(prepared) => Ok(prepared),
            None => self.compile(hash, bytes),
        }
    }

    /// Whether wasmtime, as configured, accepts the module (the features it supports can be
    /// narrower than the validator's). Blocking; linear in the module size.
    pub fn validate(&self, bytes: &[u8]) -> Result<(), String> {
        Module::validate(&self.engine, bytes).map_err(|e| format!("{e:#}"))
    }

    /// Compiles and links a module that [`Executor::prepare_cached`] did not find, and saves
    /// its code to the cache. Blocking.
    pub fn compile(&self, hash: &str, bytes: &[u8]) -> Result<Prepared, String> {
        self.compile_unless(hash, bytes, &AtomicBool::new(false))
    }

    /// [`Executor::compile`], unless `abandoned` is set by the time the code is ready (the
    /// caller gave up waiting): then the code is dropped, neither cached nor linked.
    pub fn compile_unless(
        &self,
        hash: &str,
        bytes: &[u8],
        abandoned: &AtomicBool,
    ) -> Result<Prepared, String> {
        // Another build of the same bytes may have finished while this one waited.
        if self.has_module(hash) {
            return Ok(Prepared::Loaded);
        }
        let started = Instant::now();
        let module =
            Module::new(&self.engine, bytes).map_err(|e| format!("compile failed: {e:#}"))?;
        metrics::counter!("zerostate_modules_compiled_total").increment(1);
        metrics::histogram!("zerostate_module_compile_seconds")
            .record(started.elapsed().as_secs_f64());
        if abandoned.load(Ordering::Acquire) {
            return Err("compilation abandoned".into());
        }
        if let Some(cache) = &self.cache {
            cache.store(hash, &module);
        }
        self.link(hash, &module)?;
        Ok(Prepared::Compiled)
    }

    fn link(&self, hash: &str, module: &Module) -> Result<(), String> {
        let pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| format!("link failed: {e:#}"))?;
        self.modules
            .lock()
            .expect("module cache")
            .insert(hash.to_owned(), pre);
        Ok(())
    }

    /// Runs a prepared module to completion, until a limit stops it, or until `cancel` fires.
    /// Runs a [`RunOrder`]: what the guest gets moves out of the order (the rest stays for
    /// the report).
    pub async fn run_order(&self, order: &mut RunOrder, cancel: CancellationToken) -> RunOutput {
        let (args, env, stdin) = order.take_guest_input();
        self.run(&order.module, args, env, stdin, order.limits, cancel)
            .await
    }

    pub async fn run(
        &self,
        hash: &str,
        args: Vec<String>,
        env: Vec<(String, String)>,
        stdin: Vec<u8>,
        limits: RunLimits,
        cancel: CancellationToken,
    ) -> RunOutput {
        let started = Instant::now();
        if stdin.len() > limits.stdin_bytes {
            return RunOutput {
                outcome: Outcome::InputLimit,
                stdout: Vec::new(),
                stderr: Vec::new(),
                duration: started.elapsed(),
            };
        }
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
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            unreachable!("the slot semaphore is never closed");
        };
        let guest = Guest {
            _slot: slot,
            engine: self.engine.clone(),
            pre,
            ticker: self.ticker.clone(),
            // Counted as fresh from now: long runs make room before it is first polled.
            turns: Turns::new(self.lanes.clone()),
            stopping: self.stopping.clone(),
            cancel,
            fuel: self.fuel.then(|| limits.fuel.unwrap_or(u64::MAX)),
        };
        let runtime = self.runtime.as_ref().expect("runtime lives until drop");
        match runtime.spawn(guest.run(args, env, stdin, limits)).await {
            Ok(output) => output,
            Err(e) => RunOutput {
                outcome: Outcome::Trapped(format!("agent run aborted: {e}")),
                stdout: Vec::new(),
                stderr: Vec::new(),
                duration: started.elapsed(),
            },
        }
    }

    /// Stops every running guest now; they end with [`Outcome::Interrupted`].
    pub fn interrupt_all(&self) {
        self.stopping.cancel();
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.ticker.close();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Everything one run needs, moved onto the agent runtime.
struct Guest {
    /// Held for the run (a parameter of [`Guest::run`], so dropped after its store): the
    /// pooled slot is free again when the store is gone.
    _slot: tokio::sync::OwnedSemaphorePermit,
    engine: Engine,
    pre: InstancePre<AgentState>,
    ticker: Arc<Ticker>,
    turns: Turns,
    stopping: CancellationToken,
    cancel: CancellationToken,
    /// The run's fuel, if the engine meters it.
    fuel: Option<u64>,
}

impl Guest {
    async fn run(
        self,
        args: Vec<String>,
        env: Vec<(String, String)>,
        stdin: Vec<u8>,
        limits: RunLimits,
    ) -> RunOutput {
        let started = Instant::now();
        let stdout = CappedPipe::new(limits.stdout_bytes, Overflow::Trap);
        let stderr = CappedPipe::new(limits.stderr_bytes, Overflow::KeepTail);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(stdin))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&args)
            .envs(&env)
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
        if let Some(fuel) = self.fuel
            && let Err(e) = store.set_fuel(fuel)
        {
            return RunOutput {
                outcome: Outcome::Trapped(format!("cannot set fuel: {e}")),
                stdout: Vec::new(),
                stderr: Vec::new(),
                duration: started.elapsed(),
            };
        }
        let deadline = started + limits.timeout;
        store.set_epoch_deadline(1);
        let mut turns = self.turns;
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Err(wasmtime::Error::new(TimedOut));
            }
            Ok(turns.next())
        });

        let diagnostics = GuestDiagnostics::default();
        let result = {
            let _ticking = self.ticker.activate();
            let call = async {
                let instance = self.pre.instantiate_async(&mut store).await?;
                instance
                    .get_typed_func::<(), ()>(&mut store, "_start")?
                    .call_async(&mut store, ())
                    .await
            };
            let call = call.instrument(diagnostics.span());
            tokio::select! {
                result = tokio::time::timeout(limits.timeout, call) => {
                    result.unwrap_or_else(|_| Err(wasmtime::Error::new(TimedOut)))
                }
                _ = self.stopping.cancelled() => Err(wasmtime::Error::new(Interrupted)),
                _ = self.cancel.cancelled() => Err(wasmtime::Error::new(Canceled)),
            }
        };
        let outcome = classify(result, store.data().memory.exceeded, stdout.overflowed());
        RunOutput {
            outcome,
            stdout: stdout.contents(),
            stderr: with_note(stderr.contents(), diagnostics.summary()),
            duration: started.elapsed(),
        }
    }
}

/// The guest's stderr, with the host's note about the run (on a line of its own) after it.
fn with_note(mut stderr: Vec<u8>, note: Option<String>) -> Vec<u8> {
    if let Some(note) = note {
        if !stderr.is_empty() && !stderr.ends_with(b"\n") {
            stderr.push(b'\n');
        }
        stderr.extend_from_slice(note.as_bytes());
        stderr.push(b'\n');
    }
    stderr
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
    if error.is::<Canceled>() {
        return Outcome::Canceled;
    }
    if memory_exceeded {
        return Outcome::MemoryLimit;
    }
    if stdout_overflowed {
        return Outcome::OutputLimit;
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        match trap {
            Trap::StackOverflow => return Outcome::StackOverflow,
            Trap::OutOfFuel => return Outcome::FuelExhausted,
            _ => {}
        }
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

/// Guests that have run longer than [`FRESH_FOR`] ("long runs") give way to new ones: while
/// any guest is fresh, long runs take turns on all the runtime's threads but one (one thread
/// when there is only one), so a fresh task waits at most about a tick for a thread however
/// many guests spin. Without fresh guests, long runs use every thread.
struct Lanes {
    /// Fresh guests: id → when it was handed to the runtime. Entries older than [`FRESH_FOR`]
    /// no longer count and are pruned on the next look.
    fresh: Mutex<HashMap<u64, Instant>>,
    next_id: AtomicU64,
    /// One permit per thread long runs may use while fresh guests wait. A turn lasts one tick
    /// of wall time, whatever the guest does meanwhile (a host call, a sleep).
    long_turns: Arc<tokio::sync::Semaphore>,
}

/// How long a guest counts as fresh.
const FRESH_FOR: Duration = Duration::from_millis(2 * TICK.as_millis() as u64);

impl Lanes {
    fn has_fresh(&self, now: Instant) -> bool {
        let mut fresh = self.fresh.lock().expect("lanes");
        fresh.retain(|_, since| now.duration_since(*since) < FRESH_FOR);
        !fresh.is_empty()
    }
}

/// One guest's place in the [`Lanes`], consulted at each epoch tick.
struct Turns {
    lanes: Arc<Lanes>,
    id: u64,
    started: Instant,
}

impl Turns {
    fn new(lanes: Arc<Lanes>) -> Self {
        let id = lanes.next_id.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        lanes.fresh.lock().expect("lanes").insert(id, started);
        Self { lanes, id, started }
    }

    /// What the guest does at a tick: yield, and as a long run while fresh guests are about,
    /// wait for a turn.
    fn next(&mut self) -> UpdateDeadline {
        let now = Instant::now();
        if now.duration_since(self.started) < FRESH_FOR || !self.lanes.has_fresh(now) {
            return UpdateDeadline::Yield(1);
        }
        let turns = self.lanes.long_turns.clone();
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                let Ok(turn) = turns.acquire_owned().await else {
                    unreachable!("the turn semaphore is never closed");
                };
                // The semaphore is fair, so long runs alternate tick by tick.
                tokio::spawn(async move {
                    tokio::time::sleep(TICK).await;
                    drop(turn);
                });
            }),
        )
    }
}

impl Drop for Turns {
    fn drop(&mut self) {
        self.lanes.fresh.lock().expect("lanes").remove(&self.id);
    }
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
        stdin_bytes: 4096,
        stdout_bytes: 1024,
        stderr_bytes: 64,
        fuel: None,
    };

    /// Runs the prepared module `hash` with `stdin`, no argv or env, and no cancel.
    async fn run_prepared(
        executor: &Executor,
        hash: &str,
        stdin: &[u8],
        limits: RunLimits,
    ) -> RunOutput {
        let args = vec!["agent".to_owned()];
        let cancel = CancellationToken::new();
        executor
            .run(hash, args, Vec::new(), stdin.to_vec(), limits, cancel)
            .await
    }

    async fn run(wat: &str, stdin: &[u8], limits: RunLimits) -> RunOutput {
        let executor = Executor::new(1).unwrap();
        executor
            .prepare("m", &wat::parse_str(wat).unwrap())
            .unwrap();
        run_prepared(&executor, "m", stdin, limits).await
    }

    /// Loops forever in wasm.
    const SPIN: &str =
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#;

    /// Echoes stdin to stdout and stderr (up to 64 KiB), then exits with `code`.
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

    /// Sleeps in the host for an hour through `poll_oneoff` with a relative clock subscription.
    const HOST_SLEEP: &str = r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i64.store (i32.const 0) (i64.const 7))             ;; userdata
        (i32.store8 (i32.const 8) (i32.const 0))            ;; tag: clock
        (i32.store (i32.const 16) (i32.const 1))            ;; clock id: monotonic
        (i64.store (i32.const 24) (i64.const 3600000000000)) ;; timeout: 1 h in ns
        (i64.store (i32.const 32) (i64.const 0))            ;; precision
        (i32.store16 (i32.const 40) (i32.const 0))          ;; flags: relative
        (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;

    #[tokio::test]
    async fn stdin_reaches_stdout_and_exit_codes_are_reported() {
        let out = run(&echo_then_exit(0), b"hello", LIMITS).await;
        assert_eq!(
            (out.outcome, out.stdout.as_slice()),
            (Outcome::Completed, b"hello".as_slice())
        );
        let out = run(&echo_then_exit(3), b"oops", LIMITS).await;
        assert_eq!(
            (out.outcome, out.stderr.as_slice()),
            (Outcome::Exited(3), b"oops".as_slice())
        );
    }

    #[tokio::test]
    async fn limits_stop_hostile_guests() {
        let out = run(&echo_then_exit(0), &[b'x'; 2000], LIMITS).await;
        assert_eq!(out.outcome, Outcome::OutputLimit);
        assert_eq!(out.stdout.len(), 1024, "the first bytes are kept");

        let short = RunLimits {
            timeout: Duration::from_millis(200),
            ..LIMITS
        };
        assert_eq!(run(SPIN, b"", short).await.outcome, Outcome::TimedOut);
        let slept = run(HOST_SLEEP, b"", short).await;
        assert_eq!(
            slept.outcome,
            Outcome::TimedOut,
            "a host-side sleep cannot outlive the timeout"
        );
        assert!(
            slept.duration < Duration::from_secs(1),
            "{:?}",
            slept.duration
        );

        let grow = r#"(module (memory (export "memory") 1)
            (func (export "_start") (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))"#;
        assert_eq!(run(grow, b"", LIMITS).await.outcome, Outcome::MemoryLimit);

        let recurse =
            r#"(module (memory (export "memory") 1) (func $f (export "_start") (call $f)))"#;
        assert_eq!(
            run(recurse, b"", LIMITS).await.outcome,
            Outcome::StackOverflow
        );

        let unreachable =
            r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;
        assert!(
            matches!(run(unreachable, b"", LIMITS).await.outcome, Outcome::Trapped(m) if m.contains("unreachable"))
        );
    }

    #[tokio::test]
    async fn long_runs_take_turns_while_a_fresh_guest_runs_and_give_every_turn_back() {
        let executor = Arc::new(Executor::new(3).unwrap());
        executor
            .prepare("spin", &wat::parse_str(SPIN).unwrap())
            .unwrap();
        executor
            .prepare("echo", &wat::parse_str(echo_then_exit(0)).unwrap())
            .unwrap();
        let short = RunLimits {
            timeout: Duration::from_millis(300),
            ..LIMITS
        };
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let e = executor.clone();
                tokio::spawn(async move { run_prepared(&e, "spin", b"", short).await })
            })
            .collect();
        let echo = run_prepared(&executor, "echo", b"hi", LIMITS).await;
        assert_eq!(
            (echo.outcome, echo.stdout),
            (Outcome::Completed, b"hi".to_vec())
        );
        for spinner in spinners {
            assert_eq!(spinner.await.unwrap().outcome, Outcome::TimedOut);
        }
        let lanes = &executor.lanes;
        assert!(
            lanes.fresh.lock().unwrap().is_empty(),
            "every guest left the fresh set"
        );
        // Each turn is handed back a tick after it was taken.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(3);
        let turns = threads.saturating_sub(1).max(1) as u32;
        let back =
            tokio::time::timeout(Duration::from_secs(1), lanes.long_turns.acquire_many(turns));
        assert!(back.await.is_ok(), "all {turns} turns are free again");
    }

    #[tokio::test]
    async fn a_cancel_token_stops_one_guest() {
        let executor = Executor::new(1).unwrap();
        executor
            .prepare("sleep", &wat::parse_str(HOST_SLEEP).unwrap())
            .unwrap();
        let cancel = CancellationToken::new();
        let run = executor.run(
            "sleep",
            Vec::new(),
            Vec::new(),
            Vec::new(),
            LIMITS,
            cancel.clone(),
        );
        cancel.cancel();
        assert_eq!(run.await.outcome, Outcome::Canceled);
    }

    #[tokio::test]
    async fn interrupt_all_stops_spinning_and_sleeping_guests() {
        let executor = Arc::new(Executor::new(2).unwrap());
        executor
            .prepare("spin", &wat::parse_str(SPIN).unwrap())
            .unwrap();
        executor
            .prepare("sleep", &wat::parse_str(HOST_SLEEP).unwrap())
            .unwrap();
        let runs: Vec<_> = ["spin", "sleep"]
            .into_iter()
            .map(|hash| {
                let e = executor.clone();
                tokio::spawn(async move { run_prepared(&e, hash, b"", LIMITS).await })
            })
            .collect();
        executor.interrupt_all();
        for run in runs {
            assert_eq!(run.await.unwrap().outcome, Outcome::Interrupted);
        }
    }

    #[tokio::test]
    async fn a_restart_loads_compiled_code_from_the_cache_and_a_damaged_entry_is_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = wat::parse_str(echo_then_exit(0)).unwrap();
        let cached = |dir: &Path| {
            Executor::new(1)
                .unwrap()
                .with_module_cache(dir, b"this install's key")
                .unwrap()
        };

        let first = cached(dir.path());
        assert_eq!(first.prepare("m", &bytes), Ok(Prepared::Compiled));
        assert_eq!(first.prepare("m", &bytes), Ok(Prepared::Loaded));
        drop(first);
        let entry = cache_entry(dir.path());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&entry).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // A restart: the code comes from disk, without the module bytes.
        let second = cached(dir.path());
        assert_eq!(second.prepare_cached("m"), Ok(Some(Prepared::Cached)));
        assert_eq!(second.prepare_cached("other"), Ok(None));
        let out = run_prepared(&second, "m", b"hi", LIMITS).await;
        assert_eq!(
            (out.outcome, out.stdout),
            (Outcome::Completed, b"hi".to_vec())
        );
        drop(second);

        // A flipped bit in the compiled code fails the MAC: compiled again, not run.
        let mut code = std::fs::read(&entry).unwrap();
        let last = code.len() - 1;
        code[last] ^= 1;
        std::fs::write(&entry, code).unwrap();
        let third = cached(dir.path());
        assert_eq!(third.prepare_cached("m"), Ok(None));
        assert!(!entry.exists(), "the damaged entry is deleted");
        assert_eq!(third.prepare("m", &bytes), Ok(Prepared::Compiled));

        // Files of another engine build are deleted at open.
        let foreign = dir.path().join("m-0123456789abcdef.cwasm");
        std::fs::write(&foreign, b"old").unwrap();
        drop(cached(dir.path()));
        assert!(!foreign.exists());
    }

    /// The one compiled-module file in `dir`.
    fn cache_entry(dir: &Path) -> std::path::PathBuf {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.pop().unwrap()
    }

    #[test]
    fn a_planted_or_swapped_compiled_module_is_never_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let ours = |dir: &Path| {
            Executor::new(1)
                .unwrap()
                .with_module_cache(dir, b"this install's key")
                .unwrap()
        };
        let planter = Executor::new(1)
            .unwrap()
            .with_module_cache(dir.path(), b"a key the planter chose")
            .unwrap();
        // Real wasmtime output for this very engine, with a sound header, but not under our
        // key: what someone able to write the directory could plant.
        let spin = wat::parse_str(SPIN).unwrap();
        assert_eq!(planter.prepare("m", &spin), Ok(Prepared::Compiled));
        let planted = cache_entry(dir.path());
        let server = ours(dir.path());
        assert_eq!(
            server.prepare_cached("m"),
            Ok(None),
            "planted code is not loaded"
        );
        assert!(!planted.exists(), "and it is deleted");

        // Our own entry of another module, copied under this module's name: the MAC binds
        // the name, so it is refused too.
        let echo = wat::parse_str(echo_then_exit(0)).unwrap();
        assert_eq!(server.prepare("echo", &echo), Ok(Prepared::Compiled));
        let echo_entry = cache_entry(dir.path());
        let name = echo_entry.file_name().unwrap().to_str().unwrap();
        let swapped = dir.path().join(name.replacen("echo", "m", 1));
        std::fs::copy(&echo_entry, &swapped).unwrap();
        let restarted = ours(dir.path());
        assert_eq!(restarted.prepare_cached("echo"), Ok(Some(Prepared::Cached)));
        assert_eq!(
            restarted.prepare_cached("m"),
            Ok(None),
            "a swapped entry is not loaded"
        );
        assert!(!swapped.exists());
    }
}
