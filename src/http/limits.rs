//! Rate limits (`[rate_limits]`): sign-in and sign-up per client address, the whole API and
//! task submission per user (sessions and API keys alike), each a GCRA token bucket
//! (governor).
//!
//! A refused request answers 429 `rate_limited` with `Retry-After` (whole seconds, at least 1)
//! and is counted in `zerostate_rate_limited_total{limit}`, never logged. Every request a
//! limit applies to carries the IETF headers of draft-ietf-httpapi-ratelimit-headers-11:
//! `RateLimit-Policy: "<limit>";q=<burst>;w=<seconds to refill the burst>` and
//! `RateLimit: "<limit>";r=<requests left now>;t=<seconds until the whole burst is back>`
//! (on a 429, `r=0` and `t` is the `Retry-After`).
//!
//! The client address is the TCP peer; `X-Forwarded-For` is read only when the peer is one of
//! `trusted_proxies`, from the right, skipping the trusted hops. The per-email lockout is
//! not here: it needs the body, and lives with sign-in in `auth`.
//!
//! Memory is bounded: each limiter keeps at most [`MAX_KEYS`] buckets ([`BoundedStore`]);
//! buckets indistinguishable from a fresh one are swept out every [`SWEEP_EVERY_CHECKS`]
//! checks, or at most once a second while the store is full; while it is full, unknown keys
//! share one overflow bucket, so a flood from many addresses is limited as one client.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::header::HeaderName;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::AppState;
use super::extractors::AuthUser;
use crate::auth::Principal;
use crate::config::{RateLimit, RateLimitSettings};
use crate::error::{ApiError, Code};
use crate::records::{IpNet, client_bucket};

/// Most buckets one limiter keeps (~40 bytes each).
pub const MAX_KEYS: usize = 100_000;
/// Stale buckets are swept out after this many checks.
const SWEEP_EVERY_CHECKS: u64 = 4096;

const LOGIN: &str = "/api/v1/users/login";
const REGISTER: &str = "/api/v1/users/register";
const SUBMIT: &str = "/api/v1/tasks/submit";

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The client's address: the TCP peer, or what a trusted proxy says it forwarded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(ClientIp(state.limits.client_ip(peer, &parts.headers)))
    }
}

/// Every limiter, built from `[rate_limits]`.
pub struct RateLimits {
    login: Option<Limiter>,
    signup: Option<Limiter>,
    api: Option<Limiter>,
    submit: Option<Limiter>,
    proxies: Vec<IpNet>,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Result<Self, String> {
        let on = |name, limit: RateLimit, what| {
            (settings.enabled && limit.enabled()).then(|| Limiter::new(name, limit, what))
        };
        Ok(Self {
            login: on("login", settings.login, "sign-ins from this address"),
            signup: on("signup", settings.signup, "sign-ups from this address"),
            api: on("api", settings.api, "requests with this credential"),
            submit: on(
                "submit",
                settings.submit,
                "task submissions with this credential",
            ),
            proxies: settings.proxies()?,
        })
    }

    /// The client of a request from `peer` (none in tests that call the router directly).
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> IpAddr {
        let Some(peer) = peer else {
            return IpAddr::from([0, 0, 0, 0]);
        };
        let trusted = |ip: IpAddr| self.proxies.iter().any(|net| net.contains(ip));
        if !trusted(peer) {
            return peer;
        }
        // Each proxy appends the address it got the request from: read from the right, and
        // the first hop that is not a trusted proxy is the client.
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            let hop = hop.trim();
            let parsed = hop
                .parse::<IpAddr>()
                .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()));
            let Ok(ip) = parsed else {
                break;
            };
            client = ip;
            if !trusted(ip) {
                break;
            }
        }
        client
    }
}

/// The middleware: finds the client, applies the limits of the route, answers 429 or runs
/// the route and adds the `RateLimit` headers.
pub async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let client = state.limits.client_ip(peer, request.headers());
    request.extensions_mut().insert(ClientIp(client));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let limits = &state.limits;
    let mut passed = Passed::default();
    let post = request.method() == Method::POST;
    let refused = match route.as_deref() {
        Some(LOGIN) if post => passed.check(limits.login.as_ref(), client_bucket(client)),
        Some(REGISTER) if post => passed.check(limits.signup.as_ref(), client_bucket(client)),
        _ if limits.api.is_some() || limits.submit.is_some() => {
            match credential(&state, &mut request).await {
                Some(key) => {
                    passed
                        .check(limits.api.as_ref(), key)
                        .or_else(|| match route.as_deref() {
                            Some(SUBMIT) if post => passed.check(limits.submit.as_ref(), key),
                            _ => None,
                        })
                }
                None => None,
            }
        }
        _ => None,
    };
    let mut response = match refused {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    };
    passed.write_headers(response.headers_mut());
    response
}

/// The bucket of the request's user (their sessions and API keys share one: a hundred keys
/// are not a hundred budgets), if it carries a valid credential. The principal is kept for
/// the route's [`AuthUser`], so the token is checked once.
async fn credential(state: &AppState, request: &mut Request) -> Option<u128> {
    let token = AuthUser::bearer(request.headers()).ok().flatten()?;
    let principal: Principal = state.accounts.authenticate(token).await.ok()?;
    request.extensions_mut().insert(principal);
    Some(principal.user_id.as_u128())
}

/// The limits a request passed or was refused by, for its headers.
#[derive(Default)]
struct Passed<'a> {
    checked: Vec<(&'a Limiter, u32, u64)>,
}

impl<'a> Passed<'a> {
    /// Checks `key` against `limiter` (if it is on): the refusal, or `None`.
    fn check(&mut self, limiter: Option<&'a Limiter>, key: u128) -> Option<ApiError> {
        let limiter = limiter?;
        match limiter.check(key) {
            Ok((left, full_in)) => {
                self.checked.push((limiter, left, full_in));
                None
            }
            Err(wait) => {
                self.checked.push((limiter, 0, wait));
                limiter.refused.increment(1);
                Some(
                    ApiError::new(
                        Code::RateLimited,
                        format!("too many {}; try again in {wait} s", limiter.what),
                    )
                    .with_retry_after(wait),
                )
            }
        }
    }

    fn write_headers(&self, headers: &mut HeaderMap) {
        if self.checked.is_empty() {
            return;
        }
        let join = |items: Vec<String>| {
            HeaderValue::from_str(&items.join(", ")).expect("ASCII structured field")
        };
        let policies = self
            .checked
            .iter()
            .map(|(l, ..)| l.policy.clone())
            .collect();
        let left = self
            .checked
            .iter()
            .map(|(l, r, t)| format!("\"{}\";r={r};t={t}", l.name))
            .collect();
        headers.insert(RATELIMIT_POLICY.clone(), join(policies));
        headers.insert(RATELIMIT.clone(), join(left));
    }
}

/// One limit: a keyed GCRA limiter over a [`BoundedStore`].
struct Limiter {
    /// The policy's name in the headers and the metric.
    name: &'static str,
    /// What it counts, for the refusal's message.
    what: &'static str,
    governor: RateLimiter<u128, BoundedStore, DefaultClock, StateInformationMiddleware>,
    /// Seconds one request's share takes to come back.
    interval: Duration,
    burst: u32,
    /// `"<name>";q=<burst>;w=<seconds>`, rendered once.
    policy: String,
    refused: metrics::Counter,
    checks: AtomicU64,
    /// When the full store was last swept, in nanoseconds since `started`.
    swept_full: AtomicU64,
    started: std::time::Instant,
}

impl Limiter {
    fn new(name: &'static str, limit: RateLimit, what: &'static str) -> Self {
        let interval = Duration::from_secs(limit.period_secs) / limit.requests;
        let burst = NonZeroU32::new(limit.burst).expect("checked by the config");
        let quota = Quota::with_period(interval)
            .expect("a positive period")
            .allow_burst(burst);
        let window = (interval.as_secs_f64() * f64::from(limit.burst))
            .ceil()
            .max(1.0);
        // Series registered before the recorder is installed would stay disabled.
        crate::telemetry::metrics_handle();
        Self {
            name,
            what,
            governor: RateLimiter::<u128, _, _, StateInformationMiddleware>::new(
                quota,
                BoundedStore::default(),
                DefaultClock::default(),
            ),
            interval,
            burst: limit.burst,
            policy: format!("\"{name}\";q={};w={window}", limit.burst),
            refused: metrics::counter!("zerostate_rate_limited_total", "limit" => name),
            checks: AtomicU64::new(0),
            swept_full: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }

    /// Takes one request's share for `key`: `(left, seconds until all is back)`, or the whole
    /// seconds to wait (at least 1).
    fn check(&self, key: u128) -> Result<(u32, u64), u64> {
        self.sweep();
        match self.governor.check_key(&key) {
            Ok(state) => {
                let left = state.remaining_burst_capacity().min(self.burst);
                let refill = self.interval.as_secs_f64() * f64::from(self.burst - left);
                Ok((left, refill.ceil() as u64))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.governor.clock().now());
                Err(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
        }
    }

    /// Sweeps out stale buckets every [`SWEEP_EVERY_CHECKS`] checks, and at most once a second
    /// while the store is full.
    fn sweep(&self) {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        let due = n % SWEEP_EVERY_CHECKS == SWEEP_EVERY_CHECKS - 1;
        let full = self.governor.len() >= MAX_KEYS && {
            let now = self.started.elapsed().as_nanos() as u64;
            let last = self.swept_full.load(Ordering::Relaxed);
            now.saturating_sub(last) >= 1_000_000_000
                && self
                    .swept_full
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
        };
        if due || full {
            self.governor.retain_recent();
            self.governor.shrink_to_fit();
        }
    }
}

/// governor's key store, bounded at [`MAX_KEYS`] buckets: while it is full, keys it does not
/// hold share one overflow bucket. A bucket is the theoretical arrival time in nanoseconds
/// since the limiter started (0: fresh), as governor's own stores keep it. A std Mutex, held
/// for one decision (a hash probe and a few integer operations).
#[derive(Default)]
pub struct BoundedStore {
    inner: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    map: HashMap<u128, u64>,
    overflow: u64,
}

impl StateStore for BoundedStore {
    type Key = u128;

    fn measure_and_replace<T, F, E>(&self, key: &u128, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut buckets = self.inner.lock().expect("rate limit buckets");
        let Buckets { map, overflow } = &mut *buckets;
        let slot = if map.len() >= MAX_KEYS && !map.contains_key(key) {
            overflow
        } else {
            map.entry(*key).or_insert(0)
        };
        let previous = (*slot != 0).then(|| Nanos::new(*slot));
        let (outcome, next) = f(previous)?;
        *slot = next.as_u64();
        Ok(outcome)
    }
}

impl ShrinkableKeyedStateStore<u128> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let mut buckets = self.inner.lock().expect("rate limit buckets");
        buckets.map.retain(|_, tat| *tat > drop_below.as_u64());
    }

    fn shrink_to_fit(&self) {
        let mut buckets = self.inner.lock().expect("rate limit buckets");
        // Only when mostly empty: shrinking and growing back would cost more than it frees.
        if buckets.map.capacity() > 4 * buckets.map.len().max(1024) {
            buckets.map.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.inner.lock().expect("rate limit buckets").map.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
