//! The connection layer: accepts TCP connections and serves HTTP/1.1 (and WebSocket upgrades)
//! on each with hyper, under rules that hold whatever the peer does:
//!
//! - a request's headers must arrive within `header_timeout`, which also closes an idle
//!   keep-alive connection (hyper's own timer: slowloris, silent sockets);
//! - a request body must keep a minimum rate after a grace period ([`RatedBody`]);
//! - a declared body larger than the largest upload is refused before it is read;
//! - a response the client does not read is abandoned after `write_timeout` ([`Deadlined`]);
//! - open connections are capped, in all and per IP address, below the open-file limit, so
//!   that a flood of sockets never takes the descriptors storage needs. A connection over a
//!   cap is answered 503 `too_many_connections` and closed at once.
//!
//! Threading: one accept loop, one task per connection; nothing here blocks.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpSettings;
use crate::error::{ApiError, BodyTooSlow, Code};
use crate::records::{IpNet, client_bucket};
use crate::telemetry::LogBudget;

/// Descriptors kept for storage (database, WAL segments, index segments, module cache), the
/// runtime and upload spool files, whatever the connections take.
const RESERVED_DESCRIPTORS: u64 = 256 + super::spool::MAX_FILES as u64;
/// Largest request head; hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Pause after an accept that failed for want of descriptors: the failure repeats at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// The rules every connection is served under.
#[derive(Debug, Clone)]
pub struct ConnectionRules {
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    pub body: BodyRate,
    pub max_connections: usize,
    /// 0: no per-address cap.
    pub max_per_ip: usize,
    /// Addresses the per-address cap does not apply to: the trusted proxies, each of which
    /// is many clients (`rate_limits.trusted_proxies`).
    pub proxies: Vec<IpNet>,
    /// A request declaring a longer body is answered 413 before any of it is read.
    pub max_body_bytes: u64,
}

impl ConnectionRules {
    /// The configured rules, with the connection cap lowered to fit the open-file limit.
    pub fn new(settings: &HttpSettings, proxies: Vec<IpNet>, max_body_bytes: u64) -> Self {
        let fit = open_file_limit()
            .saturating_sub(RESERVED_DESCRIPTORS)
            .max(16) as usize;
        let max_connections = settings.max_connections.min(fit);
        if max_connections < settings.max_connections {
            tracing::warn!(
                configured = settings.max_connections,
                allowed = max_connections,
                "connection cap lowered to fit the open-file limit (raise LimitNOFILE)"
            );
        }
        Self {
            header_timeout: Duration::from_secs(settings.header_timeout_secs.max(1)),
            write_timeout: Duration::from_secs(settings.write_timeout_secs.max(1)),
            body: BodyRate {
                grace: Duration::from_secs(settings.body_grace_secs.max(1)),
                min_rate: settings.min_body_rate.max(1),
            },
            max_connections,
            max_per_ip: settings.max_connections_per_ip,
            proxies,
            max_body_bytes,
        }
    }
}

/// A body's allowance: `grace`, plus one second per `min_rate` bytes received.
#[derive(Debug, Clone, Copy)]
pub struct BodyRate {
    pub grace: Duration,
    pub min_rate: u64,
}

/// Raises the soft open-file limit to the hard limit (systemd's default soft limit, 1024, is
/// far below what thousands of WebSocket clients need). Returns the soft limit in force.
pub fn raise_open_file_limit() -> u64 {
    let Some(limit) = open_files() else {
        return 1024;
    };
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct passed by pointer.
    if limit.rlim_cur < limit.rlim_max
        && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0
    {
        return raised.rlim_cur;
    }
    limit.rlim_cur
}

/// The soft open-file limit in force (1024 if it cannot be read).
fn open_file_limit() -> u64 {
    open_files().map_or(1024, |limit| limit.rlim_cur)
}

fn open_files() -> Option<libc::rlimit> {
    // SAFETY: getrlimit only writes the struct passed by pointer.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        (libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0).then_some(limit)
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then lets open requests finish for
/// at most `drain` (idle connections close at once). Returns whether every connection ended
/// within it.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    rules: ConnectionRules,
    stop: CancellationToken,
    drain: Duration,
) -> bool {
    let gate = Arc::new(Gate::new(&rules));
    let rules = Arc::new(rules);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(&e).await;
                continue;
            }
        };
        match gate.admit(peer.ip()) {
            Ok(admission) => {
                let (app, rules, stop) = (app.clone(), rules.clone(), stop.clone());
                tokio::spawn(connection(stream, peer, app, rules, stop, admission));
            }
            Err(refusal) => refuse(stream, refusal),
        }
    }
    drop(listener);
    gate.drained(drain).await
}

/// An accept that failed: connection errors concern one peer; running out of descriptors
/// (EMFILE, ENFILE) or buffers is waited out.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    metrics::counter!("zerostate_http_accept_errors_total").increment(1);
    static LOGGED: LogBudget = LogBudget::every(Duration::from_secs(10));
    if let Some(suppressed) = LOGGED.allow() {
        tracing::warn!(%error, suppressed, "cannot accept connections; waiting (logged once per 10 s)");
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// Serves one connection to its end; on shutdown, finishes the request in flight and closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    rules: Arc<ConnectionRules>,
    stop: CancellationToken,
    admission: Admission,
) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Deadlined::new(stream, rules.write_timeout, admission));
    let service = {
        let rules = rules.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let (app, rules) = (app.clone(), rules.clone());
            async move { Ok::<_, std::convert::Infallible>(answer(app, &rules, peer, request).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(rules.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// One request: refused at once when its declared body is too long, otherwise handed to the
/// router with its peer address and its body under [`RatedBody`].
async fn answer(
    app: Router,
    rules: &ConnectionRules,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response {
    if declared_length(&request).is_some_and(|n| n > rules.max_body_bytes) {
        let refusal = ApiError::new(
            Code::PayloadTooLarge,
            format!(
                "the body is longer than the largest accepted ({} bytes)",
                rules.max_body_bytes
            ),
        );
        let mut response = refusal.into_response();
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    let mut request = request.map(|body| Body::new(RatedBody::new(body, rules.body)));
    request.extensions_mut().insert(ConnectInfo(peer));
    match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn declared_length<B>(request: &Request<B>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Full,
    PerAddress,
}

/// Answers 503 `too_many_connections` without waiting for anything, and closes. The response
/// fits an empty send buffer, so one non-blocking write sends it.
fn refuse(stream: TcpStream, refusal: Refusal) {
    let (label, message) = match refusal {
        Refusal::Full => ("total", "the server has as many connections as it serves"),
        Refusal::PerAddress => ("per_ip", "too many connections from this address"),
    };
    metrics::counter!("zerostate_http_connections_refused_total", "cap" => label).increment(1);
    let body =
        serde_json::json!({"error": {"code": Code::TooManyConnections.name(), "message": message}})
            .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// Counts open connections, in all and per address.
struct Gate {
    total: Arc<Semaphore>,
    max_total: usize,
    max_per_ip: usize,
    proxies: Vec<IpNet>,
    /// Open connections by client (an IPv6 client by its /64, as the rate limits count it);
    /// a client leaves the map with its last connection. A std Mutex: held for one map
    /// update, never across an await.
    per_ip: Arc<Mutex<HashMap<u128, usize>>>,
}

/// An admitted connection's place, returned when dropped. It lives in the connection's IO,
/// so a connection upgraded to a WebSocket keeps its place until the socket closes.
struct Admission {
    _permit: OwnedSemaphorePermit,
    client: u128,
    per_ip: Arc<Mutex<HashMap<u128, usize>>>,
}

impl Gate {
    fn new(rules: &ConnectionRules) -> Self {
        Self {
            total: Arc::new(Semaphore::new(rules.max_connections)),
            max_total: rules.max_connections,
            max_per_ip: rules.max_per_ip,
            proxies: rules.proxies.clone(),
            per_ip: Arc::default(),
        }
    }

    fn admit(&self, ip: IpAddr) -> Result<Admission, Refusal> {
        let permit = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        let client = client_bucket(ip);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let open = per_ip.entry(client).or_insert(0);
        let capped = self.max_per_ip > 0 && !self.proxies.iter().any(|p| p.contains(ip));
        if capped && *open >= self.max_per_ip {
            return Err(Refusal::PerAddress);
        }
        *open += 1;
        metrics::gauge!("zerostate_http_connections").increment(1.0);
        Ok(Admission {
            _permit: permit,
            client,
            per_ip: self.per_ip.clone(),
        })
    }

    /// Waits until every connection has ended, for at most `limit`.
    async fn drained(&self, limit: Duration) -> bool {
        let all = u32::try_from(self.max_total).unwrap_or(u32::MAX);
        tokio::time::timeout(limit, self.total.acquire_many(all))
            .await
            .is_ok()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        metrics::gauge!("zerostate_http_connections").decrement(1.0);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = per_ip.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&self.client);
            }
        }
    }
}

/// A socket whose writes may not stall longer than `timeout`: a peer that stops reading gets
/// its connection closed instead of holding it and the response forever. It carries the
/// connection's [`Admission`], which hyper hands on with the socket when it is upgraded.
struct Deadlined<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write is pending; disarmed by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    _admission: Admission,
}

impl<S> Deadlined<S> {
    fn new(inner: S, timeout: Duration, admission: Admission) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
            _admission: admission,
        }
    }

    /// A write's poll: progress disarms the stall timer; a pending write arms it and fails
    /// once the stall outlasts the timeout.
    fn watched<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer read nothing within the write timeout",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlined<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlined<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watched(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watched(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watched(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that must keep up: its deadline is `grace` after the first poll plus one
/// second per `min_rate` bytes received. A body that falls behind ends in an error, which the
/// extractor reading it answers with 408 and hyper follows by closing the connection.
struct RatedBody {
    inner: Incoming,
    rate: BodyRate,
    started: Option<Instant>,
    received: u64,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl RatedBody {
    fn new(inner: Incoming, rate: BodyRate) -> Self {
        Self {
            inner,
            rate,
            started: None,
            received: 0,
            deadline: None,
        }
    }

    fn due(&self, started: Instant) -> tokio::time::Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.rate.min_rate as f64);
        tokio::time::Instant::from_std(started + self.rate.grace + earned)
    }
}

impl http_body::Body for RatedBody {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let started = *self.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    let due = self.due(started);
                    if let Some(deadline) = self.deadline.as_mut() {
                        deadline.as_mut().reset(due);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let due = self.due(started);
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                ready!(deadline.as_mut().poll(cx));
                metrics::counter!("zerostate_http_slow_bodies_total").increment(1);
                Poll::Ready(Some(Err(BodyTooSlow.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
