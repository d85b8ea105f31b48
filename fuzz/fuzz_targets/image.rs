//! Image bytes through the whole image preprocessing (decode, convert, resize, crop, normalise).
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use bindery::modality::image::{ImageLimits, ImagePreprocessor};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static PRE: OnceLock<ImagePreprocessor> = OnceLock::new();
    common::crash_only_on_own_panics();
    let pre = PRE.get_or_init(|| {
        let spec = &common::manifest().image.as_ref().expect("image section").preprocess;
        ImagePreprocessor::new(spec, ImageLimits { max_bytes: 16 << 20, max_pixels: 16_000_000 })
    });
    let mut out = vec![0f32; pre.tensor_len()];
    let _ = pre.preprocess_into(data, &mut out);
});
