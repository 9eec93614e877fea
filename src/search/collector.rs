//! Collects every matching agent id with its score, best first.
//!
//! Ids come from the `id_hi`/`id_lo` fast-field columns, never from stored documents: a query
//! that matches most of the catalog costs two column reads per hit, not a decompressed store
//! block. A short query can match almost every agent, so the per-hit work is kept to pushing
//! two numbers during collection and one batched read per column after it. Runs on the
//! searching thread, one segment after another.

use std::cmp::Reverse;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, ColumnValues};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};
use uuid::Uuid;

use super::Hit;

/// Names of the fast fields holding the two halves of the agent id.
pub(super) const ID_HI: &str = "id_hi";
pub(super) const ID_LO: &str = "id_lo";

/// The `max_hits` best hits of a query.
pub(super) struct HitCollector {
    pub max_hits: usize,
}

impl Collector for HitCollector {
    type Fruit = Vec<Hit>;
    type Child = SegmentHits;

    fn for_segment(
        &self,
        _segment_ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentHits> {
        let fast_fields = segment.fast_fields();
        Ok(SegmentHits {
            id_hi: values(fast_fields.u64(ID_HI)?),
            id_lo: values(fast_fields.u64(ID_LO)?),
            docs: Vec::new(),
            scores: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, segments: Vec<SegmentHits>) -> tantivy::Result<Vec<Hit>> {
        let total = segments.iter().map(|s| s.docs.len()).sum();
        let mut hits = Vec::with_capacity(total);
        let (mut hi, mut lo) = (Vec::new(), Vec::new());
        for segment in segments {
            hi.resize(segment.docs.len(), 0);
            lo.resize(segment.docs.len(), 0);
            segment.id_hi.get_vals(&segment.docs, &mut hi);
            segment.id_lo.get_vals(&segment.docs, &mut lo);
            hits.extend(
                hi.iter()
                    .zip(&lo)
                    .zip(&segment.scores)
                    .map(|((&hi, &lo), &score)| Hit {
                        id: Uuid::from_u64_pair(hi, lo),
                        score,
                    }),
            );
        }
        Ok(best_first(hits, self.max_hits))
    }
}

/// The column's values by doc id. Every document has both id halves, so the column is full and
/// its values are addressed by doc id without going through the column index.
fn values(column: Column<u64>) -> Arc<dyn ColumnValues<u64>> {
    match column.get_cardinality() {
        Cardinality::Full => column.values,
        Cardinality::Optional | Cardinality::Multivalued => column.first_or_default_col(0),
    }
}

pub(super) struct SegmentHits {
    id_hi: Arc<dyn ColumnValues<u64>>,
    id_lo: Arc<dyn ColumnValues<u64>>,
    /// Matches in collection order; ids are read in one batch per segment when the segments'
    /// hits are merged.
    docs: Vec<DocId>,
    scores: Vec<Score>,
}

impl SegmentCollector for SegmentHits {
    type Fruit = SegmentHits;

    fn collect(&mut self, doc: DocId, score: Score) {
        self.docs.push(doc);
        self.scores.push(score);
    }

    fn harvest(self) -> SegmentHits {
        self
    }
}

/// The `max_hits` best of `hits`, best first; equal scores in no particular order (the
/// marketplace breaks ties itself). Scores are never negative, so their bits order like the
/// floats, and sorting on that integer key is several times faster than `total_cmp`, above all
/// with the long runs of equal scores a one-word query produces.
fn best_first(mut hits: Vec<Hit>, max_hits: usize) -> Vec<Hit> {
    let key = |hit: &Hit| Reverse(hit.score.to_bits());
    if hits.len() > max_hits {
        if max_hits == 0 {
            return Vec::new();
        }
        hits.select_nth_unstable_by_key(max_hits - 1, key);
        hits.truncate(max_hits);
    }
    hits.sort_unstable_by_key(key);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_in_score_order() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let hits: Vec<Hit> = (0..5_000)
            .map(|_| Hit {
                id: Uuid::from_u64_pair(next(), next()),
                score: (next() % 40) as f32 * 0.25,
            })
            .collect();
        let mut expected: Vec<f32> = hits.iter().map(|h| h.score).collect();
        expected.sort_by(|a, b| b.total_cmp(a));
        let scores = |hits: Vec<Hit>| hits.into_iter().map(|h| h.score).collect::<Vec<_>>();
        assert_eq!(scores(best_first(hits.clone(), usize::MAX)), expected);
        assert_eq!(scores(best_first(hits.clone(), 10)), expected[..10]);
        assert!(best_first(hits, 0).is_empty());
    }
}
