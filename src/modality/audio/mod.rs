//! Audio: decode any common container, resample like torchaudio, Kaldi filterbank per clip.
//! CONTRACT STUB: implementation pending.

use crate::model::manifest::AudioPreprocess;

/// Size limits checked before decoding everything.
#[derive(Debug, Clone, Copy)]
pub struct AudioLimits {
    /// Largest encoded payload accepted, in bytes.
    pub max_bytes: usize,
    /// Longest audio accepted, in seconds.
    pub max_duration_secs: f64,
}

impl Default for AudioLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_duration_secs: 900.0,
        }
    }
}

/// Why an audio input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// Zero-length payload.
    #[error("audio is empty (0 bytes)")]
    Empty,
    /// Anything else (placeholder until the pipeline lands).
    #[error("cannot decode audio: {0}")]
    Decode(String),
}

/// Prepares encoded audio for the audio tower.
pub struct AudioPreprocessor {
    spec: AudioPreprocess,
    limits: AudioLimits,
}

impl AudioPreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits.
    pub fn new(spec: &AudioPreprocess, limits: AudioLimits) -> Self {
        Self {
            spec: spec.clone(),
            limits,
        }
    }

    /// Number of f32 values one input occupies: clips * 1 * mel bins * target length.
    pub fn tensor_len(&self) -> usize {
        self.spec.clips_per_input * self.spec.num_mel_bins * self.spec.target_length
    }

    /// Decodes `bytes` and writes `[clips, 1, mel, frames]` into `out`.
    pub fn preprocess_into(
        &self,
        bytes: &[u8],
        format_hint: Option<&str>,
        out: &mut [f32],
    ) -> Result<(), AudioError> {
        let _ = (bytes, format_hint, out, &self.limits);
        Err(AudioError::Decode("not implemented".into()))
    }
}
