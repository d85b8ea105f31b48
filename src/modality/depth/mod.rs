//! Depth maps: read as metric depth (16-bit PNG/TIFF in sensor units, NPY in metres) or as an
//! 8-bit grey image, converted as the model's manifest says, resized, centre-cropped and
//! normalised into a `[1, crop, crop]` f32 slot.
//!
//! ImageBind ships no depth loader. Two conversions, one per model (`conversion`):
//! - `disparity`, the training recipe (Omnivore's SUN RGB-D code, facebookresearch/omnivore
//!   issue #12, which ImageBind issues #69 and #134 point to): depth in metres clipped to
//!   `[min_depth_m, max_depth_m]` (0.01 and 50 there), then `baseline_m * focal_px / depth`, as a
//!   float image. Pixels without a measurement (0, negative, NaN, infinite: the sensors' "no
//!   reading") are bindery's rule: disparity 0, as for a point infinitely far away. A map with no
//!   measured pixel is refused.
//! - `grayscale`, Weaviate's multi2vec-bind container: the 8-bit image exactly as its thermal
//!   path (`convert("L")`, bicubic resize, centre crop, one mean and std).
//!
//! The float image is resized as Pillow resizes mode `F` (`tools/bindery_tools/sensors.py` is the
//! reference for both conversions).

mod kind;

use crate::modality::image::gray::{self, GrayImage};
use crate::modality::image::{ImageError, ImageLimits};
use crate::modality::npy::{self, NpyError};

pub use kind::{Conversion, DepthPayload, DepthPreprocess, KIND, payload};

/// Size limits checked before any expensive decoding (the server's `--max-depth-*` flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DepthLimits {
    /// Largest encoded depth map accepted, in bytes.
    #[arg(id = "max_depth_bytes", long = "max-depth-bytes", value_name = "BYTES", default_value_t = DepthLimits::default().max_bytes)]
    pub max_bytes: usize,
    /// Largest depth map accepted, in pixels (decompression-bomb guard).
    #[arg(id = "max_depth_pixels", long = "max-depth-pixels", value_name = "PIXELS", default_value_t = DepthLimits::default().max_pixels)]
    pub max_pixels: u64,
}

impl Default for DepthLimits {
    fn default() -> Self {
        Self { max_bytes: 64 << 20, max_pixels: 64_000_000 }
    }
}

/// Why a depth input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DepthError {
    /// The bytes are not an image bindery reads, or break a limit.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An NPY file that cannot be read.
    #[error("depth map: {0}")]
    Npy(#[from] NpyError),
    /// An NPY array that is not one map.
    #[error("depth map NPY has shape {0}; expected [H, W] (or [1, H, W], [H, W, 1])")]
    Shape(String),
    /// A map of the wrong kind for the model's conversion.
    #[error("{0}")]
    Kind(String),
    /// No pixel holds a measurement.
    #[error("depth map has no valid pixel: all {0} pixels are 0, negative, NaN or infinite")]
    NoValidPixel(usize),
    /// A request parameter that is not a positive finite number.
    #[error("depth {name} must be positive and finite, got {value}")]
    Parameter {
        /// The field.
        name: &'static str,
        /// Its value.
        value: f32,
    },
    /// The output slot has the wrong length.
    #[error("output slot holds {got} values, the depth tensor needs {expected}")]
    OutputSize {
        /// `tensor_len()`.
        expected: usize,
        /// Length of the slice passed in.
        got: usize,
    },
}

/// Metric depth in metres, row-major.
struct MetricMap {
    width: usize,
    height: usize,
    metres: Vec<f32>,
}

/// Prepares depth maps for the depth tower.
pub struct DepthPreprocessor {
    spec: DepthPreprocess,
    limits: ImageLimits,
}

impl DepthPreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits.
    pub fn new(spec: &DepthPreprocess, limits: DepthLimits) -> Self {
        Self {
            spec: spec.clone(),
            limits: ImageLimits { max_bytes: limits.max_bytes, max_pixels: limits.max_pixels },
        }
    }

    /// Number of f32 values one map occupies in the batch tensor (crop * crop).
    pub fn tensor_len(&self) -> usize {
        (self.spec.crop as usize).pow(2)
    }

    /// Reads `depth` and writes the `[1, crop, crop]` tensor into `out`.
    pub fn preprocess_into(&self, depth: &DepthPayload, out: &mut [f32]) -> Result<(), DepthError> {
        if out.len() != self.tensor_len() {
            return Err(DepthError::OutputSize { expected: self.tensor_len(), got: out.len() });
        }
        let spec = &self.spec;
        let plane: Vec<f32> = match spec.conversion {
            Conversion::Grayscale => {
                if npy::is_npy(&depth.data) {
                    return Err(DepthError::Kind(
                        "this model takes 8-bit grey depth images (conversion = \"grayscale\"), not NPY arrays"
                            .into(),
                    ));
                }
                let GrayImage::Eight { width, height, data } = self.decode_image(&depth.data)? else {
                    return Err(DepthError::Kind(
                        "this model takes 8-bit grey depth images (conversion = \"grayscale\"); a 16-bit map \
                         holds metric depth, which it does not convert"
                            .into(),
                    ));
                };
                let plane = gray::resize_crop_l8(width, height, &data, spec.resize, spec.crop, spec.filter);
                // ToTensor divides the byte by 255 in f32.
                plane.into_iter().map(|v| f32::from(v) / 255.0).collect()
            }
            Conversion::Disparity => {
                let map = self.metric(depth)?;
                let baseline = positive("baseline_m", depth.baseline_m, spec.baseline_m)?;
                let focal = positive("focal_px", depth.focal_px, spec.focal_px)?;
                // The product in double, rounded once to f32, as the reference's numpy scalar.
                let bf = (f64::from(baseline) * f64::from(focal)) as f32;
                let mut valid = 0usize;
                let disparity: Vec<f32> = map
                    .metres
                    .iter()
                    .map(|&d| {
                        if d.is_finite() && d > 0.0 {
                            valid += 1;
                            bf / d.clamp(spec.min_depth_m, spec.max_depth_m)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                if valid == 0 {
                    return Err(DepthError::NoValidPixel(map.metres.len()));
                }
                gray::resize_crop_f32(map.width, map.height, disparity, spec.resize, spec.crop, spec.filter)
            }
        };
        for (o, v) in out.iter_mut().zip(plane) {
            *o = (v - spec.mean) / spec.std;
        }
        Ok(())
    }

    fn decode_image(&self, data: &[u8]) -> Result<GrayImage, DepthError> {
        Ok(gray::decode_gray(data, &self.limits)?)
    }

    /// Depth in metres from a 16-bit map (times the depth scale) or an NPY in metres.
    fn metric(&self, depth: &DepthPayload) -> Result<MetricMap, DepthError> {
        if npy::is_npy(&depth.data) {
            if depth.data.len() > self.limits.max_bytes {
                return Err(ImageError::TooManyBytes {
                    size: depth.data.len(),
                    limit: self.limits.max_bytes,
                }
                .into());
            }
            let header = npy::NpyHeader::parse(&depth.data)?;
            let (height, width) = match header.shape[..] {
                [h, w] | [1, h, w] | [h, w, 1] => (h as usize, w as usize),
                _ => return Err(DepthError::Shape(header.shape_text)),
            };
            let pixels = height as u64 * width as u64;
            if pixels > self.limits.max_pixels {
                return Err(ImageError::TooManyPixels {
                    width: width as u32,
                    height: height as u32,
                    pixels,
                    limit: self.limits.max_pixels,
                }
                .into());
            }
            if pixels == 0 {
                return Err(DepthError::Shape(header.shape_text));
            }
            return Ok(MetricMap { width, height, metres: header.values(&depth.data)? });
        }
        match self.decode_image(&depth.data)? {
            GrayImage::Sixteen { width, height, data } => {
                let scale = positive("depth_scale", depth.depth_scale, self.spec.depth_scale)?;
                Ok(MetricMap { width, height, metres: data.iter().map(|&v| f32::from(v) * scale).collect() })
            }
            GrayImage::Eight { .. } => Err(DepthError::Kind(
                "an 8-bit image holds no metric depth; this model converts depth to disparity \
                 (conversion = \"disparity\") and takes a 16-bit PNG/TIFF map or a float NPY in metres"
                    .into(),
            )),
        }
    }
}

/// The request's value of a parameter when set (non-zero), else the model's; positive and finite.
fn positive(name: &'static str, requested: f32, model: f32) -> Result<f32, DepthError> {
    let value = if requested == 0.0 { model } else { requested };
    if value.is_finite() && value > 0.0 { Ok(value) } else { Err(DepthError::Parameter { name, value }) }
}

/// Fuzz target body: any bytes as a depth map under both conversions, with the fixture model's
/// parameters. The output of an accepted input must be finite.
fn fuzz_preprocess(data: &[u8]) {
    let limits = DepthLimits { max_bytes: 1 << 20, max_pixels: 4_000_000 };
    for conversion in [Conversion::Disparity, Conversion::Grayscale] {
        let spec = DepthPreprocess { conversion, ..DepthPreprocess::imagebind() };
        let preprocessor = DepthPreprocessor::new(&spec, limits);
        let mut out = vec![0f32; preprocessor.tensor_len()];
        let payload = DepthPayload { data: data.to_vec(), ..Default::default() };
        if preprocessor.preprocess_into(&payload, &mut out).is_ok() {
            assert!(out.iter().all(|v| v.is_finite()), "depth preprocessing produced a non-finite value");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_map(width: usize, height: usize, metres: &[f32]) -> Vec<u8> {
        let body: Vec<u8> = metres.iter().flat_map(|v| v.to_le_bytes()).collect();
        crate::modality::npy::tests::npy("<f4", false, &format!("({height}, {width})"), &body)
    }

    #[test]
    fn holes_become_zero_disparity_and_a_map_of_holes_is_refused() {
        let spec =
            DepthPreprocess { resize: 2, crop: 2, mean: 0.0, std: 1.0, ..DepthPreprocess::imagebind() };
        let p = DepthPreprocessor::new(&spec, DepthLimits::default());
        let mut out = vec![0.0; 4];
        let payload = |metres: &[f32]| DepthPayload {
            data: npy_map(2, 2, metres),
            baseline_m: 0.5,
            focal_px: 2.0,
            ..Default::default()
        };
        // 2x2 -> 2x2: no resize; 100 m is clipped to 50 m.
        p.preprocess_into(&payload(&[1.0, 0.0, f32::NAN, 100.0]), &mut out).unwrap();
        assert_eq!(out, vec![1.0, 0.0, 0.0, 0.02]);
        let err = p.preprocess_into(&payload(&[0.0, -1.0, f32::INFINITY, f32::NAN]), &mut out).unwrap_err();
        assert!(err.to_string().contains("no valid pixel: all 4 pixels"), "{err}");
    }

    #[test]
    fn request_parameters_must_be_positive() {
        assert_eq!(positive("focal_px", 0.0, 500.0).unwrap(), 500.0);
        assert_eq!(positive("focal_px", 300.0, 500.0).unwrap(), 300.0);
        assert!(
            positive("focal_px", -1.0, 500.0).unwrap_err().to_string().contains("focal_px must be positive")
        );
    }
}
