//! Audio as a bindery modality: the manifest section, the payload and the pipeline.
//!
//! `[audio.preprocess]`'s `front_end` selects the front end: `kaldi_fbank` (the default:
//! ImageBind's clips of Kaldi filterbanks, [`AudioPreprocess`]) or `htsat_mel` (CLAP's log-mel
//! for an HTSAT tower, [`HtsatMelPreprocess`]); the rest of the table is that front end's.

use serde::Deserialize;

use super::htsat_mel::{HtsatMelPreprocess, HtsatPreprocessor};
use super::{AudioError, AudioLimits, AudioPreprocessor};
use crate::modality::{
    Argument, BuildError, FillOne, InputLimits, Kind, Observed, OneTensor, Payload, PayloadValue, Pipeline,
    PreprocessError, Section, Slot, TensorSpec, limits_of, parse_section, slot,
};
use crate::shared::{Modality, pb};

/// Registration of audio.
pub const KIND: Kind = Kind {
    modality: Modality::Audio,
    check,
    build,
    from_proto,
    extensions: EXTENSIONS,
    inputs_from_file,
    limits: limits_of::<AudioLimits>(),
    argument: Argument::Files,
    examples: None,
    fuzz: &[],
};

/// Audio preprocessing: resample, clip sampling, Kaldi filterbank, normalisation
/// (`[audio.preprocess]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioPreprocess {
    /// Sample rate the filterbank runs at (Hz).
    pub sample_rate: u32,
    /// Number of clips taken from each input.
    pub clips_per_input: usize,
    /// Length of each clip in seconds.
    pub clip_duration: f64,
    /// Number of mel bins.
    pub num_mel_bins: usize,
    /// Frames per clip after padding or cutting.
    pub target_length: usize,
    /// Analysis window length in milliseconds.
    pub frame_length_ms: f64,
    /// Hop between frames in milliseconds.
    pub frame_shift_ms: f64,
    /// Mean subtracted from the log-mel values.
    pub mean: f32,
    /// Standard deviation the log-mel values are divided by.
    pub std: f32,
}

impl AudioPreprocess {
    pub(super) fn check(&self) -> Result<(), String> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if self.sample_rate == 0
            || self.clips_per_input == 0
            || self.num_mel_bins == 0
            || self.target_length == 0
            || !positive(self.clip_duration)
            || !positive(self.frame_length_ms)
            || !positive(self.frame_shift_ms)
            || !positive(f64::from(self.std))
        {
            return Err("sample_rate, clips_per_input, num_mel_bins, target_length, clip_duration, \
                        frame_length_ms, frame_shift_ms and std must all be positive"
                .into());
        }
        Ok(())
    }
}

/// An encoded audio file and the client's format hint (may be empty).
#[derive(Debug)]
pub struct EncodedAudio {
    /// File bytes.
    pub data: Vec<u8>,
    /// Format hint such as "wav" (may be empty); the content decides.
    pub format_hint: String,
}

impl PayloadValue for EncodedAudio {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        part(&self.data);
        part(self.format_hint.as_bytes());
    }
}

/// An audio payload.
pub fn payload(data: Vec<u8>, format_hint: String) -> Payload {
    Payload::new(Modality::Audio, EncodedAudio { data, format_hint })
}

/// The audio front ends a manifest can select (`front_end`).
enum FrontEnd {
    /// ImageBind's: clips of Kaldi filterbanks.
    KaldiFbank(AudioPreprocess),
    /// CLAP's: the HTSAT log-mel of `ClapFeatureExtractor`.
    HtsatMel(HtsatMelPreprocess),
}

/// Reads `front_end` and the rest of the table as that front end's section; the message names
/// the field.
fn front_end(preprocess: &toml::Table) -> Result<FrontEnd, String> {
    let mut rest = preprocess.clone();
    let name = match rest.remove("front_end") {
        None => "kaldi_fbank".to_string(),
        Some(toml::Value::String(name)) => name,
        Some(other) => return Err(format!("front_end must be a string, got {other}")),
    };
    match name.as_str() {
        "kaldi_fbank" => Ok(FrontEnd::KaldiFbank(parse_section(&rest)?)),
        "htsat_mel" => Ok(FrontEnd::HtsatMel(parse_section(&rest)?)),
        other => Err(format!("front_end: unknown front end {other:?} (known: kaldi_fbank, htsat_mel)")),
    }
}

fn check(section: &Section<'_>) -> Result<(), String> {
    match front_end(section.preprocess)? {
        FrontEnd::KaldiFbank(spec) => spec.check(),
        FrontEnd::HtsatMel(spec) => spec.check(section.input),
    }
}

fn build(section: &Section<'_>, limits: &InputLimits) -> Result<Box<dyn Pipeline>, BuildError> {
    let spec = match front_end(section.preprocess)? {
        FrontEnd::KaldiFbank(spec) => spec,
        FrontEnd::HtsatMel(spec) => {
            spec.check(section.input)?;
            let mut tensors = vec![TensorSpec::f32(section.input, spec.item_shape())];
            if let Some(name) = &spec.is_longer_input {
                tensors.push(TensorSpec::i64(name.clone(), vec![1]));
            }
            let preprocessor = HtsatPreprocessor::new(&spec, limits.get::<AudioLimits>())?;
            return Ok(Box::new(HtsatPipeline { tensors, preprocessor }));
        }
    };
    spec.check()?;
    let preprocessor = AudioPreprocessor::try_new(&spec, limits.get::<AudioLimits>())?;
    let shape = vec![spec.clips_per_input, 1, spec.num_mel_bins, spec.target_length];
    Ok(Box::new(OneTensor::new(section.input, shape, preprocessor)))
}

const EXTENSIONS: &[&str] = &["wav", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac"];

fn inputs_from_file(bytes: Vec<u8>, extension: &str) -> Vec<pb::input::Payload> {
    vec![pb::input::Payload::Audio(pb::Audio { data: bytes, format_hint: extension.to_string() })]
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::Audio(audio) => Ok(payload(audio.data, audio.format_hint)),
        other => Err(other),
    }
}

impl FillOne for AudioPreprocessor {
    type Value = EncodedAudio;

    fn fill(&self, audio: &EncodedAudio, out: &mut [f32]) -> Result<(), PreprocessError> {
        let hint = (!audio.format_hint.is_empty()).then_some(audio.format_hint.as_str());
        self.preprocess_into(&audio.data, hint, out).map_err(audio_error)
    }
}

fn audio_error(e: AudioError) -> PreprocessError {
    if e.is_input_error() { PreprocessError::input(e) } else { PreprocessError::Server(Box::new(e)) }
}

/// The `htsat_mel` pipeline: the features, and `is_longer` when the tower takes it.
struct HtsatPipeline {
    tensors: Vec<TensorSpec>,
    preprocessor: HtsatPreprocessor,
}

impl Pipeline for HtsatPipeline {
    fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    fn preprocess_into(
        &self,
        payload: &Payload,
        slots: &mut [Slot<'_>],
    ) -> Result<Observed, PreprocessError> {
        let audio = payload.expect_value::<EncodedAudio>()?;
        let hint = (!audio.format_hint.is_empty()).then_some(audio.format_hint.as_str());
        let features = slot(slots, 0)?.f32()?;
        let longer = self.preprocessor.preprocess_into(&audio.data, hint, features).map_err(audio_error)?;
        if self.tensors.len() > 1 {
            slot(slots, 1)?.i64()?[0] = i64::from(longer);
        }
        Ok(Observed::default())
    }
}
