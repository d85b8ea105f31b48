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

/// Resampling filter used to scale images (open_clip's `interpolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    /// PIL `BICUBIC` (a = -0.5), antialiased.
    Bicubic,
    /// PIL `BILINEAR`, antialiased.
    Bilinear,
}

/// How the image is brought to the tower's square (open_clip's `resize_mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// torchvision `Resize(resize)` (short side) then `CenterCrop(crop)`, zero-padded where the
    /// crop is larger.
    #[default]
    Shortest,
    /// open_clip's `ResizeKeepRatio(longest=1)` (long side to `size`) then `CenterCropOrPad`
    /// with `fill_color`.
    Longest,
    /// torchvision `Resize((size, size))`: both sides to `size`, the aspect ratio not kept.
    Squash,
}

/// Where the resize and crop run: on the decoded 8-bit image or on the float tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeDomain {
    /// Pillow resizes the 8-bit image (rounding each pass to 8 bits), then `ToTensor()`: the
    /// order of ImageBind's and open_clip's transforms.
    #[default]
    Pil,
    /// `ToTensor()` first, then torchvision's `Resize(antialias=True)` and `CenterCrop` on the
    /// float tensor, no rounding between the passes: LanguageBind's order.
    Tensor,
}

/// Normalisation values of an image-like section: one number for every channel, or a list with
/// one per channel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, expecting = "mean and std take a number or a list of numbers")]
pub enum PerChannel {
    /// The same value for every channel.
    One(f32),
    /// One value per channel, in channel order.
    Each(Vec<f32>),
}

impl PerChannel {
    /// The values for `channels` channels; the error names `field` when a list has another length.
    pub fn for_channels(&self, field: &str, channels: usize) -> Result<Vec<f32>, String> {
        match self {
            PerChannel::One(v) => Ok(vec![*v; channels]),
            PerChannel::Each(v) if v.len() == channels => Ok(v.clone()),
            PerChannel::Each(v) => Err(format!(
                "{field} has {} values for {channels} channel(s): give one, or one per channel",
                v.len()
            )),
        }
    }
}

/// The channel count of a grey modality's tensor: 1 (the grey plane) or 3 (it repeated, as
/// towers trained on RGB take it); the error names the field.
pub(crate) fn check_channels(channels: u32) -> Result<usize, String> {
    match channels {
        1 | 3 => Ok(channels as usize),
        other => Err(format!("channels must be 1 or 3, got {other}")),
    }
}

/// Image preprocessing (`[image.preprocess]`): resize, crop or pad, normalise (CHW, f32).
///
/// The side is either `size` (open_clip's name: resize and crop alike) or `resize` and `crop`
/// (short side and crop, which may differ in `shortest` mode).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePreprocess {
    /// Side of the square the tower takes, for `resize` and `crop` alike.
    #[serde(default)]
    pub size: Option<u32>,
    /// The short side is resized to this many pixels (`shortest` only).
    #[serde(default)]
    pub resize: Option<u32>,
    /// Side of the square center crop.
    #[serde(default)]
    pub crop: Option<u32>,
    /// How the image is brought to the square (default `shortest`).
    #[serde(default)]
    pub resize_mode: ResizeMode,
    /// Resampling filter (open_clip's `interpolation`; `filter`, the name of the grey
    /// modalities' field, is accepted too).
    #[serde(rename = "interpolation", alias = "filter")]
    pub filter: ResizeFilter,
    /// Per-channel mean (RGB) subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB).
    pub std: [f32; 3],
    /// 8-bit value of the padding `longest` adds around the image (open_clip's `fill_color`).
    #[serde(default)]
    pub fill_color: u8,
    /// Whether the resize runs on the 8-bit image (`pil`, the default) or on the float tensor
    /// (`tensor`).
    #[serde(default)]
    pub resize_domain: ResizeDomain,
}

impl ImagePreprocess {
    fn check(&self) -> Result<(), String> {
        let (resize, crop) = self.sides()?;
        check_resize_crop(resize, crop)?;
        if self.resize_mode != ResizeMode::Shortest && resize != crop {
            return Err(format!(
                "resize_mode {:?} brings the image to one square: give size, not resize ({resize}) and crop ({crop})",
                self.resize_mode
            ));
        }
        if self.fill_color != 0 && self.resize_mode != ResizeMode::Longest {
            return Err("fill_color is only used by resize_mode \"longest\"".into());
        }
        if self.resize_domain == ResizeDomain::Tensor && self.resize_mode == ResizeMode::Longest {
            // open_clip pads 8-bit images to the square; no reference pads a float tensor.
            return Err(
                "resize_domain \"tensor\" takes resize_mode \"shortest\" or \"squash\", not \"longest\""
                    .into(),
            );
        }
        check_mean_std(&self.mean, &self.std)
    }

    /// The resize and crop sides: `size` for both, or `resize` and `crop`.
    pub(crate) fn sides(&self) -> Result<(u32, u32), String> {
        match (self.size, self.resize, self.crop) {
            (Some(size), None, None) => Ok((size, size)),
            (None, Some(resize), Some(crop)) => Ok((resize, crop)),
            _ => Err("give either size, or resize and crop".into()),
        }
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
    let side = spec.sides()?.1 as usize;
    let preprocessor = ImagePreprocessor::new(&spec, limits.get::<ImageLimits>())?;
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
