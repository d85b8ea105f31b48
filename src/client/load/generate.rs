//! Deterministic payload generators, so that a load test needs no files: captions, encoded images,
//! WAV clips and point clouds, all drawn from a seeded generator.

use std::f64::consts::TAU;
use std::io::Cursor;
use std::time::Duration;

use image::{ImageFormat, Rgb, RgbImage};
use rand_pcg::Pcg64Mcg;
use rand_pcg::rand_core::{Rng, SeedableRng};

use super::ImageEncoding;

const ADJECTIVES: &[&str] = &[
    "small", "large", "red", "blue", "green", "old", "young", "bright", "dark", "wooden", "shiny", "quiet",
    "noisy", "striped", "fluffy", "rusty",
];
const SUBJECTS: &[&str] = &[
    "dog", "cat", "bicycle", "car", "bird", "child", "guitar", "boat", "train", "horse", "kettle", "robot",
    "tree", "lamp", "violin", "drone",
];
const ACTIONS: &[&str] = &[
    "standing", "sleeping", "running", "waiting", "playing", "resting", "moving", "singing", "turning",
    "floating",
];
const PLACES: &[&str] = &[
    "on a beach",
    "in a kitchen",
    "next to a river",
    "in the snow",
    "under a bridge",
    "in a busy street",
    "on a wooden table",
    "in a forest",
    "at night",
    "in the rain",
    "near a window",
    "in a garden",
];

/// A short image-style caption such as "a photo of a rusty bicycle resting under a bridge".
pub fn caption(rng: &mut Pcg64Mcg) -> String {
    let mut pick = |words: &[&'static str]| words[index(rng, words.len())];
    format!("a photo of a {} {} {} {}", pick(ADJECTIVES), pick(SUBJECTS), pick(ACTIONS), pick(PLACES))
}

/// An encoded picture: a two-colour gradient with a few discs and a little pixel noise (so that
/// JPEG sizes resemble a photo's rather than a flat image's).
pub fn image(
    rng: &mut Pcg64Mcg,
    (width, height): (u32, u32),
    format: ImageEncoding,
) -> Result<Vec<u8>, String> {
    let mut colour = || [0; 3].map(|_: u8| (unit(rng) * 255.0) as u8);
    let (from, to) = (colour(), colour());
    let discs: Vec<(f64, f64, f64, [u8; 3])> = (0..4)
        .map(|_| {
            let r = (0.05 + 0.2 * unit(rng)) * f64::from(width.min(height));
            (
                unit(rng) * f64::from(width),
                unit(rng) * f64::from(height),
                r,
                [0; 3].map(|_: u8| (unit(rng) * 255.0) as u8),
            )
        })
        .collect();
    let mut picture = RgbImage::new(width, height);
    for (x, y, pixel) in picture.enumerate_pixels_mut() {
        let t = f64::from(x + y) / f64::from(width + height);
        let mut rgb = [0u8; 3];
        for c in 0..3 {
            rgb[c] = (f64::from(from[c]) * (1.0 - t) + f64::from(to[c]) * t) as u8;
        }
        for (cx, cy, r, fill) in &discs {
            if (f64::from(x) - cx).powi(2) + (f64::from(y) - cy).powi(2) < r * r {
                rgb = *fill;
            }
        }
        let noise = (unit(rng) * 16.0) as u8;
        *pixel = Rgb(rgb.map(|v| v.saturating_add(noise)));
    }
    let format = match format {
        ImageEncoding::Jpeg => ImageFormat::Jpeg,
        ImageEncoding::Png => ImageFormat::Png,
    };
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, format).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// A mono 16-bit PCM WAV clip: a tone between 110 and 880 Hz with a slow tremolo, plus noise.
pub fn wav(rng: &mut Pcg64Mcg, duration: Duration, sample_rate: u32) -> Result<Vec<u8>, String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let frequency = 110.0 * 8f64.powf(unit(rng));
    let samples = (duration.as_secs_f64() * f64::from(sample_rate)).round() as u64;
    let mut out = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).map_err(|e| e.to_string())?;
    for n in 0..samples {
        let t = n as f64 / f64::from(sample_rate);
        let tone = (TAU * frequency * t).sin() * (0.6 + 0.2 * (TAU * 2.0 * t).sin());
        let noise = (unit(rng) - 0.5) * 0.1;
        let value = ((tone * 0.5 + noise) * f64::from(i16::MAX)) as i16;
        writer.write_sample(value).map_err(|e| e.to_string())?;
    }
    writer.finalize().map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// `n` points on the surface of a sphere, a torus or a cube (chosen at random), as packed xyz and
/// rgb arrays; colours follow position so the cloud is not uniform.
pub fn point_cloud(rng: &mut Pcg64Mcg, n: usize) -> (Vec<f32>, Vec<f32>) {
    let shape = index(rng, 3);
    let mut xyz = Vec::with_capacity(n * 3);
    let mut rgb = Vec::with_capacity(n * 3);
    for _ in 0..n {
        let (u, v, w) = (unit(rng), unit(rng), unit(rng));
        let p = match shape {
            0 => {
                let z = 2.0 * u - 1.0;
                let r = (1.0 - z * z).sqrt();
                [r * (TAU * v).cos(), r * (TAU * v).sin(), z]
            }
            1 => {
                let (a, b) = (TAU * u, TAU * v);
                let ring = 0.7 + 0.3 * b.cos();
                [ring * a.cos(), ring * a.sin(), 0.3 * b.sin()]
            }
            _ => {
                let face = index(rng, 6);
                let (s, t) = (2.0 * u - 1.0, 2.0 * v - 1.0);
                let side = if face.is_multiple_of(2) { 1.0 } else { -1.0 };
                match face / 2 {
                    0 => [side, s, t],
                    1 => [s, side, t],
                    _ => [s, t, side],
                }
            }
        };
        xyz.extend(p.map(|c| c as f32));
        rgb.extend(p.map(|c| ((c + 1.0) / 2.0 * 0.9 + 0.1 * w).clamp(0.0, 1.0) as f32));
    }
    (xyz, rgb)
}

/// A generator seeded from the run seed and a stream number.
pub fn rng(seed: u64, stream: u64) -> Pcg64Mcg {
    Pcg64Mcg::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A uniform draw in [0, 1).
pub fn unit(rng: &mut Pcg64Mcg) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform index below `n` (0 when `n` is 0).
pub fn index(rng: &mut Pcg64Mcg, n: usize) -> usize {
    ((unit(rng) * n as f64) as usize).min(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_decodable() {
        let a = image(&mut rng(3, 0), (64, 48), ImageEncoding::Jpeg).unwrap();
        let b = image(&mut rng(3, 0), (64, 48), ImageEncoding::Jpeg).unwrap();
        assert_eq!(a, b);
        let decoded = image::load_from_memory(&a).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 48));
        let png = image(&mut rng(3, 0), (64, 48), ImageEncoding::Png).unwrap();
        assert_eq!(image::guess_format(&png).unwrap(), ImageFormat::Png);

        let clip = wav(&mut rng(3, 1), Duration::from_millis(250), 16_000).unwrap();
        let reader = hound::WavReader::new(Cursor::new(&clip)).unwrap();
        assert_eq!(reader.spec().sample_rate, 16_000);
        assert_eq!(reader.len(), 4000);

        let (xyz, rgb) = point_cloud(&mut rng(3, 2), 100);
        assert_eq!((xyz.len(), rgb.len()), (300, 300));
        assert!(xyz.iter().all(|c| c.abs() <= 1.0 + 1e-6));
        assert!(rgb.iter().all(|c| (0.0..=1.0).contains(c)));
        assert_ne!(caption(&mut rng(3, 3)), caption(&mut rng(4, 3)));
    }
}
