//! Image preprocessing against tensors produced by the reference implementation
//! (`imagebind.data.load_and_transform_vision_data`: PIL decode + `convert("RGB")`, torchvision
//! `Resize(224, BICUBIC)`, `CenterCrop(224)`, `ToTensor`, `Normalize`), stored under
//! `tests/fixtures/images/`.

use bindery::modality::image::{ImageError, ImageLimits, ImagePreprocessor};
use bindery::modality::image::{ImagePreprocess, ResizeDomain, ResizeFilter, ResizeMode};
use serde::Deserialize;

use crate::common::Fixtures;

/// ImageBind's vision transform constants (`imagebind/data.py`); torch rounds the Python
/// floats to f32 the same way `as f32` does.
fn imagebind_spec() -> ImagePreprocess {
    ImagePreprocess {
        size: None,
        resize: Some(224),
        crop: Some(224),
        resize_mode: ResizeMode::Shortest,
        filter: ResizeFilter::Bicubic,
        mean: [0.481_454_66_f64, 0.457_827_5, 0.408_210_73].map(|v| v as f32),
        std: [0.268_629_54_f64, 0.261_302_58, 0.275_777_11].map(|v| v as f32),
        fill_color: 0,
        resize_domain: ResizeDomain::Pil,
    }
}

fn preprocessor() -> ImagePreprocessor {
    ImagePreprocessor::new(&imagebind_spec(), ImageLimits::default()).expect("valid section")
}

const IMAGES: Fixtures = Fixtures("images");

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    file: String,
    mode: String,
    /// Raw little-endian f32 [3, 224, 224] from the reference transform, if stored.
    pixels: Option<String>,
}

fn cases() -> Vec<Case> {
    let cases: Vec<Case> = IMAGES.json("cases.json");
    assert!(!cases.is_empty(), "cases.json lists no case");
    cases
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Largest accepted difference for lossless inputs: the arithmetic is reproduced exactly.
const EXACT_TOL: f32 = 1e-6;
/// Largest accepted difference for JPEG inputs. The decoder is libjpeg-turbo's, like Pillow's,
/// and reproduces its samples exactly on every fixture, so this is the same bound; it is kept
/// separate because JPEG is the one place another libjpeg-turbo build could legitimately
/// differ (by one 8-bit level, i.e. about 0.015 after normalisation).
const JPEG_TOL: f32 = 1e-6;

#[test]
fn tensors_match_the_reference_transform() {
    let pre = preprocessor();
    let mut out = vec![0f32; pre.tensor_len()];
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in cases() {
        let Some(pixels) = &case.pixels else { continue };
        let bytes = IMAGES.read(&case.file);
        let want = IMAGES.f32s(pixels);
        assert_eq!(want.len(), out.len(), "{}: reference tensor size", case.id);
        if let Err(e) = pre.preprocess_into(&bytes, &mut out) {
            failures.push(format!("{} ({}): {e}", case.id, case.mode));
            continue;
        }
        let max_diff = out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let tol = if is_jpeg(&bytes) { JPEG_TOL } else { EXACT_TOL };
        println!("{:<28} {:<6} max_abs_diff={max_diff:e}", case.id, case.mode);
        if max_diff.is_nan() || max_diff > tol {
            failures.push(format!("{} ({}): max abs diff {max_diff} > {tol}", case.id, case.mode));
        }
        checked += 1;
    }
    assert!(checked > 0, "no case has a reference tensor");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_case_decodes_to_finite_values() {
    let pre = preprocessor();
    let mut out = vec![f32::NAN; pre.tensor_len()];
    for case in cases() {
        let bytes = IMAGES.read(&case.file);
        out.fill(f32::NAN);
        pre.preprocess_into(&bytes, &mut out).unwrap_or_else(|e| panic!("{} ({}): {e}", case.id, case.mode));
        assert!(out.iter().all(|v| v.is_finite()), "{}: non-finite value", case.id);
    }
}

/// A small valid JPEG taken from the fixtures.
fn some_jpeg() -> Vec<u8> {
    cases().iter().map(|c| IMAGES.read(&c.file)).find(|b| is_jpeg(b)).expect("the fixtures include a JPEG")
}

fn run(pre: &ImagePreprocessor, bytes: &[u8]) -> Result<(), ImageError> {
    let mut out = vec![0f32; pre.tensor_len()];
    pre.preprocess_into(bytes, &mut out)
}

#[test]
fn empty_payload_is_rejected() {
    let err = run(&preprocessor(), &[]).unwrap_err();
    assert!(matches!(err, ImageError::Empty), "{err:?}");
    assert_eq!(err.to_string(), "image is empty (0 bytes)");
}

#[test]
fn truncated_jpeg_is_a_decode_error() {
    // Pillow: "OSError: image file is truncated" for this fixture.
    let truncated = IMAGES.read("corrupt_truncated.jpg");
    let err = run(&preprocessor(), &truncated).unwrap_err();
    assert!(matches!(err, ImageError::Decode(_)), "{err:?}");
    assert_eq!(err.to_string(), "cannot decode image: image file is truncated");

    let jpeg = some_jpeg();
    let err = run(&preprocessor(), &jpeg[..jpeg.len() / 2]).unwrap_err();
    assert_eq!(err.to_string(), "cannot decode image: image file is truncated");
    // Missing only the end-of-image marker is also truncated for Pillow.
    let err = run(&preprocessor(), &jpeg[..jpeg.len() - 2]).unwrap_err();
    assert_eq!(err.to_string(), "cannot decode image: image file is truncated");
}

#[test]
fn corrupt_jpeg_header_is_a_decode_error_not_a_panic() {
    let mut jpeg = some_jpeg();
    // Keep the SOI marker, then garbage where the segments should be.
    for (i, b) in jpeg.iter_mut().enumerate().skip(3).take(64) {
        *b = (i * 37) as u8;
    }
    let err = run(&preprocessor(), &jpeg).unwrap_err();
    match err {
        ImageError::Decode(msg) => assert!(!msg.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn random_bytes_are_an_unknown_format() {
    let junk = IMAGES.read("not_an_image.bin");
    let generated: Vec<u8> = (0u32..4096).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    for bytes in [junk, generated] {
        let err = run(&preprocessor(), &bytes).unwrap_err();
        assert!(matches!(err, ImageError::Decode(_)), "{err:?}");
        assert_eq!(err.to_string(), "cannot decode image: unknown image format");
    }
}

#[test]
fn payload_over_max_bytes_is_rejected_before_decoding() {
    let pre =
        ImagePreprocessor::new(&imagebind_spec(), ImageLimits { max_bytes: 100, ..ImageLimits::default() })
            .expect("valid section");
    let err = run(&pre, &[0u8; 101]).unwrap_err();
    assert!(matches!(err, ImageError::TooManyBytes { size: 101, limit: 100 }), "{err:?}");
    assert_eq!(err.to_string(), "image is 101 bytes, more than the limit of 100 bytes");
}

/// PNG signature + IHDR claiming `width x height` 8-bit RGB, and no image data at all.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
}

/// CRC-32 (ISO-HDLC) as PNG chunks use it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[test]
fn huge_declared_dimensions_are_rejected_from_the_header() {
    // 100000 x 100000 RGB would need 30 GB; the header alone must be enough to refuse it.
    let png = png_header_only(100_000, 100_000);
    let err = run(&preprocessor(), &png).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                pixels: 10_000_000_000,
                limit: 64_000_000
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "image is 100000x100000 = 10000000000 pixels, more than the limit of 64000000 pixels"
    );
}

#[test]
fn pixel_limit_applies_to_jpeg_headers_too() {
    let pre =
        ImagePreprocessor::new(&imagebind_spec(), ImageLimits { max_pixels: 1000, ..ImageLimits::default() })
            .expect("valid section");
    let err = run(&pre, &some_jpeg()).unwrap_err();
    assert!(matches!(err, ImageError::TooManyPixels { limit: 1000, .. }), "{err:?}");
}

#[test]
fn wrong_output_length_is_reported() {
    let pre = preprocessor();
    let mut out = vec![0f32; 10];
    let err = pre.preprocess_into(&some_jpeg(), &mut out).unwrap_err();
    assert!(matches!(err, ImageError::OutputSize { expected: 150_528, got: 10 }), "{err:?}");
}

#[test]
fn damaged_files_never_panic() {
    let pre = preprocessor();
    let mut out = vec![0f32; pre.tensor_len()];
    for case in cases() {
        let bytes = IMAGES.read(&case.file);
        let n = bytes.len();
        let mut variants: Vec<Vec<u8>> =
            [n / 8, n / 3, n / 2, n - 1].iter().map(|&len| bytes[..len.max(1)].to_vec()).collect();
        for (k, at) in [16, 40, n / 5, n / 2, (3 * n) / 4].into_iter().enumerate() {
            let mut damaged = bytes.clone();
            if let Some(b) = damaged.get_mut(at) {
                *b ^= 0x5A + k as u8;
            }
            variants.push(damaged);
        }
        for v in variants {
            // Either outcome is fine; a panic escaping would fail the test.
            match pre.preprocess_into(&v, &mut out) {
                Ok(()) => assert!(out.iter().all(|x| x.is_finite()), "{}", case.id),
                Err(e) => assert!(
                    matches!(e, ImageError::Decode(_) | ImageError::TooManyPixels { .. }),
                    "{}: {e:?}",
                    case.id
                ),
            }
        }
    }
}
