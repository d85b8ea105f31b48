//! LanguageBind's image, thermal and depth towers served from the `languagebind-fixture`
//! manifest: every golden input of the three (the PyPI `languagebind` package's transforms and
//! PyTorch towers, `tools/make_languagebind_fixtures.py`) over gRPC; the front ends alone against
//! the reference's tensors; bad values of the new manifest fields refused naming the field.

use std::path::Path;

use bindery::api::pb;
use bindery::modality::depth::{DepthLimits, DepthPayload, DepthPreprocess, DepthPreprocessor};
use bindery::modality::image::{ImageLimits, ImagePreprocess, ImagePreprocessor};
use bindery::modality::thermal::{ThermalLimits, ThermalPreprocess, ThermalPreprocessor};
use bindery::model::manifest::ModelDir;
use serde::Deserialize;

use crate::common::*;

const MODEL: &str = "languagebind-fixture";
const GOLDENS: Fixtures = Fixtures("families");
/// The sections this file serves; the fixture's other towers have their own tests.
const VISION: [&str; 3] = ["image", "thermal", "depth"];

#[derive(Deserialize)]
struct Case {
    id: String,
    file: String,
    embedding: Vec<f32>,
}

/// A models folder holding the fixture with only its image, thermal and depth sections.
fn vision_fixture() -> TempDir {
    model_folder(MODEL, &manifest_sections(MODEL, &VISION))
}

fn input(modality: &str, id: &str, data: Vec<u8>) -> pb::Input {
    let payload = match modality {
        "image" => pb::input::Payload::Image(data),
        "thermal" => pb::input::Payload::ThermalImage(pb::Thermal { data, format_hint: String::new() }),
        _ => pb::input::Payload::DepthMap(pb::Depth { data, ..Default::default() }),
    };
    pb::Input { id: id.into(), payload: Some(payload) }
}

#[tokio::test]
async fn languagebind_image_thermal_and_depth_match_the_reference_on_every_golden_input() {
    let dir = vision_fixture();
    let mut server = start_model_folder(&dir, MODEL).await;
    let mut below = Vec::new();
    for (modality, at_least) in [("image", 17), ("thermal", 7), ("depth", 5)] {
        let cases: Vec<Case> = GOLDENS.json(&format!("{MODEL}/{modality}.json"));
        assert!(cases.len() >= at_least, "{modality}: {} golden cases", cases.len());
        let mut worst = (1.0f64, String::new());
        for case in &cases {
            let req = request(vec![input(modality, &case.id, FIXTURES.read(&case.file))]);
            let reply = server
                .client
                .embed(req)
                .await
                .unwrap_or_else(|s| panic!("{modality} {} ({}): {s}", case.id, case.file))
                .into_inner();
            let c = cosine(&reply.embeddings[0].vector, &case.embedding);
            if c < 0.9999 {
                below.push(format!("{modality} {} ({}): cosine {c}", case.id, case.file));
            }
            if c < worst.0 {
                worst = (c, case.id.clone());
            }
        }
        eprintln!(
            "{MODEL} {modality}: {} cases, worst cosine 1 - {:.1e} ({})",
            cases.len(),
            1.0 - worst.0,
            worst.1
        );
    }
    assert!(below.is_empty(), "below 0.9999: {below:#?}");
}

/// The `preprocess` table of `section` in the fixture's manifest, as `T`.
fn section<T: serde::de::DeserializeOwned>(manifest: &toml::Table, section: &str) -> T {
    let table = manifest[section]["preprocess"].clone();
    table.try_into().unwrap_or_else(|e| panic!("[{section}.preprocess]: {e}"))
}

/// Each vision front end against the reference transform's own tensor (every `stride`-th value):
/// LanguageBind's ToTensor, tensor resize, crop and normalisation; its `DepthNorm` with the
/// fixture's `max_depth_m` and with 0 (the map's maximum).
#[test]
fn vision_front_ends_match_the_reference_tensors() {
    let manifest: toml::Table = toml::from_str(&manifest_sections(MODEL, &VISION)).expect("manifest");
    let image =
        ImagePreprocessor::new(&section::<ImagePreprocess>(&manifest, "image"), ImageLimits::default())
            .expect("image front end");
    let thermal = ThermalPreprocessor::new(
        &section::<ThermalPreprocess>(&manifest, "thermal"),
        ThermalLimits::default(),
    )
    .expect("thermal front end");
    let depth_spec: DepthPreprocess = section(&manifest, "depth");
    let cases: Vec<TensorGolden> = GOLDENS.json(&format!("{MODEL}/preprocess.json"));
    let mut compared = Vec::new();
    for case in cases.iter().filter(|c| VISION.contains(&c.front_end.as_str())) {
        let mut out = vec![0f32; case.shape.iter().product()];
        let bytes = FIXTURES.read(&case.file);
        match case.front_end.as_str() {
            "image" => image.preprocess_into(&bytes, &mut out).expect("image"),
            "thermal" => thermal.preprocess_into(&bytes, &mut out).expect("thermal"),
            _ => {
                let max_depth_m = case.max_depth_m.expect("the depth tensors name their max_depth_m");
                let spec = DepthPreprocess { max_depth_m, ..depth_spec.clone() };
                let depth = DepthPreprocessor::new(&spec, DepthLimits::default()).expect("depth front end");
                depth
                    .preprocess_into(&DepthPayload { data: bytes, ..Default::default() }, &mut out)
                    .expect("depth");
            }
        }
        let strided: Vec<f32> = out.iter().step_by(case.stride).copied().collect();
        let diff = max_abs_diff(&strided, &case.values);
        eprintln!("{}: max abs difference {diff:.2e}", case.id);
        // torch sums in f32 in its own order (fused multiply-adds, vectorised loops); bindery
        // computes the same weights and sums tap by tap, which leaves a few f32 roundings.
        assert!(diff < 1e-5, "{} ({}): differs by {diff}", case.id, case.file);
        compared.push(case.front_end.as_str());
    }
    for front_end in ["image", "thermal", "depth"] {
        assert!(compared.contains(&front_end), "no {front_end} tensor in preprocess.json");
    }
    assert!(compared.iter().filter(|f| **f == "depth").count() >= 2, "depth with max_depth_m 10 and 0");
}

/// Each new vision field, given a bad value, is refused at start-up naming it.
#[test]
fn bad_vision_manifest_values_are_refused_naming_the_field() {
    let dir = vision_fixture();
    let model = dir.path().join(MODEL);
    let good = manifest_sections(MODEL, &VISION);
    ModelDir::parse(&model, Path::new("model.toml"), &good).expect("the fixture's vision manifest is valid");
    let cases = [
        ("resize_domain = \"tensor\"", "resize_domain = \"numpy\"", "resize_domain"),
        (
            "resize_domain = \"tensor\"",
            "resize_domain = \"tensor\"\nresize_mode = \"longest\"",
            "resize_mode",
        ),
        ("channels = 3", "channels = 2", "channels"),
        ("mean = [0.48145466, 0.4578275, 0.40821073]", "mean = [0.48145466, 0.4578275]", "mean"),
        ("std = [0.26862954, 0.26130258, 0.27577711]", "std = [0.26862954, 0.0, 0.27577711]", "std"),
        ("mean = [0.48145466, 0.4578275, 0.40821073]", "mean = \"openai\"", "mean"),
        ("channels = 3", "channels = 3\nsixteen_bit = \"min_max\"", "sixteen_bit"),
        ("conversion = \"normalized\"", "conversion = \"normalised\"", "conversion"),
        ("max_depth_m = 10.0", "max_depth_m = -1.0", "max_depth_m"),
        ("max_depth_m = 10.0", "max_depth_m = 0.005", "max_depth_m"),
        ("min_depth_m = 0.01", "min_depth_m = 0.0", "min_depth_m"),
    ];
    for (from, to, field) in cases {
        assert!(good.contains(from), "{from}");
        // Each section gets the bad value in turn where the text occurs in several.
        for (at, _) in good.match_indices(from) {
            let bad = format!("{}{to}{}", &good[..at], &good[at + from.len()..]);
            let err = ModelDir::parse(&model, Path::new("model.toml"), &bad).expect_err(to).to_string();
            assert!(err.contains(field) && err.contains("model.toml"), "{to}: {err}");
        }
    }
    // 0 is the map's own maximum for `normalized` only.
    let disparity = good.replace("conversion = \"normalized\"", "conversion = \"disparity\"");
    ModelDir::parse(&model, Path::new("model.toml"), &disparity).expect("disparity with max_depth_m 10");
    let zero = disparity.replace("max_depth_m = 10.0", "max_depth_m = 0.0");
    let err =
        ModelDir::parse(&model, Path::new("model.toml"), &zero).expect_err("disparity, max 0").to_string();
    assert!(err.contains("max_depth_m"), "{err}");
    let normalized_zero = good.replace("max_depth_m = 10.0", "max_depth_m = 0.0");
    ModelDir::parse(&model, Path::new("model.toml"), &normalized_zero)
        .expect("normalized with max_depth_m 0");
}
