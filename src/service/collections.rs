//! Collections as clients use them: upserts whose items are inputs (embedded with the
//! collection's model) or vectors, searches by input or vector, deletes, and the compaction that
//! follows writes once a log has grown. The store keeps the data; this module orders the work
//! around it (validate, then embed, then write) so a bad item never costs an inference.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Operand, embed_unit, embed_unit_parts};
use crate::engine::{Engine, EngineError, Item, ItemEmbedding, ItemLimitError, LoadedModel};
use crate::modality::Modality;
use crate::store::collection::MAX_TOP_K;
use crate::store::{
    CollectionManifest, CollectionStore, Filter, NewItem, SearchOutcome, StoreError, VectorSearch,
};

/// Why a collection call failed: the store refused it, or embedding an input failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectionsError {
    /// From the store (unknown collection, invalid item, I/O, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// From embedding an input.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// More items or ids than a request may carry.
    #[error(transparent)]
    TooMany(#[from] ItemLimitError),
}

/// Metadata key of a part's source input id (see [`Collections::upsert`]).
pub const SOURCE_ID: &str = "source_id";
/// Metadata key of a part's window start, in seconds.
pub const START_SECONDS: &str = "start_seconds";
/// Metadata key of a part's window end, in seconds.
pub const END_SECONDS: &str = "end_seconds";

/// The stored item of part `k` of the input of `row`.
fn part_item(row: &NewItem, k: usize, part: ItemEmbedding) -> NewItem {
    let mut metadata = row.metadata.clone();
    metadata.insert(SOURCE_ID.into(), row.id.clone());
    if let Some(span) = part.span {
        metadata.insert(START_SECONDS.into(), span.start.to_string());
        metadata.insert(END_SECONDS.into(), span.end.to_string());
    }
    NewItem { id: format!("{}#{k}", row.id), modality: Some(part.modality), metadata, vector: part.vector }
}

/// One item to upsert.
#[derive(Debug, Clone)]
pub struct UpsertItem {
    /// Client id (unique within the collection).
    pub id: String,
    /// The modality the client says it is (checked against the input's), if any.
    pub modality: Option<Modality>,
    /// Metadata, checked against the collection's schema.
    pub metadata: BTreeMap<String, String>,
    /// An input to embed, or a vector.
    pub source: Operand,
}

/// A search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The query: an input to embed, or a vector.
    pub query: Operand,
    /// Hits wanted (1 to [`MAX_TOP_K`]).
    pub top_k: usize,
    /// Which items may match.
    pub filter: Filter,
    /// Search every vector even when the collection has a graph.
    pub exact: bool,
    /// Overrides the graph's `ef_search`.
    pub ef_search: Option<usize>,
    /// Return the hits' vectors.
    pub include_vectors: bool,
}

/// Collections over a store (embedded or PostgreSQL), with the engine that embeds their inputs.
#[derive(Clone)]
pub struct Collections {
    engine: Arc<Engine>,
    store: Option<Arc<dyn CollectionStore>>,
}

impl Collections {
    /// Collections of `store`; with `None` every call fails with [`StoreError::Disabled`] (the
    /// server runs without a data folder).
    pub fn new(engine: Arc<Engine>, store: Option<Arc<dyn CollectionStore>>) -> Self {
        Self { engine, store }
    }

    /// The engine inputs are embedded with.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The store.
    pub fn store(&self) -> Result<&Arc<dyn CollectionStore>, StoreError> {
        self.store.as_ref().ok_or(StoreError::Disabled)
    }

    /// The loaded model of `collection`, checked against the collection's dimension.
    fn model_of(&self, m: &CollectionManifest) -> Result<Arc<LoadedModel>, StoreError> {
        let model = self.engine.registry().resolve(&m.model).map_err(|_| StoreError::ModelUnavailable {
            collection: m.name.clone(),
            model: m.model.clone(),
        })?;
        if model.dim != m.dim {
            return Err(StoreError::ModelDimension {
                collection: m.name.clone(),
                model: m.model.clone(),
                got: model.dim,
                want: m.dim,
            });
        }
        Ok(model)
    }

    /// Embeds `items` with the collection's model; with `parts`, an input may ask for several
    /// embeddings. An unknown model means the collection's model is gone; anything else is about
    /// the input.
    async fn embed(
        &self,
        collection: &CollectionManifest,
        items: Vec<Item>,
        parts: bool,
    ) -> Result<Vec<ItemEmbedding>, CollectionsError> {
        let model = self.model_of(collection)?;
        let embedded = if parts {
            embed_unit_parts(&self.engine, &model.name, items).await
        } else {
            embed_unit(&self.engine, &model.name, items).await
        };
        let embedded = embedded.map_err(|e| match e {
            EngineError::ModelNotFound { .. } => CollectionsError::Store(StoreError::ModelUnavailable {
                collection: collection.name.clone(),
                model: collection.model.clone(),
            }),
            e => e.into(),
        })?;
        Ok(embedded.embeddings)
    }

    /// Upserts `items` into `collection`: ids, metadata and vectors are checked before any input
    /// is embedded. Returns the number upserted and the log sequence of the write.
    ///
    /// An input that asks for several embeddings (segments, a video's sound track) is stored as
    /// one item per part, in order: id `"{id}#{k}"` (k from 0), the item's metadata plus
    /// [`SOURCE_ID`] and, for a time window, [`START_SECONDS`] and [`END_SECONDS`], and the
    /// part's own modality.
    pub async fn upsert(
        &self,
        collection: &str,
        items: Vec<UpsertItem>,
    ) -> Result<(usize, u64), CollectionsError> {
        let store = self.store()?;
        let name = collection;
        let collection = store.manifest(name).await?;
        self.engine.limits().check_items("items", items.len())?;
        let mut rows = Vec::with_capacity(items.len());
        let mut inputs = Vec::new();
        let mut raw = Vec::new();
        for (position, item) in items.into_iter().enumerate() {
            let vector = match item.source {
                Operand::Vector(values) => {
                    raw.push(position);
                    values
                }
                Operand::Input(mut input) => {
                    input.id = item.id.clone();
                    inputs.push((position, input));
                    Vec::new()
                }
            };
            rows.push(NewItem { id: item.id, modality: item.modality, metadata: item.metadata, vector });
        }
        collection.check_items(rows.iter().map(|i| (i.id.as_str(), &i.metadata)))?;

        for &position in &raw {
            let row = &rows[position];
            collection.check_vector(&format!("item {:?}", row.id), &row.vector)?;
        }
        let mut parts_of: Vec<Vec<ItemEmbedding>> = (0..rows.len()).map(|_| Vec::new()).collect();
        if !inputs.is_empty() {
            let (positions, inputs): (Vec<usize>, Vec<Item>) = inputs.into_iter().unzip();
            for embedding in self.embed(&collection, inputs, true).await? {
                let position = *positions
                    .get(embedding.input)
                    .ok_or_else(|| StoreError::Internal("an embedding of no input".into()))?;
                parts_of[position].push(embedding);
            }
        }
        let mut stored = Vec::with_capacity(rows.len());
        let mut split = false;
        for (mut row, mut parts) in rows.into_iter().zip(parts_of) {
            if parts.is_empty() {
                stored.push(row);
            } else if parts.len() == 1 && parts[0].span.is_none() {
                let ItemEmbedding { modality, vector, .. } = parts.remove(0);
                if row.modality.is_some_and(|m| m != modality) {
                    return Err(StoreError::InvalidItem {
                        id: row.id.clone(),
                        reason: format!("modality field says {:?} but the input is {modality}", row.modality),
                    }
                    .into());
                }
                row.modality = Some(modality);
                row.vector = vector;
                stored.push(row);
            } else {
                split = true;
                stored.extend(parts.into_iter().enumerate().map(|(k, part)| part_item(&row, k, part)));
            }
        }
        if split {
            // The parts are new ids: checked as the items were.
            collection.check_items(stored.iter().map(|i| (i.id.as_str(), &i.metadata)))?;
        }
        let rows = stored;
        let count = rows.len();
        let sequence = store.upsert(name, rows).await?;
        Ok((count, sequence))
    }

    /// Deletes `ids` from `collection`. Returns how many were deleted, the ids not found and the
    /// log sequence of the write.
    pub async fn delete(
        &self,
        collection: &str,
        ids: Vec<String>,
    ) -> Result<(usize, Vec<String>, u64), CollectionsError> {
        let store = self.store()?;
        self.engine.limits().check_items("ids", ids.len())?;
        Ok(store.delete(collection, ids).await?)
    }

    /// Searches `collection`.
    pub async fn search(
        &self,
        collection: &str,
        search: SearchQuery,
    ) -> Result<SearchOutcome, CollectionsError> {
        let store = self.store()?;
        let name = collection;
        let k = search.top_k;
        if k == 0 || k > MAX_TOP_K {
            return Err(StoreError::TopK { top_k: k, max: MAX_TOP_K }.into());
        }
        let query = match search.query {
            Operand::Vector(values) => values,
            Operand::Input(input) => self
                .embed(&store.manifest(name).await?, vec![input], false)
                .await?
                .pop()
                .map(|e| e.vector)
                .ok_or_else(|| StoreError::Internal("the query got no embedding".into()))?,
        };
        let SearchQuery { filter, exact, ef_search, include_vectors, .. } = search;
        let search =
            VectorSearch { query, top_k: k, filter, exact, ef_search, with_vectors: include_vectors };
        Ok(store.search(name, search).await?)
    }
}
