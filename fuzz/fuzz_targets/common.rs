//! What the targets share: the fixture model's preprocessing settings and fuzzing-size limits.
#![allow(dead_code)]

use std::path::Path;
use std::sync::OnceLock;

use bindery::modality::point_cloud::{PointCloudInput, PointCloudLimits, PointCloudPreprocessor};
use bindery::model::manifest::{Manifest, ModelDir};

/// The committed fixture model's manifest (the preprocessing parameters of ImageBind).
pub fn manifest() -> &'static Manifest {
    static MODEL: OnceLock<ModelDir> = OnceLock::new();
    let model = MODEL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/imagebind-fixture");
        ModelDir::load(&dir).unwrap_or_else(|e| panic!("fixture manifest: {e}"))
    });
    &model.manifest
}

/// The image and audio decoders catch panics raised inside third-party decoder crates and report
/// them as decode errors (that is their contract), but libFuzzer's panic hook aborts on every
/// panic, caught or not. This hook lets panics located in registry crates unwind to that catch
/// and still aborts on any panic raised in bindery's own code.
pub fn crash_only_on_own_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let third_party = info.location().is_some_and(|l| l.file().contains("/.cargo/registry/"));
            if !third_party {
                fuzzer_hook(info);
            }
        }));
    });
}

/// Reads `data` as a point-cloud file with `hint` through the server's reader (limits as a
/// deployment might set them, small enough that one input stays within libFuzzer's budget).
pub fn read_cloud(data: &[u8], hint: Option<&str>) {
    static PRE: OnceLock<PointCloudPreprocessor> = OnceLock::new();
    let pre = PRE.get_or_init(|| {
        let spec = &manifest().point_cloud.as_ref().expect("point cloud section").preprocess;
        PointCloudPreprocessor::new(spec, PointCloudLimits { max_bytes: 16 << 20, max_points: 1_000_000 })
    });
    let _ = pre.read(PointCloudInput::File { data, format_hint: hint });
}
