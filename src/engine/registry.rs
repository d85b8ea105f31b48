//! The loaded models, by name, and the default model.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::encoder::{Encoder, Preprocessor};
use super::error::{EngineError, LoadError};
use super::limits::Limits;
use crate::modality::Modality;
use crate::modality::audio::AudioPreprocessor;
use crate::modality::image::ImagePreprocessor;
use crate::modality::point_cloud::PointCloudPreprocessor;
use crate::modality::text::TextPreprocessor;
use crate::model::manifest::{BatchingSpec, EncoderSpec, ModelDir};
use crate::model::runtime::Runtime;
use crate::model::tower::{Tower, TowerOptions};

/// A model with every encoder its manifest declares.
pub struct LoadedModel {
    /// Model name.
    pub name: String,
    /// Family from the manifest.
    pub family: String,
    /// Description from the manifest.
    pub description: String,
    /// Embedding dimension.
    pub dim: usize,
    // Shared with each encoder's batching threads.
    encoders: BTreeMap<Modality, Arc<Encoder>>,
}

impl LoadedModel {
    /// Loads every tower of `model`.
    pub fn load(
        runtime: &Runtime,
        model: &ModelDir,
        limits: &Limits,
        options: &TowerOptions,
    ) -> Result<Self, LoadError> {
        let m = &model.manifest;
        let dim = m.embedding_dim;
        let mut encoders = BTreeMap::new();
        let load = |modality,
                    preprocessor,
                    spec: (&Path, &str, f32, &BatchingSpec),
                    inputs: Vec<(String, Vec<usize>)>| {
            let (onnx, output, logit_scale, batching) = spec;
            let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
            let tower = Tower::load(runtime, &model.file(onnx), &names, output, dim, options)
                .map_err(|source| LoadError::Tower { model: model.name.clone(), modality, source })?;
            Ok::<_, LoadError>(Arc::new(Encoder {
                modality,
                preprocessor,
                tower,
                logit_scale,
                max_batch_size: batching.max_batch_size,
                max_batch_delay: batching.max_batch_delay(),
                queue_capacity: batching.queue_capacity,
                dim,
                inputs,
            }))
        };
        if let Some(spec) = &m.text {
            let text = TextPreprocessor::new(&spec.preprocess, &model.dir)
                .map_err(|source| LoadError::Text { model: model.name.clone(), source })?;
            let inputs = vec![(spec.input.clone(), vec![spec.preprocess.context_length])];
            encoders.insert(
                Modality::Text,
                load(Modality::Text, Preprocessor::Text(Box::new(text)), tower_spec(spec, options), inputs)?,
            );
        }
        if let Some(spec) = &m.image {
            let p = &spec.preprocess;
            let image = Preprocessor::Image(ImagePreprocessor::new(p, limits.image));
            let inputs = vec![(spec.input.clone(), vec![3, p.crop as usize, p.crop as usize])];
            encoders
                .insert(Modality::Image, load(Modality::Image, image, tower_spec(spec, options), inputs)?);
        }
        if let Some(spec) = &m.audio {
            let p = &spec.preprocess;
            let audio = AudioPreprocessor::try_new(p, limits.audio)
                .map_err(|source| LoadError::Audio { model: model.name.clone(), source })?;
            let audio = Preprocessor::Audio(audio);
            let inputs =
                vec![(spec.input.clone(), vec![p.clips_per_input, 1, p.num_mel_bins, p.target_length])];
            encoders
                .insert(Modality::Audio, load(Modality::Audio, audio, tower_spec(spec, options), inputs)?);
        }
        if let Some(spec) = &m.point_cloud {
            let p = &spec.preprocess;
            let points = PointCloudPreprocessor::new(p, limits.point_cloud);
            let inputs = vec![
                (spec.input.clone(), vec![p.num_group, p.group_size, points.channels()]),
                (p.center_input.clone(), vec![p.num_group, 3]),
            ];
            let points = Preprocessor::PointCloud(points);
            encoders.insert(
                Modality::PointCloud,
                load(Modality::PointCloud, points, tower_spec(spec, options), inputs)?,
            );
        }
        Ok(Self {
            name: model.name.clone(),
            family: m.family.clone(),
            description: m.description.clone(),
            dim,
            encoders,
        })
    }

    /// The encoder for `modality`, if this model has one.
    pub fn encoder(&self, modality: Modality) -> Option<&Encoder> {
        self.encoders.get(&modality).map(Arc::as_ref)
    }

    /// Modalities served, in a stable order.
    pub fn modalities(&self) -> Vec<Modality> {
        self.encoders.keys().copied().collect()
    }

    /// Every encoder.
    pub fn encoders(&self) -> impl Iterator<Item = &Encoder> {
        self.encoders.values().map(Arc::as_ref)
    }

    /// Every encoder, as handles its batching threads can keep.
    pub(crate) fn shared_encoders(&self) -> impl Iterator<Item = &Arc<Encoder>> {
        self.encoders.values()
    }
}

/// The tower-related fields of a manifest section.
fn tower_spec<'a, P>(
    spec: &'a EncoderSpec<P>,
    options: &TowerOptions,
) -> (&'a Path, &'a str, f32, &'a BatchingSpec) {
    let onnx = match (&spec.onnx_fp16, options.fp16) {
        (Some(half), true) => half,
        _ => &spec.onnx,
    };
    (onnx, &spec.output, spec.logit_scale, &spec.batching)
}

/// Every loaded model and the default one.
pub struct Registry {
    models: BTreeMap<String, Arc<LoadedModel>>,
    default_model: String,
}

impl Registry {
    /// Loads every subfolder of `dir` that holds a `model.toml`. `default_model` names the model
    /// used when a request names none; when `None`, a lone model is the default, and with several
    /// the first by name.
    pub fn load_dir(
        runtime: &Runtime,
        dir: &Path,
        default_model: Option<&str>,
        limits: &Limits,
        options: &TowerOptions,
    ) -> Result<Self, LoadError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|source| LoadError::ModelsDir { path: dir.to_path_buf(), source })?;
        let mut folders = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| LoadError::ModelsDir { path: dir.to_path_buf(), source })?;
            let path = entry.path();
            if path.join("model.toml").is_file() {
                folders.push(path);
            }
        }
        folders.sort();
        let mut manifests: BTreeMap<String, ModelDir> = BTreeMap::new();
        for folder in folders {
            let model = ModelDir::load(&folder)?;
            if let Some(first) = manifests.get(&model.name) {
                return Err(LoadError::DuplicateName {
                    name: model.name.clone(),
                    first: first.dir.clone(),
                    second: folder,
                });
            }
            manifests.insert(model.name.clone(), model);
        }
        if manifests.is_empty() {
            return Err(LoadError::NoModels(dir.to_path_buf()));
        }
        let available = manifests.keys().cloned().collect::<Vec<_>>().join(", ");
        let default_model = match default_model {
            Some(name) if manifests.contains_key(name) => name.to_string(),
            Some(name) => {
                return Err(LoadError::DefaultMissing { name: name.to_string(), available });
            }
            None => manifests.keys().next().cloned().unwrap_or_default(),
        };
        let mut models = BTreeMap::new();
        for (name, model) in &manifests {
            let loaded = LoadedModel::load(runtime, model, limits, options)?;
            tracing::info!(model = %name, modalities = ?loaded.modalities(), dir = %model.dir.display(), "model loaded");
            models.insert(name.clone(), Arc::new(loaded));
        }
        Ok(Self { models, default_model })
    }

    /// The model called `name`, or the default model when `name` is empty.
    pub fn resolve(&self, name: &str) -> Result<Arc<LoadedModel>, EngineError> {
        let key = if name.is_empty() { self.default_model.as_str() } else { name };
        self.models.get(key).cloned().ok_or_else(|| EngineError::ModelNotFound {
            name: name.to_string(),
            available: self.models.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Name of the default model.
    pub fn default_model(&self) -> &str {
        &self.default_model
    }

    /// Every model, by name.
    pub fn models(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.models.values()
    }
}
