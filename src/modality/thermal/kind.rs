//! Thermal images as a bindery modality: the manifest section, the payload and the pipeline.

use serde::Deserialize;

use super::{ThermalLimits, ThermalPreprocessor};
use crate::modality::image::{
    PerChannel, ResizeDomain, ResizeFilter, check_channels, check_mean_std, check_resize_crop,
};
use crate::modality::{
    Argument, BuildError, FillOne, InputLimits, Kind, OneTensor, Payload, PayloadValue, Pipeline,
    PreprocessError, Section, limits_of, parse_section,
};
use crate::shared::{Modality, pb};

/// Registration of thermal images.
pub const KIND: Kind = Kind {
    modality: Modality::Thermal,
    check,
    build,
    from_proto,
    extensions: EXTENSIONS,
    inputs_from_file,
    limits: limits_of::<ThermalLimits>(),
    argument: Argument::Files,
    examples: Some(examples),
    fuzz: &[("thermal", super::fuzz_preprocess as fn(&[u8]))],
};

/// How the values of a 16-bit grey image become [0, 1] before resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SixteenBit {
    /// `v / 65535`: the sensor's full range, the same for every image.
    FullRange,
    /// `(v - min) / (max - min)` over the image (0 for a constant image), the way thermal frames
    /// are usually displayed.
    MinMax,
}

impl SixteenBit {
    /// The values in [0, 1], in f32 as the reference computes them.
    pub fn to_unit(self, values: &[u16]) -> Vec<f32> {
        match self {
            SixteenBit::FullRange => values.iter().map(|&v| f32::from(v) / 65535.0).collect(),
            SixteenBit::MinMax => {
                let low = values.iter().copied().min().map_or(0.0, f32::from);
                let high = values.iter().copied().max().map_or(0.0, f32::from);
                if high > low {
                    values.iter().map(|&v| (f32::from(v) - low) / (high - low)).collect()
                } else {
                    vec![0.0; values.len()]
                }
            }
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_channels() -> u32 {
    1
}

/// Thermal preprocessing (`[thermal.preprocess]`): resize short side, centre crop, and
/// optionally normalise, into `[channels, crop, crop]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermalPreprocess {
    /// The short side is resized to this many pixels.
    pub resize: u32,
    /// Side of the square centre crop.
    pub crop: u32,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// Mean subtracted after scaling to [0, 1]: one value, or one per channel.
    pub mean: PerChannel,
    /// Standard deviation divided by: one value, or one per channel.
    pub std: PerChannel,
    /// Whether to normalise with `mean` and `std` (when false, the tensor is [0, 1]).
    #[serde(default = "default_true")]
    pub normalize: bool,
    /// How a 16-bit grey image's values map into [0, 1] (one channel only; default
    /// `full_range`).
    #[serde(default)]
    pub sixteen_bit: Option<SixteenBit>,
    /// 1: the image as one grey plane (`convert("L")`); 3: as RGB (`convert("RGB")`), the way a
    /// tower trained on the image path takes it.
    #[serde(default = "default_channels")]
    pub channels: u32,
    /// Whether the resize runs on the 8-bit image (`pil`, the default) or on the float tensor
    /// after `ToTensor()` (`tensor`).
    #[serde(default)]
    pub resize_domain: ResizeDomain,
}

impl ThermalPreprocess {
    /// The values of Weaviate's multi2vec-bind container for ImageBind's thermal tower.
    pub fn imagebind() -> Self {
        ThermalPreprocess {
            resize: 224,
            crop: 224,
            filter: ResizeFilter::Bicubic,
            mean: PerChannel::One(0.481_454_66),
            std: PerChannel::One(0.268_629_54),
            normalize: true,
            sixteen_bit: Some(SixteenBit::FullRange),
            channels: 1,
            resize_domain: ResizeDomain::Pil,
        }
    }

    /// The mean and std of each channel; 0 and 1 when `normalize` is off, which leaves
    /// `(x - mean) / std` equal to `x`.
    pub(crate) fn mean_std(&self) -> Result<(Vec<f32>, Vec<f32>), String> {
        let channels = check_channels(self.channels)?;
        let mean = self.mean.for_channels("mean", channels)?;
        let std = self.std.for_channels("std", channels)?;
        check_mean_std(&mean, &std)?;
        if self.normalize { Ok((mean, std)) } else { Ok((vec![0.0; channels], vec![1.0; channels])) }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        check_resize_crop(self.resize, self.crop)?;
        self.mean_std()?;
        if self.channels == 3 && self.sixteen_bit.is_some() {
            return Err("sixteen_bit applies to channels = 1; with channels = 3 a 16-bit image becomes \
                        RGB as Pillow's convert(\"RGB\") makes it"
                .into());
        }
        Ok(())
    }
}

/// An encoded thermal image as the request carried it.
#[derive(Debug, Clone, Default)]
pub struct ThermalPayload {
    /// Encoded file bytes.
    pub data: Vec<u8>,
}

impl PayloadValue for ThermalPayload {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        // The format is sniffed from the content, so the hint does not change the embedding.
        part(&self.data);
    }
}

/// A thermal payload.
pub fn payload(data: Vec<u8>) -> Payload {
    Payload::new(Modality::Thermal, ThermalPayload { data })
}

fn check(section: &Section<'_>) -> Result<(), String> {
    parse_section::<ThermalPreprocess>(section.preprocess)?.check()
}

fn build(section: &Section<'_>, limits: &InputLimits) -> Result<Box<dyn Pipeline>, BuildError> {
    let spec: ThermalPreprocess = parse_section(section.preprocess)?;
    spec.check()?;
    let side = spec.crop as usize;
    let preprocessor = ThermalPreprocessor::new(&spec, limits.get::<ThermalLimits>())?;
    Ok(Box::new(OneTensor::new(section.input, vec![spec.channels as usize, side, side], preprocessor)))
}

/// Image files; a file of these is an image (not a thermal input) wherever bindery picks the
/// modality by extension, so thermal files are named with `--thermal`.
const EXTENSIONS: &[&str] = &["png", "tif", "tiff", "jpg", "jpeg", "bmp", "webp", "gif"];

fn inputs_from_file(bytes: Vec<u8>, extension: &str) -> Vec<pb::input::Payload> {
    vec![pb::input::Payload::ThermalImage(pb::Thermal { data: bytes, format_hint: extension.to_string() })]
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::ThermalImage(t) => Ok(payload(t.data)),
        other => Err(other),
    }
}

/// Eight 640x512 grey frames (an LLVIP frame's size): a cool background with warm blobs placed
/// by the seed, PNG-encoded.
fn examples(seed: u64) -> Vec<pb::input::Payload> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut next = move || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as f32 / (1u64 << 31) as f32
    };
    let (w, h) = (640u32, 512u32);
    (0..8)
        .filter_map(|_| {
            let blobs: Vec<[f32; 3]> =
                (0..3).map(|_| [next() * 640.0, next() * 512.0, 20.0 + next() * 80.0]).collect();
            let frame = image::GrayImage::from_fn(w, h, |x, y| {
                let heat = blobs.iter().fold(0.0f32, |acc, [bx, by, r]| {
                    let d2 = (x as f32 - bx).powi(2) + (y as f32 - by).powi(2);
                    acc.max((-d2 / (2.0 * r * r)).exp())
                });
                image::Luma([(40.0 + heat * 200.0) as u8])
            });
            let mut png = Vec::new();
            frame.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).ok()?;
            Some(pb::input::Payload::ThermalImage(pb::Thermal { data: png, format_hint: "png".into() }))
        })
        .collect()
}

impl FillOne for ThermalPreprocessor {
    type Value = ThermalPayload;

    fn fill(&self, value: &ThermalPayload, out: &mut [f32]) -> Result<(), PreprocessError> {
        self.preprocess_into(&value.data, out).map_err(PreprocessError::input)
    }
}
