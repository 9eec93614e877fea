//! Circuit breakers: one per outside dependency (Redis, S3), so that a dependency that is down
//! costs its callers microseconds instead of a timeout each.
//!
//! A [`Breaker`] is closed (calls go through) until `failure_threshold` consecutive calls
//! fail; then it is open (calls fail at once with [`Tripped::Open`], no call is made) for
//! `cooldown_ms`; then half-open: the next call is a probe and the only one let through until
//! it ends. The probe's success closes the breaker, its failure opens it for another cool-down.
//!
//! Threading: the state is a std Mutex held for a few instructions, never across an await,
//! so a refused call costs a lock and a clock read. This module never retries a call and
//! never sleeps: retries are the caller's (or the client's, after `Retry-After`).

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::BreakerSettings;
use crate::error::{ApiError, Code};
use crate::telemetry::LogBudget;

/// The time a breaker goes by; tests drive a [`ManualClock`].
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The monotonic clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (tests).
pub struct ManualClock {
    start: Instant,
    /// Time advanced so far. A std Mutex: held for an addition.
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a breaker lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// As `/health` and the logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of the `zerostate_breaker_state` gauge.
    fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// Why a call through a breaker did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Tripped<E> {
    /// The breaker is open (or a half-open probe is running): no call was made.
    #[error("{dependency} is unavailable; retry in {}s", retry_secs(*.retry_after))]
    Open {
        dependency: &'static str,
        retry_after: Duration,
    },
    /// The call did not end within `call_timeout_ms` (it was dropped).
    #[error("{dependency} did not answer within {} ms", .after.as_millis())]
    TimedOut {
        dependency: &'static str,
        after: Duration,
    },
    /// The call ended with this error.
    #[error("{0}")]
    Failed(E),
}

/// Failed calls turned into API errors are logged at most this often (an outage fails them
/// all).
static FAILED_CALLS_LOG: LogBudget = LogBudget::every(Duration::from_secs(10));

/// Whole seconds for `Retry-After`: rounded up, at least 1.
pub fn retry_secs(retry_after: Duration) -> u64 {
    retry_after.as_secs_f64().ceil().max(1.0) as u64
}

impl<E: Display> Tripped<E> {
    /// 503 `dependency_unavailable` naming the dependency, with `Retry-After`: the cool-down
    /// left when open, 1 s otherwise. A failed call's own error goes to the log (at warn, at
    /// most once every 10 s), never to the client: it may name hosts or keys. `Failed` does
    /// not know its dependency: [`Breaker::api_error`] names it.
    pub fn api_error(&self) -> ApiError {
        let (dependency, wait) = match self {
            Tripped::Open {
                dependency,
                retry_after,
            } => (*dependency, *retry_after),
            Tripped::TimedOut { dependency, .. } => (*dependency, Duration::ZERO),
            Tripped::Failed(e) => {
                if let Some(suppressed) = FAILED_CALLS_LOG.allow() {
                    tracing::warn!(error = %e, suppressed, "a dependency call failed");
                }
                ("a dependency", Duration::ZERO)
            }
        };
        unavailable(dependency, wait)
    }
}

/// 503 `dependency_unavailable`: `dependency` is unavailable, retry after `wait` (at least 1 s).
pub fn unavailable(dependency: &str, wait: Duration) -> ApiError {
    let secs = retry_secs(wait);
    ApiError::new(
        Code::DependencyUnavailable,
        format!("{dependency} is unavailable; retry in {secs} s"),
    )
    .with_retry_after(secs)
}

/// Where a breaker is, and what it counts.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Consecutive failures so far.
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `probing`: a probe call is running; every other call is refused.
    HalfOpen {
        probing: bool,
    },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

struct Inner {
    dependency: &'static str,
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    /// A std Mutex, not a Tokio one: no await happens while it is held.
    phase: Mutex<Phase>,
}

/// A circuit breaker for one dependency. Cheap to clone (the clones share the state).
#[derive(Clone)]
pub struct Breaker(Arc<Inner>);

/// A call let through: reports its outcome. Dropped without a report (the caller's future
/// was cancelled), a probe frees the half-open slot for the next call.
struct Admission<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.update(|phase, _| {
                if let Phase::HalfOpen { probing } = phase {
                    *probing = false;
                }
            });
        }
    }
}

impl Admission<'_> {
    fn report(mut self, success: bool) {
        self.reported = true;
        let (probe, threshold) = (self.probe, self.breaker.0.settings.failure_threshold);
        let cooldown = self.breaker.cooldown();
        self.breaker
            .update(|phase, now| match (*phase, probe, success) {
                (Phase::HalfOpen { .. }, true, true) => *phase = Phase::Closed { failures: 0 },
                (Phase::HalfOpen { .. }, true, false) => {
                    *phase = Phase::Open {
                        until: now + cooldown,
                    }
                }
                (Phase::Closed { .. }, false, true) => *phase = Phase::Closed { failures: 0 },
                (Phase::Closed { failures }, false, false) if failures + 1 >= threshold => {
                    *phase = Phase::Open {
                        until: now + cooldown,
                    }
                }
                (Phase::Closed { failures }, false, false) => {
                    *phase = Phase::Closed {
                        failures: failures + 1,
                    }
                }
                // A call admitted before the breaker opened ends late: the breaker has moved on.
                _ => {}
            });
    }
}

impl Breaker {
    pub fn new(dependency: &'static str, settings: BreakerSettings) -> Self {
        Self::with_clock(dependency, settings, Arc::new(SystemClock))
    }

    /// A breaker going by `clock` (tests pass a [`ManualClock`]).
    pub fn with_clock(
        dependency: &'static str,
        settings: BreakerSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        metrics::gauge!("zerostate_breaker_state", "dependency" => dependency)
            .set(BreakerState::Closed.gauge());
        Self(Arc::new(Inner {
            dependency,
            settings,
            clock,
            phase: Mutex::new(Phase::Closed { failures: 0 }),
        }))
    }

    pub fn dependency(&self) -> &'static str {
        self.0.dependency
    }

    pub fn settings(&self) -> BreakerSettings {
        self.0.settings
    }

    fn cooldown(&self) -> Duration {
        Duration::from_millis(self.0.settings.cooldown_ms)
    }

    /// [`Tripped::api_error`], naming this breaker's dependency whatever the failure.
    pub fn api_error<E: Display>(&self, tripped: &Tripped<E>) -> ApiError {
        match tripped {
            Tripped::Failed(_) => {
                let _ = tripped.api_error(); // Logs the cause.
                unavailable(self.0.dependency, Duration::ZERO)
            }
            other => other.api_error(),
        }
    }

    /// `settings.call_timeout_ms`.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.0.settings.call_timeout_ms)
    }

    /// Runs `call` unless the breaker is open (then fails at once, no call made). The call is
    /// bounded by `call_timeout_ms` (a timeout counts as a failure). Every `Err` counts.
    pub async fn call<T, E, F: Future<Output = Result<T, E>>>(
        &self,
        call: F,
    ) -> Result<T, Tripped<E>> {
        self.call_with(call, |_| true).await
    }

    /// Same, but only errors for which `is_outage` is true count as failures (a 404 is an
    /// answer, not an outage); the others count as successes.
    pub async fn call_with<T, E, F: Future<Output = Result<T, E>>>(
        &self,
        call: F,
        is_outage: impl Fn(&E) -> bool,
    ) -> Result<T, Tripped<E>> {
        self.call_within(self.call_timeout(), call, is_outage).await
    }

    /// [`Breaker::call_with`] bounded by `timeout` instead of `call_timeout_ms`: for calls
    /// whose length grows with what they carry (an upload of many megabytes).
    pub async fn call_within<T, E, F: Future<Output = Result<T, E>>>(
        &self,
        timeout: Duration,
        call: F,
        is_outage: impl Fn(&E) -> bool,
    ) -> Result<T, Tripped<E>> {
        let admission = self.admit()?;
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => {
                admission.report(true);
                Ok(value)
            }
            Ok(Err(e)) => {
                admission.report(!is_outage(&e));
                Err(Tripped::Failed(e))
            }
            Err(_) => {
                admission.report(false);
                Err(Tripped::TimedOut {
                    dependency: self.0.dependency,
                    after: timeout,
                })
            }
        }
    }

    /// Lets a call through, or refuses it at once.
    fn admit<E>(&self) -> Result<Admission<'_>, Tripped<E>> {
        let mut refused = None;
        let mut probe = false;
        self.update(|phase, now| match phase {
            Phase::Closed { .. } => {}
            Phase::Open { until } => refused = Some(until.saturating_duration_since(now)),
            Phase::HalfOpen { probing: true } => refused = Some(Duration::ZERO),
            Phase::HalfOpen { probing } => {
                *probing = true;
                probe = true;
            }
        });
        match refused {
            Some(retry_after) => Err(Tripped::Open {
                dependency: self.0.dependency,
                retry_after,
            }),
            None => Ok(Admission {
                breaker: self,
                probe,
                reported: false,
            }),
        }
    }

    /// Applies `change` to the phase (after moving an open breaker whose cool-down is over to
    /// half-open), then logs and counts a change of state.
    fn update(&self, change: impl FnOnce(&mut Phase, Instant)) -> Phase {
        let now = self.0.clock.now();
        let (before, after) = {
            let mut phase = self.0.phase.lock().unwrap_or_else(|p| p.into_inner());
            let before = *phase;
            if let Phase::Open { until } = *phase
                && now >= until
            {
                *phase = Phase::HalfOpen { probing: false };
            }
            change(&mut phase, now);
            (before, *phase)
        };
        if before.state() != after.state() {
            self.announce(before.state(), after.state());
        }
        after
    }

    /// Logs a transition once and moves the metrics.
    fn announce(&self, from: BreakerState, to: BreakerState) {
        let dependency = self.0.dependency;
        match to {
            BreakerState::Open => tracing::warn!(
                dependency,
                from = from.as_str(),
                cooldown_ms = self.0.settings.cooldown_ms,
                "circuit breaker open: calls fail at once until the cool-down ends"
            ),
            BreakerState::HalfOpen => tracing::info!(
                dependency,
                "circuit breaker half-open: the next call probes the dependency"
            ),
            BreakerState::Closed => {
                tracing::info!(dependency, "circuit breaker closed: the dependency is back")
            }
        }
        metrics::gauge!("zerostate_breaker_state", "dependency" => dependency).set(to.gauge());
        metrics::counter!("zerostate_breaker_transitions_total", "dependency" => dependency, "to" => to.as_str())
            .increment(1);
    }

    /// The state now: an open breaker whose cool-down is over is half-open (the next call
    /// probes).
    pub fn state(&self) -> BreakerState {
        self.update(|_, _| {}).state()
    }

    /// While open: the time left of the cool-down.
    pub fn retry_after(&self) -> Option<Duration> {
        let now = self.0.clock.now();
        match self.update(|_, _| {}) {
            Phase::Open { until } => Some(until.saturating_duration_since(now)),
            _ => None,
        }
    }
}

/// Every breaker of the process, for `/health`, `/ready` and `/metrics`. Cheap to clone.
#[derive(Clone, Default)]
pub struct Breakers(Arc<Mutex<Vec<Breaker>>>);

impl Breakers {
    /// Creates the breaker of `dependency` and keeps it in the list.
    pub fn add(&self, dependency: &'static str, settings: BreakerSettings) -> Breaker {
        let breaker = Breaker::new(dependency, settings);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(breaker.clone());
        breaker
    }

    pub fn all(&self) -> Vec<Breaker> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether any breaker is open (not half-open: a probe may be about to close it).
    pub fn any_open(&self) -> bool {
        self.all().iter().any(|b| b.state() == BreakerState::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            cooldown_ms: 1000,
            call_timeout_ms: 50,
        }
    }

    fn breaker() -> (Breaker, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (
            Breaker::with_clock("test", settings(), clock.clone()),
            clock,
        )
    }

    async fn fail(b: &Breaker) -> Tripped<&'static str> {
        b.call(async { Err::<(), _>("down") }).await.unwrap_err()
    }

    async fn succeed(b: &Breaker) -> Result<u32, Tripped<&'static str>> {
        b.call(async { Ok(7) }).await
    }

    /// Opens `b` with `settings().failure_threshold` failures.
    async fn trip(b: &Breaker) {
        for _ in 0..3 {
            assert!(matches!(fail(b).await, Tripped::Failed("down")));
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn closed_stays_closed_below_the_threshold_and_a_success_resets_the_count() {
        let (b, _) = breaker();
        fail(&b).await;
        fail(&b).await;
        assert_eq!(succeed(&b).await.unwrap(), 7);
        fail(&b).await;
        fail(&b).await;
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.retry_after(), None);
    }

    #[tokio::test]
    async fn closed_opens_after_threshold_consecutive_failures_and_then_makes_no_call() {
        let (b, clock) = breaker();
        trip(&b).await;
        clock.advance(Duration::from_millis(400));
        assert_eq!(b.retry_after(), Some(Duration::from_millis(600)));
        let mut called = false;
        let refused = b
            .call(async {
                called = true;
                Ok::<_, &str>(())
            })
            .await
            .unwrap_err();
        assert!(!called, "an open breaker makes no call");
        assert!(matches!(
            refused,
            Tripped::Open { dependency: "test", retry_after } if retry_after == Duration::from_millis(600)
        ));
        let error = refused.api_error();
        assert_eq!(error.code, Code::DependencyUnavailable);
        assert_eq!(error.retry_after, Some(1));
        assert!(error.message.contains("test is unavailable"), "{error}");
        let failed = b.api_error(&Tripped::Failed("connection reset"));
        assert_eq!(
            (failed.code, failed.retry_after),
            (Code::DependencyUnavailable, Some(1))
        );
        assert!(
            failed.message.starts_with("test is unavailable"),
            "{failed}"
        );
        assert!(
            !failed.message.contains("reset"),
            "the cause stays in the log"
        );
    }

    #[tokio::test]
    async fn open_becomes_half_open_after_the_cooldown_and_a_probe_success_closes_it() {
        let (b, clock) = breaker();
        trip(&b).await;
        clock.advance(Duration::from_millis(1000));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.retry_after(), None);
        assert_eq!(succeed(&b).await.unwrap(), 7);
        assert_eq!(b.state(), BreakerState::Closed);
        // The failure count starts again from zero.
        fail(&b).await;
        fail(&b).await;
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_failed_probe_opens_the_breaker_for_another_cooldown() {
        let (b, clock) = breaker();
        trip(&b).await;
        clock.advance(Duration::from_millis(1500));
        assert!(matches!(fail(&b).await, Tripped::Failed(_)));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.retry_after(), Some(Duration::from_millis(1000)));
    }

    #[tokio::test]
    async fn half_open_lets_one_probe_through_at_a_time() {
        let (b, clock) = breaker();
        trip(&b).await;
        clock.advance(Duration::from_millis(1000));
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let probe = {
            let b = b.clone();
            tokio::spawn(async move {
                b.call(async {
                    let _ = wait.await;
                    Ok::<_, &str>(1)
                })
                .await
            })
        };
        // Wait until the probe holds the half-open slot.
        while !matches!(
            *b.0.phase.lock().unwrap(),
            Phase::HalfOpen { probing: true }
        ) {
            tokio::task::yield_now().await;
        }
        assert!(matches!(succeed(&b).await, Err(Tripped::Open { .. })));
        release.send(()).unwrap();
        assert_eq!(probe.await.unwrap().unwrap(), 1);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_cancelled_probe_frees_the_half_open_slot() {
        let (b, clock) = breaker();
        trip(&b).await;
        clock.advance(Duration::from_millis(1000));
        let pending = b.call(std::future::pending::<Result<(), &str>>());
        // Polled once (admitted as the probe), then dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(1), pending)
                .await
                .is_err()
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(succeed(&b).await.unwrap(), 7);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_call_past_its_timeout_fails_and_counts() {
        // Real time: the 50 ms call timeout runs out three times.
        let (b, _) = breaker();
        for _ in 0..3 {
            let e = b
                .call(std::future::pending::<Result<(), &str>>())
                .await
                .unwrap_err();
            assert!(
                matches!(e, Tripped::TimedOut { after, .. } if after == Duration::from_millis(50))
            );
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test]
    async fn errors_that_are_not_outages_do_not_count() {
        let (b, _) = breaker();
        for _ in 0..5 {
            let e = b
                .call_with(async { Err::<(), _>(404) }, |code| *code >= 500)
                .await
                .unwrap_err();
            assert!(matches!(e, Tripped::Failed(404)));
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn an_open_breaker_refuses_a_call_in_microseconds() {
        let b = Breaker::new("test", settings());
        for _ in 0..3 {
            fail(&b).await;
        }
        let started = Instant::now();
        for _ in 0..10_000 {
            assert!(matches!(succeed(&b).await, Err(Tripped::Open { .. })));
        }
        let each = started.elapsed() / 10_000;
        eprintln!("an open breaker refuses a call in {each:?}");
        assert!(each < Duration::from_micros(100), "{each:?}");
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        assert_eq!(retry_secs(Duration::ZERO), 1);
        assert_eq!(retry_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn the_registry_lists_its_breakers() {
        let breakers = Breakers::default();
        breakers.add("s3", settings());
        let names: Vec<_> = breakers.all().iter().map(Breaker::dependency).collect();
        assert_eq!(names, ["s3"]);
        assert!(!breakers.any_open());
    }
}
