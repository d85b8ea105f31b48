//! `Similarity` and `Classify`: cosine matrices and zero-shot label probabilities over inputs of
//! any modality, in the shared space of one model.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::{convert, pb};
use crate::engine::{
    EmbedOptions, Embedded, Engine, EngineError, Item, ItemLimitError, Limits, LoadedModel, Payload,
    check_count,
};
use crate::modality::Modality;
use crate::store::vector::{self, VectorError};

/// Most label prompts embedded in one engine call (prompts of one label stay together).
const PROMPTS_PER_CALL: usize = 64;

/// Label embeddings kept across calls.
const LABEL_CACHE_ENTRIES: usize = 16 * 1024;

/// Why a `Similarity` or `Classify` request failed.
#[derive(Debug, thiserror::Error)]
pub enum SimilarityError {
    /// Embedding failed (bad input, unknown model, ...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A vector item is invalid.
    #[error("{what}: {source}")]
    Vector {
        /// Which item, e.g. `candidates[2]`.
        what: String,
        /// What is wrong.
        source: VectorError,
    },
    /// A list that must not be empty is.
    #[error("{what} is empty")]
    Empty {
        /// Which list.
        what: &'static str,
    },
    /// An item sets neither an input nor a vector.
    #[error("{what}: set either input or vector")]
    MissingItem {
        /// Which item.
        what: String,
    },
    /// A label is empty.
    #[error("labels[{index}] is empty")]
    EmptyLabel {
        /// Its position.
        index: usize,
    },
    /// A template does not hold exactly one `{}`.
    #[error("templates[{index}] ({template:?}) must contain exactly one \"{{}}\", it has {count}")]
    Template {
        /// Its position.
        index: usize,
        /// The template.
        template: String,
        /// Number of `{}` found.
        count: usize,
    },
    /// Too many items, labels, templates or label prompts.
    #[error(transparent)]
    TooMany(#[from] ItemLimitError),
    /// `top_k` exceeds the number of labels.
    #[error("top_k = {top_k} is more than the {labels} labels")]
    TopK {
        /// Requested.
        top_k: usize,
        /// Number of labels.
        labels: usize,
    },
    /// The logit scale override is unusable.
    #[error("logit_scale must be finite and positive, got {0}")]
    Scale(f32),
}

/// Embeds `items` with `model` at unit norm: the single place these services call the engine.
pub(crate) async fn embed_unit(
    engine: &Engine,
    model: &str,
    items: Vec<Item>,
) -> Result<Embedded, EngineError> {
    engine.embed(model, items, EmbedOptions { normalize: true, ..EmbedOptions::default() }).await
}

/// The logit scale of a vector from `modality` (1 for raw vectors and unknown modalities).
fn modality_scale(model: &LoadedModel, modality: Option<Modality>) -> f64 {
    modality.and_then(|m| model.encoder(m)).map_or(1.0, |e| f64::from(e.logit_scale))
}

fn check_scale(scale: Option<f32>) -> Result<Option<f64>, SimilarityError> {
    match scale {
        Some(s) if !(s.is_finite() && s > 0.0) => Err(SimilarityError::Scale(s)),
        s => Ok(s.map(f64::from)),
    }
}

/// Softmax of `logits`, in f64 with the maximum subtracted so large scales cannot overflow.
fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
}

/// Per-side logit scales of the rows and the columns.
type SideScales = (Vec<f64>, Vec<f64>);

/// The row-major cosine matrix of `queries` x `candidates` and, with `scales`, the logits and the
/// softmax of each row (scale: the override, else the product of the two sides' scales).
fn matrix(
    queries: &[Vec<f32>],
    candidates: &[Vec<f32>],
    scales: Option<SideScales>,
    scale_override: Option<f64>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let cells = queries.len() * candidates.len();
    let mut cosine = Vec::with_capacity(cells);
    let (mut logits, mut probabilities) = (Vec::new(), Vec::new());
    for (r, q) in queries.iter().enumerate() {
        let row: Vec<f64> = candidates.iter().map(|c| dot64(q, c)).collect();
        cosine.extend(row.iter().map(|c| *c as f32));
        if let Some((row_scales, col_scales)) = &scales {
            let row_scale = row_scales.get(r).copied().unwrap_or(1.0);
            let row_logits: Vec<f64> = row
                .iter()
                .zip(col_scales)
                .map(|(c, col_scale)| c * scale_override.unwrap_or(row_scale * col_scale))
                .collect();
            probabilities.extend(softmax(&row_logits).into_iter().map(|p| p as f32));
            logits.extend(row_logits.into_iter().map(|l| l as f32));
        }
    }
    (cosine, logits, probabilities)
}

/// One side of a similarity, resolved to unit vectors.
struct Side {
    vectors: Vec<Vec<f32>>,
    modalities: Vec<Option<Modality>>,
}

/// Splits `items` into inputs to embed (ids defaulting to `side[i]`) and checked, normalised
/// vectors. Returns the vectors so far (inputs' slots empty) and the inputs with their slots.
fn split_side(
    side: &'static str,
    items: Vec<pb::SimilarityItem>,
    dim: usize,
    inputs: &mut Vec<(usize, pb::Input)>,
    offset: usize,
) -> Result<Side, SimilarityError> {
    if items.is_empty() {
        return Err(SimilarityError::Empty { what: side });
    }
    let mut out =
        Side { vectors: Vec::with_capacity(items.len()), modalities: Vec::with_capacity(items.len()) };
    for (i, item) in items.into_iter().enumerate() {
        let what = format!("{side}[{i}]");
        match item.item {
            Some(pb::similarity_item::Item::Input(mut input)) => {
                if input.id.is_empty() {
                    input.id = what;
                }
                inputs.push((offset + i, input));
                out.vectors.push(Vec::new());
                out.modalities.push(None);
            }
            Some(pb::similarity_item::Item::Vector(v)) => {
                let mut values = v.values;
                let checked = vector::check(&values, dim).and_then(|()| vector::normalize(&mut values));
                checked.map_err(|source| SimilarityError::Vector { what, source })?;
                out.vectors.push(values);
                out.modalities.push(None);
            }
            None => return Err(SimilarityError::MissingItem { what }),
        }
    }
    Ok(out)
}

/// `Similarity`: the cosine matrix of queries x candidates, and the softmax per query.
pub async fn similarity(
    engine: &Engine,
    request: pb::SimilarityRequest,
) -> Result<pb::SimilarityResponse, SimilarityError> {
    let model = engine.registry().resolve(&request.model)?;
    let scale_override = check_scale(request.logit_scale)?;
    // Both sides count, vectors too: the matrix grows with their product.
    engine
        .limits()
        .check_items("items (queries and candidates)", request.queries.len() + request.candidates.len())?;
    let rows = request.queries.len();
    let mut inputs = Vec::new();
    let mut queries = split_side("queries", request.queries, model.dim, &mut inputs, 0)?;
    let mut candidates = split_side("candidates", request.candidates, model.dim, &mut inputs, rows)?;
    if !inputs.is_empty() {
        let (slots, inputs): (Vec<usize>, Vec<pb::Input>) = inputs.into_iter().unzip();
        let embedded = embed_unit(engine, &model.name, convert::items(inputs)?).await?;
        for (slot, e) in slots.into_iter().zip(embedded.embeddings) {
            let side = if slot < rows { (&mut queries, slot) } else { (&mut candidates, slot - rows) };
            side.0.vectors[side.1] = e.vector;
            side.0.modalities[side.1] = Some(e.modality);
        }
    }
    let cols = candidates.vectors.len();
    let softmax_scales = request.softmax.then(|| {
        let scale = |m: &Option<Modality>| modality_scale(&model, *m);
        (queries.modalities.iter().map(scale).collect(), candidates.modalities.iter().map(scale).collect())
    });
    // rows x cols x dim multiply-adds: off the async workers.
    let (cosine, logits, probabilities) = tokio::task::spawn_blocking(move || {
        matrix(&queries.vectors, &candidates.vectors, softmax_scales, scale_override)
    })
    .await
    .map_err(|e| EngineError::Internal(format!("similarity task failed: {e}")))?;
    Ok(pb::SimilarityResponse {
        model: model.name.clone(),
        rows: rows as u32,
        cols: cols as u32,
        cosine,
        logits,
        probabilities,
    })
}

/// Cache key of a label embedding. `model` is the address of the loaded model, kept valid by the
/// `Weak` each entry holds (the allocation outlives every weak reference, so the address cannot
/// be reused by another model while the entry exists).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LabelKey {
    model: usize,
    templates: Arc<[String]>,
    label: String,
}

struct LabelEntry {
    model: Weak<LoadedModel>,
    vector: Arc<[f32]>,
}

/// Bounded map of label embeddings, oldest evicted first.
struct LabelCache {
    entries: HashMap<LabelKey, LabelEntry>,
    order: VecDeque<LabelKey>,
    capacity: usize,
}

impl LabelCache {
    fn get(&self, key: &LabelKey, model: &Arc<LoadedModel>) -> Option<Arc<[f32]>> {
        let entry = self.entries.get(key)?;
        let same = entry.model.upgrade().is_some_and(|m| Arc::ptr_eq(&m, model));
        same.then(|| Arc::clone(&entry.vector))
    }

    fn insert(&mut self, key: LabelKey, model: &Arc<LoadedModel>, vector: Arc<[f32]>) {
        if self.entries.contains_key(&key) {
            return;
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, LabelEntry { model: Arc::downgrade(model), vector });
    }
}

// Process-wide: label embeddings depend only on the loaded model (checked by identity), the
// templates and the label, so every service over the same model shares them.
static LABEL_CACHE: LazyLock<Mutex<LabelCache>> = LazyLock::new(|| {
    Mutex::new(LabelCache { entries: HashMap::new(), order: VecDeque::new(), capacity: LABEL_CACHE_ENTRIES })
});

fn label_cache() -> std::sync::MutexGuard<'static, LabelCache> {
    // The cache holds only finished entries; a panic elsewhere cannot leave one half-written.
    LABEL_CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_classify(request: &pb::ClassifyRequest, limits: &Limits) -> Result<(), SimilarityError> {
    if request.inputs.is_empty() {
        return Err(SimilarityError::Empty { what: "inputs" });
    }
    if request.labels.is_empty() {
        return Err(SimilarityError::Empty { what: "labels" });
    }
    limits.check_items("inputs", request.inputs.len())?;
    check_count("labels", request.labels.len(), limits.max_labels)?;
    check_count("templates", request.templates.len(), limits.max_templates)?;
    // Counted before the cache is consulted, so a request's cost never depends on what other
    // clients asked before.
    let prompts = request.labels.len() * request.templates.len().max(1);
    check_count("label prompts (labels x templates)", prompts, limits.max_label_prompts)?;
    if let Some(index) = request.labels.iter().position(|l| l.trim().is_empty()) {
        return Err(SimilarityError::EmptyLabel { index });
    }
    for (index, template) in request.templates.iter().enumerate() {
        let count = template.matches("{}").count();
        if count != 1 {
            return Err(SimilarityError::Template { index, template: template.clone(), count });
        }
    }
    if request.top_k as usize > request.labels.len() {
        return Err(SimilarityError::TopK { top_k: request.top_k as usize, labels: request.labels.len() });
    }
    Ok(())
}

/// Embeds the labels missing from the cache: each label's vector is the unit-norm mean of its
/// unit-norm template embeddings (the CLIP/ULIP prompt-ensemble recipe).
async fn embed_labels(
    engine: &Engine,
    model: &Arc<LoadedModel>,
    templates: &[String],
    labels: &[(usize, &str)],
) -> Result<Vec<Arc<[f32]>>, SimilarityError> {
    let mut out = Vec::with_capacity(labels.len());
    let per_label = templates.len();
    // A server started with a small --max-items still takes whole labels per call.
    let prompts_per_call = PROMPTS_PER_CALL.min(engine.limits().max_items_per_request);
    let labels_per_call = (prompts_per_call / per_label).max(1);
    for chunk in labels.chunks(labels_per_call) {
        let mut items = Vec::with_capacity(chunk.len() * per_label);
        for (index, label) in chunk {
            for (t, template) in templates.iter().enumerate() {
                let id = if per_label == 1 {
                    format!("labels[{index}]")
                } else {
                    format!("labels[{index}] in templates[{t}]")
                };
                items.push(Item { id, payload: Payload::Text(template.replacen("{}", label, 1)) });
            }
        }
        let embedded = embed_unit(engine, &model.name, items).await?;
        for prompts in embedded.embeddings.chunks(per_label) {
            let mut mean = vec![0f64; model.dim];
            for p in prompts {
                mean.iter_mut().zip(&p.vector).for_each(|(m, v)| *m += f64::from(*v));
            }
            let mut v: Vec<f32> = mean.iter().map(|m| (m / per_label as f64) as f32).collect();
            // Opposite template embeddings could cancel exactly; keep the zero vector then (its
            // cosine with everything is 0) rather than fail the request.
            let _ = vector::normalize(&mut v);
            out.push(Arc::from(v));
        }
    }
    Ok(out)
}

/// `Classify`: zero-shot probabilities of `labels` for each input.
pub async fn classify(
    engine: &Engine,
    request: pb::ClassifyRequest,
) -> Result<pb::ClassifyResponse, SimilarityError> {
    check_classify(&request, engine.limits())?;
    let scale_override = check_scale(request.logit_scale)?;
    let model = engine.registry().resolve(&request.model)?;
    let templates: Arc<[String]> = if request.templates.is_empty() {
        Arc::from(vec!["{}".to_string()])
    } else {
        Arc::from(request.templates)
    };
    let labels = request.labels;
    let key = |label: &str| LabelKey {
        model: Arc::as_ptr(&model) as usize,
        templates: Arc::clone(&templates),
        label: label.to_string(),
    };
    // Cached label vectors; the misses are embedded below.
    let mut label_vectors: Vec<Option<Arc<[f32]>>> = {
        let cache = label_cache();
        labels.iter().map(|l| cache.get(&key(l), &model)).collect()
    };
    let misses: Vec<(usize, &str)> = label_vectors
        .iter()
        .zip(&labels)
        .enumerate()
        .filter(|(_, (v, _))| v.is_none())
        .map(|(i, (_, l))| (i, l.as_str()))
        .collect();
    let hits = labels.len() - misses.len();
    let inputs = embed_unit(engine, &model.name, convert::items(request.inputs)?).await?;
    if !misses.is_empty() {
        let fresh = embed_labels(engine, &model, &templates, &misses).await?;
        let mut cache = label_cache();
        for ((index, label), vector) in misses.iter().zip(fresh) {
            cache.insert(key(label), &model, Arc::clone(&vector));
            label_vectors[*index] = Some(vector);
        }
    }
    let label_vectors: Vec<Arc<[f32]>> = label_vectors.into_iter().flatten().collect();
    if label_vectors.len() != labels.len() {
        return Err(EngineError::Internal("a label got no embedding".into()).into());
    }
    let text_scale = modality_scale(&model, Some(Modality::Text));
    let top_k = if request.top_k == 0 { labels.len() } else { request.top_k as usize };
    let results = inputs
        .embeddings
        .into_iter()
        .map(|e| {
            let scale =
                scale_override.unwrap_or_else(|| modality_scale(&model, Some(e.modality)) * text_scale);
            let cosines: Vec<f64> = label_vectors.iter().map(|l| dot64(&e.vector, l)).collect();
            let logits: Vec<f64> = cosines.iter().map(|c| c * scale).collect();
            let probabilities = softmax(&logits);
            let mut order: Vec<usize> = (0..labels.len()).collect();
            order.sort_by(|a, b| probabilities[*b].total_cmp(&probabilities[*a]).then(a.cmp(b)));
            let top = order
                .into_iter()
                .take(top_k)
                .map(|i| pb::LabelScore {
                    label: labels[i].clone(),
                    probability: probabilities[i] as f32,
                    cosine: cosines[i] as f32,
                })
                .collect();
            pb::Classification {
                id: e.id,
                modality: convert::modality(e.modality) as i32,
                probabilities: probabilities.iter().map(|p| *p as f32).collect(),
                cosines: cosines.iter().map(|c| *c as f32).collect(),
                top,
                logit_scale: scale as f32,
            }
        })
        .collect();
    Ok(pb::ClassifyResponse {
        model: model.name.clone(),
        results,
        label_cache_hits: hits as u32,
        label_cache_misses: misses.len() as u32,
    })
}
