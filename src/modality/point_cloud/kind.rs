//! Point clouds as a bindery modality: the manifest section, the payload and the pipeline. The
//! tower takes two inputs: the neighbourhoods `[B, G, K, C]` (the section's `input`) and the
//! group centres `[B, G, 3]` (`preprocess.center_input`).

use serde::Deserialize;

use super::{Colors, PointCloudInput, PointCloudLimits, PointCloudPreprocessor};
use crate::modality::{
    Argument, BuildError, InputLimits, Kind, Observed, Payload, PayloadValue, Pipeline, PreprocessError,
    Section, Slot, TensorSpec, limits_of, parse_section,
};
use crate::shared::{Modality, pb};

/// Registration of point clouds.
pub const KIND: Kind = Kind {
    modality: Modality::PointCloud,
    check,
    build,
    from_proto,
    extensions: EXTENSIONS,
    inputs_from_file,
    limits: limits_of::<PointCloudLimits>(),
    argument: Argument::Files,
    examples: None,
    fuzz: &[],
};

/// Point-cloud preprocessing: sampling, normalisation and PointBERT grouping
/// (`[point_cloud.preprocess]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointCloudPreprocess {
    /// Points kept per cloud (farthest point sampling down, deterministic repetition up).
    pub npoints: usize,
    /// Number of groups (centres chosen by farthest point sampling).
    pub num_group: usize,
    /// Points per group (nearest neighbours of each centre).
    pub group_size: usize,
    /// Whether the tower takes colour: 6 channels (xyz + rgb) instead of 3.
    pub use_color: bool,
    /// Colour used for every point when the input has none (ULIP-2 uses 0.4).
    #[serde(default = "default_point_color")]
    pub default_color: f32,
    /// Fewest points (after dropping non-finite ones) a cloud must have.
    #[serde(default = "default_min_points")]
    pub min_points: usize,
    /// Name of the tower's second input, the group centres `[B, G, 3]`; the section's `input`
    /// names the neighbourhoods `[B, G, K, C]`.
    pub center_input: String,
    /// Points sampled from a mesh surface (OBJ, PLY with faces) before preprocessing.
    #[serde(default = "default_mesh_samples")]
    pub mesh_samples: usize,
}

fn default_point_color() -> f32 {
    0.4
}

fn default_min_points() -> usize {
    1
}

fn default_mesh_samples() -> usize {
    10_000
}

impl PointCloudPreprocess {
    fn check(&self, input: &str) -> Result<(), String> {
        if self.npoints == 0 || self.num_group == 0 || self.group_size == 0 || self.mesh_samples == 0 {
            return Err("npoints, num_group, group_size and mesh_samples must be positive".into());
        }
        if self.num_group > self.npoints || self.group_size > self.npoints {
            return Err(format!(
                "num_group ({}) and group_size ({}) cannot exceed npoints ({})",
                self.num_group, self.group_size, self.npoints
            ));
        }
        if self.center_input.is_empty() || self.center_input == input {
            return Err("center_input must name the tower's second input".into());
        }
        Ok(())
    }
}

/// A point cloud as the request carried it: a file, or packed arrays.
#[derive(Debug, Clone, Default)]
pub struct PointCloudPayload {
    /// Encoded file bytes (empty when arrays are used).
    pub data: Vec<u8>,
    /// Format hint (may be empty).
    pub format_hint: String,
    /// Packed coordinates.
    pub xyz: Vec<f32>,
    /// Packed float colours.
    pub rgb: Vec<f32>,
    /// Packed byte colours.
    pub rgb_u8: Vec<u8>,
}

impl PointCloudPayload {
    /// The borrowed form the preprocessor takes: the file when one was sent, else the arrays.
    pub fn as_input(&self) -> PointCloudInput<'_> {
        if !self.data.is_empty() || self.xyz.is_empty() {
            let hint = (!self.format_hint.is_empty()).then_some(self.format_hint.as_str());
            return PointCloudInput::File { data: &self.data, format_hint: hint };
        }
        let colors = if !self.rgb.is_empty() {
            Some(Colors::Float(&self.rgb))
        } else if !self.rgb_u8.is_empty() {
            Some(Colors::Bytes(&self.rgb_u8))
        } else {
            None
        };
        PointCloudInput::Arrays { xyz: &self.xyz, colors }
    }
}

impl PayloadValue for PointCloudPayload {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        let floats = |values: &[f32]| values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        part(&self.data);
        part(self.format_hint.as_bytes());
        part(&floats(&self.xyz));
        part(&floats(&self.rgb));
        part(&self.rgb_u8);
    }
}

/// A point-cloud payload.
pub fn payload(cloud: PointCloudPayload) -> Payload {
    Payload::new(Modality::PointCloud, cloud)
}

fn check(section: &Section<'_>) -> Result<(), String> {
    parse_section::<PointCloudPreprocess>(section.preprocess)?.check(section.input)
}

fn build(section: &Section<'_>, limits: &InputLimits) -> Result<Box<dyn Pipeline>, BuildError> {
    let spec: PointCloudPreprocess = parse_section(section.preprocess)?;
    spec.check(section.input)?;
    let preprocessor = PointCloudPreprocessor::new(&spec, limits.get::<PointCloudLimits>());
    let tensors = [
        TensorSpec::f32(section.input, vec![spec.num_group, spec.group_size, preprocessor.channels()]),
        TensorSpec::f32(spec.center_input.clone(), vec![spec.num_group, 3]),
    ];
    Ok(Box::new(PointCloudPipeline { tensors, preprocessor }))
}

const EXTENSIONS: &[&str] = &["ply", "pcd", "xyz", "pts", "csv", "npy", "obj"];

fn inputs_from_file(bytes: Vec<u8>, extension: &str) -> Vec<pb::input::Payload> {
    vec![pb::input::Payload::PointCloud(pb::PointCloud {
        data: bytes,
        format_hint: extension.to_string(),
        ..Default::default()
    })]
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::PointCloud(p) => Ok(payload(PointCloudPayload {
            data: p.data,
            format_hint: p.format_hint,
            xyz: p.xyz,
            rgb: p.rgb,
            rgb_u8: p.rgb_u8,
        })),
        other => Err(other),
    }
}

struct PointCloudPipeline {
    tensors: [TensorSpec; 2],
    preprocessor: PointCloudPreprocessor,
}

impl Pipeline for PointCloudPipeline {
    fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    fn preprocess_into(
        &self,
        payload: &Payload,
        slots: &mut [Slot<'_>],
    ) -> Result<Observed, PreprocessError> {
        let cloud = payload.expect_value::<PointCloudPayload>()?;
        let [neighborhood, center] = slots else {
            return Err(PreprocessError::Internal(format!(
                "point clouds fill 2 tensors, got {} slots",
                slots.len()
            )));
        };
        let stats = self
            .preprocessor
            .preprocess_into(cloud.as_input(), neighborhood.f32()?, center.f32()?)
            .map_err(PreprocessError::input)?;
        Ok(Observed { dropped_points: stats.dropped_points, ..Observed::default() })
    }
}
