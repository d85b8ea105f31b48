//! The loaded models, by name, and the default model.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::encoder::Encoder;
use super::error::{EngineError, LoadError};
use super::limits::Limits;
use crate::modality::{self, Modality, TensorSpec};
use crate::model::manifest::{EncoderSpec, ModelDir};
use crate::model::runtime::Runtime;
use crate::model::tower::{Precision, Tower, TowerOptions};

/// A model with every encoder its manifest declares.
pub struct LoadedModel {
    /// Model name.
    pub name: String,
    /// Family from the manifest.
    pub family: String,
    /// Description from the manifest.
    pub description: String,
    /// Licence note from the manifest.
    pub licence: String,
    /// Embedding dimension.
    pub dim: usize,
    // Shared with each encoder's batching threads.
    encoders: BTreeMap<Modality, Arc<Encoder>>,
}

/// Refuses a pipeline that would cut an input's padding (`trim_padding`) for a tower whose graph
/// fixes that input's last axis: ONNX Runtime would reject every cut batch.
fn check_cuttable_inputs(specs: &[TensorSpec], tower: &Tower, path: &Path) -> Result<(), String> {
    for spec in specs.iter().filter(|s| s.trailing_pad.is_some()) {
        let dims = tower.input_dims(&spec.name).map_err(|e| e.to_string())?;
        if let Some(&last) = dims.as_deref().and_then(<[i64]>::last)
            && last >= 0
        {
            return Err(format!(
                "trim_padding needs a tower that takes input {:?} at any length, but {} fixes its last \
                 axis at {last}: re-export it with a free length axis (tools/export_imagebind.py, \
                 export_openclip.py, export_languagebind.py and export_clap.py do) or remove \
                 trim_padding",
                spec.name,
                path.display()
            ));
        }
    }
    Ok(())
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
        for (&modality, spec) in &m.encoders {
            let kind = modality::kind(modality).ok_or_else(|| LoadError::Pipeline {
                model: model.name.clone(),
                modality,
                source: format!("bindery has no {modality} pipeline in this version").into(),
            })?;
            let pipeline = (kind.build)(&spec.section(&model.dir), &limits.inputs)
                .map_err(|source| LoadError::Pipeline { model: model.name.clone(), modality, source })?;
            if let Some(empty) = pipeline.tensors().iter().find(|t| t.item_len() == 0) {
                return Err(LoadError::Pipeline {
                    model: model.name.clone(),
                    modality,
                    source: format!("tower input {:?} would hold no values", empty.name).into(),
                });
            }
            let names: Vec<&str> = pipeline.tensors().iter().map(|t| t.name.as_str()).collect();
            let file = tower_file(spec, options).map_err(|reason| LoadError::Pipeline {
                model: model.name.clone(),
                modality,
                source: reason.into(),
            })?;
            let tower = Tower::load(runtime, &model.file(file), &names, &spec.output, dim, options)
                .map_err(|source| LoadError::Tower { model: model.name.clone(), modality, source })?;
            check_cuttable_inputs(pipeline.tensors(), &tower, &model.file(file)).map_err(|source| {
                LoadError::Pipeline { model: model.name.clone(), modality, source: source.into() }
            })?;
            let batching = &spec.batching;
            // The manifest's batch size and queue capacity count tower rows.
            let rows = pipeline.rows_per_item().max(1);
            let encoder = Encoder {
                modality,
                max_batch_size: (batching.max_batch_size / rows).max(1),
                queue_capacity: (batching.queue_capacity / rows).max(1),
                pipeline,
                tower,
                logit_scale: spec.logit_scale,
                max_batch_delay: batching.max_batch_delay(),
                dim,
            };
            encoders.insert(modality, Arc::new(encoder));
        }
        Ok(Self {
            name: model.name.clone(),
            family: m.family.clone(),
            description: m.description.clone(),
            licence: m.licence.clone(),
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

/// The ONNX file of a section in the server's precision: the manifest's variant when it names
/// one (the fp32 tower otherwise). An int8 variant is refused when its recorded cosine against
/// fp32 is missing or under the section's threshold.
fn tower_file<'a>(spec: &'a EncoderSpec, options: &TowerOptions) -> Result<&'a Path, String> {
    Ok(match (options.precision, &spec.onnx_fp16, &spec.onnx_int8) {
        (Precision::Fp16, Some(half), _) => half,
        (Precision::Int8, _, Some(int8)) => {
            let threshold = spec.int8_min_cosine;
            match spec.int8_cosine {
                Some(cosine) if cosine >= threshold => int8,
                Some(cosine) => {
                    return Err(format!(
                        "int8 tower {} has a recorded cosine of {cosine} against fp32, under the threshold \
                         {threshold} (int8_min_cosine): serve it with --precision fp32, or quantize it \
                         again (tools/quantize.py, --static for calibrated quantization)",
                        int8.display()
                    ));
                }
                None => {
                    return Err(format!(
                        "int8 tower {} has no recorded int8_cosine: measure it with tools/quantize.py \
                         before serving it",
                        int8.display()
                    ));
                }
            }
        }
        _ => &spec.onnx,
    })
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
