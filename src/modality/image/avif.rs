//! AVIF decoding equal to Pillow's (`AvifImagePlugin`, through libavif with dav1d and libyuv).
//!
//! The container is read by `avif-parse`, the AV1 image by dav1d (the system libdav1d; AV1
//! decoding is exactly specified, so every conformant decoder gives the same planes), and the
//! planes become RGB in `yuv.rs` as libavif converts them for Pillow. The colour description
//! comes from where libavif takes it (`avifReadColorProperties`, then the sequence header): the
//! primary item's `nclx` colour box if it has one, otherwise the AV1 sequence header.
//!
//! Refused by name, because libavif converts them without libyuv (or Pillow's request differs)
//! and bindery does not reproduce that: monochrome and 12-bit images, matrices other than
//! BT.601, BT.709 and BT.2020 (identity, YCgCo, ...), premultiplied alpha, grids and animations.

use std::io::Cursor;

use super::ImageError;
use super::resample::Rgb8;
use super::yuv::{self, Plane, Subsampling, Yuv};

fn refuse(layout: &'static str) -> ImageError {
    ImageError::UnsupportedLayout { format: "AVIF", layout }
}

fn decode_err(what: impl std::fmt::Display) -> ImageError {
    ImageError::Decode(format!("AVIF: {what}"))
}

/// CICP colour description: primaries, matrix coefficients and range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Colour {
    primaries: u8,
    matrix: u8,
    full_range: bool,
}

/// Decodes an AVIF file to Pillow's `convert("RGB")` pixels.
pub(crate) fn decode(
    bytes: &[u8],
    check_size: &dyn Fn(u32, u32) -> Result<(), ImageError>,
) -> Result<Rgb8, ImageError> {
    // avif-parse sizes some buffers from the boxes' declared sizes before reading them.
    if !boxes_fit(bytes, 0) {
        return Err(decode_err("a box is larger than the file"));
    }
    let data = avif_parse::read_avif(&mut Cursor::new(bytes)).map_err(|e| match e {
        avif_parse::Error::Unsupported(what) if what.contains("Grid") => refuse("grid images"),
        avif_parse::Error::Unsupported(what) if what.contains("nimated") => refuse("animations"),
        other => decode_err(other),
    })?;
    let meta = data.primary_item_metadata().map_err(decode_err)?;
    check_size(meta.max_frame_width.get(), meta.max_frame_height.get())?;
    let has_alpha = data.alpha_item.is_some();
    if has_alpha && data.premultiplied_alpha {
        return Err(refuse("premultiplied alpha"));
    }
    if meta.monochrome {
        return Err(refuse("monochrome samples"));
    }
    if meta.bit_depth > 10 {
        return Err(refuse("12-bit samples"));
    }
    let colour = match nclx(bytes) {
        Some(colour) => colour,
        None => sequence_header_colour(&data.primary_item[..])
            .ok_or_else(|| decode_err("no AV1 sequence header in the image item"))?,
    };
    let coefficients = yuv::coefficients_for(colour.matrix, colour.primaries, colour.full_range)
        .ok_or_else(|| refuse("a colour matrix other than BT.601, BT.709 or BT.2020"))?;
    let planes = decode_av1(data.primary_item[..].to_vec())?;
    check_size(planes.width as u32, planes.height as u32)?;
    let data = yuv::to_rgb(&planes, &coefficients, has_alpha);
    Ok(Rgb8 { width: planes.width, height: planes.height, data })
}

/// The AV1 image item through dav1d, as planes of samples.
fn decode_av1(obus: Vec<u8>) -> Result<Yuv, ImageError> {
    use dav1d::{Error as E, PixelLayout, PlanarImageComponent as C};

    let mut settings = dav1d::Settings::new();
    // Preprocessing runs many inputs in parallel already; one image is one frame.
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    let mut dec = dav1d::Decoder::with_settings(&settings).map_err(decode_err)?;
    match dec.send_data(obus, None, None, None) {
        Ok(()) | Err(E::Again) => {}
        Err(e) => return Err(decode_err(e)),
    }
    // A still image is one temporal unit: feed what dav1d left pending, then drain.
    let mut picture = None;
    for _ in 0..64 {
        match dec.get_picture() {
            Ok(p) => {
                picture = Some(p);
                break;
            }
            Err(E::Again) => match dec.send_pending_data() {
                Ok(()) | Err(E::Again) => {}
                Err(e) => return Err(decode_err(e)),
            },
            Err(e) => return Err(decode_err(e)),
        }
    }
    let picture = picture.ok_or_else(|| decode_err("the AV1 stream holds no picture"))?;
    let subsampling = match picture.pixel_layout() {
        PixelLayout::I444 => Subsampling::None,
        PixelLayout::I422 => Subsampling::Horizontal,
        PixelLayout::I420 => Subsampling::Both,
        PixelLayout::I400 => return Err(refuse("monochrome samples")),
    };
    let depth = match picture.bits_per_component() {
        Some(dav1d::BitsPerComponent(8)) => 8u8,
        Some(dav1d::BitsPerComponent(10)) => 10,
        _ => return Err(refuse("12-bit samples")),
    };
    let (width, height) = (picture.width() as usize, picture.height() as usize);
    let (cw, ch) = match subsampling {
        Subsampling::None => (width, height),
        Subsampling::Horizontal => (width.div_ceil(2), height),
        Subsampling::Both => (width.div_ceil(2), height.div_ceil(2)),
    };
    let plane = |component: C, w: usize, h: usize| -> Result<Plane, ImageError> {
        let bytes = picture.plane(component);
        let stride_bytes = picture.stride(component) as usize;
        let sample_bytes = if depth > 8 { 2 } else { 1 };
        let stride = stride_bytes / sample_bytes;
        if w > stride || bytes.len() < stride_bytes * h {
            return Err(decode_err("dav1d returned a plane smaller than the picture"));
        }
        let data = if sample_bytes == 1 {
            bytes.iter().map(|&v| u16::from(v)).collect()
        } else {
            bytes.chunks_exact(2).map(|b| u16::from_ne_bytes([b[0], b[1]])).collect()
        };
        Ok(Plane { data, stride })
    };
    let planes = [plane(C::Y, width, height)?, plane(C::U, cw, ch)?, plane(C::V, cw, ch)?];
    Ok(Yuv { width, height, depth, subsampling, planes })
}

/// Reads ISOBMFF boxes: (type, payload) pairs of `b`, stopping at the first malformed one.
fn boxes(mut b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    std::iter::from_fn(move || {
        let size32 = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
        let kind: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        let (header, size) = match size32 {
            0 => (8, b.len()),
            1 => (16, usize::try_from(u64::from_be_bytes(b.get(8..16)?.try_into().ok()?)).ok()?),
            n => (8, n as usize),
        };
        let payload = b.get(header..size)?;
        b = &b[size..];
        Some((kind, payload))
    })
}

/// Whether every box of `b`, and of the containers bindery or avif-parse look into, lies within
/// its parent (a few trailing bytes too short for a box header are allowed).
fn boxes_fit(mut b: &[u8], depth: u32) -> bool {
    while b.len() >= 8 {
        let size32 = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let (header, size) = match size32 {
            0 => (8, b.len() as u64),
            1 => match b.get(8..16) {
                Some(s) => (16, u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])),
                None => return false,
            },
            n => (8, u64::from(n)),
        };
        if size < header as u64 || size > b.len() as u64 {
            return false;
        }
        let size = size as usize;
        let payload = &b[header..size];
        let inner = match &b[4..8] {
            // Full boxes: version and flags first.
            b"meta" => payload.get(4..),
            b"iprp" | b"ipco" | b"dinf" | b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" => Some(payload),
            _ => None,
        };
        if let Some(inner) = inner
            && (depth >= 8 || !boxes_fit(inner, depth + 1))
        {
            return false;
        }
        b = &b[size..];
    }
    true
}

fn child<'a>(b: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(b).find(|(k, _)| k == kind).map(|(_, p)| p)
}

/// The `nclx` colour box associated with the primary item (`pitm`) through `ipma`, if any.
fn nclx(file: &[u8]) -> Option<Colour> {
    // `meta`, `pitm` and `ipma` are full boxes: version and flags first.
    let meta = child(file, b"meta")?.get(4..)?;
    let pitm = child(meta, b"pitm")?;
    let primary = match pitm.first()? {
        0 => u32::from(u16::from_be_bytes(pitm.get(4..6)?.try_into().ok()?)),
        _ => u32::from_be_bytes(pitm.get(4..8)?.try_into().ok()?),
    };
    let iprp = child(meta, b"iprp")?;
    let properties: Vec<([u8; 4], &[u8])> = boxes(child(iprp, b"ipco")?).collect();
    let mut colours = Vec::new();
    for (kind, ipma) in boxes(iprp) {
        if &kind != b"ipma" {
            continue;
        }
        let (version, flags) = (*ipma.first()?, *ipma.get(3)?);
        let mut at = 4;
        let mut take = |n: usize| -> Option<u32> {
            let s = ipma.get(at..at + n)?;
            at += n;
            Some(s.iter().fold(0u32, |acc, &v| (acc << 8) | u32::from(v)))
        };
        let entries = take(4)?;
        for _ in 0..entries {
            let item = take(if version < 1 { 2 } else { 4 })?;
            let count = take(1)?;
            for _ in 0..count {
                let index = if flags & 1 == 1 { take(2)? & 0x7FFF } else { take(1)? & 0x7F };
                if item == primary && index > 0 {
                    colours.push(index as usize - 1);
                }
            }
        }
    }
    // libavif uses the first `nclx` colour property of the item.
    colours.iter().find_map(|&i| {
        let (kind, colr) = properties.get(i)?;
        if kind != b"colr" || colr.get(..4)? != b"nclx" {
            return None;
        }
        let primaries = u16::from_be_bytes(colr.get(4..6)?.try_into().ok()?);
        let matrix = u16::from_be_bytes(colr.get(8..10)?.try_into().ok()?);
        Some(Colour {
            primaries: u8::try_from(primaries).ok()?,
            matrix: u8::try_from(matrix).ok()?,
            full_range: colr.get(10)? & 0x80 != 0,
        })
    })
}

/// Reads bits MSB first.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.at % 8)) & 1);
            self.at += 1;
        }
        Some(v)
    }

    fn flag(&mut self) -> Option<bool> {
        self.read(1).map(|v| v == 1)
    }

    /// AV1's `uvlc()`.
    fn uvlc(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            if zeros >= 32 {
                return Some(u32::MAX);
            }
        }
        Some(self.read(zeros)? + ((1u32 << zeros) - 1))
    }
}

/// AV1's `leb128()` at the start of `b`: (value, bytes read).
fn leb128(b: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &byte) in b.iter().take(8).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The colour description of the first sequence header OBU (AV1 spec 5.5: the fields before
/// `color_config` are skipped as the syntax lays them out).
fn sequence_header_colour(mut obus: &[u8]) -> Option<Colour> {
    while !obus.is_empty() {
        let header = *obus.first()?;
        let (kind, extension, has_size) = ((header >> 3) & 0xF, header & 4 != 0, header & 2 != 0);
        let mut at = 1 + usize::from(extension);
        let size = if has_size {
            let (size, n) = leb128(obus.get(at..)?)?;
            at += n;
            size
        } else {
            obus.len() - at
        };
        let payload = obus.get(at..at.checked_add(size)?)?;
        if kind == 1 {
            return parse_sequence_header(payload);
        }
        obus = &obus[at + size..];
    }
    None
}

fn parse_sequence_header(payload: &[u8]) -> Option<Colour> {
    let mut b = Bits { data: payload, at: 0 };
    let profile = b.read(3)?;
    let _still_picture = b.flag()?;
    let reduced = b.flag()?;
    if reduced {
        b.read(5)?;
    } else {
        let mut decoder_model = false;
        let mut buffer_delay_bits = 0;
        if b.flag()? {
            // timing_info
            b.read(32)?;
            b.read(32)?;
            if b.flag()? {
                b.uvlc()?;
            }
            decoder_model = b.flag()?;
            if decoder_model {
                buffer_delay_bits = b.read(5)? + 1;
                b.read(32)?;
                b.read(10)?;
            }
        }
        let initial_display_delay = b.flag()?;
        let operating_points = b.read(5)? + 1;
        for _ in 0..operating_points {
            b.read(12)?;
            if b.read(5)? > 7 {
                b.read(1)?;
            }
            if decoder_model && b.flag()? {
                b.read(buffer_delay_bits)?;
                b.read(buffer_delay_bits)?;
                b.read(1)?;
            }
            if initial_display_delay && b.flag()? {
                b.read(4)?;
            }
        }
    }
    let width_bits = b.read(4)? + 1;
    let height_bits = b.read(4)? + 1;
    b.read(width_bits)?;
    b.read(height_bits)?;
    if !reduced && b.flag()? {
        b.read(7)?;
    }
    b.read(3)?; // 128x128 superblocks, filter intra, intra edge filter
    if !reduced {
        b.read(4)?; // interintra, masked compound, warped motion, dual filter
        let order_hint = b.flag()?;
        if order_hint {
            b.read(2)?;
        }
        let force_screen_content_tools = if b.flag()? { 2 } else { b.read(1)? };
        if force_screen_content_tools > 0 && !b.flag()? {
            b.read(1)?;
        }
        if order_hint {
            b.read(3)?;
        }
    }
    b.read(3)?; // superres, cdef, restoration
    // color_config
    let high_bitdepth = b.flag()?;
    if profile == 2 && high_bitdepth {
        b.read(1)?;
    }
    let mono = if profile == 1 { false } else { b.flag()? };
    let (primaries, transfer, matrix) =
        if b.flag()? { (b.read(8)? as u8, b.read(8)? as u8, b.read(8)? as u8) } else { (2, 2, 2) };
    let full_range = if mono || !(primaries == 1 && transfer == 13 && matrix == 0) {
        b.flag()?
    } else {
        // sRGB: always full range.
        true
    };
    Some(Colour { primaries, matrix, full_range })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_and_uvlc_read_the_spec_examples() {
        assert_eq!(leb128(&[0x7F]), Some((127, 1)));
        assert_eq!(leb128(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(leb128(&[0x80]), None);
        // uvlc: "1" is 0, "010" is 1, "011" is 2.
        let mut b = Bits { data: &[0b1010_0110], at: 0 };
        assert_eq!((b.uvlc(), b.uvlc(), b.uvlc()), (Some(0), Some(1), Some(2)));
    }

    #[test]
    fn the_colour_box_is_read_and_the_sequence_header_too() {
        // Written by avifenc as BT.709 limited range, then its colour box rewritten to BT.601
        // full range (tools/make_image_format_fixtures.py): both descriptions are read, and the
        // box is the one that counts (tests/it/image_formats.rs checks the pixels).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/images/formats/avif_nclx_over_av1.avif");
        let bytes = std::fs::read(path).expect("fixture");
        assert_eq!(nclx(&bytes), Some(Colour { primaries: 1, matrix: 6, full_range: true }));
        let data = avif_parse::read_avif(&mut Cursor::new(&bytes)).expect("parse");
        assert_eq!(
            sequence_header_colour(&data.primary_item[..]),
            Some(Colour { primaries: 1, matrix: 1, full_range: false })
        );
    }

    #[test]
    fn a_box_larger_than_the_file_is_refused_before_parsing() {
        // Found by the image fuzz target: an `ftyp` box claiming 2.5 GB made avif-parse reserve
        // that much for its brand list.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz/image/oom-avif-5c233f2f");
        let bytes = std::fs::read(path).expect("fixture");
        let err = decode(&bytes, &|_, _| Ok(())).expect_err("refused");
        assert_eq!(err.to_string(), "cannot decode image: AVIF: a box is larger than the file");
        // Every committed AVIF sample passes the check.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/formats");
        for entry in std::fs::read_dir(dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "avif") {
                assert!(boxes_fit(&std::fs::read(&path).expect("sample"), 0), "{}", path.display());
            }
        }
    }

    #[test]
    fn junk_and_truncated_files_are_decode_errors() {
        let ok = |_: u32, _: u32| Ok(());
        for bytes in [&b"\0\0\0\x1cftypavif"[..], b"", b"\0\0\0\x08ftyp\0\0\0\x10meta"] {
            assert!(matches!(decode(bytes, &ok), Err(ImageError::Decode(_))), "{bytes:?}");
        }
    }
}
