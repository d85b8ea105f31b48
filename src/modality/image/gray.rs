//! Single-channel images, for the modalities that take them (thermal, depth): decoded with the
//! image modality's Pillow-exact decoders, brought to one channel the way Pillow's
//! `convert("L")` does, and resized (Pillow) and centre-cropped (torchvision) as 8-bit (`L`) or
//! float (`F`) planes.
//!
//! A 16-bit grey PNG or TIFF (Pillow's `I;16`) is kept at 16 bits: `convert("L")` would clip
//! every value above 255, which turns a depth map in millimetres or a radiometric thermal frame
//! into a white image, so the modality decides how to map the values.

use super::resample::{self, PlaneF32, Rgb8};
use super::{
    ImageError, ImageLimits, ResizeDomain, ResizeFilter, crop_window, decode, guarded, resized_size,
    torch_resize,
};

/// A decoded single-channel image.
#[derive(Debug, Clone)]
pub enum GrayImage {
    /// 8-bit samples: Pillow's `convert("L")` of the image as it opens.
    Eight {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// `width * height` samples, row-major.
        data: Vec<u8>,
    },
    /// 16-bit grey samples as stored (PNG bit depth 16 or TIFF 16-bit grey).
    Sixteen {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// `width * height` samples, row-major.
        data: Vec<u16>,
    },
}

impl GrayImage {
    /// Width and height in pixels.
    pub fn size(&self) -> (usize, usize) {
        match self {
            GrayImage::Eight { width, height, .. } | GrayImage::Sixteen { width, height, .. } => {
                (*width, *height)
            }
        }
    }
}

/// Decodes `bytes` (any format the image modality reads) under `limits`.
pub fn decode_gray(bytes: &[u8], limits: &ImageLimits) -> Result<GrayImage, ImageError> {
    guarded(bytes, limits, |max_alloc, check| {
        if let Some(sixteen) = decode_gray16(bytes, max_alloc, check)? {
            return Ok(sixteen);
        }
        let rgb = decode::decode_rgb(bytes, max_alloc, check)?;
        Ok(GrayImage::Eight { width: rgb.width, height: rgb.height, data: luma(&rgb) })
    })
}

/// Pillow's `L24`: ITU-R 601-2 luma in 16-bit fixed point, rounded (`rgb2l`, and through it
/// every mode's conversion to `L` that passes through RGB).
fn luma(rgb: &Rgb8) -> Vec<u8> {
    rgb.data
        .chunks_exact(3)
        .map(|p| {
            let l = u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000;
            (l >> 16) as u8
        })
        .collect()
}

/// A 16-bit grey PNG or TIFF at full depth; `None` for anything else.
fn decode_gray16(
    bytes: &[u8],
    max_alloc: u64,
    check: &dyn Fn(u32, u32) -> Result<(), ImageError>,
) -> Result<Option<GrayImage>, ImageError> {
    let err = |e: &dyn std::fmt::Display| ImageError::Decode(e.to_string());
    match image::guess_format(bytes) {
        // IHDR: bit depth at byte 24, colour type (0: grey) at byte 25.
        Ok(image::ImageFormat::Png) if bytes.get(24..26) == Some(&[16, 0]) => {
            // As for 8-bit PNGs: the size from IHDR before the decoder reads further chunks.
            if let Some((w, h)) = decode::png_ihdr_size(bytes) {
                check(w, h)?;
            }
            let mut reader =
                image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(max_alloc);
            reader.limits(limits);
            let decoder = reader.into_decoder().map_err(|e| err(&e))?;
            let (w, h) = image::ImageDecoder::dimensions(&decoder);
            check(w, h)?;
            match image::DynamicImage::from_decoder(decoder).map_err(|e| err(&e))? {
                image::DynamicImage::ImageLuma16(b) => {
                    Ok(Some(GrayImage::Sixteen { width: w as usize, height: h as usize, data: b.into_raw() }))
                }
                // A grey PNG with a transparency chunk: through the 8-bit path.
                _ => Ok(None),
            }
        }
        Ok(image::ImageFormat::Tiff) => {
            use tiff::decoder::{Decoder, DecodingResult, Limits};
            let err = |e: tiff::TiffError| match e {
                tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                    ImageError::Decode("image file is truncated".into())
                }
                other => ImageError::Decode(other.to_string()),
            };
            let mut dec = Decoder::new(std::io::Cursor::new(bytes)).map_err(err)?;
            if !matches!(dec.colortype(), Ok(tiff::ColorType::Gray(16))) {
                return Ok(None);
            }
            let mut limits = Limits::default();
            let max_alloc = usize::try_from(max_alloc).unwrap_or(usize::MAX);
            limits.decoding_buffer_size = max_alloc;
            limits.intermediate_buffer_size = max_alloc;
            let mut dec = dec.with_limits(limits);
            let (w, h) = dec.dimensions().map_err(err)?;
            check(w, h)?;
            match dec.read_image().map_err(err)? {
                DecodingResult::U16(data) if data.len() == w as usize * h as usize => {
                    Ok(Some(GrayImage::Sixteen { width: w as usize, height: h as usize, data }))
                }
                _ => Err(ImageError::Decode("16-bit grey TIFF decoded to an unexpected layout".into())),
            }
        }
        _ => Ok(None),
    }
}

/// Where the resized image lands in the `crop x crop` output: the kept window and the padding
/// before it (torchvision pads with zeros where the crop is larger than the image).
struct Placement {
    cols: std::ops::Range<u64>,
    rows: std::ops::Range<u64>,
    out_w: u64,
    out_h: u64,
    pad_x: usize,
    pad_y: usize,
}

fn placement(width: usize, height: usize, resize: u32, crop: u32) -> Placement {
    let (out_w, out_h) = resized_size(width as u64, height as u64, resize);
    let (cols, pad_x) = crop_window(out_w, u64::from(crop));
    let (rows, pad_y) = crop_window(out_h, u64::from(crop));
    Placement { cols, rows, out_w, out_h, pad_x, pad_y }
}

/// torchvision `Resize(resize)` then `CenterCrop(crop)` of an 8-bit (`L`) image: a
/// `crop * crop` plane, zero where the crop pads.
pub fn resize_crop_l8(
    width: usize,
    height: usize,
    data: &[u8],
    resize: u32,
    crop: u32,
    filter: ResizeFilter,
) -> Vec<u8> {
    let at = placement(width, height, resize, crop);
    let (w, h, win) =
        resample::resize_window_l8((width, height, data), at.out_w, at.out_h, at.cols, at.rows, filter);
    place(&win, w, h, crop as usize, at.pad_x, at.pad_y, 0)
}

/// torchvision `Resize(resize)` then `CenterCrop(crop)` of a float image, resized as Pillow
/// resizes mode `F` (`pil`) or as torch resizes a float tensor (`tensor`): a `crop * crop`
/// plane, zero where the crop pads.
pub fn resize_crop_f32(
    width: usize,
    height: usize,
    data: Vec<f32>,
    (resize, crop): (u32, u32),
    filter: ResizeFilter,
    domain: ResizeDomain,
) -> Vec<f32> {
    let at = placement(width, height, resize, crop);
    let img = PlaneF32 { width, height, data };
    let win = match domain {
        ResizeDomain::Pil => resample::resize_window_f32(&img, at.out_w, at.out_h, at.cols, at.rows, filter),
        ResizeDomain::Tensor => {
            torch_resize::resize_window(&img, at.out_w, at.out_h, at.cols, at.rows, filter)
        }
    };
    place(&win.data, win.width, win.height, crop as usize, at.pad_x, at.pad_y, 0.0)
}

fn place<T: Copy>(src: &[T], w: usize, h: usize, crop: usize, pad_x: usize, pad_y: usize, zero: T) -> Vec<T> {
    let mut out = vec![zero; crop * crop];
    for y in 0..h {
        let row = (y + pad_y) * crop + pad_x;
        out[row..row + w].copy_from_slice(&src[y * w..(y + 1) * w]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_is_pillows_fixed_point_rounding() {
        let rgb = Rgb8 { width: 4, height: 1, data: vec![255, 255, 255, 0, 0, 0, 255, 0, 0, 10, 200, 30] };
        // Pillow 13: Image.new("RGB", ...).convert("L") of the same pixels.
        assert_eq!(luma(&rgb), vec![255, 0, 76, 124]);
    }

    #[test]
    fn float_resize_keeps_a_constant_and_pads_with_zero() {
        for domain in [ResizeDomain::Pil, ResizeDomain::Tensor] {
            let out = resize_crop_f32(10, 4, vec![0.25; 40], (8, 24), ResizeFilter::Bicubic, domain);
            assert_eq!(out.len(), 24 * 24);
            // 10x4 -> 20x8, centred in 24x24: rows 8..16, columns 2..22.
            assert!(
                out[8 * 24 + 2..8 * 24 + 22].iter().all(|&v| (v - 0.25).abs() < 1e-6),
                "{domain:?}: {:?}",
                &out[8 * 24..9 * 24]
            );
            assert_eq!(out[0], 0.0);
            assert_eq!(out[8 * 24], 0.0);
        }
    }
}
