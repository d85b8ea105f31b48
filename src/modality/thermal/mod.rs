//! Thermal (infrared) images: decode to one channel, resize, centre-crop, normalise into a
//! `[1, crop, crop]` f32 slot.
//!
//! ImageBind ships no thermal loader. The reference is Weaviate's multi2vec-bind inference
//! container (`bind_data.py`), which serves ImageBind's thermal tower: `Image.open`,
//! `convert("L")` unless the image already is `L`, torchvision `Resize(224, BICUBIC)`,
//! `CenterCrop(224)`, `ToTensor()` and `Normalize(0.48145466, 0.26862954)` (Pillow 13,
//! torchvision 0.26). Every step is reproduced exactly, with its parameters from the manifest.
//!
//! A 16-bit grey image (a radiometric frame) is where bindery departs from that recipe, on
//! purpose: `convert("L")` clips its values at 255, turning it white. Its values are instead
//! mapped into [0, 1] (`sixteen_bit = "full_range"`: `v / 65535`; `"min_max"`: the image's own
//! range) and the same resize, crop and normalisation run on the float image (Pillow mode `F`).
//! `tools/bindery_tools/sensors.py` is the reference for both paths.
//!
//! `channels = 3` is LanguageBind's thermal path (`languagebind/thermal/processing_thermal.py`),
//! which is its image path: the image as RGB, resized, cropped and normalised with one mean and
//! std per channel, exactly as the image modality does it (`resize_domain = "tensor"`: after
//! `ToTensor()`, on floats). LanguageBind opens the file without `convert("RGB")`, so its
//! three-value `Normalize` fails on the grey frames thermal cameras write; bindery converts them
//! as Pillow's `convert("RGB")` does (a 16-bit frame clipped to 255 on the way, as Pillow's).

mod kind;

use crate::modality::image::gray::{self, GrayImage};
use crate::modality::image::{
    ImageError, ImageLimits, ImagePreprocess, ImagePreprocessor, PerChannel, ResizeDomain, ResizeMode,
};

pub use kind::{KIND, SixteenBit, ThermalPayload, ThermalPreprocess, payload};

/// Size limits checked before any expensive decoding (the server's `--max-thermal-*` flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ThermalLimits {
    /// Largest encoded thermal image accepted, in bytes.
    #[arg(id = "max_thermal_bytes", long = "max-thermal-bytes", value_name = "BYTES", default_value_t = ThermalLimits::default().max_bytes)]
    pub max_bytes: usize,
    /// Largest decoded thermal image accepted, in pixels (decompression-bomb guard).
    #[arg(id = "max_thermal_pixels", long = "max-thermal-pixels", value_name = "PIXELS", default_value_t = ThermalLimits::default().max_pixels)]
    pub max_pixels: u64,
}

impl Default for ThermalLimits {
    fn default() -> Self {
        Self { max_bytes: 32 << 20, max_pixels: 64_000_000 }
    }
}

/// Why a thermal input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ThermalError {
    /// The bytes are not an image bindery reads, or break a limit (the message is the image
    /// modality's; the input's name and modality come before it).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The output slot has the wrong length.
    #[error("output slot holds {got} values, the thermal tensor needs {expected}")]
    OutputSize {
        /// `tensor_len()`.
        expected: usize,
        /// Length of the slice passed in.
        got: usize,
    },
}

/// Prepares encoded thermal images for the thermal tower.
pub struct ThermalPreprocessor {
    spec: ThermalPreprocess,
    limits: ImageLimits,
    /// One channel's mean and std (0 and 1 without normalisation).
    mean: f32,
    std: f32,
    /// `Normalize(ToTensor(v))` (or `ToTensor(v)` alone) for every 8-bit value.
    lut: Box<[f32; 256]>,
    /// `channels = 3`: the image modality's preprocessor with this section's values.
    rgb: Option<ImagePreprocessor>,
}

impl ThermalPreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits; fails on values
    /// the section's check refuses.
    pub fn new(spec: &ThermalPreprocess, limits: ThermalLimits) -> Result<Self, String> {
        spec.check()?;
        let (means, stds) = spec.mean_std()?;
        let (mean, std) = (means[0], stds[0]);
        let mut lut = Box::new([0f32; 256]);
        for (v, slot) in lut.iter_mut().enumerate() {
            // ToTensor divides the byte by 255 in f32; Normalize subtracts, then divides.
            *slot = (v as f32 / 255.0 - mean) / std;
        }
        let limits = ImageLimits { max_bytes: limits.max_bytes, max_pixels: limits.max_pixels };
        let rgb = match means[..] {
            [m0, m1, m2] => {
                let image = ImagePreprocess {
                    size: None,
                    resize: Some(spec.resize),
                    crop: Some(spec.crop),
                    resize_mode: ResizeMode::Shortest,
                    filter: spec.filter,
                    mean: [m0, m1, m2],
                    std: [stds[0], stds[1], stds[2]],
                    fill_color: 0,
                    resize_domain: spec.resize_domain,
                };
                Some(ImagePreprocessor::new(&image, limits)?)
            }
            _ => None,
        };
        Ok(Self { spec: spec.clone(), limits, mean, std, lut, rgb })
    }

    /// Number of f32 values one image occupies in the batch tensor (channels * crop * crop).
    pub fn tensor_len(&self) -> usize {
        self.spec.channels as usize * (self.spec.crop as usize).pow(2)
    }

    /// Decodes `bytes` and writes the `[1, crop, crop]` tensor into `out`.
    pub fn preprocess_into(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), ThermalError> {
        if out.len() != self.tensor_len() {
            return Err(ThermalError::OutputSize { expected: self.tensor_len(), got: out.len() });
        }
        if let Some(rgb) = &self.rgb {
            return Ok(rgb.preprocess_into(bytes, out)?);
        }
        let spec = &self.spec;
        let floats = |width, height, values| {
            gray::resize_crop_f32(
                width,
                height,
                values,
                (spec.resize, spec.crop),
                spec.filter,
                spec.resize_domain,
            )
        };
        let plane = match gray::decode_gray(bytes, &self.limits)? {
            GrayImage::Eight { width, height, data } if spec.resize_domain == ResizeDomain::Pil => {
                let plane = gray::resize_crop_l8(width, height, &data, spec.resize, spec.crop, spec.filter);
                for (o, v) in out.iter_mut().zip(plane) {
                    *o = self.lut[usize::from(v)];
                }
                return Ok(());
            }
            // ToTensor first: the byte over 255 in f32, resized as a float.
            GrayImage::Eight { width, height, data } => {
                floats(width, height, data.iter().map(|&v| f32::from(v) / 255.0).collect())
            }
            GrayImage::Sixteen { width, height, data } => {
                floats(width, height, spec.sixteen_bit.unwrap_or(SixteenBit::FullRange).to_unit(&data))
            }
        };
        for (o, v) in out.iter_mut().zip(plane) {
            *o = (v - self.mean) / self.std;
        }
        Ok(())
    }
}

/// Fuzz target body: any bytes through thermal preprocessing with the fixture models'
/// parameters (ImageBind's grey plane, LanguageBind's RGB resized as a tensor). The output of an
/// accepted input must be finite.
fn fuzz_preprocess(data: &[u8]) {
    let limits = ThermalLimits { max_bytes: 1 << 20, max_pixels: 4_000_000 };
    let rgb = ThermalPreprocess {
        channels: 3,
        // OpenAI's values as LanguageBind writes them, rounded to f32 as the manifest's are.
        mean: PerChannel::Each([0.481_454_66_f64, 0.457_827_5, 0.408_210_73].map(|v| v as f32).to_vec()),
        std: PerChannel::Each([0.268_629_54_f64, 0.261_302_58, 0.275_777_11].map(|v| v as f32).to_vec()),
        sixteen_bit: None,
        resize_domain: ResizeDomain::Tensor,
        ..ThermalPreprocess::imagebind()
    };
    for spec in [ThermalPreprocess::imagebind(), rgb] {
        let preprocessor =
            ThermalPreprocessor::new(&spec, limits).expect("the fixture's thermal values are valid");
        let mut out = vec![0f32; preprocessor.tensor_len()];
        if preprocessor.preprocess_into(data, &mut out).is_ok() {
            assert!(out.iter().all(|v| v.is_finite()), "thermal preprocessing produced a non-finite value");
        }
    }
}
