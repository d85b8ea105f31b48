//! Fuzz target bodies: every parser and decoder that bindery feeds with untrusted bytes, one
//! function per target taking the raw input.
//!
//! The libFuzzer harnesses in `fuzz/` only call these, and `tests/it/fuzz_regressions.rs` replays
//! the inputs kept in `tests/fixtures/fuzz/<target>/` through them, so the bodies are compiled
//! (and their regressions run) by every `cargo test` even though the fuzz crate needs nightly
//! flags. A function returns normally whatever the input; it panics only when bindery itself
//! misbehaves (a panic in bindery's code, or one of the consistency assertions below failing).
//!
//! Not part of the supported API.
#![doc(hidden)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::modality::audio::{AudioLimits, AudioPreprocess, AudioPreprocessor};
use crate::modality::image::{ImageLimits, ImagePreprocess, ImagePreprocessor};
use crate::modality::point_cloud::{
    PointCloudInput, PointCloudLimits, PointCloudPreprocess, PointCloudPreprocessor,
};
use crate::modality::{Modality, parse_section};
use crate::model::manifest::{Manifest, ModelDir};
use crate::server::auth::ApiKeys;
use crate::store::manifest::{CollectionManifest, MANIFEST_FORMAT};
use crate::store::snapshot::{self, SNAPSHOT_MAGIC};
use crate::store::wal::{WAL_MAGIC, encode_frame, scan};

/// A target body: takes one raw input, panics only on a bug.
pub type Target = fn(&[u8]);

/// The targets defined here by name; [`targets`] adds those the modalities register.
pub const TARGETS: &[(&str, Target)] = &[
    ("image", image),
    ("audio", audio),
    ("point_cloud_ply", point_cloud_ply),
    ("point_cloud_pcd", point_cloud_pcd),
    ("point_cloud_text", point_cloud_text),
    ("point_cloud_npy", point_cloud_npy),
    ("point_cloud_obj", point_cloud_obj),
    ("point_cloud_sniff", point_cloud_sniff),
    ("point_cloud_preprocess", point_cloud_preprocess),
    ("manifest", manifest),
    ("collection_manifest", collection_manifest),
    ("wal", wal),
    ("snapshot", snapshot),
    ("api_keys", api_keys),
];

/// Every target by name (the names of the `fuzz/` binaries and of the regression folders): those
/// defined here and those registered by a modality (`Kind::fuzz`).
pub fn targets() -> Vec<(&'static str, Target)> {
    let registered = crate::modality::KINDS.iter().flat_map(|kind| kind.fuzz.iter().copied());
    TARGETS.iter().copied().chain(registered).collect()
}

/// Runs the target named `name` on `data`, for harnesses of registered targets.
///
/// # Panics
/// When no target has that name (a harness out of step with the registrations).
pub fn run(name: &str, data: &[u8]) {
    let Some((_, target)) = targets().into_iter().find(|(t, _)| *t == name) else {
        panic!("no fuzz target named {name}");
    };
    target(data);
}

/// Clouds with more points than this are only read by [`point_cloud_preprocess`]: sampling and
/// grouping cost grows with the point count, and one input must stay well within libFuzzer's
/// per-input time budget.
pub const PREPROCESS_MAX_POINTS: usize = 20_000;

/// Folder of the committed fixture model, whose preprocessing parameters the targets use.
fn fixture_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/imagebind-fixture")
}

/// The committed fixture model's manifest (the preprocessing parameters of ImageBind).
fn fixture_manifest() -> &'static Manifest {
    static MODEL: OnceLock<ModelDir> = OnceLock::new();
    let model = MODEL.get_or_init(|| {
        ModelDir::load(&fixture_model_dir()).unwrap_or_else(|e| panic!("fixture manifest: {e}"))
    });
    &model.manifest
}

/// The `preprocess` table of the fixture model's `modality` section, as that modality reads it.
fn fixture_section<T: serde::de::DeserializeOwned>(modality: Modality) -> T {
    let spec = fixture_manifest().encoders.get(&modality).unwrap_or_else(|| panic!("no {modality} section"));
    parse_section(&spec.preprocess).unwrap_or_else(|e| panic!("fixture {modality} section: {e}"))
}

/// The point-cloud preprocessor, with limits as a deployment might set them but small enough
/// that one input stays within libFuzzer's budget.
fn cloud_preprocessor() -> &'static PointCloudPreprocessor {
    static PRE: OnceLock<PointCloudPreprocessor> = OnceLock::new();
    PRE.get_or_init(|| {
        let spec: PointCloudPreprocess = fixture_section(Modality::PointCloud);
        PointCloudPreprocessor::new(&spec, PointCloudLimits { max_bytes: 16 << 20, max_points: 1_000_000 })
    })
}

/// Reads `data` as a point-cloud file with `hint` through the server's reader.
fn read_cloud(data: &[u8], hint: Option<&str>) {
    let _ = cloud_preprocessor().read(PointCloudInput::File { data, format_hint: hint });
}

/// Image bytes through the whole image preprocessing (decode, convert, resize, crop, normalise).
pub fn image(data: &[u8]) {
    static PRE: OnceLock<ImagePreprocessor> = OnceLock::new();
    let pre = PRE.get_or_init(|| {
        let spec: ImagePreprocess = fixture_section(Modality::Image);
        ImagePreprocessor::new(&spec, ImageLimits { max_bytes: 16 << 20, max_pixels: 16_000_000 })
            .expect("the fixture's image section is valid")
    });
    let mut out = vec![0f32; pre.tensor_len()];
    let _ = pre.preprocess_into(data, &mut out);
}

/// Audio bytes through the whole audio preprocessing (decode, resample, clips, filterbank).
pub fn audio(data: &[u8]) {
    static PRE: OnceLock<AudioPreprocessor> = OnceLock::new();
    let pre = PRE.get_or_init(|| {
        let spec: AudioPreprocess = fixture_section(Modality::Audio);
        AudioPreprocessor::try_new(
            &spec,
            AudioLimits { max_bytes: 16 << 20, max_duration_secs: 60.0, ..AudioLimits::default() },
        )
        .expect("fixture audio settings")
    });
    let mut out = vec![0f32; pre.tensor_len()];
    let _ = pre.preprocess_into(data, None, &mut out);
}

/// PLY point clouds (the reader chosen by the `ply` hint).
pub fn point_cloud_ply(data: &[u8]) {
    read_cloud(data, Some("ply"));
}

/// PCD point clouds (the reader chosen by the `pcd` hint).
pub fn point_cloud_pcd(data: &[u8]) {
    read_cloud(data, Some("pcd"));
}

/// XYZ/PTS/CSV text point clouds.
pub fn point_cloud_text(data: &[u8]) {
    read_cloud(data, Some("csv"));
}

/// NPY point clouds (the reader chosen by the `npy` hint).
pub fn point_cloud_npy(data: &[u8]) {
    read_cloud(data, Some("npy"));
}

/// OBJ point clouds (the reader chosen by the `obj` hint).
pub fn point_cloud_obj(data: &[u8]) {
    read_cloud(data, Some("obj"));
}

/// Point clouds without a hint: format detection from the content, then whichever reader it picks.
pub fn point_cloud_sniff(data: &[u8]) {
    read_cloud(data, None);
}

/// Point clouds without a hint through the whole preprocessing: reading, farthest point
/// sampling, normalisation and grouping, for clouds of at most [`PREPROCESS_MAX_POINTS`] points.
pub fn point_cloud_preprocess(data: &[u8]) {
    let pre = cloud_preprocessor();
    let input = PointCloudInput::File { data, format_hint: None };
    let Ok((cloud, _)) = pre.read(input) else { return };
    assert!(cloud.xyz.iter().all(|v| v.is_finite()), "the reader kept a non-finite coordinate");
    assert!(cloud.rgb.iter().flatten().all(|v| v.is_finite()), "the reader kept a non-finite colour");
    if cloud.len() > PREPROCESS_MAX_POINTS {
        return;
    }
    let mut neighborhood = vec![0f32; pre.neighborhood_len()];
    let mut center = vec![0f32; pre.center_len()];
    if pre.preprocess_into(input, &mut neighborhood, &mut center).is_ok() {
        // These are the model's inputs: a NaN here would silently poison the embedding.
        assert!(neighborhood.iter().all(|v| v.is_finite()), "non-finite neighbourhood value");
        assert!(center.iter().all(|v| v.is_finite()), "non-finite centre value");
    }
}

/// `model.toml` parsing and validation.
pub fn manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let dir = fixture_model_dir();
        let _ = ModelDir::parse(&dir, &dir.join("model.toml"), text);
    }
}

/// A collection's `manifest.json`: parsing as [`CollectionManifest::read`] does, validation,
/// and the written form reading back as the same settings.
pub fn collection_manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = serde_json::from_str::<CollectionManifest>(text) else { return };
    if parsed.format == MANIFEST_FORMAT {
        let _ = parsed.check();
    }
    let json = parsed.to_json().expect("a parsed manifest serialises");
    let again: CollectionManifest = serde_json::from_str(&json).expect("a written manifest parses");
    assert_eq!(again, parsed, "the manifest changed through writing and reading: {json}");
}

/// Builds a store file from a fuzz input: the input as it is (`mode % 3 == 0`), `magic` and the
/// input (`1`: frame headers and checksums), or `magic` and valid frames around arbitrary payloads
/// (`2`), so that record decoding and validation are reached despite the checksums: each payload
/// is prefixed by a one-byte length.
fn store_file(mode: u8, magic: &[u8], rest: &[u8]) -> Vec<u8> {
    match mode % 3 {
        0 => rest.to_vec(),
        1 => [magic, rest].concat(),
        _ => {
            let mut out = magic.to_vec();
            let mut rest = rest;
            while let Some((&len, tail)) = rest.split_first() {
                let take = usize::from(len).min(tail.len());
                encode_frame(&tail[..take], &mut out);
                rest = &tail[take..];
            }
            out
        }
    }
}

/// Collection write-ahead log decoding: frame headers, checksums and record payloads. The first
/// byte picks how the rest becomes a log (see `store_file`).
pub fn wal(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = store_file(mode, WAL_MAGIC, rest);
    let first = scan(&bytes);
    assert!(first.valid_len <= bytes.len());
    assert_eq!(first.records.len(), first.offsets.len());
    // The intact prefix reads back as the same records, with no damage.
    if first.valid_len >= WAL_MAGIC.len() {
        let again = scan(&bytes[..first.valid_len]);
        assert_eq!(again.records, first.records);
        assert!(again.corruption.is_none(), "{:?}", again.corruption);
    }
}

/// Collection snapshot decoding: file header, frames, checksums, the header record and row
/// chunks. The first byte picks how the rest becomes a file (`mode % 3`, see `store_file`) and
/// the collection's dimension (`mode / 3`).
pub fn snapshot(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = store_file(mode, SNAPSHOT_MAGIC, rest);
    let dim = usize::from(mode / 3);
    let decode = |bytes: &[u8]| snapshot::decode(bytes, Path::new("snapshot"), bytes.len() as u64, dim);
    if decode(&bytes).is_ok() {
        // A snapshot that lost its tail must never load as a smaller collection.
        let torn = &bytes[..bytes.len() - 1];
        assert!(decode(torn).is_err(), "a snapshot missing its last byte was accepted");
    }
}

/// The API-key list (the `--api-keys` file and `BINDERY_API_KEYS`).
pub fn api_keys(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut keys = ApiKeys::new();
    if keys.add_text(text, "fuzz").is_err() {
        return;
    }
    assert!(!keys.is_empty(), "a key list was accepted without a key");
    // The first key written is the first one configured.
    let first = text
        .lines()
        .flat_map(|line| line.split('#').next().unwrap_or_default().split(','))
        .find_map(|entry| entry.split_whitespace().next())
        .expect("an accepted list has a key");
    assert_eq!(keys.authenticate(first).map(|p| p.key_index), Some(0), "first key {first:?}");
    // Every key is now configured, so adding the same list again is refused and adds nothing.
    let count = keys.len();
    assert!(keys.add_text(text, "fuzz").is_err(), "the same keys were accepted twice");
    assert_eq!(keys.len(), count);
}
