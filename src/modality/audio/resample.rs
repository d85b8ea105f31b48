//! Band-limited resampling that reproduces `torchaudio.functional.resample` (torchaudio 2.11,
//! `resampling_method="sinc_interp_hann"`, `lowpass_filter_width=6`, `rolloff=0.99`).
//!
//! The reference builds one windowed-sinc filter per output phase over the gcd-reduced rates and
//! applies them with a strided `conv1d`. The kernel here is computed with the same `f32`
//! operations in the same order as `_get_sinc_resample_kernel` does for a `float32` waveform, so
//! the taps agree to the last bit or two (`sin`/`cos` come from a different maths library). The
//! only departure is that taps whose argument the reference clamps to the window edge are left
//! out: the Hann window is zero there, and what `f32` rounding leaves of it (below 1e-21) cannot
//! change a `f32` sum. That keeps the work per output sample near `2 * 6 * orig / base` taps
//! instead of the reference's full `2 * width + orig`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wide::f32x8;

use super::AudioError;

/// Zero crossings of the sinc kept on each side (torchaudio's `lowpass_filter_width` default).
const LOWPASS_FILTER_WIDTH: i64 = 6;
/// Cut-off as a fraction of the lower Nyquist rate (torchaudio's `rolloff` default).
const ROLLOFF: f64 = 0.99;

/// Largest rate accepted on either side; bounds the kernel's size for odd rate pairs.
pub const MAX_RATE: u32 = 768_000;

/// Checks a front end's `sample_rate` against the rates bindery decodes and resamples; the
/// message names the field.
pub fn check_front_end_rate(rate: u32) -> Result<(), String> {
    if !(super::decode::MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(format!("sample_rate {rate} is outside {}..={MAX_RATE} Hz", super::decode::MIN_RATE));
    }
    Ok(())
}

/// A resampler between two fixed rates, with its kernel precomputed.
///
/// Each output phase keeps only its window's support, padded with zero taps to a common length
/// that is a multiple of 8 so that every dot product has the same, vectorisable shape.
#[derive(Debug, Clone)]
pub struct Resampler {
    orig: usize,
    new: usize,
    width: usize,
    /// Taps per phase (padded).
    stride: usize,
    /// Per phase: index of its first kept tap in the reference kernel row.
    first: Vec<usize>,
    /// `new * stride` taps, phase-major.
    taps: Vec<f32>,
    /// All phases' taps added up at their input offsets (from `period_first`): one frame's
    /// worth of output summed, as a single filter. Used by [`Self::sum_range`].
    period: Vec<f64>,
    period_first: usize,
}

impl Resampler {
    /// Builds the kernel for `orig_rate` -> `new_rate` (both in Hz).
    pub fn new(orig_rate: u32, new_rate: u32) -> Result<Self, AudioError> {
        for rate in [orig_rate, new_rate] {
            if rate == 0 || rate > MAX_RATE {
                return Err(AudioError::UnsupportedSampleRate(rate));
            }
        }
        let g = gcd(orig_rate, new_rate);
        let orig = (orig_rate / g) as usize;
        let new = (new_rate / g) as usize;
        let base_freq = orig.min(new) as f64 * ROLLOFF;
        // Python: math.ceil(lowpass_filter_width * orig_freq / base_freq), in f64.
        let width = ((LOWPASS_FILTER_WIDTH as f64 * orig as f64) / base_freq).ceil() as usize;
        let row_len = 2 * width + orig;

        // Scalars a float32 tensor op sees: Python floats are rounded to f32 first.
        let orig_f = orig as f32;
        let new_f = new as f32;
        let base_f = base_freq as f32;
        let lw = LOWPASS_FILTER_WIDTH as f32;
        let pi = std::f32::consts::PI;
        let scale = (base_freq / orig as f64) as f32;

        let mut first = Vec::with_capacity(new);
        let mut rows: Vec<Vec<f32>> = Vec::with_capacity(new);
        for j in 0..new {
            // t(k) grows with k; find the window where |t| < 6 in f64, widened by two taps to
            // absorb f32 rounding, then decide every tap in it with the reference's f32 maths.
            let centre = width as f64 + orig as f64 * j as f64 / new as f64;
            let half = LOWPASS_FILTER_WIDTH as f64 * orig as f64 / base_freq;
            let lo = ((centre - half).floor() as i64 - 2).max(0) as usize;
            let hi = (((centre + half).ceil() as i64 + 2).max(0) as usize).min(row_len - 1);
            let mut row = Vec::new();
            let mut start = None;
            let neg_j = -(j as f32) / new_f;
            for k in lo..=hi {
                // idx = arange(-width, width + orig) / orig; t = arange(0, -new, -1) / new + idx
                let idx = (k as i64 - width as i64) as f32 / orig_f;
                let t = (neg_j + idx) * base_f;
                // (`t` is finite here: the rates are bounded.)
                if t.abs() >= lw {
                    // Clamped to the window edge by the reference: weight is zero there.
                    if start.is_some() {
                        break;
                    }
                    continue;
                }
                let half_angle = t * pi / lw / 2.0;
                let w = half_angle.cos();
                let window = w * w;
                let tp = t * pi;
                let sinc = if tp == 0.0 { 1.0 } else { tp.sin() / tp };
                row.push(sinc * (window * scale));
                start.get_or_insert(k);
            }
            first.push(start.unwrap_or(0));
            rows.push(row);
        }
        let stride = rows.iter().map(Vec::len).max().unwrap_or(0).div_ceil(8).max(1) * 8;
        let mut taps = vec![0.0; new * stride];
        for (dst, row) in taps.chunks_exact_mut(stride).zip(&rows) {
            dst[..row.len()].copy_from_slice(row);
        }
        let period_first = first.iter().copied().min().unwrap_or(0);
        let period_end = first.iter().map(|f| f + stride).max().unwrap_or(0);
        let mut period = vec![0.0f64; period_end - period_first];
        for (row, &f) in taps.chunks_exact(stride).zip(&first) {
            for (p, &t) in period[f - period_first..].iter_mut().zip(row) {
                *p += f64::from(t);
            }
        }
        Ok(Self { orig, new, width, stride, first, taps, period, period_first })
    }

    /// Number of output samples for `len` input samples:
    /// `ceil(new * len / orig)` over the reduced rates, computed in `f64` like the reference.
    pub fn output_len(&self, len: usize) -> usize {
        ((self.new as f64 * len as f64) / self.orig as f64).ceil() as usize
    }

    /// Resamples `input` into a new vector of [`Self::output_len`] samples.
    pub fn process(&self, input: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.output_len(input.len())];
        self.process_into(input, &mut out);
        out
    }

    /// Resamples `input` into `out`, writing `min(out.len(), output_len)` samples.
    pub fn process_into(&self, input: &[f32], out: &mut [f32]) {
        self.process_range_into(input, 0, out);
    }

    /// Writes output samples `start..start + out.len()` (those below [`Self::output_len`]) into
    /// `out`, each equal to the bit to the same sample of [`Self::process`]: callers that need
    /// only parts of the output (the audio clips) skip the rest.
    pub fn process_range_into(&self, input: &[f32], start: usize, out: &mut [f32]) {
        let end = (start + out.len()).min(self.output_len(input.len()));
        if start >= end {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX, checked just above.
            unsafe { self.run_avx(input, start, end, out) };
            return;
        }
        self.run::<false>(input, start, end, out);
    }

    /// [`Self::run`] compiled for AVX: the same sums, eight lanes per instruction instead of four.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    unsafe fn run_avx(&self, input: &[f32], start: usize, end: usize, out: &mut [f32]) {
        self.run::<true>(input, start, end, out);
    }

    /// Output samples `start..end` into `out[..end - start]`. Each sample's sum is fixed by its
    /// index alone (phase groups of four from the start of its frame, whatever range is asked
    /// for), so a range gives the same bits as the whole.
    #[inline(always)]
    fn run<const AVX: bool>(&self, input: &[f32], start: usize, end: usize, out: &mut [f32]) {
        let total = self.output_len(input.len());
        let len = input.len() as i64;
        let stride = self.stride as i64;
        // Output `frame * new + j` is phase j's filter over the input from `frame * orig`.
        for frame in start / self.new..end.div_ceil(self.new) {
            let first_out = frame * self.new;
            let block = self.new.min(total - first_out);
            // The reference pads `width` zeros on the left, hence `base` may be negative.
            let base = (frame * self.orig) as i64 - self.width as i64;
            let (lo, hi) = (start.max(first_out) - first_out, end.min(first_out + block) - first_out);
            let mut j = lo / 4 * 4;
            // Four phases at a time: independent sums keep the SIMD units busy instead of
            // waiting on one accumulator.
            while j + 4 <= block && j < hi {
                let s: [i64; 4] = std::array::from_fn(|k| base + self.first[j + k] as i64);
                let sums = if s.iter().all(|&s| s >= 0 && s + stride <= len) {
                    let xs: [&[f32]; 4] =
                        std::array::from_fn(|k| &input[s[k] as usize..(s[k] + stride) as usize]);
                    let ts: [&[f32]; 4] =
                        std::array::from_fn(|k| &self.taps[(j + k) * self.stride..(j + k + 1) * self.stride]);
                    if AVX {
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `AVX` is true only inside `run_avx`, which requires AVX.
                        unsafe {
                            dot4_avx(xs, ts)
                        }
                        #[cfg(not(target_arch = "x86_64"))]
                        dot4(xs, ts)
                    } else {
                        dot4(xs, ts)
                    }
                } else {
                    std::array::from_fn(|k| self.output(input, first_out + j + k))
                };
                for (k, v) in sums.into_iter().enumerate() {
                    if (lo..hi).contains(&(j + k)) {
                        out[first_out + j + k - start] = v;
                    }
                }
                j += 4;
            }
            for k in j.max(lo)..hi {
                out[first_out + k - start] = self.output(input, first_out + k);
            }
        }
    }
}

impl Resampler {
    /// `sum(process(input)[a..b])`, without producing the samples: whole output frames (one
    /// of each phase) are summed with the combined per-frame filter, which costs
    /// `orig + stride` products per frame instead of `new * stride`. The sum is exact up to
    /// rounding order.
    pub fn sum_range(&self, input: &[f32], a: usize, b: usize) -> f64 {
        let b = b.min(self.output_len(input.len()));
        if a >= b {
            return 0.0;
        }
        let (fa, fb) = (a.div_ceil(self.new), b / self.new);
        if fa >= fb {
            return (a..b).map(|o| f64::from(self.output(input, o))).sum();
        }
        let head: f64 = (a..fa * self.new).map(|o| f64::from(self.output(input, o))).sum();
        let tail: f64 = (fb * self.new..b).map(|o| f64::from(self.output(input, o))).sum();
        let len = input.len() as i64;
        let mut body = 0.0f64;
        for frame in fa..fb {
            let s = (frame * self.orig + self.period_first) as i64 - self.width as i64;
            let lo = s.max(0);
            let hi = (s + self.period.len() as i64).min(len);
            if lo < hi {
                let off = (lo - s) as usize;
                body += dot_f64(&input[lo as usize..hi as usize], &self.period[off..]);
            }
        }
        head + body + tail
    }

    /// Output sample `o`, computed alone.
    fn output(&self, input: &[f32], o: usize) -> f32 {
        let (frame, j) = (o / self.new, o % self.new);
        let taps = &self.taps[j * self.stride..(j + 1) * self.stride];
        let s = (frame * self.orig + self.first[j]) as i64 - self.width as i64;
        let len = input.len() as i64;
        let (lo, hi) = (s.max(0), (s + self.stride as i64).min(len));
        if lo >= hi {
            return 0.0;
        }
        let off = (lo - s) as usize;
        dot(&input[lo as usize..hi as usize], &taps[off..off + (hi - lo) as usize])
    }
}

/// `acc += x * t`, lane by lane (separate multiply and add: no fused rounding).
#[inline(always)]
fn mac8(acc: &mut f32x8, x: &[f32; 8], t: &[f32; 8]) {
    *acc += f32x8::from(*x) * f32x8::from(*t);
}

/// Sum of the eight lanes, always in the same order.
#[inline(always)]
fn reduce(acc: f32x8) -> f32 {
    let a = acc.to_array();
    (a[0] + a[4]) + (a[1] + a[5]) + (a[2] + a[6]) + (a[3] + a[7])
}

/// Four [`dot`]s of equal length (a multiple of 8) at once, each summed exactly like [`dot`].
fn dot4(xs: [&[f32]; 4], ts: [&[f32]; 4]) -> [f32; 4] {
    let [x0, x1, x2, x3] = xs.map(|v| v.as_chunks::<8>().0);
    let [t0, t1, t2, t3] = ts.map(|v| v.as_chunks::<8>().0);
    let mut acc = [f32x8::ZERO; 4];
    let n = [x0.len(), x1.len(), x2.len(), x3.len(), t0.len(), t1.len(), t2.len(), t3.len()]
        .into_iter()
        .min()
        .unwrap_or(0);
    for c in 0..n {
        mac8(&mut acc[0], &x0[c], &t0[c]);
        mac8(&mut acc[1], &x1[c], &t1[c]);
        mac8(&mut acc[2], &x2[c], &t2[c]);
        mac8(&mut acc[3], &x3[c], &t3[c]);
    }
    acc.map(reduce)
}

/// [`dot4`] with AVX registers: the same lane-wise products and sums (separate multiply and add),
/// reduced in the same order, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn dot4_avx(xs: [&[f32]; 4], ts: [&[f32]; 4]) -> [f32; 4] {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let n = xs.iter().chain(&ts).map(|v| v.len() / 8).min().unwrap_or(0);
    let mut acc: [__m256; 4] = [_mm256_setzero_ps(); 4];
    for c in 0..n {
        for k in 0..4 {
            // SAFETY: `c * 8 + 8 <= len` for every slice, by the choice of `n`.
            let (x, t) = unsafe {
                (_mm256_loadu_ps(xs[k].as_ptr().add(c * 8)), _mm256_loadu_ps(ts[k].as_ptr().add(c * 8)))
            };
            acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(x, t));
        }
    }
    acc.map(|a| {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds eight f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
        reduce(f32x8::from(lanes))
    })
}

/// `f32` dot product in eight SIMD lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = f32x8::ZERO;
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        mac8(&mut acc, x, y);
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    reduce(acc) + tail
}

/// `sum(x[i] * w[i])` in `f64` over four partial sums, which keeps the adders busy where one
/// running sum waits on each addition.
fn dot_f64(x: &[f32], w: &[f64]) -> f64 {
    let n = x.len().min(w.len());
    let mut acc = [0.0f64; 4];
    let (cx, rx) = x[..n].as_chunks::<4>();
    let (cw, rw) = w[..n].as_chunks::<4>();
    for (x, w) in cx.iter().zip(cw) {
        for i in 0..4 {
            acc[i] += f64::from(x[i]) * w[i];
        }
    }
    let rest: f64 = rx.iter().zip(rw).map(|(&x, &w)| f64::from(x) * w).sum();
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + rest
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resamplers to one target rate, kept per input rate and shared by the threads of a pipeline.
pub struct ResamplerCache {
    target: u32,
    resamplers: Mutex<HashMap<u32, Arc<Resampler>>>,
}

impl ResamplerCache {
    /// Rates kept; a handful of rates covers nearly all traffic, and an odd one is still served.
    const KEPT: usize = 16;

    /// An empty cache of resamplers to `target` Hz.
    pub fn new(target: u32) -> Self {
        Self { target, resamplers: Mutex::new(HashMap::new()) }
    }

    /// The resampler from `rate` to the target rate, built on first use.
    pub fn get(&self, rate: u32) -> Result<Arc<Resampler>, AudioError> {
        // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
        let cache = self.resamplers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = cache.get(&rate) {
            return Ok(r.clone());
        }
        drop(cache);
        let r = Arc::new(Resampler::new(rate, self.target)?);
        let mut cache = self.resamplers.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() < Self::KEPT {
            cache.insert(rate, r.clone());
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_the_reference_formula() {
        let r = Resampler::new(44100, 16000).unwrap();
        // ceil(160 * 5512 / 441) = ceil(1999.81) = 2000
        assert_eq!(r.output_len(5512), 2000);
        assert_eq!(r.output_len(0), 0);
        let up = Resampler::new(8000, 16000).unwrap();
        assert_eq!(up.output_len(7), 14);
    }

    #[test]
    fn kernel_keeps_only_the_window_support() {
        // 44.1 kHz -> 16 kHz: reduced 441 -> 160, width 17, reference rows of 475 taps; the Hann
        // window spans 2 * 6 * 441 / 158.4 = 33.4 input samples.
        let r = Resampler::new(44100, 16000).unwrap();
        assert_eq!((r.orig, r.new, r.width), (441, 160, 17));
        for row in r.taps.chunks_exact(r.stride) {
            let kept = row.iter().rposition(|&t| t != 0.0).unwrap() + 1;
            assert!((33..=34).contains(&kept), "{kept} taps");
        }
        assert_eq!(r.stride, 40);
    }

    #[test]
    fn dc_passes_with_unit_gain() {
        let r = Resampler::new(48000, 16000).unwrap();
        let y = r.process(&vec![0.5; 4800]);
        assert_eq!(y.len(), 1600);
        for v in &y[100..1500] {
            assert!((v - 0.5).abs() < 2e-3, "{v}");
        }
    }

    #[test]
    fn sum_range_equals_the_sum_of_the_samples() {
        let input: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        for (from, to) in [(44100, 16000), (8000, 16000), (22050, 16000), (48000, 16000)] {
            let r = Resampler::new(from, to).unwrap();
            let y = r.process(&input);
            for (a, b) in [(0, y.len()), (3, 777), (160, 1600), (1001, 1002), (5, 5), (10, 99999)] {
                let lo = a.min(y.len());
                let want: f64 = y[lo..b.min(y.len())].iter().map(|&v| f64::from(v)).sum();
                let got = r.sum_range(&input, a, b);
                assert!((got - want).abs() < 1e-3, "{from}->{to} [{a},{b}): {got} vs {want}");
            }
        }
    }

    #[test]
    fn ranges_give_the_same_bits_as_the_whole() {
        let input: Vec<f32> = (0..9000).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        for (from, to) in [(44100, 16000), (8000, 16000), (22050, 16000), (48000, 16000), (11025, 16000)] {
            let r = Resampler::new(from, to).unwrap();
            let whole = r.process(&input);
            let n = whole.len();
            for (a, b) in [(0, n), (1, 2), (3, 777), (r.new - 1, 3 * r.new + 5), (n - 5, n), (n - 3, n + 10)]
            {
                let mut part = vec![f32::NAN; b - a];
                r.process_range_into(&input, a, &mut part);
                let written = b.min(n) - a;
                let same = part[..written]
                    .iter()
                    .zip(&whole[a..a + written])
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{from}->{to} [{a},{b})");
                assert!(part[written..].iter().all(|v| v.is_nan()), "{from}->{to}: wrote past the end");
            }
        }
    }

    #[test]
    fn the_portable_kernel_gives_the_same_bits() {
        let input: Vec<f32> = (0..9000).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        for (from, to) in [(44100, 16000), (48000, 16000), (8000, 16000)] {
            let r = Resampler::new(from, to).unwrap();
            let fast = r.process(&input);
            let mut portable = vec![0.0; fast.len()];
            r.run::<false>(&input, 0, fast.len(), &mut portable);
            assert!(fast.iter().zip(&portable).all(|(x, y)| x.to_bits() == y.to_bits()), "{from}->{to}");
        }
    }

    #[test]
    fn rejects_out_of_range_rates() {
        assert!(Resampler::new(0, 16000).is_err());
        assert!(Resampler::new(MAX_RATE + 1, 16000).is_err());
    }
}
