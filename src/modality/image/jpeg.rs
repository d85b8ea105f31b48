//! JPEG decoding through libjpeg-turbo's decoder (as vendored by the `mozjpeg` crate), the
//! library Pillow uses.
//!
//! Pure-Rust decoders do not reproduce libjpeg-turbo's output: on the test JPEGs `zune-jpeg`
//! (the `image` crate's JPEG backend) is off by up to 4 levels on up to 27% of the samples
//! (its IDCT and YCbCr conversion differ from ISLOW + libjpeg's integer colour conversion). The
//! `mozjpeg` crate builds the libjpeg-turbo decoder from source (mozjpeg only changes the
//! encoder), and with the same defaults Pillow uses (ISLOW IDCT, fancy upsampling) its output is
//! identical to Pillow's on every fixture. Its x86 SIMD kernels (built when `nasm` is present,
//! see scripts/setup.sh) compute the same integers as its C code, about twice as fast.

use std::cell::Cell;
use std::io::{self, BufRead, Read};

use mozjpeg::{ColorSpace, Decompress};

use super::ImageError;
use super::pil;
use super::resample::Rgb8;

/// An in-memory reader that remembers whether libjpeg asked for data past the end.
///
/// libjpeg does not fail on a truncated stream: it warns and pretends an EOI marker followed.
/// Pillow reports such files as truncated (`OSError: image file is truncated`), so we do too.
struct EofTracking<'a> {
    data: &'a [u8],
    hit_eof: &'a Cell<bool>,
}

impl Read for EofTracking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof.set(true);
        }
        Ok(n)
    }
}

impl BufRead for EofTracking<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.data.is_empty() {
            self.hit_eof.set(true);
        }
        Ok(self.data)
    }

    fn consume(&mut self, amt: usize) {
        self.data = self.data.get(amt..).unwrap_or_default();
    }
}

/// Decodes a JPEG the way `Image.open(f).convert("RGB")` does.
///
/// `check_size` is called with the header dimensions before any pixel is decoded.
/// libjpeg reports fatal errors by unwinding (see the `mozjpeg` crate); the caller runs this
/// inside `catch_unwind` and turns that into [`ImageError::Decode`].
pub(crate) fn decode(
    bytes: &[u8],
    check_size: impl FnOnce(u32, u32) -> Result<(), ImageError>,
) -> Result<Rgb8, ImageError> {
    let hit_eof = Cell::new(false);
    let reader = EofTracking { data: bytes, hit_eof: &hit_eof };
    let dec = Decompress::builder().from_reader(reader).map_err(|e| ImageError::Decode(e.to_string()))?;
    let (width, height) = dec.size();
    check_size(u32::try_from(width).unwrap_or(u32::MAX), u32::try_from(height).unwrap_or(u32::MAX))?;
    // JpegImagePlugin picks the mode from the number of components in the frame header.
    let components = dec.components().len();
    let out_space = match components {
        1 => ColorSpace::JCS_GRAYSCALE,
        3 => ColorSpace::JCS_RGB,
        4 => ColorSpace::JCS_CMYK,
        n => {
            return Err(ImageError::Decode(format!("cannot handle {n}-layer JPEG images")));
        }
    };
    let mut started = dec.to_colorspace(out_space).map_err(|e| ImageError::Decode(e.to_string()))?;
    let samples: Vec<u8> = started.read_scanlines().map_err(|e| ImageError::Decode(e.to_string()))?;
    started.finish().map_err(|e| ImageError::Decode(e.to_string()))?;
    if hit_eof.get() {
        return Err(ImageError::Decode("image file is truncated".into()));
    }
    let pixels = width * height;
    if samples.len() != pixels * components {
        return Err(ImageError::Decode(format!(
            "JPEG decoder returned {} samples for a {width}x{height}x{components} image",
            samples.len()
        )));
    }
    let data = match components {
        1 => samples.iter().flat_map(|&v| [v, v, v]).collect(),
        3 => samples,
        // Pillow decodes 4-component JPEGs with rawmode "CMYK;I" (Adobe's inverted CMYK
        // convention, assumed for every CMYK JPEG), then applies its own `cmyk2rgb`.
        _ => samples.chunks_exact(4).flat_map(|p| pil::cmyk_to_rgb(!p[0], !p[1], !p[2], !p[3])).collect(),
    };
    Ok(Rgb8 { width, height, data })
}
