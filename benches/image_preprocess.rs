//! Image preprocessing (decode, PIL-exact bicubic resize, center crop, normalise) of a
//! 1920x1080 4:2:0 JPEG, the typical photo a client sends; and the same with
//! `resize_domain = "tensor"` (LanguageBind's order: ToTensor, then torch's resize on floats).
//!
//! With `BINDERY_BENCH_JPEG=PATH` set, the JPEG is also written to `PATH`, so that
//! `tools/bench_image_reference.py --jpeg PATH` times the reference on the same bytes.

use std::hint::black_box;

use bindery::modality::image::{ImageLimits, ImagePreprocessor};
use bindery::modality::image::{ImagePreprocess, ResizeDomain, ResizeFilter, ResizeMode};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageEncoder};

/// A deterministic 1920x1080 photo-like JPEG: smooth gradients plus hash noise, so the
/// entropy decoder and the resize both see realistic work.
fn photo_jpeg() -> Vec<u8> {
    let (w, h) = (1920u32, 1080u32);
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(2_246_822_519)) >> 29;
            rgb.push(((x * 255 / w) as u8).wrapping_add(noise as u8));
            rgb.push(((y * 255 / h) as u8).wrapping_add((noise * 3) as u8));
            rgb.push((((x + y) * 255 / (w + h)) as u8) ^ (noise as u8));
        }
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 85).write_image(&rgb, w, h, ExtendedColorType::Rgb8).unwrap();
    out
}

fn bench(c: &mut Criterion) {
    let spec = ImagePreprocess {
        size: None,
        resize: Some(224),
        crop: Some(224),
        resize_mode: ResizeMode::Shortest,
        filter: ResizeFilter::Bicubic,
        fill_color: 0,
        resize_domain: ResizeDomain::Pil,
        mean: [0.481_454_66_f64, 0.457_827_5, 0.408_210_73].map(|v| v as f32),
        std: [0.268_629_54_f64, 0.261_302_58, 0.275_777_11].map(|v| v as f32),
    };
    let pre = ImagePreprocessor::new(&spec, ImageLimits::default()).expect("valid section");
    let jpeg = photo_jpeg();
    eprintln!("benchmark JPEG: 1920x1080, {} bytes", jpeg.len());
    if let Some(path) = std::env::var_os("BINDERY_BENCH_JPEG") {
        std::fs::write(&path, &jpeg).expect("write the benchmark JPEG");
    }
    let mut out = vec![0f32; pre.tensor_len()];

    let mut group = c.benchmark_group("image_preprocess");
    group.throughput(Throughput::Elements(1));
    group.bench_function("jpeg_1920x1080", |b| {
        b.iter(|| pre.preprocess_into(black_box(&jpeg), &mut out).unwrap())
    });
    let tensor = ImagePreprocess { resize_domain: ResizeDomain::Tensor, ..spec };
    let pre = ImagePreprocessor::new(&tensor, ImageLimits::default()).expect("valid section");
    group.bench_function("jpeg_1920x1080_tensor", |b| {
        b.iter(|| pre.preprocess_into(black_box(&jpeg), &mut out).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
