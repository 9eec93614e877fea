//! The WebSocket hub at scale: CONNECTIONS live-update sockets (default 10,000) on loopback to
//! the real `zerostate` binary, started by this bench as a separate process. Measures the
//! server's memory per connection (its resident set before and after the sockets open), the
//! time to fan a broadcast out to every socket (from sending `POST /api/v1/ws/broadcast` to the
//! last socket holding the message), and that no healthy client is dropped, through single
//! broadcasts and a burst.
//!
//! Run: `cargo bench --bench ws_fanout -- [CONNECTIONS] [ROUNDS] [BURST]` (defaults 10,000, 20,
//! 100); `WS_BINARY=path` loads another build (a release artifact). Targets: ≤ 8 KB of server
//! memory per connection, ≤ 100 ms per broadcast, no socket dropped.
//!
//! The clients share the machine with the server (a 2-thread runtime here), so a fan-out time
//! includes their reading too: it is what a user would see, not the server's share alone. The
//! server's CPU time per broadcast is printed beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{Cpu, machine_cpu};

#[path = "../tests/api/child.rs"]
mod child;
use child::Server;

const SERVICE_TOKEN: &str = "ws-fanout-bench-service-token";
/// Sockets opened at once while connecting.
const CONNECTING_AT_ONCE: usize = 200;
const DEADLINE: Duration = Duration::from_secs(120);

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let connections: usize = args
        .next()
        .map_or(10_000, |a| a.parse().expect("CONNECTIONS"));
    let rounds: usize = args.next().map_or(20, |a| a.parse().expect("ROUNDS"));
    let burst: usize = args.next().map_or(100, |a| a.parse().expect("BURST"));
    raise_fd_limit(connections);
    let dir = tempfile::tempdir().unwrap();
    let binary =
        std::env::var_os("WS_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_zerostate").into());
    let server = Server::start(
        &binary,
        dir.path(),
        &[],
        &[
            ("ZEROSTATE_REALTIME__SERVICE_TOKEN", SERVICE_TOKEN),
            // Every socket is the same user's, from one address: the caps that would refuse
            // them are for a server facing strangers, not for this measurement.
            ("ZEROSTATE_HTTP__MAX_CONNECTIONS", "100000"),
            ("ZEROSTATE_HTTP__MAX_CONNECTIONS_PER_IP", "0"),
            ("ZEROSTATE_QUOTAS__WEBSOCKET_CONNECTIONS", "0"),
        ],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&server, connections, rounds, burst));
}

/// Sockets need file descriptors on both ends: raise the soft limit to the hard one (the
/// server inherits it).
fn raise_fd_limit(connections: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur as usize > connections + 1_000,
        "the open-files limit ({}) is too low for {connections} sockets",
        limit.rlim_cur
    );
}

/// What every client shares: when each broadcast was sent, and who has it.
struct Board {
    /// Nanoseconds since `epoch` when round `i` was sent.
    sent_at: Vec<AtomicU64>,
    /// Clients that have round `i`.
    received: Vec<AtomicUsize>,
    /// Nanoseconds since `epoch` when each client got the current round.
    latest: Vec<AtomicU64>,
    /// Messages each client received in all.
    counts: Vec<AtomicUsize>,
    /// Clients whose socket closed or failed.
    lost: AtomicUsize,
    epoch: Instant,
    changed: Notify,
}

impl Board {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

async fn run(server: &Server, connections: usize, rounds: usize, burst: usize) {
    let base = server.base.clone();
    let host = base.strip_prefix("http://").unwrap().to_owned();
    let token = server.signup("fanout@example.com").await;
    let http = reqwest::Client::new();
    let pid = server.child.id();

    // One socket first, so what the first connection initialises is in the baseline.
    let warm = RawSocket::connect(&host, &format!("/api/v1/ws/connect?token={token}")).await;
    drop(warm);
    wait_for_connections(&http, &base, &token, 0).await;
    let before = Memory::of(pid);

    let total_rounds = rounds + burst;
    let board = Arc::new(Board {
        sent_at: (0..total_rounds).map(|_| AtomicU64::new(0)).collect(),
        received: (0..total_rounds).map(|_| AtomicUsize::new(0)).collect(),
        latest: (0..connections).map(|_| AtomicU64::new(0)).collect(),
        counts: (0..connections).map(|_| AtomicUsize::new(0)).collect(),
        lost: AtomicUsize::new(0),
        epoch: Instant::now(),
        changed: Notify::new(),
    });

    println!("WebSocket fan-out: {connections} sockets on loopback");
    let connecting = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING_AT_ONCE));
    let mut clients = Vec::with_capacity(connections);
    for client in 0..connections {
        let (board, gate) = (board.clone(), gate.clone());
        let host = host.clone();
        let path = format!("/api/v1/ws/connect?token={token}");
        clients.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let mut socket = RawSocket::connect(&host, &path).await;
            drop(permit);
            loop {
                match socket.next().await {
                    Frame::Text(range) => {
                        let at = board.now();
                        if let Some(round) = round_of(&socket.buf[range]) {
                            board.counts[client].fetch_add(1, Ordering::Relaxed);
                            board.latest[client].store(at, Ordering::Relaxed);
                            board.received[round].fetch_add(1, Ordering::AcqRel);
                            board.changed.notify_one();
                        }
                    }
                    Frame::Other => {}
                    Frame::Closed => break,
                }
            }
            board.lost.fetch_add(1, Ordering::Relaxed);
            board.changed.notify_one();
        }));
    }
    wait_for_connections(&http, &base, &token, connections).await;
    let connected_in = connecting.elapsed();
    let after = Memory::of(pid);
    let per = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / connections as f64;
    println!(
        "connected in {:.2} s; server resident memory {:.1} MiB → {:.1} MiB: {:.0} bytes per connection \
         (proportional set {:.0} bytes), kernel TCP buffers {:.1} MiB in all",
        connected_in.as_secs_f64(),
        before.rss as f64 / 1048576.0,
        after.rss as f64 / 1048576.0,
        per(after.rss, before.rss),
        per(after.pss, before.pss),
        tcp_memory_bytes() as f64 / 1048576.0,
    );

    // Single broadcasts, one at a time.
    let broadcast = |round: usize| {
        let (http, base, board) = (http.clone(), base.clone(), board.clone());
        async move {
            board.sent_at[round].store(board.now(), Ordering::Release);
            let response = http
                .post(format!("{base}/api/v1/ws/broadcast"))
                .header("X-Service-Token", SERVICE_TOKEN)
                .json(&json!({"type": "system", "data": {"message": format!("round {round}"), "level": "info"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let sent: Value = response.json().await.unwrap();
            sent["recipients"].as_u64().unwrap()
        }
    };
    let mut fanout = Vec::with_capacity(rounds);
    let mut recipients = Vec::new();
    let server_cpu = || Cpu::of(&pid.to_string());
    let (cpu_before, clients_before, machine_before) =
        (server_cpu(), Cpu::of("self"), machine_cpu());
    for round in 0..rounds {
        recipients.push(broadcast(round).await);
        wait_for_round(&board, round, connections).await;
        let sent = board.sent_at[round].load(Ordering::Acquire);
        let last = board
            .latest
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .max()
            .unwrap();
        fanout.push(Duration::from_nanos(last - sent));
    }
    let server = server_cpu() - cpu_before;
    let machine = machine_cpu();
    let stolen = (machine.1 - machine_before.1) / rounds as u32;
    let clients_cpu = (Cpu::of("self") - clients_before).total() / rounds as u32;
    let (user, system) = (server.user / rounds as u32, server.system / rounds as u32);
    fanout.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "broadcast to all {connections}: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms over {rounds} rounds \
         (recipients per broadcast {:?}); CPU per broadcast: server {:.1} ms user + {:.1} ms system, \
         clients {:.1} ms; stolen by the hypervisor {:.1} ms",
        ms(fanout[fanout.len() / 2]),
        ms(fanout[fanout.len() * 9 / 10]),
        ms(fanout[fanout.len() - 1]),
        recipients.iter().min().zip(recipients.iter().max()),
        ms(user),
        ms(system),
        ms(clients_cpu),
        ms(stolen),
    );

    // A burst: every broadcast sent without waiting; nobody may fall behind so far that the
    // hub drops them (a queue holds 256 messages).
    let started = Instant::now();
    let mut sends = Vec::new();
    for round in rounds..total_rounds {
        sends.push(tokio::spawn(broadcast(round)));
    }
    for send in sends {
        send.await.unwrap();
    }
    for round in rounds..total_rounds {
        wait_for_round(&board, round, connections).await;
    }
    let burst_time = started.elapsed();
    let stats = hub_stats(&http, &base, &token).await;
    let lost = board.lost.load(Ordering::Relaxed);
    let short = board
        .counts
        .iter()
        .filter(|c| c.load(Ordering::Relaxed) < total_rounds)
        .count();
    println!(
        "burst of {burst} broadcasts: every socket had all of them after {:.0} ms ({:.0} messages/s delivered)",
        ms(burst_time),
        (burst * connections) as f64 / burst_time.as_secs_f64()
    );
    println!(
        "hub: {} connected, {} dropped as slow; clients: {lost} lost their socket, {short} missed a message",
        stats["current_connections"], stats["dropped"]
    );
    assert_eq!(stats["dropped"], 0, "a healthy client was dropped");
    assert_eq!((lost, short), (0, 0));
    for client in clients {
        client.abort();
    }
}

/// The round number of a `system` message `round N`.
fn round_of(payload: &[u8]) -> Option<usize> {
    const MARK: &[u8] = b"\"round ";
    let at = payload.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let digits = payload[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&payload[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

/// A minimal WebSocket client: the handshake, then server frames read straight off the TCP
/// stream (unmasked, as a server sends them), pings answered. Lean on purpose, as `wrk` is for
/// HTTP: it shares the two cores with the server it measures, and a full client library spent
/// about as much CPU per message as the server.
struct RawSocket {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as frames.
    used: usize,
}

enum Frame {
    /// A text message: its payload's place in `buf`.
    Text(std::ops::Range<usize>),
    Other,
    Closed,
}

impl RawSocket {
    async fn connect(host: &str, path: &str) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(host)
            .await
            .expect("connects");
        stream.set_nodelay(true).unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::with_capacity(1024);
        let head_end = loop {
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        assert!(
            buf.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        buf.drain(..head_end);
        Self {
            stream,
            buf,
            used: 0,
        }
    }

    /// The next frame.
    async fn next(&mut self) -> Frame {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.buf.drain(..self.used);
        self.used = 0;
        loop {
            if let Some((opcode, payload)) = parse_frame(&self.buf) {
                self.used = payload.end;
                return match opcode {
                    1 => Frame::Text(payload),
                    8 => Frame::Closed,
                    9 => {
                        // A pong with the ping's payload, masked (with a zero mask) as a
                        // client's frames must be.
                        let mut pong = vec![0x8A, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                        pong.extend_from_slice(&self.buf[payload]);
                        if self.stream.write_all(&pong).await.is_err() {
                            return Frame::Closed;
                        }
                        Frame::Other
                    }
                    _ => Frame::Other,
                };
            }
            let start = self.buf.len();
            self.buf.resize(start + 4096, 0);
            match self.stream.read(&mut self.buf[start..]).await {
                Ok(0) | Err(_) => return Frame::Closed,
                Ok(n) => self.buf.truncate(start + n),
            }
        }
    }
}

/// The opcode and payload range of the first whole frame in `buf`.
fn parse_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
    let (&first, &second) = (buf.first()?, buf.get(1)?);
    let (len, header) = match second & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    (buf.len() >= header + len).then_some((first & 0x0f, header..header + len))
}

async fn wait_for_round(board: &Board, round: usize, connections: usize) {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let notified = board.changed.notified();
            if board.received[round].load(Ordering::Acquire) >= connections {
                return;
            }
            assert_eq!(board.lost.load(Ordering::Relaxed), 0, "a socket closed");
            notified.await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "round {round}: {} of {connections} sockets had the message after {DEADLINE:?}",
            board.received[round].load(Ordering::Acquire)
        )
    });
}

/// Polls the hub's counters until `n` sockets are connected (the server registers a socket
/// after its upgrade, so the clients cannot tell).
async fn wait_for_connections(http: &reqwest::Client, base: &str, token: &str, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stats = hub_stats(http, base, token).await;
        if stats["current_connections"].as_u64() == Some(n as u64) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{stats} after {DEADLINE:?}, want {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /api/v1/ws/stats`.
async fn hub_stats(http: &reqwest::Client, base: &str, token: &str) -> Value {
    http.get(format!("{base}/api/v1/ws/stats"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A process's resident and proportional set sizes, in bytes.
struct Memory {
    rss: u64,
    pss: u64,
}

impl Memory {
    fn of(pid: u32) -> Self {
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
        let field = |name: &str| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
                * 1024
        };
        Self {
            rss: field("Rss:"),
            pss: field("Pss:"),
        }
    }
}

/// Memory the kernel holds for all TCP sockets (`/proc/net/sockstat`, in pages).
fn tcp_memory_bytes() -> u64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == "mem")?;
            fields.get(at + 1)?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        * 4096
}
