//! Video: decode the frames the clips need with FFmpeg, then scale, normalise and crop them into
//! `[clips x crops, 3, frames, size, size]`.
//!
//! The output reproduces `imagebind.data.load_and_transform_video_data` (imagebind-unofficial
//! 0.1.1, pytorchvideo 0.1.5, decoder `decord` 0.6.0) step by step:
//!
//! 1. index the video stream as decord does ([`decode`]): one frame per packet, frames in
//!    presentation order, the rate the container's average frame rate, the duration
//!    `frames / rate`;
//! 2. place the clips ([`sampling`]): pytorchvideo's `ConstantClipsPerVideoSampler` with exact
//!    rational arithmetic (the audio path's sampler), each clip the frames
//!    `ceil(rate * start) .. ceil(rate * end)` (decord's `get_clip`), of which
//!    `UniformTemporalSubsample` keeps `frames_per_clip`;
//! 3. decode only those frames to RGB24 (seeking to the key frame before each, FFmpeg's swscale
//!    converting as decord's filter graph does);
//! 4. per frame ([`transform`]): `/ 255`, `ShortSideScale` (torch bilinear, `align_corners=False`,
//!    on float), `NormalizeVideo` with the manifest's mean and std, and `SpatialCrop` (three
//!    crops along the long side).
//!
//! LanguageBind's video (`languagebind.video.processing_video`, upstream 7070c53, with
//! `video_decode_backend='decord'`) is the same stages with other manifest values:
//!
//! 1. the same decord-exact index;
//! 2. `sampler = "frames"`: one clip, `np.linspace(0, n - 1, frames_per_clip, dtype=int)` over
//!    decord's frame count `n` ([`sampling::linspace`]; numpy's `f64` rule, which torch's float32
//!    `linspace` does not always give);
//! 3. those frames decoded as above (where decord's own seek lands on other frames, as in an
//!    H.265 stream of the test fixtures, bindery decodes the frames the indices name);
//! 4. `/ 255`, `NormalizeVideo` *then* `ShortSideScale` (`normalize = "before_resize"`: bilinear
//!    scaling is linear, but the float rounding of the two orders differs), and one
//!    `CenterCropVideo` (`crops = 1`, `crop_rounding = "half_even"`: Python's `round`);
//! 5. no flip (`flip = "none"`, the only value): the reference ends in
//!    `RandomHorizontalFlipVideo(p=0.5)`, a training augmentation that makes its embedding
//!    random; bindery's embedding is the reference's with the flip pinned off.
//!
//! The tensor is `[1, 3, frames_per_clip, crop, crop]` per video. In segment mode the `frames`
//! sampler treats each window's frames (`ceil(rate * start) .. ceil(rate * end)`) as a whole
//! video and spreads its frames over them.
//!
//! The tower takes all of one video's clips as one item and averages their embeddings itself
//! (the reference model's forward does this for any input of 5 or more dimensions), so one video
//! is one item here, and counts [`Pipeline::rows_per_item`] rows in the batcher.
//!
//! Decoding needs the `video` cargo feature (FFmpeg's libraries); without it the modality is
//! registered, a model's `[video]` section loads, and each video input is answered as
//! unimplemented with what to install.

#[cfg(feature = "video")]
pub mod audio_track;
#[cfg(feature = "video")]
pub mod decode;
mod examples;
mod kind;
pub mod sampling;
pub mod transform;

use std::time::Duration;

use crate::modality::Span;
use crate::modality::segments::SegmentError;

pub use kind::{
    CropRounding, EncodedVideo, Flip, KIND, NormalizeAt, Sampler, VideoPreprocess, VideoWindow, payload,
};

/// What to install when the build has no video decoding.
pub const UNAVAILABLE: &str = "this bindery was built without video decoding: install FFmpeg's \
     development libraries (Debian: apt-get install libavformat-dev libavcodec-dev libswscale-dev \
     libavutil-dev libswresample-dev clang libclang-dev pkg-config) and build with \
     `--features video` (the Makefile does when pkg-config finds them)";

/// Size and work limits checked before and while decoding (the server's `--max-video-*` flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct VideoLimits {
    /// Largest encoded video accepted, in bytes.
    #[arg(id = "max_video_bytes", long = "max-video-bytes", value_name = "BYTES", default_value_t = VideoLimits::default().max_bytes)]
    pub max_bytes: usize,
    /// Longest video accepted, in seconds (as the container declares it, and as its frames count).
    #[arg(id = "max_video_seconds", long = "max-video-seconds", value_name = "SECONDS", default_value_t = VideoLimits::default().max_seconds)]
    pub max_seconds: f64,
    /// Largest frame accepted, in pixels (width x height).
    #[arg(id = "max_video_pixels", long = "max-video-pixels", value_name = "PIXELS", default_value_t = VideoLimits::default().max_pixels)]
    pub max_pixels: u64,
    /// Most frames decoded for one video (seeking decodes from the key frame before each frame
    /// the clips need).
    #[arg(id = "max_video_decoded_frames", long = "max-video-decoded-frames", value_name = "FRAMES", default_value_t = VideoLimits::default().max_decoded_frames)]
    pub max_decoded_frames: u64,
    /// Longest time spent demuxing and decoding one video, in milliseconds.
    #[arg(id = "max_video_decode_ms", long = "max-video-decode-ms", value_name = "MS", default_value_t = VideoLimits::default().max_decode_ms)]
    pub max_decode_ms: u64,
    /// Most windows one video is embedded in (segment mode); each counts the video's rows (15
    /// for ImageBind) in its encoder's batches and queue.
    #[arg(id = "max_video_segments", long = "max-video-segments", value_name = "SEGMENTS", default_value_t = VideoLimits::default().max_segments)]
    pub max_segments: usize,
}

impl Default for VideoLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            max_seconds: 3600.0,
            max_pixels: 3840 * 2160,
            max_decoded_frames: 5000,
            max_decode_ms: 30_000,
            max_segments: 120,
        }
    }
}

impl VideoLimits {
    /// The decode time limit.
    pub fn max_decode_time(&self) -> Duration {
        Duration::from_millis(self.max_decode_ms)
    }
}

/// Why a video input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// Zero-length payload.
    #[error("video is empty (0 bytes)")]
    Empty,
    /// The payload is over the byte limit; nothing was parsed.
    #[error("video is {bytes} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Payload size.
        bytes: usize,
        /// Configured limit.
        max: usize,
    },
    /// No container FFmpeg reads was recognised, or it could not be opened.
    #[error("not a video bindery can read: {0}")]
    UnrecognizedFormat(String),
    /// The container holds no video stream.
    #[error("the file contains no video stream")]
    NoVideoStream,
    /// The sound track was asked for (`with_audio`), and the file has none.
    #[error("the video has no audio track (with_audio asks for its embedding)")]
    NoAudioTrack,
    /// The sound track's codec has no decoder here.
    #[error("unsupported audio codec in the video: {0}")]
    UnsupportedAudioCodec(String),
    /// The sound track is longer than the audio limit.
    #[error("the video's audio track is longer than the audio limit of {max} s (at least {seconds:.1} s)")]
    AudioTrackTooLong {
        /// Duration decoded so far, in seconds.
        seconds: f64,
        /// Configured limit (`--max-audio-seconds`), in seconds.
        max: f64,
    },
    /// The video stream's codec has no decoder here.
    #[error("unsupported video codec: {0}")]
    UnsupportedCodec(String),
    /// The frame size is zero or over the pixel limit.
    #[error("video frames are {width}x{height}, {reason}")]
    BadDimensions {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// What is wrong with them.
        reason: String,
    },
    /// The video is longer than allowed.
    #[error("video is longer than the limit of {max} s ({seconds:.1} s)")]
    TooLong {
        /// Duration found, in seconds.
        seconds: f64,
        /// Configured limit, in seconds.
        max: f64,
    },
    /// The stream declares no usable average frame rate (the clip sampler needs one).
    #[error("the video stream declares no frame rate")]
    NoFrameRate,
    /// The stream has no frames, or a clip holds none.
    #[error("the video has no frames{0}")]
    NoFrames(String),
    /// Decoding needed more frames than allowed.
    #[error("decoding this video needs more than the limit of {max} decoded frames")]
    TooManyFrames {
        /// Configured limit.
        max: u64,
    },
    /// Decoding took longer than allowed.
    #[error("decoding this video took longer than the limit of {max_ms} ms")]
    DecodeTimeout {
        /// Configured limit.
        max_ms: u64,
    },
    /// The data is damaged: demuxing or decoding failed, or a frame the clips need is missing.
    #[error("corrupt or truncated video: {0}")]
    Corrupt(String),
    /// Segment mode's parameters are unusable, or give too many windows.
    #[error(transparent)]
    Segments(#[from] SegmentError),
    /// The manifest's video parameters cannot be used.
    #[error("invalid video preprocessing configuration: {0}")]
    InvalidConfig(String),
    /// The output slot has the wrong length.
    #[error("output slot holds {got} values, the video tensor needs {expected}")]
    OutputSize {
        /// Required length.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// FFmpeg failed in a way the input does not explain (allocation, a filter that will not
    /// open).
    #[error("internal video error: {0}")]
    Internal(String),
}

impl VideoError {
    /// Whether the input is at fault (as opposed to configuration or a bug in bindery).
    pub fn is_input_error(&self) -> bool {
        !matches!(
            self,
            VideoError::InvalidConfig(_) | VideoError::OutputSize { .. } | VideoError::Internal(_)
        )
    }
}

/// Decoded RGB24 frames, by their index in presentation order.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Packed RGB, `height * width * 3` bytes, rows without padding.
    pub rgb: Vec<u8>,
}

/// Prepares encoded videos for the video tower.
pub struct VideoPreprocessor {
    spec: VideoPreprocess,
    limits: VideoLimits,
}

impl VideoPreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits.
    pub fn new(spec: &VideoPreprocess, limits: VideoLimits) -> Self {
        Self { spec: spec.clone(), limits }
    }

    /// The limits this preprocessor enforces.
    pub fn limits(&self) -> &VideoLimits {
        &self.limits
    }

    /// Rows one video occupies (clips x crops).
    pub fn rows(&self) -> usize {
        self.spec.clips * self.spec.crops
    }

    /// Number of f32 values one video occupies: rows * 3 * frames * size * size.
    pub fn tensor_len(&self) -> usize {
        self.rows() * 3 * self.spec.frames_per_clip * self.spec.crop * self.spec.crop
    }

    /// Checks the byte limit and emptiness (no decoding).
    pub fn admit(&self, bytes: &[u8]) -> Result<(), VideoError> {
        if bytes.is_empty() {
            return Err(VideoError::Empty);
        }
        if bytes.len() > self.limits.max_bytes {
            return Err(VideoError::TooLarge { bytes: bytes.len(), max: self.limits.max_bytes });
        }
        Ok(())
    }

    /// The video's length in seconds as the clip sampler sees it (decord's: frames / average
    /// frame rate), from its packet index (nothing is decoded).
    #[cfg(feature = "video")]
    pub fn duration(&self, bytes: &[u8]) -> Result<f64, VideoError> {
        self.admit(bytes)?;
        let video = decode::Demuxed::open(bytes, &self.limits)?;
        let rate = video.frame_rate();
        if !(rate.is_finite() && rate > 0.0) {
            return Err(VideoError::NoFrameRate);
        }
        Ok(video.frame_count() as f64 / rate)
    }

    /// Without the `video` feature there is no decoder.
    #[cfg(not(feature = "video"))]
    pub fn duration(&self, bytes: &[u8]) -> Result<f64, VideoError> {
        let _ = bytes;
        Err(VideoError::Internal(UNAVAILABLE.into()))
    }

    /// Decodes the frames the clips need from `bytes` (of `window` only, when given) and writes
    /// the clips into `out`.
    #[cfg(feature = "video")]
    pub fn preprocess_into(
        &self,
        bytes: &[u8],
        window: Option<Span>,
        out: &mut [f32],
    ) -> Result<(), VideoError> {
        if out.len() != self.tensor_len() {
            return Err(VideoError::OutputSize { expected: self.tensor_len(), got: out.len() });
        }
        self.admit(bytes)?;
        let mut video = decode::Demuxed::open(bytes, &self.limits)?;
        let clips = sampling::clip_frames(&self.spec, video.frame_count(), video.frame_rate(), window)?;
        let mut wanted: Vec<usize> = clips.iter().flatten().copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        let frames = video.decode_frames(&wanted)?;
        tracing::debug!(
            frames = video.frame_count(),
            wanted = wanted.len(),
            decoded = video.frames_decoded(),
            "video decoded"
        );
        let transform = transform::ClipTransform::new(&self.spec);
        let clip_len = self.tensor_len() / self.spec.clips;
        for (indices, slot) in clips.iter().zip(out.chunks_exact_mut(clip_len)) {
            let clip: Vec<&Frame> = indices
                .iter()
                .map(|i| {
                    let at = wanted
                        .binary_search(i)
                        .map_err(|_| VideoError::Internal(format!("frame {i} was not decoded")))?;
                    frames.get(at).ok_or_else(|| VideoError::Internal(format!("frame {i} was not decoded")))
                })
                .collect::<Result<_, _>>()?;
            transform.clip_into(&clip, slot)?;
        }
        Ok(())
    }

    /// The sound track of the video in `bytes`, decoded as the audio path decodes a file.
    #[cfg(feature = "video")]
    pub fn audio_track(
        &self,
        bytes: &[u8],
        audio_limits: &crate::modality::audio::AudioLimits,
    ) -> Result<crate::modality::audio::decode::DecodedAudio, VideoError> {
        self.admit(bytes)?;
        audio_track::decode_audio_track(bytes, &self.limits, audio_limits)
    }

    /// Without the `video` feature there is no decoder.
    #[cfg(not(feature = "video"))]
    pub fn audio_track(
        &self,
        bytes: &[u8],
        audio_limits: &crate::modality::audio::AudioLimits,
    ) -> Result<crate::modality::audio::decode::DecodedAudio, VideoError> {
        let _ = (bytes, audio_limits);
        Err(VideoError::Internal(UNAVAILABLE.into()))
    }

    /// Without the `video` feature there is no decoder: every video is refused (the pipeline's
    /// admission answers first, as unimplemented).
    #[cfg(not(feature = "video"))]
    pub fn preprocess_into(
        &self,
        bytes: &[u8],
        window: Option<Span>,
        out: &mut [f32],
    ) -> Result<(), VideoError> {
        let _ = (bytes, window, out, &self.spec);
        Err(VideoError::Internal(UNAVAILABLE.into()))
    }
}

/// Whether this build decodes video.
pub const AVAILABLE: bool = cfg!(feature = "video");
