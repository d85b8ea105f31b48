//! Depth maps: read as metric depth (16-bit PNG/TIFF in sensor units, NPY in metres) or as an
//! 8-bit grey image, converted as the model's manifest says, resized, centre-cropped and
//! normalised into a `[channels, crop, crop]` f32 slot.
//!
//! ImageBind ships no depth loader. Three conversions, one per model (`conversion`):
//! - `disparity`, the training recipe (Omnivore's SUN RGB-D code, facebookresearch/omnivore
//!   issue #12, which ImageBind issues #69 and #134 point to): depth in metres clipped to
//!   `[min_depth_m, max_depth_m]` (0.01 and 50 there), then `baseline_m * focal_px / depth`, as a
//!   float image. Pixels without a measurement (0, negative, NaN, infinite: the sensors' "no
//!   reading") are bindery's rule: disparity 0, as for a point infinitely far away. A map with no
//!   measured pixel is refused.
//! - `grayscale`, Weaviate's multi2vec-bind container: the 8-bit image exactly as its thermal
//!   path (`convert("L")`, bicubic resize, centre crop, one mean and std).
//! - `normalized`, LanguageBind's `DepthNorm` (`languagebind/depth/processing_depth.py`):
//!   `cv2.imread(IMREAD_UNCHANGED)` as float32, divided by 1000 (`depth_scale = 0.001`), clipped
//!   below at `min_depth_m`, then clipped above at and divided by `max_depth_m`, or divided by the
//!   map's own maximum where `max_depth_m = 0`; repeated to `channels = 3`, resized on the float
//!   tensor (`resize_domain = "tensor"`), centre-cropped and normalised per channel. A pixel
//!   without a reading (0) clips to `min_depth_m`, as in the reference. Where the reference
//!   stops, bindery's rules: an NPY map is taken in metres, its NaN and infinite values clip to
//!   `min_depth_m` like a 0, and an 8-bit image is taken as its grey values in sensor units (what
//!   `cv2` reads from a grey file; the reference fails on colour files).
//!
//! `resize_domain = "pil"` resizes the float image as Pillow resizes mode `F`
//! (`tools/bindery_tools/sensors.py` is the reference for the first two conversions).

mod kind;

use crate::modality::image::gray::{self, GrayImage};
use crate::modality::image::{ImageError, ImageLimits, ResizeDomain};
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

/// A depth map as read, row-major: metres (NPY) or sensor units (16-bit or 8-bit image).
struct DepthValues {
    width: usize,
    height: usize,
    values: Vec<f32>,
    unit: Unit,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// An NPY array, in metres.
    Metres,
    /// A 16-bit grey image, in units of `depth_scale` metres.
    Sensor16,
    /// An 8-bit image's grey values, in units of `depth_scale` metres.
    Sensor8,
}

/// Prepares depth maps for the depth tower.
pub struct DepthPreprocessor {
    spec: DepthPreprocess,
    limits: ImageLimits,
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl DepthPreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits; fails on values
    /// the section's check refuses.
    pub fn new(spec: &DepthPreprocess, limits: DepthLimits) -> Result<Self, String> {
        spec.check()?;
        let (mean, std) = spec.mean_std()?;
        Ok(Self {
            spec: spec.clone(),
            limits: ImageLimits { max_bytes: limits.max_bytes, max_pixels: limits.max_pixels },
            mean,
            std,
        })
    }

    /// Number of f32 values one map occupies in the batch tensor (channels * crop * crop).
    pub fn tensor_len(&self) -> usize {
        self.spec.channels as usize * (self.spec.crop as usize).pow(2)
    }

    /// Reads `depth` and writes the `[channels, crop, crop]` tensor into `out`.
    pub fn preprocess_into(&self, depth: &DepthPayload, out: &mut [f32]) -> Result<(), DepthError> {
        if out.len() != self.tensor_len() {
            return Err(DepthError::OutputSize { expected: self.tensor_len(), got: out.len() });
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
                // ToTensor divides the byte by 255 in f32, after the resize (`pil`) or before it.
                match spec.resize_domain {
                    ResizeDomain::Pil => {
                        let plane =
                            gray::resize_crop_l8(width, height, &data, spec.resize, spec.crop, spec.filter);
                        plane.into_iter().map(|v| f32::from(v) / 255.0).collect()
                    }
                    ResizeDomain::Tensor => {
                        floats(width, height, data.iter().map(|&v| f32::from(v) / 255.0).collect())
                    }
                }
            }
            Conversion::Disparity => {
                let map = self.read(depth)?;
                if map.unit == Unit::Sensor8 {
                    return Err(DepthError::Kind(
                        "an 8-bit image holds no metric depth; this model converts depth to disparity \
                         (conversion = \"disparity\") and takes a 16-bit PNG/TIFF map or a float NPY in metres"
                            .into(),
                    ));
                }
                let baseline = positive("baseline_m", depth.baseline_m, spec.baseline_m)?;
                let focal = positive("focal_px", depth.focal_px, spec.focal_px)?;
                let scale = self.scale(depth, &map)?;
                // The product in double, rounded once to f32, as the reference's numpy scalar.
                let bf = (f64::from(baseline) * f64::from(focal)) as f32;
                let mut valid = 0usize;
                let disparity: Vec<f32> = map
                    .values
                    .iter()
                    .map(|&v| if map.unit == Unit::Metres { v } else { v * scale })
                    .map(|d| {
                        if d.is_finite() && d > 0.0 {
                            valid += 1;
                            bf / d.clamp(spec.min_depth_m, spec.max_depth_m)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                if valid == 0 {
                    return Err(DepthError::NoValidPixel(map.values.len()));
                }
                floats(map.width, map.height, disparity)
            }
            Conversion::Normalized => {
                let map = self.read(depth)?;
                let scale = self.scale(depth, &map)?;
                floats(map.width, map.height, self.normalized(&map, scale))
            }
        };
        let side = plane.len();
        for ((dst, mean), std) in out.chunks_exact_mut(side).zip(&self.mean).zip(&self.std) {
            for (o, &v) in dst.iter_mut().zip(&plane) {
                *o = (v - mean) / std;
            }
        }
        Ok(())
    }

    /// LanguageBind's `DepthNorm` in f32 as numpy runs it: sensor units divided by units per
    /// metre (`image / 1000.0`), clipped below at `min_depth_m`, then clipped above at and
    /// divided by `max_depth_m`, or divided by the map's maximum when that is 0. A pixel without
    /// a reading is 0, and clips to `min_depth_m` like the reference's; bindery's rule for the
    /// NaN and infinite values an NPY can hold (the reference reads images only) is the same.
    fn normalized(&self, map: &DepthValues, scale: f32) -> Vec<f32> {
        let spec = &self.spec;
        // `1000.0` from `depth_scale = 0.001`: the reciprocal rounded to f32, then divided by,
        // as the reference divides.
        let per_metre = (1.0 / f64::from(scale)) as f32;
        let min = spec.min_depth_m;
        let mut metres: Vec<f32> = map
            .values
            .iter()
            .map(|&v| if map.unit == Unit::Metres { v } else { v / per_metre })
            .map(|d| if d.is_finite() { d.max(min) } else { min })
            .collect();
        if spec.max_depth_m > 0.0 {
            let max = spec.max_depth_m;
            metres.iter_mut().for_each(|d| *d = d.min(max) / max);
        } else {
            // Every value is at least `min_depth_m` > 0, so the maximum is positive.
            let max = metres.iter().copied().fold(min, f32::max);
            metres.iter_mut().for_each(|d| *d /= max);
        }
        metres
    }

    /// Metres per sensor unit: the request's `depth_scale` or the model's (an NPY is in metres
    /// already and takes none).
    fn scale(&self, depth: &DepthPayload, map: &DepthValues) -> Result<f32, DepthError> {
        if map.unit == Unit::Metres {
            Ok(1.0)
        } else {
            positive("depth_scale", depth.depth_scale, self.spec.depth_scale)
        }
    }

    fn decode_image(&self, data: &[u8]) -> Result<GrayImage, DepthError> {
        Ok(gray::decode_gray(data, &self.limits)?)
    }

    /// The map's values: an NPY in metres, or an image's grey values in sensor units.
    fn read(&self, depth: &DepthPayload) -> Result<DepthValues, DepthError> {
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
            let values = header.values(&depth.data)?;
            return Ok(DepthValues { width, height, values, unit: Unit::Metres });
        }
        Ok(match self.decode_image(&depth.data)? {
            GrayImage::Sixteen { width, height, data } => DepthValues {
                width,
                height,
                values: data.iter().map(|&v| f32::from(v)).collect(),
                unit: Unit::Sensor16,
            },
            GrayImage::Eight { width, height, data } => DepthValues {
                width,
                height,
                values: data.iter().map(|&v| f32::from(v)).collect(),
                unit: Unit::Sensor8,
            },
        })
    }
}

/// The request's value of a parameter when set (non-zero), else the model's; positive and finite.
fn positive(name: &'static str, requested: f32, model: f32) -> Result<f32, DepthError> {
    let value = if requested == 0.0 { model } else { requested };
    if value.is_finite() && value > 0.0 { Ok(value) } else { Err(DepthError::Parameter { name, value }) }
}

/// Fuzz target body: any bytes as a depth map under every conversion, with the fixture models'
/// parameters (`normalized`: LanguageBind's, three channels resized as a tensor, `max_depth_m`
/// 0 so the map's own maximum divides). The output of an accepted input must be finite.
fn fuzz_preprocess(data: &[u8]) {
    let limits = DepthLimits { max_bytes: 1 << 20, max_pixels: 4_000_000 };
    let specs = [
        DepthPreprocess::imagebind(),
        DepthPreprocess { conversion: Conversion::Grayscale, ..DepthPreprocess::imagebind() },
        DepthPreprocess {
            conversion: Conversion::Normalized,
            channels: 3,
            resize_domain: ResizeDomain::Tensor,
            max_depth_m: 0.0,
            ..DepthPreprocess::imagebind()
        },
    ];
    for spec in specs {
        let preprocessor =
            DepthPreprocessor::new(&spec, limits).expect("the fixture's depth values are valid");
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
        let spec = DepthPreprocess { resize: 2, crop: 2, ..DepthPreprocess::imagebind() };
        let p = DepthPreprocessor::new(&spec, DepthLimits::default()).unwrap();
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

    /// bindery's rules where LanguageBind's `DepthNorm` reads no NPY: metres as they are, NaN,
    /// infinite and negative values clipped to `min_depth_m` like a 0; then divided by
    /// `max_depth_m` (clipped there), or by the map's maximum when that is 0; three channels
    /// normalised each with its own mean and std.
    #[test]
    fn normalized_clips_then_divides_by_the_maximum() {
        let metres = [0.5, f32::NAN, 20.0, -1.0];
        let spec = |max_depth_m| DepthPreprocess {
            conversion: Conversion::Normalized,
            resize: 2,
            crop: 2,
            channels: 3,
            mean: crate::modality::image::PerChannel::Each(vec![0.0, 1.0, 0.0]),
            std: crate::modality::image::PerChannel::Each(vec![1.0, 1.0, 2.0]),
            max_depth_m,
            ..DepthPreprocess::imagebind()
        };
        let payload = DepthPayload { data: npy_map(2, 2, &metres), ..Default::default() };
        let mut out = vec![0.0; 12];
        // 2x2 -> 2x2: no resize.
        DepthPreprocessor::new(&spec(10.0), DepthLimits::default())
            .unwrap()
            .preprocess_into(&payload, &mut out)
            .unwrap();
        let plane = [0.5 / 10.0, 0.01 / 10.0, 1.0, 0.01 / 10.0];
        assert_eq!(out[..4], plane);
        assert_eq!(out[4..8], plane.map(|v| v - 1.0));
        assert_eq!(out[8..], plane.map(|v| v / 2.0));
        DepthPreprocessor::new(&spec(0.0), DepthLimits::default())
            .unwrap()
            .preprocess_into(&payload, &mut out)
            .unwrap();
        assert_eq!(out[..4], [0.5 / 20.0, 0.01 / 20.0, 1.0, 0.01 / 20.0]);
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
