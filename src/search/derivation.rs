//! Query words and the indexed terms each one stands for.
//!
//! The rules a user sees, after Meilisearch: a word of 1–4 characters must match exactly,
//! 5–8 characters may carry one typo, 9 or more two (a transposition is one typo). The last word
//! also matches as a prefix, since the user may still be typing it, and within the same typo
//! budget (`senti` reaches `sentences` through `sente`, ranked below `sentiment`); a
//! one-character last word completes only in names and capabilities. Each word stands for at most
//! [`MAX_DERIVATIONS`] terms per field, best tier first, then most frequent, which bounds the
//! work of a short prefix. Runs on the searching thread: term-dictionary walks, no postings.

use std::collections::HashMap;

use tantivy::Searcher;
use tantivy::query::{DfaWrapper, FuzzyTermQuery};
use tantivy::schema::Field;
use tantivy::tokenizer::{TextAnalyzer, TokenStream};
use tantivy::{Score, Term};

use super::SearchError;
use super::tier::Tier;

/// Terms one word may stand for in one field. A two-letter prefix over a large vocabulary has
/// hundreds of completions; the most frequent ones are what a user typing means.
pub(super) const MAX_DERIVATIONS: usize = 32;

/// A field the query words are matched against.
#[derive(Debug, Clone, Copy)]
pub(super) struct SearchedField {
    pub field: Field,
    pub boost: Score,
    /// Whether a one-character last word completes in this field. Only small-vocabulary fields
    /// (names, capabilities) qualify: in descriptions "s" stands for a third of all words.
    pub completes_one_char: bool,
}

/// One word of the query, as the index's tokenizer cut it.
#[derive(Debug)]
pub(super) struct Word {
    pub text: String,
    chars: Vec<char>,
    /// The last word, which may be incomplete.
    is_last: bool,
}

impl Word {
    /// Meilisearch's typo budget.
    fn typo_budget(&self) -> u8 {
        match self.chars.len() {
            0..=4 => 0,
            5..=8 => 1,
            _ => 2,
        }
    }

    fn tier(&self, term: &str, prefix: bool) -> Option<Tier> {
        if term == self.text {
            return Some(Tier::Exact);
        }
        if prefix && term.starts_with(&self.text) {
            return Some(Tier::Prefix);
        }
        let term: Vec<char> = term.chars().collect();
        let typos = typos(&self.chars, &term, prefix);
        Tier::from_typos(typos).filter(|_| typos <= usize::from(self.typo_budget()))
    }
}

/// Cuts `query` into words with the tokenizer of the indexed text fields, so that query and
/// index agree on case and separators. Query syntax has no meaning here: `AND (` is two
/// characters of punctuation and a word.
pub(super) fn words(analyzer: &mut TextAnalyzer, query: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut stream = analyzer.token_stream(query);
    while let Some(token) = stream.next() {
        words.push(Word {
            text: token.text.clone(),
            chars: token.text.chars().collect(),
            is_last: false,
        });
    }
    if let Some(last) = words.last_mut() {
        last.is_last = true;
    }
    words
}

/// An indexed term a word stands for, in one field.
#[derive(Debug)]
pub(super) struct Derivation {
    pub field: SearchedField,
    pub term: String,
    pub tier: Tier,
    doc_freq: u64,
}

/// The terms `word` stands for in each of `fields`, across all segments of `searcher`.
pub(super) fn derive(
    searcher: &Searcher,
    fields: &[SearchedField],
    word: &Word,
) -> Result<Vec<Derivation>, SearchError> {
    let budget = word.typo_budget();
    let whole = automaton(fields[0].field, &word.text, budget, false)?;
    let prefix = if word.is_last {
        Some(automaton(fields[0].field, &word.text, budget, true)?)
    } else {
        None
    };
    let mut derivations = Vec::new();
    for searched in fields {
        let completes = word.chars.len() > 1 || searched.completes_one_char;
        let (dfa, is_prefix) = match &prefix {
            Some(dfa) if completes => (dfa, true),
            _ => (&whole, false),
        };
        let mut doc_freqs: HashMap<String, u64> = HashMap::new();
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(searched.field)?;
            let mut stream = inverted.terms().search(dfa).into_stream()?;
            while let Some((key, info)) = stream.next() {
                if let Ok(term) = std::str::from_utf8(key) {
                    *doc_freqs.entry(term.to_owned()).or_default() += u64::from(info.doc_freq);
                }
            }
        }
        let start = derivations.len();
        derivations.extend(doc_freqs.into_iter().filter_map(|(term, doc_freq)| {
            Some(Derivation {
                field: *searched,
                tier: word.tier(&term, is_prefix)?,
                term,
                doc_freq,
            })
        }));
        let own = &mut derivations[start..];
        own.sort_unstable_by(|a, b| {
            (a.tier, b.doc_freq, &a.term).cmp(&(b.tier, a.doc_freq, &b.term))
        });
        let kept = own.len().min(MAX_DERIVATIONS);
        derivations.truncate(start + kept);
    }
    Ok(derivations)
}

fn automaton(field: Field, text: &str, typos: u8, prefix: bool) -> Result<DfaWrapper, SearchError> {
    let term = Term::from_field_text(field, text);
    let query = if prefix {
        FuzzyTermQuery::new_prefix(term, typos, true)
    } else {
        FuzzyTermQuery::new(term, typos, true)
    };
    Ok(query.automaton()?)
}

/// Edits (insertion, deletion, substitution, transposition of neighbours) between `word` and
/// `term`, or with `prefix` between `word` and the closest prefix of `term`. Counts what the
/// Levenshtein automaton only accepts or rejects, to tell one typo from two.
fn typos(word: &[char], term: &[char], prefix: bool) -> usize {
    let width = term.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current: Vec<usize> = vec![0; width];
    for i in 1..=word.len() {
        current[0] = i;
        for j in 1..width {
            let substitution = usize::from(word[i - 1] != term[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + substitution);
            if i > 1 && j > 1 && word[i - 1] == term[j - 2] && word[i - 2] == term[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    if prefix {
        previous.into_iter().min().unwrap_or(0)
    } else {
        previous[term.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typos_of(word: &str, term: &str, prefix: bool) -> usize {
        let word: Vec<char> = word.chars().collect();
        let term: Vec<char> = term.chars().collect();
        typos(&word, &term, prefix)
    }

    #[test]
    fn counts_edits_with_transposition_as_one() {
        assert_eq!(typos_of("sentiment", "sentiment", false), 0);
        assert_eq!(typos_of("sentimnt", "sentiment", false), 1);
        assert_eq!(typos_of("snetiment", "sentiment", false), 1);
        assert_eq!(typos_of("sentimetn", "sentiment", false), 1);
        assert_eq!(typos_of("sentxmetn", "sentiment", false), 2);
        assert_eq!(typos_of("", "abc", false), 3);
        assert_eq!(typos_of("abc", "", false), 3);
    }

    #[test]
    fn prefix_counts_edits_to_the_closest_prefix() {
        assert_eq!(typos_of("senti", "sentiment", true), 0);
        assert_eq!(typos_of("sentx", "sentiment", true), 1);
        assert_eq!(typos_of("sentimnt", "sentiment", true), 1);
    }

    #[test]
    fn typo_budget_follows_word_length() {
        let budget = |w: &str| {
            Word {
                text: w.into(),
                chars: w.chars().collect(),
                is_last: false,
            }
            .typo_budget()
        };
        assert_eq!(
            [budget("text"), budget("texts"), budget("analyzer")],
            [0, 1, 1]
        );
        assert_eq!(budget("sentiment"), 2);
        assert_eq!(budget("ñññññ"), 1, "counts characters, not bytes");
    }
}
