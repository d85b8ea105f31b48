//! The data the search benches run on: embedding-like unit vectors (see `benches/search.rs`),
//! shared by `search` and `store_backends`.

use rayon::prelude::*;

pub const DIM: usize = 1024;
pub const CENTRES: usize = 1000;
/// Dimension of the latent space the clusters live in.
pub const LATENT: usize = 64;
/// Spread of a cluster around its centre (latent units; centres are standard normal): points of
/// one cluster have a cosine of about 0.5, points of different clusters about 0, and clusters
/// overlap.
pub const SPREAD: f32 = 1.0;
/// Amplitude of the uniform noise added to every one of the 1024 coordinates.
pub const NOISE: f32 = 0.1;

/// xorshift64* stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (sum of four uniforms, rescaled): cheap for a billion draws.
    pub fn normal(&mut self) -> f32 {
        (self.uniform() + self.uniform() + self.uniform() + self.uniform() - 2.0) * 1.732_050_8
    }
}

pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// The fixed parts of the distribution: cluster centres (latent) and the projection.
pub struct Mixture {
    pub centres: Vec<f32>,
    pub projection: Vec<f32>,
}

pub fn model() -> Mixture {
    let mut rng = Rng::new(1);
    let centres = (0..CENTRES * LATENT).map(|_| rng.normal()).collect();
    let scale = 1.0 / (LATENT as f32).sqrt();
    let projection = (0..LATENT * DIM).map(|_| rng.normal() * scale).collect();
    Mixture { centres, projection }
}

/// `n` points, row-major; `salt` separates data from queries.
pub fn mixture(n: usize, m: &Mixture, salt: u64) -> Vec<f32> {
    let mut data = vec![0f32; n * DIM];
    data.par_chunks_mut(DIM).enumerate().for_each(|(i, row)| {
        let mut rng = Rng::new((i as u64) << 8 ^ salt);
        let c = (rng.uniform() * CENTRES as f32) as usize % CENTRES;
        for x in row.iter_mut() {
            *x = NOISE * (2.0 * rng.uniform() - 1.0);
        }
        for k in 0..LATENT {
            let z = m.centres[c * LATENT + k] + SPREAD * rng.normal();
            for (x, p) in row.iter_mut().zip(&m.projection[k * DIM..(k + 1) * DIM]) {
                *x += z * p;
            }
        }
        normalize(row);
    });
    data
}
