//! The marketplace listing under load: many concurrent HTTP clients ask the real `zerostate`
//! binary for `GET /api/v1/agents?limit=20` (loopback, real HTTP, default settings) over a
//! catalog seeded before the server starts; measures requests per second, latency, the
//! response's size and the server's CPU per request. Targets: ≥ 20,000 requests/s, p99 ≤ 5 ms.
//! Run: `cargo bench --bench listing_load -- [AGENTS] [REQUESTS] [CLIENTS] [RATE] [QUERY]`
//! (defaults 10,000, 200,000, 64, 0, `limit=20`); QUERY is the query string as sent, e.g.
//! `q=sentimnt&limit=20` or `capability=nlp&sort=price`. `E2E_BINARY=path` loads another
//! build.
//!
//! The server keeps rendered pages until anything they show changes, so a fixed QUERY
//! measures that cache. A `{n}` in QUERY is replaced by 0 to 999 in turn (e.g.
//! `limit=20&offset={n}`), more distinct pages than the server keeps, which measures rendering.
//!
//! Seeding goes through the library, not HTTP: an upload validates and compiles its module,
//! so 10,000 of them would take minutes. The bench opens the data dir's store, puts one no-op
//! module and inserts AGENTS ready agents that share it (one compile at the warm-up), then
//! closes the store before the server opens it (redb allows one process). The corpus is
//! deterministic (a fixed-seed SplitMix64): names, descriptions, 1–4 of 30 capabilities
//! (the first Zipf-like, so `nlp` is common), prices, reviews and run statistics, 250 owners.
//!
//! The load generator is the one of `e2e_load.rs`: it shares the machine (a 2-thread
//! runtime), so each client is one keep-alive HTTP/1.1 connection that writes a prebuilt
//! request and reads the status and the `content-length` body. RATE 0 is a closed loop (each
//! client sends its next request when the last one answers); a RATE (requests/s) is an open
//! loop, as `wrk2` does it: request `i` is due at `i / RATE` s and its latency counts from
//! then, so a stall shows in every request it delays.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;
use zerostate::blob::{BlobStore, EmbeddedBlobs};
use zerostate::records::{Agent, AgentStatus};
use zerostate::store::Store;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{Cpu, machine_cpu};

#[path = "../tests/api/child.rs"]
mod child;
use child::Server;

/// The targets the figures are reported against.
const TARGET_RATE: f64 = 20_000.0;
const TARGET_P99: Duration = Duration::from_millis(5);

/// Cores other processes may use during the run before its figures are flagged as suspect.
const BUSY_MACHINE: f64 = 0.1;

/// Requests each client sends before the measured run (connection set-up, the server's first
/// allocations, caches), not counted.
const WARMUP_PER_CLIENT: usize = 20;

/// How long the server may take to load every module after it listens.
const READY_DEADLINE: Duration = Duration::from_secs(600);

/// How many requests a QUERY with `{n}` turns into.
const VARIANTS: usize = 1000;

/// Reads nothing, writes nothing, exits 0. Every seeded agent runs it.
const NOOP_AGENT: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let agents: usize = args.next().map_or(10_000, |a| a.parse().expect("AGENTS"));
    let requests: usize = args
        .next()
        .map_or(200_000, |a| a.parse().expect("REQUESTS"));
    let clients: usize = args.next().map_or(64, |a| a.parse().expect("CLIENTS"));
    let rate: f64 = args.next().map_or(0.0, |a| a.parse().expect("RATE"));
    let query = args.next().unwrap_or_else(|| "limit=20".into());
    let dir = tempfile::tempdir().unwrap();
    let binary =
        std::env::var_os("E2E_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_zerostate").into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let mode = if rate > 0.0 {
        format!("offered at {rate:.0}/s")
    } else {
        "closed loop".into()
    };
    println!(
        "listing load: {agents} agents, GET /api/v1/agents?{query}, {requests} requests, \
         {clients} clients, {mode}"
    );
    let seeding = Instant::now();
    runtime.block_on(seed(dir.path(), agents));
    let seeding = seeding.elapsed();
    println!(
        "seeded:    {agents} agents in {:.2} s ({:.0} µs each)",
        seeding.as_secs_f64(),
        seeding.as_secs_f64() * 1e6 / agents.max(1) as f64
    );

    let starting = Instant::now();
    let server = Server::start(&binary, dir.path(), &[], &[]);
    let listening = starting.elapsed();
    runtime.block_on(async {
        let ready = wait_ready(&server).await;
        println!(
            "server:    listening after {:.2} s, ready after {:.2} s ({ready})",
            listening.as_secs_f64(),
            starting.elapsed().as_secs_f64()
        );
        run(&server, &query, requests, clients, rate).await
    });
}

impl Server {
    /// The process's user and system CPU time so far.
    fn cpu(&self) -> Cpu {
        Cpu::of(&self.child.id().to_string())
    }

    /// `host:port`, as the `host` header and `connect` want it.
    fn host(&self) -> &str {
        self.base
            .strip_prefix("http://")
            .expect("an http:// base URL")
    }
}

/// Writes the catalog into `data_dir` the way the server stores it, and closes the store.
async fn seed(data_dir: &Path, agents: usize) {
    let store = Store::open(&data_dir.join(zerostate::DB_FILE)).expect("open the store");
    let module = wat::parse_str(NOOP_AGENT).unwrap();
    let size = module.len() as u64;
    let hash = EmbeddedBlobs::new(store.clone())
        .put(module.into())
        .await
        .expect("store the module");
    let mut corpus = Corpus(0x5EED_1157);
    let owners: Vec<(Uuid, String)> = (0..OWNERS)
        .map(|i| (Uuid::from_u64_pair(0x0000_5eed, i), corpus.person()))
        .collect();
    for i in 0..agents {
        let mut agent = corpus.agent(i, &owners);
        agent.binary_hash = hash.clone();
        agent.binary_size = size;
        agent.status = AgentStatus::Ready;
        let name = agent.name.clone();
        assert!(
            store.insert_agent(agent).await.expect("insert an agent"),
            "agent name {name} taken twice"
        );
    }
}

/// Polls `/ready` until it answers 200 (there is no notification to wait on from outside the
/// process); returns its `agents` counts.
async fn wait_ready(server: &Server) -> String {
    let host = server.host();
    let request = format!("GET /ready HTTP/1.1\r\nhost: {host}\r\n\r\n").into_bytes();
    let mut connection = Connection::open(host).await;
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        let (status, _) = connection.exchange(&request).await;
        if status == 200 {
            let body: serde_json::Value = serde_json::from_slice(connection.body()).unwrap();
            return format!(
                "{} modules loaded, {} compiled",
                body["agents"]["loaded"], body["agents"]["compiled"]
            );
        }
        assert_eq!(status, 503, "/ready answers 200 or 503");
        assert!(
            Instant::now() < deadline,
            "not ready after {READY_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What one client saw in the measured run.
#[derive(Default)]
struct ClientReport {
    /// `(when, latency)` of each request: since the run started, when it was due (open loop)
    /// or sent (closed loop); from then to its response.
    latencies: Vec<(Duration, Duration)>,
    /// Responses by status other than 200.
    failures: BTreeMap<u16, usize>,
    /// Smallest and largest 200 body, in bytes.
    body: Option<(usize, usize)>,
}

async fn run(server: &Server, query: &str, requests: usize, clients: usize, rate: f64) {
    let token = server.signup("listing@example.com").await;
    let host = server.host();
    // The requests as sent, one per `{n}` value; request `i` is `prebuilt[i % len]`.
    let variants = if query.contains("{n}") { VARIANTS } else { 1 };
    let prebuilt: Arc<[Vec<u8>]> = (0..variants)
        .map(|n| {
            let query = query.replace("{n}", &n.to_string());
            format!(
                "GET /api/v1/agents?{query} HTTP/1.1\r\nhost: {host}\r\n\
                 authorization: Bearer {token}\r\n\r\n"
            )
            .into_bytes()
        })
        .collect();

    let mut connections = Vec::new();
    for _ in 0..clients {
        connections.push(Connection::open(host).await);
    }
    // The first answer says whether the query is right at all; then a short unmeasured warm-up.
    let (status, _) = connections[0].exchange(&prebuilt[0]).await;
    if status != 200 {
        panic!(
            "GET /api/v1/agents?{query} answered {status}: {}",
            String::from_utf8_lossy(connections[0].body())
        );
    }
    let page: serde_json::Value = serde_json::from_slice(connections[0].body()).unwrap();
    println!(
        "response:  {} agents of {} matching, {} capability facets",
        page["agents"].as_array().map_or(0, Vec::len),
        page["total"],
        page["facets"]["capabilities"]
            .as_object()
            .map_or(0, |f| f.len())
    );
    let mut warmups = Vec::new();
    for (c, mut connection) in connections.into_iter().enumerate() {
        let prebuilt = prebuilt.clone();
        warmups.push(tokio::spawn(async move {
            for i in 0..WARMUP_PER_CLIENT {
                let n = (c * WARMUP_PER_CLIENT + i) % prebuilt.len();
                connection.exchange(&prebuilt[n]).await;
            }
            connection
        }));
    }
    let mut connections = Vec::new();
    for w in warmups {
        connections.push(w.await.unwrap());
    }

    let handled_before = handled(server, &token).await;
    let cpu_before = (server.cpu(), Cpu::of("self"), machine_cpu());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let start = tokio::time::Instant::from_std(started);
    let mut handles = Vec::new();
    for mut connection in connections {
        let (prebuilt, next) = (prebuilt.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut report = ClientReport::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let sent = if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    due.into_std()
                } else {
                    Instant::now()
                };
                let request = &prebuilt[i % prebuilt.len()];
                let (status, body) = connection.exchange(request).await;
                report.latencies.push((sent - started, sent.elapsed()));
                if status == 200 {
                    let (lo, hi) = report.body.get_or_insert((body, body));
                    (*lo, *hi) = ((*lo).min(body), (*hi).max(body));
                } else {
                    *report.failures.entry(status).or_default() += 1;
                }
            }
            report
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut failures = BTreeMap::<u16, usize>::new();
    let mut body: Option<(usize, usize)> = None;
    for h in handles {
        let report = h.await.unwrap();
        latencies.extend(report.latencies);
        for (status, n) in report.failures {
            *failures.entry(status).or_default() += n;
        }
        if let Some((lo, hi)) = report.body {
            body = Some(body.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    }
    let elapsed = started.elapsed();
    let (server_cpu, load_cpu, (busy, steal)) = (server.cpu(), Cpu::of("self"), machine_cpu());
    let (server_cpu, load_cpu) = (server_cpu - cpu_before.0, load_cpu - cpu_before.1);
    let (busy, steal) = (busy - cpu_before.2.0, steal - cpu_before.2.1);
    let handled_after = handled(server, &token).await;

    // When the slow requests were sent: a stall shows as one busy slot, a steady overload as
    // many.
    let slot = Duration::from_millis(250);
    let mut slow = vec![0usize; (elapsed.as_nanos() / slot.as_nanos()) as usize + 1];
    for (at, latency) in &latencies {
        if *latency > TARGET_P99 {
            slow[(at.as_nanos() / slot.as_nanos()) as usize] += 1;
        }
    }
    let mut latencies: Vec<Duration> = latencies.into_iter().map(|(_, l)| l).collect();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let throughput = requests as f64 / elapsed.as_secs_f64();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "requests:  {throughput:>8.0} /s over {:.2} s (target ≥ {TARGET_RATE:.0}/s: {})",
        elapsed.as_secs_f64(),
        verdict(throughput >= TARGET_RATE)
    );
    println!(
        "latency:   p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms \
         (target p99 ≤ {} ms: {})",
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(pct(0.999)),
        ms(pct(1.0)),
        TARGET_P99.as_millis(),
        verdict(pct(0.99) <= TARGET_P99)
    );
    let over = latencies.len() - latencies.partition_point(|l| *l <= TARGET_P99);
    println!(
        "           {over} requests over {} ms ({:.2} %); per {} ms of the run: {}",
        TARGET_P99.as_millis(),
        over as f64 * 100.0 / requests as f64,
        slot.as_millis(),
        slow.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    match body {
        Some((lo, hi)) if lo == hi => println!("body:      {lo} bytes"),
        Some((lo, hi)) => println!("body:      {lo} to {hi} bytes"),
        None => println!("body:      no 200 response"),
    }
    let per_request = |d: Duration| d.as_secs_f64() * 1e6 / requests as f64;
    let cores = |d: Duration| d.as_secs_f64() / elapsed.as_secs_f64();
    println!(
        "CPU:       server {:.1} µs per request ({:.1} user + {:.1} system; {:.2} cores), \
         load generator {:.1} µs ({:.2} cores)",
        per_request(server_cpu.total()),
        per_request(server_cpu.user),
        per_request(server_cpu.system),
        cores(server_cpu.total()),
        per_request(load_cpu.total()),
        cores(load_cpu.total())
    );
    let others = cores(busy.saturating_sub(server_cpu.total() + load_cpu.total()));
    println!(
        "machine:   {:.2} of {} cores busy, {others:.2} of them by other processes, {:.2} stolen{}",
        cores(busy),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cores(steal),
        if others > BUSY_MACHINE {
            " (the machine was shared: figures are suspect)"
        } else {
            ""
        }
    );
    let (count, seconds) = (
        handled_after.0 - handled_before.0,
        handled_after.1 - handled_before.1,
    );
    if count > 0 {
        println!(
            "server-side handling (its route histogram): {:.1} µs mean over {count} requests",
            seconds * 1e6 / count as f64
        );
    }
    let failed: usize = failures.values().sum();
    if failed > 0 {
        panic!("{failed} of {requests} responses were not 200 (by status: {failures:?})");
    }
    println!("status:    all {requests} responses 200");
}

/// `(count, seconds)` of the server's own `GET /api/v1/agents` 200 histogram, from
/// `/metrics`; it times the handler and middleware, not the HTTP framing or the socket.
async fn handled(server: &Server, token: &str) -> (u64, f64) {
    let host = server.host();
    let request =
        format!("GET /metrics HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\r\n")
            .into_bytes();
    let mut connection = Connection::open(host).await;
    let (status, _) = connection.exchange(&request).await;
    assert_eq!(status, 200, "/metrics");
    let metrics = std::str::from_utf8(connection.body()).unwrap();
    let (mut count, mut seconds) = (0, 0.0);
    let series = "zerostate_http_request_duration_seconds";
    for line in metrics.lines().filter(|l| {
        l.contains("route=\"/api/v1/agents\"")
            && l.contains("method=\"GET\"")
            && l.contains("status=\"200\"")
    }) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        match name.split('{').next() {
            Some(n) if n == format!("{series}_count") => count = value.parse().unwrap_or(0),
            Some(n) if n == format!("{series}_sum") => seconds = value.parse().unwrap_or(0.0),
            _ => {}
        }
    }
    (count, seconds)
}

/// A keep-alive HTTP/1.1 connection that sends one request at a time.
struct Connection {
    stream: tokio::net::TcpStream,
    /// The response being read; a listing page is tens of kilobytes.
    buf: Vec<u8>,
    /// Where the last response's body starts in `buf`.
    body_start: usize,
}

impl Connection {
    async fn open(host: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(host).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            body_start: 0,
        }
    }

    /// Sends `request` and reads the whole response; returns its status code and body length.
    /// The server answers with a `content-length` body, never chunked.
    async fn exchange(&mut self, request: &[u8]) -> (u16, usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await.unwrap();
        self.buf.clear();
        // (status, body start, body length), once the head is in.
        let mut head: Option<(u16, usize, usize)> = None;
        loop {
            if head.is_none()
                && let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n")
            {
                let text = std::str::from_utf8(&self.buf[..end]).unwrap();
                let length: usize = text
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().unwrap())
                    })
                    .expect("a content-length header");
                head = Some((text[9..12].parse().unwrap(), end + 4, length));
            }
            if let Some((status, start, length)) = head
                && self.buf.len() >= start + length
            {
                assert_eq!(self.buf.len(), start + length, "one response per request");
                self.body_start = start;
                return (status, length);
            }
            let read = self.stream.read_buf(&mut self.buf).await.unwrap();
            assert!(read > 0, "the server closed the connection");
        }
    }

    /// The last response's body.
    fn body(&self) -> &[u8] {
        &self.buf[self.body_start..]
    }
}

/// Distinct owners of the seeded agents.
const OWNERS: u64 = 250;

const ADJECTIVES: [&str; 40] = [
    "swift", "clever", "steady", "bright", "quiet", "nimble", "precise", "tidy", "bold", "patient",
    "lucid", "rapid", "careful", "keen", "robust", "silent", "vivid", "frugal", "honest", "agile",
    "calm", "eager", "exact", "fluent", "gentle", "golden", "humble", "jolly", "loyal", "mighty",
    "modest", "noble", "polar", "prime", "quantum", "radiant", "serene", "sharp", "solar", "wise",
];

const NOUNS: [&str; 40] = [
    "summarizer",
    "translator",
    "classifier",
    "extractor",
    "scanner",
    "tagger",
    "parser",
    "ranker",
    "scorer",
    "detector",
    "analyzer",
    "reviewer",
    "scribe",
    "curator",
    "forecaster",
    "matcher",
    "cleaner",
    "indexer",
    "router",
    "planner",
    "auditor",
    "broker",
    "checker",
    "collector",
    "converter",
    "crawler",
    "decoder",
    "editor",
    "filter",
    "finder",
    "grader",
    "inspector",
    "labeler",
    "monitor",
    "narrator",
    "oracle",
    "profiler",
    "reader",
    "sentinel",
    "tokenizer",
];

/// `(capability, how a description names it)`, most common first.
const CAPABILITIES: [(&str, &str); 30] = [
    ("nlp", "natural-language processing"),
    ("sentiment", "sentiment analysis"),
    ("summarization", "summaries"),
    ("translation", "translation between 40 languages"),
    ("classification", "text classification"),
    ("extraction", "entity extraction"),
    ("ocr", "optical character recognition"),
    ("vision", "image understanding"),
    ("search", "semantic search"),
    ("moderation", "content moderation"),
    ("speech", "speech to text"),
    ("ranking", "relevance ranking"),
    ("recommendation", "recommendations"),
    ("forecasting", "time-series forecasting"),
    ("anomaly-detection", "anomaly detection"),
    ("fraud", "fraud scoring"),
    ("parsing", "document parsing"),
    ("pdf", "PDF text extraction"),
    ("code", "code review"),
    ("sql", "SQL generation"),
    ("data-cleaning", "data cleaning"),
    ("geocoding", "geocoding"),
    ("scraping", "web scraping"),
    ("email", "email triage"),
    ("scheduling", "scheduling"),
    ("pricing", "dynamic pricing"),
    ("embedding", "text embeddings"),
    ("clustering", "clustering"),
    ("math", "arithmetic and unit conversion"),
    ("routing", "ticket routing"),
];

const VERBS: [&str; 12] = [
    "Reads",
    "Sorts",
    "Scores",
    "Cleans",
    "Tags",
    "Condenses",
    "Checks",
    "Routes",
    "Indexes",
    "Annotates",
    "Triages",
    "Normalises",
];

const OBJECTS: [&str; 14] = [
    "customer reviews",
    "support tickets",
    "invoices",
    "news articles",
    "product listings",
    "server logs",
    "contracts",
    "social media posts",
    "emails",
    "clinical notes",
    "pull requests",
    "receipts",
    "call transcripts",
    "survey answers",
];

const DOMAINS: [&str; 10] = [
    "online shops",
    "finance teams",
    "hospitals",
    "law firms",
    "marketing",
    "logistics",
    "schools",
    "security operations",
    "newsrooms",
    "public services",
];

const TAILS: [&str; 8] = [
    "Runs offline, keeps no data between tasks.",
    "Deterministic output for the same input.",
    "Handles inputs up to 1 MB in one call.",
    "Returns JSON with a confidence for each result.",
    "Tuned for short, noisy text.",
    "Batch-friendly: one task can carry many records.",
    "Explains each decision in one sentence.",
    "Answers in the input's language.",
];

const FIRST_NAMES: [&str; 20] = [
    "Ada", "Bruno", "Chiara", "Dmitri", "Esme", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemi",
    "Luca", "Maya", "Nils", "Olu", "Priya", "Quentin", "Rosa", "Sami", "Tove",
];

const LAST_NAMES: [&str; 20] = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Novak",
    "Haddad",
    "Silva",
    "Kowalski",
    "Mensah",
    "Ferreira",
    "Petrov",
    "Nakamura",
    "Quinn",
    "Rahman",
    "Schultz",
    "Varga",
    "Walsh",
    "Yilmaz",
    "Zhou",
    "Abara",
];

/// A deterministic corpus: SplitMix64 over a fixed seed.
struct Corpus(u64);

impl Corpus {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }

    /// An index below `n`, small ones far more often (the square of a uniform draw).
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u) * n as f64) as usize
    }

    fn person(&mut self) -> String {
        format!("{} {}", self.pick(&FIRST_NAMES), self.pick(&LAST_NAMES))
    }

    /// Agent number `i`, with one of `owners`; its module fields are the caller's to set.
    fn agent(&mut self, i: usize, owners: &[(Uuid, String)]) -> Agent {
        let name = format!("{}-{}-{i}", self.pick(&ADJECTIVES), self.pick(&NOUNS));
        let mut capabilities = vec![CAPABILITIES[self.skewed(CAPABILITIES.len())]];
        for _ in 0..self.below(4) {
            let c = CAPABILITIES[self.below(CAPABILITIES.len())];
            if !capabilities.contains(&c) {
                capabilities.push(c);
            }
        }
        let tags: Vec<&str> = capabilities.iter().map(|c| c.0).collect();
        let price = (1 + self.below(500)) as f64 / 100.0;
        let mut agent = Agent::fixture(&name, price, &tags);
        let uses: Vec<&str> = capabilities.iter().map(|c| c.1).collect();
        agent.description = format!(
            "{} {} for {}, with {}. {}",
            self.pick(&VERBS),
            self.pick(&OBJECTS),
            self.pick(&DOMAINS),
            uses.join(", "),
            self.pick(&TAILS)
        );
        let (owner_id, owner_name) = &owners[self.below(owners.len())];
        agent.owner_id = *owner_id;
        agent.owner_name = owner_name.clone();
        agent.version = format!("1.{}.{}", self.below(5), self.below(10));
        for _ in 0..self.below(8) {
            agent.rating.apply(3 + self.below(3) as u8, None);
        }
        for _ in 0..self.below(40) {
            agent
                .stats
                .record(self.below(20) != 0, 5 + self.below(200) as u64);
        }
        agent
    }
}
