//! Audio bytes through the whole audio preprocessing (decode, resample, clips, filterbank).
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use bindery::modality::audio::{AudioLimits, AudioPreprocessor};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static PRE: OnceLock<AudioPreprocessor> = OnceLock::new();
    common::crash_only_on_own_panics();
    let pre = PRE.get_or_init(|| {
        let spec = &common::manifest().audio.as_ref().expect("audio section").preprocess;
        AudioPreprocessor::try_new(spec, AudioLimits { max_bytes: 16 << 20, max_duration_secs: 60.0 })
            .expect("fixture audio settings")
    });
    let mut out = vec![0f32; pre.tensor_len()];
    let _ = pre.preprocess_into(data, None, &mut out);
});
