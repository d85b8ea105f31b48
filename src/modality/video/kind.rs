//! Video as a bindery modality: the manifest section, the payload and the pipeline.

use std::sync::Arc;

use serde::Deserialize;

use super::{UNAVAILABLE, VideoError, VideoLimits, VideoPreprocessor};
use crate::modality::audio::{self, AudioLimits};
use crate::modality::image::check_mean_std;
use crate::modality::segments::{Segments, sample_range};
use crate::modality::{
    Argument, BuildError, InputLimits, Kind, Observed, Part, Payload, PayloadValue, Pipeline,
    PreprocessError, Section, Slot, Span, TensorSpec, limits_of, parse_section, slot,
};
use crate::shared::{Modality, pb};

/// Registration of video.
pub const KIND: Kind = Kind {
    modality: Modality::Video,
    check,
    build,
    from_proto,
    extensions: EXTENSIONS,
    inputs_from_file,
    limits: limits_of::<VideoLimits>(),
    argument: Argument::Files,
    examples: Some(super::examples::examples),
    fuzz: FUZZ,
};

#[cfg(feature = "video")]
const FUZZ: &[crate::modality::FuzzTarget] = &[("video", super::decode::fuzz_demux as fn(&[u8]))];
#[cfg(not(feature = "video"))]
const FUZZ: &[crate::modality::FuzzTarget] = &[];

/// How the frames of a video are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// `clips` clips of `clip_duration` seconds spread over the video (pytorchvideo's
    /// `ConstantClipsPerVideoSampler`), `frames_per_clip` frames of each (ImageBind).
    Clips,
    /// One clip of `frames_per_clip` frames spread over the whole video (LanguageBind's way).
    Frames,
}

/// Where `NormalizeVideo` runs relative to `ShortSideScale`. Bilinear scaling is linear, so the
/// two orders differ only in float rounding; each reference's own order keeps its tensors exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalizeAt {
    /// Scale, then normalise (ImageBind's `load_and_transform_video_data`).
    #[default]
    AfterResize,
    /// Normalise the decoded frame, then scale it (LanguageBind's `get_video_transform`).
    BeforeResize,
}

/// How a single centre crop (`crops = 1`) is placed when the margin `side - crop` is odd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropRounding {
    /// `ceil(margin / 2)`: pytorchvideo's `uniform_crop` (ImageBind's `SpatialCrop`).
    #[default]
    Ceil,
    /// Python's `round(margin / 2.0)`, halves to even: torchvision's `CenterCropVideo`
    /// (LanguageBind).
    HalfEven,
}

/// Horizontal flipping. LanguageBind's transform ends in `RandomHorizontalFlipVideo(p=0.5)`, a
/// training augmentation that makes its embedding random; bindery never flips, which is the
/// reference with the flip pinned off, so `"none"` is the only value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flip {
    /// No flip.
    #[default]
    None,
}

/// Video preprocessing (`[video.preprocess]`): clip and frame sampling, short-side scaling,
/// normalisation and spatial crops, into `[clips x crops, 3, frames_per_clip, crop, crop]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoPreprocess {
    /// How clips are placed.
    pub sampler: Sampler,
    /// Clips per video (1 for the `frames` sampler).
    pub clips: usize,
    /// Length of each clip in seconds (`clips` sampler; the `frames` sampler ignores it).
    #[serde(default)]
    pub clip_duration: Option<f64>,
    /// Frames kept from each clip (`UniformTemporalSubsample`).
    pub frames_per_clip: usize,
    /// The short side is scaled to this many pixels.
    pub size: usize,
    /// Side of each square crop.
    pub crop: usize,
    /// Crops per clip: 3 (start, centre, end of the long side) or 1 (centre).
    pub crops: usize,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
    /// Normalise after scaling (default) or before.
    #[serde(default)]
    pub normalize: NormalizeAt,
    /// Rounding of the single centre crop's origin.
    #[serde(default)]
    pub crop_rounding: CropRounding,
    /// Horizontal flip: `"none"` (the default and only value).
    #[serde(default)]
    pub flip: Flip,
}

impl VideoPreprocess {
    fn check(&self) -> Result<(), String> {
        if self.clips == 0 || self.frames_per_clip == 0 || self.size == 0 || self.crop == 0 {
            return Err("clips, frames_per_clip, size and crop must all be positive".into());
        }
        match (self.sampler, self.clip_duration) {
            (Sampler::Clips, None) => return Err("the clips sampler needs clip_duration".into()),
            (Sampler::Clips, Some(d)) if !(d.is_finite() && d > 0.0) => {
                return Err("clip_duration must be a positive number of seconds".into());
            }
            // The frames sampler ignores it (one clip is the whole video or window).
            _ => {}
        }
        if self.sampler == Sampler::Frames && self.clips != 1 {
            return Err("the frames sampler takes one clip: set clips = 1".into());
        }
        if self.crops != 1 && self.crops != 3 {
            return Err(format!("crops must be 1 or 3, not {}", self.crops));
        }
        if self.crop_rounding != CropRounding::Ceil && self.crops != 1 {
            return Err("crop_rounding applies to a single centre crop: set crops = 1".into());
        }
        if self.crop > self.size {
            return Err(format!("crop ({}) must not exceed size ({})", self.crop, self.size));
        }
        check_mean_std(&self.mean, &self.std)
    }
}

/// An encoded video as the request carried it.
#[derive(Debug, Clone, Default)]
pub struct EncodedVideo {
    /// File bytes.
    pub data: Vec<u8>,
    /// Format hint such as "mp4" (may be empty); the content decides.
    pub format_hint: String,
    /// Embed the sound track too (with the model's audio pipeline).
    pub with_audio: bool,
    /// Segment mode's window length in seconds (0: the whole video).
    pub segment_seconds: f32,
    /// Segment mode's hop in seconds (0: the window length).
    pub hop_seconds: f32,
}

/// One window of a video (segment mode): the video's pipeline on that window alone.
#[derive(Debug)]
pub struct VideoWindow {
    /// The video payload the window is part of.
    pub source: Payload,
    /// The window.
    pub window: Span,
}

impl PayloadValue for VideoWindow {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        part(b"window of");
        self.source.key_parts(part);
        part(&self.window.start.to_le_bytes());
        part(&self.window.end.to_le_bytes());
    }
}

impl PayloadValue for EncodedVideo {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        // The container is probed from the content, so the hint does not change the embedding.
        part(&self.data);
    }
}

/// A video payload.
pub fn payload(video: EncodedVideo) -> Payload {
    Payload::new(Modality::Video, video)
}

fn check(section: &Section<'_>) -> Result<(), String> {
    parse_section::<VideoPreprocess>(section.preprocess)?.check()
}

fn build(section: &Section<'_>, limits: &InputLimits) -> Result<Box<dyn Pipeline>, BuildError> {
    let spec: VideoPreprocess = parse_section(section.preprocess)?;
    spec.check()?;
    let preprocessor = VideoPreprocessor::new(&spec, limits.get::<VideoLimits>());
    let shape = vec![preprocessor.rows(), 3, spec.frames_per_clip, spec.crop, spec.crop];
    Ok(Box::new(VideoPipeline {
        tensors: [TensorSpec::f32(section.input, shape)],
        preprocessor,
        audio_limits: limits.get::<AudioLimits>(),
    }))
}

/// The video pipeline: one tensor of all of a video's clips.
struct VideoPipeline {
    tensors: [TensorSpec; 1],
    preprocessor: VideoPreprocessor,
    /// Bounds the sound track (`with_audio`) as an audio file is bounded.
    audio_limits: AudioLimits,
}

fn preprocess_error(e: VideoError) -> PreprocessError {
    if e.is_input_error() { PreprocessError::input(e) } else { PreprocessError::Server(Box::new(e)) }
}

impl Pipeline for VideoPipeline {
    fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    fn rows_per_item(&self) -> usize {
        self.preprocessor.rows()
    }

    fn admit(&self, payload: &Payload) -> Result<(), PreprocessError> {
        if !super::AVAILABLE {
            return Err(PreprocessError::Unimplemented(UNAVAILABLE.into()));
        }
        if let Some(window) = payload.value::<VideoWindow>() {
            // A part of a video admitted whole.
            let video = window.source.expect_value::<EncodedVideo>()?;
            return self.preprocessor.admit(&video.data).map_err(preprocess_error);
        }
        let video = payload.expect_value::<EncodedVideo>()?;
        self.preprocessor.admit(&video.data).map_err(preprocess_error)?;
        Segments::of(video.segment_seconds, video.hop_seconds)
            .map_err(|e| preprocess_error(VideoError::from(e)))?;
        Ok(())
    }

    fn splits(&self, payload: &Payload) -> bool {
        payload.value::<EncodedVideo>().is_some_and(|v| v.with_audio || v.segment_seconds > 0.0)
    }

    /// The video, then its sound track (decoded here once, handed to the audio pipeline); in
    /// segment mode the same per window, windows in order.
    fn split(&self, payload: &Payload) -> Result<Vec<Part>, PreprocessError> {
        let video = payload.expect_value::<EncodedVideo>()?;
        let track = if video.with_audio {
            let track =
                self.preprocessor.audio_track(&video.data, &self.audio_limits).map_err(preprocess_error)?;
            Some(Arc::new(track))
        } else {
            None
        };
        let sound = |span: Option<Span>| {
            track.as_ref().map(|t| {
                let range = match span {
                    None => 0..t.frames(),
                    Some(s) => sample_range(s, t.sample_rate, t.frames()),
                };
                Part { payload: audio::decoded_payload(Arc::clone(t), range, payload.clone()), span }
            })
        };
        let segments = Segments::of(video.segment_seconds, video.hop_seconds)
            .map_err(|e| preprocess_error(VideoError::from(e)))?;
        let Some(segments) = segments else {
            return Ok(std::iter::once(Part::whole(payload.clone())).chain(sound(None)).collect());
        };
        let duration = self.preprocessor.duration(&video.data).map_err(preprocess_error)?;
        let limits = self.preprocessor.limits();
        let windows = segments
            .windows(duration, limits.max_segments)
            .map_err(|e| preprocess_error(VideoError::from(e)))?;
        let mut parts = Vec::with_capacity(windows.len() * (1 + usize::from(track.is_some())));
        for window in windows {
            let value = VideoWindow { source: payload.clone(), window };
            parts.push(Part { payload: Payload::new(Modality::Video, value), span: Some(window) });
            parts.extend(sound(Some(window)));
        }
        Ok(parts)
    }

    fn preprocess_into(
        &self,
        payload: &Payload,
        slots: &mut [Slot<'_>],
    ) -> Result<Observed, PreprocessError> {
        let (video, window) = match payload.value::<VideoWindow>() {
            Some(w) => (w.source.expect_value::<EncodedVideo>()?, Some(w.window)),
            None => (payload.expect_value::<EncodedVideo>()?, None),
        };
        self.preprocessor
            .preprocess_into(&video.data, window, slot(slots, 0)?.f32()?)
            .map_err(preprocess_error)?;
        Ok(Observed::default())
    }
}

const EXTENSIONS: &[&str] = &["mp4", "mov", "m4v", "mkv", "webm", "avi"];

fn inputs_from_file(bytes: Vec<u8>, extension: &str) -> Vec<pb::input::Payload> {
    vec![pb::input::Payload::Video(pb::Video {
        data: bytes,
        format_hint: extension.to_string(),
        ..Default::default()
    })]
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::Video(v) => Ok(payload(EncodedVideo {
            data: v.data,
            format_hint: v.format_hint,
            with_audio: v.with_audio,
            segment_seconds: v.segment_seconds,
            hop_seconds: v.hop_seconds,
        })),
        other => Err(other),
    }
}
