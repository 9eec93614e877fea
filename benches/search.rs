//! Agent search benchmark: rebuild time, index size and query latency over a synthetic catalog.
//!
//! `cargo bench --bench search` runs 100 000 agents; `cargo bench --bench search -- 20000` sets
//! another size. The corpus is deterministic (a seeded SplitMix64): names `<Adjective>-<Noun>-<n>`
//! from 200 words, descriptions of 10–30 words drawn Zipf-like from 2 000 pseudo-words, 1–4 of 50
//! capabilities, 500 owners. Every query asks for all hits, as the marketplace does.

use std::path::Path;
use std::time::{Duration, Instant};

use zerostate::agents::{Directory, Filter, Sort};
use zerostate::records::Agent;
use zerostate::search::SearchIndex;

const DEFAULT_AGENTS: usize = 100_000;
const QUERIES_PER_KIND: usize = 150;
const UPSERTS: usize = 50;

const ADJECTIVES: [&str; 100] = [
    "able", "agile", "alert", "amber", "ancient", "arctic", "atomic", "azure", "bold", "brave",
    "bright", "brisk", "calm", "careful", "clever", "cobalt", "cosmic", "crimson", "crisp",
    "curious", "daring", "deep", "diligent", "distant", "dynamic", "eager", "early", "electric",
    "elegant", "emerald", "endless", "epic", "exact", "fair", "fast", "fearless", "fierce",
    "final", "fluent", "focused", "frugal", "gentle", "giant", "golden", "graceful", "grand",
    "happy", "hidden", "honest", "humble", "iconic", "indigo", "infinite", "intrepid", "jolly",
    "keen", "kind", "lively", "logical", "loyal", "lucid", "lunar", "magnetic", "mellow", "mighty",
    "modest", "nimble", "noble", "obsidian", "patient", "polar", "precise", "prime", "proud",
    "quantum", "quick", "quiet", "radiant", "rapid", "reliable", "robust", "rustic", "scarlet",
    "secure", "serene", "sharp", "silent", "silver", "simple", "smart", "solar", "sonic", "spry",
    "steady", "stellar", "swift", "tidy", "vivid", "wise", "zealous",
];

const NOUNS: [&str; 100] = [
    "aggregator",
    "analyzer",
    "annotator",
    "archivist",
    "assistant",
    "auditor",
    "balancer",
    "bot",
    "broker",
    "builder",
    "calculator",
    "cataloger",
    "checker",
    "classifier",
    "cleaner",
    "clusterer",
    "collector",
    "compiler",
    "composer",
    "compressor",
    "converter",
    "counter",
    "crawler",
    "curator",
    "decoder",
    "deduplicator",
    "detector",
    "digester",
    "dispatcher",
    "editor",
    "encoder",
    "engine",
    "enricher",
    "estimator",
    "evaluator",
    "explorer",
    "extractor",
    "filter",
    "finder",
    "forecaster",
    "formatter",
    "generator",
    "grader",
    "guard",
    "harvester",
    "indexer",
    "inspector",
    "interpreter",
    "labeler",
    "linker",
    "listener",
    "locator",
    "logger",
    "mapper",
    "matcher",
    "merger",
    "miner",
    "modeler",
    "monitor",
    "narrator",
    "navigator",
    "normalizer",
    "notifier",
    "observer",
    "optimizer",
    "oracle",
    "organizer",
    "painter",
    "parser",
    "planner",
    "predictor",
    "profiler",
    "ranker",
    "reader",
    "recommender",
    "reconciler",
    "renderer",
    "reporter",
    "resolver",
    "reviewer",
    "router",
    "sampler",
    "scanner",
    "scheduler",
    "scorer",
    "scout",
    "scribe",
    "searcher",
    "sentinel",
    "sorter",
    "splitter",
    "summarizer",
    "tagger",
    "tokenizer",
    "tracker",
    "transcriber",
    "translator",
    "tuner",
    "validator",
    "watcher",
];

const CAPABILITIES: [&str; 50] = [
    "sentiment-analysis",
    "translation",
    "summarization",
    "ocr",
    "image-classification",
    "object-detection",
    "speech-to-text",
    "text-to-speech",
    "named-entity-recognition",
    "keyword-extraction",
    "topic-modeling",
    "language-detection",
    "spam-filtering",
    "fraud-detection",
    "anomaly-detection",
    "forecasting",
    "recommendation",
    "search",
    "question-answering",
    "code-generation",
    "code-review",
    "sql-generation",
    "data-cleaning",
    "deduplication",
    "geocoding",
    "pdf-parsing",
    "html-scraping",
    "csv-transform",
    "json-validation",
    "schema-inference",
    "image-captioning",
    "face-blurring",
    "audio-transcription",
    "video-tagging",
    "moderation",
    "toxicity-scoring",
    "grammar-check",
    "paraphrasing",
    "tokenization",
    "embedding",
    "clustering",
    "classification",
    "ranking",
    "routing",
    "scheduling",
    "pricing",
    "invoice-extraction",
    "resume-parsing",
    "log-analysis",
    "math",
];

const FIRST_NAMES: [&str; 25] = [
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Donald",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ivan",
    "John",
    "Karen",
    "Leslie",
    "Margaret",
    "Niklaus",
    "Ole",
    "Peter",
    "Radia",
    "Shafi",
    "Tim",
    "Ursula",
    "Vint",
    "Whitfield",
    "Xavier",
    "Yukihiro",
];

const LAST_NAMES: [&str; 20] = [
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Knuth",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Lamarr",
    "Sutherland",
    "McCarthy",
    "Jones",
    "Lamport",
    "Hamilton",
    "Wirth",
    "Dahl",
    "Naur",
    "Perlman",
    "Goldwasser",
    "Berners-Lee",
];

/// SplitMix64: deterministic, dependency-free, good enough for a synthetic corpus.
struct Rng(u64);

impl Rng {
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

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An index in `0..n` with density ∝ 1/(i+1): a few words are common, most are rare.
    fn zipf(&mut self, n: usize) -> usize {
        (((n as f64 + 1.0).powf(self.unit()) - 1.0) as usize).min(n - 1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn pick_string(&mut self, items: &[String]) -> String {
        items[self.below(items.len())].clone()
    }
}

/// 2 000 distinct pronounceable pseudo-words of 2–4 syllables.
fn vocabulary(rng: &mut Rng) -> Vec<String> {
    const ONSETS: [&str; 20] = [
        "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "br", "st",
        "tr", "pl",
    ];
    const VOWELS: [&str; 6] = ["a", "e", "i", "o", "u", "ea"];
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(2000);
    while words.len() < 2000 {
        let syllables = 2 + rng.below(3);
        let mut word = String::new();
        for _ in 0..syllables {
            word.push_str(rng.pick(&ONSETS));
            word.push_str(rng.pick(&VOWELS));
        }
        if rng.below(3) == 0 {
            word.push_str(rng.pick(&["n", "r", "s", "x", "l"]));
        }
        if seen.insert(word.clone()) {
            words.push(word);
        }
    }
    words
}

fn owners() -> Vec<String> {
    FIRST_NAMES
        .iter()
        .flat_map(|first| LAST_NAMES.iter().map(move |last| format!("{first} {last}")))
        .collect()
}

fn corpus(size: usize, rng: &mut Rng, vocabulary: &[String], owners: &[String]) -> Vec<Agent> {
    (0..size)
        .map(|_| {
            let name = format!(
                "{}-{}-{}",
                capitalised(rng.pick(&ADJECTIVES)),
                capitalised(rng.pick(&NOUNS)),
                1 + rng.below(999)
            );
            let caps: Vec<&str> = (0..1 + rng.below(4))
                .map(|_| rng.pick(&CAPABILITIES))
                .collect();
            let price = rng.below(100) as f64 / 100.0;
            let mut agent = Agent::fixture(&name, price, &caps);
            let words: Vec<&str> = (0..10 + rng.below(21))
                .map(|_| vocabulary[rng.zipf(vocabulary.len())].as_str())
                .collect();
            agent.description = words.join(" ");
            agent.owner_name = rng.pick_string(owners);
            agent
        })
        .collect()
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// `edits` random single-character edits (substitution, deletion, insertion, transposition).
fn misspell(word: &str, edits: usize, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    for _ in 0..edits {
        let at = rng.below(chars.len() - 1);
        let letter = (b'a' + rng.below(26) as u8) as char;
        match rng.below(4) {
            0 if chars[at] != letter => chars[at] = letter,
            1 => {
                chars.remove(at);
            }
            2 => chars.insert(at, letter),
            _ if chars[at] != chars[at + 1] => chars.swap(at, at + 1),
            _ => chars[at] = if chars[at] == 'z' { 'q' } else { 'z' },
        }
    }
    chars.into_iter().collect()
}

struct Kind {
    name: &'static str,
    queries: Vec<String>,
}

fn query_mix(rng: &mut Rng, vocabulary: &[String], owners: &[String]) -> Vec<Kind> {
    let mut words: Vec<String> = ADJECTIVES
        .iter()
        .chain(&NOUNS)
        .map(|w| w.to_string())
        .collect();
    words.extend(vocabulary.iter().cloned());
    let sized = |min: usize, max: usize| -> Vec<String> {
        words
            .iter()
            .filter(|w| (min..=max).contains(&w.chars().count()))
            .cloned()
            .collect()
    };
    let (mid, long) = (sized(5, 8), sized(9, 40));
    let description_word = |rng: &mut Rng| vocabulary[rng.zipf(vocabulary.len())].clone();
    let name_word = |rng: &mut Rng| {
        if rng.below(2) == 0 {
            rng.pick(&ADJECTIVES).to_string()
        } else {
            rng.pick(&NOUNS).to_string()
        }
    };
    let mut kind = |name: &'static str, make: &mut dyn FnMut(&mut Rng) -> String| Kind {
        name,
        queries: (0..QUERIES_PER_KIND).map(|_| make(rng)).collect(),
    };
    vec![
        kind("exact word", &mut |rng| match rng.below(3) {
            0 => name_word(rng),
            1 => description_word(rng),
            _ => rng
                .pick(&CAPABILITIES)
                .split('-')
                .next()
                .unwrap()
                .to_owned(),
        }),
        kind("1 typo (5-8 chars)", &mut |rng| {
            let word = rng.pick_string(&mid);
            misspell(&word, 1, rng)
        }),
        kind("2 typos (9+ chars)", &mut |rng| {
            let word = rng.pick_string(&long);
            misspell(&word, 2, rng)
        }),
        kind("prefix 2-6 chars", &mut |rng| {
            let word = if rng.below(2) == 0 {
                name_word(rng)
            } else {
                description_word(rng)
            };
            let len = (2 + rng.below(5)).min(word.len());
            word[..len].to_owned()
        }),
        kind("prefix 1 char", &mut |rng| {
            ((b'a' + rng.below(26) as u8) as char).to_string()
        }),
        kind("two words", &mut |rng| match rng.below(2) {
            0 => format!("{} {}", rng.pick(&ADJECTIVES), rng.pick(&NOUNS)),
            _ => format!("{} {}", name_word(rng), description_word(rng)),
        }),
        kind("owner name", &mut |rng| rng.pick_string(owners)),
        kind("capability", &mut |rng| rng.pick(&CAPABILITIES).to_string()),
        kind("no match", &mut |rng| {
            const CONSONANTS: &[u8] = b"bcdfghjklmnpqrstvwxz";
            (0..5 + rng.below(6))
                .map(|_| CONSONANTS[rng.below(CONSONANTS.len())] as char)
                .collect()
        }),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

fn main() {
    let size = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .unwrap_or(DEFAULT_AGENTS);
    println!("search index benchmark: {size} agents");
    println!(
        "measures SearchIndex::rebuild (delete all + add all + one commit), index size on disk,"
    );
    println!(
        "per-query latency of SearchIndex::search(q, all hits) by query kind, and upsert latency"
    );
    println!();

    let mut rng = Rng(0x5EED_2E50_57A7_E000);
    let vocabulary = vocabulary(&mut rng);
    let owners = owners();
    let started = Instant::now();
    let agents = corpus(size, &mut rng, &vocabulary, &owners);
    println!("corpus generated in {} ms", ms(started.elapsed()));

    let dir = tempfile::tempdir().expect("temp dir");
    let index = SearchIndex::open(dir.path(), Default::default()).expect("open index");
    let started = Instant::now();
    index.rebuild(&agents).expect("rebuild");
    let rebuild = started.elapsed();
    println!(
        "rebuild: {:.2} s ({:.0} agents/s), {} documents",
        rebuild.as_secs_f64(),
        size as f64 / rebuild.as_secs_f64(),
        index.len()
    );
    println!(
        "index size on disk: {:.1} MB",
        dir_size(dir.path()) as f64 / 1e6
    );
    let started = Instant::now();
    index.reconcile(&agents).expect("reconcile");
    println!(
        "reconcile with an unchanged catalog: {} ms",
        ms(started.elapsed())
    );

    let kinds = query_mix(&mut rng, &vocabulary, &owners);
    for kind in &kinds {
        for query in &kind.queries {
            index.search(query, usize::MAX).expect("warm-up search");
        }
    }
    println!();
    println!(
        "{:<20} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "query kind", "queries", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean hits"
    );
    let mut all = Vec::new();
    for kind in &kinds {
        let mut latencies = Vec::with_capacity(kind.queries.len());
        let mut hits = 0usize;
        for query in &kind.queries {
            let started = Instant::now();
            let found = index.search(query, usize::MAX).expect("search");
            latencies.push(started.elapsed());
            hits += found.len();
        }
        latencies.sort();
        println!(
            "{:<20} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11.1}",
            kind.name,
            latencies.len(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.90)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap()),
            hits as f64 / latencies.len() as f64
        );
        all.extend(latencies);
    }
    all.sort();
    println!(
        "{:<20} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "all",
        all.len(),
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.90)),
        ms(percentile(&all, 0.99)),
        ms(*all.last().unwrap())
    );

    listing(&index, &agents, &kinds);

    let mut latencies = Vec::with_capacity(UPSERTS);
    for agent in agents.iter().take(UPSERTS) {
        let mut changed = agent.clone();
        changed.description.push_str(" revised");
        let started = Instant::now();
        index.upsert(&changed).expect("upsert");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!();
    println!(
        "upsert (commit + reload) x{UPSERTS}: p50 {} ms, max {} ms",
        ms(percentile(&latencies, 0.50)),
        ms(*latencies.last().unwrap())
    );
}

/// The marketplace listing's whole path minus HTTP: search (when there is a query), then
/// `Directory::list` filters, counts facets, sorts and cuts a page of 20.
fn listing(index: &SearchIndex, agents: &[Agent], kinds: &[Kind]) {
    let directory = Directory::new(agents.iter().cloned());
    let page = |q: Option<&str>, filter: &Filter, sort: Sort| {
        let hits = q.map(|q| index.search(q, usize::MAX).expect("search"));
        directory.list(hits.as_deref(), filter, sort, 0, 20).total
    };
    let capabilities: Vec<String> = {
        let mut all: Vec<String> = agents.iter().flat_map(|a| a.capabilities.clone()).collect();
        all.sort();
        all.dedup();
        all
    };
    println!();
    println!("listing path: search + Directory::list (filters, facets, sort, a page of 20)");
    println!(
        "{:<34} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "request", "runs", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean total"
    );
    let measure = |name: &str, runs: Vec<Box<dyn Fn() -> usize + '_>>| {
        let mut latencies = Vec::with_capacity(runs.len());
        let mut total = 0;
        for run in &runs {
            let started = Instant::now();
            total += run();
            latencies.push(started.elapsed());
        }
        latencies.sort();
        println!(
            "{:<34} {:>7} {:>9} {:>9} {:>9} {:>9} {:>11.1}",
            name,
            latencies.len(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.90)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap()),
            total as f64 / latencies.len() as f64
        );
    };
    let none = &Filter::default();
    measure(
        "everything, newest first",
        (0..1000)
            .map(|_| Box::new(|| page(None, none, Sort::Newest)) as Box<dyn Fn() -> usize>)
            .collect(),
    );
    let by_capability: Vec<Filter> = capabilities
        .iter()
        .map(|c| Filter {
            capabilities: vec![c.clone()],
            ..Filter::default()
        })
        .collect();
    measure(
        "capability=c&sort=price",
        by_capability
            .iter()
            .map(|f| Box::new(move || page(None, f, Sort::PriceAsc)) as Box<dyn Fn() -> usize>)
            .collect(),
    );
    let rated = Filter {
        min_price: Some(0.1),
        max_price: Some(0.5),
        ..Filter::default()
    };
    measure(
        "price range, sort=tasks_completed",
        (0..200)
            .map(|_| {
                Box::new(|| page(None, &rated, Sort::TasksCompleted)) as Box<dyn Fn() -> usize>
            })
            .collect(),
    );
    let queries: Vec<&str> = kinds
        .iter()
        .flat_map(|k| k.queries.iter().map(String::as_str))
        .collect();
    measure(
        "q (every kind above), relevance",
        queries
            .iter()
            .map(|q| {
                Box::new(move || page(Some(q), none, Sort::Relevance)) as Box<dyn Fn() -> usize>
            })
            .collect(),
    );
    measure(
        "q & capability & sort=price",
        queries
            .iter()
            .zip(by_capability.iter().cycle())
            .map(|(q, f)| {
                Box::new(move || page(Some(q), f, Sort::PriceAsc)) as Box<dyn Fn() -> usize>
            })
            .collect(),
    );
}
