//! Where module builds (body validation, compilation) run: one dedicated thread at a lower CPU
//! priority than the rest of the server, one build at a time, in order. wasmtime compiles on
//! the calling thread (parallel compilation is off), so a build uses at most one core, and only
//! what requests and agent runs leave idle: a big or hostile module never delays them.

use std::sync::Mutex;
use std::sync::mpsc;

use tokio::sync::oneshot;

/// Nice value of build threads (the server's own threads run at 0, agent threads at
/// [`super::executor::AGENT_NICE`]).
const BUILD_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A queue of build jobs served by one low-priority thread. Cheap to share behind an `Arc`;
/// the thread ends when the `Compiler` is dropped and its queue is empty.
pub struct Compiler {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Compiler {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("agent-build".into())
            .spawn(move || {
                lower_this_thread(BUILD_NICE);
                for job in rx {
                    // A panicking job drops its result sender (its caller sees the build
                    // fail) and leaves the thread serving the next one.
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a build job panicked");
                    }
                }
            })?;
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Queues `job`; the receiver gets its result. A job cannot be interrupted: a caller that
    /// stops waiting (a compile timeout) leaves it to finish, and later jobs wait for it.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        self.run_timed(job).1
    }

    /// Like [`Compiler::run`], and the first receiver fires when the job starts (so a caller
    /// can time the job itself, not its wait in the queue).
    pub fn run_timed<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> (oneshot::Receiver<()>, oneshot::Receiver<T>) {
        let (started_tx, started_rx) = oneshot::channel();
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = started_tx.send(());
            let _ = tx.send(job());
        });
        // The thread lives as long as the sender, so a send cannot fail.
        let _ = self.jobs.lock().expect("compiler queue").send(job);
        (started_rx, rx)
    }
}

/// Lowers the calling thread's CPU priority to `nice` (Linux nice values are per thread).
pub(super) fn lower_this_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take plain integers and touch no memory of ours.
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if result != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower a thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_on_a_low_priority_thread() {
        let compiler = Compiler::start().unwrap();
        let first = compiler.run(|| std::thread::current().name().map(str::to_owned));
        // Field 19 of the thread's stat line is its nice value.
        let second = compiler.run(|| {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let after_name = &stat[stat.rfind(')').unwrap() + 1..];
            after_name
                .split_whitespace()
                .nth(16)
                .unwrap()
                .parse::<i32>()
                .unwrap()
        });
        let panics = compiler.run(|| panic!("a bug in a build step"));
        let after = compiler.run(|| 7);
        assert_eq!(first.await.unwrap().as_deref(), Some("agent-build"));
        assert_eq!(second.await.unwrap(), BUILD_NICE);
        assert!(panics.await.is_err(), "the caller sees the failure");
        assert_eq!(
            after.await.unwrap(),
            7,
            "the thread survives a panicking job"
        );
    }
}
