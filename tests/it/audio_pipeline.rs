//! Audio preprocessing against golden files made by the reference implementation
//! (`tools/make_audio_fixtures.py`: torchaudio 2.11 and imagebind-unofficial 0.1.1).

use std::path::Path;

use bindery::modality::audio::AudioPreprocess;
use bindery::modality::audio::decode::decode;
use bindery::modality::audio::fbank::KaldiFbank;
use bindery::modality::audio::resample::Resampler;
use bindery::modality::audio::{AudioError, AudioLimits, AudioPreprocessor};
use serde_json::Value;

use crate::common::{Fixtures, max_abs_diff};

/// Resampler vs `torchaudio.functional.resample`, max abs difference.
const RESAMPLE_TOL: f32 = 1e-4;
/// Filterbank vs `torchaudio.compliance.kaldi.fbank`, max abs difference in log-mel units.
const FBANK_TOL: f32 = 1e-3;

const AUDIO: Fixtures = Fixtures("audio");

fn params(meta: &Value) -> AudioPreprocess {
    let p = &meta["params"];
    AudioPreprocess {
        sample_rate: p["sample_rate"].as_u64().unwrap() as u32,
        clips_per_input: p["clips_per_input"].as_u64().unwrap() as usize,
        clip_duration: p["clip_duration"].as_f64().unwrap(),
        num_mel_bins: p["num_mel_bins"].as_u64().unwrap() as usize,
        target_length: p["target_length"].as_u64().unwrap() as usize,
        frame_length_ms: p["frame_length_ms"].as_f64().unwrap(),
        frame_shift_ms: p["frame_shift_ms"].as_f64().unwrap(),
        mean: p["mean"].as_f64().unwrap() as f32,
        std: p["std"].as_f64().unwrap() as f32,
    }
}

fn hint_of(file: &str) -> Option<&str> {
    Path::new(file).extension().and_then(|e| e.to_str())
}

#[test]
fn resampler_matches_torchaudio() {
    let meta: Value = AUDIO.json("resample.json");
    let entries = meta["entries"].as_array().unwrap();
    assert!(entries.len() >= 8);
    for e in entries {
        let id = e["id"].as_str().unwrap();
        let orig = e["orig_freq"].as_u64().unwrap() as u32;
        let new = e["new_freq"].as_u64().unwrap() as u32;
        let input = AUDIO.f32s(e["input"].as_str().unwrap());
        let want = AUDIO.f32s(e["output"].as_str().unwrap());
        let got = Resampler::new(orig, new).unwrap().process(&input);
        assert_eq!(got.len(), want.len(), "{id}: output length");
        let d = max_abs_diff(&got, &want);
        eprintln!("{id}: max abs diff {d:.3e}");
        assert!(d <= RESAMPLE_TOL, "{id}: max abs diff {d}");
    }
}

#[test]
fn fbank_matches_kaldi() {
    let meta: Value = AUDIO.json("fbank.json");
    let p = params(&meta);
    let fb = KaldiFbank::new(p.sample_rate, p.frame_length_ms, p.frame_shift_ms, p.num_mel_bins).unwrap();
    for e in meta["entries"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        let input = AUDIO.f32s(e["input"].as_str().unwrap());
        let want = AUDIO.f32s(e["output"].as_str().unwrap());
        assert_eq!(e["mel_bins"].as_u64().unwrap() as usize, p.num_mel_bins);
        assert_eq!(fb.num_frames(input.len()), e["frames"].as_u64().unwrap() as usize, "{id}: frames");
        let got = fb.compute(&input).unwrap();
        let d = max_abs_diff(&got, &want);
        eprintln!("{id}: max abs diff {d:.3e} (log-mel)");
        assert!(d <= FBANK_TOL, "{id}: max abs diff {d}");
    }
}

/// Absolute differences of `got` from the reference tensor: all of it where the whole tensor is
/// stored, else at the stored strided sample.
fn case_diffs(case: &Value, got: &[f32]) -> Vec<f32> {
    let (got, want): (Vec<f32>, Vec<f32>) = match case["fbank"].as_str() {
        Some(rel) => (got.to_vec(), AUDIO.f32s(rel)),
        None => {
            let stride = case["tensor_sample_stride"].as_u64().unwrap() as usize;
            let want = case["tensor_sample"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            (got.iter().step_by(stride).copied().collect(), want)
        }
    };
    assert_eq!(got.len(), want.len());
    got.iter().zip(&want).map(|(a, b)| (a - b).abs()).collect()
}

/// How closely one case must follow the reference (normalised units; log-mel / ~9.1).
struct Tolerance {
    /// Mean absolute difference.
    mean: f32,
    /// Largest absolute difference.
    max: f32,
    /// Share of values within `FBANK_TOL` log-mel.
    within: f32,
}

fn tolerance(lossy: bool) -> Tolerance {
    if lossy {
        // Different decoder implementations (symphonia vs libvorbis / FFmpeg's MP3 and AAC
        // decoders).
        Tolerance { mean: 1e-4, max: 1e-2, within: 0.95 }
    } else {
        // Where energies sit near the f32 epsilon floor, last-bit differences of the FFT and of
        // the resampler's sums move log values by up to ~0.02; everywhere else they agree to
        // FBANK_TOL.
        Tolerance { mean: 3e-5, max: 2.5e-3, within: 0.97 }
    }
}

#[test]
fn preprocessing_matches_reference_for_every_case() {
    let meta: Value = AUDIO.json("cases.json");
    let spec = params(&meta);
    let pre = AudioPreprocessor::try_new(&spec, AudioLimits::default()).unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 18);
    let close = FBANK_TOL / spec.std;
    let mut failures = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let file = case["file"].as_str().unwrap();
        let lossy = case["lossy"].as_bool().unwrap();
        let shape: Vec<usize> =
            case["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(shape.iter().product::<usize>(), pre.tensor_len(), "{id}");
        let bytes = AUDIO.read(file);

        let decoded = decode(&bytes, hint_of(file), &AudioLimits::default()).unwrap();
        assert_eq!(decoded.sample_rate as u64, case["sample_rate"].as_u64().unwrap());
        assert_eq!(decoded.channels.len() as u64, case["channels"].as_u64().unwrap());
        // Lossy files too: the encoder's delay and padding are trimmed as the reference's
        // decoder trims them.
        let frames = case["frames"].as_u64().unwrap() as usize;
        assert_eq!(decoded.frames(), frames, "{id}: decoded frames");

        let mut out = vec![0.0; pre.tensor_len()];
        pre.preprocess_into(&bytes, hint_of(file), &mut out).unwrap();
        let d = case_diffs(case, &out);
        let mean = d.iter().sum::<f32>() / d.len() as f32;
        let max = d.iter().copied().fold(0.0, f32::max);
        let within = d.iter().filter(|&&x| x <= close).count() as f32 / d.len() as f32;
        let sum: f64 = out.iter().map(|&v| f64::from(v)).sum();
        let want_sum = case["tensor_sum"].as_f64().unwrap();
        eprintln!(
            "{id}: {} values, mean abs diff {mean:.2e}, max {max:.2e}, within {:.1}%, \
             sum {sum:.3} vs {want_sum:.3}, frames {} vs {frames}",
            d.len(),
            within * 100.0,
            decoded.frames()
        );
        let tol = tolerance(lossy);
        let sum_ok = lossy || (sum - want_sum).abs() <= 1e-5 * pre.tensor_len() as f64;
        if mean > tol.mean || max > tol.max || within < tol.within || !sum_ok {
            failures.push(format!(
                "{id}: mean {mean:.3e} max {max:.3e} within {within:.4} sum {sum} vs {want_sum}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn kind(e: &AudioError) -> &'static str {
    match e {
        AudioError::Empty => "Empty",
        AudioError::TooLarge { .. } => "TooLarge",
        AudioError::TooLong { .. } => "TooLong",
        AudioError::UnrecognizedFormat(_) => "UnrecognizedFormat",
        AudioError::NoAudioTrack => "NoAudioTrack",
        AudioError::UnsupportedCodec(_) => "UnsupportedCodec",
        AudioError::UnsupportedSampleRate(_) => "UnsupportedSampleRate",
        AudioError::InvalidStream(_) => "InvalidStream",
        AudioError::Corrupt(_) => "Corrupt",
        AudioError::Truncated(_) => "Truncated",
        AudioError::NoSamples => "NoSamples",
        AudioError::TooShort { .. } => "TooShort",
        AudioError::DecoderPanic(_) => "DecoderPanic",
        AudioError::InvalidConfig(_) => "InvalidConfig",
        AudioError::OutputSize { .. } => "OutputSize",
        AudioError::Internal(_) => "Internal",
    }
}

#[test]
fn bad_inputs_are_rejected_with_a_reason() {
    let meta: Value = AUDIO.json("bad.json");
    let pre = AudioPreprocessor::try_new(&params(&meta), AudioLimits::default()).unwrap();
    let mut out = vec![0.0; pre.tensor_len()];
    for e in meta["entries"].as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        let file = e["file"].as_str().unwrap();
        let bytes = AUDIO.read(file);
        let err = pre.preprocess_into(&bytes, hint_of(file), &mut out).expect_err(id);
        let msg = err.to_string();
        eprintln!("{id}: {msg}");
        assert_eq!(kind(&err), e["expect"].as_str().unwrap(), "{id}: {msg}");
        assert!(err.is_input_error(), "{id}");
        assert!(msg.len() > 15, "{id}: message {msg:?} gives no reason");
    }
}

fn case_bytes(id: &str) -> (Vec<u8>, String) {
    let meta: Value = AUDIO.json("cases.json");
    let case = meta["cases"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
    let file = case["file"].as_str().unwrap().to_owned();
    (AUDIO.read(&file), file)
}

#[test]
fn byte_limit_is_enforced_before_parsing() {
    let (bytes, _) = case_bytes("wav16k_mono_s16_5s");
    let limits = AudioLimits { max_bytes: bytes.len() - 1, ..AudioLimits::default() };
    let err = decode(&bytes, None, &limits).unwrap_err();
    assert!(
        matches!(err, AudioError::TooLarge { bytes: b, max } if b == bytes.len() && max == bytes.len() - 1),
        "{err}"
    );
    // Garbage over the limit is refused for its size, not its content.
    let junk = vec![0x5a; 1000];
    let limits = AudioLimits { max_bytes: 999, ..AudioLimits::default() };
    assert!(matches!(decode(&junk, None, &limits), Err(AudioError::TooLarge { .. })));
    let limits = AudioLimits { max_bytes: bytes.len(), ..AudioLimits::default() };
    assert!(decode(&bytes, None, &limits).is_ok());
}

#[test]
fn duration_limit_uses_the_declared_length() {
    // The FLAC header declares 600 s; the limit trips on that before any frame is decoded, so
    // the reported duration is the declared one.
    let (bytes, _) = case_bytes("flac8k_mono_10min");
    let limits = AudioLimits { max_duration_secs: 60.0, ..AudioLimits::default() };
    match decode(&bytes, None, &limits) {
        Err(AudioError::TooLong { seconds, max }) => {
            assert_eq!(seconds, 600.0);
            assert_eq!(max, 60.0);
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    let limits = AudioLimits { max_duration_secs: 600.0, ..AudioLimits::default() };
    assert_eq!(decode(&bytes, None, &limits).unwrap().frames(), 4_800_000);
}

#[test]
fn duration_limit_counts_while_decoding_when_length_is_unknown() {
    // A streamed WAV (data size 0xFFFFFFFF) declares no length: decoding must stop soon after
    // the limit instead of reading the whole file.
    let (mut bytes, _) = case_bytes("wav16k_mono_s16_5s");
    let data = bytes.windows(4).position(|w| w == b"data").unwrap();
    bytes[data + 4..data + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let limits = AudioLimits { max_duration_secs: 1.0, ..AudioLimits::default() };
    match decode(&bytes, None, &limits) {
        Err(AudioError::TooLong { seconds, .. }) => {
            assert!(seconds > 1.0 && seconds < 2.0, "stopped at {seconds} s");
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    // Without the limit the same stream decodes completely.
    let all = decode(&bytes, None, &AudioLimits::default()).unwrap();
    assert_eq!(all.frames(), 80_000);
}

#[test]
fn misleading_hints_are_ignored() {
    let (bytes, _) = case_bytes("wav16k_mono_s16_5s");
    for hint in [None, Some("mp3"), Some(".flac"), Some("audio/ogg"), Some("")] {
        let d = decode(&bytes, hint, &AudioLimits::default()).unwrap();
        assert_eq!(d.frames(), 80_000, "{hint:?}");
    }
}

#[test]
fn wrong_output_size_is_reported() {
    let meta: Value = AUDIO.json("cases.json");
    let pre = AudioPreprocessor::new(&params(&meta), AudioLimits::default());
    let (bytes, _) = case_bytes("wav16k_short_0p05s");
    let mut out = vec![0.0; pre.tensor_len() - 1];
    let err = pre.preprocess_into(&bytes, None, &mut out).unwrap_err();
    assert!(matches!(err, AudioError::OutputSize { .. }), "{err}");
    assert!(!err.is_input_error());
}

/// Deterministic xorshift so the damaged inputs are the same on every run.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn damaged_files_never_panic() {
    let meta: Value = AUDIO.json("cases.json");
    let pre = AudioPreprocessor::new(&params(&meta), AudioLimits::default());
    let mut out = vec![0.0; pre.tensor_len()];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut rejected = 0;
    let mut total = 0;
    for id in
        ["wav44k_stereo_s16", "flac44k_stereo", "ogg_vorbis_44k", "mp3_44k", "m4a_aac_44k", "wavex_3ch_16k"]
    {
        let (bytes, _) = case_bytes(id);
        for round in 0..12 {
            let mut b = bytes.clone();
            if round % 3 == 0 {
                // Cut anywhere, including inside the header.
                let cut = (xorshift(&mut rng) as usize) % b.len();
                b.truncate(cut);
            } else {
                // Overwrite a few bytes, biased towards the header where parsers branch most.
                let span = if round % 3 == 1 { 512.min(b.len()) } else { b.len() };
                for _ in 0..8 {
                    let i = (xorshift(&mut rng) as usize) % span;
                    b[i] = xorshift(&mut rng) as u8;
                }
            }
            total += 1;
            if pre.preprocess_into(&b, None, &mut out).is_err() {
                rejected += 1;
            }
        }
    }
    eprintln!("{rejected} of {total} damaged inputs rejected, the rest decoded");
    // Reaching this line is the point (no panic escaped); cuts inside headers and data must
    // also have been noticed.
    assert!(rejected >= total / 4, "only {rejected} of {total} rejected");
}
