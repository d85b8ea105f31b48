//! Content-addressed embedding cache: the same bytes for the same model and modality give the
//! same embedding, so repeated inputs skip preprocessing and inference.

use std::sync::Arc;

use super::Item;
use crate::modality::{Modality, Observed};

/// Cache key: a BLAKE3 hash of the model, the modality and every byte that preprocessing reads.
/// A cryptographic hash, because clients share the cache: one must not be able to craft an input
/// that collides with another client's and poison its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `item` embedded by `model`.
    pub fn of(model: &str, modality: Modality, item: &Item) -> Self {
        let mut h = blake3::Hasher::new();
        // Length-prefix each part so two different splits of the same bytes never collide.
        let mut part = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        part(model.as_bytes());
        part(modality.as_str().as_bytes());
        item.payload.key_parts(&mut part);
        Self(*h.finalize().as_bytes())
    }
}

/// A cached embedding: the tower's raw output (normalised on the way out when the request asks).
#[derive(Debug, Clone)]
pub struct CachedEmbedding {
    /// Raw tower output.
    pub vector: Arc<[f32]>,
    /// What preprocessing observed.
    pub observed: Observed,
}

/// Bytes an entry is charged: its vector plus the key and bookkeeping.
#[derive(Debug, Clone, Copy)]
struct EntryWeight;

/// Rough per-entry overhead of the key, the `Arc` header and the cache's own slot.
const ENTRY_OVERHEAD_BYTES: u64 = 96;

impl quick_cache::Weighter<CacheKey, CachedEmbedding> for EntryWeight {
    fn weight(&self, _key: &CacheKey, value: &CachedEmbedding) -> u64 {
        (value.vector.len() * std::mem::size_of::<f32>()) as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// An in-memory cache bounded by bytes.
pub struct EmbeddingCache {
    entries: quick_cache::sync::Cache<CacheKey, CachedEmbedding, EntryWeight>,
    capacity_bytes: u64,
}

impl EmbeddingCache {
    /// A cache holding at most `capacity_bytes` of entries; `None` when the capacity is 0.
    pub fn new(capacity_bytes: u64) -> Option<Self> {
        if capacity_bytes == 0 {
            return None;
        }
        // A guess at the entry count (512-dim vectors) only sizes the initial tables.
        let estimated = (capacity_bytes / (512 * 4 + ENTRY_OVERHEAD_BYTES)).clamp(16, 1 << 20) as usize;
        Some(Self {
            entries: quick_cache::sync::Cache::with_weighter(estimated, capacity_bytes, EntryWeight),
            capacity_bytes,
        })
    }

    /// The cached embedding of `key`, if any.
    pub fn get(&self, key: &CacheKey) -> Option<CachedEmbedding> {
        self.entries.get(key)
    }

    /// Remembers `value` for `key`, evicting older entries beyond the byte capacity.
    pub fn insert(&self, key: CacheKey, value: CachedEmbedding) {
        self.entries.insert(key, value);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.entries.weight()
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// Configured capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Item {
        Item { id: "a".into(), payload: crate::modality::text::payload(t.into()) }
    }

    #[test]
    fn keys_depend_on_model_modality_and_content_only() {
        let a = CacheKey::of("m", Modality::Text, &text("hello"));
        let mut other_id = text("hello");
        other_id.id = "b".into();
        assert_eq!(a, CacheKey::of("m", Modality::Text, &other_id));
        assert_ne!(a, CacheKey::of("m2", Modality::Text, &text("hello")));
        assert_ne!(a, CacheKey::of("m", Modality::Text, &text("hello!")));
        // Moving bytes between the model name and the content must change the key.
        assert_ne!(
            CacheKey::of("ab", Modality::Text, &text("c")),
            CacheKey::of("a", Modality::Text, &text("bc"))
        );
    }

    #[test]
    fn capacity_is_in_bytes() {
        let cache = EmbeddingCache::new(10 * (128 * 4 + ENTRY_OVERHEAD_BYTES)).unwrap();
        for i in 0..100 {
            let key = CacheKey::of("m", Modality::Text, &text(&i.to_string()));
            cache.insert(
                key,
                CachedEmbedding { vector: vec![0.0; 128].into(), observed: Observed::default() },
            );
        }
        assert!(cache.bytes() <= cache.capacity_bytes(), "{} > {}", cache.bytes(), cache.capacity_bytes());
        assert!(cache.len() <= 10 && !cache.is_empty(), "{} entries", cache.len());
        assert!(EmbeddingCache::new(0).is_none());
    }
}
