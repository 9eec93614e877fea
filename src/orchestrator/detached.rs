//! Work that must not stop halfway when its caller goes away (a client that hangs up drops
//! its request's future): a submit past its auction is journaled, queued and announced, and
//! a cancel's end is announced, whoever still waits for them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

/// A future that finishes on a task of its own if it is dropped before it completes. Polled to
/// the end, it costs what the future costs: no task is spawned.
pub struct Detached<T: Send + 'static>(Option<BoxFuture<'static, T>>);

impl<T: Send + 'static> Detached<T> {
    pub fn new(work: impl Future<Output = T> + Send + 'static) -> Self {
        Self(Some(work.boxed()))
    }
}

impl<T: Send + 'static> Future for Detached<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let work = self.0.as_mut().expect("polled after completion");
        let done = work.as_mut().poll(cx);
        if done.is_ready() {
            self.0 = None;
        }
        done
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        // Without a runtime the process is stopping: the journal's recovery takes over.
        if let (Some(work), Ok(runtime)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(work);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropped_work_runs_to_its_end_and_finished_work_is_not_run_again() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
        let work = Detached::new(async move {
            gate_rx.await.unwrap();
            tx.send("finished").unwrap();
        });
        // Polled once (it waits at the gate), then dropped as a hung-up request's would be.
        let mut work = Box::pin(work);
        assert!(futures_util::poll!(work.as_mut()).is_pending());
        drop(work);
        gate_tx.send(()).unwrap();
        assert_eq!(rx.await.unwrap(), "finished");

        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        Detached::new(async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        })
        .await;
        tokio::task::yield_now().await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
