//! Diagnostics a guest causes: the WASI implementation logs a warning for some calls (an
//! agent calling `sock_accept` in a loop made 100,000 lines in 0.4 s). They belong to the run
//! that caused them, not to the server log: a run wraps its guest in [`GuestDiagnostics::span`],
//! and this module's layer counts every such event under that span, keeping the first message.
//! The log's own layer never sees them ([`caused_by_guest`]).
//!
//! Threading: guests run on many threads and move between them; the span, not the thread,
//! says which run an event belongs to. The count is an atomic; the first message is written
//! once under a std Mutex.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Target of the span a run wraps its guest in.
const GUEST_TARGET: &str = "zerostate_guest";
/// Longest first message kept.
const MAX_MESSAGE_BYTES: usize = 200;

/// Whether events of `target` are caused by a guest (the WASI implementation and its
/// generated bindings).
pub(super) fn caused_by_guest(target: &str) -> bool {
    target.starts_with("wasmtime_wasi") || target.starts_with("wiggle") || target == GUEST_TARGET
}

/// Open runs' sinks by id: a span records only plain values, so it names its sink by id.
static SINKS: LazyLock<Mutex<HashMap<u64, Arc<Sink>>>> = LazyLock::new(Mutex::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
struct Sink {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

/// One run's diagnostics; the run's sink is dropped with it.
pub struct GuestDiagnostics {
    id: u64,
    sink: Arc<Sink>,
}

impl Default for GuestDiagnostics {
    fn default() -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let sink = Arc::new(Sink::default());
        lock(&SINKS).insert(id, sink.clone());
        Self { id, sink }
    }
}

impl GuestDiagnostics {
    /// The span to run the guest in.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(target: GUEST_TARGET, "guest", diagnostics = self.id)
    }

    /// How many diagnostics the run caused, and the first one; `None` when it caused none.
    pub fn summary(&self) -> Option<String> {
        let count = self.sink.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let first = lock(&self.sink.first).clone().unwrap_or_default();
        Some(format!(
            "[zerostate] the WASI host reported {count} diagnostic(s) for this run; first: {first}"
        ))
    }
}

impl Drop for GuestDiagnostics {
    fn drop(&mut self) {
        lock(&SINKS).remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The layer that counts guest-caused warnings and errors on their run's sink.
pub(super) fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let counted = filter_fn(|meta| {
        meta.target() == GUEST_TARGET
            || (caused_by_guest(meta.target()) && *meta.level() <= Level::WARN)
    });
    // Its spans are at INFO: nothing below it is ever needed here.
    Counter.with_filter(counted.with_max_level_hint(tracing::level_filters::LevelFilter::INFO))
}

struct Counter;

impl<S> Layer<S> for Counter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != GUEST_TARGET {
            return;
        }
        let mut visitor = SinkId(None);
        attrs.record(&mut visitor);
        let sink = visitor.0.and_then(|n| lock(&SINKS).get(&n).cloned());
        if let (Some(sink), Some(span)) = (sink, ctx.span(id)) {
            span.extensions_mut().insert(sink);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            if let Some(sink) = span.extensions().get::<Arc<Sink>>() {
                if sink.count.fetch_add(1, Ordering::Relaxed) == 0 {
                    let mut message = Message(String::new());
                    event.record(&mut message);
                    *lock(&sink.first) = Some(message.0);
                }
                return;
            }
        }
    }
}

/// Reads the sink id a guest span carries.
struct SinkId(Option<u64>);

impl Visit for SinkId {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "diagnostics" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// An event's message, cut to [`MAX_MESSAGE_BYTES`].
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && self.0.is_empty() {
            let mut text = format!("{value:?}");
            if text.len() > MAX_MESSAGE_BYTES {
                let mut cut = MAX_MESSAGE_BYTES;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            self.0 = text;
        }
    }
}
