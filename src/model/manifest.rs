//! `model.toml`: the description of one model folder.
//!
//! Every model-specific number (tensor names, image size, normalisation constants, tokenizer,
//! audio filterbank parameters, logit scales) lives here, so a new model of the same family is a
//! new folder and never a code change.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::modality::Modality;

/// Errors found while reading or validating a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path of the manifest.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML or does not match the schema.
    #[error("{path} is not a valid model manifest: {message}")]
    Parse {
        /// Path of the manifest.
        path: PathBuf,
        /// What the parser reported.
        message: String,
    },
    /// The manifest parsed but a value is out of range or inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// Path of the manifest.
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
}

/// A parsed, validated `model.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Model name clients use; defaults to the folder name.
    pub name: Option<String>,
    /// Model family (informational, e.g. `imagebind`).
    #[serde(default)]
    pub family: String,
    /// Human-readable description.
    #[serde(default)]
    pub description: String,
    /// Dimension of the shared embedding space; every tower must output it.
    pub embedding_dim: usize,
    /// Text tower.
    pub text: Option<EncoderSpec<TextPreprocess>>,
    /// Image (vision) tower.
    pub image: Option<EncoderSpec<ImagePreprocess>>,
    /// Audio tower.
    pub audio: Option<EncoderSpec<AudioPreprocess>>,
    /// Point-cloud tower (PointBERT-style, ULIP binding).
    pub point_cloud: Option<EncoderSpec<PointCloudPreprocess>>,
}

/// One ONNX tower and how its input is prepared.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec<P> {
    /// ONNX file, relative to the model folder.
    pub onnx: PathBuf,
    /// Optional half-precision variant of `onnx` (same input and output names, f32 inputs and
    /// outputs), used instead when the server runs with `--fp16` on a GPU.
    #[serde(default)]
    pub onnx_fp16: Option<PathBuf>,
    /// Name of the tower's input tensor.
    pub input: String,
    /// Name of the tower's output tensor.
    pub output: String,
    /// Logit scale the reference model applies to this modality (1.0 when it applies none).
    #[serde(default = "one")]
    pub logit_scale: f32,
    /// Dynamic batching limits for this tower.
    #[serde(default)]
    pub batching: BatchingSpec,
    /// Modality-specific preprocessing parameters.
    pub preprocess: P,
}

fn one() -> f32 {
    1.0
}

/// Dynamic batching limits of one encoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingSpec {
    /// Largest number of items in one ONNX run.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// Longest an input waits, in milliseconds, for others to join its batch once the encoder is
    /// free. 0 (the default) never waits: batches still form from whatever queued while the
    /// previous batch ran, so an idle server adds no latency.
    #[serde(default)]
    pub max_batch_delay_ms: f64,
    /// Most inputs waiting in the encoder's admission queue; beyond it requests are refused with
    /// RESOURCE_EXHAUSTED.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

fn default_max_batch_size() -> usize {
    32
}

fn default_queue_capacity() -> usize {
    512
}

impl Default for BatchingSpec {
    fn default() -> Self {
        Self {
            max_batch_size: default_max_batch_size(),
            max_batch_delay_ms: 0.0,
            queue_capacity: default_queue_capacity(),
        }
    }
}

impl BatchingSpec {
    /// `max_batch_delay_ms` as a duration.
    pub fn max_batch_delay(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.max_batch_delay_ms.max(0.0) / 1000.0)
    }
}

/// Text preprocessing: CLIP byte-level BPE with a fixed context.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextPreprocess {
    /// `tokenizer.json` (Hugging Face `tokenizers` format), relative to the model folder.
    pub tokenizer: PathBuf,
    /// Number of token ids the tower takes (77 for CLIP/ImageBind).
    pub context_length: usize,
    /// Start-of-text id.
    pub start_token: u32,
    /// End-of-text id; kept as the last id when the text is truncated.
    pub end_token: u32,
    /// Id used to pad to `context_length`.
    pub pad_token: u32,
}

/// Resampling filter used to scale images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    /// PIL `BICUBIC` (a = -0.5), antialiased.
    Bicubic,
    /// PIL `BILINEAR`, antialiased.
    Bilinear,
}

/// Image preprocessing: resize short side, center crop, normalise (CHW, f32).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePreprocess {
    /// The short side is resized to this many pixels.
    pub resize: u32,
    /// Side of the square center crop.
    pub crop: u32,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// Per-channel mean (RGB) subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub std: [f32; 3],
}

/// Audio preprocessing: resample, clip sampling, Kaldi filterbank, normalisation.
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

/// Point-cloud preprocessing: sampling, normalisation and PointBERT grouping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointCloudPreprocess {
    /// Points kept per cloud (farthest point sampling down, deterministic repetition up).
    pub npoints: usize,
    /// Number of groups (centres chosen by farthest point sampling).
    pub num_group: usize,
    /// Points per group (nearest neighbours of each centre).
    pub group_size: usize,
    /// Whether the tower takes colour: 6 channels (xyz + rgb) instead of 3.
    pub use_color: bool,
    /// Colour used for every point when the input has none (ULIP-2 uses 0.4).
    #[serde(default = "default_point_color")]
    pub default_color: f32,
    /// Fewest points (after dropping non-finite ones) a cloud must have.
    #[serde(default = "default_min_points")]
    pub min_points: usize,
    /// Name of the tower's second input, the group centres `[B, G, 3]`; the manifest's `input`
    /// names the neighbourhoods `[B, G, K, C]`.
    pub center_input: String,
    /// Points sampled from a mesh surface (OBJ, PLY with faces) before preprocessing.
    #[serde(default = "default_mesh_samples")]
    pub mesh_samples: usize,
}

fn default_point_color() -> f32 {
    0.4
}

fn default_min_points() -> usize {
    1
}

fn default_mesh_samples() -> usize {
    10_000
}

/// Finite and greater than zero (NaN is not).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// A manifest with the folder it came from.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// Resolved model name.
    pub name: String,
    /// Folder holding `model.toml` and the files it names.
    pub dir: PathBuf,
    /// The parsed manifest.
    pub manifest: Manifest,
}

impl ModelDir {
    /// Reads and validates `<dir>/model.toml`.
    pub fn load(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join("model.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ManifestError::Read { path: path.clone(), source })?;
        Self::parse(dir, &path, &text)
    }

    /// Parses and validates manifest text; `path` is only used in error messages.
    pub fn parse(dir: &Path, path: &Path, text: &str) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text)
            .map_err(|e| ManifestError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        let name = match &manifest.name {
            Some(n) => n.clone(),
            None => dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let model = Self { name, dir: dir.to_path_buf(), manifest };
        model.validate(path)?;
        Ok(model)
    }

    /// Absolute path of a file named in the manifest.
    pub fn file(&self, relative: &Path) -> PathBuf {
        self.dir.join(relative)
    }

    /// Modalities this model has a tower for.
    pub fn modalities(&self) -> Vec<Modality> {
        let m = &self.manifest;
        let mut out = Vec::new();
        if m.text.is_some() {
            out.push(Modality::Text);
        }
        if m.image.is_some() {
            out.push(Modality::Image);
        }
        if m.audio.is_some() {
            out.push(Modality::Audio);
        }
        if m.point_cloud.is_some() {
            out.push(Modality::PointCloud);
        }
        out
    }

    fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let invalid = |message: String| ManifestError::Invalid { path: path.to_path_buf(), message };
        let m = &self.manifest;
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(format!(
                "model name {:?} must be non-empty and use only letters, digits, '-', '_' and '.'",
                self.name
            )));
        }
        if m.embedding_dim == 0 {
            return Err(invalid("embedding_dim must be positive".into()));
        }
        if self.modalities().is_empty() {
            return Err(invalid("the manifest declares no encoder ([text], [image] or [audio])".into()));
        }
        let mut towers: Vec<(&str, &Path, &str, &str, f32, &BatchingSpec)> = Vec::new();
        if let Some(t) = &m.text {
            towers.push(("text", &t.onnx, &t.input, &t.output, t.logit_scale, &t.batching));
            let p = &t.preprocess;
            if p.context_length < 2 {
                return Err(invalid("text.preprocess.context_length must be at least 2".into()));
            }
            self.require_file("text.preprocess.tokenizer", &p.tokenizer, path)?;
        }
        if let Some(i) = &m.image {
            towers.push(("image", &i.onnx, &i.input, &i.output, i.logit_scale, &i.batching));
            let p = &i.preprocess;
            if p.crop == 0 || p.resize < p.crop {
                return Err(invalid(format!(
                    "image.preprocess: crop ({}) must be positive and no larger than resize ({})",
                    p.crop, p.resize
                )));
            }
            if p.std.iter().any(|s| !s.is_finite() || *s <= 0.0) || p.mean.iter().any(|v| !v.is_finite()) {
                return Err(invalid("image.preprocess: mean must be finite and std positive".into()));
            }
        }
        if let Some(a) = &m.audio {
            towers.push(("audio", &a.onnx, &a.input, &a.output, a.logit_scale, &a.batching));
            let p = &a.preprocess;
            if p.sample_rate == 0
                || p.clips_per_input == 0
                || p.num_mel_bins == 0
                || p.target_length == 0
                || !positive(p.clip_duration)
                || !positive(p.frame_length_ms)
                || !positive(p.frame_shift_ms)
                || !positive(f64::from(p.std))
            {
                return Err(invalid(
                    "audio.preprocess: sample_rate, clips_per_input, num_mel_bins, target_length, \
                     clip_duration, frame_length_ms, frame_shift_ms and std must all be positive"
                        .into(),
                ));
            }
        }
        if let Some(p) = &m.point_cloud {
            towers.push(("point_cloud", &p.onnx, &p.input, &p.output, p.logit_scale, &p.batching));
            let pp = &p.preprocess;
            if pp.npoints == 0 || pp.num_group == 0 || pp.group_size == 0 || pp.mesh_samples == 0 {
                return Err(invalid(
                    "point_cloud.preprocess: npoints, num_group, group_size and mesh_samples must be positive".into(),
                ));
            }
            if pp.num_group > pp.npoints || pp.group_size > pp.npoints {
                return Err(invalid(format!(
                    "point_cloud.preprocess: num_group ({}) and group_size ({}) cannot exceed npoints ({})",
                    pp.num_group, pp.group_size, pp.npoints
                )));
            }
            if pp.center_input.is_empty() || pp.center_input == p.input {
                return Err(invalid(
                    "point_cloud.preprocess.center_input must name the tower's second input".into(),
                ));
            }
        }
        let halves = [
            ("text", m.text.as_ref().and_then(|t| t.onnx_fp16.as_deref())),
            ("image", m.image.as_ref().and_then(|t| t.onnx_fp16.as_deref())),
            ("audio", m.audio.as_ref().and_then(|t| t.onnx_fp16.as_deref())),
            ("point_cloud", m.point_cloud.as_ref().and_then(|t| t.onnx_fp16.as_deref())),
        ];
        for (section, half) in halves {
            if let Some(half) = half {
                self.require_file(&format!("{section}.onnx_fp16"), half, path)?;
            }
        }
        for (section, onnx, input, output, logit_scale, batching) in towers {
            self.require_file(&format!("{section}.onnx"), onnx, path)?;
            if input.is_empty() || output.is_empty() {
                return Err(invalid(format!("{section}.input and {section}.output must be non-empty")));
            }
            if !logit_scale.is_finite() || logit_scale <= 0.0 {
                return Err(invalid(format!("{section}.logit_scale must be finite and positive")));
            }
            if batching.max_batch_size == 0 || batching.queue_capacity == 0 {
                return Err(invalid(format!(
                    "{section}.batching: max_batch_size and queue_capacity must be positive"
                )));
            }
            if !(0.0..=10_000.0).contains(&batching.max_batch_delay_ms) {
                return Err(invalid(format!(
                    "{section}.batching.max_batch_delay_ms must be between 0 and 10000, got {}",
                    batching.max_batch_delay_ms
                )));
            }
        }
        Ok(())
    }

    fn require_file(&self, field: &str, relative: &Path, path: &Path) -> Result<(), ManifestError> {
        let full = self.file(relative);
        if full.is_file() {
            Ok(())
        } else {
            Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                message: format!("{field} names {}, which does not exist", full.display()),
            })
        }
    }
}
