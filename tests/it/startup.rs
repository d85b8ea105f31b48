//! Start-up validation: bad manifests and a missing runtime library stop `bindery serve` with a
//! clear message and a non-zero exit, never a panic.

use std::path::Path;
use std::process::Command;

use crate::common;
use crate::common::{TempDir, repo};

fn serve(models: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bindery"))
        .arg("serve")
        .arg("--models")
        .arg(models)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        // Collections go to a scratch folder of this server's own (a data folder takes one
        // server), never the user's data dir.
        .env("BINDERY_DATA_DIR", common::scratch_path("data"))
        .env_remove("ORT_DYLIB_PATH")
        .output()
        .expect("run bindery");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "must not panic: {stderr}");
    (out.status.success(), stderr)
}

/// A copy of the fixture model whose manifest is replaced by `manifest`.
fn model_with_manifest(root: &Path, manifest: &str) {
    model_from("imagebind-fixture", root, manifest);
}

/// A copy of the fixture model `source` whose manifest is replaced by `manifest`.
fn model_from(source: &str, root: &Path, manifest: &str) {
    let dir = root.join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(repo().join("models").join(source)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.join("model.toml"), manifest).unwrap();
}

fn fixture_manifest() -> String {
    std::fs::read_to_string(repo().join("models/imagebind-fixture/model.toml")).unwrap()
}

#[test]
fn missing_runtime_library_is_a_clear_error() {
    let (ok, stderr) = serve(&repo().join("models"), &["--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert!(!ok);
    assert!(stderr.contains("ONNX Runtime library not found") && stderr.contains("/nonexistent"), "{stderr}");
}

#[test]
fn unknown_manifest_key_is_refused() {
    let root = TempDir::new("startup-unknown-key");
    model_with_manifest(&root, &fixture_manifest().replace("embedding_dim", "embeding_dim"));
    let (ok, stderr) = serve(&root, &[]);
    assert!(!ok);
    assert!(stderr.contains("model.toml") && stderr.contains("embeding_dim"), "{stderr}");
}

#[test]
fn missing_onnx_file_is_refused() {
    let root = TempDir::new("startup-missing-onnx");
    model_with_manifest(&root, &fixture_manifest().replace("\"vision.onnx\"", "\"nowhere.onnx\""));
    let (ok, stderr) = serve(&root, &[]);
    assert!(!ok);
    assert!(stderr.contains("nowhere.onnx") && stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn wrong_tensor_name_is_refused() {
    let root = TempDir::new("startup-tensor-name");
    model_with_manifest(&root, &fixture_manifest().replacen("input = \"pixels\"", "input = \"pixelz\"", 1));
    let (ok, stderr) = serve(&root, &[]);
    assert!(!ok);
    assert!(stderr.contains("pixelz"), "{stderr}");
}

#[test]
fn bad_values_are_refused() {
    let root = TempDir::new("startup-bad-values");
    model_with_manifest(&root, &fixture_manifest().replace("crop = 224", "crop = 0"));
    let (ok, stderr) = serve(&root, &[]);
    assert!(!ok);
    assert!(stderr.contains("crop"), "{stderr}");
}

/// A CLAP front-end value the server cannot use stops it at start-up, naming the field (every
/// field is checked one by one in `clap::bad_clap_manifest_values_are_refused_naming_the_field`).
#[test]
fn a_bad_audio_front_end_value_is_refused_at_start_up() {
    let root = TempDir::new("startup-clap-front-end");
    let manifest = std::fs::read_to_string(repo().join("models/clap-fixture/model.toml")).unwrap();
    model_from(
        "clap-fixture",
        &root,
        &manifest.replace("truncation = \"fusion\"", "truncation = \"random\""),
    );
    let (ok, stderr) = serve(&root, &[]);
    assert!(!ok);
    assert!(stderr.contains("model.toml") && stderr.contains("truncation"), "{stderr}");
}

#[test]
fn empty_models_folder_and_unknown_default_are_refused() {
    let root = TempDir::new("startup-empty");
    let (ok, stderr) = serve(&root, &[]);
    assert!(!ok);
    assert!(stderr.contains("no model found"), "{stderr}");

    let (ok, stderr) = serve(&repo().join("models"), &["--default-model", "nope"]);
    assert!(!ok);
    assert!(stderr.contains("default model \"nope\""), "{stderr}");
}

/// A `bindery serve` on the fixture model alone; killed when dropped.
struct Served {
    child: std::process::Child,
    /// Its "threads" log line.
    threads_line: String,
    _root: TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Starts it with `extra` arguments and waits until it serves.
    fn start(extra: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let root = TempDir::new("startup-threads");
        std::os::unix::fs::symlink(repo().join("models/imagebind-fixture"), root.join("imagebind-fixture"))
            .expect("link the fixture model");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bindery"))
            .args(["serve", "--listen", "127.0.0.1:0", "--no-warm-up", "--models"])
            .arg(root.path())
            .args(extra)
            .env("BINDERY_DATA_DIR", common::scratch_path("data"))
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "bindery=info")
            .env_remove("BINDERY_CORES")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start bindery");
        let stderr = child.stderr.take().expect("stderr");
        let mut threads_line = None;
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            assert!(!line.contains("panicked"), "{line}");
            if line.contains(" threads ") {
                threads_line = Some(line.clone());
            }
            if line.contains("bindery serving") {
                break;
            }
        }
        let threads_line = threads_line.expect("a threads log line before serving");
        // Keep reading, so that what the server logs later never meets a closed pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Self { child, threads_line, _root: root }
    }

    /// How many of its threads have a name starting with each of `prefixes`, once the counts
    /// equal `expected` or 20 s have passed (a new thread names itself once it runs).
    fn thread_counts(&mut self, prefixes: &[&str], expected: &[usize]) -> Vec<usize> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            // A server that has exited leaves only its main thread to count: say so instead.
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited after serving ({status}); threads line: {}", self.threads_line);
            }
            let tasks = std::fs::read_dir(format!("/proc/{}/task", self.child.id())).expect("list threads");
            let names: Vec<String> =
                tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok()).collect();
            let counts: Vec<usize> =
                prefixes.iter().map(|p| names.iter().filter(|n| n.starts_with(p)).count()).collect();
            if counts == expected || std::time::Instant::now() > deadline {
                return counts;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn field_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)).map(|v| v.trim_matches('"'))
}

#[test]
fn cores_size_the_preprocessing_pool_and_the_shared_onnx_pool() {
    let pools = ["bindery-cpu-", "bindery-onnx-"];
    let mut served = Served::start(&["--cores", "3"]);
    let line = &served.threads_line;
    assert_eq!(field_value(line, "preprocessing_threads="), Some("3"), "{line}");
    assert_eq!(field_value(line, "onnx_threads="), Some("3"), "{line}");
    assert_eq!(field_value(line, "onnx_pools="), Some("shared"), "{line}");
    // ONNX Runtime's pool of n intra-op threads starts n - 1: the thread that calls Run is the n-th.
    assert_eq!(served.thread_counts(&pools, &[3, 2]), [3, 2]);
    drop(served);

    let mut served =
        Served::start(&["--cores", "2", "--cpu-workers", "1", "--ort-thread-pools", "per-session"]);
    let line = &served.threads_line;
    assert_eq!(field_value(line, "preprocessing_threads="), Some("1"), "{line}");
    assert_eq!(field_value(line, "onnx_threads="), Some("2"), "{line}");
    assert_eq!(field_value(line, "onnx_pools="), Some("per-session"), "{line}");
    assert_eq!(served.thread_counts(&pools, &[1, 0]), [1, 0]);
}

#[test]
fn cores_of_zero_is_refused_before_anything_loads() {
    let (ok, stderr) = serve(&repo().join("models"), &["--cores", "0"]);
    assert!(!ok);
    assert!(stderr.contains("--cores"), "{stderr}");
}
