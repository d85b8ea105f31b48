//! What a collection accepts: item ids, metadata against the collection's schema, vectors
//! against its dimension and metric, and the limits of a search. The checks are the
//! manifest's, so every backend (and the service, before it embeds anything) applies the same. Writes are checked here
//! before anything is logged, so a failed check changes nothing; snapshot rows and log records
//! are checked again at open, since a damaged file can hold what no writer would have logged.

use std::collections::{BTreeMap, HashSet};

use crate::store::StoreError;
use crate::store::manifest::{CollectionManifest, HnswParams, Metric};
use crate::store::record::{Op, StoredRow};
use crate::store::vector::{self, VectorError};

/// Longest item id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Most hits one search may ask for.
pub const MAX_TOP_K: usize = 10_000;

impl CollectionManifest {
    /// Checks ids and metadata of items about to be written (cheap; run before embedding).
    pub fn check_items<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    ) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let mut any = false;
        for (id, metadata) in items {
            any = true;
            check_id(id)?;
            if !seen.insert(id) {
                return Err(StoreError::DuplicateId { id: id.to_string() });
            }
            self.check_metadata(id, metadata)?;
        }
        if !any {
            return Err(StoreError::NoItems);
        }
        Ok(())
    }

    fn check_metadata(&self, id: &str, metadata: &BTreeMap<String, String>) -> Result<(), StoreError> {
        if metadata.keys().any(|k| k.is_empty()) {
            return Err(StoreError::InvalidItem {
                id: id.to_string(),
                reason: "metadata has an empty key".into(),
            });
        }
        let Some(schema) = &self.schema else { return Ok(()) };
        if let Some(missing) = schema.required.iter().find(|k| !metadata.contains_key(*k)) {
            return Err(StoreError::InvalidItem {
                id: id.to_string(),
                reason: format!("metadata key {missing:?} is required by the collection's schema"),
            });
        }
        if !schema.allowed.is_empty()
            && let Some(extra) =
                metadata.keys().find(|k| !schema.allowed.contains(*k) && !schema.required.contains(*k))
        {
            return Err(StoreError::InvalidItem {
                id: id.to_string(),
                reason: format!("metadata key {extra:?} is not allowed by the collection's schema"),
            });
        }
        Ok(())
    }

    /// Checks a vector for this collection without changing it. `what` names it in errors.
    pub fn check_vector(&self, what: &str, v: &[f32]) -> Result<(), StoreError> {
        let wrap = |source: VectorError| StoreError::Vector { what: what.to_string(), source };
        vector::check(v, self.dim).map_err(wrap)?;
        if self.metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
            return Err(wrap(VectorError::Zero));
        }
        Ok(())
    }

    /// Checks a vector for this collection and brings it to the stored form (unit norm for
    /// cosine). `what` names it in errors.
    pub fn prepare_vector(&self, what: &str, mut v: Vec<f32>) -> Result<Vec<f32>, StoreError> {
        let wrap = |source: VectorError| StoreError::Vector { what: what.to_string(), source };
        vector::check(&v, self.dim).map_err(wrap)?;
        if self.metric == Metric::Cosine {
            vector::normalize(&mut v).map_err(wrap)?;
        }
        Ok(v)
    }
}

/// Checks a stored row read back from a snapshot or the log.
pub(super) fn check_row(row: &StoredRow, dim: usize) -> Result<(), String> {
    check_id(&row.id).map_err(|e| e.to_string())?;
    vector::check(&row.vector, dim).map_err(|e| format!("item {:?}: {e}", row.id))
}

/// Checks a replayed change as [`Collection::upsert`] checked it before logging it.
pub(super) fn check_op(op: &Op, dim: usize) -> Result<(), String> {
    match op {
        Op::Upsert(u) => u.rows.iter().try_for_each(|r| check_row(r, dim)),
        Op::Delete(_) => Ok(()),
    }
}

/// Checks an item id.
pub fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() {
        return Err(StoreError::InvalidItem { id: String::new(), reason: "item id is empty".into() });
    }
    if id.len() > MAX_ID_BYTES {
        return Err(StoreError::InvalidItem {
            id: format!("{}...", id.chars().take(32).collect::<String>()),
            reason: format!("item id is {} bytes, more than the limit of {MAX_ID_BYTES}", id.len()),
        });
    }
    Ok(())
}

/// Checks a search's `k` and candidate list size `ef`.
pub fn check_search_limits(k: usize, ef: Option<usize>) -> Result<(), StoreError> {
    if k == 0 || k > MAX_TOP_K {
        return Err(StoreError::TopK { top_k: k, max: MAX_TOP_K });
    }
    if let Some(ef) = ef
        && ef > HnswParams::MAX_EF
    {
        return Err(StoreError::InvalidSpec(format!("ef_search = {ef} is above {}", HnswParams::MAX_EF)));
    }
    Ok(())
}
