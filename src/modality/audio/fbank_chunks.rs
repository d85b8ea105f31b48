//! LanguageBind's audio front end (`front_end = "fbank_chunks"`): one Kaldi filterbank over the
//! whole input, fitted to `target_length` frames as three chunks.
//!
//! It reproduces `AudioTransform` of `languagebind.audio.processing_audio` (LanguageBind at
//! commit 7070c53, the same in the `languagebind` 0.1.0 package) after `torchaudio.load`:
//!
//! 1. resample every channel to the model rate (`torchaudio.functional.resample`,
//!    [`Resampler`]);
//! 2. subtract the mean over all samples of all channels, then take the filterbank of channel 0
//!    ([`KaldiFbank`], the same call as ImageBind's but at 112 mel bins);
//! 3. fit the `T` frames to `target_length`: longer audio gives three windows of
//!    `target_length` frames, one from each third of the possible starts
//!    (`np.array_split(range(T - target + 1), 3)`, an empty third replaced by start 0); shorter
//!    audio is tiled (`repeat(target // T + 1)[:target]`) and stacked three times; audio of
//!    exactly `target_length` frames is stacked three times;
//! 4. transpose to `[3, mel, target]` and normalise as `(x - mean) / std`, where the manifest's
//!    `std` is the checkpoint's `audio_std` doubled (the reference divides by `audio_std * 2`).
//!
//! The reference picks each window's start at random within its third (`np.random.choice`), so
//! the same long audio embeds differently each time. bindery takes the first start of each third
//! (`chunk_pick = "first"`, the reference's own commented-out "fixed" variant); the goldens pin
//! the reference's random choice to the same answer.
//!
//! Only the frames the chunks read are computed, and channel 0 is resampled only where they read
//! it: the other channels enter through their sum, as in the `kaldi_fbank` front end.

use std::borrow::Cow;

use serde::Deserialize;

use super::decode::{self, DecodedAudio};
use super::fbank::{self, KaldiFbank};
use super::resample::{self, ResamplerCache};
use super::{AudioError, AudioLimits, merged_spans, resample_clips};

/// The number of chunks the front end stacks: the reference splits the starts in three and
/// stacks three windows, which the tower reads as three image channels.
pub const CHUNKS: usize = 3;

/// LanguageBind's audio preprocessing (`[audio.preprocess]` with `front_end = "fbank_chunks"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FbankChunksPreprocess {
    /// Rate the filterbank runs at (Hz): `audio_sample_rate`, 16000.
    pub sample_rate: u32,
    /// Mel bins (`num_mel_bins`, 112).
    pub num_mel_bins: usize,
    /// Frames of each chunk (`target_length`, 1036).
    pub target_length: usize,
    /// Analysis window length in milliseconds (25).
    pub frame_length_ms: f64,
    /// Hop between frames in milliseconds (10).
    pub frame_shift_ms: f64,
    /// Mean subtracted from the log-mel values (`audio_mean`).
    pub mean: f32,
    /// What the log-mel values are divided by: `2 * audio_std`, as the reference divides.
    pub std: f32,
    /// Chunks stacked per input; only [`CHUNKS`] is supported.
    pub chunks: usize,
    /// How a chunk's start is taken from its third of the possible starts.
    pub chunk_pick: ChunkPick,
}

/// Which start of its third each chunk of a long input takes (`chunk_pick`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkPick {
    /// The first start of each third: the reference's commented "fixed" variant, and what its
    /// random pick returns when pinned to the first element.
    First,
}

impl FbankChunksPreprocess {
    /// Checks the values the front end can use; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        resample::check_front_end_rate(self.sample_rate)?;
        if self.num_mel_bins == 0 {
            return Err("num_mel_bins must be positive".into());
        }
        if self.target_length == 0 {
            return Err("target_length must be positive".into());
        }
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(self.frame_length_ms) {
            return Err(format!("frame_length_ms must be positive, got {}", self.frame_length_ms));
        }
        if !positive(self.frame_shift_ms) {
            return Err(format!("frame_shift_ms must be positive, got {}", self.frame_shift_ms));
        }
        if !self.mean.is_finite() {
            return Err(format!("mean must be finite, got {}", self.mean));
        }
        if !(self.std.is_finite() && self.std > 0.0) {
            return Err(format!("std must be finite and positive, got {}", self.std));
        }
        if self.chunks != CHUNKS {
            return Err(format!(
                "chunks must be {CHUNKS} (the reference splits in three), got {}",
                self.chunks
            ));
        }
        // The frame geometry and mel bins the filterbank accepts, named like the fields.
        KaldiFbank::new(self.sample_rate, self.frame_length_ms, self.frame_shift_ms, self.num_mel_bins)
            .map(drop)
            .map_err(|e| format!("{e} (sample_rate, frame_length_ms, frame_shift_ms, num_mel_bins)"))
    }

    /// The tower input's shape per item: `[chunks, mel bins, target_length]`.
    pub fn item_shape(&self) -> Vec<usize> {
        vec![self.chunks, self.num_mel_bins, self.target_length]
    }
}

/// Where each chunk starts, in frames, for `total` frames of filterbank and chunks of `target`
/// frames; `None` when the audio is not longer than one chunk (it is tiled instead).
///
/// `np.array_split(range(total - target + 1), 3)` gives the first `n % 3` thirds `n / 3 + 1`
/// starts and the others `n / 3`; a third left empty (`n < 3`) is replaced by `[0]`.
pub fn chunk_starts(total: usize, target: usize, pick: ChunkPick) -> Option<[usize; CHUNKS]> {
    if total <= target {
        return None;
    }
    let n = total - target + 1;
    let (base, extra) = (n / CHUNKS, n % CHUNKS);
    Some(std::array::from_fn(|k| {
        let len = base + usize::from(k < extra);
        match pick {
            ChunkPick::First if len == 0 => 0,
            ChunkPick::First => k * base + k.min(extra),
        }
    }))
}

/// Prepares encoded audio for a LanguageBind audio tower.
pub struct FbankChunksPreprocessor {
    spec: FbankChunksPreprocess,
    limits: AudioLimits,
    fbank: KaldiFbank,
    resamplers: ResamplerCache,
}

impl FbankChunksPreprocessor {
    /// Builds the front end; fails when the manifest's values cannot be used.
    pub fn new(spec: &FbankChunksPreprocess, limits: AudioLimits) -> Result<Self, AudioError> {
        spec.check().map_err(AudioError::InvalidConfig)?;
        let fbank =
            KaldiFbank::new(spec.sample_rate, spec.frame_length_ms, spec.frame_shift_ms, spec.num_mel_bins)?;
        Ok(Self { spec: spec.clone(), limits, fbank, resamplers: ResamplerCache::new(spec.sample_rate) })
    }

    /// Number of f32 values one input occupies: chunks * mel bins * target length.
    pub fn tensor_len(&self) -> usize {
        self.spec.chunks * self.spec.num_mel_bins * self.spec.target_length
    }

    /// Decodes `bytes` and writes `[chunks, mel, target_length]` into `out`.
    pub fn preprocess_into(
        &self,
        bytes: &[u8],
        format_hint: Option<&str>,
        out: &mut [f32],
    ) -> Result<(), AudioError> {
        self.check_out(out)?;
        let audio = decode::decode(bytes, format_hint, &self.limits)?;
        self.preprocess_decoded_into(&audio, out)
    }

    /// The front end after decoding: resample, subtract the mean, filterbank, chunks, normalise.
    pub fn preprocess_decoded_into(&self, audio: &DecodedAudio, out: &mut [f32]) -> Result<(), AudioError> {
        self.check_out(out)?;
        let Some(first) = audio.channels.first() else {
            return Err(AudioError::NoSamples);
        };
        let resampler = if audio.sample_rate == self.spec.sample_rate {
            None
        } else {
            Some(self.resamplers.get(audio.sample_rate)?)
        };
        let len = resampler.as_ref().map_or(first.len(), |r| r.output_len(first.len()));
        let total = self.fbank.num_frames(len);
        if total == 0 {
            // The reference's fbank returns no frames and its tiling divides by zero.
            return Err(AudioError::TooShort { samples: len, needed: self.fbank.window_size() });
        }
        let target = self.spec.target_length;
        let starts = chunk_starts(total, target, self.spec.chunk_pick);
        // Frames the chunks read, and the samples behind them.
        let spans: Vec<(usize, usize)> = match starts {
            Some(starts) => starts.iter().map(|&s| (s, s + target)).collect(),
            None => vec![(0, total)],
        };
        let (window, shift) = (self.fbank.window_size(), self.fbank.window_shift());
        let sample_spans: Vec<(usize, usize)> =
            spans.iter().map(|&(a, b)| (a * shift, (b - 1) * shift + window)).collect();

        // `audio_data -= audio_data.mean()`: every channel, every sample, after resampling.
        // Resampling is linear, so each channel's sum is taken without producing its samples.
        let mut sum = 0.0f64;
        for ch in &audio.channels {
            sum += match &resampler {
                Some(r) => r.sum_range(ch, 0, len),
                None => fbank::sum_f64(ch),
            };
        }
        let mean = (sum / (len * audio.channels.len()) as f64) as f32;
        let mut ch0: Cow<'_, [f32]> = match &resampler {
            None => Cow::Borrowed(first),
            Some(r) => Cow::Owned(resample_clips(r, first, len, &sample_spans)),
        };
        {
            let ch0 = ch0.to_mut();
            // Once per sample, where chunks overlap too.
            for (a, b) in merged_spans(&sample_spans) {
                for v in &mut ch0[a..b] {
                    *v -= mean;
                }
            }
        }
        let ch0: &[f32] = &ch0;

        let mel = self.spec.num_mel_bins;
        let chunk_len = mel * target;
        let mut scratch = self.fbank.scratch();
        let mut row = vec![0.0f32; mel];
        let (std, norm_mean) = (self.spec.std, self.spec.mean);
        let mut normalized_row = |f: usize, row: &mut [f32]| -> Result<(), AudioError> {
            self.fbank.frame_into(ch0, f, &mut scratch, row)?;
            for v in row.iter_mut() {
                *v = (*v - norm_mean) / std;
            }
            Ok(())
        };
        match starts {
            None => {
                let (head, rest) = out.split_at_mut(chunk_len);
                // Every frame once, tiled along the chunk: frame t % total at column t.
                for f in 0..total {
                    normalized_row(f, &mut row)?;
                    for (band, &v) in head.chunks_exact_mut(target).zip(&row) {
                        band[f] = v;
                    }
                }
                for band in head.chunks_exact_mut(target) {
                    for t in total..target {
                        band[t] = band[t - total];
                    }
                }
                for chunk in rest.chunks_exact_mut(chunk_len) {
                    chunk.copy_from_slice(head);
                }
            }
            Some(starts) => {
                for (k, &s) in starts.iter().enumerate() {
                    if let Some(j) = starts[..k].iter().position(|&p| p == s) {
                        // An earlier chunk starts here too (two of the thirds were empty).
                        out.copy_within(j * chunk_len..(j + 1) * chunk_len, k * chunk_len);
                        continue;
                    }
                    let slot = &mut out[k * chunk_len..(k + 1) * chunk_len];
                    for t in 0..target {
                        normalized_row(s + t, &mut row)?;
                        for (band, &v) in slot.chunks_exact_mut(target).zip(&row) {
                            band[t] = v;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn check_out(&self, out: &[f32]) -> Result<(), AudioError> {
        if out.len() == self.tensor_len() {
            Ok(())
        } else {
            Err(AudioError::OutputSize { expected: self.tensor_len(), got: out.len() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target_length: usize) -> FbankChunksPreprocess {
        FbankChunksPreprocess {
            sample_rate: 16000,
            num_mel_bins: 16,
            target_length,
            frame_length_ms: 25.0,
            frame_shift_ms: 10.0,
            mean: -4.2677393,
            std: 9.137995,
            chunks: 3,
            chunk_pick: ChunkPick::First,
        }
    }

    /// A chirp with a DC offset, so that the mean subtraction matters.
    fn wave(n: usize) -> Vec<f32> {
        (0..n).map(|i| 0.1 + 0.3 * (i as f32 * (0.01 + i as f32 * 1e-6)).sin()).collect()
    }

    #[test]
    fn chunk_starts_are_the_first_of_each_array_split_third() {
        // `[r[0] if len(r) else 0 for r in np.array_split(range(n), 3)]` for n = total - target + 1.
        let want = [
            (2, [0, 1, 0]),
            (3, [0, 1, 2]),
            (4, [0, 2, 3]),
            (5, [0, 2, 4]),
            (7, [0, 3, 5]),
            (1094, [0, 365, 730]),
        ];
        for (n, starts) in want {
            assert_eq!(chunk_starts(1036 + n - 1, 1036, ChunkPick::First), Some(starts), "n = {n}");
        }
        assert_eq!(chunk_starts(1036, 1036, ChunkPick::First), None);
        assert_eq!(chunk_starts(3, 1036, ChunkPick::First), None);
    }

    /// The reference's three branches on one filterbank: chunks of a long input, the tiled
    /// short input, and the input of exactly `target_length` frames.
    #[test]
    fn chunks_tile_and_stack_the_normalised_filterbank() {
        let target = 10;
        let p = FbankChunksPreprocessor::new(&spec(target), AudioLimits::default()).expect("front end");
        let fb = KaldiFbank::new(16000, 25.0, 10.0, 16).expect("fbank");
        // 17, 4 and 10 frames: 400 + 160 * (frames - 1) samples.
        for (frames, starts) in [(17, [0, 3, 6]), (4, [0, 0, 0]), (10, [0, 0, 0])] {
            let mut w = wave(400 + 160 * (frames - 1));
            let mean = (w.iter().map(|&v| f64::from(v)).sum::<f64>() / w.len() as f64) as f32;
            let audio = DecodedAudio { sample_rate: 16000, channels: vec![w.clone()] };
            let mut out = vec![0f32; p.tensor_len()];
            p.preprocess_decoded_into(&audio, &mut out).expect("features");
            w.iter_mut().for_each(|v| *v -= mean);
            let mel = fb.compute(&w).expect("fbank");
            for (k, &s) in starts.iter().enumerate() {
                for t in 0..target {
                    let f = if frames > target { s + t } else { t % frames };
                    for m in 0..16 {
                        let want = (mel[f * 16 + m] - spec(target).mean) / spec(target).std;
                        let got = out[(k * 16 + m) * target + t];
                        assert!((got - want).abs() < 1e-6, "{frames} frames, chunk {k}, column {t}, bin {m}");
                    }
                }
            }
        }
    }

    #[test]
    fn audio_shorter_than_one_window_is_refused() {
        let p = FbankChunksPreprocessor::new(&spec(10), AudioLimits::default()).expect("front end");
        let audio = DecodedAudio { sample_rate: 16000, channels: vec![wave(399)] };
        let mut out = vec![0f32; p.tensor_len()];
        let err = p.preprocess_decoded_into(&audio, &mut out).expect_err("399 samples");
        assert!(matches!(err, AudioError::TooShort { samples: 399, needed: 400 }), "{err}");
    }

    /// The other channels enter through the mean only, resampled or not.
    #[test]
    fn every_channel_enters_the_mean() {
        let p = FbankChunksPreprocessor::new(&spec(10), AudioLimits::default()).expect("front end");
        for rate in [16000, 44100] {
            let w = wave(rate as usize / 10);
            let loud: Vec<f32> = w.iter().map(|v| v + 0.5).collect();
            let mut mono = vec![0f32; p.tensor_len()];
            let mut stereo = vec![0f32; p.tensor_len()];
            let one = DecodedAudio { sample_rate: rate, channels: vec![w.clone()] };
            p.preprocess_decoded_into(&one, &mut mono).expect("mono");
            let two = DecodedAudio { sample_rate: rate, channels: vec![w, loud] };
            p.preprocess_decoded_into(&two, &mut stereo).expect("stereo");
            // Channel 0 minus a larger mean: pre-emphasis and DC removal leave most bins alone,
            // but the first frames' low bins move.
            assert_ne!(mono, stereo, "{rate} Hz");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        type Spoil = fn(&mut FbankChunksPreprocess);
        let cases: [(&str, Spoil); 8] = [
            ("num_mel_bins", |s| s.num_mel_bins = 0),
            ("target_length", |s| s.target_length = 0),
            ("chunks", |s| s.chunks = 4),
            ("std", |s| s.std = 0.0),
            ("mean", |s| s.mean = f32::NAN),
            ("sample_rate", |s| s.sample_rate = 10),
            ("frame_shift_ms", |s| s.frame_shift_ms = -1.0),
            ("frame_length_ms", |s| s.frame_length_ms = 0.01),
        ];
        for (field, spoil) in cases {
            let mut s = spec(1036);
            spoil(&mut s);
            let err = s.check().expect_err(field);
            assert!(err.contains(field), "{field}: {err}");
            assert!(FbankChunksPreprocessor::new(&s, AudioLimits::default()).is_err(), "{field}");
        }
        assert!(spec(1036).check().is_ok());
        assert_eq!(spec(1036).item_shape(), vec![3, 16, 1036]);
    }
}
