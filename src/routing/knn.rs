//! The kNN router: a query goes to the LLM with the best mean target among the `k` training
//! queries nearest to it by cosine similarity of their embeddings. No training beyond storing
//! the training queries' vectors and targets; `k` is chosen from a grid by leave-one-out on the
//! training rows (each training query routed by its neighbours other than itself), never by test
//! rows.
//!
//! Its folder and files are `stages::train::folder`'s.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};

/// Training vectors (unit length) and targets.
#[derive(Debug, Clone)]
pub struct Knn {
    /// `[n × d]`, each row of unit length (a zero row stays zero).
    pub vectors: Array2<f32>,
    /// `[n × T]`.
    pub targets: Array2<f64>,
}

/// Each row scaled to unit length (a zero row stays zero).
pub fn normalised(mut vectors: Array2<f32>) -> Array2<f32> {
    for mut row in vectors.axis_iter_mut(Axis(0)) {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
    vectors
}

impl Knn {
    pub fn new(vectors: Array2<f32>, targets: Array2<f64>) -> Knn {
        Knn { vectors: normalised(vectors), targets }
    }

    /// For each query, its `k` nearest training queries by cosine, nearest first (ties to the
    /// lower training row). With `leave_one_out`, query i is training row i and is not its own
    /// neighbour.
    pub fn neighbours(&self, queries: ArrayView2<'_, f32>, k: usize, leave_one_out: bool) -> Vec<Vec<usize>> {
        let queries = normalised(queries.to_owned());
        let mut out = Vec::with_capacity(queries.nrows());
        // In blocks of queries, so that the similarity matrix stays small.
        for (block, chunk) in queries.axis_chunks_iter(Axis(0), 256).enumerate() {
            // A few queries (a service's single query): one matrix–vector product each, on all cores, which
            // reads the training vectors in place; a matrix product would first copy (pack) all
            // of them, which costs more than the product itself for one row.
            let similarities = if chunk.nrows() < 8 {
                let mut rows = Array2::<f32>::zeros((chunk.nrows(), self.vectors.nrows()));
                for (mut out, query) in rows.axis_iter_mut(Axis(0)).zip(chunk.axis_iter(Axis(0))) {
                    self.similarities_to(query, out.as_slice_mut().expect("a row of a new array is contiguous"));
                }
                rows
            } else {
                chunk.dot(&self.vectors.t())
            };
            for (offset, row) in similarities.axis_iter(Axis(0)).enumerate() {
                let query = block * 256 + offset;
                let mut order: Vec<usize> = (0..row.len()).filter(|&j| !(leave_one_out && j == query)).collect();
                let k = k.min(order.len());
                let by_similarity = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
                if k > 0 && k < order.len() {
                    order.select_nth_unstable_by(k - 1, by_similarity);
                }
                order.truncate(k);
                order.sort_by(by_similarity);
                out.push(order);
            }
        }
        out
    }

    /// `out[j]` = ⟨training vector j, query⟩, over blocks of training vectors on all cores.
    fn similarities_to(&self, query: ArrayView1<'_, f32>, out: &mut [f32]) {
        use rayon::prelude::*;
        const BLOCK: usize = 512;
        out.par_chunks_mut(BLOCK).enumerate().for_each(|(block, out)| {
            let rows = self.vectors.slice(ndarray::s![block * BLOCK..block * BLOCK + out.len(), ..]);
            for (value, row) in out.iter_mut().zip(rows.axis_iter(Axis(0))) {
                *value = row.dot(&query);
            }
        });
    }

    /// The mean target per LLM over the first `k` of each query's `neighbours`.
    pub fn scores_of(&self, neighbours: &[Vec<usize>], k: usize) -> Array2<f64> {
        let mut out = Array2::<f64>::zeros((neighbours.len(), self.targets.ncols()));
        for (query, nearest) in neighbours.iter().enumerate() {
            let nearest = &nearest[..k.min(nearest.len())];
            if nearest.is_empty() {
                continue;
            }
            let mut scores = out.row_mut(query);
            for &j in nearest {
                scores += &self.targets.row(j);
            }
            scores /= nearest.len() as f64;
        }
        out
    }

    /// For each query, the mean target per LLM of its `k` nearest training queries.
    pub fn scores(&self, queries: ArrayView2<'_, f32>, k: usize, leave_one_out: bool) -> Array2<f64> {
        self.scores_of(&self.neighbours(queries, k, leave_one_out), k)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn neighbours_decide_and_a_query_is_not_its_own_neighbour_in_validation() {
        // Two clusters of training queries; LLM 0 is best near (1, 0), LLM 1 near (0, 1).
        let vectors = array![[1.0f32, 0.0], [0.9, 0.1], [0.95, 0.05], [0.0, 1.0], [0.1, 0.9], [0.05, 0.95]];
        let targets = array![[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]];
        let knn = Knn::new(vectors, targets);
        let scores = knn.scores(array![[2.0f32, 0.1], [0.0, 3.0]].view(), 3, false);
        assert_eq!(scores, array![[1.0, 0.0], [0.0, 1.0]]);
        // Leave-one-out with k = 1: row 0's nearest other row is row 2 (0.95, 0.05).
        let own = knn.scores(knn.vectors.view(), 1, true);
        assert_eq!(own.row(0).to_vec(), vec![1.0, 0.0]);
        // k larger than the training set: the mean over all.
        assert_eq!(knn.scores(array![[1.0f32, 0.0]].view(), 100, false), array![[0.5, 0.5]]);
    }

    #[test]
    fn one_query_at_a_time_finds_the_neighbours_a_batch_finds() {
        // 300 training vectors and 40 queries from a fixed generator: the batch takes the
        // matrix product, each query alone the matrix–vector one.
        let mut rng = crate::routing::rng(5);
        let mut draw = |rows: usize| {
            Array2::from_shape_fn((rows, 16), |_| (crate::routing::below(&mut rng, 2001) as f32 - 1000.0) / 1000.0)
        };
        let knn = Knn::new(draw(300), Array2::from_shape_fn((300, 3), |(i, j)| ((i * 7 + j) % 5) as f64));
        let queries = draw(40);
        let batch = knn.neighbours(queries.view(), 10, false);
        for (row, expected) in batch.iter().enumerate() {
            let alone = knn.neighbours(queries.slice(ndarray::s![row..row + 1, ..]), 10, false);
            assert_eq!(&alone[0], expected, "query {row}");
        }
    }
}
