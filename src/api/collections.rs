//! `bindery.v1.Collections` at the edge: protobuf requests to the collections service's types,
//! and its results back.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::media_url::MediaFetcher;
use super::pb::collections_server::Collections;
use super::{convert, fetch, pb};
use crate::engine::Engine;
use crate::modality::Modality;
use crate::service::collections::{SearchQuery, UpsertItem};
use crate::service::{self, CollectionsError, Operand};
use crate::store::{
    CollectionInfo, CollectionManifest, CollectionStore, Filter, HnswParams, IndexSpec, MetadataSchema,
    Metric, StoreError, manifest::MANIFEST_FORMAT,
};

/// Implementation of the Collections service over the collections service (a
/// [`CollectionStore`] and the [`Engine`] that embeds inputs for it).
#[derive(Clone)]
pub struct CollectionsService {
    collections: service::Collections,
    media: MediaFetcher,
}

impl CollectionsService {
    /// A service over `store`, fetching media URLs with `media`; with `None` every call fails
    /// with FAILED_PRECONDITION (the server runs without a data folder).
    pub fn new(engine: Arc<Engine>, store: Option<Arc<dyn CollectionStore>>, media: MediaFetcher) -> Self {
        Self { collections: service::Collections::new(engine, store), media }
    }
}

/// The status of a failed collection call.
fn status(error: CollectionsError) -> Status {
    match error {
        CollectionsError::Store(e) => e.into(),
        CollectionsError::Engine(e) => e.into(),
        CollectionsError::TooMany(e) => e.into(),
    }
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
    Modality::from_pb(value)
        .map_err(|value| StoreError::InvalidSpec(format!("{what}: unknown modality {value}")))
}

fn modality_to_pb(modality: Option<Modality>) -> i32 {
    modality.map_or(pb::Modality::Unspecified, Modality::to_pb) as i32
}

fn info(collection: &CollectionInfo) -> pb::CollectionInfo {
    let m = &collection.manifest;
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
        count: collection.count,
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

impl CollectionsService {
    async fn run_create(&self, request: pb::CreateCollectionRequest) -> Result<pb::CollectionInfo, Status> {
        let store = self.collections.store()?;
        crate::store::check_name(&request.name)?;
        let model = self.collections.engine().registry().resolve(&request.model)?;
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
        Ok(info(&store.create(manifest).await?))
    }

    async fn run_upsert(&self, mut request: pb::UpsertRequest) -> Result<pb::UpsertResponse, Status> {
        let inputs = request.items.iter_mut().filter_map(|item| match &mut item.source {
            Some(pb::item::Source::Input(input)) => {
                if input.id.is_empty() {
                    input.id.clone_from(&item.id);
                }
                Some(input)
            }
            _ => None,
        });
        fetch::resolve(&self.media, inputs.collect()).await?;
        let mut items = Vec::with_capacity(request.items.len());
        for item in request.items {
            let modality = modality_from_pb(item.modality, &format!("item {:?}", item.id))?;
            let source = match item.source {
                Some(pb::item::Source::Vector(v)) => Operand::Vector(v.values),
                Some(pb::item::Source::Input(input)) => match convert::items(vec![input])?.pop() {
                    Some(input) => Operand::Input(input),
                    None => return Err(StoreError::Internal("an input got lost in conversion".into()).into()),
                },
                None => {
                    return Err(StoreError::InvalidItem {
                        id: item.id,
                        reason: "set either input or vector".into(),
                    }
                    .into());
                }
            };
            items.push(UpsertItem {
                id: item.id,
                modality,
                metadata: item.metadata.into_iter().collect(),
                source,
            });
        }
        let (upserted, sequence) =
            self.collections.upsert(&request.collection, items).await.map_err(status)?;
        Ok(pb::UpsertResponse { upserted: upserted as u32, sequence })
    }

    async fn run_search(&self, mut request: pb::SearchRequest) -> Result<pb::SearchResponse, Status> {
        if let Some(pb::search_request::Query::Input(input)) = &mut request.query {
            if input.id.is_empty() {
                input.id = "query".into();
            }
            fetch::resolve(&self.media, vec![input]).await?;
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
            Some(pb::search_request::Query::Vector(v)) => Operand::Vector(v.values),
            Some(pb::search_request::Query::Input(mut input)) => {
                if input.id.is_empty() {
                    input.id = "query".into();
                }
                match convert::items(vec![input])?.pop() {
                    Some(input) => Operand::Input(input),
                    None => {
                        return Err(StoreError::Internal("the query got lost in conversion".into()).into());
                    }
                }
            }
            None => {
                return Err(StoreError::InvalidItem {
                    id: "query".into(),
                    reason: "set either input or vector".into(),
                }
                .into());
            }
        };
        let search = SearchQuery {
            query,
            top_k: request.top_k as usize,
            filter,
            exact: request.exact,
            ef_search: (request.ef_search > 0).then_some(request.ef_search as usize),
            include_vectors: request.include_vectors,
        };
        let outcome = self.collections.search(&request.collection, search).await.map_err(status)?;
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
        let (collection, stats) = self.collections.store()?.stats(&request.collection).await?;
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
        let collections = self.collections.store()?.list().await?.iter().map(info).collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn delete_collection(
        &self,
        request: Request<pb::DeleteCollectionRequest>,
    ) -> Result<Response<pb::DeleteCollectionResponse>, Status> {
        self.collections.store()?.drop_collection(&request.into_inner().name).await?;
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
        let store = self.collections.store()?;
        self.collections.engine().limits().check_items("ids", request.ids.len())?;
        let (items, missing_ids) =
            store.get(&request.collection, request.ids, request.include_vectors).await?;
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
        let (deleted, missing_ids, sequence) =
            self.collections.delete(&request.collection, request.ids).await.map_err(status)?;
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
