//! Quantized exact search: a compact code of every stored vector (symmetric int8 with one scale
//! per vector, or one sign bit per value) is scanned first, and the best `k * oversample`
//! candidates are rescored with their float vectors. The codes take a quarter (int8) or a
//! thirty-second (binary) of the float rows' memory traffic; rescoring restores the float scores
//! of what the scan found. Cosine and dot product only (the codes approximate inner products).

use super::search::{Hit, TopK, dot};

/// The code kept per vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// One signed byte per value and one f32 scale per vector (value ~= byte * scale).
    Int8,
    /// One bit per value, set when the value is positive.
    Binary,
}

/// The codes of a set of rows.
#[derive(Debug, Clone)]
pub struct QuantizedRows {
    dim: usize,
    codes: Codes,
}

#[derive(Debug, Clone)]
enum Codes {
    Int8 {
        values: Vec<i8>,
        scales: Vec<f32>,
    },
    /// `words` u64 words per row.
    Binary {
        bits: Vec<u64>,
        words: usize,
    },
}

/// Symmetric int8 code of `v`: its bytes and the value of one step.
fn int8_code(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let scale = max / 127.0;
    out.extend(
        v.iter().map(|x| if scale > 0.0 { (x / scale).round().clamp(-127.0, 127.0) as i8 } else { 0 }),
    );
    scale
}

/// Sign bits of `v`, least significant bit first within each u64 word.
fn sign_bits(v: &[f32], out: &mut Vec<u64>) {
    for chunk in v.chunks(64) {
        let word = chunk.iter().enumerate().fold(0u64, |w, (i, x)| if *x > 0.0 { w | 1 << i } else { w });
        out.push(word);
    }
}

impl QuantizedRows {
    /// Codes of `rows` (row-major, `dim` values each).
    pub fn build(quantization: Quantization, rows: &[f32], dim: usize) -> Self {
        let n = rows.len() / dim.max(1);
        let codes = match quantization {
            Quantization::Int8 => {
                let mut values = Vec::with_capacity(n * dim);
                let scales = rows.chunks_exact(dim).map(|row| int8_code(row, &mut values)).collect();
                Codes::Int8 { values, scales }
            }
            Quantization::Binary => {
                let words = dim.div_ceil(64);
                let mut bits = Vec::with_capacity(n * words);
                rows.chunks_exact(dim).for_each(|row| sign_bits(row, &mut bits));
                Codes::Binary { bits, words }
            }
        };
        Self { dim, codes }
    }

    /// Bytes the codes take.
    pub fn bytes(&self) -> usize {
        match &self.codes {
            Codes::Int8 { values, scales } => values.len() + scales.len() * 4,
            Codes::Binary { bits, .. } => bits.len() * 8,
        }
    }

    /// The `k` rows with the largest inner product with `query` among the `k * oversample` the
    /// codes rank best, scored with the float `rows` (the rows the codes were built from).
    pub fn search(&self, rows: &[f32], query: &[f32], k: usize, oversample: usize) -> Vec<Hit> {
        let candidates = k.saturating_mul(oversample.max(1));
        let mut scan = TopK::new(candidates);
        match &self.codes {
            Codes::Int8 { values, scales } => {
                let mut q = Vec::with_capacity(self.dim);
                let q_scale = int8_code(query, &mut q);
                for (row, (code, scale)) in values.chunks_exact(self.dim).zip(scales).enumerate() {
                    let sum: i32 = code.iter().zip(&q).map(|(a, b)| i32::from(*a) * i32::from(*b)).sum();
                    scan.push(Hit { row, rank: sum as f32 * scale * q_scale });
                }
            }
            Codes::Binary { bits, words } => {
                let mut q = Vec::with_capacity(*words);
                sign_bits(query, &mut q);
                for (row, code) in bits.chunks_exact(*words).enumerate() {
                    let differing: u32 = code.iter().zip(&q).map(|(a, b)| (a ^ b).count_ones()).sum();
                    // Fewer differing signs ranks higher.
                    scan.push(Hit { row, rank: -(differing as f32) });
                }
            }
        }
        let mut best = TopK::new(k);
        for hit in scan.into_sorted() {
            let row = &rows[hit.row * self.dim..(hit.row + 1) * self.dim];
            best.push(Hit { row: hit.row, rank: dot(query, row) });
        }
        best.into_sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Metric;
    use crate::store::search::exact;

    /// Unit vectors with some structure: pairs of rows share a direction.
    fn rows(n: usize, dim: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut data: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        for row in data.chunks_exact_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        data
    }

    #[test]
    fn rescoring_returns_float_scores_and_finds_an_exact_copy_first() {
        let dim = 96;
        let data = rows(500, dim);
        let query = data[37 * dim..38 * dim].to_vec();
        for quantization in [Quantization::Int8, Quantization::Binary] {
            let codes = QuantizedRows::build(quantization, &data, dim);
            let hits = codes.search(&data, &query, 5, 10);
            assert_eq!(hits.len(), 5);
            assert_eq!(hits[0].row, 37, "{quantization:?}");
            let truth = exact(&data, dim, &query, Metric::Dot, 5, &|_| true);
            // Scores are the float inner products, best first.
            for hit in &hits {
                let row = &data[hit.row * dim..(hit.row + 1) * dim];
                assert_eq!(hit.rank, dot(&query, row));
            }
            assert!(hits.windows(2).all(|w| w[0].rank >= w[1].rank));
            assert_eq!(hits[0].row, truth[0].row);
        }
        assert_eq!(QuantizedRows::build(Quantization::Int8, &data, dim).bytes(), 500 * (dim + 4));
        assert_eq!(QuantizedRows::build(Quantization::Binary, &data, dim).bytes(), 500 * 16);
    }
}
