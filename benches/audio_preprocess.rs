//! Whole audio preprocessing of a 10 s, 44.1 kHz, 16-bit stereo WAV (decode, resample to
//! 16 kHz, three clips of Kaldi filterbank, normalisation), plus its stages on their own, and the
//! same WAV through LanguageBind's front end (`fbank_chunks`).
//!
//! The WAV is synthesised at start-up with the same formulas as
//! `tools/bench_audio_reference.py`, which times the reference pipeline on it.

use std::hint::black_box;

use bindery::modality::audio::AudioPreprocess;
use bindery::modality::audio::decode::decode;
use bindery::modality::audio::fbank::KaldiFbank;
use bindery::modality::audio::fbank_chunks::{ChunkPick, FbankChunksPreprocess, FbankChunksPreprocessor};
use bindery::modality::audio::resample::Resampler;
use bindery::modality::audio::{AudioLimits, AudioPreprocessor};
use criterion::{Criterion, criterion_group, criterion_main};

const RATE: u32 = 44_100;
const SECONDS: usize = 10;

/// Left: exponential sweep 100 Hz -> 10 kHz; right: 440 Hz tone plus LCG noise.
fn bench_wav() -> Vec<u8> {
    let n = RATE as usize * SECONDS;
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let (f0, f1) = (100.0f64, 10_000.0f64);
    let k = (f1 / f0).ln() / SECONDS as f64;
    let mut data = Vec::with_capacity(n * 4);
    for i in 0..n {
        let t = i as f64 / f64::from(RATE);
        let left = 0.4 * (2.0 * std::f64::consts::PI * f0 * ((k * t).exp() - 1.0) / k).sin();
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let noise = (state >> 33) as f64 / f64::from(1u32 << 31) * 2.0 - 1.0;
        let right = 0.2 * (2.0 * std::f64::consts::PI * 440.0 * t).sin() + 0.1 * noise;
        for v in [left, right] {
            data.extend_from_slice(&((v * 32767.0).round() as i16).to_le_bytes());
        }
    }
    let mut wav = Vec::with_capacity(44 + data.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&2u16.to_le_bytes()); // channels
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&(RATE * 4).to_le_bytes());
    wav.extend_from_slice(&4u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// ImageBind's audio parameters (the values `models/*/model.toml` carry).
fn spec() -> AudioPreprocess {
    AudioPreprocess {
        sample_rate: 16_000,
        clips_per_input: 3,
        clip_duration: 2.0,
        num_mel_bins: 128,
        target_length: 204,
        frame_length_ms: 25.0,
        frame_shift_ms: 10.0,
        mean: -4.268,
        std: 9.138,
    }
}

fn bench(c: &mut Criterion) {
    let wav = bench_wav();
    let limits = AudioLimits::default();
    let pre = AudioPreprocessor::try_new(&spec(), limits).expect("valid parameters");
    let mut out = vec![0.0f32; pre.tensor_len()];

    c.bench_function("audio_preprocess_10s_44k1_stereo_wav", |b| {
        b.iter(|| pre.preprocess_into(black_box(&wav), Some("wav"), &mut out).expect("preprocess"))
    });

    // LanguageBind's values (`models/languagebind-fixture/model.toml`): 1000 frames, tiled to 1036.
    let chunks = FbankChunksPreprocess {
        sample_rate: 16_000,
        num_mel_bins: 112,
        target_length: 1036,
        frame_length_ms: 25.0,
        frame_shift_ms: 10.0,
        mean: -4.267_739,
        std: 9.137_995,
        chunks: 3,
        chunk_pick: ChunkPick::First,
    };
    let lb = FbankChunksPreprocessor::new(&chunks, limits).expect("valid parameters");
    let mut lb_out = vec![0.0f32; lb.tensor_len()];
    c.bench_function("audio_fbank_chunks_10s_44k1_stereo_wav", |b| {
        b.iter(|| lb.preprocess_into(black_box(&wav), Some("wav"), &mut lb_out).expect("preprocess"))
    });

    c.bench_function("audio_decode_10s_44k1_stereo_wav", |b| {
        b.iter(|| decode(black_box(&wav), Some("wav"), &limits).expect("decode"))
    });

    let decoded = decode(&wav, None, &limits).expect("decode");
    c.bench_function("audio_after_decode_10s_44k1_stereo", |b| {
        b.iter(|| pre.preprocess_decoded_into(black_box(&decoded), &mut out).expect("preprocess"))
    });

    let resampler = Resampler::new(RATE, 16_000).expect("resampler");
    c.bench_function("audio_resample_10s_44k1_to_16k_one_channel", |b| {
        b.iter(|| resampler.process(black_box(&decoded.channels[0])))
    });

    let mono16k = resampler.process(&decoded.channels[0]);
    let fbank = KaldiFbank::new(16_000, 25.0, 10.0, 128).expect("fbank");
    let mut scratch = fbank.scratch();
    let mut clip = vec![0.0f32; 128 * 204];
    c.bench_function("audio_fbank_one_2s_clip", |b| {
        b.iter(|| {
            fbank
                .compute_normalized_into(
                    black_box(&mono16k[..32_000]),
                    204,
                    -4.268,
                    9.138,
                    &mut scratch,
                    &mut clip,
                )
                .expect("fbank")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
