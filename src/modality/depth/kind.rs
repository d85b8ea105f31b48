//! Depth maps as a bindery modality: the manifest section, the payload and the pipeline.

use serde::Deserialize;

use super::{DepthLimits, DepthPreprocessor};
use crate::modality::image::{
    PerChannel, ResizeDomain, ResizeFilter, check_channels, check_mean_std, check_resize_crop,
};
use crate::modality::{
    Argument, BuildError, FillOne, InputLimits, Kind, OneTensor, Payload, PayloadValue, Pipeline,
    PreprocessError, Section, limits_of, parse_section,
};
use crate::shared::{Modality, pb};

/// Registration of depth maps.
pub const KIND: Kind = Kind {
    modality: Modality::Depth,
    check,
    build,
    from_proto,
    extensions: EXTENSIONS,
    inputs_from_file,
    limits: limits_of::<DepthLimits>(),
    argument: Argument::Files,
    examples: Some(examples),
    fuzz: &[("depth", super::fuzz_preprocess as fn(&[u8]))],
};

/// How a depth map becomes the tower's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversion {
    /// Metric depth to disparity (`baseline_m * focal_px / depth`), the training recipe.
    Disparity,
    /// An 8-bit grey image as it is, Weaviate's multi2vec-bind convention.
    Grayscale,
    /// Metric depth clipped below at `min_depth_m` and divided by `max_depth_m` (clipped there
    /// too), or by the map's own maximum where `max_depth_m` is 0: LanguageBind's `DepthNorm`.
    Normalized,
}

/// Depth preprocessing (`[depth.preprocess]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepthPreprocess {
    /// `disparity` or `grayscale`.
    pub conversion: Conversion,
    /// The short side is resized to this many pixels.
    pub resize: u32,
    /// Side of the square centre crop.
    pub crop: u32,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// Mean subtracted from the (disparity, normalised or [0, 1] grey) values: one value, or
    /// one per channel.
    pub mean: PerChannel,
    /// Standard deviation divided by: one value, or one per channel.
    pub std: PerChannel,
    /// 1: one plane; 3: the plane repeated three times (normalised per channel), for towers
    /// trained on RGB.
    #[serde(default = "default_channels")]
    pub channels: u32,
    /// How the map is resized: as Pillow does (`pil`, the default: an 8-bit grey image as 8
    /// bits, a float map as mode `F`), or as torch resizes a float tensor after `ToTensor()`
    /// (`tensor`).
    #[serde(default)]
    pub resize_domain: ResizeDomain,
    /// Metres per unit of a 16-bit map (0.001: millimetres, the Kinect/RealSense/NYU convention).
    #[serde(default = "default_depth_scale")]
    pub depth_scale: f32,
    /// Depth is clipped to at least this many metres before the disparity conversion.
    #[serde(default = "default_min_depth")]
    pub min_depth_m: f32,
    /// ... and at most this many (`normalized` divides by it; 0 there: by the map's maximum).
    #[serde(default = "default_max_depth")]
    pub max_depth_m: f32,
    /// Stereo baseline in metres for the disparity conversion.
    #[serde(default = "default_baseline")]
    pub baseline_m: f32,
    /// Focal length in pixels for the disparity conversion.
    #[serde(default = "default_focal")]
    pub focal_px: f32,
}

fn default_channels() -> u32 {
    1
}

fn default_depth_scale() -> f32 {
    0.001
}

fn default_min_depth() -> f32 {
    0.01
}

fn default_max_depth() -> f32 {
    50.0
}

fn default_baseline() -> f32 {
    0.075
}

fn default_focal() -> f32 {
    518.857_9
}

impl DepthPreprocess {
    /// bindery's ImageBind values: the disparity recipe of Omnivore's SUN RGB-D code (clip to
    /// 0.01-50 m; Kinect's 0.075 m baseline), NYU Depth v2's focal length (518.857901 px, as
    /// ImageBind issue #107 uses), and no normalisation (mean 0, std 1: no source gives the
    /// disparity statistics ImageBind trained with; set them per model).
    pub fn imagebind() -> Self {
        DepthPreprocess {
            conversion: Conversion::Disparity,
            resize: 224,
            crop: 224,
            filter: ResizeFilter::Bicubic,
            mean: PerChannel::One(0.0),
            std: PerChannel::One(1.0),
            channels: 1,
            resize_domain: ResizeDomain::Pil,
            depth_scale: default_depth_scale(),
            min_depth_m: default_min_depth(),
            max_depth_m: default_max_depth(),
            baseline_m: default_baseline(),
            focal_px: default_focal(),
        }
    }

    /// The mean and std of each channel.
    pub(crate) fn mean_std(&self) -> Result<(Vec<f32>, Vec<f32>), String> {
        let channels = check_channels(self.channels)?;
        let mean = self.mean.for_channels("mean", channels)?;
        let std = self.std.for_channels("std", channels)?;
        check_mean_std(&mean, &std)?;
        Ok((mean, std))
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        check_resize_crop(self.resize, self.crop)?;
        self.mean_std()?;
        let positive = [self.depth_scale, self.min_depth_m, self.baseline_m, self.focal_px];
        if positive.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return Err("depth_scale, min_depth_m, baseline_m and focal_px must be positive".into());
        }
        let max = self.max_depth_m;
        if self.conversion == Conversion::Normalized {
            if !max.is_finite() || max < 0.0 {
                return Err(format!(
                    "max_depth_m must be positive, or 0 for the map's own maximum; got {max}"
                ));
            }
            if max == 0.0 {
                return Ok(());
            }
        } else if !max.is_finite() || max <= 0.0 {
            return Err(format!("max_depth_m must be positive, got {max}"));
        }
        if self.min_depth_m > self.max_depth_m {
            return Err(format!(
                "min_depth_m ({}) exceeds max_depth_m ({})",
                self.min_depth_m, self.max_depth_m
            ));
        }
        Ok(())
    }
}

/// A depth map as the request carried it, with its optional parameters (0: the model's).
#[derive(Debug, Clone, Default)]
pub struct DepthPayload {
    /// Encoded file bytes (PNG/TIFF image or NPY).
    pub data: Vec<u8>,
    /// Metres per unit of a 16-bit map.
    pub depth_scale: f32,
    /// Stereo baseline in metres.
    pub baseline_m: f32,
    /// Focal length in pixels.
    pub focal_px: f32,
}

impl PayloadValue for DepthPayload {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        part(&self.data);
        part(&self.depth_scale.to_le_bytes());
        part(&self.baseline_m.to_le_bytes());
        part(&self.focal_px.to_le_bytes());
    }
}

/// A depth payload.
pub fn payload(depth: DepthPayload) -> Payload {
    Payload::new(Modality::Depth, depth)
}

fn check(section: &Section<'_>) -> Result<(), String> {
    parse_section::<DepthPreprocess>(section.preprocess)?.check()
}

fn build(section: &Section<'_>, limits: &InputLimits) -> Result<Box<dyn Pipeline>, BuildError> {
    let spec: DepthPreprocess = parse_section(section.preprocess)?;
    spec.check()?;
    let side = spec.crop as usize;
    let preprocessor = DepthPreprocessor::new(&spec, limits.get::<DepthLimits>())?;
    Ok(Box::new(OneTensor::new(section.input, vec![spec.channels as usize, side, side], preprocessor)))
}

/// Image and NPY files; these are images or point clouds wherever bindery picks the modality by
/// extension (those register first), so depth files are named with `--depth`.
const EXTENSIONS: &[&str] = &["png", "tif", "tiff", "npy", "jpg", "jpeg", "bmp", "webp"];

fn inputs_from_file(bytes: Vec<u8>, extension: &str) -> Vec<pb::input::Payload> {
    vec![pb::input::Payload::DepthMap(pb::Depth {
        data: bytes,
        format_hint: extension.to_string(),
        ..Default::default()
    })]
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::DepthMap(d) => Ok(payload(DepthPayload {
            data: d.data,
            depth_scale: d.depth_scale,
            baseline_m: d.baseline_m,
            focal_px: d.focal_px,
        })),
        other => Err(other),
    }
}

/// Eight 640x480 16-bit maps in millimetres (a Kinect frame's size): a floor receding from 0.8 m
/// to 6 m with boxes placed by the seed, and a strip with no reading, PNG-encoded.
fn examples(seed: u64) -> Vec<pb::input::Payload> {
    (0..8u64)
        .filter_map(|i| {
            let shift = (seed.wrapping_add(i) % 5) as f32;
            let map = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(640, 480, |x, y| {
                if x < 8 {
                    return image::Luma([0]);
                }
                let floor = 800.0 + (480.0 - y as f32) * 11.0;
                let near_box = (x as f32 - 200.0 - 40.0 * shift).abs() < 60.0 && y > 250;
                image::Luma([if near_box { (1200.0 + 100.0 * shift) as u16 } else { floor as u16 }])
            });
            let mut png = Vec::new();
            map.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).ok()?;
            Some(pb::input::Payload::DepthMap(pb::Depth {
                data: png,
                format_hint: "png".into(),
                ..Default::default()
            }))
        })
        .collect()
}

impl FillOne for DepthPreprocessor {
    type Value = DepthPayload;

    fn fill(&self, value: &DepthPayload, out: &mut [f32]) -> Result<(), PreprocessError> {
        self.preprocess_into(value, out).map_err(PreprocessError::input)
    }
}
