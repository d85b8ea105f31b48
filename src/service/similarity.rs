//! Similarity and zero-shot classification in the shared space of one model: cosine matrices,
//! softmax over logit-scaled cosines, and label embeddings built from prompt templates (the
//! CLIP/ULIP prompt-ensemble recipe) and kept in a bounded cache this service owns.
//!
//! Callable without protobuf: the API edge converts requests into these types and the results
//! back, and the in-process tools and tests can call it directly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::{Operand, embed_unit};
use crate::engine::{Engine, EngineError, Item, ItemLimitError, Limits, LoadedModel, check_count};
use crate::modality::{Modality, text};
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
    /// `template_set` names no known set.
    #[error("template_set {name:?} is not a known template set (known: {known})")]
    TemplateSet {
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
}

/// Classify's named prompt template sets, one template a line (written from the reference
/// lists by `tools/make_template_sets.py`).
pub const TEMPLATE_SETS: &[(&str, &str)] = &[
    ("imagenet", include_str!("template_sets/imagenet.txt")),
    ("modelnet40", include_str!("template_sets/modelnet40.txt")),
];

/// The templates of a query: those of its named set, then its own.
fn resolve_templates(set: &str, own: &mut Vec<String>) -> Result<(), SimilarityError> {
    if set.is_empty() {
        return Ok(());
    }
    let (_, text) =
        TEMPLATE_SETS.iter().find(|(name, _)| *name == set).ok_or_else(|| SimilarityError::TemplateSet {
            name: set.to_string(),
            known: TEMPLATE_SETS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", "),
        })?;
    let mut templates: Vec<String> = text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    templates.append(own);
    *own = templates;
    Ok(())
}

/// A `Similarity` request.
#[derive(Debug, Clone)]
pub struct SimilarityQuery {
    /// Model name; empty for the default model.
    pub model: String,
    /// Rows of the matrix.
    pub queries: Vec<Operand>,
    /// Columns of the matrix.
    pub candidates: Vec<Operand>,
    /// Also compute logits and a softmax per row.
    pub softmax: bool,
    /// Overrides the per-modality logit scales.
    pub logit_scale: Option<f32>,
}

/// The result of [`Similarity::similarity`].
#[derive(Debug, Clone)]
pub struct SimilarityMatrix {
    /// The model that embedded the inputs.
    pub model: String,
    /// Rows (queries).
    pub rows: usize,
    /// Columns (candidates).
    pub cols: usize,
    /// Row-major cosines.
    pub cosine: Vec<f32>,
    /// Row-major logits (empty without softmax).
    pub logits: Vec<f32>,
    /// Row-major softmax of each row's logits (empty without softmax).
    pub probabilities: Vec<f32>,
}

/// A `Classify` request.
#[derive(Debug, Clone)]
pub struct ClassifyQuery {
    /// Model name; empty for the default model.
    pub model: String,
    /// Inputs to classify.
    pub inputs: Vec<Item>,
    /// Candidate labels.
    pub labels: Vec<String>,
    /// Prompt templates, each with one `{}` (empty: the label alone).
    pub templates: Vec<String>,
    /// A named template set ([`TEMPLATE_SETS`]) used before `templates`; empty: none.
    pub template_set: String,
    /// Labels ranked in `top` (0: all).
    pub top_k: usize,
    /// Overrides the per-modality logit scales.
    pub logit_scale: Option<f32>,
}

/// The labels of one input.
#[derive(Debug, Clone)]
pub struct Classification {
    /// The input's id.
    pub id: String,
    /// Its modality.
    pub modality: Modality,
    /// Softmax probability per label, in label order.
    pub probabilities: Vec<f32>,
    /// Cosine per label, in label order.
    pub cosines: Vec<f32>,
    /// Indices of the `top_k` most probable labels, most probable first.
    pub top: Vec<usize>,
    /// The scale the cosines were multiplied by.
    pub logit_scale: f32,
}

/// The result of [`Similarity::classify`].
#[derive(Debug, Clone)]
pub struct Classified {
    /// The model that embedded the inputs.
    pub model: String,
    /// The labels, in request order (what the indices in the results refer to).
    pub labels: Vec<String>,
    /// One result per input, in request order.
    pub results: Vec<Classification>,
    /// Labels whose embedding came from the cache.
    pub label_cache_hits: usize,
    /// Labels embedded by this call.
    pub label_cache_misses: usize,
}

/// Similarity and classification over one engine, with its label cache.
pub struct Similarity {
    engine: Arc<Engine>,
    labels: Mutex<LabelCache>,
}

impl Similarity {
    /// A service over `engine` with an empty label cache.
    pub fn new(engine: Arc<Engine>) -> Self {
        let labels =
            LabelCache { entries: HashMap::new(), order: VecDeque::new(), capacity: LABEL_CACHE_ENTRIES };
        Self { engine, labels: Mutex::new(labels) }
    }

    fn label_cache(&self) -> MutexGuard<'_, LabelCache> {
        // The cache holds only finished entries; a panic elsewhere cannot leave one half-written.
        self.labels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cosine matrix of queries x candidates, and with `softmax` the logits and the softmax
    /// per query.
    pub async fn similarity(&self, query: SimilarityQuery) -> Result<SimilarityMatrix, SimilarityError> {
        let engine = &self.engine;
        let model = engine.registry().resolve(&query.model)?;
        let scale_override = check_scale(query.logit_scale)?;
        // Both sides count, vectors too: the matrix grows with their product.
        engine
            .limits()
            .check_items("items (queries and candidates)", query.queries.len() + query.candidates.len())?;
        let rows = query.queries.len();
        let mut inputs = Vec::new();
        let mut queries = split_side("queries", query.queries, model.dim, &mut inputs, 0)?;
        let mut candidates = split_side("candidates", query.candidates, model.dim, &mut inputs, rows)?;
        if !inputs.is_empty() {
            let (slots, inputs): (Vec<usize>, Vec<Item>) = inputs.into_iter().unzip();
            let embedded = embed_unit(engine, &model.name, inputs).await?;
            for (slot, e) in slots.into_iter().zip(embedded.embeddings) {
                let side = if slot < rows { (&mut queries, slot) } else { (&mut candidates, slot - rows) };
                side.0.vectors[side.1] = e.vector;
                side.0.modalities[side.1] = Some(e.modality);
            }
        }
        let cols = candidates.vectors.len();
        let softmax_scales = query.softmax.then(|| {
            let scale = |m: &Option<Modality>| modality_scale(&model, *m);
            (
                queries.modalities.iter().map(scale).collect(),
                candidates.modalities.iter().map(scale).collect(),
            )
        });
        // rows x cols x dim multiply-adds: off the async workers.
        let (cosine, logits, probabilities) = tokio::task::spawn_blocking(move || {
            matrix(&queries.vectors, &candidates.vectors, softmax_scales, scale_override)
        })
        .await
        .map_err(|e| EngineError::Internal(format!("similarity task failed: {e}")))?;
        Ok(SimilarityMatrix { model: model.name.clone(), rows, cols, cosine, logits, probabilities })
    }

    /// Zero-shot probabilities of the labels for each input.
    pub async fn classify(&self, mut query: ClassifyQuery) -> Result<Classified, SimilarityError> {
        let engine = &self.engine;
        resolve_templates(&query.template_set, &mut query.templates)?;
        check_classify(&query, engine.limits())?;
        let scale_override = check_scale(query.logit_scale)?;
        let model = engine.registry().resolve(&query.model)?;
        let templates: Arc<[String]> = if query.templates.is_empty() {
            Arc::from(vec!["{}".to_string()])
        } else {
            Arc::from(query.templates)
        };
        let labels = query.labels;
        let key = |label: &str| LabelKey {
            model: Arc::as_ptr(&model) as usize,
            templates: Arc::clone(&templates),
            label: label.to_string(),
        };
        // Cached label vectors; the misses are embedded below.
        let mut label_vectors: Vec<Option<Arc<[f32]>>> = {
            let cache = self.label_cache();
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
        let inputs = embed_unit(engine, &model.name, query.inputs).await?;
        if !misses.is_empty() {
            let fresh = embed_labels(engine, &model, &templates, &misses).await?;
            let mut cache = self.label_cache();
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
        let top_k = if query.top_k == 0 { labels.len() } else { query.top_k };
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
                order.truncate(top_k);
                Classification {
                    id: e.id,
                    modality: e.modality,
                    probabilities: probabilities.iter().map(|p| *p as f32).collect(),
                    cosines: cosines.iter().map(|c| *c as f32).collect(),
                    top: order,
                    logit_scale: scale as f32,
                }
            })
            .collect();
        let label_cache_misses = misses.len();
        Ok(Classified {
            model: model.name.clone(),
            labels,
            results,
            label_cache_hits: hits,
            label_cache_misses,
        })
    }
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

/// Splits `operands` into inputs to embed and checked, normalised vectors. Returns the vectors so
/// far (inputs' slots empty) and the inputs with their slots.
fn split_side(
    side: &'static str,
    operands: Vec<Operand>,
    dim: usize,
    inputs: &mut Vec<(usize, Item)>,
    offset: usize,
) -> Result<Side, SimilarityError> {
    if operands.is_empty() {
        return Err(SimilarityError::Empty { what: side });
    }
    let mut out =
        Side { vectors: Vec::with_capacity(operands.len()), modalities: Vec::with_capacity(operands.len()) };
    for (i, operand) in operands.into_iter().enumerate() {
        match operand {
            Operand::Input(input) => {
                inputs.push((offset + i, input));
                out.vectors.push(Vec::new());
                out.modalities.push(None);
            }
            Operand::Vector(mut values) => {
                let checked = vector::check(&values, dim).and_then(|()| vector::normalize(&mut values));
                checked.map_err(|source| SimilarityError::Vector { what: format!("{side}[{i}]"), source })?;
                out.vectors.push(values);
                out.modalities.push(None);
            }
        }
    }
    Ok(out)
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

fn check_classify(query: &ClassifyQuery, limits: &Limits) -> Result<(), SimilarityError> {
    if query.inputs.is_empty() {
        return Err(SimilarityError::Empty { what: "inputs" });
    }
    if query.labels.is_empty() {
        return Err(SimilarityError::Empty { what: "labels" });
    }
    limits.check_items("inputs", query.inputs.len())?;
    check_count("labels", query.labels.len(), limits.max_labels)?;
    check_count("templates", query.templates.len(), limits.max_templates)?;
    // Counted before the cache is consulted, so a request's cost never depends on what other
    // clients asked before.
    let prompts = query.labels.len() * query.templates.len().max(1);
    check_count("label prompts (labels x templates)", prompts, limits.max_label_prompts)?;
    if let Some(index) = query.labels.iter().position(|l| l.trim().is_empty()) {
        return Err(SimilarityError::EmptyLabel { index });
    }
    for (index, template) in query.templates.iter().enumerate() {
        let count = template.matches("{}").count();
        if count != 1 {
            return Err(SimilarityError::Template { index, template: template.clone(), count });
        }
    }
    if query.top_k > query.labels.len() {
        return Err(SimilarityError::TopK { top_k: query.top_k, labels: query.labels.len() });
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
                items.push(Item { id, payload: text::payload(template.replacen("{}", label, 1)) });
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
