//! Logging (tracing-subscriber) and the Prometheus metrics recorder.
//!
//! Both are process-global: `init_logging` is called once by `main`; the metrics recorder is
//! installed on first use so that several `Application`s in one test process share it.

mod guest;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

pub use self::guest::GuestDiagnostics;

/// Installs the global tracing subscriber. `RUST_LOG` wins over the configured filter.
/// What guests cause inside the WASI implementation never reaches the server log: it is
/// counted on the run instead ([`GuestDiagnostics`]), so an agent cannot flood the log.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(settings.filter.as_str()));
    // The hint keeps tracing's level fast path: without one, `And` has none, and every
    // disabled trace! in every crate would be filtered at run time.
    let not_guest = filter_fn(|meta| !guest::caused_by_guest(meta.target()))
        .with_max_level_hint(tracing::level_filters::LevelFilter::TRACE);
    let server_only = filter.and(not_guest);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match settings.format {
        LogFormat::Pretty => fmt.with_filter(server_only).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_filter(server_only)
            .boxed(),
    };
    // A second init (e.g. in tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(guest::layer())
        .try_init();
}

/// Seconds buckets for HTTP latency and task duration histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// The process's Prometheus recorder, installed on first call.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours stays unused.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Histogram samples wait in a buffer until the recorder drains them (at a scrape, or here):
/// drained every this many samples, so memory stays bounded on a server nobody scrapes, and
/// an idle server does nothing.
const UPKEEP_EVERY: u64 = 4096;

/// Call after recording a histogram sample.
pub fn histogram_recorded() {
    static SAMPLES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SAMPLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n % UPKEEP_EVERY == UPKEEP_EVERY - 1 {
        metrics_handle().run_upkeep();
    }
}

/// At most one log line per interval for a kind of event an attacker can cause at will; the
/// lines in between are counted and reported with the next one.
pub struct LogBudget {
    every: std::time::Duration,
    /// When the last line was allowed. A std Mutex, held for a comparison.
    last: std::sync::Mutex<Option<std::time::Instant>>,
    suppressed: std::sync::atomic::AtomicU64,
}

impl LogBudget {
    pub const fn every(every: std::time::Duration) -> Self {
        Self {
            every,
            last: std::sync::Mutex::new(None),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last one)` when a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < self.every) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(std::time::Instant::now());
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}
