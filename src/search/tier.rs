//! Match tiers and the term queries that score within them.
//!
//! A query word stands for several indexed terms (itself, its completions, its near misses);
//! [`Tier`] says how closely a term matches the word and [`term_query`] scores the term so that
//! the tier decides the order and BM25 only orders exact matches within their tier. Pure
//! computation on the searching thread.

use tantivy::query::{
    ConstScoreQuery, EnableScoring, Explanation, Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Score, SeekDangerResult, SegmentReader, Term};

/// How an indexed term matches a query word, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Tier {
    Exact,
    /// The term starts with the (last) query word.
    Prefix,
    OneTypo,
    TwoTypos,
}

impl Tier {
    /// The term's weight before the field boost. Each tier weighs 5× the next: more than the
    /// largest field boost ratio (name 3 : description 1) plus the per-word tie-breaker, so an
    /// exact match in any field outranks a prefix or typo match in any field (unless one
    /// document matches the word through half a dozen derivations at once).
    pub(super) fn weight(self) -> Score {
        match self {
            Tier::Exact => 1.0,
            Tier::Prefix => 0.2,
            Tier::OneTypo => 0.04,
            Tier::TwoTypos => 0.008,
        }
    }

    pub(super) fn from_typos(typos: usize) -> Option<Tier> {
        match typos {
            1 => Some(Tier::OneTypo),
            2 => Some(Tier::TwoTypos),
            _ => None,
        }
    }
}

/// Share of a term's weight that every matching document gets; BM25 moves the score within
/// `[FLOOR × weight, weight)`, never across a tier boundary.
const FLOOR: Score = 0.8;

fn banded(weight: Score, bm25: Score) -> Score {
    weight * (FLOOR + (1.0 - FLOOR) * bm25 / (bm25 + 1.0))
}

/// The query for `term` matched at `tier` in a field boosted by `boost`. An exact term scores
/// with BM25 inside its band, so that a short name outranks a long one. A derived term
/// (completion, typo) scores the band's floor: a short prefix stands for tens of thousands of
/// postings, and reading their frequencies and field norms would cost more than the order among
/// near misses is worth.
pub(super) fn term_query(term: Term, tier: Tier, boost: Score) -> Box<dyn Query> {
    let weight = tier.weight() * boost;
    match tier {
        Tier::Exact => Box::new(BandedQuery {
            term: TermQuery::new(term, IndexRecordOption::WithFreqs),
            weight,
        }),
        Tier::Prefix | Tier::OneTypo | Tier::TwoTypos => Box::new(ConstScoreQuery::new(
            Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
            weight * FLOOR,
        )),
    }
}

/// A term query whose BM25 score is squeezed into a band below `weight`.
#[derive(Debug, Clone)]
struct BandedQuery {
    term: TermQuery,
    weight: Score,
}

impl Query for BandedQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(BandedWeight {
            inner: self.term.weight(enable_scoring)?,
            weight: self.weight,
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.term.query_terms(visitor);
    }
}

struct BandedWeight {
    inner: Box<dyn Weight>,
    weight: Score,
}

impl Weight for BandedWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(BandedScorer {
            inner: self.inner.scorer(reader, 1.0)?,
            weight: self.weight * boost,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let bm25 = self.inner.explain(reader, doc)?;
        let mut explanation = Explanation::new(
            "tier weight × (0.8 + 0.2 × bm25 / (bm25 + 1))",
            banded(self.weight, bm25.value()),
        );
        explanation.add_const("tier weight", self.weight);
        explanation.add_detail(bm25);
        Ok(explanation)
    }
}

struct BandedScorer {
    inner: Box<dyn Scorer>,
    weight: Score,
}

impl DocSet for BandedScorer {
    fn advance(&mut self) -> DocId {
        self.inner.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.inner.seek(target)
    }

    fn seek_danger(&mut self, target: DocId) -> SeekDangerResult {
        self.inner.seek_danger(target)
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }

    fn cost(&self) -> u64 {
        self.inner.cost()
    }
}

impl Scorer for BandedScorer {
    fn score(&mut self) -> Score {
        banded(self.weight, self.inner.score())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_never_reaches_the_next_tier() {
        for bm25 in [0.0, 0.01, 1.0, 10.0, 1e6] {
            let exact_description = banded(Tier::Exact.weight(), bm25);
            let prefix_name = banded(Tier::Prefix.weight() * 3.0, 1e6);
            assert!(exact_description > prefix_name, "bm25 {bm25}");
            let prefix_description = banded(Tier::Prefix.weight(), bm25);
            let typo_name = banded(Tier::OneTypo.weight() * 3.0, 1e6);
            assert!(prefix_description > typo_name, "bm25 {bm25}");
        }
    }
}
