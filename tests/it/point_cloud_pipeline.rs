//! Point-cloud preprocessing against golden files made by an independent reference pipeline
//! (`tools/make_point_fixtures.py`: plyfile / pypcd4 / numpy readers, `fpsample` farthest point
//! sampling, `torch` neighbour search, ULIP's `pc_normalize`).

#[path = "../support/generated_cloud.rs"]
mod generated_cloud;

use std::path::Path;

use bindery::modality::point_cloud::PointCloudPreprocess;
use bindery::modality::point_cloud::formats::Format;
use bindery::modality::point_cloud::{
    Colors, PointCloudError, PointCloudInput, PointCloudLimits, PointCloudPreprocessor,
};
use serde_json::Value;

use crate::common::{Fixtures, max_abs_diff};

/// Max abs difference of the grouped tensors against the reference.
const TENSOR_TOL: f32 = 1e-5;

const POINT_CLOUD: Fixtures = Fixtures("point_cloud");

fn params(meta: &Value) -> PointCloudPreprocess {
    serde_json::from_value::<Params>(meta["params"].clone()).unwrap().into()
}

#[derive(serde::Deserialize)]
struct Params {
    npoints: usize,
    num_group: usize,
    group_size: usize,
    use_color: bool,
    default_color: f32,
    min_points: usize,
    center_input: String,
    mesh_samples: usize,
}

impl From<Params> for PointCloudPreprocess {
    fn from(p: Params) -> Self {
        PointCloudPreprocess {
            npoints: p.npoints,
            num_group: p.num_group,
            group_size: p.group_size,
            use_color: p.use_color,
            default_color: p.default_color,
            min_points: p.min_points,
            center_input: p.center_input,
            mesh_samples: p.mesh_samples,
        }
    }
}

/// Inputs a case describes; `owned` keeps file bytes and arrays alive.
struct CaseInput {
    data: Vec<u8>,
    xyz: Vec<f32>,
    rgb: Vec<u8>,
    hint: Option<String>,
}

impl CaseInput {
    fn load(case: &Value) -> Self {
        let hint = case["hint"].as_str().map(str::to_string);
        if let Some(g) = case.get("generated").filter(|g| !g.is_null()) {
            let points = g["points"].as_u64().unwrap() as usize;
            return Self {
                data: generated_cloud::generated_ply(points),
                xyz: Vec::new(),
                rgb: Vec::new(),
                hint,
            };
        }
        if let Some(a) = case.get("arrays").filter(|a| !a.is_null()) {
            return Self {
                data: Vec::new(),
                xyz: POINT_CLOUD.f32s(a["xyz"].as_str().unwrap()),
                rgb: POINT_CLOUD.read(a["rgb_u8"].as_str().unwrap()),
                hint,
            };
        }
        Self {
            data: POINT_CLOUD.read(case["file"].as_str().unwrap()),
            xyz: Vec::new(),
            rgb: Vec::new(),
            hint,
        }
    }

    fn input(&self) -> PointCloudInput<'_> {
        if self.data.is_empty() {
            PointCloudInput::Arrays { xyz: &self.xyz, colors: Some(Colors::Bytes(&self.rgb)) }
        } else {
            PointCloudInput::File { data: &self.data, format_hint: self.hint.as_deref() }
        }
    }
}

fn check_case(p: &PointCloudPreprocessor, case: &Value) {
    let id = case["id"].as_str().unwrap();
    let input = CaseInput::load(case);
    let t = p.trace(input.input()).unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(t.points as u64, case["points"].as_u64().unwrap(), "{id}: points");
    assert_eq!(t.stats.dropped_points, case["dropped"].as_u64().unwrap(), "{id}: dropped points");
    let want_sample: Option<Vec<u32>> = serde_json::from_value(case["sample_indices"].clone()).unwrap();
    assert_eq!(t.sample_indices, want_sample, "{id}: npoints farthest point sampling");
    let want_centers: Vec<u32> = serde_json::from_value(case["center_indices"].clone()).unwrap();
    assert_eq!(t.center_indices, want_centers, "{id}: centre farthest point sampling");
    let want_knn: Vec<u32> =
        POINT_CLOUD.u16s(case["neighbors"].as_str().unwrap()).into_iter().map(u32::from).collect();
    assert_eq!(t.neighbor_indices, want_knn, "{id}: neighbour indices");
    let d = max_abs_diff(&t.center, &POINT_CLOUD.f32s(case["center"].as_str().unwrap()));
    assert!(d <= TENSOR_TOL, "{id}: centre tensor differs by {d}");
    let mut line = format!("{id}: centres max abs diff {d:.3e}");
    if let Some(rel) = case["neighborhood"].as_str() {
        let d = max_abs_diff(&t.neighborhood, &POINT_CLOUD.f32s(rel));
        assert!(d <= TENSOR_TOL, "{id}: neighbourhood tensor differs by {d}");
        line += &format!(", neighbourhood max abs diff {d:.3e}");
    }
    eprintln!("{line}");
}

#[test]
fn every_test_cloud_matches_the_reference() {
    let meta: Value = POINT_CLOUD.json("cases.json");
    let p = PointCloudPreprocessor::new(&params(&meta), PointCloudLimits::default());
    let cases = meta["cases"].as_array().unwrap();
    let mut checked = 0;
    for case in cases.iter().filter(|c| c["id"] != "generated_1m") {
        check_case(&p, case);
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cases");
}

#[test]
fn million_point_cloud_matches_the_reference() {
    let meta: Value = POINT_CLOUD.json("cases.json");
    let p = PointCloudPreprocessor::new(&params(&meta), PointCloudLimits::default());
    let case = meta["cases"].as_array().unwrap().iter().find(|c| c["id"] == "generated_1m").unwrap();
    assert_eq!(case["generated"]["points"], 1_000_000);
    check_case(&p, case);
}

#[test]
fn formats_are_recognised_without_a_hint() {
    let meta: Value = POINT_CLOUD.json("cases.json");
    let mut checked = 0;
    for case in meta["cases"].as_array().unwrap() {
        let Some(file) = case["file"].as_str() else {
            continue;
        };
        let ext = Path::new(file).extension().unwrap().to_str().unwrap();
        let sniffed = Format::sniff(&POINT_CLOUD.read(file)).unwrap();
        assert_eq!(sniffed, Format::from_hint(ext).unwrap(), "{file}");
        checked += 1;
    }
    assert!(checked >= 20);
}

fn kind(e: &PointCloudError) -> &'static str {
    match e {
        PointCloudError::Empty => "Empty",
        PointCloudError::TooManyBytes { .. } => "TooManyBytes",
        PointCloudError::TooManyPoints { .. } => "TooManyPoints",
        PointCloudError::TooFewPoints { .. } => "TooFewPoints",
        PointCloudError::UnknownFormat => "UnknownFormat",
        PointCloudError::UnknownHint(_) => "UnknownHint",
        PointCloudError::Unsupported { .. } => "Unsupported",
        PointCloudError::Malformed { .. } => "Malformed",
        PointCloudError::Truncated { .. } => "Truncated",
        PointCloudError::InvalidArrays(_) => "InvalidArrays",
        PointCloudError::OutOfRange(_) => "OutOfRange",
        PointCloudError::SlotSize { .. } => "SlotSize",
    }
}

#[test]
fn malformed_inputs_are_rejected_with_a_reason() {
    let meta: Value = POINT_CLOUD.json("cases.json");
    let spec = params(&meta);
    let bad: Value = POINT_CLOUD.json("bad.json");
    let entries = bad["entries"].as_array().unwrap();
    assert!(entries.len() >= 12);
    for e in entries {
        let file = e["file"].as_str().unwrap();
        let mut limits = PointCloudLimits::default();
        if let Some(l) = e["limits"].as_object() {
            if let Some(v) = l.get("max_points") {
                limits.max_points = v.as_u64().unwrap() as usize;
            }
            if let Some(v) = l.get("max_bytes") {
                limits.max_bytes = v.as_u64().unwrap() as usize;
            }
        }
        let p = PointCloudPreprocessor::new(&spec, limits);
        let data = POINT_CLOUD.read(file);
        let mut neighborhood = vec![0f32; p.neighborhood_len()];
        let mut center = vec![0f32; p.center_len()];
        let err = p
            .preprocess_into(
                PointCloudInput::File { data: &data, format_hint: e["hint"].as_str() },
                &mut neighborhood,
                &mut center,
            )
            .expect_err(file);
        let message = err.to_string();
        eprintln!("{file}: {message}");
        assert_eq!(kind(&err), e["kind"].as_str().unwrap(), "{file}: {message}");
        // The message explains more than the error kind.
        assert!(message.len() > 20, "{file}: {message}");
    }
}

#[test]
fn limits_are_checked_before_parsing() {
    let meta: Value = POINT_CLOUD.json("cases.json");
    let spec = params(&meta);
    let data = POINT_CLOUD.read("cases/binary_le_20k.ply");
    // One byte over the byte limit: rejected by size, whatever the content.
    let p = PointCloudPreprocessor::new(
        &spec,
        PointCloudLimits { max_bytes: data.len() - 1, max_points: usize::MAX },
    );
    let err = p.trace(PointCloudInput::File { data: &data, format_hint: None }).unwrap_err();
    assert!(matches!(err, PointCloudError::TooManyBytes { .. }), "{err}");
    // The header's vertex count is compared with the point limit.
    let p =
        PointCloudPreprocessor::new(&spec, PointCloudLimits { max_bytes: usize::MAX, max_points: 19_999 });
    let err = p.trace(PointCloudInput::File { data: &data, format_hint: Some("ply") }).unwrap_err();
    assert!(matches!(err, PointCloudError::TooManyPoints { count: 20_000, limit: 19_999 }), "{err}");
    // Arrays too.
    let xyz = vec![0.5f32; 300];
    let p = PointCloudPreprocessor::new(&spec, PointCloudLimits { max_bytes: usize::MAX, max_points: 99 });
    let err = p.trace(PointCloudInput::Arrays { xyz: &xyz, colors: None }).unwrap_err();
    assert!(matches!(err, PointCloudError::TooManyPoints { count: 100, .. }), "{err}");
}

#[test]
fn truncating_any_file_never_panics() {
    let meta: Value = POINT_CLOUD.json("cases.json");
    let p = PointCloudPreprocessor::new(&params(&meta), PointCloudLimits::default());
    for name in ["cases/ascii_color.ply", "cases/compressed.pcd", "cases/f64_fortran_rgb.npy"] {
        let data = POINT_CLOUD.read(name);
        let one = p.trace(PointCloudInput::File { data: &data[..1], format_hint: None });
        assert!(one.is_err(), "{name}: a 1-byte prefix was accepted");
        for cut in [1, 7, 64, 200, 301, data.len() / 2, data.len() - 5] {
            // Either an error or a (shorter) cloud; never a panic.
            let _ = p.trace(PointCloudInput::File { data: &data[..cut], format_hint: None });
        }
        // Flipping bytes in the header region must not panic either.
        let mut flipped = data.clone();
        for i in (0..flipped.len().min(400)).step_by(13) {
            flipped[i] ^= 0x5a;
        }
        let _ = p.trace(PointCloudInput::File { data: &flipped, format_hint: None });
    }
}
