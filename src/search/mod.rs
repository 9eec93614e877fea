//! Full-text search over agents with tantivy, stored in `<data_dir>/search`.
//!
//! redb is the source of truth: the index is derived data, checked against the store at
//! start-up and rebuilt when it is missing, damaged or out of step. Every method blocks
//! (tantivy I/O and commits) and must run on the blocking pool.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{Field, STORED, STRING, Schema, TEXT, Value};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use crate::agents::Agent;

/// Most hits a query returns before filtering and pagination.
const MAX_HITS: usize = 10_000;
/// Indexing memory budget; tantivy's minimum for one thread.
const WRITER_HEAP_BYTES: usize = 15_000_000;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("cannot open search index directory: {0}")]
    Directory(#[from] tantivy::directory::error::OpenDirectoryError),
    #[error("cannot create search index directory: {0}")]
    Io(#[from] std::io::Error),
}

struct Fields {
    id: Field,
    name: Field,
    description: Field,
    capabilities: Field,
}

pub struct SearchIndex {
    reader: IndexReader,
    /// Single writer, as tantivy requires; a std Mutex because it is only held on blocking
    /// threads.
    writer: Mutex<IndexWriter>,
    fields: Fields,
    parser: QueryParser,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        name: b.add_text_field("name", TEXT),
        description: b.add_text_field("description", TEXT),
        capabilities: b.add_text_field("capabilities", TEXT),
    };
    (b.build(), fields)
}

impl SearchIndex {
    /// Opens the index in `dir`, recreating it if it cannot be opened or has another schema.
    pub fn open(dir: &Path) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let index = if !dir.join("meta.json").exists() {
            Index::create_in_dir(dir, schema)?
        } else {
            match Index::open_in_dir(dir) {
                Ok(index) if index.schema() == schema => index,
                Ok(_) | Err(_) => {
                    tracing::warn!(dir = %dir.display(), "search index unreadable or of another schema; recreating it");
                    std::fs::remove_dir_all(dir)?;
                    std::fs::create_dir_all(dir)?;
                    Index::create_in_dir(dir, schema)?
                }
            }
        };
        Self::from_index(index, fields)
    }

    fn from_index(index: Index, fields: Fields) -> Result<Self, SearchError> {
        let writer = index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(
            &index,
            vec![fields.name, fields.description, fields.capabilities],
        );
        parser.set_conjunction_by_default();
        parser.set_field_boost(fields.name, 3.0);
        parser.set_field_boost(fields.capabilities, 2.0);
        Ok(Self {
            reader,
            writer: Mutex::new(writer),
            fields,
            parser,
        })
    }

    fn document(&self, agent: &Agent) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        doc.add_text(self.fields.id, agent.id.to_string());
        doc.add_text(self.fields.name, &agent.name);
        doc.add_text(self.fields.description, &agent.description);
        for cap in &agent.capabilities {
            doc.add_text(self.fields.capabilities, cap);
        }
        doc
    }

    /// Adds or replaces one agent and makes it searchable before returning.
    pub fn upsert(&self, agent: &Agent) -> Result<(), SearchError> {
        let mut writer = self.writer.lock().expect("search writer poisoned");
        writer.delete_term(Term::from_field_text(self.fields.id, &agent.id.to_string()));
        writer.add_document(self.document(agent))?;
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Removes one agent; searchable without it before returning.
    pub fn remove(&self, id: Uuid) -> Result<(), SearchError> {
        let mut writer = self.writer.lock().expect("search writer poisoned");
        writer.delete_term(Term::from_field_text(self.fields.id, &id.to_string()));
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Makes the index hold exactly `agents`, rebuilding it if its id set differs.
    pub fn reconcile(&self, agents: &[Agent]) -> Result<(), SearchError> {
        let wanted: HashSet<String> = agents.iter().map(|a| a.id.to_string()).collect();
        match self.indexed_ids() {
            Ok(indexed) if indexed == wanted => return Ok(()),
            Ok(indexed) => {
                tracing::info!(
                    indexed = indexed.len(),
                    stored = wanted.len(),
                    "rebuilding search index"
                )
            }
            Err(e) => tracing::warn!(error = %e, "search index unreadable; rebuilding it"),
        }
        let mut writer = self.writer.lock().expect("search writer poisoned");
        writer.delete_all_documents()?;
        for agent in agents {
            writer.add_document(self.document(agent))?;
        }
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    fn indexed_ids(&self) -> Result<HashSet<String>, SearchError> {
        let searcher = self.reader.searcher();
        let mut indexed = HashSet::new();
        for segment in searcher.segment_readers() {
            let store = segment.get_store_reader(64)?;
            for doc_id in segment.doc_ids_alive() {
                let doc: TantivyDocument = store.get(doc_id)?;
                if let Some(id) = doc.get_first(self.fields.id).and_then(|v| v.as_str()) {
                    indexed.insert(id.to_owned());
                }
            }
        }
        Ok(indexed)
    }

    /// Agent ids matching `query`, best first. Query syntax errors are tolerated: the parts
    /// that parse are used.
    pub fn search(&self, query: &str) -> Result<Vec<Uuid>, SearchError> {
        let (query, _errors) = self.parser.parse_query_lenient(query);
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &TopDocs::with_limit(MAX_HITS).order_by_score())?;
        let mut ids = Vec::with_capacity(hits.len());
        for (_score, address) in hits {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(id) = doc
                .get_first(self.fields.id)
                .and_then(|v| v.as_str())
                .and_then(|s| Uuid::parse_str(s).ok())
            {
                ids.push(id);
            }
        }
        Ok(ids)
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

    #[test]
    fn finds_by_name_description_and_capability() {
        let index = SearchIndex::in_memory();
        let sentiment = agent(
            "Sentiment-Analyzer",
            "Scores the mood of text",
            &["sentiment-analysis", "nlp"],
        );
        let stats = agent("Text-Statistics", "Counts words and sentences", &["text"]);
        index.upsert(&sentiment).unwrap();
        index.upsert(&stats).unwrap();
        assert_eq!(index.search("sentiment").unwrap(), [sentiment.id]);
        assert_eq!(index.search("words").unwrap(), [stats.id]);
        assert_eq!(index.search("nlp").unwrap(), [sentiment.id]);
        assert!(index.search("nothing-like-this").unwrap().is_empty());
        // Unbalanced syntax does not fail the query.
        assert_eq!(index.search("mood AND (").unwrap(), [sentiment.id]);
    }

    #[test]
    fn upsert_replaces_and_reconcile_rebuilds() {
        let index = SearchIndex::in_memory();
        let mut a = agent("Echo", "old words", &["echo"]);
        index.upsert(&a).unwrap();
        a.description = "new text".into();
        index.upsert(&a).unwrap();
        assert_eq!(index.len(), 1);
        assert!(index.search("old").unwrap().is_empty());
        let b = agent("Other", "more", &["x"]);
        index.reconcile(std::slice::from_ref(&b)).unwrap();
        assert_eq!(index.search("echo").unwrap(), Vec::<Uuid>::new());
        assert_eq!(index.search("other").unwrap(), [b.id]);
    }
}
