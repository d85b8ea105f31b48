//! The one interface a collection searches through, whatever index answers: [`ExactIndex`]
//! scores every row, [`HnswIndex`] walks a graph. Both read the rows where the collection keeps
//! them (row-major `f32`), so an index holds no copy of the vectors, and both rank hits the
//! same way, so an approximate answer that comes up short can be redone exactly as it stands.
//!
//! [`ExactIndex`]: super::search::ExactIndex
//! [`HnswIndex`]: super::hnsw::HnswIndex

use super::search::Hit;

/// Nearest-neighbour search over a collection's rows. Shared by every request thread, so it
/// must be `Send + Sync`.
pub trait VectorIndex: Send + Sync {
    /// Up to `k` rows of `data` (row-major, `dim` columns) nearest to `query` among those that
    /// `accept` lets through, best first, scored as an exact search scores them. `ef` is the
    /// candidate list size of an approximate index (`None`: its default); an exact index
    /// ignores it. An exact index returns every accepted row up to `k`; an approximate one may
    /// return fewer.
    fn search(
        &self,
        data: &[f32],
        dim: usize,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        accept: &(dyn Fn(usize) -> bool + Sync),
    ) -> Vec<Hit>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::hnsw::HnswIndex;
    use crate::store::manifest::{HnswParams, Metric};
    use crate::store::search::{ExactIndex, rank};

    #[test]
    fn exact_and_graph_indexes_answer_alike_through_the_trait() {
        let (rows, dim) = (200, 8);
        // Spread-out points (a hash of row and dimension), so each row's nearest is itself.
        let data: Vec<f32> = (0..(rows * dim) as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / (1u64 << 24) as f32)
            .collect();
        let exact = ExactIndex::new(Metric::L2);
        let graph = HnswIndex::build(HnswParams::default(), Metric::L2, &data, dim, |_| true);
        let indexes: [&dyn VectorIndex; 2] = [&exact, &graph];
        let even = |row: usize| row.is_multiple_of(2);
        for row in [0, 42, 77, 198] {
            let query = &data[row * dim..(row + 1) * dim];
            for index in indexes {
                let hits = index.search(&data, dim, query, 5, None, &even);
                assert_eq!(hits.len(), 5, "row {row}");
                assert!(hits.iter().all(|h| even(h.row)), "row {row}: {hits:?}");
                assert!(hits.windows(2).all(|w| w[0].rank >= w[1].rank), "row {row}: {hits:?}");
                for hit in &hits {
                    let stored = &data[hit.row * dim..(hit.row + 1) * dim];
                    assert_eq!(hit.rank, rank(Metric::L2, query, stored), "row {row}: scored exactly");
                }
                // A row the filter lets through finds itself first; an odd one is never returned.
                assert_eq!(hits[0].row == row, even(row), "row {row}: {hits:?}");
            }
        }
    }
}
