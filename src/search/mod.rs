//! Full-text search over agents with tantivy, stored in `<data_dir>/search`.
//!
//! redb is the source of truth: the index is derived data, checked against the store at
//! start-up and rebuilt when it is missing, damaged or out of step. The index owns what a user
//! finds from the search box: every query word must match, each in any of name, capabilities,
//! owner and description; words tolerate typos by length and the last word also matches as a
//! prefix (`derivation.rs` has the rules, `tier.rs` the ranking). The query is plain words, never
//! tantivy query syntax, so no user input makes a search fail.
//!
//! Threading: every method blocks (term-dictionary walks, tantivy commits and fsyncs) and must
//! run on the blocking pool, never on the async runtime's threads. Searches run concurrently
//! from any thread; writes serialise on the one tantivy writer. A search never reads stored
//! documents: hits carry the agent id from fast-field columns (`collector.rs`), so a query that
//! matches the whole catalog stays cheap.

mod collector;
mod derivation;
mod faults;
mod tier;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use tantivy::query::{BooleanQuery, ConstScoreQuery, DisjunctionMaxQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Score, TantivyDocument, Term};
use uuid::Uuid;

use self::collector::{HitCollector, ID_HI, ID_LO};
use self::derivation::{SearchedField, Word};
use self::faults::FaultyDirectory;
use crate::records::Agent;

pub use self::faults::Faults;

/// Indexing memory budget, shared by the writer's threads. Above tantivy's 15 MB per-thread
/// minimum so that a rebuild of 100 000 agents fits in one segment per thread.
const WRITER_HEAP_BYTES: usize = 96_000_000;
/// Indexing threads; a rebuild is CPU-bound, and more threads than cores only add segments.
const MAX_WRITER_THREADS: usize = 2;
/// Field boosts: a word in the name says most about an agent, its capabilities next.
const NAME_BOOST: Score = 3.0;
const CAPABILITIES_BOOST: Score = 2.0;
const OWNER_BOOST: Score = 1.0;
const DESCRIPTION_BOOST: Score = 1.0;
/// Bonus per query word when the query is the agent's whole name. A word scores at most about
/// `NAME_BOOST` plus the tie-breaker share of the other fields, so this puts the named agent
/// first whatever the other hits match.
const WHOLE_NAME_BONUS: Score = 4.0;
/// Share of a word's weaker matches (other fields, other derivations) added to its best one: a
/// word found in the name and the description ranks above one found in the name only.
const TIE_BREAKER: Score = 0.1;

/// What a caught panic carried, as text.
fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// One matching agent; a higher score is a better match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub id: Uuid,
    pub score: f32,
}

/// Search index failures; all internal (a query cannot fail on its text).
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("cannot open search index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("search index I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the search index writer panicked: {0}")]
    Panicked(String),
}

struct Fields {
    /// The id as text, indexed so that an upsert or removal can delete by term.
    id: Field,
    /// The id's two halves (`Uuid::as_u64_pair`) as columns, read by the hit collector.
    id_hi: Field,
    id_lo: Field,
    name: Field,
    /// The name's words joined by one space, indexed as one term: a query equal to the whole
    /// name matches it.
    name_exact: Field,
    capabilities: Field,
    owner: Field,
    description: Field,
}

/// The agent search index: one tantivy index with its single writer and a reader reloaded after
/// each commit.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    /// Single writer, as tantivy requires; a std Mutex because it is only held on blocking
    /// threads. `None` after a write failed in a way that may have left it unusable (a failed
    /// rollback, a panic inside tantivy): the next write opens a new one, so a lost writer
    /// costs one failed write, never a restart.
    writer: Mutex<Option<IndexWriter>>,
    fields: Fields,
    /// The text fields' tokenizer, cloned per use because tokenizing needs `&mut`.
    analyzer: TextAnalyzer,
    /// Searched fields, by descending boost.
    searched: [SearchedField; 4],
}

fn schema() -> (Schema, Fields) {
    // Positions are left out: nothing here runs phrase queries, so they would only cost size
    // and build time.
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("default")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let mut b = Schema::builder();
    let fields = Fields {
        id: b.add_text_field("id", STRING),
        id_hi: b.add_u64_field(ID_HI, FAST),
        id_lo: b.add_u64_field(ID_LO, FAST),
        name: b.add_text_field("name", text.clone()),
        name_exact: b.add_text_field("name_exact", STRING),
        capabilities: b.add_text_field("capabilities", text.clone()),
        owner: b.add_text_field("owner", text.clone()),
        description: b.add_text_field("description", text),
    };
    (b.build(), fields)
}

impl SearchIndex {
    /// Opens the index in `dir`, recreating it if it cannot be opened or has another schema.
    /// `faults` arms injected write failures (fault tests); pass `Faults::default()`.
    pub fn open(dir: &Path, faults: Faults) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let directory = || FaultyDirectory::open(dir, faults.clone());
        let index = if !dir.join("meta.json").exists() {
            Index::create(directory()?, schema, Default::default())?
        } else {
            match Index::open(directory()?) {
                Ok(index) if index.schema() == schema => index,
                Ok(_) | Err(_) => {
                    tracing::warn!(dir = %dir.display(), "search index unreadable or of another schema; recreating it");
                    std::fs::remove_dir_all(dir)?;
                    std::fs::create_dir_all(dir)?;
                    Index::create(directory()?, schema, Default::default())?
                }
            }
        };
        Self::from_index(index, fields)
    }

    fn from_index(index: Index, fields: Fields) -> Result<Self, SearchError> {
        let writer = Self::new_writer(&index)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let analyzer = index.tokenizer_for_field(fields.name)?;
        let searched = [
            SearchedField {
                field: fields.name,
                boost: NAME_BOOST,
                completes_one_char: true,
            },
            SearchedField {
                field: fields.capabilities,
                boost: CAPABILITIES_BOOST,
                completes_one_char: true,
            },
            SearchedField {
                field: fields.owner,
                boost: OWNER_BOOST,
                completes_one_char: false,
            },
            SearchedField {
                field: fields.description,
                boost: DESCRIPTION_BOOST,
                completes_one_char: false,
            },
        ];
        Ok(Self {
            index,
            reader,
            writer: Mutex::new(Some(writer)),
            fields,
            analyzer,
            searched,
        })
    }

    fn document(&self, analyzer: &mut TextAnalyzer, agent: &Agent) -> TantivyDocument {
        let (hi, lo) = agent.id.as_u64_pair();
        let mut doc = TantivyDocument::new();
        doc.add_text(self.fields.id, agent.id.to_string());
        doc.add_u64(self.fields.id_hi, hi);
        doc.add_u64(self.fields.id_lo, lo);
        doc.add_text(self.fields.name, &agent.name);
        doc.add_text(self.fields.name_exact, joined_words(analyzer, &agent.name));
        for cap in &agent.capabilities {
            doc.add_text(self.fields.capabilities, cap);
        }
        doc.add_text(self.fields.owner, &agent.owner_name);
        doc.add_text(self.fields.description, &agent.description);
        doc
    }

    fn id_term(&self, id: Uuid) -> Term {
        Term::from_field_text(self.fields.id, &id.to_string())
    }

    fn new_writer(index: &Index) -> Result<IndexWriter, SearchError> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MAX_WRITER_THREADS);
        Ok(index.writer_with_num_threads(threads, WRITER_HEAP_BYTES)?)
    }

    /// The writer's slot. A panic while it was held left the writer in an unknown state: it is
    /// dropped, and the next write opens a new one.
    fn writer_slot(&self) -> MutexGuard<'_, Option<IndexWriter>> {
        self.writer.lock().unwrap_or_else(|poisoned| {
            let mut slot = poisoned.into_inner();
            *slot = None;
            slot
        })
    }

    /// Applies `change` and commits it, then reloads the reader so that searches see it. A
    /// failed change is rolled back: left pending, it would be published by the next commit,
    /// a rebuild's delete-all included. When the rollback fails too, or tantivy panics, the
    /// writer is dropped and the next call opens a new one.
    fn commit(
        &self,
        change: impl FnOnce(&mut IndexWriter) -> Result<(), SearchError>,
    ) -> Result<(), SearchError> {
        let mut slot = self.writer_slot();
        let writer = match slot.as_mut() {
            Some(writer) => writer,
            None => slot.insert(Self::new_writer(&self.index)?),
        };
        let committed = catch_unwind(AssertUnwindSafe(|| {
            change(writer).and_then(|()| Ok(writer.commit().map(drop)?))
        }))
        .unwrap_or_else(|panic| Err(SearchError::Panicked(panic_message(&panic))));
        if let Err(e) = committed {
            let rolled_back = match &e {
                SearchError::Panicked(_) => false,
                _ => catch_unwind(AssertUnwindSafe(|| writer.rollback().is_ok())).unwrap_or(false),
            };
            if !rolled_back {
                tracing::warn!(error = %e, "search index writer lost; the next write opens a new one");
                *slot = None;
            }
            return Err(e);
        }
        drop(slot);
        self.reader.reload()?;
        Ok(())
    }

    /// Adds or replaces one agent and makes it searchable before returning.
    pub fn upsert(&self, agent: &Agent) -> Result<(), SearchError> {
        let doc = self.document(&mut self.analyzer.clone(), agent);
        self.commit(|writer| {
            writer.delete_term(self.id_term(agent.id));
            writer.add_document(doc)?;
            Ok(())
        })
    }

    /// Removes one agent; searchable without it before returning.
    pub fn remove(&self, id: Uuid) -> Result<(), SearchError> {
        self.commit(|writer| {
            writer.delete_term(self.id_term(id));
            Ok(())
        })
    }

    /// Makes the index hold exactly `agents`, rebuilding it if its id set differs.
    pub fn reconcile(&self, agents: &[Agent]) -> Result<(), SearchError> {
        let wanted: HashSet<Uuid> = agents.iter().map(|a| a.id).collect();
        match self.indexed_ids() {
            Ok(indexed) => {
                let distinct: HashSet<Uuid> = indexed.iter().copied().collect();
                if distinct.len() == indexed.len() && distinct == wanted {
                    return Ok(());
                }
                tracing::info!(
                    indexed = indexed.len(),
                    stored = wanted.len(),
                    "rebuilding search index"
                );
            }
            Err(e) => tracing::warn!(error = %e, "search index unreadable; rebuilding it"),
        }
        self.rebuild(agents)
    }

    /// Replaces the whole index with `agents`, in one commit: searches see the old index until
    /// the new one is complete.
    pub fn rebuild(&self, agents: &[Agent]) -> Result<(), SearchError> {
        let mut analyzer = self.analyzer.clone();
        self.commit(|writer| {
            writer.delete_all_documents()?;
            for agent in agents {
                writer.add_document(self.document(&mut analyzer, agent))?;
            }
            Ok(())
        })
    }

    /// The id of every visible document, duplicates included.
    fn indexed_ids(&self) -> Result<Vec<Uuid>, SearchError> {
        let searcher = self.reader.searcher();
        let mut indexed = Vec::with_capacity(searcher.num_docs() as usize);
        for segment in searcher.segment_readers() {
            let id_hi = segment.fast_fields().u64(ID_HI)?;
            let id_lo = segment.fast_fields().u64(ID_LO)?;
            for doc in segment.doc_ids_alive() {
                if let (Some(hi), Some(lo)) = (id_hi.first(doc), id_lo.first(doc)) {
                    indexed.push(Uuid::from_u64_pair(hi, lo));
                }
            }
        }
        Ok(indexed)
    }

    /// The `max_hits` agents best matching `query`, best first. `query` is plain words: an
    /// empty or all-punctuation query has no hits, and nothing in it is syntax.
    pub fn search(&self, query: &str, max_hits: usize) -> Result<Vec<Hit>, SearchError> {
        if max_hits == 0 {
            return Ok(Vec::new());
        }
        let words = derivation::words(&mut self.analyzer.clone(), query);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(words.len() + 1);
        for word in &words {
            let derivations = derivation::derive(&searcher, &self.searched, word)?;
            if derivations.is_empty() {
                return Ok(Vec::new());
            }
            let mut alternatives: Vec<Box<dyn Query>> = derivations
                .into_iter()
                .map(|d| {
                    let term = Term::from_field_text(d.field.field, &d.term);
                    tier::term_query(term, d.tier, d.field.boost)
                })
                .collect();
            let word_query = match alternatives.pop() {
                Some(only) if alternatives.is_empty() => only,
                last => {
                    alternatives.extend(last);
                    Box::new(DisjunctionMaxQuery::with_tie_breaker(
                        alternatives,
                        TIE_BREAKER,
                    ))
                }
            };
            clauses.push((Occur::Must, word_query));
        }
        let whole_name = Term::from_field_text(self.fields.name_exact, &join(&words));
        if searcher.doc_freq(&whole_name)? > 0 {
            clauses.push((
                Occur::Should,
                Box::new(ConstScoreQuery::new(
                    Box::new(TermQuery::new(whole_name, IndexRecordOption::Basic)),
                    WHOLE_NAME_BONUS * words.len() as Score,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        Ok(searcher.search(&query, &HitCollector { max_hits })?)
    }

    #[cfg(test)]
    fn in_memory() -> Self {
        let (schema, fields) = schema();
        Self::from_index(Index::create_in_ram(schema), fields).unwrap()
    }

    /// Number of documents visible to searches.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn join(words: &[Word]) -> String {
    let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
    texts.join(" ")
}

/// `name`'s words as the query side joins them, for `name_exact`.
fn joined_words(analyzer: &mut TextAnalyzer, name: &str) -> String {
    let mut joined = String::with_capacity(name.len());
    let mut stream = analyzer.token_stream(name);
    while let Some(token) = stream.next() {
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(&token.text);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, description: &str, caps: &[&str]) -> Agent {
        Agent {
            owner_id: Uuid::new_v4(),
            description: description.into(),
            ..Agent::fixture(name, 0.0, caps)
        }
    }

    fn ids(index: &SearchIndex, query: &str) -> Vec<Uuid> {
        index
            .search(query, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|hit| hit.id)
            .collect()
    }

    /// The two agents most tests search between.
    fn catalog() -> (SearchIndex, Agent, Agent) {
        let index = SearchIndex::in_memory();
        let sentiment = Agent {
            owner_name: "Ada Lovelace".into(),
            ..agent(
                "Sentiment-Analyzer",
                "Scores the mood and tone of text",
                &["sentiment-analysis", "nlp"],
            )
        };
        let stats = Agent {
            owner_name: "Grace Hopper".into(),
            ..agent("Text-Statistics", "Counts words and sentences", &["text"])
        };
        index.rebuild(&[sentiment.clone(), stats.clone()]).unwrap();
        (index, sentiment, stats)
    }

    #[test]
    fn finds_by_name_description_capability_and_owner() {
        let (index, sentiment, stats) = catalog();
        assert_eq!(ids(&index, "sentiment"), [sentiment.id]);
        assert_eq!(ids(&index, "words"), [stats.id]);
        assert_eq!(ids(&index, "nlp"), [sentiment.id]);
        assert_eq!(ids(&index, "lovelace"), [sentiment.id]);
        assert_eq!(ids(&index, "Grace Hopper"), [stats.id]);
        assert!(ids(&index, "nothing-like-this").is_empty());
    }

    #[test]
    fn tolerates_typos_by_word_length() {
        let (index, sentiment, stats) = catalog();
        assert_eq!(
            ids(&index, "sentimnt"),
            [sentiment.id],
            "one typo in 8 letters"
        );
        assert_eq!(
            ids(&index, "setnimentt"),
            [sentiment.id],
            "two typos in 10 letters"
        );
        assert_eq!(
            ids(&index, "snetiment mood"),
            [sentiment.id],
            "transposition is one"
        );
        assert!(
            ids(&index, "sxntimxnx mood").is_empty(),
            "9 letters: only two typos"
        );
        assert_eq!(ids(&index, "lovelaec"), [sentiment.id]);
        assert!(
            ids(&index, "lxvxlace").is_empty(),
            "8 letters: only one typo"
        );
        assert_eq!(ids(&index, "counts"), [stats.id]);
    }

    #[test]
    fn completes_the_last_word() {
        let (index, sentiment, stats) = catalog();
        assert_eq!(
            ids(&index, "senti"),
            [sentiment.id, stats.id],
            "`sentences` is a completion of `sente`, one typo away: ranked below"
        );
        assert_eq!(ids(&index, "sentiment-an"), [sentiment.id]);
        assert_eq!(ids(&index, "Sentiment-Analyzer"), [sentiment.id]);
        assert_eq!(ids(&index, "s").len(), 2, "one letter completes in names");
    }

    #[test]
    fn short_words_match_exactly_except_as_last_prefix() {
        let (index, sentiment, stats) = catalog();
        assert_eq!(
            ids(&index, "tex"),
            [stats.id, sentiment.id],
            "last word completes"
        );
        assert!(
            ids(&index, "tex words").is_empty(),
            "a 3-letter word has no typo budget"
        );
        assert!(ids(&index, "txt").is_empty());
        assert_eq!(ids(&index, "text words"), [stats.id]);
    }

    #[test]
    fn every_word_must_match_in_some_field() {
        let (index, sentiment, stats) = catalog();
        assert_eq!(ids(&index, "mood nlp ada"), [sentiment.id]);
        assert_eq!(ids(&index, "text"), [stats.id, sentiment.id]);
        assert!(ids(&index, "mood words").is_empty());
    }

    #[test]
    fn exact_matches_rank_above_prefix_and_typo_matches() {
        let index = SearchIndex::in_memory();
        let exact_in_description = agent("Mood-Meter", "reads the translator output", &[]);
        let prefix_in_name = agent("Translators-Hub", "something else", &[]);
        let typo_in_name = agent("Translatr-Box", "something else", &[]);
        index
            .rebuild(&[
                typo_in_name.clone(),
                prefix_in_name.clone(),
                exact_in_description.clone(),
            ])
            .unwrap();
        assert_eq!(
            ids(&index, "translator"),
            [exact_in_description.id, prefix_in_name.id, typo_in_name.id]
        );
    }

    #[test]
    fn name_outweighs_capabilities_outweighs_description() {
        let index = SearchIndex::in_memory();
        let in_description = agent("Alpha", "an ocr pipeline", &[]);
        let in_capabilities = agent("Beta", "", &["ocr"]);
        let in_name = agent("OCR-Tool", "", &[]);
        index
            .rebuild(&[
                in_description.clone(),
                in_capabilities.clone(),
                in_name.clone(),
            ])
            .unwrap();
        assert_eq!(
            ids(&index, "ocr"),
            [in_name.id, in_capabilities.id, in_description.id]
        );
    }

    #[test]
    fn whole_name_ranks_first() {
        let index = SearchIndex::in_memory();
        let named = agent("Fast-Translator", "", &[]);
        let busier = agent(
            "Fast-Translator-Pro",
            "fast translator, fast and a translator",
            &["translator", "fast"],
        );
        index.rebuild(&[busier.clone(), named.clone()]).unwrap();
        assert_eq!(ids(&index, "fast translator"), [named.id, busier.id]);
        let hits = index.search("fast translator", 1).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, named.id);
    }

    #[test]
    fn query_syntax_is_plain_text() {
        let (index, sentiment, _) = catalog();
        assert_eq!(ids(&index, "mood AND ("), [sentiment.id], "`and` is a word");
        assert_eq!(ids(&index, "mood ("), [sentiment.id]);
        assert_eq!(ids(&index, "\"mood"), [sentiment.id]);
        assert_eq!(ids(&index, "title:mood"), Vec::<Uuid>::new());
        assert!(ids(&index, "").is_empty());
        assert!(ids(&index, " -- ()*: ").is_empty());
    }

    #[test]
    fn upsert_replaces() {
        let index = SearchIndex::in_memory();
        let mut a = agent("Echo", "old words", &["echo"]);
        index.upsert(&a).unwrap();
        a.description = "new text".into();
        index.upsert(&a).unwrap();
        assert_eq!(index.len(), 1);
        assert!(ids(&index, "old").is_empty());
        assert_eq!(ids(&index, "new"), [a.id]);
    }

    #[test]
    fn remove_hides_the_agent() {
        let (index, sentiment, stats) = catalog();
        index.remove(sentiment.id).unwrap();
        assert!(ids(&index, "sentiment").is_empty());
        assert_eq!(ids(&index, "text"), [stats.id]);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn reconcile_rebuilds_only_when_the_ids_differ() {
        let index = SearchIndex::in_memory();
        let a = agent("Echo", "words", &["echo"]);
        index.upsert(&a).unwrap();
        let mut renamed = a.clone();
        renamed.name = "Renamed".into();
        index.reconcile(std::slice::from_ref(&renamed)).unwrap();
        assert_eq!(ids(&index, "echo"), [a.id], "same ids: left alone");
        let b = agent("Other", "more", &["x"]);
        index.reconcile(std::slice::from_ref(&b)).unwrap();
        assert!(ids(&index, "echo").is_empty());
        assert_eq!(ids(&index, "other"), [b.id]);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn reopens_from_disk_and_recreates_a_damaged_index() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent("Echo", "words", &["echo"]);
        {
            let index = SearchIndex::open(dir.path(), Default::default()).unwrap();
            index.upsert(&a).unwrap();
        }
        let index = SearchIndex::open(dir.path(), Default::default()).unwrap();
        assert_eq!(ids(&index, "echo"), [a.id]);
        drop(index);
        std::fs::write(dir.path().join("meta.json"), b"not json").unwrap();
        let index = SearchIndex::open(dir.path(), Default::default()).unwrap();
        assert!(index.is_empty());
    }

    #[test]
    fn a_failed_write_leaves_the_index_usable_and_the_next_write_lands() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::default();
        let index = SearchIndex::open(dir.path(), faults.clone()).unwrap();
        let a = agent("Echo", "words", &["echo"]);
        index.upsert(&a).unwrap();
        let b = agent("Zeppelin", "airship", &["fly"]);
        for failing in [1, 2, 3, u32::MAX] {
            faults.fail_next_writes(failing);
            assert!(index.upsert(&b).is_err(), "{failing} failing writes");
            faults.fail_next_writes(0);
            assert_eq!(ids(&index, "echo"), [a.id]);
            assert!(ids(&index, "airship").is_empty());
        }
        index.upsert(&b).unwrap();
        assert_eq!(ids(&index, "airship"), [b.id]);
        assert_eq!(ids(&index, "echo"), [a.id]);
    }

    #[test]
    fn a_panic_inside_a_write_costs_that_write_only() {
        let index = SearchIndex::in_memory();
        let panicked = index.commit(|_| panic!("tantivy fell over"));
        assert!(matches!(panicked, Err(SearchError::Panicked(m)) if m == "tantivy fell over"));
        let a = agent("Echo", "words", &["echo"]);
        index.upsert(&a).unwrap();
        assert_eq!(ids(&index, "echo"), [a.id]);
    }

    /// Regression: the index's directory must keep the on-disk advisory locks. With tantivy's
    /// default, lock files a crash (or an older build) left behind made every start fail.
    #[test]
    fn lock_files_left_by_a_crash_do_not_stop_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent("Echo", "words", &["echo"]);
        SearchIndex::open(dir.path(), Faults::default())
            .unwrap()
            .upsert(&a)
            .unwrap();
        std::fs::write(dir.path().join(".tantivy-writer.lock"), b"").unwrap();
        std::fs::write(dir.path().join(".tantivy-meta.lock"), b"").unwrap();
        let index = SearchIndex::open(dir.path(), Faults::default()).unwrap();
        let b = agent("Zeppelin", "airship", &["fly"]);
        index.upsert(&b).unwrap();
        assert_eq!(ids(&index, "airship"), [b.id]);
        assert_eq!(ids(&index, "echo"), [a.id]);
    }
}
