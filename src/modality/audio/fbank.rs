//! Log-mel filterbank that reproduces `torchaudio.compliance.kaldi.fbank` (torchaudio 2.11) as
//! ImageBind calls it: `htk_compat=True, use_energy=False, window_type="hanning", dither=0.0`,
//! everything else at Kaldi's defaults.
//!
//! Per frame, exactly as the reference orders it in `float32`: snip-edges framing, per-frame DC
//! removal, pre-emphasis 0.97 (the first sample is its own predecessor), symmetric Hann window,
//! zero-padding to the next power of two, real FFT, power spectrum `|X|^2`, triangular mel
//! filters (torchaudio's `get_mel_banks`, low 20 Hz, high at Nyquist, Nyquist bin unused), and
//! `log(max(e, f32::EPSILON))`. With `use_energy=False` the energy column is not produced.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use super::AudioError;

/// Kaldi's default pre-emphasis coefficient.
const PREEMPHASIS: f32 = 0.97;
/// Kaldi's default lowest mel filter edge (Hz).
const LOW_FREQ: f64 = 20.0;

/// One triangular mel filter: weights for FFT bins `first..first + weights.len()`.
#[derive(Debug, Clone)]
struct MelFilter {
    first: usize,
    weights: Vec<f32>,
}

/// A Kaldi-compatible filterbank for one sample rate and frame geometry.
#[derive(Clone)]
pub struct KaldiFbank {
    window_size: usize,
    window_shift: usize,
    padded: usize,
    window: Vec<f32>,
    filters: Vec<MelFilter>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for KaldiFbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KaldiFbank")
            .field("window_size", &self.window_size)
            .field("window_shift", &self.window_shift)
            .field("padded", &self.padded)
            .field("num_mel_bins", &self.filters.len())
            .finish()
    }
}

/// Reusable buffers for [`KaldiFbank`]; one per thread of work.
pub struct FbankScratch {
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    power: Vec<f32>,
    fft_scratch: Vec<Complex<f32>>,
}

impl KaldiFbank {
    /// Builds the filterbank. `frame_length_ms` and `frame_shift_ms` are converted to samples
    /// as `int(sample_rate * ms * 0.001)`, as the reference does.
    pub fn new(
        sample_rate: u32,
        frame_length_ms: f64,
        frame_shift_ms: f64,
        num_mel_bins: usize,
    ) -> Result<Self, AudioError> {
        let invalid = |m: String| AudioError::InvalidConfig(format!("filterbank: {m}"));
        let sr = f64::from(sample_rate);
        let window_shift = (sr * frame_shift_ms * 0.001) as usize;
        let window_size = (sr * frame_length_ms * 0.001) as usize;
        if window_shift == 0 || window_size < 2 {
            return Err(invalid(format!(
                "frame length {frame_length_ms} ms / shift {frame_shift_ms} ms give \
                 {window_size} / {window_shift} samples at {sample_rate} Hz"
            )));
        }
        // round_to_power_of_two: `2 ** (x - 1).bit_length()`.
        let padded = window_size.next_power_of_two();
        if num_mel_bins <= 3 {
            return Err(invalid(format!("at least 4 mel bins are needed, got {num_mel_bins}")));
        }
        let nyquist = 0.5 * sr;
        if LOW_FREQ >= nyquist {
            return Err(invalid(format!("sample rate {sample_rate} Hz puts Nyquist below {LOW_FREQ} Hz")));
        }
        let filters = mel_filters(num_mel_bins, padded, sr, LOW_FREQ, nyquist);
        let window = hann_window(window_size);
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(padded);
        Ok(Self { window_size, window_shift, padded, window, filters, fft })
    }

    /// Number of mel bins per frame.
    pub fn num_mel_bins(&self) -> usize {
        self.filters.len()
    }

    /// Analysis window length in samples.
    pub fn window_size(&self) -> usize {
        self.window_size
    }

    /// Hop between frames in samples.
    pub fn window_shift(&self) -> usize {
        self.window_shift
    }

    /// Frames produced for `num_samples` samples (`snip_edges=True`); 0 if shorter than a window.
    pub fn num_frames(&self, num_samples: usize) -> usize {
        if num_samples < self.window_size {
            0
        } else {
            1 + (num_samples - self.window_size) / self.window_shift
        }
    }

    /// Fresh scratch buffers sized for this filterbank.
    pub fn scratch(&self) -> FbankScratch {
        FbankScratch {
            frame: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            power: vec![0.0; self.padded / 2 + 1],
            fft_scratch: self.fft.make_scratch_vec(),
        }
    }

    /// The filterbank of `wave` as `[frames, mel]`, row-major.
    ///
    /// Errors when `wave` is shorter than one analysis window, where the reference asserts.
    pub fn compute(&self, wave: &[f32]) -> Result<Vec<f32>, AudioError> {
        let frames = self.check_len(wave.len())?;
        let mel = self.num_mel_bins();
        let mut out = vec![0.0; frames * mel];
        let mut scratch = self.scratch();
        let mut row = vec![0.0; mel];
        for f in 0..frames {
            self.frame_into(wave, f, &mut scratch, &mut row)?;
            out[f * mel..(f + 1) * mel].copy_from_slice(&row);
        }
        Ok(out)
    }

    /// Writes `wave`'s filterbank as `[mel, target_len]` (transposed), cut or right-padded with
    /// zeros to `target_len` frames, then normalised as `(x - mean) / std`, the order
    /// `waveform2melspec` and `transforms.Normalize` apply them in.
    pub fn compute_normalized_into(
        &self,
        wave: &[f32],
        target_len: usize,
        mean: f32,
        std: f32,
        scratch: &mut FbankScratch,
        out: &mut [f32],
    ) -> Result<(), AudioError> {
        let frames = self.check_len(wave.len())?;
        let mel = self.num_mel_bins();
        if out.len() != mel * target_len {
            return Err(AudioError::OutputSize { expected: mel * target_len, got: out.len() });
        }
        let kept = frames.min(target_len);
        let pad = (0.0 - mean) / std;
        for band in out.chunks_exact_mut(target_len) {
            band[kept..].fill(pad);
        }
        let mut row = vec![0.0; mel];
        for f in 0..kept {
            self.frame_into(wave, f, scratch, &mut row)?;
            // Normalised in a contiguous pass (vectorised divisions), then scattered.
            for v in row.iter_mut() {
                *v = (*v - mean) / std;
            }
            for (band, &v) in out.chunks_exact_mut(target_len).zip(&row) {
                band[f] = v;
            }
        }
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<usize, AudioError> {
        match self.num_frames(len) {
            0 => Err(AudioError::TooShort { samples: len, needed: self.window_size }),
            n => Ok(n),
        }
    }

    /// Log-mel energies of frame `f` of `wave` (samples `f * shift..f * shift + window`) into
    /// `row` (`num_mel_bins` values).
    pub fn frame_into(
        &self,
        wave: &[f32],
        f: usize,
        s: &mut FbankScratch,
        row: &mut [f32],
    ) -> Result<(), AudioError> {
        let start = f * self.window_shift;
        let src = wave
            .get(start..start + self.window_size)
            .ok_or_else(|| AudioError::Internal(format!("frame {f} asked of {} samples", wave.len())))?;
        // torch.mean over the row, summed in f64 (at least as exact as torch's cascaded f32 sum).
        let mean = (sum_f64(src) / self.window_size as f64) as f32;
        let frame = &mut s.frame;
        let n = self.window_size;
        // offset_strided_input replicates the first sample: frame[0] -= 0.97 * frame[0]. Every
        // later sample takes its predecessor, written without a loop-carried value so that the
        // loop vectorises (the same operations per sample).
        let c0 = src[0] - mean;
        frame[0] = (c0 - PREEMPHASIS * c0) * self.window[0];
        for (((d, &w), &x), &p) in
            frame[1..n].iter_mut().zip(&self.window[1..]).zip(&src[1..]).zip(&src[..n - 1])
        {
            *d = ((x - mean) - PREEMPHASIS * (p - mean)) * w;
        }
        frame[self.window_size..].fill(0.0);
        self.fft
            .process_with_scratch(frame, &mut s.spectrum, &mut s.fft_scratch)
            .map_err(|e| AudioError::Internal(format!("fft: {e}")))?;
        // `.abs()` then `.pow(2.0)`, as in the reference; ATen's vectorised complex abs is
        // `sqrt(re^2 + im^2)` (no hypot scaling), and so is this. Two passes, so that the
        // square roots run over a plain f32 slice and vectorise (`sqrtps` rounds as `sqrt`).
        for (p, c) in s.power.iter_mut().zip(&s.spectrum) {
            *p = c.re * c.re + c.im * c.im;
        }
        for p in s.power.iter_mut() {
            let m = p.sqrt();
            *p = m * m;
        }
        for (out, filt) in row.iter_mut().zip(&self.filters) {
            let bins = &s.power[filt.first..filt.first + filt.weights.len()];
            let e: f32 = bins.iter().zip(&filt.weights).map(|(p, w)| p * w).sum();
            *out = e.max(f32::EPSILON).ln();
        }
        Ok(())
    }
}

/// Sum in `f64` over four independent partial sums.
pub(super) fn sum_f64(v: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks = v.chunks_exact(4);
    let rest: f64 = chunks.remainder().iter().map(|&x| f64::from(x)).sum();
    for c in chunks {
        for i in 0..4 {
            acc[i] += f64::from(c[i]);
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + rest
}

/// `torch.hann_window(n, periodic=False)` in `f32`: `0.5 - 0.5 * cos(2 pi i / (n - 1))`, with
/// the factor rounded to `f32` before the product as ATen's `hamming_window` does.
fn hann_window(n: usize) -> Vec<f32> {
    let step = (std::f64::consts::PI * 2.0 / (n - 1) as f64) as f32;
    (0..n).map(|i| (i as f32 * step).cos() * -0.5 + 0.5).collect()
}

/// torchaudio's `get_mel_banks` (no VTLN warping), evaluated in `f32` like the reference:
/// the mel edges are `f32` tensors built from `f64` scalars, the FFT bin centres are
/// `mel_scale(fft_bin_width * arange(n / 2))` in `f32`.
fn mel_filters(num_bins: usize, padded: usize, sr: f64, low: f64, high: f64) -> Vec<MelFilter> {
    let mel_scale = |f: f64| 1127.0 * (1.0 + f / 700.0).ln();
    let mel_low = mel_scale(low);
    let mel_high = mel_scale(high);
    let delta = ((mel_high - mel_low) / (num_bins + 1) as f64) as f32;
    let mel_low = mel_low as f32;
    let bin_width = (sr / padded as f64) as f32;
    let num_fft_bins = padded / 2;
    let mel: Vec<f32> =
        (0..num_fft_bins).map(|i| 1127.0f32 * (1.0f32 + (bin_width * i as f32) / 700.0f32).ln()).collect();
    (0..num_bins)
        .map(|b| {
            let bf = b as f32;
            let left = bf * delta + mel_low;
            let center = (bf + 1.0) * delta + mel_low;
            let right = (bf + 2.0) * delta + mel_low;
            let weights: Vec<f32> = mel
                .iter()
                .map(|&m| {
                    let up = (m - left) / (center - left);
                    let down = (right - m) / (right - center);
                    up.min(down).max(0.0)
                })
                .collect();
            // Keep the non-zero span only; the sum over zeros adds nothing.
            let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = weights.iter().rposition(|&w| w > 0.0).map_or(first, |l| l + 1);
            MelFilter { first, weights: weights[first..last].to_vec() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_kaldi_defaults() {
        let fb = KaldiFbank::new(16000, 25.0, 10.0, 128).unwrap();
        assert_eq!((fb.window_size, fb.window_shift, fb.padded), (400, 160, 512));
        assert_eq!(fb.num_frames(32000), 198);
        assert_eq!(fb.num_frames(399), 0);
        assert_eq!(fb.num_frames(400), 1);
    }

    #[test]
    fn silence_is_floored_at_epsilon() {
        let fb = KaldiFbank::new(16000, 25.0, 10.0, 128).unwrap();
        let out = fb.compute(&[0.0; 800]).unwrap();
        assert_eq!(out.len(), 3 * 128);
        assert!(out.iter().all(|&v| v == f32::EPSILON.ln()));
    }

    #[test]
    fn too_short_is_an_error() {
        let fb = KaldiFbank::new(16000, 25.0, 10.0, 128).unwrap();
        assert!(matches!(fb.compute(&[0.1; 399]), Err(AudioError::TooShort { samples: 399, needed: 400 })));
    }
}
