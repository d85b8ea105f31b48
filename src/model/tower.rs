//! ONNX towers: one session pool per (model, modality).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::TensorRef;

use super::runtime::Runtime;

/// Why a tower could not be loaded or run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TowerError {
    /// The ONNX file could not be turned into a session.
    #[error("cannot load ONNX model {path}: {message}")]
    Load {
        /// ONNX file.
        path: PathBuf,
        /// What ONNX Runtime said.
        message: String,
    },
    /// The file loaded but its inputs/outputs do not match the manifest.
    #[error("{path}: {message}")]
    Signature {
        /// ONNX file.
        path: PathBuf,
        /// What does not match.
        message: String,
    },
    /// Running the session failed.
    #[error("inference failed: {0}")]
    Run(String),
    /// The output tensor has an unexpected shape.
    #[error("tower output has shape {shape:?}, expected [{batch}, {dim}]")]
    OutputShape {
        /// Shape returned.
        shape: Vec<i64>,
        /// Batch size sent.
        batch: usize,
        /// Embedding dimension expected.
        dim: usize,
    },
}

/// Execution settings shared by every tower of a server.
#[derive(Debug, Clone)]
pub struct TowerOptions {
    /// ONNX Runtime intra-op threads: of the one pool all sessions share under
    /// [`ThreadPools::Shared`], else of each session's own pool.
    pub intra_threads: usize,
    /// Whether sessions share one intra-op pool or start one each.
    pub thread_pools: ThreadPools,
    /// What each session's CPU memory arena does between runs.
    pub arena: Arena,
    /// ONNX Runtime's memory pattern: plans each input shape's buffers once and reuses the plan.
    pub memory_pattern: bool,
    /// Run independent branches of a graph at the same time (ONNX Runtime's parallel execution
    /// mode) instead of one node after another.
    pub parallel_execution: bool,
    /// Sessions per tower; more lets batches of one tower run concurrently.
    pub sessions: usize,
    /// Run on this CUDA device instead of the CPU.
    pub cuda_device: Option<i32>,
    /// Which tower variant to load where the manifest names one.
    pub precision: Precision,
}

/// The numeric precision of the towers a server loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// The manifest's `onnx` towers.
    #[default]
    Fp32,
    /// Half-precision variants (`onnx_fp16`), for GPUs.
    Fp16,
    /// int8 variants (`onnx_int8`), for CPUs, when their recorded cosine passes the threshold.
    Int8,
}

/// How the sessions of a process get their intra-op threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ThreadPools {
    /// One pool for every session of the process (ONNX Runtime's global thread pool): towers that
    /// run at the same time share its threads instead of each starting as many as there are cores.
    #[default]
    Shared,
    /// A pool per session, each of `intra_threads`.
    PerSession,
}

/// What a session's CPU memory arena does with the memory a run used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arena {
    /// Keeps it for the next run (ONNX Runtime's default): each session holds the memory of the
    /// largest batch it ever ran.
    #[default]
    Keep,
    /// Frees the arena's unused chunks after every run.
    Shrink,
    /// No arena: each run allocates from the system allocator and frees back to it.
    Off,
}

impl Default for TowerOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self {
            intra_threads: cores,
            thread_pools: ThreadPools::default(),
            arena: Arena::default(),
            // Off: a plan per batch size is memory kept for sizes that may not come again.
            memory_pattern: false,
            parallel_execution: false,
            sessions: 1,
            cuda_device: None,
            precision: Precision::Fp32,
        }
    }
}

/// Input batch for a tower, in the element type the tower takes.
#[derive(Debug)]
pub enum TowerInput<'a> {
    /// Float tensor (pixels, filterbanks, points).
    F32(&'a [f32]),
    /// Integer tensor (token ids).
    I64(&'a [i64]),
}

/// One named input tensor of a batch.
#[derive(Debug)]
pub struct NamedInput<'a> {
    /// Tensor name in the ONNX graph.
    pub name: &'a str,
    /// Full shape, batch first.
    pub shape: Vec<usize>,
    /// Values.
    pub data: TowerInput<'a>,
}

/// A loaded ONNX tower.
pub struct Tower {
    path: PathBuf,
    inputs: Vec<String>,
    output: String,
    dim: usize,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    /// Per-run settings (arena shrinkage), when any differ from ONNX Runtime's defaults.
    run_options: Option<RunOptions>,
}

impl Tower {
    /// Loads `path`, checking that it has the named input and output.
    pub fn load(
        runtime: &Runtime,
        path: &Path,
        inputs: &[&str],
        output: &str,
        dim: usize,
        options: &TowerOptions,
    ) -> Result<Self, TowerError> {
        let load_err =
            |e: &dyn std::fmt::Display| TowerError::Load { path: path.to_path_buf(), message: e.to_string() };
        let mut sessions = Vec::with_capacity(options.sessions.max(1));
        for _ in 0..options.sessions.max(1) {
            let mut builder = Session::builder(&runtime.environment)
                .map_err(|e| load_err(&e))?
                .with_optimization_level(GraphOptimizationLevel::Level3)
                .map_err(|e| load_err(&e))?
                .with_memory_pattern(options.memory_pattern)
                .map_err(|e| load_err(&e))?
                .with_parallel_execution(options.parallel_execution)
                .map_err(|e| load_err(&e))?;
            if runtime.options.shared_intra_threads.is_none() {
                builder = builder
                    .with_intra_threads(options.intra_threads.max(1))
                    .map_err(|e| load_err(&e))?
                    // Idle ONNX threads would otherwise spin and steal the cores preprocessing needs.
                    .with_intra_op_spinning(false)
                    .map_err(|e| load_err(&e))?;
            }
            if options.arena == Arena::Off && options.cuda_device.is_none() {
                builder = builder
                    .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
                    .map_err(|e| load_err(&e))?;
            }
            let mut builder = with_device(builder, options).map_err(|e| load_err(&e))?;
            let session = builder.commit_from_file(path).map_err(|e| load_err(&e))?;
            sessions.push(Mutex::new(session));
        }
        let run_options = match options.arena {
            Arena::Shrink => {
                let mut run = RunOptions::new().map_err(|e| load_err(&e))?;
                run.set("memory.enable_memory_arena_shrinkage", "cpu:0").map_err(|e| load_err(&e))?;
                Some(run)
            }
            Arena::Keep | Arena::Off => None,
        };
        let tower = Self {
            path: path.to_path_buf(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output: output.to_string(),
            dim,
            sessions,
            next: AtomicUsize::new(0),
            run_options,
        };
        tower.check_signature()?;
        Ok(tower)
    }

    fn check_signature(&self) -> Result<(), TowerError> {
        let session = self.lock(0)?;
        let inputs: Vec<String> = session.inputs().iter().map(|i| i.name().to_string()).collect();
        let outputs: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
        let mismatch = |message: String| TowerError::Signature { path: self.path.clone(), message };
        for wanted in &self.inputs {
            if !inputs.iter().any(|n| n == wanted) {
                return Err(mismatch(format!("has no input named {wanted:?} (inputs: {inputs:?})")));
            }
        }
        if inputs.len() != self.inputs.len() {
            return Err(mismatch(format!("takes inputs {inputs:?}, the manifest names {:?}", self.inputs)));
        }
        if !outputs.iter().any(|n| n == &self.output) {
            return Err(mismatch(format!("has no output named {:?} (outputs: {outputs:?})", self.output)));
        }
        Ok(())
    }

    /// The dimensions the graph declares for input `name` (`-1` where a dimension is free), or
    /// `None` when it has no such tensor input.
    pub fn input_dims(&self, name: &str) -> Result<Option<Vec<i64>>, TowerError> {
        let session = self.lock(0)?;
        Ok(session
            .inputs()
            .iter()
            .find(|i| i.name() == name)
            .and_then(|i| i.dtype().tensor_shape())
            .map(|shape| shape.iter().copied().collect()))
    }

    fn lock(&self, index: usize) -> Result<std::sync::MutexGuard<'_, Session>, TowerError> {
        let session = self
            .sessions
            .get(index % self.sessions.len().max(1))
            .ok_or_else(|| TowerError::Run("the tower has no session".into()))?;
        // A run that panicked leaves no half-done state in the session (ONNX Runtime keeps none
        // between runs), so a poisoned lock is taken over instead of failing every later batch.
        Ok(session.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Runs one batch of `batch` items. Returns `batch * dim` floats.
    pub fn run(&self, batch: usize, inputs: &[NamedInput<'_>]) -> Result<Vec<f32>, TowerError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let run_err = |e: ort::Error| TowerError::Run(e.to_string());
        let mut values: Vec<(String, ort::session::SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for input in inputs {
            let shape: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
            let value = match input.data {
                TowerInput::F32(d) => TensorRef::from_array_view((shape, d)).map_err(run_err)?.into(),
                TowerInput::I64(d) => TensorRef::from_array_view((shape, d)).map_err(run_err)?.into(),
            };
            values.push((input.name.to_string(), value));
        }
        let mut session = self.lock(index)?;
        let outputs = match &self.run_options {
            Some(run_options) => session.run_with_options(values, run_options),
            None => session.run(values),
        }
        .map_err(run_err)?;
        let value = outputs
            .get(self.output.as_str())
            .ok_or_else(|| TowerError::Run(format!("output {:?} missing", self.output)))?;
        let (out_shape, values) = value.try_extract_tensor::<f32>().map_err(run_err)?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        if dims.len() != 2 || dims[0] as usize != batch || dims[1] as usize != self.dim {
            return Err(TowerError::OutputShape { shape: dims, batch, dim: self.dim });
        }
        Ok(values.to_vec())
    }
}

#[cfg(feature = "cuda")]
fn with_device(
    builder: ort::session::builder::SessionBuilder,
    options: &TowerOptions,
) -> Result<ort::session::builder::SessionBuilder, ort::Error> {
    match options.cuda_device {
        Some(device) => Ok(builder.with_execution_providers([ort::ep::CUDA::default()
            .with_device_id(device)
            .build()
            .error_on_failure()])?),
        None => Ok(builder),
    }
}

#[cfg(not(feature = "cuda"))]
fn with_device(
    builder: ort::session::builder::SessionBuilder,
    options: &TowerOptions,
) -> Result<ort::session::builder::SessionBuilder, String> {
    match options.cuda_device {
        Some(_) => Err("this build has no CUDA support; rebuild with `--features cuda`".into()),
        None => Ok(builder),
    }
}
