//! The in-process baseline of `bindery load --in-process`: the same preprocessing code and the
//! same ONNX towers called directly, one blocking loop per concurrency level, with no gRPC, no
//! queue and no batching across requests. Comparing a served run with it gives the serving
//! overhead.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tonic::Code;

use super::LoadError;
use super::stats::Outcome;
use crate::engine::{Item, Limits, LoadedModel, Registry, StageTimes};
use crate::modality;
use crate::model::runtime;
use crate::model::tower::TowerOptions;
use crate::shared::pb;

/// Loaded models, called directly.
pub struct InProcess {
    model: Arc<LoadedModel>,
}

impl InProcess {
    /// Loads the models of `models_dir` as `bindery serve` would (same defaults) and picks `model`
    /// (empty: the default model).
    pub fn load(models_dir: &Path, model: &str) -> Result<Self, LoadError> {
        let failed = |message: String| LoadError::Invalid(format!("--in-process: {message}"));
        let runtime = runtime::init(None).map_err(|e| failed(e.to_string()))?;
        let registry =
            Registry::load_dir(&runtime, models_dir, None, &Limits::default(), &TowerOptions::default())
                .map_err(|e| failed(e.to_string()))?;
        let model = registry.resolve(model).map_err(|e| failed(e.to_string()))?;
        Ok(Self { model })
    }

    /// Embeds `request`'s inputs on a blocking thread, one encoder call per modality group, in
    /// tower-sized batches, and reports it as the load tool reports a reply.
    pub async fn call(self: &Arc<Self>, request: pb::EmbedRequest) -> Outcome {
        let this = Arc::clone(self);
        let items = request.inputs.len() as u64;
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || this.embed(request)).await;
        match done {
            Ok(Ok(times)) => {
                let us = |d: std::time::Duration| d.as_micros() as u64;
                let stages = [0, us(times.preprocess), us(times.inference), us(started.elapsed())];
                // The in-process baseline has no cache: every input is embedded.
                Outcome::Ok { items, stages: Some(stages), cache_hits: Some(0) }
            }
            Ok(Err(code)) => Outcome::Failed(format!("{code:?}")),
            Err(_) => Outcome::Failed(format!("{:?}", Code::Internal)),
        }
    }

    fn embed(&self, request: pb::EmbedRequest) -> Result<StageTimes, Code> {
        let items = request
            .inputs
            .into_iter()
            .map(|input| Some(Item { id: input.id, payload: modality::payload_from_proto(input.payload?)? }))
            .collect::<Option<Vec<_>>>()
            .ok_or(Code::InvalidArgument)?;
        let mut groups: Vec<Vec<Item>> = Vec::new();
        for item in items {
            let modality = item.payload.modality();
            match groups.iter_mut().find(|g| g[0].payload.modality() == modality) {
                Some(group) => group.push(item),
                None => groups.push(vec![item]),
            }
        }
        let mut times = StageTimes::default();
        for group in groups {
            let modality = group[0].payload.modality();
            let encoder = self.model.encoder(modality).ok_or(Code::InvalidArgument)?;
            encoder.embed_blocking(&self.model.name, &group, true, &mut times).map_err(|_| Code::Internal)?;
        }
        Ok(times)
    }
}
