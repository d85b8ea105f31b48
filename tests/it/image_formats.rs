//! Every format the reference's Pillow opens, against Pillow itself: a sample of each
//! (`tests/fixtures/images/formats/`, written by `tools/make_image_format_fixtures.py`) either
//! decodes to exactly the pixels of Pillow's `Image.open(f).convert("RGB")`, or is refused with
//! the format named, as bindery's table of formats (`PilFormat`) says.

use bindery::modality::image::formats::{PilFormat, Support, identify};
use bindery::modality::image::{ImageError, ImageLimits, decode_rgb};
use serde::Deserialize;

use crate::common::Fixtures;

const FORMATS: Fixtures = Fixtures("images/formats");

#[derive(Debug, Deserialize)]
struct Doc {
    pillow: String,
    open_formats: Vec<String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    id: String,
    file: String,
    /// The `Image.OPEN` entry Pillow opened it with (MPO opens through JPEG's).
    format: String,
    mode: String,
    size: [usize; 2],
    /// Pillow's `convert("RGB")` pixels, raw; absent where Pillow itself cannot load the file.
    pixels: Option<String>,
    pillow_error: Option<String>,
}

/// Samples of a decoded format whose layout bindery refuses, naming the format and the layout.
/// AVIF layouts libavif converts without libyuv (or, for premultiplied alpha, un-premultiplies
/// for Pillow) are among them.
const REFUSED_LAYOUTS: &[(&str, &str)] = &[
    ("tiff_ycbcr", "TIFF images with YCbCr samples are not supported"),
    ("ppm_pfm", "PPM images with floating-point samples (PFM) are not supported"),
    ("ppm_p6_65535", "PPM images with a maxval other than 255 (or 65535 for grey) are not supported"),
    ("ppm_p6_1000", "PPM images with a maxval other than 255 (or 65535 for grey) are not supported"),
    ("ppm_p6_100", "PPM images with a maxval other than 255 (or 65535 for grey) are not supported"),
    ("ppm_p5_15", "PPM images with a maxval other than 255 (or 65535 for grey) are not supported"),
    ("ppm_p5_4000", "PPM images with a maxval other than 255 (or 65535 for grey) are not supported"),
    ("ppm_p2_plain_100", "PPM images with a maxval other than 255 (or 65535 for grey) are not supported"),
    ("avif_premultiplied", "AVIF images with premultiplied alpha are not supported"),
    ("avif_mono", "AVIF images with monochrome samples are not supported"),
    ("avif12", "AVIF images with 12-bit samples are not supported"),
    (
        "avif_identity",
        "AVIF images with a colour matrix other than BT.601, BT.709 or BT.2020 are not supported",
    ),
];

/// Samples decoded with a known difference from Pillow: the largest difference of one 8-bit
/// sample. JPEG-compressed TIFF strips go through the `tiff` crate's JPEG decoder (zune-jpeg),
/// not libjpeg-turbo as in Pillow (through libtiff).
const KNOWN_DIFFERENCES: &[(&str, u8)] = &[("tiff_jpeg", 1)];

fn doc() -> Doc {
    FORMATS.json("cases.json")
}

fn opener(format: &str) -> &str {
    if format == "MPO" { "JPEG" } else { format }
}

fn table(name: &str) -> PilFormat {
    *PilFormat::ALL
        .iter()
        .find(|f| f.name() == name)
        .unwrap_or_else(|| panic!("{name} is not in PilFormat::ALL"))
}

#[test]
fn the_table_lists_exactly_the_formats_pillow_opens() {
    let doc = doc();
    assert_eq!(doc.pillow, "13.0.0", "the goldens come from the pinned Pillow");
    let ours: Vec<&str> = PilFormat::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(ours, doc.open_formats.iter().map(String::as_str).collect::<Vec<_>>());
    for name in &doc.open_formats {
        assert!(doc.cases.iter().any(|c| opener(&c.format) == name), "no sample for {name}");
    }
}

#[test]
fn every_sample_is_identified_as_pillow_identifies_it() {
    for case in doc().cases {
        let bytes = FORMATS.read(&case.file);
        assert_eq!(identify(&bytes).map(PilFormat::name), Some(opener(&case.format)), "{}", case.id);
    }
}

#[test]
fn every_format_decodes_like_pillow_or_is_refused_by_name() {
    let limits = ImageLimits::default();
    let mut failures = Vec::new();
    for case in doc().cases {
        let bytes = FORMATS.read(&case.file);
        let format = table(opener(&case.format));
        let got = decode_rgb(&bytes, &limits);
        let outcome = match (format.support(), got, &case.pixels) {
            (Support::Decoded, Ok(img), Some(pixels)) => {
                let want = FORMATS.read(pixels);
                let [w, h] = case.size;
                if (img.width, img.height) != (w, h) {
                    Err(format!("size {}x{}, Pillow {w}x{h}", img.width, img.height))
                } else if img.data != want {
                    let diff = img.data.iter().zip(&want).filter(|(a, b)| a != b).count();
                    let max = img.data.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
                    let what =
                        format!("{diff} of {} samples differ from Pillow's, by up to {max}", want.len());
                    match KNOWN_DIFFERENCES.iter().find(|(id, _)| *id == case.id) {
                        Some((_, bound)) if max <= *bound => Ok(what),
                        _ => Err(what),
                    }
                } else {
                    Ok("identical to Pillow".into())
                }
            }
            (Support::Decoded, Err(e), _)
                if REFUSED_LAYOUTS.contains(&(case.id.as_str(), &e.to_string())) =>
            {
                Ok(format!("refused: {e}"))
            }
            (Support::Decoded, Err(e), _) => Err(format!("refused ({e}); Pillow: {:?}", case.pillow_error)),
            (Support::Decoded, Ok(_), None) => {
                Err(format!("decoded, but Pillow cannot: {:?}", case.pillow_error))
            }
            (Support::Refused, Err(e @ ImageError::UnsupportedFormat { format: named }), _) => {
                if named == format.name()
                    && e.to_string() == format!("{} images are not supported", format.name())
                {
                    Ok("refused by name".into())
                } else {
                    Err(format!("refused as {e}"))
                }
            }
            (Support::Refused, other, _) => {
                Err(format!("should be refused by name, got {:?}", other.map(|_| ())))
            }
        };
        match outcome {
            Ok(what) => println!("{:<22} {:<9} {:<6} {what}", case.id, case.format, case.mode),
            Err(why) => failures.push(format!("{} ({} {}): {why}", case.id, case.format, case.mode)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
