//! The architecture test: every path into the crate (`crate::…`, or `super::…` climbing to
//! the root) in `src/` must name a room its own room may use, as [`ROOMS`] says. The same
//! table is drawn in `docs/architecture.md`, and this test keeps the two equal.
//!
//! Modelled on rust-analyzer's tidy tests: a failure names the file, the line, the import and
//! the rule it breaks. When a new room lands, add it to the table (and the document); when a
//! room needs another, the table says whether it may: an upward import is never the fix, a
//! record or a trait one layer down is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Layers, bottom first. A room may use rooms of lower layers, and of its own layer those
/// listed before it, when its row names them: calls go one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Layer {
    Records,
    Foundation,
    Infrastructure,
    Domain,
    Http,
    Application,
}

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::Records => "records",
            Layer::Foundation => "foundation",
            Layer::Infrastructure => "infrastructure",
            Layer::Domain => "domain",
            Layer::Http => "http",
            Layer::Application => "application",
        }
    }
}

/// A room: a top-level module of `src/` (`lib` is the crate root, `main` the binary).
struct Room {
    name: &'static str,
    layer: Layer,
    may_use: &'static [&'static str],
}

const fn room(name: &'static str, layer: Layer, may_use: &'static [&'static str]) -> Room {
    Room {
        name,
        layer,
        may_use,
    }
}

use Layer::*;

/// The one table of rooms, bottom first.
const ROOMS: &[Room] = &[
    room("records", Records, &[]),
    room("error", Foundation, &[]),
    room("config", Foundation, &["records"]),
    room("telemetry", Foundation, &["config"]),
    room("breaker", Infrastructure, &["error", "config", "telemetry"]),
    room("store", Infrastructure, &["records", "error"]),
    room(
        "blob",
        Infrastructure,
        &[
            "records",
            "error",
            "config",
            "telemetry",
            "breaker",
            "store",
        ],
    ),
    room(
        "journal",
        Infrastructure,
        &["records", "telemetry", "store"],
    ),
    room("queue", Infrastructure, &["records"]),
    room("search", Infrastructure, &["records"]),
    room("runtime", Infrastructure, &["records", "telemetry"]),
    room("realtime", Infrastructure, &[]),
    room("ranking", Infrastructure, &["records", "config"]),
    room(
        "cluster",
        Infrastructure,
        &["records", "config", "breaker", "queue", "realtime"],
    ),
    room(
        "auth",
        Domain,
        &["records", "error", "config", "store", "realtime"],
    ),
    room(
        "agents",
        Domain,
        &[
            "records", "error", "config", "store", "blob", "search", "runtime", "realtime",
            "ranking",
        ],
    ),
    room(
        "orchestrator",
        Domain,
        &[
            "records",
            "error",
            "config",
            "telemetry",
            "journal",
            "queue",
            "runtime",
            "realtime",
            "ranking",
            "agents",
        ],
    ),
    room(
        "http",
        Http,
        &[
            "records",
            "error",
            "config",
            "telemetry",
            "breaker",
            "queue",
            "realtime",
            "cluster",
            "auth",
            "agents",
            "orchestrator",
        ],
    ),
    room("demo", Application, &["records", "auth", "agents"]),
    room(
        "lib",
        Application,
        &[
            "config",
            "telemetry",
            "breaker",
            "store",
            "blob",
            "journal",
            "queue",
            "search",
            "runtime",
            "realtime",
            "cluster",
            "auth",
            "agents",
            "orchestrator",
            "http",
            "demo",
        ],
    ),
    room(
        "worker",
        Application,
        &[
            "records", "config", "breaker", "blob", "queue", "runtime", "realtime", "cluster",
            "lib",
        ],
    ),
    room(
        "cli",
        Application,
        &[
            "config",
            "telemetry",
            "store",
            "realtime",
            "auth",
            "lib",
            "worker",
        ],
    ),
    room("main", Application, &["cli"]),
];

fn find(name: &str) -> Option<(usize, &'static Room)> {
    ROOMS.iter().enumerate().find(|(_, r)| r.name == name)
}

/// One path into the crate found in a source file.
#[derive(Debug, PartialEq)]
struct Import {
    line: usize,
    /// As written, e.g. `crate::store::Store`.
    text: String,
    /// The room it reaches.
    target: String,
}

/// The rooms other than its own that `file` (a path relative to the crate, e.g.
/// `src/store/tasks.rs`) with `source` as its text reaches.
fn reached(file: &str, source: &str) -> Vec<Import> {
    let own = room_of(file).unwrap_or_default();
    imports(&strip(source), module_depth(file), file == "src/main.rs")
        .into_iter()
        .filter(|i| i.target != own)
        .collect()
}

/// Every breach of the table in `file` with `source` as its text.
fn breaches(file: &str, source: &str) -> Vec<String> {
    let Some(own) = room_of(file) else {
        return vec![format!("{file}: not in a room")];
    };
    let Some((_, room)) = find(&own) else {
        return vec![format!(
            "{file}: room `{own}` is not in the table of rooms (tests/api/architecture.rs, \
             docs/architecture.md): add it to its layer"
        )];
    };
    reached(file, source)
        .into_iter()
        .filter(|i| !room.may_use.contains(&i.target.as_str()))
        .map(|i| {
            let target_layer = find(&i.target).map_or("no layer", |(_, r)| r.layer.name());
            format!(
                "{file}:{}: `{}` reaches `{}` ({target_layer}); `{own}` ({}) may use only: {}",
                i.line,
                i.text,
                i.target,
                room.layer.name(),
                if room.may_use.is_empty() {
                    "nothing of the crate".to_owned()
                } else {
                    room.may_use.join(", ")
                }
            )
        })
        .collect()
}

/// The room of a file: `src/x.rs` and `src/x/…` are room `x`.
fn room_of(file: &str) -> Option<String> {
    let rest = file.strip_prefix("src/")?;
    let first = rest.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

/// How many `super::` reach the crate root from `file`.
fn module_depth(file: &str) -> usize {
    let rest = file.trim_start_matches("src/");
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts[parts.len() - 1];
    let own_module = !matches!(last, "mod.rs" | "lib.rs" | "main.rs");
    parts.len() - 1 + usize::from(own_module)
}

/// `source` without comments, string literals and character literals (each replaced by
/// blanks, so line numbers stay).
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let rest = &chars[i..];
        let starts = |s: &str| rest.iter().take(s.len()).copied().eq(s.chars());
        if starts("//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if starts("/*") {
            let mut depth = 0;
            while i < chars.len() {
                let rest = &chars[i..];
                if rest.starts_with(&['/', '*']) {
                    depth += 1;
                    i += 2;
                } else if rest.starts_with(&['*', '/']) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(rest) {
            let close: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            i += 2 + hashes;
            while i < chars.len() && !chars[i..].starts_with(&close) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += close.len();
        } else if chars[i] == '"' {
            // A path in an attribute (`#[serde(with = "crate::…")]`) is an import too.
            let keep = names_a_path(&out);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                let c = chars[i.min(chars.len() - 1)];
                out.push(if keep { c } else { blank(c) });
                i += 1;
            }
            i += 1;
        } else if let Some(len) = char_literal(rest) {
            i += len;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Whether the string literal that follows `code` names a path: the value of an attribute
/// key that takes one (`with = "…"`, `path = "…"`, …).
fn names_a_path(code: &str) -> bool {
    let before = code.trim_end().strip_suffix('=').unwrap_or("").trim_end();
    [
        "with",
        "serialize_with",
        "deserialize_with",
        "default",
        "path",
        "crate",
        "bound",
    ]
    .iter()
    .any(|key| {
        before.ends_with(key)
            && !before[..before.len() - key.len()]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// `r"…"` or `r#"…"#`: the number of `#`.
fn raw_string_start(rest: &[char]) -> Option<usize> {
    if rest.first() != Some(&'r') {
        return None;
    }
    let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
    (rest.get(1 + hashes) == Some(&'"')).then_some(hashes)
}

/// The length of a character literal at the start of `rest` (`'a'`, `'\n'`, `'"'`), not a
/// lifetime.
fn char_literal(rest: &[char]) -> Option<usize> {
    if rest.first() != Some(&'\'') {
        return None;
    }
    if rest.get(1) == Some(&'\\') {
        // The escaped character, then the closing quote (`'\''`, `'\n'`, `'\u{1F600}'`).
        let end = rest.iter().skip(3).position(|&c| c == '\'')?;
        return Some(end + 4);
    }
    (rest.get(2) == Some(&'\'')).then_some(3)
}

/// The paths into the crate in stripped `code`: `crate::…` (also `zerostate::…` in the
/// binary), grouped imports (`crate::{a::X, b}`), and `super::…` chains that climb to the
/// root from a module `depth` levels down.
fn imports(code: &str, depth: usize, binary: bool) -> Vec<Import> {
    let inline = inline_modules(code);
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let depth = depth + inline[n];
        if depth == 0 && !binary {
            found.extend(bare_room_paths(line, n + 1));
        }
        let mut at = 0;
        while let Some(pos) = next_path(line, at, binary) {
            let (prefix_len, climbs) = pos.1;
            let start = pos.0;
            let after = &line[start + prefix_len..];
            at = start + prefix_len;
            if climbs > 0 && climbs < depth {
                continue; // Stays inside its own room.
            }
            let (targets, len) = targets_of(after, code, n);
            for target in targets {
                found.push(Import {
                    line: n + 1,
                    text: line[start..start + prefix_len + len].trim().to_owned(),
                    target,
                });
            }
        }
    }
    found
}

/// At the crate root, rooms are in scope by their bare names (`store::Store`) and as
/// `self::store`: each such path reaches that room.
fn bare_room_paths(line: &str, number: usize) -> Vec<Import> {
    let mut found = Vec::new();
    for room in ROOMS.iter().filter(|r| !matches!(r.name, "lib" | "main")) {
        let path = format!("{}::", room.name);
        for (at, _) in line.match_indices(&path) {
            let before = line[..at].trim_end_matches("self::");
            let inside_a_path = before.ends_with("::")
                || before
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !inside_a_path {
                found.push(Import {
                    line: number,
                    text: path.trim_end_matches(':').to_owned(),
                    target: room.name.to_owned(),
                });
            }
        }
    }
    found
}

/// For each line of stripped `code`, how many inline modules (`mod tests { … }`) are open
/// at its start: each adds a level `super::` climbs.
fn inline_modules(code: &str) -> Vec<usize> {
    let mut per_line = Vec::new();
    // Each open brace, and whether it opened an inline module.
    let mut braces: Vec<bool> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    for line in code.lines() {
        per_line.push(braces.iter().filter(|&&m| m).count());
        let mut word = String::new();
        for c in line.chars().chain(std::iter::once('\n')) {
            if c.is_alphanumeric() || c == '_' {
                word.push(c);
                continue;
            }
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            match c {
                '{' => {
                    let n = words.len();
                    braces.push(n >= 2 && words[n - 2] == "mod");
                    words.clear();
                }
                '}' => {
                    braces.pop();
                    words.clear();
                }
                ';' => words.clear(),
                _ => {}
            }
        }
    }
    per_line
}

/// The next `crate::` (or `zerostate::`) or run of `super::` in `line` from `at`, as (start,
/// (length of the prefix, number of `super::`, 0 for `crate::`)).
fn next_path(line: &str, at: usize, binary: bool) -> Option<(usize, (usize, usize))> {
    let boundary = |i: usize| {
        i == 0
            || !line[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    let mut i = at;
    while i < line.len() {
        let rest = &line[i..];
        let root = if binary { "zerostate::" } else { "crate::" };
        if rest.starts_with(root) && boundary(i) {
            return Some((i, (root.len(), 0)));
        }
        if rest.starts_with("super::") && boundary(i) {
            let climbs = rest
                .as_bytes()
                .chunks(7)
                .take_while(|c| *c == b"super::")
                .count();
            return Some((i, (7 * climbs, climbs)));
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// The rooms a path reaches from the crate root: its first segment, or each entry's first
/// segment of a `{…}` group (which may span lines). Items of the crate root itself (such as
/// `crate::DB_FILE`) are room `lib`. Also returns the length of the text read on this line.
fn targets_of(after: &str, code: &str, line: usize) -> (Vec<String>, usize) {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let rooms_named = |name: String| -> String {
        if find(&name).is_some() && name != "lib" && name != "main" {
            name
        } else {
            "lib".to_owned()
        }
    };
    if !after.starts_with('{') {
        let name = ident(after);
        let len = name.len();
        return (vec![rooms_named(name)], len);
    }
    // A group: read to its closing brace, across lines if need be.
    let rest: String = code.lines().skip(line).collect::<Vec<_>>().join("\n");
    let start = rest.find(after).unwrap_or(0);
    let group = &rest[start + 1..];
    let mut level = 0;
    let mut entries = vec![String::new()];
    for c in group.chars() {
        match c {
            '{' => level += 1,
            '}' if level == 0 => break,
            '}' => level -= 1,
            ',' if level == 0 => entries.push(String::new()),
            _ => {}
        }
        if level == 0 && c != ',' && c != '{' && c != '}' {
            entries.last_mut().expect("one entry").push(c);
        }
    }
    let rooms = entries
        .iter()
        .map(|e| ident(e.trim()))
        .filter(|name| !name.is_empty() && name != "self")
        .map(rooms_named)
        .collect();
    (rooms, after.len().min(1))
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every source file of `src/`, as (path relative to the crate, text).
fn sources() -> Vec<(String, String)> {
    let root = crate_dir();
    let mut files = Vec::new();
    source_files(&root.join("src"), &mut files);
    files.sort();
    files
        .iter()
        .map(|path| {
            let file = path
                .strip_prefix(&root)
                .expect("under the crate")
                .to_string_lossy()
                .replace('\\', "/");
            (
                file,
                std::fs::read_to_string(path).expect("source is UTF-8"),
            )
        })
        .collect()
}

#[test]
fn every_import_goes_down_the_table_of_rooms() {
    let mut failures = Vec::new();
    for (file, source) in sources() {
        failures.extend(breaches(&file, &source));
    }
    assert!(
        failures.is_empty(),
        "{} import(s) break the layering (docs/architecture.md):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_table_allows_only_what_the_rooms_use() {
    // A row that allows more than its room uses would hide the next upward import.
    let mut used: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for (file, source) in sources() {
        let own = room_of(&file).unwrap_or_default();
        let reached = reached(&file, &source).into_iter().map(|i| i.target);
        used.entry(own).or_default().extend(reached);
    }
    let unused: Vec<String> = ROOMS
        .iter()
        .flat_map(|room| {
            let used = used.get(room.name).cloned().unwrap_or_default();
            room.may_use
                .iter()
                .filter(move |u| !used.contains(**u))
                .map(move |u| format!("`{}` may use `{u}` but does not", room.name))
        })
        .collect();
    assert!(
        unused.is_empty(),
        "drop these from the table (and docs/architecture.md):\n{}",
        unused.join("\n")
    );
}

#[test]
fn the_table_itself_points_down_and_names_every_room_once() {
    let mut seen = BTreeSet::new();
    for (at, room) in ROOMS.iter().enumerate() {
        assert!(seen.insert(room.name), "`{}` is listed twice", room.name);
        for used in room.may_use {
            let Some((used_at, used_room)) = find(used) else {
                panic!("`{}` may use `{used}`, which is not a room", room.name);
            };
            assert!(
                used_at < at && used_room.layer <= room.layer,
                "`{}` ({}) may use `{used}` ({}), listed after it or in a layer above: \
                 calls must go down the table",
                room.name,
                room.layer.name(),
                used_room.layer.name()
            );
        }
    }
    // Every module of src/ is a room of the table.
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(crate_dir().join("src")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        modules.insert(name.trim_end_matches(".rs").to_owned());
    }
    let rooms: BTreeSet<String> = ROOMS.iter().map(|r| r.name.to_owned()).collect();
    assert_eq!(modules, rooms, "src/ and the table of rooms differ");
}

#[test]
fn the_document_draws_the_same_table() {
    let doc = std::fs::read_to_string(crate_dir().join("docs/architecture.md"))
        .expect("docs/architecture.md exists");
    // Rows like "| `store` | infrastructure | `records`, `error` |".
    let drawn: Vec<(String, String, Vec<String>)> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let name = cells.first()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            let uses = cells.get(2)?.split(',').map(|u| u.trim().trim_matches('`'));
            Some((
                name.to_owned(),
                cells.get(1)?.trim().to_owned(),
                uses.filter(|u| !u.is_empty() && *u != "—")
                    .map(str::to_owned)
                    .collect(),
            ))
        })
        .collect();
    let table: Vec<(String, String, Vec<String>)> = ROOMS
        .iter()
        .map(|r| {
            (
                r.name.to_owned(),
                r.layer.name().to_owned(),
                r.may_use.iter().map(|u| u.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        drawn, table,
        "docs/architecture.md's table of rooms differs from ROOMS in tests/api/architecture.rs"
    );
}

#[test]
fn a_planted_upward_import_is_caught_and_named() {
    // The store sits below the orchestrator: importing from it is a cycle in the making.
    let planted = "use crate::records::Task;\nuse crate::orchestrator::Orchestrator;\n";
    let found = breaches("src/store/planted.rs", planted);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "src/store/planted.rs:2: `crate::orchestrator` reaches `orchestrator` (domain)"
        ),
        "{}",
        found[0]
    );
    assert!(
        found[0].contains("may use only: records, error"),
        "{}",
        found[0]
    );

    // Grouped, spread over lines, or inline in an expression: all are seen.
    let grouped = "use crate::{\n    records::Task,\n    http::AppState,\n};\n";
    assert_eq!(breaches("src/journal/x.rs", grouped).len(), 1);
    let inline = "fn f() { let _ = crate::agents::Catalog::default(); }";
    assert_eq!(breaches("src/realtime/hub.rs", inline).len(), 1);
    // The hub is a leaf: not even records.
    assert_eq!(
        breaches("src/realtime/hub.rs", "use crate::records::Task;").len(),
        1
    );
    // `super::super` from a room's submodule reaches the crate root.
    assert_eq!(
        breaches("src/store/x.rs", "use super::super::orchestrator::X;").len(),
        1
    );
    assert!(breaches("src/store/x.rs", "use super::tables;").is_empty());
    let tests = "mod tests {\n    use super::*;\n    use super::super::tables;\n}\n";
    assert!(
        breaches("src/store/x.rs", tests).is_empty(),
        "inside its own room"
    );
    // Comments and strings are not imports, but a path an attribute names is.
    let quiet = "// use crate::http::X;\nlet s = \"crate::http::X\"; /* crate::http */\n";
    assert!(breaches("src/store/x.rs", quiet).is_empty());
    let quote = "let q = '\\''; let s = \"crate::http\";";
    assert!(
        breaches("src/store/x.rs", quote).is_empty(),
        "an escaped quote"
    );
    let attribute = "#[serde(with = \"crate::http::dates\")]\nstruct S;";
    assert_eq!(breaches("src/store/x.rs", attribute).len(), 1);
    // At the crate root, a room's bare name is a path into it.
    let root = "pub mod ranking;\nfn f() { let _ = ranking::rank; let _ = self::ranking::X; }";
    assert_eq!(
        breaches("src/lib.rs", root).len(),
        2,
        "lib may not use ranking"
    );
    assert!(breaches("src/lib.rs", "let _ = tokio::net::TcpListener::bind;").is_empty());
}
