//! In-memory stdio for agents with explicit overflow behaviour.
//!
//! wasmtime-wasi's `MemoryOutputPipe` cannot tell its caller that a limit was hit; these pipes
//! record it. stdout keeps its first `capacity` bytes and traps the guest on overflow (the
//! task fails with `output_limit`); stderr keeps its last `capacity` bytes and never fails.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// What to do with bytes beyond the capacity.
#[derive(Debug, Clone, Copy)]
pub enum Overflow {
    /// Keep the head and trap the guest.
    Trap,
    /// Keep the tail, silently.
    KeepTail,
}

#[derive(Debug, Clone)]
pub struct CappedPipe {
    capacity: usize,
    overflow: Overflow,
    buffer: Arc<Mutex<Vec<u8>>>,
    overflowed: Arc<AtomicBool>,
}

impl CappedPipe {
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        Self {
            capacity,
            overflow,
            buffer: Arc::default(),
            overflowed: Arc::default(),
        }
    }

    pub fn contents(&self) -> Vec<u8> {
        self.buffer.lock().expect("pipe lock").clone()
    }

    /// True once a write went past the capacity.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Appends `bytes`; `Err` only for a trapping overflow (after keeping what fits).
    fn append(&self, bytes: &[u8]) -> Result<(), ()> {
        let mut buf = self.buffer.lock().expect("pipe lock");
        let room = self.capacity.saturating_sub(buf.len());
        if bytes.len() <= room {
            buf.extend_from_slice(bytes);
            return Ok(());
        }
        self.overflowed.store(true, Ordering::Relaxed);
        match self.overflow {
            Overflow::Trap => {
                buf.extend_from_slice(&bytes[..room]);
                Err(())
            }
            Overflow::KeepTail => {
                buf.extend_from_slice(bytes);
                let excess = buf.len().saturating_sub(self.capacity);
                buf.drain(..excess);
                Ok(())
            }
        }
    }
}

/// The error that ends a guest whose stdout overflowed.
#[derive(Debug, thiserror::Error)]
#[error("output limit exceeded")]
pub struct OutputLimitExceeded;

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
            .map_err(|()| StreamError::Trap(wasmtime::Error::new(OutputLimitExceeded)))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept a write, so the overflow is seen (and reported) by `write`.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(match self.append(buf) {
            Ok(()) => Ok(buf.len()),
            Err(()) => Err(std::io::Error::other(OutputLimitExceeded)),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_keeps_the_head_and_tail_keeps_the_tail() {
        let out = CappedPipe::new(4, Overflow::Trap);
        assert!(out.append(b"ab").is_ok());
        assert!(out.append(b"cdef").is_err());
        assert_eq!((out.contents(), out.overflowed()), (b"abcd".to_vec(), true));

        let err = CappedPipe::new(4, Overflow::KeepTail);
        assert!(err.append(b"abc").is_ok());
        assert!(err.append(b"defg").is_ok());
        assert_eq!((err.contents(), err.overflowed()), (b"defg".to_vec(), true));
    }
}
