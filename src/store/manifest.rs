//! A collection's settings, fixed at creation and kept in `manifest.json` beside its data.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StoreError;

/// Manifest format written by this version.
pub const MANIFEST_FORMAT: u32 = 1;

/// File name of the manifest inside a collection folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// How items are scored against a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Cosine similarity; vectors are stored at unit norm so it is a dot product.
    Cosine,
    /// Dot product of the vectors as given.
    Dot,
    /// Euclidean distance (lower is nearer).
    L2,
}

impl Metric {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::L2 => "l2",
        }
    }
}

/// HNSW graph parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    /// Links per node and layer.
    pub m: usize,
    /// Candidate list size while building.
    pub ef_construction: usize,
    /// Default candidate list size while searching.
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        // Measured on clustered 1024-d data (benches/search.rs): recall@10 above 0.95 with these,
        // at a build cost that stays practical on a few cores.
        Self { m: 16, ef_construction: 100, ef_search: 128 }
    }
}

impl HnswParams {
    /// Largest `m` accepted (the graph library stops the process above 256).
    pub const MAX_M: usize = 128;
    /// Largest candidate list accepted, for building and searching.
    pub const MAX_EF: usize = 10_000;

    /// Refuses values outside the supported ranges.
    pub fn check(&self) -> Result<(), StoreError> {
        let bad = |what: &str, value: usize, range: &str| {
            Err(StoreError::InvalidSpec(format!("hnsw {what} = {value} is outside {range}")))
        };
        if !(2..=Self::MAX_M).contains(&self.m) {
            return bad("m", self.m, &format!("2..={}", Self::MAX_M));
        }
        if !(1..=Self::MAX_EF).contains(&self.ef_construction) {
            return bad("ef_construction", self.ef_construction, &format!("1..={}", Self::MAX_EF));
        }
        if !(1..=Self::MAX_EF).contains(&self.ef_search) {
            return bad("ef_search", self.ef_search, &format!("1..={}", Self::MAX_EF));
        }
        Ok(())
    }
}

/// The search index of a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IndexSpec {
    /// Score every item.
    Exact,
    /// Approximate search over an HNSW graph.
    Hnsw(HnswParams),
}

/// Metadata keys a collection accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataSchema {
    /// Keys allowed besides the required ones; empty allows any key.
    pub allowed: BTreeSet<String>,
    /// Keys every item must carry.
    pub required: BTreeSet<String>,
}

/// Everything fixed when a collection is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionManifest {
    /// Manifest format version.
    pub format: u32,
    /// Collection name (also its folder name).
    pub name: String,
    /// Model whose embedding space the collection lives in.
    pub model: String,
    /// Vector dimension.
    pub dim: usize,
    /// Scoring.
    pub metric: Metric,
    /// Search index.
    pub index: IndexSpec,
    /// Accepted metadata keys; `None` accepts any.
    pub schema: Option<MetadataSchema>,
}

impl CollectionManifest {
    /// Checks the settings a client chose.
    pub fn check(&self) -> Result<(), StoreError> {
        super::check_name(&self.name)?;
        if self.dim == 0 {
            return Err(StoreError::InvalidSpec("dimension must be positive".into()));
        }
        if let IndexSpec::Hnsw(params) = &self.index {
            params.check()?;
            if self.metric == Metric::Dot {
                // Unnormalised inner products are not a distance; the graph search assumes one.
                return Err(StoreError::InvalidSpec(
                    "an hnsw index supports the cosine and l2 metrics, not dot (use cosine for unit vectors, or an exact index)"
                        .into(),
                ));
            }
        }
        if let Some(schema) = &self.schema {
            for key in schema.allowed.iter().chain(&schema.required) {
                if key.is_empty() {
                    return Err(StoreError::InvalidSpec("metadata schema lists an empty key".into()));
                }
            }
        }
        Ok(())
    }

    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(MANIFEST_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
        let manifest: Self = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(StoreError::Corrupt {
                path,
                reason: format!(
                    "manifest format {} is not supported (expected {MANIFEST_FORMAT})",
                    manifest.format
                ),
            });
        }
        Ok(manifest)
    }

    /// The manifest as written to disk.
    pub fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string_pretty(self).map_err(|e| StoreError::Internal(format!("manifest: {e}")))
    }
}
