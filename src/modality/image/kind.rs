//! Images as a bindery modality: the manifest section, the payload and the pipeline.

use serde::Deserialize;

use super::{ImageLimits, ImagePreprocessor};
use crate::modality::{
    Argument, BuildError, FillOne, InputLimits, Kind, OneTensor, Payload, PayloadValue, Pipeline,
    PreprocessError, Section, limits_of, parse_section,
};
use crate::shared::{Modality, pb};

/// Registration of images.
pub const KIND: Kind = Kind {
    modality: Modality::Image,
    check,
    build,
    from_proto,
    extensions: EXTENSIONS,
    inputs_from_file,
    limits: limits_of::<ImageLimits>(),
    argument: Argument::Files,
    examples: None,
    fuzz: &[],
};

/// Resampling filter used to scale images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    /// PIL `BICUBIC` (a = -0.5), antialiased.
    Bicubic,
    /// PIL `BILINEAR`, antialiased.
    Bilinear,
}

/// Image preprocessing: resize short side, center crop, normalise (CHW, f32) (`[image.preprocess]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePreprocess {
    /// The short side is resized to this many pixels.
    pub resize: u32,
    /// Side of the square center crop.
    pub crop: u32,
    /// Resampling filter.
    pub filter: ResizeFilter,
    /// Per-channel mean (RGB) subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub std: [f32; 3],
}

impl ImagePreprocess {
    fn check(&self) -> Result<(), String> {
        check_resize_crop(self.resize, self.crop)?;
        check_mean_std(&self.mean, &self.std)
    }
}

/// The resize and centre-crop sides of an image-like section: the crop positive and no larger
/// than the resized short side.
pub(crate) fn check_resize_crop(resize: u32, crop: u32) -> Result<(), String> {
    if crop == 0 || resize < crop {
        return Err(format!("crop ({crop}) must be positive and no larger than resize ({resize})"));
    }
    Ok(())
}

/// Normalisation values: every mean finite, every std positive.
pub(crate) fn check_mean_std(mean: &[f32], std: &[f32]) -> Result<(), String> {
    if std.iter().any(|s| !s.is_finite() || *s <= 0.0) || mean.iter().any(|v| !v.is_finite()) {
        return Err("mean must be finite and std positive".into());
    }
    Ok(())
}

/// An encoded image (any format the decoder reads).
#[derive(Debug)]
pub struct EncodedImage(pub Vec<u8>);

impl PayloadValue for EncodedImage {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        part(&self.0);
    }
}

/// An image payload.
pub fn payload(bytes: Vec<u8>) -> Payload {
    Payload::new(Modality::Image, EncodedImage(bytes))
}

fn check(section: &Section<'_>) -> Result<(), String> {
    parse_section::<ImagePreprocess>(section.preprocess)?.check()
}

fn build(section: &Section<'_>, limits: &InputLimits) -> Result<Box<dyn Pipeline>, BuildError> {
    let spec: ImagePreprocess = parse_section(section.preprocess)?;
    spec.check()?;
    let side = spec.crop as usize;
    let preprocessor = ImagePreprocessor::new(&spec, limits.get::<ImageLimits>());
    Ok(Box::new(OneTensor::new(section.input, vec![3, side, side], preprocessor)))
}

const EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "avif", "qoi", "ppm", "pgm", "pbm", "pnm",
    "tga", "ico",
];

fn inputs_from_file(bytes: Vec<u8>, _extension: &str) -> Vec<pb::input::Payload> {
    vec![pb::input::Payload::Image(bytes)]
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::Image(bytes) => Ok(payload(bytes)),
        other => Err(other),
    }
}

impl FillOne for ImagePreprocessor {
    type Value = EncodedImage;

    fn fill(&self, value: &EncodedImage, out: &mut [f32]) -> Result<(), PreprocessError> {
        self.preprocess_into(&value.0, out).map_err(PreprocessError::input)
    }
}
