//! On-disk records of the log and the snapshot (protobuf encoding via prost).
//!
//! These are storage formats, separate from the gRPC messages so the API can evolve without
//! rewriting data. Field numbers must never be reused.

use std::collections::BTreeMap;

/// One acknowledged write: every item of one `Upsert` or `Delete` call, applied together.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WalRecord {
    /// Position in the collection's history, starting at 1, strictly increasing.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// The change.
    #[prost(oneof = "Op", tags = "2, 3")]
    pub op: Option<Op>,
}

/// A change to a collection.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Op {
    /// Insert or replace items.
    #[prost(message, tag = "2")]
    Upsert(UpsertOp),
    /// Remove items.
    #[prost(message, tag = "3")]
    Delete(DeleteOp),
}

/// Items to insert or replace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpsertOp {
    /// The items, each complete.
    #[prost(message, repeated, tag = "1")]
    pub rows: Vec<StoredRow>,
}

/// Ids to remove.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteOp {
    /// The ids (each present when the write was made).
    #[prost(string, repeated, tag = "1")]
    pub ids: Vec<String>,
}

/// An item as stored.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredRow {
    /// Client id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Modality name (`Modality::as_str`), empty when unknown.
    #[prost(string, tag = "2")]
    pub modality: String,
    /// String metadata.
    #[prost(btree_map = "string, string", tag = "3")]
    pub metadata: BTreeMap<String, String>,
    /// The vector, as searched (unit norm for cosine collections).
    #[prost(float, repeated, tag = "4")]
    pub vector: Vec<f32>,
}

/// First record of a snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotHeader {
    /// Sequence number of the last write the snapshot includes.
    #[prost(uint64, tag = "1")]
    pub last_seq: u64,
    /// Number of items that follow.
    #[prost(uint64, tag = "2")]
    pub count: u64,
    /// Vector dimension.
    #[prost(uint64, tag = "3")]
    pub dim: u64,
}

/// A run of items in a snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotChunk {
    /// The items.
    #[prost(message, repeated, tag = "1")]
    pub rows: Vec<StoredRow>,
}

impl WalRecord {
    /// Structural check of a decoded record (the decoder accepts a missing oneof).
    pub fn check(&self) -> Result<(), String> {
        match &self.op {
            None => Err("record carries no operation".into()),
            Some(Op::Upsert(u)) if u.rows.is_empty() => Err("upsert record without items".into()),
            Some(Op::Delete(d)) if d.ids.is_empty() => Err("delete record without ids".into()),
            Some(_) => Ok(()),
        }
    }
}
