//! Audio as a bindery modality: the manifest section, the payload and the pipeline.
//!
//! `[audio.preprocess]`'s `front_end` selects the front end: `kaldi_fbank` (the default:
//! ImageBind's clips of Kaldi filterbanks, [`AudioPreprocess`]), `htsat_mel` (CLAP's log-mel
//! for an HTSAT tower, [`HtsatMelPreprocess`]) or `fbank_chunks` (LanguageBind's filterbank in
//! three chunks, [`FbankChunksPreprocess`]); the rest of the table is that front end's.
//!
//! Segment mode: `kaldi_fbank` and `fbank_chunks` run on each window as on a file of just its
//! samples (the file is decoded once, [`DecodedPart`]); `htsat_mel` embeds whole files only and
//! refuses windows.

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;

use super::decode::{self, DecodedAudio};
use super::fbank_chunks::{FbankChunksPreprocess, FbankChunksPreprocessor};
use super::htsat_mel::{HtsatMelPreprocess, HtsatPreprocessor};
use super::{AudioError, AudioLimits, AudioPreprocessor};
use crate::modality::segments::{SegmentError, Segments, sample_range};
use crate::modality::{
    Argument, BuildError, InputLimits, Kind, Observed, Part, Payload, PayloadValue, Pipeline,
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
    /// Segment mode's window length in seconds (0: the whole file).
    pub segment_seconds: f32,
    /// Segment mode's hop in seconds (0: the window length).
    pub hop_seconds: f32,
}

impl PayloadValue for EncodedAudio {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        part(&self.data);
        part(self.format_hint.as_bytes());
    }
}

/// An audio payload.
pub fn payload(data: Vec<u8>, format_hint: String) -> Payload {
    Payload::new(Modality::Audio, EncodedAudio { data, format_hint, segment_seconds: 0.0, hop_seconds: 0.0 })
}

/// Audio another input already decoded (a video's sound track), or a range of its samples: the
/// audio pipeline takes it from resampling on, exactly as it takes a decoded file.
#[derive(Debug)]
pub struct DecodedPart {
    /// The decoded track, shared by every part of one input.
    pub audio: Arc<DecodedAudio>,
    /// The samples of this part, at the track's own rate.
    pub range: Range<usize>,
    /// The input the track was decoded from: its bytes key the embedding cache.
    pub source: Payload,
}

impl PayloadValue for DecodedPart {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        part(b"decoded part of");
        part(self.source.modality().as_str().as_bytes());
        self.source.key_parts(part);
        part(&(self.range.start as u64).to_le_bytes());
        part(&(self.range.end as u64).to_le_bytes());
    }
}

/// An audio payload holding `range` of the samples of `audio`, decoded from `source`.
pub fn decoded_payload(audio: Arc<DecodedAudio>, range: Range<usize>, source: Payload) -> Payload {
    Payload::new(Modality::Audio, DecodedPart { audio, range, source })
}

/// The audio front ends a manifest can select (`front_end`).
enum FrontEnd {
    /// ImageBind's: clips of Kaldi filterbanks.
    KaldiFbank(AudioPreprocess),
    /// CLAP's: the HTSAT log-mel of `ClapFeatureExtractor`.
    HtsatMel(HtsatMelPreprocess),
    /// LanguageBind's: one Kaldi filterbank in three chunks.
    FbankChunks(FbankChunksPreprocess),
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
        "fbank_chunks" => Ok(FrontEnd::FbankChunks(parse_section(&rest)?)),
        other => Err(format!(
            "front_end: unknown front end {other:?} (known: kaldi_fbank, htsat_mel, fbank_chunks)"
        )),
    }
}

fn check(section: &Section<'_>) -> Result<(), String> {
    match front_end(section.preprocess)? {
        FrontEnd::KaldiFbank(spec) => spec.check(),
        FrontEnd::HtsatMel(spec) => spec.check(section.input),
        FrontEnd::FbankChunks(spec) => spec.check(),
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
        FrontEnd::FbankChunks(spec) => {
            spec.check()?;
            let preprocessor = FbankChunksPreprocessor::new(&spec, limits.get::<AudioLimits>())?;
            let tensors = [TensorSpec::f32(section.input, spec.item_shape())];
            let limits = limits.get::<AudioLimits>();
            return Ok(Box::new(AudioPipeline { tensors, preprocessor: Box::new(preprocessor), limits }));
        }
    };
    spec.check()?;
    let preprocessor = AudioPreprocessor::try_new(&spec, limits.get::<AudioLimits>())?;
    let shape = vec![spec.clips_per_input, 1, spec.num_mel_bins, spec.target_length];
    let limits = limits.get::<AudioLimits>();
    let tensors = [TensorSpec::f32(section.input, shape)];
    Ok(Box::new(AudioPipeline { tensors, preprocessor: Box::new(preprocessor), limits }))
}

/// A front end that takes decoded audio, so that the audio pipeline can hand it windows of a
/// file and sound tracks of videos ([`DecodedPart`]).
trait DecodedFrontEnd: Send + Sync {
    /// Decodes `bytes` and writes the tower input into `out`.
    fn preprocess_into(&self, bytes: &[u8], hint: Option<&str>, out: &mut [f32]) -> Result<(), AudioError>;
    /// The front end from resampling on.
    fn preprocess_decoded_into(&self, audio: &DecodedAudio, out: &mut [f32]) -> Result<(), AudioError>;
}

impl DecodedFrontEnd for AudioPreprocessor {
    fn preprocess_into(&self, bytes: &[u8], hint: Option<&str>, out: &mut [f32]) -> Result<(), AudioError> {
        AudioPreprocessor::preprocess_into(self, bytes, hint, out)
    }

    fn preprocess_decoded_into(&self, audio: &DecodedAudio, out: &mut [f32]) -> Result<(), AudioError> {
        AudioPreprocessor::preprocess_decoded_into(self, audio, out)
    }
}

impl DecodedFrontEnd for FbankChunksPreprocessor {
    fn preprocess_into(&self, bytes: &[u8], hint: Option<&str>, out: &mut [f32]) -> Result<(), AudioError> {
        FbankChunksPreprocessor::preprocess_into(self, bytes, hint, out)
    }

    fn preprocess_decoded_into(&self, audio: &DecodedAudio, out: &mut [f32]) -> Result<(), AudioError> {
        FbankChunksPreprocessor::preprocess_decoded_into(self, audio, out)
    }
}

/// The audio pipeline of the front ends that take decoded audio (`kaldi_fbank`,
/// `fbank_chunks`): encoded files, and audio other inputs decoded ([`DecodedPart`]).
struct AudioPipeline {
    tensors: [TensorSpec; 1],
    preprocessor: Box<dyn DecodedFrontEnd>,
    limits: AudioLimits,
}

fn preprocess_error(e: AudioError) -> PreprocessError {
    if e.is_input_error() { PreprocessError::input(e) } else { PreprocessError::Server(Box::new(e)) }
}

const EXTENSIONS: &[&str] = &["wav", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac"];

fn inputs_from_file(bytes: Vec<u8>, extension: &str) -> Vec<pb::input::Payload> {
    vec![pb::input::Payload::Audio(pb::Audio {
        data: bytes,
        format_hint: extension.to_string(),
        ..Default::default()
    })]
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::Audio(audio) => Ok(Payload::new(
            Modality::Audio,
            EncodedAudio {
                data: audio.data,
                format_hint: audio.format_hint,
                segment_seconds: audio.segment_seconds,
                hop_seconds: audio.hop_seconds,
            },
        )),
        other => Err(other),
    }
}

impl Pipeline for AudioPipeline {
    fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    fn admit(&self, payload: &Payload) -> Result<(), PreprocessError> {
        if let Some(audio) = payload.value::<EncodedAudio>() {
            Segments::of(audio.segment_seconds, audio.hop_seconds).map_err(PreprocessError::input)?;
        }
        Ok(())
    }

    fn splits(&self, payload: &Payload) -> bool {
        payload.value::<EncodedAudio>().is_some_and(|a| a.segment_seconds > 0.0)
    }

    /// Segment mode: the file decoded once, then one part per window of its samples (cut at
    /// the file's own rate, before resampling, so each window is what a file of just those
    /// samples would decode to).
    fn split(&self, payload: &Payload) -> Result<Vec<Part>, PreprocessError> {
        let audio = payload.expect_value::<EncodedAudio>()?;
        let Some(segments) =
            Segments::of(audio.segment_seconds, audio.hop_seconds).map_err(PreprocessError::input)?
        else {
            return Ok(vec![Part::whole(payload.clone())]);
        };
        let hint = (!audio.format_hint.is_empty()).then_some(audio.format_hint.as_str());
        let decoded = decode::decode(&audio.data, hint, &self.limits).map_err(preprocess_error)?;
        let (rate, total) = (decoded.sample_rate, decoded.frames());
        let windows = segments
            .windows(total as f64 / f64::from(rate), self.limits.max_segments)
            .map_err(PreprocessError::input)?;
        let decoded = Arc::new(decoded);
        Ok(windows
            .into_iter()
            .map(|span| Part {
                payload: decoded_payload(
                    Arc::clone(&decoded),
                    sample_range(span, rate, total),
                    payload.clone(),
                ),
                span: Some(span),
            })
            .collect())
    }

    fn preprocess_into(
        &self,
        payload: &Payload,
        slots: &mut [Slot<'_>],
    ) -> Result<Observed, PreprocessError> {
        let out = slot(slots, 0)?.f32()?;
        let done = if let Some(part) = payload.value::<DecodedPart>() {
            preprocess_part(self.preprocessor.as_ref(), part, out)
        } else {
            let audio = payload.expect_value::<EncodedAudio>()?;
            let hint = (!audio.format_hint.is_empty()).then_some(audio.format_hint.as_str());
            self.preprocessor.preprocess_into(&audio.data, hint, out)
        };
        done.map_err(preprocess_error)?;
        Ok(Observed::default())
    }
}

/// The pipeline after decoding, on the samples of `part`.
fn preprocess_part(p: &dyn DecodedFrontEnd, part: &DecodedPart, out: &mut [f32]) -> Result<(), AudioError> {
    let (audio, range) = (&part.audio, part.range.clone());
    if range.start == 0 && range.end == audio.frames() {
        return p.preprocess_decoded_into(audio, out);
    }
    let channels = audio
        .channels
        .iter()
        .map(|c| c.get(range.clone()).map(<[f32]>::to_vec))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            AudioError::Internal(format!("samples {range:?} of a track of {} asked for", audio.frames()))
        })?;
    p.preprocess_decoded_into(&DecodedAudio { sample_rate: audio.sample_rate, channels }, out)
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

    /// Segment mode is not offered by this front end: it embeds whole files only, so a request
    /// for windows is refused rather than answered with one whole-file embedding.
    fn admit(&self, payload: &Payload) -> Result<(), PreprocessError> {
        if let Some(audio) = payload.value::<EncodedAudio>()
            && Segments::of(audio.segment_seconds, audio.hop_seconds)
                .map_err(PreprocessError::input)?
                .is_some()
        {
            return Err(PreprocessError::input(SegmentError::Invalid(
                "this model's audio front end (htsat_mel) embeds whole files only".into(),
            )));
        }
        Ok(())
    }

    fn preprocess_into(
        &self,
        payload: &Payload,
        slots: &mut [Slot<'_>],
    ) -> Result<Observed, PreprocessError> {
        let audio = payload.expect_value::<EncodedAudio>()?;
        let hint = (!audio.format_hint.is_empty()).then_some(audio.format_hint.as_str());
        let features = slot(slots, 0)?.f32()?;
        let longer =
            self.preprocessor.preprocess_into(&audio.data, hint, features).map_err(preprocess_error)?;
        if self.tensors.len() > 1 {
            slot(slots, 1)?.i64()?[0] = i64::from(longer);
        }
        Ok(Observed::default())
    }
}
