//! `model.toml`: the description of one model folder.
//!
//! Every model-specific number (tensor names, image size, normalisation constants, tokenizer,
//! audio filterbank parameters, logit scales) lives in it, so a new model of the same family is a
//! new folder and never a code change. This module reads the header and each section's tower
//! fields; a section's `preprocess` table is read and checked by its modality's own section type
//! (`modality::<kind>`), so the manifest never lists the modalities by hand. A `family` fills in
//! the values a manifest leaves out from that family's defaults (`family.rs`) first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::family;
use crate::modality::{self, Modality, Section};

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
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Model name clients use; defaults to the folder name.
    pub name: Option<String>,
    /// Model family (`imagebind`, `openclip`, `siglip`): its preprocessing defaults fill what the
    /// manifest leaves out (see [`super::family`]).
    pub family: String,
    /// Human-readable description.
    pub description: String,
    /// Licence note of the weights and code (what a user must know before shipping the model).
    pub licence: String,
    /// Dimension of the shared embedding space; every tower must output it.
    pub embedding_dim: usize,
    /// One section per modality served, named after the modality (`[text]`, `[image]`, ...).
    pub encoders: BTreeMap<Modality, EncoderSpec>,
}

/// The top-level keys of `model.toml` that are not modality sections.
#[derive(Debug, Deserialize)]
struct Header {
    name: Option<String>,
    #[serde(default)]
    family: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    licence: String,
    embedding_dim: usize,
}

/// One ONNX tower and how its input is prepared.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSpec {
    /// ONNX file, relative to the model folder.
    pub onnx: PathBuf,
    /// Optional half-precision variant of `onnx` (same input and output names, f32 inputs and
    /// outputs), used instead when the server runs with `--fp16` on a GPU.
    #[serde(default)]
    pub onnx_fp16: Option<PathBuf>,
    /// Optional int8 variant of `onnx` (`tools/quantize.py`), used with `--precision int8`.
    #[serde(default)]
    pub onnx_int8: Option<PathBuf>,
    /// The worst cosine of `onnx_int8` against `onnx` on held-out reference inputs, as the
    /// quantizer measured it; an int8 tower without it is not served.
    #[serde(default)]
    pub int8_cosine: Option<f32>,
    /// Lowest recorded `int8_cosine` served (default 0.99).
    #[serde(default = "default_int8_min_cosine")]
    pub int8_min_cosine: f32,
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
    /// Modality-specific preprocessing parameters, read by the modality's own section type.
    pub preprocess: toml::Table,
}

/// The default lowest recorded int8 cosine a server accepts.
pub const DEFAULT_INT8_MIN_COSINE: f32 = 0.99;

fn default_int8_min_cosine() -> f32 {
    DEFAULT_INT8_MIN_COSINE
}

impl EncoderSpec {
    /// The section as a modality reads it, for the model in `model_dir`.
    pub fn section<'a>(&'a self, model_dir: &'a Path) -> Section<'a> {
        Section { preprocess: &self.preprocess, input: &self.input, model_dir }
    }
}

fn one() -> f32 {
    1.0
}

/// Dynamic batching limits of one encoder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingSpec {
    /// Largest number of tower rows in one ONNX run (an item is one row, a video one row per
    /// clip and crop).
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// Longest an input waits, in milliseconds, for others to join its batch once the encoder is
    /// free. 0 (the default) never waits: batches still form from whatever queued while the
    /// previous batch ran, so an idle server adds no latency.
    #[serde(default)]
    pub max_batch_delay_ms: f64,
    /// Most inputs waiting in the encoder's admission queue, counted in rows as above; beyond it
    /// requests are refused with RESOURCE_EXHAUSTED.
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
        let parse_error = |message: String| ManifestError::Parse { path: path.to_path_buf(), message };
        let mut table: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let family = table.get("family").and_then(toml::Value::as_str).unwrap_or_default().to_string();
        if !family.is_empty() {
            let invalid = |message: String| ManifestError::Invalid { path: path.to_path_buf(), message };
            let defaults = family::defaults(&family).ok_or_else(|| {
                invalid(format!(
                    "family: unknown family {family:?} (known: {})",
                    family::names().collect::<Vec<_>>().join(", ")
                ))
            })?;
            let defaults =
                defaults.map_err(|e| invalid(format!("family {family:?}: defaults unreadable: {e}")))?;
            family::apply(&mut table, defaults);
        }
        let mut encoders = BTreeMap::new();
        for modality in Modality::ALL {
            if let Some(section) = table.remove(modality.as_str()) {
                let spec = EncoderSpec::deserialize(section).map_err(|e| {
                    parse_error(format!("[{modality}]: {}", e.to_string().trim().replace('\n', " ")))
                })?;
                encoders.insert(modality, spec);
            }
        }
        let known = ["name", "family", "description", "licence", "embedding_dim"];
        if let Some(unknown) = table.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(parse_error(format!(
                "unknown key `{unknown}`: expected {} or a section named after a modality ({})",
                known.join(", "),
                Modality::ALL.map(Modality::as_str).join(", ")
            )));
        }
        let header = Header::deserialize(toml::Value::Table(table))
            .map_err(|e| parse_error(e.message().trim().to_string()))?;
        let manifest = Manifest {
            name: header.name,
            family: header.family,
            description: header.description,
            licence: header.licence,
            embedding_dim: header.embedding_dim,
            encoders,
        };
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
        self.manifest.encoders.keys().copied().collect()
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
            return Err(invalid(format!(
                "the manifest declares no encoder (a section named after a modality: {})",
                Modality::ALL.map(Modality::as_str).join(", ")
            )));
        }
        for (modality, spec) in &m.encoders {
            let section = modality.as_str();
            let Some(kind) = modality::kind(*modality) else {
                return Err(invalid(format!(
                    "[{section}]: bindery has no {section} pipeline in this version"
                )));
            };
            (kind.check)(&spec.section(&self.dir))
                .map_err(|e| invalid(format!("{section}.preprocess: {e}")))?;
            if let Some(half) = &spec.onnx_fp16 {
                self.require_file(&format!("{section}.onnx_fp16"), half, path)?;
            }
            if let Some(int8) = &spec.onnx_int8 {
                self.require_file(&format!("{section}.onnx_int8"), int8, path)?;
            }
            self.require_file(&format!("{section}.onnx"), &spec.onnx, path)?;
            if spec.input.is_empty() || spec.output.is_empty() {
                return Err(invalid(format!("{section}.input and {section}.output must be non-empty")));
            }
            if !spec.logit_scale.is_finite() || spec.logit_scale <= 0.0 {
                return Err(invalid(format!("{section}.logit_scale must be finite and positive")));
            }
            let batching = &spec.batching;
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
