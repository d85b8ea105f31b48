//! Helpers shared by the collection's unit tests: scratch folders, a store over one, and items.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Collection, NewItem};
use crate::store::manifest::{CollectionManifest, IndexSpec, MANIFEST_FORMAT, Metric};
use crate::store::{Store, StoreOptions};

/// How long a test waits for another thread before failing.
pub(super) const WAIT: Duration = Duration::from_secs(20);

/// A scratch folder removed when dropped.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(what: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("bindery-unit-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn open_store(dir: &Scratch) -> Store {
    Store::open(&dir.0, StoreOptions::default()).unwrap()
}

pub(super) fn create(store: &Store, name: &str, index: IndexSpec, dim: usize) -> Arc<Collection> {
    store
        .create(CollectionManifest {
            format: MANIFEST_FORMAT,
            name: name.into(),
            model: "m".into(),
            dim,
            metric: Metric::L2,
            index,
            schema: None,
        })
        .unwrap()
}

pub(super) fn item(id: &str, vector: Vec<f32>, tag: &str) -> NewItem {
    NewItem { id: id.into(), modality: None, metadata: [("tag".to_string(), tag.to_string())].into(), vector }
}

pub(super) fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
