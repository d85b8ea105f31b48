//! Images: decode, convert to RGB like PIL, resize like PIL, center crop or pad like
//! torchvision, normalise into a CHW f32 slot.
//!
//! The reference is ImageBind's `load_and_transform_vision_data` and open_clip's
//! `image_transform_v2` (inference): `Image.open(f).convert("RGB")`, then by `resize_mode`
//! torchvision `Resize(resize)` + `CenterCrop(crop)` (`shortest`), open_clip's
//! `ResizeKeepRatio(longest=1)` + `CenterCropOrPad(fill_color)` (`longest`) or
//! `Resize((size, size))` (`squash`), with PIL `BICUBIC` or `BILINEAR`, then `ToTensor()` and
//! `Normalize(mean, std)` (Pillow 13, torchvision 0.26, open_clip 3.3). Every step is
//! reproduced exactly: decoding and mode conversion in `decode.rs`, the resize in
//! `resample.rs`, crop, padding and normalisation here.
//!
//! `resize_domain = "tensor"` is LanguageBind's order (`languagebind/image/processing_image.py`):
//! `ToTensor()` first, then torchvision `Resize(resize, BICUBIC)` on the float tensor (torch's
//! antialiased resize, each channel as `torch_resize.rs` computes it), `CenterCrop` and
//! `Normalize`. LanguageBind opens the image without `convert("RGB")` and fails on grey,
//! palette and RGBA images; bindery converts them to RGB as on the `pil` path.

mod avif;
mod decode;
pub mod formats;
mod gif;
pub mod gray;
mod jpeg;
mod kind;
mod pil;
mod resample;
mod torch_resize;
mod yuv;

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use kind::{
    EncodedImage, ImagePreprocess, KIND, PerChannel, ResizeDomain, ResizeFilter, ResizeMode, payload,
};
pub(crate) use kind::{check_channels, check_mean_std, check_resize_crop};
use resample::{PlaneF32, Rgb8};

/// Size limits checked before any expensive decoding (the server's `--max-image-*` flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ImageLimits {
    /// Largest encoded image accepted, in bytes.
    #[arg(id = "max_image_bytes", long = "max-image-bytes", value_name = "BYTES", default_value_t = ImageLimits::default().max_bytes)]
    pub max_bytes: usize,
    /// Largest decoded image accepted, in pixels (decompression-bomb guard).
    #[arg(id = "max_image_pixels", long = "max-image-pixels", value_name = "PIXELS", default_value_t = ImageLimits::default().max_pixels)]
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self { max_bytes: 32 << 20, max_pixels: 64_000_000 }
    }
}

/// Why an image input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Zero-length payload.
    #[error("image is empty (0 bytes)")]
    Empty,
    /// Payload larger than the configured byte limit.
    #[error("image is {size} bytes, more than the limit of {limit} bytes")]
    TooManyBytes {
        /// Payload size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Declared dimensions exceed the pixel limit.
    #[error("image is {width}x{height} = {pixels} pixels, more than the limit of {limit} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// width * height.
        pixels: u64,
        /// Configured limit.
        limit: u64,
    },
    /// Bytes are not an image in a supported format, or are corrupt.
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// A format the reference (Pillow) opens that bindery does not decode.
    #[error("{format} images are not supported")]
    UnsupportedFormat {
        /// Pillow's name of the format (`PIL.Image.OPEN`).
        format: &'static str,
    },
    /// A layout of a decoded format that bindery does not decode (e.g. YCbCr TIFF).
    #[error("{format} images with {layout} are not supported")]
    UnsupportedLayout {
        /// Pillow's name of the format.
        format: &'static str,
        /// What in the file is not supported.
        layout: &'static str,
    },
    /// `longest` would scale a side of the image to nothing (as the reference, which fails).
    #[error("a {width}x{height} image is too thin to fit a {side}x{side} square with its aspect ratio kept")]
    TooThin {
        /// Image width.
        width: usize,
        /// Image height.
        height: usize,
        /// The square's side.
        side: u32,
    },
    /// The output slot passed to [`ImagePreprocessor::preprocess_into`] has the wrong length.
    #[error("output slot holds {got} values, the image tensor needs {expected}")]
    OutputSize {
        /// `tensor_len()`.
        expected: usize,
        /// Length of the slice passed in.
        got: usize,
    },
}

/// Bytes of decoder working memory allowed per pixel (16-bit RGBA is the widest layout we
/// decode), on top of a fixed allowance for tables and line buffers.
const ALLOC_PER_PIXEL: u64 = 8;
const ALLOC_SLACK: u64 = 64 << 20;

/// Prepares encoded images for the vision tower.
pub struct ImagePreprocessor {
    mode: ResizeMode,
    filter: ResizeFilter,
    /// Short side after the resize (`shortest`), or the square's side.
    resize: u32,
    /// Side of the output square.
    crop: u32,
    /// 8-bit value padding takes: `fill_color` in `longest` mode; torchvision's `CenterCrop`
    /// pads with 0.
    fill: u8,
    limits: ImageLimits,
    domain: ResizeDomain,
    mean: [f32; 3],
    std: [f32; 3],
    /// `Normalize(ToTensor(v))` for every 8-bit value, per channel.
    lut: Box<[[f32; 256]; 3]>,
}

impl ImagePreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits; fails on a
    /// section whose sides are not given as `size`, or `resize` and `crop`.
    pub fn new(spec: &ImagePreprocess, limits: ImageLimits) -> Result<Self, String> {
        let (resize, crop) = spec.sides()?;
        let mut lut = Box::new([[0f32; 256]; 3]);
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                // ToTensor: `byte_tensor.to(float32).div(255)`; Normalize: `sub_(mean).div_(std)`,
                // all in f32 and in this order.
                *slot = (v as f32 / 255.0 - spec.mean[c]) / spec.std[c];
            }
        }
        let fill = if spec.resize_mode == ResizeMode::Longest { spec.fill_color } else { 0 };
        Ok(Self {
            mode: spec.resize_mode,
            filter: spec.filter,
            resize,
            crop,
            fill,
            limits,
            domain: spec.resize_domain,
            mean: spec.mean,
            std: spec.std,
            lut,
        })
    }

    /// Number of f32 values one image occupies in the batch tensor (3 * crop * crop).
    pub fn tensor_len(&self) -> usize {
        3 * (self.crop as usize) * (self.crop as usize)
    }

    /// Decodes `bytes` and writes the normalised CHW tensor into `out` (length `tensor_len()`).
    pub fn preprocess_into(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), ImageError> {
        if out.len() != self.tensor_len() {
            return Err(ImageError::OutputSize { expected: self.tensor_len(), got: out.len() });
        }
        guarded(bytes, &self.limits, |max_alloc, check| {
            let img = decode::decode_rgb(bytes, max_alloc, check)?;
            self.run(&img, out)
        })
    }

    /// The resized size of a `w x h` image, as the reference's resize step computes it.
    fn resized(&self, w: usize, h: usize) -> Result<(u64, u64), ImageError> {
        let side = u64::from(self.crop);
        match self.mode {
            ResizeMode::Shortest => Ok(resized_size(w as u64, h as u64, self.resize)),
            ResizeMode::Squash => Ok((side, side)),
            ResizeMode::Longest => {
                let (w, h) = (w as u64, h as u64);
                let (new_w, new_h) = longest_size(w, h, self.crop);
                if new_w == 0 || new_h == 0 {
                    return Err(ImageError::TooThin {
                        width: w as usize,
                        height: h as usize,
                        side: self.crop,
                    });
                }
                Ok((new_w, new_h))
            }
        }
    }

    fn run(&self, img: &Rgb8, out: &mut [f32]) -> Result<(), ImageError> {
        if self.domain == ResizeDomain::Tensor {
            return self.run_tensor(img, out);
        }
        let (out_w, out_h) = self.resized(img.width, img.height)?;
        let crop = u64::from(self.crop);
        let (cols, pad_x) = crop_window(out_w, crop);
        let (rows, pad_y) = crop_window(out_h, crop);
        let win = resample::resize_window(img, out_w, out_h, cols, rows, self.filter);

        let crop = crop as usize;
        let plane = crop * crop;
        for (c, (dst, lut)) in out.chunks_exact_mut(plane).zip(self.lut.iter()).enumerate() {
            // Where the image is smaller than the square, the padding's value.
            dst.fill(lut[usize::from(self.fill)]);
            for y in 0..win.height {
                let src = &win.data[y * win.width * 3..(y + 1) * win.width * 3];
                let row = (y + pad_y) * crop + pad_x;
                for (d, px) in dst[row..row + win.width].iter_mut().zip(src.chunks_exact(3)) {
                    *d = lut[usize::from(px[c])];
                }
            }
        }
        Ok(())
    }

    /// `ToTensor`, then the resize and crop on each float channel, then `Normalize`.
    fn run_tensor(&self, img: &Rgb8, out: &mut [f32]) -> Result<(), ImageError> {
        let (out_w, out_h) = self.resized(img.width, img.height)?;
        let crop = u64::from(self.crop);
        let (cols, pad_x) = crop_window(out_w, crop);
        let (rows, pad_y) = crop_window(out_h, crop);
        let crop = crop as usize;
        for (c, dst) in out.chunks_exact_mut(crop * crop).enumerate() {
            // ToTensor: the byte to f32, divided by 255.
            let data = img.data.iter().skip(c).step_by(3).map(|&v| f32::from(v) / 255.0).collect();
            let plane = PlaneF32 { width: img.width, height: img.height, data };
            let win =
                torch_resize::resize_window(&plane, out_w, out_h, cols.clone(), rows.clone(), self.filter);
            let (mean, std) = (self.mean[c], self.std[c]);
            // CenterCrop pads the tensor with 0 before Normalize.
            dst.fill((0.0 - mean) / std);
            for (y, src) in win.data.chunks_exact(win.width).enumerate() {
                let row = (y + pad_y) * crop + pad_x;
                for (d, &v) in dst[row..row + win.width].iter_mut().zip(src) {
                    *d = (v - mean) / std;
                }
            }
        }
        Ok(())
    }
}

/// open_clip's `ResizeKeepRatio.get_params` with `longest=1` and no random scaling: both sides
/// divided by the larger of the two ratios `side / target` and rounded half to even (Python's
/// `round`). Returns (w, h).
fn longest_size(w: u64, h: u64, target: u32) -> (u64, u64) {
    let target = f64::from(target);
    let (ratio_h, ratio_w) = (h as f64 / target, w as f64 / target);
    // `max * longest + min * (1 - longest)` with longest = 1: the maximum, exactly.
    let ratio = ratio_h.max(ratio_w) * 1.0 + ratio_h.min(ratio_w) * 0.0;
    let side = |x: u64| (x as f64 / ratio).round_ties_even() as u64;
    (side(w), side(h))
}

/// A decoded image as 8-bit RGB, before any resize.
#[derive(Debug, Clone)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` samples, row-major, RGB.
    pub data: Vec<u8>,
}

/// Decodes `bytes` under `limits` to the pixels of the reference's
/// `Image.open(f).convert("RGB")`, before any resize.
pub fn decode_rgb(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, ImageError> {
    guarded(bytes, limits, |max_alloc, check| {
        let Rgb8 { width, height, data } = decode::decode_rgb(bytes, max_alloc, check)?;
        Ok(RgbImage { width, height, data })
    })
}

/// Checks `bytes` against `limits`, then runs `decode(max_alloc, check_size)` with panics inside
/// decoders reported as decode errors: decoders are fed untrusted bytes and some can panic on
/// malformed input, which must not take the worker down.
fn guarded<T>(
    bytes: &[u8],
    limits: &ImageLimits,
    decode: impl FnOnce(u64, &dyn Fn(u32, u32) -> Result<(), ImageError>) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooManyBytes { size: bytes.len(), limit: limits.max_bytes });
    }
    let max_alloc = limits.max_pixels.saturating_mul(ALLOC_PER_PIXEL).saturating_add(ALLOC_SLACK);
    let check = |width: u32, height: u32| {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > limits.max_pixels {
            return Err(ImageError::TooManyPixels { width, height, pixels, limit: limits.max_pixels });
        }
        if pixels == 0 {
            return Err(ImageError::Decode(format!("image has no pixels ({width}x{height})")));
        }
        Ok(())
    };
    catch_unwind(AssertUnwindSafe(|| decode(max_alloc, &check))).unwrap_or_else(|payload| {
        let reason = crate::shared::panic::message(&*payload).unwrap_or("decoder panicked");
        Err(ImageError::Decode(reason.to_string()))
    })
}

/// torchvision `Resize(size)` with an int size (`_compute_resized_output_size`): the short side
/// becomes `size`, the long side `int(size * long / short)` (truncated). Returns (w, h).
pub(crate) fn resized_size(w: u64, h: u64, size: u32) -> (u64, u64) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_short = u64::from(size);
    // Python divides the exact integer product in double precision, as this does for any
    // size below 2^53.
    let new_long = (new_short as f64 * long as f64 / short as f64) as u64;
    if w <= h { (new_short, new_long) } else { (new_long, new_short) }
}

/// torchvision `CenterCrop` along one axis of length `len`: the kept input range and the
/// zero padding before it in the output.
pub(crate) fn crop_window(len: u64, crop: u64) -> (Range<u64>, usize) {
    if crop > len {
        // Pads (crop - len) // 2 before; the padded axis is then exactly `crop` long.
        (0..len, ((crop - len) / 2) as usize)
    } else {
        let start = round_half_even_half(len - crop);
        (start..start + crop, 0)
    }
}

/// `int(round(d / 2.0))` with Python's round-half-to-even.
fn round_half_even_half(d: u64) -> u64 {
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 { half + 1 } else { half }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_size_truncates_the_long_side() {
        assert_eq!(resized_size(640, 480, 224), (298, 224));
        assert_eq!(resized_size(480, 640, 224), (224, 298));
        assert_eq!(resized_size(1000, 333, 224), (672, 224));
        assert_eq!(resized_size(50, 50, 224), (224, 224));
        assert_eq!(resized_size(1, 3, 224), (224, 672));
    }

    /// Values of open_clip's `ResizeKeepRatio.get_params(img, (t, t), longest=1)` (Python 3.11).
    #[test]
    fn longest_side_sizes_round_half_to_even_like_python() {
        assert_eq!(longest_size(500, 300, 224), (224, 134)); // round(134.4)
        assert_eq!(longest_size(300, 500, 224), (134, 224));
        assert_eq!(longest_size(4, 3, 2), (2, 2)); // round(1.5) == 2
        assert_eq!(longest_size(4, 1, 2), (2, 0)); // round(0.5) == 0: too thin, refused
        assert_eq!(longest_size(5000, 200, 224), (224, 9)); // round(8.96)
        assert_eq!(longest_size(100, 100, 224), (224, 224));
    }

    #[test]
    fn center_crop_offset_rounds_half_to_even() {
        assert_eq!(round_half_even_half(0), 0);
        assert_eq!(round_half_even_half(1), 0); // round(0.5) == 0
        assert_eq!(round_half_even_half(3), 2); // round(1.5) == 2
        assert_eq!(round_half_even_half(5), 2); // round(2.5) == 2
        assert_eq!(round_half_even_half(74), 37);
        assert_eq!(crop_window(298, 224), (37..261, 0));
        assert_eq!(crop_window(200, 224), (0..200, 12));
    }
}
