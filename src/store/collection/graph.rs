//! The HNSW graph, kept off the request path: how rows join it and how a whole graph is built.
//!
//! A writer inserts the rows it added after applying its change, outside the state lock, so
//! searches keep running meanwhile. A graph over rows already present (at open, or after a
//! repack renumbered them) is filled a chunk at a time: each chunk is copied under a short read
//! lock and inserted with no lock held, while writers add their new rows to the same graph as
//! they would to a finished one. At open this runs on a thread of its own and searches are exact
//! until the graph is installed; a repack's rebuild runs in its writer's turn.

use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;
#[cfg(test)]
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::Collection;
use super::state::State;
use crate::store::StoreError;
use crate::store::hnsw::HnswIndex;
use crate::store::manifest::{CollectionManifest, IndexSpec};

/// Vector components copied per step of a graph build (4 MiB), so each read lock is short.
const GRAPH_CHUNK_VALUES: usize = 1 << 20;

/// A graph to fill with rows `start..rows` (those before are in it, or tombstones) and
/// install, if rows were not renumbered meanwhile.
#[derive(Debug, Clone)]
pub(super) struct GraphJob {
    pub(super) graph: Arc<HnswIndex>,
    pub(super) start: usize,
    pub(super) rows: usize,
    /// [`State::generation`] when the job started.
    generation: u64,
}

/// Rows copied out of the state for a graph build, so they are inserted without a lock held.
pub(super) struct GraphChunk {
    /// First row after the chunk.
    pub(super) end: usize,
    /// The chunk's live rows (tombstones are left out: they would only be filtered out).
    pub(super) rows: Vec<usize>,
    /// Their vectors, row-major.
    pub(super) values: Vec<f32>,
}

/// What one step of a graph build did.
pub(super) enum GraphStep {
    Chunk(GraphChunk),
    Installed,
    /// Rows were renumbered since the job started: its graph is worthless.
    Stale,
}

/// Inserts `rows` (their vectors row-major in `values`) into `graph`. The graph library links
/// a point to others only once the graph has an entry point, so points inserted in parallel
/// into an empty graph may all find none and stay unreachable: the first goes in alone.
pub(super) fn insert_rows(graph: &HnswIndex, rows: impl Iterator<Item = usize>, values: &[f32], dim: usize) {
    let mut batch = rows.zip(values.chunks_exact(dim));
    if graph.is_empty()
        && let Some((row, vector)) = batch.next()
    {
        graph.insert(row, vector);
    }
    graph.insert_batch(batch);
}

/// How a background graph build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BuildEnd {
    Installed,
    /// Rows were repacked meanwhile; the repack built its own graph.
    Stale,
    /// The collection was deleted or dropped.
    Dropped,
    /// The state lock was poisoned.
    Failed,
}

/// Points of a background graph build at which a test's hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BuildStep {
    Start,
    /// Every row present at the start is in the graph; it is about to be installed.
    Install,
    End(BuildEnd),
}

/// A test's observer of background graph builds, run at each [`BuildStep`] (it may block).
#[cfg(test)]
type BuildHook = Arc<dyn Fn(BuildStep) + Send + Sync>;

/// Hooks by collection folder: builds start inside `open`, before a test could reach the
/// collection, and keying by folder keeps tests running in parallel apart.
#[cfg(test)]
static BUILD_HOOKS: Mutex<Vec<(PathBuf, BuildHook)>> = Mutex::new(Vec::new());

#[cfg(test)]
fn build_hook(dir: &Path, step: BuildStep) {
    let hook = {
        let hooks = BUILD_HOOKS.lock().unwrap_or_else(|e| e.into_inner());
        hooks.iter().find(|(d, _)| d == dir).map(|(_, h)| Arc::clone(h))
    };
    if let Some(hook) = hook {
        hook(step);
    }
}

#[cfg(not(test))]
fn build_hook(_dir: &Path, _step: BuildStep) {}

/// Fills `job`'s graph and installs it, unless the collection goes away or its rows are
/// renumbered first. Holds only a weak reference between steps, so a dropped collection is
/// freed and its build abandoned at the next chunk.
fn build_in_background(collection: &Weak<Collection>, job: &GraphJob, dir: &Path, name: &str) {
    let started = Instant::now();
    tracing::info!(collection = %name, rows = job.rows, "building the HNSW graph in the background; searches are exact until it is ready");
    build_hook(dir, BuildStep::Start);
    let mut next = job.start;
    let end = loop {
        if next >= job.rows {
            build_hook(dir, BuildStep::Install);
        }
        let Some(c) = collection.upgrade() else { break BuildEnd::Dropped };
        if c.dropped.load(Ordering::Acquire) {
            break BuildEnd::Dropped;
        }
        match c.graph_step(job, next) {
            Ok(GraphStep::Chunk(chunk)) => {
                let dim = c.manifest.dim;
                drop(c);
                next = chunk.end;
                insert_rows(&job.graph, chunk.rows.into_iter(), &chunk.values, dim);
            }
            Ok(GraphStep::Installed) => break BuildEnd::Installed,
            Ok(GraphStep::Stale) => break BuildEnd::Stale,
            Err(_) => break BuildEnd::Failed,
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    match end {
        BuildEnd::Installed => {
            tracing::info!(collection = %name, rows = job.rows, seconds, "HNSW graph ready");
        }
        BuildEnd::Stale => {
            tracing::info!(collection = %name, rows = job.rows, seconds, "HNSW graph discarded: rows were repacked meanwhile");
        }
        BuildEnd::Dropped => {
            tracing::info!(collection = %name, rows = job.rows, seconds, "HNSW graph discarded: the collection is gone");
        }
        BuildEnd::Failed => {
            tracing::error!(collection = %name, rows = job.rows, seconds, "HNSW graph build stopped: the collection is unusable");
        }
    }
    build_hook(dir, BuildStep::End(end));
}

impl State {
    /// The graph that new rows join: the installed one, or the one being built.
    pub(super) fn graph_for_inserts(&self) -> Option<&Arc<HnswIndex>> {
        self.index.as_ref().or(self.building.as_ref())
    }

    /// Starts a new graph for collections with an HNSW index: a graph that takes the rows
    /// writers add from now on, and the job of inserting the rows present now. `saved` is a
    /// graph loaded from disk that holds the first rows (as many as its nodes, all live): the
    /// job then inserts only the rows after them.
    pub(super) fn start_graph(
        &mut self,
        manifest: &CollectionManifest,
        saved: Option<HnswIndex>,
    ) -> Option<GraphJob> {
        let IndexSpec::Hnsw(params) = manifest.index else { return None };
        if let Some(graph) = saved {
            let graph = Arc::new(graph);
            let start = graph.len();
            self.index = None;
            self.building = Some(Arc::clone(&graph));
            return Some(GraphJob { graph, start, rows: self.meta.len(), generation: self.generation });
        }
        let graph = Arc::new(HnswIndex::build(params, manifest.metric, &[], self.dim, |_| true));
        // The first live row goes in now, before anyone else can insert: see `insert_rows`.
        let first = self.meta.iter().position(|m| m.live);
        if let Some(row) = first {
            graph.insert(row, self.row(row));
        }
        self.index = None;
        self.building = Some(Arc::clone(&graph));
        let rows = self.meta.len();
        Some(GraphJob { graph, start: first.map_or(rows, |row| row + 1), rows, generation: self.generation })
    }
}

impl Collection {
    /// Runs `job` on a thread of its own, so opening (and the server's start) does not wait
    /// for it; nothing joins the thread, so closing does not either.
    pub(super) fn spawn_build(self: &Arc<Self>, job: GraphJob) {
        let weak = Arc::downgrade(self);
        let dir = self.dir.clone();
        let name = self.manifest.name.clone();
        let spawned = std::thread::Builder::new().name("bindery-graph".into()).spawn({
            let (weak, job, dir, name) = (weak.clone(), job.clone(), dir.clone(), name.clone());
            move || build_in_background(&weak, &job, &dir, &name)
        });
        if let Err(e) = spawned {
            tracing::warn!(collection = %name, error = %e, "cannot start a thread for the HNSW graph; building it now");
            build_in_background(&weak, &job, &dir, &name);
        }
    }

    /// One step of `job`: copies the next chunk of rows from `next` on, or installs the graph
    /// once every row is in it. Locks are held only to copy and to install.
    pub(super) fn graph_step(&self, job: &GraphJob, next: usize) -> Result<GraphStep, StoreError> {
        {
            let state = self.state.read().map_err(|_| self.poisoned())?;
            if state.generation != job.generation {
                return Ok(GraphStep::Stale);
            }
            if next < job.rows {
                let end = job.rows.min(next + (GRAPH_CHUNK_VALUES / state.dim.max(1)).max(1));
                let rows: Vec<usize> = (next..end).filter(|&row| state.meta[row].live).collect();
                let mut values = Vec::with_capacity(rows.len() * state.dim);
                for &row in &rows {
                    values.extend_from_slice(state.row(row));
                }
                return Ok(GraphStep::Chunk(GraphChunk { end, rows, values }));
            }
        }
        // Rows added since the job started went into the graph through their writers; one still
        // inserting has not acknowledged its write, as with an installed graph.
        let mut state = self.state.write().map_err(|_| self.poisoned())?;
        if state.generation != job.generation {
            return Ok(GraphStep::Stale);
        }
        state.building = None;
        state.index = Some(Arc::clone(&job.graph));
        Ok(GraphStep::Installed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    use super::*;
    use crate::store::collection::Filter;
    use crate::store::collection::state::REPACK_MIN_DEAD;
    use crate::store::collection::testkit::{Scratch, WAIT, create, ids, item, open_store};
    use crate::store::manifest::HnswParams;

    #[test]
    fn searches_run_while_batches_join_the_graph() {
        let dir = Scratch::new("graph");
        let store = open_store(&dir);
        let dim = 16;
        let c = create(&store, "g", IndexSpec::Hnsw(HnswParams::default()), dim);
        let vector = move |n: usize| -> Vec<f32> {
            (0..dim).map(|d| ((n * 31 + d * 7) % 17) as f32 + (n as f32) * 0.01 * (d as f32)).collect()
        };
        let (batches, size) = (12, 40);
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (c, done) = (Arc::clone(&c), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut searches = 0;
                while !done.load(Ordering::Acquire) || searches == 0 {
                    let hits =
                        c.search(vector(searches % 400), 5, &Filter::default(), false, None, true).unwrap();
                    for hit in hits.hits {
                        let n: usize = hit.item.id[1..].parse().unwrap();
                        assert_eq!(hit.item.metadata["tag"], n.to_string());
                        assert_eq!(hit.item.vector, Some(vector(n)), "hit {} is its own row", hit.item.id);
                        assert!(c.get(std::slice::from_ref(&hit.item.id), false).unwrap().1.is_empty());
                    }
                    searches += 1;
                }
                searches
            })
        };
        for b in 0..batches {
            let items = (b * size..(b + 1) * size).map(|n| item(&format!("v{n}"), vector(n), &n.to_string()));
            c.upsert(items.collect()).unwrap();
            // Acknowledged rows are in the graph: each finds itself first.
            let first = b * size;
            let hits = c.search(vector(first), 1, &Filter::default(), false, None, false).unwrap();
            assert!(!hits.exact);
            assert_eq!(hits.hits[0].item.id, format!("v{first}"));
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
        let stats = c.stats().unwrap();
        assert_eq!((stats.count, stats.index_tombstones), ((batches * size) as u64, 0));
    }

    fn wait_ready(c: &Collection) {
        let started = Instant::now();
        while !c.stats().unwrap().index_ready {
            assert!(started.elapsed() < WAIT, "the graph was never installed");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_graph_saved_with_its_snapshot_serves_at_open_and_any_other_is_extended_or_rebuilt() {
        let dir = Scratch::new("saved-graph");
        let dim = 8;
        let vector = move |n: usize| -> Vec<f32> {
            (0..dim).map(|d| ((n * 37 + d * 11) % 23) as f32 + n as f32 * 0.001 * d as f32).collect()
        };
        let search = |c: &Collection| -> Vec<Vec<String>> {
            (0..20)
                .map(|q| {
                    let found =
                        c.search(vector(q * 13 + 5), 10, &Filter::default(), false, None, false).unwrap();
                    assert!(!found.exact, "the graph answered");
                    found.hits.into_iter().map(|h| h.item.id).collect()
                })
                .collect()
        };
        let folder = dir.0.join(crate::store::COLLECTIONS_DIR).join("g");
        let meta = folder.join(crate::store::hnsw::GRAPH_DIR).join("graph.json");
        let store = open_store(&dir);
        let c = create(&store, "g", IndexSpec::Hnsw(HnswParams::default()), dim);
        c.upsert((0..600).map(|n| item(&format!("v{n}"), vector(n), "t")).collect()).unwrap();
        wait_ready(&c);
        let before = search(&c);
        store.close().unwrap();
        assert!(meta.is_file(), "the graph is saved with the snapshot");
        drop((c, store));

        // The saved graph is installed by the open itself and answers as it did.
        let store = open_store(&dir);
        let c = store.get("g").unwrap();
        assert!(c.stats().unwrap().index_ready, "loaded at open, not rebuilt");
        assert_eq!(search(&c), before);

        // Rows logged after the snapshot join the loaded graph in the background.
        c.upsert((600..700).map(|n| item(&format!("v{n}"), vector(n), "t")).collect()).unwrap();
        drop((c, store));
        let store = open_store(&dir);
        let c = store.get("g").unwrap();
        wait_ready(&c);
        let found = c.search(vector(650), 1, &Filter::default(), false, None, false).unwrap();
        assert_eq!((found.exact, found.hits[0].item.id.as_str()), (false, "v650"));
        assert_eq!(c.stats().unwrap().count, 700);
        store.close().unwrap();
        drop((c, store));

        // A graph saved with another snapshot is not used: the open builds a new one.
        let mut saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        assert_eq!(saved["rows"], 700);
        let seq = saved["seq"].as_u64().unwrap();
        let (params, metric) = (HnswParams::default(), crate::store::Metric::L2);
        assert!(HnswIndex::load(&folder, params, metric, seq, 700).is_some());
        assert!(HnswIndex::load(&folder, params, metric, seq + 1, 700).is_none(), "another snapshot's");
        assert!(HnswIndex::load(&folder, params, metric, seq, 701).is_none(), "other rows");
        let other = HnswParams { m: 8, ..params };
        assert!(HnswIndex::load(&folder, other, metric, seq, 700).is_none(), "other settings");
        saved["seq"] = serde_json::json!(1);
        std::fs::write(&meta, serde_json::to_vec(&saved).unwrap()).unwrap();
        let store = open_store(&dir);
        let c = store.get("g").unwrap();
        wait_ready(&c);
        let found = c.search(vector(650), 1, &Filter::default(), false, None, false).unwrap();
        assert_eq!((found.exact, found.hits[0].item.id.as_str()), (false, "v650"));
    }

    #[test]
    fn many_deletes_repack_rows_and_rebuild_the_graph() {
        let dir = Scratch::new("repack");
        let store = open_store(&dir);
        let c = create(&store, "g", IndexSpec::Hnsw(HnswParams::default()), 2);
        let n = REPACK_MIN_DEAD + 100;
        let items = (0..n).map(|i| item(&format!("v{i}"), vec![i as f32, 1.0], "t")).collect();
        c.upsert(items).unwrap();
        let doomed: Vec<String> = (0..n - 50).map(|i| format!("v{i}")).collect();
        let (count, _, _) = c.delete(&doomed).unwrap();
        assert_eq!(count, n - 50);
        let stats = c.stats().unwrap();
        assert_eq!((stats.count, stats.index_tombstones), (50, 0), "rows repacked, graph rebuilt");
        let hits = c.search(vec![(n - 1) as f32, 1.0], 3, &Filter::default(), false, None, false).unwrap();
        assert!(!hits.exact);
        let got: Vec<_> = hits.hits.iter().map(|h| h.item.id.as_str()).collect();
        assert_eq!(got, [format!("v{}", n - 1), format!("v{}", n - 2), format!("v{}", n - 3)]);
        // Writes after the repack land in the new graph.
        let near_last = vec![n as f32 - 0.75, 1.0];
        c.upsert(vec![item("new", near_last.clone(), "t")]).unwrap();
        let hits = c.search(near_last, 1, &Filter::default(), false, None, false).unwrap();
        assert!(!hits.exact);
        assert_eq!(hits.hits[0].item.id, "new");
        assert_eq!(c.stats().unwrap().index_tombstones, 0);
    }

    /// Holds background graph builds of the collection in `dir` at step `pause` until `release`
    /// is sent, and reports each step on `steps`. Removed when dropped.
    struct BuildGate {
        dir: PathBuf,
        steps: mpsc::Receiver<BuildStep>,
        release: mpsc::Sender<()>,
    }

    impl BuildGate {
        fn new(dir: PathBuf, pause: BuildStep) -> Self {
            let (steps_tx, steps) = mpsc::channel();
            let (release, release_rx) = mpsc::channel::<()>();
            let (steps_tx, release_rx) = (Mutex::new(steps_tx), Mutex::new(release_rx));
            let hook: BuildHook = Arc::new(move |step| {
                let _ = steps_tx.lock().unwrap().send(step);
                if step == pause {
                    let _ = release_rx.lock().unwrap().recv_timeout(WAIT);
                }
            });
            BUILD_HOOKS.lock().unwrap().push((dir.clone(), hook));
            Self { dir, steps, release }
        }

        fn expect(&self, step: BuildStep) {
            assert_eq!(self.steps.recv_timeout(WAIT).unwrap(), step);
        }
    }

    impl Drop for BuildGate {
        fn drop(&mut self) {
            BUILD_HOOKS.lock().unwrap_or_else(|e| e.into_inner()).retain(|(d, _)| d != &self.dir);
        }
    }

    /// A store whose HNSW collection "g" holds rows `v0..v{n}` (`vector(i)`), written and
    /// snapshotted by an earlier store without its graph, so opening it again builds the graph
    /// in the background.
    fn stored_graph(
        dir: &Scratch,
        n: usize,
        vector: impl Fn(usize) -> Vec<f32>,
        pause: BuildStep,
    ) -> BuildGate {
        let store = open_store(dir);
        let dim = vector(0).len();
        let c = create(&store, "g", IndexSpec::Hnsw(HnswParams::default()), dim);
        c.upsert((0..n).map(|i| item(&format!("v{i}"), vector(i), "t")).collect()).unwrap();
        store.close().unwrap();
        drop((c, store));
        let folder = dir.0.join(crate::store::COLLECTIONS_DIR).join("g");
        // As a snapshot written before graphs were saved, or whose graph was removed.
        assert!(folder.join(crate::store::hnsw::GRAPH_DIR).is_dir());
        HnswIndex::remove_saved(&folder);
        BuildGate::new(folder, pause)
    }

    fn nearest(c: &Collection, query: Vec<f32>) -> (String, bool) {
        let outcome = c.search(query, 1, &Filter::default(), false, None, false).unwrap();
        (outcome.hits[0].item.id.clone(), outcome.exact)
    }

    #[test]
    fn the_graph_is_built_in_the_background_and_takes_rows_written_meanwhile() {
        let dir = Scratch::new("background");
        // Spread-out points (a hash of row and dimension), so the nearest row is clear.
        let vector = |i: usize| -> Vec<f32> {
            (0..8u64)
                .map(|d| {
                    ((i as u64 * 8 + d).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32
                        / (1u64 << 24) as f32
                })
                .collect()
        };
        let gate = stored_graph(&dir, 300, vector, BuildStep::Start);
        let store = open_store(&dir);
        let c = store.get("g").unwrap();
        gate.expect(BuildStep::Start);

        // The build is held: searches are exact and correct, writes go on.
        let stats = c.stats().unwrap();
        assert_eq!((stats.count, stats.index_ready), (300, false));
        assert_eq!(nearest(&c, vector(42)), ("v42".to_string(), true));
        c.upsert((300..340).map(|i| item(&format!("v{i}"), vector(i), "t")).collect()).unwrap();
        c.delete(&ids(&["v7"])).unwrap();
        assert_eq!(nearest(&c, vector(320)), ("v320".to_string(), true));
        // Snapshots do not wait for the graph.
        assert!(c.compact(true).unwrap());

        gate.release.send(()).unwrap();
        gate.expect(BuildStep::Install);
        gate.expect(BuildStep::End(BuildEnd::Installed));
        let stats = c.stats().unwrap();
        assert_eq!((stats.count, stats.index_ready, stats.index_tombstones), (339, true, 0));
        for i in [0, 150, 299, 300, 320, 339] {
            assert_eq!(nearest(&c, vector(i)), (format!("v{i}"), false), "row {i} is in the graph");
        }
        assert_ne!(nearest(&c, vector(7)).0, "v7");
        // Writes after the graph is installed join it as before.
        c.upsert(vec![item("late", vector(1000), "t")]).unwrap();
        assert_eq!(nearest(&c, vector(1000)), ("late".to_string(), false));
    }

    #[test]
    fn a_repack_during_a_build_discards_the_stale_graph() {
        let dir = Scratch::new("stale-build");
        let n = REPACK_MIN_DEAD + 100;
        let gate = stored_graph(&dir, n, |i| vec![i as f32, 1.0], BuildStep::Install);
        let store = open_store(&dir);
        let c = store.get("g").unwrap();
        gate.expect(BuildStep::Start);
        // Held with every row in its graph, just before installing it.
        gate.expect(BuildStep::Install);
        assert!(!c.stats().unwrap().index_ready);

        // Enough deletes to repack: the rows are renumbered and the delete builds a new graph.
        let doomed: Vec<String> = (0..n - 50).map(|i| format!("v{i}")).collect();
        assert_eq!(c.delete(&doomed).unwrap().0, n - 50);
        let stats = c.stats().unwrap();
        assert_eq!((stats.count, stats.index_ready, stats.index_tombstones), (50, true, 0));

        gate.release.send(()).unwrap();
        gate.expect(BuildStep::End(BuildEnd::Stale));
        // The graph over the old row numbers (all of them) was not installed.
        let stats = c.stats().unwrap();
        assert_eq!((stats.index_ready, stats.index_tombstones), (true, 0));
        for i in [n - 50, n - 1] {
            assert_eq!(nearest(&c, vec![i as f32, 1.0]), (format!("v{i}"), false));
        }
    }

    #[test]
    fn closing_or_deleting_does_not_wait_for_a_build() {
        let dir = Scratch::new("dropped-build");
        let gate = stored_graph(&dir, 200, |i| vec![i as f32, 0.5], BuildStep::Start);
        let store = open_store(&dir);
        let c = store.get("g").unwrap();
        gate.expect(BuildStep::Start);
        c.upsert(vec![item("new", vec![-1.0, 0.5], "t")]).unwrap();
        // While the build is held, the snapshot at shutdown and the deletion go through.
        store.close().unwrap();
        assert!(c.wal_is_empty());
        store.delete("g").unwrap();
        gate.release.send(()).unwrap();
        gate.expect(BuildStep::End(BuildEnd::Dropped));
    }
}
