//! Replays the fuzz inputs kept in `tests/fixtures/fuzz/<target>/` through the target bodies in
//! `bindery::fuzzing`: an input that makes its target panic (a crash under libFuzzer) fails.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// Folder holding one subfolder of kept inputs per target.
fn regressions_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz")
}

/// The files kept for `target`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = regressions_root().join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

#[test]
fn kept_fuzz_inputs_do_not_panic() {
    // One thread per target: the slow ones (audio, point-cloud grouping) overlap.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = bindery::fuzzing::targets()
            .into_iter()
            .map(|(name, target)| {
                scope.spawn(move || {
                    let files = inputs(name);
                    // A target without inputs would pass without testing anything.
                    assert!(
                        !files.is_empty(),
                        "fuzz target {name} has no regression input in {}",
                        regressions_root().join(name).display()
                    );
                    let mut failed = Vec::new();
                    for file in files {
                        let data = std::fs::read(&file).unwrap();
                        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| target(&data))) {
                            failed.push(format!("{name}: {}: {}", file.display(), panic_message(&*payload)));
                        }
                    }
                    failed
                })
            })
            .collect();
        runs.into_iter().flat_map(|run| run.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "kept fuzz inputs panicked:\n{}", failures.join("\n"));
}

/// The fuzz crate's harness binaries: (name, whether this build of bindery has its target). A
/// harness that needs a bindery feature this build lacks (`required-features`, the fuzz crate's
/// features forward to bindery's) has no target here.
fn harnesses() -> Vec<(String, bool)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest: toml::Table = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap().parse().unwrap();
    let enabled = |feature: &str| feature == "video" && cfg!(feature = "video");
    manifest["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let needs = b.get("required-features").and_then(|f| f.as_array()).cloned().unwrap_or_default();
            let built = needs.iter().all(|f| enabled(f.as_str().unwrap()));
            (b["name"].as_str().unwrap().to_string(), built)
        })
        .collect()
}

#[test]
fn every_regression_folder_is_a_target() {
    let unbuilt: Vec<String> = harnesses().into_iter().filter(|(_, built)| !built).map(|(n, _)| n).collect();
    for entry in std::fs::read_dir(regressions_root()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                bindery::fuzzing::targets().iter().any(|(t, _)| *t == name) || unbuilt.contains(&name),
                "{} is not named after a target of bindery::fuzzing::targets()",
                path.display()
            );
        }
    }
}

#[test]
fn the_fuzz_crate_has_one_harness_per_target() {
    // The fuzz crate is not built by `cargo test`; this keeps its binaries in step with the
    // targets.
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let harnesses = harnesses();
    let mut bins: Vec<&str> = harnesses.iter().filter(|(_, built)| *built).map(|(n, _)| n.as_str()).collect();
    let mut targets: Vec<&str> = bindery::fuzzing::targets().iter().map(|(name, _)| *name).collect();
    bins.sort_unstable();
    targets.sort_unstable();
    assert_eq!(bins, targets, "fuzz/Cargo.toml binaries and bindery::fuzzing::targets() differ");
    for name in targets {
        let harness = std::fs::read_to_string(fuzz.join(format!("fuzz_targets/{name}.rs"))).unwrap();
        // A target defined in bindery::fuzzing is called by name; one a modality registers
        // through bindery::fuzzing::run.
        assert!(
            harness.contains(&format!("bindery::fuzzing::{name}(data)"))
                || harness.contains(&format!("bindery::fuzzing::run(\"{name}\", data)")),
            "fuzz/fuzz_targets/{name}.rs does not call bindery::fuzzing::{name}"
        );
    }
}
