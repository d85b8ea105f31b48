//! CLAP's audio front end (`front_end = "htsat_mel"`): the log-mel spectrogram of transformers'
//! `ClapFeatureExtractor` (transformers 5.23) for an HTSAT audio tower.
//!
//! The feature extractor does not resample, so the reference is: decode, average the channels,
//! resample to the model rate with `torchaudio.functional.resample` (defaults; bindery's
//! [`resample::Resampler`] reproduces it), then the feature extractor on that one input. Its steps:
//!
//! - audio of at most `max_length_s` seconds is padded to that length (`padding`: `repeatpad`
//!   tiles it whole and pads with zeros, `repeat` tiles it and cuts, `pad` pads with zeros);
//! - the spectrogram is `transformers.audio_utils.spectrogram` as the extractor calls it:
//!   centred frames (reflect padding of `n_fft / 2`), periodic Hann window, FFT in `f64` kept as
//!   `complex64`, power 2, the mel filters (`mel_filter_bank`: HTK scale without normalisation
//!   for `fusion`, Slaney scale and normalisation for `rand_trunc`, as the extractor picks them),
//!   floor `1e-10`, `10 log10`, an optional `top_db` range, stored as `f32`;
//! - longer audio: `rand_trunc` keeps one window of `max_length_s` seconds, `fusion` stacks a
//!   bilinear shrink of the whole spectrogram to the window's frames with three window-long
//!   chunks taken from its first, middle and last thirds.
//!
//! The reference picks the window and the chunks at random (`np.random.randint`,
//! `np.random.choice`), which makes the same audio embed differently each time. bindery takes a
//! fixed, documented choice instead: the centred window for `rand_trunc`, and the middle start of
//! each third for `fusion`. Its goldens pin the reference's random calls to the same answers.
//!
//! `is_longer` (the fused tower's second input): the extractor sets it for audio over the
//! window, and when no input of a batch is longer it sets it for one input at random. bindery
//! embeds each input as the reference embeds it alone, where that one input is the one picked:
//! with `fusion`, `is_longer` is always 1, so an embedding never depends on what else shares its
//! batch.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::Deserialize;

use super::decode::{self, DecodedAudio};
use super::resample::{self, ResamplerCache};
use super::{AudioError, AudioLimits};

/// CLAP's audio preprocessing (`[audio.preprocess]` with `front_end = "htsat_mel"`); the names
/// follow `ClapFeatureExtractor`'s where they have one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtsatMelPreprocess {
    /// Rate the spectrogram runs at (Hz): `sampling_rate`, 48000 for CLAP.
    pub sample_rate: u32,
    /// FFT and window length in samples (`fft_window_size`).
    pub n_fft: usize,
    /// Hop between frames in samples (`hop_length`).
    pub hop_length: usize,
    /// Mel bins (`feature_size`).
    pub num_mel_bins: usize,
    /// Lowest filter edge in Hz (`frequency_min`).
    pub f_min: f64,
    /// Highest filter edge in Hz (`frequency_max`).
    pub f_max: f64,
    /// Mel scale of the filters.
    pub mel_scale: MelScale,
    /// Normalisation of the filters.
    pub mel_norm: MelNorm,
    /// Window length in whole seconds (`max_length_s`).
    pub max_length_s: u32,
    /// What happens to audio longer than the window.
    pub truncation: Truncation,
    /// What happens to audio shorter than the window.
    pub padding: Padding,
    /// Dynamic range kept below the spectrogram's maximum, in dB (`top_db`; none by default).
    #[serde(default)]
    pub top_db: Option<f64>,
    /// Name of the tower's `is_longer` input (int64 `[B, 1]`), when it takes one.
    #[serde(default)]
    pub is_longer_input: Option<String>,
}

/// Mel scale of the filter bank (`mel_filter_bank`'s `mel_scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelScale {
    /// `2595 log10(1 + f / 700)`.
    Htk,
    /// Linear below 1 kHz, logarithmic above (librosa's default).
    Slaney,
}

/// Normalisation of the filter bank (`mel_filter_bank`'s `norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelNorm {
    /// Triangles of height 1.
    None,
    /// Each triangle scaled by `2 / (upper - lower edge)`.
    Slaney,
}

/// `ClapFeatureExtractor`'s `truncation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Four channels: the whole spectrogram shrunk to the window, and three chunks.
    Fusion,
    /// One channel: one window of the audio.
    RandTrunc,
}

/// `ClapFeatureExtractor`'s `padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// Tile the audio whole as often as it fits, then pad with zeros.
    Repeatpad,
    /// Tile the audio and cut it at the window.
    Repeat,
    /// Pad with zeros.
    Pad,
}

impl HtsatMelPreprocess {
    /// Checks the values a spectrogram can use; the message names the field.
    pub fn check(&self, input: &str) -> Result<(), String> {
        resample::check_front_end_rate(self.sample_rate)?;
        if self.n_fft < 2 || !self.n_fft.is_multiple_of(2) {
            return Err(format!("n_fft must be even and at least 2, got {}", self.n_fft));
        }
        if self.hop_length == 0 {
            return Err("hop_length must be positive".into());
        }
        if self.num_mel_bins == 0 {
            return Err("num_mel_bins must be positive".into());
        }
        let nyquist = f64::from(self.sample_rate) / 2.0;
        if !(self.f_min.is_finite() && self.f_min >= 0.0) {
            return Err(format!("f_min must be finite and at least 0, got {}", self.f_min));
        }
        if !(self.f_max.is_finite() && self.f_max > self.f_min && self.f_max <= nyquist) {
            return Err(format!(
                "f_max must be above f_min ({}) and at most the Nyquist rate ({nyquist}), got {}",
                self.f_min, self.f_max
            ));
        }
        if self.max_length_s == 0 || self.max_samples() <= self.n_fft / 2 {
            return Err(format!(
                "max_length_s must hold more than n_fft / 2 samples, got {} s",
                self.max_length_s
            ));
        }
        if let Some(db) = self.top_db
            && !(db.is_finite() && db > 0.0)
        {
            return Err(format!("top_db must be finite and positive, got {db}"));
        }
        if let Some(name) = &self.is_longer_input
            && (name.is_empty() || name == input)
        {
            return Err("is_longer_input must name the tower's second input".into());
        }
        Ok(())
    }

    /// Samples in the window.
    pub fn max_samples(&self) -> usize {
        self.max_length_s as usize * self.sample_rate as usize
    }

    /// Frames of one window (`max_length // hop_length + 1`).
    pub fn frames(&self) -> usize {
        self.max_samples() / self.hop_length + 1
    }

    /// Spectrogram channels the tower takes: 4 with `fusion`, 1 with `rand_trunc`.
    pub fn channels(&self) -> usize {
        match self.truncation {
            Truncation::Fusion => 4,
            Truncation::RandTrunc => 1,
        }
    }

    /// The tower input's shape per item: `[channels, frames, mel bins]`.
    pub fn item_shape(&self) -> Vec<usize> {
        vec![self.channels(), self.frames(), self.num_mel_bins]
    }
}

/// One mel filter: weights for FFT bins `first..first + weights.len()`.
#[derive(Debug, Clone)]
struct MelFilter {
    first: usize,
    weights: Vec<f64>,
}

/// The log-mel spectrogram of `transformers.audio_utils.spectrogram`, as CLAP calls it.
#[derive(Clone)]
pub struct LogMel {
    n_fft: usize,
    hop: usize,
    window: Vec<f64>,
    filters: Vec<MelFilter>,
    top_db: Option<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("n_fft", &self.n_fft)
            .field("hop", &self.hop)
            .field("num_mel_bins", &self.filters.len())
            .finish_non_exhaustive()
    }
}

fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney if hz >= 1000.0 => 15.0 + (hz / 1000.0).ln() * (27.0 / 6.4f64.ln()),
        MelScale::Slaney => 3.0 * hz / 200.0,
    }
}

fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney if mel >= 15.0 => 1000.0 * ((6.4f64.ln() / 27.0) * (mel - 15.0)).exp(),
        MelScale::Slaney => 200.0 * mel / 3.0,
    }
}

/// `np.linspace(start, stop, n)`: `start + i * step`, the last value exactly `stop`.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    let step = (stop - start) / (n - 1) as f64;
    (0..n).map(|i| if i + 1 == n { stop } else { start + i as f64 * step }).collect()
}

impl LogMel {
    /// The spectrogram of `spec`.
    pub fn new(spec: &HtsatMelPreprocess) -> Result<Self, AudioError> {
        spec.check("").map_err(|e| AudioError::InvalidConfig(format!("htsat_mel: {e}")))?;
        let n = spec.n_fft;
        // np.hanning(n + 1)[:-1]: the periodic window.
        let window =
            (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).collect();
        let bins = n / 2 + 1;
        // `np.linspace(0, sampling_rate // 2, bins)`: integer division of the rate, as there.
        let fft_freqs = linspace(0.0, f64::from(spec.sample_rate / 2), bins);
        let edges: Vec<f64> = linspace(
            hz_to_mel(spec.f_min, spec.mel_scale),
            hz_to_mel(spec.f_max, spec.mel_scale),
            spec.num_mel_bins + 2,
        )
        .into_iter()
        .map(|m| mel_to_hz(m, spec.mel_scale))
        .collect();
        let mut filters = Vec::with_capacity(spec.num_mel_bins);
        for m in 0..spec.num_mel_bins {
            let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
            let scale = match spec.mel_norm {
                MelNorm::None => 1.0,
                MelNorm::Slaney => 2.0 / (hi - lo),
            };
            let weights: Vec<f64> = fft_freqs
                .iter()
                .map(|&f| ((f - lo) / (mid - lo)).min((hi - f) / (hi - mid)).max(0.0) * scale)
                .collect();
            let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last = weights.iter().rposition(|&w| w > 0.0).map_or(first, |i| i + 1);
            filters.push(MelFilter { first, weights: weights[first..last].to_vec() });
        }
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
        Ok(Self { n_fft: n, hop: spec.hop_length, window, filters, top_db: spec.top_db, fft })
    }

    /// Frames of a waveform of `len` samples (centred framing).
    pub fn frames(&self, len: usize) -> usize {
        1 + len / self.hop
    }

    /// The log-mel spectrogram of `wave`, `[frames, mel bins]` row-major.
    ///
    /// `wave` must be longer than `n_fft / 2` samples (reflect padding needs them); callers pad
    /// shorter audio to the window first.
    /// The samples stay `f32` (the reference's `float64` copy of them is exact) and are widened
    /// frame by frame, so a long input is not held twice.
    pub fn compute(&self, wave: &[f32]) -> Result<Vec<f32>, AudioError> {
        let half = self.n_fft / 2;
        if wave.len() <= half {
            return Err(AudioError::Internal(format!(
                "spectrogram of {} samples, the reflect padding needs more than {half}",
                wave.len()
            )));
        }
        let len = wave.len() as isize;
        // np.pad(mode="reflect"): the edge sample is not repeated.
        let at = |p: usize| -> f64 {
            let mut i = p as isize - half as isize;
            if i < 0 {
                i = -i;
            }
            if i >= len {
                i = 2 * (len - 1) - i;
            }
            f64::from(wave[i as usize])
        };
        let frames = self.frames(wave.len());
        let mels = self.filters.len();
        let mut out = vec![0f32; frames * mels];
        let mut buffer = self.fft.make_input_vec();
        let mut spectrum: Vec<Complex<f64>> = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; spectrum.len()];
        let mut db = vec![0f64; mels];
        let mut peak = f64::NEG_INFINITY;
        for (t, row) in out.chunks_exact_mut(mels).enumerate() {
            let start = t * self.hop;
            let inside = start >= half && start + self.n_fft - half <= wave.len();
            for (j, (b, w)) in buffer.iter_mut().zip(&self.window).enumerate() {
                let x = if inside { f64::from(wave[start + j - half]) } else { at(start + j) };
                *b = x * w;
            }
            self.fft
                .process_with_scratch(&mut buffer, &mut spectrum, &mut scratch)
                .map_err(|e| AudioError::Internal(format!("fft: {e}")))?;
            for (p, c) in power.iter_mut().zip(&spectrum) {
                // The reference stores the spectrum as complex64 before taking |X|^2 in f64.
                let (re, im) = (f64::from(c.re as f32), f64::from(c.im as f32));
                *p = re * re + im * im;
            }
            for (d, filter) in db.iter_mut().zip(&self.filters) {
                let energy: f64 = filter.weights.iter().zip(&power[filter.first..]).map(|(w, p)| w * p).sum();
                *d = 10.0 * energy.max(1e-10).log10();
                peak = peak.max(*d);
            }
            for (o, d) in row.iter_mut().zip(&db) {
                *o = *d as f32;
            }
        }
        // Clamping after the cast to f32 equals clamping before it (rounding is monotonic).
        if let Some(range) = self.top_db {
            let floor = (peak - range) as f32;
            for v in &mut out {
                *v = v.max(floor);
            }
        }
        Ok(out)
    }
}

/// The `[channels, frames, mels]` features of one waveform at the model rate, and `is_longer`.
///
/// `wave` is mono at `spec.sample_rate`; `out` holds [`HtsatMelPreprocess::item_shape`] values.
pub fn features_into(
    spec: &HtsatMelPreprocess,
    mel: &LogMel,
    wave: &[f32],
    out: &mut [f32],
) -> Result<bool, AudioError> {
    if wave.is_empty() {
        return Err(AudioError::NoSamples);
    }
    let max = spec.max_samples();
    let chunk = spec.frames();
    let mels = spec.num_mel_bins;
    let plane = chunk * mels;
    let expected = spec.channels() * plane;
    if out.len() != expected {
        return Err(AudioError::OutputSize { expected, got: out.len() });
    }
    if wave.len() <= max {
        let padded = pad(wave, max, spec.padding);
        let m = mel.compute(&padded)?;
        for plane_out in out.chunks_exact_mut(plane) {
            plane_out.copy_from_slice(&m);
        }
        // Alone in its batch, the input is the one the fallback marks longer (fusion).
        return Ok(spec.truncation == Truncation::Fusion);
    }
    match spec.truncation {
        Truncation::RandTrunc => {
            // The reference draws the start from 0..=overflow; bindery centres the window.
            let start = (wave.len() - max) / 2;
            let m = mel.compute(&wave[start..start + max])?;
            out.copy_from_slice(&m);
        }
        Truncation::Fusion => {
            let m = mel.compute(wave)?;
            let total = m.len() / mels;
            if total == chunk {
                // Longer by less than a hop: the whole spectrogram, four times.
                for plane_out in out.chunks_exact_mut(plane) {
                    plane_out.copy_from_slice(&m);
                }
            } else {
                let (shrunk, chunks) = out.split_at_mut(plane);
                shrink_frames(&m, total, chunk, mels, shrunk);
                for (starts, dest) in
                    chunk_starts(total - chunk + 1).into_iter().zip(chunks.chunks_exact_mut(plane))
                {
                    dest.copy_from_slice(&m[starts * mels..(starts + chunk) * mels]);
                }
            }
        }
    }
    Ok(true)
}

/// Pads `wave` (at most `max` samples) to `max` as `padding` says.
fn pad(wave: &[f32], max: usize, padding: Padding) -> Vec<f32> {
    let mut out = Vec::with_capacity(max);
    let repeats = max / wave.len();
    match padding {
        Padding::Repeat => {
            while out.len() < max {
                let take = wave.len().min(max - out.len());
                out.extend_from_slice(&wave[..take]);
            }
        }
        Padding::Repeatpad => {
            for _ in 0..repeats {
                out.extend_from_slice(wave);
            }
        }
        Padding::Pad => out.extend_from_slice(wave),
    }
    out.resize(max, 0.0);
    out
}

/// The start frames of the three fusion chunks among `n` possible starts: the middle of each
/// part of `np.array_split(range(n), 3)` (an empty part gives 0, as in the reference).
pub fn chunk_starts(n: usize) -> [usize; 3] {
    let (q, r) = (n / 3, n % 3);
    let mut starts = [0; 3];
    for (k, s) in starts.iter_mut().enumerate() {
        let len = q + usize::from(k < r);
        let first = k * q + k.min(r);
        *s = if len == 0 { 0 } else { first + len / 2 };
    }
    starts
}

/// `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` of a `[total, mels]`
/// spectrogram to `[frames, mels]` in `f32`, as PyTorch computes it on the CPU (the mel axis
/// keeps its size, so only the frame axis is interpolated).
fn shrink_frames(m: &[f32], total: usize, frames: usize, mels: usize, out: &mut [f32]) {
    let scale = total as f32 / frames as f32;
    for (i, row) in out.chunks_exact_mut(mels).enumerate() {
        let src = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
        let h0 = (src as usize).min(total - 1);
        let h1 = if h0 < total - 1 { h0 + 1 } else { h0 };
        let l1 = src - h0 as f32;
        let l0 = 1.0 - l1;
        let (a, b) = (&m[h0 * mels..(h0 + 1) * mels], &m[h1 * mels..(h1 + 1) * mels]);
        for ((o, &x), &y) in row.iter_mut().zip(a).zip(b) {
            *o = l0 * x + l1 * y;
        }
    }
}

/// Prepares encoded audio for an HTSAT tower: decode, average the channels, resample, features.
pub struct HtsatPreprocessor {
    spec: HtsatMelPreprocess,
    limits: AudioLimits,
    mel: LogMel,
    resamplers: ResamplerCache,
}

impl HtsatPreprocessor {
    /// Builds the preprocessor; fails when the manifest's values cannot be used.
    pub fn new(spec: &HtsatMelPreprocess, limits: AudioLimits) -> Result<Self, AudioError> {
        Ok(Self {
            spec: spec.clone(),
            limits,
            mel: LogMel::new(spec)?,
            resamplers: ResamplerCache::new(spec.sample_rate),
        })
    }

    /// Decodes `bytes` and writes its features into `out`; returns `is_longer`.
    pub fn preprocess_into(
        &self,
        bytes: &[u8],
        format_hint: Option<&str>,
        out: &mut [f32],
    ) -> Result<bool, AudioError> {
        let audio = decode::decode(bytes, format_hint, &self.limits)?;
        self.preprocess_decoded_into(&audio, out)
    }

    /// The pipeline after decoding: average the channels, resample, features.
    pub fn preprocess_decoded_into(&self, audio: &DecodedAudio, out: &mut [f32]) -> Result<bool, AudioError> {
        let mono = mono(&audio.channels)?;
        let wave = if audio.sample_rate == self.spec.sample_rate {
            mono
        } else {
            self.resamplers.get(audio.sample_rate)?.process(&mono)
        };
        features_into(&self.spec, &self.mel, &wave, out)
    }
}

/// The mean of the channels, sample by sample (`waveform.mean(dim=0)` in `f32`).
fn mono(channels: &[Vec<f32>]) -> Result<Vec<f32>, AudioError> {
    let Some((first, rest)) = channels.split_first() else {
        return Err(AudioError::NoSamples);
    };
    if rest.is_empty() {
        return Ok(first.clone());
    }
    let n = channels.len() as f32;
    Ok((0..first.len())
        .map(|i| channels.iter().map(|c| c.get(i).copied().unwrap_or(0.0)).sum::<f32>() / n)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_starts_are_the_middles_of_numpys_array_split() {
        // np.array_split(range(10), 3) -> [0..4), [4..7), [7..10): middles 2, 5, 8.
        assert_eq!(chunk_starts(10), [2, 5, 8]);
        // One start: the later parts are empty, and the reference falls back to 0.
        assert_eq!(chunk_starts(1), [0, 0, 0]);
        assert_eq!(chunk_starts(2), [0, 1, 0]);
    }

    #[test]
    fn repeatpad_tiles_whole_copies_then_pads_with_zeros() {
        let w = [1.0, 2.0, 3.0];
        assert_eq!(pad(&w, 8, Padding::Repeatpad), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 0.0, 0.0]);
        assert_eq!(pad(&w, 8, Padding::Repeat), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0]);
        assert_eq!(pad(&w, 5, Padding::Pad), vec![1.0, 2.0, 3.0, 0.0, 0.0]);
    }

    #[test]
    fn slaney_scale_round_trips_on_both_sides_of_1_khz() {
        for hz in [0.0, 440.0, 999.0, 1000.0, 5000.0, 14000.0] {
            for scale in [MelScale::Htk, MelScale::Slaney] {
                let back = mel_to_hz(hz_to_mel(hz, scale), scale);
                assert!((back - hz).abs() < 1e-6, "{scale:?} {hz} -> {back}");
            }
        }
    }
}
