//! Point clouds: parse common formats, sample to a fixed count, normalise and group like PointBERT.
//!
//! The reference is ULIP's data pipeline feeding its PointBERT encoder:
//!
//! 1. read the cloud (PLY, PCD, XYZ/PTS/CSV text, NPY, OBJ, or packed arrays); meshes (OBJ, PLY
//!    with faces) are sampled on their surface first ([`mesh`]); points with a non-finite
//!    coordinate or colour are dropped and counted;
//! 2. bring it to `npoints`: farthest point sampling ([`fps`]) on the raw xyz when there are more
//!    points (the sampled points are taken in selection order, as ULIP's
//!    `farthest_point_sample` does), repetition when there are fewer (output point `i` is input
//!    point `i mod N`);
//! 3. ULIP's `pc_normalize` on the `npoints` coordinates (see [`group::normalize`]);
//! 4. PointBERT's `Group`: `num_group` centres by farthest point sampling, the `group_size`
//!    nearest points of each centre, coordinates relative to their centre; colours (the real ones,
//!    or `default_color` for every channel when the input has none) stay absolute.
//!
//! All geometry is f32 with the operation order of the reference code, so the selected indices
//! are identical to those of the reference implementations (`fpsample` for sampling, `torch`
//! for the neighbour search) and not only close.

pub mod formats;
pub mod fps;
pub mod group;
mod kind;
pub mod mesh;
mod spatial;

pub use kind::{KIND, PointCloudPayload, PointCloudPreprocess, payload};

/// Size limits checked before parsing everything (the server's `--max-point-cloud-bytes` and
/// `--max-points` flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PointCloudLimits {
    /// Largest encoded point-cloud file accepted, in bytes.
    #[arg(
        id = "max_point_cloud_bytes",
        long = "max-point-cloud-bytes", value_name = "BYTES",
        default_value_t = PointCloudLimits::default().max_bytes
    )]
    pub max_bytes: usize,
    /// Most points accepted in one point cloud (declared by the header, or counted while parsing).
    #[arg(id = "max_points", long = "max-points", value_name = "POINTS", default_value_t = PointCloudLimits::default().max_points)]
    pub max_points: usize,
}

impl Default for PointCloudLimits {
    fn default() -> Self {
        Self { max_bytes: 256 << 20, max_points: 5_000_000 }
    }
}

/// Colours given as packed arrays.
#[derive(Debug, Clone, Copy)]
pub enum Colors<'a> {
    /// N*3 floats in [0, 1].
    Float(&'a [f32]),
    /// N*3 bytes 0-255.
    Bytes(&'a [u8]),
}

/// A point cloud as the client sent it.
#[derive(Debug, Clone, Copy)]
pub enum PointCloudInput<'a> {
    /// An encoded file and an optional format hint (`ply`, `pcd`, `xyz`, `pts`, `csv`, `txt`,
    /// `npy`, `obj`).
    File {
        /// File bytes.
        data: &'a [u8],
        /// Format hint; content decides when missing.
        format_hint: Option<&'a str>,
    },
    /// Packed arrays.
    Arrays {
        /// N*3 coordinates.
        xyz: &'a [f32],
        /// Optional N*3 colours.
        colors: Option<Colors<'a>>,
    },
}

/// What preprocessing observed about one cloud.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PointCloudStats {
    /// Points dropped because a coordinate (or colour) was NaN or infinite.
    pub dropped_points: u64,
}

/// Why a point-cloud input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PointCloudError {
    /// Zero-length payload or zero points.
    #[error("point cloud is empty: the payload has no bytes or declares no points")]
    Empty,
    /// Payload larger than the configured byte limit.
    #[error("point cloud file is {size} bytes, more than the limit of {limit} bytes")]
    TooManyBytes {
        /// Payload size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// More points than the configured limit (declared by a header or counted).
    #[error("point cloud has {count} points, more than the limit of {limit}")]
    TooManyPoints {
        /// Points declared or counted so far.
        count: u64,
        /// Configured limit.
        limit: usize,
    },
    /// Too few usable points once non-finite ones were dropped.
    #[error(
        "point cloud has {count} usable points ({dropped} dropped as NaN/infinite), \
         fewer than the {min} required"
    )]
    TooFewPoints {
        /// Finite points left.
        count: usize,
        /// Points dropped.
        dropped: u64,
        /// Required minimum.
        min: usize,
    },
    /// The format could not be recognised from the content and no hint was given.
    #[error("unrecognised point cloud format (expected PLY, PCD, NPY, OBJ or XYZ/PTS/CSV text)")]
    UnknownFormat,
    /// The format hint names no supported format.
    #[error("unsupported point cloud format hint {0:?} (use ply, pcd, xyz, pts, csv, npy or obj)")]
    UnknownHint(String),
    /// A recognised format in a variant bindery does not read.
    #[error("unsupported {format} file: {reason}")]
    Unsupported {
        /// Format name.
        format: &'static str,
        /// What is unsupported.
        reason: String,
    },
    /// The file does not follow its format.
    #[error("malformed {format} file: {reason}")]
    Malformed {
        /// Format name.
        format: &'static str,
        /// What is wrong, with a line or record number where known.
        reason: String,
    },
    /// The file ends before the data its header declares.
    #[error("truncated {format} file: {reason}")]
    Truncated {
        /// Format name.
        format: &'static str,
        /// What is missing.
        reason: String,
    },
    /// Packed arrays of inconsistent lengths.
    #[error("invalid point arrays: {0}")]
    InvalidArrays(String),
    /// Coordinates so large that normalisation overflows f32.
    #[error("point coordinates out of range: {0}")]
    OutOfRange(String),
    /// The output slots do not have the sizes of this preprocessor's tensors.
    #[error("output slot has {got} values, expected {expected}")]
    SlotSize {
        /// Expected length.
        expected: usize,
        /// Length given.
        got: usize,
    },
}

/// A cloud after reading and cleaning: f32 coordinates and optional colours in [0, 1].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cloud {
    /// N*3 coordinates.
    pub xyz: Vec<f32>,
    /// N*3 colours, when the input has them.
    pub rgb: Option<Vec<f32>>,
}

impl Cloud {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.xyz.len() / 3
    }

    /// Whether the cloud has no point.
    pub fn is_empty(&self) -> bool {
        self.xyz.is_empty()
    }

    /// Drops points with a non-finite coordinate or colour (keeping order); returns how many.
    pub(crate) fn drop_non_finite(&mut self) -> u64 {
        // Branch-free so it vectorises; most clouds have no non-finite value at all.
        let all_finite = |v: &[f32]| v.iter().fold(0u32, |bad, x| bad | u32::from(!x.is_finite())) == 0;
        if all_finite(&self.xyz) && self.rgb.as_deref().is_none_or(all_finite) {
            return 0;
        }
        let n = self.len();
        let finite = |i: usize| {
            self.xyz[3 * i..3 * i + 3].iter().all(|v| v.is_finite())
                && self.rgb.as_ref().is_none_or(|c| c[3 * i..3 * i + 3].iter().all(|v| v.is_finite()))
        };
        let keep: Vec<bool> = (0..n).map(finite).collect();
        let kept = keep.iter().filter(|k| **k).count();
        if kept == n {
            return 0;
        }
        self.xyz = keep_points(&self.xyz, &keep);
        self.rgb = self.rgb.as_deref().map(|c| keep_points(c, &keep));
        (n - kept) as u64
    }
}

/// The points (triples of `values`) whose `keep` flag is set, in order.
fn keep_points(values: &[f32], keep: &[bool]) -> Vec<f32> {
    values.chunks_exact(3).zip(keep).filter(|(_, k)| **k).flat_map(|(p, _)| p.iter().copied()).collect()
}

/// Everything one preprocessing run computed, for inspection and tests.
#[derive(Debug, Clone)]
pub struct PreprocessTrace {
    /// Usable points read (after surface sampling and dropping non-finite points).
    pub points: usize,
    /// What was dropped.
    pub stats: PointCloudStats,
    /// Farthest-point-sampling indices into the read cloud when it had more than `npoints`.
    pub sample_indices: Option<Vec<u32>>,
    /// Indices (into the `npoints` sampled cloud) of the group centres, in selection order.
    pub center_indices: Vec<u32>,
    /// Indices (into the `npoints` sampled cloud) of each centre's neighbours, `[G, K]`.
    pub neighbor_indices: Vec<u32>,
    /// Neighbourhood tensor `[G, K, C]`.
    pub neighborhood: Vec<f32>,
    /// Centre tensor `[G, 3]`.
    pub center: Vec<f32>,
}

/// Prepares point clouds for the point tower.
pub struct PointCloudPreprocessor {
    spec: PointCloudPreprocess,
    limits: PointCloudLimits,
}

impl PointCloudPreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits.
    pub fn new(spec: &PointCloudPreprocess, limits: PointCloudLimits) -> Self {
        Self { spec: spec.clone(), limits }
    }

    /// Channels per point in the neighbourhood tensor (6 with colour, else 3).
    pub fn channels(&self) -> usize {
        if self.spec.use_color { 6 } else { 3 }
    }

    /// f32 values of one cloud's neighbourhood tensor `[G, K, C]`.
    pub fn neighborhood_len(&self) -> usize {
        self.spec.num_group * self.spec.group_size * self.channels()
    }

    /// f32 values of one cloud's centre tensor `[G, 3]`.
    pub fn center_len(&self) -> usize {
        self.spec.num_group * 3
    }

    /// Reads and cleans one cloud (surface-sampling meshes), enforcing the limits.
    pub fn read(&self, input: PointCloudInput<'_>) -> Result<(Cloud, PointCloudStats), PointCloudError> {
        let (cloud, dropped) = formats::read(input, &self.limits, self.spec.mesh_samples)?;
        let stats = PointCloudStats { dropped_points: dropped };
        let min = self.spec.min_points.max(1);
        if cloud.is_empty() && dropped == 0 {
            return Err(PointCloudError::Empty);
        }
        if cloud.len() < min {
            return Err(PointCloudError::TooFewPoints { count: cloud.len(), dropped, min });
        }
        Ok((cloud, stats))
    }

    /// Parses and preprocesses one cloud into its slots of the two batch tensors.
    pub fn preprocess_into(
        &self,
        input: PointCloudInput<'_>,
        neighborhood: &mut [f32],
        center: &mut [f32],
    ) -> Result<PointCloudStats, PointCloudError> {
        for (slot, expected) in
            [(neighborhood.len(), self.neighborhood_len()), (center.len(), self.center_len())]
        {
            if slot != expected {
                return Err(PointCloudError::SlotSize { expected, got: slot });
            }
        }
        let (cloud, stats) = self.read(input)?;
        self.group_into(&cloud, neighborhood, center, None)?;
        Ok(stats)
    }

    /// Like [`preprocess_into`](Self::preprocess_into), returning the intermediate indices too.
    pub fn trace(&self, input: PointCloudInput<'_>) -> Result<PreprocessTrace, PointCloudError> {
        let (cloud, stats) = self.read(input)?;
        let mut neighborhood = vec![0f32; self.neighborhood_len()];
        let mut center = vec![0f32; self.center_len()];
        let mut neighbor_indices = Vec::with_capacity(self.spec.num_group * self.spec.group_size);
        let (sample_indices, center_indices) =
            self.group_into(&cloud, &mut neighborhood, &mut center, Some(&mut neighbor_indices))?;
        Ok(PreprocessTrace {
            points: cloud.len(),
            stats,
            sample_indices,
            center_indices,
            neighbor_indices,
            neighborhood,
            center,
        })
    }

    /// Steps 2-4 of the module docs on a cleaned cloud.
    fn group_into(
        &self,
        cloud: &Cloud,
        neighborhood: &mut [f32],
        center: &mut [f32],
        neighbors: Option<&mut Vec<u32>>,
    ) -> Result<(Option<Vec<u32>>, Vec<u32>), PointCloudError> {
        let spec = &self.spec;
        let n = cloud.len();
        let npoints = spec.npoints;
        let sample_indices = (n > npoints).then(|| fps::farthest_point_sampling(&cloud.xyz, npoints));
        let pick = |i: usize| -> usize {
            match &sample_indices {
                Some(idx) => idx[i] as usize,
                None => i % n,
            }
        };
        let mut xyz = Vec::with_capacity(npoints * 3);
        for i in 0..npoints {
            let j = pick(i);
            xyz.extend_from_slice(&cloud.xyz[3 * j..3 * j + 3]);
        }
        let rgb = match (&cloud.rgb, spec.use_color) {
            (Some(c), true) => {
                let mut rgb = Vec::with_capacity(npoints * 3);
                for i in 0..npoints {
                    let j = pick(i);
                    rgb.extend_from_slice(&c[3 * j..3 * j + 3]);
                }
                Some(rgb)
            }
            _ => None,
        };
        group::normalize(&mut xyz)?;
        let colors = if spec.use_color {
            Some(match &rgb {
                Some(c) => group::PointColors::PerPoint(c),
                None => group::PointColors::Uniform(spec.default_color),
            })
        } else {
            None
        };
        let centers =
            group::group(&xyz, colors, spec.num_group, spec.group_size, neighborhood, center, neighbors);
        Ok((sample_indices, centers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(npoints: usize, groups: usize, k: usize) -> PointCloudPreprocess {
        PointCloudPreprocess {
            npoints,
            num_group: groups,
            group_size: k,
            use_color: true,
            default_color: 0.4,
            min_points: 1,
            center_input: "center".into(),
            mesh_samples: 100,
        }
    }

    #[test]
    fn single_point_is_repeated_and_stays_finite() {
        let p = PointCloudPreprocessor::new(&spec(16, 4, 4), PointCloudLimits::default());
        let t = p.trace(PointCloudInput::Arrays { xyz: &[5.0, -2.0, 1.0], colors: None }).unwrap();
        assert!(t.neighborhood.iter().all(|v| v.is_finite()));
        // Identical points normalise to the origin; colour channels carry the default colour.
        for point in t.neighborhood.chunks_exact(6) {
            assert_eq!(point, &[0.0, 0.0, 0.0, 0.4, 0.4, 0.4]);
        }
        assert_eq!(t.center_indices, vec![0, 0, 0, 0]);
    }

    #[test]
    fn slot_sizes_are_checked() {
        let p = PointCloudPreprocessor::new(&spec(16, 4, 4), PointCloudLimits::default());
        let mut n = vec![0f32; 3];
        let mut c = vec![0f32; p.center_len()];
        let err = p
            .preprocess_into(PointCloudInput::Arrays { xyz: &[0.0; 3], colors: None }, &mut n, &mut c)
            .unwrap_err();
        assert!(matches!(err, PointCloudError::SlotSize { got: 3, .. }), "{err}");
    }

    #[test]
    fn non_finite_points_are_dropped_and_counted() {
        let mut c = Cloud {
            xyz: vec![0.0, 1.0, 2.0, f32::NAN, 0.0, 0.0, 3.0, 4.0, 5.0],
            rgb: Some(vec![0.1, 0.2, 0.3, 0.1, 0.2, 0.3, f32::INFINITY, 0.0, 0.0]),
        };
        assert_eq!(c.drop_non_finite(), 2);
        assert_eq!(c.xyz, vec![0.0, 1.0, 2.0]);
        assert_eq!(c.rgb, Some(vec![0.1, 0.2, 0.3]));
    }
}
