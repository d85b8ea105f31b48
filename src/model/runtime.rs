//! Locating and loading the ONNX Runtime shared library.
//!
//! bindery links ONNX Runtime dynamically (`ort`'s `load-dynamic`), so a missing or wrong library
//! must surface as a start-up error that says where we looked, never as a panic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// File name of the runtime library the project setup fetches.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.31.1";

/// Folder (relative to the repository root) the setup step extracts the library into.
pub const ORT_LIBRARY_DIR: &str = ".ort";

/// Why the runtime could not be initialised.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// No candidate path holds the library.
    #[error(
        "ONNX Runtime library not found; looked in: {searched}. Run `make setup` (or \
         scripts/setup.sh) to fetch it, or set ORT_DYLIB_PATH / --ort-lib to its path"
    )]
    NotFound {
        /// Every path tried, comma-separated.
        searched: String,
    },
    /// The library exists but could not be loaded or initialised.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Load {
        /// Library path.
        path: PathBuf,
        /// Loader error.
        message: String,
    },
}

/// How the process-wide ONNX Runtime environment arranges its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Intra-op threads of one pool that every session of the process shares (ONNX Runtime's
    /// global thread pool; sessions then have no threads of their own). `None`: each session
    /// starts its own pool of `TowerOptions::intra_threads`.
    pub shared_intra_threads: Option<usize>,
    /// Inter-op threads of the shared pool, which only sessions in parallel execution mode use.
    pub shared_inter_threads: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self { shared_intra_threads: None, shared_inter_threads: 1 }
    }
}

/// A loaded ONNX Runtime: where it came from and the process-wide environment sessions use.
#[derive(Clone)]
pub struct Runtime {
    /// Path of the shared library.
    pub path: PathBuf,
    /// The ONNX Runtime environment (one per process).
    pub environment: ort::environment::Environment,
    /// The threads the environment was built with (fixed for the life of the process).
    pub options: RuntimeOptions,
}

// The environment is kept here for the life of the process: `ort` only holds a weak reference.
static RUNTIME: OnceLock<Result<Runtime, RuntimeError>> = OnceLock::new();

/// Library paths to try. An explicit path (argument, else `ORT_DYLIB_PATH`) is the only candidate
/// when given, so a wrong setting is reported rather than silently replaced; otherwise `.ort/` in
/// the working directory, next to the executable, and in the source tree this binary was built from.
pub fn candidate_paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = explicit {
        return vec![p.to_path_buf()];
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return vec![PathBuf::from(p)];
    }
    let mut out = vec![Path::new(ORT_LIBRARY_DIR).join(ORT_LIBRARY_FILE)];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        out.push(dir.join(ORT_LIBRARY_FILE));
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(ORT_LIBRARY_DIR).join(ORT_LIBRARY_FILE));
    out
}

/// Loads ONNX Runtime once per process, with per-session thread pools.
///
/// Later calls return the first call's outcome: the runtime cannot be swapped in a running process.
pub fn init(explicit: Option<&Path>) -> Result<Runtime, RuntimeError> {
    init_with(explicit, RuntimeOptions::default())
}

/// Loads ONNX Runtime once per process with `options`. As with [`init`], the first call decides:
/// a later call gets the runtime as first built, whose `options` say which threads it has.
pub fn init_with(explicit: Option<&Path>, options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
    RUNTIME.get_or_init(|| load(explicit, options)).clone()
}

fn load(explicit: Option<&Path>, options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
    let candidates = candidate_paths(explicit);
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        let searched = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        return Err(RuntimeError::NotFound { searched });
    };
    let builder = ort::init_from(path)
        .map_err(|e| RuntimeError::Load { path: path.clone(), message: e.to_string() })?;
    let load_err = |e: ort::Error| RuntimeError::Load { path: path.clone(), message: e.to_string() };
    let mut builder = builder.with_name("bindery");
    if let Some(threads) = options.shared_intra_threads {
        let pool = ort::environment::GlobalThreadPoolOptions::default()
            .with_thread_manager(NamedThreads::default())
            .map_err(load_err)?
            .with_intra_threads(threads.max(1))
            .map_err(load_err)?
            // Idle pool threads would otherwise spin and steal the cores preprocessing needs.
            .with_spin_control(false)
            .map_err(load_err)?
            .with_inter_threads(options.shared_inter_threads.max(1))
            .map_err(load_err)?;
        builder = builder.with_global_thread_pool(pool);
    }
    let environment = builder.build().map_err(load_err)?;
    Ok(Runtime { path: path.clone(), environment, options })
}

/// Starts the shared pool's threads under one name, `bindery-onnx-N`, so that they can be told
/// apart from the preprocessing pool (`bindery-cpu-N`) in `top -H` and `/proc/PID/task`.
#[derive(Default)]
struct NamedThreads {
    started: std::sync::atomic::AtomicUsize,
}

impl ort::environment::ThreadManager for NamedThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        let index = self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::thread::Builder::new()
            .name(format!("bindery-onnx-{index}"))
            .spawn(work)
            .map_err(|e| ort::Error::new(format!("cannot start an ONNX Runtime thread: {e}")))
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread.join().map_err(|_| ort::Error::new("an ONNX Runtime thread panicked"))
    }
}
