//! Encoded bytes to 8-bit RGB, matching `PIL.Image.open(f).convert("RGB")`.
//!
//! The format is sniffed from the content (as Pillow does), the dimensions are read from the
//! header and checked before any pixel is decoded, and each decoder's samples are brought to
//! RGB with the rules of the Pillow mode that format opens as. EXIF orientation and ICC
//! profiles are ignored, as `Image.open` ignores them.
//!
//! Formats are identified as Pillow identifies them (`formats.rs`); those bindery does not
//! decode are refused by name. Known gap: a few layouts Pillow refuses are accepted (e.g. 32-bit
//! BMP bitfield masks outside Pillow's list).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::formats::{self, PilFormat, Support};
use super::resample::Rgb8;
use super::{ImageError, avif, gif, jpeg, pil};

/// Decodes `bytes` into RGB; `check_size(width, height)` runs before pixel decoding.
pub(crate) fn decode_rgb(
    bytes: &[u8],
    max_alloc: u64,
    check_size: &dyn Fn(u32, u32) -> Result<(), ImageError>,
) -> Result<Rgb8, ImageError> {
    let Some(format) = formats::identify(bytes) else {
        return Err(ImageError::Decode("unknown image format".into()));
    };
    if format.support() == Support::Refused {
        return Err(ImageError::UnsupportedFormat { format: format.name() });
    }
    match format {
        PilFormat::Jpeg => jpeg::decode(bytes, check_size),
        PilFormat::Gif => gif::decode(bytes, check_size),
        PilFormat::Avif => avif::decode(bytes, check_size),
        PilFormat::Tiff => decode_tiff(bytes, max_alloc, check_size),
        PilFormat::Png => {
            // The PNG decoder reads every chunk up to the first IDAT before it reports the
            // size; IHDR is always first at a fixed offset, so check it straight away.
            if let Some((w, h)) = png_ihdr_size(bytes) {
                check_size(w, h)?;
            }
            decode_with_image(bytes, ImageFormat::Png, max_alloc, check_size)
        }
        PilFormat::Bmp => {
            let fields = bmp_16bit_fields(bytes)?;
            let mut img = decode_with_image(bytes, ImageFormat::Bmp, max_alloc, check_size)?;
            if let Some(bits) = fields {
                rescale_16bit_bmp(&mut img, bits);
            }
            Ok(img)
        }
        PilFormat::WebP => decode_with_image(bytes, ImageFormat::WebP, max_alloc, check_size),
        PilFormat::Qoi => decode_with_image(bytes, ImageFormat::Qoi, max_alloc, check_size),
        PilFormat::Ppm => {
            pnm_layout_check(bytes)?;
            decode_with_image(bytes, ImageFormat::Pnm, max_alloc, check_size)
        }
        PilFormat::Tga => {
            let mut img = decode_with_image(bytes, ImageFormat::Tga, max_alloc, check_size)?;
            if tga_is_16bit_true_colour(bytes)? {
                rescale_16bit_bmp(&mut img, [5, 5, 5]);
            }
            Ok(img)
        }
        PilFormat::Ico => decode_with_image(bytes, ImageFormat::Ico, max_alloc, check_size),
        other => Err(ImageError::UnsupportedFormat { format: other.name() }),
    }
}

/// Refuses the PNM layouts whose samples Pillow (PpmImagePlugin) scales differently from the
/// `image` crate: Pillow rounds `value / maxval * 255` (or `* 65535` for 16-bit grey, which
/// opens as "I") in floating point. With a maxval of 255, or 65535 for grey ("I", clipped at 255
/// on conversion), the samples are used as they are and both agree. PFM (float) is not read by
/// the `image` crate.
fn pnm_layout_check(b: &[u8]) -> Result<(), ImageError> {
    let magic = b.get(1).copied().unwrap_or(0);
    let refuse = |layout| Err(ImageError::UnsupportedLayout { format: "PPM", layout });
    match magic {
        // Bitmaps have no maxval.
        b'1' | b'4' => return Ok(()),
        b'2' | b'3' | b'5' | b'6' => {}
        b'f' | b'F' => return refuse("floating-point samples (PFM)"),
        // Anything else fails in the decoder with its own message.
        _ => return Ok(()),
    }
    // Width, height, maxval: Pillow's `_read_token` skips whitespace and `#` comments.
    let mut tokens = Vec::new();
    let mut at = 2;
    while tokens.len() < 3 {
        match b.get(at) {
            None => return Ok(()),
            Some(b'#') => {
                while b.get(at).is_some_and(|&c| c != b'\n' && c != b'\r') {
                    at += 1;
                }
            }
            Some(c) if c.is_ascii_whitespace() => at += 1,
            Some(_) => {
                let start = at;
                while b.get(at).is_some_and(|c| !c.is_ascii_whitespace() && *c != b'#') {
                    at += 1;
                }
                tokens.push(&b[start..at]);
            }
        }
    }
    let maxval = std::str::from_utf8(tokens[2]).ok().and_then(|t| t.parse::<u32>().ok());
    let grey = matches!(magic, b'2' | b'5');
    match maxval {
        Some(255) => Ok(()),
        Some(65535) if grey => Ok(()),
        Some(_) => refuse("a maxval other than 255 (or 65535 for grey)"),
        // Malformed: the decoder says why.
        None => Ok(()),
    }
}

/// Whether a TGA is 15/16-bit true colour, which Pillow expands with its truncating "BGR;15"
/// unpackers (as for 16-bit BMPs); a colour map of 15/16-bit entries is refused.
fn tga_is_16bit_true_colour(b: &[u8]) -> Result<bool, ImageError> {
    let (Some(&map_type), Some(&kind), Some(&map_depth), Some(&depth)) =
        (b.get(1), b.get(2), b.get(7), b.get(16))
    else {
        return Ok(false);
    };
    if map_type == 1 && matches!(map_depth, 15 | 16) {
        return Err(ImageError::UnsupportedLayout { format: "TGA", layout: "a 16-bit colour map" });
    }
    Ok(matches!(kind, 2 | 10) && matches!(depth, 15 | 16))
}

/// Width and height from a PNG's IHDR chunk (signature, length, "IHDR", width, height).
pub(super) fn png_ihdr_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let ihdr = bytes.get(12..24)?;
    if &ihdr[..4] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
    let h = u32::from_be_bytes([ihdr[8], ihdr[9], ihdr[10], ihdr[11]]);
    Some((w, h))
}

/// Bits per channel (R, G, B) of a 16-bit BMP, or `None` for other depths.
///
/// Pillow (BmpImagePlugin) reads 16-bit BMPs as 5-5-5 unless BI_BITFIELDS says 5-6-5, and
/// refuses any other layout.
fn bmp_16bit_fields(bytes: &[u8]) -> Result<Option<[u32; 3]>, ImageError> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let header_size = u32_at(14).unwrap_or(0);
    // Only the Windows headers (40 bytes and up) carry 16-bit layouts.
    if header_size < 40 || u16_at(28) != Some(16) {
        return Ok(None);
    }
    const BI_BITFIELDS: u32 = 3;
    if u32_at(30) != Some(BI_BITFIELDS) {
        return Ok(Some([5, 5, 5]));
    }
    // The masks follow a 40-byte header and sit at the same offsets inside larger ones.
    match (u32_at(54), u32_at(58), u32_at(62)) {
        (Some(0xF800), Some(0x07E0), Some(0x001F)) => Ok(Some([5, 6, 5])),
        (Some(0x7C00), Some(0x03E0), Some(0x001F)) => Ok(Some([5, 5, 5])),
        _ => Err(ImageError::Decode("unsupported BMP bitfields layout".into())),
    }
}

/// Re-expands 16-bit BMP channels the way Pillow's `BGR;15`/`BGR;16` unpackers do
/// (`v * 255 / max`, truncated). The `image` crate rounds instead (`round(v * 255 / max)`);
/// that mapping is one-to-one, so the stored value is recovered first.
fn rescale_16bit_bmp(img: &mut Rgb8, bits: [u32; 3]) {
    let tables = bits.map(|n| {
        let max = (1u32 << n) - 1;
        let mut t = [0u8; 256];
        for (v8, slot) in t.iter_mut().enumerate() {
            let stored = (v8 as u32 * max + 127) / 255;
            *slot = (stored * 255 / max) as u8;
        }
        t
    });
    for px in img.data.chunks_exact_mut(3) {
        for (v, t) in px.iter_mut().zip(&tables) {
            *v = t[usize::from(*v)];
        }
    }
}

fn image_err(e: image::ImageError) -> ImageError {
    ImageError::Decode(e.to_string())
}

/// PNG, WebP and BMP through the `image` crate, then Pillow's rules for deep samples.
fn decode_with_image(
    bytes: &[u8],
    format: ImageFormat,
    max_alloc: u64,
    check_size: &dyn Fn(u32, u32) -> Result<(), ImageError>,
) -> Result<Rgb8, ImageError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(image_err)?;
    let (w, h) = decoder.dimensions();
    check_size(w, h)?;
    let img = DynamicImage::from_decoder(decoder).map_err(image_err)?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    let data: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        // RGBA/LA -> RGB: Pillow drops alpha without compositing (rgba2rgb, la2rgb).
        DynamicImage::ImageRgba8(b) => b.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        DynamicImage::ImageLuma8(b) => b.iter().flat_map(|&v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(b) => b.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        // 16-bit grey PNG opens as "I;16"; its RGB conversion clips at 255.
        DynamicImage::ImageLuma16(b) => b.iter().flat_map(|&v| [pil::clip_int(i64::from(v)); 3]).collect(),
        // 16-bit grey+alpha PNG opens as RGBA through rawmode "LA;16B": high byte of L.
        DynamicImage::ImageLumaA16(b) => b.chunks_exact(2).flat_map(|p| [pil::high_byte(p[0]); 3]).collect(),
        // 16-bit RGB(A) PNG opens as 8-bit RGB(A) through "RGB;16B"/"RGBA;16B": high byte.
        DynamicImage::ImageRgb16(b) => b.iter().map(|&v| pil::high_byte(v)).collect(),
        DynamicImage::ImageRgba16(b) => {
            b.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]].map(pil::high_byte)).collect()
        }
        other => {
            return Err(ImageError::Decode(format!("unsupported sample layout {:?}", other.color())));
        }
    };
    Ok(Rgb8 { width, height, data })
}

fn tiff_err(e: tiff::TiffError) -> ImageError {
    ImageError::Decode(e.to_string())
}

/// TIFF through the `tiff` crate, so that 32-bit grey ("I", "F") and CMYK can be converted the
/// way Pillow does (the `image` crate refuses the former and converts CMYK with its own formula).
/// Like `Image.open`, only the first page (IFD) of a multi-page file is read.
fn decode_tiff(
    bytes: &[u8],
    max_alloc: u64,
    check_size: &dyn Fn(u32, u32) -> Result<(), ImageError>,
) -> Result<Rgb8, ImageError> {
    use tiff::ColorType as C;
    use tiff::decoder::{Decoder, DecodingResult as R, Limits};

    // The `tiff` crate refuses palette images (photometric 3). Their samples are plain indices,
    // so a copy whose photometric tag says BlackIsZero decodes to exactly those indices, and the
    // colour map is applied below.
    let patched;
    let (source, is_palette) = match photometric_entry(bytes) {
        Some(entry) if entry.value == PHOTOMETRIC_PALETTE => {
            let mut copy = bytes.to_vec();
            let one = if entry.big_endian { 1u16.to_be_bytes() } else { 1u16.to_le_bytes() };
            if let Some(slot) = copy.get_mut(entry.at..entry.at + 2) {
                slot.copy_from_slice(&one);
            }
            patched = copy;
            (patched.as_slice(), true)
        }
        _ => (bytes, false),
    };

    let mut limits = Limits::default();
    let max_alloc = usize::try_from(max_alloc).unwrap_or(usize::MAX);
    limits.decoding_buffer_size = max_alloc;
    limits.intermediate_buffer_size = max_alloc;
    let mut dec = Decoder::new(Cursor::new(source)).map_err(tiff_err)?.with_limits(limits);
    let (w, h) = dec.dimensions().map_err(tiff_err)?;
    check_size(w, h)?;
    let color = dec.colortype().map_err(tiff_err)?;
    let (width, height) = (w as usize, h as usize);
    let pixels = width * height;
    let unsupported = || ImageError::Decode(format!("unsupported TIFF sample layout {color:?}"));
    if matches!(color, C::YCbCr(_)) {
        // Pillow opens these as "YCbCr" and converts with its own fixed-point tables.
        return Err(ImageError::UnsupportedLayout { format: "TIFF", layout: "YCbCr samples" });
    }
    let palette = if is_palette {
        let C::Gray(bits @ (1 | 2 | 4 | 8)) = color else {
            return Err(ImageError::Decode(format!("unsupported TIFF palette layout {color:?}")));
        };
        let map = dec.get_tag_u16_vec(tiff::tags::Tag::ColorMap).map_err(tiff_err)?;
        Some(tiff_palette(&map, bits))
    } else {
        None
    };
    let samples = dec.read_image().map_err(tiff_err)?;
    let grey = |v: u8| [v, v, v];
    let data: Vec<u8> = match (color, samples, palette) {
        // "P;1", "P;2", "P;4", "P": indices through the colour map.
        (C::Gray(bits), R::U8(s), Some(palette)) => {
            unpack_rows(&s, width, height, bits).flat_map(|i| palette[usize::from(i)]).collect()
        }
        (C::Gray(8), R::U8(s), None) => s.iter().flat_map(|&v| grey(v)).collect(),
        // Bilevel ("1"): set bits are white. "L;2" and "L;4" spread the levels over 0..=255.
        (C::Gray(bits @ (1 | 2 | 4)), R::U8(s), None) => {
            let scale = 255 / ((1u8 << bits) - 1);
            unpack_rows(&s, width, height, bits).flat_map(|v| grey(v * scale)).collect()
        }
        // "I;16" clips, "I" (32-bit integer) clips, "F" truncates and clips.
        (C::Gray(16), R::U16(s), None) => s.iter().flat_map(|&v| grey(pil::clip_int(v.into()))).collect(),
        (C::Gray(32), R::I32(s), None) => s.iter().flat_map(|&v| grey(pil::clip_int(v.into()))).collect(),
        // Pillow reads unsigned 32-bit samples into its signed "I" storage as they are.
        (C::Gray(32), R::U32(s), None) => {
            s.iter().flat_map(|&v| grey(pil::clip_int(i64::from(v as i32)))).collect()
        }
        (C::Gray(32), R::F32(s), None) => s.iter().flat_map(|&v| grey(pil::clip_float(v))).collect(),
        (C::GrayA(8) | C::Multiband { bit_depth: 8, num_samples: 2 }, R::U8(s), None) => {
            s.chunks_exact(2).flat_map(|p| grey(p[0])).collect()
        }
        (C::RGB(8), R::U8(s), None) => s,
        (C::RGBA(8), R::U8(s), None) => s.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        (C::RGB(16), R::U16(s), None) => s.iter().map(|&v| pil::high_byte(v)).collect(),
        (C::RGBA(16), R::U16(s), None) => {
            s.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]].map(pil::high_byte)).collect()
        }
        // TIFF CMYK is stored plainly (rawmode "CMYK"), then Pillow's cmyk2rgb.
        (C::CMYK(8), R::U8(s), None) => {
            s.chunks_exact(4).flat_map(|p| pil::cmyk_to_rgb(p[0], p[1], p[2], p[3])).collect()
        }
        // "CMYK;16L"/"CMYK;16B" keep the high byte of each sample, then cmyk2rgb.
        (C::CMYK(16), R::U16(s), None) => s
            .chunks_exact(4)
            .flat_map(|p| {
                let [c, m, y, k] = [p[0], p[1], p[2], p[3]].map(pil::high_byte);
                pil::cmyk_to_rgb(c, m, y, k)
            })
            .collect(),
        _ => return Err(unsupported()),
    };
    if data.len() != pixels * 3 {
        return Err(ImageError::Decode(format!(
            "TIFF decoder returned {} samples for a {width}x{height} image",
            data.len()
        )));
    }
    Ok(Rgb8 { width, height, data })
}

/// Samples of `bits` (1, 2, 4 or 8) packed MSB first, each row padded to a byte; a short
/// buffer yields fewer samples (the caller checks the count).
fn unpack_rows(s: &[u8], width: usize, height: usize, bits: u8) -> impl Iterator<Item = u8> + '_ {
    let bits = usize::from(bits);
    let stride = (width * bits).div_ceil(8).max(1);
    let mask = ((1u16 << bits) - 1) as u8;
    s.chunks_exact(stride).take(height).flat_map(move |row| {
        (0..width).map(move |x| {
            let bit = x * bits;
            (row[bit / 8] >> (8 - bits - bit % 8)) & mask
        })
    })
}

/// Pillow's TIFF palette: the high byte of each 16-bit colour map entry (`b // 256`), the map
/// holding all reds, then all greens, then all blues. Missing entries are black.
fn tiff_palette(map: &[u16], bits: u8) -> Vec<[u8; 3]> {
    let n = 1usize << bits;
    (0..n).map(|i| [0, 1, 2].map(|c| map.get(c * n + i).map_or(0, |&v| pil::high_byte(v)))).collect()
}

const PHOTOMETRIC_PALETTE: u16 = 3;

/// Where the first IFD's PhotometricInterpretation value sits.
struct PhotometricEntry {
    at: usize,
    value: u16,
    big_endian: bool,
}

/// Finds the PhotometricInterpretation (262, SHORT) entry of the first IFD of a classic or
/// BigTIFF file.
fn photometric_entry(b: &[u8]) -> Option<PhotometricEntry> {
    let big_endian = match b.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| {
        let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(s) } else { u16::from_le_bytes(s) })
    };
    let u32_at = |at: usize| {
        let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(s) } else { u32::from_le_bytes(s) })
    };
    let u64_at = |at: usize| {
        let s: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if big_endian { u64::from_be_bytes(s) } else { u64::from_le_bytes(s) })
    };
    let (count, entries_at, entry_len) = match u16_at(2)? {
        42 => {
            let ifd = usize::try_from(u32_at(4)?).ok()?;
            (u64::from(u16_at(ifd)?), ifd.checked_add(2)?, 12)
        }
        43 => {
            let ifd = usize::try_from(u64_at(8)?).ok()?;
            (u64_at(ifd)?, ifd.checked_add(8)?, 20)
        }
        _ => return None,
    };
    const SHORT: u16 = 3;
    (0..count.min(4096)).find_map(|k| {
        let entry = entries_at.checked_add(usize::try_from(k).ok()?.checked_mul(entry_len)?)?;
        if u16_at(entry)? != 262 || u16_at(entry + 2)? != SHORT {
            return None;
        }
        let at = entry + if entry_len == 12 { 8 } else { 12 };
        Some(PhotometricEntry { at, value: u16_at(at)?, big_endian })
    })
}
