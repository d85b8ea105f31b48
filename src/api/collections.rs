//! `bindery.v1.Collections`: durable, searchable collections of embeddings.

use std::collections::BTreeMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb::collections_server::Collections;
use super::similarity::embed_unit;
use super::{convert, pb};
use crate::engine::{Engine, EngineError, LoadedModel};
use crate::modality::Modality;
use crate::store::collection::MAX_TOP_K;
use crate::store::{
    Collection, CollectionManifest, Filter, HnswParams, IndexSpec, MetadataSchema, Metric, NewItem, Store,
    StoreError, manifest::MANIFEST_FORMAT,
};

/// Implementation of the Collections service over a [`Store`] and the [`Engine`] that embeds
/// inputs for it.
#[derive(Clone)]
pub struct CollectionsService {
    engine: Arc<Engine>,
    store: Option<Arc<Store>>,
}

impl CollectionsService {
    /// A service over `store`; with `None` every call fails with FAILED_PRECONDITION (the server
    /// runs without a data folder).
    pub fn new(engine: Arc<Engine>, store: Option<Arc<Store>>) -> Self {
        Self { engine, store }
    }

    fn store(&self) -> Result<&Arc<Store>, StoreError> {
        self.store.as_ref().ok_or(StoreError::Disabled)
    }

    fn collection(&self, name: &str) -> Result<Arc<Collection>, StoreError> {
        self.store()?.get(name)
    }

    /// The loaded model of `collection`, checked against the collection's dimension.
    fn model_of(&self, collection: &Collection) -> Result<Arc<LoadedModel>, StoreError> {
        let m = collection.manifest();
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

    /// Folds the collection's log into a snapshot in the background once it has grown enough.
    fn compact_later(&self, collection: Arc<Collection>) {
        let Some(store) = self.store.clone() else { return };
        if collection.wal_bytes() <= store.options().compact_wal_bytes {
            return;
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.compact_if_needed(&collection) {
                tracing::error!(collection = %collection.manifest().name, error = %e, "compaction failed");
            }
        });
    }
}

/// Runs blocking store work (file I/O, fsync, scans) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
}

fn metric_from_pb(value: i32) -> Result<Metric, StoreError> {
    match pb::Metric::try_from(value) {
        Ok(pb::Metric::Unspecified | pb::Metric::Cosine) => Ok(Metric::Cosine),
        Ok(pb::Metric::Dot) => Ok(Metric::Dot),
        Ok(pb::Metric::L2) => Ok(Metric::L2),
        Err(_) => Err(StoreError::InvalidSpec(format!("unknown metric {value}"))),
    }
}

fn metric_to_pb(metric: Metric) -> pb::Metric {
    match metric {
        Metric::Cosine => pb::Metric::Cosine,
        Metric::Dot => pb::Metric::Dot,
        Metric::L2 => pb::Metric::L2,
    }
}

/// The modality named by a protobuf enum value: `None` for unspecified.
fn modality_from_pb(value: i32, what: &str) -> Result<Option<Modality>, StoreError> {
    let modality = match pb::Modality::try_from(value) {
        Ok(pb::Modality::Unspecified) => return Ok(None),
        Ok(pb::Modality::Text) => Modality::Text,
        Ok(pb::Modality::Image) => Modality::Image,
        Ok(pb::Modality::Audio) => Modality::Audio,
        Ok(pb::Modality::PointCloud) => Modality::PointCloud,
        Ok(pb::Modality::Depth) => Modality::Depth,
        Ok(pb::Modality::Thermal) => Modality::Thermal,
        Ok(pb::Modality::Imu) => Modality::Imu,
        Err(_) => return Err(StoreError::InvalidSpec(format!("{what}: unknown modality {value}"))),
    };
    Ok(Some(modality))
}

fn modality_to_pb(modality: Option<Modality>) -> i32 {
    modality.map_or(pb::Modality::Unspecified, convert::modality) as i32
}

fn info(collection: &Collection) -> pb::CollectionInfo {
    let m = collection.manifest();
    let (index, hnsw) = match m.index {
        IndexSpec::Exact => (pb::IndexKind::Exact, None),
        IndexSpec::Hnsw(p) => (
            pb::IndexKind::Hnsw,
            Some(pb::HnswParams {
                m: p.m as u32,
                ef_construction: p.ef_construction as u32,
                ef_search: p.ef_search as u32,
            }),
        ),
    };
    pb::CollectionInfo {
        name: m.name.clone(),
        model: m.model.clone(),
        dimension: m.dim as u32,
        metric: metric_to_pb(m.metric) as i32,
        index: index as i32,
        hnsw,
        schema: m.schema.as_ref().map(|s| pb::MetadataSchema {
            allowed_keys: s.allowed.iter().cloned().collect(),
            required_keys: s.required.iter().cloned().collect(),
        }),
        count: collection.len() as u64,
    }
}

fn stored_item(item: crate::store::Item) -> pb::StoredItem {
    pb::StoredItem {
        id: item.id,
        modality: modality_to_pb(item.modality),
        metadata: item.metadata.into_iter().collect(),
        vector: item.vector.unwrap_or_default(),
    }
}

/// Maps an embedding failure for a collection: an unknown model means the collection's model is
/// gone, anything else is about the input.
fn embed_error(collection: &Collection, e: EngineError) -> Status {
    match e {
        EngineError::ModelNotFound { .. } => StoreError::ModelUnavailable {
            collection: collection.manifest().name.clone(),
            model: collection.manifest().model.clone(),
        }
        .into(),
        e => e.into(),
    }
}

impl CollectionsService {
    async fn run_create(&self, request: pb::CreateCollectionRequest) -> Result<pb::CollectionInfo, Status> {
        let store = Arc::clone(self.store()?);
        crate::store::check_name(&request.name)?;
        let model = self.engine.registry().resolve(&request.model)?;
        let metric = metric_from_pb(request.metric)?;
        let index = match pb::IndexKind::try_from(request.index) {
            Ok(pb::IndexKind::Unspecified | pb::IndexKind::Exact) => IndexSpec::Exact,
            Ok(pb::IndexKind::Hnsw) => {
                let defaults = HnswParams::default();
                let given = request.hnsw.unwrap_or_default();
                let or = |v: u32, d: usize| if v == 0 { d } else { v as usize };
                IndexSpec::Hnsw(HnswParams {
                    m: or(given.m, defaults.m),
                    ef_construction: or(given.ef_construction, defaults.ef_construction),
                    ef_search: or(given.ef_search, defaults.ef_search),
                })
            }
            Err(_) => {
                return Err(StoreError::InvalidSpec(format!("unknown index kind {}", request.index)).into());
            }
        };
        let schema = request.schema.and_then(|s| {
            (!(s.allowed_keys.is_empty() && s.required_keys.is_empty())).then(|| MetadataSchema {
                allowed: s.allowed_keys.into_iter().collect(),
                required: s.required_keys.into_iter().collect(),
            })
        });
        let manifest = CollectionManifest {
            format: MANIFEST_FORMAT,
            name: request.name,
            model: model.name.clone(),
            dim: model.dim,
            metric,
            index,
            schema,
        };
        let collection = blocking(move || store.create(manifest)).await?;
        Ok(info(&collection))
    }

    async fn run_upsert(&self, request: pb::UpsertRequest) -> Result<pb::UpsertResponse, Status> {
        let collection = self.collection(&request.collection)?;
        self.engine.limits().check_items("items", request.items.len())?;
        let mut items = Vec::with_capacity(request.items.len());
        let mut inputs = Vec::new();
        let mut raw = Vec::with_capacity(request.items.len());
        for (position, item) in request.items.into_iter().enumerate() {
            let metadata: BTreeMap<String, String> = item.metadata.into_iter().collect();
            let modality = modality_from_pb(item.modality, &format!("item {:?}", item.id))?;
            let vector = match item.source {
                Some(pb::item::Source::Vector(v)) => {
                    raw.push(position);
                    v.values
                }
                Some(pb::item::Source::Input(mut input)) => {
                    input.id = item.id.clone();
                    inputs.push((position, input));
                    Vec::new()
                }
                None => {
                    return Err(StoreError::InvalidItem {
                        id: item.id,
                        reason: "set either input or vector".into(),
                    }
                    .into());
                }
            };
            items.push(NewItem { id: item.id, modality, metadata, vector });
        }
        // Ids, metadata and raw vectors are checked before any input is embedded, so a bad item
        // costs no inference.
        collection.check_items(items.iter().map(|i| (i.id.as_str(), &i.metadata)))?;
        for &position in &raw {
            let item = &items[position];
            collection.check_vector(&format!("item {:?}", item.id), &item.vector)?;
        }
        if !inputs.is_empty() {
            let model = self.model_of(&collection)?;
            let (positions, inputs): (Vec<usize>, Vec<pb::Input>) = inputs.into_iter().unzip();
            let engine_items = convert::items(inputs)?;
            let embedded = embed_unit(&self.engine, &model.name, engine_items)
                .await
                .map_err(|e| embed_error(&collection, e))?;
            for (position, e) in positions.into_iter().zip(embedded.embeddings) {
                let item = &mut items[position];
                if item.modality.is_some_and(|m| m != e.modality) {
                    return Err(StoreError::InvalidItem {
                        id: item.id.clone(),
                        reason: format!(
                            "modality field says {:?} but the input is {}",
                            item.modality, e.modality
                        ),
                    }
                    .into());
                }
                item.modality = Some(e.modality);
                item.vector = e.vector;
            }
        }
        let count = items.len();
        let writer = Arc::clone(&collection);
        let sequence = blocking(move || writer.upsert(items)).await?;
        self.compact_later(collection);
        Ok(pb::UpsertResponse { upserted: count as u32, sequence })
    }

    async fn run_search(&self, request: pb::SearchRequest) -> Result<pb::SearchResponse, Status> {
        let collection = self.collection(&request.collection)?;
        let k = request.top_k as usize;
        if k == 0 || k > MAX_TOP_K {
            return Err(StoreError::TopK { top_k: k, max: MAX_TOP_K }.into());
        }
        let filter = match request.filter {
            Some(f) => Filter {
                modalities: f
                    .modalities
                    .into_iter()
                    .map(|m| modality_from_pb(m, "filter"))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                    .collect(),
                metadata: f.metadata.into_iter().collect(),
            },
            None => Filter::default(),
        };
        let query = match request.query {
            Some(pb::search_request::Query::Vector(v)) => v.values,
            Some(pb::search_request::Query::Input(mut input)) => {
                let model = self.model_of(&collection)?;
                if input.id.is_empty() {
                    input.id = "query".into();
                }
                let embedded = embed_unit(&self.engine, &model.name, convert::items(vec![input])?)
                    .await
                    .map_err(|e| embed_error(&collection, e))?;
                embedded
                    .embeddings
                    .into_iter()
                    .next()
                    .map(|e| e.vector)
                    .ok_or_else(|| StoreError::Internal("the query got no embedding".into()))?
            }
            None => {
                return Err(StoreError::InvalidItem {
                    id: "query".into(),
                    reason: "set either input or vector".into(),
                }
                .into());
            }
        };
        let ef = (request.ef_search > 0).then_some(request.ef_search as usize);
        let (exact, with_vectors) = (request.exact, request.include_vectors);
        let outcome = blocking(move || collection.search(query, k, &filter, exact, ef, with_vectors)).await?;
        Ok(pb::SearchResponse {
            hits: outcome
                .hits
                .into_iter()
                .map(|h| {
                    let item = stored_item(h.item);
                    pb::SearchHit {
                        id: item.id,
                        score: h.score,
                        modality: item.modality,
                        metadata: item.metadata,
                        vector: item.vector,
                    }
                })
                .collect(),
            exact: outcome.exact,
        })
    }

    async fn run_stats(&self, request: pb::StatsRequest) -> Result<pb::StatsResponse, Status> {
        let collection = self.collection(&request.collection)?;
        let stats = collection.stats()?;
        Ok(pb::StatsResponse {
            collection: Some(info(&collection)),
            count_by_modality: stats.by_modality.into_iter().collect(),
            last_sequence: stats.last_seq,
            wal_bytes: stats.wal_bytes,
            snapshot_bytes: stats.snapshot_bytes,
            compactions: stats.compactions,
            recovered_records: stats.recovery.records,
            corrupt_tails: stats.recovery.corrupt_tails,
            truncated_bytes: stats.recovery.truncated_bytes,
            recovery_report: stats.recovery.report,
            index_tombstones: stats.index_tombstones,
            index_ready: stats.index_ready,
        })
    }
}

#[tonic::async_trait]
impl Collections for CollectionsService {
    async fn create_collection(
        &self,
        request: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CreateCollectionResponse>, Status> {
        let info = self.run_create(request.into_inner()).await?;
        Ok(Response::new(pb::CreateCollectionResponse { collection: Some(info) }))
    }

    async fn list_collections(
        &self,
        _request: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let collections = self.store()?.list().iter().map(|c| info(c)).collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn delete_collection(
        &self,
        request: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        let store = Arc::clone(self.store()?);
        let name = request.into_inner().name;
        blocking(move || store.delete(&name)).await?;
        Ok(Response::new(pb::DeleteCollectionResponse {}))
    }

    async fn upsert(
        &self,
        request: Request<pb::UpsertRequest>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        Ok(Response::new(self.run_upsert(request.into_inner()).await?))
    }

    async fn get(&self, request: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        let collection = self.collection(&request.collection)?;
        self.engine.limits().check_items("ids", request.ids.len())?;
        let (items, missing_ids) = collection.get(&request.ids, request.include_vectors)?;
        Ok(Response::new(pb::GetResponse {
            items: items.into_iter().map(stored_item).collect(),
            missing_ids,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let request = request.into_inner();
        let collection = self.collection(&request.collection)?;
        self.engine.limits().check_items("ids", request.ids.len())?;
        let writer = Arc::clone(&collection);
        let ids = request.ids;
        let (deleted, missing_ids, sequence) = blocking(move || writer.delete(&ids)).await?;
        self.compact_later(collection);
        Ok(Response::new(pb::DeleteResponse { deleted: deleted as u32, missing_ids, sequence }))
    }

    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        Ok(Response::new(self.run_search(request.into_inner()).await?))
    }

    async fn stats(&self, request: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        Ok(Response::new(self.run_stats(request.into_inner()).await?))
    }
}
