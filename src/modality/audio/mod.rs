//! Audio: decode any common container, resample like torchaudio, then one of three front ends
//! chosen by the manifest's `front_end`: ImageBind's Kaldi filterbank per clip (below), CLAP's
//! HTSAT log-mel ([`htsat_mel`]), or LanguageBind's filterbank in three chunks
//! ([`fbank_chunks`]).
//!
//! The Kaldi front end reproduces `imagebind.data.load_and_transform_audio_data` (imagebind-unofficial
//! 0.1.1) step by step:
//!
//! 1. decode to `f32` per channel ([`decode`]);
//! 2. resample every channel to the model rate ([`resample::Resampler`], torchaudio's
//!    `functional.resample`);
//! 3. place `clips_per_input` clips of `clip_duration` seconds ([`clips::clip_bounds`],
//!    pytorchvideo's `ConstantClipsPerVideoSampler`);
//! 4. per clip: subtract the mean over *all channels* of the clip, then compute the filterbank of
//!    *channel 0 only* ([`fbank::KaldiFbank`]), pad or cut it to `target_length` frames, and
//!    normalise with the manifest's mean and standard deviation.

pub mod clips;
pub mod decode;
pub mod fbank;
pub mod fbank_chunks;
pub mod htsat_mel;
mod kind;
pub mod mp4;
pub mod opus;
pub mod resample;

use std::borrow::Cow;

pub use kind::{AudioPreprocess, DecodedPart, EncodedAudio, KIND, decoded_payload, payload};

use self::decode::DecodedAudio;
use self::fbank::KaldiFbank;
use self::resample::{Resampler, ResamplerCache};

/// Size limits checked before decoding everything (the server's `--max-audio-*` flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct AudioLimits {
    /// Largest encoded audio file accepted, in bytes.
    #[arg(id = "max_audio_bytes", long = "max-audio-bytes", value_name = "BYTES", default_value_t = AudioLimits::default().max_bytes)]
    pub max_bytes: usize,
    /// Longest audio accepted, in seconds.
    #[arg(
        id = "max_audio_seconds",
        long = "max-audio-seconds", value_name = "SECONDS",
        default_value_t = AudioLimits::default().max_duration_secs
    )]
    pub max_duration_secs: f64,
    /// Most windows one audio input is embedded in (segment mode).
    #[arg(id = "max_audio_segments", long = "max-audio-segments", value_name = "SEGMENTS", default_value_t = AudioLimits::default().max_segments)]
    pub max_segments: usize,
}

impl Default for AudioLimits {
    fn default() -> Self {
        Self { max_bytes: 64 << 20, max_duration_secs: 900.0, max_segments: 360 }
    }
}

/// Why an audio input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// Zero-length payload.
    #[error("audio is empty (0 bytes)")]
    Empty,
    /// The payload is over the byte limit; nothing was parsed.
    #[error("audio is {bytes} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Payload size.
        bytes: usize,
        /// Configured limit.
        max: usize,
    },
    /// The audio is longer than allowed (declared by the container, or counted while decoding).
    #[error("audio is longer than the limit of {max} s (at least {seconds:.2} s)")]
    TooLong {
        /// Duration found so far, in seconds.
        seconds: f64,
        /// Configured limit, in seconds.
        max: f64,
    },
    /// No supported container was recognised in the bytes.
    #[error("not a recognised audio format: {0}")]
    UnrecognizedFormat(String),
    /// The container holds no audio track.
    #[error("the file contains no audio track")]
    NoAudioTrack,
    /// The audio track uses a codec or feature that is not supported.
    #[error("unsupported audio codec: {0}")]
    UnsupportedCodec(String),
    /// The sample rate is outside the supported range.
    #[error(
        "unsupported sample rate {0} Hz (supported: {min}..={max} Hz)",
        min = decode::MIN_RATE,
        max = resample::MAX_RATE
    )]
    UnsupportedSampleRate(u32),
    /// The stream's layout is unusable (no channels, changes mid-file).
    #[error("invalid audio stream: {0}")]
    InvalidStream(String),
    /// The data is damaged: a packet failed to demux or decode.
    #[error("corrupt audio: {0}")]
    Corrupt(String),
    /// The file ends before the end its container declares.
    #[error("truncated audio: {0}")]
    Truncated(String),
    /// The file decodes to zero samples.
    #[error("the audio contains no samples")]
    NoSamples,
    /// A clip is shorter than one filterbank analysis window.
    #[error(
        "audio too short: a clip has {samples} samples after resampling, the filterbank needs at \
         least {needed}"
    )]
    TooShort {
        /// Samples in the clip.
        samples: usize,
        /// One analysis window.
        needed: usize,
    },
    /// A decoder panicked on this input (caught; the input is rejected).
    #[error("the audio decoder failed on this input: {0}")]
    DecoderPanic(String),
    /// The manifest's audio parameters cannot be used.
    #[error("invalid audio preprocessing configuration: {0}")]
    InvalidConfig(String),
    /// The caller's output slice does not have [`AudioPreprocessor::tensor_len`] elements.
    #[error("output buffer holds {got} values, expected {expected}")]
    OutputSize {
        /// Required length.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A bug, not caused by the input.
    #[error("internal audio error: {0}")]
    Internal(String),
}

impl AudioError {
    /// Whether the input is at fault (as opposed to configuration or a bug in bindery).
    pub fn is_input_error(&self) -> bool {
        !matches!(
            self,
            AudioError::InvalidConfig(_) | AudioError::OutputSize { .. } | AudioError::Internal(_)
        )
    }
}

/// Prepares encoded audio for the audio tower.
pub struct AudioPreprocessor {
    spec: AudioPreprocess,
    limits: AudioLimits,
    fbank: Result<KaldiFbank, String>,
    resamplers: ResamplerCache,
}

impl AudioPreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits.
    ///
    /// Parameters the filterbank cannot use make every call to [`Self::preprocess_into`] fail
    /// with [`AudioError::InvalidConfig`]; [`Self::try_new`] reports them up front.
    pub fn new(spec: &AudioPreprocess, limits: AudioLimits) -> Self {
        let fbank =
            KaldiFbank::new(spec.sample_rate, spec.frame_length_ms, spec.frame_shift_ms, spec.num_mel_bins)
                .map_err(|e| e.to_string());
        Self { spec: spec.clone(), limits, fbank, resamplers: ResamplerCache::new(spec.sample_rate) }
    }

    /// Like [`Self::new`], but fails when the manifest's parameters cannot be used.
    pub fn try_new(spec: &AudioPreprocess, limits: AudioLimits) -> Result<Self, AudioError> {
        let p = Self::new(spec, limits);
        if let Err(e) = &p.fbank {
            return Err(AudioError::InvalidConfig(e.clone()));
        }
        if spec.sample_rate < decode::MIN_RATE || spec.sample_rate > resample::MAX_RATE {
            return Err(AudioError::UnsupportedSampleRate(spec.sample_rate));
        }
        Ok(p)
    }

    /// Number of f32 values one input occupies: clips * 1 * mel bins * target length.
    pub fn tensor_len(&self) -> usize {
        self.spec.clips_per_input * self.spec.num_mel_bins * self.spec.target_length
    }

    /// Decodes `bytes` and writes `[clips, 1, mel, frames]` into `out`.
    ///
    /// `format_hint` is an extension or MIME type from the client; the format is always
    /// detected from the bytes.
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

    /// The pipeline after decoding: resample, clip, filterbank, normalise into `out`.
    ///
    /// Like the reference, each clip's mean is taken over all channels and subtracted in place
    /// from the shared waveform before the filterbank reads channel 0. Clips overlap when the
    /// audio is shorter than `clips * clip_duration`, and a later clip then sees the earlier
    /// subtraction on the overlapping samples (`waveform -= waveform.mean()` acts on a view in
    /// `waveform2melspec`); this is reproduced because it changes the frames at the overlap's
    /// edge. Only channel 0 is resampled, and only where a clip reads it: the other channels
    /// enter through their sum over each clip, taken with [`Resampler::sum_range`] and corrected
    /// for the earlier subtractions, which gives the same mean without producing their samples.
    pub fn preprocess_decoded_into(&self, audio: &DecodedAudio, out: &mut [f32]) -> Result<(), AudioError> {
        self.check_out(out)?;
        let fbank = self.fbank.as_ref().map_err(|e| AudioError::InvalidConfig(e.clone()))?;
        let Some(first) = audio.channels.first() else {
            return Err(AudioError::NoSamples);
        };
        let num_channels = audio.channels.len();
        // Channels 1.. matter only through their sum over each clip; resampling is linear, so
        // their sum at the input rate is all that is kept.
        let rest: Option<Cow<'_, [f32]>> = match &audio.channels[1..] {
            [] => None,
            [one] => Some(Cow::Borrowed(one)),
            [second, others @ ..] => {
                let mut sum = second.clone();
                for ch in others {
                    for (s, v) in sum.iter_mut().zip(ch) {
                        *s += v;
                    }
                }
                Some(Cow::Owned(sum))
            }
        };

        let target = self.spec.sample_rate;
        let resampler =
            if audio.sample_rate == target { None } else { Some(self.resamplers.get(audio.sample_rate)?) };
        let len = resampler.as_ref().map_or(first.len(), |r| r.output_len(first.len()));
        let bounds = clips::clip_bounds(len, target, self.spec.clip_duration, self.spec.clips_per_input)?;
        let mut ch0: Cow<'_, [f32]> = match &resampler {
            None => Cow::Borrowed(first),
            Some(r) => Cow::Owned(resample_clips(r, first, len, &bounds)),
        };
        if bounds.len() != self.spec.clips_per_input {
            return Err(AudioError::Internal(format!(
                "clip sampler produced {} clips, expected {}",
                bounds.len(),
                self.spec.clips_per_input
            )));
        }
        let clip_len = self.spec.num_mel_bins * self.spec.target_length;
        let mut scratch = fbank.scratch();
        // (start, end, value) of each earlier in-place subtraction on the other channels' sum.
        let mut subtracted: Vec<(usize, usize, f64)> = Vec::with_capacity(bounds.len());
        for (&(a, b), slot) in bounds.iter().zip(out.chunks_exact_mut(clip_len)) {
            if b - a < fbank.window_size() {
                return Err(AudioError::TooShort { samples: b - a, needed: fbank.window_size() });
            }
            // Four partial sums instead of one chain: a serial f64 sum of 32 000 samples
            // waits on the adder's latency for every one of them.
            let mut total = fbank::sum_f64(&ch0[a..b]);
            if let Some(rest) = &rest {
                total += match &resampler {
                    Some(r) => r.sum_range(rest, a, b),
                    None => fbank::sum_f64(&rest[a..b]),
                };
                for &(a2, b2, value) in &subtracted {
                    let overlap = b.min(b2).saturating_sub(a.max(a2));
                    total -= value * overlap as f64;
                }
            }
            let mean = (total / ((b - a) * num_channels) as f64) as f32;
            for v in &mut ch0.to_mut()[a..b] {
                *v -= mean;
            }
            subtracted.push((a, b, f64::from(mean) * (num_channels - 1) as f64));
            fbank.compute_normalized_into(
                &ch0[a..b],
                self.spec.target_length,
                self.spec.mean,
                self.spec.std,
                &mut scratch,
                slot,
            )?;
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

/// `r.process(input)` (`len` samples) where the clips `bounds` read it; samples outside every
/// clip are never read, so they are left at zero instead of computed (three 2 s clips of a 10 s
/// input cover 60% of it).
fn resample_clips(r: &Resampler, input: &[f32], len: usize, bounds: &[(usize, usize)]) -> Vec<f32> {
    // Zeroed pages are mapped lazily, so the untouched parts cost nothing.
    let mut out = vec![0.0; len];
    for (a, b) in merged_spans(bounds) {
        r.process_range_into(input, a, &mut out[a..b]);
    }
    out
}

/// `spans` sorted, with the overlapping and touching ones merged.
fn merged_spans(spans: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut spans = spans.to_vec();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}
