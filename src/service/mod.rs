//! The domain services behind the API edge: similarity and zero-shot classification
//! (`similarity`) and collections (`collections`), over the engine and the collection store. They take and return plain types,
//! so the API edge only converts protobuf, and tools and tests can call them without it.

pub mod collections;
pub mod compact;
pub mod similarity;

use crate::engine::{EmbedOptions, Embedded, Engine, EngineError, Item};

pub use collections::{Collections, CollectionsError};
pub use similarity::{Similarity, SimilarityError};

/// An input to embed, or a vector the client already has (in the model's space).
#[derive(Debug, Clone)]
pub enum Operand {
    /// An input, embedded with the model in question.
    Input(Item),
    /// A vector, checked against the model's dimension where it is used.
    Vector(Vec<f32>),
}

/// Embeds `items` with `model` at unit norm, one vector per item (an input asking for several
/// is refused): the single place these services call the engine, with [`embed_unit_parts`].
pub(crate) async fn embed_unit(
    engine: &Engine,
    model: &str,
    items: Vec<Item>,
) -> Result<Embedded, EngineError> {
    engine.embed(model, items, EmbedOptions { normalize: true, ..EmbedOptions::default() }).await
}

/// Like [`embed_unit`], but an input may ask for several embeddings (segments, a video's sound
/// track): each part is its own [`crate::engine::ItemEmbedding`].
pub(crate) async fn embed_unit_parts(
    engine: &Engine,
    model: &str,
    items: Vec<Item>,
) -> Result<Embedded, EngineError> {
    engine.embed(model, items, EmbedOptions { normalize: true, split: true, ..EmbedOptions::default() }).await
}
